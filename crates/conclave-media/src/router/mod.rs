//! The router: one meeting's peers, and the forwarding between them.
//!
//! [`Router`] is sans-IO in the str0m/quinn style. There is one per meeting;
//! the I/O driver feeds it datagrams ([`Router::handle_receive`]) and time
//! ([`Router::handle_timeout`]), and after each call drains
//! [`Router::poll_transmit`] (datagrams to send) and [`Router::poll_event`]
//! (for signaling), then sleeps until [`Router::poll_timeout`]. The signaling
//! shell adds and removes peers and passes SDP through. Nothing here blocks,
//! reads a clock or touches a socket, so tests run whole meetings on virtual
//! time.
//!
//! This file holds the router's state, its configuration and the driver's
//! side of the contract (time in, datagrams, events and timeouts out, the
//! counters). The rest is split by concern:
//!
//! - `negotiation`: peers in and out, their offers and answers, tracks
//!   published and withdrawn, the router's own offers (renegotiation).
//! - `forwarding`: datagrams in, peer output acted on, the fan-out of each
//!   published packet, key-frame requests (PLI) to publishers, the gate a
//!   meeting puts on a track, active speaker.
//! - `simulcast`: a track's incoming layers and the layer each subscriber
//!   gets.
//!
//! Negotiation: a client offers what it sends ([`Router::accept_offer`]
//! answers). What it receives, the router offers: when a track appears, each
//! other peer gets a send-only m-line for it in an [`Event::Offer`], and its
//! answer ([`Router::accept_answer`]) makes the stream live. Each peer has at
//! most one router offer outstanding; changes meanwhile wait for the next.
//!
//! Forwarding: each RTP packet a publisher sends on a track is written, as is,
//! to every subscriber's stream for that track, under the subscriber's SSRC,
//! payload type, sequence numbers and timestamps ([`crate::rewrite`]). The
//! payload is shared, not copied, until str0m encrypts it per subscriber.
//!
//! Simulcast: a track whose offer declares rids has one incoming layer per
//! rid. Each subscriber gets one of them, chosen by [`crate::layers`] from the
//! size it shows the video at ([`Router::set_view_size`]) and its share of
//! its egress bandwidth estimate (str0m's TWCC-based BWE, on for every peer).
//! The choice is revisited every [`simulcast::RESELECT_INTERVAL`]. A subscriber moves to
//! a new layer only at a key frame of that layer, which the router asks the
//! publisher for (PLI on that layer, throttled); until then it keeps getting
//! the old layer. Packets of a layer nobody receives go nowhere and cause no
//! key frame requests. The subscriber sees one stream throughout
//! ([`crate::rewrite`]).
//!
//! Dynacast: the router tells each simulcast publisher which of its layers
//! some subscriber receives or waits for ([`Event::LayersWanted`]); one
//! unwatched for [`DYNACAST_HOLD`] is dropped from the set, one needed again
//! joins it at once and its key frame is asked for as it arrives. Layers
//! nobody receives get no NACKs. A publisher that ignores the message only
//! spends its own uplink.
//!
//! Repair: each subscriber stream answers NACKs from a history of
//! forwarded packets, within a retransmission budget
//! ([`DEFAULT_RTX_RATIO_CAP`]) above str0m's default.
//!
//! Active speaker: the RFC 6464 levels on forwarded audio feed
//! [`crate::speaker`]; a change comes out as [`Event::ActiveSpeaker`].
//!
//! Last-N audio: the same levels rank the audio sources, and each subscriber
//! receives only the N loudest others ([`crate::lastn`],
//! [`RouterConfig::audio_last_n`]); packets at the silence level go to
//! nobody. A skipped packet leaves no gap in the subscriber's sequence
//! numbers ([`crate::rewrite`]).

mod forwarding;
mod negotiation;
mod relay;
mod simulcast;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::Candidate;
use str0m::media::Mid;
use str0m::net::TcpType;

use crate::error::MediaError;
use crate::event::{Event, ForwardedTrack};
use crate::keyframe::DEFAULT_KEYFRAME_INTERVAL;
use crate::lastn::AudioSelector;
use crate::lastn::DEFAULT_AUDIO_LAST_N;
use crate::peer::{Peer, PeerId, PeerOutput, TrackId};
use crate::speaker::SpeakerDetector;
use crate::stats::{PeerStats, RouterStats};
use crate::transmit::{DEFAULT_MAX_QUEUED_TRANSMITS, Transmit, TransmitQueue};

use simulcast::Track;
pub use simulcast::{DYNACAST_HOLD, RESUME_BACKOFF, RESUME_WAIT};

