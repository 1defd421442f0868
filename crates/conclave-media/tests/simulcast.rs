//! Simulcast and active speaker through the router, between real str0m
//! clients on virtual time: a publisher sends three layers ("q", "h", "f",
//! smallest first) like a browser with three send encodings; each subscriber
//! gets the layer its view size calls for, switches at a key frame of the new
//! layer and sees one continuous stream; layers nobody receives go nowhere.
//! Audio levels make the loudest member the active speaker, not a blip.

mod harness;

use std::time::{Duration, Instant};

use conclave_media::{DEFAULT_INITIAL_BANDWIDTH, PeerId, Rid};
use harness::{Fate, Net, Received, Signal};
use str0m::Event;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const C: PeerId = PeerId(3);
const D: PeerId = PeerId(4);
const A_ADDR: &str = "10.0.0.2:5000";
const B_ADDR: &str = "10.0.0.3:5000";
const C_ADDR: &str = "10.0.0.4:5000";
const D_ADDR: &str = "10.0.0.5:5000";

const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Payload bytes per frame of each layer: the layer is visible in the size
/// (and in the last byte) of every packet a subscriber receives.
const LENGTHS: [usize; 3] = [100, 300, 900];

/// A simulcast publisher that behaves like a browser: a key frame on each
/// layer when it starts and when the router asks for one on that layer,
/// delta frames otherwise; 30 frames a second, one packet each.
struct Publisher {
    id: PeerId,
    mid: Mid,
    seq: [u64; 3],
    frame: u32,
    key_pending: [bool; 3],
    /// Client events already looked at for keyframe requests.
    seen: usize,
    /// Keyframe requests received, per layer.
    requests: [u32; 3],
    /// Packets sent, per layer.
    sent: [u64; 3],
}

impl Publisher {
    fn new(id: PeerId, mid: Mid) -> Self {
        Publisher {
            id,
            mid,
            seq: [1_000, 20_000, 40_000],
            frame: 0,
            key_pending: [true; 3],
            seen: 0,
            requests: [0; 3],
            sent: [0; 3],
        }
    }

    fn frame(&mut self, net: &mut Net) {
        let client = net.client(self.id);
        for (_, e) in &client.events[self.seen..] {
            if let Event::KeyframeRequest(r) = e {
                let rid = r.rid.map(|r| r.to_string());
                if let Some(i) = RIDS.iter().position(|x| Some(x.to_string()) == rid) {
                    self.key_pending[i] = true;
                    self.requests[i] += 1;
                }
            }
        }
        self.seen = client.events.len();
        let pt = client.pt_of(Codec::Vp8);
        for i in 0..3 {
            let key = std::mem::take(&mut self.key_pending[i]);
            let mut payload = harness::vp8_start(key.then_some(SIZES[i]));
            payload.resize(LENGTHS[i], 0xee);
            *payload.last_mut().unwrap() = i as u8;
            // Each layer is its own stream: own sequence numbers and timestamp base.
            let ts = self
                .frame
                .wrapping_mul(3_000)
                .wrapping_add(i as u32 * 1_000_000);
            let write = RtpWrite::new(pt, self.seq[i].into(), ts, net.now, payload)
                .marker(true)
                .nackable(true);
            net.send_write(self.id, self.mid, Some(RIDS[i]), write);
            self.seq[i] += 1;
            self.sent[i] += 1;
        }
        self.frame += 1;
    }

    fn run(&mut self, net: &mut Net, ms: u64) {
        for t in 0..ms {
            if t.is_multiple_of(33) {
                self.frame(net);
            }
            net.step();
        }
    }
}

/// The m-line on which `subscriber` receives `publisher`'s `mid`.
fn forwarded_mid(net: &Net, subscriber: PeerId, publisher: PeerId, mid: Mid) -> Mid {
    net.signals
        .iter()
        .rev()
        .find_map(|s| match s {
            Signal::Offer { peer, tracks } if *peer == subscriber => tracks
                .iter()
                .find(|t| t.publisher == publisher && t.publisher_mid == mid)
                .map(|t| t.mid),
            _ => None,
        })
        .expect("the subscriber was offered the track")
}

/// The layer a received packet belongs to (its last byte).
fn layer_of(r: &Received) -> usize {
    usize::from(*r.payload.last().unwrap())
}

fn is_keyframe(r: &Received) -> bool {
    r.payload.len() > 1 && r.payload[1] & 1 == 0
}

