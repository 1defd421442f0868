//! A meeting's life over real sockets: joining, the waiting room, moderation,
//! resume after a drop, and the end.

use crate::support::*;
use serde_json::json;

async fn guest(server: &TestServer, meeting: &serde_json::Value, n: u8) -> Ws {
    Ws::connect(
        server,
        &id(meeting),
        WsOptions {
            from: Some(addr(n)),
            ..WsOptions::default()
        },
    )
    .await
}

/// `g` joins with the passcode, waits, and `host` admits it; returns its id.
async fn admit(host: &mut Ws, g: &mut Ws, pass: &str) -> serde_json::Value {
    panic_unless(&g.join("G", Some(pass)).await, "waiting");
    let room = host.until("waiting_room").await;
    let pid = room["waiting"][0]["id"].clone();
    host.send(json!({"type": "admit", "participant": pid}))
        .await;
    let joined = g.until("joined").await;
    assert_eq!(joined["you"], pid);
    pid
}

fn panic_unless(v: &serde_json::Value, kind: &str) {
    assert_eq!(v["type"], kind, "{v}");
}

#[tokio::test]
async fn cohost_moderates_but_cannot_remove_the_host() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    let pid = admit(&mut host, &mut g, &passcode(&meeting)).await;
    host.send(json!({"type": "set_role", "participant": pid, "role": "cohost"}))
        .await;
    let room = g.until("waiting_room").await;
    assert!(room["waiting"].as_array().is_some_and(Vec::is_empty));
    g.send(json!({"type": "remove", "participant": 1})).await;
    assert_eq!(g.until("error").await["code"], "not_permitted");
    g.send(json!({"type": "lock"})).await;
    assert_eq!(g.until("meeting_updated").await["meeting"]["locked"], true);
}

#[tokio::test]
async fn chat_reaches_every_member_as_sent() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut g = guest(&server, &meeting, 2).await;
    panic_unless(&g.join("G", Some(&passcode(&meeting))).await, "joined");
    let hostile = "<img src=x onerror=alert(1)>";
    g.send(json!({"type": "chat", "payload": hostile})).await;
    let at_host = host.until("chat").await;
    assert_eq!(at_host["payload"], hostile);
    let echo = g.until("chat").await;
    assert_eq!(echo["payload"], hostile);
}
