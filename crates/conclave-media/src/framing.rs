//! RFC 4571 framing for ICE-TCP, sans-IO like the router: a stream carries
//! packets as a 2-byte big-endian length followed by that many bytes. A
//! driver that accepts ICE-TCP connections ([`crate::RouterConfig::tcp_candidates`])
//! reads into [`Deframer::spare`] and hands what [`Deframer::complete`]
//! returns on in one piece: one allocation per read, not per packet, walked
//! with [`frames`]; the router's TCP transmits go out through [`frame`].
//!
//! A length the router could never use (zero, or more than [`MAX_FRAME`])
//! is an error, not something to skip: the stream cannot be resynchronised,
//! and no honest client sends one, so the connection is closed.

use std::ops::Range;

/// Largest packet accepted or sent on a TCP connection: the largest datagram
/// the server's UDP path reads (2048), so a peer's packets are the same
/// either way (str0m keeps its own under its MTU, about 1,150 bytes).
pub const MAX_FRAME: usize = 2048;
/// Bytes read from a connection at most per system call. Larger than one
/// whole frame with its prefix, so after the complete frames are taken a
/// partial one always fits, and a burst of small packets is one read.
pub const READ_BUFFER: usize = 16 * 1024;
const PREFIX: usize = 2;

const _: () = assert!(READ_BUFFER >= 2 * (PREFIX + MAX_FRAME));

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a zero-length frame")]
    Empty,
    #[error("a frame of {0} bytes, over the limit of {MAX_FRAME}")]
    TooLong(usize),
}

/// The read side of one connection: a fixed buffer, the bytes read and not
/// yet taken as whole frames.
pub struct Deframer {
    buf: Box<[u8]>,
    /// Bytes not yet returned by [`Deframer::complete`].
    pending: Range<usize>,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    pub fn new() -> Self {
        Deframer {
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            pending: 0..0,
        }
    }

    /// Where the next read goes. Never empty: [`Deframer::complete`] leaves
    /// at most one partial frame, which is smaller than the buffer.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.pending.start > 0 {
            self.buf.copy_within(self.pending.clone(), 0);
            self.pending = 0..self.pending.len();
        }
        &mut self.buf[self.pending.end..]
    }

    /// `n` bytes were read into [`Deframer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.pending.end = (self.pending.end + n).min(self.buf.len());
    }

    /// Copies in as much of `data` as fits; returns how much. For bytes
    /// already in hand (tests, the fuzz target).
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = data.len().min(spare.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.filled(n);
        n
    }

    /// The whole frames read so far, prefixes included (walk them with
    /// [`frames`]), taken out of the buffer; a partial one stays for the
    /// next read. An error means the stream is unusable from here on.
    pub fn complete(&mut self) -> Result<&[u8], FrameError> {
        let start = self.pending.start;
        let mut at = start;
        while let Some(prefix) = self
            .buf
            .get(at..at + PREFIX)
            .filter(|_| at + PREFIX <= self.pending.end)
        {
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if len == 0 {
                return Err(FrameError::Empty);
            }
            if len > MAX_FRAME {
                return Err(FrameError::TooLong(len));
            }
            if at + PREFIX + len > self.pending.end {
                break;
            }
            at += PREFIX + len;
        }
        self.pending.start = at;
        Ok(&self.buf[start..at])
    }
}

/// The packets in bytes [`Deframer::complete`] returned. On anything else a
/// truncated last frame ends the walk.
pub fn frames(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (prefix, rest) = bytes.split_first_chunk::<PREFIX>()?;
        let len = usize::from(u16::from_be_bytes(*prefix));
        let (frame, rest) = rest.split_at_checked(len)?;
        bytes = rest;
        Some(frame)
    })
}

