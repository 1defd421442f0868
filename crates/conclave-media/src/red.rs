//! Redundant audio (RFC 2198 RED wrapping Opus) for subscribers with and
//! without it.
//!
//! A browser that negotiated RED sends each Opus frame again inside the next
//! packet, so a receiver recovers a lost packet without a round trip. The
//! E2EE transform encrypts each RED block on its own and leaves the RED
//! headers clear (web/red.js), so the router can hand a subscriber that did
//! not negotiate RED (the native client) just the primary block under Opus's
//! payload type: an SFrame ciphertext it decrypts as any other Opus frame.
//! The router never needs a key for this.
//!
//! Opus's own in-band FEC cannot be tuned to the subscribers' loss from
//! here: Chromium's encoder turns it on from the loss fraction in the
//! receiver reports it gets, and str0m (0.25, RTP mode) writes those reports
//! from what the router's own receive stream lost; its public API can neither
//! set that fraction nor send a report of the router's own making. RED covers
//! the subscriber's hop instead, whatever the publisher's uplink reports.

use str0m::Rtc;
use str0m::media::Pt;
use str0m::rtp::RedDecoder;

/// What a subscriber gets of a RED packet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RedForward {
    /// The RED packet as it came, under the subscriber's RED payload type.
    Whole(Pt),
    /// Only the primary block, under the subscriber's Opus payload type.
    Primary(Vec<u8>),
    /// Only the primary block, under the subscriber's Opus payload type,
    /// though it negotiated RED: its link is congested and the
    /// redundancy doubles what its audio costs (`video_pause.rs`).
    Stripped(Vec<u8>),
    /// Not a RED payload the router can take apart: not forwarded.
    Malformed,
}

/// How to forward a RED `payload` to a subscriber whose session maps the
/// publisher's primary codec to `local_pt`; `strip`: its link is too
/// congested for the redundancy.
pub(crate) fn for_subscriber(rtc: &Rtc, local_pt: Pt, payload: &[u8], strip: bool) -> RedForward {
    let red_pt = rtc
        .codec_config()
        .find(|p| p.pt() == local_pt)
        .and_then(|p| p.red());
    match (red_pt, strip) {
        (Some(red_pt), false) => RedForward::Whole(red_pt),
        (Some(_), true) => {
            primary(payload).map_or(RedForward::Malformed, |p| RedForward::Stripped(p.to_vec()))
        }
        (None, _) => {
            primary(payload).map_or(RedForward::Malformed, |p| RedForward::Primary(p.to_vec()))
        }
    }
}

/// The primary (newest, last) block of a RED payload; None if the payload is
/// malformed or its primary block is empty.
pub(crate) fn primary(payload: &[u8]) -> Option<&[u8]> {
    let blocks = RedDecoder::decode(payload).ok()?;
    let last = blocks.last()?;
    (!last.payload.is_empty()).then_some(last.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::{RedEncoder, RedundantBlock};

    #[test]
    fn primary_is_the_last_block() {
        let red = RedEncoder::encode(
            111,
            b"new",
            &[RedundantBlock {
                pt: 111,
                timestamp_offset: 960,
                payload: b"old".to_vec(),
            }],
        );
        assert_eq!(primary(&red), Some(&b"new"[..]));
        // A RED packet with no redundancy: one header byte, then the primary.
        assert_eq!(primary(&[111, 1, 2]), Some(&[1u8, 2][..]));
    }

    #[test]
    fn malformed_red_yields_nothing_and_does_not_panic() {
        for bad in [
            &[][..],
            &[0x80 | 111][..],
            &[0x80 | 111, 0, 0, 9, 111, 1][..],
            &[111][..],
        ] {
            assert_eq!(primary(bad), None);
        }
    }
}
