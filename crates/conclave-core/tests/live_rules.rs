//! A meeting rebuilt from its live state on another node (cluster mode,
//! after its node died): who held a seat takes it back with their resume
//! token and their role, the lock and the suspension hold, the banned stay
//! out, and who was waiting is waiting again when they come back, listed to
//! moderators and never let in by the move.
// One real instant is the origin of the virtual clock.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use conclave_core::{BanKey, ConnId, Input, LiveState, RESUME_WINDOW};
use conclave_proto::{ClientMessage, ErrorCode, Presence, ResumeToken, Role, ServerMessage};

use crate::support::*;

/// A fresh meeting (another node's) restored from `room`'s live state.
fn moved(room: &Room, bans: Vec<BanKey>) -> Room {
    moved_with(room, bans, |_| {})
}

/// As [`moved`], with the settings the new node reads from the database.
fn moved_with(
    room: &Room,
    bans: Vec<BanKey>,
    settings: impl FnOnce(&mut conclave_core::MeetingConfig),
) -> Room {
    let state = room.meeting.live_state(room.now);
    let mut next = Room::with_bans(settings, bans);
    next.now = room.now;
    next.meeting.restore(state, next.now);
    assert!(next.drain().is_empty(), "a restore sends nothing");
    next
}

/// A fresh meeting restored from live state as the store holds it (JSON).
fn restored_from_json(room: &Room, json: &str) -> Room {
    let state: LiveState = serde_json::from_str(json).expect("live state parses");
    let mut next = Room::with_bans(|_| {}, Vec::new());
    next.now = room.now;
    next.meeting.restore(state, next.now);
    assert!(next.drain().is_empty(), "a restore sends nothing");
    next
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn group_id(out: &[conclave_core::Output], conn: u64) -> String {
    match joined_msg(out, conn) {
        ServerMessage::Joined { e2ee: Some(e), .. } => e.group_id,
        other => panic!("no e2ee setup: {other:?}"),
    }
}

fn joined_msg(out: &[conclave_core::Output], conn: u64) -> ServerMessage {
    sent(out, conn)
        .into_iter()
        .find(|m| matches!(m, ServerMessage::Joined { .. }))
        .unwrap_or_else(|| panic!("conn {conn} got no joined: {out:?}"))
}

#[test]
fn members_take_their_seats_back_on_the_new_node_with_their_tokens_and_roles() {
    let mut room = Room::hosted();
    let first_group = group_id(&room.log, HOST);
    let bob = room.admit(2, "Bob");
    room.set_role(bob, Role::Cohost);
    let carol = room.admit(3, "Carol");
    room.media(2, Some(true), Some(true));
    let (host_token, bob_token) = (room.token_of(HOST), room.token_of(2));
    let host_id = room.id_of(HOST);

    let mut next = moved(&room, Vec::new());
    assert_eq!(next.meeting.member_count(), 3);
    // Nobody is connected yet: every seat waits for its resume.
    assert!(!next.meeting.has_seat(ConnId(HOST)));

    let out = next.resume_after(20, bob_token, Some(12));
    let ServerMessage::Joined {
        you,
        role,
        participants,
        ..
    } = joined_msg(&out, 20)
    else {
        unreachable!()
    };
    assert_eq!((you, role), (bob, Role::Cohost), "a co-host stays co-host");
    let me = participants
        .iter()
        .find(|p| p.id == bob)
        .expect("Bob listed");
    assert!(me.audio && me.video, "his microphone and camera stay on");
    // The router is told it may forward them again, once he is back.
    assert!(out.iter().any(|o| matches!(
        o,
        conclave_core::Output::Media(conclave_core::MediaCommand::Allow {
            participant,
            audio: true,
            video: true,
            ..
        }) if *participant == bob
    )));
    let others: Vec<_> = participants.iter().filter(|p| p.id != bob).collect();
    assert_eq!(others.len(), 2);
    assert!(others.iter().all(|p| p.presence == Presence::Reconnecting));
    // A new group: nothing of the old node's delivery service is reused, so
    // members rebuild it (and their security code changes).
    assert_ne!(group_id(&out, 20), first_group);

    let out = next.resume(10, host_token);
    let ServerMessage::Joined { you, role, .. } = joined_msg(&out, 10) else {
        unreachable!()
    };
    assert_eq!((you, role), (host_id, Role::Host));
    // A co-host acts as one on the new node.
    let out = next.msg(20, ClientMessage::Lock);
    assert!(errors(&out, 20).is_empty(), "{out:?}");

    // A token used up on the old node does not work on the new one.
    let out = next.resume(30, ResumeToken::generate());
    assert_turned_away(&out, 30, ErrorCode::ResumeFailed);
    // Carol's seat is kept for the resume window from the move, then goes.
    next.advance(RESUME_WINDOW + Duration::from_millis(1));
    next.timeout();
    assert_eq!(next.meeting.member_count(), 2);
    assert!(next.log_to(10).iter().any(|m| matches!(
        m,
        ServerMessage::ParticipantLeft { participant, .. } if *participant == carol
    )));
}

#[test]
fn a_newcomer_after_the_move_gets_a_number_nobody_held() {
    let mut room = Room::hosted_with(|c| c.waiting_room = false);
    room.join(2, "Bob", guest("g2"));
    let bob = room.id_of(2);
    room.msg(2, ClientMessage::Leave);
    let mut next = moved(&room, Vec::new());
    next.resume(10, room.token_of(HOST));
    next.join(3, "Carol", guest("g3"));
    let you = next.id_of(3);
    assert!(you != room.id_of(HOST) && you != bob, "{you:?}");
}

#[test]
fn the_lock_and_the_suspension_hold_and_the_banned_stay_out_after_the_move() {
    let mut room = Room::hosted();
    let eve = room.admit(2, "Eve");
    room.msg(HOST, ClientMessage::Remove { participant: eve });
    room.msg(HOST, ClientMessage::SuspendActivities);
    let state = room.meeting.live_state(room.now);
    assert!(state.locked && state.suspended);
    assert!(
        state.members.iter().all(|m| m.id != eve),
        "the removed hold no seat"
    );
    // Bans come from the store on the new node, as whenever a meeting starts.
    let bans: Vec<BanKey> = room
        .log
        .iter()
        .filter_map(|o| match o {
            conclave_core::Output::Ban(keys) => Some(keys.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut next = moved(&room, bans);
    let out = next.resume(10, room.token_of(HOST));
    let ServerMessage::Joined { meeting, .. } = joined_msg(&out, 10) else {
        unreachable!()
    };
    assert!(meeting.locked && meeting.suspended);
    let out = next.join(3, "Eve", guest("g2"));
    assert_turned_away(&out, 3, ErrorCode::Banned);
    let out = next.join(4, "Mal", guest("g4"));
    assert_turned_away(&out, 4, ErrorCode::Locked);
}

#[test]
fn who_was_waiting_waits_again_when_they_come_back_and_is_listed_not_admitted() {
    let mut room = Room::hosted();
    let dan = room.wait(2, "Dan");
    room.msg(HOST, ClientMessage::Lock);
    let mut next = moved(&room, Vec::new());
    assert_eq!(
        next.meeting.waiting_count(),
        0,
        "not listed before they are back"
    );
    next.resume(10, room.token_of(HOST));

    // Dan's socket comes back: a join with his guest identity, into a
    // meeting locked meanwhile, puts him back where he was.
    let out = next.join(20, "Dan", guest("g2"));
    assert_eq!(
        sent(&out, 20),
        [ServerMessage::Waiting {
            you: dan,
            recording: false
        }]
    );
    assert_eq!(next.meeting.waiting_count(), 1);
    assert!(!next.meeting.is_member(ConnId(20)));
    let listed = sent(&out, 10).into_iter().any(|m| match m {
        ServerMessage::WaitingRoom { waiting } => waiting.iter().any(|w| w.id == dan),
        _ => false,
    });
    assert!(listed, "moderators see him again: {out:?}");
    // Only once: another connection with his identity is a newcomer, and
    // the meeting is locked.
    let out = next.join(21, "Dan", guest("g2"));
    assert_turned_away(&out, 21, ErrorCode::Locked);
    // The host admits him as before.
    let out = next.msg(10, ClientMessage::Admit { participant: dan });
    assert_eq!(joined(&out, 20).you, dan);
}

#[test]
fn a_waiting_place_is_kept_for_the_resume_window_and_only_for_the_same_person() {
    let mut room = Room::hosted();
    room.wait(2, "Dan");
    let mut next = moved(&room, Vec::new());
    // Someone else with the same name is a newcomer.
    let out = next.join(20, "Dan", guest("g-other"));
    assert!(matches!(
        sent(&out, 20).as_slice(),
        [ServerMessage::Waiting { you, .. }] if *you != room.id_of(2)
    ));
    next.advance(RESUME_WINDOW);
    let state: LiveState = next.meeting.live_state(next.now);
    assert_eq!(state.waiting.len(), 1, "only the newcomer: {state:?}");
    let out = next.join(21, "Dan", guest("g2"));
    assert!(matches!(
        sent(&out, 21).as_slice(),
        [ServerMessage::Waiting { you, .. }] if *you != room.id_of(2)
    ));
}

#[test]
fn the_state_a_stopping_node_leaves_keeps_the_meeting_settings_not_its_people() {
    let mut room = Room::hosted();
    room.wait(2, "Dan");
    room.msg(HOST, ClientMessage::Lock);
    let kept = room.meeting.live_state(room.now).without_people();
    assert!(kept.locked && kept.members.is_empty() && kept.waiting.is_empty());
    let mut next = Room::new();
    next.meeting.restore(kept, next.now);
    next.input(Input::Timeout);
    assert!(next.meeting.is_idle());
}

#[test]
fn an_attendee_allowed_to_publish_still_may_after_the_move_and_others_still_may_not() {
    let mut room =
        Room::hosted_with(|c| c.permissions.publish = conclave_proto::Publishing::Allowed);
    let grace = room.admit(2, "Grace");
    room.admit(3, "Hugo");
    room.msg(
        HOST,
        ClientMessage::AllowPublish {
            participant: grace,
            allowed: true,
        },
    );
    room.media(2, Some(true), None);
    let (grace_token, hugo_token) = (room.token_of(2), room.token_of(3));

    let mut next = moved_with(&room, Vec::new(), |c| {
        c.permissions.publish = conclave_proto::Publishing::Allowed;
    });
    let out = next.resume(20, grace_token);
    let ServerMessage::Joined { participants, .. } = joined_msg(&out, 20) else {
        unreachable!()
    };
    let me = participants
        .iter()
        .find(|p| p.id == grace)
        .expect("Grace listed");
    assert!(me.publish_allowed && me.audio, "{me:?}");
    let out = next.msg(
        20,
        ClientMessage::SetMedia {
            audio: None,
            video: Some(true),
            screen: None,
        },
    );
    assert!(errors(&out, 20).is_empty(), "{out:?}");

    // Nobody allowed Hugo: the move does not either.
    next.resume(30, hugo_token);
    let out = next.msg(
        30,
        ClientMessage::SetMedia {
            audio: Some(true),
            video: None,
            screen: None,
        },
    );
    assert_eq!(errors(&out, 30), vec![ErrorCode::NotPermitted], "{out:?}");
}

#[test]
fn the_stored_state_holds_no_token_that_resumes_and_the_real_token_still_does() {
    let mut room = Room::hosted();
    let bob = room.admit(2, "Bob");
    let (host_token, bob_token) = (room.token_of(HOST), room.token_of(2));
    let json = serde_json::to_string(&room.meeting.live_state(room.now)).expect("serializes");
    for token in [host_token, bob_token] {
        let b64 = token.encode();
        let std_b64 = b64.replace('-', "+").replace('_', "/");
        for form in [b64, std_b64, hex(&token.0), hex(&token.0).to_uppercase()] {
            assert!(!json.contains(&form), "a token in the stored state: {json}");
        }
    }

    let state: LiveState = serde_json::from_str(&json).expect("parses");
    let stored = &state
        .members
        .iter()
        .find(|m| m.id == bob)
        .expect("Bob stored")
        .resume_hash;
    // As sent on the wire the stored value is no token at all...
    assert!(ResumeToken::decode(stored).is_none());
    let hash = data_encoding::BASE64URL_NOPAD
        .decode(stored.as_bytes())
        .expect("base64url");
    assert_eq!(hash.len(), 32);
    let mut next = restored_from_json(&room, &json);
    // ...and no 16 bytes of it take the seat either.
    for (conn, half) in (30..).zip(hash.chunks(16)) {
        let out = next.resume(conn, ResumeToken(half.try_into().expect("16 bytes")));
        assert_turned_away(&out, conn, ErrorCode::ResumeFailed);
    }

    let out = next.resume(20, bob_token);
    let ServerMessage::Joined {
        you, resume_token, ..
    } = joined_msg(&out, 20)
    else {
        unreachable!()
    };
    assert_eq!(you, bob, "the real token takes the seat back");
    // The token it is given now works, the one it used does not any more.
    assert_ne!(resume_token, bob_token.encode());
    let out = next.resume(40, bob_token);
    assert_turned_away(&out, 40, ErrorCode::ResumeFailed);
    let out = next.resume(10, host_token);
    let ServerMessage::Joined { role, .. } = joined_msg(&out, 10) else {
        unreachable!()
    };
    assert_eq!(role, Role::Host);
}

#[test]
fn state_written_with_plain_tokens_is_migrated_and_a_malformed_seat_is_skipped() {
    let mut room = Room::hosted();
    let bob = room.admit(2, "Bob");
    room.admit(3, "Carol");
    let (host_id, host_token) = (room.id_of(HOST), room.token_of(HOST));
    let bob_token = room.token_of(2);
    let mut value = serde_json::to_value(room.meeting.live_state(room.now)).expect("serializes");
    // The form written before hashes were kept: the token under
    // `resume_token`; Carol's is garbage.
    for m in value["members"].as_array_mut().expect("members") {
        let id = m["id"].as_u64().expect("id");
        let m = m.as_object_mut().expect("a member");
        m.remove("resume_hash");
        let old = if id == host_id.0 {
            host_token.encode()
        } else if id == bob.0 {
            bob_token.encode()
        } else {
            "not base64 at all!".to_string()
        };
        m.insert("resume_token".into(), old.into());
    }
    let mut next = restored_from_json(&room, &value.to_string());
    assert_eq!(next.meeting.member_count(), 2, "Carol's seat is dropped");

    let out = next.resume(20, bob_token);
    let ServerMessage::Joined { you, .. } = joined_msg(&out, 20) else {
        unreachable!()
    };
    assert_eq!(you, bob);
    let out = next.resume(10, host_token);
    let ServerMessage::Joined { you, .. } = joined_msg(&out, 10) else {
        unreachable!()
    };
    assert_eq!(you, host_id);
    // What is written now holds hashes again, never the old tokens.
    let json = serde_json::to_string(&next.meeting.live_state(next.now)).expect("serializes");
    assert!(!json.contains("resume_token") && !json.contains(&bob_token.encode()));
}
