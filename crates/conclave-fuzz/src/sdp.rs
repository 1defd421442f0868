//! The SDP of a `media_offer` or `media_answer`, read as the media driver reads it
//! (`SdpOffer::from_sdp_string`, `SdpAnswer::from_sdp_string`) and, when it parses, offered to
//! a router with a fresh peer ([`Router::accept_offer`]).
//!
//! Checked: nothing panics; the router's answer to an offer it took, and an offer as str0m
//! writes it back, both parse again (what the server sends is something it could read).

use std::net::SocketAddr;
use std::time::Instant;

use conclave_media::{PeerId, Router, RouterConfig};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::{Candidate, Rtc};

fn router_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10000))
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = SdpAnswer::from_sdp_string(text);
    let Ok(offer) = SdpOffer::from_sdp_string(text) else {
        return;
    };
    let written = offer.to_sdp_string();
    assert!(
        SdpOffer::from_sdp_string(&written).is_ok(),
        "an offer str0m wrote does not parse: {written:?}"
    );
    // A real instant only as the start of the router's clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let Ok(mut router) = Router::new(RouterConfig::new(router_addr())) else {
        return;
    };
    if router.add_peer(PeerId(1), now).is_err() {
        return;
    }
    if let Ok(answer) = router.accept_offer(PeerId(1), offer) {
        let text = answer.to_sdp_string();
        assert!(
            SdpAnswer::from_sdp_string(&text).is_ok(),
            "the router's answer does not parse: {text:?}"
        );
    }
}

/// Offers as str0m clients make them (the native client is one): audio and video to send,
/// receive-only, and VP8 simulcast in three layers as browsers send it.
pub fn seeds() -> Vec<Vec<u8>> {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut seeds = Vec::new();
    type Lines = &'static [(MediaKind, Direction, bool)];
    let shapes: [Lines; 3] = [
        &[
            (MediaKind::Audio, Direction::SendOnly, false),
            (MediaKind::Video, Direction::SendOnly, false),
        ],
        &[(MediaKind::Audio, Direction::RecvOnly, false)],
        &[
            (MediaKind::Audio, Direction::SendOnly, false),
            (MediaKind::Video, Direction::SendOnly, true),
        ],
    ];
    for lines in shapes {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let Ok(candidate) = Candidate::host(SocketAddr::from(([127, 0, 0, 2], 5000)), "udp") else {
            continue;
        };
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        for (kind, dir, simulcast) in lines {
            let layers = simulcast.then(|| {
                let mut s = Simulcast::new();
                for rid in ["h", "m", "l"] {
                    s.send.push(SimulcastLayer::new(rid));
                }
                s
            });
            change.add_media(*kind, *dir, None, None, layers);
        }
        if let Some((offer, _)) = change.apply() {
            seeds.push(offer.to_sdp_string().into_bytes());
        }
    }
    seeds
}
