//! Failed joins and sign-ins counted in Redis, for the whole cluster, on the
//! same policies as the in-process limiter ([`AttemptPolicy`]): an attempt
//! is reserved before its slow check (so that attempts sent at once to
//! several nodes cannot all pass before the first has failed), a failure
//! stays counted, a success gives its reservation back, and a key that fails
//! `failures` times within the window is blocked, each block twice as long
//! as the last, up to the longest.
//!
//! Per key (`conclave:limit:<kind>:<key>:…`): `f` failures in the window
//! (the window starts at the first failure: a fixed window, where the
//! in-process limiter's slides), `a` the attempts in flight, `b` the block,
//! `s` the count of blocks so far. Each operation is one script, so
//! concurrent attempts on different nodes see each other's counts.
//!
//! *Why each attempt has an ID:* `a` is a sorted set of attempt IDs, each
//! with its own deadline, not a counter. Settling an attempt removes its ID,
//! and a failure is counted only if the ID was still there, so a settle
//! whose reply was lost (Redis ran it, the 1 s deadline passed) can be sent
//! again without counting twice, and a reservation whose reply was lost is
//! given back by its ID instead of holding a place until it runs out. A
//! reservation a node never settles (it died mid-check) leaves at its own
//! deadline, whatever other attempts come meanwhile; a shared counter's
//! time-to-live, pushed back by every new attempt, would keep it.
//!
//! The in-process guard ([`crate::guard`]) still applies on each node,
//! including its cap on checks in flight per address; these limits come in
//! front of it. A join takes both through [`JoinAttempt`], a sign-in through
//! [`SignInAttempt`]; a refusal by the guard gives the Redis reservation
//! back (it was never checked, so it is no failure). On a single node each
//! is the guard's reservation alone.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_core::AttemptPolicy;

use crate::guard::{JoinGuard, Notice, Reservation};
use conclave_proto::MeetingId;
use fred::prelude::LuaInterface;

use super::{Cluster, ClusterError};

/// `0`: reserved (or already reserved under this ID). Otherwise
/// milliseconds to wait (blocked, or the attempts in flight could use up
/// what is left). ARGV[7] is the attempt's ID.
const RESERVE: &str = r#"
local b = redis.call('PTTL', KEYS[3])
if b > 0 then return b end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], ARGV[7]) then return 0 end
local f = tonumber(redis.call('GET', KEYS[1]) or '0')
local r = redis.call('ZCARD', KEYS[2])
if f + r >= tonumber(ARGV[1]) then return tonumber(ARGV[5]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"#;

/// Gives a reservation back (the attempt succeeded, never ran, or its
/// reservation's reply was lost). Removing an ID that is not there does
/// nothing, so it may be sent again.
const RELEASE: &str = r#"
return redis.call('ZREM', KEYS[1], ARGV[1])
"#;

/// Counts a failure. With an attempt ID (ARGV[5] not empty) the failure
/// settles that reservation and is counted only if the reservation was
/// still there, so that sending it again counts nothing more. Returns
/// `{failures in the window, block started in ms or 0}`.
const FAIL: &str = r#"
if ARGV[5] ~= '' then
  if redis.call('ZREM', KEYS[2], ARGV[5]) == 0 then
    return {tonumber(redis.call('GET', KEYS[1]) or '0'), 0}
  end
end
local f = redis.call('INCR', KEYS[1])
if f == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if f >= tonumber(ARGV[1]) then
  local s = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]) * 2)
  local ms = math.min(tonumber(ARGV[3]) * 2 ^ (s - 1), tonumber(ARGV[4]))
  ms = math.floor(ms)
  redis.call('SET', KEYS[3], '1', 'PX', ms)
  redis.call('DEL', KEYS[1])
  return {f, ms}
end
return {f, 0}
"#;

/// How long an attempt counted in flight is remembered if its node never
/// settles it (it died mid-check): far longer than any check runs.
const IN_FLIGHT_TTL_MS: u64 = 60_000;

/// How many times a settle (idempotent, by attempt ID) is sent before the
/// reservation is left to run out, and the pause between tries.
const SETTLE_TRIES: u32 = 3;
const SETTLE_PAUSE: Duration = Duration::from_millis(300);

