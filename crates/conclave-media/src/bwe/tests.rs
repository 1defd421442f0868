//! The estimator against a simulated path: a sender that sends what the
//! estimate allows, a bottleneck of some capacity with a queue, random-free
//! loss, and feedback every 50 ms as a receiver's TWCC reports it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Bwe, FeedbackError};
use crate::video_pause::{Congestion, Decision, LOSS_TRIAL, Needs, VideoPause};

const PACKET: usize = 1_200;

/// Any instant: the estimator reads no clock, only the times it is given.
fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}
const PROPAGATION: Duration = Duration::from_millis(20);

struct Path {
    /// Bottleneck capacity, bits per second (`None`: unlimited).
    capacity: Option<f64>,
    /// Every `n`th packet is lost.
    lose_every: Option<u64>,
    /// The sender sends the probes the estimator asks for (padding of
    /// `PROBE_PACKET` bytes, at once).
    probing: bool,
}

const PROBE_PACKET: usize = 300;

/// Runs `seconds` of a sender paced by the estimate (10 ms frames) over
/// `path`; returns the estimates sampled each second.
fn run(bwe: &mut Bwe, path: &Path, seconds: u64) -> Vec<u64> {
    let start = origin();
    let mut link_free = start;
    let mut in_flight: VecDeque<(u64, Instant, Option<Instant>)> = VecDeque::new();
    let mut samples = Vec::new();
    let mut credit = 0.0f64;
    for ms in (0..seconds * 1_000).step_by(10) {
        let now = start + Duration::from_millis(ms);
        credit += bwe.estimate() as f64 * 0.010 / 8.0;
        let mut packets: Vec<(usize, Option<u32>)> = Vec::new();
        while credit >= PACKET as f64 {
            credit -= PACKET as f64;
            packets.push((PACKET, None));
        }
        if let Some(probe) = path.probing.then(|| bwe.poll_probe(now)).flatten() {
            let n = probe.bytes.div_ceil(PROBE_PACKET).max(5);
            packets.extend((0..n).map(|_| (PROBE_PACKET, Some(probe.id))));
        }
        for (size, probe) in packets {
            let seq = match probe {
                Some(id) => bwe.register_probe(now, size, id),
                None => bwe.register(now, size),
            };
            let lost = path.lose_every.is_some_and(|n| seq % n == n - 1);
            let arrival = match path.capacity {
                Some(c) => {
                    let at = (now + PROPAGATION).max(link_free);
                    link_free = at + Duration::from_secs_f64(size as f64 * 8.0 / c);
                    at
                }
                None => now + PROPAGATION,
            };
            in_flight.push_back((seq, now, (!lost).then_some(arrival)));
        }
        if ms % 50 == 0 {
            let mut report = Vec::new();
            while let Some(&(seq, sent, arrival)) = in_flight.front() {
                let known = match arrival {
                    Some(a) => a <= now,
                    None => sent + PROPAGATION <= now,
                };
                if !known {
                    break;
                }
                report.push((seq, arrival));
                in_flight.pop_front();
            }
            if !report.is_empty() {
                bwe.on_feedback(report, now).expect("a well-formed report");
            }
        }
        if ms % 1_000 == 0 {
            samples.push(bwe.estimate());
        }
    }
    samples
}

#[test]
fn a_clean_path_ramps_up_toward_what_the_views_want() {
    let mut bwe = Bwe::new(300_000);
    bwe.set_desired(2_500_000);
    let estimates = run(
        &mut bwe,
        &Path {
            capacity: None,
            lose_every: None,
            probing: false,
        },
        15,
    );
    assert!(bwe.has_feedback());
    let last = *estimates.last().unwrap();
    assert!(last > 600_000, "estimates {estimates:?}");
    assert!(last <= 2_500_000 * 11 / 10, "estimates {estimates:?}");
}

#[test]
fn a_path_that_gets_congested_lowers_the_estimate() {
    let mut bwe = Bwe::new(2_500_000);
    bwe.set_desired(2_500_000);
    let estimates = run(
        &mut bwe,
        &Path {
            capacity: Some(1_000_000.0),
            lose_every: None,
            probing: false,
        },
        20,
    );
    let last = *estimates.last().unwrap();
    assert!(last < 1_300_000, "estimates {estimates:?}");
    assert!(last > 200_000, "estimates {estimates:?}");
}

