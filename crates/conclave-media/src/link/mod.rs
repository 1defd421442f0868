//! One node's end of the media link to another node (issue 23,
//! cascading), sans-IO: sealing and opening datagrams, the replay window,
//! repair of loss on the link, keepalives and the silence that says the
//! peer is gone. The shell owns the socket and the clock and carries
//! frames ([`crate::relay_wire`]) through it.
//!
//! A datagram is a clear header, then the sealed body:
//!
//! ```text
//! version u8 | sender tag [8] | sender epoch u64 | seq u64 | AEAD(kind u8 | body) | tag [16]
//! ```
//!
//! The header is authenticated as associated data. The key is the
//! sender's, for this direction and its epoch ([`keys`]); the nonce is the
//! sequence number, unique per key. The receiver takes each sequence number
//! once ([`window`]), only after the datagram opened, and an epoch older
//! than the one it follows never (once the peer fell silent, an older one
//! it never followed is: a clock stepped back across a restart; one it
//! followed before, never): a replayed, forged or tampered datagram is
//! counted and changes nothing.
//!
//! Loss: the sender keeps its last datagrams (upkeep ones too) ([`HISTORY_LEN`], at most
//! [`HISTORY_AGE`] old) and resends one, unchanged, when the receiver
//! NACKs its number; the receiver NACKs a gap after [`NACK_DELAY`] (room
//! for reordering) and again every [`NACK_RETRY`], [`NACK_TRIES`] times.
//! So a packet crosses the link once whatever the number of subscribers
//! behind it, and a loss is repaired once for all of them. Data is handed
//! up as it arrives, repairs out of order: the shards behind rewrite and
//! forward packets as they come, like a network's.

pub mod keys;
pub mod window;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keys::{LinkSecret, SealKey, TAG_LEN};
use window::{ReplayWindow, Seen, WINDOW};

pub const VERSION: u8 = 1;

/// A sealed datagram, shared by the outbox and the send history.
pub type Datagram = Arc<Vec<u8>>;
/// The clear header's length.
pub const HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// What a datagram adds to the frame it carries.
pub const OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;
/// Datagrams kept for resending.
pub const HISTORY_LEN: usize = 1024;
/// A datagram older than this is not resent: it would come too late.
pub const HISTORY_AGE: Duration = Duration::from_secs(1);
/// A gap is NACKed once it is this old, not at once: a reordered datagram
/// fills it meanwhile.
pub const NACK_DELAY: Duration = Duration::from_millis(5);
/// A gap still open is NACKed again after this long.
pub const NACK_RETRY: Duration = Duration::from_millis(40);
/// NACKs per missing datagram before it counts as lost.
pub const NACK_TRIES: u8 = 4;
/// Missing numbers tracked at once; a longer gap's oldest count as lost.
pub const MAX_MISSING: usize = 512;
/// The first datagram heard of a peer's epoch, if numbered below this,
/// has its predecessors NACKed: they were sent before this end listened
/// (a link set up at both ends at about the same time), and carried the
/// first announcements.
pub const START_GAP: u64 = 64;
/// Numbers per NACK datagram.
pub const NACK_MAX: usize = 128;
/// The same datagram is not resent again within this long (a NACK repeated
/// before the resend arrived).
pub const RESEND_GAP: Duration = Duration::from_millis(10);
/// Earlier epochs of the peer remembered (each a start of it this end
/// followed, never taken again).
pub const RETIRED_EPOCHS: usize = 16;
/// Datagrams waiting for the shell; past this, new ones are dropped.
pub const MAX_OUTBOX: usize = 8192;
/// Something is sent at least this often, so the peer hears the link.
pub const KEEPALIVE: Duration = Duration::from_millis(500);
/// Default silence after which the peer counts as gone.
pub const SILENCE: Duration = Duration::from_secs(5);

const KIND_DATA: u8 = 0;
const KIND_NACK: u8 = 1;
const KIND_KEEPALIVE: u8 = 2;

/// Why a datagram was refused; each is counted in [`LinkStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a link datagram (short, or another version)")]
    Malformed,
    #[error("names another sender")]
    WrongSender,
    #[error("from an epoch older than the peer's current one")]
    StaleEpoch,
    #[error("sequence number already taken")]
    Replayed,
    #[error("sequence number too far behind")]
    TooOld,
    #[error("does not open: forged or tampered")]
    Forged,
}

