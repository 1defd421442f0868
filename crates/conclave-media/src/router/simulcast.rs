//! Simulcast: a track's incoming layers, and the one each subscriber gets.

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{MediaKind, Mid, Rid};

use super::Router;
use crate::event::Event;
use crate::keyframe::KeyframeThrottle;
use crate::layer_steps::Choice;
use crate::layers::{self, BitrateMeter, Layer};
use crate::peer::{PeerId, TrackId};
use crate::relay::MediaPacket;
use crate::video_pause::Needs;

/// How often every subscriber's simulcast layers are chosen again (view
/// sizes apply at once; this catches bandwidth and layers starting or
/// stopping).
pub const RESELECT_INTERVAL: Duration = Duration::from_millis(250);

/// Layers per track, at most (browsers send three; the bound stops a
/// publisher from inventing rids without limit).
pub(super) const MAX_LAYERS: usize = 4;

/// A simulcast layer forwarded to nobody is paused (its publisher told to
/// stop sending it) only after it has been unwatched this long: a
/// subscriber whose layer goes down and up again within it (a resized tile,
/// a budget hovering at a layer's rate) does not make the publisher stop
/// and restart an encoder, each restart costing a key frame. A layer
/// needed again is resumed at once.
pub const DYNACAST_HOLD: Duration = Duration::from_secs(2);

/// A layer resumed by dynacast is waited for this long: meanwhile it stays
/// choosable though nothing arrives (the publisher's encoder restarts, a
/// round trip away), so a subscriber that wants it does not fall back and
/// make it unwatched again at once.
pub const RESUME_WAIT: Duration = Duration::from_secs(2);

/// A resumed layer that did not arrive within [`RESUME_WAIT`] (the
/// publisher cannot send it now: its capture is too small, its uplink
/// short) is not chosen again because it is paused for this long, so the
/// publisher is not told to pause and resume it over and over.
pub const RESUME_BACKOFF: Duration = Duration::from_secs(10);

/// Bandwidth set aside for each audio track a subscriber receives, bits
/// per second, before video is shared out.
const AUDIO_ALLOWANCE: u64 = 64_000;

/// Added to an audio track's measured rate (RTP payload) for its packets'
/// headers when weighing what its audio costs a congested subscriber
/// (`video_pause.rs`): 50 packets a second of about 60 bytes of RTP,
/// SRTP, UDP and IP headers.
const AUDIO_HEADERS: u64 = 24_000;

/// What an audio track costs a subscriber on the wire, bits per second: as
/// it comes, and with RED stripped to its primary blocks (`strippable`:
/// the track is RED and the subscriber receives it as RED).
fn audio_cost(track: &Track, strippable: bool, now: Instant) -> (u64, u64) {
    if !track.layers.iter().any(|l| l.meter.is_active(now)) {
        // Muted or gone: nothing arrives to forward.
        return (0, 0);
    }
    let rate = match track.bitrate() {
        0 => AUDIO_ALLOWANCE,
        rate => rate,
    };
    // One redundant block (Chromium's RED distance) repeats the primary.
    let primary = if strippable { rate / 2 } else { rate };
    (rate + AUDIO_HEADERS, primary + AUDIO_HEADERS)
}

/// Packets of a layer kept while a subscriber waits to switch to it
/// ([`IncomingLayer::early`]): a key frame of the middle layer and the
/// frames of a round trip after it.
const EARLY_PACKETS: usize = 64;

/// A published track and who receives it.
pub(super) struct Track {
    pub(super) kind: MediaKind,
    pub(super) subscribers: Vec<(PeerId, Mid)>,
    /// What arrives on the track: one layer without a rid, or one per
    /// simulcast rid in the order the publisher's offer lists them.
    pub(super) layers: Vec<IncomingLayer>,
    /// Off while the publisher may not send this kind (muted by a host,
    /// suspended): its packets are dropped here, not forwarded.
    pub(super) forwarding: bool,
    /// Its audio arrives as RED (RFC 2198): about half of each packet is
    /// the previous one again, which a congested subscriber is spared.
    pub(super) red: bool,
}

