//! Batched UDP for the media workers: one `recvmmsg` reads up to [`BATCH`]
//! datagrams and one `sendmmsg` sends up to [`BATCH`] messages, each a
//! datagram or a GSO train of a subscriber's datagrams, so a burst of
//! forwarded packets costs one system call instead of one per packet. The
//! receive buffers and the message headers are allocated once per worker.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use conclave_media::Transmit;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, getsockopt,
    recvmmsg, sendmmsg, sockopt,
};
use nix::sys::time::TimeSpec;

use super::lag::Hist;

/// Datagrams per system call. Large enough to amortise the call over a
/// forwarding burst; small enough that the first packet of a batch does not
/// wait long for the last one to be processed.
pub const BATCH: usize = 32;
/// Largest datagram read; longer ones are truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 2048;

/// Receive side: reused buffers and headers.
pub struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Source and length of each datagram of the last batch, by buffer
    /// index; `None` for one that was dropped.
    got: Vec<Option<(SocketAddr, usize)>>,
    /// Datagrams dropped for being truncated or from a non-IP source.
    pub dropped: u64,
    /// Measured only with [`RecvBatch::measure_lag`] (`media::lag`).
    lag: Option<Box<RecvLag>>,
}

/// What [`RecvBatch`] measures for `media::lag`.
#[derive(Default)]
struct RecvLag {
    /// Kernel receive time to the `recvmmsg` return, per datagram (µs).
    queued: Hist,
    /// Datagrams per `recvmmsg`.
    batch: Hist,
    /// When the last `recvmmsg` returned, until a flush takes it.
    read_at: Option<Instant>,
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: Box::new([[0u8; MAX_DATAGRAM]; BATCH]),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
            dropped: 0,
            lag: None,
        }
    }

    /// Asks the kernel to timestamp each datagram `socket` receives, and
    /// measures how long each waited to be read (`media::lag`).
    pub fn measure_lag(&mut self, socket: &impl AsFd) {
        if let Err(e) = nix::sys::socket::setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
            tracing::warn!(error = %e, "SO_TIMESTAMPNS");
            return;
        }
        self.headers = MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
        self.lag = Some(Box::default());
    }

    /// When the last `recvmmsg` returned, once (`media::lag`).
    pub fn take_read_at(&mut self) -> Option<Instant> {
        self.lag.as_mut().and_then(|l| l.read_at.take())
    }

    /// The queue-wait and batch-size distributions (`media::lag`).
    pub fn lag_hists(&mut self) -> (&mut Hist, &mut Hist) {
        let lag = self.lag.get_or_insert_with(Box::default);
        (&mut lag.queued, &mut lag.batch)
    }

    /// Reads what is queued on `fd` without blocking (`WouldBlock` when
    /// nothing is); returns how many datagrams [`RecvBatch::datagrams`] holds.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        let mut slices = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let results = recvmmsg(
            fd,
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let lag = self.lag.as_deref_mut().map(|l| {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            l.read_at = Some(Instant::now());
            (l, wall)
        });
        let mut lag = lag;
        for r in results {
            if let Some((l, wall)) = lag.as_mut()
                && let Ok(cmsgs) = r.cmsgs()
            {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(t) = c {
                        let at = Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32);
                        l.queued.add(wall.saturating_sub(at).as_micros() as u64, 1);
                    }
                }
            }
            let source = r.address.as_ref().and_then(socket_addr);
            let datagram = source
                .filter(|_| !r.flags.contains(MsgFlags::MSG_TRUNC))
                .map(|s| (s, r.bytes.min(MAX_DATAGRAM)));
            self.dropped += u64::from(datagram.is_none());
            self.got.push(datagram);
        }
        if let Some((l, _)) = lag {
            l.batch.add(self.got.len() as u64, 1);
        }
        Ok(self.got.len())
    }

    /// How many datagrams the last [`RecvBatch::recv`] read, dropped ones
    /// included.
    pub fn count(&self) -> usize {
        self.got.len()
    }

    /// The `i`th datagram of the last [`RecvBatch::recv`], with its source;
    /// `None` for one that was dropped.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let (from, len) = (*self.got.get(i)?)?;
        Some((from, &self.bufs[i][..len]))
    }

    /// When the last `recvmmsg` returned, if measured and not yet taken.
    pub fn read_at(&self) -> Option<Instant> {
        self.lag.as_ref().and_then(|l| l.read_at)
    }

    /// Puts back what [`RecvBatch::take_read_at`] took, for the next
    /// flush of the same batch.
    pub fn keep_read_at(&mut self, at: Option<Instant>) {
        if let Some(l) = self.lag.as_deref_mut() {
            l.read_at = at;
        }
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their sources.
    #[cfg(test)]
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(self.bufs.iter())
            .filter_map(|(got, buf)| got.map(|(from, len)| (from, &buf[..len])))
    }
}

