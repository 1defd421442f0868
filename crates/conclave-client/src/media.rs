//! The client's WebRTC peer on str0m: it offers what it sends, answers what the
//! server offers, paces pre-encoded frames out and counts what comes in.
//!
//! Sans-IO like str0m itself: [`ClientPeer`] takes packets, signaling messages
//! and `now`, and hands back datagrams and messages; [`crate::session`] owns
//! the socket and the clock.
//!
//! Longer than most modules: it is one str0m peer's whole life (offer and
//! answer, the paced sending of each source, SFrame on every frame, the
//! statistics the load harness reads), which share its state; VP8 parsing and
//! recording live in their own modules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_proto::{
    ClientMessage, MediaKind as Kind, ParticipantId, PublishedTrack, RemoteTrack,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

use conclave_e2ee::{EpochKeys, FrameCrypto, FrameKind, SendSwitch};

use crate::ivf::IvfFrame;
use crate::vp8;

mod keyframe_wait;
use keyframe_wait::{KeyframeWait, Opened};
#[cfg(test)]
mod crossed_offers;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC: {0}")]
    Rtc(#[from] RtcError),
    #[error("the server's SDP is unreadable: {0}")]
    Sdp(String),
    #[error("an answer arrived with no offer outstanding")]
    NoPendingOffer,
}

/// VP8 frames with their timestamps in seconds from the first.
pub type Vp8Frames = Vec<(f64, Vec<u8>)>;

/// Pre-encoded media to send, looped for as long as the client runs.
/// Cloned to start sending again on a new peer after a resume.
#[derive(Clone)]
pub enum SourceMedia {
    /// VP8 frames with timestamps in seconds from the file's start.
    Vp8 { frames: Vec<(f64, Vec<u8>)> },
    /// VP8 simulcast: the same video at several sizes, smallest first, each
    /// layer sent on its rid (a browser's "q", "h", "f"). The layers' frames
    /// must line up (same rate, same key frames); the first sets the timing.
    Vp8Simulcast { layers: Vec<(String, Vp8Frames)> },
    /// Opus packets, 20 ms each.
    Opus { packets: Vec<Vec<u8>> },
    /// Load for benchmarks: `fps` frames a second of `bytes` each, stamped at
    /// send time with the wall clock so receivers can measure latency.
    Synthetic { video: bool, bytes: usize, fps: u32 },
}

/// Marks a synthetic frame: byte 0 (a VP8 delta-frame tag), then these four
/// bytes, then the send time in microseconds since the Unix epoch.
const SYNTHETIC_MAGIC: &[u8; 4] = b"CNVB";
/// Latency samples kept per track, at most.
const MAX_LATENCY_SAMPLES: usize = 200_000;
/// How late a frame of a sent source may leave. A session that did not run
/// for longer (its process starved of CPU, as 150 members in one process on
/// two loaded cores are) sends the last this much of its backlog and resumes
/// its sources from there, instead of sending all of it at once: str0m takes
/// at most 512 frames a track between two polls and ends the session on the
/// next write.
const MAX_LATE: Duration = Duration::from_millis(500);
/// Timeouts handled after one wake-up's writes, at most: enough for every
/// track's frames of a `MAX_LATE` backlog, bounded should str0m keep asking.
const MAX_FRAMES_A_WAKE: usize = 64;

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The send time stamped in a synthetic frame, if it is one.
fn synthetic_stamp(frame: &[u8]) -> Option<u64> {
    if frame.len() < 13 || &frame[1..5] != SYNTHETIC_MAGIC {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&frame[5..13]);
    Some(u64::from_le_bytes(b))
}

impl SourceMedia {
    pub fn vp8_from_ivf(frames: Vec<IvfFrame>, timebase_num: u32, timebase_den: u32) -> Self {
        let scale = f64::from(timebase_num.max(1)) / f64::from(timebase_den.max(1));
        SourceMedia::Vp8 {
            frames: frames
                .into_iter()
                .map(|f| (f.timestamp as f64 * scale, f.data))
                .collect(),
        }
    }

    fn kind(&self) -> MediaKind {
        match self {
            SourceMedia::Vp8 { .. }
            | SourceMedia::Vp8Simulcast { .. }
            | SourceMedia::Synthetic { video: true, .. } => MediaKind::Video,
            SourceMedia::Opus { .. } | SourceMedia::Synthetic { .. } => MediaKind::Audio,
        }
    }

    fn len(&self) -> usize {
        match self {
            SourceMedia::Vp8 { frames } => frames.len(),
            SourceMedia::Vp8Simulcast { layers } => layers.first().map_or(0, |l| l.1.len()),
            SourceMedia::Opus { packets } => packets.len(),
            SourceMedia::Synthetic { fps, .. } => *fps as usize,
        }
    }

    /// The VP8 frames that set the timing (the first layer of simulcast).
    fn vp8_frames(&self) -> Option<&[(f64, Vec<u8>)]> {
        match self {
            SourceMedia::Vp8 { frames } => Some(frames),
            SourceMedia::Vp8Simulcast { layers } => layers.first().map(|l| l.1.as_slice()),
            _ => None,
        }
    }

