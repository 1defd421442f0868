//! Cascading a meeting's media over the nodes (issue 23): the control plane.
//!
//! The meeting's lease holder runs its room and core, as for any meeting.
//! Once the meeting has `cascade_meetings_from` members, its
//! [`crate::media::MediaLink`] may place a newcomer's media on another live
//! node (the least loaded by the node records, [`Cascade::pick`]). That node
//! runs a shard of the meeting on its own workers, driven over a WebSocket
//! the lease holder opens to its `internal_url`
//! (`/internal/v1/cascade/<meeting>`): the holder sends the media commands
//! for the members placed there and what every other member publishes
//! ([`Down`]), the node sends back the media events of its members
//! ([`Up`]: answers, offers to deliver, refusals, wanted layers). The
//! member's signaling stays with the room; its SDP answer, made by the
//! remote node's worker, names that node's media address.
//!
//! The channel is fenced by the meeting's lease: the upgrade carries
//! [`CASCADE_HEADER`], an HMAC under `cluster.secret` of the time, the
//! holder's node ID, its lease token and the path, and the serving node
//! checks in Redis that this node holds the lease with that token now, and
//! again every half lease, closing the channel (and the shard with it) as
//! soon as it does not. A channel with a lower token than one seen for
//! the meeting is refused; a higher one replaces the older channel. So a
//! node that lost the lease cannot drive shards. What fails a check is
//! refused and counted (`conclave_cascade_refused_total`), never trusted.
//!
//! Failure: when a channel ends (the node died or refused), the holder's
//! link notices at its next command, drops the members placed there from
//! its own shards (their tracks end for their subscribers) and places them
//! again when their clients offer anew; the serving node closes its shard
//! when the channel ends, which ends its remote tracks too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use conclave_core::{MediaCommand, MediaEvent};
use conclave_proto::{MediaKind, MeetingId, ParticipantId, PublishedTrack, RemoteTrack};
use fred::prelude::KeysInterface;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::registry::NodeRecord;
use crate::http::AppState;
use crate::media::link::MediaLinks;
use crate::media::{MAX_WORKERS, MediaHandle};

/// The header by which a lease holder proves, to the node it opens a
/// control channel to, who it is and which lease it holds.
pub const CASCADE_HEADER: &str = "x-conclave-cascade";
/// How far the header's time may be from the serving node's clock.
const SKEW_SECS: u64 = 30;
/// Commands queued for one remote node's channel; past that they are
/// dropped and logged (the node or the link to it is overwhelmed).
const CHANNEL_QUEUE: usize = 1024;
/// Largest control message: an SDP offer of a large meeting.
const MAX_MESSAGE: usize = 512 * 1024;
/// How long the holder waits for a remote node to accept the channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most nodes a `Shards` message may name.
const MAX_SHARD_NODES: usize = 256;
/// How often the cached node records are read again for placement.
const NODES_EVERY: Duration = Duration::from_millis(500);

/// What the lease holder tells a node serving some of its meeting's media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Down {
    /// A member placed on the node offers (first, or again).
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    },
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    Allow {
        participant: ParticipantId,
        audio: bool,
        video: bool,
        screen: bool,
    },
    ViewSize {
        subscriber: ParticipantId,
        publisher: ParticipantId,
        kind: MediaKind,
        width: u32,
        height: u32,
    },
    KeyFrame {
        participant: ParticipantId,
    },
    /// A member left the meeting (or its node went): every shard there
    /// forgets it.
    Leave {
        participant: ParticipantId,
    },
    /// What a member served elsewhere publishes, so that the node's shards
    /// label its tracks (camera or screen) and size them.
    Declared {
        participant: ParticipantId,
        tracks: Vec<PublishedTrack>,
    },
    /// The meeting's shards on the other nodes (the holder's included) and
    /// where their media links are: the node's shards hand their media to
    /// those over the link between nodes ([`crate::media::link`]).
    Shards {
        shards: Vec<NodeShards>,
    },
}

/// One node's shards of a meeting: its media link's address and the
/// workers that hold a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeShards {
    pub node: String,
    pub link: SocketAddr,
    pub workers: Vec<usize>,
}

