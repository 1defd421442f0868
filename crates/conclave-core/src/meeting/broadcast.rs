//! Who is told what. Every message to members fans out from here, over
//! `members` only, so nothing reaches a waiting connection except what
//! `join` sends it about itself; a member's view is what others see of it.

use conclave_proto::{Participant, ParticipantId, Presence, ServerMessage, WaitingParticipant};

use super::{ConnId, Meeting, Member, Output};
use crate::media::MediaCommand;

impl Member {
    pub(super) fn view(&self, id: ParticipantId) -> Participant {
        Participant {
            id,
            name: self.name.clone(),
            role: self.role,
            signed_in: self.identity.account.is_some(),
            audio: self.audio,
            video: self.video,
            screen: self.screen,
            presence: if self.conn.is_some() {
                Presence::Connected
            } else {
                Presence::Reconnecting
            },
            recording: self.recording,
            publish_allowed: self.publish_allowed,
        }
    }
}

impl Meeting {
    pub(super) fn roster(&self) -> Vec<Participant> {
        self.members.iter().map(|(id, m)| m.view(*id)).collect()
    }

    pub(super) fn waiting_list(&self) -> Vec<WaitingParticipant> {
        self.waiting
            .iter()
            .map(|(id, w)| WaitingParticipant {
                id: *id,
                name: w.name.clone(),
                signed_in: w.identity.account.is_some(),
                recording: w.recording,
                same_network_as_removed: w.same_network_as_removed,
            })
            .collect()
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push_back(Output::Send { conn, msg });
    }

    /// To every connected member. Waiting connections are not members, so this
    /// cannot reach them.
    pub(super) fn broadcast(&mut self, msg: &ServerMessage) {
        let conns: Vec<_> = self.members.values().filter_map(|m| m.conn).collect();
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }

    pub(super) fn broadcast_except(&mut self, except: ParticipantId, msg: &ServerMessage) {
        let conns: Vec<_> = self
            .members
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, m)| m.conn)
            .collect();
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }

    pub(super) fn send_to_moderators(&mut self, msg: &ServerMessage) {
        let conns: Vec<_> = self
            .members
            .values()
            .filter(|m| m.role.moderates())
            .filter_map(|m| m.conn)
            .collect();
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }

    /// Tells every member about a changed participant, and the router when
    /// what may be forwarded of them changed.
    pub(super) fn broadcast_participant(&mut self, id: ParticipantId) {
        if let Some(m) = self.members.get_mut(&id) {
            let now = (m.audio, m.video, m.screen);
            if m.forwarding != now {
                m.forwarding = now;
                self.out.push_back(Output::Media(MediaCommand::Allow {
                    participant: id,
                    audio: now.0,
                    video: now.1,
                    screen: now.2,
                }));
            }
        }
        if let Some(m) = self.members.get(&id) {
            let msg = ServerMessage::ParticipantUpdated {
                participant: m.view(id),
            };
            self.broadcast(&msg);
        }
    }

    pub(super) fn broadcast_meeting(&mut self) {
        let msg = ServerMessage::MeetingUpdated {
            meeting: self.state(),
        };
        self.broadcast(&msg);
    }

    pub(super) fn broadcast_waiting_room(&mut self) {
        let msg = ServerMessage::WaitingRoom {
            waiting: self.waiting_list(),
        };
        self.send_to_moderators(&msg);
    }

    /// Tells everyone waiting that a recording started or stopped, once per
    /// change: the `recording` bit of their `waiting` status is the only
    /// thing about the meeting a waiting connection is sent.
    pub(super) fn tell_waiting_recording(&mut self) {
        let recording = self.recording();
        if recording == self.waiting_told_recording {
            return;
        }
        self.waiting_told_recording = recording;
        let waiting: Vec<_> = self.waiting.iter().map(|(id, w)| (*id, w.conn)).collect();
        for (you, conn) in waiting {
            self.send(conn, ServerMessage::Waiting { you, recording });
        }
    }

    pub(super) fn send_to_member(&mut self, id: ParticipantId, msg: ServerMessage) {
        if let Some(conn) = self.members.get(&id).and_then(|m| m.conn) {
            self.send(conn, msg);
        }
    }
}
