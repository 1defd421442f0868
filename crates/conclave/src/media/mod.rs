//! The media driver: the I/O shell around `conclave-media`.
//!
//! Meetings are spread over worker threads (default: one per core). Each
//! worker owns one UDP port (and the TCP port of the same number, for
//! clients whose network drops UDP: [`tcp`]), its own runtime and the [`conclave_media::Router`]
//! of every meeting assigned to it, so a meeting's tracks are only ever
//! offered to that meeting's members and no packet crosses a thread or takes
//! a lock. A meeting's worker is a hash of its (random) ID: rooms need no
//! shared table to find it. A room opens its meeting's media once
//! ([`MediaHandle::open`]): it gets a [`MediaLink`] to send the core's
//! [`MediaCommand`]s on, and the meeting's own stream of [`MediaEvent`]s,
//! which it feeds to its core, which delivers them to members only. This
//! module knows nothing of rooms. Datagrams are steered to a meeting's router
//! by source address: the worker remembers which meeting and peer took the
//! first datagram (the ICE check) from each address.
//!
//! A large meeting may also spread over the workers (issue 23,
//! `spread_meetings_from`): past that many members, newcomers go to the
//! least-loaded worker ([`shard`]), each worker with members of the meeting
//! runs a router shard of it, and the shards hand each other what their
//! publishers send over per-worker queues of batches ([`relay`]), so a
//! lecture's fan-out uses every core and still takes no lock per packet.

mod lag;
pub mod link;
mod meeting;
pub mod priority;
pub mod relay;
pub mod shard;
mod tcp;
mod udp;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use conclave_core::{MediaCommand, MediaEvent};
use conclave_proto::{MeetingId, ParticipantId, PublishedTrack};
use tokio::sync::mpsc;

use shard::Placement;

use crate::cluster::cascade::{Cascade, Down, Mesh, RemoteShard};

/// Commands queued for each worker, at most this many.
const WORKER_QUEUE: usize = 4096;
/// Events queued for each meeting's room, at most this many; past that they
/// are dropped (and the worker says so).
const MEETING_EVENT_QUEUE: usize = 1024;
/// Most workers a server may be configured with.
pub const MAX_WORKERS: usize = 256;

enum DriverCmd {
    /// A room started: the meeting's router, and where its events go.
    Open {
        meeting: MeetingId,
        events: mpsc::Sender<MediaEvent>,
        /// The router is a shard of a meeting that may spread.
        relay: bool,
        /// The shard reports the active speaker (the home one only, so the
        /// room hears one voice).
        speaker: bool,
    },
    Media {
        meeting: MeetingId,
        cmd: MediaCommand,
    },
    /// What a member of a spread meeting publishes, for the shards that
    /// offer its tracks (camera or screen) and size them.
    Declared {
        meeting: MeetingId,
        participant: ParticipantId,
        tracks: Vec<PublishedTrack>,
    },
    /// The workers with a shard of the meeting now.
    Shards {
        meeting: MeetingId,
        workers: Vec<usize>,
    },
    /// The meeting's room stopped: drop its router.
    Closed { meeting: MeetingId },
}

/// One meeting's way to its media worker(s), held by its room.
pub struct MediaLink {
    meeting: MeetingId,
    media: MediaHandle,
    /// Where each member is served; all at home unless the meeting spreads.
    placement: Placement,
    /// The workers with a shard of the meeting (the home one first).
    shards: BTreeSet<usize>,
    /// Where the meeting's room hears from its media, for new shards.
    events: mpsc::Sender<MediaEvent>,
    /// Each member's latest published tracks, for new shards.
    declared: HashMap<ParticipantId, Vec<PublishedTrack>>,
    /// Cluster mode, cascading on, this node holding the meeting's lease:
    /// the members whose media other nodes serve.
    cascade: Option<Cascading>,
    /// A cascaded meeting's shard on a node serving some of its members:
    /// the shards on the other nodes, as indices for `Shards`.
    remote_shards: Vec<usize>,
    /// This link drives the shard here of a meeting held elsewhere: its
    /// members count in [`MediaHandle::cascaded_members`].
    served: bool,
}

