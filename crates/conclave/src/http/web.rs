//! The web client, embedded in the binary, and the headers every response carries.

use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use tower_http::compression::CompressionLayer;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// No inline script, no eval (wasm excepted, for the E2EE module), nothing from
/// other hosts, never framed. `{connect}`: the page fetches only from here and
/// from the configured OpenID providers (their discovery documents and keys,
/// to check the names in members' leaves; docs/security.md §15).
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
    connect-src 'self'{connect}; worker-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The CSP with each provider's issuer origin, and the origin of its keys
/// (`keys`, from its discovery document: Google's are on another host than
/// its issuer), added to `connect-src`.
fn csp(providers: &[crate::oidc::ProviderConfig], keys: &[String]) -> String {
    let mut origins: Vec<String> = Vec::new();
    for p in providers {
        if let Ok(url) = url::Url::parse(&p.issuer) {
            let origin = url.origin().ascii_serialization();
            // An origin is scheme://host[:port]: nothing that could end the directive.
            if origin != "null" && !origin.contains([' ', ';', ',', '\'']) {
                origins.push(origin);
            }
        }
    }
    for k in keys {
        // Already checked by oidc::page_fetchable_origin; checked again here,
        // where it is written into the header.
        if let Some(origin) = url::Url::parse(k)
            .ok()
            .and_then(|u| crate::oidc::page_fetchable_origin(&u))
        {
            origins.push(origin);
        }
    }
    let mut connect = String::new();
    for (i, o) in origins.iter().enumerate() {
        if !origins[..i].contains(o) {
            connect.push(' ');
            connect.push_str(o);
        }
    }
    CSP.replace("{connect}", &connect)
}

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

macro_rules! blur_file {
    ($name:literal, $mime:literal) => {
        (
            $name,
            $mime,
            include_bytes!(concat!("../../../../vendor/blur/", $name)),
        )
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
    asset!("admin.js", "text/javascript; charset=utf-8"),
    asset!("meeting-form.js", "text/javascript; charset=utf-8"),
    asset!("join.js", "text/javascript; charset=utf-8"),
    asset!("call.js", "text/javascript; charset=utf-8"),
    asset!("state.js", "text/javascript; charset=utf-8"),
    asset!("signaling.js", "text/javascript; charset=utf-8"),
    asset!("media.js", "text/javascript; charset=utf-8"),
    asset!("peer.js", "text/javascript; charset=utf-8"),
    asset!("transport.js", "text/javascript; charset=utf-8"),
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
    asset!("red.js", "text/javascript; charset=utf-8"),
    asset!("outcome.js", "text/javascript; charset=utf-8"),
    asset!("appmsg.js", "text/javascript; charset=utf-8"),
    asset!("features.js", "text/javascript; charset=utf-8"),
    asset!("features.css", "text/css; charset=utf-8"),
    asset!("hands.js", "text/javascript; charset=utf-8"),
    asset!("publishing.js", "text/javascript; charset=utf-8"),
    asset!("virtual-list.js", "text/javascript; charset=utf-8"),
    asset!("speaking.js", "text/javascript; charset=utf-8"),
    asset!("reactions.js", "text/javascript; charset=utf-8"),
    asset!("polls.js", "text/javascript; charset=utf-8"),
    asset!("openpubkey.js", "text/javascript; charset=utf-8"),
    asset!("layout.js", "text/javascript; charset=utf-8"),
    asset!("layout.css", "text/css; charset=utf-8"),
    asset!("breakout.js", "text/javascript; charset=utf-8"),
    asset!("breakout.css", "text/css; charset=utf-8"),
    asset!("blur.js", "text/javascript; charset=utf-8"),
    asset!("blur-worker.js", "text/javascript; charset=utf-8"),
];

/// The background blur's model and runtime (TensorFlow.js and MediaPipe's
/// selfie segmentation), vendored from npm into `vendor/blur/` by
/// scripts/vendor-blur and served at `/blur/` to web/blur-worker.js: the
/// browser fetches nothing from anywhere else.
const BLUR_FILES: &[(&str, &str, &[u8])] = &[
    blur_file!("tf-core.es2017.min.js", "text/javascript; charset=utf-8"),
    blur_file!(
        "tf-converter.es2017.min.js",
        "text/javascript; charset=utf-8"
    ),
    blur_file!(
        "tf-backend-wasm.es2017.min.js",
        "text/javascript; charset=utf-8"
    ),
    blur_file!("tfjs-backend-wasm.wasm", "application/wasm"),
    blur_file!("tfjs-backend-wasm-simd.wasm", "application/wasm"),
    blur_file!("selfie.json", "application/json"),
    blur_file!("selfie.bin", "application/octet-stream"),
];

async fn blur_file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match BLUR_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => static_file(&headers, mime, body),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The browser's E2EE module (crates/conclave-e2ee-wasm), compiled to wasm32 and bound by
/// wasm-bindgen in build.rs; served at `/e2ee/` so the worker can import it by that path.
const E2EE_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/e2ee/conclave_e2ee.js"));
const E2EE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/e2ee/conclave_e2ee_bg.wasm"));

include!(concat!(env!("OUT_DIR"), "/e2ee_snippets.rs"));

async fn e2ee_snippet(Path((dir, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let path = format!("{dir}/{file}");
    match E2EE_SNIPPETS.iter().find(|(name, _)| *name == path) {
        Some((_, body)) => static_file(&headers, "text/javascript; charset=utf-8", body),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn e2ee_js(headers: HeaderMap) -> Response {
    static_file(&headers, "text/javascript; charset=utf-8", E2EE_JS)
}

async fn e2ee_wasm(headers: HeaderMap) -> Response {
    static_file(&headers, "application/wasm", E2EE_WASM)
}

/// A file of the web client. `no-cache` has the browser ask again on every
/// load, so a new server version is picked up at once; the `ETag` lets it
/// hear "304, yours is current" instead of the whole file (the wasm module
/// is over 2 MB). Weak, because the compression layer sends the same
/// content in several encodings, and the tag must match all of them.
/// `Vary: Accept-Encoding` on every answer, 304 included, so that a shared
/// cache never hands a brotli body to a browser that asked for gzip.
fn static_file(headers: &HeaderMap, mime: &'static str, body: &'static [u8]) -> Response {
    let etag = etag_of(body);
    let current = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag.trim_start_matches("W/"));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("W/\"-\"")),
        ),
    ];
    if current {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(mime))],
        body,
    )
        .into_response()
}