#[test]
fn loss_above_ten_percent_lowers_the_estimate() {
    let mut bwe = Bwe::new(1_500_000);
    bwe.set_desired(1_500_000);
    let estimates = run(
        &mut bwe,
        &Path {
            capacity: None,
            lose_every: Some(5),
            probing: false,
        },
        10,
    );
    let last = *estimates.last().unwrap();
    assert!(last < 1_000_000, "estimates {estimates:?}");
}

#[test]
fn loss_below_two_percent_does_not_lower_it() {
    let mut bwe = Bwe::new(1_000_000);
    bwe.set_desired(2_000_000);
    let estimates = run(
        &mut bwe,
        &Path {
            capacity: None,
            lose_every: Some(100),
            probing: false,
        },
        10,
    );
    let last = *estimates.last().unwrap();
    assert!(last >= 1_000_000, "estimates {estimates:?}");
}

/// Without probes a clean path takes many seconds to let the estimate grow
/// to what the views want; with them it gets there in a few.
#[test]
fn probes_let_a_clean_path_step_up_at_once() {
    let clean = |probing| Path {
        capacity: None,
        lose_every: None,
        probing,
    };
    let mut slow = Bwe::new(500_000);
    slow.set_desired(2_500_000);
    let without = run(&mut slow, &clean(false), 5);
    let mut fast = Bwe::new(500_000);
    fast.set_desired(2_500_000);
    let with = run(&mut fast, &clean(true), 5);
    assert!(
        *without.last().unwrap() < 1_000_000,
        "without probes {without:?}"
    );
    assert!(*with.last().unwrap() >= 2_000_000, "with probes {with:?}");
    assert!(
        *with.last().unwrap() <= 2_500_000 * 11 / 10,
        "with probes {with:?}"
    );
}

/// A probe over a narrow path arrives spread out: it gives the path's
/// capacity, and the estimate is not lifted past it.
#[test]
fn probes_over_a_narrow_path_do_not_lift_the_estimate_past_it() {
    let mut bwe = Bwe::new(500_000);
    bwe.set_desired(2_500_000);
    let estimates = run(
        &mut bwe,
        &Path {
            capacity: Some(1_000_000.0),
            lose_every: None,
            probing: true,
        },
        20,
    );
    assert!(
        estimates.iter().all(|&e| e <= 1_300_000),
        "estimates {estimates:?}"
    );
    assert!(
        *estimates.last().unwrap() > 300_000,
        "estimates {estimates:?}"
    );
}

#[test]
fn no_probe_while_the_views_want_no_more_or_the_path_is_lossy_but_for_a_proof() {
    let start = origin();
    let mut bwe = Bwe::new(1_000_000);
    bwe.set_desired(5_000_000);
    assert_eq!(bwe.poll_probe(start), None, "no feedback yet");
    let mut content = Bwe::new(1_000_000);
    content.set_desired(1_100_000);
    run(
        &mut content,
        &Path {
            capacity: None,
            lose_every: None,
            probing: true,
        },
        3,
    );
    assert_eq!(content.poll_probe(start + Duration::from_secs(10)), None);
    let mut lossy = Bwe::new(1_000_000);
    lossy.set_desired(5_000_000);
    run(
        &mut lossy,
        &Path {
            capacity: None,
            lose_every: Some(4),
            probing: false,
        },
        3,
    );
    assert_eq!(lossy.poll_probe(start + Duration::from_secs(10)), None);
    // But a proof wanted (media held back, `video_pause.rs`) is probed for.
    lossy.set_proof_wanted(Some(600_000));
    let proof = lossy.poll_probe(start + Duration::from_secs(10));
    assert_eq!(proof.map(|p| p.bitrate), Some(600_000));
}

#[test]
fn reports_about_nothing_sent_are_refused_and_change_nothing() {
    let now = origin();
    let mut bwe = Bwe::new(1_000_000);
    assert_eq!(bwe.on_feedback(Vec::new(), now), Err(FeedbackError::Empty));
    assert_eq!(
        bwe.on_feedback(vec![(5, Some(now)), (6, None)], now),
        Err(FeedbackError::Unknown)
    );
    for _ in 0..10 {
        bwe.register(now, PACKET);
    }
    assert_eq!(
        bwe.on_feedback(vec![(1_000_000, Some(now)), (u64::MAX, None)], now),
        Err(FeedbackError::Unknown)
    );
    let far = now + Duration::from_secs(3_600);
    assert_eq!(
        bwe.on_feedback(vec![(0, Some(now)), (1, Some(far))], now),
        Err(FeedbackError::Implausible)
    );
    assert!(!bwe.has_feedback());
    assert_eq!(bwe.estimate(), 1_000_000);
}

