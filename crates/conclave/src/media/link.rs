//! The media link between nodes (issue 23, cascading): the I/O shell
//! around `conclave_media::link` (sealing, replay window, repair) and
//! `conclave_media::relay_wire` (the frames). One UDP socket per node
//! (`cluster.media_link_addr`), one flow per peer node, every meeting the
//! two share multiplexed on it.
//!
//! # For the control plane
//!
//! A shard on another node is addressed exactly as a shard on another
//! worker: by an index in [`DriverCmd::Shards`]'s `workers`
//! (`crate::media::relay::Relays`). Indices below [`MAX_WORKERS`] are this
//! node's workers; [`RemoteSlot::shard`] gives the index of worker `w` on
//! a peer node. A worker then hands that shard its batches as it hands
//! them to another worker, and what the remote shard sends arrives in the
//! local worker's relay queue with `from` = the same index, so the
//! router's per-shard state (what each shard wants, `Relayed::Wanted`)
//! needs nothing new.
//!
//! ```ignore
//! // once, at start (crate::server does it when media_link_addr is set):
//! let links = MediaLinks::start(addr, node_id, secret, media.take_link_ends()?, shutdown).await?;
//! // for each node this node shares a meeting with (both ends call it):
//! let peer = links.connect("node-b", node_b_media_link_addr);
//! // the meeting's shard on node-b's worker 1, alongside local worker 0:
//! DriverCmd::Shards { meeting, workers: vec![0, peer.shard(1)] };
//! // a peer silent past the timeout:
//! while let Some(PeerEvent::Gone { node, .. }) = events.recv().await { ... }
//! ```
//!
//! Both ends must [`MediaLinks::connect`] each other: a datagram from a
//! node not connected here is dropped (counted), since its key is derived
//! from the two node IDs. `connect` is idempotent per node ID (the same
//! slot; a new address replaces the old). When a peer falls silent for
//! [`conclave_media::link::SILENCE`], [`PeerEvent::Gone`] is reported and
//! the remote tracks it had announced to each local shard are withdrawn
//! there (`Relayed::Unpublished`), which ends them for their subscribers,
//! as a publisher leaving does. When it is heard again ([`PeerEvent::Back`];
//! the control channel may have stayed up throughout, so nobody rejoins),
//! the link sends a [`Relayed::Hello`] to the peer's shards that had
//! announced those tracks, for each meeting, so they announce their tracks
//! again and the shards here take them up again. A restarted peer needs
//! none: its new shards say `Hello` themselves when they are set up.
//!
//! [`DriverCmd::Shards`]: super::DriverCmd
//! [`MAX_WORKERS`]: super::MAX_WORKERS

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_media::TrackId;
use conclave_media::link::keys::LinkSecret;
use conclave_media::link::{Link, LinkConfig, LinkEvent, LinkStats, Received, SILENCE};
use conclave_media::relay::Relayed;
use conclave_media::relay_wire::{Decoder, Encoder, FrameHead};
use conclave_proto::MeetingId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::MAX_WORKERS;
use super::relay::{LinkEnds, RelayBatch, RemoteBatch};

/// A frame's target size: with the link's overhead, a datagram stays
/// under a 1500-byte path's MTU; a larger packet goes alone.
const FRAME_TARGET: usize = 1400;
/// Largest datagram read.
const RECV_BUFFER: usize = 65_536;
/// Batches taken from the workers per wake-up before the socket is read
/// again.
const BATCHES_PER_WAKE: usize = 64;
/// Datagrams read per wake-up before the workers' batches are taken.
const DATAGRAMS_PER_WAKE: usize = 64;
/// How often each peer's link counters are logged (when they changed):
/// they are not in `/metrics`.
const STATS_LOG_EVERY: Duration = Duration::from_secs(60);
/// Peer events queued for the control plane; past this they are dropped.
const EVENT_QUEUE: usize = 256;

/// A peer node's place in this node's shard index space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteSlot(u32);

impl RemoteSlot {
    /// The shard index of worker `worker` of this peer, for `Shards`.
    pub fn shard(&self, worker: usize) -> usize {
        MAX_WORKERS + self.0 as usize * MAX_WORKERS + worker % MAX_WORKERS
    }