    /// The simulcast layers to declare in the offer, if this is simulcast.
    fn simulcast(&self) -> Option<Simulcast> {
        let SourceMedia::Vp8Simulcast { layers } = self else {
            return None;
        };
        let mut s = Simulcast::new();
        s.send = layers
            .iter()
            .map(|(rid, _)| SimulcastLayer::new(rid))
            .collect();
        Some(s)
    }

    /// What to send for frame `i` whose bytes (first layer) are `data`: one
    /// frame per simulcast layer with its rid, or just `data`.
    fn layer_frames(&self, i: usize, data: Vec<u8>) -> Vec<(Option<Rid>, Vec<u8>)> {
        match self {
            SourceMedia::Vp8Simulcast { layers } => layers
                .iter()
                .enumerate()
                .filter_map(|(n, (rid, frames))| {
                    let bytes = if n == 0 {
                        data.clone()
                    } else {
                        frames.get(i % frames.len().max(1))?.1.clone()
                    };
                    Some((Some(Rid::from(rid.as_str())), bytes))
                })
                .collect(),
            _ => vec![(None, data)],
        }
    }

    /// Length of one pass through the media, in seconds.
    fn period(&self) -> f64 {
        match self {
            SourceMedia::Vp8Simulcast { .. } => {
                SourceMedia::vp8_period(self.vp8_frames().unwrap_or_default())
            }
            SourceMedia::Vp8 { frames } => SourceMedia::vp8_period(frames),
            SourceMedia::Opus { packets } => packets.len() as f64 * 0.02,
            SourceMedia::Synthetic { .. } => 1.0,
        }
    }

    fn vp8_period(frames: &[(f64, Vec<u8>)]) -> f64 {
        let last = frames.last().map(|f| f.0).unwrap_or(0.0);
        let step = if frames.len() > 1 {
            last / (frames.len() - 1) as f64
        } else {
            1.0 / 30.0
        };
        last + step
    }

    /// Offset of frame `i` (seconds from the pass start).
    fn offset(&self, i: usize) -> Option<f64> {
        match self {
            SourceMedia::Vp8 { .. } | SourceMedia::Vp8Simulcast { .. } => {
                self.vp8_frames()?.get(i).map(|f| f.0)
            }
            SourceMedia::Opus { packets } => (i < packets.len()).then_some(i as f64 * 0.02),
            SourceMedia::Synthetic { fps, .. } => {
                (i < *fps as usize).then_some(i as f64 / f64::from((*fps).max(1)))
            }
        }
    }

    /// Offset (seconds from the pass start) and bytes of frame `i`.
    fn frame(&self, i: usize) -> Option<(f64, Vec<u8>)> {
        match self {
            SourceMedia::Vp8 { .. } | SourceMedia::Vp8Simulcast { .. } => {
                self.vp8_frames()?.get(i).map(|(t, d)| (*t, d.clone()))
            }
            SourceMedia::Opus { packets } => packets.get(i).map(|p| (i as f64 * 0.02, p.clone())),
            SourceMedia::Synthetic { bytes, fps, .. } => {
                if i >= *fps as usize {
                    return None;
                }
                // Tag, magic, send time, then the sender's frame counter.
                let mut frame = vec![0u8; (*bytes).max(21)];
                frame[0] = 1;
                frame[1..5].copy_from_slice(SYNTHETIC_MAGIC);
                frame[5..13].copy_from_slice(&unix_micros().to_le_bytes());
                Some((i as f64 / f64::from((*fps).max(1)), frame))
            }
        }
    }
}

struct Source {
    media: SourceMedia,
    mid: Mid,
    kind: Kind,
    start: Option<Instant>,
    index: usize,
    pass: u64,
    sent_frames: u64,
    /// A key frame was asked for: send the next one now.
    skip_to_key: bool,
    /// RFC 6464 level sent with each audio frame, in -dBov (0 loudest).
    level: Option<u8>,
    /// Simulcast: the layers the server last said someone receives
    /// (`layers_wanted`); the others are not sent. `None`: all, until told.
    wanted: Option<Vec<String>>,
}

impl Source {
    /// Moves to the next key frame and shifts the clock so that it is due
    /// now; media time keeps increasing.
    fn jump_to_keyframe(&mut self, now: Instant, start: Instant) {
        let Some(frames) = self.media.vp8_frames() else {
            return;
        };
        let n = frames.len();
        let Some(step) = (0..n).find(|i| vp8::is_keyframe(&frames[(self.index + i) % n].1)) else {
            return;
        };
        if step == 0 {
            return;
        }
        let target = self.index + step;
        let period = self.media.period();
        let (pass, index) = (self.pass + (target / n) as u64, target % n);
        let offset = self.media.frame(index).map(|f| f.0).unwrap_or(0.0);
        let due_secs = pass as f64 * period + offset;
        // Due now: the start moves back by however far we skipped ahead.
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let shift = (due_secs - elapsed).max(0.0);
        self.start = start
            .checked_sub(Duration::from_secs_f64(shift))
            .or(Some(start));
        self.pass = pass;
        self.index = index;
    }
}