impl Down {
    fn from_command(cmd: MediaCommand) -> Down {
        match cmd {
            MediaCommand::Offer {
                participant,
                sdp,
                tracks,
            } => Down::Offer {
                participant,
                sdp,
                tracks,
            },
            MediaCommand::Answer { participant, sdp } => Down::Answer { participant, sdp },
            MediaCommand::Allow {
                participant,
                audio,
                video,
                screen,
            } => Down::Allow {
                participant,
                audio,
                video,
                screen,
            },
            MediaCommand::ViewSize {
                subscriber,
                publisher,
                kind,
                width,
                height,
            } => Down::ViewSize {
                subscriber,
                publisher,
                kind,
                width,
                height,
            },
            MediaCommand::KeyFrame { participant } => Down::KeyFrame { participant },
            MediaCommand::Leave { participant } => Down::Leave { participant },
        }
    }
}

/// What a serving node reports back about its members' media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Up {
    Answer {
        participant: ParticipantId,
        sdp: String,
    },
    Offer {
        participant: ParticipantId,
        sdp: String,
        tracks: Vec<RemoteTrack>,
    },
    Refused {
        participant: ParticipantId,
    },
    LayersWanted {
        participant: ParticipantId,
        mid: String,
        rids: Vec<String>,
    },
    VideoPaused {
        participant: ParticipantId,
        mid: String,
        paused: bool,
    },
    /// The serving node's shards of the meeting (its workers) and its media
    /// link's address; sent first and whenever they change.
    Shards {
        link: SocketAddr,
        workers: Vec<usize>,
    },
}

impl Up {
    /// `None` for what a serving node does not report (the active speaker
    /// is the lease holder's home shard's).
    fn from_event(e: MediaEvent) -> Option<Up> {
        Some(match e {
            MediaEvent::Answer { participant, sdp } => Up::Answer { participant, sdp },
            MediaEvent::Offer {
                participant,
                sdp,
                tracks,
            } => Up::Offer {
                participant,
                sdp,
                tracks,
            },
            MediaEvent::Refused { participant } => Up::Refused { participant },
            MediaEvent::LayersWanted {
                participant,
                mid,
                rids,
            } => Up::LayersWanted {
                participant,
                mid,
                rids,
            },
            MediaEvent::VideoPaused {
                participant,
                mid,
                paused,
            } => Up::VideoPaused {
                participant,
                mid,
                paused,
            },
            MediaEvent::ActiveSpeaker { .. } => return None,
        })
    }

    fn participant(&self) -> Option<ParticipantId> {
        match self {
            Up::Answer { participant, .. }
            | Up::Offer { participant, .. }
            | Up::Refused { participant }
            | Up::LayersWanted { participant, .. }
            | Up::VideoPaused { participant, .. } => Some(*participant),
            Up::Shards { .. } => None,
        }
    }

    fn into_event(self) -> Option<MediaEvent> {
        Some(match self {
            Up::Shards { .. } => return None,
            Up::Answer { participant, sdp } => MediaEvent::Answer { participant, sdp },
            Up::Offer {
                participant,
                sdp,
                tracks,
            } => MediaEvent::Offer {
                participant,
                sdp,
                tracks,
            },
            Up::Refused { participant } => MediaEvent::Refused { participant },
            Up::LayersWanted {
                participant,
                mid,
                rids,
            } => MediaEvent::LayersWanted {
                participant,
                mid,
                rids,
            },
            Up::VideoPaused {
                participant,
                mid,
                paused,
            } => MediaEvent::VideoPaused {
                participant,
                mid,
                paused,
            },
        })
    }
}

/// The path a meeting's control channel is served on; the header is bound
/// to it.
pub fn cascade_path(meeting: &str) -> String {
    format!("/internal/v1/cascade/{meeting}")
}

fn mac(secret: &str, h: &Header<'_>, to: &str, path: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    m.update(
        format!(
            "conclave-cascade\n{}\n{}\n{to}\n{}\n{}\n{path}",
            h.at, h.node, h.token, h.nonce
        )
        .as_bytes(),
    );
    m
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a header says, before it is checked.
struct Header<'a> {
    at: u64,
    node: &'a str,
    token: u64,
    nonce: &'a str,
}

/// What a verified header vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// The sending node (the lease holder it claims to be).
    pub node: String,
    pub token: u64,
    /// Its time, and its random nonce: a header is taken once.
    at: u64,
    nonce: String,
}

