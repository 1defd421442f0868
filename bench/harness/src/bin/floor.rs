//! The floor: what forwarding one packet cannot avoid, and nothing else.
//!
//! Per incoming packet one AES-128-GCM open (SRTP's AEAD from the publisher),
//! and per subscriber one AES-128-GCM seal (the subscriber's SRTP context)
//! plus its share of a batched UDP send (`sendmmsg`, up to 64 datagrams a
//! call) on loopback to a socket per subscriber. Reports CPU time of the
//! forwarding thread (user + system) per forwarded (outgoing) packet.
//!
//! Two floors, one program:
//!
//! - **busy** (the default): one loop opens, seals and sends as fast as it
//!   can. It never sleeps and never reads a socket (the incoming packet is
//!   a copy in memory), so it pays no wake-up, no receive system call and
//!   no cold cache: the cost of forwarding alone, the lowest any forwarder
//!   can reach, at any rate.
//! - **at a rate** (`--incoming-pps N`): a feeder thread sends the sealed
//!   packet to the forwarder's UDP socket N times a second, evenly spaced;
//!   the forwarding thread blocks in `epoll_wait`, wakes, reads what is
//!   queued with one `recvmmsg`, opens each packet, seals it per subscriber
//!   and sends the lot with one `sendmmsg`, as a server does. At a
//!   meeting's rate (hundreds of packets a second) that is one wake-up per
//!   packet, with the scheduler's wake-up, the receive call and caches gone
//!   cold between packets: what forwarding costs at that rate and cannot
//!   avoid (no timers, no RTCP, no congestion control, no ICE or DTLS).
//!   The feeder's send (and the kernel's delivery into the forwarder's
//!   socket, which runs in the sender's context) is not counted, as a
//!   server's clients' sends are not.
//!
//! Usage: bench-floor [--subscribers 8] [--seconds 5] [--bytes 1200] [--ip 127.0.0.1] [--incoming-pps N]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Datagrams per `sendmmsg` call, at most.
const BATCH: usize = 64;
/// Datagrams per `recvmmsg` call, at most (the server's batch).
const RECV_BATCH: usize = 32;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// The clear header the floor at a rate puts on each packet: an RTP header's
/// size, carrying the packet's counter (its nonce) in its last 8 bytes.
const HEADER: usize = 12;
/// How long the floor at a rate runs before its window opens, so that the
/// first packets (sockets' first allocations, the feeder starting) are not
/// counted.
const WARMUP: Duration = Duration::from_millis(500);

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Sends `bufs[..n]` to `dests[..n]` with as few `sendmmsg` calls as it takes.
fn send_batch(fd: i32, bufs: &mut [Vec<u8>], dests: &[libc::sockaddr_in], n: usize) -> usize {
    let mut iovs: Vec<libc::iovec> = bufs[..n]
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; every pointer set below outlives the call.
    let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_name = (&dests[i] as *const libc::sockaddr_in).cast_mut().cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0;
    while sent < n {
        // SAFETY: msgs[sent..n] are valid headers built above.
        let r = unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (n - sent) as u32, 0) };
        if r <= 0 {
            break;
        }
        sent += r as usize;
    }
    sent
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only");
    };
    // SAFETY: sockaddr_in is plain data.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
    sa
}

