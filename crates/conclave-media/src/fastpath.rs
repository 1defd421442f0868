//! The fast forwarding path (issue 16, [`crate::RouterConfig::fast_path`]):
//! forwarded media is rewritten and sealed here, per subscriber, and queued
//! as a datagram at once, instead of being written to str0m and let out of
//! its send queue one packet per timeout.
//!
//! Which packets it takes, and why each SSRC has one owner (`srtp.rs` says
//! why two sealers must never share one):
//!
//! - **Decided per stream**: fast if the session's keys are exported and
//!   its media route is known, str0m's otherwise. A stream whose first
//!   packets come before the DTLS handshake ends (a member joining a meeting
//!   in progress) starts on str0m and moves to this path at its first packet
//!   after the keys, once str0m has let out all it was given: the indices
//!   str0m sealed are below the rewriter's next one, and the sealer has
//!   seen each of them leave (`SrtpSealer::observe`), so it refuses a
//!   duplicate. Audio whose first packet is RED (RFC 2198) stays on str0m,
//!   where RED is unwrapped for subscribers without it; a RED packet
//!   arriving later on a fast audio stream is dropped and counted.
//! - **One packet a second still goes through str0m** (`ANCHOR_EVERY`),
//!   at an index the sealer has reserved first, so str0m and this path seal
//!   disjoint indices of the same SSRC (str0m seals a written packet at the
//!   extended sequence number `RtpWrite` gives it, the rewriter's, which is
//!   also the index this path seals at). It is let out at once
//!   (`Forwarded::Anchor`), before the stream's next packets. str0m bases
//!   its RTCP sender reports on the last packet written to a stream, and
//!   with none it reports RTP time 0, which would break a receiver's A/V
//!   sync; the anchor keeps its RTP/NTP mapping current. Its packet and
//!   octet counts then cover the anchors only.
//! - **NACKs** for a fast stream are read from str0m's raw RTCP events
//!   (`RtcConfig::enable_raw_packets`, the only place str0m 0.25 surfaces
//!   feedback for packets it did not send) and answered by sending the same
//!   sealed bytes again, within the stream's retransmission budget
//!   (`rtx_ratio_cap` of its bytes over about a second). The per-stream
//!   history keeps each packet's clear header and the publisher's shared
//!   payload, and a resend seals them again at the same index (same key,
//!   nonce and plaintext: the same bytes), so forwarding copies no
//!   ciphertext per subscriber for NACKs; an anchor's is kept as str0m's
//!   ciphertext left (`keep_anchor`).
//! - **Congestion control of its own** (`bwe.rs`): str0m's estimator sees
//!   only what str0m sends, and str0m 0.25 has no public call to tell it of
//!   other packets. Where the subscriber negotiated transport-wide sequence
//!   numbers (TWCC), the fast path numbers every RTP packet of the session
//!   itself: its own, and str0m's too, since the receiver's feedback covers
//!   one sequence space per transport and two counters would collide. str0m's
//!   RTP datagrams (anchors, RED audio, RTX, probes) are held back, and each
//!   is sealed again from str0m's clear copy (its raw `RtpTx` event) with
//!   the fast path's number in place of str0m's; str0m's own ciphertext
//!   never leaves, so no index goes out under two ciphertexts. The
//!   subscriber's TWCC reports (raw RTCP events) feed the estimator, whose
//!   estimate then drives the simulcast layer choice instead of str0m's.
//!   Reports it cannot use are dropped and counted (`fast_twcc_refused`).
//! - **Probes** for a step up (`bwe/probe.rs`) go as padding-only packets,
//!   paced over the probe in slices on the peer's timer
//!   ([`FastPath::probe_due_at`]), on a video stream's RTX SSRC, as
//!   libwebrtc sends its own: once this
//!   path numbers the session's packets it also numbers that SSRC's
//!   (str0m's retransmissions on it are sealed again with this path's
//!   sequence numbers), so its padding takes indices nobody else seals.
//!
//! - **Paced per subscriber** (`pacer.rs`, with
//!   [`crate::RouterConfig::pacing`]; off by default): every datagram this path sends
//!   a subscriber (media, str0m's packets sealed again, resends, probes)
//!   leaves through one token bucket, in the order sealed, so that a
//!   backlog the worker reads at once after a stall reaches the subscriber
//!   spread over a few tens of milliseconds, not as one burst into its
//!   socket; steady traffic never waits. The estimator is told a numbered
//!   packet left only once the pacer let it out ([`FastPath::departed`]).
//!
//! Known limits: the per-SSRC state (owner, history) lives as long as the
//! session, also for streams a renegotiation stopped; str0m's raw-packet
//! events clone every packet str0m receives or sends, a cost the fast path
//! pays for seeing NACKs.
//!
//! The route is the candidate pair str0m sends its own DTLS/RTP/RTCP on,
//! taken from its transmits, so the fast path follows ICE and works over
//! ICE-TCP as well (the shell frames every transmit the same way).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid};
use str0m::net::Protocol;
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{Extension, RawPacket, RtpHeader, SeqNo};

use crate::relay::MediaPacket;

use crate::bwe::{Bwe, ProbeTrain};
use crate::keyexport::{KeySlot, base_provider};
use crate::pacer::Pacer;
use crate::peer::{Peer, forwarded_write, local_pt};
use crate::playout::{self, RepairDelay};
use crate::srtp::{SRTP_OVERHEAD, SrtpSealer};
use crate::transmit::{Transmit, TransmitQueue};

/// How often a fast stream's packet goes through str0m instead, to keep
/// its sender reports right.
const ANCHOR_EVERY: Duration = Duration::from_secs(1);

/// Packets kept per fast stream to answer NACKs from: about 2 s of a
/// 1.5 Mbit/s video, fewer than str0m keeps. Each is this subscriber's clear
/// header and the publisher's payload, which all its subscribers share
/// (`Kept`).
const HISTORY_PACKETS: usize = 256;

/// How old a kept packet may be and still be resent (as str0m's default).
const HISTORY_AGE: Duration = Duration::from_secs(3);

/// str0m datagrams held back for sealing again, at most (str0m's clear
/// copy of each follows it at once; a full queue drops the oldest).
const HELD_BACK: usize = 256;

/// The retransmission budget's window: its byte counts halve this often.
const BUDGET_HALF_LIFE: Duration = Duration::from_secs(1);

/// How many seconds of a steady rate a counter that halves every
/// [`BUDGET_HALF_LIFE`] holds (1/ln 2): to compare it with a rate.
const BUDGET_WINDOW_SECS: f64 = std::f64::consts::LOG2_E;

/// How often a budget's counters decay: 1/256 of [`BUDGET_HALF_LIFE`].
/// They were decayed smoothly at every packet, one `powf` each, a cost of
/// every forwarded datagram; decayed in whole steps they lag the smooth
/// curve by at most one step's decay (0.27 %), and a packet within a step
/// of the last decay costs a comparison.
const BUDGET_STEP: Duration = Duration::from_nanos(BUDGET_HALF_LIFE.as_nanos() as u64 / 256);

/// What a counter keeps of its value over one [`BUDGET_STEP`]: 2^(-1/256)
/// (`budget_step_factor_is_the_half_life_s` checks it).
const BUDGET_STEP_FACTOR: f64 = 0.997_296_056_085_470_1;

/// Steps after which a counter is taken as empty: 64 half-lives leave
/// less than 1e-19 of it (and the step count fits `powi`'s `i32`).
const BUDGET_EMPTY_STEPS: u128 = 64 * 256;

