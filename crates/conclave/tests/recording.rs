//! A recorder's admission over real sockets: a participant who tries to let
//! a recorder in is refused and nothing changes; the host's decision is what
//! admits it, and then every member sees it recording.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn only_a_host_lets_a_recorder_in() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Recorded"})).await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut bob, bob_joined) = server.guest_admitted(&mut host, &meeting, "Bob").await;
    assert_eq!(bob_joined["role"], "participant");

    let mut rec = server.ws(&meeting.id, WsOpts::default()).await;
    rec.send(
        json!({"type": "join", "name": "Recorder", "passcode": meeting.passcode, "recorder": true}),
    )
    .await;
    let w = rec.recv().await;
    assert_eq!(w["type"], "waiting", "{w}");
    let rec_id = w["you"].as_u64().expect("you");
    let room = host.recv_until("waiting_room").await;
    assert_eq!(
        room["waiting"],
        json!([{"id": rec_id, "name": "Recorder", "signed_in": false, "recording": true}])
    );

    // Bob, a participant, knows the id (ids are small numbers) and tries.
    bob.send(json!({"type": "admit", "participant": rec_id}))
        .await;
    let err = bob.expect_error("not_permitted").await;
    assert_eq!(err["message"], "not permitted");
    // "Admit all" from him is refused too, and from the host it leaves a
    // recorder waiting: a recorder is let in only by its own admission.
    bob.send(json!({"type": "admit_all"})).await;
    bob.expect_error("not_permitted").await;
    host.send(json!({"type": "admit_all"})).await;
    rec.expect_silence(QUIET).await;
    host.expect_silence(QUIET).await;
    assert!(
        !host
            .log
            .iter()
            .any(|v| v["type"] == "participant_joined" && v["participant"]["id"] == rec_id),
        "nothing changed: {:#?}",
        host.log
    );
    assert!(
        !bob.log.iter().any(|v| v["type"] == "participant_joined"),
        "{:#?}",
        bob.log
    );

    // The host admits it by name: everyone sees a member recording.
    host.send(json!({"type": "admit", "participant": rec_id}))
        .await;
    let joined = rec.recv_until("joined").await;
    assert_eq!(joined["you"], rec_id);
    for ws in [&mut host, &mut bob] {
        let pj = ws.recv_until("participant_joined").await;
        assert_eq!(pj["participant"]["id"], rec_id);
        assert_eq!(pj["participant"]["recording"], true);
    }
}