/// The header's value for a channel from `node` (lease `token`) to node
/// `to` on `path`: `<unix seconds> <node> <lease token> <nonce> <hex
/// HMAC>`. The receiving node and a fresh nonce are in the HMAC, so a
/// header seen on the wire opens nothing on another node, nor again on
/// the same one.
pub fn sign(secret: &str, node: &str, to: &str, token: u64, path: &str) -> String {
    use rand::RngCore;
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let h = Header {
        at: now_secs(),
        node,
        token,
        nonce: &nonce,
    };
    let tag = mac(secret, &h, to, path).finalize().into_bytes();
    format!("{} {node} {token} {nonce} {}", h.at, hex::encode(tag))
}

/// What a header vouches for, if its HMAC is right for this node (`to`)
/// and `path` (compared in constant time) and its time close to ours.
/// Whether it was used before is [`Cascade::first_use`]'s to say.
pub fn verify(secret: &str, value: &str, to: &str, path: &str) -> Option<Vouched> {
    let mut parts = value.split(' ');
    let at: u64 = parts.next()?.parse().ok()?;
    let node = parts.next()?;
    let token: u64 = parts.next()?.parse().ok()?;
    let nonce = parts.next()?;
    let tag = hex::decode(parts.next()?).ok()?;
    if parts.next().is_some() || now_secs().abs_diff(at) > SKEW_SECS {
        return None;
    }
    let h = Header {
        at,
        node,
        token,
        nonce,
    };
    mac(secret, &h, to, path).verify_slice(&tag).ok()?;
    Some(Vouched {
        node: node.to_string(),
        token,
        at,
        nonce: nonce.to_string(),
    })
}

/// Why a control channel or message was refused, for the counter.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Unauthenticated = 0,
    Stale = 1,
    BadMessage = 2,
}

/// This node's part in cascading: placement for the meetings it holds, the
/// channels it serves for meetings held elsewhere.
pub struct Cascade {
    cluster: Arc<Cluster>,
    secret: String,
    /// A meeting cascades from this many members.
    from: usize,
    /// The live node records, read in the background: placement is decided
    /// synchronously, by the room's media link.
    nodes: RwLock<Vec<NodeRecord>>,
    /// Channels served here: each meeting's highest lease token seen, and
    /// how to stop the channel that came with it.
    served: Mutex<Served>,
    refused: [metrics::Counter; 3],
    /// The media link between nodes, once started: without it the control
    /// plane works but no media crosses between nodes.
    links: OnceLock<Arc<MediaLinks>>,
    /// Nodes whose channel failed or ended, and when: not chosen again
    /// until their record has had time to run out (a dead node's lingers
    /// for its time-to-live).
    failed: Mutex<HashMap<String, std::time::Instant>>,
    /// The nonces of the headers taken here, with their times, until they
    /// are too old to verify anyway: a header captured on the wire and
    /// sent again (which would take the place of the holder's channel) is
    /// refused.
    headers_seen: Mutex<HashMap<String, u64>>,
}

impl Cascade {
    /// Cascading for this node: `None` unless `from` > 0 and the nodes
    /// share a secret. Keeps the node records fresh until `shutdown`.
    pub fn start(
        cluster: &Arc<Cluster>,
        from: usize,
        refused: [metrics::Counter; 3],
        shutdown: CancellationToken,
    ) -> Option<Arc<Cascade>> {
        let secret = cluster.secret()?.to_string();
        if from == 0 {
            return None;
        }
        let cascade = Arc::new(Cascade {
            cluster: Arc::clone(cluster),
            secret,
            from,
            nodes: RwLock::new(Vec::new()),
            served: Mutex::new(Served::default()),
            refused,
            links: OnceLock::new(),
            failed: Mutex::new(HashMap::new()),
            headers_seen: Mutex::new(HashMap::new()),
        });
        tokio::spawn(Arc::clone(&cascade).read_nodes(shutdown));
        Some(cascade)
    }

    /// The media link between nodes, which carries the shards' media.
    pub fn set_links(&self, links: Arc<MediaLinks>) {
        let _ = self.links.set(links);
    }

