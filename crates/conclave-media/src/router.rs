//! The router: every peer of one worker, and the forwarding between them.
//!
//! [`Router`] is sans-IO in the str0m/quinn style. The I/O driver feeds it
//! datagrams ([`Router::handle_receive`]) and time ([`Router::handle_timeout`]),
//! and after each call drains [`Router::poll_transmit`] (datagrams to send) and
//! [`Router::poll_event`] (for signaling), then sleeps until
//! [`Router::poll_timeout`]. The signaling shell adds and removes peers and
//! passes SDP through. Nothing here blocks, reads a clock or touches a socket,
//! so tests run whole meetings on virtual time.
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
//! The choice is revisited every [`RESELECT_INTERVAL`]. A subscriber moves to
//! a new layer only at a key frame of that layer, which the router asks the
//! publisher for (PLI on that layer, throttled); until then it keeps getting
//! the old layer. Packets of a layer nobody receives go nowhere and cause no
//! key frame requests. The subscriber sees one stream throughout
//! ([`crate::rewrite`]).
//!
//! Active speaker: the RFC 6464 levels on forwarded audio feed
//! [`crate::speaker`]; a change comes out as [`Event::ActiveSpeaker`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Input, Rtc};

use crate::codecs;
use crate::error::MediaError;
use crate::event::{Event, ForwardedTrack};
use crate::keyframe::{DEFAULT_KEYFRAME_INTERVAL, KeyframeThrottle, Verdict};
use crate::layers::{self, BitrateMeter, Layer};
use crate::peer::{Peer, PeerId, PeerOutput, Pending, TrackId};
use crate::speaker::SpeakerDetector;
use crate::stats::{PeerStats, RouterStats};
use crate::transmit::{DEFAULT_MAX_QUEUED_TRANSMITS, Transmit, TransmitQueue};

/// Entries in the source-address cache before it is cleared. Each entry is an
/// address a peer's ICE accepted; the bound stops a peer that hops addresses
/// from growing it without limit.
const MAX_SOURCE_CACHE: usize = 64 * 1024;

/// Events queued for the shell before the oldest are dropped. The shell
/// drains them after every call; the bound is for a shell that does not.
const MAX_QUEUED_EVENTS: usize = 4 * 1024;

/// How often every subscriber's simulcast layers are chosen again (view
/// sizes apply at once; this catches bandwidth and layers starting or
/// stopping).
pub const RESELECT_INTERVAL: Duration = Duration::from_millis(250);

/// The egress bandwidth estimate a new peer starts from: enough for a
/// middle layer of several videos; TWCC feedback moves it from there.
pub const DEFAULT_INITIAL_BANDWIDTH: u64 = 2_500_000;

/// Layers per track, at most (browsers send three; the bound stops a
/// publisher from inventing rids without limit).
const MAX_LAYERS: usize = 4;

/// Bandwidth set aside for each audio track a subscriber receives, bits
/// per second, before video is shared out.
const AUDIO_ALLOWANCE: u64 = 64_000;

/// How often the active speaker is re-evaluated, at most.
const SPEAKER_POLL: Duration = Duration::from_millis(100);

/// How a router is set up.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The addresses announced to clients as ICE host candidates: where the
    /// driver's socket is reachable (the public address behind a 1:1 NAT).
    /// Datagrams must be passed in with one of these as `destination`.
    pub candidates: Vec<SocketAddr>,
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
}

impl RouterConfig {
    /// A router reachable at `candidate`, with the default limits.
    pub fn new(candidate: SocketAddr) -> Self {
        RouterConfig {
            candidates: vec![candidate],
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            max_queued_transmits: DEFAULT_MAX_QUEUED_TRANSMITS,
            forward_by_default: true,
            initial_bandwidth: Some(DEFAULT_INITIAL_BANDWIDTH),
        }
    }
}

/// A published track and who receives it.
struct Track {
    kind: MediaKind,
    subscribers: Vec<(PeerId, Mid)>,
    /// What arrives on the track: one layer without a rid, or one per
    /// simulcast rid in the order the publisher's offer lists them.
    layers: Vec<IncomingLayer>,
    /// Off while the publisher may not send this kind (muted by a host,
    /// suspended): its packets are dropped here, not forwarded.
    forwarding: bool,
}

