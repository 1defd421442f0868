//! Datagrams the router wants sent, and the bounded queue that holds them.
//!
//! The I/O driver drains the queue with [`crate::Router::poll_transmit`] after
//! every input. The bound only matters if a driver stops draining: then the
//! router drops (and counts) new datagrams instead of growing without limit.

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

#[derive(Debug)]
pub(crate) struct TransmitQueue {
    queue: VecDeque<Transmit>,
    max: usize,
    pub(crate) dropped: u64,
}

impl TransmitQueue {
    pub(crate) fn new(max: usize) -> Self {
        TransmitQueue {
            queue: VecDeque::new(),
            max: max.max(1),
            dropped: 0,
        }
    }

    /// Queues `t`; false if the queue was full and `t` was dropped.
    pub(crate) fn push(&mut self, t: Transmit) -> bool {
        if self.queue.len() >= self.max {
            self.dropped += 1;
            return false;
        }
        self.queue.push_back(t);
        true
    }

    pub(crate) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }
}
