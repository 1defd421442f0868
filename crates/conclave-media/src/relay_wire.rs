//! [`Relayed`] messages as bytes, for the media link between nodes
//! (issue 23, cascading): sans-IO, no clock of its own, strict on input.
//!
//! A *frame* is what one link datagram carries (inside its encryption, see
//! [`crate::link`]): the meeting's ID (the link multiplexes meetings), the
//! sending shard and the receiving ones (each node's own worker indices:
//! a packet for several shards of the meeting on the receiving node
//! crosses once), then records, one per message:
//!
//! ```text
//! frame  = meeting_len u8 | meeting | from u16 | to_count u8 | to u8* | record*
//! record = tag u8 | body_len u16 | body
//! ```
//!
//! A packet ([`Relayed::Rtp`]) keeps what the receiving shard reads: the
//! track and layer, the payload type, marker, extended sequence number,
//! timestamp, SSRC, and the media extensions the router passes on (audio
//! level with voice activity, video orientation, content type). The
//! payload is copied as it is: SFrame ciphertext.
//!
//! The publisher's codec parameters (`PayloadParams`) are not repeated per
//! packet: each direction of a link keeps a codec table, and a packet names
//! an entry by its index. An entry is defined by a `Codec` record (str0m's
//! own serde form of the parameters) in the frame of the first packet that
//! uses it, and again in a frame at most every [`DEFINE_AGAIN`], so a
//! definition lost past the link's repair is replaced soon; a packet whose
//! entry the receiver lacks is skipped and counted. The table lives on the
//! link, not in [`Relayed::Published`], because a track's parameters are
//! only known per packet (RED and its primary codec share a track, and a
//! publisher may change payload types on renegotiation), and so the
//! in-process hand-off stays as it is.
//!
//! Decoding never panics: every length is checked against what is left,
//! and every count against a named bound; a frame with one malformed record
//! is refused whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpHeader, SeqNo, VideoOrientation};

use crate::peer::{PeerId, TrackId};
use crate::relay::{MediaPacket, Relayed};

/// Longest meeting ID a frame carries.
pub const MAX_MEETING_ID: usize = 32;
/// Most receiving shards a frame names.
pub const MAX_TO: usize = 64;
/// Most simulcast layers a `Published` or `Wanted` names.
pub const MAX_RIDS: usize = 16;
/// Entries in a link direction's codec table; past it, indexes are reused
/// from the oldest.
pub const MAX_CODECS: usize = 256;
/// Longest frame the encoder makes (one message alone may exceed the
/// caller's target up to this) and the decoder takes.
pub const MAX_FRAME: usize = 16 * 1024;
/// Longest serialized codec definition accepted.
const MAX_CODEC_DEF: usize = 2048;
/// A codec entry in use is defined again at most this often.
pub const DEFINE_AGAIN: Duration = Duration::from_secs(1);

const FRAME_HEADER_MIN: usize = 1 + 2 + 1;
const RECORD_HEADER: usize = 1 + 2;

const TAG_HELLO: u8 = 1;
const TAG_PUBLISHED: u8 = 2;
const TAG_UNPUBLISHED: u8 = 3;
const TAG_RTP: u8 = 4;
const TAG_KEY_FRAME: u8 = 5;
const TAG_WANTED: u8 = 6;
const TAG_CODEC: u8 = 7;

const FLAG_MARKER: u8 = 1;
const FLAG_AUDIO_LEVEL: u8 = 1 << 1;
const FLAG_VOICE: u8 = 1 << 2;
const FLAG_VOICE_ON: u8 = 1 << 3;
const FLAG_ORIENTATION: u8 = 1 << 4;
const FLAG_CONTENT_TYPE: u8 = 1 << 5;

