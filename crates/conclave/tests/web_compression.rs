//! The web client goes out compressed (brotli or gzip, as the browser asks),
//! decodes to the very bytes of the file, says so in `Vary`, and is sent
//! again only when it changed (`ETag`); the API and the meeting WebSocket are
//! never compressed.

use std::io::Read;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

use crate::common::{TestServer, join};

/// A client that decodes nothing by itself: what comes is what was sent.
fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

struct Got {
    status: u16,
    encoding: Option<String>,
    vary: Vec<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET");
    let h = resp.headers();
    let one = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let encodings = h.get_all("content-encoding").iter().count();
    assert!(
        encodings <= 1,
        "{path}: {encodings} content-encoding headers"
    );
    Got {
        status: resp.status().as_u16(),
        encoding: one("content-encoding"),
        vary: h
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_lowercase)
            .collect(),
        etag: one("etag"),
        body: resp.bytes().await.expect("body").to_vec(),
    }
}

fn unbrotli(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(body, 4096)
        .read_to_end(&mut out)
        .expect("a brotli stream");
    out
}

fn ungzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip stream");
    out
}

#[tokio::test]
async fn the_web_client_goes_out_compressed_as_asked_and_decodes_to_the_same_bytes() {
    let server = TestServer::start().await;
    let mut sizes = Vec::new();
    for path in [
        "/e2ee/conclave_e2ee_bg.wasm",
        "/e2ee/conclave_e2ee.js",
        "/assets/style.css",
        "/assets/call.js",
        "/",
    ] {
        let plain = get(&server, path, &[]).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(
            plain.encoding, None,
            "{path}: asked for nothing, sent as is"
        );
        assert!(
            plain.vary.iter().any(|v| v.contains("accept-encoding")),
            "{path}: a cache must keep the encodings apart: {:?}",
            plain.vary
        );

        let br = get(&server, path, &[("accept-encoding", "br")]).await;
        assert_eq!(br.encoding.as_deref(), Some("br"), "{path}");
        assert!(br.vary.iter().any(|v| v.contains("accept-encoding")));
        assert!(br.body.len() < plain.body.len(), "{path}");
        assert_eq!(
            unbrotli(&br.body),
            plain.body,
            "{path}: brotli decodes to the file"
        );

        let gz = get(&server, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.encoding.as_deref(), Some("gzip"), "{path}");
        assert!(gz.body.len() < plain.body.len(), "{path}");
        assert_eq!(
            ungzip(&gz.body),
            plain.body,
            "{path}: gzip decodes to the file"
        );

        // The browser's own header: brotli preferred, and an encoding it
        // did not offer is never used.
        let chrome = get(
            &server,
            path,
            &[("accept-encoding", "gzip, deflate, br, zstd")],
        )
        .await;
        assert_eq!(chrome.encoding.as_deref(), Some("br"), "{path}");
        let refused = get(
            &server,
            path,
            &[("accept-encoding", "br;q=0, gzip;q=0, deflate")],
        )
        .await;
        assert_eq!(refused.encoding, None, "{path}");
        assert_eq!(refused.body, plain.body);

        // One tag for every encoding of the same file (weak: equivalent
        // content), and a browser holding it hears 304 with no body.
        let etag = plain.etag.clone().expect("an ETag");
        assert!(etag.starts_with("W/\""), "{etag}");
        assert_eq!(br.etag.as_ref(), Some(&etag));
        assert_eq!(gz.etag.as_ref(), Some(&etag));
        let again = get(
            &server,
            path,
            &[("accept-encoding", "br"), ("if-none-match", &etag)],
        )
        .await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert!(again.vary.iter().any(|v| v.contains("accept-encoding")));
        let stale = get(&server, path, &[("if-none-match", "W/\"0123\"")]).await;
        assert_eq!(stale.status, 200);
        assert_eq!(stale.body, plain.body);
        sizes.push((path, plain.body.len(), br.body.len(), gz.body.len()));
    }
    // For docs/operations.md: bytes as is, brotli, gzip.
    for (path, plain, br, gz) in &sizes {
        println!("{path}: {plain} bytes, brotli {br}, gzip {gz}");
    }
}

#[tokio::test]
async fn the_api_and_the_meeting_websocket_are_never_compressed() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"passcode_required": false}}))
        .await;

    // JSON answers can hold secrets beside text others choose: as is.
    let resp = api
        .request(reqwest::Method::GET, "/api/v1/meetings")
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-encoding").is_none());
    let body = resp.bytes().await.expect("body");
    let listed: serde_json::Value = serde_json::from_slice(&body).expect("plain JSON");
    assert!(listed.to_string().contains(&meeting.id));
    let resp = client()
        .get(server.url("/api/v1/openapi.json"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .expect("GET");
    assert!(resp.headers().get("content-encoding").is_none());

    // The upgrade carries no encoding and the frames are plain JSON.
    let url = format!("ws://{}/api/v1/meetings/{}/ws", server.addr, meeting.id);
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the upgrade");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("content-encoding").is_none());
    ws.send(Message::text(join("Guest", "").to_string()))
        .await
        .expect("send");
    let first = tokio::time::timeout(crate::common::TIMEOUT, ws.next())
        .await
        .expect("an answer")
        .expect("a frame")
        .expect("a frame");
    let Message::Text(text) = first else {
        panic!("not a text frame: {first:?}");
    };
    let answer: serde_json::Value = serde_json::from_str(&text).expect("plain JSON");
    assert!(answer["type"].is_string(), "{answer}");
}
