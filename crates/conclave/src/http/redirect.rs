//! With TLS on, the plain-HTTP listener (usually port 80) that answers every
//! request with a permanent redirect to the same path on the HTTPS site,
//! except an ACME CA's HTTP-01 challenge requests
//! (`/.well-known/acme-challenge/TOKEN`) while the server is getting a
//! certificate for `--domain` ([`crate::acme`]).
//!
//! The target's scheme, host and port come from `public_url`, never from the
//! request's `Host` header: a redirect that echoed `Host` would send people
//! wherever a forged header said. Nothing else is served here: no API, no
//! cookies, so nothing can be read or set over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::acme::Challenges;

/// The path prefix of HTTP-01 challenge requests (RFC 8555 §8.3).
const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/{token}";

/// Binds `at` and serves redirects to `https_base` (`https://host[:port]`, no
/// trailing slash) until `shutdown`, and the answers in `challenges` when
/// given. Returns the bound address.
pub async fn start(
    at: SocketAddr,
    https_base: String,
    challenges: Option<Arc<Challenges>>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(at).await?;
    let addr = listener.local_addr()?;
    let base = https_base.trim_end_matches('/').to_string();
    let mut app = Router::new();
    if let Some(challenges) = challenges {
        app = app.route(
            CHALLENGE_PATH,
            axum::routing::get(move |Path(token): Path<String>| async move {
                answer(&challenges, &token)
            }),
        );
    }
    let app = app.fallback(move |uri: Uri| {
        let base = base.clone();
        async move { redirect(&base, &uri) }
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the HTTP-to-HTTPS redirect stopped");
        }
    });
    tracing::info!(%addr, "redirecting plain HTTP to HTTPS");
    Ok(addr)
}

/// The key authorization for an open challenge; 404 for any other token,
/// so the path reveals nothing but what the CA is about to read anyway.
fn answer(challenges: &Challenges, token: &str) -> Response {
    match challenges.answer(token) {
        Some(key_authorization) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            key_authorization,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// 308 keeps the method and body, so a form posted to http:// arrives intact.
fn redirect(base: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("{base}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        // A path axum parsed is always a valid header value; refuse rather than panic.
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_public_url_with_the_requests_path_and_query() {
        let uri: Uri = "/j/abcd-efgh?x=1".parse().expect("uri");
        let r = redirect("https://meet.example.org", &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://meet.example.org/j/abcd-efgh?x=1"
        );
        let root: Uri = "/".parse().expect("uri");
        assert_eq!(
            redirect("https://meet.example.org", &root).headers()[header::LOCATION],
            "https://meet.example.org/"
        );
    }
}
