//! The meeting core's rules on a virtual clock: admission and the waiting room,
//! its isolation, moderation (lock, remove-and-ban, holds, suspension), roles
//! and succession, resume after a dropped socket, and the join limiter driven
//! as the server drives it. One file because every section drives the same
//! harness (`support::Room`) and reads as the meeting's rulebook, in the order of
//! protocol.md.
// One real instant is the origin of the virtual clock.
#![allow(clippy::disallowed_methods)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use conclave_core::{
    AttemptLimiter, AttemptPolicy, BanKey, ConnId, Identity, Input, MediaCommand, MediaEvent,
    Output, RESUME_WINDOW,
};
use conclave_proto::{
    ClientMessage, EndReason, ErrorCode, LeaveReason, MAX_CHAT_BYTES, MediaKind, Participant,
    ParticipantId, Permissions, PermissionsPatch, Presence, ResumeToken, Role, ScreenShare,
    ServerMessage, WaitingParticipant,
};

use crate::support::*;

// ------------------------------------------------------------ joining ----

#[test]
fn owner_joins_as_host_and_skips_the_waiting_room() {
    let mut room = Room::new();
    let out = room.join(HOST, "  Ada  ", owner());
    let msgs = sent(&out, HOST);
    assert_eq!(msgs.len(), 1, "only joined: {msgs:?}");
    let j = joined(&out, HOST);
    assert_eq!(j.role, Role::Host);
    assert_eq!(j.participants.len(), 1);
    let me = &j.participants[0];
    assert_eq!(me.id, j.you);
    assert_eq!(me.name, "Ada", "names are trimmed");
    assert!(me.signed_in);
    assert_eq!(me.presence, Presence::Connected);
    assert!(j.waiting.is_empty());
    assert_eq!(j.meeting.title, "Standup");
    assert!(!j.meeting.locked && !j.meeting.suspended);
    assert!(ResumeToken::decode(&j.token).is_some());
    assert!(room.meeting.is_member(ConnId(HOST)));
    assert_eq!(room.meeting.waiting_count(), 0);
}

#[test]
fn second_owner_connection_becomes_cohost() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let out = room.join(2, "Ada (phone)", account(OWNER, "owner-phone"));
    let j = joined(&out, 2);
    assert_eq!(j.role, Role::Cohost);
    assert!(
        !sent(&out, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Waiting { .. }))
    );
    assert_eq!(j.participants.len(), 2);
    assert!(
        j.participants
            .iter()
            .any(|p| p.id == host && p.role == Role::Host)
    );
    assert_eq!(
        sent(&out, HOST),
        [ServerMessage::ParticipantJoined {
            participant: Participant {
                id: j.you,
                name: "Ada (phone)".into(),
                role: Role::Cohost,
                signed_in: true,
                audio: false,
                video: false,
                screen: false,
                presence: Presence::Connected,
                recording: false,
                publish_allowed: false,
            }
        }]
    );
    assert_eq!(room.meeting.member_count(), 2);
}

#[test]
fn guest_waits_and_receives_exactly_one_waiting_message() {
    let mut room = Room::hosted();
    let out = room.join(5, "Mallory", guest("g5"));
    let you = match sent(&out, 5).as_slice() {
        [ServerMessage::Waiting { you, .. }] => *you,
        other => panic!("{other:?}"),
    };
    assert!(!closes(&out, 5));
    assert_eq!(
        sent(&out, HOST),
        [ServerMessage::WaitingRoom {
            waiting: vec![WaitingParticipant {
                id: you,
                name: "Mallory".into(),
                signed_in: false,
                recording: false,
                same_network_as_removed: false,
            }]
        }]
    );
    assert_eq!(room.meeting.waiting_count(), 1);
    assert_eq!(room.meeting.member_count(), 1);
    assert!(room.meeting.has_seat(ConnId(5)));
    assert!(!room.meeting.is_member(ConnId(5)));
}

#[test]
fn only_moderators_are_shown_the_waiting_room() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);

    let out = room.join(9, "Eve", guest("g9"));
    let eve = room.id_of(9);
    let expected = vec![WaitingParticipant {
        id: eve,
        name: "Eve".into(),
        signed_in: false,
        recording: false,
        same_network_as_removed: false,
    }];
    assert_eq!(waiting_rooms(&out, HOST), std::slice::from_ref(&expected));
    assert_eq!(waiting_rooms(&out, 3), std::slice::from_ref(&expected));
    assert!(
        sent(&out, 2).is_empty(),
        "a participant hears nothing of it"
    );

    let out = room.join(10, "Sam", account(55, "g10"));
    let lists = waiting_rooms(&out, HOST);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].len(), 2);
    assert_eq!(lists[0][0], expected[0]);
    assert_eq!(lists[0][1].name, "Sam");
    assert!(lists[0][1].signed_in);
    assert!(sent(&out, 2).is_empty());
}

#[test]
fn admitted_guest_gets_joined_with_the_roster_and_members_hear_of_them() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let w = room.wait(3, "Linus");

    let out = room.msg(HOST, ClientMessage::Admit { participant: w });
    let j = joined(&out, 3);
    assert_eq!(j.you, w);
    assert_eq!(j.role, Role::Participant);
    let mut ids: Vec<_> = j.participants.iter().map(|p| p.id).collect();
    ids.sort();
    assert_eq!(ids, [host, p2, w]);
    assert!(
        j.waiting.is_empty(),
        "participants are not shown the waiting room"
    );
    assert_eq!(sent(&out, 3).len(), 1, "the newcomer gets only joined");

    let announced = |conn| {
        sent(&out, conn).into_iter().any(|m| {
            matches!(m, ServerMessage::ParticipantJoined { participant }
                if participant.id == w && participant.role == Role::Participant
                    && participant.name == "Linus")
        })
    };
    assert!(announced(HOST));
    assert!(announced(2));
    assert_eq!(sent(&out, 2).len(), 1);
    assert_eq!(waiting_rooms(&out, HOST), [Vec::new()]);
    assert!(room.meeting.is_member(ConnId(3)));
    assert_eq!(room.meeting.waiting_count(), 0);
    assert_eq!(room.meeting.member_count(), 3);
}

#[test]
fn denied_guest_is_told_and_closed_but_not_banned() {
    let mut room = Room::hosted();
    let w = room.wait(3, "Linus");
    let out = room.msg(HOST, ClientMessage::Deny { participant: w });
    assert_eq!(sent(&out, 3), [ServerMessage::Denied]);
    let denied = position(
        &out,
        |o| matches!(o, Output::Send { conn, msg: ServerMessage::Denied } if *conn == ConnId(3)),
    );
    let closed = position(
        &out,
        |o| matches!(o, Output::Close { conn } if *conn == ConnId(3)),
    );
    assert!(denied.is_some() && closed.is_some() && denied < closed);
    assert_eq!(waiting_rooms(&out, HOST), [Vec::new()]);
    assert!(bans(&out).is_empty(), "denial does not ban");
    assert!(!room.meeting.has_seat(ConnId(3)));
    assert_eq!(room.meeting.waiting_count(), 0);

    // They may try again with the same guest key.
    room.wait_as(4, "Linus", guest("g3"));
    // Denying someone no longer waiting is an unknown participant.
    let out = room.msg(HOST, ClientMessage::Deny { participant: w });
    assert_refused(&out, HOST, ErrorCode::UnknownParticipant);
}

#[test]
fn admit_all_admits_everyone_waiting_in_order_of_arrival() {
    let mut room = Room::hosted();
    let ids: Vec<_> = (3..=5).map(|c| room.wait(c, &format!("g{c}"))).collect();
    let out = room.msg(HOST, ClientMessage::AdmitAll);
    let at = |conn: u64| {
        position(&out, |o| {
            matches!(o, Output::Send { conn: c, msg: ServerMessage::Joined { .. } } if *c == ConnId(conn))
        })
        .unwrap_or_else(|| panic!("conn {conn} not admitted"))
    };
    assert!(at(3) < at(4) && at(4) < at(5));
    for (conn, id) in (3..=5).zip(&ids) {
        assert_eq!(joined(&out, conn).you, *id);
    }
    assert_eq!(room.meeting.waiting_count(), 0);
    assert_eq!(room.meeting.member_count(), 4);
    assert_eq!(waiting_rooms(&out, HOST).last(), Some(&Vec::new()));
}

#[test]
fn deny_all_empties_the_waiting_room() {
    let mut room = Room::hosted();
    for c in 3..=5 {
        room.wait(c, "x");
    }
    let out = room.msg(HOST, ClientMessage::DenyAll);
    for c in 3..=5 {
        assert_eq!(sent(&out, c), [ServerMessage::Denied]);
        assert!(closes(&out, c));
        assert!(!room.meeting.has_seat(ConnId(c)));
    }
    assert!(bans(&out).is_empty());
    assert_eq!(room.meeting.waiting_count(), 0);
    assert_eq!(room.meeting.member_count(), 1);
    assert_eq!(waiting_rooms(&out, HOST).last(), Some(&Vec::new()));
}

