//! Conclave's end-to-end encryption: one implementation for the native client, the browser
//! (compiled to wasm32) and the server's delivery service.
//!
//! - `member` — [`Member`]: one meeting member's end of the MLS group (RFC 9420): key package,
//!   group creation, Welcome, proposals and commits from the server, chat as MLS application
//!   messages, the security code and the SFrame keys of the current epoch.
//! - `delivery` — [`DeliveryService`]: the server's side. It is the group's only external
//!   sender (it proposes Add and Remove) and validates commits against the public group state.
//!   It holds no secret that opens content.
//! - `frame` — [`FrameCrypto`]: SFrame (RFC 9605) encryption of media frames with the keys of
//!   [`EpochKeys`]. Independent of MLS so a media worker can hold only keys. Sans-IO: time is
//!   passed in as `now_ms`, the crate reads no clock of its own.
//! - `rfc9605` — single SFrame operations with explicit KID and CTR, for conformance tests
//!   (RFC 9605 Appendix C) and tools.
//! - `tree_fill` — whether a member's update commit would fill parents later commits
//!   encrypt to, so the server asks only those newcomers.
//! - `code` — the security code: 60 decimal digits from the MLS epoch authenticator.
//! - `openpubkey` — names a modified server cannot fake: an ID token whose nonce commits to
//!   the member's signature key, carried in its leaf; with feature `id-token`, its check and
//!   `names`' badges for the roster.
//!
//! Ciphersuites: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 and SFrame
//! AES_128_GCM_SHA256_128. Identity in every MLS credential is a BasicCredential whose bytes
//! are the participant id the server assigned, in decimal digits. No entry point panics on
//! malformed input: every one returns [`E2eeError`].
#![forbid(unsafe_code)]

mod code;
mod delivery;
mod error;
mod frame;
mod member;
mod mls;
#[cfg(feature = "id-token")]
mod names;
pub mod openpubkey;
pub mod rfc9605;
mod rules;
pub mod tree_fill;

pub use delivery::{ChatPayload, DeliveryService};
pub use error::E2eeError;
pub use frame::{
    EpochKeys, FrameCrypto, FrameKind, MAX_SEND_LAG_EPOCHS, PREVIOUS_EPOCH_GRACE_MS,
    SEND_SWITCH_DELAY_MS, SendSwitch,
};
pub use member::{Chat, CommitOut, Leaf, Member, Received, RosterCheck};
#[cfg(feature = "id-token")]
pub use names::{AnnouncedName, Badge, NameCheck, NameChecker, NameWarning, check_names};
pub use openpubkey::{BindingError, IdentityBinding};
pub use rules::RulesError;
