//! Last-N audio: which publishers' audio each subscriber receives.
//!
//! In a meeting where everyone may talk, forwarding every audio track to
//! every member costs M × (M − 1) packets per 20 ms, almost all of them
//! background noise nobody needs. A subscriber gets instead the audio of the
//! N loudest members other than itself, ranked by the RFC 6464 levels the
//! senders put in the clear header extension (the payload is SFrame
//! ciphertext and is never read). Jitsi's bridge does the same with
//! `loudest.num-loudest = 3`; [`DEFAULT_AUDIO_LAST_N`] follows it: three
//! voices at once is already more than a listener follows, and it leaves
//! room for one interruption while two talk.
//!
//! Switching must not chop speech, so a selection changes by these rules:
//!
//! - a free slot is taken at the next evaluation (every [`SELECT_INTERVAL`]);
//! - a source takes a full subscriber's slot only from the weakest holder
//!   that has held it for [`MIN_HOLD`], and only when it is louder than that
//!   holder by [`SWITCH_MARGIN_DB`] (two similar voices never trade places);
//! - levels rise fast and fall slowly ([`ATTACK`], [`RELEASE`]), so a newly
//!   loud source outranks a quiet holder after two or three packets, while a
//!   holder's pause between words does not drop it;
//! - a source that sent no level for [`EXPIRE`] (muted, DTX, gone) ranks as
//!   silent, and its slot goes to the next loud source once held long enough.
//!
//! So a newly loud source gets in within about 60 ms when the weakest holder
//! has held its slot for [`MIN_HOLD`] already (the usual case), and within
//! [`MIN_HOLD`] plus that otherwise.
//!
//! A source that has never sent a level (a client without the extension) is
//! forwarded to everyone and takes no slot: it cannot be ranked, and silencing
//! it would be worse than the packets it costs.
//!
//! Pure: levels and time are passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How many other members' audio a subscriber receives by default.
pub const DEFAULT_AUDIO_LAST_N: usize = 3;
/// How often the selections are re-evaluated: once per Opus frame.
pub const SELECT_INTERVAL: Duration = Duration::from_millis(20);
/// How long a source keeps a slot before a louder one may take it. Long
/// enough that a burst of speech is heard to its end and a slot does not
/// change more than twice a second; short enough that a newcomer who finds
/// every slot just taken waits at most half a second.
pub const MIN_HOLD: Duration = Duration::from_millis(500);
/// How much louder (dB) than a holder a source must be to take its slot:
/// the same hysteresis as the active speaker's (`speaker.rs`), more than
/// the few dB a steady voice's smoothed level wanders.
pub const SWITCH_MARGIN_DB: f32 = 6.0;
/// A source with no level for this long ranks as silent. Longer than one
/// Opus DTX interval (400 ms), so DTX alone does not make a speaker expire.
pub const EXPIRE: Duration = Duration::from_millis(500);
/// RFC 6464's level of digital silence (-127 dBov).
pub const SILENT_LEVEL: u8 = 127;

/// Weight of a new level that is louder than the smoothed one: half, as in
/// Jitsi's `energy-alpha-pct = 50`; with 20 ms packets a jump of 40 dB is
/// within 10 dB after two packets.
const ATTACK: f32 = 0.5;
/// Weight of a new level that is quieter: a time constant of about 200 ms
/// at 20 ms packets, longer than the gaps between words.
const RELEASE: f32 = 0.1;

/// What a packet's audio level extension said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// -dBov, 0 (loudest) to 127 (silence).
    Present(u8),
    /// The packet carried no level.
    Missing,
    /// A value RFC 6464 cannot express.
    Malformed,
}

impl Level {
    /// Reads str0m's value: RFC 6464's 0..=127, or str0m's negative form
    /// -127..=0. -128 has no meaning in either.
    pub fn read(raw: Option<i8>) -> Level {
        match raw {
            None => Level::Missing,
            Some(i8::MIN) => Level::Malformed,
            Some(v) => Level::Present(v.unsigned_abs()),
        }
    }
}

#[derive(Debug, Clone)]
struct Source {
    /// Smoothed level in dBov (0 loudest, -127 silence).
    level: f32,
    /// The last packet with a level other than silence.
    last_heard: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Slot<K> {
    source: K,
    since: Instant,
}

/// The last-N selection of every subscriber of one meeting, over audio
/// sources `K` (publishers).
#[derive(Debug, Clone)]
pub struct AudioSelector<K> {
    /// `None`: no limit (every source goes to every subscriber).
    n: Option<usize>,
    sources: BTreeMap<K, Source>,
    selections: BTreeMap<K, Vec<Slot<K>>>,
    evaluated: Option<Instant>,
    /// Reused for the ranking.
    ranked: Vec<(K, f32)>,
    /// Reused for one subscriber's N loudest others.
    wanted: Vec<(K, f32)>,
    changes: u64,
}

impl<K: Ord + Copy> AudioSelector<K> {
    /// `n` sources per subscriber; `None` or 0 for no limit.
    pub fn new(n: Option<usize>) -> Self {
        AudioSelector {
            n: n.filter(|n| *n > 0),
            sources: BTreeMap::new(),
            selections: BTreeMap::new(),
            evaluated: None,
            ranked: Vec::new(),
            wanted: Vec::new(),
            changes: 0,
        }
    }