    /// Which peer slot and worker a shard index names, if a remote one.
    pub fn split(index: usize) -> Option<(RemoteSlot, usize)> {
        let rest = index.checked_sub(MAX_WORKERS)?;
        let slot = u32::try_from(rest / MAX_WORKERS).ok()?;
        Some((RemoteSlot(slot), rest % MAX_WORKERS))
    }
}

/// What happened to a peer node's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// Nothing authentic heard from it for the silence timeout.
    Gone { node: String, slot: RemoteSlot },
    /// Heard again.
    Back { node: String, slot: RemoteSlot },
    /// It started again (a new process): the tracks it had announced were
    /// withdrawn here; its shards announce theirs anew.
    Restarted { node: String, slot: RemoteSlot },
}

#[derive(Debug, thiserror::Error)]
pub enum LinkStartError {
    #[error("cannot bind the media link socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Counters of the whole node's link socket, besides each peer's
/// [`LinkStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams naming no connected node.
    pub unknown_sender: u64,
    /// Frames that opened but did not decode.
    pub bad_frames: u64,
    /// Packets whose codec entry was not known yet.
    pub unknown_codec: u64,
    /// Frames for a worker this node does not have.
    pub bad_worker: u64,
    /// Batches a local worker's full queue refused.
    pub delivery_dropped: u64,
    /// Batches for a remote shard of a peer not connected.
    pub no_peer: u64,
    /// Messages too large to encode.
    pub unencodable: u64,
}

enum Cmd {
    Connect {
        node: String,
        addr: SocketAddr,
        slot: RemoteSlot,
    },
    Stats {
        slot: RemoteSlot,
        reply: oneshot::Sender<Option<LinkStats>>,
    },
    SocketStats(oneshot::Sender<SocketStats>),
}

/// This node's media links to the other nodes.
pub struct MediaLinks {
    local: SocketAddr,
    cmds: mpsc::UnboundedSender<Cmd>,
    slots: Mutex<HashMap<String, RemoteSlot>>,
    events: Mutex<Option<mpsc::Receiver<PeerEvent>>>,
}

