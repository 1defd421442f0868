//! SFrame media frames between members, keyed by the MLS group.

mod common;

use common::Meeting;
use conclave_e2ee::{
    E2eeError, FrameCrypto, FrameKind, PREVIOUS_EPOCH_GRACE_MS, SEND_SWITCH_DELAY_MS, SendSwitch,
    rfc9605,
};

/// A VP8 key frame: frame tag with P = 0, start code, 640x480, then "compressed" data.
fn vp8_key_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    f.extend((0..len - 10).map(|i| (i * 7 % 251) as u8));
    f
}

/// A VP8 delta frame: P = 1, 3-byte frame tag.
fn vp8_delta_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x31, 0x10, 0x00];
    f.extend((0..len - 3).map(|i| (i * 13 % 253) as u8));
    f
}

fn crypto_for(m: &Meeting, i: usize, now_ms: u64) -> FrameCrypto {
    let mut c = FrameCrypto::new();
    c.set_epoch(&m.members[i].sframe_keys(), now_ms);
    c
}

#[test]
fn every_member_derives_the_same_keys_and_distinct_kids() {
    let m = Meeting::with_members(3);
    let keys: Vec<_> = m.members.iter().map(|x| x.sframe_keys()).collect();
    for k in &keys {
        assert_eq!(k.epoch, 2);
        assert_eq!(k.keys, keys[0].keys);
        assert_eq!(k.keys.len(), 3);
    }
    let kids: Vec<u64> = keys.iter().map(|k| k.sender_kid).collect();
    // RFC 9605 §5.2, E = 4, context 0: (leaf index << 4) | (epoch mod 16).
    assert_eq!(kids, vec![2, 0x12, 0x22]);
}

#[test]
fn audio_and_vp8_frames_decrypt_across_members() {
    let m = Meeting::with_members(3);
    let mut sender = crypto_for(&m, 1, 0);
    let mut receivers = [crypto_for(&m, 0, 0), crypto_for(&m, 2, 0)];
    let opus = b"\x78\x0b\xe4\xc1\x36\xec\xc5\x80 opus frame".to_vec();
    let key = vp8_key_frame(6000);
    let delta = vp8_delta_frame(800);
    let (mut wire, mut back) = (Vec::new(), Vec::new());

    sender
        .encrypt(FrameKind::Audio, &opus, &mut wire)
        .expect("encrypt");
    assert!(
        !wire
            .windows(11)
            .any(|w| w == b"opus frame\0"[..11].as_ref())
    );
    assert!(!wire.windows(10).any(|w| w == b"opus frame"));
    for r in &mut receivers {
        assert_eq!(
            r.decrypt(FrameKind::Audio, &wire, 10, &mut back)
                .expect("decrypt"),
            0x12
        );
        assert_eq!(back, opus);
    }

    for frame in [&key, &delta] {
        sender
            .encrypt(FrameKind::Vp8, frame, &mut wire)
            .expect("encrypt");
        let clear = if frame[0] & 1 == 0 { 10 } else { 3 };
        // The payload header stays clear for the SFU; the rest does not.
        assert_eq!(&wire[..clear], &frame[..clear]);
        assert!(
            !wire
                .windows(16)
                .any(|w| w == &frame[clear + 32..clear + 48])
        );
        for r in &mut receivers {
            r.decrypt(FrameKind::Vp8, &wire, 10, &mut back)
                .expect("decrypt");
            assert_eq!(&back, frame);
        }
        // The clear header is authenticated: one changed bit fails.
        let mut bad = wire.clone();
        bad[1] ^= 0x01;
        assert!(
            receivers[0]
                .decrypt(FrameKind::Vp8, &bad, 10, &mut back)
                .is_err()
        );
    }
}

#[test]
fn frames_never_repeat_a_nonce() {
    let m = Meeting::with_members(2);
    let mut sender = crypto_for(&m, 0, 0);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    sender
        .encrypt(FrameKind::Audio, b"same", &mut a)
        .expect("a");
    sender
        .encrypt(FrameKind::Audio, b"same", &mut b)
        .expect("b");
    assert_ne!(a, b);
}

#[test]
fn short_vp8_frames_and_missing_keys_are_errors() {
    let m = Meeting::with_members(2);
    let mut c = FrameCrypto::new();
    let mut out = Vec::new();
    assert!(matches!(
        c.encrypt(FrameKind::Audio, b"x", &mut out),
        Err(E2eeError::NoKey)
    ));
    c.set_epoch(&m.members[0].sframe_keys(), 0);
    assert!(matches!(
        c.encrypt(FrameKind::Vp8, &[0x00, 1, 2, 3], &mut out),
        Err(E2eeError::FrameTooShort(4))
    ));
    assert!(c.encrypt(FrameKind::Vp8, &[], &mut out).is_err());
    assert!(c.encrypt(FrameKind::Vp8, &[0x01, 1, 2], &mut out).is_ok());
}

