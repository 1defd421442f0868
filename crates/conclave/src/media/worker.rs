//! One media worker: an OS thread with its own UDP socket and ICE-TCP
//! listener, its own single-threaded runtime and the routers of the
//! meetings assigned to it.
//! Nothing in here is shared with another worker, so forwarding a packet
//! takes no lock; rooms reach a worker only through its command queue.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use conclave_media::{PeerId, PeerStats, Protocol, Router, RouterConfig, framing};
use conclave_proto::MeetingId;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DriverCmd;
use super::lag;
use super::meeting::MeetingMedia;
use super::relay::{RelayBatch, Relays};
use super::tcp::{TCP_ACCEPT_BACKOFF, Tcp, TcpEvent};
use super::udp::{RecvBatch, SendBatch};
use crate::telemetry::MediaCounters;

/// Source addresses remembered before the map is cleared (it refills itself).
const MAX_SOURCES: usize = 64 * 1024;
/// Receive batches handled per wake-up before timers and commands get a turn.
const RECV_BATCHES_PER_WAKE: usize = 8;
/// Hand-off batches from other workers handled per wake-up, likewise.
const RELAY_BATCHES_PER_WAKE: usize = 64;
/// TCP reads (each one or more frames) handled per wake-up, likewise.
const TCP_READS_PER_WAKE: usize = 64;
/// How often TCP connections are checked for the match and idle timeouts:
/// their precision, not their length.
const TCP_SWEEP: std::time::Duration = std::time::Duration::from_millis(500);

/// How often the worker adds what its routers counted to the server's
/// metrics: reading every peer's counters costs a walk over the peers, so
/// it is done on a timer, never per packet.
const METRICS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The meeting and peer a source's packets go to.
type Route = (MeetingId, PeerId);

pub struct Worker {
    /// Registered with the runtime for reading only (`media::start`): a
    /// socket registered for writing too is reported writable each time
    /// the kernel frees what it sent, which on loopback and veth is during
    /// the `sendmmsg` itself, so every send cost the worker one more
    /// `epoll_wait` and turn of the runtime. [`send_all`] waits for
    /// room in the send buffer on a registration of its own, only while
    /// the buffer is full.
    socket: AsyncFd<UdpSocket>,
    local: SocketAddr,
    meetings: HashMap<MeetingId, MeetingMedia>,
    /// Datagrams polled from each meeting's router in the flush under way,
    /// in the map's order (reused).
    polled: Vec<usize>,
    /// Which meeting's peer took the last datagram from each address: the
    /// one lookup a datagram from a known source costs.
    by_source: HashMap<SocketAddr, Route>,
    tcp: Tcp,
    /// When TCP connections are next checked for their timeouts.
    tcp_sweep_at: Instant,
    /// When the TCP listener is polled again after an accept error.
    tcp_accept_at: Instant,
    recv: RecvBatch,
    send: SendBatch,
    stats: WorkerStats,
    /// Given to every meeting's router ([`RouterConfig::audio_last_n`]).
    audio_last_n: Option<usize>,
    /// Given to every meeting's router ([`RouterConfig::fast_path`]).
    fast_path: bool,
    /// Given to every meeting's router ([`RouterConfig::playout_delay`]).
    playout_delay: bool,
    /// Given to every meeting's router ([`RouterConfig::hold_back`]).
    hold_back: bool,
    /// The server's media metrics, added to every [`METRICS_EVERY`].
    counters: MediaCounters,
    /// When the routers' counters are next read.
    metrics_at: Instant,
    /// Each live peer's counters as last added to the metrics, so that only
    /// what grew since is added (a peer that leaves takes its counters with
    /// it; what it did since the last read goes uncounted).
    exported: HashMap<Route, Exported>,
    /// The hand-off to and from the other workers' shards of spread
    /// meetings.
    relays: Relays,
    /// Reused for each meeting's hand-off messages.
    relay_out: Vec<conclave_media::relay::Relayed>,
    /// With `CONCLAVE_MEDIA_LAG` set: where forwarding time goes.
    lag: Option<lag::Turns>,
}

