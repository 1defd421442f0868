//! Coming in: a join meets the admission rules and takes a seat or a place
//! in the waiting room; moderators admit or deny the waiting; a dropped
//! member takes its seat back with its resume token.

use std::collections::VecDeque;
use std::time::Instant;

use conclave_proto::{
    ClientMessage, ErrorCode, LeaveReason, ParticipantId, ResumeToken, Role, ServerMessage,
    clean_display_name,
};
use subtle::ConstantTimeEq;

use super::{
    BanKey, ConnId, Identity, Meeting, Member, Output, RESUME_WINDOW, Refusal, Seat, Waiter,
};

impl Meeting {
    pub(super) fn join(
        &mut self,
        conn: ConnId,
        name: String,
        recording: bool,
        identity: Identity,
        token: ResumeToken,
    ) {
        if self.seats.contains_key(&conn) {
            self.send(conn, ServerMessage::error(ErrorCode::AlreadyJoined));
            return;
        }
        if self.rejoin_waiting(conn, &identity, token) {
            return;
        }
        if let Err(code) = self.admission_check(&identity) {
            self.refuse(conn, code);
            return;
        }
        let is_owner = identity.account == Some(self.config.owner);
        // Past `admission_check`, neither the account nor the guest identity
        // is banned; the network alone may be.
        let same_network_as_removed = !is_owner
            && identity
                .address
                .is_some_and(|ip| self.bans.contains(&BanKey::Address(ip)));
        let name = match clean_display_name(&name) {
            Ok(n) => n,
            Err(code) => {
                self.refuse(conn, code);
                return;
            }
        };
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let waiter = Waiter {
            conn,
            name,
            recording,
            identity,
            resume_token: token,
            same_network_as_removed,
            for_host: false,
        };
        let no_host =
            !self.config.join_before_host && !self.members.values().any(|m| m.role.moderates());
        if is_owner || !(self.config.waiting_room || same_network_as_removed || no_host) {
            let role = if !is_owner {
                Role::Participant
            } else if self.host().is_some() {
                Role::Cohost
            } else {
                Role::Host
            };
            self.seat(id, waiter, role);
            if is_owner {
                self.seat_those_waiting_for_host();
            }
        } else {
            let waiter = Waiter {
                for_host: no_host && !(self.config.waiting_room || same_network_as_removed),
                ..waiter
            };
            self.waiting.insert(id, waiter);
            self.seats.insert(conn, Seat::Waiting(id));
            let recording = self.recording();
            self.send(conn, ServerMessage::Waiting { you: id, recording });
            if no_host {
                self.send(conn, ServerMessage::WaitingForHost);
            }
            self.broadcast_waiting_room();
        }
    }

