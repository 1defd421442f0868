//! One running meeting as a state machine: `handle(input, now)`, then drain
//! `poll_output()`; `poll_timeout()` says when to call `handle(Input::Timeout)`.
//!
//! The waiting room is kept apart from the members structurally: broadcasts
//! iterate over `members` only, and a waiting person has no seat there, so no
//! room event (roster, chat, and later media offers and keys) can reach them.
//! A waiting connection is sent exactly its own status, its admission or its
//! denial.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conclave_proto::{
    ClientMessage, EndReason, ErrorCode, LeaveReason, MAX_CHAT_BYTES, MAX_SDP_BYTES, MediaKind,
    MeetingState, Participant, ParticipantId, Permissions, PermissionsPatch, Presence,
    PublishedTrack, ResumeToken, Role, ScreenShare, ServerMessage, WaitingParticipant,
    clean_display_name,
};
use subtle::ConstantTimeEq;

use crate::group::Group;
use crate::media::{MediaCommand, MediaEvent};

/// Tracks one member may publish at once (camera, microphone, screen, and spares).
const MAX_PUBLISHED_TRACKS: usize = 8;
/// Longest SDP `mid` accepted.
const MAX_MID_LEN: usize = 32;
/// Largest view size a client may report, in pixels per side.
const MAX_VIEW_SIDE: u32 = 16_384;

/// How long a dropped member's seat is kept for a `resume`.
pub const RESUME_WINDOW: Duration = Duration::from_secs(30);
/// How long, and at most how many, MLS messages are kept per member to send
/// again on a resume. A client that missed one cannot follow the group any
/// more, and the messages last written to a socket that died are lost with
/// it, whether the server noticed the drop or not. Older ones went out
/// before any drop a resume can follow (the window, and the keepalive that
/// finds a dead socket, are shorter). A member that needs one no longer kept
/// cannot resume its seat and joins afresh.
const MLS_REPLAY_AGE: Duration = Duration::from_secs(120);
const MLS_REPLAY_MAX: usize = 256;

/// A connection, numbered by the I/O shell. The core never sees a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who is behind a join, as the shell established it (cookie, token, address).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The signed-in account, if any.
    pub account: Option<i64>,
    /// A guest identity the server minted and signed (its cookie verified),
    /// if any. Never a value the client chose.
    pub guest: Option<String>,
    /// The client's network: its IPv4 address, or the /64 of its IPv6
    /// address (a host is given a whole /64 and can hop within it).
    pub address: Option<IpAddr>,
}

/// What a removal bans. An account or a guest identity is turned away; a
/// network only makes whoever comes from it wait for a moderator, because
/// one address may stand for a whole office, campus or carrier NAT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanKey {
    Account(i64),
    Guest(String),
    Address(IpAddr),
}

impl Identity {
    fn ban_keys(&self) -> Vec<BanKey> {
        let mut keys = Vec::new();
        if let Some(a) = self.account {
            keys.push(BanKey::Account(a));
        }
        if let Some(g) = &self.guest {
            keys.push(BanKey::Guest(g.clone()));
        }
        if let Some(ip) = self.address {
            keys.push(BanKey::Address(ip));
        }
        keys
    }
}

/// The persisted settings the core needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingConfig {
    pub title: String,
    /// The account that owns the meeting: joins as host, skips the waiting room.
    pub owner: i64,
    pub permissions: Permissions,
    pub waiting_room: bool,
    pub only_signed_in: bool,
    pub max_participants: u32,
}

/// Inputs from the shell.
#[derive(Debug)]
pub enum Input {
    /// A `join` whose passcode (or ownership) the shell has already verified.
    Join {
        conn: ConnId,
        name: String,
        /// Joins to record (shown to everyone).
        recorder: bool,
        identity: Identity,
        /// Fresh randomness from the shell for this seat's resume token.
        resume_token: ResumeToken,
    },
    /// A `resume` message on a new connection.
    Resume {
        conn: ConnId,
        token: ResumeToken,
        /// The token that replaces the used one.
        next_token: ResumeToken,
        /// MLS messages the client took in for the seat (see
        /// [`conclave_proto::ClientMessage::Resume`]).
        mls_received: Option<u64>,
    },
    /// Any other client message.
    Message {
        conn: ConnId,
        msg: ClientMessage,
    },
    /// The socket closed or failed.
    Disconnected {
        conn: ConnId,
    },
    /// The join limiter saw wrong passcodes for this meeting.
    FailedAttempts {
        count: u32,
        window: Duration,
    },
    /// The owner changed settings through the HTTP API.
    Reconfigure(MeetingConfig),
    /// End for everyone (deleted, server shutdown).
    End(EndReason),
    /// A report from the media router.
    Media(MediaEvent),
    Timeout,
}

