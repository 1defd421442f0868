//! `conclave join`, the real binary, in a meeting whose node is SIGKILLed:
//! each native member takes its seat back on the node that takes the
//! meeting over, sets the MLS group up again (told as "Reconnected — new
//! security code"), shows the same new code as the other member, and
//! receives media again on a new peer connection.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::cluster::{NodeOptions, ProcessNode, node_records, nodes};
use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::native_cli::{Cli, invite};

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

/// `conclave join` at `link` as `name`, sending synthetic media and
/// printing its stats every half second (the cascade tests use it too).
pub(super) fn member(link: &str, name: &str) -> Cli {
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
}

/// Waits, up to 30 s, until both are in one group of two receiving video,
/// neither having reconnected; what Ada's line says then.
async fn both_receiving(ada: &Cli, bob: &Cli) -> Seen {
    let start = Instant::now();
    loop {
        if let Some(both) = together(ada, bob, |s| {
            s.reconnects == 0 && s.in_group == 2 && s.video_frames > 0
        }) {
            return both.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never both in one group receiving video\nAda:\n{}\nBob:\n{}",
            ada.stderr(),
            bob.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    native_members_resume_after("KILL").await;
}

/// Drained, the node hands the meeting over. A resume relayed to it before
/// it has is answered `shutting_down`, which the members must wait out
/// (e2e/cluster.test.js met that; here the timing rarely gives it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigterm_of_its_node_native_members_resume_elsewhere_with_one_new_code_and_media() {
    native_members_resume_after("TERM").await;
}

/// Two native members in a meeting run by a `conclave serve` process that
/// gets `signal` (`KILL` or `TERM`): both come back by themselves within
/// 10 s, in one rebuilt group with a new code, told so, receiving video.
async fn native_members_resume_after(signal: &str) {
    let redis = Redis::start();
    let url = Postgres::shared().fresh_database().await;
    // Two nodes in this process, relaying to each other and to node-0, a
    // process: it sorts first, so the least-loaded tie places the meeting there.
    let opts = NodeOptions::default();
    let nodes = nodes(&redis, &url, &["node-a", "node-b"], opts, |_| {}).await;
    let mut doomed = ProcessNode::start(&redis, &url, "node-0", opts).await;
    node_records(&redis, 3).await;
    let alice = nodes[0].signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Survives", "settings": {"waiting_room": false}}))
        .await;
    // Both join through node-a's address, which relays to the owner.
    let link = invite(&meeting);
    let ada = member(&link, "Ada");
    let bob = member(&link, "Bob");
    let before = both_receiving(&ada, &bob).await;
    let lease_key = format!("GET conclave:lease:{}", meeting.id);
    assert!(
        redis.cmd(&lease_key).starts_with("node-0 "),
        "{}",
        redis.cmd(&lease_key)
    );

    // SIGKILL: no lease given up, nothing saved on the way out. SIGTERM:
    // the node drains, handing the meeting over, and exits.
    let killed = if signal == "KILL" {
        doomed.kill()
    } else {
        doomed.signal(signal)
    };
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
        "native members back in one group with media {:?} after SIG{signal} of their node: {a:?} {b:?}",
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
    let ada = member(&through, "Ada");
    let bob = member(&link, "Bob");
    let before = both_receiving(&ada, &bob).await;
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
