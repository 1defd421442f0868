//! A minimum playout delay for a subscriber while its publisher's hop loses
//! packets (issue 21), sent in the `playout-delay` RTP header extension
//! (<http://www.webrtc.org/experiments/rtp-hdrext/playout-delay>), which
//! Chromium honours.
//!
//! Why: a packet lost between the publisher and the router comes back late
//! (the router's NACK at its next tick, a round trip to the publisher, then
//! the hop to the subscriber), about 150 ms at 40 ms a hop. A receiver sizes
//! its jitter buffer from its own round trip to the router and the jitter
//! it sees, so the frame waiting for that repair is rendered late: a freeze.
//! Told a minimum delay that covers the repair, it waits for it instead.
//!
//! How late repairs are is measured here, on the stream as forwarded: a gap
//! in the sequence is noted when the packet after it arrives, as due when
//! the packet before it came; a packet that fills a gap at least [`LATE`]
//! after that is a repair (reordering by jitter fills gaps sooner). The
//! subscriber's own hop is repaired too, by the fast path's resends: each
//! counts as late as the time since the packet was first sent
//! ([`RepairDelay::resent`]). The delay asked for is about the 90th
//! percentile of the repairs of the last [`WINDOW`] plus [`MARGIN`], within
//! [`FLOOR`] and [`CEILING`]; none (0) while the window holds too little
//! evidence of repairs coming late again and again (below). Once a stream
//! has asked for a delay it keeps writing the extension, so that a receiver
//! also learns when the delay is over (Chromium keeps the last value it
//! saw).
//!
//! The delay follows the network, not the host. A busy host (the router's
//! or a receiver's) stalls now and then, and every resend pending during a
//! stall comes late at once: on a clean link under load (18) the version
//! before this asked for 276 ms on average from 30 NACKs a minute, and held
//! each such delay for its 30 s window, every frame shown 250-300 ms late
//! long after the stall. So:
//! - the window is [`WINDOW`] (10 s): the delay ends about that long after
//!   repairs stop coming late, not half a minute;
//! - no delay from fewer than [`ENOUGH`] late events in the window, an
//!   event being the repairs within [`STALL`] of its first: one stall (or
//!   one lost packet) is one event, however many resends it delayed, and a
//!   freeze it may cause is cheaper than holding every frame for seconds;
//! - the most delayed repair alone never sets the delay: below 20 repairs,
//!   where the 90th percentile by nearest rank is the most delayed one, the
//!   second most delayed does.
//!
//! Loss on a real link (3 % or 10 % a hop) repairs several packets a second
//! on a video stream, steadily, so its window always holds enough: its
//! delay stays up while the loss lasts, and only its size follows how late
//! the repairs are.
//!
//! The value written moves toward that target by at most [`RAMP`] a
//! second. Chromium rate-limits changes of its own delay the same way
//! (100 ms a second: "if we're changing the delay in too large steps we
//! will get noticeable freezes"), but applies the minimum this extension
//! sets to each frame's render time at once: a minimum raised by 200 ms
//! in one step holds the next frame back 200 ms, itself a freeze. The
//! first version here wrote the target directly, and the network bench's
//! receivers froze more often with it than without.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A gap filled later than this is a repair, not reordering.
const LATE: Duration = Duration::from_millis(50);
/// Repairs are remembered this long; the delay ends about this long after
/// they stop coming late. Long enough to hold [`ENOUGH`] events of a
/// lossy link even on a small layer (a packet a second lost), so that
/// the delay does not come and go while the loss lasts; short enough that
/// a stall's late repairs stop costing latency within seconds (it was 30 s,
/// and a busy host's stalls held every frame 250-300 ms late on a clean link).
const WINDOW: Duration = Duration::from_secs(10);
/// Late events in the window, at least, before any delay is asked for.
const ENOUGH: usize = 3;
/// Repairs within this of the first of an event are the same event: the
/// resends that one stall of a busy host held up all go out (or are asked
/// for) together when it ends.
const STALL: Duration = Duration::from_millis(500);
/// How fast the minimum written may change, per second.
const RAMP: Duration = Duration::from_millis(100);
/// Decoding and rendering on top of the repair itself.
const MARGIN: Duration = Duration::from_millis(50);
/// The least delay worth asking for.
const FLOOR: Duration = Duration::from_millis(100);
/// The most: beyond this, waiting costs more than a freeze.
const CEILING: Duration = Duration::from_millis(400);
/// Open gaps remembered, at most (a burst of loss opens one).
const GAPS: usize = 32;
/// A gap still open after this is given up (it will not be repaired).
const GAP_AGE: Duration = Duration::from_secs(2);
/// Repairs remembered, at most.
const SAMPLES: usize = 64;
/// The maximum delay written: Chromium's default maximum (10 s), so only
/// the minimum changes, and never `0, 0` (which asks for no buffering).
const MAX_PLAYOUT: Duration = Duration::from_secs(10);

