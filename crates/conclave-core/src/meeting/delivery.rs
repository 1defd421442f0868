//! The MLS delivery plumbing: after every input the group (`group.rs`)
//! follows the membership, what it has to say goes to members in order, and
//! each seat keeps a log of it so a resumed client misses nothing. Members'
//! MLS messages and their end-to-end encrypted chat come in here.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use conclave_proto::{ClientMessage, ErrorCode, MAX_CHAT_BYTES, ParticipantId, ServerMessage};

use super::{Meeting, Member, Refusal};
use crate::group::Group;

/// How long, and at most how many, MLS messages are kept per member to send
/// again on a resume. A client that missed one cannot follow the group any
/// more, and the messages last written to a socket that died are lost with
/// it, whether the server noticed the drop or not. Older ones went out
/// before any drop a resume can follow (the window, and the keepalive that
/// finds a dead socket, are shorter). A member that needs one no longer kept
/// cannot resume its seat and joins afresh.
const MLS_REPLAY_AGE: Duration = Duration::from_secs(120);
const MLS_REPLAY_MAX: usize = 256;

impl Member {
    pub(super) fn forget_old_mls(&mut self, now: Instant) {
        while self.mls_recent.len() > MLS_REPLAY_MAX
            || self
                .mls_recent
                .front()
                .is_some_and(|(_, at, _)| now >= *at + MLS_REPLAY_AGE)
        {
            self.mls_recent.pop_front();
        }
    }

    /// The MLS messages after the first `received` of this seat, if all are
    /// still kept. A count beyond what was sent is taken as all of them.
    pub(super) fn mls_after(&self, received: u64) -> Option<Vec<(u64, ServerMessage)>> {
        if received >= self.mls_sent {
            return Some(Vec::new());
        }
        let first = self.mls_recent.front()?.0;
        if first > received + 1 {
            return None;
        }
        Some(
            self.mls_recent
                .iter()
                .filter(|(n, _, _)| *n > received)
                .map(|(n, _, msg)| (*n, msg.clone()))
                .collect(),
        )
    }
}

impl Meeting {
    /// After every input: the MLS group follows the membership, and what the
    /// delivery service has to say goes to members only.
    pub(super) fn reconcile_group(&mut self, now: Instant) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        let members: BTreeSet<_> = self.members.keys().copied().collect();
        let connected: BTreeSet<_> = self
            .members
            .iter()
            .filter(|(_, m)| m.conn.is_some())
            .map(|(id, _)| *id)
            .collect();
        let waiting: BTreeSet<_> = self.waiting.keys().copied().collect();
        group.reconcile(&members, &connected, &waiting, now);
        let deliveries: Vec<_> = group.drain().collect();
        for (id, msg) in deliveries {
            self.send_group_message(id, msg, now);
        }
    }

    /// An MLS message reaches a member now, or on its resume: in order and
    /// none missing, as a client cannot apply a commit whose proposals it
    /// never saw, nor the epochs after one it missed.
    fn send_group_message(&mut self, id: ParticipantId, msg: ServerMessage, now: Instant) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        m.mls_sent += 1;
        m.mls_recent.push_back((m.mls_sent, now, msg.clone()));
        m.forget_old_mls(now);
        if let Some(conn) = m.conn {
            self.send(conn, msg);
        }
    }

    pub(super) fn group_mut(&mut self) -> Result<&mut Group, Refusal> {
        self.group.as_mut().ok_or(ErrorCode::Internal)
    }

    /// A member's part in the MLS group, for the delivery service to order.
    pub(super) fn mls_message(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        let group = self.group_mut()?;
        match msg {
            ClientMessage::MlsKeyPackage { key_package } => group.key_package(me, &key_package),
            ClientMessage::MlsGroupInfo { group_info } => group.group_info(me, &group_info),
            ClientMessage::MlsCommit {
                commit, welcome, ..
            } => group.commit(me, &commit, welcome.as_deref()),
            // `message` routes no other kind here.
            _ => Err(ErrorCode::BadMessage),
        }
    }

    /// Chat is an MLS application message: the server cannot read it, only
    /// bound it and refuse one sent in an epoch the group has left (the
    /// sender encrypts it again) or a handshake message dressed up as chat.
    pub(super) fn chat(&mut self, me: ParticipantId, payload: String) -> Result<(), Refusal> {
        let role = self.role_of(me)?;
        if !role.moderates() && (!self.config.permissions.chat || self.suspended) {
            return Err(ErrorCode::NotPermitted);
        }
        if payload.len() > MAX_CHAT_BYTES {
            return Err(ErrorCode::ChatTooLarge);
        }
        if let Err(code) = crate::group::check_chat(&payload, self.group.as_ref()) {
            if code == ErrorCode::BadMessage {
                tracing::warn!(participant = %me, "an MLS handshake message sent as chat refused");
            }
            return Err(code);
        }
        let bytes = payload.len();
        self.relay_sealed(ServerMessage::Chat { from: me, payload }, bytes);
        Ok(())
    }
}
