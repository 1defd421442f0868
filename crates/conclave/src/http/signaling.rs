//! The meeting WebSocket: one task per connection that checks, parses and
//! rate-limits what the client sends, verifies passcodes, and hands everything
//! else to the meeting's room. It holds no meeting state of its own.
//!
//! Before `join`/`resume` succeeds the connection has no outbound queue in any
//! room, so nothing but its own replies can reach it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use conclave_core::{ConnId, Identity, Input, TokenBucket};
use conclave_proto::ids::normalize_passcode;
use conclave_proto::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, MeetingId, ResumeToken, ServerMessage,
    parse_client_message,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::AppState;
use super::session::{GUEST_COOKIE, client_ip, cookie, current_user};
use crate::auth::PasscodeVerdict;
use crate::cluster::limits::{JoinAttempt, Refusal};
use crate::cluster::relay;
use crate::cluster::route::{RELAY_HEADER, Route, vouched};
use crate::guard::{Notice, retry_secs};
use crate::guest::{GUEST_COOKIE_SECS, Guest, network};
use crate::join_policy::{self, Joiner, WhoMayJoin};
use crate::rooms::{RoomCmd, RoomError};
use crate::store::User;
use crate::telemetry::JoinFailure;

/// After this many messages refused for flooding, the connection is closed.
const FLOOD_STRIKES: u32 = 20;
/// How often the server pings an idle socket.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(25);
/// Messages written to a member's socket per flush, at most.
const WRITE_BATCH: usize = 64;
/// WebSocket close code for "policy violation".
const CLOSE_POLICY: u16 = 1008;

/// Server-wide and per-address bounds on meeting connections.
pub struct ConnLimits {
    total: Arc<Semaphore>,
    max_total: usize,
    pending: Mutex<HashMap<IpAddr, usize>>,
    max_pending: usize,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_pending_per_address: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            pending: Mutex::new(HashMap::new()),
            max_pending: max_pending_per_address,
        })
    }

    /// Waits until every meeting connection has closed, or `grace` passed.
    pub async fn wait_idle(&self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.total.available_permits() < self.max_total
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `limits.max_pending_per_address`.
    fn max_pending(&self) -> usize {
        self.max_pending
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<(OwnedSemaphorePermit, PendingSlot)> {
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let mut pending = self.pending();
        let n = pending.entry(ip).or_insert(0);
        if *n >= self.max_pending {
            return None;
        }
        *n += 1;
        Some((
            permit,
            PendingSlot {
                limits: Arc::clone(self),
                ip,
                held: true,
                shared: None,
            },
        ))
    }
}

/// A connection from `ip` that has not joined yet; counted until released
/// (in cluster mode, in Redis too, by `shared`).
struct PendingSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    held: bool,
    shared: Option<crate::cluster::conns::ConnSlot>,
}

impl PendingSlot {
    fn release(&mut self) {
        self.shared = None;
        if std::mem::take(&mut self.held) {
            let mut pending = self.limits.pending();
            if let Some(n) = pending.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&self.ip);
                }
            }
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.release();
    }
}

fn relay_refused(peer: SocketAddr) -> Response {
    tracing::warn!(%peer, "meeting connection refused: a relay header that does not hold");
    (StatusCode::FORBIDDEN, "relay header refused\n").into_response()
}

