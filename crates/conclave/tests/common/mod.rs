//! The harness shared by the integration tests: a server started in-process on
//! a free port with its store in a temporary directory, accounts, an HTTP client
//! with a cookie jar, a WebSocket client that records every frame it gets, and
//! native clients that send real media.
//!
//! Every test starts its own server, so tests run in parallel and the rate
//! limiters of one test never see another's attempts.
#![allow(dead_code)]

use std::time::Duration;

pub mod cluster;
pub mod front;
mod http;
mod native;
pub mod postgres;
pub mod redis;
mod server;
mod ws;

pub use http::{Api, Meeting, header, read};
pub use native::{
    Together, a_second_of_media, ada_and_bob, frames_from_others, native_options, sample,
};
pub use server::TestServer;
pub use ws::{Frame, Ws, WsOpts, join, open_ws};

/// A PEM block (RFC 7468): base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The password of every account the harness creates.
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a test waits for a message that should come. Only a failing test
/// waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);
