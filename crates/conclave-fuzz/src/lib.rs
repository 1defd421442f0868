//! The bodies of Conclave's fuzz targets: one module per parser that faces the network, each
//! with `run(data)`, which feeds bytes to the real entry point and checks its contract (bad
//! input is an error, never a panic; what parses survives a round trip), and `seeds()`,
//! which makes real, valid inputs for the seed corpus.
//!
//! The same bodies run two ways (see `fuzz/README.md`):
//! - on stable, as ordinary tests (`tests/targets.rs`): the committed corpus in `fuzz/corpus/`,
//!   freshly made seeds and a bounded number of deterministic mutations of both;
//! - coverage-guided, under `cargo +nightly fuzz` in `fuzz/`, whose targets are one line each.
//!
//! Targets:
//! - [`signaling`]: one WebSocket text frame as the server reads it (`parse_client_message`) and
//!   as the native client reads the server's (`ServerMessage`), plus the meeting ID, resume
//!   token, passcode and name parsers.
//! - [`meeting`]: scripts of frames from four connections, parsed and fed to the meeting core as
//!   the signaling shell does; checks that a waiting connection only ever gets its own status.
//! - `http_body` (feature `http`): the JSON bodies the HTTP API deserializes, through the same
//!   extractor the handlers use; a rejection must be a 4xx.
//! - [`udp`]: datagrams on the media port — STUN, DTLS, SRTP/SRTCP and garbage — into a router
//!   with a connected peer, from its address and from strangers.
//! - [`media_link`]: datagrams at a node's media link to another node, and any
//!   frame sealed by the real peer, through the frame decoder.
//! - [`tcp_frames`]: bytes on a media worker's ICE-TCP connection, through
//!   the RFC 4571 deframer in reads that end anywhere.
//! - [`sdp`]: a `media_offer`'s SDP, parsed and offered to the router as the media driver does.
//! - [`mls`]: MLS messages at a member: `Member::handle` in a group, `Member::join` outside one.
//! - [`delivery`]: the server's MLS delivery service: key packages, group infos, commits.
//! - [`sframe`]: SFrame frames at `FrameCrypto::decrypt`; encrypt-then-decrypt round trip.
//! - [`corpus`]: the committed seed corpus and the mutations the stable tests add to it.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod delivery;
#[cfg(feature = "http")]
pub mod http_body;
pub mod media_link;
pub mod meeting;
pub mod mls;
pub mod sdp;
pub mod sframe;
pub mod signaling;
pub mod tcp_frames;
pub mod udp;

/// A fuzz target: its name (the directory under `fuzz/corpus/` and the `cargo fuzz` target),
/// its body and its seed maker.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target this build has.
pub fn targets() -> Vec<Target> {
    let mut all = vec![
        Target {
            name: "signaling",
            run: signaling::run,
            seeds: signaling::seeds,
        },
        Target {
            name: "meeting",
            run: meeting::run,
            seeds: meeting::seeds,
        },
        Target {
            name: "udp",
            run: udp::run,
            seeds: udp::seeds,
        },
        Target {
            name: "media_link",
            run: media_link::run,
            seeds: media_link::seeds,
        },
        Target {
            name: "tcp_frames",
            run: tcp_frames::run,
            seeds: tcp_frames::seeds,
        },
        Target {
            name: "sdp",
            run: sdp::run,
            seeds: sdp::seeds,
        },
        Target {
            name: "mls",
            run: mls::run,
            seeds: mls::seeds,
        },
        Target {
            name: "delivery",
            run: delivery::run,
            seeds: delivery::seeds,
        },
        Target {
            name: "sframe",
            run: sframe::run,
            seeds: sframe::seeds,
        },
    ];
    #[cfg(feature = "http")]
    all.push(Target {
        name: "http_body",
        run: http_body::run,
        seeds: http_body::seeds,
    });
    all
}
