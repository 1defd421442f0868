//! Which of a subscriber's simulcast videos are forwarded when even their
//! smallest layers do not all fit its bandwidth.
//!
//! [`crate::layers::choose`] falls back to the smallest layer when nothing
//! fits, for each video on its own. Behind a 300 kbit/s downlink (the
//! network bench's capped leg) a member of a three-member meeting got two
//! videos at their smallest layer, 120-140 kbit/s each, beside two RED
//! audio streams of about 90: about 500 kbit/s into a 300 kbit/s link. The
//! link's queue dropped half of it, audio included, and the member played
//! 2 frames a second with 15 s a minute frozen.
//!
//! So, as LiveKit's and Jitsi's bridges do: audio first (its cost is set
//! aside before video, `router/simulcast.rs`), then as many videos, at
//! their smallest layer, as the rest of the estimate carries, in priority
//! order (the active speaker's, then the largest tiles); the others are
//! paused for that subscriber, nothing forwarded, until the estimate grows.
//!
//! The number of videos forwarded moves like a simulcast layer, with the
//! same discipline ([`crate::layer_steps::LayerSteps`]): fewer after
//! `DOWN_HOLD` of shortfall, or at once when the estimate is below half of
//! what is forwarded; more only after the up-hold, which doubles each time
//! a resume is undone soon after. A noisy estimate does not pause and
//! resume a video over and over, each resume costing a key frame.
//!
//! At least one video is always forwarded while there is any: a picture of
//! the person speaking at the smallest layer beats none, the estimate at
//! such a cap sits at its loss-based floor and says little about what one
//! small layer would cost, and pausing the last video would leave nothing
//! to measure a recovery by (Jitsi likewise lets its first endpoint exceed
//! the estimate). Audio is never paused here.
//!
//! Pure: no I/O, time passed in.

use std::time::Instant;

use crate::layer_steps::{Choice, LayerSteps};
use crate::layers::UP_HEADROOM;

/// One subscriber's count of forwarded videos between reselections.
#[derive(Debug, Clone, Default)]
pub struct VideoPause {
    steps: LayerSteps,
    /// How many videos were forwarded after the last decision (`None`:
    /// none decided yet).
    forwarded: Option<usize>,
}

impl VideoPause {
    /// How many of the videos, in priority order, to forward now.
    /// `smallest` holds each video's smallest layer's rate (`None`: not
    /// measured yet, taken as fitting), highest priority first;
    /// `available` is the estimate left after audio (`None`: no estimate,
    /// everything forwarded).
    pub fn decide(
        &mut self,
        now: Instant,
        available: Option<u64>,
        smallest: &[Option<u64>],
    ) -> usize {
        let n = smallest.len();
        if n == 0 {
            self.forwarded = None;
            return 0;
        }
        let current = self.forwarded.map(|f| f.clamp(1, n));
        let Some(available) = available else {
            // No estimate yet: forward everything, and start from there.
            self.forwarded = Some(n);
            return n;
        };
        let chosen = fitting(available, smallest, current);
        // The shortfall is deep: less than half of what the videos now
        // forwarded need. The link's queue is full; waiting only loses
        // more audio with the video.
        let severe = current.is_some_and(|c| {
            let need: u64 = smallest[..c].iter().map(|r| r.unwrap_or(0)).sum();
            c > 1 && available < need / 2
        });
        let decided = self.steps.decide(
            now,
            Choice {
                target: current,
                ideal: n,
                chosen,
                target_active: true,
                severe,
            },
        );
        let decided = decided.clamp(1, n);
        self.forwarded = Some(decided);
        decided
    }
}

