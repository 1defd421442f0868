//! Two link endpoints on 127.0.0.1 with real sockets, a lossy UDP proxy
//! between them in one direction, and an attacker who replays, tampers
//! and forges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use conclave_media::relay::MediaPacket;
use conclave_media::{MediaKind, Mid, PeerId};
use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::{RtpHeader, SeqNo};

use super::*;
use crate::media::relay::{self, RelayBatch};

const SECRET: &str = "a cluster secret of at least 32 characters";

/// One node's link, with its workers' queues held by the test.
struct Node {
    links: Arc<MediaLinks>,
    /// What the link delivered to each of this node's two workers.
    workers: Vec<mpsc::Receiver<RelayBatch>>,
    /// Where this node's workers hand batches for other nodes.
    to_link: mpsc::Sender<RemoteBatch>,
}

async fn node(id: &str, secret: &str, shutdown: &CancellationToken) -> Node {
    let (txs, workers): (Vec<_>, Vec<_>) = (0..2).map(|_| relay::channel()).unzip();
    let (to_link, ends) = relay::remote(txs);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let links = MediaLinks::start(addr, id.into(), secret, ends, shutdown.clone())
        .await
        .unwrap();
    Node {
        links,
        workers,
        to_link,
    }
}

/// A UDP proxy that drops every `nth` datagram (and every one while
/// `muted`: an outage) and keeps the last one it forwarded, for the
/// attacker.
struct Proxy {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    last: Arc<Mutex<Vec<u8>>>,
    muted: Arc<AtomicBool>,
}

async fn proxy(to: SocketAddr, nth: u64, shutdown: CancellationToken) -> Proxy {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(Vec::new()));
    let muted = Arc::new(AtomicBool::new(false));
    let (d, l, m) = (dropped.clone(), last.clone(), muted.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0u64;
        loop {
            let got = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = socket.recv_from(&mut buf) => r,
            };
            let Ok((len, _)) = got else { continue };
            n += 1;
            if n.is_multiple_of(nth) || m.load(Ordering::Relaxed) {
                d.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            *l.lock().unwrap() = buf[..len].to_vec();
            let _ = socket.send_to(&buf[..len], to).await;
        }
    });
    Proxy {
        addr,
        dropped,
        last,
        muted,
    }
}

fn vp8() -> PayloadParams {
    let spec = CodecSpec {
        codec: Codec::Vp8,
        clock_rate: Frequency::NINETY_KHZ,
        channels: None,
        format: FormatParams::default(),
    };
    PayloadParams::new(Pt::from(96), None, spec)
}

fn track() -> TrackId {
    TrackId {
        publisher: PeerId(42),
        mid: Mid::from("1"),
    }
}

fn rtp(seq: u64) -> Relayed {
    Relayed::Rtp {
        track: track(),
        rid: None,
        params: vp8(),
        packet: MediaPacket {
            seq_no: SeqNo::from(seq),
            header: RtpHeader {
                payload_type: Pt::from(96),
                sequence_number: seq as u16,
                timestamp: seq as u32 * 3000,
                ssrc: 7.into(),
                ..Default::default()
            },
            payload: Arc::from(payload(seq)),
            timestamp: Instant::now(),
        },
    }
}

