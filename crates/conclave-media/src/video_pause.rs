//! What a subscriber behind a congested link is spared: RED's redundancy
//! first, then the videos that do not fit even at their smallest layer
//! (issue 21 item 4).
//!
//! Behind a 300 kbit/s downlink (the network bench's capped leg) a member of
//! a three-member meeting got two videos at their smallest layer, ~150
//! kbit/s each, beside two RED (RFC 2198) Opus streams of ~100 kbit/s on the
//! wire: ~500 kbit/s into the cap, which dropped about half of everything,
//! audio included, and the member played ~2 frames a second.
//!
//! The subscriber's media is a ladder of levels, each cheaper than the last:
//! level 0 is everything as it comes; level 1 strips RED to its primary
//! Opus block (what the router already sends a subscriber that did not
//! negotiate RED, `red.rs`), about half of the audio bytes; each level
//! after pauses one more video, the lowest in priority, down to one video
//! kept (a picture of the speaker at the smallest layer beats none, as
//! Jitsi lets its first endpoint exceed the estimate). Audio is never
//! paused here.
//!
//! **Only congestion moves it down.** The first attempt (2ef9463, b85b043,
//! reverted) paused on the combined estimate, whose loss-based part sits at
//! its floor under 10 % random loss: it paused one of two videos for every
//! member of the 10 % leg (10.8 fps against 20). Random loss is not
//! congestion. What is read here is [`crate::bwe::Bwe::congestion_estimate`]:
//! the delay-based estimate, which falls while a queue grows and not under
//! random loss with jitter; and the loss-based one only while a queue
//! stands on the path (the lowest one-way delay of the last half second
//! 50 ms or more above the lowest of the last minute). A drop-tail
//! bottleneck kept full holds its delay high and flat, so the delay trend
//! soon says nothing and only loss speaks, with the queue standing behind
//! it; random loss with jitter leaves no standing queue
//! (`bwe::tests::behind_a_drop_tail_cap_...`, `...random_loss_...`). A
//! level is taken down when that estimate is short of the level's cost by
//! a margin ([`SHORT`]) for [`STRIP_HOLD`] (the strip) or [`PAUSE_HOLD`] (a
//! pause: the picture stops and its return costs a key frame); a false
//! delay alarm (0.85 times what is received, regained in about two seconds
//! at 8 % a second) moves nothing.
//!
//! **Only a probe moves it up.** Once less is sent than the link carries,
//! nothing fills the queue and the delay-based estimate grows toward twice
//! what is received, proving nothing: resuming on it would overfill the
//! link again, pause again, over and over. So the next level up is taken
//! only after a probe ([`crate::bwe::Bwe::set_proof_wanted`]) showed the
//! path carries its cost with the layer choice's headroom, and that held
//! for the resume hold, which doubles (up to [`RESUME_HOLD_MAX`]) each time
//! a resume is undone within [`RESUME_TRIAL`]. (A session that cannot be
//! probed, with no RTX stream to pad on, takes the delay-based estimate as
//! its proof, `Peer::congestion`, and relies on that doubling.)
//!
//! Without the fast path's own estimate (no transport-wide feedback)
//! nothing is stripped or paused: str0m's does not tell congestion from
//! random loss.
//!
//! Pure: no I/O, time passed in.

use std::time::{Duration, Instant};

use crate::layers::UP_HEADROOM;

/// Stripping RED waits for this long a shortfall: less loses only the
/// redundancy, and a false delay alarm is regained within ~2 s.
pub const STRIP_HOLD: Duration = Duration::from_secs(4);

/// A shortfall lasts this long before a video is paused, however deep: a
/// pause stops a picture, and its return costs a key frame.
pub const PAUSE_HOLD: Duration = Duration::from_secs(10);

/// The first resume hold: the next level up must have been proven to fit
/// this long in a row. Longer than the estimator's proof refresh (5 s),
/// so two probes show it, not one lucky one.
pub const RESUME_HOLD_MIN: Duration = Duration::from_secs(6);

/// The longest resume hold, after resumes undone again and again.
pub const RESUME_HOLD_MAX: Duration = Duration::from_secs(64);