/// `W/"…"` from the first 16 bytes of the file's SHA-256, computed once per
/// file (by address: every body is a `'static` constant of the binary).
fn etag_of(body: &'static [u8]) -> String {
    static TAGS: LazyLock<Mutex<HashMap<usize, String>>> = LazyLock::new(Mutex::default);
    let key = body.as_ptr() as usize;
    let mut tags = TAGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tags.entry(key)
        .or_insert_with(|| {
            let digest = Sha256::digest(body);
            format!("W/\"{}\"", hex::encode(&digest[..16]))
        })
        .clone()
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => static_file(headers, a.mime, a.body.as_bytes()),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// Brotli (quality 4, tower-http's on-the-fly default, as nginx's) or gzip,
/// as the browser's `Accept-Encoding` prefers, for the web client's files
/// only. Never the API: its JSON carries session tokens and secrets beside
/// text an attacker may choose, which compression would leak by length
/// (BREACH); and never the WebSocket, whose upgrade has no body to compress.
/// Bodies that already carry a `Content-Encoding`, images and anything under
/// 32 bytes pass through as they are (tower-http's defaults).
fn compression() -> CompressionLayer {
    CompressionLayer::new().br(true).gzip(true)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/signin", get(index))
        .route("/admin", get(index))
        .route("/j/{id}", get(index))
        .route("/assets/{name}", get(asset))
        .route("/e2ee/conclave_e2ee.js", get(e2ee_js))
        .route("/e2ee/conclave_e2ee_bg.wasm", get(e2ee_wasm))
        .route("/e2ee/snippets/{dir}/{file}", get(e2ee_snippet))
        .route("/blur/{name}", get(blur_file))
        .layer(compression())
}

/// The origins (scheme, host, port) this server's pages are served from, as
/// browsers name them in `Origin`.
///
/// Comparing `Origin` with `Host` is not enough: after DNS rebinding, a page
/// at `http://evil.example:8080` whose name now points at the server sends
/// `Host: evil.example:8080` and `Origin: http://evil.example:8080`, and the
/// two agree. So the origin must be one the operator configured
/// (`public_url`), or, when none is, a loopback origin of the port the
/// server listens on (or the address it listens on, when that is a single
/// address): what a default, local server is actually reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(Vec<url::Origin>);

impl Origins {
    /// `public_url` as configured (before any default is filled in) and the
    /// address the server is bound to.
    pub fn new(public_url: Option<&str>, bound: SocketAddr) -> Origins {
        if let Some(u) = public_url {
            // Config::validate has refused anything that does not parse.
            return Origins(url::Url::parse(u).map(|u| u.origin()).into_iter().collect());
        }
        let port = bound.port();
        let mut hosts = vec!["localhost".to_string()];
        match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => hosts.push("127.0.0.1".into()),
            // A socket on [::] takes IPv4 too, on every system Conclave runs on.
            IpAddr::V6(ip) if ip.is_unspecified() => {
                hosts.extend(["127.0.0.1".into(), "[::1]".into()]);
            }
            IpAddr::V4(ip) => hosts.push(ip.to_string()),
            IpAddr::V6(ip) => hosts.push(format!("[{ip}]")),
        }
        let origins = hosts
            .iter()
            .filter_map(|h| url::Url::parse(&format!("http://{h}:{port}")).ok())
            .map(|u| u.origin())
            .collect();
        Origins(origins)
    }

    /// Whether a request's `Origin` (if any) is this server. Browsers send it
    /// on cross-site POSTs and on every WebSocket handshake; any other origin
    /// is a page elsewhere riding on someone's cookie. Requests without it
    /// (non-browser clients, which carry their own credentials) pass.
    pub fn allow(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
            return false;
        };
        // "null" and other opaque origins parse to an origin equal to nothing.
        let origin = origin.origin();
        origin.is_tuple() && self.0.contains(&origin)
    }

    /// The allowed origins, as `Origin` headers spell them (for logs).
    pub fn describe(&self) -> String {
        let list: Vec<_> = self
            .0
            .iter()
            .map(url::Origin::ascii_serialization)
            .collect();
        list.join(", ")
    }
}

