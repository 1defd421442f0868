//! The router between real WebRTC clients, in process on virtual time: what
//! one member sends reaches the others, continuous and under their own
//! streams; keyframe requests reach the publisher, throttled; lost packets are
//! recovered; garbage is dropped and counted; a member who leaves stops
//! reaching anyone.

mod harness;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use conclave_media::{MediaError, PeerId};
use harness::{Fate, Net, Noise, Received, Signal};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const C: PeerId = PeerId(3);
const A_ADDR: &str = "10.0.0.2:5000";
const B_ADDR: &str = "10.0.0.3:5000";
const C_ADDR: &str = "10.0.0.4:5000";

/// What A sent, per m-line, in order.
#[derive(Default)]
struct Sent {
    audio: Vec<(u64, u32, Vec<u8>)>,
    video: Vec<(u64, u32, Vec<u8>)>,
}

/// A publishes an audio and a video track, B only receives. Connected, with
/// B's offer for A's tracks answered.
fn two_members() -> Net {
    let mut net = Net::new();
    net.join(A, A_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    net
}

fn mids(net: &mut Net, id: PeerId) -> (Mid, Mid) {
    let c = net.client(id);
    (c.sending[0].0, c.sending[1].0)
}

/// A sends Opus-like packets every 20 ms and VP8-like frames of two packets
/// every 33 ms for `ms` milliseconds, starting at the given sequence numbers.
fn publish(net: &mut Net, ms: u64, audio_seq: &mut u64, video_seq: &mut u64, sent: &mut Sent) {
    let (audio_mid, video_mid) = mids(net, A);
    let opus = net.client(A).pt_of(Codec::Opus);
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    for t in 0..ms {
        if t % 20 == 0 {
            let ts = (*audio_seq as u32).wrapping_mul(960);
            let payload = vec![0xfc, (*audio_seq % 251) as u8, 0x11, 0x22];
            net.send_rtp(A, audio_mid, opus, *audio_seq, ts, false, &payload);
            sent.audio.push((*audio_seq, ts, payload));
            *audio_seq += 1;
        }
        if t % 33 == 0 {
            let ts = (*video_seq as u32).wrapping_mul(1_500);
            for part in 0..2u8 {
                // A VP8 payload descriptor (S bit on the first packet), then
                // bytes the router must pass through untouched.
                let payload = vec![
                    if part == 0 { 0x10 } else { 0x00 },
                    (*video_seq % 251) as u8,
                    part,
                    0xab,
                ];
                net.send_rtp(A, video_mid, vp8, *video_seq, ts, part == 1, &payload);
                sent.video.push((*video_seq, ts, payload));
                *video_seq += 1;
            }
        }
        net.step();
    }
}

/// What B received from A's track `publisher_mid`.
fn received_from(net: &mut Net, id: PeerId, publisher_mid: Mid) -> Vec<Received> {
    let tracks = net.router.forwarded_to(id);
    let Some(track) = tracks.iter().find(|t| t.publisher_mid == publisher_mid) else {
        return Vec::new();
    };
    net.client(id)
        .received()
        .into_iter()
        .filter(|r| r.mid == Some(track.mid))
        .collect()
}

fn assert_continuous(received: &[Received], sent: &[(u64, u32, Vec<u8>)]) {
    assert_eq!(received.len(), sent.len(), "every packet arrives once");
    let ssrc = received[0].ssrc;
    for (i, (r, s)) in received.iter().zip(sent).enumerate() {
        assert_eq!(r.ssrc, ssrc, "one stream");
        assert_eq!(r.payload, s.2, "payload untouched");
        if i > 0 {
            let prev = &received[i - 1];
            assert_eq!(r.seq, prev.seq + 1, "continuous sequence numbers");
            let sent_step = s.1.wrapping_sub(sent[i - 1].1);
            assert_eq!(r.timestamp.wrapping_sub(prev.timestamp), sent_step);
        }
    }
}

#[test]
fn members_receive_each_others_media_on_their_own_streams() {
    let mut net = two_members();
    // B was offered both of A's tracks (str0m may report A's m-lines one
    // drain apart, hence maybe two offers), and nothing was offered to A.
    let offered: Vec<_> = net
        .signals
        .iter()
        .filter_map(|s| match s {
            Signal::Offer { peer, tracks } => Some((*peer, tracks.clone())),
            _ => None,
        })
        .collect();
    assert!(offered.iter().all(|(peer, _)| *peer == B), "{offered:#?}");
    let mut last = offered.last().unwrap().1.clone();
    assert_eq!(last.len(), 2);
    assert!(last.iter().all(|t| t.publisher == A));
    let mut live = net.router.forwarded_to(B);
    last.sort_by_key(|t| t.mid);
    live.sort_by_key(|t| t.mid);
    assert_eq!(live, last);
    assert!(net.router.forwarded_to(A).is_empty());

    let (audio_mid, video_mid) = mids(&mut net, A);
    let a_audio_ssrc = net.client(A).ssrc_of(audio_mid);
    let a_video_ssrc = net.client(A).ssrc_of(video_mid);
    let mut sent = Sent::default();
    // Video starts just before the 16-bit wrap of the sequence number.
    let (mut audio_seq, mut video_seq) = (1_000, 65_520);
    publish(&mut net, 1_000, &mut audio_seq, &mut video_seq, &mut sent);
    net.run_for(Duration::from_millis(50));

    let video = received_from(&mut net, B, video_mid);
    let audio = received_from(&mut net, B, audio_mid);
    assert_continuous(&video, &sent.video);
    assert_continuous(&audio, &sent.audio);
    assert!(video.last().unwrap().seq >= 65_536, "crossed the wrap");
    assert_ne!(video[0].ssrc, a_video_ssrc, "B's own SSRC, not A's");
    assert_ne!(audio[0].ssrc, a_audio_ssrc, "B's own SSRC, not A's");
    assert_eq!(video[0].pt, net.client(B).pt_of(Codec::Vp8));
    assert_eq!(audio[0].pt, net.client(B).pt_of(Codec::Opus));
    assert!(video.iter().step_by(2).all(|r| !r.marker));
    assert!(video.iter().skip(1).step_by(2).all(|r| r.marker));

    let a_stats = net.router.peer_stats(A).unwrap().clone();
    let b_stats = net.router.peer_stats(B).unwrap().clone();
    let total = (sent.audio.len() + sent.video.len()) as u64;
    assert_eq!(a_stats.rtp_in, total);
    assert_eq!(b_stats.rtp_forwarded, total);
    assert_eq!(b_stats.rtp_dropped, 0);
    assert!(b_stats.datagrams_out >= total);
}

#[test]
fn keyframe_requests_reach_the_publisher_at_most_twice_a_second() {
    let mut net = two_members();
    let (_, video_mid) = mids(&mut net, A);
    let (mut audio_seq, mut video_seq) = (0, 0);
    let mut sent = Sent::default();
    publish(&mut net, 700, &mut audio_seq, &mut video_seq, &mut sent);
    let b_video_mid = net
        .router
        .forwarded_to(B)
        .iter()
        .find(|t| t.publisher_mid == video_mid)
        .unwrap()
        .mid;
    let before = net.client(A).keyframe_requests();

    // B loses the picture and asks five times in 100 ms.
    for _ in 0..5 {
        net.request_keyframe(B, b_video_mid);
        net.run_for(Duration::from_millis(20));
    }
    assert_eq!(
        net.client(A).keyframe_requests(),
        before + 1,
        "first one at once"
    );
    assert_eq!(net.router.peer_stats(B).unwrap().keyframe_requests_in, 5);

    // The other four are merged into one, sent when the interval is over.
    net.run_for(Duration::from_millis(450));
    assert_eq!(net.client(A).keyframe_requests(), before + 2);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.client(A).keyframe_requests(),
        before + 2,
        "nothing more"
    );
    assert_eq!(net.router.stats().keyframe_requests_deferred, 4);
    assert!(net.router.peer_stats(A).unwrap().keyframe_requests_out >= 2);
}