/// One incoming RTP stream of a track.
pub(super) struct IncomingLayer {
    pub(super) rid: Option<Rid>,
    pub(super) meter: BitrateMeter,
    /// From the layer's last key frame.
    pub(super) size: Option<(u32, u32)>,
    pub(super) keyframes: KeyframeThrottle,
    /// Dynacast: since when no subscriber receives or waits for it.
    pub(super) unwatched_since: Option<Instant>,
    /// Dynacast: its publisher was told not to send it.
    pub(super) paused: bool,
    /// Resumed and not arrived since: its first packet asks for a key
    /// frame, so the subscriber waiting to switch to it need not wait for
    /// the encoder's own.
    pub(super) resumed: bool,
    /// When it was last resumed.
    pub(super) resumed_at: Option<Instant>,
    /// When a resume last went unanswered ([`RESUME_WAIT`]).
    pub(super) resume_failed_at: Option<Instant>,
    /// Its receive stream sends no NACKs: nobody gets it, so repair would
    /// only spend the publisher's uplink.
    pub(super) nack_suppressed: bool,
    /// Its latest packets, while a subscriber waits to switch to it. The
    /// switch is made at the first packet of a key frame, but with jitter
    /// on the publisher's hop the frame's next packets often overtake it
    /// (and all of them do when it is lost and resent): dropped as not yet
    /// switched, they were never sent to the subscriber, its NACKs for
    /// them went unanswered, and its decoder waited 2-3 s for the next key
    /// frame (the network bench at 3 % loss: a frozen stream after most
    /// switches up). They are sent right after the key frame's first.
    pub(super) early: std::collections::VecDeque<MediaPacket>,
}

impl IncomingLayer {
    pub(super) fn new(rid: Option<Rid>, interval: Duration) -> Self {
        IncomingLayer {
            rid,
            meter: BitrateMeter::default(),
            size: None,
            keyframes: KeyframeThrottle::new(interval),
            unwatched_since: None,
            paused: false,
            resumed: false,
            resumed_at: None,
            resume_failed_at: None,
            nack_suppressed: false,
            early: std::collections::VecDeque::new(),
        }
    }

    /// The packets kept in [`IncomingLayer::early`] that come after
    /// `first` (the first packet of a key frame), in sequence order.
    pub(super) fn early_after(&self, first: &MediaPacket) -> Vec<&MediaPacket> {
        let mut after: Vec<&MediaPacket> = self
            .early
            .iter()
            .filter(|p| p.seq_no > first.seq_no)
            .collect();
        after.sort_by_key(|p| p.seq_no);
        after
    }

    /// Keeps `packet` while a subscriber waits to switch to this layer;
    /// forgets them all once nobody does.
    pub(super) fn keep_early(&mut self, awaited: bool, packet: &MediaPacket) {
        if !awaited {
            self.early.clear();
            return;
        }
        if self.early.len() == EARLY_PACKETS {
            self.early.pop_front();
        }
        self.early.push_back(packet.clone());
    }
}

impl IncomingLayer {
    /// Whether a layer that is not arriving may still be chosen: one we
    /// paused comes back within a round trip when chosen (or nobody could
    /// ever want it again), unless its last resume went unanswered
    /// recently; one just resumed is on its way.
    fn choosable_while_idle(&self, now: Instant) -> bool {
        let since = |t: Instant| now.saturating_duration_since(t);
        let backed_off = self
            .resume_failed_at
            .is_some_and(|t| since(t) < RESUME_BACKOFF);
        let paused = self.paused && !backed_off;
        let arriving_soon = self.resumed && self.resumed_at.is_some_and(|t| since(t) < RESUME_WAIT);
        paused || arriving_soon
    }
}