#[test]
fn joining_twice_on_one_connection_is_refused() {
    let mut room = Room::hosted();
    let out = room.join(HOST, "Ada", owner());
    assert_refused(&out, HOST, ErrorCode::AlreadyJoined);
    let token = room.token_of(HOST);
    let out = room.resume(HOST, token);
    assert_refused(&out, HOST, ErrorCode::AlreadyJoined);
    let out = room.msg(
        HOST,
        ClientMessage::Join {
            name: "Ada".into(),
            passcode: None,
            recorder: false,
        },
    );
    assert_refused(&out, HOST, ErrorCode::AlreadyJoined);

    room.wait(9, "Eve");
    let out = room.join(9, "Eve", guest("g9"));
    assert_refused(&out, 9, ErrorCode::AlreadyJoined);
    assert_eq!(room.meeting.waiting_count(), 1);
    assert_eq!(room.meeting.member_count(), 1);
}

#[test]
fn join_with_an_invalid_name_is_refused_and_closed() {
    let mut room = Room::hosted();
    for (conn, name) in [
        (2, String::new()),
        (3, "   ".to_string()),
        (4, "a\u{7}b".to_string()),
        (5, "x".repeat(65)),
    ] {
        let out = room.join(conn, &name, guest(&format!("g{conn}")));
        assert_turned_away(&out, conn, ErrorCode::InvalidName);
    }
    assert_eq!(room.meeting.waiting_count(), 0);
}

#[test]
fn messages_from_an_unseated_connection_are_refused() {
    let mut room = Room::hosted();
    let out = room.msg(42, chat("hi"));
    assert_refused(&out, 42, ErrorCode::NotJoined);
    let out = room.msg(42, ClientMessage::Lock);
    assert_refused(&out, 42, ErrorCode::NotJoined);
    assert!(!room.meeting.state().locked);
}

// ------------------------------------------------- waiting-room isolation ----

#[test]
fn waiting_member_receives_only_its_status() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let eve = room.wait(9, "Eve");

    // A busy meeting around the waiting person.
    room.msg(HOST, chat("hello"));
    room.msg(2, chat("hi"));
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);
    room.media(2, Some(true), Some(true));
    room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Audio,
        },
    );
    room.msg(3, ClientMessage::MuteAll);
    room.msg(HOST, ClientMessage::Lock);
    room.join(10, "Late", guest("g10"));
    room.msg(3, ClientMessage::Unlock);
    room.permissions(PermissionsPatch {
        screen_share: Some(ScreenShare::Everyone),
        rename_self: Some(true),
        ..PermissionsPatch::default()
    });
    room.screen(2, true);
    room.msg(
        HOST,
        ClientMessage::Rename {
            participant: Some(p2),
            name: "Grace H.".into(),
        },
    );
    room.msg(HOST, ClientMessage::SuspendActivities);
    room.msg(HOST, ClientMessage::ResumeActivities);
    room.msg(HOST, ClientMessage::Unlock);
    room.input(Input::FailedAttempts {
        count: 10,
        window: Duration::from_secs(60),
    });
    room.input(Input::Media(MediaEvent::ActiveSpeaker { participant: p2 }));
    // Router reports naming the waiting person's id reach nobody.
    room.input(Input::Media(MediaEvent::Answer {
        participant: eve,
        sdp: "v=0".into(),
    }));
    room.input(Input::Media(MediaEvent::Offer {
        participant: eve,
        sdp: "v=0".into(),
        tracks: Vec::new(),
    }));
    room.input(Input::Media(MediaEvent::Refused { participant: eve }));
    room.input(Input::Media(MediaEvent::ActiveSpeaker { participant: eve }));
    // A member drops and comes back; another guest is denied; one is removed.
    room.disconnect(2);
    room.advance(Duration::from_secs(5));
    let token = room.token_of(2);
    room.resume(12, token);
    let other = room.wait(11, "Other");
    room.msg(3, ClientMessage::Deny { participant: other });
    let p4 = room.admit(4, "Troll");
    room.msg(HOST, ClientMessage::Remove { participant: p4 });
    room.msg(HOST, ClientMessage::TransferHost { participant: p3 });
    room.msg(12, ClientMessage::Leave);
    room.msg(3, chat("bye"));

    // The room was busy: members heard plenty.
    assert!(room.log_to(HOST).len() > 30, "{}", room.log_to(HOST).len());
    assert!(room.log_to(3).contains(&ServerMessage::Chat {
        from: p3,
        payload: "bye".into(),
    }));
    assert!(room.log_to(2).contains(&ServerMessage::Chat {
        from: host,
        payload: "hello".into(),
    }));
    // The waiting person heard exactly one thing.
    assert_eq!(
        room.log_to(9),
        [ServerMessage::Waiting {
            you: eve,
            recording: false
        }]
    );
    assert!(!closes(&room.log, 9));
    assert!(room.meeting.has_seat(ConnId(9)));
    // And the media router was never told about them.
    assert!(!media(&room.log).iter().any(|c| match c {
        MediaCommand::Offer { participant, .. }
        | MediaCommand::Answer { participant, .. }
        | MediaCommand::Allow { participant, .. }
        | MediaCommand::KeyFrame { participant }
        | MediaCommand::Leave { participant } => *participant == eve,
        MediaCommand::ViewSize {
            subscriber,
            publisher,
            ..
        } => *subscriber == eve || *publisher == eve,
    }));

    // Admission is the next and only other thing they hear.
    room.msg(3, ClientMessage::Admit { participant: eve });
    let all = room.log_to(9);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(matches!(all[1], ServerMessage::Joined { you, .. } if you == eve));
}

#[test]
fn denied_waiting_member_hears_only_waiting_then_denied() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let eve = room.wait(9, "Eve");
    room.msg(2, chat("secret plans"));
    room.admit(3, "Linus");
    room.msg(HOST, ClientMessage::Lock);
    room.msg(HOST, ClientMessage::Deny { participant: eve });
    room.msg(HOST, chat("after"));
    room.msg(HOST, ClientMessage::EndMeeting);
    assert_eq!(
        room.log_to(9),
        [
            ServerMessage::Waiting {
                you: eve,
                recording: false
            },
            ServerMessage::Denied
        ]
    );
}

#[test]
fn waiting_connection_may_only_leave() {
    let mut room = Room::hosted();
    let eve = room.wait(9, "Eve");
    for m in [
        chat("let me in"),
        ClientMessage::Admit { participant: eve },
        ClientMessage::Lock,
        ClientMessage::SetMedia {
            audio: Some(true),
            video: None,
            screen: None,
        },
    ] {
        let out = room.msg(9, m);
        assert_refused(&out, 9, ErrorCode::NotJoined);
    }
    let out = room.msg(
        9,
        ClientMessage::Join {
            name: "Eve".into(),
            passcode: None,
            recorder: false,
        },
    );
    assert_refused(&out, 9, ErrorCode::AlreadyJoined);
    assert!(!room.meeting.is_member(ConnId(9)));

    let out = room.msg(9, ClientMessage::Leave);
    assert!(closes(&out, 9));
    assert!(sent(&out, 9).is_empty());
    assert_eq!(waiting_rooms(&out, HOST), [Vec::new()]);
    assert_eq!(room.meeting.waiting_count(), 0);
    assert!(!room.meeting.has_seat(ConnId(9)));
}

#[test]
fn waiting_guest_who_drops_leaves_the_waiting_room() {
    let mut room = Room::hosted();
    let eve = room.wait(9, "Eve");
    let out = room.disconnect(9);
    assert_eq!(waiting_rooms(&out, HOST), [Vec::new()]);
    assert_eq!(room.meeting.waiting_count(), 0);
    assert_eq!(room.meeting.poll_timeout(), None, "no seat is kept");
    let out = room.msg(HOST, ClientMessage::Admit { participant: eve });
    assert_refused(&out, HOST, ErrorCode::UnknownParticipant);
}

// ------------------------------------------------------------ refusals ----

