//! The native Conclave client, behind `conclave join` and the load generator.
//!
//! - [`invite`]: reading invite links.
//! - [`signaling`]: the meeting WebSocket from the client side: join, wait,
//!   exchange messages.
#![forbid(unsafe_code)]

pub mod invite;
pub mod signaling;

pub use invite::Invite;
pub use signaling::{Admission, Signaling, SignalingError};
