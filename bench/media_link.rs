//! The cost per packet of the media link between nodes (issue 23): the
//! sending node's encode (`relay_wire`) and seal (`link`, ChaCha20-Poly1305),
//! and the receiving node's open and decode, for a video packet of
//! `--payload` bytes, one packet per datagram as the link sends them under
//! load, and for small packets (audio) batched several to a datagram.
//! No sockets: what the link adds to a packet's CPU, not the network.
//!
//! `cargo bench -p conclave-media --bench media_link [-- --packets 200000 --payload 1100]`

#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_media::link::keys::LinkSecret;
use conclave_media::link::{Datagram, Link, LinkConfig, Received, SILENCE};
use conclave_media::relay::{MediaPacket, Relayed};
use conclave_media::relay_wire::{Decoder, Encoder, FrameHead};
use conclave_media::{Mid, PeerId, TrackId};
use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::{RtpHeader, SeqNo};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn params(video: bool) -> PayloadParams {
    let spec = CodecSpec {
        codec: if video { Codec::Vp8 } else { Codec::Opus },
        clock_rate: if video {
            Frequency::NINETY_KHZ
        } else {
            Frequency::FORTY_EIGHT_KHZ
        },
        channels: if video { None } else { Some(2) },
        format: FormatParams::default(),
    };
    PayloadParams::new(Pt::from(if video { 96 } else { 111 }), None, spec)
}

fn packet(seq: u64, payload: &Arc<[u8]>, video: bool, now: Instant) -> Relayed {
    let mut header = RtpHeader {
        payload_type: Pt::from(if video { 96 } else { 111 }),
        sequence_number: seq as u16,
        timestamp: seq as u32 * 3000,
        ssrc: 0x1234.into(),
        marker: seq.is_multiple_of(8),
        ..Default::default()
    };
    if !video {
        header.ext_vals.audio_level = Some(-30);
        header.ext_vals.voice_activity = Some(true);
    }
    Relayed::Rtp {
        track: TrackId {
            publisher: PeerId(7),
            mid: Mid::from(if video { "1" } else { "0" }),
        },
        rid: video.then(|| "h".into()),
        params: params(video),
        packet: MediaPacket {
            seq_no: SeqNo::from(seq),
            header,
            payload: payload.clone(),
            timestamp: now,
        },
    }
}

fn link(local: &str, peer: &str, epoch: u64, now: Instant) -> Link {
    Link::new(
        LinkConfig {
            secret: LinkSecret::new(b"a cluster secret of at least 32 characters"),
            local: local.into(),
            peer: peer.into(),
            epoch,
            silence: SILENCE,
        },
        now,
    )
    .expect("keys")
}

struct Run {
    send: Duration,
    receive: Duration,
    packets: usize,
    datagrams: usize,
    bytes: usize,
}

/// `packets` packets in batches of `batch`: encode+seal on one side, then
/// open+decode on the other, timed apart.
fn run(packets: usize, payload_len: usize, batch: usize, video: bool) -> Run {
    let now = Instant::now();
    let mut a = link("node-a", "node-b", 1, now);
    let mut b = link("node-b", "node-a", 2, now);
    let mut enc = Encoder::new();
    let mut dec = Decoder::new();
    let payload: Arc<[u8]> = (0..payload_len).map(|i| i as u8).collect::<Vec<_>>().into();
    let meeting = [7u8; 10];
    let head = FrameHead {
        meeting: &meeting,
        from: 0,
        to: &[1],
    };
    let items: Vec<Vec<Relayed>> = (0..packets / batch)
        .map(|i| {
            (0..batch)
                .map(|j| packet((i * batch + j) as u64, &payload, video, now))
                .collect()
        })
        .collect();
    let mut wire: Vec<Datagram> = Vec::with_capacity(packets);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let (mut send, mut receive) = (Duration::ZERO, Duration::ZERO);
    let (mut got, mut bytes, mut datagrams) = (0, 0, 0);
    // In rounds, so the history's memory stays as in steady use.
    for round in items.chunks(256) {
        let t = Instant::now();
        for b in round {
            enc.encode_batch(head, b, 1400, now, |f| a.send(f, now))
                .expect("encodes");
            while let Some(d) = a.poll_transmit() {
                wire.push(d);
            }
        }
        send += t.elapsed();
        datagrams += wire.len();
        bytes += wire.iter().map(|d| d.len()).sum::<usize>();
        let t = Instant::now();
        for d in &wire {
            // As a socket's receive into the node's buffer.
            buf.clear();
            buf.extend_from_slice(d);
            if let Ok(Received::Data(f)) = b.receive(&mut buf, now) {
                got += dec.decode(f, now).map_or(0, |d| d.items.len());
            }
        }
        receive += t.elapsed();
        wire.clear();
    }
    assert_eq!(got, packets / batch * batch, "every packet arrived");
    Run {
        send,
        receive,
        packets: got,
        datagrams,
        bytes,
    }
}

fn report(name: &str, r: &Run, payload: usize) {
    let per = |d: Duration| d.as_nanos() as f64 / r.packets as f64;
    println!(
        "| {name} | {} | {} | {:.0} ns | {:.0} ns | {:.0} ns | {:.1} |",
        r.packets,
        r.datagrams,
        per(r.send),
        per(r.receive),
        per(r.send + r.receive),
        (r.bytes as f64 / r.datagrams as f64)
            - (payload as f64 * r.packets as f64 / r.datagrams as f64),
    );
}

fn main() {
    let packets = arg("--packets", 200_000);
    let payload = arg("--payload", 1100);
    println!("load before: {}", load());
    // Warm up (allocator, caches, the CPU's clock).
    run(20_000, payload, 1, true);
    println!(
        "| packets | count | datagrams | encode+seal / packet | open+decode / packet | both | link bytes per datagram beyond payload |"
    );
    println!("|---|---|---|---|---|---|---|");
    for _ in 0..3 {
        let r = run(packets, payload, 1, true);
        report(
            &format!("video, {payload} B, one per datagram"),
            &r,
            payload,
        );
    }
    for _ in 0..3 {
        let r = run(packets, 160, 8, false);
        report("audio, 160 B, batches of 8", &r, 160);
    }
    println!("load after: {}", load());
}