#[test]
fn participants_are_refused_every_moderator_action() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    let eve = room.wait(9, "Eve");
    room.media(3, Some(true), Some(true));
    let state = room.meeting.state();

    let attempts = [
        ClientMessage::Admit { participant: eve },
        ClientMessage::Deny { participant: eve },
        ClientMessage::AdmitAll,
        ClientMessage::DenyAll,
        ClientMessage::Remove { participant: p3 },
        ClientMessage::Remove { participant: host },
        ClientMessage::Remove { participant: eve },
        ClientMessage::Remove { participant: p2 },
        ClientMessage::StopMedia {
            participant: p3,
            kind: MediaKind::Audio,
        },
        ClientMessage::StopMedia {
            participant: host,
            kind: MediaKind::Video,
        },
        ClientMessage::MuteAll,
        ClientMessage::SetPermissions {
            permissions: PermissionsPatch {
                screen_share: Some(ScreenShare::Everyone),
                chat: Some(false),
                self_unmute: Some(false),
                rename_self: Some(true),
                publish: None,
            },
        },
        ClientMessage::Lock,
        ClientMessage::Unlock,
        ClientMessage::SetRole {
            participant: p2,
            role: Role::Cohost,
        },
        ClientMessage::SetRole {
            participant: p3,
            role: Role::Host,
        },
        ClientMessage::TransferHost { participant: p2 },
        ClientMessage::SuspendActivities,
        ClientMessage::ResumeActivities,
        ClientMessage::EndMeeting,
        ClientMessage::Rename {
            participant: Some(p3),
            name: "Loser".into(),
        },
        ClientMessage::Rename {
            participant: Some(host),
            name: "Loser".into(),
        },
        ClientMessage::Rename {
            participant: None,
            name: "The Real Host".into(),
        },
    ];
    for m in attempts {
        let out = room.msg(2, m.clone());
        assert_eq!(
            out,
            [Output::Send {
                conn: ConnId(2),
                msg: ServerMessage::error(ErrorCode::NotPermitted),
            }],
            "{m:?}"
        );
    }

    assert_eq!(room.meeting.state(), state);
    assert_eq!(room.meeting.member_count(), 3);
    assert_eq!(room.meeting.waiting_count(), 1);
    // Nothing about anyone changed: p3 still sends, Eve still waits.
    let out = room.media(3, None, Some(false));
    let p3_view = update_of(&out, HOST, p3).expect("p3 still a member");
    assert!(p3_view.audio && !p3_view.video);
    assert_eq!(p3_view.name, "Linus");
    assert_eq!(p3_view.role, Role::Participant);
    let out = room.msg(HOST, ClientMessage::Admit { participant: eve });
    assert_eq!(joined(&out, 9).you, eve);
}

#[test]
fn cohosts_are_refused_host_only_actions() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p2, Role::Cohost);
    room.media(HOST, Some(true), None);
    let state = room.meeting.state();

    for m in [
        ClientMessage::EndMeeting,
        ClientMessage::SetRole {
            participant: p3,
            role: Role::Cohost,
        },
        ClientMessage::TransferHost { participant: p3 },
        ClientMessage::TransferHost { participant: p2 },
        ClientMessage::Remove { participant: host },
        ClientMessage::StopMedia {
            participant: host,
            kind: MediaKind::Audio,
        },
        ClientMessage::Rename {
            participant: Some(host),
            name: "x".into(),
        },
    ] {
        let out = room.msg(2, m.clone());
        assert_refused(&out, 2, ErrorCode::NotPermitted);
    }
    assert_eq!(room.meeting.state(), state);
    assert_eq!(room.meeting.member_count(), 3);
    // But a co-host moderates.
    let out = room.msg(2, ClientMessage::Lock);
    assert!(meeting_update(&out, 3).is_some_and(|m| m.locked));
}

#[test]
fn actions_on_unknown_participants_are_refused() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let ghost = ParticipantId(999);
    for m in [
        ClientMessage::Admit { participant: ghost },
        ClientMessage::Deny { participant: ghost },
        ClientMessage::Remove { participant: ghost },
        ClientMessage::StopMedia {
            participant: ghost,
            kind: MediaKind::Audio,
        },
        ClientMessage::Rename {
            participant: Some(ghost),
            name: "x".into(),
        },
        ClientMessage::SetRole {
            participant: ghost,
            role: Role::Cohost,
        },
        ClientMessage::TransferHost { participant: ghost },
    ] {
        let out = room.msg(HOST, m.clone());
        assert_refused(&out, HOST, ErrorCode::UnknownParticipant);
    }
    assert!(room.log.iter().all(|o| !matches!(o, Output::Ban(_))));
}

// ---------------------------------------------------------------- lock ----

#[test]
fn locked_meeting_refuses_newcomers_but_not_the_owner() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let early = room.wait(9, "Early");

    let out = room.msg(HOST, ClientMessage::Lock);
    for conn in [HOST, 2] {
        let m = meeting_update(&out, conn).expect("members are told");
        assert!(m.locked && !m.suspended);
    }
    assert!(sent(&out, 9).is_empty());

    let out = room.join(5, "Mallory", guest("g5"));
    assert_turned_away(&out, 5, ErrorCode::Locked);
    let out = room.join(6, "Signed in", account(99, "g6"));
    assert_turned_away(&out, 6, ErrorCode::Locked);
    assert_eq!(room.meeting.waiting_count(), 1);

    // The owner still gets in.
    let out = room.join(7, "Ada (phone)", account(OWNER, "owner-phone"));
    assert_eq!(joined(&out, 7).role, Role::Cohost);
    // Whoever already waited may still be admitted.
    let out = room.msg(HOST, ClientMessage::Admit { participant: early });
    assert_eq!(joined(&out, 9).you, early);

    let out = room.msg(HOST, ClientMessage::Unlock);
    assert!(meeting_update(&out, 2).is_some_and(|m| !m.locked));
    room.wait(8, "Now welcome");
}

#[test]
fn lock_refuses_newcomers_even_without_a_waiting_room() {
    let mut room = Room::hosted_with(|c| c.waiting_room = false);
    let out = room.join(2, "Grace", guest("g2"));
    let j = joined(&out, 2);
    assert_eq!(j.role, Role::Participant, "straight in, no waiting");
    assert!(
        !sent(&out, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Waiting { .. }))
    );

    room.msg(HOST, ClientMessage::Lock);
    let out = room.join(3, "Mallory", guest("g3"));
    assert_turned_away(&out, 3, ErrorCode::Locked);
    assert_eq!(room.meeting.member_count(), 2);

    room.msg(HOST, ClientMessage::Unlock);
    let out = room.join(4, "Linus", guest("g4"));
    assert_eq!(joined(&out, 4).role, Role::Participant);
}

// -------------------------------------------------------- remove and ban ----

#[test]
fn removed_member_is_banned_by_account_and_guest_key() {
    let mut room = Room::hosted();
    let p2 = room.admit_as(2, "Troll", account(42, "k2"));
    room.admit(3, "Grace");
    let token = room.token_of(2);

    let out = room.msg(HOST, ClientMessage::Remove { participant: p2 });
    assert_eq!(sent(&out, 2), [ServerMessage::Removed]);
    let told = position(
        &out,
        |o| matches!(o, Output::Send { conn, msg: ServerMessage::Removed } if *conn == ConnId(2)),
    );
    let closed = position(
        &out,
        |o| matches!(o, Output::Close { conn } if *conn == ConnId(2)),
    );
    assert!(told.is_some() && closed.is_some() && told < closed);
    let left = ServerMessage::ParticipantLeft {
        participant: p2,
        reason: LeaveReason::Removed,
    };
    assert_eq!(sent(&out, 3), std::slice::from_ref(&left));
    assert!(sent(&out, HOST).contains(&left));
    assert_eq!(
        bans(&out),
        [vec![BanKey::Account(42), BanKey::Guest("k2".into())]]
    );
    assert!(media(&out).contains(&MediaCommand::Leave { participant: p2 }));
    assert!(!room.meeting.has_seat(ConnId(2)));
    assert_eq!(room.meeting.member_count(), 2);

    // Back with the same guest key, or with the same account: banned.
    let out = room.join(20, "Troll", guest("k2"));
    assert_turned_away(&out, 20, ErrorCode::Banned);
    let out = room.join(21, "Troll", account(42, "fresh-cookie"));
    assert_turned_away(&out, 21, ErrorCode::Banned);
    // Nor may they take the seat back with their resume token.
    let out = room.resume(22, token);
    assert_turned_away(&out, 22, ErrorCode::ResumeFailed);
    // Someone else is unaffected.
    room.wait(23, "Stranger");
}

#[test]
fn removing_a_waiting_guest_bans_them_too() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let eve = room.wait(9, "Eve");
    let out = room.msg(HOST, ClientMessage::Remove { participant: eve });
    assert_eq!(sent(&out, 9), [ServerMessage::Removed]);
    assert!(closes(&out, 9));
    assert_eq!(bans(&out), [vec![BanKey::Guest("g9".into())]]);
    assert_eq!(waiting_rooms(&out, HOST), [Vec::new()]);
    assert!(sent(&out, 2).is_empty(), "members were never told of them");
    let out = room.join(10, "Eve again", guest("g9"));
    assert_turned_away(&out, 10, ErrorCode::Banned);
}

#[test]
fn stored_bans_are_enforced_but_never_against_the_owner() {
    let mut room = Room::with_bans(
        |_| {},
        vec![BanKey::Guest("bad".into()), BanKey::Account(OWNER)],
    );
    let out = room.join(2, "Mallory", guest("bad"));
    assert_turned_away(&out, 2, ErrorCode::Banned);
    let out = room.join(HOST, "Ada", owner());
    assert_eq!(joined(&out, HOST).role, Role::Host);
}

fn from(key: &str, ip: [u8; 4]) -> Identity {
    Identity {
        address: Some(IpAddr::from(ip)),
        ..guest(key)
    }
}

