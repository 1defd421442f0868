//! One member's WebRTC session inside the router.
//!
//! A [`Peer`] wraps one `str0m::Rtc` (ICE-lite, RTP mode) with what the router
//! needs around it: the tracks it publishes, the streams it receives and how
//! each is rewritten, its renegotiation state, and its counters. It knows
//! nothing about other peers: draining its `Rtc` turns str0m output into
//! datagrams (straight into the transmit queue) and [`PeerOutput`]s for the
//! router to act on, such as an RTP packet to fan out.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

use crate::relay::MediaPacket;
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output, Rtc};

use crate::fastpath::FastPath;
use crate::layer_steps::LayerSteps;
use crate::red::{self, RedForward};
use crate::rewrite::{Rewriter, Rewritten, SourcePacket};
use crate::router::{RTX_HISTORY_AGE, RTX_HISTORY_PACKETS};
use crate::stats::PeerStats;
use crate::transmit::{Transmit, TransmitQueue};
use crate::video_pause::{Congestion, VideoPause};

/// Outputs taken from one `Rtc` in one drain, at most. str0m always ends a
/// drain with a timeout; the bound only keeps a bug from hanging a worker.
const MAX_OUTPUTS_PER_DRAIN: usize = 100_000;

/// When to poll an `Rtc` again after it returned an error but lives on.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(10);

/// How long a peer whose timeout just ran and that asks for another at the
/// same instant waits before it gets one.
const PACER_SPIN_GUARD: Duration = Duration::from_millis(1);

/// Timeouts given to one peer in one [`Peer::release`], at most: each lets
/// one packet out of str0m's send queue, so this bounds how much of a
/// backlog one peer sends before the others get a turn.
const MAX_TIMEOUTS_PER_CALL: usize = 256;

/// After each packet str0m's pacer asks for its next timeout this much
/// after the last one: it wants time to move between two packets.
const PACER_STEP: Duration = Duration::from_micros(1);

/// The shell's name for a peer: one member's media session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {}", self.0)
    }
}

/// A published track: the publisher and the m-line it sends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId {
    pub publisher: PeerId,
    pub mid: Mid,
}

/// What a drain found that the router must act on.
// Nearly every item is an RTP packet: boxing the large variant would cost an
// allocation per packet and save nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PeerOutput {
    /// A packet the peer published on `mid` (simulcast layer `rid`).
    Rtp {
        mid: Mid,
        rid: Option<Rid>,
        packet: MediaPacket,
    },
    /// The peer's offer added an m-line (direction from the router's side).
    MediaAdded {
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
    },
    MediaChanged {
        mid: Mid,
        direction: Direction,
    },
    /// The peer asks for a keyframe on a stream it receives.
    KeyframeRequest {
        mid: Mid,
    },
    Connected,
    Disconnected,
    Closed,
}

/// A stream the router sends this peer: one forwarded track.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) track: TrackId,
    pub(crate) kind: MediaKind,
    pub(crate) ssrc: Ssrc,
    /// Created with the first packet, when the clock rate is known.
    pub(crate) rewriter: Option<Rewriter>,
    /// Publisher payload type → ours for this m-line (None: no common codec).
    pub(crate) pt_map: Vec<(Pt, Option<Pt>)>,
    /// Simulcast: the layer forwarded now (`None`: none yet).
    pub(crate) current: Option<Rid>,
    /// Simulcast: the layer to switch to at its next key frame.
    pub(crate) target: Option<Rid>,
    /// The size the subscriber shows this video at, if it said.
    pub(crate) view: Option<(u32, u32)>,
    /// Simulcast: holds budget-driven layer changes until they last.
    pub(crate) steps: LayerSteps,
    /// Paused for congestion: even its smallest layer does not fit beside
    /// the subscriber's other videos (`video_pause.rs`); nothing is
    /// forwarded until a probe shows the link carries it.
    pub(crate) paused: bool,
}

impl Outgoing {
    /// The subscriber said it shows this video nowhere (a 0×0 view): it is
    /// not forwarded until a size comes again.
    pub(crate) fn hidden(&self) -> bool {
        self.view.is_some_and(|(w, h)| w == 0 || h == 0)
    }