    /// A packet of `source` carried `level` (-dBov).
    pub fn on_level(&mut self, source: K, level: u8, now: Instant) {
        let dbov = -f32::from(level.min(SILENT_LEVEL));
        let s = self.sources.entry(source).or_insert(Source {
            level: dbov,
            last_heard: None,
        });
        let weight = if dbov > s.level { ATTACK } else { RELEASE };
        s.level += (dbov - s.level) * weight;
        if level < SILENT_LEVEL {
            s.last_heard = Some(now);
        }
    }

    /// Whether `source` has sent a level (and so is ranked, not forwarded
    /// to everyone).
    pub fn is_ranked(&self, source: K) -> bool {
        self.sources.contains_key(&source)
    }

    /// The source stops counting (muted by the meeting, track gone): its
    /// slots are free at once.
    pub fn remove(&mut self, source: K) {
        if self.sources.remove(&source).is_some() {
            for slots in self.selections.values_mut() {
                slots.retain(|s| s.source != source);
            }
        }
    }

    /// The subscriber is gone.
    pub fn remove_subscriber(&mut self, subscriber: K) {
        self.selections.remove(&subscriber);
    }

    /// Whether `subscriber` receives `source`'s audio now.
    pub fn forwards(&self, source: K, subscriber: K) -> bool {
        if self.n.is_none() || !self.sources.contains_key(&source) {
            return true;
        }
        self.selections
            .get(&subscriber)
            .is_some_and(|slots| slots.iter().any(|s| s.source == source))
    }

