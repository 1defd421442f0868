//! Going out: a member leaves or is removed, a socket drops and its seat
//! waits out the resume window, a window runs out, the meeting ends. A
//! departing host hands over to a co-host.

use std::time::Instant;

use conclave_proto::{EndReason, ErrorCode, LeaveReason, ParticipantId, Role, ServerMessage};

use super::{ConnId, Meeting, Output, RESUME_WINDOW, Seat};
use crate::media::MediaCommand;

impl Meeting {
    pub(super) fn depart(&mut self, id: ParticipantId, reason: LeaveReason) {
        let Some(m) = self.members.remove(&id) else {
            return;
        };
        self.out
            .push_back(Output::Media(MediaCommand::Leave { participant: id }));
        if let Some(conn) = m.conn {
            self.seats.remove(&conn);
            self.out.push_back(Output::Close { conn });
        }
        self.broadcast(&ServerMessage::ParticipantLeft {
            participant: id,
            reason,
        });
        if m.role == Role::Host {
            self.promote_successor();
        }
    }

    /// A departing host hands over to the longest-present co-host. Never to a
    /// plain participant: a stranger must not inherit the waiting room.
    fn promote_successor(&mut self) {
        let next = self
            .members
            .iter()
            .find(|(_, m)| m.role == Role::Cohost)
            .map(|(id, _)| *id);
        if let Some(id) = next {
            if let Some(m) = self.members.get_mut(&id) {
                m.role = Role::Host;
            }
            self.broadcast_participant(id);
        }
    }

    pub(super) fn disconnected(&mut self, conn: ConnId, now: Instant) {
        match self.seats.remove(&conn) {
            Some(Seat::Waiting(id)) => {
                self.waiting.remove(&id);
                self.broadcast_waiting_room();
            }
            Some(Seat::Member(id)) => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.conn = None;
                    m.dropped_at = Some(now);
                }
                self.broadcast_participant(id);
            }
            None => {}
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let expired: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| m.dropped_at.is_some_and(|t| now >= t + RESUME_WINDOW))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.depart(id, LeaveReason::TimedOut);
        }
    }

    pub(super) fn end(&mut self, reason: EndReason) {
        // Its breakout rooms end with it (`breakout`).
        self.end_rooms();
        let msg = ServerMessage::Ended { reason };
        let conns: Vec<_> = self.seats.keys().copied().collect();
        for conn in conns {
            self.send(conn, msg.clone());
            self.out.push_back(Output::Close { conn });
        }
        let ids: Vec<_> = self.members.keys().copied().collect();
        for participant in ids {
            self.out
                .push_back(Output::Media(MediaCommand::Leave { participant }));
        }
        self.members.clear();
        self.waiting.clear();
        self.seats.clear();
        self.locked = false;
        self.suspended = false;
    }

    pub(super) fn refuse(&mut self, conn: ConnId, code: ErrorCode) {
        self.send(conn, ServerMessage::error(code));
        self.out.push_back(Output::Close { conn });
    }
}
