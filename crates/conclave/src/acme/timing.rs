//! When to renew a certificate and how long to wait after a failure: plain
//! functions of the certificate's validity, the failures so far and `now`,
//! so the decisions are tested without a CA, a socket or a clock.

use std::time::{Duration, SystemTime};

/// A certificate's validity and the names it covers, read from its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Its subject alternative names (DNS), lowercase.
    pub names: Vec<String>,
}

/// The first retry after a failed renewal. Short, because a blip (the CA
/// restarting, a DNS hiccup) is the common failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(30);
/// The longest wait between retries: a CA that refuses for hours is asked
/// at most once an hour, far inside Let's Encrypt's failed-validation limit
/// (5 per name per hour).
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// The shortest wait between retries, whatever the certificate's lifetime:
/// a failing CA is never asked in a tight loop.
pub const RETRY_FLOOR: Duration = Duration::from_secs(2);
/// The longest a renewal task sleeps before looking at the clock again, so
/// a suspended machine or a clock step does not sleep past the renewal.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// When a certificate should be replaced: once two thirds of its lifetime
/// have passed, as Let's Encrypt recommends (30 days before a 90-day
/// certificate expires). Leaves a third of the lifetime for retries.
pub fn renew_at(v: &Validity) -> SystemTime {
    let lifetime = v
        .not_after
        .duration_since(v.not_before)
        .unwrap_or(Duration::ZERO);
    v.not_after - lifetime / 3
}

/// Whether a stored certificate can be served at startup: it covers every
/// configured name and has not expired. One that is merely due for renewal
/// is served while the renewal runs in the background.
pub fn usable(v: &Validity, domains: &[String], now: SystemTime) -> bool {
    now < v.not_after
        && domains
            .iter()
            .all(|d| v.names.iter().any(|n| n.eq_ignore_ascii_case(d)))
}

/// How long to wait after the `failures`-th failed attempt in a row
/// (`failures >= 1`): doubling from [`RETRY_FIRST`] up to [`RETRY_MAX`], and
/// while the served certificate is still valid at most a third of the time
/// it has left (never below [`RETRY_FLOOR`]), so several retries fit before
/// it expires however short its life.
pub fn retry_delay(failures: u32, now: SystemTime, not_after: Option<SystemTime>) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let backoff = RETRY_FIRST.saturating_mul(1u32 << doublings).min(RETRY_MAX);
    match not_after.and_then(|t| t.duration_since(now).ok()) {
        Some(left) if !left.is_zero() => backoff.min((left / 3).max(RETRY_FLOOR)),
        _ => backoff,
    }
}

/// How long to sleep before looking again, when the next attempt is at `at`.
/// Zero: attempt now.
pub fn sleep_for(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(MAX_SLEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn cert(days: u32, names: &[&str]) -> Validity {
        Validity {
            not_before: t0(),
            not_after: t0() + DAY * days,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_it_expires() {
        let v = cert(90, &["meet.example.org"]);
        assert_eq!(renew_at(&v), t0() + DAY * 60);
        // Pebble's short test lifetimes follow the same rule.
        let short = Validity {
            not_before: t0(),
            not_after: t0() + Duration::from_secs(30),
            names: vec![],
        };
        assert_eq!(renew_at(&short), t0() + Duration::from_secs(20));
    }

    #[test]
    fn a_backwards_validity_is_due_at_once() {
        let v = Validity {
            not_before: t0() + DAY,
            not_after: t0(),
            names: vec![],
        };
        assert_eq!(renew_at(&v), t0());
    }

    #[test]
    fn a_stored_certificate_is_used_until_it_expires_if_it_covers_every_name() {
        let domains = vec!["meet.example.org".to_string()];
        let v = cert(90, &["Meet.Example.org"]);
        assert!(usable(&v, &domains, t0()));
        // Due for renewal but valid: served while the renewal runs.
        assert!(usable(&v, &domains, t0() + DAY * 80));
        assert!(!usable(&v, &domains, t0() + DAY * 90));
        let more = vec![
            "meet.example.org".to_string(),
            "www.example.org".to_string(),
        ];
        assert!(!usable(&v, &more, t0()));
        assert!(!usable(&cert(90, &["other.example.org"]), &domains, t0()));
    }

    #[test]
    fn retries_double_up_to_an_hour() {
        let far = Some(t0() + DAY * 30);
        let delays: Vec<u64> = (1..=9)
            .map(|n| retry_delay(n, t0(), far).as_secs())
            .collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(u32::MAX, t0(), far), RETRY_MAX);
        // No certificate, or an expired one: the plain backoff.
        assert_eq!(retry_delay(3, t0(), None).as_secs(), 120);
        assert_eq!(retry_delay(3, t0() + DAY * 31, far).as_secs(), 120);
    }

    #[test]
    fn retries_fit_inside_a_short_remaining_lifetime() {
        let soon = Some(t0() + Duration::from_secs(12));
        assert_eq!(retry_delay(1, t0(), soon), Duration::from_secs(4));
        assert_eq!(retry_delay(5, t0(), soon), Duration::from_secs(4));
        let very_soon = Some(t0() + Duration::from_secs(1));
        assert_eq!(retry_delay(1, t0(), very_soon), RETRY_FLOOR);
    }

    #[test]
    fn sleeps_are_capped_so_the_clock_is_read_again() {
        assert_eq!(sleep_for(t0(), t0() + DAY), MAX_SLEEP);
        assert_eq!(
            sleep_for(t0(), t0() + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(sleep_for(t0() + DAY, t0()), Duration::ZERO);
    }
}
