//! `conclave join`, the real binary, in a meeting whose node is SIGKILLed:
//! each native member takes its seat back on the node that takes the
//! meeting over, sets the MLS group up again (told as "Reconnected — new
//! security code"), shows the same new code as the other member, and
//! receives media again on a new peer connection.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::front::free_port;
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::native_cli::{Cli, invite};
use conclave::config::ClusterConfig;

const SECRET: &str = "native-resume-cluster-secret-0123456789";

fn cluster_config(redis: &Redis, node: &str, port: u16) -> ClusterConfig {
    ClusterConfig {
        redis_url: redis.url(),
        redis_ca_file: None,
        node_id: node.to_string(),
        internal_url: format!("http://127.0.0.1:{port}"),
        lease_ms: 2000,
        node_ttl_ms: 1500,
        secret: Some(SECRET.into()),
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

/// `conclave serve` as its own process, so that it can be SIGKILLed.
struct ProcessNode {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn process_node(redis: &Redis, database_url: &str, node_id: &str) -> ProcessNode {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let toml = format!(
        "listen = \"{addr}\"\ndata_dir = \"{data}\"\ndatabase_url = \"{database_url}\"\nmedia_listen = \"127.0.0.1:0\"\n\n[cluster]\nredis_url = \"{redis}\"\nnode_id = \"{node_id}\"\ninternal_url = \"http://{addr}\"\nsecret = \"{SECRET}\"\nlease_ms = 2000\nnode_ttl_ms = 1500\n",
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
    let mut node = ProcessNode { child, _dir: dir };
    let url = format!("http://{addr}/readyz");
    eventually(20, "the process node ready", async || {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("conclave serve exited: {status}");
        }
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    node
}

/// Two nodes in this process on the PostgreSQL database at `url` (the
/// first seeds it), relaying to each other and to the process node.
async fn pair(redis: &Redis, url: &str) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for (i, id) in ["node-a", "node-b"].into_iter().enumerate() {
        let port = free_port();
        let cfg = cluster_config(redis, id, port);
        let db = url.to_string();
        let tweak = move |c: &mut conclave::Config| {
            c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            c.cluster = Some(cfg);
            c.database_url = Some(db);
        };
        nodes.push(if i == 0 {
            TestServer::start_on_postgres(url, tweak).await
        } else {
            TestServer::start_with(tweak).await
        });
    }
    for n in &nodes {
        let ready = n.url("/readyz");
        eventually(10, "node ready", async || {
            reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
    }
    nodes
}

/// What a member's latest `--stats-interval` line says: reconnections, the
/// security code with the group's size, and video frames received (since
/// the last reconnection: a new peer counts afresh).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    reconnects: u64,
    code: String,
    in_group: usize,
    video_frames: u64,
}

fn latest(cli: &Cli) -> Option<Seen> {
    let out = cli.stdout();
    let line = out.lines().rev().find(|l| l.starts_with('{'))?;
    let v: Value = serde_json::from_str(line).ok()?;
    let video_frames = v["received"]
        .as_object()?
        .values()
        .filter(|t| t["kind"] == "video")
        .filter_map(|t| t["frames"].as_u64())
        .sum();
    Some(Seen {
        reconnects: v["reconnects"].as_u64()?,
        code: v["e2ee"]["security_code"].as_str()?.to_string(),
        in_group: v["e2ee"]["roster"].as_array()?.len(),
        video_frames,
    })
}

/// Both members' latest lines, once both hold `ok` and show one code.
fn together(a: &Cli, b: &Cli, ok: impl Fn(&Seen) -> bool) -> Option<(Seen, Seen)> {
    let (x, y) = (latest(a)?, latest(b)?);
    (ok(&x) && ok(&y) && x.code == y.code).then_some((x, y))
}

/// The code printed on the "Reconnected — new security code" line.
fn reconnected_code(cli: &Cli) -> Option<String> {
    cli.stderr().lines().find_map(|l| {
        let rest = l.strip_prefix("Reconnected — new security code: ")?;
        Some(rest.split_once(". ")?.0.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_of_its_node_native_members_resume_elsewhere_with_one_new_code_and_media() {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    let nodes = pair(&redis, &url).await;
    // node-0 sorts first: the least-loaded tie places the meeting there.
    let mut doomed = process_node(&redis, &url, "node-0").await;
    eventually(10, "three node records", async || {
        redis.cmd("SCARD conclave:nodes").trim() == ":3"
    })
    .await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Survives", "settings": {"waiting_room": false}}))
        .await;
    // Both join through node-a's address, which relays to the owner.
    let link = invite(&meeting);
    let member = |name: &str| {
        Cli::start(&[
            "join",
            &link,
            "--name",
            name,
            "--synthetic",
            "--stats",
            "--stats-interval",
            "0.5",
        ])
    };
    let ada = member("Ada");
    let bob = member("Bob");
    let start = Instant::now();
    let before = loop {
        if let Some(both) = together(&ada, &bob, |s| {
            s.reconnects == 0 && s.in_group == 2 && s.video_frames > 0
        }) {
            break both.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never both in one group receiving video\nAda:\n{}\nBob:\n{}",
            ada.stderr(),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lease_key = format!("GET conclave:lease:{}", meeting.id);
    assert!(
        redis.cmd(&lease_key).starts_with("node-0 "),
        "{}",
        redis.cmd(&lease_key)
    );

    // SIGKILL: no lease given up, nothing saved on the way out.
    doomed.child.kill().expect("SIGKILL");
    doomed.child.wait().expect("reaped");
    let killed = Instant::now();
    let (a, b) = loop {
        // Back, in one group of two with one code, and video counted on
        // the new peer connection.
        if let Some(both) = together(&ada, &bob, |s| {
            s.reconnects >= 1 && s.in_group == 2 && s.video_frames > 0
        }) {
            break both;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "not back with one code and media within 10 s of the kill: Ada {:?}, Bob {:?}\nAda:\n{}\nBob:\n{}",
            latest(&ada),
            latest(&bob),
            ada.stderr(),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "native members back in one group with media {:?} after SIGKILL of their node: {a:?} {b:?}",
        killed.elapsed()
    );
    assert_ne!(a.code, before.code, "the rebuilt group has a new code");
    let lease = redis.cmd(&lease_key);
    assert!(!lease.starts_with("node-0 "), "{lease}");
    // Each told its person why the code changed, with the new group's code.
    for cli in [&ada, &bob] {
        let told = reconnected_code(cli);
        assert!(
            told.as_ref()
                .is_some_and(|c| !c.is_empty() && *c != before.code),
            "no 'Reconnected — new security code' line:\n{}",
            cli.stderr()
        );
    }
    // The last code each printed is the one both show.
    for cli in [&ada, &bob] {
        let last = cli
            .stderr()
            .lines()
            .rev()
            .find_map(crate::native_cli::security_code_line)
            .map(|(_, _, code)| code);
        assert_eq!(last.as_deref(), Some(a.code.as_str()), "{}", cli.stderr());
    }
}

/// A TCP proxy on loopback whose connections can all be cut at once, as a
/// network blip cuts a member's meeting socket (media, on UDP straight to
/// the server, is not through it).
struct Cutter {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    async fn start(to: std::net::SocketAddr) -> Cutter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = std::sync::Arc::clone(&open);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let copy = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(copy.abort_handle());
            }
        });
        Cutter { addr, open, task }
    }

    /// Closes every connection through it (both ends see them close).
    fn cut(&self) -> usize {
        let open = std::mem::take(
            &mut *self
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for c in &open {
            c.abort();
        }
        open.len()
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_native_member_whose_socket_is_cut_resumes_in_the_same_group_with_media() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let link = invite(&meeting);
    let cutter = Cutter::start(server.addr).await;
    // Ada's meeting socket goes through the cutter; Bob's straight.
    let through = link.replace(
        &format!(":{}/", server.addr.port()),
        &format!(":{}/", cutter.addr.port()),
    );
    assert_ne!(through, link);
    let member = |link: &str, name: &str| {
        Cli::start(&[
            "join",
            link,
            "--name",
            name,
            "--synthetic",
            "--stats",
            "--stats-interval",
            "0.5",
        ])
    };
    let ada = member(&through, "Ada");
    let bob = member(&link, "Bob");
    let start = Instant::now();
    let before = loop {
        if let Some(both) = together(&ada, &bob, |s| {
            s.reconnects == 0 && s.in_group == 2 && s.video_frames > 0
        }) {
            break both.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never both in one group receiving video\nAda:\n{}\nBob:\n{}",
            ada.stderr(),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cutter.cut() >= 1, "Ada's socket was through the cutter");
    let cut = Instant::now();
    let (a, b) = loop {
        if let Some(both) = together(&ada, &bob, |s| s.in_group == 2 && s.video_frames > 0)
            && both.0.reconnects == 1
        {
            break both;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "Ada not back with media within 10 s: {:?}\nAda:\n{}\n{}",
            latest(&ada),
            ada.stderr(),
            ada.stdout().lines().last().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "Ada back with media {:?} after her socket was cut",
        cut.elapsed()
    );
    // Bob gets Ada's video from her new peer connection: his count goes on
    // rising after her old peer was replaced.
    let from = latest(&bob).map_or(0, |s| s.video_frames);
    let rising = Instant::now();
    while latest(&bob).map_or(0, |s| s.video_frames) < from + 50 {
        assert!(
            rising.elapsed() < Duration::from_secs(10),
            "Bob receives no more video from Ada: {:?}\n{}",
            latest(&bob),
            bob.stdout().lines().last().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same seat and group: the code did not change, nobody rebuilt.
    assert_eq!(a.code, before.code);
    assert_eq!(b.reconnects, 0);
    assert!(
        ada.stderr().lines().any(|l| l == "Reconnected."),
        "{}",
        ada.stderr()
    );
    assert!(reconnected_code(&ada).is_none(), "{}", ada.stderr());
}
