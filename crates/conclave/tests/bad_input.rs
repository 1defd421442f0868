//! Bad input on the meeting WebSocket: malformed and unknown messages,
//! binary and oversized frames, floods and a thousand silent sockets. Each
//! gets a clear error or is closed, everyone else is served, nothing persisted
//! changes.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::common::{Meeting, QUIET, TestServer, WsOpts, join};
use conclave_proto::MAX_MESSAGE_BYTES;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (TestServer, crate::common::Api, Meeting) {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Robust"})).await;
    (server, alice, meeting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_clear_errors_and_change_nothing() {
    let (server, alice, meeting) = setup().await;
    let before = alice.meetings().await;

    // Before joining.
    let mut ws = server.ws(&meeting.id, WsOpts::default()).await;
    for (text, code) in [
        ("{", "bad_message"),
        ("[]", "bad_message"),
        ("\"join\"", "bad_message"),
        ("{\"name\":\"no type\"}", "bad_message"),
        ("{\"type\":\"launch_missiles\"}", "unknown_type"),
        ("{\"type\":42}", "bad_message"),
        ("{\"type\":\"join\"}", "bad_message"),
        ("{\"type\":\"join\",\"name\":[\"A\"]}", "bad_message"),
        ("{\"type\":\"lock\"}", "not_joined"),
        ("{\"type\":\"chat\",\"payload\":\"hi\"}", "not_joined"),
    ] {
        ws.send_text(text).await;
        let e = ws.recv().await;
        assert_eq!(e["type"], "error", "{text} gave {e}");
        assert_eq!(e["code"], code, "{text} gave {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.try_send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    ws.expect_error("bad_message").await;
    // Still usable: the right join works on the same socket.
    ws.send(join("Patient", &meeting.passcode)).await;
    assert_eq!(ws.recv().await["type"], "waiting");

    // As an admitted member.
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    for (text, code) in [
        (r#"{"type":"admit","participant":"p1"}"#, "bad_message"),
        (
            r#"{"type":"admit","participant":"1; DROP TABLE meetings"}"#,
            "bad_message",
        ),
        (r#"{"type":"admit","participant":-1}"#, "bad_message"),
        (r#"{"type":"admit","participant":1.5}"#, "bad_message"),
        (
            r#"{"type":"admit","participant":99999}"#,
            "unknown_participant",
        ),
        (r#"{"type":"remove","participant":null}"#, "bad_message"),
        (r#"{"type":"lock","extra":1}"#, "bad_message"),
        (
            r#"{"type":"set_role","participant":1,"role":"emperor"}"#,
            "bad_message",
        ),
        (
            r#"{"type":"stop_media","participant":1,"kind":"smell"}"#,
            "bad_message",
        ),
        (
            r#"{"type":"set_permissions","permissions":{"screen_share":"all"}}"#,
            "bad_message",
        ),
        (r#"{"type":"rename","name":""}"#, "invalid_name"),
        (
            r#"{"type":"rename","name":"bad\u0007name"}"#,
            "invalid_name",
        ),
        (r#"{"type":"ADMIT"}"#, "unknown_type"),
        (r#"{"type":"join","name":"Again"}"#, "already_joined"),
    ] {
        host.send_text(text).await;
        let e = host.recv_until("error").await;
        assert_eq!(e["code"], code, "{text} gave {e}");
    }
    let big_chat = json!({"type": "chat", "payload": "x".repeat(20 * 1024)});
    host.send(big_chat).await;
    host.expect_error("chat_too_large").await;
    host.try_send(Message::binary(vec![1u8; 100]))
        .await
        .unwrap();
    host.expect_error("bad_message").await;

    // The guest still waits and can be admitted: nothing was disturbed.
    let wid = ws.log[ws.log.len() - 1]["you"].clone();
    host.send(json!({"type": "admit", "participant": wid}))
        .await;
    assert_eq!(ws.recv().await["type"], "joined");
    assert_eq!(alice.meetings().await, with_running(&before));
}

/// The meeting list as it reads while the meeting runs.
fn with_running(list: &serde_json::Value) -> serde_json::Value {
    let mut list = list.clone();
    for m in list.as_array_mut().unwrap() {
        m["running"] = json!(true);
    }
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_that_connection() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let aid = aj["you"].clone();

    // One byte over the frame cap, which follows from the meeting size limit.
    let huge = json!({"type": "chat", "payload": "x".repeat(MAX_MESSAGE_BYTES)}).to_string();
    // The server may cut the connection while the frame is still going out.
    let _ = a.try_send(Message::text(huge)).await;
    let got = a.expect_closed().await;
    assert!(
        got.iter().all(|m| m["type"] == "error"),
        "no chat went through: {got:?}"
    );
    // The others saw Ann drop (her seat is kept for a resume), not her chat.
    loop {
        let m = host.recv().await;
        assert_ne!(m["type"], "chat", "the oversized chat was relayed");
        if m["type"] == "participant_updated" && m["participant"]["id"] == aid {
            assert_eq!(m["participant"]["presence"], "reconnecting");
            break;
        }
    }
    // The server goes on serving.
    host.send(json!({"type": "chat", "payload": "still here"}))
        .await;
    host.recv_chat("still here").await;
    let (_ben, _) = server.guest_admitted(&mut host, &meeting, "Ben").await;
    // A frame just under the cap is read (and refused for what it says).
    let near = json!({"type": "chat", "payload": "y".repeat(MAX_MESSAGE_BYTES - 64)});
    host.send(near).await;
    host.expect_error("chat_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_throttled_then_closed_while_others_carry_on() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (flooder, fj) = server.guest_admitted(&mut host, &meeting, "Flo").await;
    let fid = fj["you"].clone();

    // 500 messages at once, read concurrently so the answers are not lost
    // when the server hangs up.
    let (mut tx, mut rx) = flooder.stream.split();
    let writer = tokio::spawn(async move {
        for i in 0..500 {
            let m = json!({"type": "chat", "payload": format!("spam {i}")}).to_string();
            if tx.feed(Message::text(m)).await.is_err() {
                return;
            }
        }
        let _ = tx.flush().await;
    });
    let mut floods = 0;
    let mut chats = 0;
    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(crate::common::TIMEOUT, rx.next()).await {
        match frame {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("chat"), _) => chats += 1,
                    (Some("error"), Some("flood")) => {
                        assert_eq!(v["retry_after"], 1);
                        floods += 1
                    }
                    _ => {}
                }
            }
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the flooding socket was closed");
    assert!(floods >= 1, "the flooder was told to slow down");
    // A 40-message burst and 20 a second after it: most of the 500 never pass.
    assert!(chats < 200, "{chats} chats got through a 40-message burst");
    writer.await.unwrap();

    // The host saw at most the burst, then the flooder drop; and is served.
    let mut relayed = 0;
    loop {
        let m = host.recv().await;
        if m["type"] == "chat" {
            relayed += 1;
        }
        if m["type"] == "participant_updated" && m["participant"]["id"] == fid {
            assert_eq!(m["participant"]["presence"], "reconnecting");
            break;
        }
    }
    assert!(relayed < 200, "{relayed} chats were relayed");
    host.send(json!({"type": "chat", "payload": "calm again"}))
        .await;
    host.recv_chat("calm again").await;
    host.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_sockets_per_address_are_capped() {
    let (server, _alice, meeting) = setup().await;
    let from = Ipv4Addr::new(127, 0, 0, 7);
    let mut open = Vec::new();
    for _ in 0..server.config.limits.max_pending_per_address {
        open.push(server.ws(&meeting.id, WsOpts::from(from)).await);
    }
    match server.try_ws(&meeting.id, WsOpts::from(from)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), reqwest::StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("one socket too many was accepted"),
    }
    // Other addresses are unaffected, and a slot frees when one closes.
    server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 8)))
        .await;
    let mut first = open.remove(0);
    first.stream.close(None).await.unwrap();
    first.expect_closed().await;
    let mut retry = None;
    for _ in 0..50 {
        if let Ok(ws) = server.try_ws(&meeting.id, WsOpts::from(from)).await {
            retry = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(retry.is_some(), "the freed slot was never given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_sockets_neither_keep_others_out_nor_stay_open() {
    const SILENT: usize = 1000;
    let (server, alice, meeting) = {
        let server = TestServer::start_with(|c| c.limits.join_timeout_secs = 3).await;
        let alice = server.signed_in("alice").await;
        let meeting = alice.create_meeting(json!({})).await;
        (server, alice, meeting)
    };
    let before = alice.meetings().await;

    // Five sockets from each of 200 addresses, 127.0.0.2 to 127.0.0.201.
    let mut tasks = Vec::with_capacity(SILENT);
    for i in 0..SILENT {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8);
        let addr = server.addr;
        let id = meeting.id.clone();
        tasks.push(tokio::spawn(
            async move { silent_socket(addr, &id, from).await },
        ));
    }
    let mut silent = Vec::with_capacity(SILENT);
    for t in tasks {
        silent.push(t.await.unwrap());
    }

    // Meanwhile an ordinary host and guest get in as usual.
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut guest, _) = server.guest_admitted(&mut host, &meeting, "Gus").await;
    guest
        .send(json!({"type": "chat", "payload": "hello"}))
        .await;
    host.recv_chat("hello").await;

    // Every silent socket is told it took too long, and closed.
    let mut readers = Vec::with_capacity(SILENT);
    for mut ws in silent {
        readers.push(tokio::spawn(async move { ws.expect_closed().await }));
    }
    for r in readers {
        let got = r.await.unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["code"], "timeout");
    }
    // Members are not subject to the join timeout.
    host.send(json!({"type": "chat", "payload": "still on"}))
        .await;
    guest.recv_chat("still on").await;
    assert_eq!(
        alice.meetings().await,
        with_running(&before),
        "nothing persisted changed"
    );
}

async fn silent_socket(
    addr: std::net::SocketAddr,
    meeting: &str,
    from: Ipv4Addr,
) -> crate::common::Ws {
    crate::common::open_ws(addr, meeting, WsOpts::from(from))
        .await
        .expect("a silent socket connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_wide_connection_cap_refuses_extra_sockets() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 3).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({})).await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let _a = server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 2)))
        .await;
    let _b = server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 3)))
        .await;
    match server
        .try_ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 4)))
        .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), reqwest::StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a socket over the server-wide cap was accepted"),
    }
    // Those inside carry on, and the HTTP API still answers.
    host.send(json!({"type": "chat", "payload": "full house"}))
        .await;
    host.recv_chat("full house").await;
    assert_eq!(alice.get("/api/v1/me").await.0, reqwest::StatusCode::OK);
}
