//! Web-facing guarantees over a real socket: passcodes as people type them,
//! the content security policy, cross-site WebSocket refusal.

use crate::common::{TestServer, WsOpts, join};
use serde_json::json;

#[tokio::test]
async fn meetings_without_passcode_and_custom_passcodes() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let open = api
        .create_meeting(json!({"settings": {"passcode_required": false}}))
        .await;
    assert_eq!(open.view["passcode"], serde_json::Value::Null);
    assert!(
        !open.view["invite_link"]
            .as_str()
            .unwrap_or_default()
            .contains('#')
    );
    let custom = api
        .create_meeting(json!({"passcode": "Tea-Time-2026"}))
        .await;
    // Stored in the form people type it back in: case and dashes folded.
    assert_eq!(custom.view["passcode"], "teat1me2026");
    let mut ws = server.ws(&custom.id, WsOpts::default()).await;
    ws.send(join("Guest", "TEA-TIME-2026")).await;
    assert_eq!(ws.recv().await["type"], "waiting");
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
    let api = server.signed_in("alice").await;
    let meeting = api.create_meeting(json!({})).await;
    let hijack = server
        .try_ws(
            &meeting.id,
            WsOpts {
                cookie: api.cookie_header(),
                origin: Some("http://evil.example".into()),
                ..WsOpts::default()
            },
        )
        .await;
    assert!(hijack.is_err());
}