/// Events queued for the shell before the oldest are dropped. The shell
/// drains them after every call; the bound is for a shell that does not.
const MAX_QUEUED_EVENTS: usize = 4 * 1024;

/// The egress bandwidth estimate a new peer starts from: enough for a
/// middle layer of several videos; TWCC feedback moves it from there.
pub const DEFAULT_INITIAL_BANDWIDTH: u64 = 2_500_000;

/// How a router is set up.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The addresses announced to clients as ICE host candidates: where the
    /// driver's socket is reachable (the public address behind a 1:1 NAT).
    /// Datagrams must be passed in with one of these as `destination`.
    pub candidates: Vec<SocketAddr>,
    /// Where the driver accepts ICE-TCP connections, announced as passive
    /// TCP host candidates (RFC 6544) beside the UDP ones: a client whose
    /// firewall drops UDP still reaches the router. Frames read from such a
    /// connection are passed in with [`Protocol::Tcp`](str0m::net::Protocol)
    /// and one of these as `destination`. Empty: UDP only.
    pub tcp_candidates: Vec<SocketAddr>,
    /// At most one keyframe request per track per this interval.
    pub keyframe_interval: Duration,
    /// Bound of the transmit queue, in datagrams.
    pub max_queued_transmits: usize,
    /// Whether a newly published track is forwarded before the shell says so
    /// ([`Router::set_forwarding`]). A server whose meeting core decides who
    /// may send what sets this to false: deny by default.
    pub forward_by_default: bool,
    /// Egress bandwidth estimation (TWCC) for every peer, starting from this
    /// many bits per second; `None` turns it off (simulcast layers are then
    /// chosen by view size alone). With it on, str0m paces each peer's
    /// outgoing media at 1.1 times the estimate.
    pub initial_bandwidth: Option<u64>,
    /// Each subscriber receives the audio of at most this many other
    /// members, the loudest by their RFC 6464 levels (`lastn.rs`); `None`
    /// or 0 forwards every member's audio to everyone.
    pub audio_last_n: Option<usize>,
    /// Audio packets at RFC 6464's silence level (127) are forwarded to
    /// nobody; receivers see a DTX pause, not loss.
    pub drop_silent_audio: bool,
    /// The share of a subscriber stream's bytes (over the last second) that
    /// may be retransmissions before str0m drops the queued resends; `None`
    /// never drops them. See [`DEFAULT_RTX_RATIO_CAP`].
    pub rtx_ratio_cap: Option<f32>,
    /// Forwarded media is sealed and queued by the router itself, per
    /// subscriber, instead of going through str0m's send queue (issue 16,
    /// `fastpath.rs`), with its own congestion control from the
    /// subscriber's TWCC feedback (`bwe.rs`). Off by default until the
    /// browser tests pass with it on (`docs/operations.md` says which did
    /// not); off, every forwarded packet goes through str0m.
    pub fast_path: bool,
    /// With the fast path, a subscriber whose publisher's hop needs repairs
    /// is asked for a minimum playout delay that covers them (the
    /// `playout-delay` RTP header extension, `playout.rs`), so it waits for
    /// a repaired frame instead of freezing. It adds that delay (100-400 ms)
    /// while repairs come late, and nothing otherwise.
    pub playout_delay: bool,
    /// With the fast path, a subscriber whose link is congested gets RED
    /// audio as its primary blocks only, then fewer videos
    /// (`video_pause.rs`), read from [`crate::bwe::Bwe::congestion_estimate`].
    /// Off, everything chosen is forwarded and only the simulcast layers
    /// follow the estimate: the server keeps it off by default while that
    /// signal still takes some random loss on a busy receiver for
    /// congestion (docs/benchmarks.md, issue 21).
    pub hold_back: bool,
    /// With the fast path, each subscriber's datagrams pass a pacer
    /// (`pacer.rs`) that spreads a backlog the worker reads at once after a
    /// stall over a few tens of milliseconds instead of one burst. Off by
    /// default: in the bench's 20-member meetings under load the paced
    /// server's legs lost more than the unpaced one's (docs/benchmarks.md,
    /// issue 16's pacing); off, the pacer lets everything out at once.
    pub pacing: bool,
    /// The router is one shard of a meeting spread over several (issue 23,
    /// `relay.rs`): it hands what its peers publish to the other shards
    /// ([`Router::poll_relay`]) and takes theirs ([`Router::handle_relay`]).
    pub relay: bool,
}

