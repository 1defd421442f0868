//! The link on virtual time, over a simulated network that loses,
//! reorders, duplicates and lets an attacker replay, forge and tamper.

use super::*;

/// Virtual time starts at a real instant (Instant has no other origin).
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn link(secret: &[u8], local: &str, peer: &str, epoch: u64, now: Instant) -> Link {
    Link::new(
        LinkConfig {
            secret: LinkSecret::new(secret),
            local: local.into(),
            peer: peer.into(),
            epoch,
            silence: SILENCE,
        },
        now,
    )
    .unwrap()
}

/// What happens to each datagram on the way.
enum Fate {
    Deliver,
    Drop,
    /// Delivered this much later than the others.
    Delay(Duration),
    Twice,
}

/// Two link ends and the datagrams between them.
struct Net {
    now: Instant,
    a: Link,
    b: Link,
    /// (when, to b?, datagram)
    wire: Vec<(Instant, bool, Vec<u8>)>,
    latency: Duration,
    /// Frames each side received, in order.
    got_a: Vec<Vec<u8>>,
    got_b: Vec<Vec<u8>>,
    /// Everything that went from a to b, for the attacker.
    seen: Vec<Vec<u8>>,
    sent: u64,
}

impl Net {
    fn new() -> Net {
        let now = start();
        Net {
            now,
            a: link(SECRET, "node-a", "node-b", 1_000, now),
            b: link(SECRET, "node-b", "node-a", 2_000, now),
            wire: Vec::new(),
            latency: Duration::from_millis(2),
            got_a: Vec::new(),
            got_b: Vec::new(),
            seen: Vec::new(),
            sent: 0,
        }
    }

    /// Moves each side's datagrams onto the wire, deciding their fate.
    fn transmit(&mut self, mut fate: impl FnMut(bool, u64) -> Fate) {
        for to_b in [true, false] {
            loop {
                let d = if to_b {
                    self.a.poll_transmit()
                } else {
                    self.b.poll_transmit()
                };
                let Some(d) = d else { break };
                self.sent += 1;
                if to_b {
                    self.seen.push(d.to_vec());
                }
                let at = self.now + self.latency;
                match fate(to_b, self.sent) {
                    Fate::Deliver => self.wire.push((at, to_b, d.to_vec())),
                    Fate::Drop => {}
                    Fate::Delay(by) => self.wire.push((at + by, to_b, d.to_vec())),
                    Fate::Twice => {
                        self.wire.push((at, to_b, d.to_vec()));
                        self.wire.push((at, to_b, d.to_vec()));
                    }
                }
            }
        }
    }

    /// Delivers what is due, and runs both ends' timers.
    fn deliver(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(at, _, _)| *at <= now);
        self.wire = later;
        for (_, to_b, mut d) in due {
            let (l, got) = if to_b {
                (&mut self.b, &mut self.got_b)
            } else {
                (&mut self.a, &mut self.got_a)
            };
            if let Ok(Received::Data(f)) = l.receive(&mut d, now) {
                got.push(f.to_vec());
            }
        }
        for l in [&mut self.a, &mut self.b] {
            if l.poll_timeout() <= now {
                l.handle_timeout(now);
            }
        }
    }

    /// Runs for `ms` milliseconds of virtual time, a step each.
    fn run(&mut self, ms: u64, mut fate: impl FnMut(bool, u64) -> Fate) {
        for _ in 0..ms {
            self.transmit(&mut fate);
            self.deliver();
            self.now += Duration::from_millis(1);
        }
    }
}

fn frame(i: u32) -> Vec<u8> {
    let mut f = i.to_be_bytes().to_vec();
    f.extend_from_slice(&[0x5a; 100]);
    f
}

fn index(f: &[u8]) -> u32 {
    u32::from_be_bytes([f[0], f[1], f[2], f[3]])
}

#[test]
fn frames_cross_both_ways_sealed() {
    let mut net = Net::new();
    for i in 0..50 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.b.send(&frame(1000 + i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    net.run(20, |_, _| Fate::Deliver);
    assert_eq!(net.got_b, (0..50).map(frame).collect::<Vec<_>>());
    assert_eq!(net.got_a, (1000..1050).map(frame).collect::<Vec<_>>());
    // The payload is not in the clear on the wire.
    let clear = [0x5a; 100];
    assert!(
        net.seen
            .iter()
            .all(|d| !d.windows(16).any(|w| w == &clear[..16]))
    );
    assert_eq!(net.b.stats().forged, 0);
    assert_eq!(net.b.stats().lost, 0);
}

#[test]
fn loss_on_the_link_is_repaired_by_nacks_once_per_packet() {
    let mut net = Net::new();
    // Every 7th datagram from a to b is lost, and every 5th NACK too.
    let mut n = 0u64;
    for i in 0..500 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |to_b, _| {
            n += 1;
            if (to_b && n.is_multiple_of(7)) || (!to_b && n.is_multiple_of(5)) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        });
    }
    net.run(300, |_, _| Fate::Deliver);
    let mut got: Vec<u32> = net.got_b.iter().map(|f| index(f)).collect();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>(), "each frame once");
    let (a, b) = (net.a.stats(), net.b.stats());
    assert!(b.repaired > 50, "{b:?}");
    assert_eq!(b.lost, 0, "{b:?}");
    assert!(a.resent >= b.repaired, "{a:?} {b:?}");
    // Each loss cost about one resend, not one per NACK.
    assert!(a.resent < b.repaired * 2, "{a:?} {b:?}");
}

