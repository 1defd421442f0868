//! Rate limits on virtual time: a token bucket for message floods and an
//! attempt limiter with exponential back-off for failed joins.
//!
//! Both take `now` from the caller, so tests run a thousand attempts over an
//! hour of virtual time in microseconds.
//!
//! An attempt whose check is slow (argon2) is counted before the check runs
//! ([`AttemptLimiter::reserve`]) and settled after it: a failure stays
//! counted, a success gives its reservation back. Counting only after the
//! check let attempts sent together all pass the limit while none had failed
//! yet: twenty sockets from one address got twenty checks where five were
//! allowed.

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

    /// Checks one client address may have running at once (see
    /// [`AttemptLimiter::with_in_flight_cap`]): enough for a person who
    /// mistypes and retries, not enough for a flood to fill the argon2 queue
    /// in front of everyone else.
    pub const CHECKS_IN_FLIGHT_PER_ADDRESS: u32 = 2;

    /// How long an attempt refused only because others are in flight is told
    /// to wait: they are settled by then, and if they failed a block has begun.
    pub const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);
}

#[derive(Debug, Default)]
struct Record {
    recent: VecDeque<Instant>,
    strikes: u32,
    blocked_until: Option<Instant>,
    last_seen: Option<Instant>,
    /// Attempts reserved and not settled yet.
    in_flight: u32,
}

impl Record {
    /// Forgets failures that have left the window.
    fn expire(&mut self, window: Duration, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
    }
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
    /// Reservations a key may hold at once.
    max_in_flight: u32,
}

impl<K: Hash + Eq + Clone> AttemptLimiter<K> {
    pub fn new(policy: AttemptPolicy) -> Self {
        AttemptLimiter {
            policy,
            records: HashMap::new(),
            max_in_flight: u32::MAX,
        }
    }

    /// Lets a key hold at most `cap` reservations at once (at least one).
    /// Without it, a key may hold as many as it has failures left.
    pub fn with_in_flight_cap(mut self, cap: u32) -> Self {
        self.max_in_flight = cap.max(1);
        self
    }

    /// `Err(retry_after)` while the key is blocked.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.records.get(key).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts an attempt before it is checked. `Err(retry_after)` while the
    /// key is blocked, while it holds its cap of reservations, or while its
    /// failures in the window and its reservations together reach the
    /// policy's failures: each attempt in flight may yet fail, so no more
    /// are let through than could fail without a block. Settle every `Ok`
    /// with [`AttemptLimiter::release`] or [`AttemptLimiter::fail`].
    pub fn reserve(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        self.check(&key, now)?;
        if !self.records.contains_key(&key) && self.records.len() >= self.policy.max_keys {
            self.forget_one(now);
        }
        let (policy, cap) = (self.policy, self.max_in_flight);
        let rec = self.records.entry(key).or_default();
        rec.last_seen = Some(now);
        rec.expire(policy.window, now);
        let counted = u32::try_from(rec.recent.len())
            .unwrap_or(u32::MAX)
            .saturating_add(rec.in_flight);
        if rec.in_flight >= cap || counted >= policy.failures {
            return Err(AttemptPolicy::IN_FLIGHT_RETRY);
        }
        rec.in_flight += 1;
        Ok(())
    }

    /// Settles a reservation whose attempt succeeded: as if it never was.
    pub fn release(&mut self, key: &K) {
        if let Some(rec) = self.records.get_mut(key) {
            rec.in_flight = rec.in_flight.saturating_sub(1);
        }
    }

    /// Settles a reservation whose attempt failed: it stays counted, as a
    /// failure ([`AttemptLimiter::record_failure`]).
    pub fn fail(&mut self, key: K, now: Instant) -> FailureOutcome {
        self.release(&key);
        self.record_failure(key, now)
    }

    /// Reservations `key` holds now.
    pub fn in_flight(&self, key: &K) -> u32 {
        self.records.get(key).map_or(0, |r| r.in_flight)
    }

    /// Counts a failure that was not reserved (an attempt with no slow check
    /// to guard, such as a resume).
    pub fn record_failure(&mut self, key: K, now: Instant) -> FailureOutcome {
        if !self.records.contains_key(&key) && self.records.len() >= self.policy.max_keys {
            self.forget_one(now);
        }
        let policy = self.policy;
        let rec = self.records.entry(key).or_default();
        rec.last_seen = Some(now);
        rec.expire(policy.window, now);
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
            r.in_flight > 0
                || r.blocked_until.is_some_and(|u| u > now)
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
            .filter(|(_, r)| r.in_flight == 0 && r.blocked_until.is_none_or(|u| u <= now))
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

    #[test]
    fn reserved_attempts_count_before_their_outcome() {
        // Five guesses sent together: five reservations, and the sixth is
        // refused before any of them has failed.
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS);
        for _ in 0..5 {
            assert_eq!(l.reserve("a", t0), Ok(()));
        }
        assert_eq!(l.reserve("a", t0), Err(AttemptPolicy::IN_FLIGHT_RETRY));
        assert_eq!(l.in_flight(&"a"), 5);
        let outcomes: Vec<_> = (0..5).map(|_| l.fail("a", t0)).collect();
        assert_eq!(outcomes[4].blocked_for, Some(Duration::from_secs(60)));
        assert_eq!(l.in_flight(&"a"), 0);
        assert_eq!(l.reserve("a", t0), Err(Duration::from_secs(60)));
        assert_eq!(l.check(&"a", t0), Err(Duration::from_secs(60)));
        assert!(l.reserve("b", t0).is_ok(), "other keys are unaffected");
    }

