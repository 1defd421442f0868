//! The native Conclave client, behind `conclave join` and the load generator.
//!
//! - [`appmsg`]: hands, reactions and polls as the web client sends them.
//! - [`features`]: chat, hands, reactions and polls typed at the client,
//!   and the lines to show for what the group sends.
//! - [`e2ee`]: the MLS member and the SFrame keys it gives the media peer.
//! - [`invite`]: reading invite links.
//! - [`ivf`]: reading and writing VP8 frames in IVF files.
//! - [`names`]: whose word each member's name is (verified by the provider
//!   or the server's), as lines for the person at the client.
//! - [`media`]: the client's WebRTC peer (str0m, the offering side), and the
//!   decrypted frames it hands out.
//! - [`record`]: writing received frames to IVF (VP8) and Ogg (Opus) files.
//! - [`relay`]: media through a TURN relay (reached over UDP, TCP or TLS),
//!   for networks where only the relay is reachable.
//! - [`relay_stream`]: TURN over a TCP or TLS stream, for the relay.
//! - [`session`]: a whole session: join, wait, run media, report.
//! - [`signaling`]: the meeting WebSocket from the client side: join, wait,
//!   exchange messages.
//! - [`tls`]: what the client trusts for the server's HTTPS and `turns:`.
//! - [`tcp`]: ICE-TCP to the server (RFC 4571 frames), for networks that
//!   drop UDP.
//! - `vp8`: what the client reads of a VP8 frame header (key frame, size).
#![forbid(unsafe_code)]

pub mod appmsg;
pub mod e2ee;
pub mod features;
pub mod invite;
pub mod ivf;
pub mod media;
pub mod names;
pub mod record;
pub mod relay;
pub mod relay_stream;
pub mod session;
pub mod signaling;
pub mod tcp;
pub mod tls;
mod vp8;

pub use invite::Invite;
pub use signaling::{Admission, Signaling, SignalingError};