/// One incoming RTP stream of a track.
struct IncomingLayer {
    rid: Option<Rid>,
    meter: BitrateMeter,
    /// From the layer's last key frame.
    size: Option<(u32, u32)>,
    keyframes: KeyframeThrottle,
}

impl IncomingLayer {
    fn new(rid: Option<Rid>, interval: Duration) -> Self {
        IncomingLayer {
            rid,
            meter: BitrateMeter::default(),
            size: None,
            keyframes: KeyframeThrottle::new(interval),
        }
    }
}

impl Track {
    fn is_simulcast(&self) -> bool {
        self.layers.iter().any(|l| l.rid.is_some())
    }

    fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        self.layers.iter().position(|l| l.rid == rid)
    }

    /// Layer indices smallest first: by the sizes seen once every layer's is
    /// known, by the offer's order until then.
    fn ordered(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.layers.len()).collect();
        if self.layers.iter().all(|l| l.size.is_some()) {
            order.sort_by_key(|&i| {
                self.layers[i]
                    .size
                    .map(|(w, h)| u64::from(w) * u64::from(h))
            });
        }
        order
    }

    /// The choice's view of the layers, in `ordered` order.
    fn describe(&self, order: &[usize], now: Instant) -> Vec<Layer> {
        order
            .iter()
            .map(|&i| {
                let l = &self.layers[i];
                Layer {
                    size: l.size,
                    bitrate: l.meter.bitrate(),
                    active: l.meter.is_active(now),
                }
            })
            .collect()
    }

    /// Measured bitrate of the whole track (all layers), for tracks that are
    /// forwarded as they are.
    fn bitrate(&self) -> u64 {
        self.layers.iter().filter_map(|l| l.meter.bitrate()).sum()
    }
}

/// The SFU core of one worker: peers, tracks and the forwarding between them.
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
    /// Which peer took the last datagram from an address: skips asking every
    /// peer's ICE agent on the hot path.
    by_source: HashMap<SocketAddr, PeerId>,
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
}

impl Router {
    pub fn new(config: RouterConfig) -> Result<Self, MediaError> {
        if config.candidates.is_empty() {
            return Err(MediaError::NoCandidates);
        }
        let candidates = config
            .candidates
            .iter()
            .map(|addr| Candidate::host(*addr, "udp").map_err(|_| MediaError::BadCandidate(*addr)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Router {
            candidates,
            keyframe_interval: config.keyframe_interval,
            forward_by_default: config.forward_by_default,
            peers: BTreeMap::new(),
            tracks: BTreeMap::new(),
            transmits: TransmitQueue::new(config.max_queued_transmits),
            events: VecDeque::new(),
            work: VecDeque::new(),
            by_source: HashMap::new(),
            now: None,
            stats: RouterStats::default(),
            due: Vec::new(),
            initial_bandwidth: config.initial_bandwidth,
            next_reselect: None,
            speakers: SpeakerDetector::new(),
            speaker_polled: None,
        })
    }

    /// Creates the media session of a member. It publishes and receives
    /// nothing until its first offer ([`Router::accept_offer`]); from then on
    /// it is offered every track of the other peers.
    pub fn add_peer(&mut self, id: PeerId, now: Instant) -> Result<(), MediaError> {
        self.tick(now);
        if self.peers.contains_key(&id) {
            return Err(MediaError::DuplicatePeer(id));
        }
        let config = Rtc::builder()
            // The router has public addresses and never initiates: clients
            // run the ICE checks, the router only answers them.
            .set_ice_lite(true)
            // Forward packets, not frames: no depacketizing, no jitter buffer,
            // and nothing of the (end-to-end encrypted) payload is read.
            .set_rtp_mode(true)
            // Egress bandwidth estimation from TWCC feedback: the budget for
            // simulcast layers.
            .enable_bwe(self.initial_bandwidth.map(Bitrate::bps));
        let mut rtc = codecs::configure(config).build(now);
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        let mut peer = Peer::new(id, rtc, now);
        peer.wants = self.tracks.keys().copied().collect();
        peer.drain(now, &mut self.transmits, &mut self.work);
        self.peers.insert(id, peer);
        self.run_work();
        Ok(())
    }

    /// The peer's offer (what it sends, and the m-lines the router offered
    /// it earlier). Returns the answer to deliver to it *before* any event
    /// polled afterwards: the router may follow up with its own offer.
    ///
    /// An offer that would send without a forwarded codec is refused before
    /// anything changes. An offer str0m refuses changes nothing either, except
    /// that it invalidates a router offer still outstanding (str0m rolls it
    /// back); the router then offers again.
    pub fn accept_offer(&mut self, id: PeerId, offer: SdpOffer) -> Result<SdpAnswer, MediaError> {
        let now = self.now_or_err(id)?;
        let peer = self.peers.get_mut(&id).ok_or(MediaError::UnknownPeer(id))?;
        let unusable = codecs::unusable_send_lines(&offer.to_sdp_string());
        if !unusable.is_empty() {
            return Err(MediaError::NoUsableCodec {
                peer: id,
                mids: unusable,
            });
        }
        // Whatever we offered and was not answered is rolled back by str0m:
        // those tracks go back on the wish list.
        if let Some(pending) = peer.pending.take() {
            tracing::debug!(peer = %id, "peer offer supersedes the router's outstanding offer");
            peer.wants
                .extend(pending.adds.into_iter().map(|(track, _)| track));
        }
        let result = peer.rtc.sdp_api().accept_offer(offer);
        peer.drain(now, &mut self.transmits, &mut self.work);
        let answer = match result {
            Ok(answer) => answer,
            Err(source) => {
                self.run_work();
                self.negotiate(id);
                return Err(MediaError::Refused { peer: id, source });
            }
        };
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.negotiated = true;
        }
        self.run_work();
        self.negotiate(id);
        Ok(answer)
    }

