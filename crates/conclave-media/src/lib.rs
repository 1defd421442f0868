//! The media router of Conclave: a selective forwarding unit (SFU) on str0m,
//! sans-IO.
//!
//! Each member has one WebRTC session with the router (ICE-lite, DTLS-SRTP,
//! BUNDLE, rtcp-mux). The router forwards RTP packets between sessions as
//! they are — it never depacketizes, decodes or reads the payload past what
//! str0m needs for the RTP header, which suits end-to-end encrypted media.
//! Like str0m and quinn-proto it does no I/O and reads no clock: a driver
//! owns the UDP socket and the timers and calls in with `now`.
//!
//! Modules, one concern each (private but for `framing`: callers use the
//! types re-exported here):
//!
//! - `router`: [`Router`], the SFU of one meeting. Peers in, datagrams and
//!   signaling events out; fan-out of published packets to subscribers;
//!   renegotiation when tracks come and go; keyframe requests routed to the
//!   publisher; simulcast layers per subscriber. Split into `negotiation`,
//!   `forwarding` and `simulcast`.
//! - `peer`: one member's `str0m::Rtc` and what surrounds it — the tracks it
//!   publishes, the streams it receives, its renegotiation state. Draining a
//!   peer turns str0m output into datagrams and work for the router.
//! - `rewrite`: the pure per-subscriber mapping of sequence numbers and
//!   timestamps that keeps a forwarded stream continuous across source
//!   changes (simulcast layer switches, a publisher's new SSRC).
//! - `codecs`: the codecs forwarded (Opus, VP8) and the check that refuses an
//!   offer to send without them.
//! - `keyframe`: the per-layer throttle on PLI/FIR toward a publisher.
//! - `layers`: the pure choice of a simulcast layer per subscriber, from
//!   its view size and bandwidth estimate; layer bitrate measurement.
//! - `speaker`: the pure active-speaker detector over RFC 6464 audio levels.
//! - `lastn`: the pure per-subscriber choice of the N loudest audio sources
//!   (last-N audio), over the same levels.
//! - `vp8`: what the router reads of a VP8 payload (key frame start, size).
//! - `event`: [`Event`], what the router tells the signaling shell (offers
//!   to deliver, peers connected, disconnected or closed).
//! - `transmit`: [`Transmit`], datagrams to send, and their bounded queue.
//! - `stats`: [`RouterStats`] and [`PeerStats`], counters per router and per
//!   peer; every drop is counted.
//! - `error`: [`MediaError`], for calls from the shell. Network input never
//!   errors and never panics: it is dropped and counted.
//! - `fastpath`: with [`RouterConfig::fast_path`], forwarded media sealed
//!   and queued per subscriber outside str0m's send queue; NACKs answered
//!   from its own history.
//! - `bwe`: the fast path's own egress estimate (delay and loss, GCC
//!   style) from the subscriber's TWCC feedback, sans-IO.
//! - [`keyexport`]: the SRTP keys of a session, copied out of str0m's DTLS
//!   handshake by a wrapping DTLS provider (public, like `srtp`: the fast
//!   forwarding path of issue 16 seals outside str0m).
//! - [`srtp`]: sealing of forwarded RTP outside str0m into a caller's
//!   buffer, and which SSRCs it may seal.
//! - [`framing`]: RFC 4571 framing, for a driver's ICE-TCP connections
//!   (public: the driver does that I/O, the fuzz target checks it).
//!
//! The driver's loop, after every call into the router: drain
//! [`Router::poll_transmit`] to the socket, [`Router::poll_event`] to
//! signaling, then wait for a datagram or [`Router::poll_timeout`].
#![forbid(unsafe_code)]

mod bwe;
mod codecs;
mod error;
mod event;
mod fastpath;
pub mod framing;
pub mod keyexport;
mod keyframe;
mod lastn;
mod layer_steps;
mod layers;
pub mod link;
mod pacer;
mod peer;
mod playout;
mod red;
pub mod relay;
pub mod relay_wire;
mod rewrite;
mod router;
mod speaker;
pub mod srtp;
mod stats;
mod transmit;
mod video_pause;
mod vp8;

pub use error::MediaError;
pub use event::{Event, ForwardedTrack};
pub use fastpath::MAX_RESEND_RATIO;
pub use lastn::DEFAULT_AUDIO_LAST_N;
pub use peer::{PeerId, TrackId};
pub use router::{
    DEFAULT_INITIAL_BANDWIDTH, DEFAULT_RTX_RATIO_CAP, DYNACAST_HOLD, RESUME_BACKOFF, RESUME_WAIT,
    Router, RouterConfig,
};
pub use stats::{PeerStats, RouterStats};
pub use transmit::Transmit;

/// The str0m types that appear in this crate's API, so callers need no
/// direct dependency on the exact str0m version.
pub use str0m::change::{SdpAnswer, SdpOffer};
pub use str0m::media::{MediaKind, Mid, Rid};
pub use str0m::net::Protocol;
