//! The cluster benchmark (issue 17): three nodes (in this process) on a
//! real PostgreSQL and a real `redis-server`, both started in temporary
//! directories on loopback ports, behind the round-robin TCP front the
//! cluster tests use; the tests' harness is included as it is, not copied.
//!
//! It measures, and prints as Markdown for docs/benchmarks.md:
//! - placement under a burst: `--meetings` meetings created, then all their
//!   hosts joining at once through the front (a meeting is placed when its
//!   first socket arrives), and where each meeting's lease ended up;
//! - join latency, socket opened to `joined`, of `--joins` guests through
//!   the front and as many straight to the node running the meeting;
//! - Redis commands per join (`INFO commandstats` before and after each
//!   run of joins, less what the nodes send while idle over as long).
//!
//! `cargo bench -p conclave --bench cluster [-- --meetings 200 --joins 200]`
//! (needs `redis-server` and PostgreSQL's `initdb`/`pg_ctl`, as the tests).

#[path = "../crates/conclave/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{command_calls, fronted_nodes_with};
use common::front::Front;
use common::redis::Redis;
use common::{Meeting, TestServer, Ws, WsOpts, join, open_ws};
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(arg("--meetings", 200), arg("--joins", 200)));
}

async fn run(meetings: usize, joins: usize) {
    println!("load average at start: {}", load());
    let redis = Redis::start();
    // The default lease and record times (10 s, 6 s: records refreshed
    // every 2 s), and limits that one loopback address playing hundreds of
    // people would otherwise meet.
    let (nodes, front) = fronted_nodes_with(&redis, 10_000, 6_000, |c| {
        c.limits.max_pending_per_address = 100_000;
        c.limits.new_guests_per_minute = 100_000;
        c.limits.messages_per_sec = 1_000;
    })
    .await;
    burst(&redis, &nodes, &front, meetings).await;
    latency(&redis, &nodes, &front, joins).await;
    println!("load average at end: {}", load());
}

/// The node ID holding `meeting`'s lease.
fn owner(redis: &Redis, meeting: &str) -> String {
    let lease = redis.cmd(&format!("GET conclave:lease:{meeting}"));
    lease.split(' ').next().unwrap_or_default().to_string()
}

async fn host_join(front: &Front, opts: WsOpts, meeting: &Meeting) -> Ws {
    let mut ws = open_ws(front.addr, &meeting.id, opts)
        .await
        .expect("host socket");
    ws.send(json!({"type": "join", "name": "Host"})).await;
    let joined = ws.recv().await;
    assert_eq!(joined["type"], "joined", "host join: {joined}");
    ws
}

async fn burst(redis: &Redis, nodes: &[TestServer], front: &Front, n: usize) {
    let alice = nodes[0].signed_in("alice").await;
    let mut created = Vec::new();
    for _ in 0..n {
        created.push(
            alice
                .create_meeting(json!({"settings": {"waiting_room": false}}))
                .await,
        );
    }
    let opts = alice.ws_opts();
    let t0 = Instant::now();
    let hosts =
        futures_util::future::join_all(created.iter().map(|m| host_join(front, opts.clone(), m)))
            .await;
    let took = t0.elapsed();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for m in &created {
        *per_node.entry(owner(redis, &m.id)).or_default() += 1;
    }
    let counts: Vec<usize> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| per_node.get(*id).copied().unwrap_or(0))
        .collect();
    let (max, min) = (
        counts.iter().max().copied().unwrap_or(0),
        counts.iter().min().copied().unwrap_or(0),
    );
    println!("\n### Placement: {n} meetings whose hosts join at once through the front\n");
    println!("| node-a | node-b | node-c | max/min | all joined in |");
    println!("|---|---|---|---|---|");
    let ratio = if min == 0 {
        "∞".to_string()
    } else {
        format!("{:.2}", max as f64 / min as f64)
    };
    println!(
        "| {} | {} | {} | {max}/{min} = {ratio} | {:.2} s |",
        counts[0],
        counts[1],
        counts[2],
        took.as_secs_f64()
    );
    let other: usize = per_node
        .iter()
        .filter(|(k, _)| !k.starts_with("node-"))
        .map(|(_, v)| v)
        .sum();
    if other > 0 {
        println!("({other} meetings had no lease: {per_node:?})");
    }
    for mut h in hosts {
        h.send(json!({"type": "leave"})).await;
    }
    // Until the meetings have ended and the records say so.
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis.cmd("KEYS conclave:lease:*") != "*0" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// One guest's join: socket opened to `joined`; then it leaves.
async fn guest_join(to: std::net::SocketAddr, meeting: &Meeting, i: usize) -> Duration {
    let t0 = Instant::now();
    let mut ws = open_ws(to, &meeting.id, WsOpts::default())
        .await
        .expect("guest socket");
    ws.send(join(&format!("Guest {i}"), &meeting.passcode))
        .await;
    let joined = ws.recv_until("joined").await;
    let took = t0.elapsed();
    assert_eq!(joined["type"], "joined");
    ws.send(json!({"type": "leave"})).await;
    ws.expect_closed().await;
    took
}