#[test]
fn arrivals_out_of_order_or_repeated_do_not_panic_or_run_away() {
    let start = origin();
    let mut bwe = Bwe::new(1_000_000);
    for i in 0..2_000u64 {
        bwe.register(start + Duration::from_millis(i), PACKET);
    }
    // Arrival times jumping back and forth, repeats, and seqs far off.
    let mut x = 12_345u64;
    for round in 0..200u64 {
        let mut report = Vec::new();
        for _ in 0..50 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let seq = (x >> 33) % 2_100;
            let jitter = Duration::from_millis((x >> 20) % 5_000);
            let arrival = (x & 1 == 0).then_some(start + jitter);
            report.push((seq, arrival));
        }
        let _ = bwe.on_feedback(report, start + Duration::from_millis(round * 50));
        let e = bwe.estimate();
        assert!(
            (super::MIN_BITRATE as u64..=50_000_000).contains(&e),
            "estimate {e}"
        );
    }
}

/// A sender whose packets wait longer and longer between being numbered
/// and leaving (a media worker on a machine getting busier: each batch
/// waits for more work, or for the CPU, before it is sent): 0 to 150 ms
/// over the 3rd to 6th second, then steady. Returns the estimates each
/// second; with `told`, the estimator hears when each packet really left.
fn slowing_sender(bwe: &mut Bwe, told: bool, seconds: u64) -> Vec<u64> {
    let start = origin();
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut samples = Vec::new();
    for tick in 0..seconds * 100 {
        let now = start + Duration::from_millis(tick * 10);
        let wait = Duration::from_millis((tick.clamp(300, 600) - 300) / 2);
        let left = now + wait;
        // A 1 Mbit/s video: about one packet per 10 ms.
        let seq = bwe.register(now, PACKET);
        if told {
            let until = bwe.next_seq();
            bwe.departed(left, until);
        }
        in_flight.push_back((seq, left + PROPAGATION));
        if tick % 5 == 0 {
            let mut report = Vec::new();
            while in_flight.front().is_some_and(|&(_, a)| a <= now) {
                let (seq, arrival) = in_flight.pop_front().unwrap();
                report.push((seq, Some(arrival)));
            }
            if !report.is_empty() {
                bwe.on_feedback(report, now).expect("a well-formed report");
            }
        }
        if tick % 100 == 0 {
            samples.push(bwe.estimate());
        }
    }
    samples
}

/// Packets timed when they were numbered, not when they left, make a
/// sender that slows down look like a queue filling on the path: the
/// estimate falls though the path is clean. Timed when they left
/// ([`Bwe::departed`], from the worker after each send), it does not.
#[test]
fn a_sender_that_slows_down_is_not_a_congested_path() {
    let mut blind = Bwe::new(2_000_000);
    blind.set_desired(2_000_000);
    let misread = slowing_sender(&mut blind, false, 10);
    let mut told = Bwe::new(2_000_000);
    told.set_desired(2_000_000);
    let right = slowing_sender(&mut told, true, 10);
    assert!(
        misread.iter().any(|&e| e < 1_500_000),
        "timed when numbered {misread:?}"
    );
    assert!(
        right.iter().all(|&e| e >= 1_900_000),
        "timed when sent {right:?}"
    );
}

/// Sends two packets every 10 ms for `seconds`, every `nth` of them
/// reported missing in the first report that lists it and received in the
/// next, `late` after it would have arrived (as a 40 ± 10 ms link reorders
/// packets, or as a NACK's resend repairs one); reports every 50 ms.
fn reported_late(bwe: &mut Bwe, seconds: u64, nth: u64, late: Duration) {
    let start = origin();
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut owed: Vec<(u64, Instant)> = Vec::new();
    for ms in (0..seconds * 1_000).step_by(10) {
        let now = start + Duration::from_millis(ms);
        for _ in 0..2 {
            let seq = bwe.register(now, PACKET);
            in_flight.push_back((seq, now + PROPAGATION));
        }
        if ms % 50 == 0 {
            // What was missing last time arrives now.
            let mut report: Vec<(u64, Option<Instant>)> = owed
                .drain(..)
                .map(|(seq, at)| (seq, Some(at + late)))
                .collect();
            while let Some(&(seq, arrival)) = in_flight.front() {
                if arrival > now {
                    break;
                }
                in_flight.pop_front();
                if seq % nth == nth - 1 {
                    report.push((seq, None));
                    owed.push((seq, arrival));
                } else {
                    report.push((seq, Some(arrival)));
                }
            }
            report.sort_by_key(|r| r.0);
            if !report.is_empty() {
                bwe.on_feedback(report, now).expect("a well-formed report");
            }
        }
    }
}