/// One decrypted frame of a remote track.
#[derive(Debug, Clone)]
pub struct ReceivedFrame {
    pub mid: String,
    pub participant: Option<ParticipantId>,
    pub kind: Option<conclave_proto::MediaKind>,
    /// RTP time in the track's clock (48 kHz audio, 90 kHz video).
    pub rtp_time: u64,
    pub data: Vec<u8>,
}

/// What arrived on one received track.
#[derive(Debug, Clone, Default)]
pub struct TrackStats {
    pub participant: Option<ParticipantId>,
    pub kind: Option<Kind>,
    pub frames: u64,
    pub bytes: u64,
    /// Frames that did not decrypt (no key for their KID, or tampered).
    pub undecryptable_frames: u64,
    /// Frames str0m could not assemble from contiguous packets.
    pub incomplete_frames: u64,
    /// Frames counted but not opened: [`ClientPeer::open_received`] was off.
    pub unopened_frames: u64,
    pub keyframes: u64,
    /// One-way delay of synthetic frames, sender to receiver, in µs.
    pub latencies_us: Vec<u32>,
    /// Lowest and highest sender frame counter seen in synthetic frames: the
    /// frames expected, for loss.
    pub synthetic_seq: Option<(u64, u64)>,
    pub first_frame_at: Option<Instant>,
    pub first_keyframe_at: Option<Instant>,
    pub last_frame_at: Option<Instant>,
    /// The sizes of the key frames received, in order, repeats folded (at
    /// most [`MAX_SIZES_KEPT`]): a simulcast layer switch shows as a new size.
    pub keyframe_sizes: Vec<(u16, u16)>,
    /// Key frames this client asked for (RTCP PLI), having opened a frame
    /// with no key frame to decode it from (`media/keyframe_wait.rs`).
    pub keyframes_asked: u64,
    /// RTP packets received (retransmissions included), as str0m counts
    /// them every [`STATS_EVERY`].
    pub packets: u64,
    /// The fraction of packets lost (0 to 1) in the last RTCP receiver
    /// report this client sent for the track; `None` before one.
    pub loss: Option<f32>,
    /// Interarrival jitter in that report, in milliseconds.
    pub jitter_ms: Option<f64>,
}

/// How often str0m reports receive statistics (packets, loss, jitter).
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// Key frame sizes kept per track.
pub const MAX_SIZES_KEPT: usize = 64;

/// Totals for the whole session.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub sent_frames: BTreeMap<String, u64>,
    /// Simulcast frames sent per layer, keyed "mid/rid".
    pub sent_layer_frames: BTreeMap<String, u64>,
    /// The latest `layers_wanted` for each of this client's simulcast
    /// m-lines: the rids it sends now.
    pub layers_wanted: BTreeMap<String, Vec<String>>,
    pub received: BTreeMap<String, TrackStats>,
    pub keyframe_requests: u64,
    /// VP8 key frames sent, every simulcast layer counted.
    pub key_frames_sent: u64,
    pub connected_at: Option<Instant>,
    /// Frames not sent because no E2EE key existed yet (nothing leaves in clear).
    pub unkeyed_frames_dropped: u64,
    /// The MLS epoch whose keys the peer uses now.
    pub epoch: Option<u64>,
    /// Packets str0m sent over UDP and over ICE-TCP: which path ICE took
    /// (checks on the path not taken count too, so compare, not test for 0).
    pub udp_packets_out: u64,
    pub tcp_packets_out: u64,
    /// Packets str0m sent from a TURN relay's address ([`crate::relay`]),
    /// in all and by how the client reaches the relay ("turn/udp",
    /// "turn/tcp", "turn/tls").
    pub relay_packets_out: u64,
    pub relay_packets_by: BTreeMap<&'static str, u64>,
}

/// Which SFrame layout a track's frames use.
fn frame_kind(kind: MediaKind) -> FrameKind {
    match kind {
        MediaKind::Audio => FrameKind::Audio,
        MediaKind::Video => FrameKind::Vp8,
    }
}