/// What [`MediaLink::cascaded`] left to do here.
enum Cascaded {
    /// Nothing: another node serves the member, or it is not placed yet.
    Done,
    /// Send the command to this node's shards, then the member's gates
    /// and view sizes if it was placed here just now.
    Here(Vec<MediaCommand>),
}

impl Cascading {
    /// What a member placed (again) needs its new shard to know: its gates
    /// and its view sizes.
    fn state_of(&self, p: ParticipantId) -> Vec<MediaCommand> {
        self.allowed
            .get(&p)
            .into_iter()
            .chain(
                self.views
                    .iter()
                    .filter(|((s, _, _), _)| *s == p)
                    .map(|(_, v)| v),
            )
            .cloned()
            .collect()
    }
}

/// A meeting's media over the nodes, as its lease holder's link sees it
/// ([`crate::cluster::cascade`]).
struct Cascading {
    cascade: Arc<Cascade>,
    /// The meeting's lease token, which fences its control channels.
    token: u64,
    /// Member → the node serving its media.
    remote_of: HashMap<ParticipantId, String>,
    /// The meeting's shard on each other node, by node ID.
    nodes: HashMap<String, RemoteShard>,
    /// Each member's last gates, given again to the shard of a member
    /// placed anew after its node went.
    allowed: HashMap<ParticipantId, MediaCommand>,
    /// Each member's last view size of each publisher's kind, given again
    /// likewise.
    /// Keyed by subscriber, publisher and kind (`MediaKind` as a number:
    /// it is not `Hash`).
    views: HashMap<(ParticipantId, ParticipantId, u8), MediaCommand>,
    /// Where the meeting's shards are, on every node.
    mesh: Arc<std::sync::Mutex<Mesh>>,
    /// Notified when a node's control channel ends.
    gone: Arc<tokio::sync::Notify>,
}

impl MediaLink {
    /// Queues a command of the meeting's core for the router (shard) that
    /// serves its member.
    pub fn send(&mut self, cmd: MediaCommand) {
        let mut replay = Vec::new();
        if self.cascade.is_some() {
            match self.cascaded(&cmd) {
                Cascaded::Done => return,
                Cascaded::Here(r) => replay = r,
            }
        }
        if self.media.spread_from == 0 && self.cascade.is_none() {
            let worker = self.placement.home();
            self.media.send_to(worker, self.media_cmd(cmd));
            return;
        }
        match &cmd {
            MediaCommand::Offer {
                participant,
                tracks,
                ..
            } => {
                let worker = self.place(*participant);
                self.declared.insert(*participant, tracks.clone());
                for &w in self.shards.iter().filter(|w| **w != worker) {
                    self.media.send_to(
                        w,
                        DriverCmd::Declared {
                            meeting: self.meeting,
                            participant: *participant,
                            tracks: tracks.clone(),
                        },
                    );
                }
                self.media.send_to(worker, self.media_cmd(cmd));
            }
            MediaCommand::Answer { participant, .. }
            | MediaCommand::Allow { participant, .. }
            | MediaCommand::KeyFrame { participant } => {
                let worker = self.place(*participant);
                self.media.send_to(worker, self.media_cmd(cmd));
            }
            MediaCommand::ViewSize { subscriber, .. } => {
                let worker = self
                    .placement
                    .worker_of(*subscriber)
                    .unwrap_or(self.placement.home());
                self.media.send_to(worker, self.media_cmd(cmd));
            }
            MediaCommand::Leave { participant } => {
                if let Some(w) = self.placement.leave(*participant) {
                    self.media.unload(w);
                    self.served_member(false);
                }
                self.declared.remove(participant);
                // Every shard forgets what the member published.
                for &w in &self.shards {
                    self.media.send_to(w, self.media_cmd(cmd.clone()));
                }
            }
        }
        for cmd in replay {
            self.send(cmd);
        }
    }

