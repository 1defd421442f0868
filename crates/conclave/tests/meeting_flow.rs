//! A meeting's life over real sockets: joining, the waiting room, moderation,
//! resume after a drop, and the end.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

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
async fn guest_waits_and_host_admits() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    let waiting = g.join("Guest", Some(&passcode(&meeting))).await;
    panic_unless(&waiting, "waiting");
    let room = host.until("waiting_room").await;
    assert_eq!(room["waiting"][0]["name"], "Guest");
    let pid = room["waiting"][0]["id"].clone();
    host.send(json!({"type": "admit", "participant": pid}))
        .await;
    let joined = g.until("joined").await;
    assert_eq!(joined["role"], "participant");
    assert_eq!(joined["participants"].as_array().map(Vec::len), Some(2));
    assert!(
        joined["resume_token"]
            .as_str()
            .is_some_and(|t| t.len() > 20)
    );
    let seen = host.until("participant_joined").await;
    assert_eq!(seen["participant"]["name"], "Guest");
}

#[tokio::test]
async fn denied_guest_is_told_and_disconnected() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    panic_unless(&g.join("Guest", Some(&passcode(&meeting))).await, "waiting");
    let room = host.until("waiting_room").await;
    host.send(json!({"type": "deny", "participant": room["waiting"][0]["id"]}))
        .await;
    panic_unless(&g.recv().await, "denied");
    assert!(g.closed().await);
}

#[tokio::test]
async fn waiting_connection_receives_only_its_own_status() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let pass = passcode(&meeting);
    // A member to chat with and moderate.
    let mut member = guest(&server, &meeting, 2).await;
    member
        .send(json!({"type": "join", "name": "Member", "passcode": pass}))
        .await;
    panic_unless(&member.recv().await, "waiting");
    let room = host.until("waiting_room").await;
    host.send(json!({"type": "admit", "participant": room["waiting"][0]["id"]}))
        .await;
    let member_id = member.until("joined").await["you"].clone();

    // The one who waits, and records everything.
    let mut waiter = guest(&server, &meeting, 3).await;
    let status = waiter.join("Waiter", Some(&pass)).await;
    panic_unless(&status, "waiting");
    host.until("waiting_room").await;

    // Everything a meeting does while they wait.
    host.send(json!({"type": "chat", "payload": "secret plans"}))
        .await;
    member
        .send(json!({"type": "chat", "payload": "more secrets"}))
        .await;
    host.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    host.send(json!({"type": "stop_media", "participant": member_id, "kind": "audio"}))
        .await;
    host.send(json!({"type": "set_role", "participant": member_id, "role": "cohost"}))
        .await;
    host.send(json!({"type": "lock"})).await;
    host.send(json!({"type": "unlock"})).await;
    host.send(json!({"type": "set_permissions", "permissions": {"chat": false}}))
        .await;
    host.send(json!({"type": "media_offer", "sdp": "v=0", "tracks": []}))
        .await;
    member.send(json!({"type": "leave"})).await;
    let late = guest(&server, &meeting, 4).await;
    drop(late);
    // Let it all propagate, then check what the waiter got.
    host.until("participant_left").await;
    assert!(waiter.quiet_for(Duration::from_millis(500)).await);
    assert_eq!(waiter.received.len(), 1, "{:?}", waiter.received);
    assert_eq!(waiter.received[0]["type"], "waiting");
    let keys: Vec<_> = waiter.received[0]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["type".to_string(), "you".to_string()]);
}

#[tokio::test]
async fn locked_meeting_refuses_even_the_right_passcode() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    host.send(json!({"type": "lock"})).await;
    assert_eq!(
        host.until("meeting_updated").await["meeting"]["locked"],
        true
    );
    let mut g = guest(&server, &meeting, 2).await;
    let refused = g.join("Guest", Some(&passcode(&meeting))).await;
    assert_eq!(refused["code"], "locked");
    assert!(g.closed().await);
    host.send(json!({"type": "unlock"})).await;
    host.until("meeting_updated").await;
    let mut g = guest(&server, &meeting, 2).await;
    panic_unless(&g.join("Guest", Some(&passcode(&meeting))).await, "waiting");
}