    /// The shard indices (for `Shards`) of the shards on other nodes in
    /// `shards`, connecting the media link to each node; none without a
    /// link.
    fn remote_indices<'a>(&self, shards: impl Iterator<Item = &'a NodeShards>) -> Vec<usize> {
        let Some(links) = self.links.get() else {
            return Vec::new();
        };
        let me = self.cluster.node_id();
        shards
            .filter(|n| n.node != me)
            .flat_map(|n| {
                let slot = links.connect(&n.node, n.link);
                n.workers.iter().map(move |w| slot.shard(*w))
            })
            .collect()
    }

    fn link_addr(&self) -> Option<SocketAddr> {
        self.links.get().map(|l| l.local_addr())
    }

    fn failed(&self, node: &str) {
        lock(&self.failed).insert(node.to_string(), std::time::Instant::now());
    }

    fn refuse(&self, why: Refusal, detail: &str) {
        self.refused[why as usize].increment(1);
        tracing::warn!(reason = ?why, detail, "cascade control input refused");
    }

    async fn read_nodes(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.cluster.nodes().await {
                Ok(nodes) => {
                    *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = nodes;
                }
                Err(e) => tracing::debug!(error = %e, "node records not read for cascading"),
            }
            tokio::select! {
                () = tokio::time::sleep(NODES_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Where a newcomer's media goes, the meeting having `members` placed,
    /// `here` of them on this node and `placed` on each other node: `None`
    /// here, else another serving node, the least loaded by its record's
    /// members plus the meeting's own placements there (which its record
    /// may not count yet), ties here, then by node ID. This node counts at
    /// least the members placed here (its record may be older than they).
    pub fn pick(
        &self,
        members: usize,
        here: usize,
        placed: &HashMap<String, usize>,
    ) -> Option<NodeRecord> {
        if members < self.from {
            return None;
        }
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let me = self.cluster.node_id();
        let failed = {
            let mut failed = lock(&self.failed);
            let keep = self.cluster.node_ttl * 2;
            failed.retain(|_, at| at.elapsed() < keep);
            failed.keys().cloned().collect::<HashSet<String>>()
        };
        let load = |n: &NodeRecord| {
            n.participants
                .saturating_add(placed.get(&n.node_id).copied().unwrap_or(0) as u64)
        };
        let here = nodes
            .iter()
            .find(|n| n.node_id == me)
            .map_or(0, |n| n.participants)
            .max(here as u64);
        tracing::debug!(
            members,
            here,
            nodes = nodes.len(),
            "placing a newcomer's media"
        );
        nodes
            .iter()
            .filter(|n| n.node_id != me && n.state == "serving" && !failed.contains(&n.node_id))
            .min_by(|a, b| load(a).cmp(&load(b)).then(a.node_id.cmp(&b.node_id)))
            .filter(|n| load(n) < here)
            .cloned()
    }

    /// Opens a control channel for `meeting`, held here with lease `token`,
    /// to `node`; the media events it reports about the members in
    /// `members` go to `events`. Returns at once: commands queue while it
    /// connects, and the channel is closed when it fails or ends.
    pub fn connect(
        self: &Arc<Self>,
        meeting: MeetingId,
        token: u64,
        node: &NodeRecord,
        events: mpsc::Sender<MediaEvent>,
        mesh: &Arc<Mutex<Mesh>>,
        gone: &Arc<tokio::sync::Notify>,
    ) -> RemoteShard {
        let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
        let members = Arc::new(Mutex::new(HashSet::new()));
        lock(mesh).nodes.insert(
            node.node_id.clone(),
            MeshNode {
                tx: tx.downgrade(),
                shards: None,
            },
        );
        tokio::spawn(Arc::clone(self).hold(
            meeting,
            token,
            node.clone(),
            rx,
            events,
            Arc::clone(&members),
            Arc::clone(mesh),
            Arc::clone(gone),
        ));
        RemoteShard {
            node_id: node.node_id.clone(),
            tx,
            members,
        }
    }

    /// The lease holder's end of a channel: connects, then copies commands
    /// down and the members' events up until either side ends.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        self: Arc<Self>,
        meeting: MeetingId,
        token: u64,
        node: NodeRecord,
        rx: mpsc::Receiver<Down>,
        events: mpsc::Sender<MediaEvent>,
        members: Arc<Mutex<HashSet<ParticipantId>>>,
        mesh: Arc<Mutex<Mesh>>,
        gone: Arc<tokio::sync::Notify>,
    ) {
        // However this ends, the room hears of it (its link then drops the
        // node and asks its members to resume).
        let mut end = ChannelEnd { rx, gone };
        let path = cascade_path(&meeting.to_string());
        let base = node.internal_url.trim_end_matches('/');
        let url = match base.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
                format!("wss://{rest}{path}")
            }
            Some((_, rest)) => format!("ws://{rest}{path}"),
            None => format!("ws://{base}{path}"),
        };
        let Ok(mut req) = url.as_str().into_client_request() else {
            tracing::error!(node = %node.node_id, "bad internal_url in a node record");
            return;
        };
        let Ok(value) = HeaderValue::from_str(&sign(
            &self.secret,
            self.cluster.node_id(),
            &node.node_id,
            token,
            &path,
        )) else {
            return;
        };
        req.headers_mut().insert(CASCADE_HEADER, value);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let socket = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(req, Some(config), true),
        )
        .await
        {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => {
                tracing::warn!(%meeting, node = %node.node_id, error = %e, "cascade control channel refused");
                self.failed(&node.node_id);
                return;
            }
            Err(_) => {
                tracing::warn!(%meeting, node = %node.node_id, "cascade control channel not accepted in time");
                self.failed(&node.node_id);
                return;
            }
        };
        tracing::info!(%meeting, node = %node.node_id, token, "cascade control channel open");
        let (mut down, mut up) = socket.split();
        loop {
            tokio::select! {
                cmd = end.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let Ok(text) = serde_json::to_string(&cmd) else { continue };
                    if down.send(UpMessage::text(text)).await.is_err() {
                        break;
                    }
                }
                msg = up.next() => {
                    let text = match msg {
                        Some(Ok(UpMessage::Text(t))) => t,
                        Some(Ok(UpMessage::Ping(_) | UpMessage::Pong(_) | UpMessage::Frame(_))) => continue,
                        Some(Ok(UpMessage::Binary(_))) => {
                            self.refuse(Refusal::BadMessage, "binary frame");
                            continue;
                        }
                        Some(Ok(UpMessage::Close(_)) | Err(_)) | None => break,
                    };
                    let Ok(event) = serde_json::from_str::<Up>(text.as_str()) else {
                        self.refuse(Refusal::BadMessage, "unparseable event");
                        continue;
                    };
                    if let Up::Shards { link, workers } = event {
                        if workers.len() > MAX_WORKERS || workers.iter().any(|w| *w >= MAX_WORKERS) {
                            self.refuse(Refusal::BadMessage, "shards past the workers a node may have");
                            continue;
                        }
                        lock(&mesh).node_shards(&node.node_id, link, workers);
                        continue;
                    }
                    // A node speaks only for the members placed on it.
                    let ours = event.participant().is_some_and(|p| {
                        members.lock().unwrap_or_else(|e| e.into_inner()).contains(&p)
                    });
                    if !ours {
                        self.refuse(Refusal::BadMessage, "event about a member not placed there");
                        continue;
                    }
                    if let Some(event) = event.into_event()
                        && events.try_send(event).is_err()
                    {
                        tracing::warn!(%meeting, "room's media event queue full; cascaded event dropped");
                    }
                }
            }
        }
        let _ = down.close().await;
        if !end.rx.is_closed() {
            // Not ended by the room: the node went, or dropped us.
            self.failed(&node.node_id);
        }
        lock(&mesh).remove_node(&node.node_id);
        tracing::info!(%meeting, node = %node.node_id, "cascade control channel closed");
    }

    /// Whether `node` holds `meeting`'s lease with `token` now.
    async fn holds(&self, meeting: &str, node: &str, token: u64) -> bool {
        let key = format!("conclave:lease:{meeting}");
        let client = &self.cluster.client;
        let held = self
            .cluster
            .read(|| client.get::<Option<String>, _>(&key))
            .await;
        matches!(held, Ok(Some(v)) if v == format!("{node} {token}"))
    }

    /// Whether `v` is the first use of its header here (it then counts as
    /// used). Only authentic headers get here, so the set holds at most
    /// what the lease holders sent within the skew window.
    fn first_use(&self, v: &Vouched) -> bool {
        let now = now_secs();
        let mut seen = lock(&self.headers_seen);
        seen.retain(|_, at| now.abs_diff(*at) <= SKEW_SECS);
        seen.insert(v.nonce.clone(), v.at).is_none()
    }

    fn admit(&self, meeting: MeetingId, token: u64) -> Option<Admitted> {
        lock(&self.served).admit(meeting, token)
    }

    fn done(&self, meeting: MeetingId, channel: &Admitted) {
        lock(&self.served).done(meeting, channel);
    }
}

