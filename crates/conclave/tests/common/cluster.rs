//! Nodes of a cluster for the tests and the cluster benchmark
//! (`bench/cluster.rs`, which includes this harness): their `[cluster]`
//! settings, nodes in this process on one PostgreSQL and one Redis (three
//! of them behind the round-robin [`Front`]), a node as its own `conclave
//! serve` process to kill, and Redis's per-command call counts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use conclave::config::ClusterConfig;
use reqwest::StatusCode;

use super::TestServer;
use super::front::{Front, free_port};
use super::postgres::Postgres;
use super::redis::Redis;

/// The secret the fronted nodes share to vouch for relayed clients.
pub const SECRET: &str = "a-cluster-secret-of-at-least-32-chars";

/// `[cluster]` of node `node` on `redis`, relaying nothing (no secret).
pub fn config(redis: &Redis, node: &str, lease_ms: u64, node_ttl_ms: u64) -> ClusterConfig {
    ClusterConfig {
        redis_url: redis.url(),
        redis_ca_file: None,
        node_id: node.to_string(),
        internal_url: format!("http://{node}.internal:8080"),
        lease_ms,
        node_ttl_ms,
        secret: None,
        drain_ms: 10_000,
        media_link_addr: None,
    }
}

/// Waits until `what` holds, up to `secs`; panics naming `why` otherwise.
pub async fn eventually(secs: u64, why: &str, mut what: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's `/readyz` status.
pub async fn ready(server: &TestServer) -> StatusCode {
    reqwest::get(server.url("/readyz"))
        .await
        .expect("readyz answers")
        .status()
}

/// Whether the node at `addr` answers `/readyz` with 200.
pub async fn is_ready(addr: SocketAddr) -> bool {
    reqwest::get(format!("http://{addr}/readyz"))
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// Waits until Redis holds `n` node records.
pub async fn node_records(redis: &Redis, n: usize) {
    let want = format!(":{n}");
    eventually(10, &format!("{n} node records"), async || {
        redis.cmd("SCARD conclave:nodes").trim() == want
    })
    .await;
}

/// One node, `node-a`, of `redis`'s cluster, on its own SQLite store and
/// relaying nothing; returned ready.
pub async fn one_node(redis: &Redis, lease_ms: u64, node_ttl_ms: u64) -> TestServer {
    let cfg = config(redis, "node-a", lease_ms, node_ttl_ms);
    let server = TestServer::start_with(|c| c.cluster = Some(cfg)).await;
    eventually(10, "ready", async || ready(&server).await == StatusCode::OK).await;
    server
}

/// How the nodes a test starts, in this process or as processes, are set up.
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    pub lease_ms: u64,
    pub node_ttl_ms: u64,
    /// Whether they relay sockets to a meeting's owner, vouching with
    /// [`SECRET`]; without, every socket is served by the node it reaches.
    pub relay: bool,
    /// `limits.max_pending_per_address`, with a join timeout longer than
    /// any test (so that sockets left pending stay open); else the defaults.
    pub max_pending: Option<usize>,
    /// `cascade_meetings_from`, with a media link between the nodes on
    /// 127.0.0.1; 0: no cascading.
    pub cascade_from: usize,
}

impl Default for NodeOptions {
    /// Relaying nodes with leases of 2 s and records of 1.5 s: a dead
    /// node's meetings are free again soon after.
    fn default() -> Self {
        NodeOptions {
            lease_ms: 2000,
            node_ttl_ms: 1500,
            relay: true,
            max_pending: None,
            cascade_from: 0,
        }
    }
}

/// `[cluster]` of node `node` listening on `addr`, as `opts` say.
fn node_config(redis: &Redis, node: &str, addr: SocketAddr, opts: NodeOptions) -> ClusterConfig {
    let mut cfg = config(redis, node, opts.lease_ms, opts.node_ttl_ms);
    cfg.internal_url = format!("http://{addr}");
    cfg.secret = opts.relay.then(|| SECRET.into());
    if opts.cascade_from > 0 {
        cfg.media_link_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    }
    cfg
}

/// Nodes `ids` in this process, on the (empty) PostgreSQL database at `url`
/// (the first seeds it) and `redis`, set up as `opts` say and then by
/// `tweak`; returned once each is ready.
pub async fn nodes(
    redis: &Redis,
    url: &str,
    ids: &[&str],
    opts: NodeOptions,
    tweak: impl Fn(&mut conclave::Config),
) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let cfg = node_config(redis, id, addr, opts);
        let tweak = |c: &mut conclave::Config| {
            c.listen = addr;
            c.cluster = Some(cfg);
            c.database_url = Some(url.to_string());
            if let Some(cap) = opts.max_pending {
                c.limits.max_pending_per_address = cap;
                c.limits.join_timeout_secs = 120;
            }
            c.cascade_meetings_from = opts.cascade_from;
            tweak(c);
        };
        nodes.push(if i == 0 {
            TestServer::start_on_postgres(url, tweak).await
        } else {
            TestServer::start_with(tweak).await
        });
    }
    for n in &nodes {
        eventually(10, "node ready", async || is_ready(n.addr).await).await;
    }
    nodes
}

