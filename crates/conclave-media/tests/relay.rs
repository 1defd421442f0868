//! Two router shards of one meeting (`RouterConfig::relay`), each with its
//! own clients on its own virtual network, joined only by the hand-off
//! messages a driver would carry between them: what a publisher on one
//! shard sends reaches a subscriber on the other, continuous and untouched;
//! the subscriber's key frame requests reach the publisher, its NACKs are
//! answered by its own shard; the meeting's
//! gate holds on both; a publisher who leaves ends its tracks everywhere.

mod harness;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use conclave_media::PeerId;
use conclave_media::relay::Relayed;
use harness::{Fate, Net, Received};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};

const P: PeerId = PeerId(1);
const S: PeerId = PeerId(2);
const P_ADDR: &str = "10.0.0.2:5000";
const S_ADDR: &str = "10.0.0.3:5000";

fn shard() -> Net {
    Net::with_config(|c| c.relay = true)
}

/// Carries each shard's queued hand-off messages to the other, as the
/// server's media workers do after every turn of their loops. Returns how
/// many packets went from `a` to `b`.
fn exchange(a: &mut Net, b: &mut Net) -> usize {
    let mut out: Vec<Relayed> = Vec::new();
    a.router.drain_relay(&mut out);
    let packets = out
        .iter()
        .filter(|m| matches!(m, Relayed::Rtp { .. }))
        .count();
    for m in out.drain(..) {
        b.router.handle_relay(0, m, b.now);
    }
    b.router.drain_relay(&mut out);
    for m in out.drain(..) {
        a.router.handle_relay(1, m, a.now);
    }
    a.settle();
    b.settle();
    packets
}

fn step_both(a: &mut Net, b: &mut Net) -> usize {
    a.step();
    b.step();
    exchange(a, b)
}

/// P publishes audio and video on shard `a`; S, on shard `b` (which joins
/// the meeting after P published), only receives. Returns once S's offer for
/// P's two tracks is answered and everyone is connected.
fn lecture() -> (Net, Net) {
    lecture_after(0)
}

