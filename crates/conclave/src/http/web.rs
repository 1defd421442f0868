//! The web client, embedded in the binary, and the headers every response carries.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// No inline script, no eval (wasm excepted, for the E2EE module), nothing from
/// other hosts, never framed.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
    connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $mime:literal) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_str!(concat!("../../../../web/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("router.js", "text/javascript; charset=utf-8"),
    asset!("chrome.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("icons.js", "text/javascript; charset=utf-8"),
    asset!("errors.js", "text/javascript; charset=utf-8"),
    asset!("toast.js", "text/javascript; charset=utf-8"),
    asset!("notices.js", "text/javascript; charset=utf-8"),
    asset!("signin.js", "text/javascript; charset=utf-8"),
    asset!("landing.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("meeting-form.js", "text/javascript; charset=utf-8"),
    asset!("join.js", "text/javascript; charset=utf-8"),
    asset!("call.js", "text/javascript; charset=utf-8"),
    asset!("state.js", "text/javascript; charset=utf-8"),
    asset!("signaling.js", "text/javascript; charset=utf-8"),
    asset!("media.js", "text/javascript; charset=utf-8"),
    asset!("peer.js", "text/javascript; charset=utf-8"),
    asset!("streams.js", "text/javascript; charset=utf-8"),
    asset!("devices.js", "text/javascript; charset=utf-8"),
    asset!("waiting.js", "text/javascript; charset=utf-8"),
    asset!("meeting.js", "text/javascript; charset=utf-8"),
    asset!("grid.js", "text/javascript; charset=utf-8"),
    asset!("toolbar.js", "text/javascript; charset=utf-8"),
    asset!("participants.js", "text/javascript; charset=utf-8"),
    asset!("chat.js", "text/javascript; charset=utf-8"),
    asset!("security.js", "text/javascript; charset=utf-8"),
    asset!("e2ee.js", "text/javascript; charset=utf-8"),
    asset!("e2ee-worker.js", "text/javascript; charset=utf-8"),
    asset!("outcome.js", "text/javascript; charset=utf-8"),
];

/// The browser's E2EE module (crates/conclave-e2ee-wasm), compiled to wasm32 and bound by
/// wasm-bindgen in build.rs; served at `/e2ee/` so the worker can import it by that path.
const E2EE_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/e2ee/conclave_e2ee.js"));
const E2EE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/e2ee/conclave_e2ee_bg.wasm"));

include!(concat!(env!("OUT_DIR"), "/e2ee_snippets.rs"));

async fn e2ee_snippet(Path((dir, file)): Path<(String, String)>) -> Response {
    let path = format!("{dir}/{file}");
    match E2EE_SNIPPETS.iter().find(|(name, _)| *name == path) {
        Some((_, body)) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn e2ee_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        E2EE_JS,
    )
        .into_response()
}

async fn e2ee_wasm() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/wasm"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        E2EE_WASM,
    )
        .into_response()
}

fn serve(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.mime),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/signin", get(index))
        .route("/j/{id}", get(index))
        .route("/assets/{name}", get(asset))
        .route("/e2ee/conclave_e2ee.js", get(e2ee_js))
        .route("/e2ee/conclave_e2ee_bg.wasm", get(e2ee_wasm))
        .route("/e2ee/snippets/{dir}/{file}", get(e2ee_snippet))
}

/// Whether a request's `Origin` (if any) is this server. Browsers send it on
/// cross-site POSTs and on every WebSocket handshake; a mismatch is a forged
/// request riding on someone's cookie.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Some(origin), Some(host)) = (
        origin.to_str().ok(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let origin_host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    origin_host.eq_ignore_ascii_case(host)
}

/// Refuses cross-origin state changes, adds security headers, logs the request
/// by its route (never its query string).
pub async fn guard_and_headers(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "-".into());
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut resp = if changes_state && !same_origin(req.headers()) {
        ApiError::Forbidden("cross-origin request refused").into_response()
    } else {
        let started = std::time::Instant::now();
        let resp = next.run(req).await;
        tracing::debug!(%method, %route, status = resp.status().as_u16(),
            micros = started.elapsed().as_micros() as u64, "request");
        resp
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if route.starts_with("/api/") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(o) = origin {
            m.insert(header::ORIGIN, o.parse().unwrap());
        }
        m.insert(header::HOST, host.parse().unwrap());
        m
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&h(None, "localhost:8080")));
        assert!(same_origin(&h(
            Some("http://localhost:8080"),
            "localhost:8080"
        )));
        assert!(!same_origin(&h(
            Some("http://evil.example"),
            "localhost:8080"
        )));
        assert!(!same_origin(&h(Some("null"), "localhost:8080")));
    }

    #[test]
    fn every_asset_is_embedded() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
    }

    #[test]
    fn every_file_of_the_web_client_is_served() {
        // A module added to web/ but not to ASSETS would 404 in the browser.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with('.') {
                continue;
            }
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "web/{name} is not in ASSETS"
            );
        }
    }
}