    /// Nothing of this video goes to the subscriber now: hidden by it, or
    /// paused for congestion.
    pub(crate) fn withheld(&self) -> bool {
        self.paused || self.hidden()
    }

    /// Where the publisher's `packet` (codec `params`) goes in this stream;
    /// `None` if it must be dropped ([`Rewriter::rewrite`]).
    pub(crate) fn rewrite(
        &mut self,
        params: &PayloadParams,
        packet: &MediaPacket,
    ) -> Option<Rewritten> {
        self.rewriter
            .get_or_insert_with(|| Rewriter::new(params.spec().clock_rate.get()))
            .rewrite(SourcePacket {
                source: *packet.header.ssrc,
                seq: *packet.seq_no,
                timestamp: packet.header.timestamp,
                arrival: packet.timestamp,
            })
    }
}

/// An offer sent to the peer and not yet answered.
pub(crate) struct Pending {
    pub(crate) offer: SdpPendingOffer,
    /// The tracks it adds, and the m-line each got.
    pub(crate) adds: Vec<(TrackId, Mid)>,
}

pub(crate) struct Peer {
    pub(crate) id: PeerId,
    pub(crate) rtc: Rtc,
    pub(crate) next_timeout: Instant,
    /// The peer's first offer was accepted: the transport (ICE credentials,
    /// DTLS role) exists, so the router may offer it tracks.
    pub(crate) negotiated: bool,
    pub(crate) pending: Option<Pending>,
    /// Tracks to add in the next offer.
    pub(crate) wants: Vec<TrackId>,
    /// Outgoing m-lines to stop in the next offer (their track is gone).
    pub(crate) stops: Vec<Mid>,
    /// The m-lines this peer publishes on.
    pub(crate) published: Vec<Mid>,
    pub(crate) outgoing: BTreeMap<Mid, Outgoing>,
    pub(crate) stats: PeerStats,
    /// The latest egress bandwidth estimate (TWCC), bits per second.
    pub(crate) estimate: Option<u64>,
    /// The desired bitrate last given to str0m's BWE, bits per second.
    pub(crate) desired: u64,
    /// Packets written and not yet seen leave: how many timeouts the next
    /// [`Peer::release`] may take (str0m lets out one per timeout).
    pub(crate) unsent: usize,
    /// The latest time [`Peer::release`] gave str0m, which may be ahead of
    /// the worker's clock by a few microseconds.
    clock: Instant,
    /// The fast forwarding path, if the router has it on (`fastpath.rs`).
    pub(crate) fast: Option<FastPath>,
    /// What congestion holds back from it (`video_pause.rs`).
    pub(crate) video_pause: VideoPause,
    /// Congested: RED audio goes to it as the primary Opus block alone.
    pub(crate) strip_red: bool,
}

impl Peer {
    pub(crate) fn new(id: PeerId, rtc: Rtc, now: Instant) -> Self {
        Peer {
            id,
            rtc,
            next_timeout: now,
            negotiated: false,
            pending: None,
            wants: Vec::new(),
            stops: Vec::new(),
            published: Vec::new(),
            outgoing: BTreeMap::new(),
            stats: PeerStats::default(),
            estimate: None,
            desired: 0,
            unsent: 0,
            clock: now,
            fast: None,
            video_pause: VideoPause::default(),
            strip_red: false,
        }
    }