/// Three nodes sharing one PostgreSQL and one Redis, relaying to each other,
/// behind one round-robin front whose address is their public URL (so invite
/// links lead to the front); leases of 2 s, node records of 1.5 s.
pub async fn fronted_nodes(redis: &Redis) -> (Vec<TestServer>, Front) {
    fronted_nodes_with(redis, 2000, 1500, |_| {}).await
}

/// [`fronted_nodes`] with these times to live and each node's
/// configuration adjusted by `tweak` last.
pub async fn fronted_nodes_with(
    redis: &Redis,
    lease_ms: u64,
    node_ttl_ms: u64,
    tweak: impl Fn(&mut conclave::Config),
) -> (Vec<TestServer>, Front) {
    let url = Postgres::shared().fresh_database().await;
    let listener = Front::bind().await;
    let public = format!("http://{}", listener.local_addr().expect("front address"));
    let opts = NodeOptions {
        lease_ms,
        node_ttl_ms,
        ..NodeOptions::default()
    };
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = nodes(redis, &url, &ids, opts, |c| {
        c.public_url = Some(public.clone());
        tweak(c);
    })
    .await;
    node_records(redis, 3).await;
    let front = Front::serve(listener, nodes.iter().map(|n| n.addr).collect());
    (nodes, front)
}

/// `conclave serve` as its own process, one more node of a cluster, so that
/// it can be SIGKILLed or sent SIGTERM; killed when dropped.
pub struct ProcessNode {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ProcessNode {
    /// Node `node_id` of `redis`'s cluster on the PostgreSQL database at
    /// `database_url` (already seeded), set up as `opts` say; returned ready.
    pub async fn start(
        redis: &Redis,
        database_url: &str,
        node_id: &str,
        opts: NodeOptions,
    ) -> ProcessNode {
        let dir = tempfile::tempdir().expect("dir");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let cfg = node_config(redis, node_id, addr, opts);
        let mut toml = format!(
            "listen = \"{addr}\"\ndata_dir = \"{data}\"\ndatabase_url = \"{database_url}\"\nmedia_listen = \"127.0.0.1:0\"\n",
            data = dir.path().display(),
        );
        if opts.cascade_from > 0 {
            toml += &format!("cascade_meetings_from = {}\n", opts.cascade_from);
        }
        if let Some(cap) = opts.max_pending {
            toml +=
                &format!("\n[limits]\nmax_pending_per_address = {cap}\njoin_timeout_secs = 120\n");
        }
        toml += &format!(
            "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node_id}\"\ninternal_url = \"{}\"\nlease_ms = {}\nnode_ttl_ms = {}\n",
            cfg.redis_url, cfg.internal_url, cfg.lease_ms, cfg.node_ttl_ms
        );
        if let Some(secret) = &cfg.secret {
            toml += &format!("secret = \"{secret}\"\n");
        }
        if let Some(link) = cfg.media_link_addr {
            toml += &format!("media_link_addr = \"{link}\"\n");
        }
        let file = dir.path().join("conclave.toml");
        std::fs::write(&file, toml).expect("config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_conclave"))
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("conclave serve starts");
        let mut node = ProcessNode {
            child,
            addr,
            _dir: dir,
        };
        eventually(20, "the process node ready", async || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("conclave serve exited: {status}");
            }
            is_ready(addr).await
        })
        .await;
        node
    }

    /// SIGKILL: no lease given up, no record deleted, nothing saved on the
    /// way out. Returns when it was reaped.
    pub fn kill(&mut self) -> Instant {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        Instant::now()
    }

    /// Sends it `signal` (`TERM`: it drains); returns when it was sent.
    pub fn signal(&self, signal: &str) -> Instant {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
        Instant::now()
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls of each command Redis has served since it started (`INFO
/// commandstats`), by lower-case command name (`eval`, `get`, …).
pub fn command_calls(redis: &Redis) -> BTreeMap<String, u64> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, redis.port));
    let mut s = std::net::TcpStream::connect(addr).expect("redis");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(b"INFO commandstats\r\n").expect("write");
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // A bulk string: read until the stats are complete (ends with a blank line).
    while !text.ends_with("\r\n\r\n") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "INFO ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}
