//! A meeting's life over real sockets: joining, the waiting room, moderation,
//! resume after a drop, and the end.

use std::net::Ipv4Addr;

use crate::common::{Api, Meeting, TestServer, Ws, WsOpts, join};
use serde_json::{Value, json};

/// A meeting with its owner in it as host: (their client, the meeting, the
/// host's socket).
async fn running_meeting(server: &TestServer, settings: Value) -> (Api, Meeting, Ws) {
    let api = server.signed_in("alice").await;
    let meeting = api.create_meeting(json!({ "settings": settings })).await;
    let (host, _) = server.host_joins(&api, &meeting.id).await;
    (api, meeting, host)
}

async fn guest(server: &TestServer, meeting: &Meeting, n: u8) -> Ws {
    server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, n)))
        .await
}

/// `g` joins with the passcode, waits, and `host` admits it; returns its id.
async fn admit(host: &mut Ws, g: &mut Ws, pass: &str) -> Value {
    g.send(join("G", pass)).await;
    panic_unless(&g.recv().await, "waiting");
    let room = host.recv_until("waiting_room").await;
    let pid = room["waiting"][0]["id"].clone();
    host.send(json!({"type": "admit", "participant": pid}))
        .await;
    let joined = g.recv_until("joined").await;
    assert_eq!(joined["you"], pid);
    pid
}

fn panic_unless(v: &Value, kind: &str) {
    assert_eq!(v["type"], kind, "{v}");
}

#[tokio::test]
async fn cohost_moderates_but_cannot_remove_the_host() {
    let server = TestServer::start().await;
    let (_api, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    let pid = admit(&mut host, &mut g, &meeting.passcode).await;
    host.send(json!({"type": "set_role", "participant": pid, "role": "cohost"}))
        .await;
    let room = g.recv_until("waiting_room").await;
    assert!(room["waiting"].as_array().is_some_and(Vec::is_empty));
    g.send(json!({"type": "remove", "participant": 1})).await;
    assert_eq!(g.recv_until("error").await["code"], "not_permitted");
    g.send(json!({"type": "lock"})).await;
    assert_eq!(
        g.recv_until("meeting_updated").await["meeting"]["locked"],
        true
    );
}

#[tokio::test]
async fn chat_reaches_every_member_as_sent() {
    let server = TestServer::start().await;
    let (_api, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut g = guest(&server, &meeting, 2).await;
    g.send(join("G", &meeting.passcode)).await;
    panic_unless(&g.recv().await, "joined");
    let hostile = "<img src=x onerror=alert(1)>";
    g.send(json!({"type": "chat", "payload": hostile})).await;
    let at_host = host.recv_until("chat").await;
    assert_eq!(at_host["payload"], hostile);
    let echo = g.recv_until("chat").await;
    assert_eq!(echo["payload"], hostile);
}