    /// The peer's answer to the router's last [`Event::Offer`] for it.
    pub fn accept_answer(&mut self, id: PeerId, answer: SdpAnswer) -> Result<(), MediaError> {
        let now = self.now_or_err(id)?;
        let peer = self.peers.get_mut(&id).ok_or(MediaError::UnknownPeer(id))?;
        let pending = peer.pending.take().ok_or(MediaError::NoPendingOffer(id))?;
        let result = peer.rtc.sdp_api().accept_answer(pending.offer, answer);
        peer.drain(now, &mut self.transmits, &mut self.work);
        if let Err(source) = result {
            // Nothing was applied: offer the same tracks again.
            peer.wants
                .extend(pending.adds.into_iter().map(|(track, _)| track));
            self.run_work();
            self.negotiate(id);
            return Err(MediaError::Refused { peer: id, source });
        }
        let mut keyframes = Vec::new();
        let mut simulcast = false;
        for (track_id, mid) in pending.adds {
            let live = match self.tracks.get_mut(&track_id) {
                Some(track) if peer.subscribe(track_id, track.kind, mid) => {
                    track.subscribers.push((id, mid));
                    if track.is_simulcast() {
                        // The layer choice below asks for its key frame.
                        simulcast = true;
                    } else if track.kind == MediaKind::Video {
                        keyframes.push(track_id);
                    }
                    true
                }
                _ => false,
            };
            if !live {
                // The track went away while the offer was out.
                peer.stops.push(mid);
            }
        }
        self.run_work();
        // A new subscriber can show nothing before the next keyframe.
        for track in keyframes {
            self.request_keyframe(track, 0, now);
        }
        if simulcast {
            self.reselect_peer(id, now);
        }
        self.negotiate(id);
        Ok(())
    }

    /// Closes a peer's session (RTCP BYE and DTLS close_notify are queued)
    /// and stops its tracks for everyone.
    pub fn remove_peer(&mut self, id: PeerId) -> Result<(), MediaError> {
        let now = self.now_or_err(id)?;
        let peer = self.peers.get_mut(&id).ok_or(MediaError::UnknownPeer(id))?;
        if let Err(error) = peer.rtc.close() {
            tracing::debug!(peer = %id, %error, "closing the WebRTC session");
        }
        peer.drain(now, &mut self.transmits, &mut self.work);
        self.drop_peer(id);
        self.run_work();
        Ok(())
    }

