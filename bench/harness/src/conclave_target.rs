//! The Conclave target: start `conclave serve`, make an account and
//! meetings over the HTTP API, join participants over the meeting WebSocket.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use conclave_client::media::ClientPeer;
use conclave_client::relay::RelayFallback;
use conclave_client::{Invite, Signaling};
use conclave_proto::{ClientMessage, ServerMessage};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::participant::{self, Channel, Outcome, Phase, Sends};

const PASSWORD: &str = "benchmark password 1";
/// How long a participant waits for admission.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Server {
    pub child: Child,
    pub pid: u32,
    http: reqwest::Client,
    base: String,
    _dir: TempDir,
}

/// The server setting that limits new guest identities per network.
const MINT_LIMIT_KEY: &str = "new_guests_per_minute";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the server under test is set up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// `audio_last_n` in its configuration (0: no limit); unset: the
    /// build's default.
    pub audio_last_n: Option<usize>,
    /// CPUs to pin the server to (`taskset -c`).
    pub server_cpus: Option<String>,
    /// `--turn-url` for each (the secret from CONCLAVE_TURN_SECRET, which
    /// the server inherits).
    pub turn_urls: Vec<String>,
    /// `spread_meetings_from` in its configuration; unset: the build's
    /// default.
    pub spread_from: Option<usize>,
    /// A node of a cascading cluster (`--cascade-from`); unset: one
    /// server on its own.
    pub cluster: Option<ClusterNode>,
}

/// The cluster settings of one node of a two-node cascade on one Redis.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub node_id: String,
    pub redis_url: String,
    /// `cascade_meetings_from`.
    pub cascade_from: usize,
    /// The media link's UDP port on 127.0.0.1.
    pub media_link_port: u16,
}

/// The bench's cluster secret (any 32 characters or more).
const CLUSTER_SECRET: &str = "conclave bench cluster secret, 32+ characters";