/// The router counters of one peer that go to the metrics.
#[derive(Debug, Default, Clone, Copy)]
struct Exported {
    forwarded: u64,
    bytes_out: u64,
    bytes_in: u64,
    pli_in: u64,
    pli_out: u64,
    resent: u64,
}

impl Exported {
    fn of(s: &PeerStats) -> Self {
        Exported {
            forwarded: s.rtp_forwarded,
            bytes_out: s.bytes_out,
            bytes_in: s.bytes_in,
            pli_in: s.keyframe_requests_in,
            pli_out: s.keyframe_requests_out,
            resent: s.fast_resent,
        }
    }

    /// Adds what grew from `before` to `now`.
    fn add_growth(&mut self, now: Exported, before: Exported) {
        self.forwarded += now.forwarded.saturating_sub(before.forwarded);
        self.bytes_out += now.bytes_out.saturating_sub(before.bytes_out);
        self.bytes_in += now.bytes_in.saturating_sub(before.bytes_in);
        self.pli_in += now.pli_in.saturating_sub(before.pli_in);
        self.pli_out += now.pli_out.saturating_sub(before.pli_out);
        self.resent += now.resent.saturating_sub(before.resent);
    }
}

/// What the worker counts itself; the routers count the rest
/// ([`conclave_media::RouterStats`]), so every datagram read is counted once
/// as in, and each one dropped once as dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Datagrams read from the socket, and frames from TCP connections,
    /// handed on.
    pub datagrams_in: u64,
    /// Datagrams no meeting's router took: garbage, strangers, or members
    /// of a meeting that ended.
    pub unrouted: u64,
}

impl Worker {
    pub fn new(socket: AsyncFd<UdpSocket>, local: SocketAddr, tcp: Tcp) -> Self {
        let mut send = SendBatch::for_socket(socket.get_ref());
        let mut recv = RecvBatch::new();
        let lag = lag::enabled().then(|| {
            recv.measure_lag(&socket);
            send.measure_lag();
            lag::Turns::new(Instant::now())
        });
        Worker {
            socket,
            local,
            meetings: HashMap::new(),
            polled: Vec::new(),
            by_source: HashMap::new(),
            tcp,
            tcp_sweep_at: Instant::now() + TCP_SWEEP,
            tcp_accept_at: Instant::now(),
            recv,
            send,
            stats: WorkerStats::default(),
            audio_last_n: Some(conclave_media::DEFAULT_AUDIO_LAST_N),
            fast_path: false,
            playout_delay: true,
            hold_back: false,
            counters: MediaCounters::noop(),
            metrics_at: Instant::now() + METRICS_EVERY,
            exported: HashMap::new(),
            relays: Relays::none(),
            relay_out: Vec::new(),
            lag,
        }
    }

    /// This worker's ends of the hand-off between shards.
    pub fn relays(mut self, relays: Relays) -> Self {
        self.relays = relays;
        self
    }