/// An attempt's ID in Redis: 128 random bits, so that no two attempts, on
/// any node, share one.
fn attempt_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// What is limited.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Failed joins from one client address.
    JoinAddress(IpAddr),
    /// Failed joins at one meeting, whatever the addresses.
    JoinMeeting(MeetingId),
    /// Failed sign-ins from one client address.
    SignIn(IpAddr),
}

impl Kind {
    fn policy(self) -> AttemptPolicy {
        match self {
            Kind::JoinAddress(_) | Kind::SignIn(_) => AttemptPolicy::PER_ADDRESS,
            Kind::JoinMeeting(_) => AttemptPolicy::PER_MEETING,
        }
    }

    fn prefix(self) -> String {
        match self {
            Kind::JoinAddress(ip) => format!("conclave:limit:join_addr:{ip}"),
            Kind::JoinMeeting(id) => format!("conclave:limit:join_meeting:{id}"),
            Kind::SignIn(ip) => format!("conclave:limit:sign_in:{ip}"),
        }
    }

    /// Keys in the order the scripts take them: failures, in flight, block,
    /// strikes.
    fn keys(self) -> [String; 4] {
        let p = self.prefix();
        [
            format!("{p}:f"),
            format!("{p}:a"),
            format!("{p}:b"),
            format!("{p}:s"),
        ]
    }
}

/// Why an attempt may not go ahead.
#[derive(Debug)]
pub enum Refusal {
    /// Blocked, or too many attempts in flight: retry after this long.
    Wait(Duration),
    /// Redis cannot be asked: the attempt cannot be counted, so it is refused.
    Unavailable(ClusterError),
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

impl Cluster {
    async fn reserve_one(&self, kind: Kind, id: &str) -> Result<(), Refusal> {
        let p = kind.policy();
        let [f, a, b, _] = kind.keys();
        let reply = self
            .client
            .eval::<i64, _, _, _>(
                RESERVE,
                vec![f, a, b],
                vec![
                    p.failures.to_string(),
                    ms(p.window),
                    ms(p.first_block),
                    ms(p.longest_block),
                    ms(AttemptPolicy::IN_FLIGHT_RETRY),
                    IN_FLIGHT_TTL_MS.to_string(),
                    id.to_string(),
                ],
            )
            .await;
        match self.noted(reply).map_err(Refusal::Unavailable)? {
            0 => Ok(()),
            wait => Err(Refusal::Wait(Duration::from_millis(
                u64::try_from(wait).unwrap_or(1000),
            ))),
        }
    }

    async fn release_one(&self, kind: Kind, id: &str) -> Result<(), ClusterError> {
        let [_, a, _, _] = kind.keys();
        let reply = self
            .client
            .eval::<i64, _, _, _>(RELEASE, vec![a], vec![id.to_string()])
            .await;
        self.noted(reply).map(|_| ())
    }

    /// Counts a failure of `kind`; with `attempt`, settles that reservation
    /// (and counts only if it was still held). Returns the failures in the
    /// window, and the block it started if any.
    pub async fn fail(
        &self,
        kind: Kind,
        attempt: Option<&str>,
    ) -> Result<(u64, Option<Duration>), ClusterError> {
        let p = kind.policy();
        let reply = self
            .client
            .eval::<(u64, u64), _, _, _>(
                FAIL,
                kind.keys().to_vec(),
                vec![
                    p.failures.to_string(),
                    ms(p.window),
                    ms(p.first_block),
                    ms(p.longest_block),
                    attempt.unwrap_or_default().to_string(),
                ],
            )
            .await;
        let (failures, block) = self.noted(reply)?;
        if block > 0 {
            tracing::warn!(key = %kind.prefix(), secs = block / 1000, "blocked across the cluster after failed attempts");
        }
        Ok((failures, (block > 0).then(|| Duration::from_millis(block))))
    }