impl Server {
    /// Starts `binary serve` with signaling on 127.0.0.1:`http_port` and
    /// media on `media_ip`:`media_port`, and signs in an account.
    pub async fn start(
        binary: &Path,
        media_ip: IpAddr,
        http_port: u16,
        media_port: u16,
        workers: Option<usize>,
        tuning: &Tuning,
    ) -> anyhow::Result<Server> {
        // Per port too: a cascade runs two servers from this process.
        let dir =
            std::env::temp_dir().join(format!("conclave-bench-{}-{http_port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let mut create = Command::new(binary)
            .args([
                "admin",
                "create-user",
                "bench",
                "--password-stdin",
                "--data-dir",
            ])
            .arg(&dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("running conclave admin create-user")?;
        if let Some(mut stdin) = create.stdin.take() {
            stdin.write_all(PASSWORD.as_bytes()).await?;
        }
        anyhow::ensure!(create.wait().await?.success(), "create-user failed");
        let config = dir.0.join("bench.toml");
        // Every participant connects without a guest cookie from 127.0.0.1,
        // so each mints a guest identity. Builds that limit minting know the
        // setting (its name is in the binary); older ones would refuse it as
        // an unknown key, and bench/compare-builds runs both.
        let mints = std::fs::read(binary)
            .context("reading the conclave binary")?
            .windows(MINT_LIMIT_KEY.len())
            .any(|w| w == MINT_LIMIT_KEY.as_bytes());
        let mint_limit = if mints {
            format!("{MINT_LIMIT_KEY} = 1000000\n")
        } else {
            String::new()
        };
        // Only when asked: builds without the setting refuse it.
        let last_n = tuning
            .audio_last_n
            .map(|n| format!("audio_last_n = {n}\n"))
            .unwrap_or_default();
        let spread = tuning
            .spread_from
            .map(|n| format!("spread_meetings_from = {n}\n"))
            .unwrap_or_default();
        let (cascade, cluster) = match &tuning.cluster {
            Some(c) => (
                format!("cascade_meetings_from = {}\n", c.cascade_from),
                format!(
                    "[cluster]\nredis_url = \"{}\"\nnode_id = \"{}\"\n\
                     internal_url = \"http://127.0.0.1:{http_port}\"\nsecret = \"{CLUSTER_SECRET}\"\n\
                     media_link_addr = \"127.0.0.1:{}\"\n",
                    c.redis_url, c.node_id, c.media_link_port
                ),
            ),
            None => (String::new(), String::new()),
        };
        std::fs::write(
            &config,
            format!(
                "media_listen = \"{media_ip}:{media_port}\"\n{last_n}{spread}{cascade}\
                 [limits]\nmax_pending_per_address = 1000\nmessage_burst = 1000\nmessages_per_sec = 1000\n\
                 {mint_limit}{cluster}"
            ),
        )?;
        // The server alone on the cores it is given, so that its figures are
        // not the clients' (taskset execs it: the pid stays the server's).
        let mut cmd = match &tuning.server_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--data-dir")
            .arg(&dir.0)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(n) = workers {
            cmd.arg("--media-workers").arg(n.to_string());
        }
        for url in &tuning.turn_urls {
            cmd.arg("--turn-url").arg(url);
        }
        let child = cmd.spawn().context("starting conclave serve")?;
        let pid = child.id().context("server pid")?;
        let base = format!("http://127.0.0.1:{http_port}");
        let http = reqwest::Client::builder().cookie_store(true).build()?;
        let mut up = false;
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(up, "conclave did not come up");
        let r = http
            .post(format!("{base}/api/v1/auth/signin"))
            .json(&json!({"username": "bench", "password": PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "sign-in: {}", r.status());
        Ok(Server {
            child,
            pid,
            http,
            base,
            _dir: dir,
        })
    }

    /// A new meeting; returns its invite link.
    pub async fn meeting(&self, waiting_room: bool) -> anyhow::Result<Invite> {
        let v: Value = self
            .http
            .post(format!("{}/api/v1/meetings", self.base))
            .json(&json!({"settings": {"waiting_room": waiting_room, "max_participants": 1000}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let link = v["invite_link"]
            .as_str()
            .context("no invite_link")?
            .replace("localhost", "127.0.0.1");
        Ok(link.parse()?)
    }

    /// A personal API token, to join as host.
    pub async fn token(&self) -> anyhow::Result<String> {
        let v: Value = self
            .http
            .post(format!("{}/api/v1/tokens", self.base))
            .json(&json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["token"].as_str().context("no token")?.to_string())
    }
}

/// Joins `invite` and runs media until the run stops.
pub async fn participant(
    invite: Invite,
    name: String,
    sends: Sends,
    audio_level: Option<u8>,
    bind: IpAddr,
    phase: watch::Receiver<Phase>,
) -> Outcome {
    let started = Instant::now();
    let outcome = Outcome {
        started: Some(started),
        ..Outcome::default()
    };
    let setup = async {
        let mut sig = Signaling::connect(&invite, None).await?;
        let admission = sig
            .join(&name, invite.passcode.as_deref(), false, PATIENCE)
            .await?;
        let relay = participant::relay_only()
            .map(|ca| RelayFallback::new(&admission.ice_servers, true, ca))
            .transpose()?;
        if let Some(relay) = &relay {
            relay.check()?;
        }
        if sends != Sends::Nothing {
            sig.send(&ClientMessage::SetMedia {
                audio: Some(true),
                video: Some(sends == Sends::AudioVideo),
                screen: None,
            })
            .await?;
        }
        let (socket, local) = participant::bind(bind).await?;
        let (mut peer, offer) = if participant::tcp_only() || relay.is_some() {
            ClientPeer::new_tcp_only(sends.sources(), Instant::now())?
        } else {
            ClientPeer::new(local, sends.sources(), Instant::now())?
        };
        peer.set_audio_level(audio_level);
        sig.send(&offer).await?;
        anyhow::Ok((sig, socket, peer, relay))
    };
    match setup.await {
        Ok((sig, socket, peer, relay)) => {
            participant::run_media(
                peer,
                socket,
                Channel::Conclave(Box::new(sig)),
                relay,
                phase,
                outcome,
            )
            .await
        }
        Err(e) => Outcome {
            error: Some(format!("join: {e}")),
            ..outcome
        },
    }
}

/// Time for a host to admit `n` people waiting in a meeting's waiting room:
/// from the host's `admit_all` to the last of them learning it is in.
pub async fn admit_time(server: &Server, n: usize) -> anyhow::Result<Duration> {
    let invite = server.meeting(true).await?;
    let token = server.token().await?;
    let mut host = Signaling::connect(&invite, Some(&token)).await?;
    host.join("host", invite.passcode.as_deref(), false, PATIENCE)
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(n);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    for i in 0..n {
        let invite = invite.clone();
        let tx = tx.clone();
        let ready_tx = ready_tx.clone();
        tokio::spawn(async move {
            let Ok(mut sig) = Signaling::connect(&invite, None).await else {
                return;
            };
            let join = ClientMessage::Join {
                name: format!("waiting {i}"),
                passcode: invite.passcode.clone(),
                recorder: false,
            };
            if sig.send(&join).await.is_err() {
                return;
            }
            while let Ok(Some(msg)) = sig.recv().await {
                match msg {
                    ServerMessage::Waiting { .. } => {
                        let _ = ready_tx.send(()).await;
                    }
                    ServerMessage::Joined { .. } => {
                        let _ = tx.send(Instant::now()).await;
                        break;
                    }
                    _ => {}
                }
            }
            // Stay until the measurement is over, then leave.
            tokio::time::sleep(Duration::from_secs(2)).await;
            sig.close().await;
        });
    }
    drop(tx);
    drop(ready_tx);
    for _ in 0..n {
        tokio::time::timeout(PATIENCE, ready_rx.recv())
            .await
            .context("waiting participants")?
            .context("a waiting participant failed")?;
    }
    // The host's view of the waiting room must hold all of them.
    let deadline = Instant::now() + PATIENCE;
    loop {
        anyhow::ensure!(Instant::now() < deadline, "waiting room never filled");
        match tokio::time::timeout(Duration::from_secs(5), host.recv()).await {
            Ok(Ok(Some(ServerMessage::WaitingRoom { waiting }))) if waiting.len() >= n => break,
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None)) | Ok(Err(_)) => anyhow::bail!("host connection lost"),
        }
    }
    let start = Instant::now();
    host.send(&ClientMessage::AdmitAll).await?;
    let mut last = start;
    for _ in 0..n {
        let at = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .context("admission")?
            .context("a participant was never admitted")?;
        last = last.max(at);
    }
    host.close().await;
    Ok(last - start)
}
