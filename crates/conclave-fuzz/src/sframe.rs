//! SFrame (RFC 9605) frames at [`FrameCrypto::decrypt`], the first thing a member does with a
//! media frame from the network. The first byte picks audio or VP8 (bit 0) and the receive
//! time, the rest is the frame.
//!
//! Checked: nothing panics; a frame this member encrypts decrypts to itself, clear header
//! included, under the same keys; a frame that decrypts names a KID of the epoch, opens only
//! as the participant of that KID ([`FrameCrypto::decrypt_from`]), and never twice (replay).

use conclave_e2ee::{EpochKeys, FrameCrypto, FrameKind};

fn keys() -> EpochKeys {
    EpochKeys {
        epoch: 3,
        sender_kid: 0x31,
        keys: (0x30..0x34u64)
            .map(|kid| (kid, vec![kid as u8; 32]))
            .collect(),
        senders: (0x30..0x34u64).map(|kid| (kid, format!("{kid}"))).collect(),
    }
}

fn kind(selector: u8) -> FrameKind {
    if selector & 1 == 0 {
        FrameKind::Audio
    } else {
        FrameKind::Vp8
    }
}

pub fn run(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let kind = kind(selector);
    let now_ms = u64::from(selector >> 1) * 1000;
    let keys = keys();
    let mut crypto = FrameCrypto::new();
    crypto.set_epoch(&keys, 0);
    let mut out = Vec::new();
    if let Ok(kid) = crypto.decrypt(kind, frame, now_ms, &mut out) {
        assert!(
            keys.keys.iter().any(|(k, _)| *k == kid),
            "unknown KID {kid}"
        );
        assert!(
            crypto.decrypt(kind, frame, now_ms, &mut out).is_err(),
            "a frame decrypted twice (replay)"
        );
    }
    // As a track of one participant: only that participant's KID opens.
    let mut bound = FrameCrypto::new();
    bound.set_epoch(&keys, 0);
    if let Ok(kid) = bound.decrypt_from(kind, frame, "49", now_ms, &mut out) {
        assert_eq!(kid, 0x31, "a frame opened as another participant's");
    }

    let mut wire = Vec::new();
    if crypto.encrypt(kind, frame, &mut wire).is_ok() {
        let mut receiver = FrameCrypto::new();
        receiver.set_epoch(&keys, 0);
        let kid = receiver
            .decrypt(kind, &wire, now_ms, &mut out)
            .expect("an own frame decrypts");
        assert_eq!(kid, keys.sender_kid);
        assert_eq!(out, frame, "encrypt-then-decrypt changed the frame");
    }
}

/// Frames encrypted under the target's keys: audio, a VP8 key frame, a VP8 delta frame.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut crypto = FrameCrypto::new();
    crypto.set_epoch(&keys(), 0);
    // A VP8 key frame starts with P = 0, the start code and the size (RFC 6386 §9.1).
    let vp8_key = [
        0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let vp8_delta = [0x31, 0x05, 0x00, 9, 8, 7, 6, 5, 4, 3, 2, 1];
    let audio = [0xfc, 0xff, 0xfe, 0x10, 0x20, 0x30, 0x40];
    let mut seeds = Vec::new();
    for (selector, frame) in [(0u8, &audio[..]), (1, &vp8_key[..]), (1, &vp8_delta[..])] {
        let mut wire = Vec::new();
        crypto
            .encrypt(kind(selector), frame, &mut wire)
            .expect("encrypts under the target's keys");
        let mut seed = vec![selector];
        seed.extend_from_slice(&wire);
        seeds.push(seed);
        let mut plain = vec![selector];
        plain.extend_from_slice(frame);
        seeds.push(plain);
    }
    seeds
}