    /// Reserves one attempt under `id` in every one of `kinds`, or in none:
    /// a refusal, or an error, gives back what was taken (by its ID, so
    /// also a reservation Redis made whose reply was lost).
    async fn reserve_all(self: &Arc<Self>, kinds: Vec<Kind>) -> Result<SharedAttempt, Refusal> {
        let mut attempt = SharedAttempt {
            cluster: Arc::clone(self),
            id: attempt_id(),
            kinds: Vec::new(),
            settled: false,
        };
        for kind in kinds {
            // Listed before it is asked for: if the reply is lost, the
            // give-back below covers it too.
            attempt.kinds.push(kind);
            if let Err(refusal) = self.reserve_one(kind, &attempt.id).await {
                if let Refusal::Wait(_) = refusal {
                    // Redis answered that it reserved nothing for this one.
                    attempt.kinds.pop();
                }
                if attempt.kinds.is_empty() {
                    attempt.settled = true;
                } else {
                    // Awaited, so that the next attempt does not find this
                    // one still counted in flight.
                    attempt.give_back().await;
                }
                return Err(refusal);
            }
        }
        Ok(attempt)
    }

    /// Reserves a join attempt from `addr` at `meeting` (both, or neither).
    pub async fn reserve_join(
        self: &Arc<Self>,
        addr: IpAddr,
        meeting: Option<MeetingId>,
    ) -> Result<SharedAttempt, Refusal> {
        let mut kinds = vec![Kind::JoinAddress(addr)];
        kinds.extend(meeting.map(Kind::JoinMeeting));
        self.reserve_all(kinds).await
    }

    /// Reserves a sign-in attempt from `addr`.
    pub async fn reserve_sign_in(self: &Arc<Self>, addr: IpAddr) -> Result<SharedAttempt, Refusal> {
        self.reserve_all(vec![Kind::SignIn(addr)]).await
    }

    /// Counts a join failure that had no reservation (a failed resume).
    pub async fn join_failed(&self, addr: IpAddr, meeting: Option<MeetingId>) {
        let mut kinds = vec![Kind::JoinAddress(addr)];
        kinds.extend(meeting.map(Kind::JoinMeeting));
        for kind in kinds {
            if let Err(e) = self.fail(kind, None).await {
                tracing::warn!(error = %e, "a failed resume was not counted in Redis");
            }
        }
    }
}

/// How an attempt ends in Redis.
#[derive(Clone, Copy)]
enum Outcome {
    /// Given back: no trace.
    GivenBack,
    /// Counted as a failure.
    Failed,
}

/// An attempt counted in Redis before its check, under its own ID. Settle
/// it with [`SharedAttempt::give_back`] or [`SharedAttempt::failed`];
/// dropped unsettled (the request ended while the check may have run), it
/// counts as a failure.
///
/// Settling runs in a task of its own, sent again (it is idempotent) if
/// Redis does not answer in time, so that neither a lost reply nor a
/// client that goes away before the answer leaves it unsettled.
pub struct SharedAttempt {
    cluster: Arc<Cluster>,
    id: String,
    kinds: Vec<Kind>,
    settled: bool,
}

impl SharedAttempt {
    /// The check passed (or never ran): the reservations are given back.
    pub async fn give_back(mut self) {
        let _ = self.settle(Outcome::GivenBack).await;
    }

    /// The check failed: it stays counted, and may start a block.
    pub async fn failed(mut self) {
        let _ = self.settle(Outcome::Failed).await;
    }

