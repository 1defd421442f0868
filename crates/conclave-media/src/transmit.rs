//! Datagrams the router wants sent, and the bounded queue that holds them.
//!
//! The I/O driver drains the queue with [`crate::Router::poll_transmit`] after
//! every input. The bound only matters if a driver stops draining: then the
//! router drops (and counts) new datagrams instead of growing without limit.
//!
//! The queue also keeps spare buffers: the fast path seals each forwarded
//! datagram into one taken from here ([`TransmitQueue::buffer`]), and a
//! driver that hands a sent datagram's buffer back
//! ([`crate::Router::recycle`]) lets steady forwarding run without a heap
//! allocation per datagram (which was a `calloc` per subscriber per packet).

use std::collections::VecDeque;
use std::net::SocketAddr;

use str0m::net::Protocol;

/// Default bound of the transmit queue, in datagrams.
pub const DEFAULT_MAX_QUEUED_TRANSMITS: usize = 16 * 1024;

/// One packet to send: a UDP datagram, or one RFC 4571 frame on the TCP
/// connection between `source` and `destination`.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The transport of the candidate pair str0m chose: the driver must not
    /// send a TCP peer's packet as a datagram (its address is a TCP port).
    pub proto: Protocol,
    /// The local address to send from (one of the router's candidates).
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents are ciphertext and of no use in a log; the size is.
        f.debug_struct("Transmit")
            .field("proto", &self.proto)
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("len", &self.contents.len())
            .finish()
    }
}

/// Spare buffers kept at most: about what one flush of a busy meeting
/// sends. More would only hold memory a quiet meeting does not need.
const MAX_SPARE: usize = 1_024;

/// The capacity a new buffer gets, and the least a handed-back one must
/// have to be kept: a whole datagram, so that a reused buffer never grows
/// (a smaller one, str0m's STUN or RTCP, is dropped instead).
const BUFFER_CAPACITY: usize = 1_500;

#[derive(Debug)]
pub(crate) struct TransmitQueue {
    queue: VecDeque<Transmit>,
    max: usize,
    pub(crate) dropped: u64,
    /// Buffers of sent datagrams, for the next ones sealed.
    spare: Vec<Vec<u8>>,
}

impl TransmitQueue {
    pub(crate) fn new(max: usize) -> Self {
        TransmitQueue {
            queue: VecDeque::new(),
            max: max.max(1),
            dropped: 0,
            spare: Vec::new(),
        }
    }

    /// Queues `t`; false if the queue was full and `t` was dropped.
    pub(crate) fn push(&mut self, t: Transmit) -> bool {
        if self.queue.len() >= self.max {
            self.dropped += 1;
            self.recycle(t.contents);
            return false;
        }
        self.queue.push_back(t);
        true
    }

    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// A buffer of `len` zero bytes to seal a datagram into: a spare one
    /// if there is one, else a new one with room for a whole datagram.
    pub(crate) fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(len.max(BUFFER_CAPACITY)));
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// Keeps `buf`, a sent datagram's, for [`TransmitQueue::buffer`]; drops
    /// it if small or if enough are kept.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= BUFFER_CAPACITY && self.spare.len() < MAX_SPARE {
            self.spare.push(buf);
        }
    }

    /// Spare buffers kept now.
    #[cfg(test)]
    pub(crate) fn spare(&self) -> usize {
        self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{BUFFER_CAPACITY, MAX_SPARE, Transmit, TransmitQueue};

    fn transmit(contents: Vec<u8>) -> Transmit {
        let addr = "127.0.0.1:1".parse().expect("address");
        Transmit {
            proto: str0m::net::Protocol::Udp,
            source: addr,
            destination: addr,
            contents,
        }
    }

    /// A handed-back buffer is the next one given out, zeroed to the
    /// length asked: no byte of the datagram it carried is sealed over
    /// unseen, and no allocation is made for it.
    #[test]
    fn a_recycled_buffer_is_given_out_again_zeroed_to_the_length_asked() {
        let mut q = TransmitQueue::new(4);
        let mut first = q.buffer(1_200);
        assert_eq!(first.len(), 1_200);
        assert!(first.capacity() >= BUFFER_CAPACITY);
        first.fill(0xaa);
        let at = first.as_ptr();
        q.recycle(first);
        assert_eq!(q.spare(), 1);
        let again = q.buffer(300);
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert_eq!(again, vec![0u8; 300]);
        assert_eq!(q.spare(), 0);
    }

    #[test]
    fn small_buffers_and_those_beyond_the_bound_are_dropped() {
        let mut q = TransmitQueue::new(4);
        q.recycle(vec![0u8; 100]);
        assert_eq!(q.spare(), 0, "smaller than a datagram: it would grow");
        for _ in 0..MAX_SPARE + 10 {
            q.recycle(Vec::with_capacity(BUFFER_CAPACITY));
        }
        assert_eq!(q.spare(), MAX_SPARE);
    }

    /// A datagram the full queue drops gives its buffer back.
    #[test]
    fn a_dropped_datagram_leaves_its_buffer_spare() {
        let mut q = TransmitQueue::new(1);
        let a = q.buffer(10);
        let b = q.buffer(10);
        assert!(q.push(transmit(a)));
        assert!(!q.push(transmit(b)));
        assert_eq!((q.dropped, q.spare()), (1, 1));
    }
}
