//! Administrators' account management over HTTP: list, disable, enable and
//! delete accounts, as `conclave admin` does against the store.
//!
//! Every call needs an administrator's session or API token ([`Admin`]);
//! anyone else gets one and the same answer whatever they ask for (403, or
//! 401 when signed out), so the API tells them nothing about accounts. The
//! state-changing calls are guarded against cross-site requests like every
//! other ([`super::web::guard_and_headers`]: a foreign `Origin` is refused,
//! and the session cookie is `SameSite=Strict`). Each action, and each
//! refused attempt, goes to the audit log (`conclave admin signins`).
//!
//! Deleting an account removes its meetings, sessions, tokens and provider
//! identity. It is not a ban: a person from a provider who signs in again
//! gets a new, empty account (nothing of the old one comes back). To keep
//! someone out, disable the account instead.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::account::ProviderIdentity;
use super::error::{ApiError, ApiJson};
use super::session::{Authed, ClientIp};
use crate::rooms::RoomCmd;
use crate::store::{AccountRow, User};
use conclave_core::Input;
use conclave_proto::EndReason;

/// The refusal of a signed-in person who is not an administrator.
const NOT_ADMIN: ApiError = ApiError::Forbidden("only administrators may manage accounts");

/// Extractor for handlers only administrators may call: the signed-in
/// account, when it is one.
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authed(user) = Authed::from_request_parts(parts, state).await?;
        if user.is_admin {
            return Ok(Admin(user));
        }
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        tracing::warn!(user = %user.username, %ip, path = %parts.uri.path(), "refused an administrators' call from a non-administrator");
        let detail = format!(
            "{} {} by {} (id {}), not an administrator",
            parts.method,
            parts.uri.path(),
            user.username,
            user.id
        );
        if let Err(e) = state
            .store
            .record_admin_action("refused_not_admin", None, &detail, Some(ip))
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        Err(NOT_ADMIN)
    }
}

/// An account as administrators see it.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    /// Disabled: signs in by no means, and its sessions and tokens are refused.
    pub disabled: bool,
    pub has_password: bool,
    pub may_host: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// The provider it signs in with, as of its latest sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderIdentity>,
}

fn view(state: &AppState, row: AccountRow) -> AccountView {
    let u = row.user;
    AccountView {
        id: u.id,
        username: u.username,
        is_admin: u.is_admin,
        disabled: u.disabled,
        has_password: u.has_password,
        may_host: u.may_host,
        created_at: row.created_at,
        provider: row.identity.map(|i| ProviderIdentity {
            name: state.oidc.name_of_issuer(&i.issuer).map(str::to_string),
            issuer: i.issuer,
            email: i.email,
            display_name: i.name,
        }),
    }
}

/// Every account on the server, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/users", security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = [AccountView]),
              (status = 403, description = "Not an administrator", body = super::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> Result<ApiJson<Vec<AccountView>>, ApiError> {
    let rows = state.store.list_accounts().await?;
    Ok(ApiJson(rows.into_iter().map(|r| view(&state, r)).collect()))
}

/// The account `id` names, for an action on it; never the caller's own
/// (an administrator locking themselves out is a mistake, not a wish).
async fn target(state: &AppState, admin: &User, id: &str) -> Result<User, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if user.id == admin.id {
        return Err(ApiError::Conflict(
            "you cannot disable or delete your own account",
        ));
    }
    Ok(user)
}

async fn audit(state: &AppState, action: &str, admin: &User, user: &User, ip: std::net::IpAddr) {
    let detail = format!("by {} (id {})", admin.username, admin.id);
    if let Err(e) = state
        .store
        .record_admin_action(action, Some((user.id, &user.username)), &detail, Some(ip))
        .await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// The account as it is now, after an action on it.
async fn current(state: &AppState, id: i64) -> Result<ApiJson<AccountView>, ApiError> {
    let row = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .find(|r| r.user.id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(ApiJson(view(state, row)))
}

/// Disable an account: it can no longer sign in by any means, and its
/// sessions and API tokens are refused at once with `account_disabled`.
/// Its meetings and tokens are kept for when it is enabled again.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/disable", params(("id" = i64, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = AccountView),
              (status = 403, description = "Not an administrator", body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The caller's own account", body = super::error::ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<ApiJson<AccountView>, ApiError> {
    set_disabled(state, admin, ip, &id, true).await
}

/// Enable a disabled account. Its old sessions stay ended; it signs in again.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/enable", params(("id" = i64, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = AccountView),
              (status = 403, description = "Not an administrator", body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The caller's own account", body = super::error::ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<ApiJson<AccountView>, ApiError> {
    set_disabled(state, admin, ip, &id, false).await
}

async fn set_disabled(
    state: AppState,
    admin: User,
    ip: std::net::IpAddr,
    id: &str,
    disabled: bool,
) -> Result<ApiJson<AccountView>, ApiError> {
    let user = target(&state, &admin, id).await?;
    if !state.store.set_user_disabled(user.id, disabled).await? {
        return Err(ApiError::NotFound);
    }
    if disabled {
        let n = state.account_sockets.end(user.id);
        tracing::debug!(user = %user.username, sockets = n, "ended the disabled account's meeting sockets");
    }
    let action = if disabled {
        "disable_user"
    } else {
        "enable_user"
    };
    tracing::info!(admin = %admin.username, user = %user.username, %ip, action, "an administrator changed an account");
    audit(&state, action, &admin, &user, ip).await;
    current(&state, user.id).await
}

/// Delete an account with its meetings, sessions, tokens and provider
/// identity. Not a ban: someone who signs in through a provider again gets
/// a new, empty account; disable an account to keep its person out.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", params(("id" = i64, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 204),
              (status = 403, description = "Not an administrator", body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The caller's own account", body = super::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = target(&state, &admin, &id).await?;
    // Its meetings go with it, and those running end now, as a host's
    // delete ends one: a room left running would keep the deleted
    // account's id as its owner, and SQLite hands a deleted row's id to the
    // next account made.
    for m in state.store.meetings_of(user.id).await? {
        state
            .rooms
            .deliver_if_running(m.id, RoomCmd::Input(Input::End(EndReason::Deleted)))
            .await;
    }
    if !state.store.delete_user(user.id).await? {
        return Err(ApiError::NotFound);
    }
    state.account_sockets.end(user.id);
    tracing::info!(admin = %admin.username, user = %user.username, %ip, "an administrator deleted an account");
    audit(&state, "delete_user", &admin, &user, ip).await;
    Ok(StatusCode::NO_CONTENT)
}
