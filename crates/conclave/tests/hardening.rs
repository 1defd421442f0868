//! Issue 13's hardening, over real HTTP and WebSockets: `Origin` checked
//! against the server's own origins (not against `Host`, which a DNS-rebinding
//! page controls), API bodies that must be JSON objects, signaling messages
//! with a key twice, the OpenAPI document's security and error responses,
//! and `Cache-Control: no-store` on every API answer.

use crate::common::{PASSWORD, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A sign-in POST with these `Host` and `Origin` headers; its status.
async fn sign_in_with(server: &TestServer, host: Option<&str>, origin: &str) -> StatusCode {
    let mut req = server
        .api()
        .request(reqwest::Method::POST, "/api/v1/auth/signin")
        .header("origin", origin)
        .json(&json!({"username": "alice", "password": PASSWORD}));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    req.send().await.expect("request").status()
}

/// A meeting WebSocket handshake with these `Host` and `Origin` headers;
/// the HTTP status it got (101 when upgraded).
async fn handshake_with(server: &TestServer, meeting: &str, host: &str, origin: &str) -> u16 {
    let url = format!("ws://{}/api/v1/meetings/{meeting}/ws", server.addr);
    let mut req = url.into_client_request().expect("request");
    let h = req.headers_mut();
    h.insert("host", HeaderValue::from_str(host).expect("host"));
    h.insert("origin", HeaderValue::from_str(origin).expect("origin"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((_ws, resp)) => resp.status().as_u16(),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_in_host_and_origin_alike_is_refused() {
    // DNS rebinding: a page at evil.example:<port>, its name now pointing at
    // the server, sends Host and Origin that agree with each other.
    let server = TestServer::start().await;
    let port = server.addr.port();
    let evil_host = format!("evil.example:{port}");
    let evil_origin = format!("http://evil.example:{port}");
    assert_eq!(
        sign_in_with(&server, Some(&evil_host), &evil_origin).await,
        StatusCode::FORBIDDEN
    );
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    assert_eq!(
        handshake_with(&server, &m.id, &evil_host, &evil_origin).await,
        403
    );
    // The loopback origins a default server is reached at still work...
    for origin in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        assert_eq!(sign_in_with(&server, None, &origin).await, StatusCode::OK);
        assert_eq!(
            handshake_with(&server, &m.id, &format!("127.0.0.1:{port}"), &origin).await,
            101
        );
    }
    // ...but not another port's, another scheme's or another loopback
    // address the server does not listen on.
    for origin in [
        format!("http://localhost:{}", port.wrapping_add(1)),
        format!("https://localhost:{port}"),
        format!("http://127.0.0.2:{port}"),
        "null".to_string(),
    ] {
        assert_eq!(
            sign_in_with(&server, None, &origin).await,
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_public_url_only_its_origin_passes() {
    let server = TestServer::start_with(|c| {
        c.public_url = Some("https://meet.example.org".into());
    })
    .await;
    let port = server.addr.port();
    assert_eq!(
        sign_in_with(
            &server,
            Some("meet.example.org"),
            "https://meet.example.org"
        )
        .await,
        StatusCode::OK
    );
    for (host, origin) in [
        // Scheme, port and host are all part of it.
        ("meet.example.org", "http://meet.example.org"),
        ("meet.example.org:8443", "https://meet.example.org:8443"),
        ("evil.example", "https://evil.example"),
        // Loopback is not the server's origin once a public URL is set.
        (
            &*format!("127.0.0.1:{port}"),
            &*format!("http://127.0.0.1:{port}"),
        ),
    ] {
        assert_eq!(
            sign_in_with(&server, Some(host), origin).await,
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }
    // The meeting socket follows the same rule.
    let id = "abcd-efgh-jkmn-pqrs";
    assert_eq!(
        handshake_with(&server, id, "meet.example.org", "https://meet.example.org").await,
        101
    );
    assert_eq!(
        handshake_with(&server, id, "evil.example", "https://evil.example").await,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_public_url_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = conclave::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        media_listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        public_url: Some("meet.example.org".into()),
        ..conclave::Config::default()
    };
    assert!(conclave::Server::start(config).await.is_err());
}

/// The value of a response's `Cache-Control`.
fn cache_control(resp: &reqwest::Response) -> Option<String> {
    crate::common::header(resp, "cache-control")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_bodies_must_be_json_objects() {
    let server = TestServer::start().await;
    let anonymous = server.api();
    // An array in the fields' order would deserialize into the struct: here
    // it would have signed alice in.
    let (status, err) = anonymous
        .post("/api/v1/auth/signin", json!(["alice", PASSWORD]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"], "invalid");
    assert_eq!(err["message"], "the body must be a JSON object");
    assert!(
        anonymous.cookie_header().is_none(),
        "no session from an array"
    );

    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({"title": "Kept"})).await;
    let before = alice.meetings().await;
    let path = format!("/api/v1/meetings/{}", m.id);
    let calls = [
        (reqwest::Method::POST, "/api/v1/auth/link".to_string()),
        (reqwest::Method::POST, "/api/v1/auth/signup".to_string()),
        (reqwest::Method::POST, "/api/v1/me/password".to_string()),
        (reqwest::Method::POST, "/api/v1/tokens".to_string()),
        (reqwest::Method::POST, "/api/v1/meetings".to_string()),
        (reqwest::Method::PATCH, path.clone()),
    ];
    let arrays = [
        json!([]),
        json!(["name"]),
        json!(["0".repeat(64)]),
        json!(["x", "long enough password"]),
        json!([{"title": "inner"}]),
    ];
    for (method, path) in &calls {
        for body in &arrays {
            // Sent with leading white space too: still not an object.
            for text in [body.to_string(), format!(" \n\t{body}")] {
                let resp = alice
                    .request(method.clone(), path)
                    .header("content-type", "application/json")
                    .body(text.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(cache_control(&resp).as_deref(), Some("no-store"));
                let (status, err) = crate::common::read(resp).await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{method} {path} {text}: {err}"
                );
                assert_eq!(err["message"], "the body must be a JSON object", "{err}");
            }
        }
        // Other JSON that is not an object is refused as well.
        for text in ["\"name\"", "42", "null", "true"] {
            let resp = alice
                .request(method.clone(), path)
                .header("content-type", "application/json")
                .body(text)
                .send()
                .await
                .expect("request");
            assert_eq!(
                resp.status(),
                StatusCode::BAD_REQUEST,
                "{method} {path} {text}"
            );
        }
    }
    assert_eq!(alice.meetings().await, before, "nothing changed");
    let (_, tokens) = alice.get("/api/v1/tokens").await;
    assert_eq!(tokens, json!([]), "no token was made");
    // Objects still work, with any white space in front.
    let resp = alice
        .request(reqwest::Method::POST, "/api/v1/tokens")
        .header("content-type", "application/json; charset=utf-8")
        .body(" \n{\"name\": \"script\"}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signaling_message_with_a_key_twice_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &m.id).await;
    let mut guest = server.ws(&m.id, crate::common::WsOpts::default()).await;
    // Before joining: a join whose second `type` would make it a leave, and
    // one whose second name would replace the first.
    guest
        .send_text(r#"{"type":"join","name":"Eve","passcode":"x","type":"leave"}"#)
        .await;
    guest.expect_error("bad_message").await;
    guest
        .send_text(&format!(
            r#"{{"type":"join","name":"Grace","passcode":"{}","name":"Host"}}"#,
            m.passcode
        ))
        .await;
    guest.expect_error("bad_message").await;
    guest.send(crate::common::join("Grace", &m.passcode)).await;
    assert_eq!(guest.recv().await["type"], "joined");
    host.recv_until("participant_joined").await;
    // In the meeting: a chat that is also a leave, with the key spelt with
    // an escape, and a duplicate inside a nested object; a hundred times
    // each, on one socket and then on the host's.
    let twice = [
        r#"{"type":"chat","payload":"hi","type":"leave"}"#,
        r#"{"type":"leave","t\u0079pe":"chat","payload":"hi"}"#,
        r#"{"type":"set_permissions","permissions":{"chat":true,"chat":false}}"#,
    ];
    for text in twice {
        for _ in 0..10 {
            guest.send_text(text).await;
            guest.expect_error("bad_message").await;
        }
    }
    for _ in 0..30 {
        host.send_text(twice[2]).await;
        host.expect_error("bad_message").await;
    }
    // Nobody left, nothing was said, the permissions are as they were.
    host.expect_silence(crate::common::QUIET).await;
    guest
        .send(json!({"type": "chat", "payload": "still here"}))
        .await;
    assert_eq!(host.recv_chat("still here").await["type"], "chat");
}

/// The operations of the OpenAPI document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

fn documents(op: &Value, status: StatusCode) -> bool {
    op["responses"].get(status.as_str()).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_true_to_the_code() {
    let server = TestServer::start().await;
    let (status, doc) = server.api().get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session_cookie"]["type"], "apiKey");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "conclave_session");
    assert_eq!(schemes["api_token"]["type"], "http");
    assert_eq!(schemes["api_token"]["scheme"], "bearer");

    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let concrete = |path: &str| path.replace("{id}", &m.id);
    let ops = operations(&doc);
    assert!(ops.len() >= 15, "{ops:?}");
    for (method, path, op) in &ops {
        let method: reqwest::Method = method.to_uppercase().parse().expect("method");
        let has_body = op.get("requestBody").is_some();
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured {
            // Either credential will do.
            let names: Vec<_> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                .collect();
            assert_eq!(names, ["session_cookie", "api_token"], "{method} {path}");
        }
        // Without credentials: 401 exactly when the document says some are
        // needed, and whatever comes back is documented.
        let mut req = server.api().request(method.clone(), &concrete(path));
        if has_body {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        assert_eq!(
            status == StatusCode::UNAUTHORIZED && secured,
            secured,
            "{method} {path}: {status}"
        );
        assert!(
            documents(op, status),
            "{method} {path}: {status} is not documented"
        );
        if path.starts_with("/api/") {
            assert_eq!(
                cache_control(&resp).as_deref(),
                Some("no-store"),
                "{method} {path}"
            );
        }
        if has_body {
            // A body that is not an object: 400, documented.
            let resp = alice
                .request(method.clone(), &concrete(path))
                .json(&json!([]))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method} {path}");
            assert!(
                documents(op, StatusCode::BAD_REQUEST),
                "{method} {path}: 400"
            );
        }
        if method != reqwest::Method::GET {
            // A foreign Origin: 403, documented.
            let resp = alice
                .request(method.clone(), &concrete(path))
                .header("origin", "http://evil.example")
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
            assert!(documents(op, StatusCode::FORBIDDEN), "{method} {path}: 403");
        }
    }
    // The operations that can answer 429 say so, and do.
    for path in [
        "/api/v1/auth/signin",
        "/api/v1/auth/link",
        "/api/v1/me/password",
    ] {
        let op = &doc["paths"][path]["post"];
        assert!(documents(op, StatusCode::TOO_MANY_REQUESTS), "{path}: 429");
        assert_eq!(
            op["responses"]["429"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }
    let anonymous = server.api();
    for _ in 0..5 {
        anonymous.sign_in("alice", "wrong password").await;
    }
    let (status, body) = anonymous.sign_in("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, _) = anonymous
        .post("/api/v1/auth/link", json!({"token": "0".repeat(64)}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answer_says_no_store() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let evil = |req: reqwest::RequestBuilder| req.header("origin", "http://evil.example");
    let requests = [
        // The fallback: no route at all.
        server
            .api()
            .request(reqwest::Method::GET, "/api/v1/nothing-here"),
        server
            .api()
            .request(reqwest::Method::POST, "/api/v1/meetings/x/y/z"),
        // A route without this method: 405.
        alice.request(reqwest::Method::PUT, "/api/v1/me"),
        // 401, 404, 400, 403.
        server.api().request(reqwest::Method::GET, "/api/v1/me"),
        alice.request(reqwest::Method::GET, "/api/v1/meetings/abcd-efgh-jkmn-pqrs"),
        alice
            .request(reqwest::Method::POST, "/api/v1/meetings")
            .header("content-type", "application/json")
            .body("{"),
        evil(alice.request(reqwest::Method::POST, "/api/v1/meetings")).json(&json!({})),
        // Successes too.
        alice.request(reqwest::Method::GET, "/api/v1/meetings"),
        server
            .api()
            .request(reqwest::Method::GET, "/api/v1/openapi.json"),
    ];
    let mut statuses = Vec::new();
    for req in requests {
        let resp = req.send().await.expect("request");
        statuses.push(resp.status().as_u16());
        assert_eq!(
            cache_control(&resp).as_deref(),
            Some("no-store"),
            "{} {:?}",
            resp.status(),
            resp.url().path()
        );
    }
    assert_eq!(statuses, [404, 404, 405, 401, 404, 400, 403, 200, 200]);
    // The fallback answers with the API's error shape.
    let (status, body) = server.api().get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    // A 429 too.
    for _ in 0..5 {
        server.api().sign_in("alice", "wrong password").await;
    }
    let resp = server
        .api()
        .request(reqwest::Method::POST, "/api/v1/auth/signin")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(cache_control(&resp).as_deref(), Some("no-store"));
    // Web pages are not API answers: they are revalidated, not forbidden.
    let resp = reqwest::get(server.url("/")).await.expect("request");
    assert_eq!(cache_control(&resp).as_deref(), Some("no-cache"));
}