/// Gaps and late repairs of one forwarded stream.
#[derive(Debug, Default)]
pub(crate) struct RepairDelay {
    /// The highest sequence number arrived, and when it arrived.
    highest: Option<(u64, Instant)>,
    /// Missing sequence numbers `first..=last`, and when they were due
    /// (the packet before them arrived).
    gaps: VecDeque<(u64, u64, Instant)>,
    /// How late each recent repair came, and when, oldest first.
    repairs: VecDeque<(Instant, Duration)>,
    /// The delay the repairs in the window ask for ([`Self::target`]),
    /// kept between changes of the window: it is read for every video
    /// packet forwarded, and sorting the window each time would cost more
    /// than forwarding the packet.
    target: Duration,
    /// Whether `target` is out of date.
    stale: bool,
    /// Whether a delay was ever asked for on this stream.
    asked: bool,
    /// The minimum written last, and when.
    written: Duration,
    written_at: Option<Instant>,
}

impl RepairDelay {
    /// Notes the packet at (extended) sequence number `seq`, arriving now.
    pub(crate) fn arrived(&mut self, seq: u64, now: Instant) {
        while self
            .gaps
            .front()
            .is_some_and(|g| now.saturating_duration_since(g.2) > GAP_AGE)
        {
            self.gaps.pop_front();
        }
        let Some((highest, highest_at)) = self.highest else {
            self.highest = Some((seq, now));
            return;
        };
        if seq > highest {
            if seq > highest + 1 {
                if self.gaps.len() == GAPS {
                    self.gaps.pop_front();
                }
                // Due when the packet before it came: a frame's last
                // packet lost is seen missing only at the next frame, a
                // frame interval later, and that wait is part of its
                // lateness too.
                self.gaps.push_back((highest + 1, seq - 1, highest_at));
            }
            self.highest = Some((seq, now));
            return;
        }
        let Some(gap) = self.gaps.iter().find(|g| (g.0..=g.1).contains(&seq)) else {
            return;
        };
        self.repaired(now.saturating_duration_since(gap.2), now);
    }

    /// Notes a packet sent again for the subscriber's NACK `late` after
    /// it was first sent: the repair of the subscriber's own hop, which
    /// reaches it about that much later than the packet would have. The
    /// receiver's jitter buffer waits for these too; at 10 % loss a hop
    /// they, and their retries when a resend is lost as well, are most of
    /// the late frames (the network bench's receivers froze for 0.2-0.45 s
    /// at a time with 100-110 ms of delay asked for, from the publisher's
    /// hop alone).
    pub(crate) fn resent(&mut self, late: Duration, now: Instant) {
        self.repaired(late, now);
    }

    /// A repair `late` after the packet was due; reordering (less than
    /// [`LATE`]) is none.
    fn repaired(&mut self, late: Duration, now: Instant) {
        if late < LATE {
            return;
        }
        if self.repairs.len() == SAMPLES {
            self.repairs.pop_front();
        }
        self.repairs.push_back((now, late));
        self.stale = true;
    }

