//! Nodes of a cluster for the tests and the cluster benchmark
//! (`bench/cluster.rs`, which includes this harness): their `[cluster]`
//! settings, three of them on one PostgreSQL and one Redis behind the
//! round-robin [`Front`], and Redis's per-command call counts.

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
    let mut nodes = Vec::new();
    for (i, id) in ["node-a", "node-b", "node-c"].into_iter().enumerate() {
        let port = free_port();
        let mut cfg = config(redis, id, lease_ms, node_ttl_ms);
        cfg.internal_url = format!("http://127.0.0.1:{port}");
        cfg.secret = Some(SECRET.into());
        let (db, public) = (url.clone(), public.clone());
        let tweak = |c: &mut conclave::Config| {
            c.listen = SocketAddr::from(([127, 0, 0, 1], port));
            c.cluster = Some(cfg);
            c.database_url = Some(db);
            c.public_url = Some(public);
            tweak(c);
        };
        nodes.push(if i == 0 {
            TestServer::start_on_postgres(&url, tweak).await
        } else {
            TestServer::start_with(tweak).await
        });
    }
    for n in &nodes {
        let is_ready = async || ready(n).await == StatusCode::OK;
        eventually(10, "node ready", is_ready).await;
    }
    eventually(10, "three node records", async || {
        redis.cmd("SCARD conclave:nodes").trim() == ":3"
    })
    .await;
    let front = Front::serve(listener, nodes.iter().map(|n| n.addr).collect());
    (nodes, front)
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
