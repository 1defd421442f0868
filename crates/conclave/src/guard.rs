//! The join and sign-in guards: failed attempts per client address and per
//! meeting, on the core's [`AttemptLimiter`], with the wall clock supplied here.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_core::{AttemptLimiter, AttemptPolicy};
use conclave_proto::MeetingId;

/// Hosts hear about failed joins at every this many in the window.
const NOTICE_EVERY: u32 = 10;

pub struct JoinGuard {
    per_address: Mutex<AttemptLimiter<IpAddr>>,
    per_meeting: Mutex<AttemptLimiter<MeetingId>>,
    sign_in: Mutex<AttemptLimiter<IpAddr>>,
}

/// What the hosts of a meeting should be told after a failure.
pub struct Notice {
    pub failed_attempts: u32,
    pub window: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for JoinGuard {
    fn default() -> Self {
        JoinGuard {
            per_address: Mutex::new(AttemptLimiter::new(AttemptPolicy::PER_ADDRESS)),
            per_meeting: Mutex::new(AttemptLimiter::new(AttemptPolicy::PER_MEETING)),
            sign_in: Mutex::new(AttemptLimiter::new(AttemptPolicy::PER_ADDRESS)),
        }
    }
}

/// Whole seconds to wait, rounded up so that a client never retries too early.
pub fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl JoinGuard {
    /// `Err(wait)` while this address or this meeting is blocked.
    pub fn check_join(&self, addr: IpAddr, meeting: Option<MeetingId>) -> Result<(), Duration> {
        let now = Instant::now();
        let a = lock(&self.per_address).check(&addr, now);
        let m = match meeting {
            Some(id) => lock(&self.per_meeting).check(&id, now),
            None => Ok(()),
        };
        match (a, m) {
            (Err(x), Err(y)) => Err(x.max(y)),
            (Err(x), _) | (_, Err(x)) => Err(x),
            _ => Ok(()),
        }
    }

    /// Records a failed join; returns a notice for the meeting's hosts now and then.
    pub fn join_failed(&self, addr: IpAddr, meeting: Option<MeetingId>) -> Option<Notice> {
        let now = Instant::now();
        let a = lock(&self.per_address).record_failure(addr, now);
        if let Some(block) = a.blocked_for {
            tracing::warn!(%addr, secs = block.as_secs(), "address blocked after failed joins");
        }
        let id = meeting?;
        let m = lock(&self.per_meeting).record_failure(id, now);
        if let Some(block) = m.blocked_for {
            tracing::warn!(meeting = %id, secs = block.as_secs(), "meeting joins blocked after failed attempts");
        }
        m.recent_failures
            .is_multiple_of(NOTICE_EVERY)
            .then_some(Notice {
                failed_attempts: m.recent_failures.max(1),
                window: AttemptPolicy::PER_MEETING.window,
            })
    }

    pub fn check_sign_in(&self, addr: IpAddr) -> Result<(), Duration> {
        lock(&self.sign_in).check(&addr, Instant::now())
    }

    pub fn sign_in_failed(&self, addr: IpAddr) {
        let o = lock(&self.sign_in).record_failure(addr, Instant::now());
        if o.blocked_for.is_some() {
            tracing::warn!(%addr, "address blocked after failed sign-ins");
        }
    }

    /// Forgets expired records; the server calls it every minute.
    pub fn prune(&self) {
        let now = Instant::now();
        lock(&self.per_address).prune(now);
        lock(&self.per_meeting).prune(now);
        lock(&self.sign_in).prune(now);
    }
}
