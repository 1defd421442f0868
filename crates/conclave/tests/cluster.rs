//! Cluster mode against a real `redis-server` the test starts: meeting
//! leases under concurrency (one holder, fencing tokens that only grow, a
//! node that lost its lease is told), the node registry's time-to-live,
//! passcode guessing spread over three servers sharing one Redis (and one
//! PostgreSQL) limited as if it met one, and what a node does while Redis
//! is down and after it is back.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::cluster::Cluster;
use conclave::cluster::lease::Acquired;
use conclave::cluster::registry::NodeRecord;
use conclave::config::ClusterConfig;
use conclave_core::Standing;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::cluster::{
    NodeOptions, ProcessNode, SECRET, command_calls, config, eventually, fronted_nodes,
    node_records, nodes, one_node, ready,
};
use crate::common::front::Front;
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::common::{
    Api, Frame, Meeting, QUIET, TestServer, Together, Ws, WsOpts, frames_from_others, join,
    native_options, open_ws,
};

/// A node's link to Redis, connected.
async fn node(
    redis: &Redis,
    id: &str,
    lease_ms: u64,
    node_ttl_ms: u64,
    stop: &CancellationToken,
) -> Arc<Cluster> {
    let cfg = config(redis, id, lease_ms, node_ttl_ms);
    let c = Cluster::connect(&cfg, metrics::Counter::noop(), stop.clone()).expect("client");
    let probe = Arc::clone(&c);
    eventually(10, "Redis available", async || probe.is_available()).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_has_one_holder_under_hundreds_of_concurrent_attempts_and_tokens_only_grow() {
    let redis = Redis::start();
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    // Leases far longer than a round takes on a loaded machine: each round
    // ends by deleting the lease, as if it had run out.
    let a = node(&redis, "node-a", 10_000, 2000, &stop).await;
    let b = node(&redis, "node-b", 10_000, 2000, &stop).await;
    let mut last_token = 0;
    for round in 0..5 {
        // 200 attempts from each node, all at once.
        let attempts = (0..400).map(|i| {
            let n = if i % 2 == 0 { &a } else { &b };
            let n = Arc::clone(n);
            tokio::spawn(async move {
                let r = n.acquire("meeting-1").await.expect("Redis answers");
                (n.node_id().to_string(), r)
            })
        });
        let results: Vec<_> = join_all(attempts)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect();
        let granted: Vec<_> = results
            .iter()
            .filter_map(|(node, r)| match r {
                Acquired::Granted(k) => Some((node.clone(), k.token())),
                Acquired::HeldBy(_) => None,
            })
            .collect();
        assert_eq!(granted.len(), 1, "round {round}: {granted:?}");
        let (holder, token) = granted[0].clone();
        assert!(
            token > last_token,
            "round {round}: token {token} after {last_token}"
        );
        last_token = token;
        // Every refused attempt was told who holds it.
        let expected = format!("{holder} {token}");
        for (_, r) in &results {
            if let Acquired::HeldBy(h) = r {
                assert_eq!(h, &expected);
            }
        }
        assert_eq!(redis.cmd("GET conclave:lease:meeting-1"), expected);
        assert_eq!(redis.cmd("DEL conclave:lease:meeting-1"), ":1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_was_taken_is_told_and_a_renewing_node_keeps_it() {
    let redis = Redis::start();
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    // Renewed every 500 ms: late renewals on a loaded machine do not lose it.
    let a = node(&redis, "node-a", 1500, 2000, &stop).await;
    let b = node(&redis, "node-b", 1500, 2000, &stop).await;

    // A renews: B never gets the meeting, over two lease lengths.
    let Acquired::Granted(k) = a.acquire("m-kept").await.expect("redis") else {
        panic!("a fresh lease is granted");
    };
    let first = k.token();
    let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(Arc::clone(&a).keep_lease(
        "m-kept".into(),
        k,
        async move {
            let _ = done_rx.await;
        },
        move || {
            let _ = lost_tx.send(());
        },
    ));
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            matches!(b.acquire("m-kept").await, Ok(Acquired::HeldBy(_))),
            "B took a lease A keeps renewing"
        );
    }
    // The lease is taken from under A (as after a pause longer than its
    // time-to-live): A's renewal task says so.
    assert_eq!(redis.cmd("DEL conclave:lease:m-kept"), ":1");
    let Acquired::Granted(taken) = b.acquire("m-kept").await.expect("redis") else {
        panic!("B gets the free lease");
    };
    assert!(taken.token() > first);
    tokio::time::timeout(Duration::from_secs(5), &mut lost_rx)
        .await
        .expect("A is told within its renewal interval")
        .expect("told, not dropped");
    drop(done_tx);
    keeper.await.expect("keeper ends");
    assert_eq!(
        redis.cmd("GET conclave:lease:m-kept"),
        format!("node-b {}", taken.token()),
        "A's giving up touched B's lease"
    );

    // Leases of 1 s, left to run out.
    let a = node(&redis, "node-a", 1000, 2000, &stop).await;
    let b = node(&redis, "node-b", 1000, 2000, &stop).await;
    // A lease that ran out and was taken: the old holder's renewal says lost.
    let Acquired::Granted(mut old) = a.acquire("m-taken").await.expect("redis") else {
        panic!("granted");
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let Acquired::Granted(new) = b.acquire("m-taken").await.expect("redis") else {
        panic!("the lapsed lease is granted to B");
    };
    assert!(new.token() > old.token());
    assert_eq!(a.renew("m-taken", &mut old).await, Standing::Lost);
    // A lease that ran out and nobody took: the holder takes it back.
    let Acquired::Granted(mut lapsed) = a.acquire("m-lapsed").await.expect("redis") else {
        panic!("granted");
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(a.renew("m-lapsed", &mut lapsed).await, Standing::Owner);
    assert!(matches!(
        b.acquire("m-lapsed").await,
        Ok(Acquired::HeldBy(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_new_meetings_is_spread_over_the_nodes_before_their_records_show_it() {
    let redis = Redis::start();
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    let reader = node(&redis, "reader", 10_000, 60_000, &stop).await;
    // Three serving nodes whose records (not refreshed during the burst)
    // say they are equally empty, and one fuller.
    for (id, participants) in [("n1", 0), ("n2", 0), ("n3", 0), ("n4", 5)] {
        let record = NodeRecord {
            node_id: id.into(),
            internal_url: format!("http://{id}.internal:8080"),
            media_address: "192.0.2.7:10000".parse().expect("addr"),
            media_workers: 1,
            state: "serving".into(),
            participants,
            packets_per_sec: 0,
            meetings: 0,
        };
        reader.publish(&record).await.expect("published");
    }
    // 60 new meetings placed at once: each placement counts at once.
    let placed = join_all((0..60).map(|i| {
        let reader = Arc::clone(&reader);
        async move {
            let node = reader.place(&format!("m{i}")).await.expect("placed");
            node.expect("a node").node_id
        }
    }))
    .await;
    let count = |id: &str| placed.iter().filter(|n| *n == id).count();
    let counts: Vec<usize> = ["n1", "n2", "n3", "n4"].map(count).to_vec();
    // 60 + 5 spread evenly: 17, 16, 16 and the fuller one's 11 (16 + 5 < 17).
    assert_eq!(counts.iter().sum::<usize>(), 60);
    let (max, min) = (counts.iter().max(), counts[..3].iter().min());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
    assert!(counts[3] >= 10 && counts[3] <= 12, "{counts:?}");
    // A meeting asked for again before its lease is taken stays put.
    let again = reader.place("m7").await.expect("placed").expect("a node");
    assert_eq!(again.node_id, placed[7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_record_runs_out_unless_refreshed_and_a_server_registers_itself() {
    let redis = Redis::start();
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    let reader = node(&redis, "reader", 1000, 1500, &stop).await;
    let record = NodeRecord {
        node_id: "ghost".into(),
        internal_url: "http://ghost.internal:8080".into(),
        media_address: "192.0.2.7:10000".parse().expect("addr"),
        media_workers: 4,
        state: "serving".into(),
        participants: 3,
        packets_per_sec: 900,
        meetings: 1,
    };
    // `reader` publishes with its own TTL (1.5 s) a record for "ghost".
    reader.publish(&record).await.expect("published");
    let nodes = reader.nodes().await.expect("nodes");
    assert_eq!(nodes, vec![record.clone()]);
    assert_eq!(nodes[0].load().participants, 3);
    // Placement reads the live records: the less loaded serving node.
    let busy = NodeRecord {
        node_id: "busy".into(),
        participants: 40,
        ..record.clone()
    };
    let draining = NodeRecord {
        node_id: "draining".into(),
        participants: 0,
        state: "draining".into(),
        ..record.clone()
    };
    reader.publish(&busy).await.expect("published");
    reader.publish(&draining).await.expect("published");
    let placed = reader.place("m1").await.expect("placed").expect("a node");
    assert_eq!(placed.node_id, "ghost");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(reader.nodes().await.expect("nodes").is_empty());
    assert!(reader.place("m2").await.expect("placed").is_none());
    // Their IDs left the set too.
    assert_eq!(redis.cmd("SCARD conclave:nodes"), ":0");

    // A server in cluster mode keeps its own record alive, past many TTLs.
    let cfg = config(&redis, "node-a", 1000, 1500);
    let server = TestServer::start_with(|c| c.cluster = Some(cfg)).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let nodes = reader.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].node_id, "node-a");
    assert_eq!(nodes[0].state, "serving");
    assert_eq!(nodes[0].internal_url, "http://node-a.internal:8080");
    drop(server);
}

/// Three servers on one PostgreSQL database and one Redis, each serving
/// the sockets it gets (no relaying).
async fn three_nodes(redis: &Redis) -> (Vec<TestServer>, Meeting) {
    let url = Postgres::shared().fresh_database().await;
    let opts = NodeOptions {
        relay: false,
        ..NodeOptions::default()
    };
    let ids = ["node-a", "node-b", "node-c"];
    let nodes = nodes(redis, &url, &ids, opts, |c| {
        c.limits.max_pending_per_address = 1000;
    })
    .await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Board"})).await;
    (nodes, meeting)
}

/// The first answer on a socket.
async fn answer(ws: &mut Ws) -> Value {
    match ws.next(Duration::from_secs(60)).await {
        Some(Frame::Msg(v)) => v,
        other => panic!("no answer: {other:?}"),
    }
}

/// Sends `guesses` (meeting, source address, passcode) round-robin over the
/// nodes, all at once; returns (checked and refused, rate limited, argon2
/// checks run over all nodes).
async fn guess(
    nodes: &[TestServer],
    guesses: Vec<(String, Ipv4Addr, String)>,
) -> (usize, usize, u64) {
    // One browser cookie per node, as a scripted attacker would keep: fresh
    // guest identities would meet the per-network limit on new guests.
    let mut cookies = Vec::new();
    for n in nodes {
        let ws = n.ws("not-a-meeting", WsOpts::default()).await;
        cookies.push(ws.guest_cookie().expect("guest cookie"));
    }
    let mut sockets = Vec::new();
    for (i, (meeting, from, passcode)) in guesses.into_iter().enumerate() {
        let k = i % nodes.len();
        let mut opts = WsOpts::from(from);
        opts.cookie = Some(cookies[k].clone());
        sockets.push((nodes[k].ws(&meeting, opts).await, join("Eve", &passcode)));
    }
    let before: u64 = nodes.iter().map(|n| n.argon2_checks()).sum();
    let answers = join_all(sockets.into_iter().map(|(mut ws, msg)| async move {
        ws.send(msg).await;
        answer(&mut ws).await
    }))
    .await;
    let checks = nodes.iter().map(|n| n.argon2_checks()).sum::<u64>() - before;
    let (mut refused, mut limited) = (0, 0);
    for a in answers {
        assert_eq!(a["type"], "error", "{a}");
        match a["code"].as_str() {
            Some("join_refused") => refused += 1,
            Some("too_many_attempts") => limited += 1,
            _ => panic!("unexpected answer {a}"),
        }
    }
    (refused, limited, checks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_from_one_address_spread_over_three_nodes_get_five_checks_in_all() {
    let redis = Redis::start();
    let (nodes, meeting) = three_nodes(&redis).await;
    let (mut refused, mut checks) = (0, 0);
    // Waves of 60 guesses, 20 on each node, until five were checked. Alone,
    // each node would allow five: fifteen in all.
    for wave in 0..10 {
        if refused >= 5 {
            break;
        }
        let guesses = (0..60)
            .map(|i| {
                let g = format!("guess{wave}{i:03}");
                (meeting.id.clone(), Ipv4Addr::LOCALHOST, g)
            })
            .collect();
        let (r, l, c) = guess(&nodes, guesses).await;
        assert_eq!(r + l, 60);
        refused += r;
        checks += c;
    }
    assert_eq!(refused, 5, "checked guesses over all nodes");
    assert!(checks <= 5, "{checks} argon2 checks over all nodes");
    // Now blocked everywhere, the right passcode included.
    for n in &nodes {
        let mut ws = n.ws(&meeting.id, WsOpts::default()).await;
        ws.send(join("Eve", &meeting.passcode)).await;
        ws.expect_error("too_many_attempts").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_from_many_addresses_spread_over_three_nodes_get_thirty_checks_in_all() {
    let redis = Redis::start();
    let (nodes, meeting) = three_nodes(&redis).await;
    // 150 addresses, one guess each, 50 per node: no address and no single
    // node reaches a limit of its own (30 per meeting per node would allow
    // 90); only the meeting's limit, counted in Redis, stands in the way.
    let guesses = (0..150)
        .map(|i| {
            let from = Ipv4Addr::new(127, 0, 2 + (i / 100) as u8, 1 + (i % 100) as u8);
            (meeting.id.clone(), from, format!("guess{i:05}"))
        })
        .collect();
    let (refused, limited, checks) = guess(&nodes, guesses).await;
    assert_eq!(refused + limited, 150);
    assert!(refused <= 30, "{refused} guesses checked over all nodes");
    assert!(checks <= 30, "{checks} argon2 checks over all nodes");
    assert!(
        refused >= 25,
        "the limit, not something else, refused: {refused}"
    );
}

/// A guest's first answer to a join through `node` from its own address.
async fn first_answer_to_a_join(node: &TestServer, meeting: &Meeting, i: u8) -> Value {
    let mut ws = node
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 5, i)))
        .await;
    ws.send(join(&format!("Guest {i}"), &meeting.passcode))
        .await;
    answer(&mut ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_stall_within_the_read_budget_delays_a_relayed_join_and_a_longer_one_is_refused() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = relaying_pair(&redis, &url).await;
    node_records(&redis, 2).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (_host, _) = nodes[0].host_joins(&alice, &meeting.id).await;
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(lease.starts_with("node-a "), "{lease}");
    // Guests reach node-b, which asks Redis where the meeting runs and
    // relays them to node-a. The first one (the passcode's one check).
    let first = first_answer_to_a_join(&nodes[1], &meeting, 1).await;
    assert_eq!(first["type"], "joined", "{first}");

    // Redis stalls 1.8 s (every client paused): node-b's lookup misses its
    // 1 s deadline and is tried once more, which Redis answers once it is
    // back; node-a, which by then thinks Redis unavailable (its pings
    // missed too), checks again rather than refusing. The join goes
    // through, late.
    assert_eq!(redis.cmd("CLIENT PAUSE 1800 ALL"), "+OK");
    let paused = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = first_answer_to_a_join(&nodes[1], &meeting, 2).await;
    assert_eq!(late["type"], "joined", "{late}");
    eprintln!("joined {:?} into a 1.8 s stall", paused.elapsed());
    assert!(
        paused.elapsed() >= Duration::from_millis(1800),
        "answered while paused"
    );

    // A stall longer than the budget (8 s): the join is told, clearly.
    eventually(10, "node-a ready again", async || {
        ready(&nodes[0]).await == StatusCode::OK
    })
    .await;
    assert_eq!(redis.cmd("CLIENT PAUSE 8000 ALL"), "+OK");
    let paused = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = first_answer_to_a_join(&nodes[1], &meeting, 3).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    // Told while Redis is still stalled: the lookup's two tries, the
    // socket's count in Redis, the availability check, about 1 s each.
    assert!(
        paused.elapsed() < Duration::from_secs(8),
        "not told before the stall ended: {:?}",
        paused.elapsed()
    );
    eprintln!("refused {:?} into an 8 s stall", paused.elapsed());

    // And it all recovers on its own.
    for n in &nodes {
        eventually(15, "ready after the stall", async || {
            ready(n).await == StatusCode::OK
        })
        .await;
    }
    let after = first_answer_to_a_join(&nodes[1], &meeting, 4).await;
    assert_eq!(after["type"], "joined", "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_new_joins_and_sign_ins_are_told_unavailable_and_all_recovers() {
    let redis = Redis::start();
    let server = one_node(&redis, 1500, 1500).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Stand-up", "settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(lease.starts_with("node-a "), "{lease}");

    redis.stop();
    eventually(5, "not ready without Redis", async || {
        ready(&server).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // A sign-in: 503 with the JSON error the web client shows.
    let (status, body) = server.api().sign_in("bob", crate::common::PASSWORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    // A new join, even to the meeting running here: told, not hung.
    let mut guest = server.ws(&meeting.id, WsOpts::default()).await;
    guest.send(join("Guest", &meeting.passcode)).await;
    let refusal = guest.expect_error("unavailable").await;
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("conclave_redis_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(errors.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("temporarily"))
    );
    // The running meeting goes on past its lease's time-to-live: its host
    // is neither ended nor disconnected.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    while let Some(f) = host.next(Duration::from_millis(300)).await {
        match f {
            Frame::Msg(v) => assert_ne!(v["type"], "ended", "{v}"),
            Frame::Closed => panic!("the host was disconnected while Redis was down"),
        }
    }

    // Redis is back, empty (no persistence): the node recovers by itself,
    // its meeting keeps its lease, new joins work again.
    redis.start_again();
    eventually(10, "ready again", async || {
        ready(&server).await == StatusCode::OK
    })
    .await;
    let lease_back = async || {
        redis
            .cmd(&format!("GET conclave:lease:{}", meeting.id))
            .starts_with("node-a ")
    };
    eventually(5, "the running meeting's lease taken back", lease_back).await;
    let bob = server.signed_in("bob").await;
    let (status, _) = bob.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    let mut late = server.ws(&meeting.id, WsOpts::default()).await;
    late.send(join("Late guest", &meeting.passcode)).await;
    let joined = late.recv_until("joined").await;
    assert_eq!(joined["type"], "joined");
    let nodes_back = async || redis.cmd("SCARD conclave:nodes") == ":1";
    eventually(5, "the node record published again", nodes_back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn media_keeps_flowing_in_a_running_meeting_while_redis_is_down() {
    use conclave_client::session::{Progress, run};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, PoisonError};

    let redis = Redis::start();
    let server = one_node(&redis, 1000, 1000).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // Each native session (E2EE: a frame counts once it decrypted) stays
    // until it has received two seconds of the other's video and audio
    // counted from the moment Redis was known to be down, well past the
    // lease's time-to-live (1 s).
    let outage = Arc::new(AtomicBool::new(false));
    let after_outage = |outage: Arc<AtomicBool>, met: Arc<AtomicBool>| {
        let at_outage: Mutex<Option<(u64, u64)>> = Mutex::new(None);
        move |p: &Progress<'_>| {
            use crate::common::frames_from_others;
            use conclave_proto::MediaKind;
            let now = (
                frames_from_others(p, MediaKind::Video),
                frames_from_others(p, MediaKind::Audio),
            );
            if !outage.load(Ordering::Acquire) {
                return false;
            }
            let mut at = at_outage.lock().unwrap_or_else(PoisonError::into_inner);
            let (v0, a0) = *at.get_or_insert(now);
            let enough = now.0 >= v0 + 60 && now.1 >= a0 + 100;
            if enough {
                met.store(true, Ordering::Release);
            }
            enough
        }
    };
    let both = crate::common::Together::new(2);
    let mut a = crate::common::native_options(&meeting, "Ada");
    let met = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    a.until = both.member(0, after_outage(Arc::clone(&outage), Arc::clone(&met[0])));
    let mut b = crate::common::native_options(&meeting, "Bob");
    b.until = both.member(1, after_outage(Arc::clone(&outage), Arc::clone(&met[1])));
    let a = tokio::spawn(run(a));
    let b = tokio::spawn(run(b));
    let lease = format!("GET conclave:lease:{}", meeting.id);
    eventually(15, "the meeting runs under its lease", async || {
        redis.cmd(&lease).starts_with("node-a ")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.stop();
    eventually(5, "not ready without Redis", async || {
        ready(&server).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    outage.store(true, Ordering::Release);
    let a = a.await.expect("task").expect("Ada's session");
    let b = b.await.expect("task").expect("Bob's session");
    for (r, met) in [(&a, &met[0]), (&b, &met[1])] {
        assert_eq!(r.ended_early, None, "a session ended before its time");
        assert!(
            met.load(Ordering::Acquire),
            "no two seconds of media during the outage: {:?}",
            r.media
        );
    }
    redis.start_again();
    eventually(10, "ready again", async || {
        ready(&server).await == StatusCode::OK
    })
    .await;
}

#[test]
fn cluster_settings_are_checked() {
    let redis_url = "redis://127.0.0.1:6379".to_string();
    let good = ClusterConfig {
        redis_url: redis_url.clone(),
        redis_ca_file: None,
        node_id: "node-a.eu_1".into(),
        internal_url: "http://10.0.0.5:8080".into(),
        lease_ms: 10_000,
        node_ttl_ms: 6_000,
        secret: Some("s".repeat(32)),
        drain_ms: 10_000,
        media_link_addr: None,
    };
    let with = |c: ClusterConfig| conclave::Config {
        cluster: Some(c),
        ..conclave::Config::default()
    };
    assert!(with(good.clone()).validate().is_ok());
    let tls = ClusterConfig {
        redis_url: "rediss://redis.internal:6380".into(),
        redis_ca_file: Some("/etc/conclave/redis-ca.pem".into()),
        ..good.clone()
    };
    assert!(with(tls).validate().is_ok());
    for bad in [
        ClusterConfig {
            node_id: String::new(),
            ..good.clone()
        },
        ClusterConfig {
            node_id: "node a".into(),
            ..good.clone()
        },
        ClusterConfig {
            node_id: "n".repeat(65),
            ..good.clone()
        },
        ClusterConfig {
            redis_url: "http://127.0.0.1:6379".into(),
            ..good.clone()
        },
        ClusterConfig {
            redis_ca_file: Some("/etc/conclave/redis-ca.pem".into()),
            ..good.clone()
        },
        ClusterConfig {
            internal_url: "10.0.0.5:8080".into(),
            ..good.clone()
        },
        ClusterConfig {
            lease_ms: 100,
            ..good.clone()
        },
        ClusterConfig {
            secret: Some("too short".into()),
            ..good.clone()
        },
    ] {
        assert!(with(bad.clone()).validate().is_err(), "{bad:?} accepted");
    }
    // The default is one node, no Redis.
    assert!(conclave::Config::default().cluster.is_none());
    let parsed: conclave::Config = toml::from_str(
        "[cluster]\nredis_url = \"redis://r:6379\"\nnode_id = \"a\"\ninternal_url = \"http://a:8080\"\n",
    )
    .expect("parses");
    let c = parsed.cluster.expect("cluster");
    assert_eq!((c.lease_ms, c.node_ttl_ms), (10_000, 6_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meeting_start_in_a_cluster_shares_one_check_and_meets_no_limit() {
    let redis = Redis::start();
    let server = one_node(&redis, 2000, 2000).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (_host, _) = server.host_joins(&alice, &meeting.id).await;
    // Forty people from forty addresses arrive at once with the right
    // passcode: more than the meeting's 30 attempts, but they share one
    // argon2 check and one reservation, in Redis as on the node.
    let mut sockets = Vec::new();
    for i in 0..40u8 {
        let ws = server
            .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 3, 1 + i)))
            .await;
        sockets.push(ws);
    }
    let before = server.argon2_checks();
    let answers = join_all(sockets.into_iter().enumerate().map(|(i, mut ws)| {
        let passcode = meeting.passcode.clone();
        async move {
            ws.send(join(&format!("Guest {i}"), &passcode)).await;
            let a = answer(&mut ws).await;
            (ws, a)
        }
    }))
    .await;
    for (_, a) in &answers {
        assert_eq!(a["type"], "joined", "{a}");
    }
    assert!(server.argon2_checks() - before <= 1);
    // Nothing is left counted against the meeting.
    let key = format!("ZCARD conclave:limit:join_meeting:{}:a", meeting.id);
    assert_eq!(redis.cmd(&key), ":0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_lost_a_meetings_lease_stops_serving_it() {
    let redis = Redis::start();
    let server = one_node(&redis, 1500, 1500).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let key = format!("conclave:lease:{}", meeting.id);
    let held = redis.cmd(&format!("GET {key}"));
    let token: u64 = held
        .strip_prefix("node-a ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("node-a holds the lease: {held}"));
    // The lease passes to node B behind A's back (as if A had stalled past
    // its time-to-live): A hears it at its next renewal and ends the meeting.
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    let b = node(&redis, "node-b", 1500, 2000, &stop).await;
    assert_eq!(redis.cmd(&format!("DEL {key}")), ":1");
    let Acquired::Granted(taken) = b.acquire(&meeting.id).await.expect("redis") else {
        panic!("B gets the free lease");
    };
    assert!(taken.token() > token);
    let ended = host.recv_until("ended").await;
    assert_eq!(ended["reason"], "server_shutdown", "{ended}");
    // A gave up nothing of B's, and refuses new joins it cannot own.
    assert_eq!(
        redis.cmd(&format!("GET {key}")),
        format!("node-b {}", taken.token())
    );
    let mut late = server.ws(&meeting.id, WsOpts::default()).await;
    late.send(join("Late", &meeting.passcode)).await;
    late.expect_error("unavailable").await;
}

/// Sends `tries` wrong passwords for bob at once, round-robin over the
/// nodes; returns (refused after a check, rate limited, argon2 checks run).
async fn wrong_passwords(nodes: &[TestServer], tries: usize, tag: &str) -> (usize, usize, u64) {
    let before: u64 = nodes.iter().map(|n| n.argon2_checks()).sum();
    let tries = (0..tries).map(|i| {
        let api = nodes[i % nodes.len()].api();
        async move { api.sign_in("bob", &format!("wrong{tag}{i}")).await }
    });
    let (mut refused, mut limited) = (0, 0);
    for (status, body) in join_all(tries).await {
        match status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}: {body}"),
        }
    }
    let checks = nodes.iter().map(|n| n.argon2_checks()).sum::<u64>() - before;
    (refused, limited, checks)
}

/// The sign-in attempts from loopback Redis holds in flight.
fn sign_ins_in_flight(redis: &Redis) -> String {
    redis.cmd("ZCARD conclave:limit:sign_in:127.0.0.1:a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_spread_over_three_nodes_get_five_checks_in_all() {
    let redis = Redis::start();
    let (nodes, _) = three_nodes(&redis).await;
    let (mut refused, mut limited, mut checks) = (0, 0, 0);
    // Waves of 30 wrong passwords for bob, 10 on each node at once, until
    // five were checked; alone, each node would check five. Each node's own
    // guard lets two checks per address run at once and refuses the rest:
    // those were never checked, so they give their Redis reservation back
    // and count as no failure (they once did, and fewer than five were
    // checked).
    for wave in 0..10 {
        if refused >= 5 {
            break;
        }
        let (r, l, c) = wrong_passwords(&nodes, 30, &wave.to_string()).await;
        refused += r;
        limited += l;
        checks += c;
    }
    assert_eq!(
        refused, 5,
        "passwords checked over all nodes ({limited} limited)"
    );
    assert_eq!(checks, 5, "argon2 checks over all nodes");
    // Blocked on every node, the right password included.
    for n in &nodes {
        let (status, body) = n.api().sign_in("bob", crate::common::PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
    assert_eq!(sign_ins_in_flight(&redis), ":0", "no reservation left held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_three_hundred_wrong_passwords_over_three_nodes_get_exactly_five_checks() {
    let redis = Redis::start();
    let (nodes, _) = three_nodes(&redis).await;
    let (mut refused, mut checks) = (0, 0);
    // Bursts of 300 at once, 100 on each node. While five are in flight
    // the rest are refused, so a burst may check fewer than five; what
    // Redis counts must be exactly what was checked, burst after burst,
    // until the fifth failure blocks the address.
    for burst in 0..10 {
        let (r, l, c) = wrong_passwords(&nodes, 300, &format!("burst{burst}")).await;
        assert_eq!(r + l, 300);
        assert_eq!(c, r as u64, "one argon2 check per refused password");
        refused += r;
        checks += c;
        assert_eq!(sign_ins_in_flight(&redis), ":0", "no reservation left held");
        if refused >= 5 {
            break;
        }
        let counted = redis.cmd("GET conclave:limit:sign_in:127.0.0.1:f");
        let counted = if counted == "$-1" {
            "0".into()
        } else {
            counted
        };
        assert_eq!(
            counted,
            refused.to_string(),
            "failures counted in Redis after burst {burst}"
        );
    }
    assert_eq!(refused, 5, "passwords checked over all nodes");
    assert_eq!(checks, 5, "argon2 checks over all nodes");
    for n in &nodes {
        let (status, body) = n.api().sign_in("bob", crate::common::PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_whose_reply_was_lost_is_given_back_not_held() {
    let redis = Redis::start();
    let server = one_node(&redis, 2000, 2000).await;
    // Redis holds every command for 1.8 s: the reservation's reply misses
    // the node's 1 s deadline (the sign-in is told 503), and Redis runs it
    // afterwards all the same.
    assert_eq!(redis.cmd("CLIENT PAUSE 1800"), "+OK");
    let (status, body) = server.api().sign_in("bob", "wrong-while-paused").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Given back by its attempt ID once Redis answers again, well before
    // its 60 s deadline, and counted as no failure.
    let given_back = async || sign_ins_in_flight(&redis) == ":0";
    eventually(10, "the lost reservation given back", given_back).await;
    assert_eq!(redis.cmd("GET conclave:limit:sign_in:127.0.0.1:f"), "$-1");
    eventually(10, "ready again", async || {
        ready(&server).await == StatusCode::OK
    })
    .await;
    // So the address still has its five checks, one after another.
    for i in 0..5 {
        let (status, body) = server.api().sign_in("bob", &format!("wrong{i}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}: {body}");
    }
    let (status, body) = server.api().sign_in("bob", "wrong5").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

/// Scripts Redis has run so far (`INFO commandstats`: every cluster
/// operation of a join is one `EVAL`).
fn evals(redis: &Redis) -> u64 {
    command_calls(redis).get("eval").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_round_trips_per_join() {
    let redis = Redis::start();
    // Leases and records that need no renewal during the test, so that
    // every script run is a join's.
    let server = one_node(&redis, 600_000, 600_000).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let e0 = evals(&redis);
    // The owner starts the meeting: its lease, and no passcode to count.
    let (_host, _) = server.host_joins(&alice, &meeting.id).await;
    let e1 = evals(&redis);
    assert_eq!(
        e1 - e0,
        3,
        "the owner's join: its socket counted for its address, the lease, the seat in the live state"
    );
    // A guest with the passcode, checked for the first time: the socket
    // counted; reserve and give back, for the address and for the meeting;
    // then the seat.
    let from = |i| WsOpts::from(Ipv4Addr::new(127, 0, 4, i));
    let mut g1 = server.ws(&meeting.id, from(1)).await;
    g1.send(join("First", &meeting.passcode)).await;
    assert_eq!(g1.recv().await["type"], "joined");
    let e2 = evals(&redis);
    assert_eq!(e2 - e1, 6, "a guest's first right passcode");
    // The same passcode again: known, no check, nothing to count; the
    // socket and the seat.
    let mut g2 = server.ws(&meeting.id, from(2)).await;
    g2.send(join("Second", &meeting.passcode)).await;
    assert_eq!(g2.recv().await["type"], "joined");
    let e3 = evals(&redis);
    assert_eq!(e3 - e2, 2, "a passcode already accepted");
    // A wrong passcode: the socket; reserve and fail, for the address and
    // the meeting; the meeting does not change.
    let mut g3 = server.ws(&meeting.id, from(3)).await;
    g3.send(join("Wrong", "not-the-passcode")).await;
    g3.expect_error("join_refused").await;
    let e4 = evals(&redis);
    assert_eq!(e4 - e3, 5, "a wrong passcode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_gives_up_its_meetings_leases_and_its_record() {
    let redis = Redis::start();
    // Long enough that only giving them up can make them go.
    let mut server = one_node(&redis, 60_000, 60_000).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Retro"})).await;
    let (_host, _) = server.host_joins(&alice, &meeting.id).await;
    let lease = format!("GET conclave:lease:{}", meeting.id);
    assert!(redis.cmd(&lease).starts_with("node-a "));
    let record = async || redis.cmd("EXISTS conclave:node:node-a") == ":1";
    eventually(5, "the node's record", record).await;
    server.shutdown().await;
    assert_eq!(redis.cmd(&lease), "$-1", "the lease outlived the meeting");
    assert_eq!(redis.cmd("EXISTS conclave:node:node-a"), ":0");
}

/// Connections the front has accepted so far.
fn accepted(front: &Front) -> usize {
    front.landed().iter().sum()
}

/// Turns the front (with throwaway connections) until its next connection
/// goes to a node other than `owner`.
async fn next_lands_off(front: &Front, owner: usize) {
    loop {
        let n = accepted(front);
        if n % 3 != owner {
            return;
        }
        drop(
            tokio::net::TcpStream::connect(front.addr)
                .await
                .expect("front"),
        );
        eventually(5, "front accepted", async || accepted(front) > n).await;
    }
}

/// `conclave_relayed_sockets_total` of a node.
async fn relayed(node: &TestServer) -> u64 {
    let text = reqwest::get(node.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("conclave_relayed_sockets_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_behind_one_front_relay_guests_to_the_owner_who_exchange_e2ee_video() {
    use conclave_client::session::run;
    use conclave_proto::MediaKind::Video;

    let redis = Redis::start();
    let (nodes, front) = fronted_nodes(&redis).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Front"})).await;

    // The host starts the meeting through the front; the least-loaded node
    // takes its lease, wherever the host landed.
    let mut host = open_ws(front.addr, &meeting.id, alice.ws_opts())
        .await
        .expect("host socket");
    host.send(json!({"type": "join", "name": "Host"})).await;
    let joined = host.recv().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["role"], "host");
    let owner = owner(&redis, &nodes, &meeting);

    // A guest who is never admitted waits on another node, relayed.
    next_lands_off(&front, owner).await;
    let mut eve = open_ws(front.addr, &meeting.id, WsOpts::default())
        .await
        .expect("Eve's socket");
    eve.send(join("Eve", &meeting.passcode)).await;
    assert_eq!(eve.recv().await["type"], "waiting");

    // Two native clients (E2EE on) by the invite link, which names the
    // front, each landing on a node that does not run the meeting.
    let both = Together::new(2);
    let wants = |p: &conclave_client::session::Progress<'_>| {
        let both_in_group = p.e2ee.epochs.iter().any(|(_, _, roster)| roster.len() >= 2);
        both_in_group && frames_from_others(p, Video) >= 30
    };
    let mut tasks = Vec::new();
    for (i, name) in ["Ada", "Bob"].into_iter().enumerate() {
        next_lands_off(&front, owner).await;
        let n = accepted(&front);
        let mut opts = native_options(&meeting, name);
        opts.until = both.member(i, wants);
        tasks.push(tokio::spawn(run(opts)));
        eventually(10, "native client reached the front", async || {
            accepted(&front) > n
        })
        .await;
        // The host admits them from the waiting room it sees.
        let id = crate::native_cli::waits(&mut host, name).await;
        host.send(json!({"type": "admit", "participant": id})).await;
    }
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.expect("task").expect("session"));
    }
    let (a, b) = (&reports[0], &reports[1]);
    let from = |r: &conclave_client::session::SessionReport, who: u64| -> u64 {
        r.media
            .received
            .values()
            .filter(|t| t.participant.map(|p| p.0) == Some(who))
            .filter(|t| t.kind == Some(Video))
            .map(|t| t.frames)
            .sum()
    };
    assert!(from(b, a.admission.you.0) >= 30, "{:?}", b.media);
    assert!(from(a, b.admission.you.0) >= 30, "{:?}", a.media);
    // One MLS group: an epoch both were in shows both the same code.
    let (ea, eb) = (
        a.e2ee.clone().expect("A's group"),
        b.e2ee.clone().expect("B's group"),
    );
    let shared = ea
        .epochs
        .iter()
        .filter(|(_, _, r)| r.len() >= 2)
        .filter_map(|(e, code, _)| Some((code, &eb.epochs.iter().find(|x| &x.0 == e)?.1)))
        .collect::<Vec<_>>();
    assert!(!shared.is_empty(), "A {:?} / B {:?}", ea.epochs, eb.epochs);
    assert!(shared.iter().all(|(x, y)| x == y));

    // Eve, relayed too, heard nothing but her own status all along.
    eve.expect_silence(QUIET).await;
    assert!(
        eve.log.iter().all(|m| m["type"] == "waiting"),
        "a waiting socket got more than its status: {:#?}",
        eve.log
    );

    // Eve, Ada and Bob (and the host, if it landed elsewhere) were relayed
    // by the other nodes; the owner relayed nothing.
    let mut counts = Vec::new();
    for n in &nodes {
        counts.push(relayed(n).await);
    }
    assert_eq!(counts[owner], 0, "{counts:?}");
    let host_relayed = u64::from(owner != 0);
    assert_eq!(counts.iter().sum::<u64>(), 3 + host_relayed, "{counts:?}");
    // Only the owner ever held the lease.
    assert_eq!(
        redis
            .cmd(&format!("GET conclave:fence:{}", meeting.id))
            .trim(),
        "1"
    );
    drop(front);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_relay_header_is_refused() {
    let redis = Redis::start();
    let (nodes, _front) = fronted_nodes(&redis).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Forged"})).await;
    let path = format!("/api/v1/meetings/{}/ws", meeting.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for value in [
        format!("{now}.203.0.113.9.{}", "00".repeat(32)),
        conclave::cluster::route::vouch(
            "another-secret-another-secret-xx",
            "203.0.113.9".parse().expect("ip"),
            &path,
        ),
        "garbage".to_string(),
    ] {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{}{path}", nodes[1].addr),
            )
            .expect("request");
        req.headers_mut()
            .insert("x-conclave-relay", value.parse().expect("header"));
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 403, "{value}")
            }
            other => panic!(
                "forged relay header {value} accepted: {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The right secret is accepted.
    let good = conclave::cluster::route::vouch(SECRET, "203.0.113.9".parse().expect("ip"), &path);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}{path}", nodes[1].addr),
    )
    .expect("request");
    req.headers_mut()
        .insert("x-conclave-relay", good.parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

/// Eve, admitted through `via`, is removed by the host, who then locks the
/// meeting; returns once the lock is saved in Redis, with Eve's guest
/// cookie (for her attempts to come back).
async fn remove_eve_and_lock(
    redis: &Redis,
    via: &TestServer,
    host: &mut Ws,
    meeting: &Meeting,
) -> String {
    let (mut eve, joined) = via.guest_admitted(host, meeting, "Eve").await;
    let eve_id = joined["you"].as_u64().expect("id");
    let eve_cookie = eve.guest_cookie().expect("Eve's guest cookie");
    host.send(json!({"type": "remove", "participant": eve_id}))
        .await;
    assert_eq!(eve.expect_closed().await, vec![json!({"type": "removed"})]);
    host.send(json!({"type": "lock"})).await;
    loop {
        let m = host.recv_until("meeting_updated").await;
        if m["meeting"]["locked"] == true {
            break;
        }
    }
    saved_live(redis, meeting, r#""locked":true"#).await;
    eve_cookie
}

/// Through each of `through`, Eve (with her guest cookie) is refused as
/// banned and a newcomer, Mal, as the meeting is locked.
async fn barred(through: &[&TestServer], meeting: &Meeting, eve_cookie: &str) {
    for node in through {
        let mut ws = node
            .ws(&meeting.id, WsOpts::cookie(eve_cookie.to_string()))
            .await;
        ws.send(join("Eve", &meeting.passcode)).await;
        ws.expect_error("banned").await;
        let mut mal = node.ws(&meeting.id, WsOpts::default()).await;
        mal.send(join("Mal", &meeting.passcode)).await;
        mal.expect_error("locked").await;
    }
}

/// Which of `nodes` holds the meeting's lease.
fn owner(redis: &Redis, nodes: &[TestServer], meeting: &Meeting) -> usize {
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    nodes
        .iter()
        .position(|n| {
            let id = &n.config.cluster.as_ref().expect("cluster").node_id;
            lease.trim().starts_with(&format!("{id} "))
        })
        .unwrap_or_else(|| panic!("no node holds the lease: {lease:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meeting_that_moves_to_another_node_is_still_locked_and_the_removed_still_banned() {
    let redis = Redis::start();
    let (mut nodes, _front) = fronted_nodes(&redis).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Moves"})).await;
    let (mut host, host_joined) = nodes[0].host_joins(&alice, &meeting.id).await;
    let eve_cookie = remove_eve_and_lock(&redis, &nodes[1], &mut host, &meeting).await;
    let owner = owner(&redis, &nodes, &meeting);

    // The node running the meeting stops, handing the meeting over.
    nodes[owner].shutdown().await;
    let (b, c) = ((owner + 1) % 3, (owner + 2) % 3);

    // The host's client resumes through another node: it comes back locked.
    let (mut host, joined) = resume_after_kill(
        &nodes[b],
        &meeting,
        &alice.ws_opts(),
        &host_joined,
        Instant::now(),
    )
    .await;
    assert_eq!(joined["role"], "host", "{joined}");
    assert_eq!(joined["meeting"]["locked"], true, "{joined}");
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    let old = &nodes[owner]
        .config
        .cluster
        .as_ref()
        .expect("cluster")
        .node_id;
    assert!(!lease.starts_with(&format!("{old} ")), "{lease}");
    // Eve, removed, cannot come back through either remaining node, nor
    // anybody new get in: it is locked.
    barred(&[&nodes[b], &nodes[c]], &meeting, &eve_cookie).await;
    // Unlocked by the host, the lock is saved as lifted.
    host.send(json!({"type": "unlock"})).await;
    saved_live(&redis, &meeting, r#""locked":false"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relayed_guess_counts_against_the_clients_own_address_at_the_owner() {
    let redis = Redis::start();
    let (nodes, _front) = fronted_nodes(&redis).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Guarded"})).await;
    let (_host, _) = nodes[0].host_joins(&alice, &meeting.id).await;
    let owner = owner(&redis, &nodes, &meeting);
    let other = (owner + 1) % 3;
    let before = relayed(&nodes[other]).await;
    // Five wrong passcodes from one address, all through a node that does
    // not run the meeting: the owner limits that address...
    let mut eve = nodes[other]
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 7)))
        .await;
    for _ in 0..5 {
        eve.send(join("Eve", "000-000-000")).await;
        eve.expect_error("join_refused").await;
    }
    eve.send(join("Eve", "000-000-000")).await;
    eve.expect_error("too_many_attempts").await;
    // ...and only it: another address through the same node is not blocked,
    // as it would be if the owner saw the relaying node's address.
    let mut ann = nodes[other]
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 8)))
        .await;
    ann.send(join("Ann", "000-000-000")).await;
    ann.expect_error("join_refused").await;
    assert_eq!(relayed(&nodes[other]).await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_of_its_node_a_meeting_comes_back_on_another_still_locked_and_banning() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    // Two nodes in this process, on `url` (seeded by the first), and a
    // third as its own process, to be killed.
    let nodes = relaying_pair(&redis, &url).await;
    // node-0 sorts first: the least-loaded tie goes to it.
    let mut doomed = ProcessNode::start(&redis, &url, "node-0", NodeOptions::default()).await;
    node_records(&redis, 3).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Survives"})).await;
    // The host starts it through node-a; it is placed on node-0.
    let (mut host, _) = nodes[0].host_joins(&alice, &meeting.id).await;
    let lease_key = format!("GET conclave:lease:{}", meeting.id);
    assert!(
        redis.cmd(&lease_key).starts_with("node-0 "),
        "{}",
        redis.cmd(&lease_key)
    );
    let eve_cookie = remove_eve_and_lock(&redis, &nodes[1], &mut host, &meeting).await;

    // SIGKILL: no lease given up, no record deleted.
    let killed = doomed.kill();
    // The host tries again through node-b until the meeting runs again.
    let joined = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the meeting did not come back within 10 s"
        );
        if let Ok(mut ws) = nodes[1].try_ws(&meeting.id, alice.ws_opts()).await {
            ws.send(json!({"type": "join", "name": "Host"})).await;
            if let Some(Frame::Msg(v)) = ws.next(Duration::from_secs(5)).await
                && v["type"] == "joined"
            {
                host = ws;
                break v;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let back_after = killed.elapsed();
    eprintln!("meeting back on another node {back_after:?} after SIGKILL of its node");
    assert_eq!(joined["meeting"]["locked"], true, "{joined}");
    assert!(!redis.cmd(&lease_key).starts_with("node-0 "));
    // Eve, removed, still cannot come back, through either node, nor
    // anybody new get in: it is still locked.
    barred(&[&nodes[0], &nodes[1]], &meeting, &eve_cookie).await;
    drop(host);
}

/// Two nodes sharing the PostgreSQL database at `url` (which the first
/// seeds) and one Redis, relaying to each other.
async fn relaying_pair(redis: &Redis, url: &str) -> Vec<TestServer> {
    nodes(
        redis,
        url,
        &["node-a", "node-b"],
        NodeOptions::default(),
        |_| {},
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_node_takes_no_new_meeting_and_its_meetings_move_locked_to_another() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let mut nodes = relaying_pair(&redis, &url).await;
    node_records(&redis, 2).await;
    let alice = nodes[0].signed_in("alice").await;
    let running = alice.create_meeting(json!({"title": "Running"})).await;
    let (mut host, joined) = nodes[0].host_joins(&alice, &running.id).await;
    let lease_of = |id: &str| redis.cmd(&format!("GET conclave:lease:{id}"));
    assert!(lease_of(&running.id).starts_with("node-a "));
    host.send(json!({"type": "lock"})).await;
    saved_live(&redis, &running, r#""locked":true"#).await;

    // What SIGTERM does first.
    nodes[0].server().drain().await;
    let record = redis.cmd("GET conclave:node:node-a");
    assert!(record.contains(r#""state":"draining""#), "{record}");
    assert_eq!(ready(&nodes[0]).await, StatusCode::SERVICE_UNAVAILABLE);
    // The meeting is handed over, not ended: the host's socket closes with
    // no `ended` (its client resumes), the lease is given up at once, and
    // Redis keeps the lock and the host's seat.
    let said = host.expect_closed().await;
    assert!(said.iter().all(|m| m["type"] != "ended"), "{said:?}");
    assert_eq!(lease_of(&running.id), "$-1");
    let live = redis.cmd(&format!("GET conclave:live:{}", running.id));
    assert!(live.contains(r#""locked":true"#), "{live}");
    assert!(live.contains(r#""name":"Host""#), "the seat went: {live}");

    // New meetings go to B, through either node, never to A.
    for via in [0, 1, 0, 1] {
        let fresh = alice.create_meeting(json!({"title": "Fresh"})).await;
        let (_host, _) = nodes[via].host_joins(&alice, &fresh.id).await;
        let lease = lease_of(&fresh.id);
        assert!(lease.starts_with("node-b "), "via {via}: {lease}");
    }
    // The host's client resumes its seat, even through the draining A: on
    // B, the same member, still locked, in a new MLS group.
    let (_host, back) = resume_after_kill(
        &nodes[0],
        &running,
        &alice.ws_opts(),
        &joined,
        Instant::now(),
    )
    .await;
    assert_eq!(back["you"], joined["you"], "{back}");
    assert_eq!(back["role"], "host");
    assert_eq!(back["meeting"]["locked"], true, "{back}");
    assert_ne!(back["e2ee"]["group_id"], joined["e2ee"]["group_id"]);
    assert!(lease_of(&running.id).starts_with("node-b "));
    let mut mal = nodes[1].ws(&running.id, WsOpts::default()).await;
    mal.send(join("Mal", &running.passcode)).await;
    mal.expect_error("locked").await;

    // Then the process stops, and its record goes.
    nodes[0].shutdown().await;
    assert_eq!(redis.cmd("EXISTS conclave:node:node-a"), ":0");
    assert!(lease_of(&running.id).starts_with("node-b "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_while_redis_is_down_ends_its_meetings_and_says_so() {
    let redis = Redis::start();
    let mut server = one_node(&redis, 1500, 1500).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Stranded"})).await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    redis.stop();
    eventually(5, "not ready without Redis", async || {
        ready(&server).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // The meeting cannot be handed over (its lease cannot be given up, nor
    // its state be known to be saved): it ends, with the reason shown.
    server.shutdown().await;
    let ended = host.recv_until("ended").await;
    assert_eq!(ended["reason"], "server_shutdown", "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_moves_a_node_process_meeting_members_resume_on_another_still_locked() {
    let redis = Redis::start();
    // A meeting run by node-0, a `conclave serve` process; its host and a
    // guest, admitted through node-b; locked.
    let (nodes, mut node0, alice, meeting, mut host, host_joined) =
        a_meeting_on_a_process_node(&redis).await;
    let (mut bob, bob_joined) = nodes[1].guest_admitted(&mut host, &meeting, "Bob").await;
    host.send(json!({"type": "lock"})).await;
    saved_live(&redis, &meeting, r#""locked":true"#).await;
    let lease_key = format!("GET conclave:lease:{}", meeting.id);

    let termed = node0.signal("TERM");
    // Both sockets close with no `ended`: the meeting is moving.
    for ws in [&mut host, &mut bob] {
        let said = ws.expect_closed().await;
        assert!(said.iter().all(|m| m["type"] != "ended"), "{said:?}");
    }
    let mut exited = None;
    eventually(20, "the drained process exits", async || {
        exited = node0.child.try_wait().expect("wait");
        exited.is_some()
    })
    .await;
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    eprintln!("node-0 exited {:?} after SIGTERM", termed.elapsed());
    // It gave up the lease and its record; the seats and the lock stay.
    assert_eq!(redis.cmd(&lease_key), "$-1");
    assert_eq!(redis.cmd("EXISTS conclave:node:node-0"), ":0");

    // Each client resumes with its token through the node it reaches.
    let (mut host, host_back) =
        resume_after_kill(&nodes[0], &meeting, &alice.ws_opts(), &host_joined, termed).await;
    let (mut bob, bob_back) =
        resume_after_kill(&nodes[1], &meeting, &WsOpts::default(), &bob_joined, termed).await;
    eprintln!("host and guest back {:?} after SIGTERM", termed.elapsed());
    let lease = redis.cmd(&lease_key);
    assert!(
        lease.starts_with("node-a ") || lease.starts_with("node-b "),
        "{lease}"
    );
    assert_eq!(
        (&host_back["you"], &host_back["role"]),
        (&host_joined["you"], &json!("host"))
    );
    assert_eq!(bob_back["you"], bob_joined["you"], "{bob_back}");
    assert_eq!(host_back["meeting"]["locked"], true, "{host_back}");
    // A new group, set up in the open, to one security code.
    assert_ne!(
        host_back["e2ee"]["group_id"],
        host_joined["e2ee"]["group_id"]
    );
    let codes = rebuild_group(&mut [(&mut host, &host_back), (&mut bob, &bob_back)]).await;
    assert_eq!(codes[0], codes[1], "one group, one security code");
    // Still locked on the new node: a newcomer is refused.
    let mut mal = nodes[0].ws(&meeting.id, WsOpts::default()).await;
    mal.send(join("Mal", &meeting.passcode)).await;
    mal.expect_error("locked").await;
}

// ------------------------------------------- failover of live state ----

/// Two nodes in this process and `node-0`, a `conclave serve` process, on
/// one fresh PostgreSQL database and `redis`; a meeting of Alice's started
/// through node-a and run on node-0 (the least-loaded tie goes to it), its
/// host's socket and `joined`.
async fn a_meeting_on_a_process_node(
    redis: &Redis,
) -> (Vec<TestServer>, ProcessNode, Api, Meeting, Ws, Value) {
    let url = Postgres::shared().fresh_database().await;
    let nodes = relaying_pair(redis, &url).await;
    let doomed = ProcessNode::start(redis, &url, "node-0", NodeOptions::default()).await;
    node_records(redis, 3).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Survives"})).await;
    let (host, joined) = nodes[0].host_joins(&alice, &meeting.id).await;
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(lease.starts_with("node-0 "), "{lease}");
    (nodes, doomed, alice, meeting, host, joined)
}

/// Waits until `what` is in the meeting's live state in Redis.
async fn saved_live(redis: &Redis, meeting: &Meeting, what: &str) {
    let get = format!("GET conclave:live:{}", meeting.id);
    eventually(5, what, async || redis.cmd(&get).contains(what)).await;
}

/// What a client does when its socket drops: `resume` with its token
/// through `node`, again while the answer is that the meeting's lease is
/// still held by the dead node (or the socket is refused, relayed to it),
/// until it is taken back or 10 s after the kill. Returns the socket and
/// its `joined`.
async fn resume_after_kill(
    node: &TestServer,
    meeting: &Meeting,
    opts: &WsOpts,
    joined: &Value,
    killed: Instant,
) -> (Ws, Value) {
    let token = joined["resume_token"].as_str().expect("resume token");
    loop {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no resume within 10 s of the kill"
        );
        if let Ok(mut ws) = node.try_ws(&meeting.id, opts.clone()).await {
            ws.send(json!({"type": "resume", "token": token, "mls_received": 3}))
                .await;
            match ws.next(Duration::from_secs(5)).await {
                Some(Frame::Msg(v)) if v["type"] == "joined" => return (ws, v),
                Some(Frame::Msg(v)) if v["code"] == "unavailable" => {}
                other => panic!("resume answered {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Members whose seats were taken back on a node that rebuilt the meeting
/// start its MLS group afresh, with the native client's E2EE layer, until
/// they are all in one group; returns each one's security code.
async fn rebuild_group(members: &mut [(&mut Ws, &Value)]) -> Vec<String> {
    use conclave_client::e2ee::E2ee;
    use conclave_proto::{ParticipantId, ServerMessage};
    let mut e2ee: Vec<E2ee> = members
        .iter()
        .map(|(_, joined)| {
            let you = ParticipantId(joined["you"].as_u64().expect("you"));
            let mut e = E2ee::new(you).expect("e2ee");
            let msg: ServerMessage = serde_json::from_value((*joined).clone()).expect("joined");
            e.handle(&msg).expect("joined taken in");
            e
        })
        .collect();
    let n = members.len();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for (i, (ws, _)) in members.iter_mut().enumerate() {
            loop {
                for out in e2ee[i].take_messages() {
                    ws.send(serde_json::to_value(&out).expect("json")).await;
                }
                match ws.next(Duration::from_millis(50)).await {
                    Some(Frame::Msg(v)) => {
                        if let Ok(msg) = serde_json::from_value::<ServerMessage>(v) {
                            e2ee[i].handle(&msg).expect("an MLS message taken in");
                        }
                    }
                    Some(Frame::Closed) => panic!("member {i}'s socket closed"),
                    None => break,
                }
            }
        }
        let epochs: Vec<_> = e2ee.iter().map(|e| e.epoch()).collect();
        if e2ee.iter().all(|e| e.in_group() && e.roster().len() == n)
            && epochs.iter().all(|x| *x == epochs[0])
        {
            return e2ee.iter().map(|e| e.security_code()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "no common group: epochs {epochs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_members_resume_on_another_node_with_their_roles_and_rebuild_the_group() {
    let redis = Redis::start();
    let (nodes, mut doomed, alice, meeting, mut host, host_joined) =
        a_meeting_on_a_process_node(&redis).await;
    let old_group = host_joined["e2ee"]["group_id"].clone();
    let (_bob, bob_joined) = nodes[1].guest_admitted(&mut host, &meeting, "Bob").await;
    let bob_id = bob_joined["you"].as_u64().expect("id");
    host.send(json!({"type": "set_role", "participant": bob_id, "role": "cohost"}))
        .await;
    let (mut eve, eve_joined) = nodes[0].guest_admitted(&mut host, &meeting, "Eve").await;
    let eve_cookie = eve.guest_cookie().expect("Eve's guest cookie");
    host.send(json!({"type": "remove", "participant": eve_joined["you"]}))
        .await;
    assert_eq!(eve.expect_closed().await, vec![json!({"type": "removed"})]);
    saved_live(&redis, &meeting, r#""role":"cohost""#).await;

    let killed = doomed.kill();
    // Each resumes through the node it happens to reach, with its last token.
    let (mut host, host_back) =
        resume_after_kill(&nodes[1], &meeting, &alice.ws_opts(), &host_joined, killed).await;
    let (mut bob, bob_back) =
        resume_after_kill(&nodes[0], &meeting, &WsOpts::default(), &bob_joined, killed).await;
    eprintln!(
        "host and co-host back on another node {:?} after SIGKILL of theirs",
        killed.elapsed()
    );
    let lease = redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(!lease.starts_with("node-0 "), "{lease}");
    assert_eq!(
        (&host_back["you"], &host_back["role"]),
        (&host_joined["you"], &json!("host"))
    );
    assert_eq!(
        (&bob_back["you"], &bob_back["role"]),
        (&json!(bob_id), &json!("cohost")),
        "the co-host is still co-host: {bob_back}"
    );
    // A new group, set up in the open: the old one's delivery state died.
    assert_ne!(host_back["e2ee"]["group_id"], old_group);
    // A token is used once: the one the dead node handed out is spent.
    let mut replay = nodes[1].ws(&meeting.id, alice.ws_opts()).await;
    let spent = host_joined["resume_token"].clone();
    replay.send(json!({"type": "resume", "token": spent})).await;
    replay.expect_error("resume_failed").await;

    let codes = rebuild_group(&mut [(&mut host, &host_back), (&mut bob, &bob_back)]).await;
    assert_eq!(codes[0], codes[1], "one group, one security code");
    // The co-host moderates on the new node: Bob locks the meeting.
    bob.send(json!({"type": "lock"})).await;
    loop {
        let m = host.recv_until("meeting_updated").await;
        if m["meeting"]["locked"] == true {
            break;
        }
    }
    // Eve, removed on the dead node, still cannot come back.
    for n in &nodes {
        let mut ws = n.ws(&meeting.id, WsOpts::cookie(eve_cookie.clone())).await;
        ws.send(join("Eve", &meeting.passcode)).await;
        ws.expect_error("banned").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_of_its_node_the_waiting_wait_again_listed_to_the_host_not_admitted() {
    let redis = Redis::start();
    let (nodes, mut doomed, alice, meeting, mut host, host_joined) =
        a_meeting_on_a_process_node(&redis).await;
    let (mut dan, dan_id) = nodes[1].guest_waits(&meeting, "Dan").await;
    let dan_cookie = WsOpts::cookie(dan.guest_cookie().expect("Dan's guest cookie"));
    host.recv_until("waiting_room").await;
    host.send(json!({"type": "lock"})).await;
    saved_live(&redis, &meeting, r#""locked":true"#).await;
    saved_live(&redis, &meeting, r#""name":"Dan""#).await;

    let killed = doomed.kill();
    // Dan's socket, relayed to the dead node, closes; his browser asks
    // again with the same name and its cookie, until a node runs the
    // meeting again.
    assert!(dan.expect_closed().await.is_empty());
    let mut dan = loop {
        assert!(killed.elapsed() < Duration::from_secs(10), "Dan not back");
        if let Ok(mut ws) = nodes[0].try_ws(&meeting.id, dan_cookie.clone()).await {
            ws.send(join("Dan", &meeting.passcode)).await;
            match ws.next(Duration::from_secs(5)).await {
                Some(Frame::Msg(v)) if v["type"] == "waiting" => {
                    assert_eq!(v["you"], dan_id, "his place, his number");
                    break ws;
                }
                Some(Frame::Msg(v)) if v["code"] == "unavailable" => {}
                other => panic!("Dan's join answered {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The host comes back and finds him waiting, in a meeting still locked.
    let (mut host, back) =
        resume_after_kill(&nodes[1], &meeting, &alice.ws_opts(), &host_joined, killed).await;
    assert_eq!(back["meeting"]["locked"], true, "{back}");
    let listed = back["waiting"]
        .as_array()
        .is_some_and(|w| w.iter().any(|p| p["id"] == dan_id && p["name"] == "Dan"));
    assert!(listed, "Dan listed to the host: {back}");
    // Nobody let him in: he hears nothing more until the host does.
    dan.expect_silence(QUIET).await;
    let mut mal = nodes[1].ws(&meeting.id, WsOpts::default()).await;
    mal.send(join("Mal", &meeting.passcode)).await;
    mal.expect_error("locked").await;
    host.send(json!({"type": "admit", "participant": dan_id}))
        .await;
    let joined = dan.recv().await;
    assert_eq!(
        (&joined["type"], &joined["you"]),
        (&json!("joined"), &json!(dan_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_write_of_live_state_is_refused_by_the_fencing_token() {
    let redis = Redis::start();
    let stop = CancellationToken::new();
    let a = node(&redis, "node-a", 300, 6000, &stop).await;
    let b = node(&redis, "node-b", 300, 6000, &stop).await;
    let Acquired::Granted(old) = a.acquire("m1").await.expect("lease") else {
        panic!("node-a should take the free lease");
    };
    let locked = conclave_core::LiveState {
        locked: true,
        ..Default::default()
    };
    use conclave::cluster::live::Saved;
    assert_eq!(
        a.save_live("m1", old.token(), &locked).await.expect("save"),
        Saved::Written
    );
    // node-a stalls past its lease; node-b takes the meeting over and
    // writes under its larger token.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let Acquired::Granted(new) = b.acquire("m1").await.expect("lease") else {
        panic!("node-b should take the expired lease");
    };
    assert!(new.token() > old.token());
    let mut taken_over = b.saved_live("m1").await.expect("read").expect("state");
    assert!(taken_over.locked);
    taken_over.suspended = true;
    assert_eq!(
        b.save_live("m1", new.token(), &taken_over)
            .await
            .expect("save"),
        Saved::Written
    );
    // node-a wakes up and writes what it believes: refused.
    let unlocked = conclave_core::LiveState::default();
    assert_eq!(
        a.save_live("m1", old.token(), &unlocked)
            .await
            .expect("save"),
        Saved::Fenced
    );
    assert_eq!(b.saved_live("m1").await.expect("read"), Some(taken_over));
    stop.cancel();
}

/// `conclave join` members taking their seats back after their node died.
mod native_resume;

/// `limits.max_pending_per_address` counted in Redis for the cluster.
mod connection_caps;

/// A meeting's media cascaded over two nodes (issue 23).
mod cascade;
