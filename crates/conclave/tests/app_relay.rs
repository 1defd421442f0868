//! The `app` relay (hands, reactions, polls): MLS application messages that
//! still flow when the host turns chat off. The server passes the payload on
//! untouched to every member, bounds its size and rate per seat, and never
//! takes one from a socket that is only waiting.

use std::time::Duration;

use crate::common::{QUIET, TestServer};
use conclave_proto::{APP_BURST, MAX_APP_BYTES};
use serde_json::json;

/// Stands for a sealed MLS message: base64 the server cannot read.
fn sealed(n: u8) -> String {
    format!("{}{n:03}A", "q83vASNFZ4mrze8B/+9x".repeat(6))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_messages_pass_with_chat_off_bounded_and_never_from_the_waiting_room() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Hands"})).await;
    let (mut host, hj) = server.host_joins(&alice, &meeting.id).await;
    let (mut ann, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let ann_id = aj["you"].clone();

    // Chat off: Ann's chat is refused, her app message is not.
    host.send(json!({"type": "set_permissions", "permissions": {"chat": false}}))
        .await;
    host.recv_until("meeting_updated").await;
    ann.recv_until("meeting_updated").await;
    ann.send(json!({"type": "chat", "payload": sealed(1)}))
        .await;
    ann.expect_error("not_permitted").await;
    let payload = sealed(2);
    ann.send(json!({"type": "app", "payload": payload})).await;
    for ws in [&mut host, &mut ann] {
        let m = ws.recv_until("app").await;
        // Relayed as it came, with the sender the server knows: nothing added
        // or decoded.
        assert_eq!(
            m,
            json!({"type": "app", "from": ann_id, "payload": payload})
        );
    }

    // Too large: refused, relayed to nobody.
    let big = "A".repeat(MAX_APP_BYTES + 1);
    ann.send(json!({"type": "app", "payload": big})).await;
    ann.expect_error("too_large").await;
    let exact = "B".repeat(MAX_APP_BYTES);
    ann.send(json!({"type": "app", "payload": exact.clone()}))
        .await;
    assert_eq!(host.recv_until("app").await["payload"], exact.as_str());

    // Rate: a burst past the seat's allowance is cut with `flood`, and the
    // socket stays open (the frame rate limit is higher).
    let sent = APP_BURST as usize + 8;
    for k in 0..sent {
        ann.send(json!({"type": "app", "payload": sealed(k as u8)}))
            .await;
    }
    let mut relayed = 0;
    let mut floods = 0;
    while relayed + floods < sent {
        let m = ann.recv().await;
        match m["type"].as_str() {
            Some("app") => relayed += 1,
            Some("error") if m["code"] == "flood" => floods += 1,
            _ => {}
        }
    }
    assert!(floods > 0, "a burst of {sent} was not cut");
    assert!(relayed < sent && relayed >= APP_BURST as usize - 2);
    // It refills: after a pause Ann is heard again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ann.send(json!({"type": "app", "payload": sealed(200)}))
        .await;
    for ws in [&mut host, &mut ann] {
        while ws.recv_until("app").await["payload"] != sealed(200).as_str() {}
    }

    // A waiting socket cannot send one, and nobody in the meeting sees it.
    let (mut wes, _) = server.guest_waits(&meeting, "Wes").await;
    wes.send(json!({"type": "app", "payload": sealed(5)})).await;
    wes.expect_error("not_joined").await;
    ann.send(json!({"type": "app", "payload": sealed(6)})).await;
    // The next app anyone sees is Ann's, not the waiting guest's.
    for ws in [&mut host, &mut ann] {
        let m = ws.recv_until("app").await;
        assert_eq!(m["payload"], sealed(6).as_str(), "{m}");
    }
    // And the waiting guest was not sent Ann's.
    let got = wes.next(QUIET).await;
    if let Some(crate::common::Frame::Msg(m)) = got {
        assert_ne!(m["type"], "app", "a waiting socket got an app message");
    }
    // Suspension stops it for participants, not for the host.
    host.send(json!({"type": "suspend_activities"})).await;
    ann.recv_until("meeting_updated").await;
    ann.send(json!({"type": "app", "payload": sealed(3)})).await;
    ann.expect_error("not_permitted").await;
    host.send(json!({"type": "app", "payload": sealed(4)}))
        .await;
    let m = ann.recv_until("app").await;
    assert_eq!(m["from"], hj["you"]);
}
