//! The hand-off between router shards of one meeting (issue 23): what one
//! shard tells another so that a meeting's subscribers can be spread over
//! several routers (media workers today, nodes later).
//!
//! A shard is a [`crate::Router`] with [`crate::RouterConfig::relay`] on. It
//! announces the tracks its own peers publish ([`Relayed::Published`]),
//! passes on every packet of them it forwards, already SRTP-unprotected
//! ([`Relayed::Rtp`]), and sends the publisher's shard the key frame requests
//! of its subscribers ([`Relayed::KeyFrame`]). A shard that receives them
//! holds the track as a *remote* track: offered to its own peers like any
//! other, fed by the hand-off instead of a publisher's session. Each shard
//! answers its own subscribers' NACKs from its own send history and picks
//! each subscriber's simulcast layer itself, so only key frame requests
//! travel back.
//!
//! Everything here is owned data (no str0m session state), so that a
//! driver can move it between threads in batches, or encode it for another
//! node.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Rid};
use str0m::rtp::{RtpHeader, RtpPacket, SeqNo};

use crate::peer::TrackId;

/// A published RTP packet as the router forwards it: what str0m gave us,
/// minus str0m's private bookkeeping, so that it can be moved to another
/// shard.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    /// Extended sequence number (no rollover to track).
    pub seq_no: SeqNo,
    pub header: RtpHeader,
    /// The (end-to-end encrypted) payload, shared, never copied.
    pub payload: Arc<[u8]>,
    /// When it arrived at the publisher's shard.
    pub timestamp: Instant,
}

impl From<RtpPacket> for MediaPacket {
    fn from(p: RtpPacket) -> Self {
        let RtpPacket {
            seq_no,
            header,
            payload,
            timestamp,
            ..
        } = p;
        MediaPacket {
            seq_no,
            header,
            payload,
            timestamp,
        }
    }
}

/// One message of the hand-off between shards of a meeting.
// Nearly every message is a packet: boxing it would cost an allocation per
// packet and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Relayed {
    /// A shard joined the meeting: every other shard announces its tracks
    /// again ([`Relayed::Published`]), so the newcomer's peers are offered
    /// them.
    Hello,
    /// A peer of the sending shard publishes `track`, with these simulcast
    /// layers (one `None` without simulcast).
    Published {
        track: TrackId,
        kind: MediaKind,
        rids: Vec<Option<Rid>>,
    },
    /// The track ended.
    Unpublished { track: TrackId },
    /// A packet of `track` (layer `rid`) the publisher's shard forwards:
    /// it passed the meeting's gate there. `params` is the publisher's codec
    /// for its payload type, so that the receiving shard needs none of the
    /// publisher's session.
    Rtp {
        track: TrackId,
        rid: Option<Rid>,
        params: PayloadParams,
        packet: MediaPacket,
    },
    /// A subscriber of the sending shard wants a key frame of `track`'s
    /// layer `rid`; only the publisher's shard acts on it.
    KeyFrame { track: TrackId, rid: Option<Rid> },
    /// Dynacast across shards: the simulcast layers of `track` the sending
    /// shard's subscribers receive or wait for; `None` while they have
    /// chosen none yet (then nothing may be paused). The publisher's shard
    /// pauses only what no shard wants.
    Wanted {
        track: TrackId,
        layers: Option<Vec<Option<Rid>>>,
    },
}