/// Appends `packet` to `out` with its length prefix.
pub fn frame(packet: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    match packet.len() {
        0 => Err(FrameError::Empty),
        n if n > MAX_FRAME => Err(FrameError::TooLong(n)),
        n => {
            // MAX_FRAME < 65536: the length fits.
            out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(packet);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            frame(p, &mut out).expect("frame");
        }
        out
    }

    fn take(d: &mut Deframer) -> Vec<Vec<u8>> {
        frames(d.complete().expect("valid"))
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn several_frames_in_one_read_come_out_in_order() {
        let mut d = Deframer::new();
        d.feed(&framed(&[b"one", b"two", &[7; 1200]]));
        assert_eq!(
            take(&mut d),
            vec![b"one".to_vec(), b"two".to_vec(), vec![7; 1200]]
        );
        assert!(take(&mut d).is_empty());
    }

    #[test]
    fn a_frame_split_anywhere_comes_out_whole_once() {
        let bytes = framed(&[b"hello", &[9; 1000], b"x"]);
        for cut in 0..bytes.len() {
            let mut d = Deframer::new();
            d.feed(&bytes[..cut]);
            let mut got = take(&mut d);
            d.feed(&bytes[cut..]);
            got.extend(take(&mut d));
            assert_eq!(
                got,
                vec![b"hello".to_vec(), vec![9; 1000], b"x".to_vec()],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn byte_by_byte_reads_fill_the_buffer_many_times_over() {
        let packets: Vec<Vec<u8>> = (0..200u16)
            .map(|i| vec![i as u8; 1 + usize::from(i) * 7 % MAX_FRAME])
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let bytes = framed(&refs);
        let mut d = Deframer::new();
        let mut got = Vec::new();
        for b in &bytes {
            assert_eq!(d.feed(&[*b]), 1);
            got.extend(take(&mut d));
        }
        assert_eq!(got, packets);
    }

    #[test]
    fn zero_and_oversized_lengths_are_errors_even_before_their_bytes() {
        let mut d = Deframer::new();
        d.feed(&[0, 0]);
        assert_eq!(d.complete().err(), Some(FrameError::Empty));

        let mut d = Deframer::new();
        d.feed(&framed(&[b"ok"]));
        let over = u16::try_from(MAX_FRAME + 1).expect("fits");
        d.feed(&over.to_be_bytes());
        assert_eq!(d.complete().err(), Some(FrameError::TooLong(MAX_FRAME + 1)));

        let mut d = Deframer::new();
        d.feed(&[0xff, 0xff, 1, 2, 3]);
        assert_eq!(d.complete().err(), Some(FrameError::TooLong(65535)));
    }

    #[test]
    fn the_largest_frame_fits_and_a_larger_or_empty_one_is_not_sent() {
        let mut d = Deframer::new();
        let big = vec![1u8; MAX_FRAME];
        d.feed(&framed(&[&big]));
        assert_eq!(take(&mut d), vec![big]);

        let mut out = Vec::new();
        assert_eq!(frame(&[], &mut out), Err(FrameError::Empty));
        assert_eq!(
            frame(&vec![0; MAX_FRAME + 1], &mut out),
            Err(FrameError::TooLong(MAX_FRAME + 1))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn garbage_never_panics_and_a_partial_frame_always_leaves_room() {
        // A cheap deterministic generator: every byte pattern a read could
        // bring, including prefixes split across reads.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut d = Deframer::new();
            loop {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let n = (x % 64) as usize;
                let chunk: Vec<u8> = (0..n).map(|i| (x >> (i % 24)) as u8 % 9).collect();
                assert!(!d.spare().is_empty());
                d.feed(&chunk);
                match d.complete() {
                    Ok(b) => assert!(frames(b).all(|f| !f.is_empty() && f.len() <= MAX_FRAME)),
                    Err(_) => break,
                }
                if x.is_multiple_of(97) {
                    break;
                }
            }
        }
        assert_eq!(frames(&[0, 5, 1]).count(), 0);
        assert_eq!(frames(&[0]).count(), 0);
    }
}