    /// Polls the `Rtc` until it asks for time, as str0m requires after every
    /// mutation. Returns how many datagrams it gave out.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        transmits: &mut TransmitQueue,
        work: &mut VecDeque<(PeerId, PeerOutput)>,
    ) -> usize {
        let mut sent = 0;
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    let fast = self.fast.as_ref().and_then(FastPath::due_at);
                    self.next_timeout = fast.map_or(at, |f| f.min(at));
                    if !self.rtc.is_alive() {
                        // str0m ended the session (e.g. an offer without a
                        // DTLS fingerprint); the router forgets the peer.
                        work.push_back((self.id, PeerOutput::Closed));
                    }
                    return sent;
                }
                Ok(Output::Transmit(t)) => {
                    sent += 1;
                    let contents: Vec<u8> = t.contents.into();
                    let len = contents.len() as u64;
                    let t = Transmit {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents,
                    };
                    if let Some(fast) = &mut self.fast {
                        fast.saw_transmit(&t);
                        if fast.hold_back(&t) {
                            continue;
                        }
                    }
                    let queued = transmits.push(t);
                    if queued {
                        self.stats.datagrams_out += 1;
                        self.stats.bytes_out += len;
                    }
                }
                Ok(Output::Event(RtcEvent::RawPacket(raw))) => self.on_raw(*raw, now, transmits),
                Ok(Output::Event(e)) => self.on_event(e, work),
                Err(error) => {
                    self.stats.rtc_errors += 1;
                    tracing::warn!(peer = %self.id, %error, "WebRTC session error");
                    if self.rtc.is_alive() {
                        self.next_timeout = now + RETRY_AFTER_ERROR;
                    } else {
                        work.push_back((self.id, PeerOutput::Closed));
                    }
                    return sent;
                }
            }
        }
        tracing::error!(peer = %self.id, "WebRTC output did not settle; polling again");
        self.next_timeout = now;
        sent
    }

    fn on_event(&mut self, e: RtcEvent, work: &mut VecDeque<(PeerId, PeerOutput)>) {
        let output = match e {
            RtcEvent::RtpPacket(packet) => {
                // The packet names its SSRC; the receive stream knows the m-line.
                let ssrc = packet.header.ssrc;
                let Some((mid, rid)) = self
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    self.stats.rtp_unrouted += 1;
                    return;
                };
                PeerOutput::Rtp {
                    mid,
                    rid,
                    packet: packet.into(),
                }
            }
            RtcEvent::MediaAdded(m) => PeerOutput::MediaAdded {
                mid: m.mid,
                kind: m.kind,
                direction: m.direction,
            },
            RtcEvent::MediaChanged(m) => PeerOutput::MediaChanged {
                mid: m.mid,
                direction: m.direction,
            },
            RtcEvent::KeyframeRequest(r) => PeerOutput::KeyframeRequest { mid: r.mid },
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                // Read by the router's next layer choice; nothing to do now.
                self.estimate = Some(estimate.as_u64());
                return;
            }
            RtcEvent::Connected => PeerOutput::Connected,
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                PeerOutput::Disconnected
            }
            RtcEvent::Closed => PeerOutput::Closed,
            _ => return,
        };
        work.push_back((self.id, output));
    }

    /// The egress estimate the layer choice uses: the fast path's own once
    /// its TWCC feedback has arrived (str0m's counts only what str0m
    /// sends), str0m's otherwise.
    pub(crate) fn egress_estimate(&self) -> Option<u64> {
        match &self.fast {
            Some(fast) if fast.estimates && fast.bwe.has_feedback() => Some(fast.bwe.estimate()),
            _ => self.estimate,
        }
    }

    /// What its link carries without congestion, and what a probe showed
    /// it carries lately, bits per second ([`Congestion`],
    /// [`crate::bwe::Bwe::proven`]); `None` without the fast path's own
    /// estimate: str0m's does not tell congestion from random loss. A
    /// session that cannot be probed (no RTX to pad on) takes the
    /// delay-based estimate as its proof, so that what congestion paused
    /// comes back (after `video_pause.rs`'s doubling resume hold).
    pub(crate) fn congestion(&self, now: Instant) -> Option<(Congestion, Option<u64>)> {
        match &self.fast {
            Some(fast) if fast.estimates && fast.bwe.has_feedback() => {
                let proven = if fast.can_probe() {
                    fast.bwe.proven(now)
                } else {
                    Some(fast.bwe.delay_based())
                };
                Some((fast.bwe.congestion(), proven))
            }
            _ => None,
        }
    }

    /// Asks for a timeout at `now`: written packets leave str0m only after
    /// one (see [`Peer::release`]).
    pub(crate) fn wake(&mut self, now: Instant) {
        self.next_timeout = self.next_timeout.min(now);
    }

    /// The peer's timeout is due: runs str0m's timers and lets out the
    /// packets written since.
    ///
    /// str0m's send queue (its pacer, with bandwidth estimation on) lets out
    /// one packet per timeout and then asks for the next timeout one
    /// microsecond later. Waiting for the clock to get there would send a
    /// burst at one packet per turn of the worker's loop, or per millisecond
    /// of the runtime's timer when the worker is idle; so each packet's
    /// follow-up timeout is given at once, with str0m's clock stepped by
    /// that microsecond (ahead of `now` by at most [`MAX_TIMEOUTS_PER_CALL`]
    /// µs). str0m ignores a timeout that would move its clock back, so the
    /// next call starts from that clock when `now` has not caught up. A
    /// timeout that sends nothing ends the call: the queue is empty. One
    /// that asks to run again at the very same instant waits a
    /// [`PACER_SPIN_GUARD`] rather than spin.
    pub(crate) fn release(
        &mut self,
        now: Instant,
        transmits: &mut TransmitQueue,
        work: &mut VecDeque<(PeerId, PeerOutput)>,
    ) {
        let mut clock = now.max(self.clock);
        for _ in 0..self.unsent.clamp(1, MAX_TIMEOUTS_PER_CALL) {
            if let Err(error) = self.rtc.handle_input(Input::Timeout(clock)) {
                self.stats.rtc_errors += 1;
                tracing::debug!(peer = %self.id, %error, "timeout refused");
            }
            let sent = self.drain(clock, transmits, work);
            if sent == 0 {
                self.unsent = 0;
                break;
            }
            self.unsent = self.unsent.saturating_sub(sent);
            if self.next_timeout > clock + PACER_STEP {
                break;
            }
            clock = clock.max(self.next_timeout);
        }
        self.clock = clock;
        // The fast path's probe, slice by slice (`bwe/probe.rs`), and what
        // its pacer lets out now (`pacer.rs`).
        if let Some(fast) = self.fast.as_mut() {
            if fast.probe_due_at().is_some_and(|at| at <= now) {
                fast.probe(now, transmits, &mut self.stats);
            }
            fast.release(now, transmits, &mut self.stats);
        }
        if let Some(at) = self.fast.as_ref().and_then(FastPath::due_at) {
            self.next_timeout = self.next_timeout.min(at);
        }
        if self.next_timeout <= now {
            self.next_timeout = now + PACER_SPIN_GUARD;
        }
    }

    /// Starts receiving `track` on the m-line `mid`, which the last answer
    /// made live, with `rtx_ratio_cap` as its retransmission budget. False
    /// if str0m has no send stream for it (nothing changed).
    pub(crate) fn subscribe(
        &mut self,
        track: TrackId,
        kind: MediaKind,
        mid: Mid,
        rtx_ratio_cap: Option<f32>,
    ) -> bool {
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let ssrc = stream.ssrc();
        // Forwarded packets leave as they came: the publisher paced them
        // already, and str0m's pacer (1.1 times the estimate) would queue a
        // video that has no smaller layer for seconds. The estimate still
        // steers the simulcast layer choice, and str0m still probes with
        // padding when we ask for more. (Janus paces nothing it forwards.)
        stream.set_unpaced(true);
        // Nothing was sent on it yet, so replacing the history loses nothing.
        stream.set_rtx_cache(RTX_HISTORY_PACKETS, RTX_HISTORY_AGE, rtx_ratio_cap);
        self.outgoing.insert(
            mid,
            Outgoing {
                track,
                kind,
                ssrc,
                rewriter: None,
                pt_map: Vec::new(),
                current: None,
                target: None,
                view: None,
                steps: LayerSteps::default(),
                paused: false,
            },
        );
        true
    }

    /// A packet meant for the stream on `mid` is left out on purpose
    /// (silence, or its publisher is not among this peer's last-N): the
    /// next one sent closes the gap, so this peer sees no loss to NACK.
    pub(crate) fn skip(&mut self, mid: Mid) {
        if let Some(r) = self
            .outgoing
            .get_mut(&mid)
            .and_then(|o| o.rewriter.as_mut())
        {
            r.skip();
        }
    }

    /// Writes a publisher's `packet` (codec `params`) to the stream on `mid`
    /// under this peer's SSRC, sequence numbers and timestamps. False if it
    /// was dropped. str0m sends it only after its next timeout: the caller
    /// makes the peer due ([`Peer::wake`]) rather than draining it per packet.
    pub(crate) fn forward(
        &mut self,
        mid: Mid,
        params: &PayloadParams,
        packet: &MediaPacket,
    ) -> bool {
        let Some(out) = self.outgoing.get_mut(&mid) else {
            return false;
        };
        let Some(mut pt) = local_pt(&mut out.pt_map, &self.rtc, mid, params) else {
            return false;
        };
        let mut payload = None;
        if params.red() == Some(packet.header.payload_type) {
            match red::for_subscriber(&self.rtc, pt, &packet.payload, self.strip_red) {
                RedForward::Whole(red_pt) => pt = red_pt,
                RedForward::Primary(primary) => {
                    self.stats.audio_red_unwrapped += 1;
                    payload = Some(primary);
                }
                RedForward::Stripped(primary) => {
                    self.stats.audio_red_stripped += 1;
                    payload = Some(primary);
                }
                RedForward::Malformed => return false,
            }
        }
        let Some(rewritten) = out.rewrite(params, packet) else {
            return false;
        };
        // Audio resuming after skipped packets starts a talkspurt.
        let marker = packet.header.marker || (rewritten.resumed && out.kind == MediaKind::Audio);
        let write = forwarded_write(
            pt,
            rewritten,
            packet,
            payload.map_or_else(|| packet.payload.clone(), Into::into),
            marker,
        );
        let ssrc = out.ssrc;
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&ssrc) else {
            return false;
        };
        stream.write_rtp(write);
        self.unsent += 1;
        true
    }
}

