//! What happens to each packet: the sans-IO core of the impairment program.
//!
//! A packet is either lost or delivered after a delay. Loss is independent
//! per packet (Bernoulli) or comes in bursts (a Gilbert–Elliott chain: a good
//! and a bad state, each with its own loss rate, and per-packet chances to
//! move between them). The delay is drawn per packet, uniformly within
//! `delay ± jitter`, so packets reorder as they do on a jittery path (as
//! netem does when it has no rate limit).

use std::time::Duration;

use rand::Rng;

/// How packets get lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// None.
    None,
    /// Each packet independently, with this probability.
    Random(f64),
    /// Gilbert–Elliott: `to_bad` and `to_good` are the per-packet chances of
    /// changing state; `good` and `bad` the loss probability in each.
    Burst {
        to_bad: f64,
        to_good: f64,
        good: f64,
        bad: f64,
    },
}

impl Loss {
    /// The long-run share of packets lost.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random(p) => p,
            Loss::Burst {
                to_bad,
                to_good,
                good,
                bad,
            } => {
                let in_bad = to_bad / (to_bad + to_good);
                in_bad * bad + (1.0 - in_bad) * good
            }
        }
    }
}

/// One direction's (or all traffic's) impairment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: Loss,
}

/// What becomes of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop,
    /// Deliver after this long.
    Delay(Duration),
}

/// A profile with its state (the Gilbert–Elliott chain's) and counters.
#[derive(Debug)]
pub struct Impairment {
    profile: Profile,
    bad: bool,
    pub seen: u64,
    pub dropped: u64,
}

impl Impairment {
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            bad: false,
            seen: 0,
            dropped: 0,
        }
    }

    /// Decides one packet's fate.
    pub fn decide(&mut self, rng: &mut impl Rng) -> Fate {
        self.seen += 1;
        let lost = match self.profile.loss {
            Loss::None => false,
            Loss::Random(p) => rng.random_bool(p.clamp(0.0, 1.0)),
            Loss::Burst {
                to_bad,
                to_good,
                good,
                bad,
            } => {
                let flip = if self.bad { to_good } else { to_bad };
                if rng.random_bool(flip.clamp(0.0, 1.0)) {
                    self.bad = !self.bad;
                }
                rng.random_bool((if self.bad { bad } else { good }).clamp(0.0, 1.0))
            }
        };
        if lost {
            self.dropped += 1;
            return Fate::Drop;
        }
        let Profile { delay, jitter, .. } = self.profile;
        if jitter.is_zero() {
            return Fate::Delay(delay);
        }
        let low = delay.saturating_sub(jitter);
        let high = delay + jitter;
        Fate::Delay(rng.random_range(low..=high))
    }
}

/// A bottleneck of `bits_per_sec` in front of one receiver (the bench's
/// capped subscriber): packets leave it one after another at that rate, and
/// one that would wait more than `max_queue` in its drop-tail buffer is
/// dropped, as a home router's full queue does.
#[derive(Debug)]
pub struct Cap {
    bits_per_sec: u64,
    max_queue: Duration,
    /// When the link is next free, counted from the caller's origin.
    free_at: Duration,
    pub passed: u64,
    pub dropped: u64,
}

impl Cap {
    pub fn new(bits_per_sec: u64, max_queue: Duration) -> Self {
        Self {
            bits_per_sec: bits_per_sec.max(1),
            max_queue,
            free_at: Duration::ZERO,
            passed: 0,
            dropped: 0,
        }
    }

    /// A packet of `bytes` reaching the bottleneck at `now` (since the
    /// caller's origin): how long until it has left it, or `None` if the
    /// buffer is full.
    pub fn pass(&mut self, now: Duration, bytes: usize) -> Option<Duration> {
        let start = self.free_at.max(now);
        if start - now > self.max_queue {
            self.dropped += 1;
            return None;
        }
        let sending = Duration::from_nanos(bytes as u64 * 8 * 1_000_000_000 / self.bits_per_sec);
        self.free_at = start + sending;
        self.passed += 1;
        Some(self.free_at - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn run(loss: Loss, n: u64) -> (f64, Vec<Fate>) {
        let mut rng = StdRng::seed_from_u64(7);
        let mut imp = Impairment::new(Profile {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(10),
            loss,
        });
        let fates: Vec<Fate> = (0..n).map(|_| imp.decide(&mut rng)).collect();
        (imp.dropped as f64 / n as f64, fates)
    }

    #[test]
    fn random_loss_is_near_its_rate_and_delays_stay_in_range() {
        let (share, fates) = run(Loss::Random(0.03), 100_000);
        assert!((share - 0.03).abs() < 0.005, "{share}");
        for f in fates {
            if let Fate::Delay(d) = f {
                assert!(d >= Duration::from_millis(30) && d <= Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn a_cap_passes_its_rate_and_drops_what_overflows_its_buffer() {
        // 300 kbit/s, 250 ms of buffer; 1,000-byte packets offered at
        // 600 kbit/s (one every 13.33 ms) for 10 s.
        let mut cap = Cap::new(300_000, Duration::from_millis(250));
        let mut last = Duration::ZERO;
        for i in 0..750u64 {
            let now = Duration::from_micros(i * 13_333);
            if let Some(wait) = cap.pass(now, 1_000) {
                assert!(wait <= Duration::from_millis(250) + Duration::from_micros(26_667));
                last = now + wait;
            }
        }
        // About half got through, at the cap's rate.
        let rate = cap.passed as f64 * 8_000.0 / last.as_secs_f64();
        assert!((rate - 300_000.0).abs() < 15_000.0, "{rate}");
        assert!(cap.dropped > 300, "{}", cap.dropped);
        // Below the cap nothing waits or drops.
        let mut cap = Cap::new(300_000, Duration::from_millis(250));
        for i in 0..100u64 {
            let wait = cap.pass(Duration::from_millis(i * 100), 1_000).unwrap();
            assert_eq!(wait, Duration::from_nanos(26_666_666));
        }
        assert_eq!(cap.dropped, 0);
    }

    #[test]
    fn burst_loss_matches_its_mean_and_comes_in_runs() {
        let loss = Loss::Burst {
            to_bad: 0.01,
            to_good: 0.25,
            good: 0.0,
            bad: 0.5,
        };
        let (share, fates) = run(loss, 200_000);
        assert!(
            (share - loss.mean()).abs() < 0.01,
            "{share} vs {}",
            loss.mean()
        );
        // Losses cluster: a loss is followed by another far more often than
        // the mean rate alone would make it.
        let pairs = fates.windows(2).filter(|w| w[0] == Fate::Drop).count() as f64;
        let both = fates
            .windows(2)
            .filter(|w| w[0] == Fate::Drop && w[1] == Fate::Drop)
            .count() as f64;
        assert!(both / pairs > 3.0 * loss.mean(), "{}", both / pairs);
    }
}
