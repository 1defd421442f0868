//! Who is calling: the session cookie or an API token, and from which address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::AppState;
use super::error::ApiError;
use crate::auth::digest;
use crate::config::Config;
use crate::store::{Store, User};

pub const SESSION_COOKIE: &str = "conclave_session";
pub const GUEST_COOKIE: &str = "conclave_guest";

/// The caller's session cookie value, if any.
pub fn session_token(jar: &CookieJar) -> Option<String> {
    jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The signed-in account behind a request, from an API token or the session cookie.
pub async fn current_user(
    store: &Store,
    headers: &HeaderMap,
    jar: &CookieJar,
) -> Result<Option<User>, ApiError> {
    if let Some(token) = bearer(headers) {
        // A present but wrong token is an error, not an anonymous call: a
        // script with a revoked token should hear so.
        let hash = digest(token);
        if let Some(user) = store.api_token_user(&hash).await? {
            return Ok(Some(user));
        }
        // A native client's session (`conclave login`) comes as a bearer
        // token too; it ends as a browser's does.
        return match store.session_user(&hash).await? {
            Some(user) => Ok(Some(user)),
            None => Err(refusal(store, &hash).await?),
        };
    }
    let Some(t) = session_token(jar) else {
        return Ok(None);
    };
    let hash = digest(&t);
    match store.session_user(&hash).await? {
        Some(user) => Ok(Some(user)),
        // A disabled account's session is refused with the reason; any
        // other stale cookie is simply nobody.
        None => match refusal(store, &hash).await? {
            ApiError::AccountDisabled => Err(ApiError::AccountDisabled),
            _ => Ok(None),
        },
    }
}

/// Why a credential that matched no enabled account was refused.
async fn refusal(store: &Store, hash: &[u8]) -> Result<ApiError, ApiError> {
    Ok(if store.credential_of_disabled_account(hash).await? {
        ApiError::AccountDisabled
    } else {
        ApiError::Unauthorized
    })
}

/// Extractor for handlers that need a signed-in account.
pub struct Authed(pub User);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let jar = CookieJar::from_headers(&parts.headers);
        current_user(&state.store, &parts.headers, &jar)
            .await?
            .map(Authed)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The client's address: the socket's peer, or — only when that peer is a
/// configured trusted proxy — the right-most untrusted `X-Forwarded-For` entry.
pub fn client_ip(config: &Config, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !config.trusted_proxies.contains(&peer_ip) {
        return peer_ip;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !config.trusted_proxies.contains(ip))
        .unwrap_or(peer_ip)
}

/// Extractor for the client's address.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(ClientIp(client_ip(&state.config, peer, &parts.headers)))
    }
}

/// A cookie with the attributes every Conclave cookie has.
pub fn cookie(
    config: &Config,
    name: &'static str,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(config.secure_cookies())
        .max_age(cookie_duration(max_age_secs))
        .build()
}

fn cookie_duration(secs: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_header_is_ignored_without_a_trusted_proxy() {
        let c = Config::default();
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        assert_eq!(client_ip(&c, peer, &headers("1.2.3.4")), peer.ip());
    }

    #[test]
    fn trusted_proxy_yields_the_rightmost_untrusted_address() {
        let c = Config {
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            ..Config::default()
        };
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        // The client may forge the left part; only what the proxy appended counts.
        let ip = client_ip(&c, peer, &headers("6.6.6.6, 198.51.100.7"));
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        let ip = client_ip(&c, peer, &headers("garbage"));
        assert_eq!(ip, peer.ip());
    }
}
