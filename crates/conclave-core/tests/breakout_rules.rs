//! Breakout rooms on a virtual clock: who may open, visit, broadcast to and
//! close rooms, what a bad plan changes (nothing), which ticket lets whom
//! into a room or back, and the countdown that brings everyone back.
// One real instant is the origin of the virtual clock.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use conclave_core::meeting::{MAX_ROOMS_OPEN, RETURN_GRACE};
use conclave_core::{BreakoutOutput, ConnId, Identity, Input, Meeting, Output, RoomNote};
use conclave_proto::{
    BreakoutRoomPlan, BreakoutTicket, ClientMessage, EndReason, ErrorCode, MeetingId,
    ParticipantId, ResumeToken, Role, ServerMessage, breakout::MAX_BREAKOUT_ROOMS,
};

use crate::support::*;

fn plan(name: &str, ids: &[ParticipantId]) -> BreakoutRoomPlan {
    BreakoutRoomPlan {
        name: name.into(),
        participants: ids.to_vec(),
    }
}

fn open(rooms: Vec<BreakoutRoomPlan>, allow_return: bool) -> ClientMessage {
    ClientMessage::BreakoutOpen {
        rooms,
        auto_assign: false,
        allow_return,
    }
}

fn breakouts(out: &[Output]) -> Vec<BreakoutOutput> {
    out.iter()
        .filter_map(|o| match o {
            Output::Breakout(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// The notes an output holds for rooms, each with the room it is for.
fn notes(out: &[Output]) -> Vec<(MeetingId, RoomNote)> {
    breakouts(out)
        .into_iter()
        .filter_map(|b| match b {
            BreakoutOutput::Note { room, note } => Some((room, note)),
            _ => None,
        })
        .collect()
}

/// Whether the output tells room `id` to close.
fn closes(out: &[Output], id: MeetingId) -> bool {
    notes(out)
        .iter()
        .any(|(room, note)| *room == id && *note == RoomNote::Close)
}

/// The `breakout_move` sent to `conn`: (room, ticket, return ticket).
fn moved(out: &[Output], conn: u64) -> (MeetingId, BreakoutTicket, BreakoutTicket) {
    sent(out, conn)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::BreakoutMove {
                room,
                ticket,
                return_ticket,
                ..
            } => Some((
                room,
                BreakoutTicket::decode(&ticket).unwrap(),
                BreakoutTicket::decode(&return_ticket).unwrap(),
            )),
            _ => None,
        })
        .expect("a breakout_move")
}

/// The parent with the owner as host on HOST, Grace (g2) on 2, Linus (g3) on 3.
fn parent() -> (Room, ParticipantId, ParticipantId) {
    let mut room = Room::hosted();
    let grace = room.admit_as(2, "Grace", guest("g2"));
    let linus = room.admit_as(3, "Linus", guest("g3"));
    (room, grace, linus)
}

/// [`parent`] with Grace sent to "Room 1" and Linus to "Room 2", no return
/// while they are open: the parent, what the opening sent, Linus's id.
fn two_rooms_open() -> (Room, Vec<Output>, ParticipantId) {
    let (mut room, grace, linus) = parent();
    let out = room.msg(
        HOST,
        open(
            vec![plan("Room 1", &[grace]), plan("Room 2", &[linus])],
            false,
        ),
    );
    (room, out, linus)
}

/// Grace (on 12 there) in the room the opening `out` sent her to: that
/// room, and her ticket back.
fn grace_in_her_room(out: &[Output]) -> (Room, BreakoutTicket) {
    let (a, ta, back) = moved(out, 2);
    let mut ra = child_of(out, a);
    ticket_join(&mut ra, 12, "Grace", guest("g2"), ta);
    (ra, back)
}

/// The room a parent's output opened, fed the notes that output holds for it.
fn child_of(out: &[Output], id: MeetingId) -> Room {
    let mut child = None;
    for b in breakouts(out) {
        match b {
            BreakoutOutput::Open { room, config, bans } if room == id => {
                child = Some(Room {
                    meeting: Meeting::new_breakout_room(config, bans),
                    now: std::time::Instant::now(),
                    log: Vec::new(),
                    clients: Silent,
                });
            }
            BreakoutOutput::Note { room, note } if room == id => {
                if let Some(c) = child.as_mut() {
                    c.input(Input::Breakout(note));
                }
            }
            _ => {}
        }
    }
    child.expect("the room was opened")
}

fn ticket_join(
    room: &mut Room,
    conn: u64,
    name: &str,
    who: Identity,
    t: BreakoutTicket,
) -> Vec<Output> {
    room.input(Input::BreakoutJoin {
        conn: ConnId(conn),
        name: name.into(),
        identity: who,
        resume_token: ResumeToken::generate(),
        ticket: t,
    })
}

#[test]
fn opening_rooms_gives_each_room_its_tickets_before_its_members_hear_of_it() {
    let (_, out, _) = two_rooms_open();
    let (a, ta, _) = moved(&out, 2);
    let (b, tb, _) = moved(&out, 3);
    assert_ne!(a, b, "one meeting (router, MLS group) per room");
    let opened: Vec<_> = breakouts(&out)
        .into_iter()
        .filter_map(|b| match b {
            BreakoutOutput::Open { room, config, .. } => Some((room, config)),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[0].1.title, "Standup · Room 1");
    assert!(!opened[0].1.waiting_room);
    // The room holds Grace's ticket before the message that sends her there.
    let admit_at = out
        .iter()
        .position(|o| matches!(o, Output::Breakout(BreakoutOutput::Note { room, note: RoomNote::Admit { ticket, .. } }) if *room == a && *ticket == ta))
        .unwrap();
    let move_at = out
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::Send {
                    conn: ConnId(2),
                    msg: ServerMessage::BreakoutMove { .. }
                }
            )
        })
        .unwrap();
    assert!(admit_at < move_at);
    assert_ne!(ta, tb);
    // The host stays, and is shown the rooms.
    assert!(
        sent(&out, HOST)
            .iter()
            .all(|m| !matches!(m, ServerMessage::BreakoutMove { .. }))
    );
    let shown = sent(&out, HOST)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::BreakoutRooms { rooms, .. } => Some(rooms),
            _ => None,
        })
        .unwrap();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].assigned, vec!["Grace".to_string()]);
    assert_eq!(shown[1].name, "Room 2");
}

