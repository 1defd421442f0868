//! Last-N audio on the simulated network: each subscriber receives the audio
//! of the N loudest other members (RFC 6464 levels, read from the clear
//! header extension), silence reaches nobody, and what is left out leaves
//! no gap a receiver would NACK.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conclave_media::{DEFAULT_AUDIO_LAST_N, PeerId};
use harness::{Net, Received};
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};

/// A member that publishes nothing and only listens.
const LISTENER: PeerId = PeerId(100);

/// A meeting of audio-only members talking in 20 ms Opus packets.
struct Meeting {
    net: Net,
    /// Each member's id and the m-line it sends audio on.
    members: Vec<(PeerId, Mid)>,
    /// Each member's level (-dBov, 0 loudest, 127 silence); `None`: sends
    /// nothing.
    levels: Vec<Option<u8>>,
    seq: u64,
}

impl Meeting {
    fn new(members: usize) -> Self {
        Self::with(members, Net::new())
    }

    fn with(members: usize, mut net: Net) -> Self {
        let mut ids = Vec::new();
        for i in 0..members {
            let id = PeerId(i as u64 + 1);
            net.join(id, &format!("10.0.1.{}:5000", i + 2), &[MediaKind::Audio]);
            ids.push(id);
        }
        net.join(LISTENER, "10.0.2.1:5000", &[]);
        net.connect_all();
        net.run_for(Duration::from_millis(100));
        let members = ids
            .into_iter()
            .map(|id| (id, net.client(id).sending[0].0))
            .collect();
        Meeting {
            net,
            members,
            levels: vec![None; 0],
            seq: 1_000,
        }
    }

    /// Every member with a level sends one packet each 20 ms, for `ms`.
    fn talk(&mut self, ms: u64) {
        for t in 0..ms {
            if t.is_multiple_of(20) {
                let ts = (self.seq as u32).wrapping_mul(960);
                for (i, (id, mid)) in self.members.iter().enumerate() {
                    if let Some(Some(level)) = self.levels.get(i) {
                        self.net
                            .send_audio_level(*id, *mid, self.seq, ts, -(*level as i8));
                    }
                }
                self.seq += 1;
            }
            self.net.step();
        }
    }

    /// What `sub` received so far, by publisher.
    fn received(&mut self, sub: PeerId) -> BTreeMap<PeerId, Vec<Received>> {
        let by_mid: BTreeMap<Mid, PeerId> = self
            .net
            .router
            .forwarded_to(sub)
            .into_iter()
            .map(|t| (t.mid, t.publisher))
            .collect();
        let mut out: BTreeMap<PeerId, Vec<Received>> = BTreeMap::new();
        for r in self.net.client(sub).received() {
            if let Some(p) = r.mid.and_then(|m| by_mid.get(&m)) {
                out.entry(*p).or_default().push(r);
            }
        }
        out
    }