/// A publishes three layers; the listed subscribers only receive.
fn meeting(subscribers: &[(PeerId, &str)]) -> (Net, Publisher) {
    let mut net = Net::new();
    let (video, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    for (id, addr) in subscribers {
        net.join(*id, addr, &[]);
    }
    net.connect_all();
    (net, Publisher::new(A, video))
}

fn rid(s: &str) -> Option<Option<Rid>> {
    Some(Some(Rid::from(s)))
}

#[test]
fn subscriber_gets_the_layer_its_view_calls_for_and_switches_at_key_frames() {
    let (mut net, mut publisher) = meeting(&[(B, B_ADDR)]);
    let mid = forwarded_mid(&net, B, A, publisher.mid);
    publisher.run(&mut net, 1_000);
    // No view size said yet: the middle layer.
    assert_eq!(net.router.forwarded_layer(B, mid), rid("h"));

    // A small tile: the quarter-size layer is enough.
    net.router.set_view_size(B, A, publisher.mid, 160, 90);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("q"));
    // Full screen: the full layer.
    net.router.set_view_size(B, A, publisher.mid, 1920, 1080);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("f"));

    let got: Vec<Received> = net
        .client(B)
        .received()
        .into_iter()
        .filter(|r| r.mid == Some(mid))
        .collect();
    let layers: Vec<usize> = got.iter().map(layer_of).collect();
    // h, then q, then f: each a run, no going back and forth.
    let mut runs = layers.clone();
    runs.dedup();
    assert_eq!(runs, vec![1, 0, 2], "layers received in order");
    // Every run starts with a key frame of its layer, at its real size.
    for (i, r) in got.iter().enumerate() {
        if i == 0 || layers[i - 1] != layers[i] {
            assert!(
                is_keyframe(r),
                "switch to layer {} at a key frame",
                layers[i]
            );
            assert_eq!(r.payload.len(), LENGTHS[layers[i]]);
        }
    }
    // One stream for the subscriber: one SSRC, sequence numbers that go up
    // by one across both switches, timestamps that never go back.
    assert!(got.iter().all(|r| r.ssrc == got[0].ssrc));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "continuous sequence numbers");
        assert!(w[1].timestamp.wrapping_sub(w[0].timestamp) < 1 << 31);
    }
    // About 30 frames a second for 3 s, minus the wait for key frames.
    assert!(got.len() >= 80, "{} packets", got.len());
    let b = net.router.peer_stats(B).unwrap().clone();
    assert_eq!(b.layer_switches, 3);
    assert_eq!(b.rtp_forwarded, got.len() as u64);
    // Whatever B did not get went to nobody, and was counted.
    let a = net.router.peer_stats(A).unwrap().clone();
    let sent: u64 = publisher.sent.iter().sum();
    assert_eq!(a.rtp_in, sent);
    assert_eq!(a.rtp_unreceived, sent - got.len() as u64);
    // Key frames were asked for the layers switched to: q and f once each
    // (plus the start), h only at the start.
    assert_eq!(publisher.requests[1], 1, "{:?}", publisher.requests);
    assert!(publisher.requests[0] >= 1 && publisher.requests[2] >= 1);
}

#[test]
fn a_key_frame_whose_first_packet_came_last_reaches_the_subscriber_whole() {
    let (mut net, mut publisher) = meeting(&[(B, B_ADDR)]);
    let mid = forwarded_mid(&net, B, A, publisher.mid);
    net.router.set_view_size(B, A, publisher.mid, 160, 90);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("q"));
    // B's tile grows: the router wants h and asks A for a key frame of it.
    net.router.set_view_size(B, A, publisher.mid, 640, 360);
    net.settle();
    let pt = net.client(A).pt_of(Codec::Vp8);
    publisher.seen = net.client(A).events.len();
    // h's key frame in three packets; jitter on A's hop brings the second
    // and the third before the first.
    let seq = publisher.seq[1];
    let ts = publisher.frame.wrapping_mul(3_000).wrapping_add(1_000_000);
    let packet = |first: bool, tag: u8| {
        let mut p = if first {
            let (w, h) = SIZES[1];
            let mut p = vec![0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
            p.extend_from_slice(&w.to_le_bytes());
            p.extend_from_slice(&h.to_le_bytes());
            p
        } else {
            // No start of a partition: the frame goes on.
            vec![0x00]
        };
        p.resize(LENGTHS[1], 0xee);
        let n = p.len();
        p[n - 2] = tag;
        p[n - 1] = 1;
        p
    };
    for (offset, first, tag) in [(1, false, 0xa2), (2, false, 0xa3), (0, true, 0xa1)] {
        let write = RtpWrite::new(pt, (seq + offset).into(), ts, net.now, packet(first, tag))
            .marker(offset == 2)
            .nackable(true);
        net.send_write(A, publisher.mid, Some("h"), write);
        net.step();
    }
    publisher.seq[1] = seq + 3;
    publisher.frame += 1;
    publisher.key_pending[1] = false;
    let asked = net.router.peer_stats(A).unwrap().keyframe_requests_out;
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("h"));
    let tags: Vec<u8> = net
        .client(B)
        .received()
        .iter()
        .filter(|r| r.mid == Some(mid) && layer_of(r) == 1)
        .map(|r| r.payload[r.payload.len() - 2])
        .collect();
    // B switched at the key frame's first packet and got the two that came
    // before it too, then the delta frames after.
    assert_eq!(tags[..3], [0xa1, 0xa2, 0xa3], "{tags:x?}");
    assert_eq!(
        net.router.peer_stats(A).unwrap().keyframe_requests_out,
        asked,
        "the key frame was whole: no other asked for"
    );
}

#[test]
fn a_falling_bandwidth_estimate_moves_the_subscriber_down() {
    // str0m's estimate, without the fast path (on by default).
    falling_estimate_moves_down(Net::with_config(|c| c.fast_path = false));
}

/// The same with the fast path (issue 16), where the estimate is the fast
/// path's own, from B's TWCC feedback on the packets it numbered.
#[test]
fn a_falling_bandwidth_estimate_moves_a_fast_path_subscriber_down() {
    let net = falling_estimate_moves_down(Net::with_config(|c| c.fast_path = true));
    let b = net.router.peer_stats(B).unwrap();
    assert!(b.fast_sealed > 50, "{b:?}");
    assert!(b.fast_twcc_reports > 10, "{b:?}");
    assert_eq!(b.fast_seal_errors, 0, "{b:?}");
}