#[test]
fn only_hosts_and_cohosts_manage_rooms() {
    let (mut room, grace, linus) = parent();
    let out = room.msg(2, open(vec![plan("Mine", &[grace, linus])], true));
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    assert_refused(
        &room.msg(2, ClientMessage::BreakoutClose { countdown_secs: 0 }),
        2,
        ErrorCode::NotPermitted,
    );
    assert_refused(
        &room.msg(2, ClientMessage::BreakoutBroadcast { text: "hi".into() }),
        2,
        ErrorCode::NotPermitted,
    );
    let out = room.msg(
        2,
        ClientMessage::BreakoutVisit {
            room: MeetingId::generate(),
        },
    );
    assert_refused(&out, 2, ErrorCode::NotPermitted);
    // A co-host may.
    room.set_role(linus, Role::Cohost);
    let out = room.msg(3, open(vec![plan("Room 1", &[grace])], false));
    assert_eq!(
        moved(&out, 2).0,
        breakouts(&out)
            .iter()
            .find_map(|b| match b {
                BreakoutOutput::Open { room, .. } => Some(*room),
                _ => None,
            })
            .unwrap()
    );
}

#[test]
fn a_bad_plan_gets_a_clear_error_and_changes_nothing() {
    let (mut room, grace, linus) = parent();
    let many = (0..=MAX_BREAKOUT_ROOMS)
        .map(|i| plan(&format!("R{i}"), &[]))
        .collect();
    assert_refused(
        &room.msg(HOST, open(many, false)),
        HOST,
        ErrorCode::BreakoutRefused,
    );
    assert_refused(
        &room.msg(HOST, open(vec![], false)),
        HOST,
        ErrorCode::BreakoutRefused,
    );
    let out = room.msg(HOST, open(vec![plan("A", &[ParticipantId(99)])], false));
    assert_refused(&out, HOST, ErrorCode::UnknownParticipant);
    let out = room.msg(
        HOST,
        open(vec![plan("A", &[grace]), plan("B", &[grace])], false),
    );
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
    let out = room.msg(HOST, open(vec![plan("", &[grace])], false));
    assert_refused(&out, HOST, ErrorCode::InvalidName);
    // Nothing is open: broadcasting, visiting and closing are refused too.
    let out = room.msg(HOST, ClientMessage::BreakoutClose { countdown_secs: 10 });
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
    let out = room.msg(HOST, ClientMessage::BreakoutBroadcast { text: "hi".into() });
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
    // A good plan still opens, once.
    let out = room.msg(
        HOST,
        open(vec![plan("A", &[grace]), plan("B", &[linus])], false),
    );
    moved(&out, 2);
    let out = room.msg(HOST, open(vec![plan("C", &[])], false));
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
    let out = room.msg(
        HOST,
        ClientMessage::BreakoutClose {
            countdown_secs: 100_000,
        },
    );
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
    let out = room.msg(
        HOST,
        ClientMessage::BreakoutVisit {
            room: MeetingId::generate(),
        },
    );
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
}