#[test]
fn packets_reordered_by_jitter_are_not_counted_lost() {
    // One packet in eight arrives 15 ms after the next one (reported missing
    // once, then received): before, 12.5 % counted as lost.
    let mut bwe = Bwe::new(1_000_000);
    reported_late(&mut bwe, 5, 8, Duration::from_millis(15));
    assert!(bwe.last_loss < 0.02, "loss {}", bwe.last_loss);
    assert!(
        bwe.loss_estimate >= 1_000_000.0,
        "loss estimate {}",
        bwe.loss_estimate
    );
}

#[test]
fn packets_repaired_by_a_resend_still_count_as_lost() {
    // The same packets arriving 100 ms late: resends of lost packets, which
    // keep their transport-wide numbers. They were lost.
    let mut bwe = Bwe::new(1_000_000);
    reported_late(&mut bwe, 5, 8, Duration::from_millis(100));
    assert!(bwe.last_loss > 0.10, "loss {}", bwe.last_loss);
    assert!(
        bwe.loss_estimate < 1_000_000.0,
        "loss estimate {}",
        bwe.loss_estimate
    );
}

/// A subscriber behind a drop-tail bottleneck (bench/impair's `Cap`): what
/// it receives passes one packet after another at `capacity`, and a packet
/// that would wait longer than `buffer` there is dropped. Besides, every
/// packet is delayed 40 ± 10 ms (reordering some), feedback arrives every
/// 100 ms as Chromium's TWCC sends it (from the oldest packet not yet
/// reported, or an older one that arrived late since), and the router
/// resends each packet reported missing at once, with its transport-wide
/// number (the fast path's NACK repair), through the same bottleneck.
struct Capped {
    capacity: f64,
    buffer: Duration,
}

/// What else [`capped_with`] does to the path and the sender.
#[derive(Default)]
struct Extra {
    /// Packets lost at random before the bottleneck, a share (the network
    /// bench's loss legs), resends included.
    random_loss: f64,
    /// The capacity becomes this at this time from the start.
    widen: Option<(Duration, f64)>,
    /// The sender sends the probes the estimator asks for (at once,
    /// `PROBE_PACKET` bytes each, at least five).
    probing: bool,
    /// Only packets really lost are resent, as a receiver's NACKs do once
    /// a gap outlasts the reordering; by default every packet reported
    /// missing is, also those the jitter only delayed past a later one
    /// (at 30-50 ms of jitter nearly all of them, doubling what is sent).
    resend_lost_only: bool,
    /// The bottleneck's drops are counted from this time on.
    count_from: Duration,
    /// From this time on, every packet arrives this much later: a step in
    /// the path's delay that is no queue (the bad-network browser test's
    /// impairment switched on mid-call, a receiver fallen behind).
    delay_step: Option<(Duration, Duration)>,
}

/// One TWCC report: each packet's transport-wide number and arrival.
type Report = Vec<(u64, Option<Instant>)>;

/// Runs `seconds` of [`Capped`], the media sent at the rate `sending`
/// returns (asked every 250 ms with the time since the start and the
/// estimate); returns the estimates each second, and the share of packets
/// the bottleneck dropped.
fn capped(
    bwe: &mut Bwe,
    c: &Capped,
    seconds: u64,
    mut sending: impl FnMut(Duration, u64) -> f64,
) -> (Vec<u64>, f64) {
    capped_with(bwe, c, &Extra::default(), seconds, |at, _, bwe| {
        sending(at, bwe.estimate())
    })
}