/// Bytes sent and resent, halved every [`BUDGET_HALF_LIFE`]: what a
/// stream's or a session's resends are weighed against.
struct Budget {
    sent_bytes: f64,
    resent_bytes: f64,
    at: Instant,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Budget {
            sent_bytes: 0.0,
            resent_bytes: 0.0,
            at: now,
        }
    }

    /// Decays the counters to `now` by whole [`BUDGET_STEP`]s: what they
    /// halve to every [`BUDGET_HALF_LIFE`] up to the last step boundary
    /// before `now`, which becomes their time (so the steps never drift
    /// from the smooth curve). A `now` before their time changes nothing.
    fn decay(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed < BUDGET_STEP {
            return;
        }
        let steps = elapsed.as_nanos() / BUDGET_STEP.as_nanos();
        if steps >= BUDGET_EMPTY_STEPS {
            self.sent_bytes = 0.0;
            self.resent_bytes = 0.0;
            self.at = now;
            return;
        }
        // Below BUDGET_EMPTY_STEPS: fits both i32 and u32.
        let f = BUDGET_STEP_FACTOR.powi(steps as i32);
        self.sent_bytes *= f;
        self.resent_bytes *= f;
        self.at += BUDGET_STEP * steps as u32;
    }
}

/// The most resends may take of a stream's bytes however much room the
/// bandwidth estimate leaves: a subscriber cannot make the router send it
/// more than twice the stream by NACKing everything.
pub const MAX_RESEND_RATIO: f64 = 1.0;

/// Padding bytes in one probe packet: the most an RTP padding length
/// (one byte) can say.
const PROBE_PADDING: usize = 255;

/// Who seals a subscriber stream's main SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Fast,
    /// str0m's until the session's keys and route are known.
    Str0m,
    /// str0m's for good: its first packet was RED.
    Red,
}

/// One subscriber session's fast path.
pub(crate) struct FastPath {
    slot: KeySlot,
    /// Made once the handshake has produced keys (str0m runs one DTLS
    /// handshake per session and never rekeys it).
    sealer: Option<SrtpSealer>,
    /// Where str0m sends media: (transport, local, remote).
    route: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// By our own SSRCs (never a peer's: FxHash, not SipHash).
    owners: FxHashMap<u32, Owner>,
    streams: FxHashMap<u32, FastStream>,
    rtx_ratio_cap: Option<f32>,
    /// The clear header being built; reused.
    clear: Vec<u8>,
    /// The egress estimate from TWCC feedback on what this path numbers
    /// (and the numbering itself).
    pub(crate) bwe: Bwe,
    /// The estimate is used: the router estimates bandwidth
    /// ([`crate::RouterConfig::initial_bandwidth`]).
    pub(crate) estimates: bool,
    /// The origin of TWCC report times (str0m's report reader wants one).
    twcc_zero: Instant,
    /// The session's TWCC header extension id while an m-line the router
    /// sends on negotiates it: where probes and str0m's packets sealed
    /// again are numbered. str0m keeps one id per extension for the session
    /// and never moves it, but a later SDP may leave the extension out of
    /// every m-line (an offer that tries to move it does), and then nobody
    /// reads it: set again whenever an SDP is applied
    /// ([`FastPath::forget_extension_ids`]).
    twcc_id: Option<u8>,
    /// TWCC was negotiated once: from then on every RTP packet of the
    /// session is sealed here (str0m's sealed again), for good, also while
    /// `twcc_id` is `None`. Letting str0m's own datagrams out again would
    /// send its sequence numbers on the RTX SSRC this path pads on, and its
    /// own TWCC numbers once TWCC is back: both collide with this path's.
    numbering: bool,
    /// The last TWCC number str0m wrote before the fast path took over.
    str0m_twcc: Option<u16>,
    /// str0m's RTP datagrams held back, by (SSRC, sequence number), until
    /// str0m's clear copy of each arrives to be sealed again.
    held: VecDeque<(u32, u16)>,
    /// Where probes go, once a fast video stream with RTX is known.
    pad: Option<Padding>,
    /// Bytes of the session's fast streams, sent and resent, halved every
    /// [`BUDGET_HALF_LIFE`]: what the estimate leaves for resends.
    budget: Budget,
    /// The probe being sent, slice by slice.
    train: Option<ProbeTrain>,
    /// Every datagram this path sends the subscriber leaves through it, in
    /// the order sealed (`pacer.rs`).
    pacer: Pacer,
}

/// A video stream's RTX SSRC and payload type, and the next sequence
/// number on it: this path's once it numbers the session's packets.
struct Padding {
    ssrc: u32,
    pt: u8,
    next: u16,
}

struct FastStream {
    last_anchor: Option<Instant>,
    /// Sealed packets by extended sequence number modulo the ring size.
    history: Vec<Option<Kept>>,
    highest: Option<u64>,
    budget: Budget,
    /// How late repairs from the publisher's hop come (video only): the
    /// playout delay this subscriber is asked for.
    repairs: RepairDelay,
    /// The anchor handed to str0m and not yet seen leaving: its extended
    /// sequence number, when, and whether of a key frame, so its sealed
    /// bytes join the history.
    anchor: Option<(u64, Instant, bool)>,
    /// The RTP timestamp of the last key frame forwarded, and the sequence
    /// number it starts at: NACKs for packets before it are too late.
    key_ts: Option<u32>,
    key_from: Option<u64>,
    /// The subscriber's ids of the extensions this path writes, looked up
    /// once (str0m's `id_of` scans its map, five times a packet); forgotten
    /// when an SDP is applied ([`FastPath::forget_extension_ids`]).
    exts: Option<ExtensionIds>,
}

/// The header extension ids the subscriber negotiated on a stream's m-line,
/// of those this path writes.
#[derive(Debug, Clone, Copy, Default)]
struct ExtensionIds {
    twcc: Option<u8>,
    mid: Option<u8>,
    orientation: Option<u8>,
    level: Option<u8>,
    playout: Option<u8>,
}

impl ExtensionIds {
    fn of(map: Option<&str0m::rtp::ExtensionMap>) -> Self {
        let Some(map) = map else {
            return ExtensionIds::default();
        };
        ExtensionIds {
            twcc: map.id_of(Extension::TransportSequenceNumber),
            mid: map.id_of(Extension::RtpMid),
            orientation: map.id_of(Extension::VideoOrientation),
            level: map.id_of(Extension::AudioLevel),
            playout: map.id_of(Extension::PlayoutDelay),
        }
    }
}

struct Kept {
    seq: u64,
    at: Instant,
    /// A packet of a key frame: resent first.
    key: bool,
    /// Sealed here: its clear header, sealed again with `payload` at the
    /// same index to resend ([`SrtpSealer::reseal_parts_at`]: the same bytes),
    /// so no copy of the datagram is kept per subscriber. Sealed by str0m
    /// (an anchor): the datagram as it left.
    bytes: Vec<u8>,
    /// The publisher's payload, shared with every subscriber's history.
    payload: Option<Arc<[u8]>>,
    /// The datagram's length: what a resend costs the budget.
    sealed_len: usize,
    /// The last bytes of the datagram as it first left (its SRTP tag).
    /// Sealing again at the same index is safe only with the same
    /// plaintext; a resend whose tail differs was sealed from other bytes
    /// (a defect), and sending it would reuse a nonce over different data,
    /// so it is dropped and counted instead.
    tail: [u8; TAIL],
}

