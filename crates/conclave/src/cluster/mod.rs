//! Cluster mode (`[cluster]`): what this node shares with the others through
//! Redis. The decisions are `conclave_core::cluster`'s; this is the I/O.
//!
//! - [`registry`]: this node's record (addresses, load, serving or
//!   draining), kept alive with a short time-to-live.
//! - [`lease`]: one meeting, one node: an ownership lease per running meeting,
//!   with a fencing token, renewed while the meeting runs here.
//! - [`relay`]: a meeting's WebSocket that reached another node, copied to
//!   and from the node running the meeting.
//! - [`route`]: which node a meeting's WebSocket belongs on, and the
//!   header that vouches to it for a relayed client's address.
//! - [`live`]: live meeting state that must outlive the node (lock,
//!   suspension, members, roles, resume tokens' hashes, the waiting list).
//! - [`limits`]: failed joins and sign-ins counted in Redis, so that guesses
//!   spread over the nodes are limited as if they came to one.
//! - [`cascade`]: a meeting's media over several nodes: placement and the
//!   control channel to the nodes serving some of its members (issue 23).
//! - [`conns`]: connections not joined yet counted per address in Redis,
//!   so that the per-address cap holds for the cluster, not per node.
//!
//! Redis being unreachable is an expected state, not an error to crash on:
//! the client reconnects by itself, [`Cluster::is_available`] turns false
//! (so `/readyz` does and new joins are refused as temporarily unavailable)
//! and back to true once a command succeeds again. Meetings already running
//! here keep their media meanwhile.

pub mod cascade;
pub mod conns;
pub mod lease;
pub mod limits;
pub mod live;
mod redis_tls;
pub mod registry;
pub mod relay;
pub mod route;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fred::prelude::{
    Builder, ClientLike, Config as RedisConfig, Error as RedisError, EventInterface,
    ReconnectPolicy,
};
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;

/// How long one Redis command may take before it counts as Redis being
/// unavailable: a join waits at most this long to be told so.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idempotent read may take in all, over at most two tries:
/// Redis slowed past one command's deadline by load (or a pause) delays a
/// join by up to this much instead of refusing it. A Redis that is not
/// connected at all is not waited for.
const READ_BUDGET: Duration = Duration::from_millis(2500);
/// Pause between reconnection attempts.
const RECONNECT_DELAY_MS: u32 = 250;
/// How often availability is checked while nothing else talks to Redis.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long a clean shutdown waits for the ended meetings' leases to be
/// given up, so that another node (or this one restarted) may take them at
/// once instead of after their time-to-live.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(#[from] RedisError),
    #[error("cluster.redis_ca_file {}: {reason}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS to Redis: {0}")]
    Tls(String),
    #[error("Redis answered unexpectedly: {0}")]
    Unexpected(String),
}

/// This node's link to the cluster.
pub struct Cluster {
    client: fred::clients::Client,
    node_id: String,
    internal_url: String,
    /// `cluster.secret`: relaying to other nodes is on with it.
    secret: Option<String>,
    lease_ttl: Duration,
    node_ttl: Duration,
    available: AtomicBool,
    draining: AtomicBool,
    /// `conclave_redis_errors_total`.
    errors: metrics::Counter,
    /// Meetings whose lease this node keeps now.
    leases_held: AtomicUsize,
    /// The record last published, which [`Cluster::drain`] republishes.
    record: tokio::sync::Mutex<Option<registry::NodeRecord>>,
    drain_time: Duration,
    /// Why the last connection attempt failed, until a command succeeds.
    connection_error: std::sync::Mutex<Option<String>>,
    /// Connections this node counts in Redis ([`conns`]).
    conns: conns::Held,
}

