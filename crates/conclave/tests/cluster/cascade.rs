//! Cascading a meeting's media over two nodes (issue 23): with
//! `cascade_meetings_from = 1`, the lease holder (node-a) keeps the first
//! member's media and places the second's on node-b, whose worker answers
//! its offer; the member's signaling stays with node-a's room. The control
//! channel node-a opens to node-b is fenced by the meeting's lease: a
//! channel opened without the secret, with a stale token, or in another
//! node's name is refused and counted.

use std::time::{Duration, Instant};

use conclave::cluster::cascade::{CASCADE_HEADER, cascade_path, sign};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::native_resume::member;
use crate::common::TestServer;
use crate::common::cluster::{NodeOptions, ProcessNode, SECRET, eventually, node_records, nodes};
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::native_cli::{Cli, invite};

/// A member's latest stats line.
fn latest(cli: &Cli) -> Option<Value> {
    let out = cli.stdout();
    let line = out.lines().rev().find(|l| l.starts_with('{'))?;
    serde_json::from_str(line).ok()
}

/// The security code and group size a stats line shows.
fn code(v: &Value) -> Option<(String, usize)> {
    Some((
        v["e2ee"]["security_code"].as_str()?.to_string(),
        v["e2ee"]["roster"].as_array()?.len(),
    ))
}

/// What a stats line counts as received of `kind`: `what` (`packets`, or
/// `frames` decrypted).
fn received(v: &Value, kind: &str, what: &str) -> u64 {
    v["received"].as_object().map_or(0, |tracks| {
        tracks
            .values()
            .filter(|t| t["kind"] == kind)
            .filter_map(|t| t[what].as_u64())
            .sum()
    })
}