#[test]
fn a_removal_bans_the_network_too_and_a_new_identity_from_it_must_wait() {
    // The waiting room is off: anyone unbanned walks straight in.
    let mut room = Room::hosted_with(|c| c.waiting_room = false);
    let out = room.join(2, "Troll", from("k2", [198, 51, 100, 7]));
    let troll = joined(&out, 2).you;
    let out = room.msg(HOST, ClientMessage::Remove { participant: troll });
    assert_eq!(
        bans(&out),
        [vec![
            BanKey::Guest("k2".into()),
            BanKey::Address(IpAddr::from([198, 51, 100, 7]))
        ]]
    );

    // The same identity from another network: turned away.
    let out = room.join(3, "Troll", from("k2", [203, 0, 113, 1]));
    assert_turned_away(&out, 3, ErrorCode::Banned);
    // A fresh identity from the banned network: held for a moderator, who is
    // told why, although the waiting room is off.
    let back = room.wait_as(4, "Totally new", from("k4", [198, 51, 100, 7]));
    assert_eq!(
        waiting_rooms(&room.log, HOST).last().cloned(),
        Some(vec![WaitingParticipant {
            id: back,
            name: "Totally new".into(),
            signed_in: false,
            recording: false,
            same_network_as_removed: true,
        }])
    );
    // An unbanned account from that network waits too: the network is all
    // that links it to the removal, and the host decides.
    room.wait_as(5, "Colleague", {
        let mut i = account(77, "k5");
        i.address = Some(IpAddr::from([198, 51, 100, 7]));
        i
    });
    // Anyone from elsewhere still walks in.
    let out = room.join(6, "Grace", from("k6", [192, 0, 2, 9]));
    assert_eq!(joined(&out, 6).role, Role::Participant);
    // Admitted, the held person is an ordinary participant.
    let out = room.msg(HOST, ClientMessage::Admit { participant: back });
    assert_eq!(joined(&out, 4).role, Role::Participant);
}

#[test]
fn a_banned_network_never_holds_back_the_owner() {
    let net = IpAddr::from([198, 51, 100, 7]);
    let mut room = Room::with_bans(|c| c.waiting_room = false, vec![BanKey::Address(net)]);
    let mut me = owner();
    me.address = Some(net);
    let out = room.join(HOST, "Ada", me);
    assert_eq!(joined(&out, HOST).role, Role::Host);
}

#[test]
fn a_banned_network_does_not_get_past_a_lock() {
    let net = IpAddr::from([198, 51, 100, 7]);
    let mut room = Room::with_bans(|c| c.waiting_room = false, vec![BanKey::Address(net)]);
    room.join(HOST, "Ada", owner());
    room.msg(HOST, ClientMessage::Lock);
    let out = room.join(2, "Troll", from("k2", [198, 51, 100, 7]));
    assert_turned_away(&out, 2, ErrorCode::Locked);
}

#[test]
fn cohost_cannot_remove_the_host_and_nobody_removes_themselves() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    let p4 = room.admit(4, "Sam");
    room.set_role(p2, Role::Cohost);
    room.set_role(p3, Role::Cohost);

    let out = room.msg(2, ClientMessage::Remove { participant: host });
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    for (conn, me) in [(HOST, host), (2, p2), (4, p4)] {
        let out = room.msg(conn, ClientMessage::Remove { participant: me });
        assert_refused(&out, conn, ErrorCode::NotPermitted);
    }
    assert!(bans(&room.log).is_empty());
    assert_eq!(room.meeting.member_count(), 4);

    // A co-host may remove another co-host, and the host may remove a co-host.
    let out = room.msg(2, ClientMessage::Remove { participant: p3 });
    assert_eq!(sent(&out, 3), [ServerMessage::Removed]);
    let out = room.msg(HOST, ClientMessage::Remove { participant: p2 });
    assert_eq!(sent(&out, 2), [ServerMessage::Removed]);
    assert_eq!(room.meeting.member_count(), 2);
}

#[test]
fn the_owner_cannot_be_removed_after_handing_over_the_host_role() {
    let mut room = Room::hosted();
    let owner_id = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    room.msg(HOST, ClientMessage::TransferHost { participant: p2 });
    let out = room.msg(
        2,
        ClientMessage::Remove {
            participant: owner_id,
        },
    );
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    assert!(bans(&room.log).is_empty());
    assert!(room.meeting.is_member(ConnId(HOST)));
}

// ------------------------------------------------------- media controls ----

#[test]
fn moderator_mute_is_a_hold_that_self_unmute_lifts() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let out = room.media(2, Some(true), None);
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.audio));
    assert!(
        update_of(&out, 2, p2).is_some_and(|p| p.audio),
        "the sender too"
    );
    assert_eq!(allowed(&out, p2), Some((true, false, false)));

    let out = room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Audio,
        },
    );
    assert!(update_of(&out, 2, p2).is_some_and(|p| !p.audio));
    assert_eq!(allowed(&out, p2), Some((false, false, false)));

    // self_unmute is on by default: the participant may unmute.
    let out = room.media(2, Some(true), None);
    assert!(errors(&out, 2).is_empty());
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.audio));
}

#[test]
fn held_audio_stays_muted_while_self_unmute_is_off() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.permissions(PermissionsPatch {
        self_unmute: Some(false),
        ..PermissionsPatch::default()
    });
    room.media(2, Some(true), None);
    room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Audio,
        },
    );
    let out = room.media(2, Some(true), None);
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    // One refused field refuses the whole message.
    let out = room.media(2, Some(true), Some(true));
    assert_refused(&out, 2, ErrorCode::NotPermitted);

    // Someone nobody muted may still unmute.
    let out = room.media(3, Some(true), None);
    assert!(update_of(&out, HOST, p3).is_some_and(|p| p.audio));

    // Stopping a kind that was already off still holds it, with no broadcast.
    let out = room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p3,
            kind: MediaKind::Video,
        },
    );
    assert!(updated_ids(&out).is_empty());
    let out = room.media(3, None, Some(true));
    assert_refused(&out, 3, ErrorCode::NotPermitted);

    // Once self-unmute is allowed again, the hold lifts by unmuting.
    room.permissions(PermissionsPatch {
        self_unmute: Some(true),
        ..PermissionsPatch::default()
    });
    let out = room.media(2, Some(true), None);
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.audio));
    room.permissions(PermissionsPatch {
        self_unmute: Some(false),
        ..PermissionsPatch::default()
    });
    let out = room.media(2, Some(false), None);
    assert!(errors(&out, 2).is_empty());
    let out = room.media(2, Some(true), None);
    assert!(
        errors(&out, 2).is_empty(),
        "the hold was lifted by the permitted unmute"
    );
}

#[test]
fn stopped_video_may_not_be_restarted_until_activities_resume() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.media(2, Some(true), Some(true));
    let out = room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Video,
        },
    );
    let view = update_of(&out, HOST, p2).unwrap();
    assert!(view.audio && !view.video);
    assert_eq!(allowed(&out, p2), Some((true, false, false)));
    let out = room.media(2, None, Some(true));
    assert_refused(&out, 2, ErrorCode::NotPermitted);

    // The hold survives a dropped socket and a resume.
    room.disconnect(2);
    let token = room.token_of(2);
    room.resume(12, token);
    let out = room.media(12, None, Some(true));
    assert_refused(&out, 12, ErrorCode::NotPermitted);
    // Turning it off or muting is always allowed.
    let out = room.media(12, Some(false), Some(false));
    assert!(errors(&out, 12).is_empty());

    room.msg(HOST, ClientMessage::ResumeActivities);
    let out = room.media(12, None, Some(true));
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.video));
}

#[test]
fn mute_all_mutes_participants_but_not_moderators() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    let p4 = room.admit(4, "Sam");
    room.set_role(p2, Role::Cohost);
    for conn in [HOST, 2, 3, 4] {
        room.media(conn, Some(true), Some(true));
    }
    room.permissions(PermissionsPatch {
        self_unmute: Some(false),
        ..PermissionsPatch::default()
    });
    let out = room.msg(2, ClientMessage::MuteAll);
    assert_eq!(updated_ids(&out), [p3, p4]);
    for p in [p3, p4] {
        let v = update_of(&out, HOST, p).unwrap();
        assert!(!v.audio && v.video, "only audio stops");
        assert_eq!(allowed(&out, p), Some((false, true, false)));
    }
    assert!(!updated_ids(&out).contains(&host));
    let out = room.media(3, Some(true), None);
    assert_refused(&out, 3, ErrorCode::NotPermitted);
    // A moderator's own audio is untouched and theirs to control.
    let out = room.media(2, Some(false), None);
    assert!(update_of(&out, HOST, p2).is_some_and(|p| !p.audio));
}

#[test]
fn cohost_cannot_stop_the_hosts_media_but_the_host_can_stop_a_cohosts() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    room.set_role(p2, Role::Cohost);
    room.media(HOST, Some(true), None);
    room.media(2, Some(true), None);
    let out = room.msg(
        2,
        ClientMessage::StopMedia {
            participant: host,
            kind: MediaKind::Audio,
        },
    );
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    let out = room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Audio,
        },
    );
    assert!(update_of(&out, 2, p2).is_some_and(|p| !p.audio));
    // A moderator is never held.
    room.permissions(PermissionsPatch {
        self_unmute: Some(false),
        ..PermissionsPatch::default()
    });
    let out = room.media(2, Some(true), None);
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.audio));
}

