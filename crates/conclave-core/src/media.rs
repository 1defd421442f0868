//! What the meeting core tells the media router, and what it hears back.
//!
//! The core decides who may send what and to whom the router's answers go; the
//! router (conclave-media) owns the WebRTC state. Everything the router says to
//! a client passes through the core, which delivers only to admitted members:
//! a waiting connection has no seat, so no offer or answer can reach it.

use conclave_proto::{MediaKind, ParticipantId, PublishedTrack, RemoteTrack};

/// Instructions for the media router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// A member's SDP offer, already checked against its permissions.
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    },
    /// A member's answer to a router offer.
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    /// Which of its kinds a member's media may be forwarded now. Sent whenever
    /// that changes (mute, stop video, suspension, permissions); the router
    /// drops packets of kinds that are off.
    Allow {
        participant: ParticipantId,
        audio: bool,
        video: bool,
        screen: bool,
    },
    /// The size `subscriber` shows `publisher`'s `kind` at (simulcast choice).
    ViewSize {
        subscriber: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        width: u32,
        height: u32,
    },
    /// The member changed epoch and wants a key frame of its own video under the
    /// new key: send a PLI for each video track it publishes.
    KeyFrame { participant: ParticipantId },
    /// The member left: close its peer connection, stop its streams everywhere.
    Leave { participant: ParticipantId },
}

/// Reports from the media router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<RemoteTrack>,
    },
    /// The member's offer or answer could not be used; nothing changed.
    Refused {
        participant: ParticipantId,
    },
    ActiveSpeaker {
        participant: ParticipantId,
    },
    /// Dynacast: `participant` should send only the simulcast layers `rids`
    /// of its track on `mid`. For that member alone.
    LayersWanted {
        participant: ParticipantId,
        mid: String,
        rids: Vec<String>,
    },
    /// Of the video `participant` receives on its m-line `mid`, nothing is
    /// forwarded now (`paused`, its link congested) or it is again. For
    /// that member alone.
    VideoPaused {
        participant: ParticipantId,
        mid: String,
        paused: bool,
    },
}