/// [`lecture`], with P sending video for `ms` milliseconds before S's shard
/// joins.
fn lecture_after(ms: u64) -> (Net, Net) {
    let mut a = shard();
    a.join(P, P_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    a.router.set_relaying(true);
    a.connect_all();
    let (_, video) = mids(&mut a);
    let vp8 = a.client(P).pt_of(Codec::Vp8);
    for t in 0..ms {
        if t % 33 == 0 {
            let seq = 10_000 + t;
            a.send_rtp(P, video, vp8, seq, seq as u32 * 1_500, true, &[0x10, 1, 2]);
        }
        a.step();
    }
    let mut b = shard();
    b.join(S, S_ADDR, &[]);
    // The newcomer says hello; the publisher's shard announces its tracks.
    b.router.set_relaying(true);
    for _ in 0..5_000 {
        step_both(&mut a, &mut b);
        if b.router.forwarded_to(S).len() == 2
            && b.client(S).is_connected()
            && b.router.is_connected(S)
        {
            return (a, b);
        }
    }
    panic!("S was not offered P's tracks through the hand-off");
}

fn mids(a: &mut Net) -> (Mid, Mid) {
    let c = a.client(P);
    (c.sending[0].0, c.sending[1].0)
}

/// P sends two-packet VP8-like frames every 33 ms for `ms` milliseconds;
/// returns what it sent (sequence number, timestamp, payload) and how many
/// packets crossed to `b`.
fn send_video(
    a: &mut Net,
    b: &mut Net,
    ms: u64,
    seq: &mut u64,
) -> (Vec<(u64, u32, Vec<u8>)>, usize) {
    let (_, video) = mids(a);
    let vp8 = a.client(P).pt_of(Codec::Vp8);
    let mut sent = Vec::new();
    let mut crossed = 0;
    for t in 0..ms {
        if t % 33 == 0 {
            let ts = (*seq as u32).wrapping_mul(1_500);
            for part in 0..2u8 {
                let payload = vec![
                    if part == 0 { 0x10 } else { 0x00 },
                    (*seq % 251) as u8,
                    part,
                    0xcd,
                ];
                a.send_rtp(P, video, vp8, *seq, ts, part == 1, &payload);
                sent.push((*seq, ts, payload));
                *seq += 1;
            }
        }
        crossed += step_both(a, b);
    }
    (sent, crossed)
}

/// What S received on its stream of P's video.
fn video_at_s(a: &mut Net, b: &mut Net) -> Vec<Received> {
    let (_, video) = mids(a);
    let tracks = b.router.forwarded_to(S);
    let Some(track) = tracks.iter().find(|t| t.publisher_mid == video) else {
        return Vec::new();
    };
    b.client(S)
        .received()
        .into_iter()
        .filter(|r| r.mid == Some(track.mid))
        .collect()
}

#[test]
fn a_publishers_packets_reach_a_subscriber_on_another_shard_in_order_and_untouched() {
    let (mut a, mut b) = lecture();
    let mut seq = 0;
    let (sent, crossed) = send_video(&mut a, &mut b, 1_000, &mut seq);
    assert_eq!(crossed, sent.len(), "each packet crosses once");
    let got = video_at_s(&mut a, &mut b);
    assert_eq!(got.len(), sent.len(), "every packet arrives once");
    for (i, (r, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(r.payload, s.2, "payload untouched");
        if i > 0 {
            assert_eq!(r.seq, got[i - 1].seq + 1, "continuous sequence numbers");
            assert_eq!(
                r.timestamp.wrapping_sub(got[i - 1].timestamp),
                s.1.wrapping_sub(sent[i - 1].1)
            );
        }
    }
    // The subscriber shard counts what it forwarded; the publisher's shard
    // has no subscriber of its own and forwards nothing itself.
    let forwarded = b.router.peer_stats(S).expect("S").rtp_forwarded;
    assert_eq!(forwarded, sent.len() as u64);
}

#[test]
fn key_frame_requests_cross_back_to_the_publishers_shard() {
    // P has been sending for a while: a subscriber arriving on the other
    // shard needs a key frame, and its shard asks P's.
    let (mut a, mut b) = lecture_after(1_000);
    for _ in 0..20 {
        step_both(&mut a, &mut b);
    }
    assert_eq!(
        a.client(P).keyframe_requests(),
        1,
        "the new subscriber's request"
    );
    let mut seq = 20_000;
    send_video(&mut a, &mut b, 1_000, &mut seq);
    let before = a.client(P).keyframe_requests();
    let tracks = b.router.forwarded_to(S);
    let (_, video) = mids(&mut a);
    let mid_at_s = tracks
        .iter()
        .find(|t| t.publisher_mid == video)
        .expect("video track")
        .mid;
    b.request_keyframe(S, mid_at_s);
    for _ in 0..50 {
        step_both(&mut a, &mut b);
    }
    assert_eq!(a.client(P).keyframe_requests(), before + 1);
    assert_eq!(b.router.peer_stats(S).expect("S").keyframe_requests_in, 1);
}

#[test]
fn the_meetings_gate_on_the_publishers_shard_holds_on_every_shard() {
    let (mut a, mut b) = lecture();
    let (_, video) = mids(&mut a);
    a.router.set_forwarding(P, video, false);
    let mut seq = 0;
    let (_, crossed) = send_video(&mut a, &mut b, 500, &mut seq);
    assert_eq!(crossed, 0, "a gated track's packets stay on its shard");
    assert!(video_at_s(&mut a, &mut b).is_empty());
    a.router.set_forwarding(P, video, true);
    let (sent, crossed) = send_video(&mut a, &mut b, 500, &mut seq);
    assert_eq!(crossed, sent.len());
}

#[test]
fn a_publisher_who_leaves_ends_its_tracks_on_the_other_shard() {
    let (mut a, mut b) = lecture();
    let mut seq = 0;
    send_video(&mut a, &mut b, 300, &mut seq);
    a.router.remove_peer(P).expect("P");
    let mut gone = false;
    for _ in 0..(Duration::from_secs(2).as_millis()) {
        step_both(&mut a, &mut b);
        if b.router.forwarded_to(S).is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "S still receives {:?}", b.router.forwarded_to(S));
}

#[test]
fn a_packet_lost_on_the_way_to_a_remote_subscriber_is_resent_by_its_own_shard() {
    let (mut a, mut b) = lecture();
    let s_addr: std::net::SocketAddr = S_ADDR.parse().unwrap();
    let s_vp8 = *b.client(S).pt_of(Codec::Vp8);
    // Shard b's path to S loses the 10th video packet once (S's stream
    // starts at P's first sequence number).
    let lost = Rc::new(Cell::new(0u32));
    let lost_in_filter = lost.clone();
    b.link = Some(Box::new(move |_, d| {
        let x = &d.contents;
        let is_vp8 =
            d.destination == s_addr && x.len() >= 12 && x[0] >> 6 == 2 && x[1] & 0x7f == s_vp8;
        if is_vp8 && u16::from_be_bytes([x[2], x[3]]) == 5_009 && lost_in_filter.get() == 0 {
            lost_in_filter.set(1);
            return Fate::Lose;
        }
        Fate::Arrive
    }));
    let mut seq = 5_000;
    let (sent, _) = send_video(&mut a, &mut b, 600, &mut seq);
    for _ in 0..500 {
        step_both(&mut a, &mut b);
    }
    assert_eq!(lost.get(), 1, "the packet was lost");
    let mut got = video_at_s(&mut a, &mut b);
    assert_eq!(got.len(), sent.len(), "recovered by NACK and RTX");
    // It arrived late, after its successors: resent from shard b's history.
    let late = got.iter().position(|r| r.seq == 5_009).expect("resent");
    assert!(late > 9);
    got.sort_by_key(|r| r.seq);
    assert!(got.iter().zip(&sent).all(|(r, s)| r.payload == s.2));
}

const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// A browser-like simulcast publisher on shard `a`: a key frame on a layer
/// when it starts and when asked, one one-packet frame per layer every 33
/// ms; each packet's last byte names its layer.
struct Simulcaster {
    mid: Mid,
    seq: [u64; 3],
    frame: u32,
    key_pending: [bool; 3],
    seen: usize,
}

impl Simulcaster {
    fn frame(&mut self, a: &mut Net) {
        let client = a.client(P);
        for (_, e) in &client.events[self.seen..] {
            if let str0m::Event::KeyframeRequest(r) = e {
                let rid = r.rid.map(|r| r.to_string());
                if let Some(i) = RIDS.iter().position(|x| Some(x.to_string()) == rid) {
                    self.key_pending[i] = true;
                }
            }
        }
        self.seen = client.events.len();
        let pt = client.pt_of(Codec::Vp8);
        for i in 0..3 {
            let mut payload =
                harness::vp8_start(std::mem::take(&mut self.key_pending[i]).then_some(SIZES[i]));
            payload.push(i as u8);
            let ts = self
                .frame
                .wrapping_mul(3_000)
                .wrapping_add(i as u32 * 1_000_000);
            let write = str0m::rtp::RtpWrite::new(pt, self.seq[i].into(), ts, a.now, payload)
                .marker(true)
                .nackable(true);
            a.send_write(P, self.mid, Some(RIDS[i]), write);
            self.seq[i] += 1;
        }
        self.frame += 1;
    }

    fn run(&mut self, a: &mut Net, b: &mut Net, ms: u64) {
        for t in 0..ms {
            if t % 33 == 0 {
                self.frame(a);
            }
            step_both(a, b);
        }
    }
}

#[test]
fn subscribers_on_another_shard_each_get_the_simulcast_layer_their_view_calls_for() {
    const S2: PeerId = PeerId(3);
    let mut a = shard();
    let (video, _) = a.join_simulcast(P, P_ADDR, &RIDS, false);
    a.router.set_relaying(true);
    a.connect_all();
    let mut b = shard();
    b.join(S, S_ADDR, &[]);
    b.join(S2, "10.0.0.4:5000", &[]);
    b.router.set_relaying(true);
    let mut p = Simulcaster {
        mid: video,
        seq: [1_000, 20_000, 40_000],
        frame: 0,
        key_pending: [true; 3],
        seen: 0,
    };
    p.run(&mut a, &mut b, 1_000);
    let mid_of = |b: &Net, s: PeerId| {
        b.router
            .forwarded_to(s)
            .iter()
            .find(|t| t.publisher_mid == video)
            .expect("offered")
            .mid
    };
    let (m1, m2) = (mid_of(&b, S), mid_of(&b, S2));
    // A small tile and a full screen, said to the subscribers' own shard.
    b.router.set_view_size(S, P, video, 160, 90);
    b.router.set_view_size(S2, P, video, 1920, 1080);
    p.run(&mut a, &mut b, 1_500);
    let q = Some(Some(str0m::media::Rid::from("q")));
    let f = Some(Some(str0m::media::Rid::from("f")));
    assert_eq!(b.router.forwarded_layer(S, m1), q);
    assert_eq!(b.router.forwarded_layer(S2, m2), f);
    // What each received last is that layer (the last byte names it).
    let last_layer = |b: &mut Net, s: PeerId, m: Mid| {
        let got: Vec<Received> = b
            .client(s)
            .received()
            .into_iter()
            .filter(|r| r.mid == Some(m))
            .collect();
        *got.last().expect("packets").payload.last().expect("byte")
    };
    assert_eq!(last_layer(&mut b, S, m1), 0);
    assert_eq!(last_layer(&mut b, S2, m2), 2);
}

#[test]
fn the_publisher_pauses_only_the_layers_no_shard_wants() {
    let mut a = shard();
    let (video, _) = a.join_simulcast(P, P_ADDR, &RIDS, false);
    a.router.set_relaying(true);
    a.connect_all();
    let mut b = shard();
    b.join(S, S_ADDR, &[]);
    b.router.set_relaying(true);
    let mut p = Simulcaster {
        mid: video,
        seq: [1_000, 20_000, 40_000],
        frame: 0,
        key_pending: [true; 3],
        seen: 0,
    };
    p.run(&mut a, &mut b, 500);
    // The publisher's shard has no subscriber of its own: what it sends is
    // what the other shard's subscriber wants.
    b.router.set_view_size(S, P, video, 160, 90);
    p.run(&mut a, &mut b, 4_000);
    let q = str0m::media::Rid::from("q");
    assert_eq!(a.router.layers_sent(P, video), Some(vec![q]));
    // A bigger view there resumes the full layer at once.
    b.router.set_view_size(S, P, video, 1920, 1080);
    p.run(&mut a, &mut b, 1_000);
    let sent = a.router.layers_sent(P, video).expect("simulcast");
    assert!(sent.contains(&str0m::media::Rid::from("f")), "{sent:?}");
    let mid = b.router.forwarded_to(S)[0].mid;
    assert_eq!(
        b.router.forwarded_layer(S, mid),
        Some(Some(str0m::media::Rid::from("f")))
    );
}