/// Stands for SFrame ciphertext: the link must carry it unchanged.
fn payload(seq: u64) -> Vec<u8> {
    (0..900).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// Receives until `want` packets arrived on `rx` (or the time is up);
/// returns their sequence numbers, and checks each batch's sender and
/// meeting and each payload.
async fn receive(
    rx: &mut mpsc::Receiver<RelayBatch>,
    want: usize,
    from: usize,
    meeting: MeetingId,
) -> (Vec<u64>, Vec<Relayed>) {
    let mut seqs = Vec::new();
    let mut other = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seqs.len() < want {
        let Ok(Some(batch)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        assert_eq!(batch.from, from);
        assert_eq!(batch.meeting, meeting);
        for item in batch.items {
            match item {
                Relayed::Rtp { packet, params, .. } => {
                    assert_eq!(params, vp8());
                    assert_eq!(&packet.payload[..], &payload(*packet.seq_no)[..]);
                    seqs.push(*packet.seq_no);
                }
                other_item => other.push(other_item),
            }
        }
    }
    (seqs, other)
}

#[tokio::test]
async fn two_nodes_carry_packets_both_ways_repair_loss_and_refuse_an_attacker() {
    let shutdown = CancellationToken::new();
    let mut a = node("node-a", SECRET, &shutdown).await;
    let mut b = node("node-b", SECRET, &shutdown).await;
    // a's datagrams to b lose one in 6 on the way.
    let lossy = proxy(b.links.local_addr(), 6, shutdown.clone()).await;
    let b_at_a = a.links.connect("node-b", lossy.addr);
    let a_at_b = b.links.connect("node-a", a.links.local_addr());
    assert_eq!(a.links.connect("node-b", lossy.addr), b_at_a);
    let meeting = MeetingId::generate();

    // a's worker 0 hands its shard's packets to the meeting's shards on
    // b's workers 0 and 1, one batch per packet, as a worker loop would.
    let mut first = vec![Relayed::Published {
        track: track(),
        kind: MediaKind::Video,
        rids: vec![None],
    }];
    first.push(rtp(0));
    let batches = std::iter::once(first).chain((1..300).map(|s| vec![rtp(s)]));
    for items in batches {
        let batch = RelayBatch {
            from: 0,
            meeting,
            items,
        };
        let to = vec![b_at_a.shard(0), b_at_a.shard(1)];
        a.to_link.send(RemoteBatch { to, batch }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for w in 0..2 {
        let (mut seqs, other) = receive(&mut b.workers[w], 300, a_at_b.shard(0), meeting).await;
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..300).collect::<Vec<_>>(),
            "worker {w}: each packet once"
        );
        assert!(matches!(other[..], [Relayed::Published { .. }]));
    }
    assert!(lossy.dropped.load(Ordering::Relaxed) > 20);
    let at_b = b.links.stats(a_at_b).await.unwrap();
    let at_a = a.links.stats(b_at_a).await.unwrap();
    assert!(at_b.repaired > 20, "{at_b:?}");
    // Each datagram carried the packet for both of b's shards: it crossed
    // once (plus resends of what was lost), not twice.
    assert!(at_a.sent < 300 + at_a.resent + 60, "{at_a:?}");
    assert_eq!(at_b.forged, 0);

    // The other way, straight: a key frame request and packets back.
    let back = RelayBatch {
        from: 1,
        meeting,
        items: vec![
            Relayed::KeyFrame {
                track: track(),
                rid: None,
            },
            rtp(1000),
            rtp(1001),
        ],
    };
    b.to_link
        .send(RemoteBatch {
            to: vec![a_at_b.shard(0)],
            batch: back,
        })
        .await
        .unwrap();
    let (seqs, other) = receive(&mut a.workers[0], 2, b_at_a.shard(1), meeting).await;
    assert_eq!(seqs, vec![1000, 1001]);
    assert!(matches!(other[..], [Relayed::KeyFrame { .. }]));

    // The attacker saw a's datagrams on the wire: replayed, tampered
    // (a fresh sequence number, and a byte flipped here and there), or
    // with its sender named wrongly, they are counted and delivered
    // nowhere.
    let seen = lossy.last.lock().unwrap().clone();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to_b = b.links.local_addr();
    attacker.send_to(&seen, to_b).await.unwrap();
    for (n, i) in [None, Some(30), Some(seen.len() / 2), Some(seen.len() - 1)]
        .into_iter()
        .enumerate()
    {
        let mut d = seen.clone();
        d[17..25].copy_from_slice(&(1u64 << 40 | n as u64).to_be_bytes());
        if let Some(i) = i {
            d[i] ^= 0x40;
        }
        attacker.send_to(&d, to_b).await.unwrap();
    }
    for i in [0, 5] {
        let mut d = seen.clone();
        d[i] ^= 0x40;
        attacker.send_to(&d, to_b).await.unwrap();
    }
    let stranger = node("node-a", "not the secret, though long enough", &shutdown).await;
    let b_at_stranger = stranger.links.connect("node-b", to_b);
    let forged = RelayBatch {
        from: 0,
        meeting,
        items: vec![rtp(666)],
    };
    stranger
        .to_link
        .send(RemoteBatch {
            to: vec![b_at_stranger.shard(0)],
            batch: forged,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_b = b.links.stats(a_at_b).await.unwrap();
    let socket = b.links.socket_stats().await.unwrap();
    assert!(at_b.replayed >= 1, "{at_b:?}");
    assert!(at_b.forged >= 4, "{at_b:?}");
    // Two flips of the clear header, and the stranger's datagrams.
    assert!(socket.unknown_sender >= 3, "{socket:?}");
    for w in 0..2 {
        assert!(b.workers[w].try_recv().is_err(), "nothing delivered");
    }
    shutdown.cancel();
}

/// A node whose link falls silent (its process died: nothing more comes
/// from it, not even keepalives) is declared gone once the silence timeout
/// passes, and the tracks it announced end on this node's shards there and
/// then, as if their publishers had left, without waiting for the control
/// channel to notice.
#[tokio::test]
async fn a_silent_node_is_gone_and_the_tracks_it_announced_end_on_the_shards() {
    let shutdown = CancellationToken::new();
    let a_alive = CancellationToken::new();
    let a = node("node-a", SECRET, &a_alive).await;
    let mut b = node("node-b", SECRET, &shutdown).await;
    let mut events = b.links.events().expect("events, once");
    let b_at_a = a.links.connect("node-b", b.links.local_addr());
    let a_at_b = b.links.connect("node-a", a.links.local_addr());
    let meeting = MeetingId::generate();
    let announce = RelayBatch {
        from: 0,
        meeting,
        items: vec![
            Relayed::Published {
                track: track(),
                kind: MediaKind::Video,
                rids: vec![None],
            },
            rtp(0),
        ],
    };
    a.to_link
        .send(RemoteBatch {
            to: vec![b_at_a.shard(0), b_at_a.shard(1)],
            batch: announce,
        })
        .await
        .unwrap();
    for w in 0..2 {
        let (seqs, other) = receive(&mut b.workers[w], 1, a_at_b.shard(0), meeting).await;
        assert_eq!(seqs, vec![0], "worker {w}");
        assert!(
            matches!(other[..], [Relayed::Published { .. }]),
            "worker {w}"
        );
    }

    // node-a stops dead; node-b is told it is gone after the silence.
    let stopped = Instant::now();
    a_alive.cancel();
    let event = tokio::time::timeout(SILENCE * 2, events.recv())
        .await
        .expect("node-a declared gone within twice the silence timeout")
        .expect("an event");
    match event {
        PeerEvent::Gone { node, slot } => {
            assert_eq!(node, "node-a");
            assert_eq!(slot, a_at_b);
        }
        other => panic!("{other:?}, not gone"),
    }
    // Not before: it was heard until it stopped (keepalives every 0.5 s).
    assert!(stopped.elapsed() >= SILENCE - Duration::from_secs(1));
    // Both shards that were given node-a's track are told it ended.
    for w in 0..2 {
        let batch = tokio::time::timeout(Duration::from_secs(2), b.workers[w].recv())
            .await
            .expect("the track withdrawn")
            .expect("a batch");
        assert_eq!(batch.meeting, meeting);
        assert!(
            matches!(batch.items[..], [Relayed::Unpublished { track: t }] if t == track()),
            "worker {w}: {:?}",
            batch.items.len()
        );
    }
    shutdown.cancel();
}

/// A UDP-only outage past the silence timeout, the control channel up
/// throughout (so nobody rejoins): node-b ends node-a's tracks, as above;
/// when node-a is heard again, node-b asks node-a's shard that had
/// announced them to announce its tracks again (`Hello`, which a router
/// answers with its `Published` tracks), and once it does, its packets
/// reach node-b's shards again.
#[tokio::test]
async fn a_silent_node_heard_again_is_asked_for_its_tracks_and_they_flow_again() {
    let shutdown = CancellationToken::new();
    let mut a = node("node-a", SECRET, &shutdown).await;
    let mut b = node("node-b", SECRET, &shutdown).await;
    let mut events = b.links.events().expect("events, once");
    // node-a's datagrams to node-b go through a proxy that can go quiet.
    let a_to_b = proxy(b.links.local_addr(), u64::MAX, shutdown.clone()).await;
    let b_at_a = a.links.connect("node-b", a_to_b.addr);
    let a_at_b = b.links.connect("node-a", a.links.local_addr());
    let meeting = MeetingId::generate();
    // node-a's worker 1 holds the meeting's publisher.
    let announce = |seq| RemoteBatch {
        to: vec![b_at_a.shard(0), b_at_a.shard(1)],
        batch: RelayBatch {
            from: 1,
            meeting,
            items: vec![
                Relayed::Published {
                    track: track(),
                    kind: MediaKind::Video,
                    rids: vec![None],
                },
                rtp(seq),
            ],
        },
    };
    a.to_link.send(announce(0)).await.unwrap();
    for w in 0..2 {
        let (seqs, _) = receive(&mut b.workers[w], 1, a_at_b.shard(1), meeting).await;
        assert_eq!(seqs, vec![0], "worker {w}");
    }

    // The outage: nothing of node-a reaches node-b.
    a_to_b.muted.store(true, Ordering::Relaxed);
    let event = tokio::time::timeout(SILENCE * 2, events.recv())
        .await
        .expect("node-a declared gone")
        .expect("an event");
    assert_eq!(
        event,
        PeerEvent::Gone {
            node: "node-a".into(),
            slot: a_at_b
        }
    );
    for w in 0..2 {
        let batch = tokio::time::timeout(Duration::from_secs(2), b.workers[w].recv())
            .await
            .expect("the track withdrawn")
            .expect("a batch");
        assert!(
            matches!(batch.items[..], [Relayed::Unpublished { track: t }] if t == track()),
            "worker {w}"
        );
    }

    // node-a is heard again.
    a_to_b.muted.store(false, Ordering::Relaxed);
    let event = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("node-a heard again")
        .expect("an event");
    assert_eq!(
        event,
        PeerEvent::Back {
            node: "node-a".into(),
            slot: a_at_b
        }
    );
    // node-a's worker 1, whose track ended on node-b, is greeted by one of
    // node-b's shards of the meeting.
    let hello = tokio::time::timeout(Duration::from_secs(3), a.workers[1].recv())
        .await
        .expect("node-b asks node-a's shard for its tracks again")
        .expect("a batch");
    assert_eq!(hello.meeting, meeting);
    assert!(matches!(hello.items[..], [Relayed::Hello]));
    assert!(
        matches!(RemoteSlot::split(hello.from), Some((s, w)) if s == b_at_a && w < 2),
        "from {}",
        hello.from
    );
    assert!(a.workers[0].try_recv().is_err(), "worker 0 had no track");
    // It answers as a router does, and the track and its packets reach
    // both of node-b's shards again.
    a.to_link.send(announce(1)).await.unwrap();
    for w in 0..2 {
        let (seqs, other) = receive(&mut b.workers[w], 1, a_at_b.shard(1), meeting).await;
        assert_eq!(seqs, vec![1], "worker {w}");
        assert!(
            matches!(other[..], [Relayed::Published { track: t, .. }] if t == track()),
            "worker {w}"
        );
    }
    shutdown.cancel();
}

#[test]
fn remote_shard_indices_name_the_node_and_its_worker() {
    let slot = RemoteSlot(3);
    for w in [0, 1, 255] {
        let i = slot.shard(w);
        assert!(i >= MAX_WORKERS);
        assert_eq!(RemoteSlot::split(i), Some((slot, w)));
    }
    assert_eq!(RemoteSlot::split(MAX_WORKERS - 1), None);
    assert_ne!(RemoteSlot(0).shard(0), RemoteSlot(1).shard(0));
}

/// A node that restarts (a new process, a new epoch, within the silence
/// timeout) had its old process's tracks; they end here before anything of
/// the new process arrives, and the new process's announcements stand.
#[tokio::test]
async fn a_restarted_peer_s_old_tracks_end_and_its_new_ones_stand() {
    let b_stop = CancellationToken::new();
    let first_run = CancellationToken::new();
    let mut b = node("node-b", SECRET, &b_stop).await;
    let mut events = b.links.events().unwrap();
    let meeting = MeetingId::generate();
    let old = track();
    let new = TrackId {
        publisher: PeerId(43),
        mid: Mid::from("2"),
    };
    let announce = |track| RelayBatch {
        from: 0,
        meeting,
        items: vec![Relayed::Published {
            track,
            kind: MediaKind::Video,
            rids: vec![None],
        }],
    };

    let a = node("node-a", SECRET, &first_run).await;
    let a_at_b = b.links.connect("node-a", a.links.local_addr());
    let b_at_a = a.links.connect("node-b", b.links.local_addr());
    a.to_link
        .send(RemoteBatch {
            to: vec![b_at_a.shard(0)],
            batch: announce(old),
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), b.workers[0].recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got.items[..], [Relayed::Published { track: t, .. }] if t == old));

    // node-a's process ends and a new one starts at once, elsewhere.
    first_run.cancel();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second_run = CancellationToken::new();
    let a = node("node-a", SECRET, &second_run).await;
    b.links.connect("node-a", a.links.local_addr());
    let b_at_a = a.links.connect("node-b", b.links.local_addr());
    a.to_link
        .send(RemoteBatch {
            to: vec![b_at_a.shard(0)],
            batch: announce(new),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(5), b.workers[0].recv())
            .await
            .expect("batches")
            .unwrap();
        assert_eq!(batch.meeting, meeting);
        seen.extend(batch.items);
    }
    assert!(
        matches!(
            seen[..],
            [Relayed::Unpublished { track: o }, Relayed::Published { track: n, .. }]
                if o == old && n == new
        ),
        "{seen:?}"
    );
    let event = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event,
        PeerEvent::Restarted {
            node: "node-a".into(),
            slot: a_at_b
        }
    );
    second_run.cancel();
    b_stop.cancel();
}