    /// What a member served elsewhere publishes: every shard here labels
    /// its tracks by it (the meeting's lease holder tells a node serving
    /// some of its members).
    pub fn declare(&mut self, participant: ParticipantId, tracks: Vec<PublishedTrack>) {
        self.declared.insert(participant, tracks.clone());
        for &w in &self.shards {
            self.media.send_to(
                w,
                DriverCmd::Declared {
                    meeting: self.meeting,
                    participant,
                    tracks: tracks.clone(),
                },
            );
        }
    }

    /// The shards of the meeting on other nodes are now `remote` (indices
    /// of the media link's slots): every shard here hands them its media.
    pub fn set_remote_shards(&mut self, remote: Vec<usize>) {
        self.remote_shards = remote;
        self.media
            .set_shards(self.meeting, &self.shards, &self.remote_shards);
    }

    /// The workers with a shard of the meeting here.
    pub fn local_shards(&self) -> &BTreeSet<usize> {
        &self.shards
    }

    /// Cascading: sends `cmd` to the node serving its member when that is
    /// another node (true: nothing more to do here), and what every other
    /// node must know (what a member publishes, leaves). A member whose
    /// node's channel ended is placed again at its next offer.
    fn cascaded(&mut self, cmd: &MediaCommand) -> Cascaded {
        // Their members are placed again at their next offer.
        let _ = self.drop_gone_nodes();
        let Some(c) = self.cascade.as_mut() else {
            return Cascaded::Here(Vec::new());
        };
        match cmd {
            MediaCommand::Offer {
                participant,
                tracks,
                ..
            } => {
                let p = *participant;
                let node = match c.remote_of.get(&p) {
                    Some(n) => Some(n.clone()),
                    None if self.placement.worker_of(p).is_some() => None,
                    None => {
                        let mut placed: HashMap<String, usize> = HashMap::new();
                        for n in c.remote_of.values() {
                            *placed.entry(n.clone()).or_default() += 1;
                        }
                        let here = self.placement.members().count();
                        let members = c.remote_of.len() + here;
                        c.cascade.pick(members, here, &placed).map(|record| {
                            let id = record.node_id.clone();
                            if !c.nodes.contains_key(&id) {
                                tracing::info!(meeting = %self.meeting, node = %id, "meeting cascades to another node");
                                let shard = c.cascade.connect(
                                    self.meeting,
                                    c.token,
                                    &record,
                                    self.events.clone(),
                                    &c.mesh,
                                    &c.gone,
                                );
                                for (q, t) in &self.declared {
                                    shard.send(Down::Declared {
                                        participant: *q,
                                        tracks: t.clone(),
                                    });
                                }
                                c.nodes.insert(id.clone(), shard);
                            }
                            c.remote_of.insert(p, id.clone());
                            if let Some(shard) = c.nodes.get(&id) {
                                shard.add_member(p);
                                for cmd in c.state_of(p) {
                                    shard.media(cmd);
                                }
                            }
                            id
                        })
                    }
                };
                self.declared.insert(p, tracks.clone());
                for (id, shard) in &c.nodes {
                    if Some(id) != node.as_ref() {
                        shard.send(Down::Declared {
                            participant: p,
                            tracks: tracks.clone(),
                        });
                    }
                }
                let Some(node) = node else {
                    // Placed here now: its gates follow its offer.
                    let first = self.placement.worker_of(p).is_none();
                    let replay = if first { c.state_of(p) } else { Vec::new() };
                    return Cascaded::Here(replay);
                };
                for &w in &self.shards {
                    self.media.send_to(
                        w,
                        DriverCmd::Declared {
                            meeting: self.meeting,
                            participant: p,
                            tracks: tracks.clone(),
                        },
                    );
                }
                if let Some(shard) = c.nodes.get(&node) {
                    shard.media(cmd.clone());
                }
                Cascaded::Done
            }
            MediaCommand::Answer { participant, .. }
            | MediaCommand::Allow { participant, .. }
            | MediaCommand::KeyFrame { participant }
            | MediaCommand::ViewSize {
                subscriber: participant,
                ..
            } => {
                match cmd {
                    MediaCommand::Allow { .. } => {
                        c.allowed.insert(*participant, cmd.clone());
                    }
                    MediaCommand::ViewSize {
                        publisher, kind, ..
                    } => {
                        let kind = match kind {
                            conclave_proto::MediaKind::Audio => 0,
                            conclave_proto::MediaKind::Video => 1,
                            conclave_proto::MediaKind::Screen => 2,
                        };
                        c.views
                            .insert((*participant, *publisher, kind), cmd.clone());
                    }
                    _ => {}
                }
                if let Some(shard) = c.remote_of.get(participant).and_then(|n| c.nodes.get(n)) {
                    shard.media(cmd.clone());
                    return Cascaded::Done;
                }
                let placed = self.placement.worker_of(*participant).is_some();
                if !placed && !matches!(cmd, MediaCommand::ViewSize { .. }) {
                    // Not placed yet: its node is chosen at its offer, which
                    // its gates follow; nothing else concerns it before.
                    return Cascaded::Done;
                }
                Cascaded::Here(Vec::new())
            }
            MediaCommand::Leave { participant } => {
                c.allowed.remove(participant);
                c.views
                    .retain(|(s, p, _), _| s != participant && p != participant);
                if let Some(shard) = c
                    .remote_of
                    .remove(participant)
                    .and_then(|n| c.nodes.get(&n))
                {
                    shard.remove_member(*participant);
                }
                for shard in c.nodes.values() {
                    shard.media(cmd.clone());
                }
                // The shards here forget it too (and its remote tracks).
                Cascaded::Here(Vec::new())
            }
        }
    }

