//! The estimator against a simulated path: a sender that sends what the
//! estimate allows, a bottleneck of some capacity with a queue, random-free
//! loss, and feedback every 50 ms as a receiver's TWCC reports it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Bwe, FeedbackError};

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
fn no_probe_while_the_views_want_no_more_or_the_path_is_lossy() {
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
