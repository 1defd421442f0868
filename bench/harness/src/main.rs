//! `conclave-bench`: drives Conclave or Janus with a defined load for a fixed
//! time and measures what the server costs.
//!
//! Load: rooms × publishers × subscribers. Each publisher sends synthetic
//! video (130 one-packet frames/s of 1,100 bytes) and audio (50 frames/s of
//! 100 bytes), every frame stamped with its send time and a counter; every
//! participant receives every publisher of its room except itself. With
//! `--audio-senders N`, N of the subscribers send audio too (a meeting where
//! everyone talks and a few show video). All participants are str0m peers
//! of `conclave-client` in this one process.
//!
//! Figures (printed as one JSON object on the last line of output):
//! - `cpu_s_per_1000_packets`: utime+stime of the server process only, over
//!   the measuring window, per 1,000 packets the clients received in it;
//! - `forwarded_pps`, `loss`, `latency_p50_us`, `latency_p99_us`;
//! - `rss_per_participant_kib` under load, `rss_per_idle_participant_kib`;
//! - `join_ms_p50`/`join_ms_max`: a subscriber's start (before its signaling
//!   connection opens) to its first media frame;
//! - `admit_100_ms` (Conclave only): a host's `admit_all` to the last of 100
//!   waiting people learning it is in;
//! - `saturation_pps`: with `--saturation`, the highest forwarded packets/s
//!   of a step whose loss stayed under 1 %.
//!
//! A benchmark, not a test: it reports and asserts nothing.

mod conclave_target;
mod janus;
mod participant;
mod proc;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use participant::{Outcome, Phase, Sends};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    Conclave,
    Janus,
}

#[derive(Parser, Debug)]
#[command(about = "Load harness for Conclave and Janus")]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// The conclave binary (target conclave).
    #[arg(long, default_value = "target/release/conclave")]
    conclave: PathBuf,
    /// `--media-workers` passed to conclave serve, if given.
    #[arg(long)]
    media_workers: Option<usize>,
    /// The janus binary (target janus).
    #[arg(long, default_value = "/usr/bin/janus")]
    janus: PathBuf,
    /// Janus's configuration folder.
    #[arg(long, default_value = "bench/janus")]
    janus_config: PathBuf,
    /// The server's media address (the namespace's veth end).
    #[arg(long, default_value = "10.77.0.1")]
    server_ip: IpAddr,
    /// The clients' media address (the other veth end).
    #[arg(long, default_value = "10.77.0.2")]
    client_ip: IpAddr,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    #[arg(long, default_value_t = 4)]
    subscribers: usize,
    /// Of the subscribers, how many also send audio (Conclave only): with
    /// it, a meeting where everyone talks and a few show video.
    #[arg(long, default_value_t = 0)]
    audio_senders: usize,
    /// Length of the measuring window.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Time between the last join and the window.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Idle participants for the memory figure (0: skip).
    #[arg(long, default_value_t = 20)]
    idle: usize,
    /// Waiting participants admitted at once (Conclave; 0: skip).
    #[arg(long, default_value_t = 100)]
    admit: usize,
    /// Step the number of subscribers of one room up until loss passes 1 %.
    #[arg(long)]
    saturation: bool,
    /// Seconds per saturation step.
    #[arg(long, default_value_t = 6)]
    step_seconds: u64,
    /// Conclave participants offer no UDP: all media over ICE-TCP.
    #[arg(long)]
    tcp: bool,
    /// `SO_RCVBUF` of every participant's UDP socket, in bytes (Linux
    /// doubles it); 0 keeps the system's default. The default is what
    /// libwebrtc asks for when it receives video.
    #[arg(long, default_value_t = participant::DEFAULT_RCVBUF)]
    client_rcvbuf: usize,
    /// Conclave participants offer no candidate of their own and carry
    /// their media through the TURN relays the server names in `joined`
    /// (`--turn-url`), as `conclave join --relay-only` does.
    #[arg(long, conflicts_with = "tcp", requires = "turn_url")]
    relay: bool,
    /// A TURN URL the Conclave server hands its members (`conclave serve
    /// --turn-url`, the secret from CONCLAVE_TURN_SECRET); repeatable.
    #[arg(long, value_name = "URL")]
    turn_url: Vec<String>,
    /// CA certificates (PEM) trusted for a `turns:` relay.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Audio carries RFC 6464 levels, steady and different for each
    /// member (publishers from -20 dBov, then the audio senders, 2 dB
    /// apart), so the server's last-N audio has voices to rank. Without
    /// it the audio has no level and every track is forwarded.
    #[arg(long)]
    audio_levels: bool,
    /// `audio_last_n` for the Conclave server (0: no limit); unset: the
    /// build's default.
    #[arg(long)]
    audio_last_n: Option<usize>,
    /// Pin the Conclave server to these CPUs (`taskset -c`, e.g. `1`); pin
    /// this process with `taskset -c 0 conclave-bench …`.
    #[arg(long)]
    server_cpus: Option<String>,
    /// `spread_meetings_from` for the Conclave server: a meeting with this
    /// many members spreads over the media workers (issue 23); unset: the
    /// build's default (50; 0 keeps every meeting on one worker).
    #[arg(long)]
    spread_from: Option<usize>,
    /// Two Conclave nodes cascading the meeting (issue 23): a
    /// redis-server of its own on 127.0.0.1:16399, node-a (signaling on
    /// 18080, every participant joins through it) and node-b (18081, media
    /// from port 10100), both with `cascade_meetings_from` = this and a
    /// media link on loopback; the output adds node-b's CPU.
    #[arg(long)]
    cascade_from: Option<usize>,
}

