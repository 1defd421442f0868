//! The join and sign-in guards: failed attempts per client address and per
//! meeting, on the core's [`AttemptLimiter`], with the wall clock supplied here.
//!
//! An attempt that runs argon2 is reserved first ([`JoinGuard::reserve_join`],
//! [`JoinGuard::reserve_sign_in`]) and the [`Reservation`] settled after the
//! check, so that attempts sent at once cannot all pass the limit before
//! the first of them has failed. Each address may have
//! `limits.checks_in_flight_per_address` checks running at once (default
//! [`AttemptPolicy::CHECKS_IN_FLIGHT_PER_ADDRESS`]).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
        JoinGuard::new(AttemptPolicy::CHECKS_IN_FLIGHT_PER_ADDRESS)
    }
}

impl JoinGuard {
    /// Guards with at most `in_flight` checks running per client address
    /// (`limits.checks_in_flight_per_address`).
    pub fn new(in_flight: u32) -> Self {
        JoinGuard {
            per_address: Mutex::new(
                AttemptLimiter::new(AttemptPolicy::PER_ADDRESS).with_in_flight_cap(in_flight),
            ),
            // Bounded by its 30 failures: a meeting's guests come from many
            // addresses, and right passcodes share one check (crate::auth).
            per_meeting: Mutex::new(AttemptLimiter::new(AttemptPolicy::PER_MEETING)),
            sign_in: Mutex::new(
                AttemptLimiter::new(AttemptPolicy::PER_ADDRESS).with_in_flight_cap(in_flight),
            ),
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

    /// Counts a join attempt from `addr` at `meeting` before its passcode is
    /// checked. `Err(wait)` while either is blocked, while the address has its
    /// share of checks running, or while the attempts in flight could use up
    /// what is left of either limit.
    pub fn reserve_join(
        self: &Arc<Self>,
        addr: IpAddr,
        meeting: Option<MeetingId>,
    ) -> Result<Reservation, Duration> {
        let now = Instant::now();
        lock(&self.per_address).reserve(addr, now)?;
        if let Some(id) = meeting
            && let Err(wait) = lock(&self.per_meeting).reserve(id, now)
        {
            lock(&self.per_address).release(&addr);
            return Err(wait);
        }
        Ok(Reservation {
            guard: Arc::clone(self),
            what: Reserved::Join { addr, meeting },
            settled: false,
        })
    }

    /// Counts a sign-in attempt (password or one-time link) from `addr`
    /// before it is checked.
    pub fn reserve_sign_in(self: &Arc<Self>, addr: IpAddr) -> Result<Reservation, Duration> {
        lock(&self.sign_in).reserve(addr, Instant::now())?;
        Ok(Reservation {
            guard: Arc::clone(self),
            what: Reserved::SignIn { addr },
            settled: false,
        })
    }

    /// Records a failed join that had no reservation (a resume, which runs no
    /// slow check); returns a notice for the meeting's hosts now and then.
    pub fn join_failed(&self, addr: IpAddr, meeting: Option<MeetingId>) -> Option<Notice> {
        self.settle_join(addr, meeting, false)
    }

    /// Counts a failed join, settling a reservation when `reserved`.
    fn settle_join(
        &self,
        addr: IpAddr,
        meeting: Option<MeetingId>,
        reserved: bool,
    ) -> Option<Notice> {
        let now = Instant::now();
        let a = {
            let mut l = lock(&self.per_address);
            if reserved {
                l.fail(addr, now)
            } else {
                l.record_failure(addr, now)
            }
        };
        if let Some(block) = a.blocked_for {
            tracing::warn!(%addr, secs = block.as_secs(), "address blocked after failed joins");
        }
        let id = meeting?;
        let m = {
            let mut l = lock(&self.per_meeting);
            if reserved {
                l.fail(id, now)
            } else {
                l.record_failure(id, now)
            }
        };
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

    /// Forgets expired records; the server calls it every minute.
    pub fn prune(&self) {
        let now = Instant::now();
        lock(&self.per_address).prune(now);
        lock(&self.per_meeting).prune(now);
        lock(&self.sign_in).prune(now);
    }
}

/// What a [`Reservation`] holds.
enum Reserved {
    Join {
        addr: IpAddr,
        meeting: Option<MeetingId>,
    },
    SignIn {
        addr: IpAddr,
    },
}

/// An attempt counted before its check. Settle it with
/// [`Reservation::succeeded`] or [`Reservation::failed`]; dropped unsettled
/// (the check never finished), it counts as a failure.
pub struct Reservation {
    guard: Arc<JoinGuard>,
    what: Reserved,
    settled: bool,
}

impl Reservation {
    /// The check passed: the attempt leaves no trace in the limits.
    pub fn succeeded(mut self) {
        self.settled = true;
        match self.what {
            Reserved::Join { addr, meeting } => {
                lock(&self.guard.per_address).release(&addr);
                if let Some(id) = meeting {
                    lock(&self.guard.per_meeting).release(&id);
                }
            }
            Reserved::SignIn { addr } => lock(&self.guard.sign_in).release(&addr),
        }
    }

    /// The check failed: the attempt stays counted. A join failure may
    /// return a notice for the meeting's hosts.
    pub fn failed(mut self) -> Option<Notice> {
        self.settled = true;
        self.settle_failure()
    }

    fn settle_failure(&self) -> Option<Notice> {
        match self.what {
            Reserved::Join { addr, meeting } => self.guard.settle_join(addr, meeting, true),
            Reserved::SignIn { addr } => {
                let o = lock(&self.guard.sign_in).fail(addr, Instant::now());
                if o.blocked_for.is_some() {
                    tracing::warn!(%addr, "address blocked after failed sign-ins");
                }
                None
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.settle_failure();
        }
    }
}
