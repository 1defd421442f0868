//! Dynacast through the router, on virtual time: a publisher is told which
//! of its simulcast layers somebody receives; a layer unwatched for
//! [`DYNACAST_HOLD`] is paused, one needed again resumed at once and its
//! key frame asked for as it arrives; a subscriber switching back and forth
//! does not make the publisher flap; a publisher that ignores the message
//! changes nothing for anyone else.

mod harness;

use std::time::Duration;

use conclave_media::{DYNACAST_HOLD, RESUME_BACKOFF};
use conclave_media::{PeerId, Rid};
use harness::{Net, Received, Signal};
use str0m::Event;
use str0m::format::Codec;
use str0m::media::Mid;
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
const LENGTHS: [usize; 3] = [100, 300, 900];

/// A browser-like simulcast publisher, 30 frames a second on each layer it
/// sends. With `honour`, it sends only the layers the router's latest
/// `LayersWanted` for it names; a key frame request for a layer it does not
/// send is ignored (requests are read before the signaling, so one that
/// raced the resume is lost), and a resumed layer goes on with delta frames
/// until asked: only the router's request once the layer arrives gives it
/// a key frame.
struct Publisher {
    id: PeerId,
    mid: Mid,
    honour: bool,
    sending: [bool; 3],
    /// Layers it cannot send, whatever it is told (a capture too small).
    cannot: [bool; 3],
    seq: [u64; 3],
    frame: u32,
    key_pending: [bool; 3],
    seen_events: usize,
    seen_signals: usize,
    /// Key frame requests received while sending the layer.
    requests: [u32; 3],
    sent: [u64; 3],
    /// Starts a resumed layer with a key frame, as Chromium does.
    key_on_resume: bool,
}

impl Publisher {
    fn new(id: PeerId, mid: Mid, honour: bool) -> Self {
        Publisher {
            id,
            mid,
            honour,
            sending: [true; 3],
            cannot: [false; 3],
            seq: [1_000, 20_000, 40_000],
            frame: 0,
            key_pending: [true; 3],
            seen_events: 0,
            seen_signals: 0,
            requests: [0; 3],
            sent: [0; 3],
            key_on_resume: false,
        }
    }

    fn frame(&mut self, net: &mut Net) {
        let client = net.client(self.id);
        for (_, e) in &client.events[self.seen_events..] {
            if let Event::KeyframeRequest(r) = e {
                let rid = r.rid.map(|r| r.to_string());
                if let Some(i) = RIDS.iter().position(|x| Some(x.to_string()) == rid)
                    && self.sending[i]
                {
                    self.key_pending[i] = true;
                    self.requests[i] += 1;
                }
            }
        }
        self.seen_events = client.events.len();
        for s in &net.signals[self.seen_signals..] {
            if let Signal::LayersWanted {
                peer, mid, rids, ..
            } = s
            {
                assert_eq!(*peer, self.id, "only the publisher is told");
                assert_eq!(*mid, self.mid);
                if self.honour {
                    for (i, r) in RIDS.iter().enumerate() {
                        let resumed = !self.sending[i] && rids.iter().any(|x| x == r);
                        self.sending[i] = rids.iter().any(|x| x == r);
                        self.key_pending[i] |= resumed && self.key_on_resume;
                    }
                }
            }
        }
        self.seen_signals = net.signals.len();
        let pt = net.client(self.id).pt_of(Codec::Vp8);
        for i in 0..3 {
            if !self.sending[i] || self.cannot[i] {
                continue;
            }
            let key = std::mem::take(&mut self.key_pending[i]);
            let mut payload = harness::vp8_start(key.then_some(SIZES[i]));
            payload.resize(LENGTHS[i], 0xee);
            *payload.last_mut().unwrap() = i as u8;
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

fn layer_of(r: &Received) -> usize {
    usize::from(*r.payload.last().unwrap())
}

/// Every `LayersWanted` so far: (when, rids).
fn told(net: &Net) -> Vec<(std::time::Instant, Vec<String>)> {
    net.signals
        .iter()
        .filter_map(|s| match s {
            Signal::LayersWanted { at, rids, .. } => Some((*at, rids.clone())),
            _ => None,
        })
        .collect()
}

fn rids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A publishes three layers and honours dynacast (or not); B and C watch
/// at the given view sizes. Layers are chosen by view alone (no bandwidth
/// estimate), so what a subscriber gets is what the test says it shows.
fn meeting(honour: bool, b_view: (u32, u32), c_view: (u32, u32)) -> (Net, Publisher) {
    let mut net = Net::with_config(|c| c.initial_bandwidth = None);
    let (video, _) = net.join_simulcast(A, A_ADDR, &RIDS, false);
    net.join(B, B_ADDR, &[]);
    net.join(C, C_ADDR, &[]);
    net.connect_all();
    net.router.set_view_size(B, A, video, b_view.0, b_view.1);
    net.router.set_view_size(C, A, video, c_view.0, c_view.1);
    (net, Publisher::new(A, video, honour))
}

#[test]
fn the_publisher_is_told_the_watched_layers_and_stops_the_other_after_the_hold() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (640, 360));
    let start = net.now;
    publisher.run(&mut net, 1_500);
    assert!(told(&net).is_empty(), "nothing paused within the hold");
    publisher.run(&mut net, 1_500);
    let t = told(&net);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].1, rids(&["q", "h"]));
    assert!(t[0].0 - start >= DYNACAST_HOLD);
    assert_eq!(
        net.router.layers_sent(A, publisher.mid),
        Some(vec![Rid::from("q"), Rid::from("h")])
    );
    let f_sent = publisher.sent[2];
    let (b_before, c_before) = (
        net.client(B).received().len(),
        net.client(C).received().len(),
    );
    publisher.run(&mut net, 2_000);
    assert_eq!(publisher.sent[2], f_sent, "f is no longer sent");
    // Both still get their video, each its own layer.
    let b = net.client(B).received();
    let c = net.client(C).received();
    assert!(b.len() >= b_before + 50 && c.len() >= c_before + 50);
    assert!(b[b_before..].iter().all(|r| layer_of(r) == 0));
    assert!(c[c_before..].iter().all(|r| layer_of(r) == 1));
}