fn main() -> std::io::Result<()> {
    let subscribers: usize = arg("--subscribers", 8);
    let seconds: f64 = arg("--seconds", 5.0);
    let bytes: usize = arg("--bytes", 1200);
    let ip: IpAddr = arg("--ip", IpAddr::from([127, 0, 0, 1]));
    let incoming_pps: f64 = arg("--incoming-pps", 0.0);
    if incoming_pps > 0.0 {
        return at_rate(incoming_pps, subscribers, seconds, bytes, ip);
    }

    let sender = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    // Receivers exist so the kernel delivers for real; a thread drains them.
    let receivers: Vec<UdpSocket> = (0..subscribers)
        .map(|_| UdpSocket::bind(SocketAddr::new(ip, 0)))
        .collect::<Result<_, _>>()?;
    let dests: Vec<libc::sockaddr_in> = receivers
        .iter()
        .map(|r| r.local_addr().map(sockaddr))
        .collect::<Result<_, _>>()?;
    for r in &receivers {
        r.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs_f64(seconds + 1.0);
        while Instant::now() < deadline {
            for r in &receivers {
                while r.recv(&mut buf).is_ok() {
                    if Instant::now() > deadline {
                        break;
                    }
                }
            }
        }
    });

    let publisher_key = key(1);
    let subscriber_keys: Vec<LessSafeKey> = (0..subscribers).map(|i| key(2 + i as u8)).collect();
    // The incoming packet, sealed once by the "publisher".
    let payload = bytes.saturating_sub(12 + 16);
    let mut incoming = vec![0x5au8; payload];
    let tag = publisher_key
        .seal_in_place_separate_tag(nonce(0), Aad::from(&[0u8; 12]), &mut incoming)
        .expect("seal");
    incoming.extend_from_slice(tag.as_ref());
    let sealed_incoming = incoming.clone();

    let mut out: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(bytes + 64)).collect();
    let mut out_dests = vec![sockaddr(SocketAddr::from(([127, 0, 0, 1], 9))); BATCH];
    let fd = sender.as_raw_fd();
    let mut forwarded: u64 = 0;
    let mut counter: u64 = 0;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        // One incoming packet: open it.
        incoming.clear();
        incoming.extend_from_slice(&sealed_incoming);
        let plain = publisher_key
            .open_in_place(nonce(0), Aad::from(&[0u8; 12]), &mut incoming)
            .map(|p| p.len())
            .unwrap_or(0);
        counter += 1;
        // Per subscriber: seal and queue; send in batches.
        let mut queued = 0;
        for (i, k) in subscriber_keys.iter().enumerate() {
            let buf = &mut out[queued];
            buf.clear();
            buf.extend_from_slice(&[0x80u8; 12]);
            buf.extend_from_slice(&incoming[..plain]);
            let tag = k
                .seal_in_place_separate_tag(nonce(counter), Aad::from(&[0u8; 12]), &mut buf[12..])
                .expect("seal");
            buf.extend_from_slice(tag.as_ref());
            out_dests[queued] = dests[i];
            queued += 1;
            if queued == BATCH {
                forwarded += send_batch(fd, &mut out, &out_dests, queued) as u64;
                queued = 0;
            }
        }
        if queued > 0 {
            forwarded += send_batch(fd, &mut out, &out_dests, queued) as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let _ = drain.join();
    // The drain thread's receive cost is the clients' share, not the
    // forwarder's: count only this thread's time.
    let _ = cpu;
    let thread_cpu = thread_cpu_seconds();
    let us = thread_cpu * 1e6 / forwarded.max(1) as f64;
    println!(
        "{{\"subscribers\": {subscribers}, \"bytes\": {bytes}, \"forwarded\": {forwarded}, \"seconds\": {elapsed:.2}, \"us_per_packet\": {us:.3}, \"cpu_s_per_1000_packets\": {:.5}}}",
        us / 1000.0
    );
    Ok(())
}

/// CPU time of the calling thread (the forwarding loop), in seconds.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime writes into the struct we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn key(b: u8) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[b; 16]).expect("key"))
}