#[test]
fn a_late_joiner_is_offered_existing_tracks_and_gets_a_keyframe_soon() {
    let mut net = two_members();
    let (mut audio_seq, mut video_seq) = (0, 0);
    let mut sent = Sent::default();
    publish(&mut net, 1_000, &mut audio_seq, &mut video_seq, &mut sent);
    let before = net.client(A).keyframe_requests();

    net.join(C, C_ADDR, &[]);
    net.connect_all();
    assert_eq!(net.router.forwarded_to(C).len(), 2);
    assert_eq!(
        net.client(A).keyframe_requests(),
        before + 1,
        "the publisher is asked for a keyframe for the newcomer"
    );
    let mut later = Sent::default();
    publish(&mut net, 200, &mut audio_seq, &mut video_seq, &mut later);
    let (_, video_mid) = mids(&mut net, A);
    let video = received_from(&mut net, C, video_mid);
    assert_continuous(&video, &later.video);
}

#[test]
fn a_lost_packet_is_resent_from_the_routers_history() {
    let mut net = two_members();
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let b_vp8 = *net.client(B).pt_of(Codec::Vp8);
    // The router → B path loses the 10th video packet once. Its outgoing
    // sequence number is A's (the stream started at A's first number).
    let lost = Rc::new(Cell::new(0u32));
    let lost_in_filter = lost.clone();
    net.link = Some(Box::new(move |_, d| {
        let b = &d.contents;
        let is_vp8 =
            d.destination == b_addr && b.len() >= 12 && b[0] >> 6 == 2 && b[1] & 0x7f == b_vp8;
        if is_vp8 && u16::from_be_bytes([b[2], b[3]]) == 5_009 && lost_in_filter.get() == 0 {
            lost_in_filter.set(1);
            return Fate::Lose;
        }
        Fate::Arrive
    }));
    let (mut audio_seq, mut video_seq) = (0, 5_000);
    let mut sent = Sent::default();
    publish(&mut net, 600, &mut audio_seq, &mut video_seq, &mut sent);
    net.run_for(Duration::from_millis(500));
    assert_eq!(lost.get(), 1, "the packet was lost");

    let (_, video_mid) = mids(&mut net, A);
    let mut video = received_from(&mut net, B, video_mid);
    assert_eq!(video.len(), sent.video.len(), "recovered by NACK and RTX");
    // It arrived late, after its successors.
    let late = video.iter().position(|r| r.seq == 5_009).unwrap();
    assert!(late > 9);
    video.sort_by_key(|r| r.seq);
    assert_continuous(&video, &sent.video);
}