/// No rid, where an optional rid is written.
const NO_RID: u8 = 0xff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame ends early")]
    Truncated,
    #[error("frame longer than {MAX_FRAME} bytes")]
    TooLong,
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    #[error("record body length does not match its content")]
    BadLength,
    #[error("identifier is not the ASCII an SDP token allows")]
    BadId,
    #[error("count past its bound")]
    TooMany,
    #[error("unknown media kind {0}")]
    BadKind(u8),
    #[error("codec definition does not parse")]
    BadCodec,
    #[error("codec index {0} out of range")]
    BadCodecIndex(u16),
    #[error("meeting ID longer than {MAX_MEETING_ID} bytes")]
    MeetingId,
    #[error("no receiving shard, or more than {MAX_TO}")]
    Receivers,
}

/// Who a frame is from and for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead<'a> {
    pub meeting: &'a [u8],
    /// The sending node's worker (its shard of the meeting).
    pub from: u16,
    /// The receiving node's workers (each with a shard of the meeting).
    pub to: &'a [u8],
}

/// The sending side of one link direction: its codec table.
#[derive(Default)]
pub struct Encoder {
    codecs: Vec<(PayloadParams, Option<Instant>)>,
    /// Where the next new entry goes once the table is full.
    next_reuse: usize,
    /// Buffers kept between calls: no allocation per packet.
    frame: Vec<u8>,
    record: Vec<u8>,
}

/// The receiving side of one link direction: its codec table.
#[derive(Default)]
pub struct Decoder {
    codecs: Vec<Option<PayloadParams>>,
}