/// Datagrams queued before the worker must send: more than one
/// `sendmmsg`'s worth, so that a subscriber's datagrams of one flush can
/// leave as one GSO train.
pub const QUEUE: usize = 4 * BATCH;
/// Most segments in one GSO train (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO train: what one UDP datagram can carry.
const MAX_TRAIN_BYTES: usize = 65_000;
/// Largest datagram sent in a train: a segment must fit the path's MTU
/// (1,500 bytes less IPv6 and UDP headers), or the kernel refuses it.
const MAX_SEGMENT_SIZE: usize = 1_452;

/// One message of a `sendmmsg`: queued datagrams, by index, to one
/// destination; with a segment size when it is a GSO train of several.
struct Message {
    first: usize,
    count: usize,
    bytes: usize,
    segment: u16,
}

/// Send side: datagrams waiting for the next `sendmmsg`, and reused headers.
///
/// Where the kernel has UDP GSO (`UDP_SEGMENT`, Linux 4.18), consecutive
/// datagrams to one destination leave as one train: one message whose
/// payload the kernel cuts into datagrams of the segment size, so the UDP
/// and IP layers (and a NIC with segmentation offload) run once per train
/// instead of once per datagram. A train is datagrams of one size, the last
/// of which may be shorter; a datagram no longer than a train's segment
/// size goes in the same `sendmmsg` as that train, with the same control
/// message. If the kernel refuses a train outright (`EIO`: a device
/// without checksum offload), GSO is turned off for good and the batch goes
/// as single datagrams; if it refuses a segment size (`EINVAL`: larger than
/// the path's MTU allows), trains are kept below that size from then on.
pub struct SendBatch {
    queue: Vec<Transmit>,
    /// Queue indices grouped by destination, each group in queue order.
    order: Vec<usize>,
    messages: Vec<Message>,
    sent: Vec<bool>,
    plain: MultiHeaders<SockaddrStorage>,
    /// Headers with room for one `UDP_SEGMENT` control message each.
    gso: MultiHeaders<SockaddrStorage>,
    /// Segments a train may have; 1 when GSO is off.
    max_segments: usize,
    /// Largest datagram sent in a train: [`MAX_SEGMENT_SIZE`], lowered
    /// below a segment size the kernel refused (a smaller MTU).
    segment_cap: usize,
    /// Datagrams the kernel refused (other than "try again").
    pub failed: u64,
    /// Trains sent, and the datagrams in them.
    pub trains: u64,
    pub train_datagrams: u64,
    /// Measured only with [`SendBatch::measure_lag`] (`media::lag`).
    lag: Option<Box<SendLag>>,
    /// Buffers of the datagrams sent, for the routers to seal later ones
    /// into (`Router::recycle`, [`SendBatch::take_spare`]).
    spare: Vec<Vec<u8>>,
}