    /// The minimum the repairs in the window ask for: zero with too little
    /// evidence (fewer than [`ENOUGH`] events), else the 90th percentile by
    /// nearest rank but never the most delayed repair alone, plus
    /// [`MARGIN`], within [`FLOOR`] and [`CEILING`].
    fn target(&self) -> Duration {
        let mut events = 0;
        let mut event: Option<Instant> = None;
        for &(at, _) in &self.repairs {
            if event.is_none_or(|first| at.saturating_duration_since(first) > STALL) {
                events += 1;
                event = Some(at);
            }
        }
        if events < ENOUGH {
            return Duration::ZERO;
        }
        let n = self.repairs.len();
        let mut lates = [Duration::ZERO; SAMPLES];
        let lates = &mut lates[..n];
        for (late, repair) in lates.iter_mut().zip(&self.repairs) {
            *late = repair.1;
        }
        lates.sort_unstable();
        // 1-based; at most n - 1 (n >= events >= ENOUGH > 1): below 20
        // repairs the 90th percentile would be the most delayed one.
        let rank = (n * 9).div_ceil(10).min(n - 1);
        (lates[rank - 1] + MARGIN).clamp(FLOOR, CEILING)
    }

    /// The playout delay to write now as (minimum, maximum), if any: `None`
    /// while this stream never needed one.
    pub(crate) fn playout_delay(&mut self, now: Instant) -> Option<(Duration, Duration)> {
        while self
            .repairs
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.0) > WINDOW)
        {
            self.repairs.pop_front();
            self.stale = true;
        }
        if self.stale {
            self.target = self.target();
            self.stale = false;
        }
        let target = self.target;
        if !self.asked {
            if target.is_zero() {
                return None;
            }
            self.asked = true;
        }
        let elapsed = self
            .written_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let step = RAMP.mul_f64(elapsed.as_secs_f64());
        self.written = if target > self.written {
            (self.written + step).min(target)
        } else {
            self.written.saturating_sub(step).max(target)
        };
        self.written_at = Some(now);
        Some((self.written, MAX_PLAYOUT))
    }
}

