//! Accounts: sign-in (password or one-time link), sign-out, optional sign-up,
//! password change and personal API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiJson};
use super::session::{Authed, ClientIp, SESSION_COOKIE, cookie, session_token};
use crate::auth::{digest, new_secret, password_acceptable, username_acceptable};
use crate::guard::retry_secs;
use crate::store::{ApiTokenInfo, SigninOutcome, User};

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    /// False for the first-start admin until it chooses a password, and
    /// for accounts that sign in through a provider.
    pub has_password: bool,
    /// The OpenID Connect provider this account signs in with, if any (only
    /// in `/me`): such an account needs no password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderIdentity>,
    /// Whether the account may create meetings (a provider's `host_groups`).
    pub may_host: bool,
}

/// Who a provider says the account is, as of the latest sign-in.
#[derive(Serialize, ToSchema)]
pub struct ProviderIdentity {
    /// The provider's name in the configuration; absent when the provider
    /// has since been removed from it.
    pub name: Option<String>,
    pub issuer: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            is_admin: u.is_admin,
            has_password: u.has_password,
            provider: None,
            may_host: u.may_host,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    /// The token from the link's fragment (`/signin#token=...`).
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Required when the account already has a password.
    #[serde(default)]
    pub current_password: Option<String>,
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 characters, no control characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<ApiTokenInfo> for TokenView {
    fn from(t: ApiTokenInfo) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    pub name: String,
    /// Shown once; only its digest is stored. Send as `Authorization: Bearer <token>`.
    pub token: String,
}

pub(super) async fn start_session(
    state: &AppState,
    jar: CookieJar,
    user: &User,
) -> Result<CookieJar, ApiError> {
    start_session_for(state, jar, user, state.config.session_ttl()).await
}

/// A session that lasts `ttl` at most (`limits.session_days` still caps
/// it): a provider's sign-ins are shorter ([`crate::oidc::ProviderConfig`]).
pub(super) async fn start_session_for(
    state: &AppState,
    jar: CookieJar,
    user: &User,
    ttl: std::time::Duration,
) -> Result<CookieJar, ApiError> {
    let secret = new_secret("");
    let ttl = ttl.min(state.config.session_ttl());
    state
        .store
        .create_session(&secret.digest, user.id, ttl)
        .await?;
    let max_age = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(jar.add(cookie(&state.config, SESSION_COOKIE, secret.text, max_age)))
}

/// Adds an entry to the sign-in audit log; a failure to write it is logged
/// and does not change the answer.
pub(super) async fn audit(
    state: &AppState,
    method: &str,
    outcome: SigninOutcome,
    user: Option<&User>,
    typed_name: Option<&str>,
    detail: Option<&str>,
    ip: std::net::IpAddr,
) {
    let name = user.map(|u| u.username.as_str()).or(typed_name);
    if let Err(e) = state
        .store
        .record_signin(method, outcome, user.map(|u| u.id), name, detail, Some(ip))
        .await
    {
        tracing::error!(error = %e, "cannot write the sign-in audit log");
    }
}

/// Audits a sign-in (or a refusal of one) for a known account, the shape
/// every door records once it has found the person.
pub(super) async fn audit_account(
    state: &AppState,
    method: &str,
    outcome: SigninOutcome,
    user: &User,
    detail: Option<&str>,
    ip: std::net::IpAddr,
) {
    audit(state, method, outcome, Some(user), None, detail, ip).await;
}

/// Audits a refused sign-in that names no account (an unknown code or link,
/// a provider's answer that failed a check), so each refusal is recorded
/// the same way whichever door it came through.
pub(super) async fn audit_refusal(
    state: &AppState,
    method: &str,
    code: &'static str,
    detail: Option<&str>,
    ip: std::net::IpAddr,
) {
    audit(
        state,
        method,
        SigninOutcome::Failed(code),
        None,
        None,
        detail,
        ip,
    )
    .await;
}

/// The refusal of password sign-in when the operator turned it off.
const PASSWORDS_OFF: ApiError = ApiError::Forbidden(
    "password sign-in is turned off on this server: sign in with your organisation's identity provider",
);

/// Sign in with username and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/signin", request_body = Credentials,
    responses((status = 200, body = UserView), (status = 401, body = super::error::ErrorBody),
              (status = 403, description = "Password sign-in is turned off, or the account is disabled", body = super::error::ErrorBody),
              (status = 429, body = super::error::ErrorBody),
              (status = 503, description = "Cluster mode: Redis is unavailable (`unavailable`)", body = super::error::ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<(CookieJar, ApiJson<UserView>), ApiError> {
    if !state.config.password_login {
        let name = Some(c.username.as_str()).filter(|n| n.len() <= 64);
        audit(
            &state,
            "password",
            SigninOutcome::Failed("passwords_off"),
            None,
            name,
            None,
            ip,
        )
        .await;
        return Err(PASSWORDS_OFF);
    }
    // Counted before argon2 runs: sign-ins sent at once cannot all be
    // checked before the first of them has failed.
    let attempt = reserve_sign_in(&state, ip).await?;
    let found = if c.username.len() <= 64 {
        state.store.user_by_name(&c.username).await?
    } else {
        None
    };
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    // Verify even for an unknown user, so the answer's timing says nothing.
    let ok = state.hasher.verify(c.password, hash).await;
    match user {
        // Said only to whoever knows the password: to anyone else a
        // disabled account looks like any other.
        Some(user) if ok && user.disabled => {
            attempt.succeeded().await;
            tracing::warn!(user = %user.username, %ip, "sign-in refused: the account is disabled");
            audit_account(
                &state,
                "password",
                SigninOutcome::Failed("disabled"),
                &user,
                None,
                ip,
            )
            .await;
            Err(ApiError::Forbidden("this account is disabled"))
        }
        Some(user) if ok => {
            attempt.succeeded().await;
            tracing::info!(user = %user.username, %ip, "signed in");
            audit_account(&state, "password", SigninOutcome::Ok, &user, None, ip).await;
            let jar = start_session(&state, jar, &user).await?;
            Ok((jar, ApiJson(user.into())))
        }
        found => {
            attempt.failed().await;
            tracing::warn!(%ip, "failed sign-in");
            // The name as typed (cut to 64 characters): whether it exists
            // is the administrator's to see, not the answer's.
            let typed: String = c.username.chars().take(64).collect();
            let why = if found.is_some() {
                "wrong password"
            } else {
                "unknown name"
            };
            audit(
                &state,
                "password",
                SigninOutcome::Failed("bad_credentials"),
                found.as_ref(),
                Some(&typed),
                Some(why),
                ip,
            )
            .await;
            Err(ApiError::BadCredentials)
        }
    }
}

/// Sign in with a one-time link (first start, `conclave admin signin-link`).
#[utoipa::path(post, path = "/api/v1/auth/link", request_body = LinkToken,
    responses((status = 200, body = UserView), (status = 401, body = super::error::ErrorBody),
              (status = 429, body = super::error::ErrorBody),
              (status = 503, description = "Cluster mode: Redis is unavailable (`unavailable`)", body = super::error::ErrorBody)))]
pub async fn redeem_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    ApiJson(t): ApiJson<LinkToken>,
) -> Result<(CookieJar, ApiJson<UserView>), ApiError> {
    let attempt = reserve_sign_in(&state, ip).await?;
    let Some(user) = state.store.redeem_signin_link(&digest(&t.token)).await? else {
        attempt.failed().await;
        audit_refusal(&state, "link", "bad_link", None, ip).await;
        return Err(ApiError::BadLink);
    };
    attempt.succeeded().await;
    tracing::info!(user = %user.username, %ip, "signed in with a one-time link");
    audit_account(&state, "link", SigninOutcome::Ok, &user, None, ip).await;
    let jar = start_session(&state, jar, &user).await?;
    Ok((jar, ApiJson(user.into())))
}