impl MediaLinks {
    /// Binds `addr` and starts the link task. `secret` is
    /// `cluster.secret`, `node_id` this node's; `ends` the workers'
    /// ([`super::MediaHandle::take_link_ends`]).
    pub async fn start(
        addr: SocketAddr,
        node_id: String,
        secret: &str,
        ends: LinkEnds,
        shutdown: CancellationToken,
    ) -> Result<Arc<MediaLinks>, LinkStartError> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| LinkStartError::Bind { addr, source })?;
        let local = socket
            .local_addr()
            .map_err(|source| LinkStartError::Bind { addr, source })?;
        Ok(Self::with_socket(
            socket, local, node_id, secret, ends, shutdown,
        ))
    }

    fn with_socket(
        socket: UdpSocket,
        local: SocketAddr,
        node_id: String,
        secret: &str,
        ends: LinkEnds,
        shutdown: CancellationToken,
    ) -> Arc<MediaLinks> {
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
        // Larger than any earlier run's (a restart gets fresh keys).
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let task = Task {
            socket,
            node_id,
            secret: LinkSecret::new(secret.as_bytes()),
            epoch,
            peers: HashMap::new(),
            by_tag: HashMap::new(),
            workers: ends.workers,
            events: event_tx,
            stats: SocketStats::default(),
            logged: SocketStats::default(),
        };
        tokio::spawn(task.run(ends.outgoing, cmd_rx, shutdown));
        tracing::info!(%local, "media link between nodes on UDP");
        Arc::new(MediaLinks {
            local,
            cmds,
            slots: Mutex::new(HashMap::new()),
            events: Mutex::new(Some(event_rx)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The link to `node` at `addr` (made on the first call; the same slot
    /// after, with `addr` as the new address).
    pub fn connect(&self, node: &str, addr: SocketAddr) -> RemoteSlot {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let next = RemoteSlot(u32::try_from(slots.len()).unwrap_or(u32::MAX));
            *slots.entry(node.to_owned()).or_insert(next)
        };
        let _ = self.cmds.send(Cmd::Connect {
            node: node.to_owned(),
            addr,
            slot,
        });
        slot
    }

    /// The slot of a node connected before.
    pub fn slot_of(&self, node: &str) -> Option<RemoteSlot> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(node).copied()
    }

    /// The stream of peer events (once).
    pub fn events(&self) -> Option<mpsc::Receiver<PeerEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// One peer's link counters.
    pub async fn stats(&self, slot: RemoteSlot) -> Option<LinkStats> {
        let (reply, rx) = oneshot::channel();
        self.cmds.send(Cmd::Stats { slot, reply }).ok()?;
        rx.await.ok().flatten()
    }

    /// The socket's counters.
    pub async fn socket_stats(&self) -> Option<SocketStats> {
        let (reply, rx) = oneshot::channel();
        self.cmds.send(Cmd::SocketStats(reply)).ok()?;
        rx.await.ok()
    }
}

struct Peer {
    node: String,
    addr: SocketAddr,
    link: Link,
    encoder: Encoder,
    decoder: Decoder,
    /// Tracks announced to each local shard, by meeting and local worker,
    /// with the peer's worker that announced each: to withdraw if the peer
    /// goes.
    announced: HashMap<(MeetingId, usize), BTreeMap<TrackId, u8>>,
    /// After the peer went silent, the meetings whose tracks were withdrawn
    /// here, with a local worker of each and the peer's workers that had
    /// announced them: greeted (`Hello`) when the peer is heard again.
    to_greet: HashMap<MeetingId, (usize, BTreeSet<u8>)>,
    /// The counters as last logged.
    logged: LinkStats,
    /// The peer's process (epoch) the announcements and codec table are
    /// of.
    epoch: Option<u64>,
}

struct Task {
    socket: UdpSocket,
    node_id: String,
    secret: LinkSecret,
    epoch: u64,
    peers: HashMap<RemoteSlot, Peer>,
    by_tag: HashMap<[u8; 8], RemoteSlot>,
    workers: Vec<mpsc::Sender<RelayBatch>>,
    events: mpsc::Sender<PeerEvent>,
    stats: SocketStats,
    /// The socket's counters as last logged.
    logged: SocketStats,
}

impl Task {
    async fn run(
        mut self,
        mut outgoing: mpsc::Receiver<RemoteBatch>,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        shutdown: CancellationToken,
    ) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut next_log = Instant::now() + STATS_LOG_EVERY;
        loop {
            // Commands first: a batch a worker queued after a connect finds
            // the peer.
            while let Ok(cmd) = cmds.try_recv() {
                self.command(cmd);
            }
            let next = self.peers.values().map(|p| p.link.poll_timeout()).min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(cmd) = cmds.recv() => self.command(cmd),
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, _from)) = r {
                        self.datagram(&mut buf[..n]);
                    }
                    for _ in 1..DATAGRAMS_PER_WAKE {
                        let Ok((n, _from)) = self.socket.try_recv_from(&mut buf) else { break };
                        self.datagram(&mut buf[..n]);
                    }
                }
                Some(batch) = outgoing.recv() => {
                    self.outgoing(batch);
                    for _ in 1..BATCHES_PER_WAKE {
                        let Ok(batch) = outgoing.try_recv() else { break };
                        self.outgoing(batch);
                    }
                }
                () = sleep => {}
            }
            // Timers run whatever woke the task, so a busy link still
            // NACKs and keeps alive on time.
            let now = Instant::now();
            for p in self.peers.values_mut() {
                if p.link.poll_timeout() <= now {
                    p.link.handle_timeout(now);
                }
            }
            if now >= next_log {
                next_log = now + STATS_LOG_EVERY;
                self.log_stats();
            }
            // Events first: the `Hello`s a peer heard again is owed go out
            // in this flush.
            self.events();
            self.flush().await;
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect { node, addr, slot } => {
                if let Some(p) = self.peers.get_mut(&slot) {
                    p.addr = addr;
                    return;
                }
                let config = LinkConfig {
                    secret: self.secret.clone(),
                    local: self.node_id.clone(),
                    peer: node.clone(),
                    epoch: self.epoch,
                    silence: SILENCE,
                };
                let Some(link) = Link::new(config, Instant::now()) else {
                    tracing::error!(%node, "media link key not derived");
                    return;
                };
                self.by_tag.insert(link.peer_tag(), slot);
                tracing::info!(%node, %addr, "media link to a node");
                self.peers.insert(
                    slot,
                    Peer {
                        node,
                        addr,
                        link,
                        encoder: Encoder::new(),
                        decoder: Decoder::new(),
                        announced: HashMap::new(),
                        to_greet: HashMap::new(),
                        logged: LinkStats::default(),
                        epoch: None,
                    },
                );
            }
            Cmd::Stats { slot, reply } => {
                let _ = reply.send(self.peers.get(&slot).map(|p| p.link.stats().clone()));
            }
            Cmd::SocketStats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
        }
    }

    /// A local worker's batch for the meeting's shards on a peer node.
    fn outgoing(&mut self, batch: RemoteBatch) {
        let mut slot = None;
        let mut to: Vec<u8> = Vec::with_capacity(batch.to.len());
        for (s, w) in batch.to.iter().filter_map(|&i| RemoteSlot::split(i)) {
            // One node per batch (Relays groups them so).
            if *slot.get_or_insert(s) == s
                && let Ok(w) = u8::try_from(w)
            {
                to.push(w);
            }
        }
        let Some(slot) = slot else { return };
        let Some(peer) = self.peers.get_mut(&slot) else {
            self.stats.no_peer += 1;
            return;
        };
        let meeting = batch.batch.meeting.to_bytes();
        let head = FrameHead {
            meeting: &meeting,
            from: u16::try_from(batch.batch.from).unwrap_or(u16::MAX),
            to: &to,
        };
        let now = Instant::now();
        let Peer { link, encoder, .. } = peer;
        match encoder.encode_batch(head, &batch.batch.items, FRAME_TARGET, now, |frame| {
            link.send(frame, now)
        }) {
            Ok(skipped) => self.stats.unencodable += skipped as u64,
            Err(_) => self.stats.unencodable += batch.batch.items.len() as u64,
        }
    }

    /// A datagram from the network.
    fn datagram(&mut self, datagram: &mut [u8]) {
        let Some(slot) = Link::sender_tag(datagram).and_then(|t| self.by_tag.get(&t).copied())
        else {
            self.stats.unknown_sender += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&slot) else {
            return;
        };
        let now = Instant::now();
        let received = peer.link.receive(datagram, now);
        let epoch = peer.link.peer_epoch();
        if received.is_ok() && epoch != peer.epoch {
            // A restarted peer: its old tracks end here before anything
            // of the new process is delivered, and its codec table is new.
            if peer.epoch.is_some() {
                tracing::warn!(node = %peer.node, "media link: node restarted");
                // Its new shards say `Hello` when the control plane sets
                // them up; the old process's are not there to greet.
                withdraw(&mut peer.announced, slot, &self.workers, &mut self.stats);
                peer.to_greet.clear();
                peer.decoder = Decoder::new();
                let _ = self.events.try_send(PeerEvent::Restarted {
                    node: peer.node.clone(),
                    slot,
                });
            }
            peer.epoch = epoch;
        }
        let Ok(Received::Data(frame)) = received else {
            return;
        };
        let decoded = match peer.decoder.decode(frame, now) {
            Ok(d) => d,
            Err(e) => {
                self.stats.bad_frames += 1;
                tracing::debug!(node = %peer.node, error = %e, "media link frame refused");
                return;
            }
        };
        self.stats.unknown_codec += u64::from(decoded.unknown_codec);
        let Some(meeting) = MeetingId::from_bytes(decoded.head.meeting) else {
            self.stats.bad_frames += 1;
            return;
        };
        let peer_worker = u8::try_from(decoded.head.from).unwrap_or(u8::MAX);
        let from = slot.shard(usize::from(decoded.head.from));
        let to = decoded.head.to;
        let mut items = Some(decoded.items);
        for (i, &w) in to.iter().enumerate() {
            let w = usize::from(w);
            let Some(tx) = self.workers.get(w) else {
                self.stats.bad_worker += 1;
                continue;
            };
            let Some(list) = (if i + 1 == to.len() {
                items.take()
            } else {
                items.clone()
            }) else {
                break;
            };
            for item in &list {
                match item {
                    Relayed::Published { track, .. } => {
                        peer.announced
                            .entry((meeting, w))
                            .or_default()
                            .insert(*track, peer_worker);
                    }
                    Relayed::Unpublished { track } => {
                        if let Some(tracks) = peer.announced.get_mut(&(meeting, w)) {
                            tracks.remove(track);
                            // Nothing kept for a meeting whose tracks ended.
                            if tracks.is_empty() {
                                peer.announced.remove(&(meeting, w));
                            }
                        }
                    }
                    _ => {}
                }
            }
            let batch = RelayBatch {
                from,
                meeting,
                items: list,
            };
            if tx.try_send(batch).is_err() {
                self.stats.delivery_dropped += 1;
            }
        }
    }

    /// Each peer's counters, when they changed since the last time.
    fn log_stats(&mut self) {
        for p in self.peers.values_mut() {
            let s = p.link.stats();
            if *s == p.logged {
                continue;
            }
            let refused =
                s.malformed + s.wrong_sender + s.stale_epoch + s.replayed + s.too_old + s.forged;
            tracing::info!(
                node = %p.node,
                sent = s.sent,
                received = s.received,
                resent = s.resent,
                repaired = s.repaired,
                lost = s.lost,
                refused,
                forged = s.forged,
                "media link stats"
            );
            p.logged = s.clone();
        }
        if self.stats != self.logged {
            tracing::info!(socket = ?self.stats, "media link socket stats");
            self.logged = self.stats.clone();
        }
    }

    async fn flush(&mut self) {
        for p in self.peers.values_mut() {
            while let Some(d) = p.link.poll_transmit() {
                if let Err(e) = self.socket.send_to(&d, p.addr).await {
                    tracing::debug!(node = %p.node, error = %e, "media link send failed");
                }
            }
        }
    }

    /// Peer events to the control plane; a peer gone withdraws the tracks
    /// it announced to the shards here.
    fn events(&mut self) {
        for (&slot, p) in &mut self.peers {
            while let Some(e) = p.link.poll_event() {
                let node = p.node.clone();
                let event = match e {
                    LinkEvent::Gone => {
                        tracing::warn!(%node, "media link silent: node gone");
                        for (meeting, greet) in
                            withdraw(&mut p.announced, slot, &self.workers, &mut self.stats)
                        {
                            let (worker, from) = greet;
                            p.to_greet
                                .entry(meeting)
                                .or_insert_with(|| (worker, BTreeSet::new()))
                                .1
                                .extend(from);
                        }
                        PeerEvent::Gone { node, slot }
                    }
                    LinkEvent::Back => {
                        tracing::info!(%node, "media link heard again: node back");
                        greet(p, &mut self.stats);
                        PeerEvent::Back { node, slot }
                    }
                };
                let _ = self.events.try_send(event);
            }
        }
    }
}

