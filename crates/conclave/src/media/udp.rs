//! Batched UDP for the media workers: one `recvmmsg` reads up to [`BATCH`]
//! datagrams and one `sendmmsg` sends up to [`BATCH`], so a burst of
//! forwarded packets costs one system call instead of one per packet. The
//! receive buffers and the message headers are allocated once per worker.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use conclave_media::Transmit;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams per system call. Large enough to amortise the call over a
/// forwarding burst; small enough that the first packet of a batch does not
/// wait long for the last one to be processed.
pub const BATCH: usize = 32;
/// Largest datagram read; longer ones are truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 2048;
const NOTHING: &[u8] = &[];

/// Receive side: reused buffers and headers.
pub struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Source and length of each datagram of the last batch, by buffer
    /// index; `None` for one that was dropped.
    got: Vec<Option<(SocketAddr, usize)>>,
    /// Datagrams dropped for being truncated or from a non-IP source.
    pub dropped: u64,
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: Box::new([[0u8; MAX_DATAGRAM]; BATCH]),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
            dropped: 0,
        }
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
        for r in results {
            let source = r.address.as_ref().and_then(socket_addr);
            let datagram = source
                .filter(|_| !r.flags.contains(MsgFlags::MSG_TRUNC))
                .map(|s| (s, r.bytes.min(MAX_DATAGRAM)));
            self.dropped += u64::from(datagram.is_none());
            self.got.push(datagram);
        }
        Ok(self.got.len())
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(self.bufs.iter())
            .filter_map(|(got, buf)| got.map(|(from, len)| (from, &buf[..len])))
    }
}

/// Send side: datagrams waiting for the next `sendmmsg`, and reused headers.
pub struct SendBatch {
    queue: Vec<Transmit>,
    addrs: Vec<Option<SockaddrStorage>>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Datagrams the kernel refused (other than "try again").
    pub failed: u64,
}

impl SendBatch {
    pub fn new() -> Self {
        SendBatch {
            queue: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
            failed: 0,
        }
    }

    pub fn push(&mut self, t: Transmit) {
        self.addrs.push(Some(SockaddrStorage::from(t.destination)));
        self.queue.push(t);
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends as much of the batch as the kernel takes in one `sendmmsg`
    /// (`WouldBlock` when its buffer is full) and forgets what was sent. A
    /// datagram the kernel refuses outright is dropped and counted, so one
    /// bad destination cannot stall the others.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.queue.len().min(BATCH);
        let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            [IoSlice::new(
                self.queue.get(i).map_or(NOTHING, |t| &t.contents),
            )]
        });
        let no_control: [ControlMessage<'_>; 0] = [];
        let sent = match sendmmsg(
            fd,
            &mut self.headers,
            slices[..n].iter(),
            &self.addrs[..n],
            no_control,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => results.count(),
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(e) => {
                // The first datagram itself was refused: drop it.
                self.failed += 1;
                tracing::debug!(error = %e, destination = %self.queue[0].destination, "media send");
                1
            }
        };
        self.queue.drain(..sent);
        self.addrs.drain(..sent);
        Ok(sent)
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.addrs.clear();
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
            if out.is_full() {
                assert_eq!(out.send(a.as_raw_fd()).expect("send"), BATCH);
            }
        }
        assert_eq!(out.send(a.as_raw_fd()).expect("send rest"), 5);
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
