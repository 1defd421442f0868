//! The Janus target: Janus 1.1.2's HTTP API and its videoroom plugin.
//!
//! Each benchmark participant has its own Janus session. A publisher attaches
//! the videoroom plugin and sends `joinandconfigure` with str0m's offer; a
//! subscriber joins as a subscriber to every publisher's feed and answers
//! Janus's offer (str0m as the answerer). Events come by long poll on the
//! session (`GET /janus/<session>`).

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use conclave_client::media::ClientPeer;
use conclave_proto::ClientMessage;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::participant::{self, Channel, Outcome, Phase};

/// How long one setup step may take.
const STEP: Duration = Duration::from_secs(30);

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

pub struct Server {
    pub child: Child,
    pub pid: u32,
    pub api: Api,
}

impl Server {
    /// Starts `janus -F <config_dir>` in the foreground; its HTTP API listens
    /// on `ip`:8088 (see bench/janus/janus.transport.http.jcfg).
    pub async fn start(binary: &Path, config_dir: &Path, ip: IpAddr) -> anyhow::Result<Server> {
        let child = Command::new(binary)
            .arg("-F")
            .arg(config_dir)
            .arg("-C")
            .arg(config_dir.join("janus.jcfg"))
            // JANUS_BENCH_LOG=1 shows Janus's log, for debugging a setup;
            // libnice's (`nice_debug = true` in janus.jcfg) goes to stderr.
            .stdout(if std::env::var_os("JANUS_BENCH_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if std::env::var_os("JANUS_BENCH_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .context("starting janus")?;
        let pid = child.id().context("janus pid")?;
        let api = Api::new(format!("http://{ip}:8088/janus"))?;
        let mut up = false;
        for _ in 0..200 {
            if api
                .http
                .get(format!("{}/info", api.base))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(up, "janus did not come up");
        Ok(Server { child, pid, api })
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// One session with the videoroom plugin attached.
pub struct Handle {
    api: Api,
    session: u64,
    handle: u64,
    /// Janus's ICE candidates, trickled as events (its SDP carries none).
    candidates: std::sync::Mutex<Vec<String>>,
}

impl Api {
    fn new(base: String) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api { http, base })
    }

    async fn post(&self, url: &str, mut body: Value) -> anyhow::Result<Value> {
        body["transaction"] = json!(transaction());
        let v: Value = self.http.post(url).json(&body).send().await?.json().await?;
        if v["janus"] == "error" {
            anyhow::bail!("janus: {}", v["error"]);
        }
        Ok(v)
    }

    /// A new session with the videoroom plugin attached.
    pub async fn attach(&self) -> anyhow::Result<Handle> {
        let v = self.post(&self.base, json!({"janus": "create"})).await?;
        let session = v["data"]["id"].as_u64().context("no session id")?;
        let v = self
            .post(
                &format!("{}/{session}", self.base),
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        let handle = v["data"]["id"].as_u64().context("no handle id")?;
        Ok(Handle {
            api: self.clone(),
            session,
            handle,
            candidates: std::sync::Mutex::new(Vec::new()),
        })
    }
}

impl Handle {
    fn url(&self) -> String {
        format!("{}/{}/{}", self.api.base, self.session, self.handle)
    }

    /// A synchronous plugin request (e.g. `create`): the answer's plugin data.
    pub async fn request(&self, body: Value) -> anyhow::Result<Value> {
        let v = self
            .api
            .post(&self.url(), json!({"janus": "message", "body": body}))
            .await?;
        let data = v["plugindata"]["data"].clone();
        if data["videoroom"] == "event" && data.get("error").is_some() {
            anyhow::bail!("videoroom: {}", data["error"]);
        }
        Ok(data)
    }

    /// An asynchronous plugin request; waits for its event, returns the
    /// plugin data and the JSEP that came with it.
    pub async fn message(
        &self,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<(Value, Option<Value>)> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.api.post(&self.url(), msg).await?;
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            for e in self.poll().await? {
                if e["janus"] != "event" || e["sender"].as_u64() != Some(self.handle) {
                    continue;
                }
                let data = e["plugindata"]["data"].clone();
                if let Some(err) = data.get("error") {
                    anyhow::bail!("videoroom: {err}");
                }
                return Ok((data, e.get("jsep").cloned()));
            }
        }
        anyhow::bail!("no answer from janus")
    }

    /// One long poll of the session's events; keeps trickled candidates.
    async fn poll(&self) -> anyhow::Result<Vec<Value>> {
        let events: Value = self
            .api
            .http
            .get(format!(
                "{}/{}?maxev=10&rid={}",
                self.api.base,
                self.session,
                transaction()
            ))
            .send()
            .await?
            .json()
            .await?;
        let list = match events {
            Value::Array(a) => a,
            one => vec![one],
        };
        for e in &list {
            if e["janus"] == "trickle"
                && let Some(c) = e["candidate"]["candidate"].as_str()
                && let Ok(mut cands) = self.candidates.lock()
            {
                cands.push(c.to_string());
            }
        }
        Ok(list)
    }

    /// Hands `peer` the candidates Janus trickled so far. With half-trickle
    /// (bench/janus) they are in its SDP already and none come this way.
    pub async fn take_candidates(&self, peer: &mut ClientPeer) -> anyhow::Result<()> {
        let cands = self
            .candidates
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for c in cands {
            peer.add_remote_candidate(&c)?;
        }
        Ok(())
    }

    /// Says that every candidate of ours is in the SDP already.
    pub async fn trickle_done(&self) -> anyhow::Result<()> {
        self.api
            .post(
                &self.url(),
                json!({"janus": "trickle", "candidate": {"completed": true}}),
            )
            .await?;
        Ok(())
    }
}

/// Creates videoroom `room` for up to `publishers` publishers.
pub async fn create_room(api: &Api, room: u64, publishers: usize) -> anyhow::Result<()> {
    let h = api.attach().await?;
    h.request(json!({
        "request": "create",
        "room": room,
        "publishers": publishers.max(1),
        "bitrate": 0,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "notify_joining": false,
    }))
    .await?;
    Ok(())
}

/// A publisher: joins `room` with str0m's offer and sends the synthetic load.
/// Sends its feed id on `feed` once Janus accepted it.
pub async fn publisher(
    api: Api,
    room: u64,
    name: String,
    bind: IpAddr,
    feed: tokio::sync::oneshot::Sender<u64>,
    phase: watch::Receiver<Phase>,
) -> Outcome {
    let started = Instant::now();
    let outcome = Outcome {
        started: Some(started),
        ..Outcome::default()
    };
    let setup = async {
        let h = api.attach().await?;
        let (socket, local) = participant::bind(bind).await?;
        let (mut peer, offer) = ClientPeer::new(
            local,
            participant::Sends::AudioVideo.sources(),
            Instant::now(),
        )?;
        let ClientMessage::MediaOffer { sdp, .. } = offer else {
            anyhow::bail!("the peer made no offer");
        };
        let (data, jsep) = h
            .message(
                json!({"request": "joinandconfigure", "ptype": "publisher", "room": room,
                       "display": name, "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": sdp})),
            )
            .await?;
        let id = data["id"].as_u64().context("no publisher id")?;
        let answer = jsep
            .and_then(|j| j["sdp"].as_str().map(str::to_string))
            .context("no answer from janus")?;
        if std::env::var_os("JANUS_BENCH_LOG").is_some() {
            eprintln!("offer:\n{sdp}\nanswer:\n{answer}");
        }
        peer.accept_answer(&answer, Instant::now())?;
        h.trickle_done().await?;
        h.take_candidates(&mut peer).await?;
        participant::flush(&mut peer, &socket).await?;
        let _ = feed.send(id);
        anyhow::Ok((peer, socket))
    };
    match setup.await {
        Ok((peer, socket)) => {
            participant::run_media(peer, socket, Channel::None, None, phase, outcome).await
        }
        Err(e) => {
            eprintln!("janus publisher: {e}");
            Outcome {
                error: Some(format!("janus publisher: {e}")),
                ..outcome
            }
        }
    }
}

/// A subscriber to `feeds` of `room`: answers Janus's offer and counts what
/// arrives.
pub async fn subscriber(
    api: Api,
    room: u64,
    feeds: Vec<u64>,
    bind: IpAddr,
    phase: watch::Receiver<Phase>,
) -> Outcome {
    let started = Instant::now();
    let outcome = Outcome {
        started: Some(started),
        ..Outcome::default()
    };
    let setup = async {
        let h = api.attach().await?;
        let (socket, local) = participant::bind(bind).await?;
        let mut peer = ClientPeer::answerer(local, Instant::now())?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let (_, jsep) = h
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        let offer = jsep
            .and_then(|j| j["sdp"].as_str().map(str::to_string))
            .context("no offer from janus")?;
        peer.accept_offer(&offer, Vec::new(), Instant::now())?;
        let answer = participant::take_answer(&mut peer).context("no answer made")?;
        h.message(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
        h.trickle_done().await?;
        h.take_candidates(&mut peer).await?;
        participant::flush(&mut peer, &socket).await?;
        anyhow::Ok((peer, socket))
    };
    match setup.await {
        Ok((peer, socket)) => {
            participant::run_media(peer, socket, Channel::None, None, phase, outcome).await
        }
        Err(e) => Outcome {
            error: Some(format!("janus subscriber: {e}")),
            ..outcome
        },
    }
}