/// What [`SendBatch`] measures for `media::lag`.
#[derive(Default)]
struct SendLag {
    /// From the receive that led to a flush to the `sendmmsg` return, per
    /// datagram sent (µs).
    forward: Hist,
    /// `sendmmsg`s that found the socket's send buffer full (`EAGAIN`).
    full: u64,
    /// The `recvmmsg` return the datagrams queued now follow.
    since: Option<Instant>,
}

impl SendBatch {
    /// A batch without GSO.
    pub fn new() -> Self {
        SendBatch {
            queue: Vec::with_capacity(QUEUE),
            order: Vec::with_capacity(QUEUE),
            messages: Vec::with_capacity(QUEUE),
            sent: Vec::with_capacity(QUEUE),
            plain: MultiHeaders::preallocate(BATCH, None),
            gso: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16))),
            max_segments: 1,
            segment_cap: MAX_SEGMENT_SIZE,
            failed: 0,
            trains: 0,
            train_datagrams: 0,
            lag: None,
            spare: Vec::with_capacity(QUEUE),
        }
    }

    /// Measures how long forwarded datagrams take to leave (`media::lag`).
    pub fn measure_lag(&mut self) {
        self.lag = Some(Box::default());
    }

    /// Times what is sent from now on from `read_at`, the `recvmmsg`
    /// return it follows (`None`: a flush for timers, not timed).
    pub fn lag_from(&mut self, read_at: Option<Instant>) {
        if let Some(l) = self.lag.as_deref_mut() {
            l.since = read_at;
        }
    }

    /// The forward distribution and the count of full send buffers since
    /// the last call (`media::lag`).
    pub fn lag_take(&mut self) -> (&mut Hist, u64) {
        let lag = self.lag.get_or_insert_with(Box::default);
        (&mut lag.forward, std::mem::take(&mut lag.full))
    }

    /// A batch for `socket` that sends GSO trains if its kernel can.
    pub fn for_socket(socket: &impl AsFd) -> Self {
        let mut batch = SendBatch::new();
        match getsockopt(socket, sockopt::UdpGsoSegment) {
            Ok(_) => batch.max_segments = MAX_SEGMENTS,
            Err(e) => tracing::debug!(error = %e, "no UDP GSO: datagrams go one by one"),
        }
        batch
    }

    /// Whether trains are sent.
    pub fn gso(&self) -> bool {
        self.max_segments > 1
    }

    pub fn push(&mut self, t: Transmit) {
        self.queue.push(t);
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= QUEUE
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Keeps `buf`, a datagram's sent otherwise (over TCP), with the
    /// buffers of those this batch sent.
    pub fn keep_spare(&mut self, buf: Vec<u8>) {
        self.spare.push(buf);
    }

    /// A buffer of a datagram sent, to hand back to a router; `None` when
    /// all are given back.
    pub fn take_spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Drops the buffers not handed back.
    pub fn drop_spare(&mut self) {
        self.spare.clear();
    }

    /// Groups the queue by destination and cuts each group into messages.
    fn plan(&mut self) {
        self.order.clear();
        self.messages.clear();
        self.sent.clear();
        self.sent.resize(self.queue.len(), false);
        // Grouping marks each index taken in `sent`, reset below.
        for i in 0..self.queue.len() {
            if self.sent[i] {
                continue;
            }
            let to = self.queue[i].destination;
            for j in i..self.queue.len() {
                if !self.sent[j] && self.queue[j].destination == to {
                    self.sent[j] = true;
                    self.order.push(j);
                }
            }
        }
        self.sent.fill(false);
        let mut at = 0;
        while at < self.order.len() {
            let to = self.queue[self.order[at]].destination;
            let size = self.queue[self.order[at]].contents.len();
            let (mut count, mut bytes) = (1, size);
            while size <= self.segment_cap
                && count < self.max_segments
                && at + count < self.order.len()
            {
                let next = &self.queue[self.order[at + count]];
                let len = next.contents.len();
                if next.destination != to || len > size || bytes + len > MAX_TRAIN_BYTES {
                    break;
                }
                count += 1;
                bytes += len;
                if len < size {
                    // Only the last segment may be short.
                    break;
                }
            }
            let segment = if count > 1 { size as u16 } else { 0 };
            self.messages.push(Message {
                first: at,
                count,
                bytes,
                segment,
            });
            at += count;
        }
    }

    /// Sends as much of the batch as the kernel takes in one `sendmmsg`
    /// (`WouldBlock` when its buffer is full) and forgets what was sent. A
    /// datagram the kernel refuses outright is dropped and counted, so one
    /// bad destination cannot stall the others.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        self.plan();
        let mut sent = 0;
        let mut m = 0;
        let result = loop {
            if m == self.messages.len() {
                break Ok(sent);
            }
            // A run of messages one control message fits: trains of one
            // segment size, and single datagrams no longer than it. It
            // starts at the first message left, whatever that is.
            let first = &self.messages[m];
            let segment = if first.segment > 0 {
                first.segment
            } else {
                self.messages[m..]
                    .iter()
                    .take(BATCH)
                    .find(|x| x.segment > 0)
                    .map_or(0, |x| x.segment)
            };
            let segment = if usize::from(segment) >= first.bytes || first.segment > 0 {
                segment
            } else {
                0
            };
            let run = self.messages[m..]
                .iter()
                .take(BATCH)
                .take_while(|x| {
                    if x.segment == 0 {
                        segment == 0 || x.bytes <= usize::from(segment)
                    } else {
                        x.segment == segment
                    }
                })
                .count();
            match self.send_run(fd, m, run, segment) {
                Ok(n) => {
                    if let Some(l) = self.lag.as_deref_mut()
                        && let Some(since) = l.since
                    {
                        let count = self.messages[m..m + n]
                            .iter()
                            .map(|x| x.count)
                            .sum::<usize>();
                        l.forward.add_since(since, Instant::now(), count as u64);
                    }
                    for x in &self.messages[m..m + n] {
                        if x.count > 1 {
                            self.trains += 1;
                            self.train_datagrams += x.count as u64;
                        }
                        for &i in &self.order[x.first..x.first + x.count] {
                            self.sent[i] = true;
                        }
                        sent += x.count;
                    }
                    m += n;
                    if n < run {
                        break Ok(sent);
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    if let Some(l) = self.lag.as_deref_mut() {
                        l.full += 1;
                    }
                    break if sent == 0 {
                        Err(io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(sent)
                    };
                }
                Err(nix::errno::Errno::EIO) if segment > 0 => {
                    // Sent nothing: the rest goes as single datagrams.
                    tracing::warn!(
                        "UDP GSO refused by the kernel (EIO); sending datagrams one by one"
                    );
                    self.max_segments = 1;
                    break Ok(sent);
                }
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EMSGSIZE)
                    if self.messages[m].count > 1 =>
                {
                    // A segment the path's MTU cannot carry: its datagrams
                    // go again, in trains of smaller ones or alone.
                    tracing::debug!(segment, "UDP GSO segment refused; trains kept below it");
                    self.segment_cap = usize::from(segment).saturating_sub(1);
                    break Ok(sent);
                }
                Err(e) => {
                    // The first message itself was refused: drop it.
                    let x = &self.messages[m];
                    self.failed += x.count as u64;
                    let to = self.queue[self.order[x.first]].destination;
                    tracing::debug!(error = %e, destination = %to, "media send");
                    for &i in &self.order[x.first..x.first + x.count] {
                        self.sent[i] = true;
                    }
                    sent += x.count;
                    m += 1;
                }
            }
        };
        let mut i = 0;
        let flags = &self.sent;
        let spare = &mut self.spare;
        self.queue.retain_mut(|t| {
            i += 1;
            if flags[i - 1] {
                spare.push(std::mem::take(&mut t.contents));
            }
            !flags[i - 1]
        });
        result
    }

    /// One `sendmmsg` of `count` messages from `first`, with a
    /// `UDP_SEGMENT` control message of `segment` unless it is 0; returns
    /// how many messages the kernel took.
    fn send_run(
        &mut self,
        fd: RawFd,
        first: usize,
        count: usize,
        segment: u16,
    ) -> nix::Result<usize> {
        let messages = &self.messages[first..first + count];
        // All the run's datagrams in one list, cut into each message's: two
        // allocations a `sendmmsg`, not one per message (per datagram
        // without GSO).
        let flat: Vec<IoSlice<'_>> = messages
            .iter()
            .flat_map(|x| &self.order[x.first..x.first + x.count])
            .map(|&i| IoSlice::new(&self.queue[i].contents))
            .collect();
        let mut at = 0;
        let slices: Vec<&[IoSlice<'_>]> = messages
            .iter()
            .map(|x| {
                at += x.count;
                &flat[at - x.count..at]
            })
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = messages
            .iter()
            .map(|x| {
                Some(SockaddrStorage::from(
                    self.queue[self.order[x.first]].destination,
                ))
            })
            .collect();
        let control = [ControlMessage::UdpGsoSegments(&segment)];
        let (headers, control): (_, &[ControlMessage<'_>]) = if segment > 0 {
            (&mut self.gso, &control)
        } else {
            (&mut self.plain, &[])
        };
        sendmmsg(
            fd,
            headers,
            &slices,
            &addrs,
            control,
            MsgFlags::MSG_DONTWAIT,
        )
        .map(|results| results.count())
    }

    /// Drops what is queued (the socket failed).
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn transmit(to: SocketAddr, payload: &[u8]) -> Transmit {
        Transmit {
            proto: conclave_media::Protocol::Udp,
            source: to,
            destination: to,
            contents: payload.to_vec(),
        }
    }

    #[test]
    fn a_batch_goes_out_in_order_and_comes_back_with_its_sources() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let to = b.local_addr().expect("addr");
        let mut out = SendBatch::new();
        for i in 0..(BATCH as u8 + 5) {
            out.push(transmit(to, &[i; 100]));
        }
        // Two `sendmmsg`s: BATCH, then 5.
        assert_eq!(out.send(a.as_raw_fd()).expect("send"), BATCH + 5);
        assert!(out.is_empty());

        let mut inp = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < BATCH + 5 {
            match inp.recv(b.as_raw_fd()) {
                Ok(_) => seen.extend(inp.datagrams().map(|(from, d)| {
                    assert_eq!(from, a.local_addr().expect("addr"));
                    assert_eq!(d.len(), 100);
                    d[0]
                })),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        let expected: Vec<u8> = (0..BATCH as u8 + 5).collect();
        assert_eq!(seen, expected);
    }

    /// Receives `n` datagrams on `b`, with their sources.
    fn receive(b: &std::net::UdpSocket, n: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut inp = RecvBatch::new();
        let mut seen = Vec::new();
        while seen.len() < n {
            match inp.recv(b.as_raw_fd()) {
                Ok(_) => seen.extend(inp.datagrams().map(|(from, d)| (from, d.to_vec()))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        seen
    }

    #[test]
    fn trains_arrive_as_the_datagrams_they_carry_in_order_per_destination() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind c");
        let (to_b, to_c) = (b.local_addr().expect("b"), c.local_addr().expect("c"));
        let mut out = SendBatch::for_socket(&a);
        // As a forwarding burst queues them: each packet to every
        // subscriber in turn. Equal video packets, a short audio packet, one
        // longer packet that ends a train, and one too big for any train.
        let mut expect_b = Vec::new();
        let mut expect_c = Vec::new();
        let mut sizes = vec![1_200usize; 66];
        sizes.extend([100, 1_200, 1_200, 1_250, 1_200, 1_500, 1_200]);
        for (i, &size) in sizes.iter().enumerate() {
            let mut d = vec![i as u8; size];
            d[0] = (i >> 8) as u8;
            out.push(transmit(to_b, &d));
            expect_b.push(d.clone());
            d[1] = 0xcc;
            out.push(transmit(to_c, &d));
            expect_c.push(d);
        }
        while !out.is_empty() {
            match out.send(a.as_raw_fd()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("send: {e}"),
            }
        }
        assert_eq!(out.failed, 0);
        let from = a.local_addr().expect("a");
        let got_b = receive(&b, sizes.len());
        let got_c = receive(&c, sizes.len());
        assert!(got_b.iter().chain(&got_c).all(|(f, _)| *f == from));
        let got_b: Vec<Vec<u8>> = got_b.into_iter().map(|(_, d)| d).collect();
        let got_c: Vec<Vec<u8>> = got_c.into_iter().map(|(_, d)| d).collect();
        assert_eq!(got_b, expect_b);
        assert_eq!(got_c, expect_c);
        if out.gso() {
            // 66 equal ones: a train of 64 and one of 2 plus the 100-byte
            // one, per destination; then [1200, 1200], [1250, 1200].
            assert_eq!(out.trains, 8, "trains");
            assert_eq!(out.train_datagrams, 2 * (64 + 3 + 2 + 2), "in trains");
        } else {
            assert_eq!(out.trains, 0);
        }
    }

    #[test]
    fn datagrams_above_the_segment_cap_go_alone() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let to = b.local_addr().expect("b");
        let mut out = SendBatch::for_socket(&a);
        if !out.gso() {
            return;
        }
        // As after the kernel refused a 1,001-byte segment.
        out.segment_cap = 1_000;
        for i in 0..4u8 {
            out.push(transmit(to, &[i; 1_200]));
        }
        for i in 4..8u8 {
            out.push(transmit(to, &[i; 800]));
        }
        while !out.is_empty() {
            out.send(a.as_raw_fd()).expect("send");
        }
        assert_eq!((out.trains, out.train_datagrams), (1, 4));
        let got: Vec<u8> = receive(&b, 8).into_iter().map(|(_, d)| d[0]).collect();
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
    }

    #[test]
    fn without_gso_every_datagram_goes_alone() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let to = b.local_addr().expect("b");
        let mut out = SendBatch::new();
        assert!(!out.gso());
        for i in 0..10u8 {
            out.push(transmit(to, &[i; 1_000]));
        }
        while !out.is_empty() {
            out.send(a.as_raw_fd()).expect("send");
        }
        assert_eq!(out.trains, 0);
        let got: Vec<u8> = receive(&b, 10).into_iter().map(|(_, d)| d[0]).collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn nothing_queued_is_would_block_and_oversized_datagrams_are_dropped() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let mut inp = RecvBatch::new();
        let err = inp.recv(b.as_raw_fd()).expect_err("empty socket");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        let to = b.local_addr().expect("addr");
        a.send_to(&[7u8; MAX_DATAGRAM + 10], to).expect("big");
        a.send_to(&[8u8; 10], to).expect("small");
        let mut got = Vec::new();
        while got.is_empty() || inp.dropped == 0 {
            if inp.recv(b.as_raw_fd()).is_ok() {
                got.extend(inp.datagrams().map(|(_, d)| d.to_vec()));
            }
        }
        assert_eq!(got, vec![vec![8u8; 10]]);
        assert_eq!(inp.dropped, 1);
    }

    #[test]
    fn a_refused_destination_is_dropped_without_stalling_the_rest() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let mut out = SendBatch::new();
        // Port 0 is not a valid destination: the kernel refuses it.
        out.push(transmit(SocketAddr::from(([127, 0, 0, 1], 0)), b"bad"));
        out.push(transmit(b.local_addr().expect("addr"), b"good"));
        while !out.is_empty() {
            out.send(a.as_raw_fd()).expect("send");
        }
        assert_eq!(out.failed, 1);
        let mut buf = [0u8; 16];
        let (n, _) = b.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"good");
    }
}
