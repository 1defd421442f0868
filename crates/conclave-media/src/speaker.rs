//! Active speaker detection from RFC 6464 audio levels.
//!
//! Senders put the level of each audio packet in a header extension
//! (`urn:ietf:params:rtp-hdrext:ssrc-audio-level`): 0 to 127, in -dBov, 127
//! being silence. The router reads it without touching the (encrypted)
//! payload and keeps, per audio source, a level smoothed over a few hundred
//! milliseconds. The active speaker is the loudest source, with three rules
//! so that the highlight in the clients follows the conversation rather than
//! every cough:
//!
//! - a newcomer must be louder than the current speaker by [`MARGIN_DB`]
//!   (hysteresis),
//! - and stay so for [`DOMINANCE`] (a blip does not count),
//! - and the speaker changes at most once per [`MIN_HOLD`].
//!
//! A source that is quieter than [`SPEECH_FLOOR_DB`], sends nothing for
//! [`SILENCE_AFTER`] (muted, DTX) or was removed (gated by the meeting, gone)
//! cannot become the speaker. The current speaker stays named while nobody
//! else qualifies: a pause does not clear the highlight.
//!
//! Pure: levels and time are passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much louder (dB) a source must be than the current speaker.
pub const MARGIN_DB: f32 = 6.0;
/// How long it must stay that much louder.
pub const DOMINANCE: Duration = Duration::from_millis(400);
/// Minimum time between two changes of speaker.
pub const MIN_HOLD: Duration = Duration::from_secs(1);
/// Quieter than this (dBov) is not speech.
pub const SPEECH_FLOOR_DB: f32 = -50.0;
/// A source with no level for this long counts as silent.
pub const SILENCE_AFTER: Duration = Duration::from_millis(500);

/// Weight of a new level in the smoothed one. Packets come every 20 ms, so
/// the smoothing has a time constant of about 200 ms.
const SMOOTHING: f32 = 0.1;

#[derive(Debug, Clone)]
struct Source {
    /// Smoothed level in dBov (0 loudest, -127 silence).
    level: f32,
    last_level: Instant,
    /// Since when this source has been loud enough to take over.
    dominant_since: Option<Instant>,
}

/// The active speaker among the audio sources `K` of one meeting.
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    sources: BTreeMap<K, Source>,
    current: Option<K>,
    changed_at: Option<Instant>,
}

impl<K: Ord + Copy> Default for SpeakerDetector<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy> SpeakerDetector<K> {
    pub fn new() -> Self {
        SpeakerDetector {
            sources: BTreeMap::new(),
            current: None,
            changed_at: None,
        }
    }

    /// A packet of `source` carried `level` (-dBov as in RFC 6464: 0..=127,
    /// or str0m's negative form -127..=0; both are read as dBov).
    pub fn on_level(&mut self, source: K, level: i8, now: Instant) {
        let dbov = -f32::from(level.unsigned_abs().min(127));
        let s = self.sources.entry(source).or_insert(Source {
            level: -127.0,
            last_level: now,
            dominant_since: None,
        });
        s.level += (dbov - s.level) * SMOOTHING;
        s.last_level = now;
    }

    /// The source stops counting (muted by the meeting, track gone).
    pub fn remove(&mut self, source: K) {
        self.sources.remove(&source);
        if self.current == Some(source) {
            self.current = None;
        }
    }

    /// The current speaker.
    pub fn current(&self) -> Option<K> {
        self.current
    }

    /// Re-evaluates at `now`; returns the new speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<K> {
        let level = |s: &Source| {
            if now.saturating_duration_since(s.last_level) >= SILENCE_AFTER {
                -127.0
            } else {
                s.level
            }
        };
        let floor = self
            .current
            .and_then(|c| self.sources.get(&c))
            .map(|s| level(s) + MARGIN_DB)
            .unwrap_or(f32::MIN)
            .max(SPEECH_FLOOR_DB);
        let current = self.current;
        let mut best: Option<(K, f32, Instant)> = None;
        for (k, s) in &mut self.sources {
            let l = level(s);
            if Some(*k) == current || l < floor {
                s.dominant_since = None;
                continue;
            }
            let since = *s.dominant_since.get_or_insert(now);
            if best.is_none_or(|(_, b, _)| l > b) {
                best = Some((*k, l, since));
            }
        }
        let (k, _, since) = best?;
        let held = self
            .changed_at
            .is_none_or(|t| now.saturating_duration_since(t) >= MIN_HOLD);
        if !held || now.saturating_duration_since(since) < DOMINANCE {
            return None;
        }
        self.current = Some(k);
        self.changed_at = Some(now);
        for s in self.sources.values_mut() {
            s.dominant_since = None;
        }
        Some(k)
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