/// `GET /api/v1/meetings/{id}/ws`
pub async fn upgrade(
    State(state): State<AppState>,
    ws: WebSocketUpgrade,
    Path(raw_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if !state.origins.allow(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    // A node relaying for a client vouches for its address; a header that
    // does not hold is refused rather than ignored.
    let relayed = match headers.get(RELAY_HEADER) {
        None => None,
        Some(v) => {
            let secret = state.cluster.as_ref().and_then(|c| c.secret());
            let path = relay::ws_path(&raw_id);
            match (secret, v.to_str()) {
                (Some(secret), Ok(v)) => match vouched(secret, v, &path) {
                    Some(ip) => Some(ip),
                    None => return relay_refused(peer),
                },
                _ => return relay_refused(peer),
            }
        }
    };
    let ip = relayed.unwrap_or_else(|| client_ip(&state.config, peer, &headers));
    let Some((permit, mut slot)) = state.conns.admit(ip) else {
        tracing::warn!(%ip, "meeting connection refused: too many open");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections\n").into_response();
    };
    // Cluster mode: a meeting that runs (or is placed) on another node is
    // served there, through this node. A relayed socket is never relayed on.
    if relayed.is_none()
        && let Some(cluster) = &state.cluster
        && let Some(secret) = cluster.secret()
        && let Ok(id) = raw_id.parse::<MeetingId>()
        && !state.rooms.is_running(id)
    {
        match cluster.route(&id.to_string()).await {
            Ok(Route::Relay(owner)) => {
                drop(slot);
                state.metrics.relayed_sockets.increment(1);
                return relay::relay(
                    ws,
                    &owner,
                    &raw_id,
                    &headers,
                    ip,
                    secret,
                    MAX_MESSAGE_BYTES,
                    permit,
                )
                .await;
            }
            Ok(Route::Here) => {}
            // Served here: the join hears `unavailable`.
            Err(e) => tracing::debug!(error = %e, "no route for a meeting socket"),
        }
    }
    // Served here: counted for the whole cluster (a relayed socket is
    // counted by the node it is relayed to, here when it arrives).
    // While Redis is known to be away, at once: counted on this node alone.
    if let Some(cluster) = state.cluster.as_ref().filter(|c| c.is_available()) {
        match cluster.admit_conn(ip, state.conns.max_pending()).await {
            Ok(Some(shared)) => slot.shared = Some(shared),
            Ok(None) => {
                tracing::warn!(%ip, "meeting connection refused: too many open from this address across the cluster");
                return (StatusCode::TOO_MANY_REQUESTS, "too many connections\n").into_response();
            }
            // Counted on this node alone meanwhile (its own cap holds).
            Err(e) => tracing::debug!(error = %e, "a meeting connection not counted in Redis"),
        }
    }
    let account = match current_user(&state.store, &headers, &jar).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let net = network(ip);
    let presented = jar.get(GUEST_COOKIE).map(|c| c.value().to_string());
    let settled = state
        .guests
        .identify(
            &state.store,
            presented.as_deref(),
            net,
            account.is_some(),
            std::time::Instant::now(),
        )
        .await;
    let (guest, jar, no_guest_until) = match settled {
        Guest::Known(id) => (Some(id), jar, None),
        Guest::Issued { id, cookie: value } => {
            let jar = jar.add(cookie(
                &state.config,
                GUEST_COOKIE,
                value,
                GUEST_COOKIE_SECS,
            ));
            (Some(id), jar, None)
        }
        Guest::Refused { retry_after } => {
            tracing::warn!(%ip, "connection without a guest identity: its network minted too many");
            (None, jar, Some(tokio::time::Instant::now() + retry_after))
        }
    };
    let conn = Connection {
        conn: state.rooms.next_conn(),
        meeting: raw_id.parse().ok(),
        ip,
        identity: Identity {
            account: account.as_ref().map(|u| u.id),
            guest,
            address: Some(net),
        },
        no_guest_until,
        account,
        state,
    };
    let resp = ws
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| conn.run(socket, permit, slot));
    (jar, resp).into_response()
}

struct Connection {
    state: AppState,
    conn: ConnId,
    /// `None` when the path held no well-formed ID: treated as an unknown meeting.
    meeting: Option<MeetingId>,
    ip: IpAddr,
    account: Option<User>,
    identity: Identity,
    /// Set when no guest identity could be minted for this connection (its
    /// network minted too many, see `crate::guest`): until then it may join
    /// only signed in.
    no_guest_until: Option<tokio::time::Instant>,
}

/// What a `join` or `resume` attempt came to.
enum Attempt {
    /// Handed to the room, which now owns the outbound queue.
    Delivered,
    /// Refused here; the connection may try again.
    Refused(ServerMessage),
    /// Refused here; the connection closes.
    Fatal(ServerMessage),
    /// Refused by the room, which wrote its answer to the connection's queue
    /// and closes it; the connection writes that out and closes.
    Answered,
}

type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn send(ws: &mut WsSink, msg: &ServerMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => ws.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

/// Writes `first` and whatever else the room has queued for this member
/// (up to [`WRITE_BATCH`] messages), then flushes once: a burst, such as a
/// hundred people joining, costs one socket write, not one per message, so
/// the writer keeps up with the room instead of letting its queue overflow.
async fn write_queued(
    ws: &mut WsSink,
    first: Arc<str>,
    queue: &mut mpsc::Receiver<Arc<str>>,
) -> Result<(), axum::Error> {
    ws.feed(Message::Text(first.as_ref().into())).await?;
    for _ in 1..WRITE_BATCH {
        let Ok(text) = queue.try_recv() else {
            break;
        };
        ws.feed(Message::Text(text.as_ref().into())).await?;
    }
    ws.flush().await
}

impl Connection {
    async fn run(self, socket: WebSocket, _permit: OwnedSemaphorePermit, mut slot: PendingSlot) {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let limits = &self.state.config.limits;
        let (sink, mut outbound) = mpsc::channel::<Arc<str>>(self.state.rooms.outbound_queue());
        let mut sink = Some(sink);
        let mut in_room = false;
        let mut bucket = TokenBucket::new(
            limits.message_burst,
            limits.messages_per_sec,
            std::time::Instant::now(),
        );
        let mut strikes = 0;
        let join_deadline = tokio::time::sleep(self.state.config.join_timeout());
        tokio::pin!(join_deadline);
        let shutdown = self.state.shutdown.clone();
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let mut close: Option<CloseFrame> = None;
        let registered = self
            .account
            .as_ref()
            .map(|u| self.state.account_sockets.register(u.id));
        let evicted = registered
            .as_ref()
            .map(|r| r.ended.clone())
            .unwrap_or_default();

        loop {
            tokio::select! {
                () = shutdown.cancelled(), if !in_room => {
                    send(&mut ws_tx, &ServerMessage::error(ErrorCode::ShuttingDown)).await;
                    break;
                }
                () = evicted.cancelled() => {
                    // The account was disabled or deleted: out of the
                    // meeting as by Leave (no seat kept to resume), then closed.
                    tracing::info!(conn = self.conn.0, "the account was disabled: closing its meeting socket");
                    if in_room && let Some(id) = self.meeting {
                        let cmd = RoomCmd::Input(Input::Message { conn: self.conn, msg: ClientMessage::Leave });
                        self.state.rooms.deliver_if_running(id, cmd).await;
                        in_room = false;
                    }
                    close = Some(CloseFrame { code: CLOSE_POLICY, reason: "account disabled".into() });
                    break;
                }
                () = &mut join_deadline, if !in_room => {
                    send(&mut ws_tx, &ServerMessage::error(ErrorCode::Timeout)).await;
                    break;
                }
                out = outbound.recv(), if in_room => match out {
                    Some(text) => {
                        if write_queued(&mut ws_tx, text, &mut outbound).await.is_err() {
                            break;
                        }
                    }
                    // The room closed this connection (removed, denied, ended...).
                    None => { in_room = false; break; }
                },
                _ = keepalive.tick() => {
                    // Keeps proxies from closing a quiet member's socket.
                    if ws_tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
                frame = ws_rx.next() => {
                    let frame = match frame {
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Ok(f)) => f,
                        // Frames over the size cap end here: the WebSocket
                        // layer refuses them and the socket is done.
                        Some(Err(e)) => {
                            tracing::debug!(conn = self.conn.0, error = %e, "socket error");
                            break;
                        }
                    };
                    // Every frame counts against the rate limit, pings and binary too.
                    if !bucket.try_take(std::time::Instant::now()) {
                        strikes += 1;
                        send(&mut ws_tx, &ServerMessage::error_retry(ErrorCode::Flood, 1)).await;
                        if strikes >= FLOOD_STRIKES {
                            tracing::warn!(conn = self.conn.0, ip = %self.ip, "closing a flooding connection");
                            close = Some(CloseFrame { code: CLOSE_POLICY, reason: "flood".into() });
                            break;
                        }
                        continue;
                    }
                    let text = match frame {
                        Message::Text(t) => t,
                        Message::Binary(_) => {
                            send(&mut ws_tx, &ServerMessage::error(ErrorCode::BadMessage)).await;
                            continue;
                        }
                        _ => continue,
                    };
                    let msg = match parse_client_message(&text) {
                        Ok(m) => m,
                        Err(code) => {
                            send(&mut ws_tx, &ServerMessage::error(code)).await;
                            continue;
                        }
                    };
                    match (in_room, msg) {
                        (false, ClientMessage::Join { name, passcode, recorder }) => {
                            let started = std::time::Instant::now();
                            let attempt = self.join(name, passcode, recorder, &mut sink).await;
                            self.count(&attempt, Some(started));
                            match attempt {
                                Attempt::Delivered => { in_room = true; slot.release(); }
                                Attempt::Refused(m) => { send(&mut ws_tx, &m).await; }
                                Attempt::Fatal(m) => { send(&mut ws_tx, &m).await; break; }
                                Attempt::Answered => { in_room = true; }
                            }
                        }
                        (false, ClientMessage::Resume { token, mls_received }) => {
                            let attempt = self.resume(&token, mls_received, &mut sink).await;
                            self.count(&attempt, None);
                            match attempt {
                                Attempt::Delivered => { in_room = true; slot.release(); }
                                Attempt::Refused(m) => { send(&mut ws_tx, &m).await; }
                                Attempt::Fatal(m) => { send(&mut ws_tx, &m).await; break; }
                                // Read the room's answer off the queue until it closes.
                                Attempt::Answered => { in_room = true; }
                            }
                        }
                        (false, ClientMessage::BreakoutJoin { name, ticket }) => {
                            match self.breakout_join(name, &ticket, &mut sink).await {
                                Attempt::Delivered | Attempt::Answered => { in_room = true; slot.release(); }
                                Attempt::Refused(m) => { send(&mut ws_tx, &m).await; }
                                Attempt::Fatal(m) => { send(&mut ws_tx, &m).await; break; }
                            }
                        }
                        (false, _) => {
                            send(&mut ws_tx, &ServerMessage::error(ErrorCode::NotJoined)).await;
                        }
                        (true, msg) => {
                            let Some(id) = self.meeting else { break };
                            let cmd = RoomCmd::Input(Input::Message { conn: self.conn, msg });
                            if !self.state.rooms.deliver_if_running(id, cmd).await {
                                break;
                            }
                        }
                    }
                }
            }
        }

        if in_room && let Some(id) = self.meeting {
            let cmd = RoomCmd::Input(Input::Disconnected { conn: self.conn });
            self.state.rooms.deliver_if_running(id, cmd).await;
        }
        // Flush what the room queued before closing us (a final `removed`,
        // `denied`, `ended` or refusal).
        while let Ok(text) = outbound.try_recv() {
            if ws_tx
                .send(Message::Text(text.as_ref().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = ws_tx.send(Message::Close(close)).await;
        let _ = ws_tx.close().await;
    }

    /// Counts a join (`started`: when it was asked for) or a resume for
    /// `/metrics`: joins handed over with their latency, refusals by reason.
    fn count(&self, attempt: &Attempt, started: Option<std::time::Instant>) {
        let m = &self.state.metrics;
        let refusal = match attempt {
            Attempt::Delivered => {
                if let Some(t) = started {
                    m.joins.increment(1);
                    m.join_took(t.elapsed());
                }
                return;
            }
            // Only a resume the room refused is answered by the room.
            Attempt::Answered => {
                m.join_failed(JoinFailure::Resume);
                return;
            }
            Attempt::Refused(r) | Attempt::Fatal(r) => r,
        };
        let ServerMessage::Error { code, .. } = refusal else {
            return;
        };
        let why = match code {
            ErrorCode::TooManyAttempts => JoinFailure::RateLimited,
            ErrorCode::JoinRefused => JoinFailure::Passcode,
            ErrorCode::ResumeFailed => JoinFailure::Resume,
            ErrorCode::ShuttingDown | ErrorCode::Unavailable => JoinFailure::Unavailable,
            ErrorCode::SignInRequired | ErrorCode::OrganisationOnly => JoinFailure::Policy,
            _ => JoinFailure::Internal,
        };
        m.join_failed(why);
    }

    fn too_many(&self) -> Option<ServerMessage> {
        self.state
            .guard
            .check_join(self.ip, self.meeting)
            .err()
            .map(|wait| ServerMessage::error_retry(ErrorCode::TooManyAttempts, retry_secs(wait)))
    }

    /// In cluster mode without Redis, the refusal every new join gets
    /// (after a short wait when Redis is only slow:
    /// [`crate::cluster::Cluster::check_available`]).
    async fn cluster_unavailable(&self) -> Option<ServerMessage> {
        let c = self.state.cluster.as_ref()?;
        (!c.check_available().await).then(|| ServerMessage::error(ErrorCode::Unavailable))
    }

    /// Counts a failed resume in Redis too (cluster mode), without waiting.
    fn count_shared_failure(&self) {
        if let Some(c) = &self.state.cluster {
            let (c, ip, meeting) = (Arc::clone(c), self.ip, self.meeting);
            tokio::spawn(async move { c.join_failed(ip, meeting).await });
        }
    }

    /// Logs a failed join or resume and passes a notice on to the hosts.
    async fn failed(&self, notice: Option<Notice>, why: &str) {
        tracing::warn!(ip = %self.ip, meeting = ?self.meeting.map(|m| m.to_string()), why, "failed join attempt");
        if let Some(notice) = notice
            && let Some(id) = self.meeting
        {
            let input = Input::FailedAttempts {
                count: notice.failed_attempts,
                window: notice.window,
            };
            self.state
                .rooms
                .deliver_if_running(id, RoomCmd::Input(input))
                .await;
        }
    }

    /// Checks a typed passcode against `hash` (none: an unknown meeting, which
    /// gets the same steps and the same answer), the attempt counted before
    /// argon2 runs. `None` when it is right.
    async fn check_passcode(&self, typed: String, hash: Option<String>) -> Option<ServerMessage> {
        let refused = |r: Refusal| match r {
            Refusal::Wait(wait) => {
                ServerMessage::error_retry(ErrorCode::TooManyAttempts, retry_secs(wait))
            }
            Refusal::Unavailable(e) => {
                tracing::warn!(error = %e, "join refused: Redis is unavailable");
                ServerMessage::error(ErrorCode::Unavailable)
            }
        };
        // The node's guard and, in cluster mode, Redis's count first, so
        // that guesses spread over the nodes are limited as one.
        let (guard, cluster) = (&self.state.guard, self.state.cluster.as_ref());
        let reserve = || JoinAttempt::reserve(guard, cluster, self.ip, self.meeting);
        let scope = self.meeting.map(|m| m.to_string()).unwrap_or_default();
        let verdict = self
            .state
            .hasher
            .verify_passcode(&scope, typed, hash, reserve)
            .await;
        let attempt = match verdict {
            PasscodeVerdict::Right(attempt) => {
                if let Some(a) = attempt {
                    a.succeeded().await;
                }
                return None;
            }
            PasscodeVerdict::Limited(r) => return Some(refused(r)),
            PasscodeVerdict::Wrong(Some(attempt)) => attempt,
            // Someone else's check of the same guess answered this one; it
            // counts all the same.
            PasscodeVerdict::Wrong(None) => match reserve().await {
                Ok(attempt) => attempt,
                Err(r) => return Some(refused(r)),
            },
        };
        self.failed(attempt.failed().await, "wrong passcode or unknown meeting")
            .await;
        Some(ServerMessage::error(ErrorCode::JoinRefused))
    }
    async fn join(
        &self,
        name: String,
        passcode: Option<String>,
        recorder: bool,
        sink: &mut Option<mpsc::Sender<Arc<str>>>,
    ) -> Attempt {
        if let Some(refusal) = self.cluster_unavailable().await {
            return Attempt::Refused(refusal);
        }
        // Without an account or a guest identity nothing would hold a ban.
        if self.account.is_none()
            && let Some(until) = self.no_guest_until
        {
            let wait = until.saturating_duration_since(tokio::time::Instant::now());
            return Attempt::Refused(ServerMessage::error_retry(
                ErrorCode::TooManyAttempts,
                retry_secs(wait).max(1),
            ));
        }
        // A guest can never be the owner: a blocked guest costs no database read.
        if self.account.is_none()
            && let Some(m) = self.too_many()
        {
            return Attempt::Refused(m);
        }
        let record = match self.meeting {
            Some(id) => match self.state.store.meeting(id).await {
                Ok(r) => r,
                Err(e) => {
                    self.state.metrics.store_errors.increment(1);
                    tracing::error!(error = %e, "store failed during join");
                    return Attempt::Refused(ServerMessage::error(ErrorCode::Internal));
                }
            },
            None => None,
        };
        let owner = match (&record, &self.account) {
            (Some(r), Some(u)) => r.owner_id == u.id,
            _ => false,
        };
        if !owner {
            // Guests were checked before the lookup; signed-in non-owners now.
            if self.account.is_some()
                && let Some(m) = self.too_many()
            {
                return Attempt::Refused(m);
            }
            let needs_check = record.as_ref().is_none_or(|r| r.passcode_hash.is_some());
            if needs_check {
                let typed = normalize_passcode(&passcode.unwrap_or_default());
                let hash = record.as_ref().and_then(|r| r.passcode_hash.clone());
                // Runs argon2 even for an unknown meeting: same answer, same time.
                if let Some(refusal) = self.check_passcode(typed, hash).await {
                    return Attempt::Refused(refusal);
                }
            }
            // Only now, past the passcode, may an answer differ from an
            // unknown meeting's.
            if let Some(r) = &record
                && let Err(refusal) = self.admitted(r).await
            {
                return Attempt::Fatal(refusal);
            }
        }
        let (Some(id), Some(tx)) = (self.meeting, sink.take()) else {
            return Attempt::Fatal(ServerMessage::error(ErrorCode::Internal));
        };
        let cmd = RoomCmd::Join {
            conn: self.conn,
            sink: tx,
            name,
            recorder,
            identity: self.identity.clone(),
        };
        match self.state.rooms.deliver(id, cmd).await {
            Ok(()) => Attempt::Delivered,
            Err(RoomError::Gone) => Attempt::Fatal(ServerMessage::error(ErrorCode::JoinRefused)),
            Err(RoomError::Closing) => {
                Attempt::Fatal(ServerMessage::error(ErrorCode::ShuttingDown))
            }
            Err(RoomError::Unavailable(e)) => {
                tracing::warn!(error = %e, "join refused: Redis is unavailable");
                Attempt::Fatal(ServerMessage::error(ErrorCode::Unavailable))
            }
            Err(RoomError::Elsewhere(holder)) => {
                tracing::warn!(%holder, "join refused: the meeting runs on another node");
                Attempt::Fatal(ServerMessage::error(ErrorCode::Unavailable))
            }
            Err(RoomError::Store(e)) => {
                self.state.metrics.store_errors.increment(1);
                tracing::error!(error = %e, "store failed starting a meeting");
                Attempt::Fatal(ServerMessage::error(ErrorCode::Internal))
            }
        }
    }

    /// The meeting's join policy ([`crate::join_policy`]) for this
    /// connection's account or guest.
    async fn admitted(&self, r: &crate::store::MeetingRecord) -> Result<(), ServerMessage> {
        let policy = r.who_may_join();
        let identity = match (&self.account, policy) {
            (Some(u), WhoMayJoin::Organisation) => match self.state.store.oidc_identity(u.id).await
            {
                Ok(i) => i,
                Err(e) => {
                    self.state.metrics.store_errors.increment(1);
                    tracing::error!(error = %e, "store failed during join");
                    return Err(ServerMessage::error(ErrorCode::Internal));
                }
            },
            _ => None,
        };
        let who = match &self.account {
            None => Joiner::Guest,
            Some(_) => Joiner::Account(identity.as_ref()),
        };
        let config = &self.state.config;
        join_policy::admit(policy, &r.invited_emails, &config.organisation, &config.oidc, &who)
            .map_err(|code| {
                tracing::info!(ip = %self.ip, meeting = %r.id, ?code, "join refused by the meeting's policy");
                ServerMessage::error(code)
            })
    }

    async fn resume(
        &self,
        token: &str,
        mls_received: Option<u64>,
        sink: &mut Option<mpsc::Sender<Arc<str>>>,
    ) -> Attempt {
        if let Some(m) = self.too_many() {
            return Attempt::Refused(m);
        }
        // Every failure below ends the same way, `resume_failed` and the
        // socket closed, and counts the same: whether a meeting is running
        // must not show, nor whether its failures are counted.
        let (Some(id), Some(token)) = (self.meeting, ResumeToken::decode(token)) else {
            return self.resume_failed("malformed resume").await;
        };
        let Some(tx) = sink.take() else {
            return Attempt::Fatal(ServerMessage::error(ErrorCode::Internal));
        };
        let (seated_tx, seated) = oneshot::channel();
        let cmd = RoomCmd::Resume {
            conn: self.conn,
            sink: tx,
            token,
            mls_received,
            seated: seated_tx,
        };
        match self.state.rooms.deliver_resume(id, cmd).await {
            Ok(true) => {}
            Ok(false) | Err(RoomError::Gone) => {
                return self.resume_failed("resume of a meeting not running").await;
            }
            // Cluster mode: the meeting's node died and its lease has not
            // run out yet, or Redis is away. The seat is still kept: the
            // client tries again (not counted as a failure).
            Err(RoomError::Elsewhere(holder)) => {
                tracing::info!(%holder, "resume refused for now: the meeting's lease is still held");
                return Attempt::Fatal(ServerMessage::error(ErrorCode::Unavailable));
            }
            Err(RoomError::Unavailable(e)) => {
                tracing::warn!(error = %e, "resume refused: Redis is unavailable");
                return Attempt::Fatal(ServerMessage::error(ErrorCode::Unavailable));
            }
            Err(RoomError::Closing) => {
                return Attempt::Fatal(ServerMessage::error(ErrorCode::ShuttingDown));
            }
            Err(RoomError::Store(e)) => {
                self.state.metrics.store_errors.increment(1);
                tracing::error!(error = %e, "store failed starting a meeting for a resume");
                return Attempt::Fatal(ServerMessage::error(ErrorCode::Internal));
            }
        }
        match seated.await {
            Ok(true) => Attempt::Delivered,
            Ok(false) => {
                let notice = self.state.guard.join_failed(self.ip, self.meeting);
                self.count_shared_failure();
                self.failed(notice, "resume with an unknown token").await;
                Attempt::Answered
            }
            // The room ended before it took the resume up.
            Err(_) => self.resume_failed("resume of a meeting that ended").await,
        }
    }

    async fn resume_failed(&self, why: &str) -> Attempt {
        let notice = self.state.guard.join_failed(self.ip, self.meeting);
        self.count_shared_failure();
        self.failed(notice, why).await;
        Attempt::Fatal(ServerMessage::error(ErrorCode::ResumeFailed))
    }
}

impl Connection {
    /// A `breakout_join`: into an open breakout room, or back into the
    /// running meeting that opened it. No passcode and no waiting room: the
    /// room's core admits only a ticket it holds, for the identity it was
    /// drawn for, and otherwise answers `breakout_refused` and closes.
    /// Rooms run only on this node (the parent's): there is nothing to
    /// relay or start elsewhere.
    async fn breakout_join(
        &self,
        name: String,
        ticket: &str,
        sink: &mut Option<mpsc::Sender<Arc<str>>>,
    ) -> Attempt {
        if let Some(m) = self.too_many() {
            return Attempt::Refused(m);
        }
        let refused = || Attempt::Fatal(ServerMessage::error(ErrorCode::BreakoutRefused));
        let (Some(id), Some(ticket)) =
            (self.meeting, conclave_proto::BreakoutTicket::decode(ticket))
        else {
            return refused();
        };
        let Some(tx) = sink.take() else {
            return Attempt::Fatal(ServerMessage::error(ErrorCode::Internal));
        };
        let cmd = RoomCmd::BreakoutJoin {
            conn: self.conn,
            sink: tx,
            name,
            identity: self.identity.clone(),
            ticket,
        };
        let rooms = &self.state.rooms;
        let delivered = if rooms.is_breakout_room(id) {
            rooms.deliver(id, cmd).await.is_ok()
        } else {
            rooms.deliver_if_running(id, cmd).await
        };
        if delivered {
            Attempt::Delivered
        } else {
            refused()
        }
    }
}