/// [`capped`] with `extra`, the sender given the estimator itself.
fn capped_with(
    bwe: &mut Bwe,
    c: &Capped,
    extra: &Extra,
    seconds: u64,
    mut sending: impl FnMut(Duration, Instant, &mut Bwe) -> f64,
) -> (Vec<u64>, f64) {
    let start = origin();
    // Another generator for the random loss, so the jitter's sequence is
    // the same with or without it.
    let mut loss_rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut lose = move || {
        loss_rng ^= loss_rng << 13;
        loss_rng ^= loss_rng >> 7;
        loss_rng ^= loss_rng << 17;
        (loss_rng % 1_000_000) as f64 / 1_000_000.0 < extra.random_loss
    };
    // A tiny deterministic generator for the jitter.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut jitter = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_micros(30_000 + rng % 20_001)
    };
    let mut link_free = start;
    // seq -> arrival at the receiver.
    let mut arrivals: std::collections::BTreeMap<u64, Instant> = Default::default();
    let mut report_from = 0u64;
    // Reports on their way back: when they reach the router, and what they say.
    let mut feedback: VecDeque<(Instant, Report)> = VecDeque::new();
    let mut sizes: std::collections::HashMap<u64, usize> = Default::default();
    let mut resent: std::collections::HashSet<u64> = Default::default();
    let mut lost: std::collections::HashSet<u64> = Default::default();
    let (mut passed, mut dropped) = (0u64, 0u64);
    let mut samples = Vec::new();
    let mut credit = 0.0f64;
    let mut rate = 0.0;
    let mut send = |seq: u64,
                    size: usize,
                    now: Instant,
                    arrivals: &mut std::collections::BTreeMap<u64, Instant>,
                    link_free: &mut Instant,
                    lost: &mut std::collections::HashSet<u64>| {
        if extra.random_loss > 0.0 && lose() {
            lost.insert(seq);
            return;
        }
        let capacity = match extra.widen {
            Some((at, wider)) if now.saturating_duration_since(start) >= at => wider,
            _ => c.capacity,
        };
        let at = now.max(*link_free);
        let counted = now.saturating_duration_since(start) >= extra.count_from;
        if at.saturating_duration_since(now) > c.buffer {
            dropped += u64::from(counted);
            lost.insert(seq);
            return;
        }
        lost.remove(&seq);
        passed += u64::from(counted);
        *link_free = at + Duration::from_secs_f64(size as f64 * 8.0 / capacity);
        let step = match extra.delay_step {
            Some((from, step)) if now.saturating_duration_since(start) >= from => step,
            _ => Duration::ZERO,
        };
        let arrival = *link_free + jitter() + step;
        arrivals.entry(seq).or_insert(arrival);
    };
    for ms in (0..seconds * 1_000).step_by(10) {
        let now = start + Duration::from_millis(ms);
        if ms % 250 == 0 {
            rate = sending(Duration::from_millis(ms), now, bwe);
        }
        if let Some(probe) = extra.probing.then(|| bwe.poll_probe(now)).flatten() {
            let n = probe.bytes.div_ceil(PROBE_PACKET).max(5);
            for _ in 0..n {
                let seq = bwe.register_probe(now, PROBE_PACKET, probe.id);
                sizes.insert(seq, PROBE_PACKET);
                send(
                    seq,
                    PROBE_PACKET,
                    now,
                    &mut arrivals,
                    &mut link_free,
                    &mut lost,
                );
            }
        }
        // Media: a frame's packets every 50 ms, back to back.
        credit += rate * 0.010 / 8.0;
        if ms % 50 == 0 {
            while credit >= PACKET as f64 {
                credit -= PACKET as f64;
                let seq = bwe.register(now, PACKET);
                sizes.insert(seq, PACKET);
                send(seq, PACKET, now, &mut arrivals, &mut link_free, &mut lost);
            }
        }
        // Feedback that reached the router: used, and what it says is
        // missing resent once.
        while feedback.front().is_some_and(|(at, _)| *at <= now) {
            let (_, report) = feedback.pop_front().unwrap();
            for &(seq, arrival) in &report {
                let really = !extra.resend_lost_only || lost.contains(&seq);
                if arrival.is_none() && really && resent.insert(seq) {
                    send(
                        seq,
                        sizes[&seq],
                        now,
                        &mut arrivals,
                        &mut link_free,
                        &mut lost,
                    );
                }
            }
            let _ = bwe.on_feedback(report, now);
        }
        // The receiver's report every 100 ms, 40 ms on its way back.
        if ms % 100 == 0 {
            let arrived: Vec<(u64, Instant)> = arrivals
                .iter()
                .filter(|(_, a)| **a <= now)
                .map(|(s, a)| (*s, *a))
                .collect();
            if let Some(&(highest, _)) = arrived.iter().max_by_key(|(s, _)| *s) {
                let late = arrived
                    .iter()
                    .map(|(s, _)| *s)
                    .filter(|&s| s < report_from)
                    .min();
                let from = late.unwrap_or(report_from);
                if highest >= from {
                    let report: Report = (from..=highest)
                        .map(|s| (s, arrivals.get(&s).copied().filter(|a| *a <= now)))
                        .collect();
                    feedback.push_back((now + Duration::from_millis(40), report));
                    report_from = report_from.max(highest + 1);
                }
                // What was reported is kept only as long as it may be
                // asked about again.
                arrivals.retain(|&s, a| s >= report_from || *a > now);
            }
        }
        if ms % 1_000 == 0 {
            samples.push(bwe.estimate());
        }
    }
    (samples, dropped as f64 / (passed + dropped).max(1) as f64)
}