#[test]
fn assign_automatically_moves_every_participant() {
    let (mut room, _, _) = parent();
    room.admit_as(4, "Ken", guest("g4"));
    let out = room.msg(
        HOST,
        ClientMessage::BreakoutOpen {
            rooms: vec![plan("A", &[]), plan("B", &[])],
            auto_assign: true,
            allow_return: true,
        },
    );
    let rooms: Vec<_> = [2, 3, 4].iter().map(|&c| moved(&out, c).0).collect();
    assert_eq!(rooms[0], rooms[2]);
    assert_ne!(rooms[0], rooms[1]);
}

#[test]
fn a_room_admits_only_its_ticket_for_the_identity_it_was_drawn_for() {
    let (_, out, _) = two_rooms_open();
    let (a, ta, back) = moved(&out, 2);
    let (_, tb, _) = moved(&out, 3);
    let mut ra = child_of(&out, a);
    // Linus's ticket is for the other room; Grace's ticket is Grace's.
    assert_turned_away(
        &ticket_join(&mut ra, 13, "Linus", guest("g3"), tb),
        13,
        ErrorCode::BreakoutRefused,
    );
    assert_turned_away(
        &ticket_join(&mut ra, 14, "Mallory", guest("g9"), ta),
        14,
        ErrorCode::BreakoutRefused,
    );
    assert_turned_away(
        &ticket_join(&mut ra, 15, "Grace", guest("g2"), back),
        15,
        ErrorCode::BreakoutRefused,
    );
    assert_turned_away(
        &ticket_join(
            &mut ra,
            16,
            "Grace",
            guest("g2"),
            BreakoutTicket::generate(),
        ),
        16,
        ErrorCode::BreakoutRefused,
    );
    let out = ticket_join(&mut ra, 12, "Grace", guest("g2"), ta);
    let j = joined(&out, 12);
    assert_eq!(j.role, Role::Participant);
    assert_eq!(
        j.participants.len(),
        1,
        "a room starts empty: its own group"
    );
    // A room opens no rooms of its own.
    let out = ra.msg(12, open(vec![plan("Nested", &[])], false));
    assert_refused(&out, 12, ErrorCode::NotPermitted);
}

#[test]
fn the_host_visits_a_room_as_its_host() {
    let (mut room, grace, _) = parent();
    let out = room.msg(HOST, open(vec![plan("Room 1", &[grace])], false));
    let (a, _, _) = moved(&out, 2);
    let out = room.msg(HOST, ClientMessage::BreakoutVisit { room: a });
    let (visited, t, _) = moved(&out, HOST);
    assert_eq!(visited, a);
    let mut ra = child_of(&room.log, a);
    let out = ticket_join(&mut ra, 21, "Ada", owner(), t);
    assert_eq!(joined(&out, 21).role, Role::Host);
    // A visitor comes back while the rooms are open, though the plan keeps
    // participants in their rooms.
    let (_, _, back) = moved(&room.log, HOST);
    room.msg(HOST, ClientMessage::Leave);
    let out = ticket_join(&mut room, 31, "Ada", owner(), back);
    joined(&out, 31);
    let shown = sent(&out, 31);
    assert!(
        shown
            .iter()
            .any(|m| matches!(m, ServerMessage::BreakoutRooms { rooms, .. } if rooms.len() == 1)),
        "{shown:?}"
    );
}

#[test]
fn broadcasts_reach_every_room_and_the_main_room() {
    let (mut room, out, _) = two_rooms_open();
    let (mut ra, _) = grace_in_her_room(&out);
    let out = room.msg(
        HOST,
        ClientMessage::BreakoutBroadcast {
            text: "  5 minutes left ".into(),
        },
    );
    let notes: Vec<_> = notes(&out)
        .into_iter()
        .filter(|(_, note)| matches!(note, RoomNote::Broadcast { .. }))
        .collect();
    assert_eq!(notes.len(), 2);
    let heard = ServerMessage::BreakoutBroadcast {
        from: "Ada".into(),
        text: "5 minutes left".into(),
    };
    assert!(sent(&out, HOST).contains(&heard));
    let out = ra.input(Input::Breakout(notes[0].1.clone()));
    assert_eq!(sent(&out, 12), [heard]);
    let out = room.msg(
        HOST,
        ClientMessage::BreakoutBroadcast {
            text: " \u{7} ".into(),
        },
    );
    assert_refused(&out, HOST, ErrorCode::BreakoutRefused);
}

