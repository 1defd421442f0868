//! Running meetings: one tokio task per meeting owns its [`Meeting`] core and
//! the outbound queues of its connections.
//!
//! Connections talk to a room only through its command channel; the room
//! writes to a connection only through that connection's own bounded queue,
//! which exists only once the core has seated or queued the connection. A
//! room whose core is idle removes itself from the registry and ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_core::{
    BanKey, BreakoutOutput, ConnId, Identity, Input, MediaEvent, Meeting, MeetingConfig, Output,
};
use conclave_proto::{BreakoutTicket, EndReason, MeetingId, ResumeToken, ServerMessage};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::media::{MediaHandle, MediaLink};
use crate::store::{Store, StoreError};
use crate::turn::IceServers;

/// Commands queued for a room, at most this many.
const ROOM_QUEUE: usize = 1024;
/// How soon after a room ends (cluster mode) its lease is given up.
const LEASE_RELEASE_POLL: Duration = Duration::from_millis(200);

/// What a room hands a connection: a JSON text frame to send. The queue closing
/// means "close the socket".
pub type Outbound = Arc<str>;

pub enum RoomCmd {
    Join {
        conn: ConnId,
        sink: mpsc::Sender<Outbound>,
        name: String,
        recorder: bool,
        identity: Identity,
    },
    Resume {
        conn: ConnId,
        sink: mpsc::Sender<Outbound>,
        token: ResumeToken,
        mls_received: Option<u64>,
        /// Told whether the resume took the seat back, so that the
        /// connection counts a failure as it does when no room runs.
        seated: oneshot::Sender<bool>,
    },
    /// A `breakout_join`: the room's core checks the ticket.
    BreakoutJoin {
        conn: ConnId,
        sink: mpsc::Sender<Outbound>,
        name: String,
        identity: Identity,
        ticket: BreakoutTicket,
    },
    Input(Input),
    /// Cluster mode, draining: hand the meeting to another node. Its live
    /// state (with its people) is in Redis; the room stops without telling
    /// anyone it ended, so its lease is given up and every member's client
    /// resumes its seat on the node the next socket is placed on, as after
    /// a crash but without waiting for the lease to run out. Where the
    /// state cannot be saved (Redis away, or a room not under a lease) the
    /// meeting ends with `server_shutdown` instead.
    Move,
}

