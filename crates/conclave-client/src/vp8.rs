//! What the client reads of a VP8 frame's header (RFC 6386 §9.1): whether
//! it is a key frame, and a key frame's picture size.

/// Whether a VP8 frame is a key frame (bit 0 of the frame tag is 0 for key
/// frames).
pub(crate) fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// Width and height from a VP8 key frame's header; `None` for a frame that
/// is not a key frame or is too short.
pub(crate) fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    match frame {
        [tag, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1, ..] if tag & 1 == 0 => Some((
            u16::from_le_bytes([*w0, *w1]) & 0x3fff,
            u16::from_le_bytes([*h0, *h1]) & 0x3fff,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_frame_header_gives_its_size_and_a_delta_frame_none() {
        let key = [
            0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xff,
        ];
        assert!(is_keyframe(&key));
        assert_eq!(keyframe_size(&key), Some((320, 240)));
        let mut delta = key;
        delta[0] |= 1;
        assert!(!is_keyframe(&delta));
        assert_eq!(keyframe_size(&delta), None);
        assert_eq!(keyframe_size(&key[..9]), None);
        assert!(!is_keyframe(&[]));
    }
}