impl Track {
    /// A track with no subscribers yet, one incoming layer per rid (at
    /// most `MAX_LAYERS`), or one without a rid when none is given.
    pub(super) fn new(
        kind: MediaKind,
        rids: impl IntoIterator<Item = Option<Rid>>,
        keyframe_interval: Duration,
        forwarding: bool,
    ) -> Self {
        let mut layers: Vec<IncomingLayer> = rids
            .into_iter()
            .take(MAX_LAYERS)
            .map(|rid| IncomingLayer::new(rid, keyframe_interval))
            .collect();
        if layers.is_empty() {
            layers.push(IncomingLayer::new(None, keyframe_interval));
        }
        Track {
            kind,
            subscribers: Vec::new(),
            layers,
            forwarding,
            red: false,
        }
    }

    pub(super) fn is_simulcast(&self) -> bool {
        self.layers.iter().any(|l| l.rid.is_some())
    }

    pub(super) fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        self.layers.iter().position(|l| l.rid == rid)
    }

    /// Layer indices smallest first: by the sizes seen once every layer's is
    /// known, by the offer's order until then.
    pub(super) fn ordered(&self) -> Vec<usize> {
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
    pub(super) fn describe(&self, order: &[usize], now: Instant) -> Vec<Layer> {
        order
            .iter()
            .map(|&i| {
                let l = &self.layers[i];
                Layer {
                    size: l.size,
                    bitrate: l.meter.bitrate(),
                    active: l.meter.is_active(now) || l.choosable_while_idle(now),
                }
            })
            .collect()
    }

    /// Measured bitrate of the whole track (all layers), for tracks that are
    /// forwarded as they are.
    pub(super) fn bitrate(&self) -> u64 {
        self.layers.iter().filter_map(|l| l.meter.bitrate()).sum()
    }
}

impl Router {
    /// `subscriber` shows the video `publisher` sends on `publisher_mid` at
    /// `width`×`height` pixels. Picks its simulcast layer again at once. A
    /// 0×0 view (a tile off the page) stops forwarding that video to this
    /// subscriber, simulcast or not; a size again resumes it at a key frame,
    /// asked for now.
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
        let mut shown_again = false;
        for out in peer.outgoing.values_mut().filter(|o| o.track == track) {
            changed |= out.view != Some((width, height));
            shown_again |= out.hidden();
            out.view = Some((width, height));
            if out.hidden() {
                // Shown again, it starts over at a key frame of its layer.
                out.current = None;
                out.target = None;
            }
        }
        shown_again &= width > 0 && height > 0;
        let Some(now) = self.now else {
            return;
        };
        if changed {
            self.reselect_peer(subscriber, now);
        }
        // A simulcast track's key frame is asked for by the switch to its
        // chosen layer; one without simulcast has only the one layer.
        if shown_again && self.tracks.get(&track).is_some_and(|t| !t.is_simulcast()) {
            self.request_keyframe(track, 0, now);
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

    /// The layers of a track some subscriber receives or waits for: the
    /// only ones worth a key frame.
    pub(super) fn wanted_layers(&self, track_id: TrackId) -> Vec<usize> {
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
            .filter(|o| !o.withheld())
            .flat_map(|o| [o.current, o.target])
            .flatten()
            .filter_map(|rid| track.layer_index(Some(rid)))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Whether some subscriber of `track_id` shows it: one that hides it (a
    /// 0×0 view, off its page) or has it paused for congestion wants no
    /// layer of it, chosen yet or not.
    pub(super) fn shown(&self, track_id: TrackId) -> bool {
        self.tracks.get(&track_id).is_some_and(|t| {
            t.subscribers.iter().any(|(sub, mid)| {
                self.peers
                    .get(sub)
                    .and_then(|p| p.outgoing.get(mid))
                    .is_none_or(|o| !o.withheld())
            })
        })
    }

    /// The simulcast layers of `track_id` its publisher should send now,
    /// by the router's dynacast decision: `None` for a track without
    /// simulcast.
    pub fn layers_sent(&self, publisher: PeerId, mid: Mid) -> Option<Vec<Rid>> {
        let track = self.tracks.get(&TrackId { publisher, mid })?;
        if !track.is_simulcast() {
            return None;
        }
        Some(
            track
                .layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.rid)
                .collect(),
        )
    }

    /// Dynacast for every simulcast track.
    pub(super) fn dynacast_all(&mut self, now: Instant) {
        let ids: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.is_simulcast())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.dynacast(id, now);
        }
    }

