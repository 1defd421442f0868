//! Errors the router returns to its caller (the signaling shell).
//!
//! Network input never produces an error: bad datagrams are dropped and
//! counted in the statistics. Errors are for calls the shell makes, so it can
//! answer the member with a clear refusal while nothing else changes.

use crate::peer::PeerId;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no peer {0}")]
    UnknownPeer(PeerId),
    #[error("{0} exists already")]
    DuplicatePeer(PeerId),
    #[error("the router needs at least one local candidate address")]
    NoCandidates,
    #[error("the local candidate address {0} is unusable")]
    BadCandidate(std::net::SocketAddr),
    #[error("{0} has no router offer outstanding")]
    NoPendingOffer(PeerId),
    #[error("{peer} offers to send on m-lines {mids:?} without Opus or VP8")]
    NoUsableCodec { peer: PeerId, mids: Vec<String> },
    #[error("the offer or answer of {peer} was refused: {source}")]
    Refused {
        peer: PeerId,
        #[source]
        source: str0m::RtcError,
    },
}
