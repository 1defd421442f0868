//! What a caller of [`super::run`] passes in (how to join, what to send,
//! when to leave) and gets back (what happened), apart from the session's
//! driving loop in `mod.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use conclave_proto::{Participant, ParticipantId};

use crate::invite::Invite;
use crate::media::PeerStats;
use crate::record::RecordedTrack;
use crate::signaling::Admission;

/// How to join and what to send.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub invite: Invite,
    pub name: String,
    /// Overrides the passcode in the invite link.
    pub passcode: Option<String>,
    /// A personal API token: join one's own meeting as host.
    pub token: Option<String>,
    pub send_ivf: Option<PathBuf>,
    pub send_ogg: Option<PathBuf>,
    /// Send benchmark load instead of files: video of 130 one-packet frames a
    /// second (~1.1 Mbit/s) and audio of 50 small frames a second, each
    /// stamped with its send time.
    pub synthetic: bool,
    /// How long to stay once admitted.
    pub duration: Duration,
    /// How long to wait in the waiting room.
    pub patience: Duration,
    /// The address to bind the media socket to (loopback by default).
    pub bind: IpAddr,
    /// Write every received track into this directory (`conclave record`).
    pub record: Option<PathBuf>,
    /// Leave early, cleanly (files closed, `leave` said), when this is
    /// notified (Ctrl-C), in whatever state: connecting, waiting in the
    /// waiting room (the session then ends with [`super::SessionError::Stopped`])
    /// or admitted.
    pub stop: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Leave early, cleanly, once this holds: a caller that waits for
    /// something to happen (frames from someone, a layer switch) ends when
    /// it has, and `duration` is only the upper bound.
    pub until: Option<Until>,
    /// Stay out of the MLS group and take frames as the server forwards
    /// them. Only tests use this, to look at what the server sees; a real
    /// client always encrypts.
    pub outside_group: bool,
}

/// What a running session has seen so far, for [`Until`].
pub struct Progress<'a> {
    pub you: ParticipantId,
    pub media: &'a PeerStats,
    pub active_speakers: &'a [ParticipantId],
    /// The MLS group as seen so far (empty outside the group).
    pub e2ee: &'a E2eeReport,
}

