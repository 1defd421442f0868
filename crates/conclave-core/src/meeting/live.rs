//! A meeting's live state as a value the shell can keep outside the process
//! (Redis, in cluster mode), and the meeting rebuilt from it on another node
//! after the one running it died: the lock, the suspension, who holds a
//! seat with which role, the hash of its resume token, and who was waiting.
//!
//! Only SHA-256 of a seat's resume token leaves the process: whoever reads
//! the store (Redis) learns no token that takes a seat back. The token is
//! 128 random bits, so an unsalted hash cannot be reversed by guessing.
//!
//! What is not in it, and why: media (each member negotiates afresh on its
//! new socket), the MLS group (the delivery service's state is the node's;
//! members rebuild the group in the open, see `resume`), the MLS logs and
//! chat backlogs (they belong to that group), and bans (in the store).
//!
//! A restored member is a dropped seat: it takes its seat back with its
//! resume token within [`RESUME_WINDOW`] of the restore, as after any drop.
//! A restored waiting person has no socket to list until they come back:
//! their next `join` from the same account or guest identity puts them
//! back in the waiting room under the same number, listed to moderators
//! again, never seated by it, even in a meeting locked meanwhile.

use std::time::Instant;

use conclave_proto::{ErrorCode, ParticipantId, ResumeToken, Role, ServerMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BanKey, ConnId, Identity, Meeting, RESUME_WINDOW, Seat, Waiter};

/// The connection a restored seat is made on before it is marked dropped:
/// the shell numbers real connections from 1 up and never reaches it.
const RESTORING: ConnId = ConnId(u64::MAX);

/// Everything about a running meeting that must outlive its node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    pub locked: bool,
    #[serde(default)]
    pub suspended: bool,
    /// The next participant number, so that a newcomer after a restore is
    /// never given a restored member's number (its MLS credential).
    #[serde(default)]
    pub next_id: u64,
    #[serde(default)]
    pub members: Vec<LiveMember>,
    #[serde(default)]
    pub waiting: Vec<LiveWaiter>,
}