#[test]
fn stop_screen_ends_a_participants_share_and_holds_it() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.permissions(screen_share(ScreenShare::Everyone));
    let out = room.screen(2, true);
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.screen));
    let out = room.msg(
        HOST,
        ClientMessage::StopMedia {
            participant: p2,
            kind: MediaKind::Screen,
        },
    );
    assert!(update_of(&out, 2, p2).is_some_and(|p| !p.screen));
    assert_eq!(allowed(&out, p2), Some((false, false, false)));
    let out = room.screen(2, true);
    assert_refused(&out, 2, ErrorCode::NotPermitted);
}

// --------------------------------------------------------- screen share ----

#[test]
fn participants_may_not_share_screens_by_default() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);
    assert_eq!(
        room.meeting.state().permissions.screen_share,
        ScreenShare::HostOnly
    );
    let out = room.screen(2, true);
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    let out = room.screen(HOST, true);
    assert!(update_of(&out, 2, host).is_some_and(|p| p.screen));
    let out = room.screen(3, true);
    assert!(update_of(&out, 2, p3).is_some_and(|p| p.screen));
}

#[test]
fn screen_share_for_everyone_then_host_only_stops_participant_shares() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");

    let out = room.permissions(screen_share(ScreenShare::Everyone));
    let everyone = Permissions {
        screen_share: ScreenShare::Everyone,
        ..Permissions::default()
    };
    assert!(out.contains(&Output::SavePermissions(everyone)));
    for conn in [HOST, 2, 3] {
        assert_eq!(
            meeting_update(&out, conn).map(|m| m.permissions),
            Some(everyone)
        );
    }

    for conn in [HOST, 2, 3] {
        let out = room.screen(conn, true);
        assert!(errors(&out, conn).is_empty());
    }
    room.media(2, Some(true), None);

    let out = room.permissions(screen_share(ScreenShare::HostOnly));
    assert!(out.contains(&Output::SavePermissions(Permissions::default())));
    assert_eq!(updated_ids(&out), [p2, p3], "the host keeps sharing");
    let v2 = update_of(&out, HOST, p2).unwrap();
    assert!(!v2.screen && v2.audio, "only the share stops");
    assert!(update_of(&out, 3, p3).is_some_and(|p| !p.screen));
    assert_eq!(allowed(&out, p2), Some((true, false, false)));
    assert_eq!(allowed(&out, p3), Some((false, false, false)));
    assert!(allowed(&out, host).is_none());
    assert!(
        meeting_update(&out, 2)
            .is_some_and(|m| m.permissions.screen_share == ScreenShare::HostOnly)
    );
    let out = room.screen(2, true);
    assert_refused(&out, 2, ErrorCode::NotPermitted);
}

#[test]
fn reconfigured_host_only_also_stops_participant_shares() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.permissions(screen_share(ScreenShare::Everyone));
    room.screen(2, true);
    let out = room.input(Input::Reconfigure(config()));
    assert!(update_of(&out, HOST, p2).is_some_and(|p| !p.screen));
    assert!(meeting_update(&out, 2).is_some_and(|m| m.permissions == Permissions::default()));
    assert!(
        !out.iter().any(|o| matches!(o, Output::SavePermissions(_))),
        "the HTTP API already stored them"
    );
}

// ---------------------------------------------------------------- chat ----

#[test]
fn chat_is_relayed_to_every_member_including_the_sender() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    room.wait(9, "Eve");
    let out = room.msg(2, chat("opaque-ciphertext"));
    let expected = ServerMessage::Chat {
        from: p2,
        payload: "opaque-ciphertext".into(),
    };
    for conn in [HOST, 2, 3] {
        assert_eq!(sent(&out, conn), std::slice::from_ref(&expected));
    }
    assert!(sent(&out, 9).is_empty());
    assert_eq!(out.len(), 3);
}

#[test]
fn chat_is_refused_when_turned_off_except_for_moderators() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);
    room.permissions(PermissionsPatch {
        chat: Some(false),
        ..PermissionsPatch::default()
    });
    let out = room.msg(2, chat("hello?"));
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    for conn in [HOST, 3] {
        let out = room.msg(conn, chat("moderators may"));
        assert_eq!(out.len(), 3);
    }
    room.permissions(PermissionsPatch {
        chat: Some(true),
        ..PermissionsPatch::default()
    });
    let out = room.msg(2, chat("back"));
    assert_eq!(out.len(), 3);
}

#[test]
fn chat_is_refused_while_suspended() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    room.msg(HOST, ClientMessage::SuspendActivities);
    let out = room.msg(2, chat("hello?"));
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    let out = room.msg(HOST, chat("host speaking"));
    assert_eq!(out.len(), 2);
    room.msg(HOST, ClientMessage::ResumeActivities);
    let out = room.msg(2, chat("thanks"));
    assert_eq!(out.len(), 2);
}

#[test]
fn oversized_chat_is_refused() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let too_big = "a".repeat(MAX_CHAT_BYTES + 1);
    let out = room.msg(2, chat(&too_big));
    assert_refused(&out, 2, ErrorCode::ChatTooLarge);
    let out = room.msg(HOST, chat(&too_big));
    assert_refused(&out, HOST, ErrorCode::ChatTooLarge);
    let out = room.msg(2, chat(&"a".repeat(MAX_CHAT_BYTES)));
    assert_eq!(out.len(), 2, "exactly the limit is relayed");
}

// -------------------------------------------------------------- rename ----

#[test]
fn participants_may_not_rename_themselves_unless_allowed() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let out = room.msg(
        2,
        ClientMessage::Rename {
            participant: None,
            name: "Host".into(),
        },
    );
    assert_refused(&out, 2, ErrorCode::NotPermitted);

    room.permissions(PermissionsPatch {
        rename_self: Some(true),
        ..PermissionsPatch::default()
    });
    let out = room.msg(
        2,
        ClientMessage::Rename {
            participant: None,
            name: "  Grace H.  ".into(),
        },
    );
    assert_eq!(update_of(&out, HOST, p2).unwrap().name, "Grace H.");
    assert_eq!(update_of(&out, 2, p2).unwrap().name, "Grace H.");
    // Naming oneself explicitly is the same as renaming oneself.
    let out = room.msg(
        2,
        ClientMessage::Rename {
            participant: Some(p2),
            name: "G".into(),
        },
    );
    assert_eq!(update_of(&out, HOST, p2).unwrap().name, "G");
}

#[test]
fn self_rename_is_refused_while_activities_are_suspended() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    room.permissions(PermissionsPatch {
        rename_self: Some(true),
        ..PermissionsPatch::default()
    });
    let rename = |participant, name: &str| ClientMessage::Rename {
        participant,
        name: name.into(),
    };
    room.msg(HOST, ClientMessage::SuspendActivities);
    // Either way of naming oneself, and every time: the same refusal as
    // chat and media get, and no one hears of a new name.
    for attempt in 0..100 {
        let target = if attempt % 2 == 0 { None } else { Some(p2) };
        let out = room.msg(2, rename(target, &format!("Grace {attempt}")));
        assert_refused(&out, 2, ErrorCode::NotPermitted);
    }
    // Moderators are not suspended: they may still rename themselves and others.
    let out = room.msg(HOST, rename(None, "Ada (host)"));
    assert_eq!(update_of(&out, 2, host).unwrap().name, "Ada (host)");
    let out = room.msg(HOST, rename(Some(p2), "Grace (muted)"));
    assert_eq!(update_of(&out, 2, p2).unwrap().name, "Grace (muted)");
    // Once activities resume, so does renaming.
    room.msg(HOST, ClientMessage::ResumeActivities);
    let out = room.msg(2, rename(None, "Grace H."));
    assert_eq!(update_of(&out, HOST, p2).unwrap().name, "Grace H.");
}

#[test]
fn moderators_rename_others_and_invalid_names_are_refused() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);
    let eve = room.wait(9, "Eve");

    let out = room.msg(
        HOST,
        ClientMessage::Rename {
            participant: Some(p2),
            name: "Grace (guest)".into(),
        },
    );
    for conn in [HOST, 2, 3] {
        assert_eq!(update_of(&out, conn, p2).unwrap().name, "Grace (guest)");
    }
    let out = room.msg(
        3,
        ClientMessage::Rename {
            participant: Some(p2),
            name: "Grace".into(),
        },
    );
    assert_eq!(update_of(&out, 2, p2).unwrap().name, "Grace");
    // A moderator may rename themselves without rename_self.
    let out = room.msg(
        3,
        ClientMessage::Rename {
            participant: None,
            name: "Linus T.".into(),
        },
    );
    assert_eq!(update_of(&out, 2, p3).unwrap().name, "Linus T.");

    for bad in [
        String::new(),
        "   ".into(),
        "a\u{0}b".into(),
        "x".repeat(65),
    ] {
        let out = room.msg(
            HOST,
            ClientMessage::Rename {
                participant: Some(p2),
                name: bad.clone(),
            },
        );
        assert_refused(&out, HOST, ErrorCode::InvalidName);
    }
    let out = room.msg(
        3,
        ClientMessage::Rename {
            participant: Some(host),
            name: "Usurped".into(),
        },
    );
    assert_refused(&out, 3, ErrorCode::NotPermitted);
    let out = room.msg(
        HOST,
        ClientMessage::Rename {
            participant: Some(eve),
            name: "Waiting".into(),
        },
    );
    assert_refused(&out, HOST, ErrorCode::UnknownParticipant);
    // The name stuck at its last valid value.
    let out = room.media(2, Some(true), None);
    assert_eq!(update_of(&out, HOST, p2).unwrap().name, "Grace");
}

