//! Sealed messages (`chat` and `app`) that a dropped seat missed, kept for
//! its resume window only and sent again, in order, when it resumes.
//!
//! The server still reads none of them: it keeps the ciphertext it relayed
//! anyway. Each is filed after the MLS message the seat was last given, so
//! that on a resume it is replayed between the same handshake messages as
//! it was relayed live: a chat sealed in an epoch the member missed the
//! commit for comes after that commit, and the member can open it.
//! Members keeping their own history and answering a resuming one was the
//! other way; it needs a second protocol and a member who is there, and
//! gives the same ciphertext, so the server's copy for the window it already
//! holds the seat for is the simpler one that is correct.

use std::collections::VecDeque;

use conclave_proto::ServerMessage;

use super::{Meeting, Member};

/// At most this many sealed messages, and this many bytes of them, are kept
/// for one dropped seat; past either the oldest go first. A chat is at most
/// 16 KiB, so the bytes bound what one seat can make the server hold.
pub(crate) const BACKLOG_MAX: usize = 200;
pub(crate) const BACKLOG_BYTES: usize = 512 * 1024;

/// What a dropped seat missed of the sealed relays.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Each with the count of MLS messages the seat had been given then.
    held: VecDeque<(u64, ServerMessage, usize)>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, after_mls: u64, msg: ServerMessage, bytes: usize) {
        self.held.push_back((after_mls, msg, bytes));
        self.bytes += bytes;
        while self.held.len() > BACKLOG_MAX || self.bytes > BACKLOG_BYTES {
            let Some((_, _, b)) = self.held.pop_front() else {
                break;
            };
            self.bytes -= b;
        }
    }

    pub(super) fn clear(&mut self) {
        self.held.clear();
        self.bytes = 0;
    }

    /// The MLS replay (numbered) with the sealed messages between them as
    /// they were relayed; taking them empties the backlog.
    pub(super) fn interleave(&mut self, mls: Vec<(u64, ServerMessage)>) -> Vec<ServerMessage> {
        let mut held = std::mem::take(&mut self.held);
        self.bytes = 0;
        let mut out = Vec::with_capacity(mls.len() + held.len());
        for (n, msg) in mls {
            while held.front().is_some_and(|(after, _, _)| *after < n) {
                if let Some((_, sealed, _)) = held.pop_front() {
                    out.push(sealed);
                }
            }
            out.push(msg);
        }
        out.extend(held.into_iter().map(|(_, sealed, _)| sealed));
        out
    }
}

impl Meeting {
    /// Relays a sealed message to every member: now to those connected,
    /// into the backlog of those inside their resume window.
    pub(super) fn relay_sealed(&mut self, msg: ServerMessage, bytes: usize) {
        let mut conns = Vec::new();
        for m in self.members.values_mut() {
            match m.conn {
                Some(conn) => conns.push(conn),
                None => m.backlog.push(m.mls_sent, msg.clone(), bytes),
            }
        }
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }
}

impl Member {
    /// Nothing sealed is kept for a seat that cannot be resumed into the
    /// same MLS state (a reload joins the group afresh and could not open
    /// them).
    pub(super) fn forget_backlog(&mut self) {
        self.backlog.clear();
    }
}

#[cfg(test)]
mod tests {
    use conclave_proto::ParticipantId;

    use super::*;

    fn chat(n: usize) -> ServerMessage {
        ServerMessage::Chat {
            from: ParticipantId(1),
            payload: format!("c{n}"),
        }
    }

    fn mls(n: u64) -> (u64, ServerMessage) {
        (n, ServerMessage::MlsCommitRequest)
    }

    #[test]
    fn sealed_messages_sit_between_the_mls_messages_they_came_between() {
        let mut b = Backlog::default();
        // The seat had been given 3 MLS messages; it took in 2.
        b.push(3, chat(1), 2);
        b.push(4, chat(2), 2);
        b.push(4, chat(3), 2);
        let out = b.interleave(vec![mls(3), mls(4), mls(5)]);
        let names: Vec<String> = out
            .iter()
            .map(|m| match m {
                ServerMessage::Chat { payload, .. } => payload.clone(),
                _ => "mls".into(),
            })
            .collect();
        assert_eq!(names, ["mls", "c1", "mls", "c2", "c3", "mls"]);
        assert!(b.interleave(Vec::new()).is_empty(), "taken once");
    }

    #[test]
    fn the_backlog_is_bounded_by_count_and_by_bytes_keeping_the_newest() {
        let mut b = Backlog::default();
        for n in 0..BACKLOG_MAX + 5 {
            b.push(0, chat(n), 1);
        }
        let out = b.interleave(Vec::new());
        assert_eq!(out.len(), BACKLOG_MAX);
        assert_eq!(out.first(), Some(&chat(5)));

        let big = BACKLOG_BYTES / 4;
        for n in 0..6 {
            b.push(0, chat(n), big);
        }
        assert!(b.bytes <= BACKLOG_BYTES);
        assert_eq!(
            b.interleave(Vec::new()),
            vec![chat(2), chat(3), chat(4), chat(5)]
        );
        assert_eq!(b.bytes, 0);
    }
}