/// One client's WebRTC peer.
pub struct ClientPeer {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    sources: Vec<Source>,
    remote: BTreeMap<Mid, RemoteTrack>,
    connected: bool,
    stats: PeerStats,
    outbox: Vec<ClientMessage>,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    /// Packets for the ICE-TCP connection to each address ([`crate::tcp`]).
    tcp_transmits: Vec<(SocketAddr, Vec<u8>)>,
    /// The TURN allocations' relayed addresses and how each relay is
    /// reached: str0m's transmits from them go through that relay, not the
    /// UDP socket.
    relayed: Vec<(SocketAddr, &'static str)>,
    /// Packets for a TURN relay to send on: from which relayed address, to
    /// which.
    relay_transmits: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// When str0m next wants `Input::Timeout`.
    rtc_timeout: Instant,
    /// Received frames kept for the caller (a recorder), when asked for.
    keep_frames: bool,
    frames: Vec<ReceivedFrame>,
    /// SFrame on every frame, once [`ClientPeer::require_e2ee`] was called.
    /// Without it frames travel as they are: only for load tests against
    /// servers that are not Conclave.
    sframe: Option<FrameCrypto>,
    /// The origin of the millisecond clock SFrame's key grace runs on.
    born: Instant,
    /// Each received video's wait for a key frame it can open.
    keyframe_waits: BTreeMap<Mid, KeyframeWait>,
    /// Received frames are SFrame-decrypted; off, they are only counted.
    open_received: bool,
}

impl ClientPeer {
    /// A peer on `local` (the UDP address the session bound) that will send
    /// `sources`. Returns the peer and the `media_offer` to send.
    pub fn new(
        local: SocketAddr,
        sources: Vec<SourceMedia>,
        now: Instant,
    ) -> Result<(Self, ClientMessage), PeerError> {
        Self::offering(Some(local), sources, now)
    }

    /// Like [`ClientPeer::new`] with no UDP candidate at all: the peer's
    /// only way to the server will be the ICE-TCP connection the caller
    /// opens after the answer ([`ClientPeer::add_tcp_candidate`]), as on a
    /// network that drops UDP.
    pub fn new_tcp_only(
        sources: Vec<SourceMedia>,
        now: Instant,
    ) -> Result<(Self, ClientMessage), PeerError> {
        Self::offering(None, sources, now)
    }

    fn offering(
        udp: Option<SocketAddr>,
        sources: Vec<SourceMedia>,
        now: Instant,
    ) -> Result<(Self, ClientMessage), PeerError> {
        let mut rtc = Self::rtc(udp, now)?;
        let local = udp.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut change = rtc.sdp_api();
        let mut placed = Vec::new();
        for media in sources {
            let simulcast = media.simulcast();
            let mid = change.add_media(media.kind(), Direction::SendOnly, None, None, simulcast);
            placed.push((mid, media));
        }
        if placed.is_empty() {
            // An offer needs one m-line; a receive-only audio line starts the
            // transport, and the server offers what others send.
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| PeerError::Sdp("nothing to offer".into()))?;
        let mut tracks = Vec::new();
        let sources = placed
            .into_iter()
            .map(|(mid, media)| {
                let kind = if media.kind() == MediaKind::Video {
                    Kind::Video
                } else {
                    Kind::Audio
                };
                tracks.push(PublishedTrack {
                    mid: mid.to_string(),
                    kind,
                });
                Source {
                    media,
                    mid,
                    kind,
                    start: None,
                    index: 0,
                    pass: 0,
                    sent_frames: 0,
                    skip_to_key: false,
                    level: None,
                    wanted: None,
                }
            })
            .collect();
        let msg = ClientMessage::MediaOffer {
            sdp: offer.to_sdp_string(),
            tracks,
        };
        let peer = Self::assemble(rtc, local, Some(pending), sources, now)?;
        Ok((peer, msg))
    }

    /// str0m with Opus and VP8 and one host candidate: the local socket.
    fn rtc(local: Option<SocketAddr>, now: Instant) -> Result<Rtc, PeerError> {
        let mut rtc = Rtc::builder()
            .set_stats_interval(Some(STATS_EVERY))
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        if let Some(local) = local {
            let candidate = Candidate::host(local, "udp").map_err(RtcError::from)?;
            rtc.add_local_candidate(candidate);
        }
        Ok(rtc)
    }

    /// An ICE-TCP connection to the server is open from `local`: str0m pairs
    /// it (an active TCP candidate) with the server's passive one and runs
    /// its checks over it. With a UDP candidate too, ICE prefers UDP when
    /// both work, so a client may always add this: it is the fallback.
    pub fn add_tcp_candidate(&mut self, local: SocketAddr, now: Instant) -> Result<(), PeerError> {
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .map_err(RtcError::from)?;
        self.rtc.add_local_candidate(candidate);
        self.drain(now)
    }

    /// A TURN allocation at `relayed` (requested from `local`) is ready:
    /// str0m pairs this relayed candidate with the server's UDP one, and
    /// what it sends from `relayed` leaves through the relay
    /// ([`ClientPeer::take_relay_transmits`]). ICE prefers host candidates,
    /// so the relay carries media only where nothing direct works.
    /// `via` names how the client reaches the relay, for the statistics.
    pub fn add_relayed_candidate(
        &mut self,
        relayed: SocketAddr,
        local: SocketAddr,
        via: &'static str,
        now: Instant,
    ) -> Result<(), PeerError> {
        let candidate = Candidate::relayed(relayed, local, "udp").map_err(RtcError::from)?;
        self.relayed.push((relayed, via));
        self.rtc.add_local_candidate(candidate);
        self.drain(now)
    }