    /// Starts settling; the returned handle may be awaited or dropped.
    fn settle(&mut self, outcome: Outcome) -> tokio::task::JoinHandle<()> {
        self.settled = true;
        let cluster = Arc::clone(&self.cluster);
        let id = std::mem::take(&mut self.id);
        let kinds = std::mem::take(&mut self.kinds);
        tokio::spawn(async move {
            for kind in kinds {
                settle_one(&cluster, kind, &id, outcome).await;
            }
        })
    }
}

async fn settle_one(cluster: &Cluster, kind: Kind, id: &str, outcome: Outcome) {
    let mut tries = 0;
    loop {
        tries += 1;
        let r = match outcome {
            Outcome::GivenBack => cluster.release_one(kind, id).await,
            Outcome::Failed => cluster.fail(kind, Some(id)).await.map(|_| ()),
        };
        let Err(e) = r else { return };
        if tries >= SETTLE_TRIES {
            match outcome {
                Outcome::GivenBack => {
                    tracing::warn!(error = %e, "a reservation was not given back; it runs out")
                }
                Outcome::Failed => {
                    tracing::warn!(error = %e, "a failed attempt was not counted in Redis; its reservation runs out")
                }
            }
            return;
        }
        tokio::time::sleep(SETTLE_PAUSE).await;
    }
}

impl Drop for SharedAttempt {
    fn drop(&mut self) {
        if !self.settled && !self.kinds.is_empty() {
            drop(self.settle(Outcome::Failed));
        }
    }
}

/// The guard's half of an attempt, taken after Redis's (`shared`, in a
/// cluster): when the guard refuses, the attempt was never checked, so
/// Redis's reservation is given back rather than dropped, which would count
/// it as a failure.
async fn reserve_both(
    shared: Option<SharedAttempt>,
    local: impl FnOnce() -> Result<Reservation, Duration>,
) -> Result<(Reservation, Option<SharedAttempt>), Refusal> {
    match local() {
        Ok(local) => Ok((local, shared)),
        Err(wait) => {
            if let Some(s) = shared {
                s.give_back().await;
            }
            Err(Refusal::Wait(wait))
        }
    }
}

/// A join attempt reserved in every limit that applies: the node's own guard
/// and, in cluster mode, Redis's. Taken only by a join whose passcode needs
/// a check (`crate::auth::Hasher::verify_passcode` asks for it), so joins
/// that share one check also share one count, in Redis too.
pub struct JoinAttempt {
    local: Reservation,
    shared: Option<SharedAttempt>,
}

impl JoinAttempt {
    /// Reserves in Redis first (when in a cluster), then in the guard; a
    /// refusal by the guard gives the Redis reservation back.
    pub async fn reserve(
        guard: &Arc<JoinGuard>,
        cluster: Option<&Arc<Cluster>>,
        addr: IpAddr,
        meeting: Option<MeetingId>,
    ) -> Result<JoinAttempt, Refusal> {
        let (local, shared) = reserve_both(
            match cluster {
                Some(c) => Some(c.reserve_join(addr, meeting).await?),
                None => None,
            },
            || guard.reserve_join(addr, meeting),
        )
        .await?;
        Ok(JoinAttempt { local, shared })
    }

    /// The passcode was right: the attempt leaves no trace in any limit.
    pub async fn succeeded(self) {
        self.local.succeeded();
        if let Some(s) = self.shared {
            s.give_back().await;
        }
    }

    /// The passcode was wrong: counted everywhere. Returns the guard's
    /// notice for the meeting's hosts, if it is time for one.
    pub async fn failed(self) -> Option<Notice> {
        let notice = self.local.failed();
        if let Some(s) = self.shared {
            s.failed().await;
        }
        notice
    }
}

/// A sign-in attempt (password, one-time link, or the current password
/// when changing it) reserved in the node's guard and, in cluster mode, in
/// Redis, as [`JoinAttempt`] is for joins.
pub struct SignInAttempt {
    local: Reservation,
    shared: Option<SharedAttempt>,
}

impl SignInAttempt {
    /// Reserves in Redis first (when in a cluster), then in the guard; a
    /// refusal by the guard gives the Redis reservation back: the attempt
    /// was never checked, so it is no failure anywhere.
    pub async fn reserve(
        guard: &Arc<JoinGuard>,
        cluster: Option<&Arc<Cluster>>,
        addr: IpAddr,
    ) -> Result<SignInAttempt, Refusal> {
        let (local, shared) = reserve_both(
            match cluster {
                Some(c) => Some(c.reserve_sign_in(addr).await?),
                None => None,
            },
            || guard.reserve_sign_in(addr),
        )
        .await?;
        Ok(SignInAttempt { local, shared })
    }

    /// The credentials were right: no trace in any limit.
    pub async fn succeeded(self) {
        self.local.succeeded();
        if let Some(s) = self.shared {
            s.give_back().await;
        }
    }

    /// The credentials were wrong: counted everywhere, in Redis before the
    /// answer goes out.
    pub async fn failed(self) {
        self.local.failed();
        if let Some(s) = self.shared {
            s.failed().await;
        }
    }
}
