//! Writing received tracks to files ffmpeg reads: VP8 video to IVF, Opus
//! audio to Ogg. Frames arrive already decrypted (the recorder is a member
//! of the meeting's MLS group like anyone else).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use conclave_proto::{MediaKind, ParticipantId};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use crate::ivf::IvfWriter;
use crate::media::ReceivedFrame;
use crate::vp8;

/// RTP clock of VP8; Opus's is 48 kHz, the Ogg granule rate, so its RTP
/// times serve as granule positions directly.
const VIDEO_CLOCK: u32 = 90_000;
/// Samples in one 20 ms Opus packet, the WebRTC default.
const OPUS_PACKET_SAMPLES: u64 = 960;

/// What was written for one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTrack {
    pub path: PathBuf,
    pub participant: Option<ParticipantId>,
    pub kind: MediaKind,
    pub frames: u64,
}

enum Sink {
    /// The IVF header needs the picture size, known from the first key
    /// frame; frames before it cannot be decoded and are skipped.
    Video {
        writer: Option<IvfWriter<BufWriter<File>>>,
        first_time: u64,
    },
    /// One packet is held back so the last can carry the end-of-stream flag.
    Audio {
        writer: PacketWriter<'static, BufWriter<File>>,
        first_time: u64,
        held: Option<(Vec<u8>, u64)>,
    },
}

struct Track {
    path: PathBuf,
    participant: Option<ParticipantId>,
    kind: MediaKind,
    frames: u64,
    sink: Sink,
}

/// The files of one recording, one per received track.
pub struct Recording {
    dir: PathBuf,
    tracks: BTreeMap<String, Track>,
    /// Tracks of earlier peer connections ([`Recording::new_peer`]),
    /// finished with the rest.
    earlier: Vec<Track>,
    /// Peer connections before this one: their mids name other tracks.
    peers_before: u32,
}

/// RFC 7845 §5.1: the identification header. Two channels: a decoder
/// handles a mono stream signalled as stereo, not the reverse.
fn opus_head() -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: unknown for a live stream
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family
    h
}

