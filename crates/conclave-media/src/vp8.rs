//! What the router reads of a VP8 RTP payload: whether a packet starts a key
//! frame, and the picture size a key frame announces.
//!
//! A simulcast switch may only happen where the subscriber's decoder can start
//! over, at a key frame of the new layer; a layer's resolution decides which
//! subscribers it suits. Both are in the first bytes of the packet that starts
//! a frame: the VP8 payload descriptor (RFC 7741 §4.2) and, after it, the VP8
//! payload header (RFC 7741 §4.3, RFC 6386 §9.1). End-to-end encryption leaves
//! exactly those bytes in the clear (the first 10 of a key frame, 3 of a delta
//! frame), so nothing here needs the media key.
//!
//! Pure and total: any byte string gives an answer, never a panic.

/// What the first bytes of a VP8 RTP payload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// The packet starts a key frame (start of partition 0, P bit clear).
    pub keyframe_start: bool,
    /// Width and height from a key frame's header, when it carries them.
    pub size: Option<(u16, u16)>,
}

/// Reads a VP8 RTP payload. A payload too short to tell is "not a key frame".
pub fn parse(payload: &[u8]) -> Vp8Info {
    let Some(header) = payload_header(payload) else {
        return Vp8Info::default();
    };
    let Some(&tag) = header.first() else {
        return Vp8Info::default();
    };
    // P bit (inverse key frame flag) is bit 0 of the frame tag.
    if tag & 0x01 != 0 {
        return Vp8Info::default();
    }
    // Key frame: 3-byte tag, start code 9d 01 2a, then 14-bit width and
    // height (the top two bits of each are the scaling mode).
    let size = match header {
        [_, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1, ..] => {
            let w = u16::from_le_bytes([*w0, *w1]) & 0x3fff;
            let h = u16::from_le_bytes([*h0, *h1]) & 0x3fff;
            Some((w, h))
        }
        _ => None,
    };
    Vp8Info {
        keyframe_start: true,
        size,
    }
}

/// The VP8 payload after the descriptor, if this packet starts partition 0
/// of a frame (S bit set, partition index 0).
fn payload_header(payload: &[u8]) -> Option<&[u8]> {
    let first = *payload.first()?;
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return None;
    }
    let mut at = 1;
    if extended {
        let ext = *payload.get(at)?;
        at += 1;
        // I: picture id, 7 or 15 bits (M bit says which).
        if ext & 0x80 != 0 {
            let pid = *payload.get(at)?;
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        // L: TL0PICIDX.
        if ext & 0x40 != 0 {
            at += 1;
        }
        // T or K: TID/Y/KEYIDX in one byte.
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    payload.get(at..)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key frame header of `w`×`h` after `descriptor`.
    fn keyframe(descriptor: &[u8], w: u16, h: u16) -> Vec<u8> {
        let mut p = descriptor.to_vec();
        p.extend_from_slice(&[0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn key_frame_start_and_size_are_read() {
        let info = parse(&keyframe(&[0x10], 320, 240));
        assert_eq!(
            info,
            Vp8Info {
                keyframe_start: true,
                size: Some((320, 240))
            }
        );
        // Extended descriptor: I with a 15-bit picture id, L, and T.
        let info = parse(&keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40], 1280, 720));
        assert_eq!(info.size, Some((1280, 720)));
        // Scaling bits are not part of the size.
        let info = parse(&keyframe(&[0x10], 0xc000 | 640, 0x4000 | 360));
        assert_eq!(info.size, Some((640, 360)));
    }

    #[test]
    fn delta_frames_and_continuations_are_not_key_frames() {
        // P bit set: a delta frame.
        assert_eq!(parse(&[0x10, 0x31, 0x02, 0x00]), Vp8Info::default());
        // S bit clear: the middle of a frame, even if the bytes look like a key frame.
        let mut cont = keyframe(&[0x10], 320, 240);
        cont[0] = 0x00;
        assert!(!parse(&cont).keyframe_start);
        // Partition 1.
        cont[0] = 0x11;
        assert!(!parse(&cont).keyframe_start);
    }

    #[test]
    fn short_or_garbage_payloads_do_not_panic() {
        for p in [
            &[][..],
            &[0x10],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x80],
            &[0x10, 0x00],
            &[0xff; 5],
        ] {
            let _ = parse(p);
        }
        // A key frame tag cut before its size: a key frame of unknown size.
        assert_eq!(
            parse(&[0x10, 0x50, 0x02, 0x00]),
            Vp8Info {
                keyframe_start: true,
                size: None
            }
        );
    }
}