/// Round trips to Redis, counted by `MONITOR`: each command a client sent,
/// by name, not those a script ran (`[0 lua]`), nor the benchmark's own.
struct Monitor {
    counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

impl Monitor {
    fn start(redis: &Redis) -> Monitor {
        use std::io::{BufRead, Write};
        let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, redis.port));
        let mut s = std::net::TcpStream::connect(addr).expect("redis");
        s.write_all(b"MONITOR\r\n").expect("write");
        let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let into = std::sync::Arc::clone(&counts);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(s).lines() {
                let Ok(line) = line else { return };
                let Some((who, rest)) = line.split_once("] \"") else {
                    continue;
                };
                if who.ends_with(" lua") {
                    continue;
                }
                let name = rest.split('"').next().unwrap_or_default().to_lowercase();
                if name == "info" || name == "monitor" {
                    continue;
                }
                *into.lock().expect("counts").entry(name).or_insert(0) += 1;
            }
        });
        Monitor { counts }
    }

    fn now(&self) -> BTreeMap<String, u64> {
        // MONITOR lags a little behind the commands it reports.
        std::thread::sleep(Duration::from_millis(200));
        self.counts.lock().expect("counts").clone()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Commands Redis served between two [`command_calls`], by command.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn latency(redis: &Redis, nodes: &[TestServer], front: &Front, n: usize) {
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let _host = host_join(front, alice.ws_opts(), &meeting).await;
    let owner_id = owner(redis, &meeting.id);
    let owner_addr = nodes[["node-a", "node-b", "node-c"]
        .iter()
        .position(|id| *id == owner_id)
        .expect("an owner")]
    .addr;
    // The passcode's one argon2 check, outside the measurement.
    guest_join(owner_addr, &meeting, 0).await;

    // What the nodes send Redis while nobody joins (pings, record and lease
    // refreshes), per second.
    let monitor = Monitor::start(redis);
    let idle_for = Duration::from_secs(5);
    let before = monitor.now();
    let t0 = Instant::now();
    tokio::time::sleep(idle_for).await;
    let idle = delta(&before, &monitor.now());
    let idle_for = t0.elapsed();

    let mut rows = Vec::new();
    let mut executed_rows = Vec::new();
    for (name, to) in [
        ("through the front", front.addr),
        ("straight to the owner", owner_addr),
    ] {
        let before = monitor.now();
        let stats_before = command_calls(redis);
        let t0 = Instant::now();
        let mut took = Vec::new();
        let mut relayed = 0;
        for i in 0..n {
            let landed = front.landed();
            took.push(guest_join(to, &meeting, i + 1).await);
            let now = front.landed();
            let k = (0..now.len()).find(|&k| now[k] > landed[k]);
            if to == front.addr && k.is_some_and(|k| nodes[k].addr != owner_addr) {
                relayed += 1;
            }
        }
        let calls = delta(&before, &monitor.now());
        let spent = t0.elapsed();
        let stats = delta(&stats_before, &command_calls(redis));
        took.sort();
        let scale = spent.as_secs_f64() / idle_for.as_secs_f64();
        let per_join: Vec<String> = calls
            .iter()
            .filter_map(|(k, v)| {
                let background = idle.get(k).copied().unwrap_or(0) as f64 * scale;
                let per = (*v as f64 - background) / n as f64;
                (per >= 0.05).then(|| format!("{k} {per:.2}"))
            })
            .collect();
        let total: f64 = calls
            .iter()
            .map(|(k, v)| *v as f64 - idle.get(k).copied().unwrap_or(0) as f64 * scale)
            .sum::<f64>()
            / n as f64;
        let executed: Vec<String> = stats
            .iter()
            .filter(|(k, _)| !["info", "ping", "monitor"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n as f64))
            .collect();
        executed_rows.push(format!("| {name} | {} |", executed.join(", ")));
        rows.push(format!(
            "| {name} | {n} | {relayed} | {:.1} | {:.1} | {:.1} | {:.1} | {total:.1} ({}) |",
            percentile(&took, 0.5),
            percentile(&took, 0.95),
            percentile(&took, 0.99),
            took.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            per_join.join(", ")
        ));
    }
    println!(
        "\n### Join latency (socket opened to `joined`, ms) and Redis round trips per join (joined and left)\n"
    );
    println!("| path | joins | relayed | p50 | p95 | p99 | max | Redis round trips per join |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\nRound trips: commands the nodes sent (MONITOR), less what they send idle over as long ({:.1} s idle: {idle:?}).",
        idle_for.as_secs_f64()
    );
    println!(
        "\nCommands Redis executed per join, scripts' own included (INFO commandstats, idle not subtracted):\n"
    );
    println!("| path | commands per join |");
    println!("|---|---|");
    for r in executed_rows {
        println!("{r}");
    }
}
