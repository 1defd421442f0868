//! Taking a member's seat back after its meeting socket dropped, as the
//! browser does (web/signaling.js): `resume` with the last token, again
//! while the answer is that the meeting is not served yet (in a cluster,
//! its node died or is draining and another has not taken it over), until
//! the seat's resume window would pass. No IO here: the session loop
//! connects, sends and sleeps; this says when to try and what each answer
//! means.

use std::time::{Duration, Instant};

use conclave_proto::{ErrorCode, ServerMessage};

/// Waits before each try, the last one repeated. The first try is at once:
/// a socket that dropped alone (a network blip) comes back on the first.
/// Short after that, because a meeting taken over after its node died is
/// served again a lease's length after the death, and every second of
/// waiting beyond it is a second without media.
const BACKOFF: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
];

/// What one answer to a `resume` means.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The seat is back. `new_group`: the `joined` names another MLS group
    /// than the last one did: the meeting was rebuilt elsewhere, so this
    /// member starts the group afresh and its security code changes.
    Resumed { new_group: bool },
    /// Try again: the meeting is not served yet, the socket closed before
    /// answering, or the address is blocked for `after` (`too_many_attempts`).
    Retry { after: Option<Duration> },
    /// Not an answer to the `resume`; read on.
    Pending,
    /// The seat is gone (its window passed, the member was removed, the
    /// meeting ended): why, to say.
    GiveUp(String),
}

/// One reconnection: from the drop until the seat is back or its window
/// has passed.
#[derive(Debug)]
pub struct Reconnect {
    deadline: Instant,
    attempt: usize,
    /// When the next try may start.
    next_at: Instant,
}

impl Reconnect {
    /// After a drop at `now` of a seat the server keeps for `window`.
    pub fn new(now: Instant, window: Duration) -> Self {
        Reconnect {
            deadline: now + window,
            attempt: 0,
            next_at: now,
        }
    }

    /// When to try next; `None` once that would be past the seat's window.
    pub fn next_try(&mut self, now: Instant) -> Option<Instant> {
        let wait = BACKOFF[self.attempt.min(BACKOFF.len() - 1)];
        self.attempt += 1;
        let at = self.next_at.max(now + wait);
        self.next_at = now;
        (at < self.deadline).then_some(at)
    }

    /// What the server's message `msg` (`None`: the socket closed) says of
    /// the `resume`, for a member whose last `joined` named `last_group`.
    pub fn answer(
        &mut self,
        msg: Option<&ServerMessage>,
        last_group: Option<&str>,
        now: Instant,
    ) -> Answer {
        match msg {
            None => Answer::Retry { after: None },
            Some(ServerMessage::Joined { e2ee, .. }) => {
                let now_group = e2ee.as_ref().map(|e| e.group_id.as_str());
                let new_group = matches!((last_group, now_group), (Some(a), Some(b)) if a != b);
                Answer::Resumed { new_group }
            }
            // `shutting_down`: the node reached (or relayed to) is draining
            // and hands the meeting over to another; the next try finds it
            // there, or is told the seat is gone.
            Some(ServerMessage::Error {
                code: ErrorCode::Unavailable | ErrorCode::ShuttingDown,
                ..
            }) => Answer::Retry { after: None },
            Some(ServerMessage::Error {
                code: ErrorCode::TooManyAttempts,
                retry_after: Some(secs),
                ..
            }) => {
                let after = Duration::from_secs(*secs);
                self.next_at = now + after;
                Answer::Retry { after: Some(after) }
            }
            Some(ServerMessage::Error { message, .. }) => {
                Answer::GiveUp(format!("could not reconnect: {message}"))
            }
            Some(ServerMessage::Removed) => Answer::GiveUp("removed".into()),
            Some(ServerMessage::Denied) => Answer::GiveUp("denied".into()),
            Some(ServerMessage::Ended { reason }) => Answer::GiveUp(format!("ended: {reason:?}")),
            Some(_) => Answer::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_proto::{E2eeSetup, MeetingState, ParticipantId, Role};

    fn joined(group: &str) -> ServerMessage {
        ServerMessage::Joined {
            you: ParticipantId(2),
            role: Role::Participant,
            resume_token: "17wD8W_GvcNsqkev2VAScg".into(),
            resume_window: 30,
            meeting: MeetingState {
                title: String::new(),
                locked: false,
                suspended: false,
                permissions: Default::default(),
            },
            participants: Vec::new(),
            waiting: Vec::new(),
            e2ee: Some(E2eeSetup {
                group_id: group.into(),
                external_sender: "AA".into(),
            }),
            ice_servers: Vec::new(),
        }
    }

    fn error(code: &str, retry_after: Option<u64>) -> ServerMessage {
        serde_json::from_value(serde_json::json!({
            "type": "error", "code": code, "message": "m", "retry_after": retry_after,
        }))
        .expect("error")
    }

    #[test]
    fn tries_at_once_then_backs_off_and_stops_at_the_window() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(t0, Duration::from_secs(3));
        assert_eq!(r.next_try(t0), Some(t0));
        assert_eq!(r.next_try(t0), Some(t0 + Duration::from_millis(250)));
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(r.next_try(t1), Some(t1 + Duration::from_millis(500)));
        let t2 = t0 + Duration::from_millis(2100);
        assert_eq!(r.next_try(t2), None, "past the 3 s window");
    }

    #[test]
    fn unavailable_a_draining_node_and_a_closed_socket_are_tried_again_a_block_waits_it_out() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(t0, Duration::from_secs(30));
        let g = Some("Zw==");
        assert_eq!(
            r.answer(Some(&error("unavailable", None)), g, t0),
            Answer::Retry { after: None }
        );
        assert_eq!(r.answer(None, g, t0), Answer::Retry { after: None });
        assert_eq!(
            r.answer(Some(&error("shutting_down", None)), g, t0),
            Answer::Retry { after: None }
        );
        assert_eq!(
            r.answer(Some(&error("too_many_attempts", Some(5))), g, t0),
            Answer::Retry {
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(
            r.next_try(t0)
                .is_some_and(|at| at >= t0 + Duration::from_secs(5))
        );
        let mut r = Reconnect::new(t0, Duration::from_secs(3));
        r.answer(Some(&error("too_many_attempts", Some(5))), g, t0);
        assert_eq!(r.next_try(t0), None, "the block outlasts the seat");
    }

    #[test]
    fn a_refused_resume_gives_up_and_a_joined_says_whether_the_group_is_new() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(t0, Duration::from_secs(30));
        assert!(matches!(
            r.answer(Some(&error("resume_failed", None)), Some("Zw=="), t0),
            Answer::GiveUp(_)
        ));
        assert!(matches!(
            r.answer(Some(&ServerMessage::Removed), None, t0),
            Answer::GiveUp(_)
        ));
        assert_eq!(
            r.answer(Some(&joined("Zw==")), Some("Zw=="), t0),
            Answer::Resumed { new_group: false }
        );
        assert_eq!(
            r.answer(Some(&joined("SA==")), Some("Zw=="), t0),
            Answer::Resumed { new_group: true }
        );
        // Outside the group (no setup known): nothing to rebuild.
        assert_eq!(
            r.answer(Some(&joined("SA==")), None, t0),
            Answer::Resumed { new_group: false }
        );
    }
}
