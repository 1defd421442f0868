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
use fred::prelude::{Expiration, KeysInterface, SetsInterface};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterError};

const NODES: &str = "conclave:nodes";

fn node_key(id: &str) -> String {
    format!("conclave:node:{id}")
}

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
    /// Members seated in its running meetings.
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
        let r = self.client.smembers::<Vec<String>, _>(NODES).await;
        let ids = self.noted(r)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let r = self.client.mget::<Vec<Option<String>>, _>(keys).await;
        let found = self.noted(r)?;
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

    /// The serving node a new meeting should go to, by the live records
    /// ([`conclave_core::least_loaded`]); `None` when no node serves.
    pub async fn place(&self) -> Result<Option<NodeRecord>, ClusterError> {
        let nodes = self.nodes().await?;
        let loads: Vec<NodeLoad> = nodes.iter().map(NodeRecord::load).collect();
        let pick = conclave_core::least_loaded(&loads).map(|n| n.node_id.clone());
        Ok(pick.and_then(|id| nodes.into_iter().find(|n| n.node_id == id)))
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
                participants: load.rooms.participants(),
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