    /// A datagram a TURN relay delivered from `source` (the server), as
    /// received on its `relayed` address.
    pub fn handle_relayed(
        &mut self,
        relayed: SocketAddr,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), PeerError> {
        if !self.relayed.iter().any(|(a, _)| *a == relayed) {
            return Ok(());
        }
        self.receive(Protocol::Udp, source, relayed, data, now)
    }

    /// One RFC 4571 frame from the ICE-TCP connection `local` ↔ `source`.
    pub fn handle_tcp_frame(
        &mut self,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), PeerError> {
        self.receive(Protocol::Tcp, source, local, data, now)
    }

    fn assemble(
        rtc: Rtc,
        local: SocketAddr,
        pending: Option<SdpPendingOffer>,
        sources: Vec<Source>,
        now: Instant,
    ) -> Result<Self, PeerError> {
        let mut peer = ClientPeer {
            rtc,
            local,
            pending,
            sources,
            remote: BTreeMap::new(),
            connected: false,
            stats: PeerStats::default(),
            outbox: Vec::new(),
            transmits: Vec::new(),
            tcp_transmits: Vec::new(),
            relayed: Vec::new(),
            relay_transmits: Vec::new(),
            rtc_timeout: now,
            keep_frames: false,
            frames: Vec::new(),
            sframe: None,
            born: now,
            keyframe_waits: BTreeMap::new(),
            open_received: true,
        };
        peer.drain(now)?;
        Ok(peer)
    }

    /// Encrypt every frame sent and decrypt every frame received with SFrame;
    /// until the first [`ClientPeer::set_epoch_keys`] nothing is sent.
    pub fn require_e2ee(&mut self) {
        self.sframe.get_or_insert_with(FrameCrypto::new);
    }

    /// The keys of a new MLS epoch. The previous epoch's stay readable a few
    /// seconds. With [`SendSwitch::AtOnce`] (the first epoch, a removal)
    /// frames go out under the new key now and video sources jump to their
    /// next key frame, so receivers that missed frames get a picture under
    /// the new key; with [`SendSwitch::AfterDelay`] the old key goes on for
    /// [`conclave_e2ee::SEND_SWITCH_DELAY_MS`], every member holds the new
    /// one by then, and no key frame is needed.
    pub fn set_epoch_keys(&mut self, keys: &EpochKeys, send: SendSwitch, now: Instant) {
        let now_ms = self.millis(now);
        self.sframe
            .get_or_insert_with(FrameCrypto::new)
            .switch_epoch(keys, now_ms, send);
        self.stats.epoch = Some(keys.epoch);
        if send == SendSwitch::AtOnce {
            for src in &mut self.sources {
                if src.kind != Kind::Audio {
                    src.skip_to_key = true;
                }
            }
        }
    }

    /// Dynacast: the server says which layers of the simulcast track on
    /// `mid` someone receives. The others stop until named again; a layer
    /// named again restarts at the source's next frame (the server asks for
    /// its key frame as it arrives). A `mid` that is not one of this
    /// client's simulcast tracks, or a rid it does not send, changes
    /// nothing.
    pub fn set_layers_wanted(&mut self, mid: &str, rids: &[String]) {
        let Some(src) = self.sources.iter_mut().find(|s| s.mid.to_string() == mid) else {
            return;
        };
        let SourceMedia::Vp8Simulcast { layers } = &src.media else {
            return;
        };
        let wanted: Vec<String> = layers
            .iter()
            .map(|(rid, _)| rid)
            .filter(|rid| rids.contains(rid))
            .cloned()
            .collect();
        self.stats
            .layers_wanted
            .insert(mid.to_string(), wanted.clone());
        src.wanted = Some(wanted);
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_millis()).unwrap_or(u64::MAX)
    }