/// A resume undone within this long counts as failed (doubling the hold).
pub const RESUME_TRIAL: Duration = Duration::from_secs(20);

/// A level is short when the congestion estimate is below this share of
/// its cost (numerator, denominator): a false alarm cuts the estimate to
/// 0.85 of what is received, a drop-tail cap holds it there or below.
pub const SHORT: (u64, u64) = (3, 4);

/// A probe is asked for at this multiple of what the next level up needs
/// (numerator, denominator).
pub const PROOF_MARGIN: (u64, u64) = (11, 10);

/// What the subscriber's media costs, bits per second on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Needs<'a> {
    /// Its audio as it comes (RED included).
    pub audio_whole: u64,
    /// Its audio with RED stripped to the primary blocks.
    pub audio_primary: u64,
    /// Each simulcast video's smallest layer, highest priority first
    /// (`None`: not measured yet, taken as free).
    pub smallest: &'a [Option<u64>],
}

impl Needs<'_> {
    /// The deepest level: one video kept, or RED stripped when there is no
    /// video.
    fn deepest(&self) -> usize {
        self.smallest.len().max(1)
    }

    /// What level `level` costs.
    fn cost(&self, level: usize) -> u64 {
        let n = self.smallest.len();
        let (audio, videos) = match level {
            0 => (self.audio_whole, n),
            l => (self.audio_primary, (n + 1).saturating_sub(l).max(1).min(n)),
        };
        self.smallest[..videos]
            .iter()
            .fold(audio, |sum, r| sum.saturating_add(r.unwrap_or(0)))
    }
}

/// What to do for the subscriber now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Forward RED audio as its primary Opus block only.
    pub strip: bool,
    /// How many of its simulcast videos, in priority order, to forward.
    pub forwarded: usize,
    /// The rate a probe should show the path carries before the next level
    /// up ([`crate::bwe::Bwe::set_proof_wanted`]).
    pub proof_wanted: Option<u64>,
}

/// One subscriber's level between reselections.
#[derive(Debug, Clone)]
pub struct VideoPause {
    level: usize,
    /// Since when the congestion estimate is short of the level's cost.
    short_since: Option<Instant>,
    /// Since when the next level up has been proven to fit.
    fit_since: Option<Instant>,
    resume_hold: Duration,
    /// When the level last went up.
    last_up: Option<Instant>,
}

impl Default for VideoPause {
    fn default() -> Self {
        VideoPause {
            level: 0,
            short_since: None,
            fit_since: None,
            resume_hold: RESUME_HOLD_MIN,
            last_up: None,
        }
    }
}

