//! The fast forwarding path (`RouterConfig::fast_path`, issue 16) between
//! stock str0m clients on virtual time: audio and video sealed outside
//! str0m arrive whole and continuous, across the sequence number wrap; a lost packet is
//! resent from the fast path's own history; and no (SSRC, sequence number)
//! ever leaves the router under two different ciphertexts, which would mean
//! an AES-GCM nonce sealed twice by str0m and the fast path.

mod harness;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use conclave_media::PeerId;
use harness::{Fate, Net, Received};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const A_ADDR: &str = "10.0.0.2:5000";
const B_ADDR: &str = "10.0.0.3:5000";

/// A publishes audio and video, B receives; the router's fast path is on.
fn two_members() -> Net {
    let mut net = Net::with_config(|c| c.fast_path = true);
    net.join(A, A_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    net
}

type Sent = Vec<(u64, u32, Vec<u8>)>;

/// A sends audio every 20 ms and a two-packet video frame every 33 ms for
/// `ms` milliseconds; returns what it sent of each, in order.
fn publish(net: &mut Net, ms: u64, mut audio_seq: u64, mut video_seq: u64) -> (Sent, Sent) {
    let (audio_mid, video_mid) = (net.client(A).sending[0].0, net.client(A).sending[1].0);
    let opus = net.client(A).pt_of(Codec::Opus);
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    for t in 0..ms {
        if t % 20 == 0 {
            let ts = (audio_seq as u32).wrapping_mul(960);
            let payload = vec![0xfc, (audio_seq % 251) as u8, 0x11];
            net.send_rtp(A, audio_mid, opus, audio_seq, ts, false, &payload);
            audio.push((audio_seq, ts, payload));
            audio_seq += 1;
        }
        if t % 33 == 0 {
            let ts = (video_seq as u32).wrapping_mul(1_500);
            for part in 0..2u8 {
                let first = if part == 0 { 0x10 } else { 0x00 };
                let payload = vec![first, (video_seq % 251) as u8, part, 0xab];
                net.send_rtp(A, video_mid, vp8, video_seq, ts, part == 1, &payload);
                video.push((video_seq, ts, payload));
                video_seq += 1;
            }
        }
        net.step();
    }
    (audio, video)
}

fn received_from(net: &mut Net, id: PeerId, publisher_mid: Mid) -> Vec<Received> {
    let tracks = net.router.forwarded_to(id);
    let track = tracks
        .iter()
        .find(|t| t.publisher_mid == publisher_mid)
        .expect("forwarded");
    net.client(id)
        .received()
        .into_iter()
        .filter(|r| r.mid == Some(track.mid))
        .collect()
}

fn assert_continuous(received: &[Received], sent: &Sent) {
    assert_eq!(received.len(), sent.len(), "every packet arrives once");
    for (i, (r, s)) in received.iter().zip(sent).enumerate() {
        assert_eq!(r.ssrc, received[0].ssrc, "one stream");
        assert_eq!(r.payload, s.2, "payload untouched");
        if i > 0 {
            let prev = &received[i - 1];
            assert_eq!(r.seq, prev.seq + 1, "continuous sequence numbers");
            assert_eq!(
                r.timestamp.wrapping_sub(prev.timestamp),
                s.1.wrapping_sub(sent[i - 1].1)
            );
        }
    }
}

/// Records every RTP datagram the router sends B, by (SSRC, sequence
/// number), and counts those that repeat one under other bytes.
fn watch_nonces(net: &mut Net, lose_seq: Option<u16>) -> Rc<RefCell<(usize, usize)>> {
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let b_vp8 = *net.client(B).pt_of(Codec::Vp8);
    let counts = Rc::new(RefCell::new((0usize, 0usize)));
    let seen: RefCell<HashMap<(u32, u16), Vec<u8>>> = RefCell::default();
    let mut lost = false;
    let out = counts.clone();
    net.link = Some(Box::new(move |_, d| {
        let b = &d.contents;
        if d.destination != b_addr || b.len() < 12 || b[0] >> 6 != 2 || (192..=223).contains(&b[1])
        {
            return Fate::Arrive;
        }
        let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let seq = u16::from_be_bytes([b[2], b[3]]);
        let mut seen = seen.borrow_mut();
        match seen.get(&(ssrc, seq)) {
            Some(before) if before != b => out.borrow_mut().1 += 1,
            Some(_) => {}
            None => {
                seen.insert((ssrc, seq), b.clone());
            }
        }
        out.borrow_mut().0 += 1;
        if !lost && b[1] & 0x7f == b_vp8 && Some(seq) == lose_seq {
            lost = true;
            return Fate::Lose;
        }
        Fate::Arrive
    }));
    counts
}

#[test]
fn audio_and_video_sealed_by_the_router_arrive_whole_and_continuous() {
    let mut net = two_members();
    let nonces = watch_nonces(&mut net, None);
    // Video starts just before the 16-bit wrap: the rollover counter moves.
    let (audio, video) = publish(&mut net, 2_500, 1_000, 65_500);
    net.run_for(Duration::from_millis(50));
    let (audio_mid, video_mid) = (net.client(A).sending[0].0, net.client(A).sending[1].0);
    let got_video = received_from(&mut net, B, video_mid);
    let got_audio = received_from(&mut net, B, audio_mid);
    assert_continuous(&got_video, &video);
    assert_continuous(&got_audio, &audio);
    assert!(got_video.last().unwrap().seq >= 65_536, "crossed the wrap");
    assert_eq!(got_video[0].pt, net.client(B).pt_of(Codec::Vp8));

    let b = net.router.peer_stats(B).unwrap().clone();
    // Everything but about one packet a second per stream (str0m's, for
    // its sender reports) took the fast path: 2.5 s, two streams.
    let total = video.len() + audio.len();
    let sealed = b.fast_sealed as usize;
    assert!(sealed >= total - 8 && sealed < total, "{b:?}");
    assert_eq!(b.fast_seal_errors, 0);
    assert_eq!(b.rtp_forwarded as usize, total);
    let (datagrams, reused) = *nonces.borrow();
    assert!(datagrams >= video.len() + audio.len());
    assert_eq!(reused, 0, "an (SSRC, seq) sent under two ciphertexts");
    // Every packet carried the fast path's transport-wide number, str0m's
    // (the anchors) sealed again with theirs, and B's TWCC feedback on them
    // made the estimate the layer choice reads.
    assert!(b.fast_resealed >= 4, "{b:?}");
    assert!(b.fast_twcc_reports > 20, "{b:?}");
    assert_eq!(b.fast_twcc_refused, 0, "{b:?}");
    assert!(net.router.bandwidth_estimate(B).is_some());
}

/// Garbage from the subscriber's address while it receives (RTCP-looking
/// datagrams, feedback-looking ones, random bytes) is dropped: the router
/// neither panics nor stalls, and the media goes on arriving whole.
#[test]
fn garbage_feedback_from_the_subscriber_is_dropped_and_media_goes_on() {
    let mut net = two_members();
    let nonces = watch_nonces(&mut net, None);
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let mut noise = harness::Noise::new(16);
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    for round in 0..10u64 {
        for i in 0..50usize {
            let mut d = noise.bytes(8 + i * 7 % 200);
            // Half look like RTCP transport feedback (PT 205, FMT 15: TWCC).
            if i % 2 == 0 {
                d[0] = 0x8f;
                d[1] = 205;
            }
            net.inject(b_addr, &d);
        }
        let (a, v) = publish(&mut net, 200, 100 + round * 10, 1_000 + round * 14);
        audio.extend(a);
        video.extend(v);
    }
    net.run_for(Duration::from_millis(100));
    let (audio_mid, video_mid) = (net.client(A).sending[0].0, net.client(A).sending[1].0);
    assert_continuous(&received_from(&mut net, B, video_mid), &video);
    assert_continuous(&received_from(&mut net, B, audio_mid), &audio);
    assert!(net.router.stats().garbage > 0 || net.router.peer_stats(B).unwrap().rtc_errors > 0);
    assert_eq!(nonces.borrow().1, 0);
}

#[test]
fn a_lost_fast_packet_is_resent_from_the_fast_paths_history() {
    let mut net = two_members();
    // The 10th video packet (not the first, which goes through str0m) is
    // lost once on the way to B.
    let nonces = watch_nonces(&mut net, Some(5_009));
    let (_, video) = publish(&mut net, 600, 0, 5_000);
    net.run_for(Duration::from_millis(500));
    let video_mid = net.client(A).sending[1].0;
    let mut got = received_from(&mut net, B, video_mid);
    assert_eq!(got.len(), video.len(), "recovered");
    let late = got.iter().position(|r| r.seq == 5_009).unwrap();
    assert!(late > 9, "resent after its successors");
    got.sort_by_key(|r| r.seq);
    assert_continuous(&got, &video);
    let b = net.router.peer_stats(B).unwrap().clone();
    assert!(b.fast_resent >= 1, "{b:?}");
    // Sealed again from the kept header and the shared payload: the same
    // bytes as the first time, and no seal refused.
    assert_eq!(nonces.borrow().1, 0, "a resend is the same bytes");
    assert_eq!(b.fast_seal_errors, 0, "{b:?}");
}

/// A subscriber that drops and comes back as a new session under the same
/// peer id (a browser's resume) connects again and receives on the fast
/// path, as the first session did.
#[test]
fn a_subscriber_that_comes_back_as_a_new_session_receives_again() {
    let mut net = two_members();
    let (_, video) = publish(&mut net, 400, 0, 1_000);
    let video_mid = net.client(A).sending[1].0;
    assert_eq!(received_from(&mut net, B, video_mid).len(), video.len());

    net.router.remove_peer(B).expect("B's session ends");
    net.settle();
    net.clients.retain(|c| c.id != B);
    net.join(B, "10.0.0.3:5001", &[]);
    net.connect_all();
    assert!(net.router.is_connected(B));
    let (_, video) = publish(&mut net, 600, 100, 2_000);
    net.run_for(Duration::from_millis(100));
    let got = received_from(&mut net, B, video_mid);
    // Some from before its stream was bound may be missing; the rest
    // arrives whole.
    assert!(
        got.len() + 4 >= video.len(),
        "{} of {}",
        got.len(),
        video.len()
    );
    let b = net.router.peer_stats(B).unwrap();
    assert!(b.fast_sealed > 0 && b.fast_twcc_reports > 0, "{b:?}");
}

/// A member who joins while others publish has its streams' first packets
/// forwarded before its DTLS handshake ends, when the fast path has no keys
/// yet: those go to str0m, and the streams move to the fast path once the
/// keys are there, with no (SSRC, sequence number) sealed twice and the
/// stream continuous across the move.
#[test]
fn streams_that_start_before_the_keys_move_to_the_fast_path() {
    let mut net = Net::with_config(|c| c.fast_path = true);
    net.join(A, A_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    net.connect_all();
    // The router's DTLS records to B are lost until `hold` is cleared.
    let hold = Rc::new(std::cell::Cell::new(true));
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let holding = hold.clone();
    net.link = Some(Box::new(move |_, d| {
        let dtls = d.contents.first().is_some_and(|b| (20..=63).contains(b));
        if holding.get() && dtls && d.destination == b_addr {
            harness::Fate::Lose
        } else {
            harness::Fate::Arrive
        }
    }));
    net.join(B, B_ADDR, &[]);
    publish(&mut net, 300, 0, 1_000);
    let b = net.router.peer_stats(B).unwrap().clone();
    assert!(!net.router.is_connected(B));
    assert!(b.rtp_forwarded > 0 && b.fast_sealed == 0, "{b:?}");

    hold.set(false);
    net.run_until(Duration::from_secs(10), |net| {
        net.router.is_connected(B) && net.client(B).is_connected()
    });
    let nonces = watch_nonces(&mut net, None);
    let before = net.router.peer_stats(B).unwrap().clone();
    let (audio, video) = publish(&mut net, 2_000, 100, 2_000);
    net.run_for(Duration::from_millis(50));
    let b = net.router.peer_stats(B).unwrap().clone();
    let total = audio.len() + video.len();
    let sealed = (b.fast_sealed - before.fast_sealed) as usize;
    // All but the first packet or two of each stream (while str0m still
    // had some to let out) and the anchors, one a second per stream.
    assert!(sealed + 12 >= total, "{sealed} of {total}: {b:?}");
    assert_eq!(b.fast_seal_errors, 0, "{b:?}");
    assert_eq!(
        nonces.borrow().1,
        0,
        "an (SSRC, seq) sent under two ciphertexts"
    );
    let (audio_mid, video_mid) = (net.client(A).sending[0].0, net.client(A).sending[1].0);
    for (mid, sent) in [(video_mid, &video), (audio_mid, &audio)] {
        let got = received_from(&mut net, B, mid);
        let tail = &got[got.len().saturating_sub(sent.len())..];
        assert_continuous(tail, sent);
    }
}

/// Packets repaired late on the publisher's hop (each reaches the router
/// 150 ms after the packet behind it, as a resend does), again and again,
/// make the router ask the subscriber, in the playout-delay header
/// extension it negotiated, for a minimum playout delay that covers that
/// lateness, reached in small steps; packets before the third such repair
/// ask for nothing (one or two are no evidence of a network that repairs
/// late, and should not hold every frame back), and reordering by a few
/// milliseconds asks for nothing either.
#[test]
fn a_late_repair_on_the_publishers_hop_asks_the_subscriber_to_wait_for_it() {
    use str0m::Rtc;
    use str0m::media::MediaTime;
    use str0m::rtp::{Extension, RtpWrite};

    let mut net = Net::with_config(|c| c.fast_path = true);
    net.join(A, A_ADDR, &[MediaKind::Video]);
    let mut config = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true);
    config.extension_map().set(5, Extension::PlayoutDelay);
    let rtc = config.build(net.now);
    net.join_with(B, B_ADDR, &[], rtc).expect("router answers");
    net.connect_all();
    let mid = net.client(A).sending[0].0;
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    // One packet a frame, every 33 ms; `seq` 1_000 + frame.
    let write = |net: &mut Net, seq: u64| {
        let ts = (seq as u32).wrapping_mul(3_000);
        let now = net.now;
        // Not kept for resends: the router's NACK for a held-back packet
        // finds nothing at A, so it arrives only when written.
        let w = RtpWrite::new(vp8, seq.into(), ts, now, vec![0x10, seq as u8, 0xab]).marker(true);
        net.send_write(A, mid, None, w);
    };
    for seq in 1_000..1_030 {
        write(&mut net, seq);
        net.run_for(Duration::from_millis(33));
    }
    // Reordered by 10 ms: not a repair.
    write(&mut net, 1_031);
    net.run_for(Duration::from_millis(10));
    write(&mut net, 1_030);
    net.run_for(Duration::from_millis(23));
    let reordered_until = net.now;
    // `seq - 1..seq + 6`, `seq` held back 150 ms behind `seq + 1`.
    let late_repair = |net: &mut Net, seq: u64| {
        write(net, seq - 1);
        net.run_for(Duration::from_millis(33));
        write(net, seq + 1);
        for s in seq + 2..seq + 6 {
            net.run_for(Duration::from_millis(33));
            write(net, s);
        }
        net.run_for(Duration::from_millis(18));
        write(net, seq);
    };
    // Three such repairs, 0.66 s apart.
    late_repair(&mut net, 1_033);
    let first_repair = net.now;
    for seq in 1_039..1_052 {
        net.run_for(Duration::from_millis(33));
        write(&mut net, seq);
    }
    net.run_for(Duration::from_millis(33));
    late_repair(&mut net, 1_053);
    for seq in 1_059..1_072 {
        net.run_for(Duration::from_millis(33));
        write(&mut net, seq);
    }
    net.run_for(Duration::from_millis(33));
    late_repair(&mut net, 1_073);
    let repaired_at = net.now;
    // Three seconds more: the minimum asked for ramps up to it.
    for seq in 1_079..1_170 {
        net.run_for(Duration::from_millis(33));
        write(&mut net, seq);
    }
    net.run_for(Duration::from_millis(50));

    // B receives A's video only.
    let delays: Vec<(std::time::Instant, Option<MediaTime>, Option<MediaTime>)> = net
        .client(B)
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            str0m::Event::RtpPacket(p) => Some((
                *at,
                p.header.ext_vals.play_delay_min,
                p.header.ext_vals.play_delay_max,
            )),
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 165, "B got the video: {}", delays.len());
    let before: Vec<_> = delays
        .iter()
        .filter(|d| d.0 <= reordered_until + Duration::from_millis(5))
        .collect();
    assert!(before.len() >= 30);
    assert!(
        before.iter().all(|d| d.1.is_none()),
        "no delay asked for before any repair, nor for reordering"
    );
    let between: Vec<_> = delays
        .iter()
        .filter(|d| d.0 > first_repair && d.0 < repaired_at)
        .collect();
    assert!(between.len() >= 35);
    assert!(
        between.iter().all(|d| d.1.is_none()),
        "no delay asked for from two late repairs: {:?}",
        between
            .iter()
            .map(|d| (d.0 - first_repair, d.1))
            .collect::<Vec<_>>()
    );
    let after: Vec<Duration> = delays
        .iter()
        .filter(|d| d.0 > repaired_at)
        .filter_map(|d| Some(Duration::from(d.1?)))
        .collect();
    // Every packet after the third, but for str0m's anchors (about one a
    // second); the minimum rises by at most 100 ms a second (Chromium
    // applies it to render times at once: a jump would itself be a freeze),
    // to 230 ms: the repairs, 183 ms after each was due (when the packet
    // before it came), and a margin, in the extension's 10 ms units.
    assert!(after.len() >= 85, "{after:?}");
    assert!(after[0] <= Duration::from_millis(10), "{after:?}");
    assert!(
        after
            .windows(2)
            .all(|w| w[1] >= w[0] && w[1] - w[0] <= Duration::from_millis(10)),
        "{after:?}"
    );
    assert_eq!(after.last(), Some(&Duration::from_millis(230)), "{after:?}");
    let max = delays.iter().rev().find_map(|d| d.2).map(Duration::from);
    assert_eq!(
        max,
        Some(Duration::from_secs(10)),
        "the maximum left as Chromium's default"
    );
}

