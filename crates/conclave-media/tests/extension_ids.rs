//! Header extension ids across renegotiation, with the fast path on
//! (issue 16): the router writes the transport-wide sequence number (TWCC),
//! MID and the other extensions itself, so it must write them at the ids the
//! subscriber negotiated, also after a later offer changed what was
//! negotiated.
//!
//! What str0m 0.25 does with a later SDP that moves an id: each extension's
//! id is one per session and locked the first time the remote's SDP names it
//! (`ExtensionMap::remap`, which logs "Extmap locked by previous
//! negotiation" and ignores the move). Each m-line then keeps only the
//! extensions the remote lists at the session's id, so an offer moving TWCC
//! from 3 to 9 is accepted, but TWCC is then negotiated on no m-line: the
//! answer lists it nowhere, and nothing may carry it, at either id. An id
//! cannot move; an extension can only go and come back at the same id. These
//! tests hold the fast path to that, on the datagrams as they leave the
//! router (SRTP leaves the RTP header, extensions included, in clear) and on
//! what the subscriber's str0m reads once it unsealed them.

mod harness;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use conclave_media::PeerId;
use harness::{Fate, Net};
use str0m::Event;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::RtpWrite;

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const A_ADDR: &str = "10.0.0.2:5000";
const B_ADDR: &str = "10.0.0.3:5000";

const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// The ids str0m's standard map gives the clients (and the router).
const TWCC_ID: u8 = 3;
const MID_ID: u8 = 4;
/// Where B's offer tries to move TWCC: unused in both maps.
const MOVED_ID: u8 = 9;

const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
const LENGTHS: [usize; 3] = [150, 500, 1_100];

/// A publishes three layers, like a browser: a key frame on a layer when it
/// starts and when asked for one, delta frames otherwise.
struct Publisher {
    mid: Mid,
    seq: [u64; 3],
    frame: u32,
    key: [bool; 3],
    seen: usize,
}