/// A condition that ends a session ([`JoinOptions::until`]), checked after
/// every wake-up of the session's loop, so at least every few milliseconds
/// while media flows.
#[derive(Clone)]
pub struct Until(std::sync::Arc<dyn Fn(&Progress<'_>) -> bool + Send + Sync>);

impl Until {
    pub fn new(done: impl Fn(&Progress<'_>) -> bool + Send + Sync + 'static) -> Self {
        Until(std::sync::Arc::new(done))
    }

    pub(super) fn holds(&self, progress: &Progress<'_>) -> bool {
        (self.0)(progress)
    }
}

impl std::fmt::Debug for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Until(..)")
    }
}

/// What the client's MLS member ended with.
#[derive(Debug, Clone, Default)]
pub struct E2eeReport {
    pub epoch: u64,
    pub security_code: String,
    /// Participant ids in the group, as the group says.
    pub roster: Vec<String>,
    /// Group members the server never announced (or announced fewer times than the group
    /// holds them), at the end: someone holding the meeting's keys whom nobody sees.
    pub not_announced: Vec<String>,
    /// Participants the server announced who are not in the group (yet), at
    /// the end: they cannot read what is sent.
    pub not_in_group: Vec<String>,
    /// Chat messages decrypted: (sender id, text).
    pub chats: Vec<(String, String)>,
    /// Chat messages this member sent ([`MediaOptions::chat_every`]), the first
    /// [`super::MAX_CHATS_KEPT`] of them.
    pub sent: Vec<SentChat>,
    /// Chat messages sent in all.
    pub sent_count: u64,
    /// Times a chat message was due but MLS would not encrypt it yet (a
    /// proposal waited for its commit); it went out on a later try.
    pub chat_deferred: u64,
    /// Removed from the group by a commit.
    pub removed: bool,
    /// Every epoch this member entered: the epoch, the security code shown
    /// then and the group's roster.
    pub epochs: Vec<(u64, String, Vec<String>)>,
}

/// A chat message sent, with the group it was sent to.
#[derive(Debug, Clone)]
pub struct SentChat {
    pub text: String,
    /// When it went to the server (wall clock, to compare across processes).
    pub at: SystemTime,
    /// The epoch it was encrypted in, and that epoch's roster (participant
    /// ids, this member included): who should be able to read it.
    pub epoch: u64,
    pub roster: Vec<String>,
}

/// The rids of simulcast layers, smallest first, as the web client names
/// its send encodings.
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// What to send and say beyond [`JoinOptions`]: simulcast, audio levels and
/// view sizes ([`run_with`]).
#[derive(Debug, Clone, Default)]
pub struct MediaOptions {
    /// IVF files of one video at up to three sizes, smallest first, sent as
    /// the simulcast layers of one track (rids from [`SIMULCAST_RIDS`]).
    pub simulcast_ivf: Vec<PathBuf>,
    /// The RFC 6464 level (-dBov: 0 loudest, 127 silence) sent with every
    /// audio frame; none by default.
    pub audio_level: Option<u8>,
    /// View sizes to report for every video received: from this long after
    /// admission on, show it at width × height (the server picks the
    /// simulcast layer by it).
    pub view_sizes: Vec<(Duration, u32, u32)>,
    /// Send an end-to-end encrypted chat message this often once in the
    /// group, each text unique ("chat <participant id> <n>"), for soak and
    /// load runs to count what arrives.
    pub chat_every: Option<Duration>,
    /// Offer no UDP candidate, as on a network that drops UDP: media goes
    /// over ICE-TCP only. For tests of the fallback; a real client offers
    /// UDP and falls back to TCP by itself.
    pub no_udp: bool,
    /// Offer no candidate of its own and allocate on the TURN servers of
    /// `joined.ice_servers` at once (UDP first, then TCP, then TLS): media
    /// goes through a relay only. For tests of the relay path; a real
    /// client allocates by itself when neither UDP nor ICE-TCP connected
    /// ([`crate::relay`]).
    pub relay_only: bool,
    /// A PEM file of CA certificates trusted besides the system's roots
    /// (an operator's own CA), for the server's HTTPS and `turns:` relays.
    pub ca_file: Option<std::path::PathBuf>,
    /// Where to tell what a person at the client must know as it happens
    /// (the security code, a recording starting), and statistics every
    /// [`MediaOptions::stats_every`].
    pub events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
    /// How often to send [`SessionEvent::Stats`] to `events` while admitted.
    pub stats_every: Option<Duration>,
    /// The providers whose ID tokens in members' leaves vouch for their
    /// names ([`SessionEvent::Names`]), with keys fetched from each provider.
    pub trusted_providers: Vec<crate::names::TrustedProvider>,
    /// The server's providers whose keys could not be fetched: their
    /// members are shown as not verified, with the reason.
    pub unreachable_providers: Vec<crate::names::UnreachableProvider>,
    /// The MLS signature key to join with and the provider's ID token that
    /// vouches for it (`conclave login`): the leaf carries the token, and
    /// other members show the name as verified by the provider. Used for
    /// the first group only: a group set up again after a failover gets a
    /// fresh key, and the name is then the server's.
    pub leaf_identity: Option<LeafIdentity>,
    /// Count received frames without decrypting them
    /// ([`crate::media::ClientPeer::open_received`]): for load generators
    /// whose members need not hear. A real client opens every frame.
    pub count_received_only: bool,
}

/// A signature key pair and the OpenPubkey binding of a provider's ID
/// token to it ([`conclave_e2ee::IdentityBinding`]).
#[derive(Clone)]
pub struct LeafIdentity {
    pub secret: Vec<u8>,
    pub public: Vec<u8>,
    pub binding: conclave_e2ee::IdentityBinding,
}

impl std::fmt::Debug for LeafIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key and the token are bearer secrets: not in logs.
        f.debug_struct("LeafIdentity").finish_non_exhaustive()
    }
}

/// The line a person is told before a new security code itself, if any:
/// none for the session's first code (`shown_before` false) nor for the
/// first of a group entered by a breakout move (its notice said why), the
/// failover's for a rebuilt group, else that someone joined or left.
pub fn code_change_line(
    code: &str,
    shown_before: bool,
    rebuilt: bool,
    moved: bool,
) -> Option<String> {
    if rebuilt {
        Some(format!(
            "Reconnected — new security code: {code}. The meeting moved to another server and its encryption was set up again: compare the code again."
        ))
    } else if shown_before && !moved {
        Some("The security code changed: someone joined or left. Compare it again.".into())
    } else {
        None
    }
}

