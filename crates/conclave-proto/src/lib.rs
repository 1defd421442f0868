//! The Conclave signaling protocol, shared by the server, the native client and
//! the browser's wasm module.
//!
//! - [`ids`]: meeting IDs, passcodes and resume tokens — the identifiers people
//!   type or links carry, with their entropy and their forgiving parsers.
//! - [`messages`]: the JSON messages of a meeting's WebSocket and their limits.
//! - [`error`]: the stable error codes clients switch on.
//! - [`breakout`]: breakout rooms' plans, listings and tickets.
//! - [`limits`]: the size caps, derived from the largest meeting.
//!
//! `docs/protocol.md` describes the same protocol for people.
#![forbid(unsafe_code)]

pub mod breakout;
pub mod error;
pub mod ids;
pub mod limits;
pub mod messages;

pub use breakout::{BreakoutRoomInfo, BreakoutRoomPlan, BreakoutTicket};
pub use error::ErrorCode;
pub use ids::{MeetingId, ResumeToken};
pub use limits::{MAX_MESSAGE_BYTES, MAX_MLS_BYTES, MAX_PARTICIPANTS_LIMIT};
pub use messages::*;