/// What happened to the link's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Nothing authentic heard for the silence timeout.
    Gone,
    /// Heard again after [`LinkEvent::Gone`].
    Back,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub received: u64,
    pub resent: u64,
    pub nacks_sent: u64,
    /// Gaps filled by a resend (or a late datagram).
    pub repaired: u64,
    /// Gaps given up on.
    pub lost: u64,
    pub malformed: u64,
    pub wrong_sender: u64,
    pub stale_epoch: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub forged: u64,
    /// Datagrams dropped on a full outbox.
    pub outbox_dropped: u64,
}

/// What an accepted datagram carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A frame for the shards.
    Data(&'a [u8]),
    /// Link upkeep (a NACK, a keepalive): nothing for the shards.
    Control,
}

/// Who the two ends are and how long silence may last.
#[derive(Clone)]
pub struct LinkConfig {
    pub secret: LinkSecret,
    pub local: String,
    pub peer: String,
    /// This process's epoch: larger than any earlier run's (the shell
    /// takes the time it started, in microseconds).
    pub epoch: u64,
    pub silence: Duration,
}

struct Sent {
    seq: u64,
    at: Instant,
    resent_at: Option<Instant>,
    datagram: Datagram,
}

struct Missing {
    due: Instant,
    tries: u8,
}

/// One direction pair with one peer node.
pub struct Link {
    local_tag: [u8; 8],
    peer_tag: [u8; 8],
    epoch: u64,
    send_key: SealKey,
    next_seq: u64,
    history: VecDeque<Sent>,
    config: LinkConfig,
    /// The peer's epoch and key once one datagram of it opened.
    peer_epoch: Option<(u64, SealKey)>,
    /// The peer's starts followed before its current one: a recording of
    /// one is refused even once the peer fell silent (when an earlier
    /// start, one never followed, is taken: a clock stepped back).
    retired: VecDeque<u64>,
    window: ReplayWindow,
    missing: BTreeMap<u64, Missing>,
    outbox: VecDeque<Datagram>,
    last_sent: Option<Instant>,
    last_heard: Instant,
    gone: bool,
    events: VecDeque<LinkEvent>,
    stats: LinkStats,
}

impl Link {
    /// `None` only if the key could not be derived (it can).
    pub fn new(config: LinkConfig, now: Instant) -> Option<Link> {
        let send_key = config
            .secret
            .key(&config.local, &config.peer, config.epoch)?;
        Some(Link {
            local_tag: config.secret.node_tag(&config.local),
            peer_tag: config.secret.node_tag(&config.peer),
            epoch: config.epoch,
            send_key,
            next_seq: 0,
            history: VecDeque::new(),
            peer_epoch: None,
            retired: VecDeque::new(),
            window: ReplayWindow::default(),
            missing: BTreeMap::new(),
            outbox: VecDeque::new(),
            last_sent: None,
            last_heard: now,
            gone: false,
            events: VecDeque::new(),
            stats: LinkStats::default(),
            config,
        })
    }

    /// The tag the peer's datagrams carry: the shell finds this link by it.
    pub fn peer_tag(&self) -> [u8; 8] {
        self.peer_tag
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// The peer's epoch (the start of its process) as last authenticated:
    /// when it changes, the peer restarted and what it announced before
    /// is gone with its old process.
    pub fn peer_epoch(&self) -> Option<u64> {
        self.peer_epoch.as_ref().map(|(e, _)| *e)
    }

    /// Seals `frame` into a datagram for the peer.
    pub fn send(&mut self, frame: &[u8], now: Instant) {
        if let Some(d) = self.seal(KIND_DATA, frame, now) {
            self.push_out(d, now);
        }
    }

    /// Every datagram is kept for resending, upkeep too: the receiver
    /// cannot tell what a gap was, and a gap never filled would count as
    /// loss.
    fn seal(&mut self, kind: u8, body: &[u8], now: Instant) -> Option<Datagram> {
        let d = self.seal_only(kind, body)?;
        self.prune_history(now);
        self.history.push_back(Sent {
            seq: self.next_seq - 1,
            at: now,
            resent_at: None,
            datagram: d.clone(),
        });
        if self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
        Some(d)
    }

    fn seal_only(&mut self, kind: u8, body: &[u8]) -> Option<Datagram> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut d = Vec::with_capacity(HEADER_LEN + 1 + body.len() + TAG_LEN);
        d.push(VERSION);
        d.extend_from_slice(&self.local_tag);
        d.extend_from_slice(&self.epoch.to_be_bytes());
        d.extend_from_slice(&seq.to_be_bytes());
        d.push(kind);
        d.extend_from_slice(body);
        if !self.send_key.seal(seq, HEADER_LEN, &mut d) {
            return None;
        }
        Some(Arc::new(d))
    }