/// A counter's value in a node's `/metrics` (0 when absent).
async fn counter(node: &TestServer, name_and_labels: &str) -> u64 {
    let text = reqwest::get(node.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Opens a control channel to `node` for `meeting` with `header`; the
/// HTTP status it was refused with (101 when accepted).
async fn open_control(node: &TestServer, meeting: &str, header: Option<String>) -> u16 {
    let url = format!("ws://{}{}", node.addr, cascade_path(meeting));
    let mut req = url.as_str().into_client_request().expect("request");
    if let Some(h) = header {
        req.headers_mut()
            .insert(CASCADE_HEADER, h.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("control channel: {e}"),
    }
}

/// Nodes cascading a meeting's media from its first member on.
const CASCADING: NodeOptions = NodeOptions {
    lease_ms: 2000,
    node_ttl_ms: 1500,
    relay: true,
    max_pending: None,
    cascade_from: 1,
};

/// Each node reads the node records for placement every 0.5 s, and the
/// nodes started one after another: gives the holder's view time to hold
/// every node.
async fn placement_sees_every_node() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Waits, up to 30 s, until both are in one group of two with one code.
async fn one_group(ada: &Cli, bob: &Cli) -> String {
    let start = Instant::now();
    loop {
        let (x, y) = (latest(ada), latest(bob));
        if let (Some(x), Some(y)) = (x.as_ref().and_then(code), y.as_ref().and_then(code))
            && x.1 == 2
            && x == y
        {
            return x.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not one group of two with one code\nAda: {:?}\nBob: {:?}\n{}",
            latest(ada),
            latest(bob),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a member's latest line counts of the other's media: video frames
/// decrypted, audio packets.
fn got(cli: &Cli) -> (u64, u64) {
    latest(cli).map_or((0, 0), |v| {
        (
            received(&v, "video", "frames"),
            received(&v, "audio", "packets"),
        )
    })
}

/// Waits, up to 30 s, until each has received more than 20 video frames
/// and 20 audio packets past what `from_a` and `from_b` counted; returns
/// the counts then.
async fn media_flows(
    ada: &Cli,
    bob: &Cli,
    from_a: (u64, u64),
    from_b: (u64, u64),
) -> ((u64, u64), (u64, u64)) {
    let start = Instant::now();
    loop {
        let (ga, gb) = (got(ada), got(bob));
        let more = |g: (u64, u64), from: (u64, u64)| g.0 > from.0 + 20 && g.1 > from.1 + 20;
        if more(ga, from_a) && more(gb, from_b) {
            return (ga, gb);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "media does not cross the nodes both ways: Ada {ga:?} (from {from_a:?}), Bob {gb:?} (from {from_b:?})\nAda: {:?}\nBob: {:?}\n{}",
            latest(ada),
            latest(bob),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meeting_cascades_a_members_media_to_another_node_under_its_lease() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("CASCADE_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = nodes(&redis, &url, &["node-a", "node-b"], CASCADING, |_| {}).await;
    node_records(&redis, 2).await;
    placement_sees_every_node().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Cascaded", "settings": {"waiting_room": false}}))
        .await;
    let link = invite(&meeting);
    let ada = member(&link, "Ada");
    // Ada in first (her media stays with the lease holder), then Bob.
    eventually(30, "Ada in the meeting", async || {
        latest(&ada).and_then(|v| code(&v)).is_some()
    })
    .await;
    let bob = member(&link, "Bob");
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(lease.starts_with("node-a "), "{lease}");

    // One member's media on each node: node-b's worker holds Bob's peer,
    // though node-b runs no room of the meeting.
    let start = Instant::now();
    while a.server().media_members().iter().sum::<usize>() != 1
        || b.server().media_members().iter().sum::<usize>() != 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not one member's media on each node: {:?} {:?}\n{}\n{}",
            a.server().media_members(),
            b.server().media_members(),
            redis.cmd("KEYS *"),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // node-b's record counts the member whose media it serves, so that
    // placement sees it loaded.
    eventually(10, "node-b's record counts Bob", async || {
        let record = redis.cmd("GET conclave:node:node-b");
        record.contains("\"participants\":1,")
    })
    .await;
    // Both in one group with one code.
    one_group(&ada, &bob).await;
    // Bob's media reaches node-b: its worker counts bytes in.
    eventually(20, "node-b receives Bob's media", async || {
        counter(b, "conclave_media_received_bytes_total").await > 10_000
    })
    .await;
    // Across the media link, both ways: Ada (served by node-a) decrypts
    // Bob's video and audio (published on node-b), and Bob Ada's.
    let (ga, gb) = media_flows(&ada, &bob, (0, 0), (0, 0)).await;
    eprintln!("across the nodes: Ada got {ga:?}, Bob got {gb:?} (video frames, audio packets)");

    // Forged control channels to node-b are refused and counted; the real
    // one goes on.
    let id = meeting.id.to_string();
    let path = cascade_path(&id);
    let token: u64 = lease
        .split(' ')
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .expect("lease token");
    let wrong_secret = sign(
        "not-the-cluster-secret-but-32-chars!",
        "node-a",
        "node-b",
        token,
        &path,
    );
    assert_eq!(open_control(b, &id, None).await, 403);
    assert_eq!(open_control(b, &id, Some(wrong_secret)).await, 403);
    assert_eq!(
        open_control(
            b,
            &id,
            Some(format!(
                "{} x",
                sign(SECRET, "node-a", "node-b", token, &path)
            ))
        )
        .await,
        403
    );
    // Signed with the secret, but not the lease: a stale token, another
    // node's name, a token not granted yet.
    for (node, t) in [
        ("node-a", token - 1),
        ("node-b", token),
        ("node-a", token + 1),
    ] {
        let status = open_control(b, &id, Some(sign(SECRET, node, "node-b", t, &path))).await;
        assert_eq!(status, 409, "{node} {t}");
    }
    assert_eq!(
        counter(
            b,
            "conclave_cascade_refused_total{reason=\"unauthenticated\"}"
        )
        .await,
        3
    );
    assert_eq!(
        counter(b, "conclave_cascade_refused_total{reason=\"stale\"}").await,
        3
    );
    assert_eq!(b.server().media_members().iter().sum::<usize>(), 1);

    // A channel signed for the lease held now is accepted (it takes the
    // place of node-a's); once the lease moves away (as when another node
    // took the meeting over), node-b, checking every half lease, closes it.
    let url = format!("ws://{}{}", b.addr, path);
    let mut req = url.as_str().into_client_request().expect("request");
    let header = sign(SECRET, "node-a", "node-b", token, &path);
    req.headers_mut()
        .insert(CASCADE_HEADER, header.parse().expect("header value"));
    let (mut held, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the lease holder's channel");
    assert_eq!(resp.status().as_u16(), 101);
    // That header, captured on the wire and sent again within its 30 s,
    // would take the channel's place: refused, as is one signed for
    // another node than node-b.
    assert_eq!(open_control(b, &id, Some(header.clone())).await, 403);
    let for_c = sign(SECRET, "node-a", "node-c", token, &path);
    assert_eq!(open_control(b, &id, Some(for_c)).await, 403);
    assert_eq!(
        counter(
            b,
            "conclave_cascade_refused_total{reason=\"unauthenticated\"}"
        )
        .await,
        5
    );
    // What does not parse is dropped and counted; the channel goes on.
    {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        for m in [
            Message::text("not json"),
            Message::text(r#"{"type":"offer","participant":1,"sdp":"","tracks":[],"x":1}"#),
            Message::text(
                r#"{"type":"shards","shards":[{"node":"n","link":"127.0.0.1:1","workers":[999]}]}"#,
            ),
            Message::binary(vec![0u8; 16]),
        ] {
            held.send(m).await.expect("send");
        }
    }
    eventually(10, "bad control messages counted", async || {
        counter(b, "conclave_cascade_refused_total{reason=\"bad_message\"}").await == 4
    })
    .await;
    redis.cmd(&format!(
        "SET conclave:lease:{id} \"node-z {}\" PX 60000",
        token + 1
    ));
    let moved = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(Ok(m)) = held.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "node-b kept a channel of a lease that moved"
    );
    eprintln!(
        "node-b closed the channel {:?} after the lease moved",
        moved.elapsed()
    );
    assert_eq!(
        counter(b, "conclave_cascade_refused_total{reason=\"stale\"}").await,
        4
    );

    // The new holder's header, captured and raced: a hundred upgrades with
    // it at once open one channel; the nonce is taken once under a lock, so
    // every other copy is refused and counted.
    let raced = sign(SECRET, "node-z", "node-b", token + 1, &path);
    let answers =
        futures_util::future::join_all((0..100).map(|_| open_control(b, &id, Some(raced.clone()))))
            .await;
    assert_eq!(
        answers.iter().filter(|s| **s == 101).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == 101 || *s == 403),
        "{answers:?}"
    );
    assert_eq!(
        counter(
            b,
            "conclave_cascade_refused_total{reason=\"unauthenticated\"}"
        )
        .await,
        5 + 99
    );
    drop((ada, bob));
}

/// The node serving Bob's media (a `conclave serve` process) is SIGKILLed:
/// the lease holder's channel to it ends, Bob's tracks end on node-a's
/// shard, and node-a closes Bob's socket so that he resumes; his new peer
/// connection's offer is placed again (on node-a, the node left): media
/// flows both ways again in the same group, with the same code (his seat
/// and the group stayed with the room).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_node_serving_a_member_dies_the_member_is_placed_again() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = nodes(&redis, &url, &["node-a"], CASCADING, |_| {}).await;
    let mut doomed = ProcessNode::start(&redis, &url, "node-b", CASCADING).await;
    node_records(&redis, 2).await;
    placement_sees_every_node().await;
    let a = &nodes[0];
    let alice = a.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Cascaded", "settings": {"waiting_room": false}}))
        .await;
    let link = invite(&meeting);
    let ada = member(&link, "Ada");
    eventually(30, "Ada in the meeting", async || {
        latest(&ada).and_then(|v| code(&v)).is_some()
    })
    .await;
    let bob = member(&link, "Bob");
    let code_before = one_group(&ada, &bob).await;
    media_flows(&ada, &bob, (0, 0), (0, 0)).await;
    assert_eq!(a.server().media_members().iter().sum::<usize>(), 1);

    let killed = doomed.kill();
    // Bob's new peer connection is on node-a now, and media flows again.
    let from = (got(&ada), got(&bob));
    eventually(40, "Bob's media placed again on node-a", async || {
        a.server().media_members().iter().sum::<usize>() == 2
    })
    .await;
    let placed = killed.elapsed();
    // Bob resumed (its counters start again from there) and gets Ada's
    // media anew; Ada gets more of Bob's.
    eventually(20, "Bob resumed", async || {
        latest(&bob).is_some_and(|v| v["reconnects"].as_u64() >= Some(1))
    })
    .await;
    let (ga, gb) = media_flows(&ada, &bob, from.0, (0, 0)).await;
    eprintln!(
        "Bob placed again {placed:?} after node-b's SIGKILL; media both ways {:?} after: Ada {ga:?}, Bob {gb:?}",
        killed.elapsed()
    );
    assert_eq!(one_group(&ada, &bob).await, code_before);
    assert_eq!(
        latest(&ada).and_then(|v| v["reconnects"].as_u64()),
        Some(0),
        "only Bob resumed"
    );
}

/// Video tracks of which a stats line counts more than 20 decrypted frames.
fn video_sources(v: &Value) -> usize {
    v["received"].as_object().map_or(0, |tracks| {
        tracks
            .values()
            .filter(|t| t["kind"] == "video" && t["frames"].as_u64() > Some(20))
            .count()
    })
}

/// Three nodes, one member's media on each: the two nodes that do not hold
/// the lease learn each other's shards from the holder (the shard mesh) and
/// hand each other their members' media directly; everyone decrypts both
/// others' video, in one group of three with one code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_each_serving_one_member_exchange_everyones_media() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = nodes(&redis, &url, &ids, CASCADING, |_| {}).await;
    node_records(&redis, 3).await;
    placement_sees_every_node().await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Three", "settings": {"waiting_room": false}}))
        .await;
    let link = invite(&meeting);
    let mut members = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let m = member(&link, name);
        let n = members.len() + 1;
        eventually(30, &format!("{name} placed"), async || {
            nodes
                .iter()
                .map(|s| s.server().media_members().iter().sum::<usize>())
                .sum::<usize>()
                == n
        })
        .await;
        members.push(m);
    }
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(
            node.server().media_members().iter().sum::<usize>(),
            1,
            "{}",
            ids[i]
        );
    }
    let start = Instant::now();
    loop {
        let lines: Vec<Option<Value>> = members.iter().map(latest).collect();
        let codes: Vec<Option<(String, usize)>> =
            lines.iter().map(|l| l.as_ref().and_then(code)).collect();
        let sources: Vec<usize> = lines
            .iter()
            .map(|l| l.as_ref().map_or(0, video_sources))
            .collect();
        let one_code =
            codes[0].as_ref().is_some_and(|c| c.1 == 3) && codes.iter().all(|c| *c == codes[0]);
        if one_code && sources.iter().all(|s| *s == 2) {
            eprintln!("three nodes: each member decrypts both others' video: {sources:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "not everyone's video everywhere: codes {codes:?}, video sources {sources:?}\n{lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
