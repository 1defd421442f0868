//! ICE-TCP for one media worker (RFC 6544, passive side): people behind a
//! firewall that drops UDP still get media. The worker listens on a TCP port
//! (the number of its UDP port) and its routers announce it as a passive
//! host candidate; a client connects and sends its ICE check, DTLS and SRTP
//! as RFC 4571 frames ([`super::framing`]).
//!
//! Each connection has a reader task and a writer task on the worker's own
//! runtime, so a slow or hostile connection only ever waits on itself: the
//! reader hands whole frames to the worker over one bounded queue, the
//! worker hands each connection its packets over that connection's bounded
//! queue and drops (and counts) what does not fit. The worker keeps the
//! connection's meeting and peer once a router took its ICE check: that is
//! the one lookup each frame costs, like a datagram's source address.
//!
//! Everything a stranger can open is bounded: connections per worker and
//! per address, the time and frames a connection gets to be matched to a
//! peer, frame sizes, queued bytes both ways, and how long a write may stall.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use conclave_media::PeerId;
use conclave_proto::MeetingId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use conclave_media::framing::{self, Deframer};

/// TCP connections one worker holds at once; more are closed on accept.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// TCP connections one remote address may hold on one worker at once (a
/// browser opens one per candidate pair it checks; an office NAT carries
/// many people).
pub const MAX_TCP_CONNECTIONS_PER_IP: usize = 64;
/// Time a new connection has to send an ICE check a meeting's router takes;
/// after that it is closed.
pub const TCP_MATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames a connection may send before a router takes one; past that it is
/// closed (a browser's first frame is its check).
pub const MAX_UNMATCHED_FRAMES: u32 = 16;
/// A connection that sent nothing for this long is closed: a live client
/// sends consent checks every few seconds, and media far more often.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets queued for one connection's writer; past that new ones are
/// dropped and counted, like a full UDP socket buffer would. About a second
/// of a subscriber's video at 3 Mbit/s, a key frame's burst with room to
/// spare: media older than that is no use to anyone, and a member who
/// stops reading holds at most some 300 KB here.
pub const TCP_WRITE_QUEUE: usize = 256;
/// A write that makes no progress for this long closes the connection: its
/// reader stopped reading.
pub const TCP_WRITE_STALL: Duration = Duration::from_secs(10);
/// Reads (each one or more whole frames) queued from all connections to the
/// worker; a full queue makes the readers wait, not the worker.
pub const TCP_READ_QUEUE: usize = 1024;
/// After an accept error (out of file descriptors, most likely) the
/// listener is left alone this long: retrying at once would spin the worker
/// and starve the media of those already connected.
pub const TCP_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes the writer gathers from its queue into one write.
const WRITE_COALESCE: usize = 64 * 1024;

pub type ConnId = u64;

/// What connection tasks tell the worker.
pub enum TcpEvent {
    /// Whole frames read from `conn`, prefixes included ([`framing::frames`]).
    Frames { conn: ConnId, bytes: Vec<u8> },
    /// `conn` ended (closed, reset, a bad frame, a stalled write).
    Closed { conn: ConnId },
}

/// What the worker counts about its TCP side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TcpStats {
    pub accepted: u64,
    /// Closed on accept: too many connections in all or from that address.
    pub refused: u64,
    /// Closed for not being matched to a peer in time or in frames.
    pub unmatched_closed: u64,
    pub idle_closed: u64,
    /// Packets for a connection whose queue was full.
    pub write_dropped: u64,
    /// Packets for a TCP address with no connection (it closed).
    pub no_connection: u64,
}