/// The registry of running meetings.
pub struct Rooms {
    map: Mutex<HashMap<MeetingId, mpsc::Sender<RoomCmd>>>,
    store: Store,
    media: MediaHandle,
    outbound_queue: usize,
    /// Added to each `joined` here, with credentials for that member alone.
    ice: IceServers,
    next_conn: AtomicU64,
    closing: AtomicBool,
    metrics: Arc<crate::telemetry::Metrics>,
    /// Seated members of all rooms, for the cluster's node record.
    participants: AtomicI64,
    /// In cluster mode, each room runs under its meeting's lease.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Serializes room starts in cluster mode: two joins starting the same
    /// meeting at once must not both ask for its lease.
    starting: tokio::sync::Mutex<()>,
    /// Breakout rooms opened by running meetings and not closed yet: what
    /// each starts with. They live in this process only (not in the store),
    /// on the parent's node.
    breakouts: Mutex<HashMap<MeetingId, (MeetingConfig, Vec<BanKey>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the meeting no longer exists")]
    Gone,
    #[error("the server is shutting down")]
    Closing,
    /// Cluster mode: Redis cannot be asked for the meeting's lease.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(#[from] crate::cluster::ClusterError),
    /// Cluster mode: another node holds the meeting's lease, and this join
    /// was not relayed to it (no `cluster.secret`, the holder's record ran
    /// out, or the lease was taken between routing and start).
    #[error("the meeting runs on another node ({0})")]
    Elsewhere(String),
}

impl Rooms {
    pub fn new(
        store: Store,
        media: MediaHandle,
        outbound_queue: usize,
        ice: IceServers,
        metrics: Arc<crate::telemetry::Metrics>,
        // In cluster mode, each room runs under its meeting's lease.
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Arc<Rooms> {
        Arc::new(Rooms {
            map: Mutex::new(HashMap::new()),
            store,
            media,
            outbound_queue,
            ice,
            next_conn: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            metrics,
            participants: AtomicI64::new(0),
            cluster,
            starting: tokio::sync::Mutex::new(()),
            breakouts: Mutex::new(HashMap::new()),
        })
    }

    /// The media workers (a cascaded meeting's shard here is opened on them).
    pub fn media(&self) -> &MediaHandle {
        &self.media
    }

    /// Members seated in all running rooms.
    pub fn participants(&self) -> u64 {
        u64::try_from(self.participants.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub fn next_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    pub fn outbound_queue(&self) -> usize {
        self.outbound_queue
    }

    pub fn is_running(&self, id: MeetingId) -> bool {
        self.lock().contains_key(&id)
    }

    pub fn running(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MeetingId, mpsc::Sender<RoomCmd>>> {
        // A poisoned map only means a panic elsewhere; the map itself is intact.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: MeetingId) -> Option<mpsc::Sender<RoomCmd>> {
        self.lock().get(&id).cloned()
    }

    /// Delivers to the room, starting it from the store if it is not running.
    pub async fn deliver(
        self: &Arc<Self>,
        id: MeetingId,
        mut cmd: RoomCmd,
    ) -> Result<(), RoomError> {
        loop {
            if self.closing.load(Ordering::Acquire) {
                return Err(RoomError::Closing);
            }
            let tx = match self.get(id) {
                Some(tx) => tx,
                None => self.start(id).await?,
            };
            match tx.send(cmd).await {
                Ok(()) => return Ok(()),
                // The room ended between lookup and send; start a fresh one.
                Err(mpsc::error::SendError(back)) => {
                    cmd = back;
                    let mut map = self.lock();
                    if map.get(&id).is_some_and(|t| t.same_channel(&tx)) {
                        map.remove(&id);
                    }
                }
            }
        }
    }

    /// A resume: to the running room, or in cluster mode to the room
    /// started here from the live state the meeting's last node left in
    /// Redis (the seat it held is there). `Ok(false)`: not running, and
    /// nothing to start it from.
    pub async fn deliver_resume(
        self: &Arc<Self>,
        id: MeetingId,
        cmd: RoomCmd,
    ) -> Result<bool, RoomError> {
        if self.cluster.is_none() {
            return Ok(self.deliver_if_running(id, cmd).await);
        }
        self.deliver(id, cmd).await.map(|()| true)
    }

    /// Delivers only to a running room. False when it is not running.
    pub async fn deliver_if_running(&self, id: MeetingId, cmd: RoomCmd) -> bool {
        match self.get(id) {
            Some(tx) => tx.send(cmd).await.is_ok(),
            None => false,
        }
    }

    async fn start(self: &Arc<Self>, id: MeetingId) -> Result<mpsc::Sender<RoomCmd>, RoomError> {
        if let Some(tx) = self.start_breakout_room(id) {
            return Ok(tx);
        }
        let record = self.store.meeting(id).await?.ok_or(RoomError::Gone)?;
        let bans = self.store.bans(id).await?;
        let Some(cluster) = &self.cluster else {
            return Ok(self.open(id, record, bans, None));
        };
        let _one_at_a_time = self.starting.lock().await;
        if let Some(tx) = self.get(id) {
            return Ok(tx);
        }
        // A draining node starts nothing: a socket routed here before the
        // lease of a meeting it handed over was given up hears
        // `unavailable`, and its client tries again (elsewhere).
        if cluster.is_draining() {
            return Err(RoomError::Elsewhere(format!(
                "{} (draining)",
                cluster.node_id()
            )));
        }
        let meeting = id.to_string();
        let keeper = match cluster.acquire(&meeting).await? {
            crate::cluster::lease::Acquired::Granted(keeper) => keeper,
            crate::cluster::lease::Acquired::HeldBy(holder) => {
                return Err(RoomError::Elsewhere(holder));
            }
        };
        tracing::info!(%meeting, token = keeper.token(), "took the meeting's lease");
        let saved = cluster.saved_live(&meeting).await?.unwrap_or_default();
        if !saved.members.is_empty() || !saved.waiting.is_empty() {
            tracing::info!(
                %meeting,
                members = saved.members.len(),
                waiting = saved.waiting.len(),
                "taking over a meeting that ran elsewhere"
            );
        }
        let live = Live {
            token: keeper.token(),
            saved,
            frozen: false,
        };
        let tx = self.open(id, record, bans, Some(live));
        // Weak: the room still ends when its last sender goes.
        let (done, lost) = (tx.downgrade(), tx.downgrade());
        let room_ended = async move {
            while done.upgrade().is_some_and(|tx| !tx.is_closed()) {
                tokio::time::sleep(LEASE_RELEASE_POLL).await;
            }
        };
        tokio::spawn(
            Arc::clone(cluster).keep_lease(meeting, keeper, room_ended, move || {
                // Another node holds the meeting now: stop serving it here.
                if let Some(tx) = lost.upgrade() {
                    let _ = tx.try_send(RoomCmd::Input(Input::End(EndReason::ServerShutdown)));
                }
            }),
        );
        Ok(tx)
    }

    /// Starts the room's task (under the lease, in cluster mode).
    fn open(
        self: &Arc<Self>,
        id: MeetingId,
        record: crate::store::MeetingRecord,
        bans: Vec<conclave_core::BanKey>,
        live: Option<Live>,
    ) -> mpsc::Sender<RoomCmd> {
        let mut map = self.lock();
        if let Some(tx) = map.get(&id) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        map.insert(id, tx.clone());
        let (media, media_events) = match &live {
            Some(live) => self.media.open_leased(id, live.token),
            None => self.media.open(id),
        };
        let room = Room {
            id,
            media,
            meeting: {
                let mut m = Meeting::new(record.core_config(), bans);
                if let Some(live) = &live {
                    m.restore(live.saved.clone(), std::time::Instant::now());
                }
                m
            },
            live,
            sinks: HashMap::new(),
            last_sent: None,
            counted: (0, 0),
            rooms: Arc::clone(self),
        };
        tokio::spawn(room.run(rx, media_events));
        tracing::info!(meeting = %id, "meeting started");
        tx
    }

    /// Cluster mode, draining: hands every running meeting over to another
    /// node ([`RoomCmd::Move`]) and waits, up to `grace`, for the rooms to
    /// stop.
    pub async fn move_all(&self, grace: Duration) {
        let rooms: Vec<_> = self.lock().values().cloned().collect();
        for tx in rooms {
            let _ = tx.send(RoomCmd::Move).await;
        }
        let deadline = Instant::now() + grace;
        while self.running() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends every running meeting (shutdown) and waits, up to `grace`, for the
    /// rooms to tell their members and finish.
    pub async fn end_all(&self, reason: EndReason, grace: Duration) {
        self.closing.store(true, Ordering::Release);
        let rooms: Vec<_> = self.lock().values().cloned().collect();
        for tx in rooms {
            let _ = tx.send(RoomCmd::Input(Input::End(reason))).await;
        }
        let deadline = Instant::now() + grace;
        while self.running() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Cluster mode: the room's live state as last saved in Redis
/// ([`crate::cluster::live`]) under its lease's fencing token.
struct Live {
    token: u64,
    saved: conclave_core::LiveState,
    /// Set once the room ends because this node stops (shutdown, or the
    /// lease went to another node): the end clears the lock in the core, and
    /// that must not reach Redis, or the meeting would come back unlocked.
    /// Only its people go (they were told it ended); set too once a later
    /// lease holder's write turned one of ours away.
    frozen: bool,
}

struct Room {
    id: MeetingId,
    live: Option<Live>,
    /// Commands to the meeting's media; its events come on their own queue.
    media: MediaLink,
    meeting: Meeting,
    sinks: HashMap<ConnId, mpsc::Sender<Outbound>>,
    /// The last message sent and its encoding. The core hands out a
    /// broadcast as the same message once per member, in a row: comparing
    /// with the last one encodes it once, not once per member.
    last_sent: Option<(ServerMessage, Outbound)>,
    /// Members and waiting people as last added to the server's gauges;
    /// each room adds only its own change, so the gauges are the sums.
    counted: (usize, usize),
    rooms: Arc<Rooms>,
}

impl Room {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<RoomCmd>,
        mut media_events: mpsc::Receiver<MediaEvent>,
    ) {
        loop {
            let deadline = self.meeting.poll_timeout();
            let now = std::time::Instant::now();
            let sleep_for = deadline.map(|d| d.saturating_duration_since(now));
            let node_gone = self.media.node_gone();
            tokio::select! {
                () = wait(node_gone.as_deref()) => self.resume_lost_members(),
                cmd = rx.recv() => match cmd {
                    Some(RoomCmd::Move) => {
                        if self.hand_over().await {
                            let mut map = self.rooms.lock();
                            map.remove(&self.id);
                            // Under the lock, as when idle: a room started
                            // next here opens its media after this close.
                            self.media.close();
                            break;
                        }
                        self.command(RoomCmd::Input(Input::End(EndReason::ServerShutdown)));
                    }
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Its people are gone with it (an idle room was
                        // counted as empty already).
                        self.count((0, 0));
                        break;
                    }
                },
                Some(event) = media_events.recv() => {
                    self.meeting.handle(Input::Media(event), std::time::Instant::now());
                }
                () = tokio::time::sleep(sleep_for.unwrap_or(Duration::ZERO)), if sleep_for.is_some() => {
                    self.meeting.handle(Input::Timeout, std::time::Instant::now());
                }
            }
            self.carry_out().await;
            if self.meeting.is_idle() {
                let mut map = self.rooms.lock();
                if rx.is_empty() {
                    map.remove(&self.id);
                    // Under the lock: a room started next for this meeting
                    // opens its media after this close.
                    self.media.close();
                    tracing::info!(meeting = %self.id, "meeting idle, stopped");
                    break;
                }
            }
        }
    }

    /// [`RoomCmd::Move`]: once Redis holds the meeting's live state as it
    /// is now, the room stops here without a word to its people (their
    /// sockets close; their clients resume, on another node) and freezes
    /// what it wrote. False, changing nothing, when that state could not be
    /// saved: the caller ends the meeting instead.
    async fn hand_over(&mut self) -> bool {
        self.save_live().await;
        let now = self.meeting.live_state(std::time::Instant::now());
        let (Some(live), Some(cluster)) = (&mut self.live, &self.rooms.cluster) else {
            return false;
        };
        // Without Redis the lease cannot be given up either: members would
        // wait for it to run out on another node, unsure; they are told.
        if live.frozen || live.saved != now || !cluster.is_available() {
            return false;
        }
        live.frozen = true;
        tracing::info!(meeting = %self.id, members = now.members.len(), "meeting handed over: its members resume on another node");
        self.count((0, 0));
        true
    }

    fn command(&mut self, cmd: RoomCmd) {
        let now = std::time::Instant::now();
        match cmd {
            RoomCmd::Move => {}
            RoomCmd::Join {
                conn,
                sink,
                name,
                recorder,
                identity,
            } => {
                self.sinks.insert(conn, sink);
                self.meeting.handle(
                    Input::Join {
                        conn,
                        name,
                        recorder,
                        identity,
                        resume_token: ResumeToken::generate(),
                    },
                    now,
                );
            }
            RoomCmd::Resume {
                conn,
                sink,
                token,
                mls_received,
                seated,
            } => {
                self.sinks.insert(conn, sink);
                self.meeting.handle(
                    Input::Resume {
                        conn,
                        token,
                        next_token: ResumeToken::generate(),
                        mls_received,
                    },
                    now,
                );
                // The connection may be gone already; nothing to tell then.
                let _ = seated.send(self.meeting.has_seat(conn));
            }
            RoomCmd::BreakoutJoin {
                conn,
                sink,
                name,
                identity,
                ticket,
            } => {
                self.sinks.insert(conn, sink);
                let resume_token = ResumeToken::generate();
                let input = Input::BreakoutJoin {
                    conn,
                    name,
                    identity,
                    resume_token,
                    ticket,
                };
                self.meeting.handle(input, now);
            }
            RoomCmd::Input(input) => {
                if let (Input::End(EndReason::ServerShutdown), Some(live)) =
                    (&input, &mut self.live)
                {
                    live.frozen = true;
                }
                self.meeting.handle(input, now)
            }
        }
    }

    /// Cascading: a node serving some members' media went away. Their
    /// sockets are closed as a slow client's are (the seat kept), so that
    /// they resume, offer anew, and are placed again.
    fn resume_lost_members(&mut self) {
        for member in self.media.lost_members() {
            if let Some(conn) = self.meeting.conn_of(member) {
                tracing::info!(meeting = %self.id, %member, "its media node went; asking it to resume");
                self.sinks.remove(&conn);
                self.meeting
                    .handle(Input::Disconnected { conn }, std::time::Instant::now());
            }
        }
    }

    async fn carry_out(&mut self) {
        // Before anything goes out: a resume token handed to a member is in
        // Redis by then, so it works on the next node if this one dies.
        self.save_live().await;
        while let Some(out) = self.meeting.poll_output() {
            match out {
                Output::Send { conn, msg } => self.send(conn, msg),
                // Dropping the queue's sender closes it once drained.
                Output::Close { conn } => {
                    self.sinks.remove(&conn);
                }
                Output::Ban(keys) => {
                    if let Err(e) = self.rooms.store.add_bans(self.id, &keys).await {
                        self.rooms.metrics.store_errors.increment(1);
                        tracing::error!(meeting = %self.id, error = %e, "could not store a ban");
                    }
                }
                Output::Media(cmd) => self.media.send(cmd),
                Output::Breakout(b) => self.breakout(b).await,
                Output::SavePermissions(p) => {
                    if let Err(e) = self.rooms.store.save_permissions(self.id, p).await {
                        self.rooms.metrics.store_errors.increment(1);
                        tracing::error!(meeting = %self.id, error = %e, "could not store permissions");
                    }
                }
            }
        }
        self.save_live().await;
        // A sink that was never seated (refused before the core answered) is gone
        // from the core; drop ours too.
        let meeting = &self.meeting;
        self.sinks.retain(|conn, _| meeting.has_seat(*conn));
        self.count((self.meeting.member_count(), self.meeting.waiting_count()));
    }

    /// Saves the live state to Redis when it changed (cluster mode).
    async fn save_live(&mut self) {
        let (Some(live), Some(cluster)) = (&mut self.live, &self.rooms.cluster) else {
            return;
        };
        let state = if live.frozen {
            live.saved.without_people()
        } else {
            self.meeting.live_state(std::time::Instant::now())
        };
        // Without Redis the change is saved at the first batch after it is
        // back, rather than making every batch here wait for a timeout.
        if live.saved == state || !cluster.is_available() {
            return;
        }
        match cluster
            .save_live(&self.id.to_string(), live.token, &state)
            .await
        {
            Ok(crate::cluster::live::Saved::Written) => live.saved = state,
            Ok(crate::cluster::live::Saved::Fenced) => {
                tracing::warn!(meeting = %self.id, token = live.token, "a later lease holder wrote the meeting's live state: this node no longer writes it");
                live.frozen = true;
                live.saved = live.saved.without_people();
            }
            Err(e) => {
                tracing::warn!(meeting = %self.id, error = %e, "could not save the meeting's live state to Redis; tried again after the next message");
            }
        }
    }

    /// Moves the participants and waiting gauges by this room's change.
    fn count(&mut self, now: (usize, usize)) {
        let m = &self.rooms.metrics;
        let (members, waiting) = self.counted;
        if now.0 != members {
            m.participants.increment(now.0 as f64 - members as f64);
            self.rooms
                .participants
                .fetch_add(now.0 as i64 - members as i64, Ordering::Relaxed);
        }
        if now.1 != waiting {
            m.waiting.increment(now.1 as f64 - waiting as f64);
        }
        self.counted = now;
    }

    fn send(&mut self, conn: ConnId, mut msg: ServerMessage) {
        let Some(sink) = self.sinks.get(&conn) else {
            return;
        };
        if let ServerMessage::Joined {
            you, ice_servers, ..
        } = &mut msg
        {
            // Only a seated member gets `joined`: the waiting room never
            // sees relay credentials.
            *ice_servers = self.rooms.ice.for_participant(*you);
        }
        let text = match &self.last_sent {
            Some((last, text)) if *last == msg => Arc::clone(text),
            _ => {
                let text: Outbound = match serde_json::to_string(&msg) {
                    Ok(t) => t.into(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a server message");
                        return;
                    }
                };
                self.last_sent = Some((msg, Arc::clone(&text)));
                text
            }
        };
        if let Err(e) = sink.try_send(text) {
            let kind = self.last_sent.as_ref().map(|(m, _)| m.kind());
            self.sinks.remove(&conn);
            match e {
                // Too slow: drop it; it may resume with its token.
                TrySendError::Full(_) => {
                    tracing::warn!(
                        meeting = %self.id, conn = conn.0, kind, "client queue full, disconnecting"
                    );
                    self.meeting
                        .handle(Input::Disconnected { conn }, std::time::Instant::now());
                }
                // Gone: its socket closed, and the connection queued its
                // `Disconnected` before letting go of the queue, behind
                // whatever it sent last. Not ahead of it: a `leave` still
                // queued would find the seat already dropped and kept for
                // the resume window (two members leaving at once did that).
                // Nothing to warn about (a meeting that ends sends to many
                // of these at once).
                TrySendError::Closed(_) => tracing::debug!(
                    meeting = %self.id, conn = conn.0, kind, "client gone"
                ),
            }
        }
    }
}

/// Breakout rooms: each is a meeting of its own (own core, router and MLS
/// group), started from what its parent registered, never from the store.
impl Rooms {
    /// Whether `id` is an open breakout room of a meeting running here.
    pub fn is_breakout_room(&self, id: MeetingId) -> bool {
        self.breakout_specs().contains_key(&id)
    }

    fn breakout_specs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<MeetingId, (MeetingConfig, Vec<BanKey>)>> {
        self.breakouts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the breakout room `id` (no lease: it runs where its parent does).
    fn start_breakout_room(self: &Arc<Self>, id: MeetingId) -> Option<mpsc::Sender<RoomCmd>> {
        let (config, bans) = self.breakout_specs().get(&id).cloned()?;
        let mut map = self.lock();
        if let Some(tx) = map.get(&id) {
            return Some(tx.clone());
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        map.insert(id, tx.clone());
        let (media, media_events) = self.media.open(id);
        let room = Room {
            id,
            media,
            meeting: Meeting::new_breakout_room(config, bans),
            live: None,
            sinks: HashMap::new(),
            last_sent: None,
            counted: (0, 0),
            rooms: Arc::clone(self),
        };
        tokio::spawn(room.run(rx, media_events));
        tracing::info!(meeting = %id, "breakout room started");
        Some(tx)
    }
}

impl Room {
    /// Starts, feeds and forgets this meeting's breakout rooms. A note goes
    /// to its room before anything this meeting says after it, so a room
    /// holds a member's ticket before the member hears of the room.
    async fn breakout(&mut self, out: BreakoutOutput) {
        match out {
            BreakoutOutput::Open { room, config, bans } => {
                tracing::info!(meeting = %self.id, %room, "breakout room opened");
                self.rooms.breakout_specs().insert(room, (config, bans));
            }
            BreakoutOutput::Note { room, note } => {
                if !self.rooms.is_breakout_room(room) {
                    return;
                }
                let cmd = RoomCmd::Input(Input::Breakout(note));
                if let Err(e) = self.rooms.deliver(room, cmd).await {
                    tracing::warn!(meeting = %self.id, %room, error = %e, "breakout room unreachable");
                }
            }
            BreakoutOutput::Forget { room } => {
                self.rooms.breakout_specs().remove(&room);
                tracing::info!(meeting = %self.id, %room, "breakout room closed");
            }
        }
    }
}

/// Resolves when `notify` is notified; never without one.
async fn wait(notify: Option<&tokio::sync::Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}