/// node-b's pid in a cascade run, for its CPU over the window.
static NODE_B_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

impl Args {
    /// The level member `i` of a room talks at, if levels are on.
    fn level(&self, i: usize) -> Option<u8> {
        self.audio_levels
            .then(|| u8::try_from(20 + 2 * i).unwrap_or(126).min(126))
    }
}

enum Running {
    Conclave(conclave_target::Server),
    Janus(janus::Server),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Conclave(s) => s.pid,
            Running::Janus(s) => s.pid,
        }
    }
}

/// The figures of one load run.
#[derive(Debug, Default)]
struct Run {
    participants: usize,
    packets: u64,
    seconds: f64,
    cpu_s: f64,
    expected: u64,
    received: u64,
    latencies: Vec<u32>,
    joins_ms: Vec<f64>,
    /// Packets the participants sent through a relay, by how they reached
    /// it (`--relay`): shows the relay transport the run measured.
    relay_packets_by: std::collections::BTreeMap<&'static str, u64>,
    rss_delta: i64,
    errors: Vec<String>,
    /// CPU seconds of each media worker thread over the window.
    worker_cpu_s: std::collections::BTreeMap<String, f64>,
    /// node-b's CPU seconds over the window (`--cascade-from`).
    node_b_cpu_s: Option<f64>,
}

impl Run {
    fn pps(&self) -> f64 {
        self.packets as f64 / self.seconds.max(1e-9)
    }
    fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 1.0;
        }
        1.0 - self.received.min(self.expected) as f64 / self.expected as f64
    }
}

fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

static ROOM_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

