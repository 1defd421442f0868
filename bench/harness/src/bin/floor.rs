//! The floor: what forwarding one packet cannot avoid, and nothing else.
//!
//! Per incoming packet one AES-128-GCM open (SRTP's AEAD from the publisher),
//! and per subscriber one AES-128-GCM seal (the subscriber's SRTP context)
//! plus its share of a batched UDP send (`sendmmsg`, up to 64 datagrams a
//! call) on loopback to a socket per subscriber. Reports CPU time (this
//! process, user + system) per forwarded (outgoing) packet.
//!
//! Usage: bench-floor [--subscribers 8] [--seconds 5] [--bytes 1200] [--ip 127.0.0.1]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Datagrams per `sendmmsg` call, at most.
const BATCH: usize = 64;

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

    let key = |b: u8| LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[b; 16]).expect("key"));
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
