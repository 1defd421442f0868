//! A recorder in the meeting: the waiting room is told so (that one bit, and
//! nothing else about the meeting), and only a host or co-host lets a
//! recorder in, one by one.

use conclave_core::{ConnId, Input};
use conclave_proto::{ClientMessage, ErrorCode, LeaveReason, ResumeToken, Role, ServerMessage};

use crate::support::*;

/// A guest (key `r<conn>`) asks to join as a recorder and waits.
fn recorder_waits(room: &mut Room, conn: u64) -> conclave_proto::ParticipantId {
    let out = room.input(Input::Join {
        conn: ConnId(conn),
        name: "Recorder".into(),
        recorder: true,
        identity: guest(&format!("r{conn}")),
        resume_token: ResumeToken::generate(),
    });
    match sent(&out, conn).as_slice() {
        [ServerMessage::Waiting { you, .. }] => *you,
        other => panic!("the recorder expected to wait, got {other:?}"),
    }
}

#[test]
fn the_waiting_room_is_told_when_a_recording_starts_and_stops() {
    let mut room = Room::hosted();
    let out = room.join(3, "Grace", guest("g3"));
    let grace = room.id_of(3);
    assert_eq!(
        sent(&out, 3),
        [ServerMessage::Waiting {
            you: grace,
            recording: false
        }]
    );

    // A recorder knocking is not a recording yet: nothing new for Grace.
    let rec = recorder_waits(&mut room, 4);
    assert_eq!(room.log_to(3).len(), 1);
    assert!(waiting_rooms(&room.log, HOST).last().unwrap()[1].recording);

    // Admitted, it records: Grace learns that, and only that.
    let out = room.msg(HOST, ClientMessage::Admit { participant: rec });
    assert_eq!(joined(&out, 4).you, rec);
    assert_eq!(
        sent(&out, 3),
        [ServerMessage::Waiting {
            you: grace,
            recording: true
        }]
    );
    assert!(room.meeting.recording());

    // Whoever comes later is told at once.
    let out = room.join(5, "Linus", guest("g5"));
    let linus = room.id_of(5);
    assert_eq!(
        sent(&out, 5),
        [ServerMessage::Waiting {
            you: linus,
            recording: true
        }]
    );

    // Anything else in the meeting (a member's media, chat) reaches no one waiting.
    let out = room.media(HOST, Some(true), Some(true));
    assert!(sent(&out, 3).is_empty() && sent(&out, 5).is_empty());

    // The recorder leaves: both waiting are told, once.
    let out = room.msg(4, ClientMessage::Leave);
    assert!(out.iter().any(|o| matches!(
        o,
        conclave_core::Output::Send {
            msg: ServerMessage::ParticipantLeft {
                reason: LeaveReason::Left,
                ..
            },
            ..
        }
    )));
    for (conn, you) in [(3, grace), (5, linus)] {
        assert_eq!(
            sent(&out, conn),
            [ServerMessage::Waiting {
                you,
                recording: false
            }]
        );
    }
    assert!(!room.meeting.recording());
    assert_eq!(room.log_to(3).len(), 3, "{:?}", room.log_to(3));
}

#[test]
fn a_removed_recorder_stops_the_recording_for_the_waiting_room() {
    let mut room = Room::hosted();
    let rec = recorder_waits(&mut room, 4);
    room.msg(HOST, ClientMessage::Admit { participant: rec });
    let grace = room.wait(3, "Grace");
    let out = room.msg(HOST, ClientMessage::Remove { participant: rec });
    assert_eq!(
        sent(&out, 3),
        [ServerMessage::Waiting {
            you: grace,
            recording: false
        }]
    );
}

#[test]
fn a_participant_may_not_admit_a_recorder() {
    let mut room = Room::hosted();
    room.admit(3, "Grace");
    let rec = recorder_waits(&mut room, 4);
    let out = room.msg(3, ClientMessage::Admit { participant: rec });
    assert_refused(&out, 3, ErrorCode::NotPermitted);
    let out = room.msg(3, ClientMessage::AdmitAll);
    assert_refused(&out, 3, ErrorCode::NotPermitted);
    assert_eq!(room.meeting.waiting_count(), 1);
    assert!(!room.meeting.recording());
    assert!(room.log_to(4).iter().all(|m| matches!(
        m,
        ServerMessage::Waiting {
            recording: false,
            ..
        }
    )));
}

#[test]
fn a_cohost_the_host_chose_may_admit_a_recorder() {
    let mut room = Room::hosted();
    let grace = room.admit(3, "Grace");
    room.set_role(grace, Role::Cohost);
    let rec = recorder_waits(&mut room, 4);
    let out = room.msg(3, ClientMessage::Admit { participant: rec });
    let j = joined(&out, 4);
    assert!(j.participants.iter().any(|p| p.id == rec && p.recording));
    assert!(room.meeting.recording());
}

#[test]
fn admit_all_leaves_a_recorder_waiting_for_its_own_admission() {
    let mut room = Room::hosted();
    room.wait(3, "Grace");
    let rec = recorder_waits(&mut room, 4);
    room.wait(5, "Linus");
    let out = room.msg(HOST, ClientMessage::AdmitAll);
    joined(&out, 3);
    joined(&out, 5);
    assert!(sent(&out, 4).is_empty());
    assert_eq!(room.meeting.waiting_count(), 1);
    let left = waiting_rooms(&out, HOST).last().cloned().unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].id == rec && left[0].recording);
    assert!(!room.meeting.recording());
}
