//! Pacing of one subscriber's fast-path datagrams (issue 16).
//!
//! The fast path seals a forwarded packet as soon as the worker reads it, so
//! what reaches the worker together leaves together. In steady forwarding
//! that is right: publishers pace their own media, and holding a packet here
//! would only add latency. After a stall (the worker descheduled for tens of
//! milliseconds on a busy machine) the worker reads its backlog within a few
//! milliseconds and would hand each subscriber up to a few hundred datagrams
//! back to back, more than a receiver's socket buffer holds when the
//! receiver is not reading at that moment (docs/benchmarks.md, "bursts into
//! the clients' sockets"): the backlog became loss.
//!
//! So each subscriber's datagrams pass a token bucket in bytes, in the order
//! they were sealed:
//!
//! - up to [`PACE_BURST_BYTES`] leave at once, so steady traffic (and a
//!   normal frame's packets) never finds the bucket empty and waits for
//!   nothing;
//! - the rest leave at [`PACING_FACTOR`] (libwebrtc's) times the rate the
//!   subscriber is being sent: never slower than the media, so a
//!   single-layer video above the bandwidth estimate does not build a
//!   standing queue (what str0m's pacer did, docs/benchmarks.md "Forwarded
//!   media leaves unpaced"). Not a multiple of the estimate: on a clear
//!   path the estimate grows far above what is sent (up to what the
//!   subscriber's views would take), and 2.5 times it let a stall's backlog
//!   out as one batch's copies at a time, 32 back to back (measured:
//!   docs/benchmarks.md, issue 16's pacing);
//! - and never slower than lets the oldest waiting datagram's queue out
//!   within [`DRAIN_WITHIN`] of its sealing (up to [`MAX_DRAIN_RATE`]), so a
//!   long stall's backlog is spread over tens of milliseconds, not held
//!   back for longer.
//!
//! So no millisecond carries more than the depth plus what the rate adds in
//! a millisecond: about 24 full-size datagrams at the drain's ceiling.
//!
//! Time comes in as `now`: the pacer reads no clock and is tested on
//! virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::transmit::Transmit;

/// How much faster than the media a backlog leaves: libwebrtc's pacing
/// factor.
pub(crate) const PACING_FACTOR: f64 = 2.5;

/// The bucket's depth: what may leave back to back, about 16 full-size
/// datagrams. A client socket with the system's default buffer (208 KiB)
/// holds about 92 such datagrams; libwebrtc's (512 KiB) about 220.
pub(crate) const PACE_BURST_BYTES: f64 = 16.0 * 1_200.0;

/// How long after the oldest waiting datagram was sealed the queue should
/// have left: the rate rises with the queue to meet it.
pub(crate) const DRAIN_WITHIN: Duration = Duration::from_millis(50);

/// The fastest a backlog is let out for [`DRAIN_WITHIN`]'s sake, bytes per
/// second (64 Mbit/s, about 7 full-size datagrams a millisecond); the
/// media's own rate times [`PACING_FACTOR`] may be higher.
pub(crate) const MAX_DRAIN_RATE: f64 = 8_000_000.0;

/// The subscriber's send rate is measured over about this long (bytes
/// queued, halving this often): long enough that a stall's backlog, queued
/// at once, barely moves it; short enough to follow a new stream within a
/// fraction of a second.
const RATE_HALF_LIFE: Duration = Duration::from_millis(250);

/// After this long with nothing queued the send rate is measured afresh
/// (what was counted before has decayed to nothing).
const RESTART_AFTER: Duration = Duration::from_secs(2);

/// The slowest the bucket ever fills, bytes per second (1 Mbit/s), whatever
/// the measured rate says.
const MIN_RATE: f64 = 125_000.0;

/// Datagrams held at most; past it new ones are dropped (and counted). A
/// worker that keeps running never gets near it: the rate follows the
/// queue.
pub(crate) const MAX_PACED: usize = 4_096;