/// The retransmission budget of every stream the router sends a subscriber:
/// resends may be this share of its bytes over the last second.
///
/// str0m's own default (0.15) is set for a sender that owns its encoder and
/// can lower the bitrate instead. A forwarded stream crosses two lossy hops
/// and cannot be re-encoded here, and jitter alone makes a receiver NACK
/// reordered packets (first NACKs go out at once), which spends 0.15 before
/// any real loss is repaired: measured in issue 21, subscribers got
/// retransmissions at 14-15 % of packets and froze, while Janus reached
/// 20-25 % and a direct call 18-38 % at the same loss. 0.4 covers the direct
/// call's worst case. It still bounds what a NACK storm can cost: at most
/// 0.4/0.6, two thirds of the stream's own rate, and only on the link of the
/// subscriber that asks. str0m takes the cap when the send history is set
/// up (setting it again empties the history), so it is fixed per stream,
/// not tied to the moving bandwidth estimate.
pub const DEFAULT_RTX_RATIO_CAP: f32 = 0.4;

/// Packets kept per subscriber stream to answer NACKs from: str0m's
/// default for video, which covers [`RTX_HISTORY_AGE`] of a full layer.
pub(crate) const RTX_HISTORY_PACKETS: usize = 1_000;

/// How old a packet may be and still be resent: str0m's default. Older
/// than this it would arrive after the receiver's jitter buffer gave up.
pub(crate) const RTX_HISTORY_AGE: Duration = Duration::from_secs(3);

impl RouterConfig {
    /// A router reachable at `candidate`, with the default limits.
    pub fn new(candidate: SocketAddr) -> Self {
        RouterConfig {
            candidates: vec![candidate],
            tcp_candidates: Vec::new(),
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            max_queued_transmits: DEFAULT_MAX_QUEUED_TRANSMITS,
            forward_by_default: true,
            initial_bandwidth: Some(DEFAULT_INITIAL_BANDWIDTH),
            audio_last_n: Some(DEFAULT_AUDIO_LAST_N),
            drop_silent_audio: true,
            rtx_ratio_cap: Some(DEFAULT_RTX_RATIO_CAP),
            fast_path: false,
            playout_delay: true,
            hold_back: true,
            pacing: false,
            relay: false,
        }
    }
}

/// The SFU of one meeting: its peers, their tracks and the forwarding between
/// them.
pub struct Router {
    forward_by_default: bool,
    candidates: Vec<Candidate>,
    keyframe_interval: Duration,
    peers: BTreeMap<PeerId, Peer>,
    tracks: BTreeMap<TrackId, Track>,
    transmits: TransmitQueue,
    events: VecDeque<Event>,
    /// Outputs of drained peers not yet acted on.
    work: VecDeque<(PeerId, PeerOutput)>,
    /// The latest time seen, for work triggered by calls that carry no time.
    now: Option<Instant>,
    stats: RouterStats,
    /// Reused for the list of peers due a timeout.
    due: Vec<PeerId>,
    initial_bandwidth: Option<u64>,
    /// When simulcast layers are chosen again.
    next_reselect: Option<Instant>,
    speakers: SpeakerDetector<PeerId>,
    speaker_polled: Option<Instant>,
    audio: AudioSelector<PeerId>,
    drop_silent_audio: bool,
    rtx_ratio_cap: Option<f32>,
    fast_path: bool,
    playout_delay: bool,
    hold_back: bool,
    pacing: bool,
    /// Set when the router is a shard of a spread meeting (`relay.rs`).
    relay: Option<relay::Shard>,
}