#[test]
fn reordering_and_duplicates_deliver_each_frame_once_without_needless_resends() {
    let mut net = Net::new();
    for i in 0..300 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |to_b, n| match n % 10 {
            // Reordered by less than NACK_DELAY: no NACK.
            3 if to_b => Fate::Delay(Duration::from_millis(3)),
            6 => Fate::Twice,
            _ => Fate::Deliver,
        });
    }
    net.run(100, |_, _| Fate::Deliver);
    let mut got: Vec<u32> = net.got_b.iter().map(|f| index(f)).collect();
    assert_ne!(got, (0..300).collect::<Vec<_>>(), "reordered");
    got.sort_unstable();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    assert!(net.b.stats().replayed > 10, "{:?}", net.b.stats());
    assert_eq!(net.a.stats().resent, 0, "{:?}", net.a.stats());
}

#[test]
fn an_unrepairable_gap_counts_as_lost_after_nack_tries() {
    let mut net = Net::new();
    for i in 0..3 {
        let now = net.now;
        net.a.send(&frame(i), now);
    }
    let victim = net.a.outbox.get(1).unwrap().to_vec();
    // Seq 1 is lost, and out of the history too, so nothing resends it.
    net.a.outbox.retain(|d| d[..] != victim[..]);
    net.a.history.retain(|s| s.seq != 1);
    net.run(500, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.len(), 2);
    let b = net.b.stats();
    assert_eq!(b.lost, 1, "{b:?}");
    assert_eq!(b.nacks_sent, u64::from(NACK_TRIES), "{b:?}");
}

#[test]
fn datagrams_sent_before_the_peer_listened_are_asked_for_again() {
    let mut net = Net::new();
    for i in 0..3 {
        let now = net.now;
        net.a.send(&frame(i), now);
    }
    // b was not listening yet: the first three are lost.
    net.run(1, |_, _| Fate::Drop);
    let now = net.now;
    net.a.send(&frame(3), now);
    net.run(100, |_, _| Fate::Deliver);
    let mut got: Vec<u32> = net.got_b.iter().map(|f| index(f)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(net.b.stats().repaired, 3);
}

#[test]
fn replayed_datagrams_are_refused_even_long_after() {
    let mut net = Net::new();
    for i in 0..10 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    net.run(10, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.len(), 10);
    let captured = net.seen.clone();
    let now = net.now;
    for d in &captured {
        let mut d = d.clone();
        assert!(matches!(net.b.receive(&mut d, now), Err(Refused::Replayed)));
    }
    // Past the window, they are too old.
    for i in 0..(WINDOW as u32 + 10) {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    net.run(10, |_, _| Fate::Deliver);
    let now = net.now;
    for d in &captured {
        let mut d = d.clone();
        assert!(matches!(net.b.receive(&mut d, now), Err(Refused::TooOld)));
    }
    assert_eq!(net.got_b.len(), 10 + WINDOW as usize + 10);
    assert_eq!(net.b.stats().replayed, captured.len() as u64);
    assert_eq!(net.b.stats().too_old, captured.len() as u64);
}

#[test]
fn tampered_and_forged_datagrams_are_counted_and_change_nothing() {
    let mut net = Net::new();
    let now = net.now;
    net.a.send(&frame(1), now);
    let good = net.a.poll_transmit().unwrap().to_vec();
    let mut refused = 0;
    // Every single-bit flip of every byte is refused.
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut d = good.clone();
            d[i] ^= 1 << bit;
            let r = net.b.receive(&mut d, now);
            assert!(r.is_err(), "byte {i} bit {bit}: {r:?}");
            refused += 1;
        }
    }
    // Cut short, or empty.
    for cut in 0..good.len() {
        let mut d = good[..cut].to_vec();
        assert!(net.b.receive(&mut d, now).is_err());
        refused += 1;
    }
    let s = net.b.stats().clone();
    assert_eq!(
        s.forged + s.malformed + s.wrong_sender + s.stale_epoch,
        refused
    );
    assert!(
        s.forged > 0 && s.wrong_sender > 0 && s.malformed > 0,
        "{s:?}"
    );
    assert_eq!(s.received, 0);
    // The untouched one still opens: the refusals took no sequence number.
    let mut d = good.clone();
    assert_eq!(
        net.b.receive(&mut d, now),
        Ok(Received::Data(&frame(1)[..]))
    );
}