impl VideoPause {
    /// The level after this reselection, from what the link carries
    /// without congestion (`congestion`, [`crate::bwe::Bwe::congestion_estimate`];
    /// `None`: not known, nothing held back) and what a probe `proven`
    /// lately.
    pub fn decide(
        &mut self,
        now: Instant,
        congestion: Option<u64>,
        proven: Option<u64>,
        needs: &Needs<'_>,
    ) -> Decision {
        let deepest = needs.deepest();
        self.level = self.level.min(deepest);
        let Some(delay) = congestion else {
            *self = VideoPause::default();
            return self.decision(needs);
        };
        let short = |level: usize| {
            u128::from(delay) * u128::from(SHORT.1)
                < u128::from(needs.cost(level)) * u128::from(SHORT.0)
        };
        if self
            .last_up
            .is_some_and(|t| now.saturating_duration_since(t) >= RESUME_TRIAL)
        {
            // The last resume held: the link carries it.
            self.last_up = None;
            self.resume_hold = RESUME_HOLD_MIN;
        }
        // Down: to the first level from here that is not short.
        let target = (self.level..deepest)
            .find(|&l| !short(l))
            .unwrap_or(deepest);
        if target > self.level {
            self.fit_since = None;
            let since = *self.short_since.get_or_insert(now);
            let lasted = now.saturating_duration_since(since);
            // A resume undone soon after: back at once, and the next one
            // waits twice as long.
            let undone = self
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) < RESUME_TRIAL);
            let to = if undone || lasted >= PAUSE_HOLD {
                target
            } else if lasted >= STRIP_HOLD {
                target.min(1)
            } else {
                self.level
            };
            if to > self.level {
                if undone {
                    self.resume_hold = (self.resume_hold * 2).min(RESUME_HOLD_MAX);
                    self.last_up = None;
                }
                tracing::debug!(from = self.level, to, delay, "congestion: level down");
                self.level = to;
                if to == target {
                    self.short_since = None;
                }
            }
            return self.decision(needs);
        }
        self.short_since = None;
        // Up: one level at a time, once a probe has shown it fits.
        if self.level > 0 {
            let (num, den) = UP_HEADROOM;
            let need = needs.cost(self.level - 1).saturating_mul(num) / den;
            let fits = proven.is_some_and(|p| delay.min(p) >= need);
            if fits {
                let since = *self.fit_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.resume_hold {
                    tracing::debug!(from = self.level, need, ?proven, "congestion: level up");
                    self.level -= 1;
                    self.fit_since = None;
                    self.last_up = Some(now);
                }
            } else {
                self.fit_since = None;
            }
        }
        self.decision(needs)
    }

    fn decision(&self, needs: &Needs<'_>) -> Decision {
        let n = needs.smallest.len();
        let forwarded = match self.level {
            0 => n,
            l => (n + 1).saturating_sub(l).max(1).min(n),
        };
        // Probed for a little above the need: a probe shows at most its
        // own rate, and the measured rates move by a percent or two
        // between reselections.
        let proof_wanted = (self.level > 0).then(|| {
            let (num, den) = UP_HEADROOM;
            let need = needs.cost(self.level - 1).saturating_mul(num) / den;
            need.saturating_mul(PROOF_MARGIN.0) / PROOF_MARGIN.1
        });
        Decision {
            strip: self.level > 0,
            forwarded,
            proof_wanted,
        }
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

    /// Two RED audio streams (~100 kbit/s each on the wire, half of it
    /// stripped) and two videos whose smallest layer is 150 kbit/s.
    const TWO: [Option<u64>; 2] = [Some(150_000), Some(150_000)];
    const NEEDS: Needs<'static> = Needs {
        audio_whole: 200_000,
        audio_primary: 100_000,
        smallest: &TWO,
    };

    /// Reselects every 250 ms for `ms`; the decisions.
    fn run(
        p: &mut VideoPause,
        t: &mut Instant,
        ms: u64,
        delay: u64,
        proven: Option<u64>,
    ) -> Vec<Decision> {
        (0..ms / 250)
            .map(|_| {
                *t += Duration::from_millis(250);
                p.decide(*t, Some(delay), proven, &NEEDS)
            })
            .collect()
    }

    #[test]
    fn the_ladder_costs_strip_first_then_pauses_down_to_one_video() {
        assert_eq!(NEEDS.cost(0), 500_000);
        assert_eq!(NEEDS.cost(1), 400_000);
        assert_eq!(NEEDS.cost(2), 250_000);
        assert_eq!(NEEDS.deepest(), 2);
        let none = Needs {
            smallest: &[],
            ..NEEDS
        };
        assert_eq!(
            (none.cost(0), none.cost(1), none.deepest()),
            (200_000, 100_000, 1)
        );
    }

    #[test]
    fn a_lasting_shortfall_strips_after_the_strip_hold_and_pauses_after_the_pause_hold() {
        let mut t = origin();
        let mut p = VideoPause::default();
        let out = run(
            &mut p,
            &mut t,
            PAUSE_HOLD.as_millis() as u64 + 250,
            250_000,
            None,
        );
        let strip_at = out.iter().position(|d| d.strip).unwrap();
        assert_eq!(strip_at as u64 * 250, STRIP_HOLD.as_millis() as u64);
        let pause_at = out.iter().position(|d| d.forwarded == 1).unwrap();
        assert_eq!(pause_at as u64 * 250, PAUSE_HOLD.as_millis() as u64);
        let last = *out.last().unwrap();
        assert_eq!(last.proof_wanted, Some(400_000 * 5 / 4 * 11 / 10));
    }

    #[test]
    fn a_false_alarm_or_a_shallow_shortfall_moves_nothing() {
        let mut t = origin();
        let mut p = VideoPause::default();
        // 3.75 s deep below, then enough: nothing.
        let mut out = run(&mut p, &mut t, 3_750, 100_000, None);
        out.extend(run(&mut p, &mut t, 1_000, 1_000_000, None));
        // Just above three quarters of everything for a minute: nothing.
        out.extend(run(&mut p, &mut t, 60_000, 380_000, None));
        assert!(out.iter().all(|d| !d.strip && d.forwarded == 2), "{out:?}");
    }

    #[test]
    fn no_congestion_estimate_holds_nothing_back() {
        let mut t = origin();
        let mut p = VideoPause::default();
        run(&mut p, &mut t, 20_000, 100_000, None);
        t += Duration::from_millis(250);
        let d = p.decide(t, None, None, &NEEDS);
        assert_eq!((d.strip, d.forwarded, d.proof_wanted), (false, 2, None));
    }

    #[test]
    fn an_unproven_estimate_resumes_nothing_a_proven_one_resumes_a_level_at_a_time() {
        let mut t = origin();
        let mut p = VideoPause::default();
        run(&mut p, &mut t, 11_000, 250_000, None);
        // The estimate grows with nothing congested, but no probe shows it.
        let out = run(&mut p, &mut t, 60_000, 2_000_000, None);
        assert!(out.iter().all(|d| d.forwarded == 1), "{out:?}");
        // A probe showing 300 kbit/s (the cap) resumes nothing either.
        let out = run(&mut p, &mut t, 60_000, 2_000_000, Some(300_000));
        assert!(out.iter().all(|d| d.forwarded == 1), "{out:?}");
        // Proven: the video after the resume hold, RED after another.
        let out = run(
            &mut p,
            &mut t,
            3 * RESUME_HOLD_MIN.as_millis() as u64,
            2_000_000,
            Some(2_000_000),
        );
        let video = out.iter().position(|d| d.forwarded == 2).unwrap();
        assert_eq!(video as u64 * 250, RESUME_HOLD_MIN.as_millis() as u64);
        assert!(out[video].strip);
        assert!(!out.last().unwrap().strip);
        assert_eq!(out.last().unwrap().proof_wanted, None);
    }

    #[test]
    fn a_resume_undone_goes_back_at_once_and_the_next_waits_twice_as_long() {
        let mut t = origin();
        let mut p = VideoPause::default();
        run(&mut p, &mut t, 11_000, 250_000, None);
        let out = run(
            &mut p,
            &mut t,
            RESUME_HOLD_MIN.as_millis() as u64 + 250,
            2_000_000,
            Some(2_000_000),
        );
        assert_eq!(out.last().unwrap().forwarded, 2);
        // Congested again at once: paused again without the pause hold.
        let out = run(&mut p, &mut t, 250, 250_000, None);
        assert_eq!(out[0].forwarded, 1);
        let out = run(
            &mut p,
            &mut t,
            2 * RESUME_HOLD_MIN.as_millis() as u64 + 250,
            2_000_000,
            Some(2_000_000),
        );
        let video = out.iter().position(|d| d.forwarded == 2).unwrap();
        assert_eq!(video as u64 * 250, 2 * RESUME_HOLD_MIN.as_millis() as u64);
    }

    #[test]
    fn one_video_is_kept_however_narrow_and_a_lone_audio_is_stripped() {
        let mut t = origin();
        let mut p = VideoPause::default();
        let out = run(&mut p, &mut t, 30_000, 50_000, None);
        assert_eq!(out.last().unwrap().forwarded, 1);
        let mut p = VideoPause::default();
        let audio = Needs {
            smallest: &[],
            ..NEEDS
        };
        let mut last = None;
        for _ in 0..40 {
            t += Duration::from_millis(250);
            last = Some(p.decide(t, Some(120_000), None, &audio));
        }
        assert_eq!(
            last,
            Some(Decision {
                strip: true,
                forwarded: 0,
                proof_wanted: Some(275_000)
            })
        );
    }
}
