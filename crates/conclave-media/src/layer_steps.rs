//! When a subscriber's simulcast layer may follow its bandwidth estimate.
//!
//! [`crate::layers::choose`] says which layer fits the view and the budget
//! now. Taken at every reselection, it followed every wobble of the
//! estimate: on a link with 3 % loss and 40 ± 10 ms of jitter the TWCC
//! estimate swings across the rate of the middle layer several times a
//! minute, and the network bench (issue 21) saw each subscriber switch
//! between "q" and "h" 10–15 times a minute. Every switch waits for a key
//! frame of the new layer, asked of its publisher: a frame many times the
//! size of a delta frame, whose packets are each lost at the link's rate,
//! after which the publisher's encoder skips frames to get back to its
//! rate. Receivers froze and played 15–18 frames a second of 20, where a
//! direct call with the same loss, which never changes layer, played 20.
//!
//! So a change the budget asks for must last before it is taken:
//!
//! - **down** after [`DOWN_HOLD`] of shortfall in a row, at once when the
//!   budget is below half the current layer's rate (real congestion: the
//!   queue fills while we wait), or when the layer stopped arriving;
//! - **up** after the higher layer has fitted (with the choice's headroom)
//!   for the up-hold in a row, which starts at [`UP_HOLD_MIN`] and doubles,
//!   up to [`UP_HOLD_MAX`], each time a step up is undone within
//!   [`UP_TRIAL`]: a link that cannot carry the higher layer is probed
//!   less and less often, with no oscillation; a step up that holds for the
//!   trial resets it.
//!
//! A change the view asks for (a tile resized, a video shown again) is
//! taken at once: it is the user's, and it does not flap with the network.
//!
//! Pure: no I/O, time passed in.

use std::time::{Duration, Instant};

/// A budget shortfall lasts this long before the subscriber steps down.
///
/// Longer than the estimator takes to recover from a false alarm: with
/// 40 ± 10 ms of jitter a hop its delay detector reads a queue every 10-20 s
/// and cuts the estimate to 0.85 times what was received, about 30 %
/// below what the views need (`bwe.rs`); growth and a probe bring it back
/// within 2-3 s. Held for 1 s, each such cut stepped the subscriber down
/// (1.1-1.3 s after it in the network bench's server log) and up again
/// seconds later, a key frame of every layer each time. Real congestion
/// keeps the estimate low, and a deep one steps down at once (`severe`).
pub const DOWN_HOLD: Duration = Duration::from_millis(3_000);

/// The first up-hold: a higher layer must have fitted this long in a row.
pub const UP_HOLD_MIN: Duration = Duration::from_secs(3);

/// The longest up-hold, after repeated failed steps up.
pub const UP_HOLD_MAX: Duration = Duration::from_secs(12);

/// A step up undone by the budget within this long counts as failed.
pub const UP_TRIAL: Duration = Duration::from_secs(10);

/// One subscriber stream's state between reselections.
#[derive(Debug, Clone)]
pub struct LayerSteps {
    /// A budget-driven change waiting to last: up or down, since when.
    pending: Option<(bool, Instant)>,
    up_hold: Duration,
    /// When the budget last moved the layer up.
    last_up: Option<Instant>,
    /// What the view alone chose at the last reselection.
    last_ideal: Option<usize>,
}

impl Default for LayerSteps {
    fn default() -> Self {
        LayerSteps {
            pending: None,
            up_hold: UP_HOLD_MIN,
            last_up: None,
            last_ideal: None,
        }
    }
}

/// One reselection's inputs, layer indices smallest first.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    /// The layer aimed at now (`None`: nothing chosen yet).
    pub target: Option<usize>,
    /// What the view alone calls for.
    pub ideal: usize,
    /// What the view and the budget call for now.
    pub chosen: usize,
    /// The target layer is still arriving.
    pub target_active: bool,
    /// The budget is far below the target layer's rate.
    pub severe: bool,
}