/// One connection, as the worker sees it.
pub struct Conn {
    pub remote: SocketAddr,
    /// The meeting and peer whose router took this connection's ICE check.
    pub route: Option<(MeetingId, PeerId)>,
    opened: Instant,
    last_in: Instant,
    unmatched_frames: u32,
    out: mpsc::Sender<Vec<u8>>,
    tasks: [AbortHandle; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The halves live in the tasks: ending them closes the socket.
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The worker's TCP listener and connections.
pub struct Tcp {
    pub listener: TcpListener,
    /// The address announced in candidates and given to routers as a
    /// frame's destination.
    pub local: SocketAddr,
    conns: HashMap<ConnId, Conn>,
    by_remote: HashMap<SocketAddr, ConnId>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: ConnId,
    events_tx: mpsc::Sender<TcpEvent>,
    pub events: mpsc::Receiver<TcpEvent>,
    pub stats: TcpStats,
}

impl Tcp {
    pub fn new(listener: TcpListener, local: SocketAddr) -> Self {
        let (events_tx, events) = mpsc::channel(TCP_READ_QUEUE);
        Tcp {
            listener,
            local,
            conns: HashMap::new(),
            by_remote: HashMap::new(),
            per_ip: HashMap::new(),
            next_id: 0,
            events_tx,
            events,
            stats: TcpStats::default(),
        }
    }

    /// Takes a new connection, or closes it at once when over a limit.
    pub fn accepted(&mut self, stream: TcpStream, remote: SocketAddr, now: Instant) {
        let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if self.conns.len() >= MAX_TCP_CONNECTIONS || from_ip >= MAX_TCP_CONNECTIONS_PER_IP {
            self.stats.refused += 1;
            tracing::debug!(%remote, "media TCP connection refused: too many");
            return;
        }
        // Media is latency-bound: a packet must not wait for the next one.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "media TCP nodelay");
        }
        self.stats.accepted += 1;
        let conn = self.next_id;
        self.next_id += 1;
        let (read, write) = stream.into_split();
        let (out, rx) = mpsc::channel(TCP_WRITE_QUEUE);
        let reader = tokio::spawn(read_loop(conn, read, self.events_tx.clone()));
        let writer = tokio::spawn(write_loop(conn, write, rx, self.events_tx.clone()));
        let tasks = [reader.abort_handle(), writer.abort_handle()];
        if let Some(old) = self.by_remote.insert(remote, conn) {
            // The kernel reused the address; the old connection is dead.
            self.close(old);
            self.by_remote.insert(remote, conn);
        }
        *self.per_ip.entry(remote.ip()).or_default() += 1;
        self.conns.insert(
            conn,
            Conn {
                remote,
                route: None,
                opened: now,
                last_in: now,
                unmatched_frames: 0,
                out,
                tasks,
            },
        );
    }

    /// The connection a read came from, noted as heard from now.
    pub fn heard(&mut self, conn: ConnId, now: Instant) -> Option<&mut Conn> {
        let c = self.conns.get_mut(&conn)?;
        c.last_in = now;
        Some(c)
    }

    /// A frame of `conn` no router took while it had no peer: closes it
    /// after [`MAX_UNMATCHED_FRAMES`].
    pub fn unmatched(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.unmatched_frames += 1;
        if c.unmatched_frames > MAX_UNMATCHED_FRAMES {
            self.stats.unmatched_closed += 1;
            self.close(conn);
        }
    }

    /// Forgets `conn` and ends its tasks, which closes the socket.
    pub fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if self.by_remote.get(&c.remote) == Some(&conn) {
            self.by_remote.remove(&c.remote);
        }
        if let Some(n) = self.per_ip.get_mut(&c.remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.remote.ip());
            }
        }
    }

    /// Queues a packet for the connection to `to`, framed; dropped and
    /// counted when that connection is gone or its queue is full.
    pub fn send(&mut self, to: SocketAddr, packet: &[u8]) {
        let Some(c) = self.by_remote.get(&to).and_then(|id| self.conns.get(id)) else {
            self.stats.no_connection += 1;
            return;
        };
        let mut bytes = Vec::with_capacity(packet.len() + 2);
        if framing::frame(packet, &mut bytes).is_err() {
            self.stats.write_dropped += 1;
            return;
        }
        if c.out.try_send(bytes).is_err() {
            self.stats.write_dropped += 1;
        }
    }

    /// Closes connections never matched in time and silent ones.
    pub fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, c) in &self.conns {
            if c.route.is_none() && now.saturating_duration_since(c.opened) >= TCP_MATCH_TIMEOUT {
                self.stats.unmatched_closed += 1;
                expired.push(*id);
            } else if now.saturating_duration_since(c.last_in) >= TCP_IDLE_TIMEOUT {
                self.stats.idle_closed += 1;
                expired.push(*id);
            }
        }
        for id in expired {
            self.close(id);
        }
    }

    /// A meeting ended: its connections are matched to nobody now; they
    /// are closed unless a new check matches them in time.
    pub fn unroute_meeting(&mut self, meeting: MeetingId, now: Instant) {
        for c in self.conns.values_mut() {
            if c.route.is_some_and(|(m, _)| m == meeting) {
                c.route = None;
                c.opened = now;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

/// Reads frames until the stream ends or breaks the framing, handing each
/// read's whole frames to the worker.
async fn read_loop(conn: ConnId, mut read: OwnedReadHalf, events: mpsc::Sender<TcpEvent>) {
    let mut deframer = Deframer::new();
    loop {
        match read.read(deframer.spare()).await {
            Ok(0) => break,
            Ok(n) => deframer.filled(n),
            Err(e) => {
                tracing::debug!(error = %e, conn, "media TCP read");
                break;
            }
        }
        let bytes = match deframer.complete() {
            Ok([]) => continue,
            Ok(bytes) => bytes.to_vec(),
            Err(e) => {
                tracing::debug!(error = %e, conn, "media TCP framing; closing");
                break;
            }
        };
        if events.send(TcpEvent::Frames { conn, bytes }).await.is_err() {
            return;
        }
    }
    let _ = events.send(TcpEvent::Closed { conn }).await;
}

/// Writes the worker's framed packets, several per system call when they
/// queue up; a write stalled past [`TCP_WRITE_STALL`] ends the connection.
async fn write_loop(
    conn: ConnId,
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<TcpEvent>,
) {
    let mut buf = Vec::with_capacity(WRITE_COALESCE);
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < WRITE_COALESCE {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(TCP_WRITE_STALL, write.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, conn, "media TCP write");
                break;
            }
            Err(_) => {
                tracing::debug!(conn, "media TCP write stalled; closing");
                break;
            }
        }
    }
    let _ = events.send(TcpEvent::Closed { conn }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's TCP side on loopback, and one client connection to it.
    async fn one_connection() -> (Tcp, TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("addr");
        let mut tcp = Tcp::new(listener, local);
        let client = TcpStream::connect(local).await.expect("connect");
        let (stream, remote) = tcp.listener.accept().await.expect("accept");
        tcp.accepted(stream, remote, Instant::now());
        (tcp, client, remote)
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_loses_packets_not_the_workers_memory() {
        let (mut tcp, _client, remote) = one_connection().await;
        // 24 MB: more than the kernel's buffers on both ends and the queue.
        for i in 0..20_000 {
            tcp.send(remote, &[1u8; 1200]);
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(tcp.stats.write_dropped > 0, "{:?}", tcp.stats);
        assert!(tcp.stats.write_dropped < 20_000, "{:?}", tcp.stats);
        // Nothing for an address without a connection is queued anywhere.
        tcp.send(SocketAddr::from(([127, 0, 0, 1], 9)), b"x");
        assert_eq!(tcp.stats.no_connection, 1);
    }

    #[tokio::test]
    async fn an_unmatched_connection_is_closed_when_its_time_is_up_and_frees_its_place() {
        let (mut tcp, mut client, _) = one_connection().await;
        let now = Instant::now();
        tcp.expire(now + TCP_MATCH_TIMEOUT / 2);
        assert!(!tcp.is_empty());
        tcp.expire(now + TCP_MATCH_TIMEOUT);
        assert!(tcp.is_empty());
        assert_eq!(tcp.stats.unmatched_closed, 1);
        assert!(tcp.per_ip.is_empty() && tcp.by_remote.is_empty());
        // The tasks ended, so the socket closed: the client reads its end.
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)));
    }

    #[tokio::test]
    async fn past_the_per_address_limit_connections_are_closed_on_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("addr");
        let mut tcp = Tcp::new(listener, local);
        let mut clients = Vec::new();
        for _ in 0..MAX_TCP_CONNECTIONS_PER_IP + 3 {
            clients.push(TcpStream::connect(local).await.expect("connect"));
            let (stream, remote) = tcp.listener.accept().await.expect("accept");
            tcp.accepted(stream, remote, Instant::now());
        }
        assert_eq!(tcp.conns.len(), MAX_TCP_CONNECTIONS_PER_IP);
        assert_eq!(tcp.stats.refused, 3);
    }
}