#[tokio::test]
async fn removed_guest_is_banned_even_after_a_restart() {
    let mut server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let pass = passcode(&meeting);
    let mut g = guest(&server, &meeting, 2).await;
    let cookie = g.guest_cookie.clone().expect("a guest cookie");
    let pid = admit(&mut host, &mut g, &pass).await;
    host.send(json!({"type": "remove", "participant": pid}))
        .await;
    panic_unless(&g.recv().await, "removed");
    assert!(g.closed().await);
    let left = host.until("participant_left").await;
    assert_eq!(left["reason"], "removed");

    let mut again = Ws::connect(
        &server,
        &id(&meeting),
        WsOptions {
            cookie: Some(cookie.clone()),
            from: Some(addr(2)),
            ..WsOptions::default()
        },
    )
    .await;
    assert_eq!(again.join("Troll", Some(&pass)).await["code"], "banned");

    // The ban is in the store: it survives a restart on the same data dir.
    drop(host);
    server.stop().await;
    let dir = server.dir;
    let server2 = TestServer::start_with(|c| c.data_dir = dir.path().to_path_buf()).await;
    let mut again = Ws::connect(
        &server2,
        &id(&meeting),
        WsOptions {
            cookie: Some(cookie),
            from: Some(addr(2)),
            ..WsOptions::default()
        },
    )
    .await;
    assert_eq!(again.join("Troll", Some(&pass)).await["code"], "banned");
    drop(dir);
}

#[tokio::test]
async fn suspend_stops_participants_and_locks() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    admit(&mut host, &mut g, &passcode(&meeting)).await;
    g.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    let on = g.until("participant_updated").await;
    assert_eq!(on["participant"]["audio"], true);

    host.send(json!({"type": "suspend_activities"})).await;
    let off = g.until("participant_updated").await;
    assert_eq!(off["participant"]["audio"], false);
    assert_eq!(off["participant"]["video"], false);
    let state = g.until("meeting_updated").await;
    assert_eq!(state["meeting"]["suspended"], true);
    assert_eq!(state["meeting"]["locked"], true);
    g.send(json!({"type": "chat", "payload": "hello?"})).await;
    assert_eq!(g.until("error").await["code"], "not_permitted");
    g.send(json!({"type": "set_media", "audio": true})).await;
    assert_eq!(g.until("error").await["code"], "not_permitted");
}

#[tokio::test]
async fn dropped_member_resumes_its_seat_without_waiting() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let mut g = guest(&server, &meeting, 2).await;
    let pid = admit(&mut host, &mut g, &passcode(&meeting)).await;
    let joined = g.received.last().cloned().expect("joined");
    let token = joined["resume_token"].as_str().expect("token").to_string();
    drop(g);
    let update = host.until("participant_updated").await;
    assert_eq!(update["participant"]["presence"], "reconnecting");

    let mut back = guest(&server, &meeting, 2).await;
    back.send(json!({"type": "resume", "token": token})).await;
    let again = back.recv().await;
    panic_unless(&again, "joined");
    assert_eq!(again["you"], pid);
    let update = host.until("participant_updated").await;
    assert_eq!(update["participant"]["presence"], "connected");

    let mut thief = guest(&server, &meeting, 3).await;
    thief
        .send(json!({"type": "resume", "token": "AAAAAAAAAAAAAAAAAAAAAA"}))
        .await;
    assert_eq!(thief.recv().await["code"], "resume_failed");
}

#[tokio::test]
async fn ending_the_meeting_tells_everyone() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut g = guest(&server, &meeting, 2).await;
    panic_unless(&g.join("G", Some(&passcode(&meeting))).await, "joined");
    g.send(json!({"type": "end_meeting"})).await;
    assert_eq!(g.until("error").await["code"], "not_permitted");
    host.send(json!({"type": "end_meeting"})).await;
    let ended = g.until("ended").await;
    assert_eq!(ended["reason"], "ended_by_host");
    assert!(g.closed().await);
    assert_eq!(host.until("ended").await["reason"], "ended_by_host");
}

#[tokio::test]
async fn deleting_a_running_meeting_ends_it() {
    let server = TestServer::start().await;
    let (http, meeting, mut host) = running_meeting(&server, json!({})).await;
    let (status, _) = http
        .delete(&format!("/api/v1/meetings/{}", id(&meeting)))
        .await;
    assert_eq!(status, 204);
    assert_eq!(host.until("ended").await["reason"], "deleted");
    let mut g = guest(&server, &meeting, 2).await;
    assert_eq!(
        g.join("G", Some(&passcode(&meeting))).await["code"],
        "join_refused"
    );
}

#[tokio::test]
async fn shutdown_tells_members_the_server_is_stopping() {
    let mut server = TestServer::start().await;
    let (_http, _meeting, mut host) = running_meeting(&server, json!({})).await;
    let stop = tokio::spawn(async move {
        server.stop().await;
        server
    });
    assert_eq!(host.until("ended").await["reason"], "server_shutdown");
    let _server = stop.await.expect("stopped");
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