impl Router {
    pub fn new(config: RouterConfig) -> Result<Self, MediaError> {
        if config.candidates.is_empty() {
            return Err(MediaError::NoCandidates);
        }
        let udp = config.candidates.iter().map(|addr| {
            Candidate::builder()
                .udp()
                .host(*addr)
                .build()
                .map_err(|_| MediaError::BadCandidate(*addr))
        });
        // Passive: the router never dials out; clients connect to it
        // (tcptype active), like they send it the first UDP check.
        let tcp = config.tcp_candidates.iter().map(|addr| {
            Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|_| MediaError::BadCandidate(*addr))
        });
        let candidates = udp.chain(tcp).collect::<Result<Vec<_>, _>>()?;
        Ok(Router {
            candidates,
            keyframe_interval: config.keyframe_interval,
            forward_by_default: config.forward_by_default,
            peers: BTreeMap::new(),
            tracks: BTreeMap::new(),
            transmits: TransmitQueue::new(config.max_queued_transmits),
            events: VecDeque::new(),
            work: VecDeque::new(),
            now: None,
            stats: RouterStats::default(),
            due: Vec::new(),
            initial_bandwidth: config.initial_bandwidth,
            next_reselect: None,
            speakers: SpeakerDetector::new(),
            speaker_polled: None,
            audio: AudioSelector::new(config.audio_last_n),
            drop_silent_audio: config.drop_silent_audio,
            rtx_ratio_cap: config.rtx_ratio_cap,
            fast_path: config.fast_path,
            playout_delay: config.playout_delay,
            hold_back: config.hold_back,
            pacing: config.pacing,
            relay: config.relay.then(relay::Shard::new),
        })
    }

    /// Time passed: runs every peer's timers that are due, deferred
    /// keyframe requests, and the periodic simulcast layer choice.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        due.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.next_timeout <= now)
                .map(|(id, _)| *id),
        );
        for id in &due {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            peer.release(now, &mut self.transmits, &mut self.work);
            self.run_work();
        }
        self.due = due;
        let mut ready: Vec<(TrackId, usize)> = Vec::new();
        for (id, t) in &mut self.tracks {
            for (i, l) in t.layers.iter_mut().enumerate() {
                if l.keyframes.poll_due(now) {
                    ready.push((*id, i));
                }
            }
        }
        for (track, layer) in ready {
            self.send_pli(track, layer, now);
        }
        if self.next_reselect.is_some_and(|t| t <= now) {
            self.reselect(now);
        }
        self.poll_speaker(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop()
    }

    /// Hands back the buffer of a polled datagram once the socket has it
    /// (`Transmit::contents`), for the fast path to seal a later datagram
    /// into. A driver that does so for what it sends makes steady
    /// forwarding allocate nothing per datagram; one that does not only
    /// pays an allocation each.
    pub fn recycle(&mut self, contents: Vec<u8>) {
        self.transmits.recycle(contents);
    }

    /// The datagrams polled so far have been handed to the socket at `at`.
    /// The fast path's congestion control times its packets by this, not
    /// by when they were sealed: the two differ by however long the worker
    /// took (or was descheduled) before it sent the batch, which is no
    /// queue on the path (`bwe.rs`, [`RouterConfig::fast_path`]). Datagrams
    /// still in a subscriber's pacer were not polled and are timed when
    /// they are. A shell that never calls it leaves them timed when sealed.
    pub fn transmitted(&mut self, at: Instant) {
        for peer in self.peers.values_mut() {
            if let Some(fast) = peer.fast.as_mut() {
                fast.departed(at);
            }
        }
    }

    /// The next event for the signaling shell.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Router::handle_timeout`] next; `None` with no peers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().map(|p| p.next_timeout);
        let keyframes = self
            .tracks
            .values()
            .flat_map(|t| t.layers.iter().filter_map(|l| l.keyframes.due_at()));
        peers.chain(keyframes).chain(self.next_reselect).min()
    }

    pub fn stats(&self) -> RouterStats {
        RouterStats {
            transmits_dropped: self.transmits.dropped,
            audio_selection_changes: self.audio.changes(),
            ..self.stats.clone()
        }
    }

    pub fn peer_stats(&self, id: PeerId) -> Option<&PeerStats> {
        self.peers.get(&id).map(|p| &p.stats)
    }

    /// The peers, in id order.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// Whether ICE and DTLS are up for `id`.
    pub fn is_connected(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.rtc.is_connected())
    }

    /// The m-lines `id` publishes on.
    pub fn published(&self, id: PeerId) -> Vec<Mid> {
        self.peers
            .get(&id)
            .map(|p| p.published.clone())
            .unwrap_or_default()
    }

    /// The tracks `id` receives now (streams live after an answer).
    pub fn forwarded_to(&self, id: PeerId) -> Vec<ForwardedTrack> {
        let Some(peer) = self.peers.get(&id) else {
            return Vec::new();
        };
        peer.outgoing
            .iter()
            .map(|(mid, out)| ForwardedTrack {
                mid: *mid,
                publisher: out.track.publisher,
                publisher_mid: out.track.mid,
                kind: out.kind,
            })
            .collect()
    }

    /// `id`'s latest egress bandwidth estimate (TWCC), bits per second.
    pub fn bandwidth_estimate(&self, id: PeerId) -> Option<u64> {
        self.peers.get(&id)?.egress_estimate()
    }

    /// The active speaker, if anyone has spoken yet.
    pub fn active_speaker(&self) -> Option<PeerId> {
        self.speakers.current()
    }

    pub(super) fn tick(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
    }

    /// The current time for calls that carry none; a peer can only exist
    /// after `add_peer` gave one.
    pub(super) fn now_or_err(&self, id: PeerId) -> Result<Instant, MediaError> {
        self.now.ok_or(MediaError::UnknownPeer(id))
    }

    pub(super) fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            tracing::warn!("event queue full; dropping the oldest event");
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}