#[derive(Serialize, ToSchema)]
pub struct SignedOut {
    /// The provider's end-session URL, for the browser to go to next: the
    /// provider ends its own session there and sends it back to `/signin`.
    pub redirect: String,
}

/// End this browser session: the session cookie sent, if any, stops working
/// and is cleared. Needs no credentials, and answers 204 without one. After a
/// sign-in through a provider that offers RP-initiated logout, answers 200
/// with the provider's end-session URL for the browser to follow. A native
/// client's session (`conclave login`) sent as a bearer token ends too (an
/// API token is not a session: revoke it at `/api/v1/tokens/{id}`).
#[utoipa::path(post, path = "/api/v1/auth/signout",
    responses((status = 204), (status = 200, body = SignedOut)))]
pub async fn sign_out(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    if let Some(t) = session_token(&jar) {
        state.store.delete_session(&digest(&t)).await?;
    }
    if let Some(t) = super::session::bearer(&headers) {
        state.store.delete_session(&digest(t)).await?;
    }
    let logout = super::oidc::logout_hint(&jar);
    let jar = super::oidc::clear_logout_hint(&state, jar).add(cookie(
        &state.config,
        SESSION_COOKIE,
        String::new(),
        0,
    ));
    let redirect = match logout {
        Some((name, id_token)) => state.oidc.end_session_url(&name, &id_token).await,
        None => None,
    };
    Ok(match redirect {
        Some(redirect) => (jar, ApiJson(SignedOut { redirect })).into_response(),
        None => (jar, StatusCode::NO_CONTENT).into_response(),
    })
}