    /// Forgets the nodes whose control channel ended: their members' tracks
    /// end on every other shard, and each is placed again when its client
    /// offers anew (its peer connection went with the node).
    fn drop_gone_nodes(&mut self) -> Vec<ParticipantId> {
        let mut lost = Vec::new();
        let Some(c) = self.cascade.as_mut() else {
            return lost;
        };
        let gone: Vec<String> = c
            .nodes
            .iter()
            .filter(|(_, s)| s.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            tracing::warn!(meeting = %self.meeting, node = %id, "cascade control channel gone; its members are placed again at their next offer");
            c.nodes.remove(&id);
            c.mesh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove_node(&id);
            let members: Vec<ParticipantId> = c
                .remote_of
                .iter()
                .filter(|(_, n)| **n == id)
                .map(|(p, _)| *p)
                .collect();
            lost.extend(&members);
            for p in members {
                c.remote_of.remove(&p);
                self.declared.remove(&p);
                let leave = MediaCommand::Leave { participant: p };
                for shard in c.nodes.values() {
                    shard.media(leave.clone());
                }
                for &w in &self.shards {
                    self.media.send_to(
                        w,
                        DriverCmd::Media {
                            meeting: self.meeting,
                            cmd: leave.clone(),
                        },
                    );
                }
            }
        }
        lost
    }

    /// Cascading: what tells the room that a node's control channel ended.
    pub fn node_gone(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.cascade.as_ref().map(|c| Arc::clone(&c.gone))
    }

    /// Cascading: the members whose media node went away since the last
    /// call (they are placed again at their next offer).
    pub fn lost_members(&mut self) -> Vec<ParticipantId> {
        self.drop_gone_nodes()
    }

    fn media_cmd(&self, cmd: MediaCommand) -> DriverCmd {
        DriverCmd::Media {
            meeting: self.meeting,
            cmd,
        }
    }

    /// The worker of `member`, placing a newcomer; opens a shard on a
    /// worker the meeting reaches for the first time.
    fn place(&mut self, member: ParticipantId) -> usize {
        let loads = self.media.loads();
        let placed = self.placement.place(member, &loads);
        if placed.new {
            self.media.load(placed.worker);
            self.served_member(true);
        }
        if self.shards.insert(placed.worker) {
            tracing::info!(meeting = %self.meeting, worker = placed.worker, "meeting spreads to another media worker");
            self.media.send_to(
                placed.worker,
                DriverCmd::Open {
                    meeting: self.meeting,
                    events: self.events.clone(),
                    relay: true,
                    speaker: false,
                },
            );
            for (participant, tracks) in &self.declared {
                self.media.send_to(
                    placed.worker,
                    DriverCmd::Declared {
                        meeting: self.meeting,
                        participant: *participant,
                        tracks: tracks.clone(),
                    },
                );
            }
            match &self.cascade {
                Some(c) => c
                    .mesh
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_local(self.shards.clone()),
                None => self
                    .media
                    .set_shards(self.meeting, &self.shards, &self.remote_shards),
            }
        }
        placed.worker
    }