/// What bench/impair's capped leg does to a subscriber sent twice what its
/// link carries: the drops are loss, though each is resent with its
/// transport-wide number and some resends arrive (so must not be taken for
/// packets only reordered by the jitter), and the estimate falls below the
/// cap within seconds.
#[test]
fn a_drop_tail_cap_is_read_as_loss_and_lowers_the_estimate_below_it() {
    let mut bwe = Bwe::new(2_000_000);
    bwe.set_desired(2_000_000);
    let (estimates, dropped) = capped(
        &mut bwe,
        &Capped {
            capacity: 300_000.0,
            buffer: Duration::from_millis(250),
        },
        10,
        |_, _| 600_000.0,
    );
    assert!(dropped > 0.3, "dropped {dropped}");
    assert!(bwe.last_loss > 0.3, "loss {}", bwe.last_loss);
    assert!(
        estimates[6..].iter().all(|&e| e < 300_000),
        "estimates {estimates:?}"
    );
}

/// The capped leg's subscriber with the layers it is offered (the bench's
/// two publishers: `q` about 130 kbit/s, `h` about 320 kbit/s; two RED
/// audio streams about 180 kbit/s together), chosen as the router does
/// (`layers::choose`, `LayerSteps`, the budget shared after an audio
/// allowance): it steps down to `q` within seconds and stays there, never back up
/// to `h` while the cap holds. Even two `q`s and the audio do not fit 300
/// kbit/s, so the cap still drops packets; that is the layers' floor, not
/// the choice's.
#[test]
fn a_capped_subscriber_steps_down_to_the_lowest_layer_and_does_not_flap() {
    use crate::layer_steps::{Choice, LayerSteps};
    use crate::layers::{self, Layer};
    let (q, h, audio) = (130_000u64, 320_000u64, 180_000.0);
    let described = [
        Layer {
            size: Some((320, 180)),
            bitrate: Some(q),
            active: true,
        },
        Layer {
            size: Some((640, 360)),
            bitrate: Some(h),
            active: true,
        },
    ];
    let t0 = origin();
    let mut steps = [LayerSteps::default(), LayerSteps::default()];
    let mut current = [1usize, 1];
    let mut chosen = Vec::new();
    let mut bwe = Bwe::new(2_000_000);
    bwe.set_desired(128_000 + 2 * h * 5 / 4);
    let (_, dropped) = capped(
        &mut bwe,
        &Capped {
            capacity: 300_000.0,
            buffer: Duration::from_millis(250),
        },
        60,
        |at, estimate| {
            let budget = estimate.saturating_sub(2 * 64_000) / 2;
            for (v, steps) in steps.iter_mut().enumerate() {
                let c = current[v];
                let choice =
                    layers::choose(&described, Some((640, 360)), Some(budget), Some(c)).unwrap();
                current[v] = steps.decide(
                    t0 + at,
                    Choice {
                        target: Some(c),
                        ideal: 1,
                        chosen: choice,
                        target_active: true,
                        severe: budget < h / 2 && c == 1,
                    },
                );
            }
            chosen.push((at, current));
            audio
                + current
                    .iter()
                    .map(|&l| described[l].bitrate.unwrap_or(0) as f64)
                    .sum::<f64>()
        },
    );
    // Down within seconds of the cap (the estimate starts from 2 Mbit/s),
    // and never up again.
    let down = chosen
        .iter()
        .position(|(_, c)| *c == [0, 0])
        .expect("stepped down");
    assert!(
        chosen[down].0 <= Duration::from_secs(8),
        "{:?}",
        chosen[down]
    );
    assert!(
        chosen[down..].iter().all(|(_, c)| *c == [0, 0]),
        "{:?}",
        chosen[down..].iter().find(|(_, c)| *c != [0, 0])
    );
    assert!(dropped > 0.1, "dropped {dropped}");
}