/// One frame, decoded.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub head: FrameHead<'a>,
    pub items: Vec<Relayed>,
    /// Packets skipped because their codec entry is not (yet) known here.
    pub unknown_codec: u32,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `items` into frames for `head`, each at most `target` bytes
    /// unless one message alone is longer (then it goes alone, up to
    /// [`MAX_FRAME`]), and hands each to `emit`. Returns how many messages
    /// were left out because they cannot be encoded (too long).
    pub fn encode_batch<'i>(
        &mut self,
        head: FrameHead<'_>,
        items: impl IntoIterator<Item = &'i Relayed>,
        target: usize,
        now: Instant,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<usize, WireError> {
        let target = target.min(MAX_FRAME);
        let mut frame = std::mem::take(&mut self.frame);
        let mut record = std::mem::take(&mut self.record);
        frame.clear();
        write_head(&mut frame, head)?;
        let empty = frame.len();
        let mut skipped = 0;
        for item in items {
            record.clear();
            if self.encode_item(item, now, &mut record).is_err() {
                skipped += 1;
                continue;
            }
            if frame.len() + record.len() > target && frame.len() > empty {
                emit(&frame);
                frame.truncate(empty);
            }
            if empty + record.len() > MAX_FRAME {
                skipped += 1;
                continue;
            }
            frame.extend_from_slice(&record);
        }
        if frame.len() > empty {
            emit(&frame);
        }
        self.frame = frame;
        self.record = record;
        Ok(skipped)
    }

    /// One message's record(s): a packet whose codec entry is new or due
    /// is preceded by the entry's definition.
    fn encode_item(
        &mut self,
        item: &Relayed,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        match item {
            Relayed::Hello => record(out, TAG_HELLO, |_| Ok(())),
            Relayed::Published { track, kind, rids } => record(out, TAG_PUBLISHED, |b| {
                put_track(b, track)?;
                b.push(match kind {
                    MediaKind::Audio => 0,
                    MediaKind::Video => 1,
                });
                put_rids(b, rids)
            }),
            Relayed::Unpublished { track } => record(out, TAG_UNPUBLISHED, |b| put_track(b, track)),
            Relayed::KeyFrame { track, rid } => record(out, TAG_KEY_FRAME, |b| {
                put_track(b, track)?;
                put_rid(b, *rid);
                Ok(())
            }),
            Relayed::Wanted { track, layers } => record(out, TAG_WANTED, |b| {
                put_track(b, track)?;
                match layers {
                    None => b.push(0),
                    Some(rids) => {
                        b.push(1);
                        put_rids(b, rids)?;
                    }
                }
                Ok(())
            }),
            Relayed::Rtp {
                track,
                rid,
                params,
                packet,
            } => {
                let (index, define) = self.codec_index(params, now);
                if define {
                    let def = serde_json::to_vec(params).map_err(|_| WireError::BadCodec)?;
                    if def.len() > MAX_CODEC_DEF {
                        return Err(WireError::BadCodec);
                    }
                    record(out, TAG_CODEC, |b| {
                        b.extend_from_slice(&index.to_be_bytes());
                        b.extend_from_slice(&def);
                        Ok(())
                    })?;
                }
                record(out, TAG_RTP, |b| {
                    put_track(b, track)?;
                    put_rid(b, *rid);
                    b.extend_from_slice(&index.to_be_bytes());
                    put_packet(b, packet);
                    Ok(())
                })
            }
        }
    }

    /// The entry for `params`, and whether its definition goes first.
    fn codec_index(&mut self, params: &PayloadParams, now: Instant) -> (u16, bool) {
        let found = self.codecs.iter().position(|(p, _)| p == params);
        let i = match found {
            Some(i) => i,
            None if self.codecs.len() < MAX_CODECS => {
                self.codecs.push((*params, None));
                self.codecs.len() - 1
            }
            None => {
                let i = self.next_reuse % MAX_CODECS;
                self.next_reuse = i + 1;
                self.codecs[i] = (*params, None);
                i
            }
        };
        let entry = &mut self.codecs[i];
        let due = entry
            .1
            .is_none_or(|at| now.saturating_duration_since(at) >= DEFINE_AGAIN);
        if due {
            entry.1 = Some(now);
        }
        // MAX_CODECS fits u16.
        (u16::try_from(i).unwrap_or(u16::MAX), due)
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one frame. Packets take `now` as their arrival (a clock
    /// reading does not cross nodes). Codec definitions in a frame refused
    /// for a later malformed record are not kept either.
    pub fn decode<'a>(&mut self, frame: &'a [u8], now: Instant) -> Result<Decoded<'a>, WireError> {
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLong);
        }
        let mut r = Reader(frame);
        let head = read_head(&mut r)?;
        let mut items = Vec::new();
        let mut defined: Vec<(u16, PayloadParams)> = Vec::new();
        let mut unknown_codec = 0;
        while !r.0.is_empty() {
            let tag = r.u8()?;
            let len = usize::from(r.u16()?);
            let mut b = Reader(r.take(len)?);
            match tag {
                TAG_HELLO => items.push(Relayed::Hello),
                TAG_PUBLISHED => {
                    let track = b.track()?;
                    let kind = match b.u8()? {
                        0 => MediaKind::Audio,
                        1 => MediaKind::Video,
                        k => return Err(WireError::BadKind(k)),
                    };
                    let rids = b.rids()?;
                    items.push(Relayed::Published { track, kind, rids });
                }
                TAG_UNPUBLISHED => items.push(Relayed::Unpublished { track: b.track()? }),
                TAG_KEY_FRAME => {
                    let track = b.track()?;
                    let rid = b.opt_rid()?;
                    items.push(Relayed::KeyFrame { track, rid });
                }
                TAG_WANTED => {
                    let track = b.track()?;
                    let layers = match b.u8()? {
                        0 => None,
                        1 => Some(b.rids()?),
                        _ => return Err(WireError::BadLength),
                    };
                    items.push(Relayed::Wanted { track, layers });
                }
                TAG_CODEC => {
                    let index = b.u16()?;
                    if usize::from(index) >= MAX_CODECS {
                        return Err(WireError::BadCodecIndex(index));
                    }
                    let def = b.take(b.0.len())?;
                    if def.len() > MAX_CODEC_DEF {
                        return Err(WireError::BadCodec);
                    }
                    let params: PayloadParams =
                        serde_json::from_slice(def).map_err(|_| WireError::BadCodec)?;
                    defined.push((index, params));
                }
                TAG_RTP => {
                    let track = b.track()?;
                    let rid = b.opt_rid()?;
                    let index = b.u16()?;
                    if usize::from(index) >= MAX_CODECS {
                        return Err(WireError::BadCodecIndex(index));
                    }
                    let packet = b.packet(now)?;
                    let params = defined
                        .iter()
                        .rev()
                        .find(|(i, _)| *i == index)
                        .map(|(_, p)| *p)
                        .or_else(|| self.codecs.get(usize::from(index)).copied().flatten());
                    match params {
                        Some(params) => items.push(Relayed::Rtp {
                            track,
                            rid,
                            params,
                            packet,
                        }),
                        None => unknown_codec += 1,
                    }
                }
                t => return Err(WireError::UnknownTag(t)),
            }
            if !b.0.is_empty() && tag != TAG_RTP {
                return Err(WireError::BadLength);
            }
        }
        for (index, params) in defined {
            let i = usize::from(index);
            if self.codecs.len() <= i {
                self.codecs.resize(i + 1, None);
            }
            self.codecs[i] = Some(params);
        }
        Ok(Decoded {
            head,
            items,
            unknown_codec,
        })
    }
}

