//! Peers in and out, offers and answers, tracks published and withdrawn,
//! and the router's own offers when the tracks a peer should receive change.

use std::time::Instant;

use str0m::Rtc;
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid, Rids};
use str0m::rtp::Extension;

use super::Router;
use super::simulcast::Track;
use crate::codecs;
use crate::error::MediaError;
use crate::event::{Event, ForwardedTrack};
use crate::fastpath::FastPath;
use crate::keyexport;
use crate::peer::{Peer, PeerId, Pending, TrackId};

impl Router {
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
        let config = codecs::configure(config, self.fast_path && self.playout_delay);
        let (mut rtc, fast) = if self.fast_path {
            // The fast path reads NACKs and TWCC reports for the streams it
            // sends from str0m's raw RTCP events, and seals with the
            // session's exported keys. It numbers str0m's packets too, so
            // str0m's estimator would match the reports against numbers it
            // did not send: the fast path's estimator is the session's only
            // one, and str0m sends without a pacer.
            let config = config.enable_bwe(None).enable_raw_packets(true);
            let (rtc, slot) = keyexport::build_rtc(config, now);
            let fast = FastPath::new(
                slot,
                self.rtx_ratio_cap,
                self.initial_bandwidth,
                self.pacing,
                now,
            );
            (rtc, Some(fast))
        } else {
            (config.build(now), None)
        };
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        let mut peer = Peer::new(id, rtc, now);
        peer.fast = fast;
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
        let twcc = twcc_id_of(&peer.rtc, peer.outgoing.keys().copied());
        if let Some(fast) = peer.fast.as_mut() {
            fast.forget_extension_ids(twcc);
        }
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
        // The m-lines just added send too, once subscribed below.
        let sends = peer
            .outgoing
            .keys()
            .chain(pending.adds.iter().map(|(_, mid)| mid));
        let twcc = twcc_id_of(&peer.rtc, sends.copied());
        if let Some(fast) = peer.fast.as_mut() {
            fast.forget_extension_ids(twcc);
        }
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
                Some(track) if peer.subscribe(track_id, track.kind, mid, self.rtx_ratio_cap) => {
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

    /// A peer's m-line became a track: everyone else is offered it.
    pub(super) fn publish(&mut self, track: TrackId, kind: MediaKind) {
        if self.tracks.contains_key(&track) {
            return;
        }
        tracing::debug!(publisher = %track.publisher, mid = %track.mid, ?kind, "track published");
        let rids: Vec<Option<Rid>> = match self
            .peers
            .get(&track.publisher)
            .and_then(|p| p.rtc.media(track.mid))
            .map(|m| m.rids_rx())
        {
            Some(Rids::Specific(rids)) => rids.iter().map(|r| Some(*r)).collect(),
            _ => Vec::new(),
        };
        let track_state = Track::new(kind, rids, self.keyframe_interval, self.forward_by_default);
        self.tracks.insert(track, track_state);
        if let Some(p) = self.peers.get_mut(&track.publisher) {
            p.published.push(track.mid);
        }
        self.push_event(Event::Published {
            peer: track.publisher,
            mid: track.mid,
        });
        self.announce(track);
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
    pub(super) fn unpublish(&mut self, track_id: TrackId) {
        let Some(track) = self.tracks.remove(&track_id) else {
            return;
        };
        tracing::debug!(publisher = %track_id.publisher, mid = %track_id.mid, "track ended");
        self.withdraw(track_id);
        if track.kind == MediaKind::Audio {
            self.speakers.remove(track_id.publisher);
            self.audio.remove(track_id.publisher);
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
    pub(super) fn drop_peer(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        // A session's counters, once: what bench/network reads to tell
        // repairs refused, answered or never possible from each other.
        tracing::debug!(target: "conclave_media::peer_stats", peer = %id, stats = ?peer.stats, "peer counters at its end");
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
        self.audio.remove_subscriber(id);
    }

    /// Offers a peer the changes waiting for it, unless an offer is already
    /// out or its transport does not exist yet.
    pub(super) fn negotiate(&mut self, id: PeerId) {
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
}

/// The TWCC header extension id negotiated on any of `mids`, the m-lines
/// the router sends a peer on, if one has it. str0m keeps one id per
/// extension for the whole session (locked once the remote's SDP named it;
/// a later SDP moving it is not followed, the extension is left out of that
/// m-line instead), so the first found is the session's; the fast path
/// numbers at it ([`FastPath::forget_extension_ids`]).
fn twcc_id_of(rtc: &Rtc, mids: impl IntoIterator<Item = Mid>) -> Option<u8> {
    mids.into_iter().find_map(|mid| {
        rtc.media(mid)?
            .remote_extmap()
            .id_of(Extension::TransportSequenceNumber)
    })
}
