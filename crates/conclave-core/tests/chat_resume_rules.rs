//! Chat that survives a resume, on the virtual clock: the sealed `chat` and
//! `app` messages relayed while a seat was dropped reach that seat, in order
//! and once, when it resumes; nobody else gets them again, a reloaded client
//! (which could not open them) gets none, and they go with the seat when its
//! window runs out. The MLS side (they open after the commits missed) is in
//! `group_rules`.
#![allow(clippy::disallowed_methods)]

use conclave_proto::{ClientMessage, ErrorCode, ServerMessage};

use crate::support::*;

fn sealed(out: &[ServerMessage]) -> Vec<String> {
    out.iter()
        .filter_map(|m| match m {
            ServerMessage::Chat { payload, .. } => Some(format!("chat:{payload}")),
            ServerMessage::App { payload, .. } => Some(format!("app:{payload}")),
            _ => None,
        })
        .collect()
}

fn app(payload: &str) -> ClientMessage {
    ClientMessage::App {
        payload: payload.into(),
    }
}

#[test]
fn what_was_relayed_while_a_seat_was_dropped_reaches_it_on_its_resume_in_order_once() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    room.admit(3, "Linus");
    room.msg(HOST, chat("before"));
    let token = room.token_of(2);
    room.disconnect(2);
    room.msg(HOST, chat("one"));
    room.msg(3, app("hand"));
    room.msg(HOST, chat("two"));
    assert_eq!(
        sealed(&room.log_to(3)),
        ["chat:before", "chat:one", "app:hand", "chat:two"],
        "connected members get them live"
    );

    let out = room.resume_after(4, token, Some(u64::MAX));
    assert_eq!(error_of(&out, 4), None);
    assert_eq!(sealed(&sent(&out, 4)), ["chat:one", "app:hand", "chat:two"]);
    assert!(
        sealed(&sent(&out, 3)).is_empty() && sealed(&sent(&out, HOST)).is_empty(),
        "only the resuming seat is sent them"
    );
    // They come after `joined`, so the client knows its seat first.
    assert!(matches!(
        sent(&out, 4).first(),
        Some(ServerMessage::Joined { .. })
    ));

    // Live again; a second drop and resume does not bring them back.
    assert_eq!(
        sealed(&sent(&room.msg(HOST, chat("three")), 4)),
        ["chat:three"]
    );
    let token = room.token_of(4);
    room.disconnect(4);
    let out = room.resume_after(5, token, Some(u64::MAX));
    assert!(sealed(&sent(&out, 5)).is_empty());
}

#[test]
fn a_reloaded_client_gets_none_of_them_and_a_new_seat_never_does() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let token = room.token_of(2);
    room.disconnect(2);
    room.msg(HOST, chat("while away"));
    // No MLS state to go on with: it joins the group afresh and could not open them.
    let out = room.resume(4, token);
    assert_eq!(error_of(&out, 4), None);
    assert!(sealed(&sent(&out, 4)).is_empty());

    // Someone who joins later is not given what was said before.
    room.disconnect(4);
    room.msg(HOST, chat("held for Grace only"));
    room.admit(6, "Linus");
    assert!(sealed(&room.log_to(6)).is_empty());
}

#[test]
fn they_go_with_the_seat_when_its_window_runs_out() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    let token = room.token_of(2);
    room.disconnect(2);
    room.msg(HOST, chat("while away"));
    let deadline = room.meeting.poll_timeout().expect("a seat is kept");
    room.advance(deadline - room.now);
    room.timeout();
    assert_turned_away(
        &room.resume_after(4, token, Some(u64::MAX)),
        4,
        ErrorCode::ResumeFailed,
    );
    assert!(sealed(&room.log_to(4)).is_empty());
}
