//! The codecs the router forwards, and the check that an offer can use them.
//!
//! Forwarding needs the publisher and every subscriber to speak the same
//! codec, so the router negotiates one fixed set with everyone: Opus for
//! audio, VP8 for video (the two every WebRTC endpoint must implement, RFC
//! 7874 and RFC 7742). An offer that wants to send on an m-line with none of
//! them is refused before it touches any session, so a member learns why and
//! nothing changes; str0m alone would accept it and quietly reject the line.

use str0m::RtcConfig;

/// Codec names as in `a=rtpmap`, lower case.
const FORWARDED: [&str; 2] = ["opus", "vp8"];

/// Restricts a session to the forwarded codecs.
/// With `playout_delay`, also the playout-delay header extension, at the
/// id Chromium offers it on: the fast path asks subscribers for a minimum
/// delay with it while their publisher's hop needs repairs (`playout.rs`).
pub(crate) fn configure(mut config: RtcConfig, playout_delay: bool) -> RtcConfig {
    if playout_delay {
        config
            .extension_map()
            .set(5, str0m::rtp::Extension::PlayoutDelay);
    }
    config
        .clear_codecs()
        // RED (RFC 2198) around Opus where a member offers it: its blocks are
        // encrypted one by one, so a subscriber without RED gets the primary
        // block as plain Opus (red.rs).
        .enable_opus(true, true)
        .enable_vp8(true)
}

/// The mids of audio/video m-lines in `sdp` that would send but offer no
/// forwarded codec. Only reads `m=`, `a=mid`, direction and `a=rtpmap` lines;
/// anything else is str0m's to validate.
pub(crate) fn unusable_send_lines(sdp: &str) -> Vec<String> {
    struct Section {
        media: bool,
        disabled: bool,
        sending: bool,
        mid: String,
        usable: bool,
    }
    fn finish(section: Option<Section>, out: &mut Vec<String>) {
        if let Some(s) = section
            && s.media
            && !s.disabled
            && s.sending
            && !s.usable
        {
            out.push(s.mid);
        }
    }
    let mut out = Vec::new();
    let mut current: Option<Section> = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            finish(current.take(), &mut out);
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or("");
            current = Some(Section {
                media: kind == "audio" || kind == "video",
                disabled: fields.next() == Some("0"),
                // Without a direction attribute an m-line is sendrecv (RFC 8866 §6.7).
                sending: true,
                mid: String::new(),
                usable: false,
            });
            continue;
        }
        let Some(s) = current.as_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            s.mid = mid.to_string();
        } else if line == "a=recvonly" || line == "a=inactive" {
            s.sending = false;
        } else if line == "a=sendonly" || line == "a=sendrecv" {
            s.sending = true;
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let name = map
                .split_whitespace()
                .nth(1)
                .and_then(|enc| enc.split('/').next())
                .unwrap_or("");
            if FORWARDED.iter().any(|c| name.eq_ignore_ascii_case(c)) {
                s.usable = true;
            }
        }
    }
    finish(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_lines_need_opus_or_vp8() {
        let sdp = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
            a=mid:1\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
            a=mid:2\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 102\r\n\
            a=mid:3\r\na=rtpmap:102 H264/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\n\
            a=mid:4\r\na=rtpmap:102 H264/90000\r\na=rtpmap:96 VP8/90000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 97\r\n\
            a=mid:5\r\na=rtpmap:97 AV1/90000\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:6\r\n";
        assert_eq!(unusable_send_lines(sdp), vec!["1", "5"]);
    }

    #[test]
    fn garbage_finds_nothing_and_does_not_panic() {
        for sdp in [
            "",
            "m=",
            "m=video",
            "a=rtpmap:",
            "m=audio 9\na=rtpmap:1\na=mid:",
        ] {
            let _ = unusable_send_lines(sdp);
        }
        assert_eq!(unusable_send_lines("m=audio 9 x 1\na=mid:a"), vec!["a"]);
    }
}