/// How much of a sealed datagram [`Kept::tail`] keeps: a whole tag.
const TAIL: usize = 16;

/// The last [`TAIL`] bytes of `sealed` (zeros in front if shorter).
fn tail_of(sealed: &[u8]) -> [u8; TAIL] {
    let mut tail = [0u8; TAIL];
    let n = sealed.len().min(TAIL);
    tail[TAIL - n..].copy_from_slice(&sealed[sealed.len() - n..]);
    tail
}

impl FastPath {
    pub(crate) fn new(
        slot: KeySlot,
        rtx_ratio_cap: Option<f32>,
        initial_bandwidth: Option<u64>,
        pacing: bool,
        now: Instant,
    ) -> Self {
        FastPath {
            slot,
            sealer: None,
            route: None,
            owners: FxHashMap::default(),
            streams: FxHashMap::default(),
            rtx_ratio_cap,
            clear: Vec::with_capacity(1_500),
            bwe: Bwe::new(initial_bandwidth.unwrap_or(crate::DEFAULT_INITIAL_BANDWIDTH)),
            estimates: initial_bandwidth.is_some(),
            twcc_zero: now,
            twcc_id: None,
            numbering: false,
            str0m_twcc: None,
            held: VecDeque::new(),
            pad: None,
            budget: Budget::new(now),
            train: None,
            pacer: Pacer::new(now, pacing),
        }
    }

    /// Whether it can send probes ([`FastPath::probe`]): its estimate is
    /// used, a video stream has an RTX SSRC to pad on, and TWCC reports
    /// on what it numbers.
    pub(crate) fn can_probe(&self) -> bool {
        self.estimates && self.pad.is_some() && self.numbers_all() && self.twcc_id.is_some()
    }

    /// Whether str0m's RTP is sealed again with this path's TWCC numbers.
    fn numbers_all(&self) -> bool {
        self.numbering && self.route.is_some() && self.sealer.is_some()
    }

    /// The next transport-wide sequence number, for a packet of `size`
    /// bytes sent now; the first follows the last str0m wrote, so the
    /// receiver sees one sequence.
    fn next_twcc(&mut self, now: Instant, size: usize) -> u64 {
        if let Some(last) = self.str0m_twcc.take() {
            self.bwe.start_at(u64::from(last) + 1);
        }
        self.bwe.register(now, size)
    }

    /// The datagrams let out of the pacer so far were handed to the socket
    /// at `at` ([`crate::Router::transmitted`]).
    pub(crate) fn departed(&mut self, at: Instant) {
        if let Some(until) = self.pacer.released() {
            self.bwe.departed(at, until);
        }
    }

    /// Lets out of the pacer what may leave at `now`.
    pub(crate) fn release(
        &mut self,
        now: Instant,
        transmits: &mut TransmitQueue,
        stats: &mut crate::PeerStats,
    ) {
        release(&mut self.pacer, now, transmits, stats);
    }

