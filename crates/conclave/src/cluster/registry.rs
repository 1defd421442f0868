//! The node registry: each node's record at `conclave:node:<id>` (JSON, with
//! a time-to-live it refreshes every third of), its ID in the set
//! `conclave:nodes`. A node that stops refreshing, because it died or lost
//! Redis, drops out when its record runs out; readers remove the IDs whose
//! record is gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclave_core::{NodeLoad, NodeState};
use fred::prelude::{Expiration, KeysInterface, LuaInterface, SetsInterface};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterError};

const NODES: &str = "conclave:nodes";

fn node_key(id: &str) -> String {
    format!("conclave:node:{id}")
}

/// The meetings placed on a node lately, whose members its record may not
/// count yet: a sorted set of meeting IDs scored by when each stops
/// counting (ms, Redis's clock).
fn placed_key(id: &str) -> String {
    format!("conclave:placed:{id}")
}

/// Picks the serving node for a new meeting among the candidates (KEYS:
/// their `placed` sets, in node ID order; ARGV: the meeting, how long a
/// placement counts in ms, then each candidate's participants and packets
/// per second from its record) and records the placement, in one step: a
/// burst of new meetings is spread instead of all going to the node whose
/// record looked emptiest. Each meeting placed lately counts as one
/// participant more, as [`conclave_core::least_loaded`] orders otherwise
/// (participants, then packets per second, then node ID). A meeting placed
/// already (asked for again before its lease was taken) stays where it
/// went. Returns the chosen candidate's position, from 1.
const PLACE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meeting, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], meeting) then return i end
end
local best, best_load, best_pps
for i = 1, #KEYS do
  local load = tonumber(ARGV[1 + 2 * i]) + redis.call('ZCARD', KEYS[i])
  local pps = tonumber(ARGV[2 + 2 * i])
  if not best or load < best_load or (load == best_load and pps < best_pps) then
    best, best_load, best_pps = i, load, pps
  end
end
redis.call('ZADD', KEYS[best], now + ttl, meeting)
redis.call('PEXPIRE', KEYS[best], ttl)
return best
"#;

/// What a node tells the others about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// Where other nodes reach this one (`cluster.internal_url`).
    pub internal_url: String,
    /// The first media worker's address as announced to clients: worker `i`
    /// listens on its port + `i`, UDP and ICE-TCP (port 0: ephemeral ports).
    pub media_address: SocketAddr,
    /// Media workers as configured (0: one per core).
    pub media_workers: usize,
    /// `serving` or `draining`.
    pub state: String,
    /// Members seated in its running meetings, and the members of meetings
    /// held elsewhere whose media it serves (cascading).
    pub participants: u64,
    /// RTP packets forwarded per second over the last refresh interval.
    pub packets_per_sec: u64,
    /// Meetings running on it.
    pub meetings: u64,
}

impl NodeRecord {
    /// The part placement looks at.
    pub fn load(&self) -> NodeLoad {
        NodeLoad {
            node_id: self.node_id.clone(),
            state: if self.state == "serving" {
                NodeState::Serving
            } else {
                NodeState::Draining
            },
            participants: self.participants,
            packets_per_sec: self.packets_per_sec,
        }
    }
}

/// Where a node's load figures come from.
pub struct LoadSource {
    pub media_address: SocketAddr,
    pub media_workers: usize,
    pub rooms: Arc<crate::rooms::Rooms>,
    /// RTP packets forwarded since the start (the media workers add to it).
    pub forwarded: Arc<AtomicU64>,
}

impl Cluster {
    /// Writes this node's record with its time-to-live.
    pub async fn publish(&self, record: &NodeRecord) -> Result<(), ClusterError> {
        let json =
            serde_json::to_string(record).map_err(|e| ClusterError::Unexpected(e.to_string()))?;
        let ttl = i64::try_from(self.node_ttl.as_millis()).unwrap_or(i64::MAX);
        let r = self
            .client
            .set::<(), _, _>(
                node_key(&record.node_id),
                json,
                Some(Expiration::PX(ttl)),
                None,
                false,
            )
            .await;
        self.noted(r)?;
        let r = self
            .client
            .sadd::<(), _, _>(NODES, record.node_id.clone())
            .await;
        self.noted(r)
    }