    /// Selections changed so far (a source in or out of a subscriber's set).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The sources `subscriber` receives, by slot.
    #[cfg(test)]
    pub fn selected(&self, subscriber: K) -> Vec<K> {
        let mut v: Vec<K> = self
            .selections
            .get(&subscriber)
            .map(|s| s.iter().map(|s| s.source).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Re-evaluates every subscriber's selection, at most once per
    /// [`SELECT_INTERVAL`].
    pub fn poll(&mut self, subscribers: impl Iterator<Item = K>, now: Instant) {
        let Some(n) = self.n else { return };
        if self
            .evaluated
            .is_some_and(|t| now.saturating_duration_since(t) < SELECT_INTERVAL)
        {
            return;
        }
        self.evaluated = Some(now);
        let level = |s: &Source| match s.last_heard {
            Some(t) if now.saturating_duration_since(t) < EXPIRE => s.level,
            _ => -f32::from(SILENT_LEVEL),
        };
        let mut ranked = std::mem::take(&mut self.ranked);
        ranked.clear();
        ranked.extend(self.sources.iter().map(|(k, s)| (*k, level(s))));
        // Loudest first; ties by key, so every evaluation ranks alike.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut wanted = std::mem::take(&mut self.wanted);
        for sub in subscribers {
            let slots = self.selections.entry(sub).or_default();
            wanted.clear();
            wanted.extend(ranked.iter().filter(|(k, _)| *k != sub).take(n));
            for &(k, l) in &wanted {
                if slots.iter().any(|s| s.source == k) {
                    continue;
                }
                if slots.len() < n {
                    slots.push(Slot {
                        source: k,
                        since: now,
                    });
                    self.changes += 1;
                    continue;
                }
                let level_of = |k: K| {
                    ranked
                        .iter()
                        .find(|(r, _)| *r == k)
                        .map_or(-f32::from(SILENT_LEVEL), |(_, l)| *l)
                };
                let weakest = slots
                    .iter_mut()
                    // Only a holder that is not among the N loudest
                    // itself gives way.
                    .filter(|s| !wanted.iter().any(|(w, _)| *w == s.source))
                    .filter(|s| now.saturating_duration_since(s.since) >= MIN_HOLD)
                    .map(|s| {
                        let l = level_of(s.source);
                        (s, l)
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((slot, held)) = weakest
                    && l > held + SWITCH_MARGIN_DB
                {
                    *slot = Slot {
                        source: k,
                        since: now,
                    };
                    self.changes += 1;
                }
            }
        }
        self.ranked = ranked;
        self.wanted = wanted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Instant {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    /// 20 ms packets for `ms` at the given levels (None: sends nothing);
    /// subscribers are every source plus 100 (a listener).
    fn run(sel: &mut AudioSelector<u32>, t: &mut Instant, ms: u64, levels: &[(u32, Option<u8>)]) {
        for _ in 0..ms / 20 {
            *t += Duration::from_millis(20);
            for (k, l) in levels {
                if let Some(l) = l {
                    sel.on_level(*k, *l, *t);
                }
            }
            let subs: Vec<u32> = levels.iter().map(|(k, _)| *k).chain([100]).collect();
            sel.poll(subs.into_iter(), *t);
        }
    }

    #[test]
    fn each_subscriber_gets_the_n_loudest_others() {
        let mut t = origin();
        let mut sel = AudioSelector::new(Some(3));
        // Source k at -(10 + 8k) dBov: 0 loudest. Quietest join first.
        let levels: Vec<(u32, Option<u8>)> = (0..10u32)
            .rev()
            .map(|k| (k, Some(10 + 8 * k as u8)))
            .collect();
        run(&mut sel, &mut t, 2_000, &levels);
        assert_eq!(sel.selected(100), vec![0, 1, 2]);
        assert_eq!(sel.selected(5), vec![0, 1, 2]);
        assert_eq!(sel.selected(0), vec![1, 2, 3]);
        assert_eq!(sel.selected(2), vec![0, 1, 3]);
        for k in 0..10 {
            assert!(!sel.selected(k).contains(&k), "nobody gets its own audio");
        }
    }

    #[test]
    fn a_source_that_becomes_loud_gets_in_quickly() {
        let mut t = origin();
        let mut sel = AudioSelector::new(Some(2));
        let mut levels = vec![(1, Some(20)), (2, Some(30)), (3, Some(90))];
        run(&mut sel, &mut t, 2_000, &levels);
        assert_eq!(sel.selected(100), vec![1, 2]);
        levels[2].1 = Some(10);
        let start = t;
        while !sel.selected(100).contains(&3) {
            run(&mut sel, &mut t, 20, &levels);
            assert!(t - start <= Duration::from_millis(100), "3 not in yet");
        }
        assert_eq!(sel.selected(100), vec![1, 3]);
    }

    #[test]
    fn similar_sources_do_not_trade_places() {
        let mut t = origin();
        let mut sel = AudioSelector::new(Some(1));
        run(&mut sel, &mut t, 1_000, &[(1, Some(30)), (2, Some(32))]);
        let changes = sel.changes();
        for i in 0..40 {
            let (a, b) = if i % 2 == 0 { (30, 26) } else { (26, 30) };
            run(&mut sel, &mut t, 300, &[(1, Some(a)), (2, Some(b))]);
        }
        assert_eq!(sel.changes(), changes);
    }

    #[test]
    fn a_holder_keeps_its_slot_for_the_minimum_time() {
        let mut t = origin();
        let mut sel = AudioSelector::new(Some(1));
        run(&mut sel, &mut t, 1_000, &[(1, Some(40))]);
        // 1 fell silent; 2 starts, takes the slot; 3 is louder at once.
        run(&mut sel, &mut t, 600, &[(1, None), (2, Some(40))]);
        assert_eq!(sel.selected(100), vec![2]);
        let taken = t;
        run(
            &mut sel,
            &mut t,
            300,
            &[(1, None), (2, Some(40)), (3, Some(5))],
        );
        assert_eq!(sel.selected(100), vec![2], "held");
        run(
            &mut sel,
            &mut t,
            300,
            &[(1, None), (2, Some(40)), (3, Some(5))],
        );
        assert_eq!(sel.selected(100), vec![3]);
        assert!(t - taken <= MIN_HOLD + Duration::from_millis(100));
    }

    #[test]
    fn unranked_sources_and_no_limit_forward_everything() {
        let mut t = origin();
        let mut sel = AudioSelector::new(None);
        run(&mut sel, &mut t, 200, &[(1, Some(10)), (2, Some(100))]);
        assert!(sel.forwards(1, 100) && sel.forwards(2, 100));
        let mut sel = AudioSelector::new(Some(1));
        run(&mut sel, &mut t, 200, &[(1, Some(10))]);
        // 7 never sent a level: it reaches everyone.
        assert!(sel.forwards(7, 100));
        assert!(!sel.is_ranked(7));
        // Removing a source frees its slot.
        sel.remove(1);
        assert!(sel.selected(100).is_empty());
    }

    #[test]
    fn levels_read_both_forms_and_refuse_nonsense() {
        assert_eq!(Level::read(Some(-20)), Level::Present(20));
        assert_eq!(Level::read(Some(20)), Level::Present(20));
        assert_eq!(Level::read(Some(-127)), Level::Present(127));
        assert_eq!(Level::read(None), Level::Missing);
        assert_eq!(Level::read(Some(i8::MIN)), Level::Malformed);
    }
}