impl Cluster {
    /// Starts the Redis client; it connects (and reconnects) in the
    /// background, so a node starts even while Redis is down, not ready.
    pub fn connect(
        config: &ClusterConfig,
        errors: metrics::Counter,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, ClusterError> {
        // TLS is set up here (redis_tls), not by fred from the scheme.
        let (url, tls) = match config.redis_url.strip_prefix("rediss://") {
            Some(rest) => (format!("redis://{rest}"), true),
            None => (config.redis_url.clone(), false),
        };
        let mut redis = RedisConfig::from_url(&url)?;
        if tls {
            redis.tls = Some(redis_tls::config(config.redis_ca_file.as_deref())?);
        }
        // Retry the first connection too, by the policy, instead of failing.
        redis.fail_fast = false;
        let client = Builder::from_config(redis)
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                // A command is not sent again on a new connection: a join
                // hears "unavailable" instead of waiting for Redis.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS))
            .build()?;
        let connection_errors = client.error_rx();
        let _connection = client.connect();
        let cluster = Arc::new(Cluster {
            client,
            node_id: config.node_id.clone(),
            internal_url: config.internal_url.clone(),
            secret: config.secret.clone(),
            lease_ttl: Duration::from_millis(config.lease_ms),
            node_ttl: Duration::from_millis(config.node_ttl_ms),
            available: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            errors,
            leases_held: AtomicUsize::new(0),
            record: tokio::sync::Mutex::new(None),
            drain_time: Duration::from_millis(config.drain_ms),
            connection_error: std::sync::Mutex::new(None),
            conns: conns::Held::new(),
        });
        tokio::spawn(Arc::clone(&cluster).renew_conns(shutdown.clone()));
        tokio::spawn(Arc::clone(&cluster).probe(shutdown));
        tokio::spawn(log_connection_errors(
            connection_errors,
            Arc::downgrade(&cluster),
        ));
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The secret the nodes share to vouch for relayed clients; `None`:
    /// this node neither relays nor trusts a relay header.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Whether Redis answered the last command sent to it. False: new joins
    /// and sign-ins are refused as temporarily unavailable, and `/readyz`
    /// says not ready.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Whether [`Cluster::drain`] was called: `/readyz` then says not ready.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `cluster.drain_ms`: how long a draining node waits for its meetings
    /// to end.
    pub fn drain_time(&self) -> Duration {
        self.drain_time
    }

    /// Why this node could not connect to Redis the last time it tried
    /// (connection refused, a certificate that does not verify), while it
    /// has not connected since; logged too.
    pub fn connection_error(&self) -> Option<String> {
        self.connection_error_slot().clone()
    }

    fn connection_error_slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.connection_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a command's outcome for [`Cluster::is_available`].
    fn noted<T>(&self, r: Result<T, RedisError>) -> Result<T, ClusterError> {
        match r {
            Ok(v) => {
                if !self.available.swap(true, Ordering::AcqRel) {
                    tracing::info!("Redis is available");
                    *self.connection_error_slot() = None;
                }
                Ok(v)
            }
            Err(e) => {
                self.errors.increment(1);
                if self.available.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "Redis is unavailable: new joins are refused until it is back");
                }
                Err(ClusterError::Unavailable(e))
            }
        }
    }

    /// Runs `read`, a command that may be sent twice (it changes nothing),
    /// and once more if it missed its deadline while the connection is up
    /// (Redis slow, not gone) and the second try fits in [`READ_BUDGET`].
    /// Only the outcome counts for [`Cluster::is_available`]; the missed
    /// deadline counts as a Redis error.
    pub(crate) async fn read<T, F, Fut>(&self, mut read: F) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = tokio::time::Instant::now();
        match read().await {
            Err(e)
                if *e.kind() == fred::error::ErrorKind::Timeout
                    && self.client.is_connected()
                    && started.elapsed() + COMMAND_TIMEOUT <= READ_BUDGET =>
            {
                self.errors.increment(1);
                tracing::debug!(error = %e, "a Redis read missed its deadline; trying once more");
                self.noted(read().await)
            }
            r => self.noted(r),
        }
    }

    /// Whether a join may go on: at once if the last command succeeded;
    /// otherwise, while the connection is up, whether Redis answers a
    /// `PING` now (one try: the join's earlier reads had their retry), so
    /// that a stall that made the last command miss its deadline delays
    /// the join rather than refusing it. Not connected: false at once.
    pub async fn check_available(&self) -> bool {
        if self.is_available() {
            return true;
        }
        if !self.client.is_connected() {
            return false;
        }
        let r = self.client.ping::<String>(None).await;
        self.noted(r).is_ok()
    }

    /// Pings Redis now and then, so that availability is known (and comes
    /// back) without waiting for a join to try.
    async fn probe(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let r = self.client.ping::<String>(None).await;
            let _ = self.noted(r);
            tokio::select! {
                () = tokio::time::sleep(PROBE_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Once the meetings have ended: waits (a little) for their leases to
    /// be given up, so that the next join takes them at once elsewhere.
    pub async fn wait_released(&self) {
        let deadline = tokio::time::Instant::now() + RELEASE_GRACE;
        while self.leases_held.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// At shutdown, once the meetings have ended: waits for their leases to
    /// be given up, removes this node's record, closes the connection.
    pub async fn close(&self) {
        self.wait_released().await;
        self.unregister().await;
        let _ = self.client.quit().await;
    }
}

/// How often the same connection error is logged again while it lasts.
const REPEAT_ERROR_EVERY: Duration = Duration::from_secs(30);

/// Logs why Redis cannot be reached (refused, a TLS certificate that does
/// not verify, a wrong password), which commands alone would only report
/// as timeouts. The same error is logged again only now and then: the
/// client retries four times a second.
async fn log_connection_errors(
    mut errors: tokio::sync::broadcast::Receiver<(RedisError, Option<fred::types::config::Server>)>,
    cluster: std::sync::Weak<Cluster>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut last: Option<(String, tokio::time::Instant)> = None;
    loop {
        let (error, server) = match errors.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let text = error.to_string();
        let Some(c) = cluster.upgrade() else { return };
        *c.connection_error_slot() = Some(text.clone());
        drop(c);
        let now = tokio::time::Instant::now();
        let repeat = last
            .as_ref()
            .is_some_and(|(t, at)| *t == text && now.duration_since(*at) < REPEAT_ERROR_EVERY);
        if !repeat {
            let server = server.map(|s| s.to_string()).unwrap_or_default();
            tracing::error!(error = %text, %server, "cannot use Redis");
            last = Some((text, now));
        }
    }
}