/// The control channels served here, one per meeting: the newest, with
/// the highest lease token seen.
#[derive(Default)]
struct Served {
    next_id: u64,
    by_meeting: HashMap<MeetingId, (u64, Admitted)>,
}

/// A channel let in: its number here, and how to stop it.
#[derive(Clone)]
struct Admitted {
    id: u64,
    stop: CancellationToken,
}

impl Served {
    /// Registers a channel of `meeting` with `token`: refused if a higher
    /// token was seen; the channel it replaces (a lower or equal token) is
    /// stopped.
    fn admit(&mut self, meeting: MeetingId, token: u64) -> Option<Admitted> {
        if let Some((seen, old)) = self.by_meeting.get(&meeting) {
            if *seen > token {
                return None;
            }
            old.stop.cancel();
        }
        self.next_id += 1;
        let channel = Admitted {
            id: self.next_id,
            stop: CancellationToken::new(),
        };
        self.by_meeting.insert(meeting, (token, channel.clone()));
        Some(channel)
    }

    /// `channel` ended: forgotten, unless another took its place since
    /// (whose entry, with the same token, must stay to be stopped by a
    /// later holder's channel).
    fn done(&mut self, meeting: MeetingId, channel: &Admitted) {
        if self
            .by_meeting
            .get(&meeting)
            .is_some_and(|(_, c)| c.id == channel.id)
        {
            self.by_meeting.remove(&meeting);
        }
    }
}

