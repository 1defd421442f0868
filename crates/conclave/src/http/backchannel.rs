//! `POST /auth/oidc/NAME/backchannel-logout`: OpenID Connect Back-Channel
//! Logout 1.0. The provider posts a logout token (form field
//! `logout_token`) when a person signs out there or is signed out by its
//! administrators; once the token is checked ([`crate::oidc::Providers::back_channel_logout`])
//! every Conclave session of that (issuer, `sub`) ends: browsers' and native
//! clients'. Register `PUBLIC_URL/auth/oidc/NAME/backchannel-logout` as the
//! client's back-channel logout URI at the provider.
//!
//! Answers as the spec asks: 200 with `Cache-Control: no-store` when done
//! (also when nobody here has that identity: there is nothing to end), 400
//! with `{"error": "invalid_request", ...}` for a token that fails a check.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::account::{audit, audit_account, audit_refusal};
use super::session::ClientIp;
use crate::oidc::OidcError;
use crate::store::SigninOutcome;

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let method = format!("logout:{}", name.chars().take(32).collect::<String>());
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let checked = match token {
        Some(token) => state.oidc.back_channel_logout(&name, &token).await,
        None => Err(OidcError::Token("no logout_token in the body".into())),
    };
    let out = match checked {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!(provider = %name, %ip, error = %e, "refused a back-channel logout");
            let detail = e.to_string();
            audit_refusal(&state, &method, e.code(), Some(&detail), ip).await;
            let status = match e {
                OidcError::UnknownProvider => StatusCode::NOT_FOUND,
                OidcError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            return answer(
                status,
                serde_json::json!({"error": "invalid_request", "error_description": detail}),
            );
        }
    };
    let who = format!("{} sub={}", out.issuer, out.subject);
    let ended = async {
        let Some(user) = state
            .store
            .oidc_account_of(&out.issuer, &out.subject)
            .await?
        else {
            return Ok::<_, crate::store::StoreError>(None);
        };
        let n = state.store.end_sessions(user.id).await?;
        Ok(Some((user, n)))
    }
    .await;
    match ended {
        Ok(Some((user, n))) => {
            tracing::info!(user = %user.username, provider = %name, sessions = n, "back-channel logout: sessions ended");
            audit_account(&state, &method, SigninOutcome::Ok, &user, Some(&who), ip).await;
        }
        Ok(None) => {
            tracing::info!(provider = %name, "back-channel logout for an identity with no account here");
            audit(
                &state,
                &method,
                SigninOutcome::Ok,
                None,
                None,
                Some(&who),
                ip,
            )
            .await;
        }
        Err(e) => {
            tracing::error!(provider = %name, error = %e, "back-channel logout: cannot end the sessions");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "server_error"}),
            );
        }
    }
    answer(StatusCode::OK, serde_json::json!({}))
}