struct Paced {
    transmit: Transmit,
    /// The transport-wide sequence number it carries, if the fast path
    /// numbered it: the estimator learns when numbered packets left.
    twcc: Option<u64>,
    queued_at: Instant,
}

/// One subscriber session's pacer.
pub(crate) struct Pacer {
    queue: VecDeque<Paced>,
    queued_bytes: usize,
    /// Bytes that may leave now; negative after a datagram larger than what
    /// was left.
    tokens: f64,
    filled_at: Instant,
    /// The fill rate at the last fill, bytes per second.
    rate: f64,
    /// Bytes queued, halving every [`RATE_HALF_LIFE`]: the send rate.
    sent: f64,
    sent_at: Instant,
    /// Since when `sent` has been counting: the first datagram, or the
    /// first after a pause of [`RESTART_AFTER`].
    counting_since: Option<Instant>,
    /// One past the highest transport-wide number let out so far.
    released: Option<u64>,
    /// The bucket's depth: [`PACE_BURST_BYTES`], or without pacing
    /// unbounded (everything leaves at once, in order).
    depth: f64,
}

impl Pacer {
    /// A pacer; with `paced` false it holds nothing back (the fast path
    /// without [`crate::RouterConfig::pacing`]).
    pub(crate) fn new(now: Instant, paced: bool) -> Self {
        let depth = if paced {
            PACE_BURST_BYTES
        } else {
            f64::INFINITY
        };
        Pacer {
            depth,
            queue: VecDeque::new(),
            queued_bytes: 0,
            tokens: depth,
            filled_at: now,
            rate: MIN_RATE,
            sent: 0.0,
            sent_at: now,
            counting_since: None,
            released: None,
        }
    }

    /// Without pacing, with nothing waiting: notes `twcc` as let out and
    /// hands `transmit` back to leave at once (`Ok`), skipping the queue and
    /// the rate's arithmetic (three `powf` a datagram, a few per cent of the
    /// forwarding CPU, for a bucket that never empties). Otherwise `Err`
    /// with it, for [`Pacer::push`].
    pub(crate) fn pass(
        &mut self,
        transmit: Transmit,
        twcc: Option<u64>,
    ) -> Result<Transmit, Transmit> {
        if self.depth.is_finite() || !self.queue.is_empty() {
            return Err(transmit);
        }
        if let Some(n) = twcc {
            self.released = Some(self.released.map_or(n + 1, |r| r.max(n + 1)));
        }
        Ok(transmit)
    }

    /// Queues a datagram sealed at `now`, behind those waiting. False if the
    /// queue was full and it was dropped.
    pub(crate) fn push(&mut self, now: Instant, transmit: Transmit, twcc: Option<u64>) -> bool {
        if self.queue.len() >= MAX_PACED {
            return false;
        }
        let len = transmit.contents.len();
        let paused = now.saturating_duration_since(self.sent_at) >= RESTART_AFTER;
        if self.counting_since.is_none() || paused {
            self.counting_since = Some(now);
            self.sent = 0.0;
        }
        self.sent = self.sent_by(now) + len as f64;
        self.sent_at = self.sent_at.max(now);
        self.queued_bytes += len;
        self.queue.push_back(Paced {
            transmit,
            twcc,
            queued_at: now,
        });
        true
    }