/// Once the narrow link widens again, the fast path probes (padding on
/// B's RTX SSRC, numbered for TWCC) and B's feedback on the probe lets the
/// estimate step back up at once, instead of growing 8 % a second (one
/// run here: 116 kbit/s flat for 2 s while the drained queue still showed,
/// then 244 kbit/s at the first probe).
#[test]
fn a_fast_path_subscriber_probes_its_way_back_up_once_its_link_widens() {
    let (mut net, mut publisher) =
        falling_estimate_moves_down_with(Net::with_config(|c| c.fast_path = true));
    let low = net.router.bandwidth_estimate(B).unwrap();
    net.link = None;
    let before = net.router.peer_stats(B).unwrap().fast_probe_packets;
    let mut estimates = Vec::new();
    for _ in 0..12 {
        publisher.run(&mut net, 500);
        estimates.push(net.router.bandwidth_estimate(B).unwrap());
    }
    let b = net.router.peer_stats(B).unwrap();
    assert!(
        b.fast_probe_packets > before,
        "from {low}: {estimates:?} {b:?}"
    );
    assert_eq!(b.fast_seal_errors, 0, "{b:?}");
    // Within 4 s: growth alone would make at most 1.36 times.
    assert!(
        estimates[..8].iter().any(|&e| e > low * 3 / 2),
        "from {low}: {estimates:?}"
    );
}

fn falling_estimate_moves_down(net: Net) -> Net {
    falling_estimate_moves_down_with(net).0
}

fn falling_estimate_moves_down_with(mut net: Net) -> (Net, Publisher) {
    let (video, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let mut publisher = Publisher::new(A, video);
    let mid = forwarded_mid(&net, B, A, video);
    net.router.set_view_size(B, A, video, 1920, 1080);
    publisher.run(&mut net, 2_000);
    // TWCC feedback from B let the estimate grow well past f (~220 kbit/s).
    assert!(net.router.bandwidth_estimate(B).unwrap() > 400_000);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("f"));
    // Then B's link narrows to 160 kbit/s, less than f needs, behind a
    // queue of 300 ms: delay builds up, then the queue overflows, as on a
    // congested link. The estimate falls below what f needs, and B moves
    // to h, at a key frame, still one stream. (A test that lost every
    // third datagram whatever the rate failed about one run in 40: a
    // loss-based estimator may rightly take a loss that does not grow with
    // the rate for the link's own, and str0m's sometimes held on.)
    narrow_b(&mut net, 160_000, Duration::from_millis(300));
    let mut waited = 0;
    while net.router.forwarded_layer(B, mid) == rid("f") {
        assert!(waited < 10, "still on f after {waited} s");
        publisher.run(&mut net, 1_000);
        waited += 1;
    }
    let estimate = net.router.bandwidth_estimate(B).unwrap();
    assert!(estimate < 260_000, "{estimate}");
    assert_eq!(net.router.forwarded_layer(B, mid), rid("h"));
    assert_eq!(net.router.peer_stats(B).unwrap().layer_switches, 2);
    (net, publisher)
}

/// Puts B's downlink behind a [`Bottleneck`] of `rate` bits a second and
/// `queue`; every other datagram arrives as before.
fn narrow_b(net: &mut Net, rate: u64, queue: Duration) {
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let mut link = Bottleneck::new(rate, queue, net.now);
    net.link = Some(Box::new(move |now, d| {
        if d.destination == b_addr {
            link.enqueue(now, d.contents.len())
        } else {
            Fate::Arrive
        }
    }));
}

/// A link that carries `rate` bits a second, one datagram after another,
/// and drops what would wait in its queue longer than `queue`.
struct Bottleneck {
    rate: u64,
    queue: Duration,
    /// When the link finishes sending what it holds.
    free_at: Instant,
}

impl Bottleneck {
    fn new(rate: u64, queue: Duration, now: Instant) -> Self {
        Bottleneck {
            rate,
            queue,
            free_at: now,
        }
    }

    fn enqueue(&mut self, now: Instant, len: usize) -> Fate {
        let start = self.free_at.max(now);
        if start - now > self.queue {
            return Fate::Lose;
        }
        self.free_at = start + Duration::from_secs_f64(len as f64 * 8.0 / self.rate as f64);
        Fate::ArriveAt(self.free_at)
    }
}

#[test]
fn a_key_frame_request_goes_to_the_layer_received_only() {
    let (mut net, mut publisher) = meeting(&[(B, B_ADDR)]);
    let mid = forwarded_mid(&net, B, A, publisher.mid);
    net.router.set_view_size(B, A, publisher.mid, 100, 60);
    publisher.run(&mut net, 1_500);
    assert_eq!(net.router.forwarded_layer(B, mid), rid("q"));
    let before = publisher.requests;
    // B lost its picture: the publisher is asked for a key frame on q
    // alone; nobody receives h or f, so nobody needs theirs.
    net.request_keyframe(B, mid);
    publisher.run(&mut net, 600);
    assert_eq!(publisher.requests[0], before[0] + 1);
    assert_eq!(publisher.requests[1], before[1]);
    assert_eq!(publisher.requests[2], before[2]);
}