// --------------------------------------------------------------- roles ----

#[test]
fn a_new_cohost_receives_the_waiting_room() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    let eve = room.wait(9, "Eve");

    let out = room.msg(
        HOST,
        ClientMessage::SetRole {
            participant: p2,
            role: Role::Cohost,
        },
    );
    assert!(update_of(&out, 3, p2).is_some_and(|p| p.role == Role::Cohost));
    assert!(update_of(&out, 2, p2).is_some_and(|p| p.role == Role::Cohost));
    let lists = waiting_rooms(&out, 2);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].iter().map(|w| w.id).collect::<Vec<_>>(), [eve]);
    assert!(waiting_rooms(&out, 3).is_empty());
    assert!(sent(&out, 9).is_empty());

    // Demoted again: no more moderating, no more waiting-room lists.
    room.set_role(p2, Role::Participant);
    let out = room.msg(2, ClientMessage::Admit { participant: eve });
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    let out = room.join(10, "Sam", guest("g10"));
    assert!(sent(&out, 2).is_empty());
    assert_eq!(waiting_rooms(&out, HOST).len(), 1);

    // The host may not change their own role this way.
    let host = room.id_of(HOST);
    let out = room.msg(
        HOST,
        ClientMessage::SetRole {
            participant: host,
            role: Role::Participant,
        },
    );
    assert_refused(&out, HOST, ErrorCode::NotPermitted);
}

#[test]
fn cohost_made_by_set_role_can_admit() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let eve = room.wait(9, "Eve");
    room.set_role(p2, Role::Cohost);
    let out = room.msg(2, ClientMessage::Admit { participant: eve });
    assert_eq!(joined(&out, 9).you, eve);
}

#[test]
fn transfer_host_makes_the_old_host_a_cohost() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");

    let out = room.msg(HOST, ClientMessage::TransferHost { participant: p2 });
    assert!(update_of(&out, 3, p2).is_some_and(|p| p.role == Role::Host));
    assert!(update_of(&out, 3, host).is_some_and(|p| p.role == Role::Cohost));

    let out = room.msg(HOST, ClientMessage::EndMeeting);
    assert_refused(&out, HOST, ErrorCode::NotPermitted);
    let out = room.msg(HOST, ClientMessage::Lock);
    assert!(
        meeting_update(&out, 3).is_some_and(|m| m.locked),
        "still moderates"
    );
    let out = room.msg(
        2,
        ClientMessage::SetRole {
            participant: p3,
            role: Role::Cohost,
        },
    );
    assert!(update_of(&out, 3, p3).is_some_and(|p| p.role == Role::Cohost));

    // set_role host is a transfer; to oneself it does nothing.
    let out = room.msg(2, ClientMessage::TransferHost { participant: p2 });
    assert!(out.is_empty());
    let out = room.msg(
        2,
        ClientMessage::SetRole {
            participant: host,
            role: Role::Host,
        },
    );
    assert!(update_of(&out, 3, host).is_some_and(|p| p.role == Role::Host));
    assert!(update_of(&out, 3, p2).is_some_and(|p| p.role == Role::Cohost));
}

#[test]
fn only_the_host_may_end_the_meeting_and_everyone_is_told() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    room.set_role(p3, Role::Cohost);
    let eve = room.wait(9, "Eve");

    for conn in [2, 3] {
        let out = room.msg(conn, ClientMessage::EndMeeting);
        assert_refused(&out, conn, ErrorCode::NotPermitted);
    }
    let out = room.msg(HOST, ClientMessage::EndMeeting);
    let ended = ServerMessage::Ended {
        reason: EndReason::EndedByHost,
    };
    for conn in [HOST, 2, 3, 9] {
        assert_eq!(sent(&out, conn), std::slice::from_ref(&ended));
        let told = position(
            &out,
            |o| matches!(o, Output::Send { conn: c, .. } if *c == ConnId(conn)),
        );
        let closed = position(
            &out,
            |o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)),
        );
        assert!(told.is_some() && closed.is_some() && told < closed);
    }
    for p in [host, p2, p3] {
        assert!(media(&out).contains(&MediaCommand::Leave { participant: p }));
    }
    assert_eq!(
        room.log_to(9),
        [
            ServerMessage::Waiting {
                you: eve,
                recording: false
            },
            ended.clone()
        ]
    );
    assert_eq!(room.meeting.member_count(), 0);
    assert_eq!(room.meeting.waiting_count(), 0);
    assert!(room.meeting.is_idle());
    assert!(!room.meeting.has_seat(ConnId(HOST)));
    let out = room.msg(2, chat("anyone?"));
    assert_refused(&out, 2, ErrorCode::NotJoined);
}

#[test]
fn ending_from_outside_reaches_members_and_the_waiting_room() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    room.wait(9, "Eve");
    room.msg(HOST, ClientMessage::Lock);
    let out = room.input(Input::End(EndReason::ServerShutdown));
    for conn in [HOST, 2, 9] {
        assert_eq!(
            sent(&out, conn),
            [ServerMessage::Ended {
                reason: EndReason::ServerShutdown
            }]
        );
        assert!(closes(&out, conn));
    }
    assert!(room.meeting.is_idle());
    assert!(
        !room.meeting.state().locked,
        "the lock lives in memory only"
    );
}

// ------------------------------------------------------------- suspend ----

#[test]
fn suspend_stops_participant_media_locks_and_silences_until_resumed() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    let p2 = room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    let p4 = room.admit(4, "Sam");
    room.set_role(p4, Role::Cohost);
    room.permissions(screen_share(ScreenShare::Everyone));
    room.msg(
        2,
        ClientMessage::SetMedia {
            audio: Some(true),
            video: Some(true),
            screen: Some(true),
        },
    );
    room.media(3, Some(true), None);
    room.media(HOST, Some(true), Some(true));
    room.media(4, None, Some(true));

    let out = room.msg(4, ClientMessage::SuspendActivities);
    assert_eq!(updated_ids(&out), [p2, p3], "moderators keep their media");
    for p in [p2, p3] {
        let v = update_of(&out, HOST, p).unwrap();
        assert!(!v.audio && !v.video && !v.screen);
        assert_eq!(allowed(&out, p), Some((false, false, false)));
    }
    assert!(allowed(&out, host).is_none() && allowed(&out, p4).is_none());
    for conn in [HOST, 2, 3, 4] {
        let m = meeting_update(&out, conn).unwrap();
        assert!(m.suspended && m.locked);
    }
    assert!(room.meeting.state().suspended);

    for m in [
        ClientMessage::SetMedia {
            audio: Some(true),
            video: None,
            screen: None,
        },
        ClientMessage::SetMedia {
            audio: None,
            video: Some(true),
            screen: None,
        },
        ClientMessage::SetMedia {
            audio: None,
            video: None,
            screen: Some(true),
        },
        chat("psst"),
    ] {
        let out = room.msg(2, m.clone());
        assert_refused(&out, 2, ErrorCode::NotPermitted);
    }
    // Moderators carry on.
    let out = room.media(4, Some(true), None);
    assert!(update_of(&out, 2, p4).is_some_and(|p| p.audio));
    assert_eq!(room.msg(4, chat("we'll be right back")).len(), 4);
    // Locked: newcomers refused, the owner not.
    let out = room.join(5, "Mallory", guest("g5"));
    assert_turned_away(&out, 5, ErrorCode::Locked);
    let out = room.join(6, "Ada (phone)", account(OWNER, "owner-phone"));
    assert_eq!(joined(&out, 6).role, Role::Cohost);

    // Resuming lifts the suspension but keeps the lock.
    let out = room.msg(HOST, ClientMessage::ResumeActivities);
    let m = meeting_update(&out, 2).unwrap();
    assert!(!m.suspended && m.locked);
    let out = room.media(2, Some(true), Some(true));
    assert!(update_of(&out, HOST, p2).is_some_and(|p| p.audio && p.video));
    assert!(errors(&room.msg(2, chat("back")), 2).is_empty());
    let out = room.join(7, "Mallory", guest("g7"));
    assert_turned_away(&out, 7, ErrorCode::Locked);
    room.msg(HOST, ClientMessage::Unlock);
    room.wait(8, "Now welcome");
}

// ------------------------------------------------------------- resume ----

#[test]
fn a_dropped_member_shows_as_reconnecting() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    assert_eq!(room.meeting.poll_timeout(), None);
    let out = room.disconnect(2);
    let expect = |conn| {
        let v = update_of(&out, conn, p2).expect("told");
        assert_eq!(v.presence, Presence::Reconnecting);
    };
    expect(HOST);
    expect(3);
    assert!(sent(&out, 2).is_empty());
    assert_eq!(room.meeting.member_count(), 3);
    assert!(!room.meeting.has_seat(ConnId(2)));
    assert_eq!(room.meeting.poll_timeout(), Some(room.now + RESUME_WINDOW));
    // Not yet: a timeout before the window ends changes nothing.
    room.advance(RESUME_WINDOW - Duration::from_millis(1));
    assert!(room.timeout().is_empty());
    assert_eq!(room.meeting.member_count(), 3);
}