/// The capped leg's subscriber as the router now serves it
/// (`video_pause.rs`): two RED audio streams (200 kbit/s on the wire, 100
/// stripped to their primary blocks) and two videos at their smallest
/// layer (150 kbit/s each), what is sent following the decision taken
/// every 250 ms from the delay-based estimate and the probes' proof.
/// Returns each decision with its time, the estimates each second, the
/// combined estimate's lowest, and the share the bottleneck dropped.
/// `signal` is what the decision reads (`None`: nothing held back, as
/// before).
fn served(
    c: &Capped,
    extra: &Extra,
    seconds: u64,
    signal: Option<fn(&Bwe) -> Congestion>,
) -> (Vec<(Duration, Decision)>, Vec<u64>, u64, f64) {
    const SMALLEST: [Option<u64>; 2] = [Some(150_000), Some(150_000)];
    let needs = Needs {
        audio_whole: 200_000,
        audio_primary: 100_000,
        smallest: &SMALLEST,
    };
    let mut pause = VideoPause::default();
    let mut decisions = Vec::new();
    let mut lowest = u64::MAX;
    let mut bwe = Bwe::new(2_000_000);
    // What the views want (640 wide: `h`, ~320 kbit/s, with headroom).
    bwe.set_desired(200_000 + 2 * 320_000 * 5 / 4);
    let (estimates, dropped) = capped_with(&mut bwe, c, extra, seconds, |at, now, bwe| {
        if bwe.has_feedback() {
            lowest = lowest.min(bwe.estimate());
        }
        let d = if let Some(signal) = signal {
            let congestion = bwe.has_feedback().then(|| signal(bwe));
            pause.decide(now, congestion, bwe.proven(now), &needs)
        } else {
            Decision {
                strip: false,
                forwarded: 2,
                proof_wanted: None,
            }
        };
        bwe.set_proof_wanted(d.proof_wanted);
        decisions.push((at, d));
        let audio = if d.strip { 100_000 } else { 200_000 };
        (audio + 150_000 * d.forwarded as u64) as f64
    });
    (decisions, estimates, lowest, dropped)
}

/// The reverted pause's signal: the combined estimate, read as a growing
/// queue's.
fn combined(bwe: &Bwe) -> Congestion {
    Congestion {
        delay_based: bwe.estimate(),
        with_loss: bwe.estimate(),
        loss: bwe.loss(),
    }
}

/// The level (0: everything, 1: RED stripped, 2: one video paused too).
fn level(d: &Decision) -> usize {
    match (d.strip, d.forwarded) {
        (false, _) => 0,
        (true, 2) => 1,
        (true, _) => 2,
    }
}

/// A change of level, with its time.
fn changes(decisions: &[(Duration, Decision)]) -> Vec<(Duration, usize)> {
    let mut out: Vec<(Duration, usize)> = Vec::new();
    for (at, d) in decisions {
        if out.last().is_none_or(|&(_, l)| l != level(d)) {
            out.push((*at, level(d)));
        }
    }
    out
}

const CAP: Capped = Capped {
    capacity: 300_000.0,
    buffer: Duration::from_millis(250),
};

/// A link far wider than anything sent: only loss and jitter, if any.
const AMPLE: Capped = Capped {
    capacity: 10_000_000.0,
    buffer: Duration::from_millis(250),
};