    /// When the peer's timer must fire for this path: the probe's next
    /// slice, or the pacer's next datagram.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        let probe = self.probe_due_at();
        let paced = self.pacer.due_at();
        probe.into_iter().chain(paced).min()
    }

    /// Whether `t`, a datagram str0m sends, is held back: an RTP packet
    /// while this path numbers the session's packets. It is sealed again
    /// when str0m's clear copy arrives ([`FastPath::on_rtp_tx`]).
    pub(crate) fn hold_back(&mut self, t: &Transmit) -> bool {
        let b = &t.contents;
        let rtp = b.len() >= 12 && b[0] >> 6 == 2 && !(192..=223).contains(&b[1]);
        if !rtp {
            return false;
        }
        if !self.numbers_all() {
            // str0m's ciphertext leaves as it is: an anchor's is kept.
            let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            self.keep_anchor(ssrc, u16::from_be_bytes([b[2], b[3]]), &t.contents);
            return false;
        }
        if self.held.len() == HELD_BACK {
            self.held.pop_front();
        }
        let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        self.held
            .push_back((ssrc, u16::from_be_bytes([b[2], b[3]])));
        true
    }

    /// str0m's clear copy of an RTP packet it sent. Held back: sealed again
    /// with this path's TWCC number and sent. Otherwise (str0m's datagram
    /// went out as it was): its index and TWCC number are noted, so that
    /// this path continues both once it takes over.
    fn on_rtp_tx(
        &mut self,
        header: &RtpHeader,
        mut clear: Vec<u8>,
        now: Instant,
        transmits: &mut TransmitQueue,
        stats: &mut crate::PeerStats,
    ) {
        let key = (*header.ssrc, header.sequence_number);
        let Some(at) = self.held.iter().position(|&h| h == key) else {
            if let Some(sealer) = self.sealer() {
                // Sealed by str0m, as it says: nothing more to do.
                let _ = sealer.observe(key.0, key.1);
            }
            if let Some(pad) = self.pad.as_mut().filter(|p| p.ssrc == key.0) {
                pad.next = key.1.wrapping_add(1);
            }
            if let Some(t) = header.ext_vals.transport_cc {
                self.str0m_twcc = Some(t);
            }
            return;
        };
        self.held.remove(at);
        let Some(route) = self.route else {
            return;
        };
        let mut numbered = None;
        if header.ext_vals.transport_cc.is_some()
            && let Some(id) = self.twcc_id
            && let Some(at) = extension_at(&clear, id)
        {
            let seq = self.next_twcc(now, clear.len() + SRTP_OVERHEAD);
            clear[at..at + 2].copy_from_slice(&(seq as u16).to_be_bytes());
            numbered = Some(seq);
        }
        // Padding shares this SSRC's sequence: str0m's retransmissions on
        // it take this path's next numbers.
        if let Some(pad) = self.pad.as_mut().filter(|p| p.ssrc == key.0)
            && clear.len() >= 4
        {
            clear[2..4].copy_from_slice(&pad.next.to_be_bytes());
            pad.next = pad.next.wrapping_add(1);
        }
        let mut sealed = transmits.buffer(clear.len() + SRTP_OVERHEAD);
        match self.sealer().map(|s| s.seal_rtp(&clear, &mut sealed)) {
            Some(Ok(n)) => {
                sealed.truncate(n);
                stats.fast_resealed += 1;
                self.keep_anchor(key.0, key.1, &sealed);
                let out = (route, sealed, numbered);
                pace(&mut self.pacer, now, out, transmits, stats);
            }
            Some(Err(error)) => {
                transmits.recycle(sealed);
                stats.fast_seal_errors += 1;
                tracing::debug!(%error, "str0m's packet not sealed again");
            }
            None => transmits.recycle(sealed),
        }
    }

    /// Sends what is due of the probe being sent, or starts the one the
    /// estimator asks for, if any: padding-only packets on the RTX SSRC,
    /// each with its transport-wide number, a slice at a time.
    pub(crate) fn probe(
        &mut self,
        now: Instant,
        transmits: &mut TransmitQueue,
        stats: &mut crate::PeerStats,
    ) {
        // Without TWCC negotiated now, nobody would report on a probe.
        if !self.estimates || self.pad.is_none() || !self.numbers_all() || self.twcc_id.is_none() {
            self.train = None;
            return;
        }
        let (Some(route), Some(id)) = (self.route, self.twcc_id) else {
            return;
        };
        if self.train.is_none()
            && let Some(probe) = self.bwe.poll_probe(now)
        {
            let packets = probe
                .bytes
                .div_ceil(PROBE_PADDING)
                .max(crate::bwe::PROBE_MIN_PACKETS);
            self.train = Some(ProbeTrain::new(probe.id, packets, now));
        }
        let Some(train) = self.train.as_mut() else {
            return;
        };
        let (probe, due) = (train.probe, train.due(now));
        train.sent(due);
        if train.done() {
            self.train = None;
        }
        for _ in 0..due {
            let Some(pad) = self.pad.as_mut() else { return };
            // The header buffer is free between packets: reused here.
            let mut clear = std::mem::take(&mut self.clear);
            clear.clear();
            // V=2, padding, one extension block; no marker.
            clear.extend_from_slice(&[0xb0, pad.pt & 0x7f]);
            clear.extend_from_slice(&pad.next.to_be_bytes());
            clear.extend_from_slice(&0u32.to_be_bytes());
            clear.extend_from_slice(&pad.ssrc.to_be_bytes());
            clear.extend_from_slice(&[0xbe, 0xde, 0, 1, (id << 4) | 1, 0, 0, 0]);
            clear.resize(clear.len() + PROBE_PADDING - 1, 0);
            clear.push(PROBE_PADDING as u8);
            pad.next = pad.next.wrapping_add(1);
            let Some(at) = extension_at(&clear, id) else {
                self.clear = clear;
                return;
            };
            let mut sealed = transmits.buffer(clear.len() + SRTP_OVERHEAD);
            let seq = self.bwe.register_probe(now, sealed.len(), probe);
            clear[at..at + 2].copy_from_slice(&(seq as u16).to_be_bytes());
            let result = self.sealer().map(|s| s.seal_rtp(&clear, &mut sealed));
            self.clear = clear;
            match result {
                Some(Ok(n)) => {
                    sealed.truncate(n);
                    stats.fast_probe_packets += 1;
                    let out = (route, sealed, Some(seq));
                    pace(&mut self.pacer, now, out, transmits, stats);
                }
                Some(Err(error)) => {
                    transmits.recycle(sealed);
                    stats.fast_seal_errors += 1;
                    tracing::debug!(%error, "probe not sealed");
                    return;
                }
                None => {
                    transmits.recycle(sealed);
                    return;
                }
            }
        }
    }

    /// When the probe being sent has its next slice due: the peer's timer
    /// must fire then.
    pub(crate) fn probe_due_at(&self) -> Option<Instant> {
        self.train.as_ref().and_then(ProbeTrain::next_at)
    }

    /// A TWCC report from the subscriber, for the estimator.
    fn on_twcc(
        &mut self,
        twcc: str0m::rtp::rtcp::Twcc,
        now: Instant,
        stats: &mut crate::PeerStats,
    ) {
        // Also while TWCC is not negotiated: reports on what was numbered
        // before it went.
        if !self.numbering {
            return;
        }
        let from = self.bwe.next_seq().saturating_sub(1);
        match self
            .bwe
            .on_feedback(report(twcc, self.twcc_zero, from), now)
        {
            Ok(()) => {
                stats.fast_twcc_reports += 1;
                if stats.fast_twcc_reports.is_multiple_of(50) {
                    tracing::debug!(estimate = self.bwe.estimate(), "fast path estimate");
                }
            }
            Err(error) => {
                stats.fast_twcc_refused += 1;
                tracing::debug!(%error, "TWCC report refused");
            }
        }
    }

    /// Notes where str0m sends: its DTLS and SRTP(C) datagrams go on the
    /// selected candidate pair (STUN answers may go elsewhere and are
    /// ignored).
    pub(crate) fn saw_transmit(&mut self, t: &Transmit) {
        if let Some(&first) = t.contents.first()
            && ((20..=63).contains(&first) || (128..=191).contains(&first))
        {
            self.route = Some((t.proto, t.source, t.destination));
        }
    }

    /// The sealer, made when the session's keys first appear.
    fn sealer(&mut self) -> Option<&mut SrtpSealer> {
        if self.sealer.is_none() {
            let keys = self.slot.get()?;
            match SrtpSealer::new(base_provider(), keys.profile, &keys.material, keys.active) {
                Ok(s) => self.sealer = Some(s),
                Err(error) => {
                    tracing::debug!(%error, "no fast path for this session");
                    return None;
                }
            }
        }
        self.sealer.as_mut()
    }

    /// An SDP was applied: the extensions the subscriber negotiated on
    /// each m-line may have changed (str0m keeps each extension at one id
    /// for the session, but leaves it out of an m-line whose SDP no longer
    /// names it there). `twcc_id`: the session's TWCC id on the m-lines the
    /// router now sends on, if any still has it.
    pub(crate) fn forget_extension_ids(&mut self, twcc_id: Option<u8>) {
        for stream in self.streams.values_mut() {
            stream.exts = None;
        }
        // Numbering starts with the first packet this path seals
        // (`Peer::forward_fast`); from then on the id follows the SDP.
        if self.numbering {
            self.twcc_id = twcc_id;
        }
    }

    /// Who seals the SSRC's next packet: decided at its first, and again
    /// while str0m has it for want of keys, once `str0m_idle` says str0m
    /// has nothing of the session's left to send before it.
    fn owner(&mut self, ssrc: u32, red: bool, str0m_idle: bool) -> Owner {
        match self.owners.get(&ssrc) {
            Some(&o @ (Owner::Fast | Owner::Red)) => return o,
            Some(Owner::Str0m) if !str0m_idle => return Owner::Str0m,
            Some(Owner::Str0m) | None => {}
        }
        let owner = if red {
            Owner::Red
        } else if self.route.is_some() && self.sealer().is_some() {
            Owner::Fast
        } else {
            Owner::Str0m
        };
        self.owners.insert(ssrc, owner);
        owner
    }

    /// Keeps the sealed bytes of a fast stream's anchor, `seq` of `ssrc` as
    /// it leaves, in the stream's history: its NACKs are answered from there
    /// like the rest, within the same budget. str0m was given the anchor as
    /// not nackable, so it never resends on the fast path's SSRC: its own
    /// budget counts only the anchors' bytes, and a storm of NACKs for one
    /// anchor had it resend that packet again and again.
    fn keep_anchor(&mut self, ssrc: u32, seq: u16, sealed: &[u8]) {
        let Some(stream) = self.streams.get_mut(&ssrc) else {
            return;
        };
        let Some((ext, at, key)) = stream.anchor.filter(|a| a.0 as u16 == seq) else {
            return;
        };
        stream.anchor = None;
        stream.budget.decay(at);
        stream.budget.sent_bytes += sealed.len() as f64;
        stream.keep(ext, at, key, sealed);
        self.budget.decay(at);
        self.budget.sent_bytes += sealed.len() as f64;
    }

    /// Answers a subscriber's NACK for a fast stream from its history:
    ///
    /// - packets of a key frame first, so a resend that unblocks decoding
    ///   is not refused for one that would not;
    /// - none from before the last key frame sent (unless of that key frame):
    ///   the receiver decodes from that key frame on, so they would arrive
    ///   too late to be played;
    /// - within the retransmission budget ([`FastPath::resend_ratio`]);
    /// - each packet once per NACK, however often the NACK lists it.
    fn on_nack(
        &mut self,
        ssrc: u32,
        seqs: impl FnOnce(SeqNo) -> Vec<SeqNo>,
        now: Instant,
        transmits: &mut TransmitQueue,
        stats: &mut crate::PeerStats,
    ) {
        let Some(route) = self.route else { return };
        let ratio = self.resend_ratio(now);
        let Some(stream) = self.streams.get_mut(&ssrc) else {
            return;
        };
        let Some(highest) = stream.highest else {
            return;
        };
        stream.budget.decay(now);
        let mut wanted: Vec<(bool, u64)> = Vec::new();
        for seq in seqs(highest.into()) {
            let seq = *seq;
            let Some(kept) = stream.kept(seq, now) else {
                stats.fast_nack_unanswered += 1;
                continue;
            };
            if !kept.key && stream.key_from.is_some_and(|from| seq < from) {
                stats.fast_nack_too_late += 1;
                continue;
            }
            wanted.push((!kept.key, seq));
        }
        wanted.sort_unstable();
        wanted.dedup();
        let mut resent = 0.0;
        for (_, seq) in wanted {
            let Some(kept) = stream.kept(seq, now) else {
                continue;
            };
            let len = kept.sealed_len as f64;
            if let Some(ratio) = ratio
                && stream.budget.resent_bytes + len > ratio * stream.budget.sent_bytes
            {
                stats.fast_nack_over_budget += 1;
                continue;
            }
            let again = match &kept.payload {
                None => {
                    let mut out = transmits.buffer(kept.bytes.len());
                    out.copy_from_slice(&kept.bytes);
                    out
                }
                Some(payload) => {
                    let mut out =
                        transmits.buffer(kept.bytes.len() + payload.len() + SRTP_OVERHEAD);
                    let header = &kept.bytes;
                    let sealer = self.sealer.as_mut();
                    match sealer.map(|s| s.reseal_parts_at(header, payload, seq, &mut out)) {
                        Some(Ok(n)) if tail_of(&out[..n]) == kept.tail => {
                            out.truncate(n);
                            out
                        }
                        Some(Ok(_)) => {
                            transmits.recycle(out);
                            stats.fast_seal_errors += 1;
                            tracing::warn!(seq, "resend sealed to other bytes; dropped");
                            continue;
                        }
                        Some(Err(error)) => {
                            transmits.recycle(out);
                            stats.fast_seal_errors += 1;
                            tracing::debug!(%error, "resend not sealed");
                            continue;
                        }
                        None => {
                            transmits.recycle(out);
                            continue;
                        }
                    }
                }
            };
            let late = now.saturating_duration_since(kept.at);
            stream.repairs.resent(late, now);
            stream.budget.resent_bytes += len;
            resent += len;
            stats.fast_resent += 1;
            // Resends keep the number they first carried.
            pace(&mut self.pacer, now, (route, again, None), transmits, stats);
        }
        self.budget.resent_bytes += resent;
    }

    /// The share of a stream's bytes its resends may take now: the
    /// configured `rtx_ratio_cap` (`None`: no limit), or more where the
    /// bandwidth estimate leaves room beyond what the session sends, up to
    /// [`MAX_RESEND_RATIO`]. Not less than the cap where the estimate is
    /// short: under random loss the estimate itself falls, and refusing the
    /// repairs that loss calls for freezes video (a refused repair costs a
    /// key frame, larger than the resends).
    fn resend_ratio(&mut self, now: Instant) -> Option<f64> {
        let cap = f64::from(self.rtx_ratio_cap?);
        self.budget.decay(now);
        if !self.estimates || self.budget.sent_bytes <= 0.0 {
            return Some(cap);
        }
        let room = self.bwe.estimate() as f64 / 8.0 * BUDGET_WINDOW_SECS;
        let spare =
            (room - self.budget.sent_bytes - self.budget.resent_bytes) / self.budget.sent_bytes;
        Some(spare.clamp(cap, MAX_RESEND_RATIO.max(cap)))
    }
}