    /// The records of the nodes alive now (their record has not run out).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        let ids = self
            .read(|| self.client.smembers::<Vec<String>, _>(NODES))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let found = self
            .read(|| self.client.mget::<Vec<Option<String>>, _>(keys.clone()))
            .await?;
        let mut nodes = Vec::new();
        let mut gone = Vec::new();
        for (id, json) in ids.into_iter().zip(found) {
            match json.and_then(|j| serde_json::from_str::<NodeRecord>(&j).ok()) {
                Some(rec) => nodes.push(rec),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let r = self.client.srem::<(), _, _>(NODES, gone).await;
            self.noted(r)?;
        }
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// The serving node new meeting `meeting` should go to, by the live
    /// records and the meetings placed since they were written ([`PLACE`]);
    /// `None` when no node serves.
    pub async fn place(&self, meeting: &str) -> Result<Option<NodeRecord>, ClusterError> {
        let nodes = self.nodes().await?;
        let serving: Vec<NodeRecord> = nodes
            .into_iter()
            .filter(|n| n.load().state == NodeState::Serving)
            .collect();
        if serving.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = serving.iter().map(|n| placed_key(&n.node_id)).collect();
        let mut args = vec![meeting.to_string(), self.placed_ms().to_string()];
        for n in &serving {
            args.push(n.participants.to_string());
            args.push(n.packets_per_sec.to_string());
        }
        let r = self.client.eval::<usize, _, _, _>(PLACE, keys, args).await;
        let pick = self.noted(r)?;
        Ok(serving.into_iter().nth(pick.saturating_sub(1)))
    }

    /// How long a placement counts beside a node's record: until the
    /// record has been refreshed twice after it (a refresh every third of
    /// the record's time-to-live), by when its participants count the
    /// meeting's first members.
    fn placed_ms(&self) -> u128 {
        self.node_ttl.as_millis()
    }

    /// Refreshes this node's record every third of its time-to-live until
    /// shutdown; [`Cluster::close`] deletes it once the meetings are gone.
    pub async fn keep_registered(self: Arc<Self>, load: LoadSource, shutdown: CancellationToken) {
        let every = self.node_ttl / 3;
        let mut counted = (Instant::now(), load.forwarded.load(Ordering::Relaxed));
        let mut pps = 0;
        loop {
            // Under the lock, so that a refresh built before
            // [`Cluster::drain`] cannot land after its record.
            let mut last = self.record.lock().await;
            let record = NodeRecord {
                node_id: self.node_id.clone(),
                internal_url: self.internal_url.clone(),
                media_address: load.media_address,
                media_workers: load.media_workers,
                state: if self.draining.load(Ordering::Acquire) {
                    "draining"
                } else {
                    "serving"
                }
                .to_string(),
                participants: load.rooms.participants() + load.rooms.media().cascaded_members(),
                packets_per_sec: pps,
                meetings: load.rooms.running() as u64,
            };
            if let Err(e) = self.publish(&record).await {
                tracing::debug!(error = %e, "node record not refreshed");
            }
            *last = Some(record);
            drop(last);
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => break,
            }
            let now = (Instant::now(), load.forwarded.load(Ordering::Relaxed));
            let secs = now
                .0
                .duration_since(counted.0)
                .max(Duration::from_millis(1));
            pps = (now.1.saturating_sub(counted.1) as f64 / secs.as_secs_f64()) as u64;
            counted = now;
        }
    }

    /// Marks this node as draining and says so in its record at once, not
    /// at the next refresh: from here on placement sends no new meeting here.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        let mut last = self.record.lock().await;
        if let Some(record) = last.as_mut() {
            record.state = "draining".to_string();
            if let Err(e) = self.publish(record).await {
                tracing::warn!(error = %e, "could not mark this node as draining");
            }
        }
    }

    /// Removes this node's record (at the end of a clean shutdown).
    pub(super) async fn unregister(&self) {
        let _last = self.record.lock().await;
        let r = self.client.del::<(), _>(node_key(&self.node_id)).await;
        let _ = self.noted(r);
        let r = self
            .client
            .srem::<(), _, _>(NODES, self.node_id.clone())
            .await;
        let _ = self.noted(r);
    }
}
