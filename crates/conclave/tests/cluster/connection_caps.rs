//! `limits.max_pending_per_address` held for the whole cluster: meeting
//! sockets from one address that have not joined yet, opened on every node
//! of three (real redis-server and PostgreSQL), are refused past the cap
//! on any node, free places again as they close, and those held by a node
//! SIGKILLed leave the count within its lease; hundreds opened at once
//! never get past it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::common::front::free_port;
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::common::{TestServer, Ws, WsOpts, open_ws};
use conclave::config::ClusterConfig;

/// The cap in these tests.
const CAP: usize = 6;
/// Meeting leases, and so the connections' leases in Redis.
const LEASE_MS: u64 = 2000;

fn cluster_config(redis: &Redis, node: &str, port: u16) -> ClusterConfig {
    ClusterConfig {
        redis_url: redis.url(),
        redis_ca_file: None,
        node_id: node.to_string(),
        internal_url: format!("http://127.0.0.1:{port}"),
        lease_ms: LEASE_MS,
        node_ttl_ms: 1500,
        // No relaying: every socket is served by the node it reaches, as
        // sockets to meetings running on different nodes are.
        secret: None,
        drain_ms: 10_000,
    }
}

async fn eventually(secs: u64, why: &str, mut what: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn is_ready(addr: SocketAddr) -> bool {
    reqwest::get(format!("http://{addr}/readyz"))
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

/// `conclave serve` as its own process, so that it can be SIGKILLed.
struct ProcessNode {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn process_node(redis: &Redis, database_url: &str, node_id: &str, cap: usize) -> ProcessNode {
    let dir = tempfile::tempdir().expect("dir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let toml = format!(
        "listen = \"{addr}\"\ndata_dir = \"{data}\"\ndatabase_url = \"{database_url}\"\nmedia_listen = \"127.0.0.1:0\"\n\n[limits]\nmax_pending_per_address = {cap}\njoin_timeout_secs = 120\n\n[cluster]\nredis_url = \"{redis}\"\nnode_id = \"{node_id}\"\ninternal_url = \"http://{addr}\"\nlease_ms = {LEASE_MS}\nnode_ttl_ms = 1500\n",
        data = dir.path().display(),
        redis = redis.url(),
    );
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

/// Nodes in this process on the PostgreSQL database at `url` (the first
/// seeds it), each with the cap and a join timeout longer than the test.
async fn in_process(redis: &Redis, url: &str, ids: &[&str], cap: usize) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let port = free_port();
        let cfg = cluster_config(redis, id, port);
        let db = url.to_string();
        let tweak = move |c: &mut conclave::Config| {
            c.listen = SocketAddr::from(([127, 0, 0, 1], port));
            c.cluster = Some(cfg);
            c.database_url = Some(db);
            c.limits.max_pending_per_address = cap;
            c.limits.join_timeout_secs = 120;
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

/// Opens a meeting socket on `addr` and sends nothing (it stays not
/// joined); the refusal's status and body otherwise.
async fn open(addr: SocketAddr, meeting: &str) -> Result<Ws, (u16, String)> {
    match open_ws(addr, meeting, WsOpts::default()).await {
        Ok(ws) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("socket failed otherwise: {e}"),
    }
}

fn refused_as_too_many(r: Result<Ws, (u16, String)>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: accepted past the cap"),
        Err((status, body)) => assert_eq!(
            (status, body.trim()),
            (429, "too many connections"),
            "{what}"
        ),
    }
}

fn counted(redis: &Redis) -> String {
    redis
        .cmd("ZCARD conclave:conns:127.0.0.1")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_sockets_from_one_address_are_capped_over_three_nodes_and_a_dead_nodes_run_out() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = in_process(&redis, &url, &["node-a", "node-b"], CAP).await;
    let mut doomed = process_node(&redis, &url, "node-0", CAP).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Capped"})).await;
    let addrs = [nodes[0].addr, nodes[1].addr, doomed.addr];

    // Two on each node: the cluster's cap, though each node holds a third.
    let mut open_now: Vec<(usize, Ws)> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        for _ in 0..CAP / 3 {
            let ws = open(*addr, &meeting.id)
                .await
                .unwrap_or_else(|e| panic!("below the cap, refused: {e:?}"));
            open_now.push((i, ws));
        }
    }
    assert_eq!(counted(&redis), format!(":{CAP}"));
    // The next one is refused on every node, each far below the cap itself.
    for addr in addrs {
        refused_as_too_many(open(addr, &meeting.id).await, "one past the cap");
    }
    // One closed on node-a: a place again, taken on node-b.
    let i = open_now
        .iter()
        .position(|(n, _)| *n == 0)
        .expect("one on node-a");
    drop(open_now.remove(i));
    let mut taken = None;
    eventually(
        5,
        "the closed socket's place given back",
        async || match open(nodes[1].addr, &meeting.id).await {
            Ok(ws) => {
                taken = Some(ws);
                true
            }
            Err(_) => false,
        },
    )
    .await;
    open_now.push((1, taken.expect("taken")));
    refused_as_too_many(open(nodes[0].addr, &meeting.id).await, "full again");

    // SIGKILL node-0, which holds two: nobody tells Redis they closed.
    doomed.child.kill().expect("SIGKILL");
    doomed.child.wait().expect("reaped");
    let killed = Instant::now();
    open_now.retain(|(n, _)| *n != 2);
    let mut back = Vec::new();
    eventually(
        LEASE_MS / 1000 + 3,
        "the dead node's sockets run out",
        async || {
            if let Ok(ws) = open(nodes[(back.len()) % 2].addr, &meeting.id).await {
                back.push(ws);
            }
            back.len() == 2
        },
    )
    .await;
    eprintln!(
        "the dead node's two places free {:?} after SIGKILL (lease {LEASE_MS} ms)",
        killed.elapsed()
    );
    // And no more than those two.
    refused_as_too_many(
        open(nodes[1].addr, &meeting.id).await,
        "after the dead node's",
    );
    assert_eq!(counted(&redis), format!(":{CAP}"));
    // Held for longer than a lease, the living nodes' sockets stay counted.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    assert_eq!(counted(&redis), format!(":{CAP}"), "renewed while held");
    refused_as_too_many(open(nodes[0].addr, &meeting.id).await, "after two leases");
    drop(open_now);
    drop(back);
    eventually(5, "every closed socket given back", async || {
        counted(&redis) == ":0"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_sockets_opened_at_once_on_three_nodes_never_pass_the_cap() {
    const BIG_CAP: usize = 20;
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = in_process(&redis, &url, &["node-a", "node-b", "node-c"], BIG_CAP).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Rush"})).await;
    for round in 0..2 {
        let attempts = (0..300).map(|i| open(nodes[i % 3].addr, &meeting.id));
        let results = join_all(attempts).await;
        let mut accepted = Vec::new();
        for r in results {
            match r {
                Ok(ws) => accepted.push(ws),
                Err((status, body)) => {
                    assert_eq!((status, body.trim()), (429, "too many connections"));
                }
            }
        }
        assert_eq!(
            accepted.len(),
            BIG_CAP,
            "round {round}: 300 at once over three nodes"
        );
        assert_eq!(counted(&redis), format!(":{BIG_CAP}"));
        drop(accepted);
        eventually(5, "all given back", async || counted(&redis) == ":0").await;
    }
}