/// What a session tells as it happens ([`MediaOptions::events`]).
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// The security code changed (the first one: on entering the group).
    /// Every member of the epoch shows the same digits; the roster is the
    /// group's own (participant ids), and the two lists are where it differs
    /// from the participants the server announced.
    SecurityCode {
        epoch: u64,
        code: String,
        roster: Vec<String>,
        /// In the group, never announced: someone holds the meeting's keys
        /// whom nobody sees. Always worth a warning.
        not_announced: Vec<String>,
        /// Announced, not (yet) in the group: they cannot read the media.
        not_in_group: Vec<String>,
        /// The names the server gave the participant ids above.
        names: BTreeMap<String, String>,
        /// The first code of a group set up again after a reconnection
        /// found the meeting rebuilt on another server (its own died): the
        /// person must be told why it changed, and compare it again.
        rebuilt: bool,
        /// The first code of the group of a meeting entered by a breakout
        /// move (into a room or back): the notice of the move said why the
        /// code is new, so nobody should be told someone joined or left.
        moved: bool,
    },
    /// Someone else in the meeting records it (true), or no one does any
    /// more (false). Sent on admission too when a recording is running.
    Recording(bool),
    /// Statistics so far, as the final [`SessionReport`] would say them.
    Stats(Box<SessionReport>),
    /// A chat line from another member, decrypted; `name` as the server
    /// announced them.
    Chat {
        from: ParticipantId,
        name: String,
        text: String,
    },
    /// A line for the person at the client about hands, reactions and
    /// polls ([`crate::features`]), or about a command they typed.
    Notice(String),
    /// Whose word each member's name is, one line per member and per
    /// warning ([`crate::names::lines`]): sent when the group or the names
    /// the server shows change.
    Names(Vec<String>),
}

/// What happened, for `--stats` and for tests.
#[derive(Debug, Clone)]
pub struct SessionReport {
    pub admission: Admission,
    /// When the server admitted this client and when the session stopped
    /// (before the connection closed): wall clock, to line sessions up.
    pub admitted_at: SystemTime,
    pub ended_at: SystemTime,
    pub media: PeerStats,
    /// Every `active_speaker` the server announced, in order.
    pub active_speakers: Vec<ParticipantId>,
    /// The files written, when recording.
    pub recorded: Vec<RecordedTrack>,
    /// The MLS group as this member saw it last (absent outside the group).
    pub e2ee: Option<E2eeReport>,
    /// Why the session ended before its time, if it did.
    pub ended_early: Option<String>,
    /// It ended because [`JoinOptions::stop`] was notified.
    pub stopped: bool,
    /// Everyone the server announced during the session, by id, with what
    /// it last said about them (those who left included, for names).
    pub people: BTreeMap<ParticipantId, Participant>,
    /// Someone else is recording the meeting (at the end).
    pub recording: bool,
    /// Times the seat was taken back after the meeting socket dropped. The
    /// media counters are the peer's since the last one: every resume
    /// starts a new peer connection.
    pub reconnects: u32,
}

#[cfg(test)]
mod tests {
    use super::code_change_line;

    const CHANGED: &str = "The security code changed: someone joined or left. Compare it again.";

    #[test]
    fn a_move_or_a_rebuild_is_not_told_as_someone_joining_or_leaving() {
        // The session's first code: nothing before it.
        assert_eq!(code_change_line("12345", false, false, false), None);
        // A change within one group: someone joined or left.
        assert_eq!(
            code_change_line("12345", true, false, false).as_deref(),
            Some(CHANGED)
        );
        // The first code after a breakout move: its notice said why.
        assert_eq!(code_change_line("12345", true, false, true), None);
        // The first code of a rebuilt group: the failover's line, with the code.
        let line = code_change_line("12345", true, true, false).expect("a line");
        assert!(
            line.starts_with("Reconnected — new security code: 12345."),
            "{line}"
        );
        assert!(!line.contains("someone joined or left"), "{line}");
        // Later changes in the room's group are told again.
        assert_eq!(
            code_change_line("67890", true, false, false).as_deref(),
            Some(CHANGED)
        );
    }
}
