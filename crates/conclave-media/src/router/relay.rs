//! The router's side of the hand-off between shards of one meeting
//! (`crate::relay`): tracks announced to other shards and taken from them,
//! packets handed on, key frame requests sent back to the publisher's shard.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Rid};

use super::Router;
use super::simulcast::{RESELECT_INTERVAL, Track};
use crate::peer::{PeerId, TrackId};
use crate::relay::{MediaPacket, Relayed};

/// Hand-off messages queued before the newest are dropped: a driver drains
/// them after every call, so the bound only matters for one that does not.
const MAX_QUEUED_RELAYED: usize = 16 * 1024;

/// What a router that is a shard of a spread meeting keeps for the
/// hand-off.
pub(super) struct Shard {
    out: Vec<Relayed>,
    /// Tracks published on another shard, fed by [`Relayed::Rtp`].
    remote: BTreeSet<TrackId>,
    /// Whether any other shard listens: until then nothing is copied.
    relaying: bool,
    dropped: u64,
    /// What other shards want of this shard's simulcast tracks, by the
    /// driver's name for each shard ([`Relayed::Wanted`]).
    wants: BTreeMap<(TrackId, u32), Option<Vec<Option<Rid>>>>,
    /// What this shard last told the publisher's shard it wants of each
    /// remote track.
    told: BTreeMap<TrackId, Option<Vec<Option<Rid>>>>,
}

/// Dynacast's view of a track in a spread meeting.
pub(super) enum Spread {
    /// Another shard's track: its publisher's shard decides.
    Remote,
    /// This shard's own: other shards' wishes were added; `keep_all` when
    /// one of them has subscribers that chose no layer yet.
    Local { keep_all: bool },
}

impl Shard {
    pub(super) fn new() -> Self {
        Shard {
            out: Vec::new(),
            remote: BTreeSet::new(),
            relaying: false,
            dropped: 0,
            wants: BTreeMap::new(),
            told: BTreeMap::new(),
        }
    }

    pub(super) fn is_remote(&self, track: TrackId) -> bool {
        self.remote.contains(&track)
    }

    fn push(&mut self, item: Relayed) {
        if !self.relaying {
            return;
        }
        if self.out.len() >= MAX_QUEUED_RELAYED {
            self.dropped += 1;
            return;
        }
        self.out.push(item);
    }

    /// A packet of a local track passed the meeting's gate: other shards'
    /// subscribers get it too.
    pub(super) fn hand_off(
        &mut self,
        track: TrackId,
        rid: Option<Rid>,
        params: PayloadParams,
        packet: &MediaPacket,
    ) {
        if self.relaying && !self.is_remote(track) {
            self.push(Relayed::Rtp {
                track,
                rid,
                params,
                packet: packet.clone(),
            });
        }
    }

    /// A subscriber here wants a key frame of a remote track's layer.
    pub(super) fn key_frame(&mut self, track: TrackId, rid: Option<Rid>) {
        self.push(Relayed::KeyFrame { track, rid });
    }
}

impl Router {
    /// Whether other shards of the meeting exist and listen (the driver
    /// knows): while off, nothing is handed on. Turning it on announces
    /// this shard's tracks and asks the others for theirs.
    pub fn set_relaying(&mut self, on: bool) {
        let Some(shard) = self.relay.as_mut() else {
            return;
        };
        let was = std::mem::replace(&mut shard.relaying, on);
        if on && !was {
            shard.push(Relayed::Hello);
            self.announce_all();
        }
    }

    /// The set of other shards changed: announce this shard's tracks
    /// again, so a shard that just joined hears of them whichever of its
    /// `Hello` and this change came first (announcements are idempotent).
    pub fn reannounce(&mut self) {
        if self.relay.as_ref().is_some_and(|s| s.relaying) {
            self.announce_all();
        }
    }

    /// Moves the hand-off messages queued for the other shards into `into`.
    pub fn drain_relay(&mut self, into: &mut Vec<Relayed>) {
        if let Some(shard) = self.relay.as_mut() {
            into.append(&mut shard.out);
        }
    }

    /// Hand-off messages dropped because the driver did not drain them.
    pub fn relay_dropped(&self) -> u64 {
        self.relay.as_ref().map_or(0, |s| s.dropped)
    }

