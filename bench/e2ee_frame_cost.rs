//! Cost of SFrame per media frame, natively: `cargo run --release -p conclave-e2ee --example
//! frame_cost`. Frames sized like a 720p VP8 key frame (~60 KB), a delta frame (~8 KB) and an
//! Opus frame (~100 B); keys from a real two-member MLS group through the DeliveryService.

use std::time::Instant;

use conclave_e2ee::{DeliveryService, FrameCrypto, FrameKind, Member, Received};

fn group() -> (Member, Member) {
    let mut ds = DeliveryService::new().expect("ds");
    let mut a = Member::new("1").expect("member");
    let info = a
        .create_group(b"bench", &ds.external_sender())
        .expect("group");
    ds.observe_group(&info).expect("observe");
    let mut b = Member::new("2").expect("member");
    let proposal = ds.propose_add(&b.key_package().expect("kp")).expect("add");
    assert_eq!(a.handle(&proposal).expect("proposal"), Received::Proposal);
    let out = a.commit().expect("commit").expect("out");
    ds.accept_commit(&out.commit).expect("accept");
    a.handle(&out.commit).expect("apply");
    let tree = ds.ratchet_tree().expect("tree");
    b.join(&out.welcome.expect("welcome"), &tree).expect("join");
    (a, b)
}

fn frame(kind: FrameKind, len: usize, key: bool) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    if kind == FrameKind::Vp8 {
        f[0] = if key { 0x50 } else { 0x31 };
    }
    f
}

fn main() {
    let (a, b) = group();
    let (mut tx, mut rx) = (FrameCrypto::new(), FrameCrypto::new());
    tx.set_epoch(&a.sframe_keys(), 0);
    rx.set_epoch(&b.sframe_keys(), 0);
    println!(
        "{:<22} {:>8} {:>8} {:>12} {:>12}",
        "frame", "bytes", "frames", "encrypt µs", "decrypt µs"
    );
    for (name, kind, len, key, n) in [
        ("VP8 720p key frame", FrameKind::Vp8, 60_000, true, 2_000),
        ("VP8 720p delta frame", FrameKind::Vp8, 8_000, false, 10_000),
        ("Opus 20 ms frame", FrameKind::Audio, 100, false, 100_000),
    ] {
        let plain = frame(kind, len, key);
        let (mut wire, mut back) = (Vec::new(), Vec::new());
        // Warm up, and check the round trip once.
        tx.encrypt(kind, &plain, &mut wire).expect("encrypt");
        rx.decrypt(kind, &wire, 0, &mut back).expect("decrypt");
        assert_eq!(back, plain);
        let t = Instant::now();
        for _ in 0..n {
            tx.encrypt(kind, &plain, &mut wire).expect("encrypt");
        }
        let enc = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            rx.decrypt(kind, &wire, 0, &mut back).expect("decrypt");
        }
        let dec = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{name:<22} {len:>8} {n:>8} {enc:>12.2} {dec:>12.2}");
    }
}
