//! Meeting ownership leases in Redis: `conclave:lease:<meeting>` holds
//! `"<node> <token>"` with a time-to-live, and `conclave:fence:<meeting>`
//! counts the grants, so every holder's token is larger than the last one's.
//!
//! Taking a lease is one script, so that a lease never exists without its
//! token (`SET NX PX` and `INCR` together); renewing one is another, which
//! extends it only while it still holds our value. When our lease ran out
//! while Redis was unreachable, or Redis restarted without its data, and
//! nobody took it since (the fence reads no later token), renewing takes it
//! back; otherwise the meeting is lost to whoever took it. The decisions about time are
//! [`conclave_core::LeaseKeeper`]'s.

use std::sync::Arc;
use std::time::Instant;

use conclave_core::{LeaseKeeper, RenewReply, Standing};
use fred::prelude::LuaInterface;

use super::{Cluster, ClusterError};

/// Grants the lease if nobody holds it: `{token, ""}`, else `{0, holder}`.
const ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return {token, ''}
"#;

/// 1: renewed; 2: taken back after running out (or after Redis lost its
/// data in a restart), nobody having taken it since: the fence does not
/// read past our token, and is raised to it, so that later grants exceed
/// it; 0: not ours.
const RENEW: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
  local token = tonumber(ARGV[3])
  if fence <= token then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    if fence < token then redis.call('SET', KEYS[2], ARGV[3]) end
    return 2
  end
end
return 0
"#;

/// Deletes the lease only if it is still ours.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Counts a lease kept while it lives (see `Cluster::close`).
struct Held<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Held<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Held(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What asking for a meeting's lease got.
#[derive(Debug)]
pub enum Acquired {
    Granted(LeaseKeeper),
    /// Another node holds it (`"<node> <token>"` names which).
    HeldBy(String),
}

fn keys(meeting: &str) -> Vec<String> {
    vec![
        format!("conclave:lease:{meeting}"),
        format!("conclave:fence:{meeting}"),
    ]
}

impl Cluster {
    fn lease_value(&self, token: u64) -> String {
        format!("{} {token}", self.node_id)
    }

    fn ttl_ms(&self) -> String {
        self.lease_ttl.as_millis().to_string()
    }

    /// Asks for the lease of `meeting` (any key: a meeting ID's text).
    pub async fn acquire(&self, meeting: &str) -> Result<Acquired, ClusterError> {
        let sent = Instant::now();
        let r = self
            .client
            .eval::<(u64, String), _, _, _>(
                ACQUIRE,
                keys(meeting),
                vec![self.node_id.clone(), self.ttl_ms()],
            )
            .await;
        match self.noted(r)? {
            (0, holder) => Ok(Acquired::HeldBy(holder)),
            (token, _) => Ok(Acquired::Granted(LeaseKeeper::acquired(
                token,
                self.lease_ttl,
                sent,
            ))),
        }
    }

    /// Renews the lease `keeper` holds; returns its standing after.
    pub async fn renew(&self, meeting: &str, keeper: &mut LeaseKeeper) -> Standing {
        let sent = Instant::now();
        let token = keeper.token();
        let r = self
            .client
            .eval::<i64, _, _, _>(
                RENEW,
                keys(meeting),
                vec![self.lease_value(token), self.ttl_ms(), token.to_string()],
            )
            .await;
        let reply = match self.noted(r) {
            Ok(1 | 2) => RenewReply::Renewed,
            Ok(_) => RenewReply::NotOurs,
            Err(e) => {
                tracing::warn!(%meeting, error = %e, "lease renewal failed");
                RenewReply::Unreachable
            }
        };
        let standing = keeper.on_renew(reply, sent, Instant::now());
        if standing == Standing::Lost {
            tracing::warn!(%meeting, token, "lost the meeting's lease to another node");
        }
        standing
    }

    /// Gives the lease up, if it is still ours.
    pub async fn release(&self, meeting: &str, keeper: &LeaseKeeper) -> Result<(), ClusterError> {
        let r = self
            .client
            .eval::<i64, _, _, _>(
                RELEASE,
                keys(meeting),
                vec![self.lease_value(keeper.token())],
            )
            .await;
        self.noted(r).map(|_| ())
    }

    /// Renews the lease of `meeting` until `done` resolves (then gives it up)
    /// or the lease is lost (then calls `lost` and returns).
    pub async fn keep_lease(
        self: Arc<Self>,
        meeting: String,
        mut keeper: LeaseKeeper,
        done: impl std::future::Future<Output = ()>,
        lost: impl FnOnce(),
    ) {
        let _held = Held::new(&self.leases_held);
        tokio::pin!(done);
        while let Some(at) = keeper.next_renewal() {
            tokio::select! {
                () = &mut done => {
                    if let Err(e) = self.release(&meeting, &keeper).await {
                        tracing::warn!(%meeting, error = %e, "could not release the lease; it runs out by itself");
                    }
                    return;
                }
                () = tokio::time::sleep_until(at.into()) => {}
            }
            if self.renew(&meeting, &mut keeper).await == Standing::Lost {
                break;
            }
        }
        lost();
    }
}
