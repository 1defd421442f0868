//! One running meeting as a state machine: `handle(input, now)`, then drain
//! `poll_output()`; `poll_timeout()` says when to call `handle(Input::Timeout)`.
//!
//! The waiting room is kept apart from the members structurally: broadcasts
//! iterate over `members` only, and a waiting person has no seat there, so no
//! room event (roster, chat, and later media offers and keys) can reach them.
//! A waiting connection is sent exactly its own status, its admission or its
//! denial; the status carries one fact about the meeting, whether a recorder
//! is in it, so that nobody is let into a recording without being told.
//!
//! This file holds the public types and the driver: `handle` takes an input
//! and `message` routes a client message by family to the file that holds
//! its rules. Each of those adds one `impl Meeting` block, so a rule is found
//! by what it is about:
//!
//! - `join`: joining, the waiting room (admit, deny), resuming a dropped seat.
//! - `moderation`: who may act on whom; remove and ban, roles, renames, the
//!   lock, suspension and the meeting's permissions.
//! - `media`: what a member may send, its offers and answers for the media
//!   router, and the router's reports back.
//! - `leave`: leaving, dropped sockets, resume windows running out, the end.
//! - `delivery`: the MLS delivery service (`group.rs`) kept in step with the
//!   membership, each seat's log of MLS messages for a resume, and chat.
//! - `broadcast`: who is told what; every message to members goes out there.
//! - `publishing`: view-only attendees, and the moderators who let them speak.
//! - `breakout`: breakout rooms, as the meeting that opens them and as one.
//! - `backlog`: sealed chat and `app` messages a dropped seat missed, kept
//!   for its resume window and replayed among its MLS messages in order.

mod appmsg;
mod backlog;
mod breakout;
mod broadcast;
mod delivery;
mod join;
mod leave;
mod live;
mod media;
mod moderation;
mod publishing;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use conclave_proto::{
    ClientMessage, EndReason, ErrorCode, LeaveReason, MeetingState, ParticipantId, Permissions,
    ResumeToken, Role, ServerMessage,
};

use crate::group::Group;
use crate::media::{MediaCommand, MediaEvent};

pub use live::{LiveIdentity, LiveMember, LiveState, LiveWaiter};

pub use breakout::{BreakoutOutput, MAX_ROOMS_OPEN, RETURN_GRACE, RoomNote};

/// How long a dropped member's seat is kept for a `resume`.
pub const RESUME_WINDOW: Duration = Duration::from_secs(30);

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
    /// When false, a guest who comes while no host or co-host is in the
    /// meeting waits (and is told why) until one arrives.
    pub join_before_host: bool,
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
    /// A `breakout_join`: admitted only by a ticket this meeting holds.
    BreakoutJoin {
        conn: ConnId,
        name: String,
        identity: Identity,
        resume_token: ResumeToken,
        ticket: conclave_proto::BreakoutTicket,
    },
    /// From the parent meeting, to a breakout room.
    Breakout(RoomNote),
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
    /// For this meeting's breakout rooms.
    Breakout(BreakoutOutput),
}