    /// Counts a member of a meeting held elsewhere placed here (or gone).
    fn served_member(&self, placed: bool) {
        if !self.served {
            return;
        }
        let served = &self.media.served;
        if placed {
            served.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = served.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        }
    }

    /// The room stopped: every shard drops its router (a remote node's
    /// when its control channel closes).
    pub fn close(mut self) {
        // Dropping the channels' senders ends them.
        self.cascade = None;
        let members: Vec<(ParticipantId, usize)> = self.placement.members().collect();
        for (p, w) in members {
            self.placement.leave(p);
            self.media.unload(w);
            self.served_member(false);
        }
        for &w in &self.shards {
            self.media.send_to(
                w,
                DriverCmd::Closed {
                    meeting: self.meeting,
                },
            );
        }
    }
}

/// The rooms' handle on the media workers.
#[derive(Clone)]
pub struct MediaHandle {
    workers: Arc<[WorkerHandle]>,
    /// Members placed on each worker, over all meetings: what a spreading
    /// meeting balances.
    loads: Arc<[AtomicUsize]>,
    /// A meeting spreads over the workers from this many members; 0 never.
    spread_from: usize,
    /// The workers' ends for the media link to other nodes, until it takes
    /// them ([`MediaHandle::take_link_ends`]).
    link_ends: Arc<std::sync::Mutex<Option<relay::LinkEnds>>>,
    /// Cluster mode with cascading on ([`crate::cluster::cascade`]).
    cascade: Arc<OnceLock<Arc<Cascade>>>,
    /// Members of meetings held by other nodes whose media is served here.
    served: Arc<AtomicUsize>,
}

struct WorkerHandle {
    tx: mpsc::Sender<DriverCmd>,
}