/// Outputs for the shell to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send {
        conn: ConnId,
        msg: ServerMessage,
    },
    /// Close after the messages queued before it.
    Close {
        conn: ConnId,
    },
    /// Persist: these keys may not join this meeting again.
    Ban(Vec<BanKey>),
    /// Persist: the permissions changed in the meeting.
    SavePermissions(Permissions),
    /// For the media router.
    Media(MediaCommand),
}

#[derive(Debug)]
struct Member {
    conn: Option<ConnId>,
    name: String,
    role: Role,
    identity: Identity,
    recording: bool,
    audio: bool,
    video: bool,
    screen: bool,
    /// Kinds a moderator stopped; the member may not restart them
    /// (audio excepted while self-unmute is allowed).
    held_audio: bool,
    held_video: bool,
    held_screen: bool,
    resume_token: ResumeToken,
    dropped_at: Option<Instant>,
    /// MLS messages for this seat so far, sent or not (none go to a dropped
    /// member's socket).
    mls_sent: u64,
    /// The latest of them, numbered from 1, with when: for a resume.
    mls_recent: VecDeque<(u64, Instant, ServerMessage)>,
    /// What the router was last told it may forward (audio, video, screen).
    forwarding: (bool, bool, bool),
}

impl Member {
    fn forget_old_mls(&mut self, now: Instant) {
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
    fn mls_after(&self, received: u64) -> Option<Vec<ServerMessage>> {
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
                .map(|(_, _, msg)| msg.clone())
                .collect(),
        )
    }

    /// Whether this member may turn `kind` on now.
    fn may_send(&self, kind: MediaKind, permissions: &Permissions, suspended: bool) -> bool {
        if self.role.moderates() {
            return true;
        }
        if suspended {
            return false;
        }
        match kind {
            MediaKind::Audio => !self.held_audio || permissions.self_unmute,
            MediaKind::Video => !self.held_video,
            MediaKind::Screen => {
                !self.held_screen && permissions.screen_share == ScreenShare::Everyone
            }
        }
    }

    fn view(&self, id: ParticipantId) -> Participant {
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
        }
    }
}

#[derive(Debug)]
struct Waiter {
    conn: ConnId,
    name: String,
    recording: bool,
    identity: Identity,
    resume_token: ResumeToken,
    /// Comes from a banned network without a banned identity (see
    /// [`BanKey`]); told to moderators.
    same_network_as_removed: bool,
}

/// Where a connection sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seat {
    Member(ParticipantId),
    Waiting(ParticipantId),
}

/// One meeting's live state.
#[derive(Debug)]
pub struct Meeting {
    config: MeetingConfig,
    locked: bool,
    suspended: bool,
    bans: Vec<BanKey>,
    next_id: u64,
    members: BTreeMap<ParticipantId, Member>,
    waiting: BTreeMap<ParticipantId, Waiter>,
    seats: BTreeMap<ConnId, Seat>,
    /// The MLS delivery service; `None` only if its signing key could not be
    /// made, in which case nobody can form a group (and clients say so).
    group: Option<Group>,
    out: VecDeque<Output>,
}

type Refusal = ErrorCode;