/// The holder's end of a channel's command queue: when the channel's task
/// ends, however, the queue is closed (the link sees the node gone) and
/// then the room is woken to see it.
struct ChannelEnd {
    rx: mpsc::Receiver<Down>,
    gone: Arc<tokio::sync::Notify>,
}

impl Drop for ChannelEnd {
    fn drop(&mut self) {
        self.rx.close();
        self.gone.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a cascaded meeting's shards are, as its lease holder knows it:
/// its own workers' and each serving node's. Every change is published to
/// the holder's shards (whom to hand media to, over the workers' queues
/// and the media link) and to each serving node (the others' shards).
pub struct Mesh {
    meeting: MeetingId,
    cascade: Arc<Cascade>,
    media: MediaHandle,
    local: BTreeSet<usize>,
    nodes: BTreeMap<String, MeshNode>,
}

struct MeshNode {
    /// Weak: the channel ends when the room's link drops its sender.
    tx: mpsc::WeakSender<Down>,
    /// Its media link's address and its workers with a shard, once told.
    shards: Option<(SocketAddr, Vec<usize>)>,
}

impl Mesh {
    pub fn new(
        meeting: MeetingId,
        cascade: Arc<Cascade>,
        media: MediaHandle,
        local: BTreeSet<usize>,
    ) -> Arc<Mutex<Mesh>> {
        Arc::new(Mutex::new(Mesh {
            meeting,
            cascade,
            media,
            local,
            nodes: BTreeMap::new(),
        }))
    }

    /// The holder's own shards changed.
    pub fn set_local(&mut self, local: BTreeSet<usize>) {
        self.local = local;
        self.publish();
    }

    fn node_shards(&mut self, node: &str, link: SocketAddr, workers: Vec<usize>) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.shards = Some((link, workers));
            self.publish();
        }
    }

    pub fn remove_node(&mut self, node: &str) {
        if self.nodes.remove(node).is_some() {
            self.publish();
        }
    }

    fn publish(&self) {
        let mut all: Vec<NodeShards> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| {
                let (link, workers) = n.shards.clone()?;
                Some(NodeShards {
                    node: id.clone(),
                    link,
                    workers,
                })
            })
            .collect();
        let remote = self.cascade.remote_indices(all.iter());
        self.media.set_shards(self.meeting, &self.local, &remote);
        let Some(link) = self.cascade.link_addr() else {
            return;
        };
        all.push(NodeShards {
            node: self.cascade.cluster.node_id().to_string(),
            link,
            workers: self.local.iter().copied().collect(),
        });
        for (id, n) in &self.nodes {
            let others = all.iter().filter(|s| s.node != *id).cloned().collect();
            let Some(tx) = n.tx.upgrade() else { continue };
            if tx.try_send(Down::Shards { shards: others }).is_err() {
                tracing::warn!(node = %id, "cascade control queue full or closed; shards not told");
            }
        }
    }
}

/// The lease holder's handle on one node's shard of a meeting.
pub struct RemoteShard {
    pub node_id: String,
    tx: mpsc::Sender<Down>,
    /// The members placed there: the only ones it may report about.
    members: Arc<Mutex<HashSet<ParticipantId>>>,
}