    #[test]
    fn a_success_gives_its_reservation_back() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS).with_in_flight_cap(2);
        for i in 0..1000 {
            let now = t0 + Duration::from_millis(i);
            assert_eq!(l.reserve("a", now), Ok(()), "attempt {i}");
            l.release(&"a");
        }
        assert_eq!(l.in_flight(&"a"), 0);
        // Successes left nothing behind: the fifth failure still is the one
        // that blocks, not an earlier one.
        for _ in 0..4 {
            l.reserve("a", t0).unwrap();
            assert_eq!(l.fail("a", t0).blocked_for, None);
        }
        l.reserve("a", t0).unwrap();
        assert!(l.fail("a", t0).blocked_for.is_some());
    }

    #[test]
    fn the_in_flight_cap_bounds_checks_running_at_once() {
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(AttemptPolicy::PER_ADDRESS).with_in_flight_cap(2);
        assert_eq!(l.reserve("a", t0), Ok(()));
        assert_eq!(l.reserve("a", t0), Ok(()));
        assert_eq!(l.reserve("a", t0), Err(AttemptPolicy::IN_FLIGHT_RETRY));
        l.release(&"a");
        assert_eq!(l.reserve("a", t0), Ok(()));
        l.fail("a", t0);
        assert_eq!(l.reserve("a", t0), Ok(()));
        assert_eq!(l.reserve("a", t0), Err(AttemptPolicy::IN_FLIGHT_RETRY));
        // Three more failures (one each time a slot frees) and the key is
        // blocked: five in all, as for attempts made one after another.
        l.fail("a", t0);
        l.fail("a", t0);
        l.reserve("a", t0).unwrap();
        l.reserve("a", t0).unwrap();
        assert_eq!(l.reserve("a", t0), Err(AttemptPolicy::IN_FLIGHT_RETRY));
        l.fail("a", t0);
        assert!(l.fail("a", t0).blocked_for.is_some());
    }

    /// Hundreds of attackers on one key, their attempts started and settled
    /// in a scrambled order over an hour of virtual time: checks granted never
    /// exceed what one attacker trying one at a time would get.
    #[test]
    fn hundreds_of_attempts_at_once_get_no_more_checks_than_one_at_a_time() {
        for (policy, cap) in [
            (
                AttemptPolicy::PER_ADDRESS,
                AttemptPolicy::CHECKS_IN_FLIGHT_PER_ADDRESS,
            ),
            (AttemptPolicy::PER_MEETING, u32::MAX),
        ] {
            let t0 = Instant::now();
            let mut l = AttemptLimiter::new(policy).with_in_flight_cap(cap);
            let mut now = t0;
            let mut rng = 0x2545_f491_4f6c_dd1d_u64;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let (mut granted, mut in_flight, mut first_minute) = (0u32, 0u32, 0u32);
            while now < t0 + Duration::from_secs(3600) {
                // 500 attackers try at this instant; a few checks finish.
                for _ in 0..500 {
                    if l.reserve("k", now).is_ok() {
                        granted += 1;
                        in_flight += 1;
                        if now < t0 + policy.window {
                            first_minute += 1;
                        }
                    }
                    assert!(in_flight <= cap.min(policy.failures));
                    assert_eq!(l.in_flight(&"k"), in_flight);
                    if in_flight > 0 && next() % 3 == 0 {
                        l.fail("k", now);
                        in_flight -= 1;
                    }
                }
                now += Duration::from_millis(next() % 2000);
            }
            assert!(
                first_minute <= policy.failures,
                "{first_minute} checks in the first minute"
            );
            // The sequential attacker of the test above gets at most 40 an
            // hour per address; the meeting's limit allows six times as many.
            let hourly = 40 * policy.failures / 5;
            assert!(granted <= hourly, "{granted} checks in an hour");
            assert!(granted >= policy.failures, "the limit itself is granted");
        }
    }

    #[test]
    fn settling_a_forgotten_key_is_harmless_and_reservations_are_kept() {
        let policy = AttemptPolicy {
            max_keys: 10,
            ..AttemptPolicy::PER_ADDRESS
        };
        let t0 = Instant::now();
        let mut l = AttemptLimiter::new(policy);
        l.reserve(0u32, t0).unwrap();
        for i in 1..1000u32 {
            l.record_failure(i, t0);
        }
        assert!(l.tracked() <= 10);
        assert_eq!(l.in_flight(&0), 1, "a key with a check in flight is kept");
        l.prune(t0 + Duration::from_secs(10 * 3600));
        assert_eq!(l.in_flight(&0), 1);
        l.release(&0);
        l.release(&0);
        l.release(&12345);
        assert_eq!(l.fail(54321, t0).recent_failures, 1);
    }
}
