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
//! in-process limiter's slides), `r` attempts in flight (with a time-to-live,
//! in case a node dies before settling them), `b` the block, `s` the count
//! of blocks so far. Each operation is one script, so concurrent attempts
//! on different nodes see each other's counts.
//!
//! The in-process guard ([`crate::guard`]) still applies on each node,
//! including its cap on checks in flight per address; these limits come in
//! front of it. A join takes both through [`JoinAttempt`], which on a single
//! node is the guard's reservation alone.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_core::AttemptPolicy;

use crate::guard::{JoinGuard, Notice, Reservation};
use conclave_proto::MeetingId;
use fred::prelude::LuaInterface;

use super::{Cluster, ClusterError};

/// `0`: reserved. Otherwise milliseconds to wait (blocked, or the attempts
/// in flight could use up what is left).
const RESERVE: &str = r#"
local b = redis.call('PTTL', KEYS[3])
if b > 0 then return b end
local f = tonumber(redis.call('GET', KEYS[1]) or '0')
local r = tonumber(redis.call('GET', KEYS[2]) or '0')
if f + r >= tonumber(ARGV[1]) then return tonumber(ARGV[5]) end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"#;

/// Gives a reservation back (the attempt succeeded, or never ran).
const RELEASE: &str = r#"
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
if r > 0 then redis.call('DECR', KEYS[1]) end
return 0
"#;

/// Counts a failure, settling a reservation when ARGV[5] is 1. Returns
/// `{failures in the window, block started in ms or 0}`.
const FAIL: &str = r#"
if ARGV[5] == '1' then
  local r = tonumber(redis.call('GET', KEYS[2]) or '0')
  if r > 0 then redis.call('DECR', KEYS[2]) end
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
            format!("{p}:r"),
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
    async fn reserve_one(&self, kind: Kind) -> Result<(), Refusal> {
        let p = kind.policy();
        let [f, r, b, _] = kind.keys();
        let reply = self
            .client
            .eval::<i64, _, _, _>(
                RESERVE,
                vec![f, r, b],
                vec![
                    p.failures.to_string(),
                    ms(p.window),
                    ms(p.first_block),
                    ms(p.longest_block),
                    ms(AttemptPolicy::IN_FLIGHT_RETRY),
                    IN_FLIGHT_TTL_MS.to_string(),
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

    async fn release_one(&self, kind: Kind) -> Result<(), ClusterError> {
        let [_, r, _, _] = kind.keys();
        let reply = self
            .client
            .eval::<i64, _, _, _>(RELEASE, vec![r], Vec::<String>::new())
            .await;
        self.noted(reply).map(|_| ())
    }

    /// Counts a failure of `kind`; `reserved` settles a reservation.
    /// Returns the failures in the window, and the block it started if any.
    pub async fn fail(
        &self,
        kind: Kind,
        reserved: bool,
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
                    if reserved { "1" } else { "0" }.to_string(),
                ],
            )
            .await;
        let (failures, block) = self.noted(reply)?;
        if block > 0 {
            tracing::warn!(key = %kind.prefix(), secs = block / 1000, "blocked across the cluster after failed attempts");
        }
        Ok((failures, (block > 0).then(|| Duration::from_millis(block))))
    }

    /// Reserves a join attempt from `addr` at `meeting` (both, or neither).
    pub async fn reserve_join(
        self: &Arc<Self>,
        addr: IpAddr,
        meeting: Option<MeetingId>,
    ) -> Result<SharedAttempt, Refusal> {
        self.reserve_one(Kind::JoinAddress(addr)).await?;
        let mut kinds = vec![Kind::JoinAddress(addr)];
        if let Some(id) = meeting {
            if let Err(refusal) = self.reserve_one(Kind::JoinMeeting(id)).await {
                let _ = self.release_one(Kind::JoinAddress(addr)).await;
                return Err(refusal);
            }
            kinds.push(Kind::JoinMeeting(id));
        }
        Ok(SharedAttempt {
            cluster: Arc::clone(self),
            kinds,
            settled: false,
        })
    }

    /// Reserves a sign-in attempt from `addr`.
    pub async fn reserve_sign_in(self: &Arc<Self>, addr: IpAddr) -> Result<SharedAttempt, Refusal> {
        self.reserve_one(Kind::SignIn(addr)).await?;
        Ok(SharedAttempt {
            cluster: Arc::clone(self),
            kinds: vec![Kind::SignIn(addr)],
            settled: false,
        })
    }

    /// Counts a join failure that had no reservation (a failed resume).
    pub async fn join_failed(&self, addr: IpAddr, meeting: Option<MeetingId>) {
        let mut kinds = vec![Kind::JoinAddress(addr)];
        kinds.extend(meeting.map(Kind::JoinMeeting));
        for kind in kinds {
            if let Err(e) = self.fail(kind, false).await {
                tracing::warn!(error = %e, "a failed resume was not counted in Redis");
            }
        }
    }
}

/// An attempt counted in Redis before its check. Settle it with
/// [`SharedAttempt::give_back`] or [`SharedAttempt::failed`]; dropped
/// unsettled, it counts as a failure (settled by a task of its own).
pub struct SharedAttempt {
    cluster: Arc<Cluster>,
    kinds: Vec<Kind>,
    settled: bool,
}

impl SharedAttempt {
    /// The check passed (or never ran): the reservations are given back.
    pub async fn give_back(mut self) {
        self.settled = true;
        for kind in std::mem::take(&mut self.kinds) {
            if let Err(e) = self.cluster.release_one(kind).await {
                tracing::warn!(error = %e, "a reservation was not given back; it runs out");
            }
        }
    }

    /// The check failed: it stays counted, and may start a block.
    pub async fn failed(mut self) {
        self.settled = true;
        settle_failed(&self.cluster, std::mem::take(&mut self.kinds)).await;
    }
}

async fn settle_failed(cluster: &Cluster, kinds: Vec<Kind>) {
    for kind in kinds {
        if let Err(e) = cluster.fail(kind, true).await {
            tracing::warn!(error = %e, "a failed attempt was not counted in Redis");
        }
    }
}

impl Drop for SharedAttempt {
    fn drop(&mut self) {
        if !self.settled && !self.kinds.is_empty() {
            let cluster = Arc::clone(&self.cluster);
            let kinds = std::mem::take(&mut self.kinds);
            tokio::spawn(async move { settle_failed(&cluster, kinds).await });
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
        let shared = match cluster {
            Some(c) => Some(c.reserve_join(addr, meeting).await?),
            None => None,
        };
        match guard.reserve_join(addr, meeting) {
            Ok(local) => Ok(JoinAttempt { local, shared }),
            Err(wait) => {
                if let Some(s) = shared {
                    s.give_back().await;
                }
                Err(Refusal::Wait(wait))
            }
        }
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
