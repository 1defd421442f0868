//! What the router tells the signaling shell.
//!
//! The router never talks to a member directly: offers and state changes come
//! out as [`Event`]s from [`crate::Router::poll_event`], and the shell decides
//! whom to tell (through the meeting core, which delivers to admitted members
//! only).

use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid, Rid};

use crate::peer::PeerId;

/// A track forwarded to a subscriber: which of its m-lines carries whose media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedTrack {
    /// The subscriber-side m-line.
    pub mid: Mid,
    pub publisher: PeerId,
    /// The m-line the publisher sends it on (its `PublishedTrack` in signaling,
    /// which says camera or screen share).
    pub publisher_mid: Mid,
    pub kind: MediaKind,
}

#[derive(Debug)]
pub enum Event {
    /// Deliver `offer` to `peer` and pass its answer to
    /// [`crate::Router::accept_answer`]. `tracks` lists every track the peer
    /// receives once this offer is applied.
    Offer {
        peer: PeerId,
        offer: SdpOffer,
        tracks: Vec<ForwardedTrack>,
    },
    /// `peer` now publishes a track on `mid`. A shell that gates forwarding
    /// ([`crate::RouterConfig::forward_by_default`] false) decides here
    /// whether it is forwarded ([`crate::Router::set_forwarding`]).
    Published { peer: PeerId, mid: Mid },
    /// `peer` is now the active speaker: the loudest audio source, by the
    /// rules of the active-speaker detector (`speaker.rs`).
    ActiveSpeaker { peer: PeerId },
    /// Dynacast: of the simulcast track `peer` publishes on `mid`, send only
    /// the layers `rids` (empty: none, nobody receives the track). Sent to
    /// the publisher alone, when the set changes; a publisher that ignores
    /// it changes nothing but its own uplink.
    LayersWanted {
        peer: PeerId,
        mid: Mid,
        rids: Vec<Rid>,
    },
    /// Of the video `peer` receives on its m-line `mid`, nothing is
    /// forwarded now (`paused`) because its link is congested and even the
    /// video's smallest layer does not fit beside its others
    /// (`video_pause.rs`), or it is forwarded again. For that subscriber
    /// alone, so it can say why the picture stopped.
    VideoPaused {
        peer: PeerId,
        mid: Mid,
        paused: bool,
    },
    /// ICE and DTLS are up: media can flow to and from `peer`.
    Connected { peer: PeerId },
    /// `peer` stopped answering ICE consent checks. It is kept (it may come
    /// back, e.g. after an ICE restart); remove it when the meeting says so.
    Disconnected { peer: PeerId },
    /// `peer`'s WebRTC session ended (remote close or fatal error). The router
    /// has removed it and stopped its tracks for everyone.
    Closed { peer: PeerId },
}
