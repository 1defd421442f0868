//! Rate limits on virtual time: a token bucket for message floods and an
//! attempt limiter with exponential back-off for failed joins.
//!
//! Both take `now` from the caller, so tests run a thousand attempts over an
//! hour of virtual time in microseconds.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A classic token bucket: `capacity` messages at once, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_sec: u32, now: Instant) -> Self {
        TokenBucket {
            capacity: f64::from(capacity),
            per_sec: f64::from(per_sec),
            tokens: f64::from(capacity),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How many failures are allowed, and how long blocks last.
#[derive(Debug, Clone, Copy)]
pub struct AttemptPolicy {
    /// Failures allowed within `window` before the key is blocked.
    pub failures: u32,
    pub window: Duration,
    /// The first block's length; each further block doubles it.
    pub first_block: Duration,
    pub longest_block: Duration,
    /// Keys tracked at most; beyond it the least recently active is forgotten,
    /// so that a flood of distinct keys cannot exhaust memory.
    pub max_keys: usize,
}

impl AttemptPolicy {
    /// Per client address: 5 failures a minute, then 1 min, 2 min, 4 min … up to 1 h.
    pub const PER_ADDRESS: AttemptPolicy = AttemptPolicy {
        failures: 5,
        window: Duration::from_secs(60),
        first_block: Duration::from_secs(60),
        longest_block: Duration::from_secs(3600),
        max_keys: 100_000,
    };

    /// Per meeting, whatever the addresses: 30 failures a minute. Guards against
    /// guessing spread over many addresses; the meeting's owner is never blocked.
    pub const PER_MEETING: AttemptPolicy = AttemptPolicy {
        failures: 30,
        window: Duration::from_secs(60),
        first_block: Duration::from_secs(60),
        longest_block: Duration::from_secs(3600),
        max_keys: 100_000,
    };
}

#[derive(Debug, Default)]
struct Record {
    recent: VecDeque<Instant>,
    strikes: u32,
    blocked_until: Option<Instant>,
    last_seen: Option<Instant>,
}

/// What a recorded failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Failures for this key inside the current window (including this one).
    pub recent_failures: u32,
    /// Set when this failure started a block.
    pub blocked_for: Option<Duration>,
}

/// Counts failed attempts per key and blocks keys that fail too often.
#[derive(Debug)]
pub struct AttemptLimiter<K> {
    policy: AttemptPolicy,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> AttemptLimiter<K> {
    pub fn new(policy: AttemptPolicy) -> Self {
        AttemptLimiter {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Err(retry_after)` while the key is blocked.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.records.get(key).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&mut self, key: K, now: Instant) -> FailureOutcome {
        if !self.records.contains_key(&key) && self.records.len() >= self.policy.max_keys {
            self.forget_one(now);
        }
        let policy = self.policy;
        let rec = self.records.entry(key).or_default();
        rec.last_seen = Some(now);
        while rec
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= policy.window)
        {
            rec.recent.pop_front();
        }
        rec.recent.push_back(now);
        let recent_failures = u32::try_from(rec.recent.len()).unwrap_or(u32::MAX);
        let mut blocked_for = None;
        if recent_failures >= policy.failures {
            let factor = 1u32.checked_shl(rec.strikes).unwrap_or(u32::MAX);
            let block = policy
                .first_block
                .saturating_mul(factor)
                .min(policy.longest_block);
            rec.strikes = rec.strikes.saturating_add(1);
            rec.blocked_until = Some(now + block);
            rec.recent.clear();
            blocked_for = Some(block);
        }
        FailureOutcome {
            recent_failures,
            blocked_for,
        }
    }

    /// Drops records with nothing left to remember; call now and then.
    pub fn prune(&mut self, now: Instant) {
        let keep_for = self.policy.longest_block.max(self.policy.window) * 2;
        self.records.retain(|_, r| {
            r.blocked_until.is_some_and(|u| u > now)
                || r.last_seen
                    .is_some_and(|t| now.saturating_duration_since(t) < keep_for)
        });
    }

    pub fn tracked(&self) -> usize {
        self.records.len()
    }

    fn forget_one(&mut self, now: Instant) {
        self.prune(now);
        if self.records.len() < self.policy.max_keys {
            return;
        }
        let oldest = self
            .records
            .iter()
            .filter(|(_, r)| r.blocked_until.is_none_or(|u| u <= now))
            .min_by_key(|(_, r)| r.last_seen)
            .or_else(|| self.records.iter().min_by_key(|(_, r)| r.last_seen))
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.records.remove(&k);
        }
    }
}

#[cfg(test)]
// Tests take one real instant as the origin of their virtual clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert!((0..10).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(200)));
        assert!(!b.try_take(t0 + Duration::from_millis(200)));
        assert!((0..10).all(|_| b.try_take(t0 + Duration::from_secs(100))));
    }

    #[test]
    fn five_failures_a_minute_block_an_address_with_doubling_backoff() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
        for i in 0..4 {
            assert!(l.check(&"a", t0).is_ok());
            let o = l.record_failure("a", t0 + Duration::from_secs(i));
            assert_eq!(o.blocked_for, None);
        }
        let o = l.record_failure("a", t0 + Duration::from_secs(4));
        assert_eq!(o.blocked_for, Some(Duration::from_secs(60)));
        assert_eq!(
            l.check(&"a", t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(60))
        );
        assert!(l.check(&"b", t0).is_ok(), "other addresses are unaffected");
        let t1 = t0 + Duration::from_secs(65);
        assert!(l.check(&"a", t1).is_ok());
        for _ in 0..5 {
            l.record_failure("a", t1);
        }
        assert_eq!(l.check(&"a", t1), Err(Duration::from_secs(120)));
    }

    #[test]
    fn failures_spread_out_never_block() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
        for i in 0..100 {
            let o = l.record_failure("a", t0 + Duration::from_secs(15 * i));
            assert_eq!(o.blocked_for, None);
        }
    }

    #[test]
    fn a_thousand_guesses_an_hour_mostly_meet_a_block() {
        // An attacker retrying the moment each block ends gets only a handful of
        // guesses in an hour.
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
        let mut now = t0;
        let mut tried = 0;
        for _ in 0..1000 {
            match l.check(&"a", now) {
                Ok(()) => {
                    tried += 1;
                    l.record_failure("a", now);
                    now += Duration::from_millis(100);
                }
                Err(wait) => now += wait,
            }
            if now > t0 + Duration::from_secs(3600) {
                break;
            }
        }
        assert!(tried <= 40, "{tried} guesses got through in an hour");
    }

    #[test]
    fn the_longest_block_caps_the_backoff() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
        let mut now = t0;
        for _ in 0..40 {
            for _ in 0..5 {
                l.record_failure("a", now);
            }
            let wait = l.check(&"a", now).unwrap_err();
            assert!(wait <= Duration::from_secs(3600));
            now += wait;
        }
    }

    #[test]
    fn distinct_keys_cannot_grow_memory_without_bound() {
        let policy = AttemptPolicy {
            max_keys: 100,
            ..AttemptPolicy::PER_ADDRESS
        };
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(policy);
        for i in 0..10_000u32 {
            l.record_failure(i, t0);
        }
        assert!(l.tracked() <= 100);
    }
}