impl FastStream {
    fn new(now: Instant) -> Self {
        FastStream {
            last_anchor: None,
            history: (0..HISTORY_PACKETS).map(|_| None).collect(),
            highest: None,
            budget: Budget::new(now),
            repairs: RepairDelay::default(),
            anchor: None,
            key_ts: None,
            key_from: None,
            exts: None,
        }
    }

    /// The packet `seq`, if kept and young enough to resend.
    fn kept(&self, seq: u64, now: Instant) -> Option<&Kept> {
        self.history[(seq % HISTORY_PACKETS as u64) as usize]
            .as_ref()
            .filter(|k| k.seq == seq && now.saturating_duration_since(k.at) <= HISTORY_AGE)
    }

    /// Notes where key frames start: the packet at `seq` with `timestamp`
    /// (a VP8 `payload` read as [`crate::vp8::parse`] does). Returns
    /// whether the packet belongs to the last key frame.
    fn note_key_frame(&mut self, seq: u64, timestamp: u32, payload: &[u8]) -> bool {
        if crate::vp8::parse(payload).keyframe_start {
            self.key_ts = Some(timestamp);
            self.key_from = Some(self.key_from.map_or(seq, |f| f.max(seq)));
        }
        self.key_ts == Some(timestamp)
    }

    /// Keeps a copy of `sealed`, a datagram str0m sealed, for resends.
    fn keep(&mut self, seq: u64, now: Instant, key: bool, sealed: &[u8]) {
        self.keep_bytes(seq, now, key, sealed, None, sealed);
    }

    /// Keeps what this path sealed at `seq` into `sealed`: its clear
    /// `header` (as sealed, with its transport-wide number) and the shared
    /// `payload`, to be sealed again on a NACK, and the datagram's tail to
    /// check that sealing again gives the same bytes.
    fn keep_clear(
        &mut self,
        seq: u64,
        now: Instant,
        key: bool,
        header: &[u8],
        payload: &Arc<[u8]>,
        sealed: &[u8],
    ) {
        self.keep_bytes(seq, now, key, header, Some(payload.clone()), sealed);
    }

    /// Fills the slot of `seq`, reusing its buffer.
    fn keep_bytes(
        &mut self,
        seq: u64,
        now: Instant,
        key: bool,
        bytes: &[u8],
        payload: Option<Arc<[u8]>>,
        sealed: &[u8],
    ) {
        let (sealed_len, tail) = (sealed.len(), tail_of(sealed));
        let slot = &mut self.history[(seq % HISTORY_PACKETS as u64) as usize];
        match slot {
            Some(k) => {
                k.seq = seq;
                k.at = now;
                k.key = key;
                k.bytes.clear();
                k.bytes.extend_from_slice(bytes);
                k.payload = payload;
                k.sealed_len = sealed_len;
                k.tail = tail;
            }
            None => {
                *slot = Some(Kept {
                    seq,
                    at: now,
                    key,
                    bytes: bytes.to_vec(),
                    payload,
                    sealed_len,
                    tail,
                })
            }
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
    }
}

/// A sealed datagram for the route, with the transport-wide number it
/// carries if this path numbered it.
type Sealed = ((Protocol, SocketAddr, SocketAddr), Vec<u8>, Option<u64>);

/// Queues a sealed datagram behind the subscriber's pacer and lets out
/// what may leave now: with nothing waiting and the bucket not empty, the
/// datagram itself, at once.
fn pace(
    pacer: &mut Pacer,
    now: Instant,
    ((proto, source, destination), contents, twcc): Sealed,
    transmits: &mut TransmitQueue,
    stats: &mut crate::PeerStats,
) {
    let t = Transmit {
        proto,
        source,
        destination,
        contents,
    };
    let t = match pacer.pass(t, twcc) {
        Ok(t) => {
            let len = t.contents.len() as u64;
            if transmits.push(t) {
                stats.datagrams_out += 1;
                stats.bytes_out += len;
            }
            return;
        }
        Err(t) => t,
    };
    if !pacer.push(now, t, twcc) {
        stats.fast_pace_dropped += 1;
    }
    release(pacer, now, transmits, stats);
}

/// Moves what the pacer lets out at `now` to the router's queue.
fn release(
    pacer: &mut Pacer,
    now: Instant,
    transmits: &mut TransmitQueue,
    stats: &mut crate::PeerStats,
) {
    while let Some((t, waited)) = pacer.poll(now) {
        let len = t.contents.len() as u64;
        stats.fast_paced += u64::from(waited);
        if transmits.push(t) {
            stats.datagrams_out += 1;
            stats.bytes_out += len;
        }
    }
}

/// What [`Peer::forward_fast`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// Sealed and queued.
    Sent,
    /// Written to str0m: the peer needs a timeout to let it out.
    ToStr0m,
    /// A fast stream's anchor, written to str0m: it must leave before the
    /// stream's next packets, sealed here, or the receiver sees it late
    /// (and a receiver's first packet late is dropped as older than its
    /// stream's start).
    Anchor,
    Dropped,
}

