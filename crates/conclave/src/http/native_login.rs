//! The last step of a native client's sign-in through a provider
//! (`conclave login`, RFC 8252 loopback redirect; [`crate::oidc::NativeStart`]):
//! the client trades the one-time code its loopback listener received, with
//! the PKCE verifier only it knows, for a session it sends as
//! `Authorization: Bearer`. The session lasts as a browser's from the same
//! provider would, and ends with the account (disable, delete, sign-out).

use axum::extract::State;
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::AppState;
use super::account::{audit_account, audit_refusal, reserve_sign_in};
use super::error::{ApiError, ApiJson};
use super::session::ClientIp;
use crate::auth::{digest, new_secret};
use crate::store::SigninOutcome;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NativeCode {
    /// The code the loopback listener received (`/callback?code=`).
    pub code: String,
    /// The PKCE verifier whose S256 challenge started the sign-in.
    pub code_verifier: String,
}

#[derive(Serialize, ToSchema)]
pub struct NativeSession {
    /// The session, for `Authorization: Bearer`; shown once, only its
    /// digest is stored.
    pub token: String,
    /// Seconds until the session ends.
    pub expires_in: u64,
    pub username: String,
    /// The provider's ID token, when the sign-in's nonce committed to the
    /// client's MLS signature key: the client puts it in its leaf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Whether `verifier` is the PKCE verifier of `challenge` (S256).
fn proves(verifier: &str, challenge: &str) -> bool {
    let computed = BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()));
    (43..=128).contains(&verifier.len())
        && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Trade a native sign-in's one-time code and PKCE verifier for a session.
/// The code works once, for two minutes; a wrong verifier uses it up.
#[utoipa::path(post, path = "/api/v1/auth/native/token", request_body = NativeCode,
    responses((status = 200, body = NativeSession),
              (status = 401, description = "Unknown, used or expired code, or the wrong verifier (`bad_link`)", body = super::error::ErrorBody),
              (status = 403, description = "The account is disabled (`account_disabled`)", body = super::error::ErrorBody),
              (status = 429, body = super::error::ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(c): ApiJson<NativeCode>,
) -> Result<ApiJson<NativeSession>, ApiError> {
    let attempt = reserve_sign_in(&state, ip).await?;
    let grant = state.store.take_native_grant(&digest(&c.code)).await?;
    let Some(grant) = grant.filter(|g| proves(&c.code_verifier, &g.code_challenge)) else {
        attempt.failed().await;
        tracing::warn!(%ip, "refused a native sign-in's code");
        audit_refusal(&state, "native", "bad_code", None, ip).await;
        return Err(ApiError::BadLink);
    };
    attempt.succeeded().await;
    let user = state
        .store
        .user_by_id(grant.user_id)
        .await?
        .ok_or(ApiError::BadLink)?;
    if user.disabled {
        return Err(ApiError::AccountDisabled);
    }
    let ttl = grant.session.min(state.config.session_ttl());
    let secret = new_secret("");
    state
        .store
        .create_session(&secret.digest, user.id, ttl)
        .await?;
    tracing::info!(user = %user.username, %ip, "a native client signed in");
    audit_account(&state, "native", SigninOutcome::Ok, &user, None, ip).await;
    Ok(ApiJson(NativeSession {
        token: secret.text,
        expires_in: ttl.as_secs(),
        username: user.username,
        id_token: grant.id_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verifier_of_the_challenge_proves_it() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(proves(verifier, challenge));
        assert!(!proves(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            challenge
        ));
        assert!(!proves(challenge, challenge));
        assert!(!proves("", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"));
    }
}