#[test]
fn resume_within_the_window_restores_the_seat_without_the_waiting_room() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    room.media(2, Some(true), None);
    room.msg(HOST, ClientMessage::Lock);
    let old = room.token_of(2);
    room.disconnect(2);
    room.advance(Duration::from_secs(29));
    assert!(room.timeout().is_empty());

    let out = room.resume(12, old);
    let j = joined(&out, 12);
    assert_eq!(j.you, p2, "the same seat");
    assert_eq!(j.role, Role::Participant);
    assert!(j.meeting.locked, "resume passes the lock");
    let me = j.participants.iter().find(|p| p.id == p2).unwrap();
    assert!(me.audio, "media state kept");
    assert_eq!(me.presence, Presence::Connected);
    assert!(
        !sent(&out, 12)
            .iter()
            .any(|m| matches!(m, ServerMessage::Waiting { .. }))
    );
    assert!(waiting_rooms(&out, HOST).is_empty());
    assert!(update_of(&out, 3, p2).is_some_and(|p| p.presence == Presence::Connected));
    assert_eq!(room.meeting.poll_timeout(), None);
    assert!(room.meeting.is_member(ConnId(12)));
    assert_eq!(room.meeting.member_count(), 3);

    // A fresh token; the used one no longer works.
    let fresh = room.token_of(12);
    assert!(fresh != old);
    room.disconnect(12);
    let out = room.resume(13, old);
    assert_turned_away(&out, 13, ErrorCode::ResumeFailed);
    let out = room.resume(14, fresh);
    assert_eq!(joined(&out, 14).you, p2);
}

#[test]
fn resume_over_a_live_connection_closes_the_old_one_silently() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let token = room.token_of(2);
    let out = room.resume(12, token);
    assert_eq!(joined(&out, 12).you, p2);
    assert!(closes(&out, 2));
    assert!(sent(&out, 2).is_empty());
    assert!(!room.meeting.has_seat(ConnId(2)));
    // The old socket's late close report changes nothing.
    let out = room.disconnect(2);
    assert!(out.is_empty());
    assert!(room.meeting.is_member(ConnId(12)));
}

#[test]
fn resume_after_the_window_fails_and_the_seat_times_out() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let token = room.token_of(2);
    room.disconnect(2);
    let deadline = room.meeting.poll_timeout().expect("a seat is kept");
    room.advance(deadline - room.now);

    let out = room.timeout();
    assert_eq!(
        sent(&out, HOST),
        [ServerMessage::ParticipantLeft {
            participant: p2,
            reason: LeaveReason::TimedOut,
        }]
    );
    assert!(media(&out).contains(&MediaCommand::Leave { participant: p2 }));
    assert!(bans(&out).is_empty());
    assert_eq!(room.meeting.member_count(), 1);
    assert_eq!(room.meeting.poll_timeout(), None);

    let out = room.resume(12, token);
    assert_turned_away(&out, 12, ErrorCode::ResumeFailed);
    // A plain join is the way back (through the waiting room).
    room.wait(13, "Grace");
}

#[test]
fn resume_after_the_window_fails_even_if_the_timer_fires_late() {
    // The shell's timer may run late (a busy room task, a command handled
    // first); the window is still 30 s.
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let token = room.token_of(2);
    room.disconnect(2);
    room.advance(RESUME_WINDOW + Duration::from_secs(1));
    let out = room.resume(12, token);
    assert!(errors(&out, 12).contains(&ErrorCode::ResumeFailed));
    assert!(!room.meeting.has_seat(ConnId(12)));
    assert!(sent(&out, HOST).contains(&ServerMessage::ParticipantLeft {
        participant: p2,
        reason: LeaveReason::TimedOut,
    }));
    assert_eq!(room.meeting.member_count(), 1);
}

#[test]
fn resume_with_a_wrong_token_fails() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    let token = room.token_of(2);
    room.disconnect(2);
    let out = room.resume(12, ResumeToken([0; 16]));
    assert_turned_away(&out, 12, ErrorCode::ResumeFailed);
    let out = room.resume(13, ResumeToken::generate());
    assert_turned_away(&out, 13, ErrorCode::ResumeFailed);
    assert_eq!(room.meeting.member_count(), 2);
    // The right token still works.
    let out = room.resume(14, token);
    assert_eq!(joined(&out, 14).you, p2);
}

// ---------------------------------------------------------- succession ----

#[test]
fn host_leaving_hands_over_to_the_longest_present_cohost() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    room.admit(2, "Grace");
    let p3 = room.admit(3, "Linus");
    let p4 = room.admit(4, "Sam");
    // Made co-host in the other order: presence, not promotion order, counts.
    room.set_role(p4, Role::Cohost);
    room.set_role(p3, Role::Cohost);

    let out = room.msg(HOST, ClientMessage::Leave);
    assert!(closes(&out, HOST));
    assert!(sent(&out, 2).contains(&ServerMessage::ParticipantLeft {
        participant: host,
        reason: LeaveReason::Left,
    }));
    assert!(update_of(&out, 2, p3).is_some_and(|p| p.role == Role::Host));
    assert!(update_of(&out, 2, p4).is_none(), "p4 stays co-host");
    assert_eq!(room.meeting.member_count(), 3);

    // The new host has the host's powers.
    let out = room.msg(
        3,
        ClientMessage::SetRole {
            participant: p4,
            role: Role::Participant,
        },
    );
    assert!(update_of(&out, 2, p4).is_some_and(|p| p.role == Role::Participant));
}

#[test]
fn host_leaving_without_a_cohost_promotes_nobody() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    room.admit(3, "Linus");
    let eve = room.wait(9, "Eve");
    let out = room.msg(HOST, ClientMessage::Leave);
    assert!(updated_ids(&out).is_empty(), "no promotion: {out:?}");
    for conn in [2, 3] {
        let out = room.msg(conn, ClientMessage::Admit { participant: eve });
        assert_refused(&out, conn, ErrorCode::NotPermitted);
    }
    let out = room.msg(2, ClientMessage::EndMeeting);
    assert_refused(&out, 2, ErrorCode::NotPermitted);

    // The owner coming back is host again.
    let out = room.join(5, "Ada", owner());
    assert_eq!(joined(&out, 5).role, Role::Host);
    assert_eq!(joined(&out, 5).waiting.len(), 1);
}

#[test]
fn a_host_timing_out_is_succeeded_by_the_owners_new_seat() {
    let mut room = Room::hosted();
    let host = room.id_of(HOST);
    room.admit(2, "Grace");
    room.disconnect(HOST);
    room.advance(Duration::from_secs(3));
    // The owner joins afresh while the old seat is kept: co-host.
    let out = room.join(5, "Ada", owner());
    let new_seat = joined(&out, 5);
    assert_eq!(new_seat.role, Role::Cohost);

    room.advance(RESUME_WINDOW);
    let out = room.timeout();
    assert!(sent(&out, 2).contains(&ServerMessage::ParticipantLeft {
        participant: host,
        reason: LeaveReason::TimedOut,
    }));
    assert!(update_of(&out, 2, new_seat.you).is_some_and(|p| p.role == Role::Host));
    let out = room.msg(5, ClientMessage::EndMeeting);
    assert!(closes(&out, 2));
}

// ------------------------------------------------- admission settings ----

#[test]
fn only_signed_in_refuses_guests() {
    let mut room = Room::hosted_with(|c| c.only_signed_in = true);
    let out = room.join(2, "Guest", guest("g2"));
    assert_turned_away(&out, 2, ErrorCode::SignInRequired);
    assert!(sent(&out, HOST).is_empty());
    let out = room.join(3, "Sam", account(55, "g3"));
    assert!(matches!(
        sent(&out, 3).as_slice(),
        [ServerMessage::Waiting { .. }]
    ));
    assert!(waiting_rooms(&out, HOST)[0][0].signed_in);
}

#[test]
fn a_full_meeting_refuses_newcomers_and_admissions() {
    let mut room = Room::hosted_with(|c| c.max_participants = 3);
    room.admit(2, "Grace");
    let w3 = room.wait(3, "Linus");
    let w4 = room.wait(4, "Sam");
    room.msg(HOST, ClientMessage::Admit { participant: w3 });
    assert_eq!(room.meeting.member_count(), 3);

    let out = room.msg(HOST, ClientMessage::Admit { participant: w4 });
    assert_refused(&out, HOST, ErrorCode::Full);
    assert!(room.meeting.has_seat(ConnId(4)) && !room.meeting.is_member(ConnId(4)));
    let out = room.join(5, "Late", guest("g5"));
    assert_turned_away(&out, 5, ErrorCode::Full);
    // The owner is never kept out of their own meeting.
    let out = room.join(6, "Ada (phone)", account(OWNER, "owner-phone"));
    assert_eq!(joined(&out, 6).role, Role::Cohost);
}

