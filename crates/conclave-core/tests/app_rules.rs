//! The `app` relay (hands, reactions, polls) and "join before host", on the
//! virtual clock: `app` passes with chat off and stops only for suspension,
//! its size and per-seat rate are bounded (a resume does not refill the
//! allowance), a waiting connection cannot use it; a guest who comes before
//! any host waits, told why, and is seated when the owner arrives.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use conclave_core::Output;
use conclave_proto::{
    APP_BURST, APP_PER_SEC, ClientMessage, ErrorCode, MAX_APP_BYTES, PermissionsPatch, Role,
    ServerMessage,
};

use crate::support::*;

fn app(payload: &str) -> ClientMessage {
    ClientMessage::App {
        payload: payload.into(),
    }
}

fn relayed(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    msg: ServerMessage::App { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn app_passes_with_chat_off_and_stops_only_for_suspension() {
    let mut room = Room::hosted();
    let p2 = room.admit(2, "Grace");
    room.admit(3, "Linus");
    room.wait(9, "Eve");
    room.permissions(PermissionsPatch {
        chat: Some(false),
        ..PermissionsPatch::default()
    });
    let out = room.msg(2, app("sealed-hand"));
    let expected = ServerMessage::App {
        from: p2,
        payload: "sealed-hand".into(),
    };
    for conn in [HOST, 2, 3] {
        assert_eq!(sent(&out, conn), vec![expected.clone()], "to {conn}");
    }
    assert!(sent(&out, 9).is_empty(), "nothing to the waiting room");

    room.msg(HOST, ClientMessage::SuspendActivities);
    assert_refused(&room.msg(2, app("x")), 2, ErrorCode::NotPermitted);
    assert_eq!(relayed(&room.msg(HOST, app("host"))), 3);
}

#[test]
fn app_size_is_bounded_and_a_waiting_connection_cannot_send_it() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    room.wait(9, "Eve");
    assert_refused(
        &room.msg(2, app(&"a".repeat(MAX_APP_BYTES + 1))),
        2,
        ErrorCode::TooLarge,
    );
    assert_eq!(relayed(&room.msg(2, app(&"a".repeat(MAX_APP_BYTES)))), 2);
    let out = room.msg(9, app("from the waiting room"));
    assert_refused(&out, 9, ErrorCode::NotJoined);
    assert_eq!(relayed(&out), 0);
}

#[test]
fn app_rate_is_bounded_per_seat_and_a_resume_does_not_refill_it() {
    let mut room = Room::hosted();
    room.admit(2, "Grace");
    for k in 0..APP_BURST {
        assert_eq!(relayed(&room.msg(2, app(&format!("r{k}")))), 2, "#{k}");
    }
    assert_refused(&room.msg(2, app("one too many")), 2, ErrorCode::Flood);
    // Dropping and resuming the seat does not give a new allowance.
    let token = room.token_of(2);
    room.disconnect(2);
    room.resume(4, token);
    assert_refused(&room.msg(4, app("after resume")), 4, ErrorCode::Flood);
    // Others are not affected, and time refills it at APP_PER_SEC.
    assert_eq!(relayed(&room.msg(HOST, app("host"))), 2);
    room.advance(Duration::from_millis(1000 / u64::from(APP_PER_SEC) + 1));
    assert_eq!(relayed(&room.msg(4, app("later"))), 2);
}

#[test]
fn without_join_before_host_a_guest_waits_for_a_host() {
    let mut room = Room::with(|c| {
        c.waiting_room = false;
        c.join_before_host = false;
    });
    let out = room.join(2, "Grace", guest("g"));
    assert!(matches!(
        sent(&out, 2).as_slice(),
        [ServerMessage::Waiting { .. }, ServerMessage::WaitingForHost]
    ));
    // The owner arrives: Grace is seated without anyone admitting her.
    let out = room.join(HOST, "Ada", owner());
    assert!(
        sent(&out, 2).iter().any(|m| matches!(
            m,
            ServerMessage::Joined {
                role: Role::Participant,
                ..
            }
        )),
        "{:?}",
        sent(&out, 2)
    );
    // With a host in, a guest is seated at once.
    let out = room.join(3, "Linus", guest("l"));
    assert!(matches!(
        sent(&out, 3).first(),
        Some(ServerMessage::Joined { .. })
    ));
}

#[test]
fn with_a_waiting_room_the_guest_still_waits_for_admission_after_the_host_comes() {
    let mut room = Room::with(|c| c.join_before_host = false);
    let out = room.join(2, "Grace", guest("g"));
    assert!(sent(&out, 2).contains(&ServerMessage::WaitingForHost));
    let out = room.join(HOST, "Ada", owner());
    assert!(
        !sent(&out, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. })),
        "the waiting room still holds her"
    );
}

#[test]
fn turning_join_before_host_on_seats_those_waiting_for_a_host() {
    let mut config = config();
    config.waiting_room = false;
    config.join_before_host = false;
    let mut room = Room::with(|c| *c = config.clone());
    room.join(2, "Grace", guest("g"));
    config.join_before_host = true;
    let out = room.input(conclave_core::Input::Reconfigure(config));
    assert!(
        sent(&out, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Joined { .. }))
    );
}