#[test]
fn garbage_is_dropped_and_counted_and_media_keeps_flowing() {
    let mut net = two_members();
    let (mut audio_seq, mut video_seq) = (0, 0);
    let mut sent = Sent::default();
    publish(&mut net, 200, &mut audio_seq, &mut video_seq, &mut sent);

    let stranger: std::net::SocketAddr = "203.0.113.9:4444".parse().unwrap();
    let a_addr: std::net::SocketAddr = A_ADDR.parse().unwrap();
    let mut noise = Noise::new(7);
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for len in [0usize, 1, 2, 3, 11, 12, 13, 20, 100, 1_200, 1_500, 4_000] {
        datagrams.push(noise.bytes(len));
        for first in [0x00u8, 0x01, 0x16, 0x17, 0x80, 0x90, 0xc8] {
            let mut d = noise.bytes(len.max(1));
            d[0] = first;
            datagrams.push(d);
        }
    }
    // Truncated STUN binding request (magic cookie present, body missing).
    datagrams.push(vec![
        0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3,
    ]);
    // A DTLS ClientHello header with nothing after it.
    datagrams.push(vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 200]);
    // RTP and RTCP headers with bytes that fail SRTP authentication.
    let mut rtp = vec![0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend(noise.bytes(100));
    datagrams.push(rtp);
    let mut rtcp = vec![0x80, 0xc8, 0x00, 0x06, 0xde, 0xad, 0xbe, 0xef];
    rtcp.extend(noise.bytes(40));
    datagrams.push(rtcp);
    for _ in 0..200 {
        let len = (noise.next_u64() % 1_500) as usize;
        datagrams.push(noise.bytes(len));
    }

    let before = net.router.stats();
    for d in &datagrams {
        net.inject(stranger, d);
        // From a member's own address too: its session must shrug it off.
        net.inject(a_addr, d);
    }
    let after = net.router.stats();
    assert_eq!(
        after.datagrams_in - before.datagrams_in,
        2 * datagrams.len() as u64
    );
    assert!(
        after.garbage > before.garbage,
        "unclassifiable bytes counted"
    );
    assert!(
        after.unknown_source > before.unknown_source,
        "strangers counted"
    );
    let dropped = (after.garbage - before.garbage) + (after.unknown_source - before.unknown_source);
    assert!(
        dropped >= datagrams.len() as u64,
        "every stranger's datagram dropped"
    );
    assert_eq!(net.router.peer_stats(B).unwrap().rtp_dropped, 0);

    // Nothing of it reached B, and the meeting goes on.
    let mut more = Sent::default();
    publish(&mut net, 500, &mut audio_seq, &mut video_seq, &mut more);
    net.run_for(Duration::from_millis(50));
    let (audio_mid, video_mid) = mids(&mut net, A);
    let all_video: Vec<_> = sent.video.into_iter().chain(more.video).collect();
    let all_audio: Vec<_> = sent.audio.into_iter().chain(more.audio).collect();
    assert_continuous(&received_from(&mut net, B, video_mid), &all_video);
    assert_continuous(&received_from(&mut net, B, audio_mid), &all_audio);
    assert!(net.router.is_connected(A) && net.router.is_connected(B));
}

