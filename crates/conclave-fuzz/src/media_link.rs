//! Datagrams on a node's media link (cascading, `conclave_media::link`) and
//! the frames inside them (`conclave_media::relay_wire`). The first byte
//! picks the way in:
//! - even: the rest is a datagram from the network, at a link end;
//! - odd: the rest is a frame, sealed by the real peer (as if a node with
//!   the secret sent anything), so the decoder is reached with any bytes.
//!
//! Checked besides no panic: a datagram is counted once, as received or as
//! one refusal; a frame the peer sealed opens to exactly those bytes; a
//! decoded frame encodes again and decodes to the same messages.

use std::sync::Arc;
use std::time::Instant;

use conclave_media::link::keys::LinkSecret;
use conclave_media::link::{Link, LinkConfig, LinkStats, Received, SILENCE};
use conclave_media::relay::{MediaPacket, Relayed};
use conclave_media::relay_wire::{Decoder, Encoder, FrameHead, MAX_FRAME};
use conclave_media::{MediaKind, Mid, PeerId, TrackId};
use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::{RtpHeader, SeqNo};

const SECRET: &[u8] = b"the fuzz target's cluster secret, 32+";

fn link(local: &str, peer: &str, epoch: u64, now: Instant) -> Link {
    Link::new(
        LinkConfig {
            secret: LinkSecret::new(SECRET),
            local: local.into(),
            peer: peer.into(),
            epoch,
            silence: SILENCE,
        },
        now,
    )
    .expect("link keys")
}

fn outcomes(s: &LinkStats) -> u64 {
    s.received + s.malformed + s.wrong_sender + s.stale_epoch + s.replayed + s.too_old + s.forged
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut b = link("node-b", "node-a", 2, now);
    if mode % 2 == 0 {
        let mut d = rest.to_vec();
        if let Ok(Received::Data(frame)) = b.receive(&mut d, now) {
            let frame = frame.to_vec();
            round_trip(&frame, now);
        }
        assert_eq!(outcomes(b.stats()), 1, "one datagram, one outcome");
        return;
    }
    let mut a = link("node-a", "node-b", 1, now);
    a.send(rest, now);
    let Some(sealed) = a.poll_transmit() else {
        panic!("the peer sealed nothing");
    };
    let mut d = sealed.to_vec();
    match b.receive(&mut d, now) {
        Ok(Received::Data(frame)) => assert_eq!(frame, rest, "opens to what was sealed"),
        other => panic!("the peer's datagram was refused: {other:?}"),
    }
    round_trip(rest, now);
}

/// A frame that decodes encodes again to one that decodes the same.
fn round_trip(frame: &[u8], now: Instant) {
    let Ok(first) = Decoder::new().decode(frame, now) else {
        return;
    };
    let mut encoder = Encoder::new();
    let mut frames = Vec::new();
    let Ok(skipped) = encoder.encode_batch(first.head, &first.items, MAX_FRAME, now, |f| {
        frames.push(f.to_vec())
    }) else {
        panic!("a decoded head encodes again");
    };
    if skipped > 0 {
        // A codec definition written more loosely than str0m writes it
        // can grow past its bound when written again.
        return;
    }
    let mut decoder = Decoder::new();
    let mut again = Vec::new();
    for f in &frames {
        let d = decoder.decode(f, now).expect("an encoded frame decodes");
        assert_eq!(d.head, first.head);
        assert_eq!(d.unknown_codec, 0, "every codec is defined on first use");
        again.extend(d.items);
    }
    assert_eq!(format!("{again:?}"), format!("{:?}", first.items));
}

fn vp8() -> PayloadParams {
    let spec = CodecSpec {
        codec: Codec::Vp8,
        clock_rate: Frequency::NINETY_KHZ,
        channels: None,
        format: FormatParams::default(),
    };
    PayloadParams::new(Pt::from(96), Some(Pt::from(97)), spec)
}

fn opus() -> PayloadParams {
    let spec = CodecSpec {
        codec: Codec::Opus,
        clock_rate: Frequency::FORTY_EIGHT_KHZ,
        channels: Some(2),
        format: FormatParams {
            use_inband_fec: Some(true),
            min_p_time: Some(10),
            ..Default::default()
        },
    };
    PayloadParams::new(Pt::from(111), None, spec)
}

fn rtp(seq: u64, video: bool, now: Instant) -> Relayed {
    let mut header = RtpHeader {
        marker: video,
        payload_type: Pt::from(if video { 96 } else { 111 }),
        sequence_number: seq as u16,
        timestamp: 90_000 + seq as u32,
        ssrc: 0x5eed.into(),
        ..Default::default()
    };
    header.ext_vals.audio_level = (!video).then_some(-20);
    header.ext_vals.voice_activity = (!video).then_some(true);
    Relayed::Rtp {
        track: TrackId {
            publisher: PeerId(3),
            mid: Mid::from(if video { "1" } else { "0" }),
        },
        rid: video.then(|| "f".into()),
        params: if video { vp8() } else { opus() },
        packet: MediaPacket {
            seq_no: SeqNo::from(seq),
            header,
            payload: Arc::from(vec![0xa5; if video { 300 } else { 60 }]),
            timestamp: now,
        },
    }
}

/// Real frames (each way in) and real sealed datagrams.
pub fn seeds() -> Vec<Vec<u8>> {
    let now = Instant::now();
    let cam = TrackId {
        publisher: PeerId(3),
        mid: Mid::from("1"),
    };
    let batches = vec![
        vec![
            Relayed::Hello,
            Relayed::Published {
                track: cam,
                kind: MediaKind::Video,
                rids: vec![Some("q".into()), Some("h".into()), Some("f".into())],
            },
        ],
        vec![rtp(1, true, now), rtp(2, false, now), rtp(3, true, now)],
        vec![
            Relayed::KeyFrame {
                track: cam,
                rid: Some("h".into()),
            },
            Relayed::Wanted {
                track: cam,
                layers: Some(vec![Some("q".into())]),
            },
            Relayed::Wanted {
                track: cam,
                layers: None,
            },
            Relayed::Unpublished { track: cam },
        ],
    ];
    let meeting = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let head = FrameHead {
        meeting: &meeting,
        from: 0,
        to: &[0, 1],
    };
    let mut a = link("node-a", "node-b", 1, now);
    let mut encoder = Encoder::new();
    let mut out = Vec::new();
    for batch in &batches {
        let mut frames = Vec::new();
        encoder
            .encode_batch(head, batch, 1400, now, |f| frames.push(f.to_vec()))
            .expect("seed frames");
        for f in frames {
            out.push([&[1u8][..], &f].concat());
            a.send(&f, now);
        }
    }
    while let Some(d) = a.poll_transmit() {
        out.push([&[0u8][..], &d[..]].concat());
    }
    out
}