    /// The next datagram that may leave at `now`, with whether it waited.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<(Transmit, bool)> {
        if self.queue.is_empty() {
            return None;
        }
        self.fill(now);
        if self.tokens <= 0.0 {
            return None;
        }
        let paced = self.queue.pop_front()?;
        let len = paced.transmit.contents.len();
        self.queued_bytes -= len;
        self.tokens -= len as f64;
        if let Some(n) = paced.twcc {
            self.released = Some(self.released.map_or(n + 1, |r| r.max(n + 1)));
        }
        Some((paced.transmit, now > paced.queued_at))
    }

    /// When the next waiting datagram may leave; `None` with none waiting.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        if self.tokens > 0.0 {
            return Some(self.filled_at);
        }
        // Bounded, so a rate read wrong can never ask for a wake-up in years.
        let wait = (-self.tokens / self.rate).min(1.0);
        Some(self.filled_at + Duration::from_secs_f64(wait) + Duration::from_micros(1))
    }

    /// One past the highest transport-wide sequence number let out so far.
    pub(crate) fn released(&self) -> Option<u64> {
        self.released
    }

    /// The bytes queued by `now`, decayed to then.
    fn sent_by(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.sent_at);
        self.sent * 0.5f64.powf(elapsed.as_secs_f64() / RATE_HALF_LIFE.as_secs_f64())
    }

    /// The subscriber's send rate, bytes per second: what was queued over
    /// the counter's window, which is shorter while it has counted for
    /// less than a few half-lives (so a subscriber starting at 8 Mbit/s is
    /// measured at 8 from its first milliseconds, not at a fraction).
    fn measured(&self, now: Instant) -> f64 {
        let Some(since) = self.counting_since else {
            return 0.0;
        };
        let half_lives =
            now.saturating_duration_since(since).as_secs_f64() / RATE_HALF_LIFE.as_secs_f64();
        let window =
            RATE_HALF_LIFE.as_secs_f64() / std::f64::consts::LN_2 * (1.0 - 0.5f64.powf(half_lives));
        self.sent_by(now) / window.max(0.001)
    }

    /// Adds the tokens earned since the last fill, at the rate now.
    fn fill(&mut self, now: Instant) {
        let paced = PACING_FACTOR * self.measured(now);
        // What lets the queue out by its oldest datagram's deadline.
        let drain = self.queue.front().map_or(0.0, |oldest| {
            let left = (oldest.queued_at + DRAIN_WITHIN)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.queued_bytes as f64 / left.as_secs_f64()
        });
        self.rate = paced.max(drain.min(MAX_DRAIN_RATE)).max(MIN_RATE);
        let elapsed = now.saturating_duration_since(self.filled_at).as_secs_f64();
        self.tokens = (self.tokens + self.rate * elapsed).min(self.depth);
        self.filled_at = self.filled_at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use str0m::net::Protocol;

    use super::{DRAIN_WITHIN, PACE_BURST_BYTES, Pacer};
    use crate::transmit::Transmit;

    /// A sealed forwarded video packet of the load harness's size.
    const SIZE: usize = 1_150;

    fn datagram(n: u64) -> Transmit {
        let mut contents = vec![0u8; SIZE];
        contents[..8].copy_from_slice(&n.to_be_bytes());
        Transmit {
            proto: Protocol::Udp,
            source: "10.0.0.1:10000".parse().unwrap(),
            destination: "10.0.0.2:5000".parse().unwrap(),
            contents,
        }
    }

    fn number(t: &Transmit) -> u64 {
        u64::from_be_bytes(t.contents[..8].try_into().unwrap())
    }

    /// Lets out what may leave at `now`.
    fn release(pacer: &mut Pacer, now: Instant) -> Vec<(Transmit, bool)> {
        std::iter::from_fn(|| pacer.poll(now)).collect()
    }

    #[test]
    fn a_backlog_of_256_datagrams_leaves_in_bursts_of_at_most_24_per_ms() {
        // Any instant: the pacer reads no clock.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut pacer = Pacer::new(start, true);
        // Steady traffic first, about 7 Mbit/s (six 1.4 Mbit/s videos).
        let mut n = 0;
        for ms in 0..1_000u64 {
            let now = start + Duration::from_millis(ms);
            pacer.push(now, datagram(n), Some(n));
            n += 1;
            let out = release(&mut pacer, now);
            assert_eq!(out.len(), 1, "steady traffic leaves at once");
            assert!(!out[0].1);
        }
        // Then a stall: 256 datagrams sealed at one instant.
        let stall = start + Duration::from_millis(1_100);
        for _ in 0..256 {
            assert!(pacer.push(stall, datagram(n), Some(n)));
            n += 1;
        }
        assert_eq!(pacer.released(), Some(1_000));
        // What may leave goes at once; then the worker's timer fires when
        // the pacer asks, up to 100 µs late. Record when each datagram
        // leaves.
        let mut left: Vec<(Instant, u64)> = Vec::new();
        let mut now = stall;
        loop {
            for (t, waited) in release(&mut pacer, now) {
                assert_eq!(waited, now > stall);
                left.push((now, number(&t)));
            }
            let Some(due) = pacer.due_at() else { break };
            assert!(due > now, "a timer that would spin");
            now = due + Duration::from_micros(((left.len() * 37) % 100) as u64);
            assert!(now - stall < Duration::from_secs(1), "the backlog drains");
        }
        assert_eq!(left.len(), 256, "nothing dropped");
        let order: Vec<u64> = left.iter().map(|l| l.1).collect();
        assert!(order.windows(2).all(|w| w[0] + 1 == w[1]), "in order");
        assert_eq!(pacer.released(), Some(n));
        // The first burst is the bucket's depth; no millisecond carries more
        // than 24, against 256 at once unpaced.
        let first = left.iter().filter(|l| l.0 == stall).count();
        assert_eq!(first, (PACE_BURST_BYTES / SIZE as f64).ceil() as usize);
        for (i, &(from, _)) in left.iter().enumerate() {
            let within = left[i..]
                .iter()
                .take_while(|l| l.0 < from + Duration::from_millis(1))
                .count();
            assert!(within <= 24, "{within} datagrams within 1 ms of {from:?}");
        }
        // Spread, not held back: the last leaves within about DRAIN_WITHIN
        // plus the refill's rounding.
        let last = left.last().unwrap().0 - stall;
        assert!(last >= Duration::from_millis(20), "{last:?}");
        assert!(last <= DRAIN_WITHIN + Duration::from_millis(10), "{last:?}");
        // And traffic after the backlog leaves at once again.
        let later = now + Duration::from_millis(20);
        pacer.push(later, datagram(n), Some(n));
        let out = release(&mut pacer, later);
        assert_eq!(out.len(), 1);
        assert!(!out[0].1);
    }

    #[test]
    fn a_steady_video_is_not_held_back_from_its_first_frame() {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        // 8 Mbit/s in frames of 12 packets every 15 ms: the rate is
        // measured over what was sent so far, so not even the first frames
        // wait while the measurement is young.
        let mut pacer = Pacer::new(start, true);
        let mut n = 0;
        for frame in 0..400u64 {
            let now = start + Duration::from_millis(frame * 15);
            for _ in 0..12 {
                pacer.push(now, datagram(n), None);
                n += 1;
            }
            let out = release(&mut pacer, now);
            assert_eq!(out.len(), 12, "frame {frame}");
            assert!(out.iter().all(|o| !o.1), "frame {frame}");
        }
        assert_eq!(pacer.released(), None, "nothing numbered");
    }

    #[test]
    fn without_pacing_a_backlog_leaves_at_once_in_order() {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut pacer = Pacer::new(start, false);
        for n in 0..256 {
            pacer.push(start, datagram(n), Some(n));
        }
        let out = release(&mut pacer, start);
        assert_eq!(out.len(), 256);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, o)| number(&o.0) == i as u64 && !o.1)
        );
        assert_eq!(pacer.due_at(), None);
        assert_eq!(pacer.released(), Some(256));
        // Passed by, as the fast path sends with the queue empty: the same
        // datagram back, and its number counted as let out.
        let passed = pacer.pass(datagram(300), Some(300)).expect("passes");
        assert_eq!(number(&passed), 300);
        assert_eq!(pacer.released(), Some(301));
        assert!(pacer.pass(datagram(301), None).is_ok());
        assert_eq!(pacer.released(), Some(301));
        // A paced one never lets anything by its bucket.
        let mut paced = Pacer::new(start, true);
        assert!(paced.pass(datagram(0), Some(0)).is_err());
        assert_eq!(paced.released(), None);
    }
}