    /// A message from another shard of the meeting; `from` names that shard
    /// (the driver's choice, the same for all its messages).
    pub fn handle_relay(&mut self, from: u32, item: Relayed, now: Instant) {
        if self.relay.is_none() {
            return;
        }
        self.tick(now);
        match item {
            Relayed::Hello => self.announce_all(),
            Relayed::Published { track, kind, rids } => self.publish_remote(track, kind, rids),
            Relayed::Unpublished { track } => {
                if self.relay.as_ref().is_some_and(|s| s.is_remote(track)) {
                    self.unpublish(track);
                }
            }
            Relayed::Rtp {
                track,
                rid,
                params,
                packet,
            } => {
                if self.relay.as_ref().is_some_and(|s| s.is_remote(track)) {
                    self.fan_out_with(track, rid, params, &packet, now);
                    self.run_work();
                }
            }
            Relayed::Wanted { track, layers } => {
                let Some(shard) = self.relay.as_mut() else {
                    return;
                };
                if shard.is_remote(track) || !self.tracks.contains_key(&track) {
                    return;
                }
                shard.wants.insert((track, from), layers);
                // A layer wanted again is resumed now, not at the next tick;
                // one wanted no more is paused by a later tick, which a
                // shard without subscribers of its own must schedule.
                self.dynacast(track, now);
                if self.next_reselect.is_none() {
                    self.next_reselect = Some(now + RESELECT_INTERVAL);
                }
            }
            Relayed::KeyFrame { track, rid } => {
                let local = self.relay.as_ref().is_some_and(|s| !s.is_remote(track));
                let layer = self.tracks.get(&track).and_then(|t| t.layer_index(rid));
                if local && let Some(layer) = layer {
                    self.request_keyframe(track, layer, now);
                }
            }
        }
    }

    /// A local peer published `track`: the other shards offer it too.
    pub(super) fn announce(&mut self, track: TrackId) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let item = Relayed::Published {
            track,
            kind: t.kind,
            rids: t.layers.iter().map(|l| l.rid).collect(),
        };
        if let Some(shard) = self.relay.as_mut()
            && !shard.is_remote(track)
        {
            shard.push(item);
        }
    }

    fn announce_all(&mut self) {
        let ids: Vec<TrackId> = self.tracks.keys().copied().collect();
        for id in ids {
            self.announce(id);
        }
    }

    /// `track` ended here: a local one ends on the other shards too.
    pub(super) fn withdraw(&mut self, track: TrackId) {
        let Some(shard) = self.relay.as_mut() else {
            return;
        };
        shard.wants.retain(|(t, _), _| *t != track);
        shard.told.remove(&track);
        if !shard.remote.remove(&track) {
            shard.push(Relayed::Unpublished { track });
        }
    }

    /// Dynacast in a spread meeting: for another shard's track, tells its
    /// shard (on a change) which layers `wanted` here; for a local one, adds
    /// the layers other shards want to `wanted`.
    pub(super) fn spread_dynacast(&mut self, track: TrackId, wanted: &mut Vec<usize>) -> Spread {
        let local = Spread::Local { keep_all: false };
        let shown = self.shown(track);
        let (Some(shard), Some(t)) = (self.relay.as_mut(), self.tracks.get(&track)) else {
            return local;
        };
        if shard.is_remote(track) {
            let layers = if wanted.is_empty() && shown {
                None
            } else {
                Some(
                    wanted
                        .iter()
                        .filter_map(|&i| t.layers.get(i))
                        .map(|l| l.rid)
                        .collect(),
                )
            };
            if shard.relaying && shard.told.get(&track) != Some(&layers) {
                shard.told.insert(track, layers.clone());
                shard.push(Relayed::Wanted { track, layers });
            }
            return Spread::Remote;
        }
        if !shard.relaying {
            return local;
        }
        let mut keep_all = false;
        for ((_, _), w) in shard.wants.range((track, 0)..=(track, u32::MAX)) {
            match w {
                None => keep_all = true,
                Some(rids) => wanted.extend(rids.iter().filter_map(|r| t.layer_index(*r))),
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        Spread::Local { keep_all }
    }

    /// Another shard's peer publishes `track`: it is offered to every peer
    /// here, and fed by that shard's hand-off. The meeting's gate was
    /// applied there, so it forwards whatever arrives.
    fn publish_remote(&mut self, track: TrackId, kind: MediaKind, rids: Vec<Option<Rid>>) {
        if self.tracks.contains_key(&track) || self.peers.contains_key(&track.publisher) {
            return;
        }
        let Some(shard) = self.relay.as_mut() else {
            return;
        };
        shard.remote.insert(track);
        tracing::debug!(publisher = %track.publisher, mid = %track.mid, ?kind, "remote track");
        self.tracks
            .insert(track, Track::new(kind, rids, self.keyframe_interval, true));
        let others: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in others {
            if let Some(p) = self.peers.get_mut(&id) {
                p.wants.push(track);
            }
            self.negotiate(id);
        }
    }
}
