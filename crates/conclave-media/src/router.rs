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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Input, Rtc};

use crate::codecs;
use crate::error::MediaError;
use crate::event::{Event, ForwardedTrack};
use crate::keyframe::{DEFAULT_KEYFRAME_INTERVAL, KeyframeThrottle, Verdict};
use crate::peer::{Peer, PeerId, PeerOutput, Pending, TrackId};
use crate::stats::{PeerStats, RouterStats};
use crate::transmit::{DEFAULT_MAX_QUEUED_TRANSMITS, Transmit, TransmitQueue};

/// Entries in the source-address cache before it is cleared. Each entry is an
/// address a peer's ICE accepted; the bound stops a peer that hops addresses
/// from growing it without limit.
const MAX_SOURCE_CACHE: usize = 64 * 1024;

/// Events queued for the shell before the oldest are dropped. The shell
/// drains them after every call; the bound is for a shell that does not.
const MAX_QUEUED_EVENTS: usize = 4 * 1024;

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
}

impl RouterConfig {
    /// A router reachable at `candidate`, with the default limits.
    pub fn new(candidate: SocketAddr) -> Self {
        RouterConfig {
            candidates: vec![candidate],
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            max_queued_transmits: DEFAULT_MAX_QUEUED_TRANSMITS,
            forward_by_default: true,
        }
    }
}

/// A published track and who receives it.
struct Track {
    kind: MediaKind,
    subscribers: Vec<(PeerId, Mid)>,
    keyframes: KeyframeThrottle,
    /// Off while the publisher may not send this kind (muted by a host,
    /// suspended): its packets are dropped here, not forwarded.
    forwarding: bool,
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
            .set_rtp_mode(true);
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
        for (track_id, mid) in pending.adds {
            let live = match self.tracks.get_mut(&track_id) {
                Some(track) if peer.subscribe(track_id, track.kind, mid) => {
                    track.subscribers.push((id, mid));
                    if track.kind == MediaKind::Video {
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
            self.request_keyframe(track, now);
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

    /// Time passed: runs every peer's timers that are due, and deferred
    /// keyframe requests.
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
            if let Err(error) = peer.rtc.handle_input(Input::Timeout(now)) {
                peer.stats.rtc_errors += 1;
                tracing::debug!(peer = %id, %error, "timeout refused");
            }
            peer.drain(now, &mut self.transmits, &mut self.work);
            self.run_work();
        }
        self.due = due;
        let ready: Vec<TrackId> = self
            .tracks
            .iter_mut()
            .filter_map(|(id, t)| t.keyframes.poll_due(now).then_some(*id))
            .collect();
        for track in ready {
            self.send_pli(track, now);
        }
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
        let keyframes = self.tracks.values().filter_map(|t| t.keyframes.due_at());
        peers.chain(keyframes).min()
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
        if on
            && !was
            && track.kind == MediaKind::Video
            && let Some(now) = self.now
        {
            self.request_keyframe(track_id, now);
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
                PeerOutput::Rtp { mid, packet } => self.fan_out(id, mid, &packet, now),
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
                    if let Some(track) = peer.outgoing.get(&mid).map(|o| o.track) {
                        self.request_keyframe(track, now);
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

    /// Writes one published packet to every subscriber of its track.
    fn fan_out(&mut self, publisher: PeerId, mid: Mid, packet: &RtpPacket, now: Instant) {
        let track_id = TrackId { publisher, mid };
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(track) = self.tracks.get(&track_id) else {
            peer.stats.rtp_unrouted += 1;
            return;
        };
        peer.stats.rtp_in += 1;
        if !track.forwarding {
            peer.stats.rtp_gated += 1;
            return;
        }
        let pt = packet.header.payload_type;
        let Some(params) = peer.rtc.codec_config().find(|p| p.pt() == pt).copied() else {
            peer.stats.rtp_unrouted += 1;
            return;
        };
        for &(sub_id, sub_mid) in &track.subscribers {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if sub.forward(sub_mid, &params, packet) {
                sub.stats.rtp_forwarded += 1;
                sub.drain(now, &mut self.transmits, &mut self.work);
            } else {
                sub.stats.rtp_dropped += 1;
            }
        }
    }

    /// A peer's m-line became a track: everyone else is offered it.
    fn publish(&mut self, track: TrackId, kind: MediaKind) {
        if self.tracks.contains_key(&track) {
            return;
        }
        tracing::debug!(publisher = %track.publisher, mid = %track.mid, ?kind, "track published");
        self.tracks.insert(
            track,
            Track {
                kind,
                subscribers: Vec::new(),
                keyframes: KeyframeThrottle::new(self.keyframe_interval),
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

    /// A subscriber wants a keyframe of `track`: ask its publisher, throttled.
    fn request_keyframe(&mut self, track_id: TrackId, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        match track.keyframes.request(now) {
            Verdict::Send => self.send_pli(track_id, now),
            Verdict::Deferred => self.stats.keyframe_requests_deferred += 1,
        }
    }

    fn send_pli(&mut self, track: TrackId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&track.publisher) else {
            return;
        };
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(track.mid, None) else {
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