    /// A host is in: those who waited only for one take their seats. Those
    /// the waiting room holds stay for a moderator to admit.
    pub(super) fn seat_those_waiting_for_host(&mut self) {
        let ids: Vec<_> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.for_host)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if self.admit(id).is_err() {
                break;
            }
        }
    }

    /// The rules every newcomer meets, in an order that leaks nothing: the
    /// shell has already checked that the meeting exists and the passcode holds.
    fn admission_check(&self, identity: &Identity) -> Result<(), Refusal> {
        // The owner is never kept out of their own meeting, not even by a ban
        // a co-host or a transferred host issued.
        if identity.account == Some(self.config.owner) {
            return Ok(());
        }
        let banned = identity
            .ban_keys()
            .iter()
            .any(|k| !matches!(k, BanKey::Address(_)) && self.bans.contains(k));
        if banned {
            return Err(ErrorCode::Banned);
        }
        if self.config.only_signed_in && identity.account.is_none() {
            return Err(ErrorCode::SignInRequired);
        }
        if self.locked {
            return Err(ErrorCode::Locked);
        }
        let cap = self.config.max_participants as usize;
        if self.members.len() >= cap || self.waiting.len() >= cap {
            return Err(ErrorCode::Full);
        }
        Ok(())
    }

    pub(super) fn seat(&mut self, id: ParticipantId, w: Waiter, role: Role) {
        let conn = w.conn;
        let member = Member {
            conn: Some(conn),
            name: w.name,
            role,
            identity: w.identity,
            recording: w.recording,
            audio: false,
            video: false,
            screen: false,
            held_audio: false,
            held_video: false,
            held_screen: false,
            publish_allowed: false,
            resume_hash: super::live::token_hash(&w.resume_token),
            resume_token: w.resume_token,
            dropped_at: None,
            mls_sent: 0,
            mls_recent: VecDeque::new(),
            forwarding: (false, false, false),
            app_bucket: None,
            backlog: super::backlog::Backlog::default(),
        };
        let view = member.view(id);
        self.members.insert(id, member);
        self.seats.insert(conn, Seat::Member(id));
        self.send_joined(id);
        self.broadcast_except(id, &ServerMessage::ParticipantJoined { participant: view });
    }

    pub(super) fn resume(
        &mut self,
        conn: ConnId,
        token: ResumeToken,
        next: ResumeToken,
        mls_received: Option<u64>,
        now: Instant,
    ) {
        if self.seats.contains_key(&conn) {
            self.send(conn, ServerMessage::error(ErrorCode::AlreadyJoined));
            return;
        }
        let presented = super::live::token_hash(&token);
        let found = self
            .members
            .iter()
            .find(|(_, m)| bool::from(m.resume_hash.ct_eq(&presented)))
            .map(|(id, _)| *id);
        let Some(id) = found else {
            self.refuse(conn, ErrorCode::ResumeFailed);
            return;
        };
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.forget_old_mls(now);
        let replay = match mls_received {
            Some(received) => member.mls_after(received),
            None => {
                // No MLS state to go on with (a reloaded page): it hands in
                // a new key package, is added again, and counts afresh.
                member.mls_sent = 0;
                member.mls_recent.clear();
                member.forget_backlog();
                Some(Vec::new())
            }
        };
        let replay = replay.map(|mls| member.backlog.interleave(mls));
        let Some(replay) = replay else {
            // The group moved on further than is kept: this client cannot
            // follow it any more. The seat ends; joining again starts afresh.
            tracing::info!(participant = %id, "resume refused: MLS messages it missed are no longer kept");
            self.refuse(conn, ErrorCode::ResumeFailed);
            self.depart(id, LeaveReason::TimedOut);
            return;
        };
        let old = member.conn.replace(conn);
        member.dropped_at = None;
        member.resume_hash = super::live::token_hash(&next);
        member.resume_token = next;
        if let Some(old) = old {
            // The old socket is half-dead or stolen; the new one takes the seat.
            self.seats.remove(&old);
            self.out.push_back(Output::Close { conn: old });
        }
        self.seats.insert(conn, Seat::Member(id));
        self.send_joined(id);
        for msg in replay {
            self.send(conn, msg);
        }
        self.broadcast_participant(id);
    }

    fn send_joined(&mut self, id: ParticipantId) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        let Some(conn) = m.conn else { return };
        let role = m.role;
        let msg = ServerMessage::Joined {
            you: id,
            role,
            resume_token: m.resume_token.encode(),
            resume_window: RESUME_WINDOW.as_secs(),
            meeting: self.state(),
            participants: self.roster(),
            waiting: if role.moderates() {
                self.waiting_list()
            } else {
                Vec::new()
            },
            e2ee: self.group.as_ref().map(|g| g.setup().clone()),
            // The shell fills them in: credentials need the wall clock and
            // the operator's secret, neither of which the core holds.
            ice_servers: Vec::new(),
        };
        self.send(conn, msg);
    }

    /// What a connection without a member's seat may say. A waiting one may
    /// leave, or hand in the key package the server will propose when a host
    /// admits it (nothing comes back but errors); anyone else is not joined.
    pub(super) fn waiting_message(
        &mut self,
        conn: ConnId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        let Some(Seat::Waiting(id)) = self.seats.get(&conn).copied() else {
            return Err(ErrorCode::NotJoined);
        };
        match msg {
            ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
                Err(ErrorCode::AlreadyJoined)
            }
            ClientMessage::Leave => {
                self.waiting.remove(&id);
                self.seats.remove(&conn);
                self.out.push_back(Output::Close { conn });
                self.broadcast_waiting_room();
                Ok(())
            }
            ClientMessage::MlsKeyPackage { key_package } => {
                self.group_mut()?.key_package(id, &key_package)
            }
            _ => Err(ErrorCode::NotJoined),
        }
    }

    /// A moderator letting the waiting in or turning them away.
    pub(super) fn waiting_room_message(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        self.moderator(me)?;
        match msg {
            ClientMessage::Admit { participant } => self.admit(participant),
            ClientMessage::Deny { participant } => self.deny(participant),
            ClientMessage::AdmitAll => {
                // A recorder is let in only by name: "admit all" is for
                // people, and nobody should start a recording unawares.
                let ids: Vec<_> = self
                    .waiting
                    .iter()
                    .filter(|(_, w)| !w.recording)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    if self.admit(id) == Err(ErrorCode::Full) {
                        return Err(ErrorCode::Full);
                    }
                }
                Ok(())
            }
            ClientMessage::DenyAll => {
                let ids: Vec<_> = self.waiting.keys().copied().collect();
                for id in ids {
                    self.deny(id)?;
                }
                Ok(())
            }
            // `message` routes no other kind here.
            _ => Err(ErrorCode::BadMessage),
        }
    }

    fn admit(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        if !self.waiting.contains_key(&id) {
            return Err(ErrorCode::UnknownParticipant);
        }
        if self.members.len() >= self.config.max_participants as usize {
            return Err(ErrorCode::Full);
        }
        let Some(w) = self.waiting.remove(&id) else {
            return Err(ErrorCode::UnknownParticipant);
        };
        self.seat(id, w, Role::Participant);
        self.broadcast_waiting_room();
        Ok(())
    }

    fn deny(&mut self, id: ParticipantId) -> Result<(), Refusal> {
        let w = self
            .waiting
            .remove(&id)
            .ok_or(ErrorCode::UnknownParticipant)?;
        self.seats.remove(&w.conn);
        self.send(w.conn, ServerMessage::Denied);
        self.out.push_back(Output::Close { conn: w.conn });
        self.broadcast_waiting_room();
        Ok(())
    }

    fn host(&self) -> Option<ParticipantId> {
        self.members
            .iter()
            .find(|(_, m)| m.role == Role::Host)
            .map(|(id, _)| *id)
    }
}