/// Reads only a frame's head: which meeting and shards it is for.
pub fn frame_head(frame: &[u8]) -> Result<FrameHead<'_>, WireError> {
    read_head(&mut Reader(frame))
}

fn write_head(out: &mut Vec<u8>, head: FrameHead<'_>) -> Result<(), WireError> {
    let len = u8::try_from(head.meeting.len()).map_err(|_| WireError::MeetingId)?;
    if usize::from(len) > MAX_MEETING_ID {
        return Err(WireError::MeetingId);
    }
    out.push(len);
    out.extend_from_slice(head.meeting);
    out.extend_from_slice(&head.from.to_be_bytes());
    let n = u8::try_from(head.to.len()).map_err(|_| WireError::Receivers)?;
    if n == 0 || usize::from(n) > MAX_TO {
        return Err(WireError::Receivers);
    }
    out.push(n);
    out.extend_from_slice(head.to);
    Ok(())
}

fn read_head<'a>(r: &mut Reader<'a>) -> Result<FrameHead<'a>, WireError> {
    if r.0.len() < FRAME_HEADER_MIN {
        return Err(WireError::Truncated);
    }
    let len = usize::from(r.u8()?);
    if len > MAX_MEETING_ID {
        return Err(WireError::MeetingId);
    }
    let meeting = r.take(len)?;
    let from = r.u16()?;
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_TO {
        return Err(WireError::Receivers);
    }
    Ok(FrameHead {
        meeting,
        from,
        to: r.take(n)?,
    })
}

/// Writes a record whose body `body` appends.
fn record(
    out: &mut Vec<u8>,
    tag: u8,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0, 0]);
    body(out)?;
    let len = out.len() - start - RECORD_HEADER;
    let len = u16::try_from(len).map_err(|_| WireError::TooLong)?;
    out[start + 1..start + RECORD_HEADER].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    let len = u8::try_from(s.len()).map_err(|_| WireError::BadId)?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_track(out: &mut Vec<u8>, track: &TrackId) -> Result<(), WireError> {
    out.extend_from_slice(&track.publisher.0.to_be_bytes());
    put_str(out, &track.mid)
}

fn put_rid(out: &mut Vec<u8>, rid: Option<Rid>) {
    match rid {
        None => out.push(NO_RID),
        Some(r) => {
            // A rid is at most 8 bytes (str0m's).
            out.push(u8::try_from(r.len()).unwrap_or(0));
            out.extend_from_slice(r.as_bytes());
        }
    }
}

fn put_rids(out: &mut Vec<u8>, rids: &[Option<Rid>]) -> Result<(), WireError> {
    let n = u8::try_from(rids.len()).map_err(|_| WireError::TooMany)?;
    if usize::from(n) > MAX_RIDS {
        return Err(WireError::TooMany);
    }
    out.push(n);
    for r in rids {
        put_rid(out, *r);
    }
    Ok(())
}