/// A seated member. Its methods sit with the rules that use them: what it
/// may send in `media`, its MLS log in `delivery`, its view in `broadcast`.
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
    /// A moderator allowed this participant to publish (see `publishing`).
    publish_allowed: bool,
    /// Sent back in `joined`; a seat restored from [`LiveState`] has a
    /// random one nobody knows until its resume replaces it.
    resume_token: ResumeToken,
    /// SHA-256 of the token that takes this seat back: what a resume is
    /// checked against and all that leaves the process (see `live`).
    resume_hash: [u8; 32],
    dropped_at: Option<Instant>,
    /// MLS messages for this seat so far, sent or not (none go to a dropped
    /// member's socket).
    mls_sent: u64,
    /// The latest of them, numbered from 1, with when: for a resume.
    mls_recent: VecDeque<(u64, Instant, ServerMessage)>,
    /// What the router was last told it may forward (audio, video, screen).
    forwarding: (bool, bool, bool),
    /// Bounds this seat's `app` messages; made at the first one.
    app_bucket: Option<crate::rate::TokenBucket>,
    /// Sealed messages relayed while this seat was dropped.
    backlog: backlog::Backlog,
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
    /// Waits only because no host was in yet (`join_before_host` off, no
    /// waiting room): seated as soon as a host or co-host arrives.
    for_host: bool,
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
    /// Waiting people restored from where the meeting ran before, until
    /// they come back (`live`).
    returning: Vec<live::Returning>,
    seats: BTreeMap<ConnId, Seat>,
    /// The MLS delivery service; `None` only if its signing key could not be
    /// made, in which case nobody can form a group (and clients say so).
    group: Option<Group>,
    /// Whether the waiting room was last told a recorder is in the meeting.
    waiting_told_recording: bool,
    breakout: breakout::Breakouts,
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
            returning: Vec::new(),
            seats: BTreeMap::new(),
            group: Group::new()
                .inspect_err(|e| tracing::error!(error = %e, "no MLS delivery service"))
                .ok(),
            waiting_told_recording: false,
            breakout: breakout::Breakouts::default(),
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
        let breakout = self.breakout.poll_timeout();
        seat.into_iter().chain(commit).chain(breakout).min()
    }

    /// Nobody connected, waiting or inside a resume window: the shell may drop it.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.waiting.is_empty() && !self.breakout.keeps_alive()
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

    /// The connection of a seated member, while it has one.
    pub fn conn_of(&self, member: ParticipantId) -> Option<ConnId> {
        self.members.get(&member).and_then(|m| m.conn)
    }

    pub fn is_member(&self, conn: ConnId) -> bool {
        matches!(self.seats.get(&conn), Some(Seat::Member(_)))
    }

    /// A recorder holds a seat (connected or inside its resume window).
    pub fn recording(&self) -> bool {
        self.members.values().any(|m| m.recording)
    }

    pub fn state(&self) -> MeetingState {
        MeetingState {
            title: self.config.title.clone(),
            locked: self.locked,
            suspended: self.suspended,
            permissions: self.config.permissions,
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Join {
                conn,
                name,
                recorder,
                identity,
                resume_token,
            } => {
                self.forget_returning(now);
                self.join(conn, name, recorder, identity, resume_token)
            }
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
                if let Err(code) = self.message(conn, msg, now) {
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
                if self.config.join_before_host {
                    // Turned on meanwhile: nobody waits for a host any more.
                    self.seat_those_waiting_for_host();
                }
                self.enforce_screen_policy();
                self.enforce_publish_policy();
                self.broadcast_meeting();
            }
            Input::End(reason) => {
                self.end_rooms();
                self.end(reason)
            }
            Input::BreakoutJoin {
                conn,
                name,
                identity,
                resume_token,
                ticket,
            } => self.breakout_join(conn, name, identity, resume_token, ticket, now),
            Input::Breakout(note) => self.room_note(note),
            Input::Media(event) => self.media_event(event),
            Input::Timeout => {
                self.expire(now);
                self.breakout_timeout(now);
            }
        }
        self.reconcile_group(now);
        self.tell_waiting_recording();
    }

    /// A client message from a seated or waiting connection, routed by family.
    /// A connection without a member's seat has its own short list.
    fn message(&mut self, conn: ConnId, msg: ClientMessage, now: Instant) -> Result<(), Refusal> {
        use ClientMessage as M;
        let Some(Seat::Member(me)) = self.seats.get(&conn).copied() else {
            return self.waiting_message(conn, msg);
        };
        match msg {
            M::Join { .. } | M::Resume { .. } | M::BreakoutJoin { .. } => {
                Err(ErrorCode::AlreadyJoined)
            }
            msg @ (M::BreakoutOpen { .. }
            | M::BreakoutBroadcast { .. }
            | M::BreakoutVisit { .. }
            | M::BreakoutClose { .. }) => self.breakout_message(me, msg, now),
            M::Leave => {
                self.depart(me, LeaveReason::Left);
                Ok(())
            }
            msg @ (M::Admit { .. } | M::Deny { .. } | M::AdmitAll | M::DenyAll) => {
                self.waiting_room_message(me, msg)
            }
            msg @ (M::Remove { .. }
            | M::StopMedia { .. }
            | M::MuteAll
            | M::AllowPublish { .. }
            | M::Rename { .. }
            | M::SetRole { .. }
            | M::TransferHost { .. }) => self.member_control(me, msg),
            msg @ (M::SetPermissions { .. }
            | M::Lock
            | M::Unlock
            | M::SuspendActivities
            | M::ResumeActivities
            | M::EndMeeting) => self.meeting_control(me, msg),
            msg @ (M::SetMedia { .. }
            | M::MediaOffer { .. }
            | M::MediaAnswer { .. }
            | M::KeyFrameRequest
            | M::ViewSize { .. }) => self.media_message(me, msg),
            msg @ (M::MlsKeyPackage { .. } | M::MlsGroupInfo { .. } | M::MlsCommit { .. }) => {
                self.mls_message(me, msg)
            }
            M::Chat { payload } => self.chat(me, payload),
            M::App { payload } => self.app(me, payload, now),
        }
    }
}