#[test]
fn a_stranger_without_the_secret_cannot_inject() {
    let mut net = Net::new();
    let now = net.now;
    // A stranger who knows both node IDs but not the secret, and copies the
    // sender tag it saw on the wire.
    net.a.send(&frame(0), now);
    let seen = net.a.poll_transmit().unwrap().to_vec();
    let mut stranger = link(
        b"not the cluster secret, guessed!",
        "node-a",
        "node-b",
        9_000,
        now,
    );
    for epoch in [1_000, 5_000, u64::MAX] {
        stranger.epoch = epoch;
        stranger.send(&frame(666), now);
        let mut d = stranger.poll_transmit().unwrap().to_vec();
        assert!(matches!(
            net.b.receive(&mut d.clone(), now),
            Err(Refused::WrongSender)
        ));
        d[1..9].copy_from_slice(&seen[1..9]);
        assert!(matches!(net.b.receive(&mut d, now), Err(Refused::Forged)));
    }
    assert_eq!(net.b.stats().received, 0);
    // Random bytes with the right header.
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut d = seen.clone();
        for (i, b) in d.iter_mut().enumerate().skip(17) {
            *b = (x >> (i % 8 * 8)) as u8 ^ i as u8;
        }
        assert!(net.b.receive(&mut d, now).is_err());
    }
    let mut d = seen.clone();
    assert!(matches!(net.b.receive(&mut d, now), Ok(Received::Data(_))));
}

#[test]
fn a_restarted_peer_gets_a_new_numbering_and_its_old_datagrams_stay_out() {
    let mut net = Net::new();
    for i in 0..20 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    let old = net.seen.clone();
    // a restarts: a later epoch, numbers from 0 again, a fresh key.
    net.a = link(SECRET, "node-a", "node-b", 1_500, net.now);
    for i in 100..110 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    net.run(5, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.len(), 30);
    let now = net.now;
    for d in &old {
        let mut d = d.clone();
        assert!(matches!(
            net.b.receive(&mut d, now),
            Err(Refused::StaleEpoch)
        ));
    }
    // Its sequence numbers restarted under the new key: no false "replay"
    // and no NACK storm.
    assert_eq!(net.b.stats().replayed, 0);
    assert_eq!(net.a.stats().resent, 0);

    // a restarts with its clock stepped back: refused while b follows the
    // later start, taken once a has been silent past the timeout.
    net.a = link(SECRET, "node-a", "node-b", 1_200, net.now);
    let now = net.now;
    net.a.send(&frame(200), now);
    net.run(5, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.len(), 30);
    net.run(SILENCE.as_millis() as u64 + 100, |to_b, _| {
        if to_b { Fate::Drop } else { Fate::Deliver }
    });
    assert!(net.b.is_gone());
    let now = net.now;
    net.a.send(&frame(201), now);
    net.run(5, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.last(), Some(&frame(201)));
    assert!(!net.b.is_gone());
}

#[test]
fn silence_says_the_peer_is_gone_and_keepalives_keep_an_idle_link() {
    let mut net = Net::new();
    // Idle for three silence timeouts: keepalives only, nobody gone.
    net.run(3 * SILENCE.as_millis() as u64, |_, _| Fate::Deliver);
    assert!(!net.a.is_gone() && !net.b.is_gone());
    assert_eq!(net.b.poll_event(), None);
    // a goes quiet (its datagrams are lost): b says so once, after the
    // timeout; a still hears b.
    let start = net.now;
    net.run(SILENCE.as_millis() as u64 + 600, |to_b, _| {
        if to_b { Fate::Drop } else { Fate::Deliver }
    });
    assert!(net.b.is_gone());
    assert_eq!(net.b.poll_event(), Some(LinkEvent::Gone));
    assert_eq!(net.b.poll_event(), None);
    assert!(!net.a.is_gone());
    assert!(net.now.duration_since(start) >= SILENCE);
    // Heard again: back.
    net.run(1000, |_, _| Fate::Deliver);
    assert!(!net.b.is_gone());
    assert_eq!(net.b.poll_event(), Some(LinkEvent::Back));
}

#[test]
fn a_peer_s_earlier_start_is_never_taken_again_even_after_silence() {
    let mut net = Net::new();
    for i in 0..20 {
        let now = net.now;
        net.a.send(&frame(i), now);
        net.run(1, |_, _| Fate::Deliver);
    }
    // Recorded by someone on the path: all of a's first run.
    let old = net.seen.clone();
    net.a = link(SECRET, "node-a", "node-b", 1_500, net.now);
    let now = net.now;
    net.a.send(&frame(100), now);
    net.run(5, |_, _| Fate::Deliver);
    assert_eq!(net.got_b.len(), 21);
    // a falls silent (down, or cut off): b says it is gone.
    net.run(SILENCE.as_millis() as u64 + 100, |to_b, _| {
        if to_b { Fate::Drop } else { Fate::Deliver }
    });
    assert!(net.b.is_gone());
    // The recording of a's first run, replayed now, is still refused: b
    // followed a later start of a, and it would otherwise be taken whole
    // (its numbers are fresh to a new window).
    let now = net.now;
    for d in &old {
        let mut d = d.clone();
        assert_eq!(net.b.receive(&mut d, now), Err(Refused::StaleEpoch));
    }
    assert_eq!(net.got_b.len(), 21);
    assert_eq!(net.b.peer_epoch(), Some(1_500));
    assert!(net.b.is_gone());
}