#[test]
fn subscribers_get_different_layers_and_the_unwatched_one_goes_nowhere() {
    let (mut net, mut publisher) = meeting(&[(B, B_ADDR), (C, C_ADDR)]);
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    let c_mid = forwarded_mid(&net, C, A, publisher.mid);
    net.router.set_view_size(B, A, publisher.mid, 320, 180);
    net.router.set_view_size(C, A, publisher.mid, 1280, 720);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, b_mid), rid("q"));
    assert_eq!(net.router.forwarded_layer(C, c_mid), rid("f"));
    let unreceived = net.router.peer_stats(A).unwrap().rtp_unreceived;
    let sent = publisher.sent;
    publisher.run(&mut net, 1_000);
    // From now on exactly the h packets go to nobody.
    let unreceived = net.router.peer_stats(A).unwrap().rtp_unreceived - unreceived;
    assert_eq!(unreceived, publisher.sent[1] - sent[1]);
    let b: Vec<usize> = net.client(B).received().iter().map(layer_of).collect();
    let c: Vec<usize> = net.client(C).received().iter().map(layer_of).collect();
    assert!(b.iter().skip(10).all(|l| *l == 0), "{b:?}");
    assert!(c.iter().skip(10).all(|l| *l == 2), "{c:?}");
}

/// A publishes one video stream without simulcast; B receives it. Returns
/// A's m-line, B's m-line for it and A's VP8 payload type.
fn single_video() -> (Net, Mid, Mid, Pt) {
    let mut net = Net::new();
    net.join(A, A_ADDR, &[MediaKind::Video]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let video = net.client(A).sending[0].0;
    let mid = forwarded_mid(&net, B, A, video);
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    (net, video, mid, vp8)
}

#[test]
fn a_track_without_simulcast_is_forwarded_as_before() {
    let (mut net, video, mid, vp8) = single_video();
    // A view size changes nothing for a single stream.
    net.router.set_view_size(B, A, video, 10, 10);
    for seq in 0..20u64 {
        net.send_rtp(
            A,
            video,
            vp8,
            500 + seq,
            seq as u32 * 3000,
            true,
            &[0x10, 0x31, 1, 2],
        );
        net.run_for(Duration::from_millis(33));
    }
    assert_eq!(net.router.forwarded_layer(B, mid), Some(None));
    assert_eq!(net.client(B).received().len(), 20);
}

/// A single video stream above the starting estimate: there is no layer to
/// drop to, so the subscriber's estimate must grow to carry it (str0m paces
/// at 1.1 times the estimate; one stuck at the start would hold the stream
/// back in the pacer's queue).
#[test]
fn the_estimate_grows_to_carry_a_video_without_simulcast() {
    let (mut net, video, mid, vp8) = single_video();
    let mut payload = vec![0x10, 0x31, 1, 2];
    payload.resize(1_000, 0xee);
    // 30 frames a second of 14 packets of 1,000 bytes (3.4 Mbit/s) for 6 s.
    let mut sent = 0u64;
    for frame in 0..180u32 {
        for i in 0..14 {
            net.send_rtp(A, video, vp8, 500 + sent, frame * 3_000, i == 13, &payload);
            sent += 1;
        }
        net.run_for(Duration::from_millis(33));
    }
    let estimate = net.router.bandwidth_estimate(B).expect("an estimate");
    assert!(
        estimate > DEFAULT_INITIAL_BANDWIDTH,
        "estimate {estimate} bit/s"
    );
    let got = net
        .client(B)
        .received()
        .iter()
        .filter(|r| r.mid == Some(mid))
        .count() as u64;
    assert!(got * 100 >= sent * 98, "{got} of {sent} packets");
}

/// Videos without simulcast whose sum is far over the subscriber's
/// estimate: there is no smaller layer, so holding their packets back buys
/// nothing and only adds delay (str0m's pacer would queue them at 1.1 times
/// the estimate, seconds behind after a while). Every packet must reach the
/// subscriber at the instant its publisher sent it.
#[test]
fn videos_without_simulcast_over_the_estimate_are_not_held_back() {
    let mut net = Net::new();
    let publishers = [(A, A_ADDR), (C, C_ADDR), (D, D_ADDR)];
    for (id, addr) in publishers {
        net.join(id, addr, &[MediaKind::Video]);
    }
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let videos: Vec<(PeerId, Mid, Pt)> = publishers
        .iter()
        .map(|&(id, _)| {
            let video = net.client(id).sending[0].0;
            (id, video, net.client(id).pt_of(Codec::Vp8))
        })
        .collect();
    let forwarded: Vec<Mid> = videos
        .iter()
        .map(|&(id, video, _)| forwarded_mid(&net, B, id, video))
        .collect();
    // Each publisher: 30 frames a second of 14 packets of 1,000 bytes
    // (3.4 Mbit/s), 10 Mbit/s in all against a 2.5 Mbit/s start, for 3 s.
    // The payload carries the frame's number, to look up when it was sent.
    let mut sent_at = Vec::new();
    let mut seq = 0u64;
    for frame in 0..90u32 {
        sent_at.push(net.now);
        let mut payload = vec![0x10, 0x31, 1, 2];
        payload.extend_from_slice(&frame.to_be_bytes());
        payload.resize(1_000, 0xee);
        for i in 0..14 {
            for &(id, video, vp8) in &videos {
                net.send_rtp(id, video, vp8, 500 + seq, frame * 3_000, i == 13, &payload);
            }
            seq += 1;
        }
        net.run_for(Duration::from_millis(33));
    }
    let received: Vec<Received> = net
        .client(B)
        .received()
        .into_iter()
        .filter(|r| r.mid.is_some_and(|m| forwarded.contains(&m)))
        .collect();
    assert_eq!(received.len(), 90 * 14 * 3, "every packet arrives");
    let late: Vec<(u32, Duration)> = received
        .iter()
        .filter_map(|r| {
            let frame = u32::from_be_bytes(r.payload[4..8].try_into().ok()?);
            let sent = sent_at[frame as usize];
            (r.at > sent).then(|| (frame, r.at - sent))
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} of {} packets were held back, e.g. {:?}",
        late.len(),
        received.len(),
        &late[..late.len().min(5)]
    );
}

/// Two key frames' bursts reach the router at the same instant: the second
/// leaves as soon as the first, though str0m's clock is ahead of the
/// router's by then (it steps a microsecond per packet it lets out).
#[test]
fn bursts_at_the_same_instant_all_leave_at_once() {
    let (mut net, video, mid, vp8) = single_video();
    let payloads: Vec<Vec<u8>> = (0..40u8)
        .map(|i| {
            let mut p = vec![0x10, 0x31, 1, 2, i];
            p.resize(1_000, 0xee);
            p
        })
        .collect();
    let packets: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let before = net.client(B).received().len();
    let at = net.now;
    net.send_frame(A, video, vp8, 500, 0, &packets, true);
    net.send_frame(A, video, vp8, 540, 3_000, &packets, true);
    let received: Vec<Received> = net.client(B).received().split_off(before);
    assert_eq!(received.len(), 80, "both bursts arrived");
    assert!(received.iter().all(|r| r.mid == Some(mid) && r.at == at));
}

/// A and C publish audio only; B listens.
fn speakers() -> (Net, Mid, Mid) {
    let mut net = Net::new();
    net.join(A, A_ADDR, &[MediaKind::Audio]);
    net.join(C, C_ADDR, &[MediaKind::Audio]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let a = net.client(A).sending[0].0;
    let c = net.client(C).sending[0].0;
    (net, a, c)
}

/// A and C send 20 ms Opus packets at the given levels for `ms`.
fn talk(net: &mut Net, mids: (Mid, Mid), seq: &mut u64, ms: u64, levels: (i8, i8)) {
    for t in 0..ms {
        if t.is_multiple_of(20) {
            let ts = (*seq as u32).wrapping_mul(960);
            net.send_audio_level(A, mids.0, *seq, ts, levels.0);
            net.send_audio_level(C, mids.1, *seq, ts, levels.1);
            *seq += 1;
        }
        net.step();
    }
}

fn speaker_events(net: &Net) -> Vec<PeerId> {
    net.signals
        .iter()
        .filter_map(|s| match s {
            Signal::ActiveSpeaker(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn the_louder_member_becomes_active_speaker_and_a_blip_does_not_count() {
    let (mut net, a, c) = speakers();
    let mut seq = 100;
    talk(&mut net, (a, c), &mut seq, 2_000, (-20, -70));
    assert_eq!(speaker_events(&net), vec![A]);
    // C coughs for 200 ms while A talks on.
    talk(&mut net, (a, c), &mut seq, 200, (-20, -3));
    talk(&mut net, (a, c), &mut seq, 2_000, (-20, -70));
    assert_eq!(speaker_events(&net), vec![A]);
    // C takes over for real.
    talk(&mut net, (a, c), &mut seq, 2_000, (-70, -15));
    assert_eq!(speaker_events(&net), vec![A, C]);
    assert_eq!(net.router.active_speaker(), Some(C));
    assert_eq!(net.router.stats().speaker_changes, 2);
}

#[test]
fn a_muted_member_is_not_the_active_speaker() {
    let (mut net, a, c) = speakers();
    let mut seq = 100;
    // The meeting mutes A: its loud packets are dropped, and do not count.
    net.router.set_forwarding(A, a, false);
    talk(&mut net, (a, c), &mut seq, 2_000, (-5, -35));
    assert_eq!(speaker_events(&net), vec![C]);
}

/// Paging (issue 18): a subscriber whose tile went off the page says 0×0,
/// and gets nothing of that video while another subscriber still does; a
/// size again brings it back at a key frame of the layer it calls for, on
/// the same stream (continuous sequence numbers).
#[test]
fn a_hidden_view_is_not_forwarded_until_shown_again() {
    for fast_path in [false, true] {
        hidden_view_not_forwarded(Net::with_config(|c| c.fast_path = fast_path));
    }
}

fn hidden_view_not_forwarded(mut net: Net) {
    let (video, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    net.join(B, B_ADDR, &[]);
    net.join(C, C_ADDR, &[]);
    net.connect_all();
    let mut publisher = Publisher::new(A, video);
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    let c_mid = forwarded_mid(&net, C, A, publisher.mid);
    net.router.set_view_size(B, A, publisher.mid, 320, 180);
    net.router.set_view_size(C, A, publisher.mid, 320, 180);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, b_mid), rid("q"));
    let of = |net: &mut Net, id: PeerId, mid: Mid| -> Vec<Received> {
        net.client(id)
            .received()
            .into_iter()
            .filter(|r| r.mid == Some(mid))
            .collect()
    };
    let b_before = of(&mut net, B, b_mid).len();
    assert!(b_before > 10, "{b_before} packets before hiding");

    // B's tile goes off the page.
    net.router.set_view_size(B, A, publisher.mid, 0, 0);
    let c_before = of(&mut net, C, c_mid).len();
    publisher.run(&mut net, 1_500);
    assert_eq!(
        of(&mut net, B, b_mid).len(),
        b_before,
        "nothing while hidden"
    );
    assert!(
        of(&mut net, C, c_mid).len() >= c_before + 40,
        "C still receives"
    );
    assert_eq!(net.router.forwarded_layer(B, b_mid), None);
    let unseen = net.router.peer_stats(B).unwrap().video_unseen;
    assert!(unseen >= 40, "{unseen} packets counted as unseen");
    assert_eq!(net.router.peer_stats(C).unwrap().video_unseen, 0);

    // Back on the page, larger: h, from a key frame, one stream.
    net.router.set_view_size(B, A, publisher.mid, 640, 360);
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, b_mid), rid("h"));
    let got = of(&mut net, B, b_mid);
    let after = &got[b_before..];
    assert!(after.len() >= 20, "{} packets after showing", after.len());
    assert!(is_keyframe(&after[0]), "resumes at a key frame");
    assert_eq!(layer_of(&after[0]), 1);
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "continuous sequence numbers");
    }
    assert_eq!(net.router.peer_stats(B).unwrap().video_unseen, unseen);
}

/// The same for a video without simulcast: hidden, it stops; shown again,
/// it comes back and its publisher is asked for a key frame.
#[test]
fn a_hidden_view_pauses_a_video_without_simulcast() {
    let (mut net, video, mid, vp8) = single_video();
    let mut seq = 0u64;
    let mut send = |net: &mut Net, frames: u64| {
        for _ in 0..frames {
            net.send_rtp(
                A,
                video,
                vp8,
                500 + seq,
                seq as u32 * 3000,
                true,
                &[0x10, 0x31, 1, 2],
            );
            seq += 1;
            net.run_for(Duration::from_millis(33));
        }
    };
    send(&mut net, 10);
    assert_eq!(net.client(B).received().len(), 10);
    net.router.set_view_size(B, A, video, 0, 0);
    send(&mut net, 10);
    assert_eq!(net.client(B).received().len(), 10, "nothing while hidden");
    assert_eq!(net.router.peer_stats(B).unwrap().video_unseen, 10);
    let asked = net.router.peer_stats(A).unwrap().keyframe_requests_out;
    net.router.set_view_size(B, A, video, 320, 180);
    send(&mut net, 10);
    assert_eq!(net.client(B).received().len(), 20);
    assert_eq!(net.router.forwarded_layer(B, mid), Some(None));
    assert!(net.router.peer_stats(A).unwrap().keyframe_requests_out > asked);
}

/// Dynacast with paging: when every subscriber hides a simulcast track, its
/// publisher is told to send none of its layers (after the hold); when one
/// shows it again, the layer its view calls for is resumed and it arrives.
#[test]
fn a_track_every_subscriber_hides_is_paused_at_its_publisher() {
    let (mut net, mut publisher) = meeting(&[(B, B_ADDR), (C, C_ADDR)]);
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    let video = publisher.mid;
    net.router.set_view_size(B, A, video, 320, 180);
    net.router.set_view_size(C, A, video, 1280, 720);
    publisher.run(&mut net, 1_000);
    let sent = |net: &Net| net.router.layers_sent(A, video).unwrap();
    assert!(!sent(&net).is_empty());
    // Only C hides it: B's layer stays.
    net.router.set_view_size(C, A, video, 0, 0);
    publisher.run(&mut net, 3_000);
    assert_eq!(sent(&net), vec![Rid::from("q")]);
    // Both hide it: nothing is sent once the hold is over.
    net.router.set_view_size(B, A, video, 0, 0);
    publisher.run(&mut net, 3_000);
    assert_eq!(sent(&net), Vec::<Rid>::new());
    // B shows it again: its layer is resumed at once and forwarded.
    net.router.set_view_size(B, A, video, 320, 180);
    assert_eq!(sent(&net), vec![Rid::from("q")]);
    let before = net.router.peer_stats(B).unwrap().rtp_forwarded;
    publisher.run(&mut net, 1_000);
    assert_eq!(net.router.forwarded_layer(B, b_mid), rid("q"));
    assert!(net.router.peer_stats(B).unwrap().rtp_forwarded > before + 20);
}
/// Simulcast publishers sending side by side for `ms`.
fn run_all(net: &mut Net, publishers: &mut [Publisher], ms: u64) {
    for t in 0..ms {
        if t.is_multiple_of(33) {
            for p in publishers.iter_mut() {
                p.frame(net);
            }
        }
        net.step();
    }
}

/// Behind a link too narrow for even the smallest layers of all its videos
/// (issue 21, the network bench's capped member), a subscriber gets as
/// many videos as fit at their smallest layer and the rest are paused for
/// it, nothing of them forwarded, rather than all of them into a full
/// queue; the link widening brings the paused one back after the hold, at
/// a key frame.
#[test]
fn a_video_that_does_not_fit_is_paused_for_that_subscriber_until_the_link_widens() {
    let mut net = Net::with_config(|c| c.fast_path = true);
    let (va, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    let (vc, _) = net.join_simulcast(C, C_ADDR, &RIDS, false);
    let (vd, _) = net.join_simulcast(D, D_ADDR, &RIDS, false);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let mut publishers = [
        Publisher::new(A, va),
        Publisher::new(C, vc),
        Publisher::new(D, vd),
    ];
    let mids: Vec<Mid> = publishers
        .iter()
        .map(|p| forwarded_mid(&net, B, p.id, p.mid))
        .collect();
    // Small tiles: q (24 kbit/s of payload) is all B wants of each.
    for p in &publishers {
        net.router.set_view_size(B, p.id, p.mid, 320, 180);
    }
    run_all(&mut net, &mut publishers, 2_000);
    let layers = |net: &Net| -> Vec<Option<Option<Rid>>> {
        mids.iter()
            .map(|&m| net.router.forwarded_layer(B, m))
            .collect()
    };
    let forwarded = |net: &Net| {
        layers(net)
            .iter()
            .filter(|l| l.is_some_and(|l| l.is_some()))
            .count()
    };
    assert_eq!(forwarded(&net), 3);
    // B's link narrows to 40 kbit/s: its estimate falls to the estimator's
    // floor, 50 kbit/s, where two q fit and three do not.
    narrow_b(&mut net, 40_000, Duration::from_millis(300));
    let mut waited = 0;
    while forwarded(&net) == 3 {
        assert!(waited < 25, "all still forwarded after {waited} s");
        run_all(&mut net, &mut publishers, 1_000);
        waited += 1;
    }
    // Two stay, on q; the third's packets go to B no more.
    run_all(&mut net, &mut publishers, 1_000);
    assert_eq!(forwarded(&net), 2, "{:?}", layers(&net));
    assert!(
        layers(&net)
            .iter()
            .flatten()
            .flatten()
            .all(|r| *r == Rid::from("q"))
    );
    let paused = net.router.peer_stats(B).unwrap().video_paused;
    run_all(&mut net, &mut publishers, 5_000);
    assert_eq!(forwarded(&net), 2, "resumed while the link is narrow");
    assert!(net.router.peer_stats(B).unwrap().video_paused > paused);
    // The link widens: all three again, the resumed one at a key frame.
    net.link = None;
    let switches = net.router.peer_stats(B).unwrap().layer_switches;
    let mut waited = 0;
    while forwarded(&net) == 2 {
        assert!(waited < 30, "still two videos after {waited} s");
        run_all(&mut net, &mut publishers, 1_000);
        waited += 1;
    }
    assert_eq!(layers(&net), [rid("q"), rid("q"), rid("q")]);
    assert_eq!(
        net.router.peer_stats(B).unwrap().layer_switches,
        switches + 1
    );
}

const E: PeerId = PeerId(5);
const E_ADDR: &str = "10.0.0.6:5000";

/// A RED audio publisher: an Opus frame of 60 bytes every 20 ms, each
/// packet carrying the previous frame again (~50 kbit/s of payload, as a
/// browser's RED).
struct RedAudio {
    mid: Mid,
    red: Pt,
    opus: Pt,
    seq: u64,
}

impl RedAudio {
    fn join(net: &mut Net) -> Self {
        let rtc = str0m::Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
            .build(net.now);
        net.join_with(E, E_ADDR, &[MediaKind::Audio], rtc)
            .expect("router answers");
        let client = net.client(E);
        let mid = client.sending[0].0;
        let opus = client.pt_of(Codec::Opus);
        let red = client
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .and_then(|p| p.red())
            .expect("RED negotiated");
        RedAudio {
            mid,
            red,
            opus,
            seq: 1,
        }
    }

    /// The primary block of packet `seq`.
    fn frame(seq: u64) -> Vec<u8> {
        let mut f = vec![0xf8; 60];
        f[1..9].copy_from_slice(&seq.to_be_bytes());
        f
    }

    fn send(&mut self, net: &mut Net) {
        let seq = self.seq;
        self.seq += 1;
        let payload = str0m::rtp::RedEncoder::encode(
            *self.opus,
            &Self::frame(seq),
            &[str0m::rtp::RedundantBlock {
                pt: *self.opus,
                timestamp_offset: 960,
                payload: Self::frame(seq - 1),
            }],
        );
        let write = RtpWrite::new(self.red, seq.into(), seq as u32 * 960, net.now, payload);
        net.send_write(E, self.mid, None, write);
    }
}

/// Two simulcast publishers and a RED audio publisher, and a subscriber B
/// that negotiated RED, shows both videos small and gets both at `q`.
fn red_meeting() -> (Net, [Publisher; 2], RedAudio, [Mid; 2]) {
    let mut net = Net::with_config(|c| c.fast_path = true);
    let (va, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    let (vc, _) = net.join_simulcast(C, C_ADDR, &RIDS, false);
    let audio = RedAudio::join(&mut net);
    let rtc = str0m::Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, true)
        .enable_vp8(true)
        .build(net.now);
    net.join_with(B, B_ADDR, &[], rtc).expect("router answers");
    net.connect_all();
    let publishers = [Publisher::new(A, va), Publisher::new(C, vc)];
    let mids = [forwarded_mid(&net, B, A, va), forwarded_mid(&net, B, C, vc)];
    for p in &publishers {
        net.router.set_view_size(B, p.id, p.mid, 320, 180);
    }
    (net, publishers, audio, mids)
}

/// Video frames every 33 ms and audio every 20 ms, for `ms`.
fn run_red(net: &mut Net, publishers: &mut [Publisher], audio: &mut RedAudio, ms: u64) {
    for t in 0..ms {
        if t.is_multiple_of(33) {
            for p in publishers.iter_mut() {
                p.frame(net);
            }
        }
        if t.is_multiple_of(20) {
            audio.send(net);
        }
        net.step();
    }
}

/// How many of `mids` B receives a layer of.
fn forwarded_to_b(net: &Net, mids: &[Mid]) -> usize {
    mids.iter()
        .filter(|&&m| {
            net.router
                .forwarded_layer(B, m)
                .is_some_and(|l| l.is_some())
        })
        .count()
}

/// The audio B received since `from` events: (under RED's payload type,
/// under Opus's as the primary block alone).
fn b_audio(net: &mut Net, from: usize) -> (usize, usize) {
    let client = net.client(B);
    let opus = client.pt_of(Codec::Opus);
    let red = client
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .and_then(|p| p.red());
    let received = client.received();
    let audio = received.iter().skip(from).filter(|r| r.payload.len() >= 60);
    let (mut whole, mut primary) = (0, 0);
    for r in audio {
        if Some(r.pt) == red {
            whole += 1;
        } else if r.pt == opus {
            assert_eq!(r.payload.len(), 60, "the primary block alone");
            assert_eq!(r.payload[0], 0xf8);
            primary += 1;
        }
    }
    (whole, primary)
}

/// Issue 21 item 4, through the router: behind a link too narrow for RED
/// audio and both videos at `q` (a drop-tail bottleneck: a queue stands,
/// and it drops), B first gets the audio as its primary Opus blocks, then
/// one video is paused; the link widening brings both back.
#[test]
fn a_congested_subscriber_gets_red_stripped_then_a_video_paused_until_the_link_widens() {
    let (mut net, mut publishers, mut audio, mids) = red_meeting();
    run_red(&mut net, &mut publishers, &mut audio, 3_000);
    assert_eq!(forwarded_to_b(&net, &mids), 2);
    let (whole, primary) = b_audio(&mut net, 0);
    assert!(whole > 50 && primary == 0, "{whole} {primary}");
    // ~75 kbit/s of RED audio with headers, ~50 stripped, and two videos
    // of ~30 kbit/s at q, into 60 kbit/s.
    narrow_b(&mut net, 60_000, Duration::from_millis(250));
    let mut waited = 0;
    while net.router.peer_stats(B).unwrap().audio_red_stripped == 0 {
        assert!(waited < 20, "RED still whole after {waited} s");
        run_red(&mut net, &mut publishers, &mut audio, 1_000);
        waited += 1;
    }
    let stripped_after = waited;
    let mark = net.client(B).received().len();
    while forwarded_to_b(&net, &mids) == 2 {
        assert!(waited < 30, "both videos still forwarded after {waited} s");
        run_red(&mut net, &mut publishers, &mut audio, 1_000);
        waited += 1;
    }
    assert!(waited > stripped_after, "RED stripped before any pause");
    // A minute narrow: one video and stripped audio throughout, no
    // resume tried.
    let switches = net.router.peer_stats(B).unwrap().layer_switches;
    for s in 0..60 {
        run_red(&mut net, &mut publishers, &mut audio, 1_000);
        assert_eq!(
            forwarded_to_b(&net, &mids),
            1,
            "resumed while narrow ({s} s)"
        );
    }
    assert_eq!(net.router.peer_stats(B).unwrap().layer_switches, switches);
    let (whole, primary) = b_audio(&mut net, mark);
    assert!(primary > 100 && whole == 0, "{whole} {primary}");
    assert!(net.router.peer_stats(B).unwrap().video_paused > 0);
    // B was told which, once.
    let told = |net: &Net| -> Vec<(Mid, bool)> {
        net.signals
            .iter()
            .filter_map(|s| match s {
                Signal::VideoPaused { peer, mid, paused } if *peer == B => Some((*mid, *paused)),
                _ => None,
            })
            .collect()
    };
    let paused_mid = *mids
        .iter()
        .find(|&&m| net.router.forwarded_layer(B, m).is_none())
        .expect("one paused");
    assert_eq!(told(&net), [(paused_mid, true)]);
    // Wide again: both videos, and RED whole.
    net.link = None;
    let mut waited = 0;
    while forwarded_to_b(&net, &mids) < 2 {
        assert!(waited < 40, "still one video after {waited} s");
        run_red(&mut net, &mut publishers, &mut audio, 1_000);
        waited += 1;
    }
    run_red(&mut net, &mut publishers, &mut audio, 20_000);
    let mark = net.client(B).received().len();
    run_red(&mut net, &mut publishers, &mut audio, 2_000);
    let (whole, primary) = b_audio(&mut net, mark);
    assert!(whole > 50 && primary == 0, "{whole} {primary}");
    assert_eq!(forwarded_to_b(&net, &mids), 2);
    assert_eq!(told(&net), [(paused_mid, true), (paused_mid, false)]);
}

/// The loss leg the first pause broke, through the router: 10 % of what
/// B is sent lost at random, 30-50 ms of jitter, ample capacity. A
/// minute with RED whole and both videos forwarded.
#[test]
fn random_loss_with_jitter_strips_nothing_and_pauses_nothing() {
    let (mut net, mut publishers, mut audio, mids) = red_meeting();
    run_red(&mut net, &mut publishers, &mut audio, 3_000);
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let mut noise = harness::Noise::new(7);
    net.link = Some(Box::new(move |now, d| {
        if d.destination != b_addr {
            return Fate::Arrive;
        }
        if noise.next_u64().is_multiple_of(10) {
            return Fate::Lose;
        }
        Fate::ArriveAt(now + Duration::from_micros(30_000 + noise.next_u64() % 20_001))
    }));
    for _ in 0..60 {
        run_red(&mut net, &mut publishers, &mut audio, 1_000);
        assert_eq!(forwarded_to_b(&net, &mids), 2);
    }
    let stats = net.router.peer_stats(B).unwrap();
    assert_eq!((stats.audio_red_stripped, stats.video_paused), (0, 0));
    let (whole, primary) = b_audio(&mut net, 0);
    assert!(whole > 2_000 && primary == 0, "{whole} {primary}");
}
