//! The server's integration tests, one binary: each module is one family of
//! behaviour, driven over real sockets against a server the test starts.
//! One binary links the server and its ~400 dependencies once instead of once
//! per family. Run one family with `cargo test --test server -- NAME::`.

mod common;

mod accounts;
mod acme;
mod admin_accounts;
mod admin_api;
mod app_relay;
mod backchannel_logout;
mod bad_input;
mod banned_guests;
mod blur_assets;
mod breakout;
mod chat_resume;
mod cluster;
mod cluster_tls;
mod e2ee_assets;
mod e2ee_flow;
mod fast_path;
mod guessing;
mod hardening;
mod ice_tcp;
mod join_policy;
mod joining;
mod log_format;
mod media_flow;
mod meeting_flow;
mod meetings_api;
mod metrics;
mod moderation;
mod native_cli;
mod native_login;
mod oidc_accounts;
mod oidc_tokens;
mod recording;
mod restart;
mod scheduling;
mod signin_audit;
mod simulcast_flow;
mod spread_flow;
mod store;
mod tls;
mod tls_passthrough;
mod turn;
mod view_only;
mod waiting_isolation;
mod web_compression;
mod web_facing;
