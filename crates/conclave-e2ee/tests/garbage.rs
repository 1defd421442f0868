//! Malformed input to every entry point gives an error, never a panic.

mod common;

use common::Meeting;
use conclave_e2ee::{DeliveryService, FrameCrypto, FrameKind, Member, rfc9605};

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
struct Noise(u64);
impl Noise {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }
}

/// Random blobs, plus every prefix and single-byte mutations of real messages.
fn inputs(real: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut all = vec![vec![], vec![0], vec![0xff; 3], vec![0; 64]];
    for len in [1, 2, 5, 16, 100, 1000] {
        for _ in 0..8 {
            all.push(noise.bytes(len));
        }
    }
    for msg in real {
        for cut in (0..msg.len()).step_by(13) {
            all.push(msg[..cut].to_vec());
        }
        for i in (0..msg.len()).step_by(29) {
            let mut m = msg.clone();
            m[i] = m[i].wrapping_add(0x41);
            all.push(m);
        }
    }
    all
}

#[test]
fn garbage_to_every_entry_point_is_an_error() {
    let mut m = Meeting::with_members(2);
    let kp = Member::new("7").expect("m").key_package().expect("kp");
    let chat = m.members[0].encrypt_chat("hi").expect("chat");
    let proposal = m.ds.propose_add(&kp).expect("proposal");
    let mut frames = FrameCrypto::new();
    frames.set_epoch(&m.members[1].sframe_keys(), 0);
    let mut wire = Vec::new();
    frames
        .encrypt(FrameKind::Vp8, &[0u8; 40], &mut wire)
        .expect("frame");
    let tree = m.ds.ratchet_tree().expect("tree");
    let real = vec![kp, chat, proposal, wire, m.ds.external_sender()];
    let mut out = Vec::new();

    for input in inputs(&real) {
        let mut fresh = Member::new("9").expect("member");
        assert!(fresh.join(&input, &tree).is_err());
        assert!(fresh.join(&input, &input).is_err());
        // Only a same-length mutation of a real identity can still decode as one.
        assert!(fresh.create_group(b"g", &input).is_err() || input.len() == real[4].len());
        assert!(fresh.handle(&input).is_err());
        assert!(fresh.open_chat(&input).is_err());
        let _ = m.members[1].handle(&input);
        let _ = m.members[1].open_chat(&input);
        assert!(DeliveryService::check_key_package(&input, "7").is_err() || input == real[0]);
        let mut ds = DeliveryService::new().expect("ds");
        assert!(ds.observe_group(&input).is_err());
        assert!(ds.propose_add(&input).is_err());
        assert!(m.ds.accept_commit(&input).is_err());
        let _ = m.ds.propose_add(&input);
        for kind in [FrameKind::Audio, FrameKind::Vp8] {
            let _ = frames.decrypt(kind, &input, 0, &mut out);
        }
        let _ = rfc9605::decrypt(&[0u8; 16], &[], &input);
        let _ = rfc9605::decrypt(&input, &input, &input);
    }
    // The group survived all of it.
    let chat = m.members[0].encrypt_chat("still here").expect("chat");
    assert!(matches!(m.members[1].open_chat(&chat), Ok(Some(_))));
}
