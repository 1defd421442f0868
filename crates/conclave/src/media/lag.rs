//! Where a forwarded datagram's time in the server goes, measured by a
//! media worker when `CONCLAVE_MEDIA_LAG` is set (off otherwise: it asks
//! the kernel for a receive timestamp on every datagram, and costs a clock
//! read per system call). Every [`REPORT_EVERY`] the worker logs, at
//! `info` on this module's target, what the last window saw:
//!
//! - `queued`: per datagram read, from the kernel's receive timestamp
//!   (`SO_TIMESTAMPNS`) to the return of the `recvmmsg` that read it: the
//!   worker not running (descheduled, or busy with something else);
//! - `forward`: per datagram sent in the flush that follows a receive
//!   batch, from that `recvmmsg`'s return to the return of the `sendmmsg`
//!   that sent it: the worker's own work before the copies leave;
//! - `full`: `sendmmsg`s that found the socket's send buffer full (the
//!   worker then waits for room);
//! - `timeouts`: each pass over the routers' timers;
//! - `batch`: datagrams per `recvmmsg` (32, the most, means a backlog);
//! - the worker thread's run time, run-queue wait and time slices from
//!   `/proc/thread-self/schedstat`.
//!
//! Each distribution is in microseconds, kept in buckets a quarter of a
//! power of two wide (so a percentile is within 25 %).

use std::fmt;
use std::time::{Duration, Instant};

/// How often a worker logs its window's figures.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Whether this process measures (`CONCLAVE_MEDIA_LAG` set and not empty).
pub fn enabled() -> bool {
    std::env::var_os("CONCLAVE_MEDIA_LAG").is_some_and(|v| !v.is_empty())
}

const BUCKETS: usize = 4 * 40;

/// Counts of values by quarter-power-of-two bucket.
#[derive(Clone)]
pub struct Hist {
    counts: Box<[u64; BUCKETS]>,
    n: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: Box::new([0; BUCKETS]),
            n: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < 4 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize;
    let sub = ((v >> (e - 2)) & 3) as usize;
    (4 * (e - 1) + sub).min(BUCKETS - 1)
}

/// The largest value in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let e = i / 4 + 1;
    let sub = (i % 4) as u64;
    ((4 + sub + 1) << (e - 2)) - 1
}

impl Hist {
    pub fn add(&mut self, v: u64, times: u64) {
        self.counts[bucket(v)] += times;
        self.n += times;
        self.max = self.max.max(v);
    }

    pub fn add_since(&mut self, from: Instant, to: Instant, times: u64) {
        self.add(to.saturating_duration_since(from).as_micros() as u64, times);
    }

    /// The value at or below which `q` of the values are (a bucket's upper
    /// bound, never above the largest value seen).
    pub fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.n = 0;
        self.max = 0;
    }
}

impl fmt::Display for Hist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.n == 0 {
            return write!(f, "n=0");
        }
        write!(
            f,
            "n={} p50={} p99={} p999={} max={}",
            self.n,
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.max
        )
    }
}

/// The calling thread's (run ns, run-queue wait ns, time slices).
pub fn schedstat() -> Option<(u64, u64, u64)> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// What the worker itself measures; the sockets' parts are in
/// [`super::udp`]'s batches.
pub struct Turns {
    pub timeouts: Hist,
    since: Instant,
    sched: Option<(u64, u64, u64)>,
}

impl Turns {
    pub fn new(now: Instant) -> Self {
        Turns {
            timeouts: Hist::default(),
            since: now,
            sched: schedstat(),
        }
    }

    /// Logs the window that ends at `now` and starts the next.
    pub fn report(
        &mut self,
        now: Instant,
        recv: &mut super::udp::RecvBatch,
        send: &mut super::udp::SendBatch,
    ) {
        if now.saturating_duration_since(self.since) < REPORT_EVERY {
            return;
        }
        let sched = schedstat();
        let (run, wait, slices) = match (self.sched, sched) {
            (Some(a), Some(b)) => (
                b.0.saturating_sub(a.0) / 1_000,
                b.1.saturating_sub(a.1) / 1_000,
                b.2.saturating_sub(a.2),
            ),
            _ => (0, 0, 0),
        };
        let (queued, batch) = recv.lag_hists();
        let (forward, full) = send.lag_take();
        tracing::info!(
            target: "conclave::media::lag",
            window_ms = now.saturating_duration_since(self.since).as_millis() as u64,
            run_us = run,
            runqueue_wait_us = wait,
            slices,
            queued = %queued,
            forward = %forward,
            full,
            timeouts = %self.timeouts,
            batch = %batch,
            "media worker lag"
        );
        queued.clear();
        batch.clear();
        forward.clear();
        self.timeouts.clear();
        self.since = now;
        self.sched = sched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_a_quarter_power_of_two_wide() {
        for v in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 65_535, 1 << 30] {
            let i = bucket(v);
            assert!(upper(i) >= v, "{v} above its bucket's bound {}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < v, "{v} fits the bucket below");
            }
        }
        let mut h = Hist::default();
        for v in 1..=100 {
            h.add(v, 1);
        }
        assert_eq!(h.quantile(1.0), 100);
        let p50 = h.quantile(0.5);
        assert!((50..=63).contains(&p50), "p50 {p50}");
    }
}
