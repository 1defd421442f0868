//! With TLS on, the plain-HTTP listener (usually port 80) that answers every
//! request with a permanent redirect to the same path on the HTTPS site.
//!
//! The target's scheme, host and port come from `public_url`, never from the
//! request's `Host` header: a redirect that echoed `Host` would send people
//! wherever a forged header said. Nothing else is served here: no API, no
//! cookies, so nothing can be read or set over plain HTTP.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `at` and serves redirects to `https_base` (`https://host[:port]`, no
/// trailing slash) until `shutdown`. Returns the bound address.
pub async fn start(
    at: SocketAddr,
    https_base: String,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(at).await?;
    let addr = listener.local_addr()?;
    let base = https_base.trim_end_matches('/').to_string();
    let app = Router::new().fallback(move |uri: Uri| {
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