/// Create an account; only when the operator turned open sign-up on.
#[utoipa::path(post, path = "/api/v1/auth/signup", request_body = Credentials,
    responses((status = 201, body = UserView), (status = 403, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn sign_up(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<(StatusCode, CookieJar, ApiJson<UserView>), ApiError> {
    if !state.config.allow_signup || !state.config.password_login {
        return Err(ApiError::Forbidden("sign-up is closed on this server"));
    }
    if !username_acceptable(&c.username) {
        return Err(ApiError::Invalid(
            "a username has 1 to 64 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    if !password_acceptable(&c.password) {
        return Err(ApiError::Invalid(
            "a password has 10 to 256 characters".into(),
        ));
    }
    let hash = state.hasher.hash(c.password).await?;
    let user = state
        .store
        .create_user(&c.username, Some(&hash), false)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => ApiError::Conflict("that username is taken"),
            e => e.into(),
        })?;
    let jar = start_session(&state, jar, &user).await?;
    Ok((StatusCode::CREATED, jar, ApiJson(user.into())))
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/me", security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = UserView)))]
pub async fn me(
    State(state): State<AppState>,
    Authed(user): Authed,
) -> Result<ApiJson<UserView>, ApiError> {
    let identity = state.store.oidc_identity(user.id).await?;
    let mut view = UserView::from(user);
    view.provider = identity.map(|i| ProviderIdentity {
        name: state.oidc.name_of_issuer(&i.issuer).map(str::to_string),
        issuer: i.issuer,
        email: i.email,
        display_name: i.name,
    });
    Ok(ApiJson(view))
}

/// Set or change the password. Other sessions of the account end.
#[utoipa::path(post, path = "/api/v1/me/password", request_body = PasswordChange, security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 204), (status = 400, body = super::error::ErrorBody),
              (status = 401, description = "Not signed in, or the current password is wrong (`bad_credentials`)", body = super::error::ErrorBody),
              (status = 429, body = super::error::ErrorBody),
              (status = 503, description = "Cluster mode: Redis is unavailable (`unavailable`)", body = super::error::ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Authed(user): Authed,
    jar: CookieJar,
    ApiJson(p): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    if let Some(current) = state.store.password_hash(user.id).await? {
        let attempt = reserve_sign_in(&state, ip).await?;
        let given = p.current_password.unwrap_or_default();
        if !state.hasher.verify(given, Some(current)).await {
            attempt.failed().await;
            return Err(ApiError::BadCredentials);
        }
        attempt.succeeded().await;
    }
    if !password_acceptable(&p.new_password) {
        return Err(ApiError::Invalid(
            "a password has 10 to 256 characters".into(),
        ));
    }
    let hash = state.hasher.hash(p.new_password).await?;
    state.store.set_password(user.id, &hash).await?;
    let keep = session_token(&jar).map(|t| digest(&t));
    state
        .store
        .delete_other_sessions(user.id, keep.as_deref())
        .await?;
    tracing::info!(user = %user.username, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// The account's API tokens (never the secrets themselves).
#[utoipa::path(get, path = "/api/v1/tokens", security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = [TokenView])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Authed(user): Authed,
) -> Result<ApiJson<Vec<TokenView>>, ApiError> {
    let tokens = state.store.list_api_tokens(user.id).await?;
    Ok(ApiJson(tokens.into_iter().map(Into::into).collect()))
}

/// Create a personal API token for scripts and bots.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 201, body = CreatedToken), (status = 400, body = super::error::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Authed(user): Authed,
    ApiJson(t): ApiJson<NewToken>,
) -> Result<(StatusCode, ApiJson<CreatedToken>), ApiError> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "a token name has 1 to 64 characters".into(),
        ));
    }
    let secret = new_secret("cnv_");
    let id = state
        .store
        .create_api_token(user.id, name, &secret.digest)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedToken {
            id,
            name: name.to_string(),
            token: secret.text,
        }),
    ))
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = i64, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_token(
    State(state): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    if state.store.delete_api_token(user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A sign-in attempt reserved before its check, on this node and, in
/// cluster mode, in Redis, so that guesses spread over the nodes are
/// limited as one. Dropped unsettled, it counts as a failure.
pub(super) async fn reserve_sign_in(
    state: &AppState,
    ip: std::net::IpAddr,
) -> Result<crate::cluster::limits::SignInAttempt, ApiError> {
    use crate::cluster::limits::{Refusal, SignInAttempt};
    match SignInAttempt::reserve(&state.guard, state.cluster.as_ref(), ip).await {
        Ok(a) => Ok(a),
        Err(Refusal::Wait(d)) => Err(blocked(state, d)),
        Err(Refusal::Unavailable(e)) => {
            tracing::warn!(error = %e, "sign-in refused: Redis is unavailable");
            Err(ApiError::Unavailable)
        }
    }
}

/// The answer to a sign-in from a blocked address, counted for `/metrics`.
fn blocked(state: &AppState, wait: std::time::Duration) -> ApiError {
    state.metrics.sign_in_blocks.increment(1);
    ApiError::TooManyAttempts(retry_secs(wait))
}
