//! Keyframe requests on their way from subscribers to a publisher.
//!
//! A subscriber that cannot decode (it just joined, lost packets NACK could
//! not recover, or its E2EE keys changed) asks for a keyframe with RTCP PLI
//! (RFC 4585 §6.3.1) or FIR (RFC 5104 §4.3.1). A keyframe costs the publisher
//! many times the bits of a delta frame, and one keyframe serves every
//! subscriber of the track. So the router sends a publisher at most one
//! request per track per interval; requests arriving inside the interval are
//! merged into one that goes out when the interval ends, so a late asker is
//! never left waiting for a keyframe that nobody requested.
//!
//! Pure state on caller-supplied time; the router owns one per track.

use std::time::{Duration, Instant};

/// How often a publisher is asked for a keyframe per track, at most.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Rate limit with one deferred slot for the keyframe requests of one track.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    deferred: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ask the publisher now.
    Send,
    /// Too soon after the last one: it goes out when [`KeyframeThrottle::due`]
    /// says so (merged with any other request in the meantime).
    Deferred,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration) -> Self {
        KeyframeThrottle {
            interval,
            last_sent: None,
            deferred: false,
        }
    }

    /// A subscriber asks for a keyframe at `now`.
    pub fn request(&mut self, now: Instant) -> Verdict {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.deferred = true;
                Verdict::Deferred
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred = false;
                Verdict::Send
            }
        }
    }

    /// When a deferred request becomes due, if one is waiting.
    pub fn due_at(&self) -> Option<Instant> {
        match (self.deferred, self.last_sent) {
            (true, Some(last)) => Some(last + self.interval),
            _ => None,
        }
    }

    /// Whether a deferred request must be sent at `now`; if so, it counts as sent.
    pub fn poll_due(&mut self, now: Instant) -> bool {
        match self.due_at() {
            Some(at) if at <= now => {
                self.deferred = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Instant {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn one_request_per_interval_and_the_rest_merged() {
        let t0 = origin();
        let ms = Duration::from_millis;
        let mut t = KeyframeThrottle::new(ms(500));
        assert_eq!(t.request(t0), Verdict::Send);
        assert_eq!(t.due_at(), None);
        assert_eq!(t.request(t0 + ms(100)), Verdict::Deferred);
        assert_eq!(t.request(t0 + ms(200)), Verdict::Deferred);
        assert_eq!(t.due_at(), Some(t0 + ms(500)));
        assert!(!t.poll_due(t0 + ms(499)));
        assert!(t.poll_due(t0 + ms(500)));
        // Merged: only one goes out.
        assert!(!t.poll_due(t0 + ms(501)));
        assert_eq!(t.due_at(), None);
        // The deferred one started a new interval.
        assert_eq!(t.request(t0 + ms(900)), Verdict::Deferred);
        assert_eq!(t.request(t0 + ms(1_000)), Verdict::Send);
        assert_eq!(t.due_at(), None);
    }
}