/// RFC 7845 §5.2: the comment header, with no comments.
fn opus_tags() -> Vec<u8> {
    let vendor = b"conclave";
    let mut t = Vec::with_capacity(8 + 4 + vendor.len() + 4);
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

impl Recording {
    /// Records into `dir`, which is created if missing.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Recording {
            dir: dir.to_path_buf(),
            tracks: BTreeMap::new(),
            earlier: Vec::new(),
            peers_before: 0,
        })
    }

    /// The session's media goes on over a new peer connection (after a
    /// resume), whose mids may name other tracks than the old one's: new
    /// frames go to new files (named with `-rN`), never into an old one.
    pub fn new_peer(&mut self) {
        self.earlier
            .extend(std::mem::take(&mut self.tracks).into_values());
        self.peers_before += 1;
    }

    pub fn write(&mut self, frame: &ReceivedFrame) -> io::Result<()> {
        let Some(kind) = frame.kind else {
            return Ok(()); // a track the server never described
        };
        if !self.tracks.contains_key(&frame.mid) {
            let track = self.open(frame, kind)?;
            self.tracks.insert(frame.mid.clone(), track);
        }
        let Some(track) = self.tracks.get_mut(&frame.mid) else {
            return Ok(());
        };
        let written = match &mut track.sink {
            Sink::Video { writer, first_time } => {
                if writer.is_none() {
                    let Some((w, h)) = vp8::keyframe_size(&frame.data) else {
                        return Ok(());
                    };
                    let file = BufWriter::new(File::create(&track.path)?);
                    *writer = Some(IvfWriter::new(file, *b"VP80", w, h, VIDEO_CLOCK)?);
                    *first_time = frame.rtp_time;
                }
                match writer {
                    Some(w) => {
                        w.write_frame(frame.rtp_time.saturating_sub(*first_time), &frame.data)?;
                        true
                    }
                    None => false,
                }
            }
            Sink::Audio {
                writer,
                first_time,
                held,
            } => {
                if track.frames == 0 {
                    *first_time = frame.rtp_time;
                }
                let granule = frame.rtp_time.saturating_sub(*first_time) + OPUS_PACKET_SAMPLES;
                if let Some((data, g)) = held.replace((frame.data.clone(), granule)) {
                    writer.write_packet(data, 1, PacketWriteEndInfo::NormalPacket, g)?;
                }
                true
            }
        };
        if written {
            track.frames += 1;
        }
        Ok(())
    }

    fn open(&self, frame: &ReceivedFrame, kind: MediaKind) -> io::Result<Track> {
        let who = frame
            .participant
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into());
        let kind_name = match kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Screen => "screen",
        };
        // Mids are short tokens from the server's SDP; keep only safe characters.
        let mid: String = frame
            .mid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let ext = if kind == MediaKind::Audio {
            "ogg"
        } else {
            "ivf"
        };
        let again = match self.peers_before {
            0 => String::new(),
            n => format!("-r{n}"),
        };
        let path = self
            .dir
            .join(format!("{who}-{kind_name}-{mid}{again}.{ext}"));
        let sink = if kind == MediaKind::Audio {
            let mut writer = PacketWriter::new(BufWriter::new(File::create(&path)?));
            writer.write_packet(opus_head(), 1, PacketWriteEndInfo::EndPage, 0)?;
            writer.write_packet(opus_tags(), 1, PacketWriteEndInfo::EndPage, 0)?;
            Sink::Audio {
                writer,
                first_time: 0,
                held: None,
            }
        } else {
            Sink::Video {
                writer: None,
                first_time: 0,
            }
        };
        Ok(Track {
            path,
            participant: frame.participant,
            kind,
            frames: 0,
            sink,
        })
    }

    /// Closes every file and says what is in them.
    pub fn finish(self) -> io::Result<Vec<RecordedTrack>> {
        let mut done = Vec::new();
        for track in self.earlier.into_iter().chain(self.tracks.into_values()) {
            match track.sink {
                Sink::Video { writer, .. } => {
                    let Some(w) = writer else { continue };
                    // BufWriter seeks after writing out what it holds.
                    w.finish()?.into_inner().map_err(|e| e.into_error())?;
                }
                Sink::Audio {
                    mut writer, held, ..
                } => {
                    if let Some((data, g)) = held {
                        writer.write_packet(data, 1, PacketWriteEndInfo::EndStream, g)?;
                    }
                    writer
                        .into_inner()
                        .into_inner()
                        .map_err(|e| e.into_error())?;
                }
            }
            done.push(RecordedTrack {
                path: track.path,
                participant: track.participant,
                kind: track.kind,
                frames: track.frames,
            });
        }
        Ok(done)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::IvfReader;

    fn key_frame(w: u16, h: u16) -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&w.to_le_bytes());
        f.extend_from_slice(&h.to_le_bytes());
        f.extend_from_slice(&[0xaa; 20]);
        f
    }

    #[test]
    fn video_starts_at_the_first_key_frame_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recording::new(dir.path()).unwrap();
        let frame = |rtp_time, data: Vec<u8>| ReceivedFrame {
            mid: "1".into(),
            participant: Some(ParticipantId(3)),
            kind: Some(MediaKind::Video),
            rtp_time,
            data,
        };
        rec.write(&frame(100, vec![0x01, 0, 0, 5])).unwrap(); // delta before any key frame
        rec.write(&frame(3100, key_frame(320, 240))).unwrap();
        rec.write(&frame(6100, vec![0x01, 0, 0, 6])).unwrap();
        let tracks = rec.finish().unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].frames, 2);
        let bytes = std::fs::read(&tracks[0].path).unwrap();
        // Two frames 3000 apart (1/30 s at 90 kHz): a length of 6000.
        assert_eq!(&bytes[24..28], &6000u32.to_le_bytes());
        let mut r = IvfReader::new(File::open(&tracks[0].path).unwrap()).unwrap();
        assert_eq!((r.header.width, r.header.height), (320, 240));
        assert_eq!(r.next_frame().unwrap().unwrap().timestamp, 0);
        assert_eq!(r.next_frame().unwrap().unwrap().timestamp, 3000);
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn after_a_new_peer_a_reused_mid_goes_to_a_new_file_and_the_old_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recording::new(dir.path()).unwrap();
        let frame = |who, rtp_time, data: Vec<u8>| ReceivedFrame {
            mid: "1".into(),
            participant: Some(ParticipantId(who)),
            kind: Some(MediaKind::Video),
            rtp_time,
            data,
        };
        rec.write(&frame(3, 100, key_frame(320, 240))).unwrap();
        rec.write(&frame(3, 3100, vec![0x01, 0, 0, 6])).unwrap();
        rec.new_peer();
        // The new peer's mid "1" is someone else's video.
        rec.write(&frame(4, 9000, key_frame(640, 360))).unwrap();
        let tracks = rec.finish().unwrap();
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            (tracks[0].participant, tracks[0].frames),
            (Some(ParticipantId(3)), 2)
        );
        assert_eq!(
            (tracks[1].participant, tracks[1].frames),
            (Some(ParticipantId(4)), 1)
        );
        assert_ne!(tracks[0].path, tracks[1].path);
        for (t, size) in tracks.iter().zip([(320, 240), (640, 360)]) {
            let r = IvfReader::new(File::open(&t.path).unwrap()).unwrap();
            assert_eq!((r.header.width, r.header.height), size);
        }
    }

    #[test]
    fn audio_is_an_ogg_opus_stream_ending_with_end_of_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recording::new(dir.path()).unwrap();
        for i in 0..5u64 {
            rec.write(&ReceivedFrame {
                mid: "0".into(),
                participant: Some(ParticipantId(2)),
                kind: Some(MediaKind::Audio),
                rtp_time: 1000 + i * 960,
                data: vec![0xfc, i as u8],
            })
            .unwrap();
        }
        let tracks = rec.finish().unwrap();
        assert_eq!(tracks[0].frames, 5);
        let mut r = ogg::PacketReader::new(File::open(&tracks[0].path).unwrap());
        let head = r.read_packet().unwrap().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        let tags = r.read_packet().unwrap().unwrap();
        assert!(tags.data.starts_with(b"OpusTags"));
        let mut last = None;
        let mut n = 0;
        while let Some(p) = r.read_packet().unwrap() {
            n += 1;
            last = Some(p);
        }
        assert_eq!(n, 5);
        let last = last.unwrap();
        assert!(last.last_in_stream());
        assert_eq!(last.absgp_page(), 4 * 960 + 960);
    }
}