    /// A datagram arrived on the driver's socket: `source` is the remote
    /// address, `destination` the local candidate address it came in on.
    /// Anything no peer takes is dropped and counted, never an error.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.tick(now);
        self.stats.datagrams_in += 1;
        let Some(input) = udp_input(now, source, destination, data) else {
            self.stats.garbage += 1;
            return;
        };
        let cached = self
            .by_source
            .get(&source)
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
        let target = cached.or_else(|| {
            self.peers
                .iter()
                .find(|(_, p)| p.rtc.accepts(&input))
                .map(|(id, _)| *id)
        });
        let Some(id) = target else {
            self.stats.unknown_source += 1;
            return;
        };
        if cached.is_none() {
            if self.by_source.len() >= MAX_SOURCE_CACHE {
                self.by_source.clear();
            }
            self.by_source.insert(source, id);
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.stats.datagrams_in += 1;
        peer.stats.bytes_in += data.len() as u64;
        if let Err(error) = peer.rtc.handle_input(input) {
            peer.stats.rtc_errors += 1;
            tracing::debug!(peer = %id, %error, "datagram refused");
        }
        peer.drain(now, &mut self.transmits, &mut self.work);
        self.run_work();
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

    /// Whether a datagram belongs to one of this router's peers (its ICE
    /// credentials or its address), without handling it. A driver with one
    /// router per meeting on a shared socket uses it to steer new sources.
    pub fn accepts(
        &self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        udp_input(now, source, destination, data)
            .is_some_and(|input| self.peers.values().any(|p| p.rtc.accepts(&input)))
    }

    /// The m-lines `id` publishes on.
    pub fn published(&self, id: PeerId) -> Vec<Mid> {
        self.peers
            .get(&id)
            .map(|p| p.published.clone())
            .unwrap_or_default()
    }

    /// Starts or stops forwarding the track `id` publishes on `mid`. Turning
    /// a video track on asks its publisher for a key frame, so subscribers see
    /// a picture at once.
    pub fn set_forwarding(&mut self, id: PeerId, mid: Mid, on: bool) {
        let track_id = TrackId { publisher: id, mid };
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        let was = std::mem::replace(&mut track.forwarding, on);
        if !on && track.kind == MediaKind::Audio {
            // A muted member is nobody's active speaker.
            self.speakers.remove(id);
        }
        if on
            && !was
            && track.kind == MediaKind::Video
            && let Some(now) = self.now
        {
            for layer in self.wanted_layers(track_id) {
                self.request_keyframe(track_id, layer, now);
            }
        }
    }

    /// `subscriber` shows the video `publisher` sends on `publisher_mid` at
    /// `width`×`height` pixels (0×0: not shown). Picks its simulcast layer
    /// again at once; a track without simulcast is not affected.
    pub fn set_view_size(
        &mut self,
        subscriber: PeerId,
        publisher: PeerId,
        publisher_mid: Mid,
        width: u32,
        height: u32,
    ) {
        let track = TrackId {
            publisher,
            mid: publisher_mid,
        };
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let mut changed = false;
        for out in peer.outgoing.values_mut().filter(|o| o.track == track) {
            changed |= out.view != Some((width, height));
            out.view = Some((width, height));
        }
        if changed && let Some(now) = self.now {
            self.reselect_peer(subscriber, now);
        }
    }

    /// The simulcast layer `subscriber` receives on its m-line `mid` now:
    /// `Some(None)` for a track without simulcast, `None` if nothing is
    /// forwarded on it yet.
    pub fn forwarded_layer(&self, subscriber: PeerId, mid: Mid) -> Option<Option<Rid>> {
        let out = self.peers.get(&subscriber)?.outgoing.get(&mid)?;
        let track = self.tracks.get(&out.track)?;
        if track.is_simulcast() {
            out.current.map(Some)
        } else {
            Some(None)
        }
    }

    /// `id`'s latest egress bandwidth estimate (TWCC), bits per second.
    pub fn bandwidth_estimate(&self, id: PeerId) -> Option<u64> {
        self.peers.get(&id)?.estimate
    }

    /// The active speaker, if anyone has spoken yet.
    pub fn active_speaker(&self) -> Option<PeerId> {
        self.speakers.current()
    }

    /// Asks `id` for a key frame of every video track it publishes (throttled
    /// like any other request). An E2EE sender wants this after an epoch
    /// change, so that receivers get a picture under the new key at once.
    pub fn request_key_frames(&mut self, id: PeerId) {
        let Some(now) = self.now else { return };
        let layers: Vec<(TrackId, usize)> = self
            .tracks
            .iter()
            .filter(|(t, track)| t.publisher == id && track.kind == MediaKind::Video)
            .flat_map(|(t, track)| (0..track.layers.len()).map(|layer| (*t, layer)))
            .collect();
        for (track, layer) in layers {
            self.request_keyframe(track, layer, now);
        }
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

    fn tick(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
    }

    /// The current time for calls that carry none; a peer can only exist
    /// after `add_peer` gave one.
    fn now_or_err(&self, id: PeerId) -> Result<Instant, MediaError> {
        self.now.ok_or(MediaError::UnknownPeer(id))
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            tracing::warn!("event queue full; dropping the oldest event");
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Acts on peer outputs until none are left. Acting can drain other
    /// peers, which queues more.
    fn run_work(&mut self) {
        let Some(now) = self.now else {
            return;
        };
        while let Some((id, output)) = self.work.pop_front() {
            match output {
                PeerOutput::Rtp { mid, rid, packet } => self.fan_out(id, mid, rid, &packet, now),
                PeerOutput::MediaAdded {
                    mid,
                    kind,
                    direction,
                } => {
                    // A line without a common codec is disabled: nothing
                    // would ever arrive on it.
                    let usable = self
                        .peers
                        .get(&id)
                        .and_then(|p| p.rtc.media(mid))
                        .is_some_and(|m| !m.disabled());
                    if direction.is_receiving() && usable {
                        self.publish(TrackId { publisher: id, mid }, kind);
                    }
                }
                PeerOutput::MediaChanged { mid, direction } => {
                    let track = TrackId { publisher: id, mid };
                    let published = self.tracks.contains_key(&track);
                    if published && !direction.is_receiving() {
                        self.unpublish(track);
                    } else if !published && direction.is_receiving() {
                        let kind = self
                            .peers
                            .get(&id)
                            .and_then(|p| p.rtc.media(mid))
                            .map(|m| m.kind());
                        if let Some(kind) = kind {
                            self.publish(track, kind);
                        }
                    }
                }
                PeerOutput::KeyframeRequest { mid } => {
                    let Some(peer) = self.peers.get_mut(&id) else {
                        continue;
                    };
                    peer.stats.keyframe_requests_in += 1;
                    let Some(out) = peer.outgoing.get(&mid) else {
                        continue;
                    };
                    // The layer the subscriber decodes, or is about to.
                    let (track_id, rid) = (out.track, out.current.or(out.target));
                    let layer = self.tracks.get(&track_id).and_then(|t| {
                        if t.is_simulcast() {
                            rid.and_then(|r| t.layer_index(Some(r)))
                        } else {
                            Some(0)
                        }
                    });
                    if let Some(layer) = layer {
                        self.request_keyframe(track_id, layer, now);
                    }
                }
                PeerOutput::Connected => {
                    tracing::info!(peer = %id, "media connected");
                    self.push_event(Event::Connected { peer: id });
                }
                PeerOutput::Disconnected => {
                    tracing::info!(peer = %id, "media disconnected");
                    self.push_event(Event::Disconnected { peer: id });
                }
                PeerOutput::Closed => {
                    if self.peers.contains_key(&id) {
                        tracing::info!(peer = %id, "media session closed");
                        self.drop_peer(id);
                        self.push_event(Event::Closed { peer: id });
                    }
                }
            }
        }
    }

    /// Writes one published packet to every subscriber of its track that
    /// receives its layer.
    fn fan_out(
        &mut self,
        publisher: PeerId,
        mid: Mid,
        rid: Option<Rid>,
        packet: &RtpPacket,
        now: Instant,
    ) {
        let track_id = TrackId { publisher, mid };
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&track_id) else {
            peer.stats.rtp_unrouted += 1;
            return;
        };
        peer.stats.rtp_in += 1;
        let layer = match track.layer_index(rid) {
            Some(i) => i,
            // A rid the offer did not list (or a first packet on a track
            // whose rids str0m learns from the packets): a new layer.
            None if track.layers.len() < MAX_LAYERS => {
                track
                    .layers
                    .push(IncomingLayer::new(rid, self.keyframe_interval));
                track.layers.len() - 1
            }
            None => {
                peer.stats.rtp_unrouted += 1;
                return;
            }
        };
        let pt = packet.header.payload_type;
        let Some(params) = peer.rtc.codec_config().find(|p| p.pt() == pt).copied() else {
            peer.stats.rtp_unrouted += 1;
            return;
        };
        let incoming = &mut track.layers[layer];
        incoming.meter.on_packet(now, packet.payload.len());
        let keyframe_start = if params.spec().codec == Codec::Vp8 {
            let info = crate::vp8::parse(&packet.payload);
            if let Some((w, h)) = info.size {
                incoming.size = Some((u32::from(w), u32::from(h)));
            }
            info.keyframe_start
        } else {
            false
        };
        if !track.forwarding {
            peer.stats.rtp_gated += 1;
            return;
        }
        if track.kind == MediaKind::Audio
            && let Some(level) = packet.header.ext_vals.audio_level
        {
            self.speakers.on_level(publisher, level, now);
        }
        let simulcast = track.is_simulcast();
        let mut received = false;
        for &(sub_id, sub_mid) in &track.subscribers {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if simulcast {
                let Some(out) = sub.outgoing.get_mut(&sub_mid) else {
                    continue;
                };
                if out.current != rid {
                    // Switch only where the decoder can start over: at a key
                    // frame of the layer chosen for this subscriber.
                    if !(keyframe_start && out.target.is_some() && out.target == rid) {
                        continue;
                    }
                    tracing::debug!(
                        subscriber = %sub_id, publisher = %publisher, %mid,
                        from = ?out.current, to = ?rid, "simulcast layer switch"
                    );
                    out.current = rid;
                    sub.stats.layer_switches += 1;
                }
            }
            received = true;
            if sub.forward(sub_mid, &params, packet) {
                sub.stats.rtp_forwarded += 1;
                sub.wake(now);
            } else {
                sub.stats.rtp_dropped += 1;
            }
        }
        if !received && let Some(peer) = self.peers.get_mut(&publisher) {
            peer.stats.rtp_unreceived += 1;
        }
        if track.kind == MediaKind::Audio {
            self.poll_speaker(now);
        }
    }

    /// Announces a new active speaker, if the detector names one.
    fn poll_speaker(&mut self, now: Instant) {
        if self
            .speaker_polled
            .is_some_and(|t| now.saturating_duration_since(t) < SPEAKER_POLL)
        {
            return;
        }
        self.speaker_polled = Some(now);
        if let Some(peer) = self.speakers.poll(now) {
            tracing::debug!(%peer, "active speaker");
            self.stats.speaker_changes += 1;
            self.push_event(Event::ActiveSpeaker { peer });
        }
    }

    /// The layers of a track some subscriber receives or waits for: the
    /// only ones worth a key frame.
    fn wanted_layers(&self, track_id: TrackId) -> Vec<usize> {
        let Some(track) = self.tracks.get(&track_id) else {
            return Vec::new();
        };
        if !track.is_simulcast() {
            return (0..track.layers.len()).collect();
        }
        let mut wanted: Vec<usize> = track
            .subscribers
            .iter()
            .filter_map(|(sub, mid)| self.peers.get(sub)?.outgoing.get(mid))
            .flat_map(|o| [o.current, o.target])
            .flatten()
            .filter_map(|rid| track.layer_index(Some(rid)))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Chooses every subscriber's simulcast layers again.
    fn reselect(&mut self, now: Instant) {
        self.next_reselect = None;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.reselect_peer(id, now);
        }
        if self.tracks.values().any(|t| t.is_simulcast()) {
            self.next_reselect = Some(now + RESELECT_INTERVAL);
        }
    }

    /// Chooses `id`'s simulcast layers from its view sizes and its share of
    /// its bandwidth estimate; asks for the key frames a switch waits for,
    /// and tells its bandwidth estimator what it would like to send.
    fn reselect_peer(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // What the subscriber receives that is not up to us: audio (an
        // allowance each) and video without simulcast (as measured). The
        // rest is shared equally among its simulcast videos.
        let mut fixed = 0u64;
        let mut shared = 0u64;
        for out in peer.outgoing.values() {
            match self.tracks.get(&out.track) {
                Some(t) if t.is_simulcast() => shared += 1,
                Some(t) if t.kind == MediaKind::Audio => fixed += AUDIO_ALLOWANCE,
                Some(t) => fixed += t.bitrate(),
                None => {}
            }
        }
        if shared == 0 {
            return;
        }
        let budget = peer.estimate.map(|e| e.saturating_sub(fixed) / shared);
        let mut keyframes = Vec::new();
        let mut desired = fixed;
        for out in peer.outgoing.values_mut() {
            let Some(track) = self.tracks.get(&out.track) else {
                continue;
            };
            if !track.is_simulcast() {
                continue;
            }
            let order = track.ordered();
            let described = track.describe(&order, now);
            let rid_at = |i: usize| track.layers[order[i]].rid;
            let current = out
                .current
                .and_then(|r| order.iter().position(|&i| track.layers[i].rid == Some(r)));
            // What the view alone would choose is what the estimator should
            // try to make room for, with the headroom a switch up needs: a
            // probe that finds just the layer's rate would not move us.
            if let Some(ideal) = layers::choose(&described, out.view, None, current) {
                let (num, den) = layers::UP_HEADROOM;
                desired += described[ideal].bitrate.unwrap_or(0) * num / den;
            }
            let Some(chosen) = layers::choose(&described, out.view, budget, current) else {
                continue;
            };
            out.target = rid_at(chosen);
            if out.target != out.current {
                keyframes.push((out.track, order[chosen]));
            }
        }
        // Tell the estimator to probe for what the views want; re-set only
        // on a change of more than a tenth, as each call may start a probe.
        if self.initial_bandwidth.is_some() && desired.abs_diff(peer.desired) > peer.desired / 10 {
            peer.desired = desired;
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
            peer.drain(now, &mut self.transmits, &mut self.work);
        }
        for (track, layer) in keyframes {
            self.request_keyframe(track, layer, now);
        }
        self.run_work();
        if self.next_reselect.is_none() {
            self.next_reselect = Some(now + RESELECT_INTERVAL);
        }
    }

    /// A peer's m-line became a track: everyone else is offered it.
    fn publish(&mut self, track: TrackId, kind: MediaKind) {
        if self.tracks.contains_key(&track) {
            return;
        }
        tracing::debug!(publisher = %track.publisher, mid = %track.mid, ?kind, "track published");
        let rids = match self
            .peers
            .get(&track.publisher)
            .and_then(|p| p.rtc.media(track.mid))
            .map(|m| m.rids_rx())
        {
            Some(Rids::Specific(rids)) if !rids.is_empty() => {
                rids.iter().take(MAX_LAYERS).map(|r| Some(*r)).collect()
            }
            _ => vec![None],
        };
        let layers = rids
            .into_iter()
            .map(|rid| IncomingLayer::new(rid, self.keyframe_interval))
            .collect();
        self.tracks.insert(
            track,
            Track {
                kind,
                subscribers: Vec::new(),
                layers,
                forwarding: self.forward_by_default,
            },
        );
        if let Some(p) = self.peers.get_mut(&track.publisher) {
            p.published.push(track.mid);
        }
        self.push_event(Event::Published {
            peer: track.publisher,
            mid: track.mid,
        });
        let others: Vec<PeerId> = self
            .peers
            .keys()
            .copied()
            .filter(|id| *id != track.publisher)
            .collect();
        for id in others {
            if let Some(p) = self.peers.get_mut(&id) {
                p.wants.push(track);
            }
            self.negotiate(id);
        }
    }

    /// A track ended: forwarding stops now, and its subscribers are offered
    /// the m-line's removal.
    fn unpublish(&mut self, track_id: TrackId) {
        let Some(track) = self.tracks.remove(&track_id) else {
            return;
        };
        tracing::debug!(publisher = %track_id.publisher, mid = %track_id.mid, "track ended");
        if track.kind == MediaKind::Audio {
            self.speakers.remove(track_id.publisher);
        }
        if let Some(p) = self.peers.get_mut(&track_id.publisher) {
            p.published.retain(|m| *m != track_id.mid);
        }
        for peer in self.peers.values_mut() {
            peer.wants.retain(|t| *t != track_id);
        }
        for (sub_id, mid) in track.subscribers {
            if let Some(sub) = self.peers.get_mut(&sub_id) {
                sub.outgoing.remove(&mid);
                sub.stops.push(mid);
            }
            self.negotiate(sub_id);
        }
    }

    /// Forgets a peer whose session is over: its tracks end for everyone.
    fn drop_peer(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let published: Vec<Mid> = peer.published.clone();
        let receiving: Vec<(Mid, TrackId)> =
            peer.outgoing.iter().map(|(m, o)| (*m, o.track)).collect();
        for mid in published {
            self.unpublish(TrackId { publisher: id, mid });
        }
        for (mid, track) in receiving {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.subscribers.retain(|s| *s != (id, mid));
            }
        }
        self.peers.remove(&id);
        self.by_source.retain(|_, p| *p != id);
    }

    /// Offers a peer the changes waiting for it, unless an offer is already
    /// out or its transport does not exist yet.
    fn negotiate(&mut self, id: PeerId) {
        let Some(now) = self.now else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.negotiated || peer.pending.is_some() || !peer.rtc.is_alive() {
            return;
        }
        if peer.wants.is_empty() && peer.stops.is_empty() {
            return;
        }
        let wants = std::mem::take(&mut peer.wants);
        let stops = std::mem::take(&mut peer.stops);
        let mut change = peer.rtc.sdp_api();
        for mid in &stops {
            change.stop_media(*mid);
        }
        let mut adds = Vec::new();
        let mut offered = Vec::new();
        for track_id in wants {
            let Some(track) = self.tracks.get(&track_id) else {
                continue;
            };
            let already = adds.iter().any(|(t, _)| *t == track_id)
                || peer.outgoing.values().any(|o| o.track == track_id);
            if already {
                continue;
            }
            // One media stream per publisher, so a browser keeps its audio
            // and video in sync; the track id names the publisher's m-line.
            let stream_id = format!("p{}", track_id.publisher.0);
            let track_name = format!("p{}-{}", track_id.publisher.0, track_id.mid);
            let mid = change.add_media(
                track.kind,
                Direction::SendOnly,
                Some(stream_id),
                Some(track_name),
                None,
            );
            adds.push((track_id, mid));
            offered.push(ForwardedTrack {
                mid,
                publisher: track_id.publisher,
                publisher_mid: track_id.mid,
                kind: track.kind,
            });
        }
        let applied = change.apply();
        peer.drain(now, &mut self.transmits, &mut self.work);
        let Some((offer, pending)) = applied else {
            return;
        };
        peer.pending = Some(Pending {
            offer: pending,
            adds,
        });
        let mut tracks = self.forwarded_to(id);
        tracks.extend(offered);
        self.push_event(Event::Offer {
            peer: id,
            offer,
            tracks,
        });
    }

    /// A subscriber wants a keyframe of a track's `layer`: ask its
    /// publisher, throttled per layer.
    fn request_keyframe(&mut self, track_id: TrackId, layer: usize, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        let Some(incoming) = track.layers.get_mut(layer) else {
            return;
        };
        match incoming.keyframes.request(now) {
            Verdict::Send => self.send_pli(track_id, layer, now),
            Verdict::Deferred => self.stats.keyframe_requests_deferred += 1,
        }
    }

    fn send_pli(&mut self, track: TrackId, layer: usize, now: Instant) {
        let Some(rid) = self
            .tracks
            .get(&track)
            .and_then(|t| t.layers.get(layer))
            .map(|l| l.rid)
        else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&track.publisher) else {
            return;
        };
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(track.mid, rid) else {
            // Nothing received on it yet: no SSRC to ask about.
            return;
        };
        // Always PLI: every browser honours it, and a FIR's extra promise
        // (a full decoder refresh) buys nothing when forwarding.
        stream.request_keyframe(KeyframeRequestKind::Pli);
        peer.stats.keyframe_requests_out += 1;
        peer.drain(now, &mut self.transmits, &mut self.work);
        self.run_work();
    }
}

/// A datagram as str0m input; `None` when it is neither STUN, DTLS nor RTP/RTCP.
fn udp_input<'a>(
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: &'a [u8],
) -> Option<Input<'a>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source,
            destination,
            contents,
        },
    ))
}