impl Meeting {
    /// A meeting with the persisted bans loaded.
    pub fn new(config: MeetingConfig, bans: Vec<BanKey>) -> Self {
        Meeting {
            config,
            locked: false,
            suspended: false,
            bans,
            next_id: 1,
            members: BTreeMap::new(),
            waiting: BTreeMap::new(),
            seats: BTreeMap::new(),
            group: Group::new()
                .inspect_err(|e| tracing::error!(error = %e, "no MLS delivery service"))
                .ok(),
            out: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant at which a dropped seat expires or the member named
    /// to commit the MLS group's proposals runs out of time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let seat = self
            .members
            .values()
            .filter_map(|m| m.dropped_at)
            .min()
            .map(|t| t + RESUME_WINDOW);
        let commit = self.group.as_ref().and_then(|g| g.poll_timeout());
        seat.into_iter().chain(commit).min()
    }

    /// Nobody connected, waiting or inside a resume window: the shell may drop it.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.waiting.is_empty()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Whether the connection is seated or waiting (else the shell may drop it).
    pub fn has_seat(&self, conn: ConnId) -> bool {
        self.seats.contains_key(&conn)
    }

    pub fn is_member(&self, conn: ConnId) -> bool {
        matches!(self.seats.get(&conn), Some(Seat::Member(_)))
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Join {
                conn,
                name,
                recorder,
                identity,
                resume_token,
            } => self.join(conn, name, recorder, identity, resume_token),
            Input::Resume {
                conn,
                token,
                next_token,
                mls_received,
            } => {
                // Seats whose window has passed are gone even if the shell's
                // timer has not fired yet: a late timer must not stretch it.
                self.expire(now);
                self.resume(conn, token, next_token, mls_received, now);
            }
            Input::Message { conn, msg } => {
                if let Err(code) = self.message(conn, msg) {
                    self.send(conn, ServerMessage::error(code));
                }
            }
            Input::Disconnected { conn } => self.disconnected(conn, now),
            Input::FailedAttempts { count, window } => {
                let msg = ServerMessage::SecurityNotice {
                    failed_attempts: count,
                    window_secs: window.as_secs(),
                };
                self.send_to_moderators(&msg);
            }
            Input::Reconfigure(config) => {
                self.config = config;
                self.enforce_screen_policy();
                self.broadcast_meeting();
            }
            Input::End(reason) => self.end(reason),
            Input::Media(event) => self.media_event(event),
            Input::Timeout => self.expire(now),
        }
        self.reconcile_group(now);
    }