impl MediaHandle {
    /// The workers' ends for [`link::MediaLinks::start`] (once).
    pub fn take_link_ends(&self) -> Option<relay::LinkEnds> {
        self.link_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Opens a meeting's media on its worker: the link to send its commands
    /// on, and the stream of its events. Once per running room; the room
    /// closes the link when it stops.
    pub fn open(&self, meeting: MeetingId) -> (MediaLink, mpsc::Receiver<MediaEvent>) {
        self.open_with(meeting, true, None)
    }

    /// [`MediaHandle::open`] for a meeting this node holds the lease of,
    /// with `token`: with cascading on, its media may go to other nodes.
    pub fn open_leased(
        &self,
        meeting: MeetingId,
        token: u64,
    ) -> (MediaLink, mpsc::Receiver<MediaEvent>) {
        let home = self.worker_for(meeting);
        let cascading = self.cascade().map(|cascade| Cascading {
            mesh: Mesh::new(
                meeting,
                Arc::clone(&cascade),
                self.clone(),
                BTreeSet::from([home]),
            ),
            cascade,
            token,
            remote_of: HashMap::new(),
            nodes: HashMap::new(),
            allowed: HashMap::new(),
            views: HashMap::new(),
            gone: Arc::default(),
        });
        self.open_with(meeting, true, cascading)
    }

    /// The shard here of a meeting another node holds, for the members it
    /// placed here: it does not report the active speaker (the holder's
    /// home shard does).
    pub fn open_remote(&self, meeting: MeetingId) -> (MediaLink, mpsc::Receiver<MediaEvent>) {
        self.open_with(meeting, false, None)
    }

    fn open_with(
        &self,
        meeting: MeetingId,
        speaker: bool,
        cascade: Option<Cascading>,
    ) -> (MediaLink, mpsc::Receiver<MediaEvent>) {
        let (events, rx) = mpsc::channel(MEETING_EVENT_QUEUE);
        let home = self.worker_for(meeting);
        // A shard of a cascaded meeting hands on its media like a spread one.
        let relay = self.spread_from > 0 || cascade.is_some() || !speaker;
        self.send_to(
            home,
            DriverCmd::Open {
                meeting,
                events: events.clone(),
                relay,
                speaker,
            },
        );
        let link = MediaLink {
            meeting,
            media: self.clone(),
            placement: Placement::new(home, self.spread_from),
            shards: BTreeSet::from([home]),
            events,
            declared: HashMap::new(),
            cascade,
            remote_shards: Vec::new(),
            served: !speaker,
        };
        (link, rx)
    }

    /// Tells each of `local`'s workers the meeting's shards: `local` and
    /// `remote` (shards on other nodes).
    pub(crate) fn set_shards(&self, meeting: MeetingId, local: &BTreeSet<usize>, remote: &[usize]) {
        let workers: Vec<usize> = local.iter().chain(remote).copied().collect();
        for &w in local {
            self.send_to(
                w,
                DriverCmd::Shards {
                    meeting,
                    workers: workers.clone(),
                },
            );
        }
    }

    /// Members of meetings held by other nodes whose media this node
    /// serves (cascading): its node record counts them with its own.
    pub fn cascaded_members(&self) -> u64 {
        self.served.load(Ordering::Relaxed) as u64
    }

    /// Turns cascading on (cluster mode, once the cluster is up).
    pub fn set_cascade(&self, cascade: Arc<Cascade>) {
        let _ = self.cascade.set(cascade);
    }

    pub fn cascade(&self) -> Option<Arc<Cascade>> {
        self.cascade.get().cloned()
    }

    /// Queues a command for worker `i`; drops it (and says so) if that
    /// worker is overwhelmed.
    fn send_to(&self, i: usize, cmd: DriverCmd) {
        let Some(worker) = self.workers.get(i) else {
            return;
        };
        match worker.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("media worker queue full; command dropped");
            }
            // Shutting down: the worker is gone and so is all media.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Members placed on each worker, over all meetings (those of meetings
    /// that do not spread are not counted).
    pub fn members_per_worker(&self) -> Vec<usize> {
        self.loads()
    }

    fn loads(&self) -> Vec<usize> {
        self.loads
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect()
    }

    fn load(&self, worker: usize) {
        if let Some(l) = self.loads.get(worker) {
            l.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unload(&self, worker: usize) {
        if let Some(l) = self.loads.get(worker) {
            // Never below zero, whatever the order of leaves.
            let _ = l.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        }
    }

    /// The home worker of a meeting.
    fn worker_for(&self, meeting: MeetingId) -> usize {
        // SipHash with fixed keys: the same meeting always lands on the same
        // worker. Meeting IDs are random, so meetings spread evenly.
        let mut h = std::hash::DefaultHasher::new();
        meeting.hash(&mut h);
        let n = self.workers.len() as u64;
        usize::try_from(h.finish() % n).unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaStartError {
    #[error("cannot bind the media port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("media port {0} + {1} workers is past 65535")]
    Ports(u16, usize),
    #[error("cannot start a media worker: {0}")]
    Worker(std::io::Error),
}

/// Binds one UDP socket per worker and starts the workers: ports
/// `bind.port()`, `bind.port() + 1`, … (or ephemeral ones for port 0).
/// `announce` is the address put in ICE candidates (defaults to the bound
/// one; 127.0.0.1 when bound to all interfaces and nothing better is known).
/// `workers` 0 means one per core, each asking for the nice value `nice`
/// ([`priority`]; 0: the process's). Each meeting's router forwards every
/// member the audio of `audio_last_n` others at most (0: no limit), and
/// seals forwarded media itself if `fast_path` (asking members for a playout
/// delay while repairs come late if `playout_delay`, and holding media back
/// from a congested subscriber if `hold_back`). A meeting spreads over the
/// workers from `spread_from` members (0: never).
#[allow(clippy::too_many_arguments)]
pub fn start(
    bind: SocketAddr,
    announce: Option<IpAddr>,
    workers: usize,
    nice: i32,
    audio_last_n: usize,
    fast_path: bool,
    playout_delay: bool,
    hold_back: bool,
    spread_from: usize,
    counters: crate::telemetry::MediaCounters,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<MediaHandle, MediaStartError> {
    let count = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(MAX_WORKERS);
    let mut handles = Vec::with_capacity(count);
    let (relay_txs, mut relay_rxs): (Vec<_>, Vec<_>) = (0..count).map(|_| relay::channel()).unzip();
    let (to_link, link_ends) = relay::remote(relay_txs.clone());
    for i in 0..count {
        let port = match bind.port() {
            0 => 0,
            base => u16::try_from(i)
                .ok()
                .and_then(|i| base.checked_add(i))
                .ok_or(MediaStartError::Ports(base, count))?,
        };
        let addr = SocketAddr::new(bind.ip(), port);
        let bind_err = |source| MediaStartError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        let bound = socket.local_addr().map_err(bind_err)?;
        let ip = announce.unwrap_or(if bound.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        });
        let local = SocketAddr::new(ip, bound.port());
        // ICE-TCP on the same port number: one port to open in a firewall
        // per worker, for both transports (ephemeral when UDP's is).
        let tcp_addr = SocketAddr::new(bind.ip(), if bind.port() == 0 { 0 } else { bound.port() });
        let tcp_err = |source| MediaStartError::Bind {
            addr: tcp_addr,
            source,
        };
        let listener = std::net::TcpListener::bind(tcp_addr).map_err(tcp_err)?;
        listener.set_nonblocking(true).map_err(tcp_err)?;
        let tcp_local = SocketAddr::new(ip, listener.local_addr().map_err(tcp_err)?.port());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(MediaStartError::Worker)?;
        let (socket, listener) = {
            let _in_runtime = runtime.enter();
            (
                // Reading only: the worker waits for room to send on its own
                // registration, only when the buffer is full (worker.rs).
                worker::register(socket, tokio::io::Interest::READABLE).map_err(bind_err)?,
                tokio::net::TcpListener::from_std(listener).map_err(tcp_err)?,
            )
        };
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let shutdown = shutdown.clone();
        let counters = counters.clone();
        let relays =
            relay::Relays::new(i, relay_rxs.remove(0), relay_txs.clone()).remote(to_link.clone());
        std::thread::Builder::new()
            .name(format!("media-{i}"))
            .spawn(move || {
                priority::apply(i, nice);
                let tcp = tcp::Tcp::new(listener, tcp_local);
                let worker = worker::Worker::new(socket, local, tcp)
                    .audio_last_n(audio_last_n)
                    .fast_path(fast_path)
                    .playout_delay(playout_delay)
                    .hold_back(hold_back)
                    .counters(counters)
                    .relays(relays);
                runtime.block_on(worker.run(rx, shutdown));
            })
            .map_err(MediaStartError::Worker)?;
        tracing::info!(%local, tcp = %tcp_local, worker = i, "media on UDP and ICE-TCP");
        handles.push(WorkerHandle { tx });
    }
    Ok(MediaHandle {
        loads: (0..handles.len()).map(|_| AtomicUsize::new(0)).collect(),
        workers: handles.into(),
        spread_from,
        link_ends: Arc::new(std::sync::Mutex::new(Some(link_ends))),
        cascade: Arc::default(),
        served: Arc::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(workers: usize) -> (MediaHandle, Vec<mpsc::Receiver<DriverCmd>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel(8)).unzip();
        let workers: Arc<[WorkerHandle]> = txs.into_iter().map(|tx| WorkerHandle { tx }).collect();
        let loads = (0..workers.len()).map(|_| AtomicUsize::new(0)).collect();
        (
            MediaHandle {
                workers,
                loads,
                spread_from: 0,
                link_ends: Arc::default(),
                cascade: Arc::default(),
                served: Arc::default(),
            },
            rxs,
        )
    }

    fn index(h: &MediaHandle, meeting: MeetingId) -> usize {
        h.worker_for(meeting)
    }

    #[test]
    fn a_meeting_always_lands_on_the_same_worker_and_meetings_spread_evenly() {
        let (h, _rx) = handle(4);
        let mut per_worker = [0usize; 4];
        for _ in 0..4000 {
            let m = MeetingId::generate();
            let i = index(&h, m);
            assert_eq!(index(&h, m), i);
            assert_eq!(index(&h.clone(), m), i);
            per_worker[i] += 1;
        }
        // 1,000 expected each; a hash that favoured a worker would show.
        assert!(
            per_worker.iter().all(|&n| (800..1200).contains(&n)),
            "{per_worker:?}"
        );
    }

    #[test]
    fn every_command_of_a_meeting_reaches_that_meetings_worker_only() {
        let (h, mut rx) = handle(3);
        let m = MeetingId::generate();
        let i = index(&h, m);
        let (mut link, _events) = h.open(m);
        link.send(MediaCommand::KeyFrame {
            participant: conclave_proto::ParticipantId(1),
        });
        link.close();
        for (j, rx) in rx.iter_mut().enumerate() {
            let got = std::iter::from_fn(|| rx.try_recv().ok()).count();
            assert_eq!(got, if j == i { 3 } else { 0 }, "worker {j}");
        }
    }

    /// What a worker's queue holds, by kind: O open, M media command, D
    /// declared tracks, S shard set, C closed.
    fn kinds(rx: &mut mpsc::Receiver<DriverCmd>) -> String {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| match c {
                DriverCmd::Open { relay, speaker, .. } => {
                    format!("O{}{}", u8::from(relay), u8::from(speaker))
                }
                DriverCmd::Media { .. } => "M".into(),
                DriverCmd::Declared { .. } => "D".into(),
                DriverCmd::Shards { workers, .. } => format!("S{}", workers.len()),
                DriverCmd::Closed { .. } => "C".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_spreading_meeting_sends_each_members_commands_to_its_worker_and_tells_every_shard() {
        let (mut h, mut rx) = handle(2);
        h.spread_from = 1;
        let m = MeetingId::generate();
        let home = index(&h, m);
        let other = 1 - home;
        let (mut link, _events) = h.open(m);
        let (one, two) = (ParticipantId(1), ParticipantId(2));
        // The first member stays home.
        link.send(MediaCommand::Allow {
            participant: one,
            audio: true,
            video: true,
            screen: false,
        });
        link.send(MediaCommand::Offer {
            participant: one,
            sdp: String::new(),
            tracks: vec![PublishedTrack {
                mid: "0".into(),
                kind: conclave_proto::MediaKind::Video,
            }],
        });
        assert_eq!(kinds(&mut rx[home]), "O11 M M");
        assert_eq!(kinds(&mut rx[other]), "");
        // The second goes to the idle worker, which opens a shard that does
        // not report the speaker, hears what the first publishes, and then
        // gets the second's offer; both shards learn the shard set.
        link.send(MediaCommand::Offer {
            participant: two,
            sdp: String::new(),
            tracks: Vec::new(),
        });
        assert_eq!(kinds(&mut rx[other]), "O10 D S2 M");
        assert_eq!(kinds(&mut rx[home]), "S2 D");
        assert_eq!(h.members_per_worker()[home], 1);
        assert_eq!(h.members_per_worker()[other], 1);
        // A view size goes to the subscriber's worker; a leave to every
        // shard; closing closes every shard and frees the places.
        link.send(MediaCommand::ViewSize {
            subscriber: two,
            publisher: one,
            kind: conclave_proto::MediaKind::Video,
            width: 320,
            height: 180,
        });
        assert_eq!(kinds(&mut rx[other]), "M");
        link.send(MediaCommand::Leave { participant: two });
        assert_eq!(kinds(&mut rx[home]), "M");
        assert_eq!(kinds(&mut rx[other]), "M");
        assert_eq!(h.members_per_worker()[other], 0);
        link.close();
        assert_eq!(kinds(&mut rx[home]), "C");
        assert_eq!(kinds(&mut rx[other]), "C");
        assert_eq!(h.members_per_worker(), vec![0, 0]);
    }
}