/// The extension's three bytes (RFC-less, libwebrtc's format): minimum and
/// maximum, 12 bits each, in units of 10 ms.
pub(crate) fn encode((min, max): (Duration, Duration)) -> [u8; 3] {
    let units = |d: Duration| (d.as_millis() / 10).min(0xfff) as u16;
    let (min, max) = (units(min), units(max));
    [
        (min >> 4) as u8,
        ((min << 4) as u8) | (max >> 8) as u8,
        max as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Packets `0..count` every 20 ms from `t0`, as they arrive: `101`
    /// reordered behind `102` by jitter, and every 30th from `120` on held
    /// back `late` after the packet before it (a repair), which is then
    /// delivered when it comes.
    fn a_stream(t0: Instant, count: u64, late: Duration) -> Vec<(Instant, u64)> {
        let at = |seq: u64| t0 + ms(20 * seq);
        let mut events: Vec<(Instant, u64)> = (0..count)
            .map(|seq| match seq {
                // 45 ms after 100 came: reordering, not a repair.
                101 => (at(100) + ms(45), seq),
                s if s >= 120 && s % 30 == 0 => (at(s - 1) + late, seq),
                _ => (at(seq), seq),
            })
            .collect();
        events.sort();
        events
    }

    #[test]
    fn reordering_asks_for_nothing_repairs_spread_over_time_ask_for_their_lateness() {
        // Any instant: nothing here reads a clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        let mut asked = Vec::new();
        for (at, seq) in a_stream(t0, 400, ms(185)) {
            r.arrived(seq, at);
            asked.push((at, seq, r.playout_delay(at)));
        }
        // Nothing until the third repair (120 and 150 before it, 600 ms
        // apart): reordering is none, and two are too few to tell a lossy
        // network from a stall.
        let first = asked.iter().position(|a| a.2.is_some()).unwrap();
        assert_eq!(asked[first].1, 180);
        assert_eq!(asked[first].2, Some((Duration::ZERO, MAX_PLAYOUT)));
        // Then up by 100 ms a second to the 185 ms of lateness and the
        // margin, and held while the repairs go on.
        let mins: Vec<(Instant, Duration)> = asked[first..]
            .iter()
            .map(|a| (a.0, a.2.unwrap().0))
            .collect();
        assert!(
            mins.windows(2).all(|w| w[1].1 >= w[0].1
                && w[1].1 - w[0].1 <= (w[1].0 - w[0].0) / 10 + Duration::from_nanos(1)),
            "{mins:?}"
        );
        assert_eq!(mins.last().unwrap().1, ms(235));
        let reached = asked.iter().find(|a| a.2.is_some_and(|d| d.0 == ms(235)));
        let took = reached.unwrap().0 - asked[first].0;
        assert!((ms(2_350)..=ms(2_370)).contains(&took), "{took:?}");
        // A very late repair is capped, once it is not the only one.
        let t1 = asked.last().unwrap().0;
        for i in 0..2 {
            r.resent(ms(900), t1 + ms(100 * i));
        }
        let mins: Vec<Duration> = (1..=160)
            .map(|i| r.playout_delay(t1 + ms(100 * i)).unwrap().0)
            .collect();
        assert_eq!(mins[20], CEILING);
        // When fewer than three events are left in the window (the
        // repair 8.8 s before the last), the delay goes, as slowly, but
        // is still said.
        assert_eq!(mins[86], CEILING);
        assert!(mins[20..].windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(mins[87], CEILING - ms(10));
        assert_eq!(mins[129], Duration::ZERO);
    }

    #[test]
    fn a_stall_is_one_event_and_asks_for_nothing() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        // One resend 300 ms late, as a stalled host sends it.
        r.resent(ms(300), t0);
        assert_eq!(r.playout_delay(t0), None);
        // A stall of the router or of a receiver delays every resend
        // pending in it: eight within 300 ms, one event; two in all.
        for i in 0..8u64 {
            r.resent(ms(280 + 10 * i), t0 + ms(5_000 + 40 * i));
            assert_eq!(r.playout_delay(t0 + ms(5_000 + 40 * i)), None);
        }
        assert_eq!(r.playout_delay(t0 + ms(5_900)), None);
        // A third late event within the window: a host (or a network)
        // that repairs late again and again, waited for (the 9th of 10,
        // 340 ms, and the margin).
        r.resent(ms(300), t0 + ms(6_000));
        assert_eq!(
            r.playout_delay(t0 + ms(6_000)),
            Some((Duration::ZERO, MAX_PLAYOUT))
        );
        assert_eq!(r.playout_delay(t0 + ms(10_000)).unwrap().0, ms(390));
        // Given up once the first leaves the window, at 100 ms a second.
        assert_eq!(r.playout_delay(t0 + ms(11_000)).unwrap().0, ms(290));
        assert_eq!(r.playout_delay(t0 + ms(14_000)).unwrap().0, Duration::ZERO);
    }

    #[test]
    fn the_most_delayed_repair_alone_never_sets_the_delay() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        // Five repairs 100 ms late over 2.4 s, then one held up 400 ms (a
        // resend that waited for a CPU): the 90th percentile of six by
        // nearest rank is that one; the delay covers the others.
        for i in 0..5u64 {
            r.resent(ms(100), t0 + ms(600 * i));
        }
        r.resent(ms(400), t0 + ms(2_500));
        r.playout_delay(t0 + ms(2_500)).unwrap();
        assert_eq!(r.playout_delay(t0 + ms(5_000)).unwrap().0, ms(150));
        // A second one as late is no outlier.
        r.resent(ms(400), t0 + ms(5_000));
        assert_eq!(r.playout_delay(t0 + ms(9_000)).unwrap().0, CEILING);
        // With 20 or more, the 90th percentile: two late ones of 30 are
        // the 7 %, not waited for.
        let mut r = RepairDelay::default();
        for i in 0..30u64 {
            let late = if i % 15 == 7 { ms(390) } else { ms(120) };
            r.resent(late, t0 + ms(200 * i));
        }
        r.playout_delay(t0 + ms(5_800)).unwrap();
        assert_eq!(r.playout_delay(t0 + ms(8_000)).unwrap().0, ms(170));
    }

    #[test]
    fn the_delay_holds_while_loss_lasts_and_ends_seconds_after() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        // A lossy link for 30 s: a resend every 250 ms, 90 ms late (a
        // NACK's round trip), one in five 250 ms (lost again and retried).
        let mut mins = Vec::new();
        for i in 0..120u64 {
            let late = if i % 5 == 4 { ms(250) } else { ms(90) };
            let at = t0 + ms(250 * i);
            r.resent(late, at);
            mins.push(r.playout_delay(at).map(|d| d.0));
            mins.push(r.playout_delay(at + ms(100)).map(|d| d.0));
        }
        // Up within 5 s to the retries' lateness, and held there: no dip
        // for a freeze to fall into.
        let up = mins.iter().position(|m| *m == Some(ms(300))).unwrap();
        assert!(up <= 2 * 20, "{mins:?}");
        assert!(mins[up..].iter().all(|m| *m == Some(ms(300))), "{mins:?}");
        // Over: down once fewer than three events are left in the window
        // (8.5 s after the last repair), at 100 ms a second.
        let last = t0 + ms(250 * 119);
        let after: Vec<Duration> = (1..=160)
            .map(|i| r.playout_delay(last + ms(100 * i)).unwrap().0)
            .collect();
        assert!(after.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(after[83], ms(300));
        assert_eq!(after[119], Duration::ZERO);
        // A small layer loses fewer packets: a repair a second, 150 ms
        // late, still holds a delay through the window without a gap.
        let mut r = RepairDelay::default();
        let mins: Vec<Option<Duration>> = (0..60u64)
            .map(|i| {
                r.resent(ms(150), t0 + ms(1_000 * i));
                r.playout_delay(t0 + ms(1_000 * i + 500)).map(|d| d.0)
            })
            .collect();
        let up = mins.iter().position(|m| *m == Some(ms(200))).unwrap();
        assert!(mins[up..].iter().all(|m| *m == Some(ms(200))), "{mins:?}");
    }

    #[test]
    fn resends_to_the_subscriber_count_as_repairs_of_its_hop() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        // Packets in order from the publisher: nothing asked for.
        for i in 0..100u64 {
            r.arrived(i, t0 + ms(50 * i));
        }
        assert_eq!(r.playout_delay(t0 + ms(5_000)), None);
        // A resend for a NACK soon after the packet left (a reordered
        // packet NACKed before it arrived) is not a repair.
        r.resent(ms(30), t0 + ms(5_000));
        assert_eq!(r.playout_delay(t0 + ms(5_000)), None);
        // Resends 90 ms after the first send (a NACK's round trip), and
        // one in five 250 ms (the resend was lost too and asked again, as
        // at 10 % loss a hop on both hops).
        for i in 0..30u64 {
            let late = if i % 5 == 4 { ms(250) } else { ms(90) };
            r.resent(late, t0 + ms(5_000 + 100 * i));
        }
        let ramp: Vec<Duration> = (1..=40)
            .map(|i| r.playout_delay(t0 + ms(8_000 + 100 * i)).unwrap().0)
            .collect();
        // The 90th percentile of those repairs plus the margin: the retry
        // is waited for, not frozen on.
        assert_eq!(*ramp.last().unwrap(), ms(250) + MARGIN);
        assert!(
            ramp.windows(2)
                .all(|w| w[1] >= w[0] && w[1] - w[0] <= ms(10))
        );
    }

    #[test]
    fn a_gap_never_filled_is_forgotten_and_storms_stay_bounded() {
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        // Every other packet missing, for a long time.
        for i in 0..10_000u64 {
            r.arrived(2 * i, t0 + ms(i));
        }
        assert!(r.gaps.len() <= GAPS);
        assert_eq!(r.playout_delay(t0 + ms(10_000)), None);
        // A repair of a gap older than GAP_AGE counts for nothing.
        r.arrived(1, t0 + ms(10_001));
        assert_eq!(r.playout_delay(t0 + ms(10_001)), None);
        for i in 0..1_000u64 {
            r.arrived(2 * (9_990 + i % 10) + 1, t0 + ms(10_000 + i));
        }
        assert!(r.repairs.len() <= SAMPLES);
    }

    #[test]
    fn encodes_as_libwebrtc_reads_it() {
        // 200 ms = 20 units, 10 s = 1000 units (0x3e8).
        assert_eq!(encode((ms(200), ms(10_000))), [0x01, 0x43, 0xe8]);
        assert_eq!(encode((ms(0), ms(10_000))), [0x00, 0x03, 0xe8]);
        assert_eq!(encode((ms(100_000), ms(100_000))), [0xff, 0xff, 0xff]);
    }
}
