//! Bytes on a media worker's ICE-TCP connection, through the RFC 4571
//! deframer the worker reads them with ([`conclave_media::framing`]), cut
//! into reads of the sizes the input's first bytes choose: a read may end
//! anywhere, inside a length prefix included.
//!
//! Checked besides no panic, against RFC 4571 read plainly: every frame
//! handed on is 1 to `MAX_FRAME` bytes; reframing them gives back exactly
//! the bytes taken; however the reads fall, the frames are the stream's and
//! a refusal comes exactly where the stream has a zero or oversized length.

use conclave_media::framing::{Deframer, FrameError, MAX_FRAME, frame, frames};

/// How the input is read: (read sizes, the stream).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let n = usize::from(data.first().copied().unwrap_or(0) % 8);
    let sizes = data.get(1..1 + n).unwrap_or(&[]);
    let stream = data.get(1 + n..).unwrap_or(&[]);
    (sizes, stream)
}

/// The frames a deframer takes from `stream` in reads of `sizes` (cycled;
/// 0 means "whatever fits"), and whether it refused the stream.
fn deframe(stream: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut d = Deframer::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let want = match sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0) {
            0 => stream.len() - at,
            n => usize::from(n).min(stream.len() - at),
        };
        i += 1;
        let fed = d.feed(&stream[at..at + want]);
        assert!(
            fed > 0,
            "the deframer always has room after taking whole frames"
        );
        at += fed;
        match d.complete() {
            Ok(bytes) => {
                let taken: Vec<Vec<u8>> = frames(bytes).map(<[u8]>::to_vec).collect();
                let mut again = Vec::new();
                for f in &taken {
                    assert!(
                        !f.is_empty() && f.len() <= MAX_FRAME,
                        "frame of {}",
                        f.len()
                    );
                    frame(f, &mut again).expect("a frame handed on can be sent");
                }
                assert_eq!(again, bytes, "the frames are exactly the bytes taken");
                out.extend(taken);
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// RFC 4571 read plainly, all at once: the whole frames, and the refusal
/// the deframer must give (a zero or oversized length where it stops).
fn reference(stream: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(prefix) = stream.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if len == 0 {
            return (out, Some(FrameError::Empty));
        }
        if len > MAX_FRAME {
            return (out, Some(FrameError::TooLong(len)));
        }
        let Some(f) = stream.get(at + 2..at + 2 + len) else {
            break;
        };
        out.push(f.to_vec());
        at += 2 + len;
    }
    (out, None)
}

pub fn run(data: &[u8]) {
    let (sizes, stream) = split(data);
    let (got, refused) = deframe(stream, sizes);
    let (expected, expected_refusal) = reference(stream);
    assert_eq!(refused, expected_refusal, "the verdict");
    if refused.is_none() {
        assert_eq!(got, expected, "the frames, however the reads fall");
    } else {
        // A refused stream closes the connection: the frames read with the
        // bad length are dropped with it, so fewer may come out, never others.
        assert!(expected.starts_with(&got), "frames before the refusal");
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let stream = |packets: &[&[u8]]| {
        let mut out = Vec::new();
        for p in packets {
            frame(p, &mut out).expect("seed frame");
        }
        out
    };
    // A STUN binding request's header, a DTLS record's, an RTP packet's.
    let stun = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let dtls = [0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa];
    let rtp = [
        0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0x90, 0x91,
    ];
    let big = vec![0x80; MAX_FRAME];
    let mut seeds = Vec::new();
    for (reads, body) in [
        (vec![0u8], stream(&[&stun])),
        (vec![3, 1, 7, 2], stream(&[&stun, &dtls, &rtp])),
        (vec![1, 1], stream(&[&rtp, &rtp, &rtp])),
        (vec![2, 200, 255], stream(&[&big, &rtp])),
        (vec![0], [stream(&[&rtp]), vec![0, 0]].concat()),
        (vec![1, 5], [stream(&[&dtls]), vec![0xff, 0xff, 1]].concat()),
    ] {
        let mut s = vec![u8::try_from(reads.len()).unwrap_or(0)];
        s.extend(reads);
        s.extend(body);
        seeds.push(s);
    }
    seeds
}