fn put_packet(out: &mut Vec<u8>, p: &MediaPacket) {
    let h = &p.header;
    let e = &h.ext_vals;
    let mut flags = 0;
    if h.marker {
        flags |= FLAG_MARKER;
    }
    if e.audio_level.is_some() {
        flags |= FLAG_AUDIO_LEVEL;
    }
    if let Some(v) = e.voice_activity {
        flags |= FLAG_VOICE;
        if v {
            flags |= FLAG_VOICE_ON;
        }
    }
    if e.video_orientation.is_some() {
        flags |= FLAG_ORIENTATION;
    }
    if e.video_content_type.is_some() {
        flags |= FLAG_CONTENT_TYPE;
    }
    out.push(*h.payload_type);
    out.push(flags);
    out.extend_from_slice(&(*p.seq_no).to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&(*h.ssrc).to_be_bytes());
    if let Some(l) = e.audio_level {
        out.push(l.to_be_bytes()[0]);
    }
    if let Some(o) = e.video_orientation {
        out.push(o as u8);
    }
    if let Some(c) = e.video_content_type {
        out.push(c);
    }
    out.extend_from_slice(&p.payload);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// An SDP token of at most `max` bytes; refused unless it is what
    /// str0m itself would make of it (so it reads back unchanged).
    fn token(&mut self, len: usize, max: usize) -> Result<&'a str, WireError> {
        if len == 0 || len > max {
            return Err(WireError::BadId);
        }
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| WireError::BadId)?;
        if !s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(WireError::BadId);
        }
        Ok(s)
    }

    fn track(&mut self) -> Result<TrackId, WireError> {
        let publisher = PeerId(self.u64()?);
        let len = usize::from(self.u8()?);
        let mid = Mid::from(self.token(len, 16)?);
        Ok(TrackId { publisher, mid })
    }

    fn opt_rid(&mut self) -> Result<Option<Rid>, WireError> {
        match self.u8()? {
            NO_RID => Ok(None),
            len => Ok(Some(Rid::from(self.token(usize::from(len), 8)?))),
        }
    }

    fn rids(&mut self) -> Result<Vec<Option<Rid>>, WireError> {
        let n = usize::from(self.u8()?);
        if n > MAX_RIDS {
            return Err(WireError::TooMany);
        }
        (0..n).map(|_| self.opt_rid()).collect()
    }

    /// The rest of the record is the packet.
    fn packet(&mut self, now: Instant) -> Result<MediaPacket, WireError> {
        let pt = self.u8()?;
        if pt > 127 {
            return Err(WireError::BadLength);
        }
        let flags = self.u8()?;
        let seq = self.u64()?;
        let timestamp = self.u32()?;
        let ssrc = self.u32()?;
        let mut ext = ExtensionValues::default();
        if flags & FLAG_AUDIO_LEVEL != 0 {
            let level = i8::from_be_bytes([self.u8()?]);
            // RFC 6464: 0 to -127 dBov.
            if level > 0 {
                return Err(WireError::BadLength);
            }
            ext.audio_level = Some(level);
        }
        if flags & FLAG_VOICE != 0 {
            ext.voice_activity = Some(flags & FLAG_VOICE_ON != 0);
        }
        if flags & FLAG_ORIENTATION != 0 {
            let o = self.u8()?;
            if o > 3 {
                return Err(WireError::BadLength);
            }
            ext.video_orientation = Some(VideoOrientation::from(o));
        }
        if flags & FLAG_CONTENT_TYPE != 0 {
            ext.video_content_type = Some(self.u8()?);
        }
        let payload: Arc<[u8]> = Arc::from(self.take(self.0.len())?);
        let header = RtpHeader {
            marker: flags & FLAG_MARKER != 0,
            payload_type: pt.into(),
            // The low 16 bits of the extended number are the wire's.
            sequence_number: (seq & 0xffff) as u16,
            timestamp,
            ssrc: ssrc.into(),
            ext_vals: ext,
            ..Default::default()
        };
        Ok(MediaPacket {
            seq_no: SeqNo::from(seq),
            header,
            payload,
            timestamp: now,
        })
    }
}

#[cfg(test)]
mod tests;
