use std::time::{Duration, Instant};

use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, Pt};

use super::*;

/// Virtual time starts at a real instant (Instant has no other origin).
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

const MEETING: &[u8] = &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0];

fn head() -> FrameHead<'static> {
    FrameHead {
        meeting: MEETING,
        from: 3,
        to: &[1, 2],
    }
}

fn opus() -> PayloadParams {
    let spec = CodecSpec {
        codec: Codec::Opus,
        clock_rate: Frequency::FORTY_EIGHT_KHZ,
        channels: Some(2),
        format: FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    };
    // RED is only set by negotiation; its serde form carries it.
    let mut v = serde_json::to_value(PayloadParams::new(Pt::from(111), None, spec)).unwrap();
    v["red"] = serde_json::json!(63);
    serde_json::from_value(v).unwrap()
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

fn track(n: u64, mid: &str) -> TrackId {
    TrackId {
        publisher: PeerId(n),
        mid: Mid::from(mid),
    }
}

fn packet(seq: u64, payload: &[u8], audio: bool) -> MediaPacket {
    let mut header = RtpHeader {
        marker: seq.is_multiple_of(3),
        payload_type: Pt::from(if audio { 63 } else { 96 }),
        sequence_number: seq as u16,
        timestamp: 0xdead_0000 + seq as u32,
        ssrc: 0x1234_5678.into(),
        ..Default::default()
    };
    if audio {
        header.ext_vals.audio_level = Some(-42);
        header.ext_vals.voice_activity = Some(seq.is_multiple_of(2));
    } else {
        header.ext_vals.video_orientation = Some(VideoOrientation::Deg90);
        header.ext_vals.video_content_type = Some(1);
    }
    MediaPacket {
        seq_no: SeqNo::from(seq),
        header,
        payload: Arc::from(payload),
        timestamp: start(),
    }
}

/// One message of each kind, two packets of each codec.
fn every_kind() -> Vec<Relayed> {
    let cam = track(7, "1");
    let mic = track(7, "0");
    vec![
        Relayed::Hello,
        Relayed::Published {
            track: cam,
            kind: MediaKind::Video,
            rids: vec![
                Some(Rid::from("q")),
                Some(Rid::from("h")),
                Some(Rid::from("f")),
            ],
        },
        Relayed::Published {
            track: mic,
            kind: MediaKind::Audio,
            rids: vec![None],
        },
        Relayed::Rtp {
            track: cam,
            rid: Some(Rid::from("h")),
            params: vp8(),
            packet: packet(70_000, &[0x90, 0x80, 1, 2, 3, 0xff], false),
        },
        Relayed::Rtp {
            track: mic,
            rid: None,
            params: opus(),
            packet: packet(70_001, &[0xaa; 80], true),
        },
        Relayed::Rtp {
            track: cam,
            rid: Some(Rid::from("h")),
            params: vp8(),
            packet: packet(70_002, &[], false),
        },
        Relayed::KeyFrame {
            track: cam,
            rid: Some(Rid::from("f")),
        },
        Relayed::KeyFrame {
            track: mic,
            rid: None,
        },
        Relayed::Wanted {
            track: cam,
            layers: None,
        },
        Relayed::Wanted {
            track: cam,
            layers: Some(vec![Some(Rid::from("q"))]),
        },
        Relayed::Wanted {
            track: cam,
            layers: Some(vec![]),
        },
        Relayed::Unpublished { track: mic },
    ]
}

/// A comparable form (str0m's header and PayloadParams compare; Instants
/// do not cross nodes).
fn shape(item: &Relayed) -> String {
    match item {
        Relayed::Rtp {
            track,
            rid,
            params,
            packet,
        } => format!(
            "Rtp {track:?} {rid:?} {params:?} red={:?} seq={} {:?} {:?}",
            params.red(),
            *packet.seq_no,
            packet.header,
            packet.payload
        ),
        other => format!("{other:?}"),
    }
}

fn frames(enc: &mut Encoder, items: &[Relayed], target: usize, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let skipped = enc
        .encode_batch(head(), items, target, now, |f| out.push(f.to_vec()))
        .unwrap();
    assert_eq!(skipped, 0);
    out
}

fn decode_all(dec: &mut Decoder, frames: &[Vec<u8>], now: Instant) -> Vec<Relayed> {
    let mut items = Vec::new();
    for f in frames {
        let d = dec.decode(f, now).unwrap();
        assert_eq!(d.head, head());
        assert_eq!(d.unknown_codec, 0);
        items.extend(d.items);
    }
    items
}

#[test]
fn every_kind_of_message_reads_back_as_it_was_written() {
    let now = start();
    let items = every_kind();
    for target in [64, 300, MAX_FRAME] {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let fs = frames(&mut enc, &items, target, now);
        if target == MAX_FRAME {
            assert_eq!(fs.len(), 1, "small messages share a frame");
        } else {
            assert!(fs.len() > 1);
        }
        let back = decode_all(&mut dec, &fs, now);
        let want: Vec<String> = items.iter().map(shape).collect();
        let got: Vec<String> = back.iter().map(shape).collect();
        assert_eq!(got, want, "target {target}");
    }
}

#[test]
fn a_codec_is_defined_once_then_named_by_index_and_again_after_a_while() {
    let now = start();
    let mut enc = Encoder::new();
    let cam = track(1, "1");
    let rtp = |seq| Relayed::Rtp {
        track: cam,
        rid: None,
        params: vp8(),
        packet: packet(seq, &[1; 100], false),
    };
    let first = frames(&mut enc, &[rtp(1)], 1400, now);
    let second = frames(&mut enc, &[rtp(2)], 1400, now + Duration::from_millis(10));
    assert!(
        first[0].len() > second[0].len() + 50,
        "{} vs {}",
        first[0].len(),
        second[0].len()
    );
    // The definition travels again after DEFINE_AGAIN.
    let later = frames(&mut enc, &[rtp(3)], 1400, now + DEFINE_AGAIN);
    assert_eq!(later[0].len(), first[0].len());

    // A receiver that missed the definition skips the packet, counts it,
    // and takes the next definition.
    let mut dec = Decoder::new();
    let d = dec.decode(&second[0], now).unwrap();
    assert!(d.items.is_empty());
    assert_eq!(d.unknown_codec, 1);
    assert_eq!(dec.decode(&later[0], now).unwrap().items.len(), 1);
    assert_eq!(dec.decode(&second[0], now).unwrap().items.len(), 1);
}

#[test]
fn a_full_codec_table_reuses_the_oldest_index_with_a_new_definition() {
    let now = start();
    let mut enc = Encoder::new();
    let mut dec = Decoder::new();
    let cam = track(1, "1");
    for pt in 0..(MAX_CODECS as u32 + 3) {
        let mut v = serde_json::to_value(vp8()).unwrap();
        v["pt"] = serde_json::json!(pt % 128);
        v["resend"] = serde_json::json!(pt / 128);
        let params: PayloadParams = serde_json::from_value(v).unwrap();
        let item = Relayed::Rtp {
            track: cam,
            rid: None,
            params,
            packet: packet(u64::from(pt), &[1], false),
        };
        let fs = frames(&mut enc, std::slice::from_ref(&item), 1400, now);
        let back = decode_all(&mut dec, &fs, now);
        assert_eq!(
            back.iter().map(shape).collect::<Vec<_>>(),
            vec![shape(&item)]
        );
    }
}

#[test]
fn a_message_too_large_is_left_out_and_one_larger_than_the_target_goes_alone() {
    let now = start();
    let mut enc = Encoder::new();
    let cam = track(1, "1");
    let rtp = |len| Relayed::Rtp {
        track: cam,
        rid: None,
        params: vp8(),
        packet: packet(1, &vec![5; len], false),
    };
    let mut out = Vec::new();
    let skipped = enc
        .encode_batch(
            head(),
            &[rtp(10), rtp(3000), rtp(MAX_FRAME + 1), rtp(10)],
            1400,
            now,
            |f| out.push(f.len()),
        )
        .unwrap();
    assert_eq!(skipped, 1);
    assert_eq!(out.len(), 3);
    assert!(out[1] > 3000 && out[1] <= MAX_FRAME);
}

/// A small deterministic generator: the tests need variety, not secrecy.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Decoding whatever it is given returns (an error or messages), never
/// panics, and what it returns encodes again.
fn decode_anything(dec: &mut Decoder, bytes: &[u8], now: Instant) {
    if let Ok(d) = dec.decode(bytes, now) {
        let mut enc = Encoder::new();
        let mut n = 0;
        enc.encode_batch(d.head, &d.items, MAX_FRAME, now, |_| n += 1)
            .unwrap();
    }
}

#[test]
fn truncated_frames_are_refused_without_panic() {
    let now = start();
    let mut enc = Encoder::new();
    let fs = frames(&mut enc, &every_kind(), MAX_FRAME, now);
    let whole = &fs[0];
    for cut in 0..whole.len() {
        let mut dec = Decoder::new();
        let r = dec.decode(&whole[..cut], now);
        // A cut between records is a shorter, valid frame; inside one it
        // is refused.
        if let Ok(d) = r {
            assert!(d.items.len() < every_kind().len());
        }
    }
}

#[test]
fn lying_lengths_and_counts_are_refused() {
    let now = start();
    let mut enc = Encoder::new();
    let fs = frames(&mut enc, &every_kind(), MAX_FRAME, now);
    let whole = fs[0].clone();
    let mut dec = Decoder::new();
    // The meeting ID's length, past the bound and past the frame.
    for len in [33u8, 200, 255] {
        let mut f = whole.clone();
        f[0] = len;
        assert!(dec.decode(&f, now).is_err());
    }
    // The receivers' count: none, past the bound, past the frame.
    let count_at = 1 + MEETING.len() + 2;
    for n in [0u8, 65, 255] {
        let mut f = whole.clone();
        f[count_at] = n;
        assert!(dec.decode(&f, now).is_err());
    }
    // Every record length, set to every value that is not its own.
    let mut at = 1 + MEETING.len() + 2 + 1 + 2;
    let mut records = 0;
    while at < whole.len() {
        let len = usize::from(u16::from_be_bytes([whole[at + 1], whole[at + 2]]));
        for lie in [0u16, 1, 2, (len as u16).wrapping_add(1), 0xffff] {
            if usize::from(lie) == len {
                continue;
            }
            let mut f = whole.clone();
            f[at + 1..at + 3].copy_from_slice(&lie.to_be_bytes());
            decode_anything(&mut dec, &f, now);
        }
        at += 3 + len;
        records += 1;
    }
    assert_eq!(at, whole.len());
    assert!(records >= every_kind().len());
    // A rid count past the bound.
    let mut f = Vec::new();
    write_head(&mut f, head()).unwrap();
    record(&mut f, TAG_PUBLISHED, |b| {
        put_track(b, &track(1, "1"))?;
        b.push(1);
        b.push(200);
        Ok(())
    })
    .unwrap();
    assert_eq!(dec.decode(&f, now).unwrap_err(), WireError::TooMany);
    // An unknown tag, a bad kind, a codec index past the table.
    let mut f = Vec::new();
    write_head(&mut f, head()).unwrap();
    record(&mut f, 99, |_| Ok(())).unwrap();
    assert_eq!(dec.decode(&f, now).unwrap_err(), WireError::UnknownTag(99));
    let mut f = Vec::new();
    write_head(&mut f, head()).unwrap();
    record(&mut f, TAG_CODEC, |b| {
        b.extend_from_slice(&999u16.to_be_bytes());
        b.extend_from_slice(b"{}");
        Ok(())
    })
    .unwrap();
    assert_eq!(
        dec.decode(&f, now).unwrap_err(),
        WireError::BadCodecIndex(999)
    );
    // An identifier str0m would not have made (it would read back
    // differently) and one that is not UTF-8.
    for mid in [&b"a-b"[..], &[0xff, 0xfe], b""] {
        let mut f = Vec::new();
        write_head(&mut f, head()).unwrap();
        record(&mut f, TAG_UNPUBLISHED, |b| {
            b.extend_from_slice(&1u64.to_be_bytes());
            b.push(mid.len() as u8);
            b.extend_from_slice(mid);
            Ok(())
        })
        .unwrap();
        assert_eq!(dec.decode(&f, now).unwrap_err(), WireError::BadId);
    }
}

#[test]
fn mutated_and_random_frames_never_panic() {
    let now = start();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut enc = Encoder::new();
    let fs = frames(&mut enc, &every_kind(), MAX_FRAME, now);
    let whole = &fs[0];
    let mut dec = Decoder::new();
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut f = whole.clone();
        match round % 4 {
            // Flip a few bytes.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(f.len());
                    f[i] ^= 1 << rng.below(8);
                }
            }
            // Set a byte to an extreme.
            1 => {
                let i = rng.below(f.len());
                f[i] = [0, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            // Cut, or splice in garbage.
            2 => {
                let i = rng.below(f.len());
                let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                f.truncate(i);
                f.extend_from_slice(&junk);
            }
            // Pure noise.
            _ => {
                f = (0..rng.below(2000)).map(|_| rng.next() as u8).collect();
            }
        }
        if dec.decode(&f, now).is_ok() {
            accepted += 1;
        }
        decode_anything(&mut dec, &f, now);
    }
    // Some mutations (a payload byte) leave a valid frame; most do not.
    assert!(accepted > 0 && accepted < 20_000, "{accepted}");
    // Frames longer than the bound are refused before reading.
    let long = vec![0u8; MAX_FRAME + 1];
    assert_eq!(dec.decode(&long, now).unwrap_err(), WireError::TooLong);
}
