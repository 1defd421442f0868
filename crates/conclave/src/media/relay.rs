//! The hand-off between the media workers serving one spread meeting
//! (issue 23): each worker has one bounded queue in, and every worker can
//! send on it. What goes through is a batch of one meeting's
//! [`Relayed`] messages (mostly SRTP-unprotected RTP packets), gathered
//! after each turn of the sending worker's loop, so the queue costs one
//! atomic hand-over per batch, not per packet, and no lock. A full queue
//! drops the batch (the receiving worker is overloaded; its subscribers see
//! loss, repaired like network loss by their NACKs if it is short).
//!
//! A shard on another node (cascading) has an index past the workers'
//! ([`super::link::RemoteSlot::shard`]): its batches go to the node's media
//! link ([`super::link`]) on one more queue, shared by the workers, and
//! what it sends comes into the workers' queues like another worker's.

use std::collections::HashMap;

use conclave_media::relay::Relayed;
use conclave_proto::MeetingId;
use tokio::sync::mpsc;

use super::MAX_WORKERS;

/// Batches queued for one worker before the newest are dropped: at one
/// batch per loop turn of each sender, over a second of a worker's work.
const RELAY_QUEUE: usize = 4096;
/// Batches queued for the media link (all workers' to other nodes).
const REMOTE_QUEUE: usize = 8192;

/// Hand-off messages of one meeting, from one worker to another.
pub struct RelayBatch {
    /// The sending worker.
    pub from: usize,
    pub meeting: MeetingId,
    pub items: Vec<Relayed>,
}

pub fn channel() -> (mpsc::Sender<RelayBatch>, mpsc::Receiver<RelayBatch>) {
    mpsc::channel(RELAY_QUEUE)
}

/// A batch for the meeting's shards on another node: `to` are their
/// indices ([`super::link::RemoteSlot::shard`]), all of one node, so the
/// batch crosses the link once for all of them.
pub struct RemoteBatch {
    pub to: Vec<usize>,
    pub batch: RelayBatch,
}

/// What the media link needs of the workers: the queue their batches for
/// other nodes come on, and each worker's queue in, to deliver to.
pub struct LinkEnds {
    pub outgoing: mpsc::Receiver<RemoteBatch>,
    pub workers: Vec<mpsc::Sender<RelayBatch>>,
}

/// The workers' shared queue to the media link, and its ends for the link.
pub fn remote(workers: Vec<mpsc::Sender<RelayBatch>>) -> (mpsc::Sender<RemoteBatch>, LinkEnds) {
    let (tx, outgoing) = mpsc::channel(REMOTE_QUEUE);
    (tx, LinkEnds { outgoing, workers })
}

fn is_remote(index: usize) -> bool {
    index >= MAX_WORKERS
}

/// Where a meeting's batches go from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Worker(usize),
    /// The shards on one other node.
    Node(Vec<usize>),
}

/// One worker's ends of the hand-off.
pub struct Relays {
    index: usize,
    pub rx: mpsc::Receiver<RelayBatch>,
    /// Every worker's queue, by index (this worker's own included, unused).
    txs: Vec<mpsc::Sender<RelayBatch>>,
    /// The media link's queue, for shards on other nodes.
    remote: Option<mpsc::Sender<RemoteBatch>>,
    /// The other shards of each spread meeting here: workers, and nodes.
    others: HashMap<MeetingId, Vec<Target>>,
    /// Batches dropped on a full queue.
    pub dropped: u64,
}

impl Relays {
    pub fn new(
        index: usize,
        rx: mpsc::Receiver<RelayBatch>,
        txs: Vec<mpsc::Sender<RelayBatch>>,
    ) -> Self {
        Relays {
            index,
            rx,
            txs,
            remote: None,
            others: HashMap::new(),
            dropped: 0,
        }
    }

    /// Shards on other nodes are reached through `link`.
    pub fn remote(mut self, link: mpsc::Sender<RemoteBatch>) -> Self {
        self.remote = Some(link);
        self
    }

    /// A worker with neither (tests): nothing goes anywhere.
    pub fn none() -> Self {
        let (_, rx) = channel();
        Relays::new(0, rx, Vec::new())
    }

    /// The meeting's shards are on `workers` now (indices past
    /// [`MAX_WORKERS`] on other nodes); returns whether any is another
    /// worker's or node's.
    pub fn set_shards(&mut self, meeting: MeetingId, workers: &[usize]) -> bool {
        let mut others: Vec<Target> = Vec::new();
        for &w in workers {
            if is_remote(w) {
                let node = w / MAX_WORKERS;
                match others
                    .iter_mut()
                    .find(|t| matches!(t, Target::Node(ws) if ws[0] / MAX_WORKERS == node))
                {
                    Some(Target::Node(ws)) => ws.push(w),
                    _ => others.push(Target::Node(vec![w])),
                }
            } else if w != self.index && w < self.txs.len() {
                others.push(Target::Worker(w));
            }
        }
        let any = !others.is_empty();
        self.others.insert(meeting, others);
        any
    }

    pub fn forget(&mut self, meeting: MeetingId) {
        self.others.remove(&meeting);
    }

    /// Sends `items` (emptied) to the meeting's other shards.
    pub fn send(&mut self, meeting: MeetingId, items: &mut Vec<Relayed>) {
        if items.is_empty() {
            return;
        }
        let Some(others) = self.others.get(&meeting).filter(|o| !o.is_empty()) else {
            items.clear();
            return;
        };
        let last = others.len() - 1;
        for (i, target) in others.iter().enumerate() {
            let batch = if i == last {
                std::mem::take(items)
            } else {
                items.clone()
            };
            let batch = RelayBatch {
                from: self.index,
                meeting,
                items: batch,
            };
            use mpsc::error::TrySendError::Full;
            // A closed queue (a worker or the link stopping) drops quietly.
            let full = match target {
                Target::Node(to) => self.remote.as_ref().is_some_and(|l| {
                    let to = to.clone();
                    matches!(l.try_send(RemoteBatch { to, batch }), Err(Full(_)))
                }),
                Target::Worker(w) => matches!(self.txs[*w].try_send(batch), Err(Full(_))),
            };
            if full {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        to = ?target,
                        dropped = self.dropped,
                        "media hand-off queue full; batch dropped"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_on_one_other_node_get_one_batch_and_workers_one_each() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| channel()).unzip();
        let (to_link, mut ends) = remote(txs.clone());
        let mut relays = Relays::new(0, rxs.remove(0), txs).remote(to_link);
        let meeting = MeetingId::generate();
        let node = |n: usize, w: usize| MAX_WORKERS + n * MAX_WORKERS + w;
        // Itself and a worker past the last are left out.
        assert!(relays.set_shards(meeting, &[0, 2, 7, node(0, 1), node(1, 0), node(0, 3)]));
        relays.send(meeting, &mut vec![Relayed::Hello]);
        assert!(rxs[0].try_recv().is_err());
        assert_eq!(
            rxs[1].try_recv().map(|b| (b.from, b.items.len())).ok(),
            Some((0, 1))
        );
        let mut to: Vec<Vec<usize>> = std::iter::from_fn(|| ends.outgoing.try_recv().ok())
            .map(|b| b.to)
            .collect();
        to.sort();
        assert_eq!(to, vec![vec![node(0, 1), node(0, 3)], vec![node(1, 0)]]);
        assert!(!relays.set_shards(meeting, &[0]));
    }
}