    /// A frame as it goes on the wire: SFrame-encrypted when E2EE is on, or
    /// `None` (dropped) while no key exists yet.
    fn protect(&mut self, kind: MediaKind, frame: Vec<u8>, now: Instant) -> Option<Vec<u8>> {
        let now_ms = self.millis(now);
        let Some(crypto) = self.sframe.as_mut() else {
            return Some(frame);
        };
        let mut out = Vec::with_capacity(frame.len() + 32);
        match crypto.encrypt_at(frame_kind(kind), &frame, now_ms, &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                self.stats.unkeyed_frames_dropped += 1;
                None
            }
        }
    }

    /// A received frame in clear, or `None` (counted) when it does not decrypt.
    fn unprotect(&mut self, mid: &str, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
        let now_ms = self.millis(now);
        let Some(crypto) = self.sframe.as_mut() else {
            return Some(frame.to_vec());
        };
        let t = self.stats.received.entry(mid.to_string()).or_default();
        let kind = match t.kind {
            Some(Kind::Audio) => FrameKind::Audio,
            _ => FrameKind::Vp8,
        };
        // A frame opens only as the member the server says sends this track.
        let Some(sender) = t.participant.map(|p| p.0.to_string()) else {
            t.undecryptable_frames += 1;
            return None;
        };
        let mut out = Vec::with_capacity(frame.len());
        match crypto.decrypt_from(kind, frame, &sender, now_ms, &mut out) {
            Ok(_) => Some(out),
            Err(e) => {
                tracing::debug!(error = %e, "frame does not decrypt");
                t.undecryptable_frames += 1;
                None
            }
        }
    }

    /// Asks the sender of a received video for a key frame when this
    /// client can open its frames but has no key frame to decode them from
    /// (`media/keyframe_wait.rs`).
    fn wait_for_keyframe(
        &mut self,
        d: &str0m::media::MediaData,
        opened: Option<&[u8]>,
        now: Instant,
    ) {
        let Some(t) = self.stats.received.get_mut(&d.mid.to_string()) else {
            return;
        };
        if !matches!(t.kind, Some(Kind::Video | Kind::Screen)) {
            return;
        }
        let frame = match opened {
            None => Opened::Not,
            // A synthetic frame (load tests) stands alone, as a key frame.
            Some(data) if vp8::is_keyframe(data) || synthetic_stamp(data).is_some() => Opened::Key,
            Some(_) => Opened::Delta,
        };
        if !self
            .keyframe_waits
            .entry(d.mid)
            .or_default()
            .on_frame(frame, now)
        {
            return;
        }
        let asked = self
            .rtc
            .writer(d.mid)
            .map(|mut w| w.request_keyframe(d.rid, KeyframeRequestKind::Pli));
        match asked {
            Some(Ok(())) => t.keyframes_asked += 1,
            Some(Err(error)) => tracing::debug!(%error, mid = %d.mid, "no key frame request"),
            None => {}
        }
    }

    /// Off: received frames are counted ([`TrackStats::unopened_frames`])
    /// and dropped without SFrame decryption. A load generator's many
    /// members stand for people whose ears are not under test, and opening
    /// every frame that reaches all of them in one process costs more than
    /// the meeting being measured (e2e/large-meeting.test.js). str0m still
    /// takes every packet (SRTP, RTCP), so the server sees a receiver.
    pub fn open_received(&mut self, on: bool) {
        self.open_received = on;
    }

    /// Keep every received frame for [`ClientPeer::take_frames`] (recording).
    pub fn keep_frames(&mut self, on: bool) {
        self.keep_frames = on;
    }

    /// Frames received since the last call, when kept.
    pub fn take_frames(&mut self) -> Vec<ReceivedFrame> {
        std::mem::take(&mut self.frames)
    }

    /// A peer that sends nothing and starts without an offer: it waits for
    /// the other side's ([`ClientPeer::accept_offer`]). The load harness uses
    /// it to subscribe to feeds on a server that offers first (Janus).
    pub fn answerer(local: SocketAddr, now: Instant) -> Result<Self, PeerError> {
        let rtc = Self::rtc(Some(local), now)?;
        Self::assemble(rtc, local, None, Vec::new(), now)
    }

    /// A remote ICE candidate that came outside the SDP (trickled), as its
    /// attribute text (`candidate:1 1 udp ...`). Janus's answers carry none.
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), PeerError> {
        let c = Candidate::from_sdp_string(candidate).map_err(RtcError::from)?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// Sends `level` (-dBov, 0 loudest, 127 silence; RFC 6464) with every
    /// audio frame from now on, for the server's active speaker detection.
    /// Pre-encoded Opus cannot be measured without decoding, so the level is
    /// given, not computed.
    pub fn set_audio_level(&mut self, level: Option<u8>) {
        for s in &mut self.sources {
            if s.kind == Kind::Audio {
                s.level = level.map(|l| l.min(127));
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The server's answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str, now: Instant) -> Result<(), PeerError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| PeerError::Sdp(e.to_string()))?;
        let pending = self.pending.take().ok_or(PeerError::NoPendingOffer)?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        self.drain(now)
    }

    /// The server offers others' tracks; queues our `media_answer`. An
    /// offer that crossed ours (ours is not answered yet) is ignored, as
    /// docs/protocol.md says: the server drops it, answers ours and offers
    /// again. Answering it would make str0m refuse the answer to ours as
    /// "changes made out of order", which ended the session; it happened to
    /// crowd members whose speakers started while their own offer was out.
    pub fn accept_offer(
        &mut self,
        sdp: &str,
        tracks: Vec<RemoteTrack>,
        now: Instant,
    ) -> Result<(), PeerError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| PeerError::Sdp(e.to_string()))?;
        if self.pending.is_some() {
            tracing::debug!("a server offer crossed ours: waiting for the offer again");
            return Ok(());
        }
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        for t in tracks {
            let mid = Mid::from(t.mid.as_str());
            let entry = self.stats.received.entry(t.mid.clone()).or_default();
            entry.participant = Some(t.participant);
            entry.kind = Some(t.kind);
            self.remote.insert(mid, t);
        }
        self.outbox.push(ClientMessage::MediaAnswer {
            sdp: answer.to_sdp_string(),
        });
        self.drain(now)
    }

    /// A datagram from the network.
    pub fn handle_datagram(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), PeerError> {
        self.receive(Protocol::Udp, source, self.local, data, now)
    }

    /// What arrived from `source` on the local candidate `destination`, by
    /// whichever path (UDP socket, ICE-TCP frame, TURN relay): str0m takes
    /// it if it belongs to this peer's ICE session.
    fn receive(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), PeerError> {
        let Ok(contents) = data.try_into() else {
            return Ok(()); // not STUN/DTLS/RTP: ignore
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)?;
            self.drain(now)?;
        }
        Ok(())
    }

    /// Time passes: timers fire and due frames are sent. Returns when to call again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Instant, PeerError> {
        self.rtc.handle_input(Input::Timeout(now))?;
        self.drain(now)?;
        let media_next = if self.connected {
            self.send_due(now)?
        } else {
            now + Duration::from_millis(20)
        };
        Ok(self
            .rtc_timeout
            .min(media_next)
            .max(now + Duration::from_millis(1)))
    }

    /// Sends every frame whose time has come; returns when the next is due.
    fn send_due(&mut self, now: Instant) -> Result<Instant, PeerError> {
        let mut next = now + Duration::from_millis(100);
        let mut written = false;
        for i in 0..self.sources.len() {
            loop {
                let src = &mut self.sources[i];
                let start = *src.start.get_or_insert(now);
                if src.media.len() == 0 {
                    break;
                }
                let period = src.media.period();
                if std::mem::take(&mut src.skip_to_key) {
                    src.jump_to_keyframe(now, start);
                }
                let start = src.start.unwrap_or(start);
                let Some(offset) = src.media.offset(src.index) else {
                    break;
                };
                let due_secs = src.pass as f64 * period + offset;
                let mut due = start + Duration::from_secs_f64(due_secs);
                if due > now {
                    next = next.min(due);
                    break;
                }
                let late = now - due;
                if late > MAX_LATE {
                    // The session did not run for a while (a starved process):
                    // the source resumes where it stopped, as if paused for
                    // all but the last MAX_LATE, which is sent now.
                    src.start = Some(start + (late - MAX_LATE));
                    due = now.checked_sub(MAX_LATE).unwrap_or(now);
                }
                let Some((_, mut data)) = src.media.frame(src.index) else {
                    break;
                };
                if matches!(src.media, SourceMedia::Synthetic { .. }) && data.len() >= 21 {
                    data[13..21].copy_from_slice(&src.sent_frames.to_le_bytes());
                }
                let frames = src.media.layer_frames(src.index, data);
                let level = src.level;
                let (clock, kind) = match src.kind {
                    Kind::Audio => (48_000.0, MediaKind::Audio),
                    _ => (90_000.0, MediaKind::Video),
                };
                let rtp_time = MediaTime::new(
                    (due_secs * clock) as u64,
                    if kind == MediaKind::Audio {
                        str0m::media::Frequency::FORTY_EIGHT_KHZ
                    } else {
                        str0m::media::Frequency::NINETY_KHZ
                    },
                );
                let mid = src.mid;
                src.index += 1;
                if src.index >= src.media.len() {
                    src.index = 0;
                    src.pass += 1;
                }
                src.sent_frames += 1;
                let sent = src.sent_frames;
                let wanted = src.wanted.clone();
                for (rid, data) in frames {
                    if let (Some(rid), Some(wanted)) = (&rid, &wanted)
                        && !wanted.iter().any(|w| w.as_str() == &**rid)
                    {
                        continue;
                    }
                    // RFC 6386 §9.1: P = 0 in the frame tag marks a key frame.
                    let key_frame =
                        kind == MediaKind::Video && data.first().is_some_and(|b| b & 0x01 == 0);
                    let Some(data) = self.protect(kind, data, now) else {
                        continue;
                    };
                    if key_frame {
                        self.stats.key_frames_sent += 1;
                    }
                    let Some(mut writer) = self.rtc.writer(mid) else {
                        break;
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec.kind() == kind)
                        .map(|p| p.pt());
                    if let Some(rid) = rid {
                        *self
                            .stats
                            .sent_layer_frames
                            .entry(format!("{mid}/{rid}"))
                            .or_default() += 1;
                        writer = writer.rid(rid);
                    }
                    if let Some(level) = level {
                        // str0m takes the level as negative dB.
                        writer = writer.audio_level(-(level as i8), level < 127);
                    }
                    if let Some(pt) = pt {
                        writer.write(pt, due, rtp_time, data)?;
                    }
                }
                self.stats.sent_frames.insert(mid.to_string(), sent);
                written = true;
            }
        }
        if written {
            // str0m sends written packets only after a timeout has stamped
            // them; without one here they would wait for the next call, a
            // millisecond or more, which the latency figures would count.
            // Each timeout packetizes one written frame per track, so it is
            // repeated while str0m has more due now: one a wake-up would let
            // a session woken less often than its frame rate (a starved
            // process) pile frames up until str0m refuses the next write.
            for _ in 0..MAX_FRAMES_A_WAKE {
                self.rtc.handle_input(Input::Timeout(now))?;
                self.drain(now)?;
                if self.rtc_timeout > now {
                    break;
                }
            }
        }
        Ok(next)
    }

    /// Drains str0m until it asks for time, collecting datagrams and events.
    fn drain(&mut self, now: Instant) -> Result<(), PeerError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    return Ok(());
                }
                other => self.on_output(other, now),
            }
        }
    }

    fn on_output(&mut self, out: Output, now: Instant) {
        match out {
            Output::Transmit(t) if t.proto == Protocol::Tcp => {
                self.stats.tcp_packets_out += 1;
                self.tcp_transmits
                    .push((t.destination, t.contents.to_vec()));
            }
            Output::Transmit(t) if self.relayed.iter().any(|(a, _)| *a == t.source) => {
                self.stats.relay_packets_out += 1;
                if let Some((_, via)) = self.relayed.iter().find(|(a, _)| *a == t.source) {
                    *self.stats.relay_packets_by.entry(via).or_default() += 1;
                }
                self.relay_transmits
                    .push((t.source, t.destination, t.contents.to_vec()));
            }
            Output::Transmit(t) => {
                self.stats.udp_packets_out += 1;
                self.transmits.push((t.destination, t.contents.to_vec()));
            }
            Output::Timeout(_) => {}
            Output::Event(e) => match e {
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    tracing::warn!("media connection lost");
                    self.connected = false;
                }
                Event::Connected => {
                    self.connected = true;
                    self.stats.connected_at = Some(now);
                }
                Event::MediaData(d) if !self.open_received => {
                    let t = self.stats.received.entry(d.mid.to_string()).or_default();
                    t.unopened_frames += 1;
                    t.bytes += d.data.len() as u64;
                    t.last_frame_at = Some(now);
                }
                Event::MediaData(d) => {
                    let opened = self.unprotect(&d.mid.to_string(), &d.data, now);
                    self.wait_for_keyframe(&d, opened.as_deref(), now);
                    let Some(data) = opened else {
                        return;
                    };
                    let t = self.stats.received.entry(d.mid.to_string()).or_default();
                    t.frames += 1;
                    t.bytes += data.len() as u64;
                    if !d.contiguous {
                        t.incomplete_frames += 1;
                    }
                    t.first_frame_at.get_or_insert(now);
                    if let Some(sent) = synthetic_stamp(&data)
                        && t.latencies_us.len() < MAX_LATENCY_SAMPLES
                    {
                        let us = unix_micros().saturating_sub(sent);
                        t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        if data.len() >= 21 {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&data[13..21]);
                            let seq = u64::from_le_bytes(b);
                            t.synthetic_seq = Some(match t.synthetic_seq {
                                Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
                                None => (seq, seq),
                            });
                        }
                    }
                    let video = matches!(t.kind, Some(Kind::Video | Kind::Screen));
                    if video && vp8::is_keyframe(&data) {
                        t.keyframes += 1;
                        t.first_keyframe_at.get_or_insert(now);
                        if let Some(size) = vp8::keyframe_size(&d.data)
                            && t.keyframe_sizes.last() != Some(&size)
                            && t.keyframe_sizes.len() < MAX_SIZES_KEPT
                        {
                            t.keyframe_sizes.push(size);
                        }
                    }
                    t.last_frame_at = Some(now);
                    if self.keep_frames {
                        self.frames.push(ReceivedFrame {
                            mid: d.mid.to_string(),
                            participant: t.participant,
                            kind: t.kind,
                            rtp_time: d.time.numer(),
                            data,
                        });
                    }
                }
                Event::MediaIngressStats(st) => {
                    let t = self.stats.received.entry(st.mid.to_string()).or_default();
                    // RTP clocks: 48 kHz Opus, 90 kHz video.
                    let clock = match t.kind {
                        Some(Kind::Audio) => 48.0,
                        _ => 90.0,
                    };
                    t.packets = st.packets;
                    t.loss = st.loss.or(t.loss);
                    t.jitter_ms = Some(f64::from(st.jitter) / clock);
                }
                Event::KeyframeRequest(req) => {
                    // Pre-encoded media cannot make a key frame on demand:
                    // skip ahead to the file's next one instead.
                    self.stats.keyframe_requests += 1;
                    if let Some(src) = self.sources.iter_mut().find(|s| s.mid == req.mid) {
                        src.skip_to_key = true;
                    }
                }
                _ => {}
            },
        }
    }

    /// Datagrams to send.
    pub fn take_transmits(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.transmits)
    }

    /// Packets for ICE-TCP connections, by the server address each goes to.
    pub fn take_tcp_transmits(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.tcp_transmits)
    }

    /// Datagrams for the TURN relays to send on: from which relayed
    /// address, to which.
    pub fn take_relay_transmits(&mut self) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.relay_transmits)
    }

    /// Signaling messages to send.
    pub fn take_messages(&mut self) -> Vec<ClientMessage> {
        std::mem::take(&mut self.outbox)
    }
}