impl RemoteShard {
    /// Queues a command; dropped (and said) when the node is overwhelmed.
    pub fn send(&self, cmd: Down) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(node = %self.node_id, "cascade control queue full; command dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub fn media(&self, cmd: MediaCommand) {
        self.send(Down::from_command(cmd));
    }

    /// The channel ended (the node died, refused, or lost us).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn add_member(&self, p: ParticipantId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p);
    }

    pub fn remove_member(&self, p: ParticipantId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p);
    }
}

/// `GET /internal/v1/cascade/{meeting}`: a lease holder's control channel
/// for the members of its meeting placed here.
pub async fn serve(
    ws: WebSocketUpgrade,
    Path(raw): Path<String>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    let Some(cascade) = state.rooms.media().cascade() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let path = cascade_path(&raw);
    let vouched = headers
        .get(CASCADE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| verify(&cascade.secret, v, cascade.cluster.node_id(), &path));
    let Some(vouched) = vouched else {
        cascade.refuse(Refusal::Unauthenticated, "no valid cascade header");
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    };
    if !cascade.first_use(&vouched) {
        cascade.refuse(Refusal::Unauthenticated, "a cascade header used before");
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    let Vouched { node, token, .. } = vouched;
    let Ok(meeting) = raw.parse::<MeetingId>() else {
        cascade.refuse(Refusal::BadMessage, "not a meeting ID");
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if !cascade.holds(&raw, &node, token).await {
        cascade.refuse(
            Refusal::Stale,
            "the sender does not hold the meeting's lease",
        );
        return (StatusCode::CONFLICT, "not the meeting's lease holder\n").into_response();
    }
    let Some(channel) = cascade.admit(meeting, token) else {
        cascade.refuse(Refusal::Stale, "a later lease holder's channel was seen");
        return (StatusCode::CONFLICT, "not the meeting's lease holder\n").into_response();
    };
    let media = state.rooms.media().clone();
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(cascade, media, meeting, node, token, socket, channel))
}

/// The serving node's end: the meeting's shard here, driven by the lease
/// holder, until the channel ends or the lease is no longer the sender's.
async fn run(
    cascade: Arc<Cascade>,
    media: crate::media::MediaHandle,
    meeting: MeetingId,
    node: String,
    token: u64,
    socket: WebSocket,
    channel: Admitted,
) {
    let stop = channel.stop.clone();
    tracing::info!(%meeting, %node, token, "serving a cascaded meeting's shard");
    let (mut link, mut events) = media.open_remote(meeting);
    let (mut up, mut down) = socket.split();
    let my_link = cascade.link_addr();
    if my_link.is_none() {
        tracing::warn!(%meeting, "no media link between nodes (cluster.media_link): this node's members of the meeting get no media from the other nodes'");
    }
    let mut told: Option<BTreeSet<usize>> = None;
    let recheck = cascade.cluster.lease_ttl() / 2;
    let mut check = tokio::time::interval(recheck.max(Duration::from_millis(100)));
    check.tick().await;
    let raw = meeting.to_string();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = check.tick() => {
                if !cascade.holds(&raw, &node, token).await {
                    cascade.refuse(Refusal::Stale, "the channel's sender lost the meeting's lease");
                    break;
                }
            }
            msg = down.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        cascade.refuse(Refusal::BadMessage, "binary frame");
                        continue;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                match serde_json::from_str::<Down>(text.as_str()) {
                    Ok(Down::Declared { participant, tracks }) => link.declare(participant, tracks),
                    Ok(Down::Shards { shards }) => {
                        if shards.len() > MAX_SHARD_NODES
                            || shards.iter().any(|n| n.workers.len() > MAX_WORKERS || n.workers.iter().any(|w| *w >= MAX_WORKERS))
                        {
                            cascade.refuse(Refusal::BadMessage, "shards past what a cluster may have");
                            continue;
                        }
                        link.set_remote_shards(cascade.remote_indices(shards.iter()));
                    }
                    Ok(cmd) => {
                        if let Some(cmd) = into_command(cmd) {
                            link.send(cmd);
                        }
                    }
                    Err(_) => cascade.refuse(Refusal::BadMessage, "unparseable command"),
                }
            }
            Some(event) = events.recv() => {
                let Some(event) = Up::from_event(event) else { continue };
                let Ok(text) = serde_json::to_string(&event) else { continue };
                if up.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
        // Where this node's shards are, when that changed.
        if let Some(addr) = my_link
            && told.as_ref() != Some(link.local_shards())
        {
            let workers = link.local_shards().clone();
            let msg = Up::Shards {
                link: addr,
                workers: workers.iter().copied().collect(),
            };
            told = Some(workers);
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if up.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    }
    link.close();
    cascade.done(meeting, &channel);
    let _ = up.close().await;
    tracing::info!(%meeting, %node, "cascaded meeting's shard closed");
}

/// The core's command a control message carries (`None`: it carries none).
fn into_command(cmd: Down) -> Option<MediaCommand> {
    Some(match cmd {
        Down::Offer {
            participant,
            sdp,
            tracks,
        } => MediaCommand::Offer {
            participant,
            sdp,
            tracks,
        },
        Down::Answer { participant, sdp } => MediaCommand::Answer { participant, sdp },
        Down::Allow {
            participant,
            audio,
            video,
            screen,
        } => MediaCommand::Allow {
            participant,
            audio,
            video,
            screen,
        },
        Down::ViewSize {
            subscriber,
            publisher,
            kind,
            width,
            height,
        } => MediaCommand::ViewSize {
            subscriber,
            publisher,
            kind,
            width,
            height,
        },
        Down::KeyFrame { participant } => MediaCommand::KeyFrame { participant },
        Down::Leave { participant } => MediaCommand::Leave { participant },
        Down::Declared { .. } | Down::Shards { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cascade_header_holds_only_for_its_secret_path_node_and_token() {
        let s = "a-cluster-secret-of-at-least-32-chars";
        let path = cascade_path("m1");
        let v = sign(s, "node-a", "node-b", 7, &path);
        let ok = verify(s, &v, "node-b", &path).expect("verifies");
        assert_eq!((ok.node.as_str(), ok.token), ("node-a", 7));
        assert_eq!(
            verify("another-secret-of-32-characters!!", &v, "node-b", &path),
            None
        );
        assert_eq!(verify(s, &v, "node-b", &cascade_path("m2")), None);
        // A header sent to node-b opens nothing on node-c.
        assert_eq!(verify(s, &v, "node-c", &path), None);
        assert_eq!(verify(s, &v.replace(" 7 ", " 8 "), "node-b", &path), None);
        assert_eq!(
            verify(s, &v.replace("node-a", "node-b"), "node-b", &path),
            None
        );
        let old = v.replacen(&now_secs().to_string(), "1", 1);
        assert_eq!(verify(s, &old, "node-b", &path), None);
        assert_eq!(verify(s, "", "node-b", &path), None);
        assert_eq!(verify(s, &format!("{v} extra"), "node-b", &path), None);
        // Two headers signed in the same second differ (their nonces).
        let again = sign(s, "node-a", "node-b", 7, &path);
        assert_ne!(verify(s, &again, "node-b", &path), Some(ok));
    }

    #[test]
    fn a_later_lease_holder_stops_the_channel_that_replaced_an_equal_one() {
        let mut served = Served::default();
        let m = MeetingId::generate();
        // The holder opens a channel, then another with the same token (it
        // reconnected); the first is stopped and ends.
        let first = served.admit(m, 5).expect("first");
        let second = served.admit(m, 5).expect("second");
        assert!(first.stop.is_cancelled() && !second.stop.is_cancelled());
        served.done(m, &first);
        // The lease moved: the new holder's channel stops the second at
        // once, and an older token is refused.
        assert!(served.admit(m, 4).is_none());
        let third = served.admit(m, 6).expect("third");
        assert!(
            second.stop.is_cancelled(),
            "the old holder's channel goes on"
        );
        assert!(served.admit(m, 5).is_none());
        served.done(m, &second);
        assert!(served.admit(m, 5).is_none());
        served.done(m, &third);
        assert!(served.admit(m, 5).is_some());
    }

    #[test]
    fn control_messages_refuse_unknown_fields_and_kinds() {
        let offer = Down::Offer {
            participant: ParticipantId(3),
            sdp: "v=0".into(),
            tracks: Vec::new(),
        };
        let text = serde_json::to_string(&offer).expect("json");
        assert_eq!(serde_json::from_str::<Down>(&text).ok(), Some(offer));
        assert!(
            serde_json::from_str::<Down>(
                r#"{"type":"offer","participant":3,"sdp":"","tracks":[],"x":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<Down>(r#"{"type":"closed"}"#).is_err());
        assert!(
            serde_json::from_str::<Up>(r#"{"type":"active_speaker","participant":1}"#).is_err()
        );
    }
}