/// Joins rooms × (publishers + subscribers), measures a window, stops.
async fn load(
    args: &Args,
    server: &Running,
    rooms: usize,
    publishers: usize,
    subscribers: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let pid = server.pid();
    let (phase_tx, phase) = watch::channel(Phase::Warmup);
    let rss_before = proc::rss_bytes(pid)? as i64;
    let mut tasks: Vec<(bool, JoinHandle<Outcome>)> = Vec::new();
    for r in 0..rooms {
        match server {
            Running::Conclave(s) => {
                let invite = s.meeting(false).await?;
                for p in 0..publishers {
                    let t = tokio::spawn(conclave_target::participant(
                        invite.clone(),
                        format!("pub{r}-{p}"),
                        Sends::AudioVideo,
                        args.level(p),
                        args.client_ip,
                        phase.clone(),
                    ));
                    tasks.push((false, t));
                }
                // Subscribers join once publishers send, for the join time.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                for i in 0..subscribers {
                    let sends = if i < args.audio_senders {
                        Sends::Audio
                    } else {
                        Sends::Nothing
                    };
                    let t = tokio::spawn(conclave_target::participant(
                        invite.clone(),
                        format!("sub{r}-{i}"),
                        sends,
                        args.level(publishers + i),
                        args.client_ip,
                        phase.clone(),
                    ));
                    tasks.push((true, t));
                }
            }
            Running::Janus(s) => {
                let room = ROOM_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                janus::create_room(&s.api, room, publishers + 1).await?;
                let mut feeds = Vec::new();
                for p in 0..publishers {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let t = tokio::spawn(janus::publisher(
                        s.api.clone(),
                        room,
                        format!("pub{r}-{p}"),
                        args.client_ip,
                        tx,
                        phase.clone(),
                    ));
                    tasks.push((false, t));
                    feeds.push(rx);
                }
                let mut ids = Vec::new();
                for f in feeds {
                    if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_secs(30), f).await {
                        ids.push(id);
                    }
                }
                anyhow::ensure!(!ids.is_empty() || publishers == 0, "no publisher got in");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                // A publisher receives the others, as in Conclave: in Janus
                // that is a second handle subscribed to their feeds.
                if ids.len() > 1 {
                    for (i, _) in ids.iter().enumerate() {
                        let others: Vec<u64> = ids
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, id)| *id)
                            .collect();
                        let t = tokio::spawn(janus::subscriber(
                            s.api.clone(),
                            room,
                            others,
                            args.client_ip,
                            phase.clone(),
                        ));
                        tasks.push((false, t));
                    }
                }
                for _ in 0..subscribers {
                    let t = tokio::spawn(janus::subscriber(
                        s.api.clone(),
                        room,
                        ids.clone(),
                        args.client_ip,
                        phase.clone(),
                    ));
                    tasks.push((true, t));
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let cpu0 = proc::cpu_seconds(pid)?;
    let threads0 = proc::thread_cpu_seconds(pid, "media-").unwrap_or_default();
    let node_b0 = NODE_B_PID.get().and_then(|&p| proc::cpu_seconds(p).ok());
    let t0 = Instant::now();
    let _ = phase_tx.send(Phase::Window);
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    let rss_mid = proc::rss_bytes(pid)? as i64;
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    let _ = phase_tx.send(Phase::Done);
    let cpu1 = proc::cpu_seconds(pid)?;
    let threads1 = proc::thread_cpu_seconds(pid, "media-").unwrap_or_default();
    let node_b1 = NODE_B_PID.get().and_then(|&p| proc::cpu_seconds(p).ok());
    let elapsed = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = phase_tx.send(Phase::Stop);
    let mut run = Run {
        participants: rooms * (publishers + subscribers),
        seconds: elapsed,
        cpu_s: cpu1 - cpu0,
        node_b_cpu_s: node_b0.zip(node_b1).map(|(c0, c1)| c1 - c0),
        rss_delta: rss_mid - rss_before,
        worker_cpu_s: threads1
            .iter()
            .map(|(name, t1)| {
                let t0 = threads0.get(name).copied().unwrap_or(0.0);
                (name.clone(), t1 - t0)
            })
            .collect(),
        ..Run::default()
    };
    for (is_subscriber, t) in tasks {
        let o = t.await?;
        if let Some(e) = &o.error {
            run.errors.push(e.clone());
        }
        run.packets += o.window_frames.1.saturating_sub(o.window_frames.0);
        for (via, n) in &o.stats.relay_packets_by {
            *run.relay_packets_by.entry(via).or_default() += n;
        }
        for track in o.stats.received.values() {
            run.received += track.frames;
            if let Some((lo, hi)) = track.synthetic_seq {
                run.expected += hi - lo + 1;
            }
            run.latencies.extend_from_slice(&track.latencies_us);
        }
        if is_subscriber
            && let (Some(start), Some(first)) = (
                o.started,
                o.stats
                    .received
                    .values()
                    .filter_map(|t| t.first_frame_at)
                    .min(),
            )
        {
            run.joins_ms.push((first - start).as_secs_f64() * 1000.0);
        }
    }
    run.latencies.sort_unstable();
    run.joins_ms.sort_by(f64::total_cmp);
    // Let the server drop the sessions before the next step.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(run)
}

