//! Simulcast: a track's incoming layers, and the one each subscriber gets.

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{MediaKind, Mid, Rid};

use super::Router;
use crate::keyframe::KeyframeThrottle;
use crate::layers::{self, BitrateMeter, Layer};
use crate::peer::{PeerId, TrackId};

/// How often every subscriber's simulcast layers are chosen again (view
/// sizes apply at once; this catches bandwidth and layers starting or
/// stopping).
pub const RESELECT_INTERVAL: Duration = Duration::from_millis(250);

/// Layers per track, at most (browsers send three; the bound stops a
/// publisher from inventing rids without limit).
pub(super) const MAX_LAYERS: usize = 4;

/// Bandwidth set aside for each audio track a subscriber receives, bits
/// per second, before video is shared out.
const AUDIO_ALLOWANCE: u64 = 64_000;

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
}

/// One incoming RTP stream of a track.
pub(super) struct IncomingLayer {
    pub(super) rid: Option<Rid>,
    pub(super) meter: BitrateMeter,
    /// From the layer's last key frame.
    pub(super) size: Option<(u32, u32)>,
    pub(super) keyframes: KeyframeThrottle,
}

impl IncomingLayer {
    pub(super) fn new(rid: Option<Rid>, interval: Duration) -> Self {
        IncomingLayer {
            rid,
            meter: BitrateMeter::default(),
            size: None,
            keyframes: KeyframeThrottle::new(interval),
        }
    }
}

impl Track {
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
                    active: l.meter.is_active(now),
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
            .flat_map(|o| [o.current, o.target])
            .flatten()
            .filter_map(|rid| track.layer_index(Some(rid)))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Chooses every subscriber's simulcast layers again.
    pub(super) fn reselect(&mut self, now: Instant) {
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
    pub(super) fn reselect_peer(&mut self, id: PeerId, now: Instant) {
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
}