impl Peer {
    /// Forwards a publisher's `packet` to the stream on `mid` by the fast
    /// path where that stream is the fast path's, else through str0m.
    pub(crate) fn forward_fast(
        &mut self,
        mid: Mid,
        params: &PayloadParams,
        packet: &MediaPacket,
        now: Instant,
        transmits: &mut TransmitQueue,
    ) -> Forwarded {
        let Some(out) = self.outgoing.get(&mid) else {
            return Forwarded::Dropped;
        };
        let (ssrc, kind) = (*out.ssrc, out.kind);
        let red = params.red() == Some(packet.header.payload_type);
        let str0m_idle = self.unsent == 0;
        let owner = match self.fast.as_mut() {
            Some(fast) => fast.owner(ssrc, red, str0m_idle),
            None => Owner::Str0m,
        };
        if owner != Owner::Fast {
            return if self.forward(mid, params, packet) {
                Forwarded::ToStr0m
            } else {
                Forwarded::Dropped
            };
        }
        let Some(fast) = self.fast.as_mut() else {
            return Forwarded::Dropped;
        };
        if red {
            self.stats.fast_red_dropped += 1;
            return Forwarded::Dropped;
        }
        let Some(out) = self.outgoing.get_mut(&mid) else {
            return Forwarded::Dropped;
        };
        let Some(pt) = local_pt(&mut out.pt_map, &self.rtc, mid, params) else {
            return Forwarded::Dropped;
        };
        let Some(rewritten) = out.rewrite(params, packet) else {
            return Forwarded::Dropped;
        };
        if fast.pad.is_none() && kind == MediaKind::Video {
            let rtx = self
                .rtc
                .direct_api()
                .stream_tx(&out.ssrc)
                .and_then(|s| s.rtx());
            let rtx_pt = self
                .rtc
                .codec_config()
                .find(|p| p.pt() == pt)
                .and_then(|p| p.resend());
            if let (Some(ssrc), Some(pt)) = (rtx, rtx_pt) {
                fast.pad = Some(Padding {
                    ssrc: *ssrc,
                    pt: *pt,
                    next: 0,
                });
            }
        }
        let stream = fast
            .streams
            .entry(ssrc)
            .or_insert_with(|| FastStream::new(now));
        let (playout, key) = if kind == MediaKind::Video {
            stream.repairs.arrived(rewritten.seq, now);
            let key = stream.note_key_frame(rewritten.seq, rewritten.timestamp, &packet.payload);
            (stream.repairs.playout_delay(now), key)
        } else {
            (None, false)
        };
        let anchor_due = stream
            .last_anchor
            .is_none_or(|at| now.saturating_duration_since(at) >= ANCHOR_EVERY);
        let from = &packet.header.ext_vals;
        let exts = match stream.exts {
            Some(e) => e,
            None => {
                let e = ExtensionIds::of(self.rtc.media(mid).map(|m| m.remote_extmap()));
                *stream.exts.insert(e)
            }
        };
        let twcc_id = exts.twcc;
        if fast.twcc_id.is_none() && twcc_id.is_some() {
            fast.twcc_id = twcc_id;
            fast.numbering = true;
        }
        // Audio resuming after skipped packets starts a talkspurt.
        let marker = packet.header.marker || (rewritten.resumed && kind == MediaKind::Audio);
        if anchor_due {
            stream.last_anchor = Some(now);
            if kind == MediaKind::Video {
                stream.anchor = Some((rewritten.seq, now, key));
            }
            let numbers_all = fast.numbers_all();
            let Some(sealer) = fast.sealer() else {
                return Forwarded::Dropped;
            };
            // Sealed again here when this path numbers str0m's packets;
            // else str0m's ciphertext is the one sent, and this index is not
            // this sealer's to use.
            if !numbers_all && sealer.reserve(ssrc, rewritten.seq).is_err() {
                self.stats.fast_seal_errors += 1;
                return Forwarded::Dropped;
            }
            // Not nackable: its resends are the fast path's (keep_anchor).
            let write = forwarded_write(pt, rewritten, packet, packet.payload.clone(), marker)
                .nackable(kind != MediaKind::Video);
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx(&out.ssrc) else {
                return Forwarded::Dropped;
            };
            tx.write_rtp(write);
            self.unsent += 1;
            return Forwarded::Anchor;
        }

        // The clear packet: fixed header, then the one-byte extensions this
        // subscriber negotiated that the packet needs. MID always: str0m
        // stops sending it once the receiver has bound the SSRC, which only
        // str0m learns.
        let mid_id = exts.mid;
        let orientation = exts.orientation.zip(from.video_orientation);
        // RFC 6464: V bit, then the level in -dBov.
        let level = exts.level.zip(from.audio_level).map(|(id, l)| {
            let v = u8::from(from.voice_activity == Some(true)) << 7;
            (id, v | l.unsigned_abs().min(127))
        });
        let twcc = twcc_id.filter(|_| fast.numbers_all());
        let playout = exts.playout.filter(|id| (1..=14).contains(id)).zip(playout);
        let clear = &mut fast.clear;
        clear.clear();
        clear.push(0x80);
        clear.push((u8::from(marker) << 7) | (*pt & 0x7f));
        clear.extend_from_slice(&(rewritten.seq as u16).to_be_bytes());
        clear.extend_from_slice(&rewritten.timestamp.to_be_bytes());
        clear.extend_from_slice(&ssrc.to_be_bytes());
        let mid_bytes: &str = &mid;
        let mid_bytes = mid_bytes.as_bytes();
        let mid_ext = mid_id.filter(|_| (1..=16).contains(&mid_bytes.len()));
        if mid_ext.is_some()
            || orientation.is_some()
            || level.is_some()
            || twcc.is_some()
            || playout.is_some()
        {
            clear[0] |= 0x10;
            let start = clear.len();
            clear.extend_from_slice(&[0xbe, 0xde, 0, 0]);
            if let Some(id) = mid_ext {
                clear.push((id << 4) | (mid_bytes.len() as u8 - 1));
                clear.extend_from_slice(mid_bytes);
            }
            if let Some((id, o)) = orientation {
                clear.push(id << 4);
                clear.push(o as u8);
            }
            if let Some((id, l)) = level {
                clear.push(id << 4);
                clear.push(l);
            }
            if let Some((id, delay)) = playout {
                clear.push((id << 4) | 2);
                clear.extend_from_slice(&playout::encode(delay));
            }
            if let Some(id) = twcc {
                // Numbered at sealing, below.
                clear.push((id << 4) | 1);
                clear.extend_from_slice(&[0, 0]);
            }
            while (clear.len() - start) % 4 != 0 {
                clear.push(0);
            }
            let words = ((clear.len() - start - 4) / 4) as u16;
            clear[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        }
        // The payload is sealed where it lies, shared with the publisher's
        // other subscribers: `clear` is the header only.
        let Some(route) = fast.route else {
            return Forwarded::Dropped;
        };
        // A spare buffer: the driver hands sent ones back (`Router::recycle`).
        let mut sealed = transmits.buffer(clear.len() + packet.payload.len() + SRTP_OVERHEAD);
        let mut clear = std::mem::take(&mut fast.clear);
        let mut numbered = None;
        if let Some(at) = twcc.and_then(|id| extension_at(&clear, id)) {
            let seq = fast.next_twcc(now, sealed.len());
            clear[at..at + 2].copy_from_slice(&(seq as u16).to_be_bytes());
            numbered = Some(seq);
        }
        let result = fast
            .sealer()
            .map(|s| s.seal_parts_at(&clear, &packet.payload, rewritten.seq, &mut sealed));
        match result {
            Some(Ok(n)) => sealed.truncate(n),
            Some(Err(error)) => {
                fast.clear = clear;
                transmits.recycle(sealed);
                self.stats.fast_seal_errors += 1;
                tracing::debug!(peer = %self.id, %error, "not sealed");
                return Forwarded::Dropped;
            }
            None => {
                fast.clear = clear;
                transmits.recycle(sealed);
                return Forwarded::Dropped;
            }
        }
        let stream = fast
            .streams
            .entry(ssrc)
            .or_insert_with(|| FastStream::new(now));
        stream.budget.decay(now);
        stream.budget.sent_bytes += sealed.len() as f64;
        // Audio is not repaired (no RTX for Opus here): nothing to keep.
        if kind == MediaKind::Video {
            stream.keep_clear(rewritten.seq, now, key, &clear, &packet.payload, &sealed);
            fast.budget.decay(now);
            fast.budget.sent_bytes += sealed.len() as f64;
        }
        fast.clear = clear;
        self.stats.fast_sealed += 1;
        let out = (route, sealed, numbered);
        pace(&mut fast.pacer, now, out, transmits, &mut self.stats);
        if kind == MediaKind::Video {
            fast.probe(now, transmits, &mut self.stats);
        }
        if let Some(at) = fast.due_at() {
            self.next_timeout = self.next_timeout.min(at);
        }
        Forwarded::Sent
    }

    /// A raw packet str0m reported (fast path only): NACKs for fast streams
    /// are answered, TWCC reports feed the estimator, str0m's sent RTP is
    /// numbered and sealed again; the rest was for troubleshooting and is
    /// dropped.
    pub(crate) fn on_raw(&mut self, raw: RawPacket, now: Instant, transmits: &mut TransmitQueue) {
        let Some(fast) = self.fast.as_mut() else {
            return;
        };
        let nack = match raw {
            RawPacket::RtcpRx(Rtcp::Nack(nack)) => nack,
            RawPacket::RtcpRx(Rtcp::Twcc(twcc)) => {
                fast.on_twcc(twcc, now, &mut self.stats);
                return;
            }
            RawPacket::RtpTx(header, clear) => {
                fast.on_rtp_tx(&header, clear, now, transmits, &mut self.stats);
                return;
            }
            _ => return,
        };
        let ssrc = *nack.ssrc;
        if fast.owners.get(&ssrc) != Some(&Owner::Fast) {
            return;
        }
        let reports = nack.reports;
        fast.on_nack(
            ssrc,
            |near| {
                reports
                    .iter()
                    .flat_map(|e| e.into_iter(near))
                    .take(HISTORY_PACKETS)
                    .collect()
            },
            now,
            transmits,
            &mut self.stats,
        );
    }
}

/// A TWCC report as (transport-wide sequence number, arrival) pairs, read
/// by str0m's own reader (which str0m runs on every report it receives
/// too): 16-bit numbers extended around `from`, arrival times counted from
/// `zero`. The reader's extension wraps below 0 (a report reaching back
/// before number 0 would overflow its `u64` arithmetic), so it works on
/// numbers a wrap higher, given back as they were; what lies before 0 is
/// skipped.
fn report(
    twcc: str0m::rtp::rtcp::Twcc,
    zero: Instant,
    from: u64,
) -> impl Iterator<Item = (u64, Option<Instant>)> {
    const LIFT: u64 = 1 << 16;
    twcc.into_iter(zero, from.saturating_add(LIFT).into())
        .filter_map(|(seq, _, arrival)| Some(((*seq).checked_sub(LIFT)?, arrival)))
}

/// Where the value of the two-byte header extension element `id` starts in
/// the RTP packet `clear` (one-byte or two-byte header form, RFC 8285), if
/// it has one of that length.
fn extension_at(clear: &[u8], id: u8) -> Option<usize> {
    let first = *clear.first()?;
    if first & 0x10 == 0 {
        return None;
    }
    let start = 12 + 4 * usize::from(first & 0x0f);
    let profile = u16::from_be_bytes([*clear.get(start)?, *clear.get(start + 1)?]);
    let words = u16::from_be_bytes([*clear.get(start + 2)?, *clear.get(start + 3)?]);
    let end = (start + 4 + 4 * usize::from(words)).min(clear.len());
    let two_byte = profile & 0xfff0 == 0x1000;
    if profile != 0xbede && !two_byte {
        return None;
    }
    let mut at = start + 4;
    while at < end {
        let b = clear[at];
        if b == 0 {
            // Padding, in either form.
            at += 1;
            continue;
        }
        let (element, len, value) = if two_byte {
            (b, usize::from(*clear.get(at + 1)?), at + 2)
        } else if b >> 4 == 15 {
            return None;
        } else {
            (b >> 4, usize::from(b & 0x0f) + 1, at + 1)
        };
        if value + len > end {
            return None;
        }
        if element == id {
            return (len == 2).then_some(value);
        }
        at = value + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use str0m::rtp::rtcp::Twcc;

    use super::{extension_at, report};
    use crate::bwe::Bwe;

    /// Random feedback bytes, as a subscriber might send inside its SRTCP:
    /// what str0m parses as a TWCC report goes through the same reading as
    /// a real one, and is used or refused, never a panic.
    #[test]
    fn garbage_twcc_reports_are_refused_or_harmless() {
        // Any instant: nothing here reads a clock.
        #[allow(clippy::disallowed_methods)]
        let zero = Instant::now();
        let mut bwe = Bwe::new(1_000_000);
        for i in 0..3_000u64 {
            bwe.register(zero + Duration::from_millis(i), 1_200);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let (mut parsed, mut refused) = (0, 0);
        for n in 0..20_000usize {
            let len = 16 + n % 120;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let Ok(twcc) = Twcc::try_from(&bytes[..]) else {
                continue;
            };
            parsed += 1;
            let now = zero + Duration::from_millis(n as u64);
            if bwe.on_feedback(report(twcc, zero, 2_999), now).is_err() {
                refused += 1;
            }
            assert!(bwe.estimate() >= 50_000 && bwe.estimate() <= 50_000_000);
        }
        assert!(parsed > 100, "{parsed}");
        assert!(refused > 0, "{refused} of {parsed}");
    }

    /// A resend is the first datagram sealed again at the same index. If a
    /// defect ever kept other bytes than were sealed there, sealing them
    /// would reuse the index's nonce over different data: the resend is
    /// checked against the first datagram's tag and dropped, not sent.
    #[test]
    fn a_resend_that_would_seal_other_bytes_is_dropped_not_sent() {
        use std::sync::Arc;

        use str0m::crypto::dtls::SrtpProfile;
        use str0m::net::Protocol;

        use super::{FastPath, FastStream, SRTP_OVERHEAD};
        use crate::keyexport::{KeySlot, base_provider};
        use crate::srtp::SrtpSealer;
        use crate::transmit::TransmitQueue;

        // Any instant: nothing here reads a clock.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let ssrc = 0x0102_0304u32;
        let header = [0x80, 96, 0, 7, 0, 0, 0, 9, 1, 2, 3, 4];
        let sent: Arc<[u8]> = Arc::from(&[0x11u8; 200][..]);
        let other: Arc<[u8]> = Arc::from(&[0x22u8; 200][..]);
        let route = Some((
            Protocol::Udp,
            "127.0.0.1:1".parse().expect("address"),
            "127.0.0.1:2".parse().expect("address"),
        ));
        let resend = |kept: &Arc<[u8]>| {
            let mut fast = FastPath::new(KeySlot::default(), None, None, false, now);
            let material = [7u8; 2 * (16 + 12)];
            let sealer = SrtpSealer::new(
                base_provider(),
                SrtpProfile::AEAD_AES_128_GCM,
                &material,
                true,
            );
            let mut sealer = sealer.expect("sealer");
            let mut sealed = vec![0u8; header.len() + sent.len() + SRTP_OVERHEAD];
            let n = sealer.seal_parts_at(&header, &sent, 7, &mut sealed);
            sealed.truncate(n.expect("sealed"));
            fast.sealer = Some(sealer);
            fast.route = route;
            let mut stream = FastStream::new(now);
            stream.keep_clear(7, now, true, &header, kept, &sealed);
            fast.streams.insert(ssrc, stream);
            let mut transmits = TransmitQueue::new(16);
            let mut stats = crate::PeerStats::default();
            fast.on_nack(ssrc, |_| vec![7.into()], now, &mut transmits, &mut stats);
            (transmits.pop().map(|t| t.contents.to_vec()), sealed, stats)
        };

        let (again, first, stats) = resend(&sent);
        assert_eq!(again.as_deref(), Some(&first[..]), "the same bytes");
        assert_eq!((stats.fast_resent, stats.fast_seal_errors), (1, 0));

        let (again, _, stats) = resend(&other);
        assert_eq!(again, None, "other bytes at a used index are not sent");
        assert_eq!((stats.fast_resent, stats.fast_seal_errors), (0, 1));
    }

    #[test]
    fn budget_step_factor_is_the_half_life_s() {
        use super::{BUDGET_HALF_LIFE, BUDGET_STEP, BUDGET_STEP_FACTOR};
        let exact = 0.5f64.powf(BUDGET_STEP.as_secs_f64() / BUDGET_HALF_LIFE.as_secs_f64());
        assert!((BUDGET_STEP_FACTOR - exact).abs() < 1e-15, "{exact}");
        assert_eq!(BUDGET_STEP * 256, BUDGET_HALF_LIFE);
    }

    /// The budget's counters halve every half-life, as they did when decayed
    /// smoothly at every packet: exactly at whole steps, never more than
    /// one step's decay above the smooth curve between them, and the same
    /// however often they are decayed (the steps do not drift).
    #[test]
    fn budget_counters_halve_every_half_life_however_often_decayed() {
        use super::{BUDGET_HALF_LIFE, BUDGET_STEP, BUDGET_STEP_FACTOR, Budget};
        // Any instant: nothing here reads a clock.
        #[allow(clippy::disallowed_methods)]
        let zero = Instant::now();
        let smooth =
            |elapsed: Duration| 0.5f64.powf(elapsed.as_secs_f64() / BUDGET_HALF_LIFE.as_secs_f64());
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);

        // Decayed at every millisecond, as per-packet calls do.
        let mut often = Budget::new(zero);
        often.sent_bytes = 1_000_000.0;
        often.resent_bytes = 1_000.0;
        for ms in 1..=2_000 {
            often.decay(zero + Duration::from_millis(ms));
        }
        assert!(close(often.sent_bytes, 250_000.0), "{}", often.sent_bytes);
        assert!(close(often.resent_bytes, 250.0), "{}", often.resent_bytes);

        // Decayed once, at odd times: between the smooth value and one step
        // above it.
        for elapsed_us in [3_906, 3_907, 10_000, 333_333, 1_500_001, 7_777_777] {
            let elapsed = Duration::from_micros(elapsed_us);
            let mut once = Budget::new(zero);
            once.sent_bytes = 1_000_000.0;
            once.decay(zero + elapsed);
            let want = 1_000_000.0 * smooth(elapsed);
            assert!(once.sent_bytes >= want * (1.0 - 1e-12), "{elapsed:?}");
            assert!(
                once.sent_bytes <= want / BUDGET_STEP_FACTOR * (1.0 + 1e-12),
                "{elapsed:?}"
            );
        }

        // Within a step of its time, and before it: unchanged.
        let mut early = Budget::new(zero + BUDGET_STEP);
        early.sent_bytes = 100.0;
        early.decay(zero);
        early.decay(zero + BUDGET_STEP + BUDGET_STEP / 2);
        assert_eq!(early.sent_bytes, 100.0);
        early.decay(zero + BUDGET_STEP * 2);
        assert!(close(early.sent_bytes, 100.0 * BUDGET_STEP_FACTOR));

        // After a long silence: empty.
        let mut idle = Budget::new(zero);
        idle.sent_bytes = 1e12;
        idle.resent_bytes = 1e12;
        idle.decay(zero + Duration::from_secs(3_600));
        assert_eq!((idle.sent_bytes, idle.resent_bytes), (0.0, 0.0));
        idle.sent_bytes = 8.0;
        idle.decay(zero + Duration::from_secs(3_601));
        assert!(close(idle.sent_bytes, 4.0), "{}", idle.sent_bytes);
    }

    #[test]
    fn finds_an_extension_in_either_header_form_and_never_reads_past_the_end() {
        let mut one = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        one.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x10, b'a', 0x31, 0xaa, 0xbb, 0, 0, 0]);
        assert_eq!(extension_at(&one, 3), Some(19));
        assert_eq!(extension_at(&one, 1), None, "one byte long");
        assert_eq!(extension_at(&one, 5), None);
        let mut two = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        two.extend_from_slice(&[0x10, 0x00, 0, 1, 7, 2, 0xaa, 0xbb]);
        assert_eq!(extension_at(&two, 7), Some(18));
        for cut in 0..one.len() {
            let _ = extension_at(&one[..cut], 3);
        }
        let mut lying = one.clone();
        lying[15] = 200;
        assert_eq!(extension_at(&lying, 3), Some(19));
        lying[16] = 0x3f;
        assert_eq!(extension_at(&lying, 3), None);
    }
}
