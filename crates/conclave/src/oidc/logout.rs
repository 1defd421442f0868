//! OpenID Connect Back-Channel Logout 1.0: the provider tells the server
//! that a person signed out there (or was signed out by an administrator),
//! with a logout token POSTed to `/auth/oidc/NAME/backchannel-logout`, and
//! the server ends that person's sessions.
//!
//! A logout token is a JWT the provider signs like an ID token, so it is
//! checked by the same `openidconnect` verifier, with the same keys and
//! asymmetric algorithms ([`super::verifier`]): signature against the
//! provider's JWKS (fetched again once for a key it has not seen), issuer,
//! audience (this server's client id), expiry. Then what makes it a logout
//! token and not an ID token passed off as one (§2.6): the `events` claim
//! with the back-channel-logout event, no `nonce`, a `sub` (this server does
//! not keep the provider's `sid`), an `iat` not far in the past, and a `jti`
//! not seen before (kept in memory until the token expires: a replay to
//! another node of a cluster is not caught, and would only end sessions the
//! first delivery ended already).

use std::collections::HashMap;
use std::sync::Mutex;

use openidconnect::core::{CoreGenderClaim, CoreJweContentEncryptionAlgorithm};
use openidconnect::{ClaimsVerificationError, JsonWebTokenType, Nonce, SignatureVerificationError};
use serde::{Deserialize, Serialize};

use super::{OidcError, Providers, verifier};

/// The event a logout token must carry (§2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token's `iat` may be: a token signed long ago and
/// delivered now is refused even if its `exp` is generous.
const MAX_AGE_SECS: i64 = 300;
/// Logout token ids remembered at most (the oldest go first).
const MAX_SEEN: usize = 10_000;

/// The claims of a logout token beyond those it shares with an ID token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutClaims {
    #[serde(default)]
    pub events: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl openidconnect::AdditionalClaims for LogoutClaims {}

/// A logout token, read with `openidconnect`'s ID-token machinery.
pub type LogoutToken = openidconnect::IdToken<
    LogoutClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJwsSigningAlgorithm,
>;

/// Logout token ids already taken, with their expiry (Unix seconds).
#[derive(Default)]
pub(super) struct Seen(Mutex<HashMap<String, i64>>);

impl Seen {
    /// Records `jti`; false when it was there already (a replay).
    fn first(&self, jti: &str, expires: i64, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, exp| *exp >= now);
        if seen.contains_key(jti) {
            return false;
        }
        if seen.len() >= MAX_SEEN
            && let Some(oldest) = seen.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(jti.to_string(), expires);
        true
    }
}

/// Whose sessions a logout token ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOut {
    pub issuer: String,
    pub subject: String,
}

impl Providers {
    /// Checks a logout token from provider `name`; whom it signs out.
    pub async fn back_channel_logout(
        &self,
        name: &str,
        token: &str,
    ) -> Result<LoggedOut, OidcError> {
        let bad = |why: &str| OidcError::Token(format!("logout token: {why}"));
        let p = self.provider(name)?;
        let token: LogoutToken = token
            .parse()
            .map_err(|e: serde_json::Error| bad(&e.to_string()))?;
        // An ID token carries the sign-in's nonce; a logout token never does.
        let no_nonce = |n: Option<&Nonce>| match n {
            Some(_) => Err("a logout token has no nonce".to_string()),
            None => Ok(()),
        };
        let metadata = self.metadata(p, false).await?;
        let check = |metadata| {
            let verifier = verifier(&p.config.client_id, metadata).set_allowed_jose_types(
                ["JWT", "application/jose", "logout+jwt"]
                    .iter()
                    .filter_map(|t| JsonWebTokenType::new(t.to_string()).normalize().ok()),
            );
            token.claims(&verifier, no_nonce).cloned()
        };
        let claims = match check(&metadata) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                tracing::info!(
                    provider = name,
                    "a logout token's key is new: fetching the provider's keys again"
                );
                let metadata = self.metadata(p, true).await?;
                check(&metadata)
            }
            other => other,
        }
        .map_err(|e| bad(&e.to_string()))?;
        let extra = claims.additional_claims();
        if !extra.events.get(EVENT).is_some_and(|v| v.is_object()) {
            return Err(bad("no back-channel logout event"));
        }
        let now = crate::store::unix_now();
        let iat = claims.issue_time().timestamp();
        if iat < now - MAX_AGE_SECS || iat > now + MAX_AGE_SECS {
            return Err(bad("issued too long ago, or in the future"));
        }
        let Some(jti) = extra.jti.as_deref().filter(|j| !j.is_empty()) else {
            return Err(bad("no jti"));
        };
        if !self
            .logout_seen
            .first(jti, claims.expiration().timestamp(), now)
        {
            return Err(bad("already used (jti)"));
        }
        Ok(LoggedOut {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_is_taken_once_until_it_expires() {
        let seen = Seen::default();
        assert!(seen.first("a", 100, 10));
        assert!(!seen.first("a", 100, 20));
        assert!(seen.first("b", 100, 20));
        // Past its expiry it is forgotten (the token itself is refused then).
        assert!(seen.first("a", 300, 101));
    }
}