impl Publisher {
    fn frame(&mut self, net: &mut Net) {
        let client = net.client(A);
        for (_, e) in &client.events[self.seen..] {
            if let Event::KeyframeRequest(r) = e
                && let Some(i) = RIDS.iter().position(|x| r.rid.is_some_and(|r| *r == **x))
            {
                self.key[i] = true;
            }
        }
        self.seen = client.events.len();
        let pt = client.pt_of(Codec::Vp8);
        for i in 0..3 {
            let mut payload =
                harness::vp8_start(std::mem::take(&mut self.key[i]).then_some(SIZES[i]));
            payload.resize(LENGTHS[i], 0xee);
            let ts = self
                .frame
                .wrapping_mul(3_000)
                .wrapping_add(i as u32 * 1_000_000);
            let write = RtpWrite::new(pt, self.seq[i].into(), ts, net.now, payload)
                .marker(true)
                .nackable(true);
            net.send_write(A, self.mid, Some(RIDS[i]), write);
            self.seq[i] += 1;
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

/// An RTP datagram the router sent B: SSRC, sequence number, and its
/// one-byte header extension elements as (id, value).
type Sent = (u32, u16, Vec<(u8, Vec<u8>)>);

/// The one-byte-form extension elements of the RTP datagram `b` (the
/// router writes no other form).
fn elements(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    if b[0] & 0x10 == 0 {
        return out;
    }
    let start = 12 + 4 * usize::from(b[0] & 0x0f);
    assert_eq!(b[start..start + 2], [0xbe, 0xde], "one-byte form");
    let words = usize::from(u16::from_be_bytes([b[start + 2], b[start + 3]]));
    let end = start + 4 + 4 * words;
    let mut at = start + 4;
    while at < end {
        let x = b[at];
        if x == 0 {
            at += 1;
            continue;
        }
        let len = usize::from(x & 0x0f) + 1;
        out.push((x >> 4, b[at + 1..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    out
}

/// Records every RTP datagram the router sends B, in order.
fn watch(net: &mut Net) -> Rc<RefCell<Vec<Sent>>> {
    let b_addr: std::net::SocketAddr = B_ADDR.parse().unwrap();
    let seen: Rc<RefCell<Vec<Sent>>> = Rc::default();
    let out = seen.clone();
    net.link = Some(Box::new(move |_, d| {
        let b = &d.contents;
        let rtp = b.len() >= 12 && b[0] >> 6 == 2 && !(192..=223).contains(&b[1]);
        if d.destination == b_addr && rtp {
            let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            let seq = u16::from_be_bytes([b[2], b[3]]);
            out.borrow_mut().push((ssrc, seq, elements(b)));
        }
        Fate::Arrive
    }));
    seen
}

/// The TWCC number a datagram carries at `id`, if it has a two-byte
/// element there.
fn twcc_at(sent: &Sent, id: u8) -> Option<u16> {
    sent.2
        .iter()
        .find(|(i, v)| *i == id && v.len() == 2)
        .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]))
}

/// B offers again (it starts sending audio, a new m-line), its SDP passed
/// through `munge` first, and takes the router's answer. Returns the
/// answer's SDP.
fn reoffer(net: &mut Net, munge: impl Fn(&str) -> String) -> String {
    let now = net.now;
    let client = net.client(B);
    let mut change = client.rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("a change to offer");
    let offer = SdpOffer::from_sdp_string(&munge(&offer.to_sdp_string())).expect("offer");
    let answer = net.router.accept_offer(B, offer).expect("router answers");
    let sdp = answer.to_sdp_string();
    let client = net.client(B);
    client
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("B takes the answer");
    client.sending.push((mid, MediaKind::Audio));
    let mut out = VecDeque::new();
    client.drain(now, &mut out);
    for d in out {
        net.inject(d.source, &d.contents);
    }
    net.settle();
    sdp
}

/// `sdp` with `twcc_line` in every media section that lacks it, after its
/// MID extension line.
fn with_twcc_everywhere(sdp: &str, twcc_line: &str) -> String {
    let mid_line = format!("a=extmap:{MID_ID} urn:ietf:params:rtp-hdrext:sdes:mid");
    let sections: Vec<&str> = sdp.split("\r\nm=").collect();
    let mut out = sections[0].to_string();
    for section in &sections[1..] {
        out.push_str("\r\nm=");
        if section.contains(twcc_line) {
            out.push_str(section);
        } else {
            out.push_str(&section.replace(&mid_line, &format!("{mid_line}\r\n{twcc_line}")));
        }
    }
    out
}

/// The transport-wide numbers of the datagrams in `sent`, the first time
/// each (SSRC, sequence number) left (a resend carries its first number).
fn numbers(sent: &[Sent], id: u8) -> Vec<u16> {
    let mut first = HashMap::new();
    let mut out = Vec::new();
    for s in sent {
        if first.insert((s.0, s.1), ()).is_none()
            && let Some(n) = twcc_at(s, id)
        {
            out.push(n);
        }
    }
    out
}

/// How many RTP packets B's str0m unsealed with a transport-wide number.
fn b_read_twcc(net: &mut Net) -> usize {
    net.client(B)
        .events
        .iter()
        .filter(
            |(_, e)| matches!(e, Event::RtpPacket(p) if p.header.ext_vals.transport_cc.is_some()),
        )
        .count()
}

/// B's offer moves TWCC from id 3 to 9. str0m keeps 3 (locked) and drops
/// TWCC from every m-line, so the router's answer lists it nowhere; from
/// then on no datagram to B carries it, at the old id or the new one: not
/// the forwarded media, not str0m's packets the fast path seals again, and
/// not the probes the estimator still asks for (they kept writing the old
/// id before the fast path refreshed its session-level TWCC id on each SDP).
/// MID stays where it was. A later offer naming TWCC at 3 again brings it
/// back, and the fast path's numbering goes on from where it was, with no
/// restart and no number twice, and B's feedback on it is used.
#[test]
fn a_reoffer_moving_the_twcc_id_is_not_followed_and_nothing_carries_it_until_it_is_back() {
    let mut net = Net::with_config(|c| {
        c.fast_path = true;
        // Low, so that the estimator probes for what the view wants.
        c.initial_bandwidth = Some(100_000);
    });
    let (video, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    net.join(B, B_ADDR, &[]);
    net.connect_all();
    net.router.set_view_size(B, A, video, 1920, 1080);
    let seen = watch(&mut net);
    let mut publisher = Publisher {
        mid: video,
        seq: [1_000, 20_000, 40_000],
        frame: 0,
        key: [true; 3],
        seen: 0,
    };
    publisher.run(&mut net, 1_000);
    let before: Vec<Sent> = seen.borrow_mut().drain(..).collect();
    let b = net.router.peer_stats(B).unwrap().clone();
    assert!(b.fast_sealed > 20 && b.fast_twcc_reports > 0, "{b:?}");
    assert!(
        before.iter().all(|s| twcc_at(s, TWCC_ID).is_some()),
        "every datagram numbered"
    );
    let fast: Vec<&Sent> = before
        .iter()
        .filter(|s| s.2.iter().any(|e| e.0 == MID_ID))
        .collect();
    assert!(fast.len() > 20, "MID at {MID_ID}");
    let read_before = b_read_twcc(&mut net);
    assert!(read_before > 20, "B reads the numbers");

    let twcc_line = format!("a=extmap:{TWCC_ID} {TWCC_URI}");
    let moved_line = format!("a=extmap:{MOVED_ID} {TWCC_URI}");
    let answer = reoffer(&mut net, |sdp| {
        assert!(sdp.contains(&twcc_line), "{sdp}");
        sdp.replace(&twcc_line, &moved_line)
    });
    assert!(
        !answer.contains(TWCC_URI),
        "TWCC negotiated nowhere: {answer}"
    );
    let probes = net.router.peer_stats(B).unwrap().fast_probe_packets;
    assert!(probes > 0, "the estimator probes for what the view wants");
    // Longer than the estimator's probe interval (3 s).
    publisher.run(&mut net, 7_000);
    let dropped: Vec<Sent> = seen.borrow_mut().drain(..).collect();
    assert!(dropped.len() > 200, "media goes on: {}", dropped.len());
    for s in &dropped {
        assert!(
            s.2.iter().all(|(id, _)| *id != MOVED_ID) && twcc_at(s, TWCC_ID).is_none(),
            "TWCC is not negotiated, yet sent: {s:?}"
        );
    }
    assert!(
        dropped.iter().any(|s| s.2.iter().any(|e| e.0 == MID_ID)),
        "MID still at {MID_ID}"
    );
    let b = net.router.peer_stats(B).unwrap().clone();
    assert_eq!(b.fast_probe_packets, probes, "no probe without TWCC: {b:?}");
    assert_eq!(b_read_twcc(&mut net), read_before, "B read no number");

    // B's str0m names on each m-line only what the last answer left
    // there: the offer that brings TWCC back names it on every m-line.
    let answer = reoffer(&mut net, |sdp| with_twcc_everywhere(sdp, &twcc_line));
    assert!(
        answer.contains(&twcc_line),
        "TWCC back at {TWCC_ID}: {answer}"
    );
    let reports = net.router.peer_stats(B).unwrap().fast_twcc_reports;
    publisher.run(&mut net, 2_000);
    let back: Vec<Sent> = seen.borrow_mut().drain(..).collect();
    let unnumbered: Vec<&Sent> = back
        .iter()
        .filter(|s| twcc_at(s, TWCC_ID).is_none())
        .collect();
    assert!(
        unnumbered.is_empty(),
        "every datagram numbered again: {unnumbered:?} of {}",
        back.len()
    );
    let (old, new) = (numbers(&before, TWCC_ID), numbers(&back, TWCC_ID));
    let last = *old.iter().max().unwrap();
    assert!(
        new.iter().all(|&n| n > last),
        "numbering goes on after {last}: {new:?}"
    );
    let mut all: Vec<u16> = old.iter().chain(&new).copied().collect();
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "a transport-wide number used twice");
    let b = net.router.peer_stats(B).unwrap().clone();
    assert!(
        b.fast_twcc_reports > reports,
        "B's feedback is used again: {b:?}"
    );
    assert_eq!(b.fast_twcc_refused, 0, "{b:?}");
    assert_eq!(b.fast_seal_errors, 0, "{b:?}");
    assert!(
        b_read_twcc(&mut net) > read_before + 20,
        "B reads the numbers again"
    );
}