#[test]
fn closing_counts_down_ends_the_rooms_and_lets_everyone_back_for_a_while() {
    let (mut room, out, linus) = two_rooms_open();
    let (mut ra, back) = grace_in_her_room(&out);
    room.msg(2, ClientMessage::Leave);
    // Returning is not allowed while the rooms are open.
    assert_turned_away(
        &ticket_join(&mut room, 22, "Grace", guest("g2"), back),
        22,
        ErrorCode::BreakoutRefused,
    );

    let out = room.msg(HOST, ClientMessage::BreakoutClose { countdown_secs: 10 });
    let closing: Vec<_> = notes(&out)
        .into_iter()
        .filter(|(_, note)| *note == RoomNote::Closing { seconds: 10 })
        .collect();
    assert_eq!(closing.len(), 2);
    let shown = sent(&out, HOST);
    assert!(shown.iter().any(|m| matches!(
        m,
        ServerMessage::BreakoutRooms {
            closing_in: Some(10),
            ..
        }
    )));
    assert_eq!(
        sent(&ra.input(Input::Breakout(closing[0].1.clone())), 12),
        [ServerMessage::BreakoutClosing { seconds: 10 }]
    );
    // Nothing ends before the countdown does.
    room.advance(Duration::from_secs(9));
    assert!(breakouts(&room.timeout()).is_empty());
    room.advance(Duration::from_secs(1));
    let out = room.timeout();
    let ends = notes(&out)
        .into_iter()
        .filter(|(_, note)| *note == RoomNote::Close)
        .count();
    assert_eq!(ends, 2);
    assert_eq!(
        breakouts(&out)
            .iter()
            .filter(|b| matches!(b, BreakoutOutput::Forget { .. }))
            .count(),
        2
    );
    assert!(sent(&out, HOST).contains(&ServerMessage::BreakoutRooms {
        rooms: vec![],
        allow_return: false,
        closing_in: None
    }));
    // The room ends for its members, who go back with their tickets.
    let out = ra.input(Input::Breakout(RoomNote::Close));
    assert_eq!(
        sent(&out, 12),
        [ServerMessage::Ended {
            reason: EndReason::BreakoutClosed
        }]
    );
    assert!(ra.meeting.is_idle());
    // Someone else's identity cannot use the ticket; Grace can, past the
    // waiting room.
    assert_turned_away(
        &ticket_join(&mut room, 23, "Eve", guest("g9"), back),
        23,
        ErrorCode::BreakoutRefused,
    );
    let out = ticket_join(&mut room, 22, "Grace", guest("g2"), back);
    assert_eq!(joined(&out, 22).role, Role::Participant);
    // After the grace, return tickets no longer work.
    let out = room.msg(HOST, open(vec![plan("Again", &[linus])], true));
    let (_, _, back3) = moved(&out, 3);
    room.msg(HOST, ClientMessage::BreakoutClose { countdown_secs: 0 });
    room.msg(3, ClientMessage::Leave);
    room.advance(RETURN_GRACE);
    room.timeout();
    assert_turned_away(
        &ticket_join(&mut room, 33, "Linus", guest("g3"), back3),
        33,
        ErrorCode::BreakoutRefused,
    );
}

#[test]
fn rooms_and_parent_stay_up_until_closed() {
    let (mut room, grace, _) = parent();
    let out = room.msg(HOST, open(vec![plan("Room 1", &[grace])], true));
    let (a, _, back) = moved(&out, 2);
    let ra = child_of(&out, a);
    assert!(!ra.meeting.is_idle(), "an empty room waits for its members");
    for conn in [2, 3, HOST] {
        room.msg(conn, ClientMessage::Leave);
    }
    assert!(
        !room.meeting.is_idle(),
        "someone must still close the rooms"
    );
    // Returning is allowed in this plan, before any close.
    let out = ticket_join(&mut room, 22, "Grace", guest("g2"), back);
    joined(&out, 22);
    // Ending the meeting ends its rooms.
    let out = room.input(Input::End(EndReason::EndedByHost));
    assert!(closes(&out, a));
    assert!(room.meeting.is_idle());
}

#[test]
fn end_meeting_for_all_ends_the_rooms_too() {
    let (mut room, grace, _) = parent();
    let out = room.msg(HOST, open(vec![plan("Room 1", &[grace])], false));
    let (a, _, _) = moved(&out, 2);
    let out = room.msg(HOST, ClientMessage::EndMeeting);
    assert!(closes(&out, a));
    assert!(
        breakouts(&out)
            .iter()
            .any(|b| matches!(b, BreakoutOutput::Forget { room } if *room == a))
    );
    assert!(room.meeting.is_idle());
}

#[test]
fn rooms_nobody_closes_close_on_their_own() {
    let (mut room, grace, _) = parent();
    let out = room.msg(HOST, open(vec![plan("Room 1", &[grace])], false));
    let (a, _, _) = moved(&out, 2);
    for conn in [2, 3, HOST] {
        room.msg(conn, ClientMessage::Leave);
    }
    assert_eq!(room.meeting.poll_timeout(), Some(room.now + MAX_ROOMS_OPEN));
    room.advance(MAX_ROOMS_OPEN);
    let out = room.timeout();
    assert!(closes(&out, a));
    room.advance(RETURN_GRACE);
    room.timeout();
    assert!(room.meeting.is_idle(), "nothing keeps the meeting up then");
}
