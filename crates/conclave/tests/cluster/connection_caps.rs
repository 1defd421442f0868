//! `limits.max_pending_per_address` held for the whole cluster: meeting
//! sockets from one address that have not joined yet, opened on every node
//! of three (real redis-server and PostgreSQL), are refused past the cap
//! on any node, free places again as they close, and those held by a node
//! SIGKILLed leave the count within its lease; hundreds opened at once
//! never get past it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::common::cluster::{NodeOptions, ProcessNode, eventually, nodes};
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::common::{Ws, WsOpts, open_ws};

/// The cap in these tests.
const CAP: usize = 6;
/// Meeting leases, and so the connections' leases in Redis.
const LEASE_MS: u64 = 2000;

/// Nodes serving the sockets they get (no relaying: as sockets to
/// meetings running on different nodes are), leases of [`LEASE_MS`] (and so
/// the connections' leases in Redis), the cap `cap`.
fn options(cap: usize) -> NodeOptions {
    NodeOptions {
        lease_ms: LEASE_MS,
        relay: false,
        max_pending: Some(cap),
        ..NodeOptions::default()
    }
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
    let nodes = nodes(&redis, &url, &["node-a", "node-b"], options(CAP), |_| {}).await;
    let mut doomed = ProcessNode::start(&redis, &url, "node-0", options(CAP)).await;
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
    let killed = doomed.kill();
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
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = nodes(&redis, &url, &ids, options(BIG_CAP), |_| {}).await;
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