    fn push_out(&mut self, d: Datagram, now: Instant) {
        if self.outbox.len() >= MAX_OUTBOX {
            self.stats.outbox_dropped += 1;
            return;
        }
        self.stats.sent += 1;
        self.last_sent = Some(now);
        self.outbox.push_back(d);
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// The sender tag of a datagram, if it looks like one: which link it
    /// claims to be for (it proves nothing until it opens).
    pub fn sender_tag(datagram: &[u8]) -> Option<[u8; 8]> {
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return None;
        }
        datagram[1..9].try_into().ok()
    }

    /// A datagram from the network (opened in place). Refused ones are
    /// counted and change nothing.
    pub fn receive<'a>(
        &mut self,
        datagram: &'a mut [u8],
        now: Instant,
    ) -> Result<Received<'a>, Refused> {
        let r = self.open(datagram, now);
        if let Err(e) = &r {
            let s = &mut self.stats;
            match e {
                Refused::Malformed => s.malformed += 1,
                Refused::WrongSender => s.wrong_sender += 1,
                Refused::StaleEpoch => s.stale_epoch += 1,
                Refused::Replayed => s.replayed += 1,
                Refused::TooOld => s.too_old += 1,
                Refused::Forged => s.forged += 1,
            }
        }
        r
    }

    fn open<'a>(&mut self, datagram: &'a mut [u8], now: Instant) -> Result<Received<'a>, Refused> {
        let tag = Self::sender_tag(datagram).ok_or(Refused::Malformed)?;
        if tag != self.peer_tag {
            return Err(Refused::WrongSender);
        }
        let (header, body) = datagram.split_at_mut(HEADER_LEN);
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[9..17]);
        let epoch = u64::from_be_bytes(word);
        word.copy_from_slice(&header[17..25]);
        let seq = u64::from_be_bytes(word);

        // A newer epoch's key is derived for the try and kept only if the
        // datagram opens under it.
        let mut fresh = None;
        if self.retired.contains(&epoch) {
            return Err(Refused::StaleEpoch);
        }
        let key = match &self.peer_epoch {
            // Once the peer fell silent, a start of it never followed is
            // taken: a node whose clock stepped back while it restarted
            // comes back. One followed before is not (`retired`, above).
            Some((e, _)) if epoch < *e && !self.gone => return Err(Refused::StaleEpoch),
            Some((e, k)) if epoch == *e => {
                match self.window.check(seq) {
                    Seen::Duplicate => return Err(Refused::Replayed),
                    Seen::TooOld => return Err(Refused::TooOld),
                    Seen::Ahead(_) | Seen::Late => {}
                }
                k
            }
            _ => {
                let (peer, local) = (&self.config.peer, &self.config.local);
                fresh = self.config.secret.key(peer, local, epoch);
                fresh.as_ref().ok_or(Refused::Forged)?
            }
        };
        let plain = key.open(seq, header, body).ok_or(Refused::Forged)?;
        // Only a node with the secret could send an empty one: refused all
        // the same, before it changes anything.
        let (&mut kind, rest) = plain.split_first_mut().ok_or(Refused::Malformed)?;
        if let Some(k) = fresh {
            // The peer restarted (or this is its first word): a new
            // numbering.
            if let Some((old, _)) = self.peer_epoch.replace((epoch, k)) {
                if self.retired.len() >= RETIRED_EPOCHS {
                    self.retired.pop_front();
                }
                self.retired.push_back(old);
            }
            self.window = ReplayWindow::default();
            self.missing.clear();
        }
        self.note_arrival(seq, now);
        self.last_heard = now;
        self.stats.received += 1;
        if self.gone {
            self.gone = false;
            self.events.push_back(LinkEvent::Back);
        }
        match kind {
            KIND_DATA => Ok(Received::Data(rest)),
            KIND_NACK => {
                self.nacked(rest, now);
                Ok(Received::Control)
            }
            _ => Ok(Received::Control),
        }
    }

    /// Takes `seq` in the window and notes the gaps it opens or fills.
    fn note_arrival(&mut self, seq: u64, now: Instant) {
        let before = self.window.newest();
        self.window.mark(seq);
        if before.is_none() && seq > 0 && seq < START_GAP {
            for s in 0..seq {
                self.missing.insert(
                    s,
                    Missing {
                        due: now + NACK_DELAY,
                        tries: 0,
                    },
                );
            }
        }
        match before {
            Some(newest) if seq > newest + 1 => {
                let gap_start = (newest + 1).max(seq.saturating_sub(MAX_MISSING as u64));
                self.stats.lost += gap_start - (newest + 1);
                for s in gap_start..seq {
                    self.missing.insert(
                        s,
                        Missing {
                            due: now + NACK_DELAY,
                            tries: 0,
                        },
                    );
                }
                while self.missing.len() > MAX_MISSING {
                    self.missing.pop_first();
                    self.stats.lost += 1;
                }
            }
            Some(newest) if seq < newest && self.missing.remove(&seq).is_some() => {
                self.stats.repaired += 1;
            }
            _ => {}
        }
    }

    /// The peer asks for these numbers again.
    fn nacked(&mut self, body: &[u8], now: Instant) {
        self.prune_history(now);
        let mut resend = Vec::new();
        for chunk in body.chunks_exact(8).take(NACK_MAX) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let seq = u64::from_be_bytes(word);
            // Numbers are consecutive in the history, unless a datagram
            // failed to seal; search, do not index.
            let Ok(i) = self.history.binary_search_by_key(&seq, |s| s.seq) else {
                continue;
            };
            let Some(sent) = self.history.get_mut(i) else {
                continue;
            };
            if sent
                .resent_at
                .is_some_and(|at| now.saturating_duration_since(at) < RESEND_GAP)
            {
                continue;
            }
            sent.resent_at = Some(now);
            resend.push(sent.datagram.clone());
        }
        for d in resend {
            self.stats.resent += 1;
            self.push_out(d, now);
        }
    }

    fn prune_history(&mut self, now: Instant) {
        while self
            .history
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > HISTORY_AGE)
        {
            self.history.pop_front();
        }
    }

    /// When [`Link::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        let keepalive = self.last_sent.map_or(self.last_heard, |t| t + KEEPALIVE);
        let silence = self.last_heard + self.config.silence;
        let nack = self.missing.values().map(|m| m.due).min();
        let mut next = keepalive;
        if !self.gone {
            next = next.min(silence);
        }
        nack.map_or(next, |n| next.min(n))
    }

    /// NACKs due gaps, keeps the link heard, notices silence.
    pub fn handle_timeout(&mut self, now: Instant) {
        let newest = self.window.newest().unwrap_or(0);
        let mut due = Vec::new();
        let mut lost = 0;
        self.missing.retain(|&seq, m| {
            if newest.saturating_sub(seq) >= WINDOW {
                lost += 1;
                return false;
            }
            if m.due > now {
                return true;
            }
            if m.tries >= NACK_TRIES {
                lost += 1;
                return false;
            }
            m.tries += 1;
            m.due = now + NACK_RETRY;
            due.push(seq);
            true
        });
        self.stats.lost += lost;
        for chunk in due.chunks(NACK_MAX) {
            let body: Vec<u8> = chunk.iter().flat_map(|s| s.to_be_bytes()).collect();
            if let Some(d) = self.seal(KIND_NACK, &body, now) {
                self.stats.nacks_sent += 1;
                self.push_out(d, now);
            }
        }
        if self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= KEEPALIVE)
            && let Some(d) = self.seal(KIND_KEEPALIVE, &[], now)
        {
            self.push_out(d, now);
        }
        if !self.gone && now.saturating_duration_since(self.last_heard) >= self.config.silence {
            self.gone = true;
            self.events.push_back(LinkEvent::Gone);
        }
    }
}

#[cfg(test)]
mod tests;