    /// Feeds 20 ms packets for `ms` milliseconds with the given levels
    /// (None: the source sends nothing); returns every change.
    fn run(
        d: &mut SpeakerDetector<u32>,
        t: &mut Instant,
        ms: u64,
        levels: &[(u32, Option<i8>)],
    ) -> Vec<u32> {
        let mut changes = Vec::new();
        for _ in 0..ms / 20 {
            *t += Duration::from_millis(20);
            for (k, l) in levels {
                if let Some(l) = l {
                    d.on_level(*k, *l, *t);
                }
            }
            changes.extend(d.poll(*t));
        }
        changes
    }

    #[test]
    fn the_louder_source_becomes_the_speaker() {
        let mut t = origin();
        let mut d = SpeakerDetector::new();
        let changes = run(&mut d, &mut t, 2_000, &[(1, Some(-20)), (2, Some(-60))]);
        assert_eq!(changes, vec![1]);
        // 2 starts talking, 1 goes quiet: one change, to 2.
        let changes = run(&mut d, &mut t, 2_000, &[(1, Some(-70)), (2, Some(-15))]);
        assert_eq!(changes, vec![2]);
        assert_eq!(d.current(), Some(2));
    }

    #[test]
    fn a_short_blip_does_not_take_over() {
        let mut t = origin();
        let mut d = SpeakerDetector::new();
        run(&mut d, &mut t, 2_000, &[(1, Some(-30)), (2, Some(-90))]);
        assert_eq!(d.current(), Some(1));
        // 2 shouts for 200 ms (a cough), then silence again.
        let changes = run(&mut d, &mut t, 200, &[(1, Some(-30)), (2, Some(0))]);
        assert!(changes.is_empty());
        let changes = run(&mut d, &mut t, 2_000, &[(1, Some(-30)), (2, Some(-90))]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(d.current(), Some(1));
    }

    #[test]
    fn near_equal_sources_do_not_flap_and_changes_are_held() {
        let mut t = origin();
        let mut d = SpeakerDetector::new();
        run(&mut d, &mut t, 1_000, &[(1, Some(-30))]);
        // Two at nearly the same level, alternating 2 dB up and down.
        let mut changes = Vec::new();
        for i in 0..20 {
            let (a, b) = if i % 2 == 0 { (-30, -28) } else { (-28, -30) };
            changes.extend(run(&mut d, &mut t, 300, &[(1, Some(a)), (2, Some(b))]));
        }
        assert!(changes.is_empty(), "{changes:?}");
        // Taking turns fast: at most one change per second.
        let mut changes = Vec::new();
        let start = t;
        for i in 0..10 {
            let (a, b) = if i % 2 == 0 { (-90, -10) } else { (-10, -90) };
            for c in run(&mut d, &mut t, 600, &[(1, Some(a)), (2, Some(b))]) {
                changes.push((c, t));
            }
        }
        assert!(changes.len() <= 6, "{changes:?}");
        for w in changes.windows(2) {
            assert!(w[1].1 - w[0].1 >= MIN_HOLD);
        }
        assert!(t - start >= Duration::from_secs(6));
    }

    #[test]
    fn silent_or_removed_sources_are_ignored() {
        let mut t = origin();
        let mut d = SpeakerDetector::new();
        // Below the speech floor: nobody speaks.
        assert!(run(&mut d, &mut t, 2_000, &[(1, Some(-80))]).is_empty());
        // 2 was loud, but stopped sending (muted): it counts as silent.
        d.on_level(2, 0, t);
        run(&mut d, &mut t, 2_000, &[(1, Some(-80)), (2, None)]);
        assert_eq!(d.current(), None);
        // 3 speaks; then it is removed (gated), and 4 takes over at once.
        run(&mut d, &mut t, 2_000, &[(3, Some(-20))]);
        assert_eq!(d.current(), Some(3));
        d.remove(3);
        assert_eq!(d.current(), None);
        let changes = run(&mut d, &mut t, 1_000, &[(4, Some(-40))]);
        assert_eq!(changes, vec![4]);
    }
}
