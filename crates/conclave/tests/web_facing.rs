//! Web-facing guarantees over a real socket: passcodes as people type them,
//! the content security policy, cross-site WebSocket refusal.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn meetings_without_passcode_and_custom_passcodes() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let open = http
        .meeting(json!({"settings": {"passcode_required": false}}))
        .await;
    assert_eq!(open["passcode"], serde_json::Value::Null);
    assert!(
        !open["invite_link"]
            .as_str()
            .unwrap_or_default()
            .contains('#')
    );
    let custom = http.meeting(json!({"passcode": "Tea-Time-2026"})).await;
    // Stored in the form people type it back in: case and dashes folded.
    assert_eq!(custom["passcode"], "teat1me2026");
    let mut ws = Ws::connect(&server, &id(&custom), WsOptions::default()).await;
    assert_eq!(
        ws.join("Guest", Some("TEA-TIME-2026")).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy() {
    let server = TestServer::start().await;
    let resp = reqwest::get(server.url("/j/abcd-efgh-jkmn-pqrs"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("csp")
        .to_string();
    assert!(csp.contains("script-src 'self'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
}

#[tokio::test]
async fn cross_site_websocket_is_refused() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({})).await;
    let hijack = Ws::try_connect(
        &server,
        &id(&meeting),
        WsOptions {
            cookie: http.cookie_header(),
            origin: Some("http://evil.example".into()),
            ..WsOptions::default()
        },
    )
    .await;
    assert!(hijack.is_err());
}