#[test]
fn a_layer_left_by_its_last_subscriber_is_paused_after_the_hold_not_before() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (640, 360));
    publisher.run(&mut net, 3_000);
    assert_eq!(told(&net).len(), 1, "f paused");
    net.router.remove_peer(C).expect("C leaves");
    let left = net.now;
    publisher.run(&mut net, 1_500);
    assert_eq!(told(&net).len(), 1, "h not paused within the hold");
    publisher.run(&mut net, 1_000);
    let t = told(&net);
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[1].1, rids(&["q"]));
    assert!(t[1].0 - left >= DYNACAST_HOLD);
    let h_sent = publisher.sent[1];
    publisher.run(&mut net, 1_000);
    assert_eq!(publisher.sent[1], h_sent, "h is no longer sent");
}

#[test]
fn a_new_subscriber_wanting_the_full_layer_gets_it_resumed_at_once_with_a_key_frame() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (640, 360));
    publisher.run(&mut net, 3_000);
    assert_eq!(told(&net).last().unwrap().1, rids(&["q", "h"]));
    let f_requests = publisher.requests[2];
    net.join(D, D_ADDR, &[]);
    net.run_until(Duration::from_secs(2), |n| {
        n.router.forwarded_to(D).iter().any(|t| t.publisher == A)
    });
    let d_mid = forwarded_mid(&net, D, A, publisher.mid);
    let asked = net.now;
    net.router.set_view_size(D, A, publisher.mid, 1920, 1080);
    net.settle();
    // At once: in the same instant as the view that needs it.
    let t = told(&net);
    assert_eq!(t.last().unwrap().1, rids(&["q", "h", "f"]), "{t:?}");
    assert_eq!(t.last().unwrap().0, asked);
    // The publisher resumes f with its next frame; the router asks for a
    // key frame as f's first packet arrives, not after a throttle
    // interval: by the frame after, the publisher has the request.
    publisher.run(&mut net, 70);
    assert!(
        publisher.requests[2] > f_requests,
        "a key frame of f was asked for once f arrived"
    );
    publisher.run(&mut net, 1_500);
    let d: Vec<usize> = net
        .client(D)
        .received()
        .iter()
        .filter(|r| r.mid == Some(d_mid))
        .map(layer_of)
        .collect();
    assert_eq!(d.last(), Some(&2), "D gets the full layer: {d:?}");
}

#[test]
fn a_layer_resumed_with_a_key_frame_is_not_asked_for_another() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (160, 90));
    publisher.key_on_resume = true;
    publisher.run(&mut net, 3_000);
    assert_eq!(told(&net).last().unwrap().1, rids(&["q"]));
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    let asked = net.router.peer_stats(A).unwrap().keyframe_requests_out;
    net.router.set_view_size(B, A, publisher.mid, 1920, 1080);
    publisher.run(&mut net, 1_500);
    let b: Vec<usize> = net
        .client(B)
        .received()
        .iter()
        .filter(|r| r.mid == Some(b_mid))
        .map(layer_of)
        .collect();
    assert_eq!(b.last(), Some(&2), "B gets the full layer: {b:?}");
    // f came back starting with a key frame, and B switched at it: another
    // request would only make A (every layer, in Chromium) key-frame again.
    assert_eq!(
        net.router.peer_stats(A).unwrap().keyframe_requests_out,
        asked,
        "no key frame asked of A"
    );
}

#[test]
fn the_smallest_layer_is_kept_for_subscribers_to_step_down_to() {
    let (mut net, mut publisher) = meeting(true, (640, 360), (640, 360));
    publisher.run(&mut net, 3_000);
    // Both receive h; f is paused, q is not, though nobody receives it.
    let t = told(&net);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].1, rids(&["q", "h"]));
    let q_sent = publisher.sent[0];
    publisher.run(&mut net, 3_000);
    assert!(publisher.sent[0] >= q_sent + 80, "q is still sent");
    assert_eq!(told(&net).len(), 1, "and nothing else changed");
}