/// How many videos, from the first, fit `available` at their smallest
/// layer, at least one: each beyond the `current` count must fit with the
/// choice's headroom ([`UP_HEADROOM`]), so an estimate hovering at a sum
/// does not resume and pause a video in turn.
fn fitting(available: u64, smallest: &[Option<u64>], current: Option<usize>) -> usize {
    let mut sum = 0u64;
    let mut fit = 0;
    for (i, rate) in smallest.iter().enumerate() {
        sum = sum.saturating_add(rate.unwrap_or(0));
        let above = current.is_none_or(|c| i + 1 > c);
        let need = if above {
            sum.saturating_mul(UP_HEADROOM.0) / UP_HEADROOM.1
        } else {
            sum
        };
        if need > available {
            break;
        }
        fit = i + 1;
    }
    fit.max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::layer_steps::{DOWN_HOLD, UP_HOLD_MIN};

    fn origin() -> Instant {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    /// Two videos whose smallest layer is 140 kbit/s.
    const TWO: [Option<u64>; 2] = [Some(140_000), Some(140_000)];

    /// What two RED audio streams are set aside (`router/simulcast.rs`):
    /// about 90 kbit/s of RTP each and their headers.
    const AUDIO: u64 = 2 * 104_000;

    /// A deterministic noisy estimate around `mean`: ±`swing`, spread
    /// pseudo-randomly, and a spike to `mean + 5 swing` for one second
    /// every ten (a probe, a burst of acknowledgements).
    fn noisy(mean: u64, swing: u64, step: u64) -> u64 {
        let spike = step % 40 < 4;
        if spike {
            return mean + 5 * swing;
        }
        let x = step.wrapping_mul(2_654_435_761) % 1_000;
        mean - swing + 2 * swing * x / 1_000
    }

    /// Reselects every 250 ms for `ms` with the estimate `estimate(step)`;
    /// the count forwarded after each.
    fn run(
        p: &mut VideoPause,
        t: &mut Instant,
        ms: u64,
        videos: &[Option<u64>],
        estimate: impl Fn(u64) -> u64,
    ) -> Vec<usize> {
        (0..ms / 250)
            .map(|step| {
                *t += Duration::from_millis(250);
                let available = estimate(step).saturating_sub(AUDIO);
                p.decide(*t, Some(available), videos)
            })
            .collect()
    }

    #[test]
    fn behind_300_kbits_one_of_two_videos_is_forwarded_and_it_does_not_flap() {
        let mut t = origin();
        let mut p = VideoPause::default();
        // Before the estimate: both.
        assert_eq!(p.decide(t, None, &TWO), 2);
        // The cap shows: the estimate falls far below what both need, and
        // one video is paused at once.
        let out = run(&mut p, &mut t, 250, &TWO, |_| 300_000);
        assert_eq!(out, [1]);
        // A minute of a noisy estimate around the cap: always one, never
        // two, though each spike (600 kbit/s, 392 left after audio) would
        // carry both with headroom for its second.
        let out = run(&mut p, &mut t, 60_000, &TWO, |s| noisy(300_000, 60_000, s));
        assert!(out.iter().all(|&n| n == 1), "{out:?}");
    }

    #[test]
    fn a_paused_video_resumes_after_the_hold_when_the_estimate_recovers() {
        let mut t = origin();
        let mut p = VideoPause::default();
        p.decide(t, None, &TWO);
        run(&mut p, &mut t, 5_000, &TWO, |_| 300_000);
        // The cap is lifted: room for both with headroom (2 x 140 x 5/4 +
        // audio = 558 kbit/s). Resumed after the up-hold, not before.
        let out = run(
            &mut p,
            &mut t,
            UP_HOLD_MIN.as_millis() as u64 + 250,
            &TWO,
            |_| 1_000_000,
        );
        assert_eq!(out.iter().filter(|&&n| n == 1).count(), 12, "{out:?}");
        assert_eq!(out.last(), Some(&2));
        // And stays.
        let out = run(&mut p, &mut t, 30_000, &TWO, |_| 1_000_000);
        assert!(out.iter().all(|&n| n == 2), "{out:?}");
    }

    #[test]
    fn a_short_dip_pauses_nothing_a_lasting_shortfall_pauses_after_the_hold() {
        let mut t = origin();
        let mut p = VideoPause::default();
        p.decide(t, None, &TWO);
        run(&mut p, &mut t, 1_000, &TWO, |_| 1_000_000);
        // 450 kbit/s: 242 left after audio, less than both need (280) but
        // more than half of it: not severe, so the hold applies.
        let out = run(&mut p, &mut t, 2_500, &TWO, |_| 450_000);
        assert!(out.iter().all(|&n| n == 2), "{out:?}");
        run(&mut p, &mut t, 250, &TWO, |_| 1_000_000);
        let out = run(
            &mut p,
            &mut t,
            DOWN_HOLD.as_millis() as u64 + 500,
            &TWO,
            |_| 450_000,
        );
        assert_eq!(out.last(), Some(&1), "{out:?}");
        assert!(out[..12].iter().all(|&n| n == 2), "{out:?}");
    }

    #[test]
    fn a_single_video_that_does_not_fit_alone_is_kept() {
        let mut t = origin();
        let mut p = VideoPause::default();
        let one = [Some(140_000)];
        p.decide(t, None, &one);
        let out = run(&mut p, &mut t, 10_000, &one, |_| 100_000);
        assert!(out.iter().all(|&n| n == 1), "{out:?}");
        // Nothing left after audio at all: still the one video.
        t += Duration::from_millis(250);
        assert_eq!(p.decide(t, Some(0), &one), 1);
    }

    #[test]
    fn the_videos_fit_in_priority_order_and_unmeasured_ones_fit() {
        // 300 kbit/s after audio: the first two of three 140 kbit/s videos.
        let three = [Some(140_000); 3];
        assert_eq!(fitting(300_000, &three, Some(3)), 2);
        // Resuming the third needs its headroom: 3 x 140 x 5/4 = 525.
        assert_eq!(fitting(450_000, &three, Some(2)), 2);
        assert_eq!(fitting(525_000, &three, Some(2)), 3);
        assert_eq!(fitting(0, &[None, None], Some(2)), 2);
    }
}