    /// After every input: the MLS group follows the membership, and what the
    /// delivery service has to say goes to members only.
    fn reconcile_group(&mut self, now: Instant) {
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

    // ---- joining ----

    fn join(
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
        };
        if is_owner || !(self.config.waiting_room || same_network_as_removed) {
            let role = if !is_owner {
                Role::Participant
            } else if self.host().is_some() {
                Role::Cohost
            } else {
                Role::Host
            };
            self.seat(id, waiter, role);
        } else {
            self.waiting.insert(id, waiter);
            self.seats.insert(conn, Seat::Waiting(id));
            self.send(conn, ServerMessage::Waiting { you: id });
            self.broadcast_waiting_room();
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

    fn seat(&mut self, id: ParticipantId, w: Waiter, role: Role) {
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
            resume_token: w.resume_token,
            dropped_at: None,
            mls_sent: 0,
            mls_recent: VecDeque::new(),
            forwarding: (false, false, false),
        };
        let view = member.view(id);
        self.members.insert(id, member);
        self.seats.insert(conn, Seat::Member(id));
        self.send_joined(id);
        self.broadcast_except(id, &ServerMessage::ParticipantJoined { participant: view });
    }

    fn resume(
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
        let found = self
            .members
            .iter()
            .find(|(_, m)| bool::from(m.resume_token.0.ct_eq(&token.0)))
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
                Some(Vec::new())
            }
        };
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
        };
        self.send(conn, msg);
    }

    // ---- client messages from seated connections ----

    fn message(&mut self, conn: ConnId, msg: ClientMessage) -> Result<(), Refusal> {
        let Some(Seat::Member(me)) = self.seats.get(&conn).copied() else {
            if matches!(self.seats.get(&conn), Some(Seat::Waiting(_)))
                && matches!(
                    msg,
                    ClientMessage::Join { .. } | ClientMessage::Resume { .. }
                )
            {
                return Err(ErrorCode::AlreadyJoined);
            }
            // A waiting connection may only leave.
            if let (Some(Seat::Waiting(id)), ClientMessage::Leave) = (self.seats.get(&conn), &msg) {
                let id = *id;
                self.waiting.remove(&id);
                self.seats.remove(&conn);
                self.out.push_back(Output::Close { conn });
                self.broadcast_waiting_room();
                return Ok(());
            }
            // A waiting person hands in the key package the server will
            // propose when a host admits them. Nothing comes back but errors.
            if let (Some(Seat::Waiting(id)), ClientMessage::MlsKeyPackage { key_package }) =
                (self.seats.get(&conn).copied(), &msg)
            {
                return self.group_mut()?.key_package(id, key_package);
            }
            return Err(ErrorCode::NotJoined);
        };
        match msg {
            ClientMessage::Join { .. } | ClientMessage::Resume { .. } => {
                Err(ErrorCode::AlreadyJoined)
            }
            ClientMessage::Leave => {
                self.depart(me, LeaveReason::Left);
                Ok(())
            }
            ClientMessage::Admit { participant } => {
                self.moderator(me)?;
                self.admit(participant)
            }
            ClientMessage::Deny { participant } => {
                self.moderator(me)?;
                self.deny(participant)
            }
            ClientMessage::AdmitAll => {
                self.moderator(me)?;
                let ids: Vec<_> = self.waiting.keys().copied().collect();
                for id in ids {
                    if self.admit(id) == Err(ErrorCode::Full) {
                        return Err(ErrorCode::Full);
                    }
                }
                Ok(())
            }
            ClientMessage::DenyAll => {
                self.moderator(me)?;
                let ids: Vec<_> = self.waiting.keys().copied().collect();
                for id in ids {
                    self.deny(id)?;
                }
                Ok(())
            }
            ClientMessage::Remove { participant } => self.remove(me, participant),
            ClientMessage::StopMedia { participant, kind } => {
                self.acts_on(me, participant)?;
                self.stop_media(participant, kind);
                Ok(())
            }
            ClientMessage::MuteAll => {
                self.moderator(me)?;
                let ids: Vec<_> = self
                    .members
                    .iter()
                    .filter(|(_, m)| !m.role.moderates())
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.stop_media(id, MediaKind::Audio);
                }
                Ok(())
            }
            ClientMessage::SetMedia {
                audio,
                video,
                screen,
            } => self.set_media(me, audio, video, screen),
            ClientMessage::Rename { participant, name } => self.rename(me, participant, &name),
            ClientMessage::SetPermissions { permissions } => {
                self.moderator(me)?;
                self.set_permissions(permissions);
                Ok(())
            }
            ClientMessage::Lock => {
                self.moderator(me)?;
                self.locked = true;
                self.broadcast_meeting();
                Ok(())
            }
            ClientMessage::Unlock => {
                self.moderator(me)?;
                self.locked = false;
                self.broadcast_meeting();
                Ok(())
            }
            ClientMessage::SetRole { participant, role } => self.set_role(me, participant, role),
            ClientMessage::TransferHost { participant } => self.transfer_host(me, participant),
            ClientMessage::SuspendActivities => {
                self.moderator(me)?;
                self.suspend();
                Ok(())
            }
            ClientMessage::ResumeActivities => {
                self.moderator(me)?;
                self.suspended = false;
                // Lifting the suspension also lifts every hold a moderator put
                // on someone's media; the lock stays until a host unlocks.
                for m in self.members.values_mut() {
                    m.held_audio = false;
                    m.held_video = false;
                    m.held_screen = false;
                }
                self.broadcast_meeting();
                Ok(())
            }
            ClientMessage::EndMeeting => {
                if self.role_of(me)? != Role::Host {
                    return Err(ErrorCode::NotPermitted);
                }
                self.end(EndReason::EndedByHost);
                Ok(())
            }
            ClientMessage::MediaOffer { sdp, tracks } => self.media_offer(me, sdp, tracks),
            ClientMessage::MediaAnswer { sdp } => {
                if sdp.len() > MAX_SDP_BYTES {
                    return Err(ErrorCode::MediaRefused);
                }
                self.out.push_back(Output::Media(MediaCommand::Answer {
                    participant: me,
                    sdp,
                }));
                Ok(())
            }
            ClientMessage::MlsKeyPackage { key_package } => {
                self.group_mut()?.key_package(me, &key_package)
            }
            ClientMessage::MlsGroupInfo { group_info } => {
                self.group_mut()?.group_info(me, &group_info)
            }
            ClientMessage::MlsCommit {
                commit, welcome, ..
            } => self.group_mut()?.commit(me, &commit, welcome.as_deref()),
            ClientMessage::KeyFrameRequest => {
                self.out
                    .push_back(Output::Media(MediaCommand::KeyFrame { participant: me }));
                Ok(())
            }
            ClientMessage::ViewSize {
                participant,
                kind,
                width,
                height,
            } => {
                if !self.members.contains_key(&participant) {
                    return Err(ErrorCode::UnknownParticipant);
                }
                if width > MAX_VIEW_SIDE || height > MAX_VIEW_SIDE {
                    return Err(ErrorCode::BadMessage);
                }
                self.out.push_back(Output::Media(MediaCommand::ViewSize {
                    subscriber: me,
                    publisher: participant,
                    kind,
                    width,
                    height,
                }));
                Ok(())
            }
            ClientMessage::Chat { payload } => {
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
                self.broadcast(&ServerMessage::Chat { from: me, payload });
                Ok(())
            }
        }
    }

    fn role_of(&self, id: ParticipantId) -> Result<Role, Refusal> {
        self.members
            .get(&id)
            .map(|m| m.role)
            .ok_or(ErrorCode::NotJoined)
    }

    fn moderator(&self, id: ParticipantId) -> Result<Role, Refusal> {
        let role = self.role_of(id)?;
        if role.moderates() {
            Ok(role)
        } else {
            Err(ErrorCode::NotPermitted)
        }
    }

    /// A moderator acting on a member: co-hosts may not act on the host.
    fn acts_on(&self, me: ParticipantId, target: ParticipantId) -> Result<Role, Refusal> {
        let my_role = self.moderator(me)?;
        let target_role = self
            .role_of(target)
            .map_err(|_| ErrorCode::UnknownParticipant)?;
        if my_role == Role::Cohost && target_role == Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        Ok(target_role)
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

    fn remove(&mut self, me: ParticipantId, target: ParticipantId) -> Result<(), Refusal> {
        if me == target {
            return Err(ErrorCode::NotPermitted);
        }
        self.moderator(me)?;
        if let Some(w) = self.waiting.remove(&target) {
            self.ban(&w.identity);
            self.seats.remove(&w.conn);
            self.send(w.conn, ServerMessage::Removed);
            self.out.push_back(Output::Close { conn: w.conn });
            self.broadcast_waiting_room();
            return Ok(());
        }
        let target_role = self.acts_on(me, target)?;
        let owner = self
            .members
            .get(&target)
            .is_some_and(|m| m.identity.account == Some(self.config.owner));
        if target_role == Role::Host || owner {
            return Err(ErrorCode::NotPermitted);
        }
        if let Some((identity, conn)) = self
            .members
            .get(&target)
            .map(|m| (m.identity.clone(), m.conn))
        {
            self.ban(&identity);
            if let Some(conn) = conn {
                self.send(conn, ServerMessage::Removed);
            }
        }
        self.depart(target, LeaveReason::Removed);
        Ok(())
    }

    fn ban(&mut self, identity: &Identity) {
        let keys = identity.ban_keys();
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            if !self.bans.contains(k) {
                self.bans.push(k.clone());
            }
        }
        self.out.push_back(Output::Ban(keys));
    }

    fn stop_media(&mut self, id: ParticipantId, kind: MediaKind) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let hold = !m.role.moderates();
        let changed = match kind {
            MediaKind::Audio => {
                m.held_audio |= hold;
                std::mem::replace(&mut m.audio, false)
            }
            MediaKind::Video => {
                m.held_video |= hold;
                std::mem::replace(&mut m.video, false)
            }
            MediaKind::Screen => {
                m.held_screen |= hold;
                std::mem::replace(&mut m.screen, false)
            }
        };
        if changed {
            self.broadcast_participant(id);
        }
    }

    fn set_media(
        &mut self,
        me: ParticipantId,
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    ) -> Result<(), Refusal> {
        let permissions = self.config.permissions;
        let suspended = self.suspended;
        let m = self.members.get_mut(&me).ok_or(ErrorCode::NotJoined)?;
        // Check every requested change before applying any, so a refusal changes nothing.
        let refused = [
            (audio, MediaKind::Audio),
            (video, MediaKind::Video),
            (screen, MediaKind::Screen),
        ]
        .iter()
        .any(|(on, kind)| *on == Some(true) && !m.may_send(*kind, &permissions, suspended));
        if refused {
            return Err(ErrorCode::NotPermitted);
        }
        let before = (m.audio, m.video, m.screen);
        if let Some(a) = audio {
            m.audio = a;
            if a {
                m.held_audio = false;
            }
        }
        if let Some(v) = video {
            m.video = v;
        }
        if let Some(s) = screen {
            m.screen = s;
        }
        if before != (m.audio, m.video, m.screen) {
            self.broadcast_participant(me);
        }
        Ok(())
    }

    fn rename(
        &mut self,
        me: ParticipantId,
        target: Option<ParticipantId>,
        name: &str,
    ) -> Result<(), Refusal> {
        let target = target.unwrap_or(me);
        if target == me {
            let role = self.role_of(me)?;
            // Suspension stops every participant activity, a new name included.
            if !role.moderates() && (!self.config.permissions.rename_self || self.suspended) {
                return Err(ErrorCode::NotPermitted);
            }
        } else {
            self.acts_on(me, target)?;
        }
        let name = clean_display_name(name)?;
        if let Some(m) = self.members.get_mut(&target) {
            m.name = name;
        }
        self.broadcast_participant(target);
        Ok(())
    }

    fn set_permissions(&mut self, patch: PermissionsPatch) {
        patch.apply(&mut self.config.permissions);
        self.out
            .push_back(Output::SavePermissions(self.config.permissions));
        self.enforce_screen_policy();
        self.broadcast_meeting();
    }

    /// When screen share becomes host-only, participants' shares stop.
    fn enforce_screen_policy(&mut self) {
        if self.config.permissions.screen_share == ScreenShare::HostOnly {
            let sharing: Vec<_> = self
                .members
                .iter()
                .filter(|(_, m)| m.screen && !m.role.moderates())
                .map(|(id, _)| *id)
                .collect();
            for id in sharing {
                if let Some(m) = self.members.get_mut(&id) {
                    m.screen = false;
                }
                self.broadcast_participant(id);
            }
        }
    }

    fn set_role(
        &mut self,
        me: ParticipantId,
        target: ParticipantId,
        role: Role,
    ) -> Result<(), Refusal> {
        if self.role_of(me)? != Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        if role == Role::Host {
            return self.transfer_host(me, target);
        }
        if target == me {
            return Err(ErrorCode::NotPermitted);
        }
        let m = self
            .members
            .get_mut(&target)
            .ok_or(ErrorCode::UnknownParticipant)?;
        let was = std::mem::replace(&mut m.role, role);
        if was != role {
            self.role_changed(target, was);
        }
        Ok(())
    }

    fn transfer_host(&mut self, me: ParticipantId, target: ParticipantId) -> Result<(), Refusal> {
        if self.role_of(me)? != Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        if target == me {
            return Ok(());
        }
        let m = self
            .members
            .get_mut(&target)
            .ok_or(ErrorCode::UnknownParticipant)?;
        let was = std::mem::replace(&mut m.role, Role::Host);
        self.role_changed(target, was);
        if let Some(old) = self.members.get_mut(&me) {
            old.role = Role::Cohost;
        }
        self.role_changed(me, Role::Host);
        Ok(())
    }

    /// Tells everyone, and gives a new moderator the waiting room it now manages.
    fn role_changed(&mut self, id: ParticipantId, was: Role) {
        self.broadcast_participant(id);
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if let (true, Some(conn)) = (m.role.moderates() && !was.moderates(), m.conn) {
            let list = self.waiting_list();
            self.send(conn, ServerMessage::WaitingRoom { waiting: list });
        }
    }

    fn suspend(&mut self) {
        self.suspended = true;
        self.locked = true;
        let ids: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| !m.role.moderates())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if m.audio || m.video || m.screen {
                m.audio = false;
                m.video = false;
                m.screen = false;
                self.broadcast_participant(id);
            }
        }
        self.broadcast_meeting();
    }

    // ---- media ----

    /// Checks a member's offer: bounded, well-formed track list, and no track
    /// of a kind the member may not send (a screen share without permission is
    /// refused whole, and nothing changes).
    fn media_offer(
        &mut self,
        me: ParticipantId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    ) -> Result<(), Refusal> {
        let m = self.members.get(&me).ok_or(ErrorCode::NotJoined)?;
        if sdp.len() > MAX_SDP_BYTES
            || tracks.len() > MAX_PUBLISHED_TRACKS
            || tracks
                .iter()
                .any(|t| t.mid.is_empty() || t.mid.len() > MAX_MID_LEN)
        {
            return Err(ErrorCode::MediaRefused);
        }
        if tracks.iter().any(|t| {
            t.kind == MediaKind::Screen
                && !m.may_send(t.kind, &self.config.permissions, self.suspended)
        }) {
            return Err(ErrorCode::NotPermitted);
        }
        self.out.push_back(Output::Media(MediaCommand::Offer {
            participant: me,
            sdp,
            tracks,
        }));
        Ok(())
    }

    /// Delivers a router report to its member, if still a member.
    fn media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Answer { participant, sdp } => {
                self.send_to_member(participant, ServerMessage::MediaAnswer { sdp });
            }
            MediaEvent::Offer {
                participant,
                sdp,
                tracks,
            } => {
                self.send_to_member(participant, ServerMessage::MediaOffer { sdp, tracks });
            }
            MediaEvent::Refused { participant } => {
                self.send_to_member(participant, ServerMessage::error(ErrorCode::MediaRefused));
            }
            MediaEvent::ActiveSpeaker { participant } => {
                if self.members.contains_key(&participant) {
                    self.broadcast(&ServerMessage::ActiveSpeaker { participant });
                }
            }
        }
    }

    fn group_mut(&mut self) -> Result<&mut Group, Refusal> {
        self.group.as_mut().ok_or(ErrorCode::Internal)
    }

    fn send_to_member(&mut self, id: ParticipantId, msg: ServerMessage) {
        if let Some(conn) = self.members.get(&id).and_then(|m| m.conn) {
            self.send(conn, msg);
        }
    }

    // ---- leaving ----

    fn depart(&mut self, id: ParticipantId, reason: LeaveReason) {
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

    fn disconnected(&mut self, conn: ConnId, now: Instant) {
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

    fn expire(&mut self, now: Instant) {
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

    fn end(&mut self, reason: EndReason) {
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

    fn refuse(&mut self, conn: ConnId, code: ErrorCode) {
        self.send(conn, ServerMessage::error(code));
        self.out.push_back(Output::Close { conn });
    }

    // ---- views and delivery ----

    fn host(&self) -> Option<ParticipantId> {
        self.members
            .iter()
            .find(|(_, m)| m.role == Role::Host)
            .map(|(id, _)| *id)
    }

    pub fn state(&self) -> MeetingState {
        MeetingState {
            title: self.config.title.clone(),
            locked: self.locked,
            suspended: self.suspended,
            permissions: self.config.permissions,
        }
    }

    fn roster(&self) -> Vec<Participant> {
        self.members.iter().map(|(id, m)| m.view(*id)).collect()
    }

    fn waiting_list(&self) -> Vec<WaitingParticipant> {
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

    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push_back(Output::Send { conn, msg });
    }

    /// To every connected member. Waiting connections are not members, so this
    /// cannot reach them.
    fn broadcast(&mut self, msg: &ServerMessage) {
        let conns: Vec<_> = self.members.values().filter_map(|m| m.conn).collect();
        for conn in conns {
            self.send(conn, msg.clone());
        }
    }

    fn broadcast_except(&mut self, except: ParticipantId, msg: &ServerMessage) {
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

    fn send_to_moderators(&mut self, msg: &ServerMessage) {
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
    fn broadcast_participant(&mut self, id: ParticipantId) {
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

    fn broadcast_meeting(&mut self) {
        let msg = ServerMessage::MeetingUpdated {
            meeting: self.state(),
        };
        self.broadcast(&msg);
    }

    fn broadcast_waiting_room(&mut self) {
        let msg = ServerMessage::WaitingRoom {
            waiting: self.waiting_list(),
        };
        self.send_to_moderators(&msg);
    }
}