#[test]
fn previous_epoch_frames_decrypt_within_the_grace_period_only() {
    let mut m = Meeting::with_members(2);
    let mut old_sender = crypto_for(&m, 1, 0);
    let mut receiver = crypto_for(&m, 0, 0);
    let mut frames = Vec::new();
    for _ in 0..3 {
        let mut wire = Vec::new();
        old_sender
            .encrypt(FrameKind::Audio, b"late audio", &mut wire)
            .expect("encrypt");
        frames.push(wire);
    }
    m.add("3");
    let switched_at = 1_000;
    receiver.set_epoch(&m.members[0].sframe_keys(), switched_at);
    let mut out = Vec::new();
    receiver
        .decrypt(FrameKind::Audio, &frames[0], switched_at, &mut out)
        .expect("right after the switch");
    receiver
        .decrypt(
            FrameKind::Audio,
            &frames[1],
            switched_at + PREVIOUS_EPOCH_GRACE_MS - 1,
            &mut out,
        )
        .expect("just inside the grace period");
    assert_eq!(out, b"late audio");
    assert!(matches!(
        receiver.decrypt(
            FrameKind::Audio,
            &frames[2],
            switched_at + PREVIOUS_EPOCH_GRACE_MS,
            &mut out
        ),
        Err(E2eeError::UnknownKey(_))
    ));
    // New-epoch frames still flow.
    let mut new_sender = crypto_for(&m, 1, switched_at);
    let mut wire = Vec::new();
    new_sender
        .encrypt(FrameKind::Audio, b"new", &mut wire)
        .expect("encrypt");
    receiver
        .decrypt(FrameKind::Audio, &wire, switched_at + 60_000, &mut out)
        .expect("decrypt");
    assert_eq!(out, b"new");
}

#[test]
fn removed_member_cannot_decrypt_next_epoch() {
    let mut m = Meeting::with_members(3);
    let mut removed = m.members.pop().expect("member 3");
    let old_keys = removed.sframe_keys();
    let mut removed_crypto = FrameCrypto::new();
    removed_crypto.set_epoch(&old_keys, 0);

    let proposal = m.ds.propose_remove("3").expect("remove");
    removed.handle(&proposal).expect("proposal");
    let (commit, _) = m.propose_and_commit(&proposal);

    let mut sender = crypto_for(&m, 0, 10);
    let frame = vp8_key_frame(2000);
    let mut wire = Vec::new();
    sender
        .encrypt(FrameKind::Vp8, &frame, &mut wire)
        .expect("encrypt");
    let mut out = Vec::new();
    // With the keys it held: the new KID is unknown to it.
    assert!(
        removed_crypto
            .decrypt(FrameKind::Vp8, &wire, 10, &mut out)
            .is_err()
    );
    // Even forcing its last base key onto the new KID fails authentication.
    assert!(rfc9605::decrypt(&old_keys.keys[0].1, &frame[..10], &wire[10..]).is_err());
    // Processing the removing commit gives it nothing new either.
    removed.handle(&commit).expect("removal commit");
    assert!(removed.sframe_keys().keys.is_empty());
    let mut after = FrameCrypto::new();
    after.set_epoch(&removed.sframe_keys(), 10);
    assert!(after.decrypt(FrameKind::Vp8, &wire, 10, &mut out).is_err());
    // The remaining member decrypts.
    let mut stayer = crypto_for(&m, 1, 10);
    stayer
        .decrypt(FrameKind::Vp8, &wire, 10, &mut out)
        .expect("decrypt");
    assert_eq!(out, frame);
}

