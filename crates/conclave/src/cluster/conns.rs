//! Meeting connections that have not joined yet, counted per client
//! address in Redis for the whole cluster (`limits.max_pending_per_address`),
//! so that opening sockets on every node gains an address no more than
//! opening them on one.
//!
//! Per address, `conclave:conns:<address>` is a sorted set of the
//! connections counted, one member per connection (this node's ID, a
//! random tag of this run of the process, a number), each scored with its
//! own deadline. The node holding a connection pushes its deadline back
//! every third of `cluster.lease_ms` while it holds it and removes it when
//! the connection joins or closes; a node that dies stops renewing, so its
//! connections leave the count within a lease, whatever other connections
//! come meanwhile. A counter with a time-to-live could not do that: every
//! new connection would push the dead node's share back.
//!
//! One script checks and adds, so connections sent at once to several
//! nodes see each other. A socket relayed to the meeting's node is counted
//! there, not by the node it reached first. While Redis cannot be asked,
//! each node counts its own connections alone (the single-node cap), so a
//! member can still resume on the node running its meeting.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fred::prelude::{ClientLike, LuaInterface};
use fred::types::CustomCommand;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterError};

/// `1`: counted (or already counted under this member); `0`: the address
/// holds `ARGV[1]` connections already. Expired members leave first.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// Pushes back the deadlines of the members named (from ARGV[2] on) that
/// are still counted; one that left (closed, or expired and removed) is not
/// brought back.
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

fn key(ip: IpAddr) -> String {
    format!("conclave:conns:{ip}")
}

/// The connections this node counts in Redis, by address, for renewal.
pub(super) struct Held {
    /// Tells this run's members from those of an earlier run of a node
    /// with the same ID, which may still be counted.
    tag: String,
    next: AtomicU64,
    by_address: Mutex<HashMap<IpAddr, BTreeSet<u64>>>,
}

impl Held {
    pub(super) fn new() -> Self {
        Held {
            tag: hex::encode(rand::random::<[u8; 8]>()),
            next: AtomicU64::new(0),
            by_address: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, BTreeSet<u64>>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, ip: IpAddr, n: u64) {
        let mut held = self.lock();
        if let Some(set) = held.get_mut(&ip) {
            set.remove(&n);
            if set.is_empty() {
                held.remove(&ip);
            }
        }
    }
}

/// A connection counted in Redis; dropped, it is removed from the count.
pub struct ConnSlot {
    cluster: Arc<Cluster>,
    ip: IpAddr,
    n: u64,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.cluster.conns.forget(self.ip, self.n);
        let member = self.cluster.conn_member(self.n);
        let cluster = Arc::clone(&self.cluster);
        let ip = self.ip;
        // Not renewed any more: if this is lost, it leaves within a lease.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // ZREM as it is (fred's sorted-set interface is not built).
                let zrem = CustomCommand::new_static("ZREM", None, false);
                let r = cluster
                    .client
                    .custom::<i64, _>(zrem, vec![key(ip), member])
                    .await;
                if let Err(e) = cluster.noted(r) {
                    tracing::debug!(error = %e, "a closed connection left to run out in Redis");
                }
            });
        }
    }
}

impl Cluster {
    fn conn_member(&self, n: u64) -> String {
        format!("{}:{}:{n}", self.node_id, self.conns.tag)
    }

    /// Counts a connection from `ip` if the cluster holds fewer than `max`
    /// from there; `None`: it holds `max` already. An error: Redis could
    /// not be asked (the caller counts on this node alone).
    pub async fn admit_conn(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
    ) -> Result<Option<ConnSlot>, ClusterError> {
        let n = self.conns.next.fetch_add(1, Ordering::Relaxed);
        // Held (and so given back when dropped) before Redis is asked: a
        // count whose reply was lost is removed too.
        self.conns.lock().entry(ip).or_default().insert(n);
        let slot = ConnSlot {
            cluster: Arc::clone(self),
            ip,
            n,
        };
        let reply = self
            .client
            .eval::<i64, _, _, _>(
                ADMIT,
                vec![key(ip)],
                vec![
                    max.to_string(),
                    self.lease_ttl.as_millis().to_string(),
                    self.conn_member(n),
                ],
            )
            .await;
        match self.noted(reply)? {
            1 => Ok(Some(slot)),
            _ => Ok(None),
        }
    }

    /// Renews the deadlines of the connections this node holds, every
    /// third of a lease, until `shutdown`.
    pub(super) async fn renew_conns(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.lease_ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            let held: Vec<(IpAddr, Vec<String>)> = self
                .conns
                .lock()
                .iter()
                .map(|(ip, ns)| (*ip, ns.iter().map(|n| self.conn_member(*n)).collect()))
                .collect();
            for (ip, members) in held {
                let mut args = vec![self.lease_ttl.as_millis().to_string()];
                args.extend(members);
                let r = self
                    .client
                    .eval::<i64, _, _, _>(RENEW, vec![key(ip)], args)
                    .await;
                if let Err(e) = self.noted(r) {
                    tracing::debug!(error = %e, "connections not renewed in Redis");
                    break;
                }
            }
        }
    }
}