/// Asks the peer's shards of each meeting whose tracks were withdrawn
/// here while it was silent to announce their tracks again
/// (`Relayed::Hello`, which a shard answers with its `Published` tracks).
fn greet(peer: &mut Peer, stats: &mut SocketStats) {
    let now = Instant::now();
    let Peer {
        link,
        encoder,
        to_greet,
        ..
    } = peer;
    for (meeting, (worker, to)) in to_greet.drain() {
        let meeting = meeting.to_bytes();
        let to: Vec<u8> = to.into_iter().collect();
        let head = FrameHead {
            meeting: &meeting,
            from: u16::try_from(worker).unwrap_or(u16::MAX),
            to: &to,
        };
        let items = [Relayed::Hello];
        match encoder.encode_batch(head, &items, FRAME_TARGET, now, |frame| {
            link.send(frame, now)
        }) {
            Ok(skipped) => stats.unencodable += skipped as u64,
            Err(_) => stats.unencodable += 1,
        }
    }
}

/// Ends, on the shards here, the tracks a peer had announced to them (as
/// its publishers leaving would). Returns, by meeting, a local worker of
/// it and the peer's workers that had announced them, to greet later.
fn withdraw(
    announced: &mut HashMap<(MeetingId, usize), BTreeMap<TrackId, u8>>,
    slot: RemoteSlot,
    workers: &[mpsc::Sender<RelayBatch>],
    stats: &mut SocketStats,
) -> HashMap<MeetingId, (usize, BTreeSet<u8>)> {
    let mut greet: HashMap<MeetingId, (usize, BTreeSet<u8>)> = HashMap::new();
    for ((meeting, worker), tracks) in announced.drain() {
        greet
            .entry(meeting)
            .or_insert_with(|| (worker, BTreeSet::new()))
            .1
            .extend(tracks.values().copied());
        let Some(tx) = workers.get(worker) else {
            continue;
        };
        let items = tracks
            .into_keys()
            .map(|track| Relayed::Unpublished { track })
            .collect();
        let batch = RelayBatch {
            from: slot.shard(0),
            meeting,
            items,
        };
        if tx.try_send(batch).is_err() {
            stats.delivery_dropped += 1;
        }
    }
    greet
}

#[cfg(test)]
mod tests;
