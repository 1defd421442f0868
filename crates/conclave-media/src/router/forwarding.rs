//! Datagrams in, the work they cause, and the fan-out of each published
//! packet to the subscribers of its track; key-frame requests (PLI) to
//! publishers; the gate the meeting puts on a track; active speaker and
//! last-N audio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::Input;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};

use super::Router;
use super::simulcast::{IncomingLayer, MAX_LAYERS};
use crate::event::Event;
use crate::fastpath::Forwarded;
use crate::keyframe::Verdict;
use crate::lastn::{Level, SILENT_LEVEL};
use crate::peer::{Outgoing, PeerId, PeerOutput, TrackId};
use crate::relay::MediaPacket;
use crate::stats::PeerStats;
use str0m::format::PayloadParams;

/// How often the active speaker is re-evaluated, at most.
const SPEAKER_POLL: Duration = Duration::from_millis(100);

impl Router {
    /// A datagram arrived on the driver's socket: `source` is the remote
    /// address, `destination` the local candidate address it came in on.
    /// Every peer's session is asked whether it is theirs (ICE credentials,
    /// address); returns the peer that took it, so that a driver can pass
    /// the next datagram from `source` to [`Router::handle_receive_from`].
    /// Anything no peer takes is dropped and counted, never an error.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Option<PeerId> {
        self.handle_receive_on(Protocol::Udp, now, source, destination, data)
    }

    /// [`Router::handle_receive`] for a packet that came over `proto`: one
    /// RFC 4571 frame of an ICE-TCP connection is [`Protocol::Tcp`], with
    /// the connection's remote address as `source`.
    pub fn handle_receive_on(
        &mut self,
        proto: Protocol,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> Option<PeerId> {
        self.tick(now);
        self.stats.datagrams_in += 1;
        let Some(input) = net_input(proto, now, source, destination, data) else {
            self.stats.garbage += 1;
            return None;
        };
        let owner = self
            .peers
            .iter()
            .find(|(_, p)| p.rtc.accepts(&input))
            .map(|(id, _)| *id);
        let Some(id) = owner else {
            self.stats.unknown_source += 1;
            return None;
        };
        self.deliver(id, input, data.len(), now);
        Some(id)
    }

    /// A datagram from an address the driver already knows as `peer`'s
    /// (the router returned it from [`Router::handle_receive`]): only that
    /// peer's session is asked. False when it does not take the datagram
    /// (the peer is gone, or the address is someone else's now): then
    /// nothing was done or counted, and the driver forgets the address and
    /// offers the datagram as from a new source. Garbage from a known
    /// address is dropped and counted here.
    pub fn handle_receive_from(
        &mut self,
        peer: PeerId,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.handle_receive_from_on(Protocol::Udp, peer, now, source, destination, data)
    }

    /// [`Router::handle_receive_from`] for a packet that came over `proto`.
    pub fn handle_receive_from_on(
        &mut self,
        proto: Protocol,
        peer: PeerId,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(input) = net_input(proto, now, source, destination, data) else {
            self.tick(now);
            self.stats.datagrams_in += 1;
            self.stats.garbage += 1;
            return true;
        };
        if !self.peers.get(&peer).is_some_and(|p| p.rtc.accepts(&input)) {
            return false;
        }
        self.tick(now);
        self.stats.datagrams_in += 1;
        self.deliver(peer, input, data.len(), now);
        true
    }

    /// Hands a datagram to the session of the peer that took it.
    fn deliver(&mut self, id: PeerId, input: Input<'_>, len: usize, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.stats.datagrams_in += 1;
        peer.stats.bytes_in += len as u64;
        if let Err(error) = peer.rtc.handle_input(input) {
            peer.stats.rtc_errors += 1;
            tracing::debug!(peer = %id, %error, "datagram refused");
        }
        peer.drain(now, &mut self.transmits, &mut self.work);
        self.run_work();
    }

    /// Whether a datagram belongs to one of this router's peers (its ICE
    /// credentials or its address), without handling it. A driver with one
    /// router per meeting on a shared socket uses it to find the meeting of
    /// a new source, then hands the datagram to [`Router::handle_receive`].
    pub fn accepts(
        &self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.accepts_on(Protocol::Udp, now, source, destination, data)
    }

    /// [`Router::accepts`] for a packet that came over `proto`.
    pub fn accepts_on(
        &self,
        proto: Protocol,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        net_input(proto, now, source, destination, data)
            .is_some_and(|input| self.peers.values().any(|p| p.rtc.accepts(&input)))
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
            // A muted member is nobody's active speaker, and holds nobody's
            // last-N slot.
            self.speakers.remove(id);
            self.audio.remove(id);
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

    /// Acts on peer outputs until none are left. Acting can drain other
    /// peers, which queues more.
    pub(super) fn run_work(&mut self) {
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
    pub(super) fn fan_out(
        &mut self,
        publisher: PeerId,
        mid: Mid,
        rid: Option<Rid>,
        packet: &MediaPacket,
        now: Instant,
    ) {
        let track_id = TrackId { publisher, mid };
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        if !self.tracks.contains_key(&track_id) {
            peer.stats.rtp_unrouted += 1;
            return;
        }
        let pt = packet.header.payload_type;
        // RED is linked to its primary codec's parameters, not a codec of its own.
        let found = peer
            .rtc
            .codec_config()
            .find(|p| p.pt() == pt || p.red() == Some(pt))
            .copied();
        let Some(params) = found else {
            peer.stats.rtp_unrouted += 1;
            return;
        };
        self.fan_out_with(track_id, rid, params, packet, now);
    }

    /// [`Router::fan_out`] once the codec is known: from a local
    /// publisher's session, or with a packet handed over by another shard
    /// (`relay.rs`), whose publisher has no session here.
    pub(super) fn fan_out_with(
        &mut self,
        track_id: TrackId,
        rid: Option<Rid>,
        params: PayloadParams,
        packet: &MediaPacket,
        now: Instant,
    ) {
        let (publisher, mid) = (track_id.publisher, track_id.mid);
        let mut peer = self.peers.get_mut(&publisher).map(|p| &mut p.stats);
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        if !track.red && params.red() == Some(packet.header.payload_type) {
            track.red = true;
        }
        count(&mut peer, |s| s.rtp_in += 1);
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
                count(&mut peer, |s| s.rtp_unrouted += 1);
                return;
            }
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
            count(&mut peer, |s| s.rtp_gated += 1);
            return;
        }
        if let Some(shard) = self.relay.as_mut() {
            shard.hand_off(track_id, rid, params, packet);
        }
        // A layer resumed by dynacast: ask for its key frame as it arrives
        // (and may be forwarded), for the subscriber waiting to switch to
        // it, unless it arrives with one.
        let resumed = std::mem::take(&mut track.layers[layer].resumed);
        let audio = track.kind == MediaKind::Audio;
        let mut silent = false;
        if audio {
            let raw = packet.header.ext_vals.audio_level;
            match Level::read(raw) {
                Level::Present(level) => {
                    if let Some(raw) = raw {
                        self.speakers.on_level(publisher, raw, now);
                    }
                    self.audio.on_level(publisher, level, now);
                    silent = self.drop_silent_audio && level >= SILENT_LEVEL;
                    if silent {
                        count(&mut peer, |s| s.audio_silence_dropped += 1);
                    }
                }
                // A client that never sends levels is not ranked (and so
                // reaches everyone); one that stops on a single packet is
                // sent as its last level decided.
                Level::Missing if !self.audio.is_ranked(publisher) => {}
                Level::Missing | Level::Malformed => {
                    count(&mut peer, |s| s.audio_levels_malformed += 1);
                }
            }
            self.audio.poll(self.peers.keys().copied(), now);
        }
        let simulcast = track.is_simulcast();
        let mut received = false;
        let mut skipped = false;
        // Some subscriber waits to switch to this layer at its next key frame.
        let mut awaited = false;
        for &(sub_id, sub_mid) in &track.subscribers {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if audio && (silent || !self.audio.forwards(publisher, sub_id)) {
                if !silent {
                    sub.stats.audio_unselected += 1;
                }
                sub.skip(sub_mid);
                skipped = true;
                continue;
            }
            if !audio && sub.outgoing.get(&sub_mid).is_some_and(Outgoing::withheld) {
                if sub.outgoing.get(&sub_mid).is_some_and(Outgoing::hidden) {
                    sub.stats.video_unseen += 1;
                } else {
                    sub.stats.video_paused += 1;
                }
                sub.skip(sub_mid);
                skipped = true;
                continue;
            }
            let mut switched = false;
            if simulcast {
                let Some(out) = sub.outgoing.get_mut(&sub_mid) else {
                    continue;
                };
                if out.current != rid {
                    // Switch only where the decoder can start over: at a key
                    // frame of the layer chosen for this subscriber.
                    let target = out.target.is_some() && out.target == rid;
                    if !(keyframe_start && target) {
                        awaited |= target;
                        continue;
                    }
                    tracing::debug!(
                        subscriber = %sub_id, publisher = %publisher, %mid,
                        from = ?out.current, to = ?rid, "simulcast layer switch"
                    );
                    out.current = rid;
                    sub.stats.layer_switches += 1;
                    switched = true;
                }
            }
            received = true;
            // At a switch, the key frame's packets that arrived before its
            // first (`IncomingLayer::early`) follow it.
            let early = if switched {
                track.layers[layer].early_after(packet)
            } else {
                Vec::new()
            };
            for packet in std::iter::once(packet).chain(early) {
                let forwarded = if sub.fast.is_some() {
                    sub.forward_fast(sub_mid, &params, packet, now, &mut self.transmits)
                } else if sub.forward(sub_mid, &params, packet) {
                    Forwarded::ToStr0m
                } else {
                    Forwarded::Dropped
                };
                match forwarded {
                    Forwarded::Sent => sub.stats.rtp_forwarded += 1,
                    Forwarded::ToStr0m => {
                        sub.stats.rtp_forwarded += 1;
                        sub.wake(now);
                    }
                    Forwarded::Anchor => {
                        sub.stats.rtp_forwarded += 1;
                        sub.release(now, &mut self.transmits, &mut self.work);
                    }
                    Forwarded::Dropped => sub.stats.rtp_dropped += 1,
                }
            }
        }
        if simulcast {
            track.layers[layer].keep_early(awaited, packet);
        }
        if !received
            && !skipped
            && let Some(peer) = self.peers.get_mut(&publisher)
        {
            peer.stats.rtp_unreceived += 1;
        }
        if track.kind == MediaKind::Audio {
            self.poll_speaker(now);
        }
        // A browser restarting a layer's encoder starts it with a key
        // frame (Chromium's VP8 simulcast key-frames every layer then):
        // asking again would cost every subscriber of the track another.
        if resumed && !keyframe_start {
            self.request_keyframe(track_id, layer, now);
        }
    }

    /// A subscriber wants a keyframe of a track's `layer`: ask its
    /// publisher, throttled per layer.
    pub(super) fn request_keyframe(&mut self, track_id: TrackId, layer: usize, now: Instant) {
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        let Some(incoming) = track.layers.get_mut(layer) else {
            return;
        };
        // A paused layer, or one resumed that has not arrived yet, has no
        // encoder running to refresh: a request now would be lost, and
        // would hold back (throttle) the one its first packet sends.
        if incoming.paused || incoming.resumed {
            return;
        }
        match incoming.keyframes.request(now) {
            Verdict::Send => self.send_pli(track_id, layer, now),
            Verdict::Deferred => self.stats.keyframe_requests_deferred += 1,
        }
    }

    pub(super) fn send_pli(&mut self, track: TrackId, layer: usize, now: Instant) {
        let Some(rid) = self
            .tracks
            .get(&track)
            .and_then(|t| t.layers.get(layer))
            .map(|l| l.rid)
        else {
            return;
        };
        if let Some(shard) = self.relay.as_mut()
            && shard.is_remote(track)
        {
            // Its publisher is another shard's peer: that shard asks.
            shard.key_frame(track, rid);
            return;
        }
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

    /// Announces a new active speaker, if the detector names one.
    pub(super) fn poll_speaker(&mut self, now: Instant) {
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
}

/// Adds to a local publisher's counters; a remote one (`relay.rs`) is
/// counted by its own shard.
fn count(stats: &mut Option<&mut PeerStats>, add: impl FnOnce(&mut PeerStats)) {
    if let Some(s) = stats.as_deref_mut() {
        add(s);
    }
}

/// A packet as str0m input; `None` when it is neither STUN, DTLS nor RTP/RTCP.
fn net_input<'a>(
    proto: Protocol,
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: &'a [u8],
) -> Option<Input<'a>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto,
            source,
            destination,
            contents,
        },
    ))
}