/// A join burst: several commits close together, each member taking every epoch's keys when it
/// processes the commit (some later than the sender), and the sender switching its key only
/// after the delay. Every member that was in the group decrypts every frame of the sender, delta
/// frames through every epoch change, so none of them needs a key frame; the newcomers read the
/// sender from its first frame under an epoch they hold.
#[test]
fn receivers_decrypt_every_frame_across_a_burst_of_epochs_without_a_key_frame() {
    let mut m = Meeting::with_members(3);
    let mut crypto: Vec<FrameCrypto> = (0..3).map(|i| crypto_for(&m, i, 0)).collect();
    let sender = 1;
    let mut newcomers: Vec<(usize, u64)> = Vec::new();
    let mut now = 0;
    let mut decrypted = vec![0u64; 32];
    let mut sent = 0u64;
    let mut first_readable: Vec<Option<u64>> = vec![None; 32];
    // Four joins 300 ms apart (closer than the delay), then 20 joins 40 ms apart: more epochs
    // within the delay than a KID's four epoch bits tell apart. Then two seconds of frames.
    for step in 0..250u64 {
        now = step * 20;
        if (step % 15 == 0 && step < 60) || ((60..100).contains(&step) && step % 2 == 0) {
            let id = (m.members.len() + 1).to_string();
            m.add(&id);
            let at = now;
            for (i, c) in crypto.iter_mut().enumerate() {
                // Members process the commit up to 200 ms apart.
                let lag = (i as u64 * 70) % 200;
                let keys = m.members[i].sframe_keys();
                c.switch_epoch(&keys, at + lag, SendSwitch::AfterDelay);
            }
            let mut c = FrameCrypto::new();
            c.switch_epoch(
                &m.members.last().expect("newcomer").sframe_keys(),
                at,
                SendSwitch::AfterDelay,
            );
            crypto.push(c);
            newcomers.push((crypto.len() - 1, at));
        }
        let frame = if step == 0 {
            vp8_key_frame(300)
        } else {
            vp8_delta_frame(120)
        };
        let mut wire = Vec::new();
        crypto[sender]
            .encrypt_at(FrameKind::Vp8, &frame, now, &mut wire)
            .expect("encrypt");
        sent += 1;
        for (i, c) in crypto.iter_mut().enumerate() {
            if i == sender {
                continue;
            }
            let mut out = Vec::new();
            // Received up to 250 ms after it was sent (a late member, a slow path).
            match c.decrypt_from(FrameKind::Vp8, &wire, "2", now + 250, &mut out) {
                Ok(_) => {
                    assert_eq!(out, frame);
                    decrypted[i] += 1;
                    first_readable[i].get_or_insert(now);
                }
                Err(e) => assert!(i >= 3, "member {i} missed a frame at {now} ms: {e}"),
            }
        }
    }
    // The members from the start read every frame: no gap, so no key frame needed.
    assert_eq!(&decrypted[..3], &[sent, 0, sent]);
    // A newcomer reads the sender at most one delay after the sender processed the commit
    // (200 ms late at most here), and from then on
    // everything: once the sender uses an epoch the newcomer holds, it never goes back.
    for (i, joined_at) in newcomers {
        let first = first_readable[i].expect("the newcomer reads the sender");
        assert!(
            first <= joined_at + 200 + SEND_SWITCH_DELAY_MS + 20,
            "member {i}: {first}"
        );
        assert_eq!(decrypted[i], (now - first) / 20 + 1, "member {i}");
    }
}

/// A removal switches the sender at once, even with a key of an earlier epoch still waiting:
/// the removed member, who kept every key it ever had, reads nothing sent after the sender
/// processed the removing commit, while the members who stay read on.
#[test]
fn after_a_removal_the_sender_switches_at_once_and_the_removed_member_reads_nothing() {
    let mut m = Meeting::with_members(3);
    let mut sender = crypto_for(&m, 0, 0);
    let mut removed = crypto_for(&m, 2, 0);
    let mut stayer = crypto_for(&m, 1, 0);
    // A join leaves the sender's new key waiting; the member to be removed takes it too.
    m.add("4");
    sender.switch_epoch(&m.members[0].sframe_keys(), 100, SendSwitch::AfterDelay);
    removed.switch_epoch(&m.members[2].sframe_keys(), 100, SendSwitch::AfterDelay);
    stayer.switch_epoch(&m.members[1].sframe_keys(), 100, SendSwitch::AfterDelay);
    assert!(sender.sending_key_pending());
    let proposal = m.ds.propose_remove("3").expect("remove");
    let mut gone = m.members.remove(2);
    gone.handle(&proposal).expect("proposal");
    let (commit, _) = m.propose_and_commit(&proposal);
    sender.switch_epoch(&m.members[0].sframe_keys(), 200, SendSwitch::AtOnce);
    stayer.switch_epoch(&m.members[1].sframe_keys(), 200, SendSwitch::AfterDelay);
    assert!(!sender.sending_key_pending());
    // The removed member's state gives it nothing newer.
    gone.handle(&commit).expect("removal commit");
    removed.switch_epoch(&gone.sframe_keys(), 200, SendSwitch::AfterDelay);
    for t in [
        200,
        201,
        200 + SEND_SWITCH_DELAY_MS,
        200 + PREVIOUS_EPOCH_GRACE_MS - 1,
    ] {
        let frame = vp8_delta_frame(100);
        let mut wire = Vec::new();
        sender
            .encrypt_at(FrameKind::Vp8, &frame, t, &mut wire)
            .expect("encrypt");
        let mut out = Vec::new();
        assert!(
            removed.decrypt(FrameKind::Vp8, &wire, t, &mut out).is_err(),
            "the removed member read a frame sent at {t} ms"
        );
        stayer
            .decrypt(FrameKind::Vp8, &wire, t, &mut out)
            .expect("a member who stays reads it");
        assert_eq!(out, frame);
    }
}
