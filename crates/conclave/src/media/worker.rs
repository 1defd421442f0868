//! One media worker: an OS thread with its own UDP socket, its own
//! single-threaded runtime and the routers of the meetings assigned to it.
//! Nothing in here is shared with another worker, so forwarding a packet
//! takes no lock; rooms reach a worker only through its command queue.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use conclave_media::{Router, RouterConfig};
use conclave_proto::MeetingId;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DriverCmd;
use super::meeting::Meeting;
use super::udp::{RecvBatch, SendBatch};

/// Source addresses remembered before the map is cleared (it refills itself).
const MAX_SOURCES: usize = 64 * 1024;
/// Receive batches handled per wake-up before timers and commands get a turn.
const RECV_BATCHES_PER_WAKE: usize = 8;

pub struct Worker {
    socket: UdpSocket,
    local: SocketAddr,
    meetings: HashMap<MeetingId, Meeting>,
    by_source: HashMap<SocketAddr, MeetingId>,
    recv: RecvBatch,
    send: SendBatch,
}

impl Worker {
    pub fn new(socket: UdpSocket, local: SocketAddr) -> Self {
        Worker {
            socket,
            local,
            meetings: HashMap::new(),
            by_source: HashMap::new(),
            recv: RecvBatch::new(),
            send: SendBatch::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<DriverCmd>, shutdown: CancellationToken) {
        loop {
            let next = self
                .meetings
                .values()
                .filter_map(|m| m.router.poll_timeout())
                .min();
            let sleep = next.map(tokio::time::Instant::from_std);
            tokio::select! {
                () = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                ready = self.socket.readable() => match ready {
                    Ok(()) => self.receive(),
                    Err(e) => tracing::debug!(error = %e, "media socket"),
                },
                () = sleep_until(sleep), if sleep.is_some() => {}
            }
            // Every branch can make timers due: forwarding a packet makes its
            // subscribers due at once. Running them here, not on the next turn
            // of the loop, keeps the runtime's millisecond timer out of the
            // forwarding path.
            self.timeouts(Instant::now());
            self.flush().await;
        }
    }

    fn timeouts(&mut self, now: Instant) {
        for m in self.meetings.values_mut() {
            if m.router.poll_timeout().is_some_and(|t| t <= now) {
                m.router.handle_timeout(now);
            }
        }
    }

    /// Reads queued datagrams in batches and hands each to its router.
    fn receive(&mut self) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..RECV_BATCHES_PER_WAKE {
            let recv = &mut self.recv;
            match self.socket.try_io(Interest::READABLE, || recv.recv(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "media receive");
                    return;
                }
            }
            let now = Instant::now();
            for (from, data) in self.recv.datagrams() {
                route(
                    &mut self.meetings,
                    &mut self.by_source,
                    self.local,
                    now,
                    from,
                    data,
                );
            }
        }
    }

    fn command(&mut self, cmd: DriverCmd) {
        let now = Instant::now();
        match cmd {
            DriverCmd::Closed { meeting } => {
                self.meetings.remove(&meeting);
                self.by_source.retain(|_, m| *m != meeting);
            }
            DriverCmd::Media { meeting, room, cmd } => {
                let m = match self.meetings.entry(meeting) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let config = RouterConfig {
                            // The core decides what may be forwarded.
                            forward_by_default: false,
                            ..RouterConfig::new(self.local)
                        };
                        let Ok(router) = Router::new(config) else {
                            tracing::error!(local = %self.local, "unusable media address");
                            return;
                        };
                        e.insert(Meeting::new(router, room.clone()))
                    }
                };
                m.room = room;
                m.handle(cmd, now);
            }
        }
    }

    /// Sends what the routers queued, in batches, and delivers their events
    /// to the rooms.
    async fn flush(&mut self) {
        for m in self.meetings.values_mut() {
            while let Some(t) = m.router.poll_transmit() {
                self.send.push(t);
                if self.send.is_full() {
                    send_all(&self.socket, &mut self.send).await;
                }
            }
            while let Some(event) = m.router.poll_event() {
                m.event(event);
            }
        }
        send_all(&self.socket, &mut self.send).await;
    }
}

/// Hands a datagram to the router of the meeting its source belongs to,
/// learning that from the first datagram (the ICE check) a router accepts.
fn route(
    meetings: &mut HashMap<MeetingId, Meeting>,
    by_source: &mut HashMap<SocketAddr, MeetingId>,
    local: SocketAddr,
    now: Instant,
    from: SocketAddr,
    data: &[u8],
) {
    if let Some(m) = by_source.get(&from).and_then(|id| meetings.get_mut(id)) {
        m.router.handle_receive(now, from, local, data);
        return;
    }
    let owner = meetings
        .iter()
        .find(|(_, m)| m.router.accepts(now, from, local, data))
        .map(|(id, _)| *id);
    let Some(id) = owner else {
        return;
    };
    if by_source.len() >= MAX_SOURCES {
        by_source.clear();
    }
    by_source.insert(from, id);
    if let Some(m) = meetings.get_mut(&id) {
        m.router.handle_receive(now, from, local, data);
    }
}

/// Sends the whole batch, waiting whenever the socket's buffer is full.
async fn send_all(socket: &UdpSocket, batch: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !batch.is_empty() {
        match socket.try_io(Interest::WRITABLE, || batch.send(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    tracing::debug!(error = %e, "media socket");
                    batch.clear();
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "media send");
                batch.clear();
                return;
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
