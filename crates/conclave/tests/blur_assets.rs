//! The background blur's model and runtime (vendor/blur/, from npm) are served
//! by the binary itself, byte for byte what scripts/vendor-blur checked, with
//! the MIME types the browser needs, under a CSP that still allows nothing
//! from elsewhere; names outside the list are refused.

use crate::common::{self, TestServer};
use sha2::{Digest, Sha256};

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    reqwest::get(server.url(path)).await.expect("GET")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    common::header(response, name).unwrap_or_default()
}

const SUMS: &str = include_str!("../../../vendor/blur/SHA256SUMS");

#[tokio::test]
async fn every_vendored_file_is_served_as_npm_shipped_it() {
    let server = TestServer::start().await;
    let mut served = 0;
    for line in SUMS.lines() {
        let (sum, name) = line.split_once("  ").expect("sha256sum line");
        if name.starts_with("LICENSE") {
            // Kept beside the files for their terms; not served.
            let response = get(&server, &format!("/blur/{name}")).await;
            assert_eq!(response.status().as_u16(), 404, "{name}");
            continue;
        }
        let response = get(&server, &format!("/blur/{name}")).await;
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let mime = header(&response, "content-type");
        let want = match name.rsplit('.').next() {
            Some("wasm") => "application/wasm",
            Some("js") => "text/javascript; charset=utf-8",
            Some("json") => "application/json",
            _ => "application/octet-stream",
        };
        assert_eq!(mime, want, "{name}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let body = response.bytes().await.expect("body");
        assert_eq!(hex::encode(Sha256::digest(&body)), sum, "{name}");
        served += 1;
    }
    assert_eq!(
        served, 7,
        "the runtime's three scripts, two wasm modules, the model's two files"
    );
}

#[tokio::test]
async fn only_the_listed_names_are_served() {
    let server = TestServer::start().await;
    for path in [
        "/blur/SHA256SUMS",
        "/blur/README.md",
        "/blur/tfjs-backend-wasm-threaded-simd.wasm",
        "/blur/..%2F..%2FCargo.toml",
        "/blur/%2e%2e%2fweb.rs",
        "/blur/selfie.json%00",
        "/blur/SELFIE.JSON",
        "/blur/",
    ] {
        let status = get(&server, path).await.status().as_u16();
        assert_eq!(status, 404, "{path}");
    }
}

/// The worker loads everything from this server: every URL it names is a
/// path here that answers, and the CSP it runs under allows no other host,
/// no eval (WebAssembly compilation only) and workers from here only.
#[tokio::test]
async fn the_worker_names_only_paths_of_this_server_under_a_tight_csp() {
    let server = TestServer::start().await;
    let response = get(&server, "/assets/blur-worker.js").await;
    assert_eq!(response.status().as_u16(), 200);
    let csp = header(&response, "content-security-policy");
    let worker = response.text().await.expect("text");
    assert!(!worker.contains("http:") && !worker.contains("https:") && !worker.contains("//cdn"));
    let mut named = 0;
    for (at, _) in worker.match_indices("'/blur/") {
        let rest = &worker[at + 1..];
        let path = &rest[..rest.find('\'').expect("a closing quote")];
        let status = get(&server, path).await.status().as_u16();
        assert_eq!(status, 200, "{path}");
        named += 1;
    }
    assert!(named >= 6, "the worker names its files ({named})");
    for directive in csp.split(';').map(str::trim) {
        let mut words = directive.split_whitespace();
        let name = words.next().unwrap_or_default();
        let sources: Vec<_> = words.collect();
        match name {
            "script-src" => assert_eq!(sources, ["'self'", "'wasm-unsafe-eval'"], "{csp}"),
            "worker-src" | "connect-src" | "default-src" => {
                assert_eq!(sources, ["'self'"], "{name} in {csp}")
            }
            _ => {}
        }
    }
    assert!(
        !csp.contains("'unsafe-eval'") && !csp.contains("'unsafe-inline'"),
        "{csp}"
    );
}