    /// The server's metrics this worker adds its routers' counters to.
    pub fn counters(mut self, counters: MediaCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Adds what the routers counted since the last call to the metrics.
    fn export_stats(&mut self) {
        let mut live = HashMap::with_capacity(self.exported.len());
        let mut grew = Exported::default();
        for (&meeting, m) in &self.meetings {
            for peer in m.router.peers() {
                let Some(stats) = m.router.peer_stats(peer) else {
                    continue;
                };
                let now = Exported::of(stats);
                let before = self
                    .exported
                    .get(&(meeting, peer))
                    .copied()
                    .unwrap_or_default();
                grew.add_growth(now, before);
                live.insert((meeting, peer), now);
            }
        }
        self.exported = live;
        let c = &self.counters;
        c.forwarded_packets.increment(grew.forwarded);
        c.bytes_out.increment(grew.bytes_out);
        c.bytes_in.increment(grew.bytes_in);
        c.keyframe_requests_in.increment(grew.pli_in);
        c.keyframe_requests_out.increment(grew.pli_out);
        c.retransmitted.increment(grew.resent);
    }

    /// Each meeting forwards every member the audio of `n` others at most
    /// (0: no limit), the server's `audio_last_n`.
    pub fn audio_last_n(mut self, n: usize) -> Self {
        self.audio_last_n = (n > 0).then_some(n);
        self
    }

    /// Each meeting's router seals forwarded media itself, the server's
    /// `media_fast_path`.
    pub fn fast_path(mut self, on: bool) -> Self {
        self.fast_path = on;
        self
    }

    /// Each meeting's router asks members for a playout delay while
    /// repairs come late, the server's `media_playout_delay`.
    pub fn playout_delay(mut self, on: bool) -> Self {
        self.playout_delay = on;
        self
    }

    /// Each meeting's router holds media back from a congested
    /// subscriber, the server's `media_congestion_hold_back`.
    pub fn hold_back(mut self, on: bool) -> Self {
        self.hold_back = on;
        self
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<DriverCmd>, shutdown: CancellationToken) {
        // One cancellation waiter and one timer for the worker's life: a
        // new one per turn of the loop registered itself with the token and
        // the runtime's timer wheel, and unregistered (two locks) on every
        // wake-up that was not its own. The timer is reset only when the
        // deadline moves.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut now = Instant::now();
        // The routers' earliest deadline, as `timeouts` left it.
        let mut routers_due = None;
        loop {
            let accepting = now >= self.tcp_accept_at;
            let next = routers_due
                .into_iter()
                .chain((!self.tcp.is_empty()).then_some(self.tcp_sweep_at))
                .chain((!accepting).then_some(self.tcp_accept_at))
                .chain((!self.meetings.is_empty()).then_some(self.metrics_at))
                .min();
            if next != armed {
                if let Some(at) = next {
                    timer.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                armed = next;
            }
            tokio::select! {
                () = &mut cancelled => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                // Polled, not awaited through `readable()`: that future
                // joins the socket's waiter list, under its lock, and leaves
                // it again on every wake-up.
                ready = std::future::poll_fn(|cx| self.socket.poll_read_ready(cx).map_ok(drop)) => match ready {
                    Ok(()) => self.receive().await,
                    Err(e) => tracing::debug!(error = %e, "media socket"),
                },
                accepted = self.tcp.listener.accept(), if accepting => match accepted {
                    Ok((stream, remote)) => self.tcp.accepted(stream, remote, Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "media TCP accept; pausing");
                        self.tcp_accept_at = Instant::now() + TCP_ACCEPT_BACKOFF;
                    }
                },
                Some(event) = self.tcp.events.recv() => self.tcp_events(event),
                Some(batch) = self.relays.rx.recv() => self.relayed(batch),
                () = &mut timer, if armed.is_some() => {}
            }
            // Every branch can make timers due: forwarding a packet makes its
            // subscribers due at once. Running them here, not on the next turn
            // of the loop, keeps the runtime's millisecond timer out of the
            // forwarding path.
            now = Instant::now();
            routers_due = self.timeouts(now);
            // Sending moves no router's deadline (`Router::poll_transmit`,
            // `poll_event`, `transmitted`), so the one just read holds.
            self.flush().await;
        }
        tracing::debug!(
            local = %self.local,
            datagrams_in = self.stats.datagrams_in,
            unrouted = self.stats.unrouted,
            truncated = self.recv.dropped,
            relay_dropped = self.relays.dropped,
            send_failed = self.send.failed,
            gso = self.send.gso(),
            gso_trains = self.send.trains,
            gso_train_datagrams = self.send.train_datagrams,
            tcp = ?self.tcp.stats,
            "media worker stopped"
        );
    }

    /// Runs what is due at `now`; returns the routers' next deadline.
    fn timeouts(&mut self, now: Instant) -> Option<Instant> {
        if let Some(l) = self.lag.as_mut() {
            l.report(now, &mut self.recv, &mut self.send);
        }
        let timed = self.lag.is_some().then(Instant::now);
        if now >= self.metrics_at {
            self.export_stats();
            self.metrics_at = now + METRICS_EVERY;
        }
        if now >= self.tcp_sweep_at {
            self.tcp.expire(now);
            self.tcp_sweep_at = now + TCP_SWEEP;
        }
        let mut next: Option<Instant> = None;
        for m in self.meetings.values_mut() {
            let mut due = m.router.poll_timeout();
            if due.is_some_and(|t| t <= now) {
                m.router.handle_timeout(now);
                due = m.router.poll_timeout();
            }
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let (Some(l), Some(t)) = (self.lag.as_mut(), timed) {
            l.timeouts.add_since(t, Instant::now(), 1);
        }
        next
    }

    /// Reads queued datagrams in batches and hands each to its router.
    ///
    /// What each datagram made the routers queue (its copies, one per
    /// subscriber) is sent before the next datagram is forwarded, and
    /// before the timers run: sending a batch's copies together made the
    /// first datagram's copies wait for the whole batch's forwarding, up to
    /// ~1 ms for the 10-13 datagrams a wake-up reads at the 99th percentile
    /// of a 20-member meeting, and longer whenever the worker was
    /// descheduled in the middle (docs/benchmarks.md, "Where the tail comes
    /// from"). It also spaces a subscriber's datagrams out after a stall:
    /// flushing a whole wake-up's batches at once sent each subscriber up to
    /// 8 × 32 publishers' packets back to back, more than a client's receive
    /// buffer holds ("bursts into the clients' sockets"). The cost is more,
    /// shorter send calls (and GSO trains).
    ///
    /// A batch shorter than [`udp::BATCH`](super::udp::BATCH) emptied the
    /// socket's queue (`recvmmsg` without waiting stops only there), so the
    /// socket is marked not readable at once instead of by one more call
    /// that finds nothing: at a meeting's rate, one publisher packet per
    /// wake-up, that was a second `recvmmsg`, and a second pass over the
    /// timers and the send queue, for every packet. A datagram that arrives
    /// after the read raises a new readiness event, which the runtime has
    /// not read yet, so it is not missed.
    async fn receive(&mut self) {
        let fd = self.socket.as_raw_fd();
        for batch in 0..RECV_BATCHES_PER_WAKE {
            if batch > 0 {
                // The last batch's copies go out with the loop's flush.
                self.timeouts(Instant::now());
                self.flush().await;
            }
            let recv = &mut self.recv;
            let mut got = 0;
            let drained = match self.socket.try_io(Interest::READABLE, |_| {
                got = recv.recv(fd)?;
                if got < super::udp::BATCH {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            }) {
                Ok(_) => false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Err(e) => {
                    tracing::debug!(error = %e, "media receive");
                    return;
                }
            };
            if got > 0 {
                let now = Instant::now();
                let read_at = self.recv.read_at();
                for d in 0..self.recv.count() {
                    let Some((from, data)) = self.recv.datagram(d) else {
                        continue;
                    };
                    route(
                        &mut self.meetings,
                        &mut self.by_source,
                        &mut self.stats,
                        self.local,
                        now,
                        from,
                        data,
                    );
                    // Its copies leave before the next datagram is forwarded.
                    self.recv.keep_read_at(read_at);
                    self.flush().await;
                }
            }
            if drained {
                return;
            }
        }
    }

    /// Handles what the TCP connections sent, a bounded number of reads at
    /// a time: each frame goes the way a datagram goes, from the
    /// connection's remote address, to the peer the connection is matched
    /// to (the one lookup it costs) or, until it is, to whichever router
    /// takes it.
    fn tcp_events(&mut self, first: TcpEvent) {
        let mut next = Some(first);
        for _ in 0..TCP_READS_PER_WAKE {
            let Some(event) = next.take() else { return };
            let now = Instant::now();
            match event {
                TcpEvent::Closed { conn } => self.tcp.close(conn),
                TcpEvent::Frames { conn, bytes } => {
                    let Some(c) = self.tcp.heard(conn, now) else {
                        // Closed meanwhile: what it sent goes nowhere.
                        continue;
                    };
                    let (remote, mut route) = (c.remote, c.route);
                    let mut unmatched = 0;
                    for data in framing::frames(&bytes) {
                        route = route_one(
                            &mut self.meetings,
                            &mut self.stats,
                            Protocol::Tcp,
                            self.tcp.local,
                            now,
                            remote,
                            route,
                            data,
                        );
                        unmatched += u32::from(route.is_none());
                    }
                    if let Some(c) = self.tcp.heard(conn, now) {
                        c.route = route;
                    }
                    for _ in 0..unmatched {
                        self.tcp.unmatched(conn);
                    }
                }
            }
            next = self.tcp.events.try_recv().ok();
        }
    }

    /// Hands what other workers' shards sent to the meetings' shards here,
    /// a bounded number of batches at a time.
    fn relayed(&mut self, first: RelayBatch) {
        let mut next = Some(first);
        for _ in 0..RELAY_BATCHES_PER_WAKE {
            let Some(batch) = next.take() else { return };
            let now = Instant::now();
            // A meeting closed here meanwhile: its batch goes nowhere.
            if let Some(m) = self.meetings.get_mut(&batch.meeting) {
                let from = u32::try_from(batch.from).unwrap_or(u32::MAX);
                for item in batch.items {
                    m.router.handle_relay(from, item, now);
                }
            }
            next = self.relays.rx.try_recv().ok();
        }
    }

    fn command(&mut self, cmd: DriverCmd) {
        let now = Instant::now();
        match cmd {
            DriverCmd::Closed { meeting } => {
                // Its last seconds' counters, before they go with the router.
                self.export_stats();
                self.meetings.remove(&meeting);
                self.relays.forget(meeting);
                self.by_source.retain(|_, (m, _)| *m != meeting);
                self.tcp.unroute_meeting(meeting, now);
            }
            DriverCmd::Open {
                meeting,
                events,
                relay,
                speaker,
            } => {
                if self.meetings.contains_key(&meeting) {
                    return;
                }
                let config = RouterConfig {
                    // The core decides what may be forwarded.
                    forward_by_default: false,
                    tcp_candidates: vec![self.tcp.local],
                    audio_last_n: self.audio_last_n,
                    fast_path: self.fast_path,
                    playout_delay: self.playout_delay,
                    hold_back: self.hold_back,
                    relay,
                    ..RouterConfig::new(self.local)
                };
                let Ok(router) = Router::new(config) else {
                    tracing::error!(local = %self.local, "unusable media address");
                    return;
                };
                self.meetings.insert(
                    meeting,
                    MeetingMedia::new(router, events).reports_speaker(speaker),
                );
            }
            DriverCmd::Declared {
                meeting,
                participant,
                tracks,
            } => {
                if let Some(m) = self.meetings.get_mut(&meeting) {
                    m.declare(participant, tracks);
                }
            }
            DriverCmd::Shards { meeting, workers } => {
                let spread = self.relays.set_shards(meeting, &workers);
                if let Some(m) = self.meetings.get_mut(&meeting) {
                    m.router.set_relaying(spread);
                    m.router.reannounce();
                }
            }
            DriverCmd::Media { meeting, cmd } => match self.meetings.get_mut(&meeting) {
                Some(m) => m.handle(cmd, now),
                None => tracing::warn!(%meeting, "media command for a meeting not open"),
            },
        }
    }

    /// Sends what the routers queued, in batches, and delivers their events
    /// to the rooms.
    ///
    /// Each router then gets back as many buffers of sent datagrams as it
    /// gave (`Router::recycle`), to seal its next ones into: forwarding
    /// allocates no buffer per datagram once each router has its flush's
    /// worth. Buffers are alike, so which router's a buffer was does not
    /// matter.
    async fn flush(&mut self) {
        self.send.lag_from(self.recv.take_read_at());
        let mut polled = false;
        self.polled.clear();
        for m in self.meetings.values_mut() {
            let mut n = 0;
            while let Some(t) = m.router.poll_transmit() {
                n += 1;
                if t.proto == Protocol::Tcp {
                    self.tcp.send(t.destination, &t.contents);
                    self.send.keep_spare(t.contents);
                    continue;
                }
                self.send.push(t);
                if self.send.is_full() {
                    send_all(&self.socket, &mut self.send).await;
                }
            }
            polled |= n > 0;
            self.polled.push(n);
            while let Some(event) = m.router.poll_event() {
                m.event(event);
            }
        }
        for (&meeting, m) in &mut self.meetings {
            m.router.drain_relay(&mut self.relay_out);
            self.relays.send(meeting, &mut self.relay_out);
        }
        send_all(&self.socket, &mut self.send).await;
        // The same order as above: the map has not changed since.
        for (m, &n) in self.meetings.values_mut().zip(&self.polled) {
            for _ in 0..n {
                let Some(buf) = self.send.take_spare() else {
                    break;
                };
                m.router.recycle(buf);
            }
        }
        self.send.drop_spare();
        if !polled {
            // Nothing left: no departure to time (most wake-ups for a
            // timer or RTCP).
            return;
        }
        // When they really left, for the fast path's congestion control.
        let sent = Instant::now();
        for m in self.meetings.values_mut() {
            m.router.transmitted(sent);
        }
    }
}

/// Hands a datagram to the router of the meeting its source belongs to. A
/// known source goes straight to its peer; a new one (its first datagram is
/// an ICE check) is offered to each meeting until one takes it, and the
/// meeting and peer that did are remembered.
fn route(
    meetings: &mut HashMap<MeetingId, MeetingMedia>,
    by_source: &mut HashMap<SocketAddr, Route>,
    stats: &mut WorkerStats,
    local: SocketAddr,
    now: Instant,
    from: SocketAddr,
    data: &[u8],
) {
    let known = by_source.get(&from).copied();
    let found = route_one(
        meetings,
        stats,
        Protocol::Udp,
        local,
        now,
        from,
        known,
        data,
    );
    match found {
        Some(r) if Some(r) == known => {}
        Some(r) => {
            if by_source.len() >= MAX_SOURCES {
                by_source.clear();
            }
            by_source.insert(from, r);
        }
        None if known.is_some() => {
            by_source.remove(&from);
        }
        None => {}
    }
}

/// Hands one packet (a datagram, or a TCP frame) to its router: straight to
/// `known`'s peer when that still takes it, else to the first meeting
/// whose router takes it. Returns the route its source has now.
#[allow(clippy::too_many_arguments)]
fn route_one(
    meetings: &mut HashMap<MeetingId, MeetingMedia>,
    stats: &mut WorkerStats,
    proto: Protocol,
    local: SocketAddr,
    now: Instant,
    from: SocketAddr,
    known: Option<Route>,
    data: &[u8],
) -> Option<Route> {
    stats.datagrams_in += 1;
    if let Some((meeting, peer)) = known
        && meetings.get_mut(&meeting).is_some_and(|m| {
            m.router
                .handle_receive_from_on(proto, peer, now, from, local, data)
        })
    {
        return known;
    }
    // The peer or its meeting is gone, or the address is someone else's
    // now: find its owner again.
    let Some((&id, m)) = meetings
        .iter_mut()
        .find(|(_, m)| m.router.accepts_on(proto, now, from, local, data))
    else {
        stats.unrouted += 1;
        return None;
    };
    m.router
        .handle_receive_on(proto, now, from, local, data)
        .map(|peer| (id, peer))
}

/// `socket` registered with the current runtime for `interest` only.
///
/// tokio 1.54 deprecates `AsyncFd::with_interest` for types whose
/// descriptor may change or close under the registration, and offers an
/// `unsafe` replacement this crate forbids. A `std::net::UdpSocket` owns
/// its descriptor, which stays open and the same until the `AsyncFd` that
/// owns the socket is dropped: the case the deprecation does not concern.
#[allow(deprecated)]
pub(super) fn register(
    socket: UdpSocket,
    interest: Interest,
) -> std::io::Result<AsyncFd<UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

/// Sends the whole batch, waiting whenever the socket's buffer is full.
async fn send_all(socket: &AsyncFd<UdpSocket>, batch: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    // A second descriptor of the socket, registered for writing while the
    // buffer is full and dropped (unregistered) once the batch is out.
    let mut full: Option<AsyncFd<UdpSocket>> = None;
    while !batch.is_empty() {
        match batch.send(fd) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let waiting = match full.take() {
                    Some(w) => Ok(w),
                    None => socket
                        .get_ref()
                        .try_clone()
                        .and_then(|s| register(s, Interest::WRITABLE)),
                };
                let waiting = match waiting {
                    Ok(w) => full.insert(w),
                    Err(e) => {
                        tracing::debug!(error = %e, "media socket");
                        batch.clear();
                        return;
                    }
                };
                match waiting.writable().await {
                    // Ready may be stale (set before the last send): the
                    // next send finds out, and the next wait is for a new
                    // event.
                    Ok(mut ready) => ready.clear_ready(),
                    Err(e) => {
                        tracing::debug!(error = %e, "media socket");
                        batch.clear();
                        return;
                    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use conclave_media::SdpOffer;
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Input, Output, Rtc};

    use super::*;

    const LOCAL: &str = "127.0.0.1:10000";
    const CLIENT: &str = "10.0.0.2:5000";
    const STRANGER: &str = "203.0.113.9:4444";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn meeting(events: mpsc::Sender<conclave_core::MediaEvent>) -> MeetingMedia {
        let router = Router::new(RouterConfig::new(addr(LOCAL))).expect("router");
        MeetingMedia::new(router, events)
    }

    /// A client of `media` as peer 1, and its first datagram (an ICE check).
    fn client_check(media: &mut MeetingMedia, now: Instant) -> Vec<u8> {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(addr(CLIENT), "udp").expect("candidate"));
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("sdp");
        media.router.add_peer(PeerId(1), now).expect("peer");
        let answer = media.router.accept_offer(PeerId(1), offer).expect("answer");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("accepted");
        for _ in 0..100 {
            match rtc.poll_output().expect("output") {
                Output::Transmit(t) => return t.contents.to_vec(),
                Output::Timeout(t) => rtc
                    .handle_input(Input::Timeout(t.max(now) + Duration::from_millis(1)))
                    .expect("timeout"),
                Output::Event(_) => {}
            }
        }
        panic!("the client sent no ICE check");
    }

    #[test]
    fn a_source_is_looked_up_once_and_every_datagram_is_counted_once() {
        // A real instant only as the origin; nothing waits on it.
        let now = Instant::now();
        let (tx, _events) = mpsc::channel(16);
        let (one, two) = (MeetingId::generate(), MeetingId::generate());
        let mut meetings = HashMap::new();
        let mut first = meeting(tx.clone());
        let check = client_check(&mut first, now);
        meetings.insert(one, first);
        meetings.insert(two, meeting(tx));
        let mut by_source = HashMap::new();
        let mut stats = WorkerStats::default();
        let mut route = |from: &str, data: &[u8], by_source: &mut HashMap<_, _>| {
            route(
                &mut meetings,
                by_source,
                &mut stats,
                addr(LOCAL),
                now,
                addr(from),
                data,
            );
        };

        // The ICE check finds its meeting and peer, which are remembered.
        route(CLIENT, &check, &mut by_source);
        assert_eq!(by_source.get(&addr(CLIENT)), Some(&(one, PeerId(1))));
        // The next datagram from there goes straight to it, garbage included.
        route(CLIENT, &check, &mut by_source);
        route(CLIENT, &[0xff; 30], &mut by_source);
        // Garbage from a new address belongs to no meeting.
        for data in [&[][..], &[0xff; 30], &[0x00, 0x01, 0x00]] {
            route(STRANGER, data, &mut by_source);
        }
        // A stale entry (the address remembered for the wrong meeting) is
        // found again, not dropped.
        by_source.insert(addr(CLIENT), (two, PeerId(1)));
        route(CLIENT, &check, &mut by_source);
        assert_eq!(by_source.get(&addr(CLIENT)), Some(&(one, PeerId(1))));
        assert_eq!(by_source.len(), 1);

        let r1 = meetings[&one].router.stats();
        let r2 = meetings[&two].router.stats();
        assert_eq!(stats.datagrams_in, 7);
        assert_eq!(stats.unrouted, 3);
        assert_eq!((r1.datagrams_in, r1.garbage, r1.unknown_source), (4, 1, 0));
        assert_eq!(r2.datagrams_in, 0);
        assert_eq!(
            meetings[&one]
                .router
                .peer_stats(PeerId(1))
                .map(|p| p.datagrams_in),
            Some(3)
        );
    }
}