#[test]
fn a_subscriber_switching_back_and_forth_does_not_make_the_publisher_flap() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (160, 90));
    publisher.run(&mut net, 3_000);
    assert_eq!(told(&net).last().unwrap().1, rids(&["q"]));
    let before = told(&net).len();
    // B goes full screen and back every 700 ms for 7 s.
    for i in 0..10 {
        let view = if i % 2 == 0 { (1920, 1080) } else { (160, 90) };
        net.router
            .set_view_size(B, A, publisher.mid, view.0, view.1);
        publisher.run(&mut net, 700);
    }
    let t = told(&net);
    // f resumes once; then nothing pauses while B keeps coming back within
    // the hold.
    assert_eq!(t.len() - before, 1, "{:?}", &t[before..]);
    assert!(t.last().unwrap().1.contains(&"f".to_string()));
}

#[test]
fn a_publisher_that_ignores_the_message_changes_nothing_for_the_others() {
    let (mut net, mut publisher) = meeting(false, (160, 90), (640, 360));
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    let c_mid = forwarded_mid(&net, C, A, publisher.mid);
    publisher.run(&mut net, 4_000);
    assert_eq!(told(&net).last().unwrap().1, rids(&["q", "h"]));
    // It still sends f; the router forwards it to nobody.
    let unreceived = net.router.peer_stats(A).unwrap().rtp_unreceived;
    let f_sent = publisher.sent[2];
    publisher.run(&mut net, 1_000);
    let unreceived = net.router.peer_stats(A).unwrap().rtp_unreceived - unreceived;
    assert_eq!(unreceived, publisher.sent[2] - f_sent);
    let b: Vec<usize> = net
        .client(B)
        .received()
        .iter()
        .filter(|r| r.mid == Some(b_mid))
        .map(layer_of)
        .collect();
    let c: Vec<usize> = net
        .client(C)
        .received()
        .iter()
        .filter(|r| r.mid == Some(c_mid))
        .map(layer_of)
        .collect();
    assert!(b.iter().skip(10).all(|l| *l == 0), "{b:?}");
    assert!(c.iter().skip(10).all(|l| *l == 1), "{c:?}");
    // Told once; the router does not repeat itself to a deaf publisher.
    assert_eq!(told(&net).len(), 1);
}

#[test]
fn a_resumed_layer_that_never_comes_is_given_up_without_flapping() {
    let (mut net, mut publisher) = meeting(true, (160, 90), (160, 90));
    publisher.run(&mut net, 3_000);
    assert_eq!(told(&net).last().unwrap().1, rids(&["q"]));
    // From now on A cannot send f (its capture shrank), whatever it is told.
    publisher.cannot[2] = true;
    let before = told(&net).len();
    let b_mid = forwarded_mid(&net, B, A, publisher.mid);
    net.router.set_view_size(B, A, publisher.mid, 1920, 1080);
    publisher.run(&mut net, 12_000);
    let t = told(&net);
    // f resumed and given up after RESUME_WAIT; h resumed for B, the best
    // that comes; f paused after the hold; f tried again only after the
    // back-off (10 s from giving up): four messages in 12 s, not one per
    // reselection.
    let sets: Vec<Vec<String>> = t[before..].iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        sets,
        vec![
            rids(&["q", "f"]),
            rids(&["q", "h", "f"]),
            rids(&["q", "h"]),
            rids(&["q", "h", "f"])
        ]
    );
    assert!(t[before + 3].0 - t[before + 1].0 >= RESUME_BACKOFF);
    let b: Vec<usize> = net
        .client(B)
        .received()
        .iter()
        .filter(|r| r.mid == Some(b_mid))
        .map(layer_of)
        .collect();
    assert_eq!(b.last(), Some(&1), "B gets h: {b:?}");
}

/// NACKs the publisher received so far on layer `rid`, by its latest send
/// statistics.
fn nacks_on(net: &mut Net, rid: &str) -> u64 {
    net.client(A)
        .events
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::MediaEgressStats(s)
                if s.rid.as_ref().map(|r| r.to_string()).as_deref() == Some(rid) =>
            {
                Some(s.nacks)
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[test]
fn the_router_asks_for_no_retransmission_of_a_layer_nobody_receives() {
    // A ignores dynacast, so f keeps arriving though nobody receives it.
    let (mut net, mut publisher) = meeting(false, (160, 90), (640, 360));
    publisher.run(&mut net, 3_000);
    let before = (nacks_on(&mut net, "q"), nacks_on(&mut net, "f"));
    // One packet of q and one of f go missing on A's uplink (their
    // sequence numbers are skipped).
    publisher.seq[0] += 1;
    publisher.seq[2] += 1;
    publisher.run(&mut net, 1_000);
    let after = (nacks_on(&mut net, "q"), nacks_on(&mut net, "f"));
    assert!(
        after.0 > before.0,
        "q, which B receives, is repaired: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.1, before.1,
        "f, which nobody receives, is not: {before:?} -> {after:?}"
    );
}