/// The floor at `pps` incoming packets a second (module docs): a feeder
/// thread sends, this thread waits in `epoll_wait`, reads with `recvmmsg`,
/// opens, seals per subscriber and sends with `sendmmsg`.
fn at_rate(pps: f64, subscribers: usize, seconds: f64, bytes: usize, ip: IpAddr) -> io::Result<()> {
    // One socket receives and sends, as a media worker's does.
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.set_nonblocking(true)?;
    let to = socket.local_addr()?;
    let receivers: Vec<UdpSocket> = (0..subscribers)
        .map(|_| UdpSocket::bind(SocketAddr::new(ip, 0)))
        .collect::<Result<_, _>>()?;
    let dests: Vec<libc::sockaddr_in> = receivers
        .iter()
        .map(|r| r.local_addr().map(sockaddr))
        .collect::<Result<_, _>>()?;
    let window = Duration::from_secs_f64(seconds);
    let run = WARMUP + window + Duration::from_millis(200);
    let drain = std::thread::spawn(move || drain_polled(&receivers, run + Duration::from_secs(1)));
    let feeder = std::thread::spawn(move || feed(to, pps, bytes, run));

    let mut fwd = Forwarder::new(socket, subscribers, bytes, dests)?;
    let start = Instant::now();
    fwd.run_until(start + WARMUP)?;
    fwd.counts = Counts::default();
    let cpu0 = thread_cpu_seconds();
    let opened = Instant::now();
    fwd.run_until(opened + window)?;
    let cpu = thread_cpu_seconds() - cpu0;
    let elapsed = opened.elapsed().as_secs_f64();
    let fed = feeder
        .join()
        .map_err(|_| io::Error::other("feeder panicked"))??;
    let _ = drain.join();
    let c = fwd.counts;
    let us = cpu * 1e6 / c.forwarded.max(1) as f64;
    let us_wake = cpu * 1e6 / c.wakeups.max(1) as f64;
    println!(
        "{{\"mode\": \"at_rate\", \"incoming_pps\": {pps}, \"subscribers\": {subscribers}, \"bytes\": {bytes}, \"fed\": {fed}, \"received\": {}, \"wakeups\": {}, \"forwarded\": {}, \"seconds\": {elapsed:.2}, \"us_per_packet\": {us:.3}, \"us_per_wakeup\": {us_wake:.3}, \"cpu_s_per_1000_packets\": {:.5}}}",
        c.received,
        c.wakeups,
        c.forwarded,
        us / 1000.0
    );
    Ok(())
}