/// What str0m is given to send `packet` as payload type `pt` at its place
/// `rewritten` in a subscriber's stream, carrying `payload`.
pub(crate) fn forwarded_write(
    pt: Pt,
    rewritten: Rewritten,
    packet: &MediaPacket,
    payload: Arc<[u8]>,
    marker: bool,
) -> RtpWrite {
    // Only extensions that describe the media travel on; str0m sets the
    // transport ones (MID, TWCC sequence, send time) itself.
    let from = &packet.header.ext_vals;
    let ext_vals = ExtensionValues {
        audio_level: from.audio_level,
        voice_activity: from.voice_activity,
        video_orientation: from.video_orientation,
        video_content_type: from.video_content_type,
        ..Default::default()
    };
    // The wallclock is the arrival time: the simplest estimate of when the
    // media was captured that needs no trust in the publisher's clock.
    RtpWrite::new(
        pt,
        rewritten.seq.into(),
        rewritten.timestamp,
        packet.timestamp,
        payload,
    )
    .marker(marker)
    .ext_vals(ext_vals)
    // Kept in str0m's send history so NACKs are answered from it (over
    // RTX); str0m ignores this where no RTX payload type was negotiated.
    .nackable(true)
}

/// Our payload type for the publisher's codec `params` on the m-line `mid`,
/// memoized per publisher payload type: payload type numbers are per session
/// and may differ between publisher and subscriber.
pub(crate) fn local_pt(
    map: &mut Vec<(Pt, Option<Pt>)>,
    rtc: &Rtc,
    mid: Mid,
    params: &PayloadParams,
) -> Option<Pt> {
    if let Some((_, pt)) = map.iter().find(|(from, _)| *from == params.pt()) {
        return *pt;
    }
    let negotiated = rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
    let config = rtc.codec_config();
    let found = config
        .match_params(*params)
        .map(|p| p.pt())
        .filter(|pt| negotiated.contains(pt))
        .or_else(|| {
            config
                .find(|p| negotiated.contains(&p.pt()) && p.spec() == params.spec())
                .map(|p| p.pt())
        });
    if found.is_none() {
        tracing::debug!(%mid, codec = ?params.spec().codec, "no common codec with the subscriber");
    }
    // Bounded: a publisher has few payload types, but a hostile one could
    // cycle through all 128.
    if map.len() < 128 {
        map.push((params.pt(), found));
    }
    found
}
