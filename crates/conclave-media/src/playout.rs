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
//! after that is a repair (reordering by
//! jitter fills gaps sooner). The subscriber's own hop is repaired too, by
//! the fast path's resends: each counts as late as the time since the
//! packet was first sent ([`RepairDelay::resent`]). The delay asked for is the 90th percentile of
//! the repairs of the last [`WINDOW`] plus [`MARGIN`], within [`FLOOR`] and
//! [`CEILING`]; with no repair in the window, none (0). Once a stream has
//! asked for a delay it keeps writing the extension, so that a receiver also
//! learns when the delay is over (Chromium keeps the last value it saw).
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
/// Repairs are remembered this long; the delay ends this long after the
/// last (loss on a radio link comes and goes: a delay given up at once
/// would be ramped up again).
const WINDOW: Duration = Duration::from_secs(30);
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
    /// How late each recent repair came, and when.
    repairs: VecDeque<(Instant, Duration)>,
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
        self.asked = true;
    }

    /// The playout delay to write now as (minimum, maximum), if any: `None`
    /// while this stream never needed one.
    pub(crate) fn playout_delay(&mut self, now: Instant) -> Option<(Duration, Duration)> {
        if !self.asked {
            return None;
        }
        while self
            .repairs
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.0) > WINDOW)
        {
            self.repairs.pop_front();
        }
        let target = if self.repairs.is_empty() {
            Duration::ZERO
        } else {
            let mut lates: Vec<Duration> = self.repairs.iter().map(|r| r.1).collect();
            lates.sort_unstable();
            // Nearest rank.
            let p90 = lates[(lates.len() * 9).div_ceil(10) - 1];
            (p90 + MARGIN).clamp(FLOOR, CEILING)
        };
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

    #[test]
    fn reordering_asks_for_nothing_a_late_repair_asks_for_its_lateness() {
        // Any instant: nothing here reads a clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let mut r = RepairDelay::default();
        r.arrived(100, t0);
        r.arrived(102, t0 + ms(5));
        // 101 reordered by jitter: 20 ms late.
        r.arrived(101, t0 + ms(25));
        assert_eq!(r.playout_delay(t0 + ms(25)), None);
        r.arrived(104, t0 + ms(30));
        // 103 repaired 160 ms after its gap was seen, 185 ms after 102
        // came: 235 ms asked for, reached at 100 ms a second.
        r.arrived(103, t0 + ms(190));
        let (min, max) = r.playout_delay(t0 + ms(190)).unwrap();
        assert_eq!((min, max), (Duration::ZERO, MAX_PLAYOUT));
        let ramp: Vec<Duration> = (1..=30)
            .map(|i| r.playout_delay(t0 + ms(190 + 100 * i)).unwrap().0)
            .collect();
        assert_eq!(ramp[0], ms(10));
        assert_eq!(ramp[9], ms(100));
        assert!(
            ramp.windows(2)
                .all(|w| w[1] >= w[0] && w[1] - w[0] <= ms(10))
        );
        assert_eq!(ramp[24], ms(235));
        assert_eq!(*ramp.last().unwrap(), ms(235));
        // A very late repair is capped.
        r.arrived(105, t0 + ms(3_300));
        r.arrived(110, t0 + ms(3_310));
        r.arrived(106, t0 + ms(4_200));
        let top = r.playout_delay(t0 + ms(10_000)).unwrap().0;
        assert_eq!(top, CEILING);
        // Without repairs for the window, the delay goes, as slowly, but is
        // still said.
        assert_eq!(r.playout_delay(t0 + ms(34_000)).unwrap().0, CEILING);
        assert_eq!(
            r.playout_delay(t0 + ms(34_300)).unwrap().0,
            CEILING - ms(30)
        );
        assert_eq!(
            r.playout_delay(t0 + ms(44_300)),
            Some((Duration::ZERO, MAX_PLAYOUT))
        );
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