/// The publisher: `pps` sealed packets a second to `to`, evenly spaced, for
/// `run`. Returns how many it sent.
fn feed(to: SocketAddr, pps: f64, bytes: usize, run: Duration) -> io::Result<u64> {
    let out = UdpSocket::bind(SocketAddr::new(to.ip(), 0))?;
    let key = key(1);
    let payload = bytes.saturating_sub(HEADER + 16);
    let mut buf = Vec::with_capacity(bytes + 16);
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < run {
        let due = start + Duration::from_secs_f64(sent as f64 / pps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent += 1;
        buf.clear();
        buf.extend_from_slice(&[0x80, 0x60, 0, 0]);
        buf.extend_from_slice(&sent.to_be_bytes());
        buf.resize(HEADER + payload, 0x5a);
        let (head, body) = buf.split_at_mut(HEADER);
        let tag = key
            .seal_in_place_separate_tag(nonce(sent), Aad::from(&*head), body)
            .expect("seal");
        buf.extend_from_slice(tag.as_ref());
        // A full socket buffer drops the packet, as the network would.
        let _ = out.send_to(&buf, to);
    }
    Ok(sent)
}

/// The subscribers' side: reads every receiver as its datagrams arrive,
/// one thread waiting on all of them in `epoll_wait` (as a client
/// runtime's would), for `run`.
fn drain_polled(receivers: &[UdpSocket], run: Duration) {
    let Ok(ep) = Epoll::new() else { return };
    for (i, r) in receivers.iter().enumerate() {
        if r.set_nonblocking(true).is_err() || ep.add(r.as_raw_fd(), i as u64).is_err() {
            return;
        }
    }
    let deadline = Instant::now() + run;
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    while Instant::now() < deadline {
        let Ok(n) = ep.wait(&mut events, 100) else {
            continue;
        };
        for e in &events[..n] {
            let Some(r) = receivers.get(e.u64 as usize) else {
                continue;
            };
            while r.recv(&mut buf).is_ok() {}
        }
    }
}

/// An epoll instance, closed on drop.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the descriptor is owned by the result.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    /// Watches `fd` for reading, level-triggered, as `token`.
    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` outlives the call.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `ms` for readiness; returns how many of `events` are set.
    fn wait(&self, events: &mut [libc::epoll_event], ms: i32) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `events.len()` entries.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// What the forwarding thread did in a window.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    wakeups: u64,
    received: u64,
    forwarded: u64,
}

/// The forwarding thread of the floor at a rate: its socket, keys and
/// reused buffers (the receive headers point into the boxed buffers, which
/// never move).
struct Forwarder {
    socket: UdpSocket,
    ep: Epoll,
    publisher_key: LessSafeKey,
    subscriber_keys: Vec<LessSafeKey>,
    dests: Vec<libc::sockaddr_in>,
    bufs: Box<[[u8; MAX_DATAGRAM]; RECV_BATCH]>,
    names: Box<[libc::sockaddr_storage; RECV_BATCH]>,
    iovs: Box<[libc::iovec; RECV_BATCH]>,
    msgs: Box<[libc::mmsghdr; RECV_BATCH]>,
    out: Vec<Vec<u8>>,
    out_dests: Vec<libc::sockaddr_in>,
    counts: Counts,
}

impl Forwarder {
    fn new(
        socket: UdpSocket,
        subscribers: usize,
        bytes: usize,
        dests: Vec<libc::sockaddr_in>,
    ) -> io::Result<Self> {
        let ep = Epoll::new()?;
        ep.add(socket.as_raw_fd(), 0)?;
        // SAFETY (all three): plain data, filled in below.
        let mut fwd = Forwarder {
            socket,
            ep,
            publisher_key: key(1),
            subscriber_keys: (0..subscribers).map(|i| key(2 + i as u8)).collect(),
            dests,
            bufs: Box::new([[0u8; MAX_DATAGRAM]; RECV_BATCH]),
            names: Box::new(unsafe { std::mem::zeroed() }),
            iovs: Box::new(unsafe { std::mem::zeroed() }),
            msgs: Box::new(unsafe { std::mem::zeroed() }),
            out: (0..BATCH).map(|_| Vec::with_capacity(bytes + 64)).collect(),
            out_dests: vec![sockaddr(SocketAddr::from(([127, 0, 0, 1], 9))); BATCH],
            counts: Counts::default(),
        };
        for i in 0..RECV_BATCH {
            fwd.iovs[i] = libc::iovec {
                iov_base: fwd.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut fwd.msgs[i].msg_hdr;
            h.msg_name = (&mut fwd.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut fwd.iovs[i];
            h.msg_iovlen = 1;
        }
        Ok(fwd)
    }

    /// Reads what is queued with one `recvmmsg`; returns how many datagrams.
    fn recv(&mut self) -> io::Result<usize> {
        for m in self.msgs.iter_mut() {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            m.msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Waits for datagrams and forwards them until `deadline`.
    fn run_until(&mut self, deadline: Instant) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            // Milliseconds, rounded up, as a runtime's timer would wait.
            let ms = (deadline - now)
                .as_micros()
                .div_ceil(1000)
                .min(i32::MAX as u128) as i32;
            match self.ep.wait(&mut events, ms) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.counts.wakeups += 1;
            let got = self.recv()?;
            self.counts.received += got as u64;
            let mut queued = 0;
            for i in 0..got {
                let len = (self.msgs[i].msg_len as usize).min(MAX_DATAGRAM);
                let buf = &mut self.bufs[i][..len];
                if len < HEADER + 16 {
                    continue;
                }
                let mut counter = [0u8; 8];
                counter.copy_from_slice(&buf[4..HEADER]);
                let counter = u64::from_be_bytes(counter);
                let (head, body) = buf.split_at_mut(HEADER);
                let Ok(plain) =
                    self.publisher_key
                        .open_in_place(nonce(counter), Aad::from(&*head), body)
                else {
                    continue;
                };
                let plain = &*plain;
                for (s, k) in self.subscriber_keys.iter().enumerate() {
                    let o = &mut self.out[queued];
                    o.clear();
                    o.extend_from_slice(head);
                    o.extend_from_slice(plain);
                    let (h, b) = o.split_at_mut(HEADER);
                    let tag = k
                        .seal_in_place_separate_tag(nonce(counter), Aad::from(&*h), b)
                        .expect("seal");
                    o.extend_from_slice(tag.as_ref());
                    self.out_dests[queued] = self.dests[s];
                    queued += 1;
                    if queued == BATCH {
                        self.counts.forwarded +=
                            send_batch(fd, &mut self.out, &self.out_dests, queued) as u64;
                        queued = 0;
                    }
                }
            }
            if queued > 0 {
                self.counts.forwarded +=
                    send_batch(fd, &mut self.out, &self.out_dests, queued) as u64;
            }
        }
    }
}