/// As the server's media worker drives it: the worker remembers which
/// peer took a source's last datagram and hands it the next one directly.
#[test]
fn a_known_source_goes_straight_to_its_peer_and_a_wrong_guess_changes_nothing() {
    let mut net = Net::new();
    net.steering = Some(Default::default());
    net.join(A, A_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let (mut audio_seq, mut video_seq) = (0, 0);
    let mut sent = Sent::default();
    publish(&mut net, 300, &mut audio_seq, &mut video_seq, &mut sent);
    net.run_for(Duration::from_millis(50));
    let (audio_mid, video_mid) = mids(&mut net, A);
    assert_continuous(&received_from(&mut net, B, video_mid), &sent.video);
    assert_continuous(&received_from(&mut net, B, audio_mid), &sent.audio);
    let a_addr: std::net::SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let steering = net.steering.as_ref().unwrap();
    assert_eq!(steering.get(&a_addr), Some(&A));
    assert_eq!(steering.get(&b_addr), Some(&B));
    let stats = net.router.stats();
    assert_eq!(
        stats.datagrams_in,
        net.router.peer_stats(A).unwrap().datagrams_in
            + net.router.peer_stats(B).unwrap().datagrams_in,
        "every datagram counted once, by the peer that took it"
    );

    // RTP-shaped bytes from A's address, guessed to be B's or a stranger's:
    // refused, and nothing is counted or handed to anyone.
    let mut rtp = vec![0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend(Noise::new(3).bytes(100));
    let (now, to) = (net.now, net.router_addr);
    let a_before = net.router.peer_stats(A).unwrap().clone();
    let b_before = net.router.peer_stats(B).unwrap().clone();
    assert!(!net.router.handle_receive_from(B, now, a_addr, to, &rtp));
    assert!(
        !net.router
            .handle_receive_from(PeerId(99), now, a_addr, to, &rtp)
    );
    assert_eq!(net.router.stats(), stats);
    assert_eq!(net.router.peer_stats(B), Some(&b_before));
    // The right guess takes it (SRTP refuses the bytes), garbage from a
    // known address is counted as garbage.
    assert!(net.router.handle_receive_from(A, now, a_addr, to, &rtp));
    assert!(
        net.router
            .handle_receive_from(A, now, a_addr, to, &[0xff; 20])
    );
    let after = net.router.stats();
    assert_eq!(after.datagrams_in, stats.datagrams_in + 2);
    assert_eq!(after.garbage, stats.garbage + 1);
    assert_eq!(
        net.router.peer_stats(A).unwrap().datagrams_in,
        a_before.datagrams_in + 1
    );

    // A stale entry (B's address remembered as A's, as after a peer left and
    // its address was reused): the guess fails, the entry is replaced, and
    // B's datagrams (its RTCP feedback) still reach B.
    net.steering.as_mut().unwrap().insert(b_addr, A);
    let b_in = net.router.peer_stats(B).unwrap().datagrams_in;
    let mut more = Sent::default();
    publish(&mut net, 200, &mut audio_seq, &mut video_seq, &mut more);
    net.run_for(Duration::from_millis(1_000));
    assert_eq!(net.steering.as_ref().unwrap().get(&b_addr), Some(&B));
    assert!(net.router.peer_stats(B).unwrap().datagrams_in > b_in);
    assert!(net.router.is_connected(A) && net.router.is_connected(B));
}

#[test]
fn removing_a_member_stops_its_media_for_everyone() {
    let mut net = two_members();
    let (mut audio_seq, mut video_seq) = (0, 0);
    let mut sent = Sent::default();
    publish(&mut net, 300, &mut audio_seq, &mut video_seq, &mut sent);
    let (_, video_mid) = mids(&mut net, A);
    let b_video_mid = net
        .router
        .forwarded_to(B)
        .iter()
        .find(|t| t.publisher_mid == video_mid)
        .unwrap()
        .mid;
    let got = net.client(B).received().len();
    assert!(got > 0);

    net.router.remove_peer(A).unwrap();
    net.settle();
    assert_eq!(net.router.peers().collect::<Vec<_>>(), vec![B]);
    assert!(net.router.forwarded_to(B).is_empty());
    // B was offered the end of both streams.
    let last_offer = net.signals.iter().rev().find_map(|s| match s {
        Signal::Offer { peer, tracks } if *peer == B => Some(tracks.clone()),
        _ => None,
    });
    assert_eq!(last_offer, Some(Vec::new()));
    assert!(net.client(B).rtc.media(b_video_mid).unwrap().disabled());

    // A was told too (DTLS close_notify): its session is over.
    assert!(
        net.client(A)
            .events
            .iter()
            .any(|(_, e)| matches!(e, str0m::Event::Closed))
    );
    // Whatever A's address still sends is a stranger's.
    let before = net.router.stats().unknown_source;
    let mut more = Sent::default();
    publish(&mut net, 300, &mut audio_seq, &mut video_seq, &mut more);
    net.inject(
        A_ADDR.parse().unwrap(),
        &[0x80, 0x60, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5],
    );
    assert_eq!(net.client(B).received().len(), got);
    assert_eq!(net.router.stats().unknown_source, before + 1);
    assert!(net.router.remove_peer(A).is_err(), "gone is gone");
}

#[test]
fn a_member_that_goes_silent_is_reported_disconnected() {
    let mut net = two_members();
    net.client(A).silent = true;
    net.run_until(Duration::from_secs(40), |net| {
        net.signals
            .iter()
            .any(|s| matches!(s, Signal::Disconnected(p) if *p == A))
    });
    assert!(
        !net.signals
            .iter()
            .any(|s| matches!(s, Signal::Disconnected(p) if *p == B)),
        "B answers its consent checks and stays"
    );
    // The peer is kept until the meeting removes it.
    assert!(net.router.peers().any(|p| p == A));
}

#[test]
fn a_track_added_later_is_offered_and_a_stopped_one_withdrawn() {
    let mut net = two_members();
    assert_eq!(net.router.forwarded_to(B).len(), 2);

    // A starts a screen share: a second video m-line.
    let screen = net.reoffer(A, &[MediaKind::Video], &[])[0];
    assert_eq!(net.router.forwarded_to(B).len(), 3);
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    for seq in 0..5u64 {
        net.send_rtp(
            A,
            screen,
            vp8,
            9_000 + seq,
            seq as u32 * 3_000,
            true,
            &[0x10, 1],
        );
        net.step();
    }
    assert_eq!(received_from(&mut net, B, screen).len(), 5);

    // A stops its camera: B is offered the end of that stream only.
    let (_, camera) = mids(&mut net, A);
    net.reoffer(A, &[], &[camera]);
    let tracks = net.router.forwarded_to(B);
    assert_eq!(tracks.len(), 2);
    assert!(tracks.iter().all(|t| t.publisher_mid != camera));
    let Some(Signal::Offer {
        peer,
        tracks: offered,
    }) = net.signals.last()
    else {
        panic!("B was offered the change");
    };
    assert_eq!(*peer, B);
    assert_eq!(offered.len(), 2);
}

#[test]
fn a_publisher_without_a_common_codec_is_offered_to_nobody() {
    let mut net = Net::new();
    net.join(B, B_ADDR, &[]);
    // A sends only H.264, which this router does not forward.
    let rtc = str0m::Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(net.now);
    let result = net.join_with(A, A_ADDR, &[MediaKind::Video], rtc);
    assert!(
        matches!(result, Err(MediaError::NoUsableCodec { peer: A, ref mids }) if mids.len() == 1),
        "{result:?}"
    );
    net.run_for(Duration::from_millis(500));
    assert!(net.router.forwarded_to(B).is_empty());
    assert!(
        !net.signals
            .iter()
            .any(|s| matches!(s, Signal::Offer { peer, .. } if *peer == B))
    );
}
