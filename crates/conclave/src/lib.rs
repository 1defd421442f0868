//! The Conclave server and its commands.
//!
//! - [`config`]: defaults, TOML file, limits.
//! - [`store`]: SQLite (sqlx, embedded migrations): accounts, sessions, tokens,
//!   meetings, bans.
//! - [`auth`]: argon2id hashing off the async workers; random bearer secrets.
//! - [`cluster`]: cluster mode through Redis: the node registry, meeting
//!   leases with fencing tokens, rate limits shared by the nodes.
//! - [`guard`]: failed join and sign-in attempts per address and per meeting.
//! - [`guest`]: guest identities the server mints and signs (the
//!   `conclave_guest` cookie), limited per network.
//! - [`http`]: the axum router: JSON API, OpenAPI document, the meeting
//!   WebSocket (`http::signaling`), web client.
//! - [`media`]: the media driver: worker threads, each with its UDP socket
//!   and one `conclave-media` router per running meeting; a room opens its
//!   meeting's media and hears its events on their own queue.
//! - [`rooms`]: one task per running meeting, owning its sans-IO core
//!   (`conclave-core`).
//! - [`server`]: start, first-start admin link, graceful shutdown.
//! - [`tls`]: HTTPS from the operator's certificate files, reloaded on SIGHUP.
//! - [`acme`]: HTTPS with a certificate the server gets and renews itself
//!   from an ACME CA (`--domain`).
//! - [`oidc`]: sign-in through OpenID Connect providers (`[[oidc]]`).
//! - [`logging`]: text or JSON log lines (`--log-format`), with the node id
//!   in cluster mode.
//! - [`turn`]: the operator's TURN relays and each member's short-lived
//!   credentials for them.
#![forbid(unsafe_code)]

pub mod acme;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod guard;
pub mod guest;
pub mod http;
pub mod join_policy;
pub mod logging;
pub mod media;
pub mod native_login;
pub mod oidc;
pub mod rooms;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod turn;

pub use config::Config;
pub use server::Server;