/// A worker that was stalled reads its backlog at once, and the router
/// seals all of it at one instant: here a publisher's 256 packets reaching
/// the router together. B's copies leave through its pacer (`pacer.rs`) in
/// bursts of at most 24 within any millisecond, in order, all within about
/// 60 ms; the steady video before and after, a packet a millisecond (six
/// 1.4 Mbit/s videos' worth), arrives the instant it was sent.
#[test]
fn a_backlog_reaches_the_subscriber_paced_and_steady_video_waits_for_nothing() {
    let mut net = Net::with_config(|c| {
        c.fast_path = true;
        c.pacing = true;
    });
    net.join(A, A_ADDR, &[MediaKind::Audio, MediaKind::Video]);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    let video_mid = net.client(A).sending[1].0;
    let vp8 = net.client(A).pt_of(Codec::Vp8);
    let payload = |seq: u64| {
        let mut p = vec![0xab; 1_100];
        p[..3].copy_from_slice(&[0x00, (seq % 251) as u8, (seq / 251) as u8]);
        p
    };
    let mut seq = 20_000u64;
    let steady = |net: &mut Net, seq: &mut u64, ms: u64| {
        let mut sent = Vec::new();
        for _ in 0..ms {
            let ts = (*seq as u32).wrapping_mul(90);
            net.send_rtp(A, video_mid, vp8, *seq, ts, true, &payload(*seq));
            sent.push((*seq, net.now));
            *seq += 1;
            net.step();
        }
        sent
    };
    let mut sent = steady(&mut net, &mut seq, 1_000);
    let paced_before = net.router.peer_stats(B).unwrap().fast_paced;

    let stall_at = net.now;
    let first = seq;
    let packets: Vec<Vec<u8>> = (0..256).map(|i| payload(first + i)).collect();
    let parts: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    net.send_frame(
        A,
        video_mid,
        vp8,
        first,
        (first as u32).wrapping_mul(90),
        &parts,
        true,
    );
    seq += 256;
    net.run_for(Duration::from_millis(100));
    sent.extend(steady(&mut net, &mut seq, 500));
    net.run_for(Duration::from_millis(20));

    let got = received_from(&mut net, B, video_mid);
    let at: HashMap<u64, _> = got.iter().map(|r| (r.seq, r.at)).collect();
    // The rewriter keeps the publisher's numbering offset: B's sequence
    // numbers are A's plus a constant.
    let offset = got[0].seq.wrapping_sub(20_000);
    for &(s, when) in &sent {
        assert_eq!(
            at.get(&(s + offset)),
            Some(&when),
            "steady packet {s} waited"
        );
    }
    let backlog: Vec<_> = got
        .iter()
        .filter(|r| (first..first + 256).contains(&r.seq.wrapping_sub(offset)))
        .collect();
    assert_eq!(backlog.len(), 256, "the whole backlog arrives");
    assert!(
        backlog
            .windows(2)
            .all(|w| w[0].seq + 1 == w[1].seq && w[0].at <= w[1].at),
        "in order"
    );
    for (i, r) in backlog.iter().enumerate() {
        let within = backlog[i..]
            .iter()
            .take_while(|n| n.at < r.at + Duration::from_millis(1))
            .count();
        assert!(within <= 24, "{within} within 1 ms");
    }
    let spread = backlog[255].at - stall_at;
    assert!(spread >= Duration::from_millis(20), "{spread:?}");
    assert!(spread <= Duration::from_millis(60), "{spread:?}");
    let b = net.router.peer_stats(B).unwrap();
    assert_eq!(paced_before, 0, "steady video waited: {b:?}");
    assert!(b.fast_paced >= 200, "{b:?}");
    assert_eq!(b.fast_pace_dropped, 0);
}