/// Issue 21 item 4: behind a 300 kbit/s drop-tail cap, RED audio and two
/// videos at their smallest layer (~500 kbit/s) do not fit. The
/// delay-based estimate reads the cap; RED is stripped, then one video
/// paused, and it stays so for the minute after (no resume: the
/// delay-based estimate grows once the queue drains, but no probe shows
/// the path carries more). The cap then drops a fraction of what it
/// dropped before.
#[test]
fn behind_a_drop_tail_cap_red_is_stripped_and_one_video_paused_without_flapping() {
    let extra = Extra {
        probing: true,
        resend_lost_only: true,
        count_from: Duration::from_secs(20),
        ..Extra::default()
    };
    let (decisions, estimates, _, dropped) = served(&CAP, &extra, 80, Some(Bwe::congestion));
    let changes = changes(&decisions);
    assert_eq!(
        changes.iter().map(|c| c.1).collect::<Vec<_>>(),
        [0, 1, 2],
        "{changes:?} estimates {estimates:?}"
    );
    assert!(changes[2].0 <= Duration::from_secs(20), "{changes:?}");
    // The last minute: the cap drops next to nothing, against a third or
    // more of everything before.
    let (_, _, _, before) = served(&CAP, &extra, 80, None);
    assert!(before > 0.3, "dropped before {before}");
    assert!(dropped < 0.02, "dropped {dropped}, before {before}");
}

/// 10 % random loss with 30-50 ms of jitter on an ample link: the loss
/// leg that the first pause broke (it paused one of two videos for every
/// member). Over three minutes the loss-based estimate falls below three
/// quarters of what is sent, as it did then (a pause fed the combined
/// estimate would have paused), but no queue stands and the delay-based
/// estimate stays: nothing stripped or paused.
#[test]
fn random_loss_with_jitter_strips_and_pauses_nothing() {
    let extra = Extra {
        random_loss: 0.10,
        probing: true,
        resend_lost_only: true,
        ..Extra::default()
    };
    let (decisions, estimates, lowest, _) = served(&AMPLE, &extra, 180, Some(Bwe::congestion));
    assert_eq!(changes(&decisions), [(Duration::ZERO, 0)], "{estimates:?}");
    // What the reverted pause read: the combined estimate, below three
    // quarters of the 500 kbit/s sent; fed that, the same decision strips
    // and pauses.
    assert!(lowest < 375_000, "lowest combined estimate {lowest}");
    let (decisions, _, _, _) = served(&AMPLE, &extra, 180, Some(combined));
    let levels: Vec<usize> = changes(&decisions).iter().map(|c| c.1).collect();
    assert!(levels.contains(&2), "{levels:?}");
}

/// 10 % random loss on an ample link, and at 20 s a step of 80 ms in the
/// path's delay: against the minimum of the minute before, a queue
/// stands, so the loss-based estimate speaks for random loss (as it did
/// in `e2e/bad-network.test.js`, which paused a video in two of three
/// runs). The ladder strips RED, but the strip is a trial: the loss does
/// not fall when less is sent, so it is undone at the trial's end before
/// any video is paused, and nothing is held back again for the rest of the
/// three minutes (the loss is not believed; then the step is the base).
#[test]
fn random_loss_after_a_delay_step_holds_back_once_for_a_trial_and_no_more() {
    let extra = Extra {
        random_loss: 0.10,
        probing: true,
        resend_lost_only: true,
        delay_step: Some((Duration::from_secs(20), Duration::from_millis(80))),
        ..Extra::default()
    };
    let (decisions, estimates, _, _) = served(&AMPLE, &extra, 180, Some(Bwe::congestion));
    let changes = changes(&decisions);
    let levels: Vec<usize> = changes.iter().map(|c| c.1).collect();
    assert_eq!(levels, [0, 1, 0], "{changes:?} estimates {estimates:?}");
    let held = changes[2].0.saturating_sub(changes[1].0);
    assert!(
        held <= LOSS_TRIAL + Duration::from_millis(250),
        "{changes:?}"
    );
}

/// Behind the cap, then the cap lifted at 30 s: probes show the path
/// carries the next level, which comes back one step at a time after
/// the resume hold: the video, then RED.
#[test]
fn a_paused_subscriber_resumes_when_the_link_widens() {
    let extra = Extra {
        probing: true,
        resend_lost_only: true,
        widen: Some((Duration::from_secs(30), 5_000_000.0)),
        ..Extra::default()
    };
    let (decisions, estimates, _, _) = served(&CAP, &extra, 75, Some(Bwe::congestion));
    let changes = changes(&decisions);
    assert_eq!(
        changes.iter().map(|c| c.1).collect::<Vec<_>>(),
        [0, 1, 2, 1, 0],
        "{changes:?} estimates {estimates:?}"
    );
    assert!(changes[3].0 > Duration::from_secs(30), "{changes:?}");
    assert!(changes[4].0 <= Duration::from_secs(60), "{changes:?}");
}