    /// Decides which of a simulcast track's layers its publisher should
    /// send: those some subscriber receives or waits for, those unwatched
    /// for less than [`DYNACAST_HOLD`], and the smallest while the track
    /// is shown. On a change, tells the publisher
    /// ([`Event::LayersWanted`]). While the track has
    /// subscribers, something is always sent: with no layer chosen yet
    /// (none arriving), nothing is paused; when every subscriber hides the
    /// track (0×0 views), every layer is paused after the hold. Layers
    /// nobody receives get no NACKs from the router, at once.
    pub(super) fn dynacast(&mut self, track_id: TrackId, now: Instant) {
        let mut wanted = self.wanted_layers(track_id);
        let shown = self.shown(track_id);
        // A spread meeting (`relay.rs`): another shard's track is its
        // publisher's shard's to decide; a local one also keeps what other
        // shards want.
        let others_keep_all = match self.spread_dynacast(track_id, &mut wanted) {
            super::relay::Spread::Remote => return,
            super::relay::Spread::Local { keep_all } => keep_all,
        };
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        if !track.is_simulcast() {
            return;
        }
        let keep_all = others_keep_all || (wanted.is_empty() && shown);
        // The smallest layer is kept while anyone shows the track: it is
        // where a subscriber steps down to when its link falters, and
        // Chromium restarts its encoder on every change of active layers,
        // a key frame on every layer for every subscriber, each pause and
        // each resume (the network bench at 3 % loss: 7 key frames a
        // minute per stream, as the subscribers stepped between q and h).
        // It costs its publisher little: 100 of its 600 kbit/s there.
        let lowest = shown.then(|| track.ordered().first().copied()).flatten();
        for l in &mut track.layers {
            if l.resumed
                && l.resumed_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= RESUME_WAIT)
                && l.resume_failed_at
                    .is_none_or(|t| t < l.resumed_at.unwrap_or(t))
            {
                tracing::debug!(rid = ?l.rid, "resumed layer did not arrive");
                l.resume_failed_at = Some(now);
            }
        }
        let mut changed = false;
        let mut nacks: Vec<(Option<Rid>, bool)> = Vec::new();
        for (i, l) in track.layers.iter_mut().enumerate() {
            let watched = others_keep_all || wanted.contains(&i);
            if watched || keep_all || lowest == Some(i) {
                l.unwatched_since = None;
                if l.paused {
                    l.paused = false;
                    l.resumed = true;
                    l.resumed_at = Some(now);
                    changed = true;
                }
            } else {
                let since = *l.unwatched_since.get_or_insert(now);
                if !l.paused && now.saturating_duration_since(since) >= DYNACAST_HOLD {
                    l.paused = true;
                    l.resumed = false;
                    changed = true;
                }
            }
            if l.nack_suppressed == watched {
                l.nack_suppressed = !watched;
                nacks.push((l.rid, !watched));
            }
        }
        let rids: Vec<Rid> = track
            .layers
            .iter()
            .filter(|l| !l.paused)
            .filter_map(|l| l.rid)
            .collect();
        if !nacks.is_empty()
            && let Some(peer) = self.peers.get_mut(&track_id.publisher)
        {
            let mut api = peer.rtc.direct_api();
            for (rid, suppress) in nacks {
                // No stream yet (nothing arrived): its flag is set the
                // next time, as the layer's state says it changed.
                if let Some(stream) = api.stream_rx_by_mid(track_id.mid, rid) {
                    stream.suppress_nack(suppress);
                } else if let Some(l) = self
                    .tracks
                    .get_mut(&track_id)
                    .and_then(|t| t.layers.iter_mut().find(|l| l.rid == rid))
                {
                    l.nack_suppressed = !suppress;
                }
            }
        }
        if changed {
            tracing::debug!(publisher = %track_id.publisher, mid = %track_id.mid, ?rids, "dynacast");
            self.stats.dynacast_changes += 1;
            self.push_event(Event::LayersWanted {
                peer: track_id.publisher,
                mid: track_id.mid,
                rids,
            });
        }
    }

    /// Chooses every subscriber's simulcast layers again.
    pub(super) fn reselect(&mut self, now: Instant) {
        self.next_reselect = None;
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.reselect_peer(id, now);
        }
        self.dynacast_all(now);
        if self.tracks.values().any(|t| t.is_simulcast()) {
            self.next_reselect = Some(now + RESELECT_INTERVAL);
        }
    }

    /// Chooses `id`'s simulcast layers from its view sizes and its share of
    /// its bandwidth estimate; asks for the key frames a switch waits for,
    /// and tells its bandwidth estimator what it would like to send.
    pub(super) fn reselect_peer(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // What the subscriber receives that is not up to us: audio (an
        // allowance each) and video without simulcast (as measured). The
        // rest is shared equally among its simulcast videos that are not
        // paused for congestion.
        let mut fixed = 0u64;
        // What its audio costs on the wire, as it comes and stripped of
        // RED, and its other video: what congestion weighs
        // (`video_pause.rs`).
        let (mut audio_whole, mut audio_primary, mut other_video) = (0u64, 0u64, 0u64);
        let receives_red = peer
            .rtc
            .codec_config()
            .find(|p| p.red().is_some())
            .is_some();
        // Its simulcast videos, with their rank (lowest first: paused, not
        // the speaker's, larger view first, mid) and their smallest
        // layer's rate.
        type Rank = (bool, bool, u64, Mid);
        let mut videos: Vec<(Mid, Rank, Option<u64>)> = Vec::new();
        let speaker = self.speakers.current();
        for (&mid, out) in &peer.outgoing {
            match self.tracks.get(&out.track) {
                Some(_) if out.hidden() => {}
                Some(t) if t.is_simulcast() => {
                    let smallest = t
                        .ordered()
                        .first()
                        .and_then(|&i| t.layers[i].meter.bitrate());
                    let area = out.view.map_or(0, |(w, h)| u64::from(w) * u64::from(h));
                    // What is forwarded now first: a new speaker does not
                    // swap a paused video for a forwarded one (each swap a
                    // key frame). Then the active speaker's, the largest.
                    let rank = (
                        out.paused,
                        speaker != Some(out.track.publisher),
                        u64::MAX - area,
                        mid,
                    );
                    videos.push((mid, rank, smallest));
                }
                Some(t) if t.kind == MediaKind::Audio => {
                    fixed += AUDIO_ALLOWANCE;
                    let (whole, primary) = audio_cost(t, t.red && receives_red, now);
                    audio_whole += whole;
                    audio_primary += primary;
                }
                Some(t) => {
                    fixed += t.bitrate();
                    other_video += t.bitrate();
                }
                None => {}
            }
        }
        videos.sort_by_key(|v| v.1);
        let smallest: Vec<Option<u64>> = videos.iter().map(|v| v.2).collect();
        let congestion = if self.hold_back {
            peer.congestion(now)
        } else {
            None
        };
        let decision = peer.video_pause.decide(
            now,
            congestion.map(|(c, _)| c),
            congestion.and_then(|(_, p)| p),
            &Needs {
                audio_whole: audio_whole + other_video,
                audio_primary: audio_primary + other_video,
                smallest: &smallest,
            },
        );
        if peer.strip_red != decision.strip {
            tracing::debug!(subscriber = %id, strip = decision.strip, ?congestion, "RED stripped for congestion");
            peer.strip_red = decision.strip;
        }
        if let Some(fast) = peer.fast.as_mut() {
            fast.bwe.set_proof_wanted(decision.proof_wanted);
        }
        let mut told = Vec::new();
        for (i, (mid, _, _)) in videos.iter().enumerate() {
            let Some(out) = peer.outgoing.get_mut(mid) else {
                continue;
            };
            let pause = i >= decision.forwarded;
            if out.paused != pause {
                told.push(Event::VideoPaused {
                    peer: id,
                    mid: *mid,
                    paused: pause,
                });
                tracing::debug!(
                    subscriber = %id, publisher = %out.track.publisher, %mid,
                    pause, ?congestion, "video paused for congestion"
                );
                out.paused = pause;
                // Resumed, it starts over at a key frame of the layer
                // chosen below, asked for as a switch's.
                out.current = None;
                out.target = None;
            }
        }
        for event in told {
            self.push_event(event);
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let shared = decision.forwarded as u64;
        if shared == 0 {
            return;
        }
        let budget = peer
            .egress_estimate()
            .map(|e| e.saturating_sub(fixed) / shared);
        let mut keyframes = Vec::new();
        let mut desired = fixed;
        for out in peer.outgoing.values_mut() {
            let Some(track) = self.tracks.get(&out.track) else {
                continue;
            };
            if !track.is_simulcast() || out.withheld() {
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
            let ideal = layers::choose(&described, out.view, None, current);
            if let Some(ideal) = ideal {
                let (num, den) = layers::UP_HEADROOM;
                desired += described[ideal].bitrate.unwrap_or(0) * num / den;
            }
            let Some(chosen) = layers::choose(&described, out.view, budget, current) else {
                continue;
            };
            // A change the budget asks for must last (`layer_steps.rs`).
            let target = out
                .target
                .and_then(|r| order.iter().position(|&i| track.layers[i].rid == Some(r)));
            let severe = match (target, budget) {
                (Some(t), Some(b)) => described[t].bitrate.is_some_and(|r| b < r / 2),
                _ => false,
            };
            let chosen = out.steps.decide(
                now,
                Choice {
                    target,
                    ideal: ideal.unwrap_or(chosen),
                    chosen,
                    target_active: target.is_some_and(|t| described[t].active),
                    severe,
                },
            );
            // Each choice and the rates it was made from, at every
            // reselection (RUST_LOG=conclave_media::layer_trace=trace): what
            // told why the network bench's capped subscriber got what it got.
            tracing::trace!(
                target: "conclave_media::layer_trace",
                peer = %id,
                publisher = %out.track.publisher,
                rates = ?described.iter().map(|l| l.bitrate).collect::<Vec<_>>(),
                ?current,
                ?target,
                chosen,
                severe,
                "choice"
            );
            out.target = rid_at(chosen);
            if out.target != out.current {
                keyframes.push((out.track, order[chosen]));
            }
        }
        // The estimate's parts beside the budget it gave.
        if tracing::enabled!(target: "conclave_media::layer_trace", tracing::Level::TRACE)
            && let Some(fast) = peer.fast.as_ref()
        {
            let (delay, loss, lost, acked) = fast.bwe.parts();
            let layers: Vec<_> = peer
                .outgoing
                .values()
                .filter_map(|o| Some((o.current?, o.target?)))
                .collect();
            tracing::trace!(
                target: "conclave_media::layer_trace",
                peer = %id,
                ?budget,
                delay,
                loss,
                lost,
                ?acked,
                desired,
                ?layers,
                ?congestion,
                strip = decision.strip,
                forwarded = decision.forwarded,
                "reselect"
            );
        }
        if let Some(fast) = peer.fast.as_mut() {
            fast.bwe.set_desired(desired);
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
        // A layer just chosen is resumed now, not at the next tick.
        self.dynacast_all(now);
        self.run_work();
        if self.next_reselect.is_none() {
            self.next_reselect = Some(now + RESELECT_INTERVAL);
        }
    }
}