impl LiveState {
    /// The state as a node that stops imposes it: the meeting's own
    /// settings stay, its people do not (they were told it ended).
    pub fn without_people(&self) -> LiveState {
        LiveState {
            members: Vec::new(),
            waiting: Vec::new(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMember {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    pub identity: LiveIdentity,
    pub recording: bool,
    /// SHA-256 of the seat's current resume token, base64url without
    /// padding. State written before hashes were kept has the token itself
    /// here under `resume_token` (16 bytes, not 32): a restore hashes it,
    /// so seats survive the upgrade (see [`Meeting::restore`]).
    #[serde(alias = "resume_token")]
    pub resume_hash: String,
    /// Media kinds a moderator stopped (audio, video, screen).
    #[serde(default)]
    pub held: (bool, bool, bool),
    /// Media kinds the member had on (audio, video, screen): its client
    /// publishes them again on its new connection, as after any resume.
    #[serde(default)]
    pub on: (bool, bool, bool),
    /// A moderator allowed this view-only attendee to publish: without it a
    /// takeover would silence them until a moderator noticed.
    #[serde(default)]
    pub publish_allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWaiter {
    pub id: ParticipantId,
    pub name: String,
    pub identity: LiveIdentity,
    pub recording: bool,
    pub same_network_as_removed: bool,
    pub for_host: bool,
}

/// [`Identity`] as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveIdentity {
    pub account: Option<i64>,
    pub guest: Option<String>,
    pub address: Option<std::net::IpAddr>,
}

impl From<&Identity> for LiveIdentity {
    fn from(i: &Identity) -> Self {
        LiveIdentity {
            account: i.account,
            guest: i.guest.clone(),
            address: i.address,
        }
    }
}

impl From<LiveIdentity> for Identity {
    fn from(i: LiveIdentity) -> Self {
        Identity {
            account: i.account,
            guest: i.guest,
            address: i.address,
        }
    }
}

/// What a seat's resume token is kept and compared as.
pub(super) fn token_hash(token: &ResumeToken) -> [u8; 32] {
    Sha256::digest(token.0).into()
}

/// The hash a [`LiveMember`] holds: 32 bytes, or a 16-byte plain token from
/// state written before hashes were kept, hashed here. None if malformed.
fn stored_hash(encoded: &str) -> Option<[u8; 32]> {
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(encoded.as_bytes())
        .ok()?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(hash) => Some(hash),
        Err(_) => Some(token_hash(&ResumeToken(bytes.try_into().ok()?))),
    }
}

/// A waiting person restored from [`LiveState`] whose socket has not come
/// back yet.
#[derive(Debug)]
pub(super) struct Returning {
    id: ParticipantId,
    waiter: LiveWaiter,
    since: Instant,
}

impl Returning {
    fn current(&self, now: Instant) -> bool {
        now < self.since + RESUME_WINDOW
    }

    /// Whether a join with `identity` is this person: the same account or
    /// the same guest identity. A network is no person.
    fn is(&self, identity: &Identity) -> bool {
        let was = &self.waiter.identity;
        (was.account.is_some() && was.account == identity.account)
            || (was.guest.is_some() && was.guest == identity.guest)
    }
}

impl Meeting {
    /// The live state to keep outside the process.
    pub fn live_state(&self, now: Instant) -> LiveState {
        let members = self
            .members
            .iter()
            .map(|(id, m)| LiveMember {
                id: *id,
                name: m.name.clone(),
                role: m.role,
                identity: (&m.identity).into(),
                recording: m.recording,
                resume_hash: data_encoding::BASE64URL_NOPAD.encode(&m.resume_hash),
                held: (m.held_audio, m.held_video, m.held_screen),
                on: (m.audio, m.video, m.screen),
                publish_allowed: m.publish_allowed,
            })
            .collect();
        let waiting = self
            .waiting
            .iter()
            .map(|(id, w)| LiveWaiter {
                id: *id,
                name: w.name.clone(),
                identity: (&w.identity).into(),
                recording: w.recording,
                same_network_as_removed: w.same_network_as_removed,
                for_host: w.for_host,
            })
            .chain(
                self.returning
                    .iter()
                    .filter(|r| r.current(now))
                    .map(|r| r.waiter.clone()),
            )
            .collect();
        LiveState {
            locked: self.locked,
            suspended: self.suspended,
            next_id: self.next_id,
            members,
            waiting,
        }
    }

    /// Rebuilds a meeting that ran elsewhere, before anyone connects. Its
    /// members are dropped seats from `now`; its waiting people wait to
    /// come back. Sends nothing: nobody is connected yet.
    pub fn restore(&mut self, state: LiveState, now: Instant) {
        self.locked = state.locked;
        self.suspended = state.suspended;
        let mut next_id = self.next_id.max(state.next_id);
        for m in state.members {
            let Some(hash) = stored_hash(&m.resume_hash) else {
                tracing::warn!(participant = %m.id, "restore: seat skipped, its resume hash is malformed");
                continue;
            };
            if self.members.contains_key(&m.id) || self.waiting.contains_key(&m.id) {
                continue;
            }
            next_id = next_id.max(m.id.0 + 1);
            // Made the way every seat is, so a restored seat has every
            // field a new one has; then dropped, as a lost socket leaves it.
            let waiter = Waiter {
                conn: RESTORING,
                name: m.name,
                recording: m.recording,
                identity: m.identity.into(),
                // Nobody knows it: `joined` only goes out after a resume
                // replaced it, and the seat is matched on `resume_hash`.
                resume_token: ResumeToken::generate(),
                same_network_as_removed: false,
                for_host: false,
            };
            self.seat(m.id, waiter, m.role);
            self.seats.remove(&RESTORING);
            if let Some(seat) = self.members.get_mut(&m.id) {
                seat.conn = None;
                seat.dropped_at = Some(now);
                seat.resume_hash = hash;
                (seat.held_audio, seat.held_video, seat.held_screen) = m.held;
                // The router hears of them when the seat is taken back.
                (seat.audio, seat.video, seat.screen) = m.on;
                seat.publish_allowed = m.publish_allowed;
            }
        }
        self.returning = state
            .waiting
            .into_iter()
            .filter(|w| !self.members.contains_key(&w.id))
            .map(|w| {
                next_id = next_id.max(w.id.0 + 1);
                Returning {
                    id: w.id,
                    waiter: w,
                    since: now,
                }
            })
            .collect();
        self.next_id = next_id;
        // What seating said went to nobody.
        self.out.clear();
    }

    /// Forgets restored waiting people who did not come back in time.
    pub(super) fn forget_returning(&mut self, now: Instant) {
        self.returning.retain(|r| r.current(now));
    }

    /// A join from someone who was waiting where the meeting ran before:
    /// back in the waiting room under their number, moderators told, as
    /// long as a ban does not stand against them. True when handled here.
    pub(super) fn rejoin_waiting(
        &mut self,
        conn: ConnId,
        identity: &Identity,
        token: ResumeToken,
    ) -> bool {
        let Some(at) = self.returning.iter().position(|r| r.is(identity)) else {
            return false;
        };
        let r = self.returning.swap_remove(at);
        let banned = identity
            .ban_keys()
            .iter()
            .any(|k| !matches!(k, BanKey::Address(_)) && self.bans.contains(k));
        if banned {
            self.refuse(conn, ErrorCode::Banned);
            return true;
        }
        let w = r.waiter;
        let waiter = Waiter {
            conn,
            name: w.name,
            recording: w.recording,
            identity: identity.clone(),
            resume_token: token,
            same_network_as_removed: w.same_network_as_removed,
            for_host: w.for_host,
        };
        self.waiting.insert(r.id, waiter);
        self.seats.insert(conn, Seat::Waiting(r.id));
        let recording = self.recording();
        self.send(
            conn,
            ServerMessage::Waiting {
                you: r.id,
                recording,
            },
        );
        if w.for_host && !self.members.values().any(|m| m.role.moderates()) {
            self.send(conn, ServerMessage::WaitingForHost);
        }
        self.broadcast_waiting_room();
        true
    }
}