#[test]
fn a_full_waiting_room_refuses_newcomers() {
    let mut room = Room::hosted_with(|c| c.max_participants = 2);
    room.wait(2, "a");
    room.wait(3, "b");
    let out = room.join(4, "c", guest("g4"));
    assert_turned_away(&out, 4, ErrorCode::Full);
    assert_eq!(room.meeting.waiting_count(), 2);
}

#[test]
fn admit_all_stops_at_the_size_limit() {
    let mut room = Room::hosted_with(|c| c.max_participants = 3);
    room.wait(2, "a");
    room.wait(3, "b");
    let w4 = room.wait(4, "c");
    let out = room.msg(HOST, ClientMessage::AdmitAll);
    assert_eq!(joined(&out, 2).role, Role::Participant);
    assert_eq!(joined(&out, 3).role, Role::Participant);
    assert!(sent(&out, 4).is_empty());
    assert_eq!(errors(&out, HOST), [ErrorCode::Full]);
    assert_eq!(room.meeting.member_count(), 3);
    assert_eq!(room.meeting.waiting_count(), 1);
    let lists = waiting_rooms(&out, HOST);
    assert_eq!(
        lists
            .last()
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect::<Vec<_>>(),
        [w4]
    );
}

// ----------------------------------------------------------- security ----

#[test]
fn failed_attempts_warn_moderators_only() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    room.set_role(p2, Role::Cohost);
    room.wait(9, "Eve");
    let out = room.input(Input::FailedAttempts {
        count: 10,
        window: Duration::from_secs(60),
    });
    let notice = ServerMessage::SecurityNotice {
        failed_attempts: 10,
        window_secs: 60,
    };
    assert_eq!(
        out,
        [
            Output::Send {
                conn: ConnId(HOST),
                msg: notice.clone(),
            },
            Output::Send {
                conn: ConnId(2),
                msg: notice,
            },
        ]
    );
}

// -------------------------------------------------------------- scale ----

#[test]
fn fifty_member_meeting_handles_a_flood_of_actions() {
    const ROUNDS: usize = 20;
    let mut room = Room::hosted();
    let mut conns: Vec<u64> = vec![HOST];
    let mut ids = vec![room.id_of(HOST)];
    for c in 2..=50 {
        ids.push(room.admit(c, &format!("member {c}")));
        conns.push(c);
    }
    assert_eq!(room.meeting.member_count(), 50);
    room.set_role(ids[1], Role::Cohost);
    room.permissions(PermissionsPatch {
        screen_share: Some(ScreenShare::Everyone),
        rename_self: Some(true),
        ..PermissionsPatch::default()
    });
    // Keep only what the resume tokens are read from.
    let joins_only = |o: &Output| {
        matches!(
            o,
            Output::Send {
                msg: ServerMessage::Joined { .. },
                ..
            }
        )
    };
    room.log.retain(joins_only);

    let mut chats = 0usize;
    for round in 0..ROUNDS {
        for &c in &conns {
            room.media(c, Some(round % 2 == 0), Some(true));
            room.screen(c, round % 3 == 0);
            let out = room.msg(c, chat(&format!("{round}:{c}")));
            chats += out
                .iter()
                .filter(|o| {
                    matches!(
                        o,
                        Output::Send {
                            msg: ServerMessage::Chat { .. },
                            ..
                        }
                    )
                })
                .count();
            room.msg(
                c,
                ClientMessage::ViewSize {
                    participant: ids[(round + 1) % ids.len()],
                    kind: MediaKind::Video,
                    width: 640,
                    height: 360,
                },
            );
        }
        room.msg(conns[1], ClientMessage::MuteAll);
        let target = ids[2 + round % 40];
        room.msg(
            HOST,
            ClientMessage::StopMedia {
                participant: target,
                kind: MediaKind::Video,
            },
        );
        room.msg(
            HOST,
            ClientMessage::Rename {
                participant: Some(target),
                name: format!("renamed {round}"),
            },
        );
        room.msg(HOST, ClientMessage::Lock);
        room.msg(conns[1], ClientMessage::Unlock);
        let stranger = room.wait(500 + round as u64, "stranger");
        room.msg(
            conns[1],
            ClientMessage::Deny {
                participant: stranger,
            },
        );
        room.msg(HOST, ClientMessage::ResumeActivities);
        // One member's socket drops and comes back on a new connection.
        let k = 2 + round % 45;
        let token = room.token_of(conns[k]);
        room.disconnect(conns[k]);
        room.advance(Duration::from_millis(100));
        let next_conn = 1000 + round as u64;
        let out = room.resume(next_conn, token);
        assert_eq!(joined(&out, next_conn).you, ids[k]);
        conns[k] = next_conn;
        room.timeout();
        room.log.retain(joins_only);
    }

    assert_eq!(chats, ROUNDS * 50 * 50, "every chat reached every member");
    assert_eq!(room.meeting.member_count(), 50);
    assert_eq!(room.meeting.waiting_count(), 0);
    assert_eq!(room.meeting.poll_timeout(), None);
    let out = room.msg(HOST, chat("still here?"));
    assert_eq!(out.len(), 50);
    let out = room.msg(HOST, ClientMessage::EndMeeting);
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Close { .. }))
            .count(),
        50
    );
    assert!(room.meeting.is_idle());
}

// ------------------------------------------------------- join limiter ----

/// Whole seconds to wait, rounded up, as the server reports `retry_after`.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[test]
fn a_thousand_wrong_passcodes_from_one_address_rarely_reach_the_check() {
    // As the server does it: check the address and the meeting; if neither is
    // blocked, verify the passcode (wrong here) and record the failure.
    let t0 = Instant::now();
    let mut per_address = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
    let mut per_meeting = AttemptLimiter::new(AttemptPolicy::PER_MEETING);
    let addr = "203.0.113.9";
    let meeting = "abcd-efgh-jkmn-pqrs";

    let mut passcode_checks = 0u32;
    let mut refused = 0u32;
    let mut blocks = Vec::new();
    // The retry_after given on the first refusal of each block.
    let mut block_waits = Vec::new();
    let mut in_block = false;
    for i in 0..1000u64 {
        let now = t0 + Duration::from_millis(100 * i);
        let verdict = match (
            per_address.check(&addr, now),
            per_meeting.check(&meeting, now),
        ) {
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(a), _) | (_, Err(a)) => Err(a),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {
                in_block = false;
                passcode_checks += 1;
                let o = per_address.record_failure(addr, now);
                per_meeting.record_failure(meeting, now);
                if let Some(b) = o.blocked_for {
                    blocks.push(b);
                }
            }
            Err(wait) => {
                refused += 1;
                let secs = retry_secs(wait);
                assert!(secs >= 1);
                if !in_block {
                    block_waits.push(secs);
                    in_block = true;
                }
            }
        }
    }
    assert_eq!(passcode_checks + refused, 1000);
    assert!(
        passcode_checks <= 10,
        "{passcode_checks} guesses reached the passcode check"
    );
    assert!(
        passcode_checks >= 5,
        "a person may still mistype a few times"
    );
    assert!(block_waits.len() >= 2, "{block_waits:?}");
    assert!(
        block_waits.windows(2).all(|w| w[1] > w[0]),
        "retry_after grows from block to block: {block_waits:?}"
    );
    assert!(blocks.windows(2).all(|w| w[1] > w[0]), "{blocks:?}");
    assert_eq!(block_waits[0], 60);
}

#[test]
fn a_recorder_is_shown_as_recording_in_the_waiting_room_and_the_meeting() {
    let mut room = Room::hosted();
    let out = room.input(Input::Join {
        conn: ConnId(5),
        name: "Recorder".into(),
        recorder: true,
        identity: guest("g5"),
        resume_token: ResumeToken::generate(),
    });
    let waiting_room = sent(&out, HOST)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::WaitingRoom { waiting } => Some(waiting),
            _ => None,
        })
        .expect("the host sees the waiting room");
    assert!(
        waiting_room
            .iter()
            .any(|w| w.name == "Recorder" && w.recording)
    );
    let id = room.id_of(5);
    let out = room.msg(HOST, ClientMessage::Admit { participant: id });
    let shown = sent(&out, HOST)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::ParticipantJoined { participant } => Some(participant),
            _ => None,
        })
        .expect("the host hears of the recorder");
    assert!(shown.recording);
    // An ordinary guest is not marked.
    room.admit(6, "Bob");
    let out = room.msg(HOST, ClientMessage::Lock);
    assert!(
        sent(&out, 6)
            .iter()
            .all(|m| !matches!(m, ServerMessage::Error { .. }))
    );
    let bob = room.id_of(6);
    let joined = room.log_to(6).into_iter().find_map(|m| match m {
        ServerMessage::Joined { participants, .. } => Some(participants),
        _ => None,
    });
    let roster = joined.expect("bob joined");
    assert!(roster.iter().any(|p| p.id == id && p.recording));
    assert!(roster.iter().any(|p| p.id == bob && !p.recording));
}