/// Refuses cross-origin state changes, adds security headers, logs the request
/// by its route (never its query string).
pub async fn guard_and_headers(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "-".into());
    // By path, not by route: the API's fallback 404 has no route, and no
    // API answer, error or not, may be kept by a cache.
    let api = req.uri().path().starts_with("/api/");
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut resp = if changes_state && !state.origins.allow(req.headers()) {
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
        HeaderValue::from_str(&csp(&state.config.oidc, &state.oidc.keys_origins()))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
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
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(origin: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(o) = origin {
            m.insert(header::ORIGIN, o.parse().unwrap());
        }
        m
    }

    #[test]
    fn a_configured_public_url_is_the_only_origin() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let o = Origins::new(Some("https://meet.example.org"), bound);
        assert!(o.allow(&h(None)));
        assert!(o.allow(&h(Some("https://meet.example.org"))));
        assert!(o.allow(&h(Some("https://MEET.example.org:443"))));
        for other in [
            "http://meet.example.org",
            "https://meet.example.org:8443",
            "https://evil.example",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "null",
            "garbage",
        ] {
            assert!(!o.allow(&h(Some(other))), "{other}");
        }
        let o = Origins::new(Some("http://10.0.0.5:8080/"), bound);
        assert!(o.allow(&h(Some("http://10.0.0.5:8080"))));
        assert!(!o.allow(&h(Some("http://10.0.0.5"))));
    }

    #[test]
    fn without_a_public_url_only_the_loopback_origins_served_pass() {
        let o = Origins::new(None, "127.0.0.1:8080".parse().unwrap());
        assert!(o.allow(&h(Some("http://localhost:8080"))));
        assert!(o.allow(&h(Some("http://127.0.0.1:8080"))));
        for other in [
            "http://evil.example:8080",
            "http://evil.example",
            "http://localhost:8081",
            "https://localhost:8080",
            "http://[::1]:8080",
            "http://127.0.0.2:8080",
        ] {
            assert!(!o.allow(&h(Some(other))), "{other}");
        }
        let o = Origins::new(None, "[::]:9000".parse().unwrap());
        assert!(o.allow(&h(Some("http://[::1]:9000"))));
        assert!(o.allow(&h(Some("http://127.0.0.1:9000"))));
        assert!(!o.allow(&h(Some("http://evil.example:9000"))));
        let o = Origins::new(None, "192.0.2.7:8080".parse().unwrap());
        assert!(o.allow(&h(Some("http://192.0.2.7:8080"))));
        assert!(!o.allow(&h(Some("http://127.0.0.1:8080"))));
    }

    /// A body that already carries an encoding, and an image, go out as
    /// they are, even to a client that would take brotli.
    #[tokio::test]
    async fn what_is_already_compressed_is_not_compressed_again() {
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let pre = noise.clone();
        let png = noise.clone();
        let app =
            Router::new()
                .route(
                    "/pre",
                    get(move || async move {
                        ([(header::CONTENT_ENCODING, "br")], pre).into_response()
                    }),
                )
                .route(
                    "/png",
                    get(move || async move {
                        ([(header::CONTENT_TYPE, "image/png")], png).into_response()
                    }),
                )
                .route("/text", get(|| async { "conclave ".repeat(100) }))
                .layer(compression());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        for (path, expect) in [("/pre", Some("br")), ("/png", None), ("/text", Some("br"))] {
            let resp = client
                .get(format!("http://{addr}{path}"))
                .header(header::ACCEPT_ENCODING, "br, gzip")
                .send()
                .await
                .unwrap();
            let encodings: Vec<_> = resp
                .headers()
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .cloned()
                .collect();
            assert_eq!(
                encodings.len(),
                usize::from(expect.is_some()),
                "{path}: {encodings:?}"
            );
            assert_eq!(
                encodings.first().and_then(|v| v.to_str().ok()),
                expect,
                "{path}"
            );
            let body = resp.bytes().await.unwrap();
            if path != "/text" {
                assert_eq!(
                    body.as_ref(),
                    noise.as_slice(),
                    "{path}: the bytes as they were"
                );
            }
        }
    }

    #[test]
    fn every_asset_is_embedded() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
    }

    #[test]
    fn every_vendored_blur_file_is_served() {
        // A file scripts/vendor-blur fetches but BLUR_FILES lacks would 404.
        let sums = include_str!("../../../../vendor/blur/SHA256SUMS");
        for line in sums.lines() {
            let name = line.split_whitespace().last().unwrap();
            if name.starts_with("LICENSE") {
                continue;
            }
            assert!(
                BLUR_FILES
                    .iter()
                    .any(|(n, _, b)| *n == name && !b.is_empty()),
                "vendor/blur/{name} is not in BLUR_FILES"
            );
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