    /// How many packets `sub` received from each publisher since `since`.
    fn counts_since(&mut self, sub: PeerId, since: Instant) -> BTreeMap<PeerId, usize> {
        self.received(sub)
            .into_iter()
            .map(|(p, rs)| (p, rs.iter().filter(|r| r.at >= since).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The members every subscriber should hear: the `n` loudest others.
    fn loudest_others(&self, sub: PeerId, n: usize) -> Vec<PeerId> {
        let mut others: Vec<(u8, PeerId)> = self
            .members
            .iter()
            .zip(&self.levels)
            .filter(|((id, _), _)| *id != sub)
            .filter_map(|((id, _), l)| l.map(|l| (l, *id)))
            .collect();
        others.sort();
        let mut top: Vec<PeerId> = others.into_iter().take(n).map(|(_, id)| id).collect();
        top.sort();
        top
    }

    fn subscribers(&self) -> Vec<PeerId> {
        self.members
            .iter()
            .map(|(id, _)| *id)
            .chain([LISTENER])
            .collect()
    }
}

/// Sequence numbers of one received stream go up by exactly one, and
/// timestamps never go back: nothing for the receiver to NACK.
fn assert_continuous(rs: &[Received], what: &str) {
    for w in rs.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{what}: gap or reorder between {} and {}",
            w[0].seq,
            w[1].seq
        );
        let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
        assert!(step > 0 && step < 1 << 31, "{what}: timestamp went back");
    }
}

#[test]
fn ten_members_talking_each_hear_the_n_loudest_others() {
    let mut m = Meeting::new(10);
    // Member i at -(10 + 8 (9 - i)) dBov: the first to join (and to send)
    // is the quietest, so the first slots taken are the wrong ones.
    m.levels = (0..10u8).map(|i| Some(10 + 8 * (9 - i))).collect();
    m.talk(1_500);
    let since = m.net.now;
    m.talk(1_000);
    for sub in m.subscribers() {
        let counts = m.counts_since(sub, since);
        let heard: Vec<PeerId> = counts.keys().copied().collect();
        assert_eq!(
            heard,
            m.loudest_others(sub, DEFAULT_AUDIO_LAST_N),
            "{sub} hears {counts:?}"
        );
        assert!(counts.values().all(|n| *n == 50), "{sub}: {counts:?}");
        assert!(!heard.contains(&sub));
    }
    // 11 subscribers × 3 streams, not 10 × 9 + 10.
    let unselected: u64 = m
        .subscribers()
        .iter()
        .map(|s| m.net.router.peer_stats(*s).unwrap().audio_unselected)
        .sum();
    assert!(unselected > 0);
    for sub in m.subscribers() {
        for (p, rs) in m.received(sub) {
            assert_continuous(&rs, &format!("{p} to {sub}"));
        }
    }
}

#[test]
fn a_quiet_member_who_becomes_loud_is_heard_within_100_ms() {
    let mut m = Meeting::new(5);
    m.levels = vec![Some(20), Some(25), Some(30), Some(70), Some(80)];
    m.talk(2_000);
    let quiet = m.members[4].0;
    assert!(
        !m.counts_since(LISTENER, m.net.now - Duration::from_millis(500))
            .contains_key(&quiet)
    );
    m.levels[4] = Some(10);
    let start = m.net.now;
    while !m.counts_since(LISTENER, start).contains_key(&quiet) {
        m.talk(1);
        assert!(
            m.net.now - start <= Duration::from_millis(100),
            "not heard within 100 ms"
        );
    }
    // It took the slot of the quietest of the three.
    m.talk(500);
    let since = m.net.now;
    m.talk(500);
    let heard: Vec<PeerId> = m.counts_since(LISTENER, since).into_keys().collect();
    assert_eq!(heard, vec![PeerId(1), PeerId(2), quiet]);
    for (p, rs) in m.received(LISTENER) {
        assert_continuous(&rs, &format!("{p}"));
    }
}

#[test]
fn two_similar_speakers_do_not_flap() {
    let mut m = Meeting::new(4);
    // 1 and 2 talk steadily; 3 and 4 compete for the last slot, each 2 dB
    // louder than the other in turn.
    m.levels = vec![Some(10), Some(12), Some(30), Some(30)];
    m.talk(1_000);
    let changes = m.net.router.stats().audio_selection_changes;
    let since = m.net.now;
    for i in 0..20 {
        let (a, b) = if i % 2 == 0 { (28, 30) } else { (30, 28) };
        m.levels[2] = Some(a);
        m.levels[3] = Some(b);
        m.talk(300);
    }
    assert_eq!(m.net.router.stats().audio_selection_changes, changes);
    let heard = m.counts_since(LISTENER, since);
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert!(heard.values().all(|n| *n == 300), "{heard:?}");
}

#[test]
fn silence_is_forwarded_to_nobody_and_leaves_no_gap() {
    let mut m = Meeting::new(2);
    let (a, b) = (m.members[0].0, m.members[1].0);
    m.levels = vec![Some(30), Some(30)];
    m.talk(500);
    // B's microphone goes silent (a muted track sends digital silence).
    m.levels[1] = Some(127);
    let since = m.net.now;
    m.talk(1_000);
    let heard = m.counts_since(LISTENER, since);
    assert_eq!(heard.get(&b), None, "silence was forwarded");
    assert_eq!(heard.get(&a), Some(&50));
    assert_eq!(
        m.net.router.peer_stats(b).unwrap().audio_silence_dropped,
        50
    );
    m.levels[1] = Some(30);
    m.talk(500);
    let rs = &m.received(LISTENER)[&b];
    assert_continuous(rs, "B to the listener");
    // The first packet after the pause starts a talkspurt, with media time
    // moved on by the second of silence.
    let resumed = rs.iter().position(|r| r.at > since).unwrap();
    assert!(rs[resumed].marker);
    assert_eq!(
        rs[resumed]
            .timestamp
            .wrapping_sub(rs[resumed - 1].timestamp),
        51 * 960
    );
    // B never hears itself; A heard B too.
    assert!(!m.received(b).contains_key(&b));
    assert!(m.received(a).contains_key(&b));
}

#[test]
fn sequence_numbers_stay_continuous_across_switches() {
    let mut m = Meeting::new(6);
    m.levels = vec![Some(20), Some(22), Some(24), Some(60), Some(70), Some(80)];
    // The quiet ones take turns shouting, then fall silent or quiet: each
    // turn moves them in and out of everyone's selection.
    for turn in 0..6 {
        m.levels[3 + turn % 3] = Some(5);
        m.talk(800);
        m.levels[3 + turn % 3] = if turn % 2 == 0 { Some(127) } else { Some(90) };
        m.talk(700);
    }
    assert!(m.net.router.stats().audio_selection_changes > 6 * 11);
    for sub in m.subscribers() {
        let received = m.received(sub);
        assert!(
            received.len() > DEFAULT_AUDIO_LAST_N,
            "{sub} heard every turn"
        );
        for (p, rs) in received {
            assert_continuous(&rs, &format!("{p} to {sub}"));
        }
    }
}

#[test]
fn packets_without_a_usable_level_are_counted_and_never_panic() {
    let mut m = Meeting::new(5);
    m.levels = vec![Some(20), Some(22), Some(24), Some(26), None];
    m.talk(600);
    let (a, a_mid) = m.members[0];
    let (e, e_mid) = m.members[4];
    let opus = m.net.client(a).pt_of(Codec::Opus);
    // A's level extension goes missing on ten packets; E never sends one.
    for i in 0..10u64 {
        let seq = m.seq + i;
        let ts = (seq as u32).wrapping_mul(960);
        m.net
            .send_rtp(a, a_mid, opus, seq, ts, false, &[0xf8, 0xff]);
        m.net
            .send_rtp(e, e_mid, opus, seq, ts, false, &[0xf8, 0xff]);
        for j in 1..4 {
            let (id, mid) = m.members[j];
            let level = m.levels[j].unwrap();
            m.net.send_audio_level(id, mid, seq, ts, -(level as i8));
        }
        for _ in 0..20 {
            m.net.step();
        }
    }
    m.seq += 10;
    m.talk(400);
    assert_eq!(
        m.net.router.peer_stats(a).unwrap().audio_levels_malformed,
        10
    );
    assert_eq!(
        m.net.router.peer_stats(e).unwrap().audio_levels_malformed,
        0
    );
    // A stays selected (its last level decides); E, which cannot be ranked,
    // reaches everyone.
    let heard = m.received(LISTENER);
    assert_eq!(heard[&e].len(), 10);
    assert_eq!(heard[&a].len(), 30 + 10 + 20);
    assert!(!heard.contains_key(&m.members[3].0));
    for (p, rs) in heard {
        assert_continuous(&rs, &format!("{p}"));
    }
}

#[test]
fn without_a_limit_everyone_hears_everyone() {
    let mut m = Meeting::with(5, Net::with_config(|c| c.audio_last_n = None));
    m.levels = vec![Some(20), Some(30), Some(40), Some(50), Some(60)];
    m.talk(1_000);
    for sub in m.subscribers() {
        let heard = m.received(sub);
        let expected = if sub == LISTENER { 5 } else { 4 };
        assert_eq!(heard.len(), expected, "{sub}");
        assert!(heard.values().all(|rs| rs.len() == 50));
    }
    assert_eq!(m.net.router.stats().audio_selection_changes, 0);
}
