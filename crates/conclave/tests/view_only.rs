//! View-only attendees (issue 23): in a meeting where only the people a host
//! allows may publish, an attendee's media is refused by the server and never
//! forwarded, however its client behaves. The native client plays the
//! hostile attendee: it asks to send, ignores the refusal and sends its
//! camera and microphone anyway.

use crate::common::{TestServer, Together, frames_from_others, native_options};
use conclave_client::session::{SessionReport, run};
use conclave_proto::MediaKind::{Audio, Video};
use conclave_proto::ParticipantId;
use serde_json::json;

/// Everything `report` received from `from`: frames, undecryptable or
/// incomplete ones, and bytes.
fn anything_from(report: &SessionReport, from: ParticipantId) -> u64 {
    report
        .media
        .received
        .values()
        .filter(|t| t.participant == Some(from))
        .map(|t| t.frames + t.undecryptable_frames + t.incomplete_frames + t.bytes)
        .sum()
}

fn frames_from(report: &SessionReport, from: ParticipantId) -> u64 {
    report
        .media
        .received
        .values()
        .filter(|t| t.participant == Some(from))
        .map(|t| t.frames)
        .sum()
}

#[tokio::test]
async fn a_hostile_attendee_publishing_anyway_reaches_nobody() {
    hostile_attendee(false).await;
}

#[tokio::test]
async fn a_hostile_attendee_reaches_nobody_in_a_meeting_spread_over_workers() {
    hostile_attendee(true).await;
}

async fn hostile_attendee(spread: bool) {
    let server = TestServer::start_with(|c| {
        if spread {
            c.media_workers = 2;
            c.spread_meetings_from = 1;
        }
    })
    .await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false, "publish": "allowed"}}))
        .await;
    assert_eq!(meeting.view["settings"]["publish"], "allowed");
    let (_, token) = alice
        .post("/api/v1/tokens", json!({"name": "teacher"}))
        .await;

    // The teacher (the host, by the owner's token) publishes; Ada, an
    // attendee, sends too though refused; Bob only watches. All three stay
    // until Bob has two seconds of the teacher and Ada has sent as long.
    let all = Together::new(3);
    let mut teacher = native_options(&meeting, "Teacher");
    teacher.token = Some(token["token"].as_str().expect("token").into());
    teacher.until = all.member(0, |_| true);
    let mut ada = native_options(&meeting, "Ada");
    ada.until = all.member(1, |p| p.media.sent_frames.values().sum::<u64>() >= 150);
    let mut bob = native_options(&meeting, "Bob");
    bob.send_ivf = None;
    bob.send_ogg = None;
    bob.until = all.member(2, |p| {
        frames_from_others(p, Video) >= 60 && frames_from_others(p, Audio) >= 100
    });
    let teacher = tokio::spawn(run(teacher));
    let ada = tokio::spawn(run(ada));
    let bob = tokio::spawn(run(bob));
    let teacher = teacher.await.expect("task").expect("teacher");
    let ada = ada.await.expect("task").expect("ada");
    let bob = bob.await.expect("task").expect("bob");
    assert_eq!(teacher.admission.role, conclave_proto::Role::Host);

    let ada_id = ada.admission.you;
    let sent: u64 = ada.media.sent_frames.values().sum();
    assert!(sent >= 150, "Ada did send: {:?}", ada.media.sent_frames);
    assert!(
        frames_from(&bob, teacher.admission.you) >= 60,
        "the teacher reaches Bob: {:?}",
        bob.media
    );
    assert_eq!(
        anything_from(&bob, ada_id),
        0,
        "Bob got Ada: {:?}",
        bob.media
    );
    assert_eq!(
        anything_from(&teacher, ada_id),
        0,
        "the teacher got Ada: {:?}",
        teacher.media
    );
}

#[tokio::test]
async fn an_attendee_is_refused_until_allowed_and_stop_silences_them() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": true, "publish": "allowed"}}))
        .await;
    let (mut host, joined) = server.host_joins(&alice, &meeting.id).await;
    assert_eq!(joined["meeting"]["permissions"]["publish"], "allowed");
    let (mut ada, joined) = server.guest_admitted(&mut host, &meeting, "Ada").await;
    let me = joined["you"].as_u64().expect("id");

    // Everything a modified client could ask for is refused.
    for msg in [
        json!({"type": "set_media", "audio": true}),
        json!({"type": "set_media", "video": true}),
        json!({"type": "set_media", "screen": true}),
        json!({"type": "media_offer", "sdp": "v=0", "tracks": [{"mid": "2", "kind": "screen"}]}),
        json!({"type": "allow_publish", "participant": me, "allowed": true}),
        json!({"type": "set_permissions", "permissions": {"publish": "everyone"}}),
    ] {
        ada.send(msg).await;
        ada.expect_error("not_permitted").await;
    }

    // "Allow to speak": everyone learns it, and now she may.
    host.send(json!({"type": "allow_publish", "participant": me, "allowed": true}))
        .await;
    let up = ada.recv_until("participant_updated").await;
    assert_eq!(up["participant"]["publish_allowed"], true, "{up}");
    ada.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    let up = ada.recv_until("participant_updated").await;
    assert_eq!(
        (&up["participant"]["audio"], &up["participant"]["video"]),
        (&json!(true), &json!(true))
    );

    // "Stop": off at once, and she may not turn it back on.
    host.send(json!({"type": "allow_publish", "participant": me, "allowed": false}))
        .await;
    loop {
        let up = ada.recv_until("participant_updated").await;
        if up["participant"]["audio"] == false && up["participant"]["video"] == false {
            assert!(up["participant"].get("publish_allowed").is_none(), "{up}");
            break;
        }
    }
    ada.send(json!({"type": "set_media", "audio": true})).await;
    ada.recv_error("not_permitted").await;

    // The setting is the meeting's: the API reads it back.
    let (_, list) = alice.get("/api/v1/meetings").await;
    assert!(
        list.to_string().contains("\"publish\":\"allowed\""),
        "{list}"
    );
}
