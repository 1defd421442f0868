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

mod meeting;
mod tcp;
mod udp;
mod worker;

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use conclave_core::{MediaCommand, MediaEvent};
use conclave_proto::MeetingId;
use tokio::sync::mpsc;

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
    },
    Media {
        meeting: MeetingId,
        cmd: MediaCommand,
    },
    /// The meeting's room stopped: drop its router.
    Closed { meeting: MeetingId },
}

impl DriverCmd {
    fn meeting(&self) -> MeetingId {
        match self {
            DriverCmd::Open { meeting, .. }
            | DriverCmd::Media { meeting, .. }
            | DriverCmd::Closed { meeting } => *meeting,
        }
    }
}

/// One meeting's way to its media worker, held by its room.
pub struct MediaLink {
    meeting: MeetingId,
    media: MediaHandle,
}

impl MediaLink {
    /// Queues a command of the meeting's core for its router.
    pub fn send(&self, cmd: MediaCommand) {
        self.media.send(DriverCmd::Media {
            meeting: self.meeting,
            cmd,
        });
    }

    /// The room stopped: the worker drops the meeting's router.
    pub fn close(self) {
        self.media.send(DriverCmd::Closed {
            meeting: self.meeting,
        });
    }
}

/// The rooms' handle on the media workers.
#[derive(Clone)]
pub struct MediaHandle {
    workers: Arc<[WorkerHandle]>,
}

struct WorkerHandle {
    tx: mpsc::Sender<DriverCmd>,
}

impl MediaHandle {
    /// Opens a meeting's media on its worker: the link to send its commands
    /// on, and the stream of its events. Once per running room; the room
    /// closes the link when it stops.
    pub fn open(&self, meeting: MeetingId) -> (MediaLink, mpsc::Receiver<MediaEvent>) {
        let (events, rx) = mpsc::channel(MEETING_EVENT_QUEUE);
        self.send(DriverCmd::Open { meeting, events });
        let link = MediaLink {
            meeting,
            media: self.clone(),
        };
        (link, rx)
    }

    /// Queues a command for the meeting's worker; drops it (and says so) if
    /// that worker is overwhelmed.
    fn send(&self, cmd: DriverCmd) {
        match self.worker_for(cmd.meeting()).tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("media worker queue full; command dropped");
            }
            // Shutting down: the worker is gone and so is all media.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn worker_for(&self, meeting: MeetingId) -> &WorkerHandle {
        // SipHash with fixed keys: the same meeting always lands on the same
        // worker. Meeting IDs are random, so meetings spread evenly.
        let mut h = std::hash::DefaultHasher::new();
        meeting.hash(&mut h);
        let n = self.workers.len() as u64;
        let i = usize::try_from(h.finish() % n).unwrap_or(0);
        &self.workers[i]
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
/// `workers` 0 means one per core. Each meeting's router forwards every
/// member the audio of `audio_last_n` others at most (0: no limit), and
/// seals forwarded media itself if `fast_path`.
pub fn start(
    bind: SocketAddr,
    announce: Option<IpAddr>,
    workers: usize,
    audio_last_n: usize,
    fast_path: bool,
    counters: crate::telemetry::MediaCounters,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<MediaHandle, MediaStartError> {
    let count = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(MAX_WORKERS);
    let mut handles = Vec::with_capacity(count);
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
                tokio::net::UdpSocket::from_std(socket).map_err(bind_err)?,
                tokio::net::TcpListener::from_std(listener).map_err(tcp_err)?,
            )
        };
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let shutdown = shutdown.clone();
        let counters = counters.clone();
        std::thread::Builder::new()
            .name(format!("media-{i}"))
            .spawn(move || {
                let tcp = tcp::Tcp::new(listener, tcp_local);
                let worker = worker::Worker::new(socket, local, tcp)
                    .audio_last_n(audio_last_n)
                    .fast_path(fast_path)
                    .counters(counters);
                runtime.block_on(worker.run(rx, shutdown));
            })
            .map_err(MediaStartError::Worker)?;
        tracing::info!(%local, tcp = %tcp_local, worker = i, "media on UDP and ICE-TCP");
        handles.push(WorkerHandle { tx });
    }
    Ok(MediaHandle {
        workers: handles.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(workers: usize) -> (MediaHandle, Vec<mpsc::Receiver<DriverCmd>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel(8)).unzip();
        let workers = txs.into_iter().map(|tx| WorkerHandle { tx }).collect();
        (MediaHandle { workers }, rxs)
    }

    fn index(h: &MediaHandle, meeting: MeetingId) -> usize {
        let w = h.worker_for(meeting);
        h.workers
            .iter()
            .position(|x| std::ptr::eq(x, w))
            .expect("one of the workers")
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
        let (link, _events) = h.open(m);
        link.send(MediaCommand::KeyFrame {
            participant: conclave_proto::ParticipantId(1),
        });
        link.close();
        for (j, rx) in rx.iter_mut().enumerate() {
            let got = std::iter::from_fn(|| rx.try_recv().ok()).count();
            assert_eq!(got, if j == i { 3 } else { 0 }, "worker {j}");
        }
    }
}