/// RSS growth per participant that joined and set up media but sends nothing.
async fn idle_memory(args: &Args, server: &Running, n: usize) -> anyhow::Result<Option<f64>> {
    let Running::Conclave(s) = server else {
        // A Janus participant with a PeerConnection is a publisher or a
        // subscriber to a feed; there is no idle equivalent to compare.
        return Ok(None);
    };
    let pid = server.pid();
    let before = proc::rss_bytes(pid)? as f64;
    let (phase_tx, phase) = watch::channel(Phase::Warmup);
    let invite = s.meeting(false).await?;
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(conclave_target::participant(
            invite.clone(),
            format!("idle{i}"),
            Sends::Nothing,
            None,
            args.client_ip,
            phase.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = proc::rss_bytes(pid)? as f64;
    let _ = phase_tx.send(Phase::Stop);
    for t in tasks {
        if let Some(e) = t.await?.error {
            tracing_free_warn(&e);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Some((after - before) / n as f64 / 1024.0))
}

fn tracing_free_warn(e: &str) {
    eprintln!("warning: {e}");
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG (e.g. `str0m=debug`) shows the client peers' ICE and DTLS on
    // stderr; stdout stays the one JSON line the scripts read.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = Args::parse();
    participant::TCP_ONLY.store(args.tcp, std::sync::atomic::Ordering::Relaxed);
    participant::CLIENT_RCVBUF.store(args.client_rcvbuf, std::sync::atomic::Ordering::Relaxed);
    if args.relay {
        let _ = participant::RELAY_ONLY.set(args.ca_file.clone());
    }
    // The Janus side has no audio-only publisher: a comparison would not be
    // the same load.
    anyhow::ensure!(
        args.audio_senders == 0 || args.target == Target::Conclave,
        "--audio-senders is for --target conclave only"
    );
    let tuning = |node: &str, link: u16| conclave_target::Tuning {
        audio_last_n: args.audio_last_n,
        server_cpus: args.server_cpus.clone(),
        turn_urls: args.turn_url.clone(),
        spread_from: args.spread_from,
        cluster: args
            .cascade_from
            .map(|cascade_from| conclave_target::ClusterNode {
                node_id: node.into(),
                redis_url: format!("redis://127.0.0.1:{REDIS_PORT}"),
                cascade_from,
                media_link_port: link,
            }),
    };
    let mut redis = None;
    let mut node_b = None;
    if args.cascade_from.is_some() {
        anyhow::ensure!(
            args.target == Target::Conclave,
            "--cascade-from is for --target conclave"
        );
        redis = Some(start_redis().await?);
    }
    let server = match args.target {
        Target::Conclave => Running::Conclave(
            conclave_target::Server::start(
                &args.conclave,
                args.server_ip,
                18080,
                10000,
                args.media_workers,
                &tuning("node-a", 17001),
            )
            .await?,
        ),
        Target::Janus => Running::Janus(
            janus::Server::start(&args.janus, &args.janus_config, args.server_ip).await?,
        ),
    };
    if args.cascade_from.is_some() {
        let b = conclave_target::Server::start(
            &args.conclave,
            args.server_ip,
            18081,
            10100,
            args.media_workers,
            &tuning("node-b", 17002),
        )
        .await?;
        let _ = NODE_B_PID.set(b.pid);
        node_b = Some(b);
        // Placement reads the node records every 0.5 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.pid();
    let rss_idle_server = proc::rss_bytes(pid)?;
    let mut out = json!({
        "target": format!("{:?}", args.target).to_lowercase(),
        "rooms": args.rooms,
        "transport": if args.relay { "relay" } else if args.tcp { "tcp" } else { "udp" },
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "audio_senders": args.audio_senders,
        "audio_levels": args.audio_levels,
        "audio_last_n": args.audio_last_n,
        "server_rss_idle_mib": round(rss_idle_server as f64 / 1048576.0, 1),
    });
    if args.idle > 0 {
        let idle = idle_memory(&args, &server, args.idle).await?;
        out["rss_per_idle_participant_kib"] =
            idle.map(|v| json!(round(v, 0))).unwrap_or(Value::Null);
        eprintln!("idle memory: {idle:?} KiB per participant");
    }
    let run = load(
        &args,
        &server,
        args.rooms,
        args.publishers,
        args.subscribers,
        args.seconds,
    )
    .await?;
    eprintln!(
        "load: {} packets in {:.1} s, cpu {:.3} s, loss {:.4}, {} errors",
        run.packets,
        run.seconds,
        run.cpu_s,
        run.loss(),
        run.errors.len()
    );
    for e in run.errors.iter().take(5) {
        eprintln!("  error: {e}");
    }
    out["participants"] = json!(run.participants);
    out["forwarded_packets"] = json!(run.packets);
    out["forwarded_pps"] = json!(round(run.pps(), 0));
    // Per Opus frame time: with audio only, the packets a 20 ms frame costs.
    out["forwarded_per_20ms"] = json!(round(run.pps() / 50.0, 1));
    out["server_cpu_share"] = json!(round(run.cpu_s / run.seconds.max(1e-9), 3));
    out["server_cpu_s"] = json!(round(run.cpu_s, 3));
    // Each media worker's share of a core over the window: a meeting spread
    // over the workers keeps all of them busy.
    out["worker_cpu_share"] = json!(
        run.worker_cpu_s
            .iter()
            .map(|(name, s)| (name.clone(), json!(round(s / run.seconds.max(1e-9), 3))))
            .collect::<serde_json::Map<_, _>>()
    );
    out["spread_from"] = json!(args.spread_from);
    out["cascade_from"] = json!(args.cascade_from);
    out["node_b_cpu_share"] = json!(
        run.node_b_cpu_s
            .map(|s| round(s / run.seconds.max(1e-9), 3))
    );
    out["cpu_s_per_1000_packets"] = if run.packets > 0 {
        json!(round(run.cpu_s / (run.packets as f64 / 1000.0), 4))
    } else {
        Value::Null
    };
    out["loss"] = json!(round(run.loss(), 5));
    out["latency_p50_us"] = json!(percentile(&run.latencies, 0.50));
    out["latency_p99_us"] = json!(percentile(&run.latencies, 0.99));
    out["rss_per_participant_kib"] = json!(round(
        run.rss_delta as f64 / run.participants.max(1) as f64 / 1024.0,
        0
    ));
    out["join_ms_p50"] = json!(
        run.joins_ms
            .get(run.joins_ms.len() / 2)
            .map(|v| round(*v, 1))
    );
    out["join_ms_max"] = json!(run.joins_ms.last().map(|v| round(*v, 1)));
    if args.relay {
        out["relay_packets_out"] = json!(run.relay_packets_by);
    }
    out["errors"] = json!(run.errors.len());

    out["admit_100_ms"] = Value::Null;
    if args.admit > 0
        && let Running::Conclave(s) = &server
    {
        match conclave_target::admit_time(s, args.admit).await {
            Ok(d) => out["admit_100_ms"] = json!(round(d.as_secs_f64() * 1000.0, 1)),
            Err(e) => eprintln!("admission: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    out["saturation_pps"] = Value::Null;
    if args.saturation {
        let mut best: Option<(usize, f64)> = None;
        let mut steps = Vec::new();
        for subs in [4usize, 8, 16, 24, 32, 48, 64, 96] {
            let r = load(&args, &server, 1, 2, subs, args.step_seconds).await?;
            eprintln!(
                "saturation step 2x{subs}: {:.0} pps, loss {:.4}, cpu {:.3} s / 1000 pkts",
                r.pps(),
                r.loss(),
                r.cpu_s / (r.packets.max(1) as f64 / 1000.0)
            );
            steps.push(
                json!({"subscribers": subs, "pps": round(r.pps(), 0), "loss": round(r.loss(), 4)}),
            );
            if r.loss() > 0.01 || !r.errors.is_empty() && r.packets == 0 {
                break;
            }
            best = Some((subs, r.pps()));
        }
        out["saturation_steps"] = json!(steps);
        out["saturation_pps"] = json!(best.map(|b| round(b.1, 0)));
    }
    match server {
        Running::Conclave(mut s) => {
            let _ = s.child.kill().await;
        }
        Running::Janus(mut s) => {
            let _ = s.child.kill().await;
        }
    }
    if let Some(mut b) = node_b {
        let _ = b.child.kill().await;
    }
    if let Some(mut r) = redis {
        let _ = r.kill().await;
    }
    println!("{out}");
    Ok(())
}

/// The cascade's Redis port (`--cascade-from`).
const REDIS_PORT: u16 = 16399;

/// A redis-server of the run's own, no persistence; returned answering.
async fn start_redis() -> anyhow::Result<tokio::process::Child> {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &REDIS_PORT.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting redis-server: {e}"))?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", REDIS_PORT))
            .await
            .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("redis-server did not come up")
}
