//! The meeting core of Conclave, sans-IO: no sockets, no clocks, no database.
//!
//! - [`meeting`]: one running meeting as a state machine — members and roles,
//!   the waiting room, lock, bans, permissions, suspension, resume after a
//!   dropped socket. Feed it [`Input`]s with the current instant, drain
//!   [`Output`]s with `poll_output()` until it returns `None`, and call it again
//!   with [`Input::Timeout`] at `poll_timeout()`. Its `mod.rs` holds the types
//!   and routes each client message by family to a file per concern:
//!   `join.rs` (joining, the waiting room, resume), `moderation.rs` (who may
//!   act on whom, remove and ban, roles, lock, suspension, permissions),
//!   `media.rs` (what a member may send, offers and answers, router reports),
//!   `leave.rs` (leaving, dropped sockets, timeouts, the end), `delivery.rs`
//!   (the MLS group kept in step, per-seat MLS logs for resumes, chat) and
//!   `broadcast.rs` (who is told what).
//! - [`media`]: the commands the core gives the media router and the reports
//!   it takes back; the router never talks to a client except through the core.
//! - `group`: the meeting's MLS group as its delivery service sees it (who is
//!   in it, which Add and Remove proposals are out, which commit won the epoch).
//! - [`rate`]: the token bucket that stops message floods and the attempt
//!   limiter that stops passcode guessing, both on caller-supplied time.
//! - [`cluster`]: whether this node still owns a meeting (its Redis lease and
//!   fencing token) and which node a new meeting goes to.
//!
//! Every permission rule lives here, never only in a client: the shell passes
//! messages through and carries out what comes back.
#![forbid(unsafe_code)]

pub mod breakout;
pub mod cluster;
mod group;
pub mod media;
pub mod meeting;
pub mod rate;

pub use cluster::{LeaseKeeper, NodeLoad, NodeState, RenewReply, Standing, least_loaded};
pub use group::{COMMIT_TIMEOUT, REFILL_INTERVAL};
pub use media::{MediaCommand, MediaEvent};
pub use meeting::{
    BanKey, BreakoutOutput, ConnId, Identity, Input, LiveIdentity, LiveMember, LiveState,
    LiveWaiter, Meeting, MeetingConfig, Output, RESUME_WINDOW, RoomNote,
};
pub use rate::{AttemptLimiter, AttemptPolicy, FailureOutcome, TokenBucket};
