//! Chat that survives a reconnect, over real WebSockets: the sealed `chat`
//! and `app` messages relayed while a member's socket was gone reach it,
//! after `joined`, in order and once, when it resumes its seat with the
//! number of MLS messages its client took in. A client that resumes without
//! MLS state (a reloaded page) is not sent them: it could not open them.

use crate::common::{QUIET, TestServer, WsOpts};
use serde_json::{Value, json};

fn sealed_of(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|m| m["type"] == "chat" || m["type"] == "app")
        .map(|m| {
            format!(
                "{}:{}",
                m["type"].as_str().unwrap_or(""),
                m["payload"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sent_while_a_member_was_away_reaches_it_on_resume_in_order() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Away"})).await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (ann, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let aid = aj["you"].as_u64().expect("you");
    let token = aj["resume_token"].as_str().expect("token").to_string();

    drop(ann); // the network goes away: no close frame
    loop {
        let m = host.recv_until("participant_updated").await;
        if m["participant"]["id"] == aid && m["participant"]["presence"] == "reconnecting" {
            break;
        }
    }
    host.send(json!({"type": "chat", "payload": "sealedOne"}))
        .await;
    host.recv_chat("sealedOne").await;
    host.send(json!({"type": "app", "payload": "sealedHand"}))
        .await;
    host.recv_until("app").await;
    host.send(json!({"type": "chat", "payload": "sealedTwo"}))
        .await;
    host.recv_chat("sealedTwo").await;

    // Back with the count of MLS messages its client took in (all of them).
    let mut back = server.ws(&meeting.id, WsOpts::default()).await;
    back.send(json!({"type": "resume", "token": token, "mls_received": 1_000_000u64}))
        .await;
    let j = back.recv().await;
    assert_eq!(j["type"], "joined", "{j}");
    back.recv_chat("sealedTwo").await;
    assert_eq!(
        sealed_of(&back.log),
        ["chat:sealedOne", "app:sealedHand", "chat:sealedTwo"]
    );
    // Live from now on, and nothing comes twice.
    host.send(json!({"type": "chat", "payload": "sealedThree"}))
        .await;
    back.recv_chat("sealedThree").await;
    back.expect_silence(QUIET).await;
    assert_eq!(sealed_of(&back.log).len(), 4);

    // A reload resumes without MLS state: what it missed is not sent.
    let token = j["resume_token"].as_str().expect("token").to_string();
    drop(back);
    loop {
        let m = host.recv_until("participant_updated").await;
        if m["participant"]["id"] == aid && m["participant"]["presence"] == "reconnecting" {
            break;
        }
    }
    host.send(json!({"type": "chat", "payload": "sealedFour"}))
        .await;
    host.recv_chat("sealedFour").await;
    let mut reloaded = server.ws(&meeting.id, WsOpts::default()).await;
    reloaded
        .send(json!({"type": "resume", "token": token}))
        .await;
    assert_eq!(reloaded.recv().await["type"], "joined");
    while reloaded.next(QUIET).await.is_some() {}
    assert!(sealed_of(&reloaded.log).is_empty(), "{:?}", reloaded.log);
}