impl LayerSteps {
    /// The layer to aim at after this reselection.
    pub fn decide(&mut self, now: Instant, c: Choice) -> usize {
        let last_ideal = self.last_ideal.replace(c.ideal);
        let Some(target) = c.target else {
            self.pending = None;
            return c.chosen;
        };
        if c.chosen == target {
            self.pending = None;
            if self
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) >= UP_TRIAL)
            {
                // The last step up held: the link carries it.
                self.last_up = None;
                self.up_hold = UP_HOLD_MIN;
            }
            return target;
        }
        let up = c.chosen > target;
        // The view's own change, or one the budget no longer limits.
        let by_view = if up {
            last_ideal.is_none_or(|l| target >= l)
        } else {
            c.chosen >= c.ideal
        };
        if by_view || (!up && (c.severe || !c.target_active)) {
            self.take(now, up, by_view);
            return c.chosen;
        }
        let since = match self.pending {
            Some((dir, since)) if dir == up => since,
            _ => {
                self.pending = Some((up, now));
                now
            }
        };
        let hold = if up { self.up_hold } else { DOWN_HOLD };
        if now.saturating_duration_since(since) >= hold {
            self.take(now, up, false);
            c.chosen
        } else {
            target
        }
    }

    fn take(&mut self, now: Instant, up: bool, by_view: bool) {
        self.pending = None;
        if by_view {
            return;
        }
        if up {
            self.last_up = Some(now);
        } else if self
            .last_up
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) < UP_TRIAL)
        {
            self.up_hold = (self.up_hold * 2).min(UP_HOLD_MAX);
        }
    }

    /// How long a step up must fit before it is taken now.
    #[cfg(test)]
    fn up_hold(&self) -> Duration {
        self.up_hold
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

    fn budget(target: usize, chosen: usize) -> Choice {
        Choice {
            target: Some(target),
            ideal: 2,
            chosen,
            target_active: true,
            severe: false,
        }
    }

    /// Reselects every 250 ms for `ms` with the same choice; the target
    /// after each.
    fn run(s: &mut LayerSteps, t: &mut Instant, mut c: Choice, ms: u64) -> Vec<usize> {
        let mut out = Vec::new();
        for _ in 0..ms / 250 {
            *t += Duration::from_millis(250);
            let d = s.decide(*t, c);
            c.target = Some(d);
            out.push(d);
        }
        out
    }

    #[test]
    fn the_first_choice_and_the_views_changes_are_taken_at_once() {
        let t = origin();
        let mut s = LayerSteps::default();
        let first = Choice {
            target: None,
            ideal: 1,
            chosen: 1,
            target_active: false,
            severe: false,
        };
        assert_eq!(s.decide(t, first), 1);
        // The tile grows: the view now calls for 2 and the budget allows it.
        let grown = Choice {
            target: Some(1),
            ideal: 2,
            ..first
        };
        assert_eq!(s.decide(t, Choice { chosen: 2, ..grown }), 2);
        // It shrinks again.
        let small = Choice {
            target: Some(2),
            ideal: 0,
            chosen: 0,
            ..first
        };
        assert_eq!(s.decide(t, small), 0);
    }

    #[test]
    fn a_short_dip_of_the_budget_changes_nothing_a_lasting_one_steps_down() {
        let mut t = origin();
        let mut s = LayerSteps::default();
        s.decide(t, budget(1, 1));
        // 2.5 s below (the estimator recovering from a false alarm of its
        // delay detector), then fine again: no change.
        let out = run(&mut s, &mut t, budget(1, 0), 2_500);
        assert!(out.iter().all(|&l| l == 1), "{out:?}");
        assert_eq!(run(&mut s, &mut t, budget(1, 1), 250), [1]);
        // A lasting shortfall: down after DOWN_HOLD.
        let out = run(&mut s, &mut t, budget(1, 0), 3_500);
        assert_eq!(out.iter().filter(|&&l| l == 1).count(), 12, "{out:?}");
        assert_eq!(out.last(), Some(&0));
    }

    #[test]
    fn congestion_or_a_vanished_layer_steps_down_at_once() {
        let t = origin();
        let mut s = LayerSteps::default();
        let severe = Choice {
            severe: true,
            ..budget(2, 0)
        };
        assert_eq!(s.decide(t, severe), 0);
        let gone = Choice {
            target_active: false,
            ..budget(1, 0)
        };
        assert_eq!(s.decide(t, gone), 0);
    }

    #[test]
    fn a_step_up_waits_and_backs_off_each_time_it_fails() {
        let mut t = origin();
        let mut s = LayerSteps::default();
        s.decide(t, budget(0, 0));
        // Room for 1: taken after the up-hold (3 s from the first
        // reselection that saw it), not before.
        let out = run(&mut s, &mut t, budget(0, 1), 3_250);
        assert_eq!(out.iter().filter(|&&l| l == 0).count(), 12, "{out:?}");
        assert_eq!(out.last(), Some(&1));
        // The link cannot carry it: down again within the trial.
        run(&mut s, &mut t, budget(1, 0), 3_250);
        assert_eq!(s.up_hold(), UP_HOLD_MIN * 2);
        // The next step up waits 6 s; failing again, 12 s, up to the max.
        let out = run(&mut s, &mut t, budget(0, 1), 5_750);
        assert!(out.iter().all(|&l| l == 0), "{out:?}");
        assert_eq!(run(&mut s, &mut t, budget(0, 1), 500), [0, 1]);
        for _ in 0..6 {
            run(&mut s, &mut t, budget(1, 0), 3_250);
            let mut waited = 0;
            while run(&mut s, &mut t, budget(0, 1), 250) == [0] {
                waited += 250;
            }
            assert!(waited <= UP_HOLD_MAX.as_millis() as u64, "{waited}");
        }
        assert_eq!(s.up_hold(), UP_HOLD_MAX);
        // A step up that holds for the trial resets the hold.
        run(&mut s, &mut t, budget(1, 1), 10_000);
        assert_eq!(s.up_hold(), UP_HOLD_MIN);
    }

    #[test]
    fn the_budget_freeing_up_after_limiting_is_not_a_view_change() {
        let mut t = origin();
        let mut s = LayerSteps::default();
        // The view wants 2; the budget holds the subscriber at 1.
        s.decide(t, budget(1, 1));
        // The budget grows: 2 fits, but only after the hold.
        assert_eq!(run(&mut s, &mut t, budget(1, 2), 1_000), [1, 1, 1, 1]);
    }
}
