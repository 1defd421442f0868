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
//! **Loss that sending less does not relieve is not congestion.** A queue
//! can stand on a path with random loss behind it: a Wi-Fi link with a deep
//! buffer, or (in `e2e/bad-network.test.js`, hold-back on) a receiver or
//! an impairment program descheduled on a busy machine, whose one-way
//! delay stepped up and stayed. Then the loss-based part speaks for random
//! loss again, and it paused a video in two of three runs. So a step down
//! taken for loss alone (the delay-based estimate would have kept the
//! level), a strip or a pause, is a trial ([`LOSS_TRIAL`]; the next step
//! for loss waits for its verdict, and no probe is asked for meanwhile: a
//! probe would fill the cap again): a drop-tail cap drops what exceeds its
//! rate, so its loss falls when less is sent, to about
//! `1 - (1 - before) * sent_before / sent_after`; random loss stays where
//! it was. Loss that stays nearer where it was than where a cap would have
//! put it undoes the step at once, with no probe (it was a mistake, not a
//! level the link was shown not to carry), and the loss is not believed
//! for [`DISTRUST_MIN`], doubling up to [`DISTRUST_MAX`] each time a trial
//! fails again soon after; meanwhile only the delay-based estimate moves
//! the ladder.
//!
//! A step the delay-based estimate took is no trial. Watching the loss
//! after such a strip was tried and dropped: behind the bench's real
//! 300 kbit/s cap the loss went only from 0.48 to 0.45 when RED was
//! stripped (what is sent falls by a fifth at most, resends included),
//! less than random loss seemed to fall by chance, and the video that
//! should have been paused was not (`e2e/video-paused.test.js`, 5 of 5).
//! So on a busy machine a delay-driven strip can still be followed by a
//! pause for random loss, which its own trial undoes within
//! [`LOSS_TRIAL`].
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

/// How long a step taken for loss alone is watched for the loss to fall.
pub const LOSS_TRIAL: Duration = Duration::from_secs(5);

/// The start of a trial is not watched: the queue the step relieves
/// drains, and the loss reported then is of packets sent before it.
pub const TRIAL_SETTLE: Duration = Duration::from_secs(1);

/// A step for loss is a trial only if it costs less than this share of
/// the level it leaves (numerator, denominator).
pub const TRIAL_SAVES: (u64, u64) = (9, 10);

/// A trial whose loss before was below this judges nothing.
pub const JUDGED_LOSS: f64 = 0.02;

/// How long loss is not believed after a trial showed it was not
/// congestion; doubling, up to [`DISTRUST_MAX`], with each trial failed
/// within [`DISTRUST_MAX`] of the last.
pub const DISTRUST_MIN: Duration = Duration::from_secs(60);

/// The longest loss goes unbelieved.
pub const DISTRUST_MAX: Duration = Duration::from_secs(600);

/// What the subscriber's link carries without congestion, as the
/// estimator sees it ([`crate::bwe::Bwe`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Congestion {
    /// The delay-based estimate alone, bits per second: a growing queue.
    pub delay_based: u64,
    /// With the loss-based estimate where a queue stands
    /// ([`crate::bwe::Bwe::congestion_estimate`]), bits per second.
    pub with_loss: u64,
    /// The share of packets lost over the estimator's last loss period.
    pub loss: f64,
}

/// The mean of loss samples.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u32,
}

impl Mean {
    fn add(&mut self, x: f64) {
        if x.is_finite() {
            self.sum += x.clamp(0.0, 1.0);
            self.n = self.n.saturating_add(1);
        }
    }

    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
}

/// A step down taken for loss alone, watched for the loss to fall.
#[derive(Debug, Clone, Copy)]
struct Trial {
    at: Instant,
    /// The level to go back to if the loss was not congestion: the one
    /// the delay-based estimate alone asks for.
    back_to: usize,
    /// The mean loss over the shortfall before the pause.
    before: f64,
    /// What the levels left and entered cost (the send rates' ratio).
    cost_before: u64,
    cost_after: u64,
    after: Mean,
}

impl Trial {
    /// Whether the loss since fell as a cap's would: nearer to where a
    /// drop-tail cap would have put it than to where it was. `None` while
    /// too little is known.
    fn relieved(&self) -> Option<bool> {
        let after = self.after.get()?;
        // Too little loss before to tell a fall from noise: a queue that
        // was still filling.
        if !self.before.is_finite() || self.before < JUDGED_LOSS {
            return None;
        }
        let ratio = self.cost_before as f64 / self.cost_after.max(1) as f64;
        let capped = (1.0 - (1.0 - self.before) * ratio).max(0.0);
        Some(after < (capped + self.before) / 2.0)
    }
}

/// Whether `x` is below the share `(num, den)` of `of`, without overflow.
fn below(x: u64, of: u64, (num, den): (u64, u64)) -> bool {
    u128::from(x) * u128::from(den) < u128::from(of) * u128::from(num)
}

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
    /// The loss over the current shortfall.
    short_loss: Mean,
    trial: Option<Trial>,
    /// Loss is not believed until then.
    distrust_until: Option<Instant>,
    distrust: Duration,
}

impl Default for VideoPause {
    fn default() -> Self {
        VideoPause {
            level: 0,
            short_since: None,
            fit_since: None,
            resume_hold: RESUME_HOLD_MIN,
            last_up: None,
            short_loss: Mean::default(),
            trial: None,
            distrust_until: None,
            distrust: DISTRUST_MIN,
        }
    }
}

impl VideoPause {
    /// The level after this reselection, from what the link carries
    /// without congestion (`congestion`; `None`: not known, nothing held
    /// back) and what a probe `proven` lately.
    pub fn decide(
        &mut self,
        now: Instant,
        congestion: Option<Congestion>,
        proven: Option<u64>,
        needs: &Needs<'_>,
    ) -> Decision {
        let deepest = needs.deepest();
        self.level = self.level.min(deepest);
        let Some(c) = congestion else {
            *self = VideoPause::default();
            return self.decision(needs);
        };
        let short_at = |estimate: u64, level: usize| below(estimate, needs.cost(level), SHORT);
        if self.judge_trial(now, c, needs) {
            return self.decision(needs);
        }
        let believed = self.distrust_until.is_none_or(|t| now >= t);
        let delay = if believed { c.with_loss } else { c.delay_based };
        let short = |level: usize| short_at(delay, level);
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
            self.short_loss.add(c.loss);
            let lasted = now.saturating_duration_since(since);
            // A resume undone soon after: back at once, and the next one
            // waits twice as long.
            let undone = self
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) < RESUME_TRIAL);
            let mut to = if undone || lasted >= PAUSE_HOLD {
                target
            } else if lasted >= STRIP_HOLD {
                target.min(1)
            } else {
                self.level
            };
            // A step the delay-based estimate alone would not take is
            // for loss; while a trial runs, such a step waits for its
            // verdict: it would change what the trial compares.
            let for_loss = !short_at(c.delay_based, self.level);
            if for_loss && self.trial.is_some() {
                to = self.level;
            }
            if to > self.level {
                if undone {
                    self.resume_hold = (self.resume_hold * 2).min(RESUME_HOLD_MAX);
                    self.last_up = None;
                }
                // A step that sends about as much as before (RED stripped
                // where there is no RED) cannot show loss falling: no trial.
                let cheaper = below(needs.cost(to), needs.cost(self.level), TRIAL_SAVES);
                if for_loss && cheaper {
                    self.trial = Some(Trial {
                        at: now,
                        back_to: (0..deepest)
                            .find(|&l| !short_at(c.delay_based, l))
                            .unwrap_or(deepest),
                        before: self.short_loss.get().unwrap_or(c.loss),
                        cost_before: needs.cost(self.level),
                        cost_after: needs.cost(to),
                        after: Mean::default(),
                    });
                }
                tracing::debug!(
                    from = self.level,
                    to,
                    delay,
                    for_loss,
                    "congestion: level down"
                );
                self.level = to;
                // The loss at the level left is what a trial compares.
                self.short_loss = Mean::default();
                if to == target {
                    self.short_since = None;
                }
            }
            return self.decision(needs);
        }
        self.short_since = None;
        self.short_loss = Mean::default();
        // Up: one level at a time, once a probe has shown it fits; not
        // during a trial, which decides that itself.
        if self.level > 0 && self.trial.is_none() {
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

    /// Watches a trial's loss, and ends it once it has run: a step whose
    /// loss did not fall as a cap's would is undone at once, and loss goes
    /// unbelieved for a while. Whether it undid one.
    fn judge_trial(&mut self, now: Instant, c: Congestion, needs: &Needs<'_>) -> bool {
        let Some(trial) = self.trial.as_mut() else {
            return false;
        };
        let age = now.saturating_duration_since(trial.at);
        if age >= TRIAL_SETTLE {
            trial.after.add(c.loss);
        }
        if age < LOSS_TRIAL {
            return false;
        }
        let trial = *trial;
        self.trial = None;
        if trial.relieved() != Some(false) {
            // Relieved (a cap), or nothing reported to judge by: the pause
            // stands, as one on the delay-based estimate would.
            return false;
        }
        // Failed again soon after the last distrust ended: longer.
        let again = self
            .distrust_until
            .is_some_and(|t| now.saturating_duration_since(t) < DISTRUST_MAX);
        self.distrust = if again {
            (self.distrust * 2).min(DISTRUST_MAX)
        } else {
            DISTRUST_MIN
        };
        self.distrust_until = Some(now + self.distrust);
        tracing::info!(
            before = trial.before,
            after = ?trial.after.get(),
            from = self.level,
            to = trial.back_to,
            distrust_secs = self.distrust.as_secs(),
            "congestion: loss did not fall when less was sent; not congestion, step undone"
        );
        self.level = trial.back_to.min(self.level).min(needs.deepest());
        self.short_since = None;
        self.short_loss = Mean::default();
        self.fit_since = None;
        self.last_up = None;
        true
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
        let proof_wanted = (self.level > 0 && self.trial.is_none()).then(|| {
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

    /// A growing queue's estimate, `rate` both ways, no loss.
    fn queue(rate: u64) -> Congestion {
        Congestion {
            delay_based: rate,
            with_loss: rate,
            loss: 0.0,
        }
    }

    /// Reselects every 250 ms for `ms` on a growing queue's estimate
    /// `delay`; the decisions.
    fn run(
        p: &mut VideoPause,
        t: &mut Instant,
        ms: u64,
        delay: u64,
        proven: Option<u64>,
    ) -> Vec<Decision> {
        run_with(p, t, ms, |_| (queue(delay), proven))
    }

    /// Reselects every 250 ms for `ms`, asking `link` what the estimator
    /// says after the last decision (`None` before the first); the
    /// decisions.
    fn run_with(
        p: &mut VideoPause,
        t: &mut Instant,
        ms: u64,
        mut link: impl FnMut(Option<Decision>) -> (Congestion, Option<u64>),
    ) -> Vec<Decision> {
        let mut last = None;
        (0..ms / 250)
            .map(|_| {
                *t += Duration::from_millis(250);
                let (c, proven) = link(last);
                let d = p.decide(*t, Some(c), proven, &NEEDS);
                last = Some(d);
                d
            })
            .collect()
    }

    /// What `NEEDS` costs at the level `d` forwards.
    fn cost_of(d: Decision) -> u64 {
        match (d.strip, d.forwarded) {
            (false, _) => NEEDS.cost(0),
            (true, 2) => NEEDS.cost(1),
            _ => NEEDS.cost(2),
        }
    }

    /// A drop-tail bottleneck of `cap` bits per second behind a standing
    /// queue: it loses what is sent above its rate, the delay trend has
    /// ended (the delay-based estimate is ample), and the loss-based part
    /// stays short while it loses more than 2 %.
    fn capped(cap: u64) -> impl FnMut(Option<Decision>) -> (Congestion, Option<u64>) {
        move |last| {
            let sent = last.map_or(NEEDS.cost(0), cost_of);
            let loss = (1.0 - cap as f64 / sent as f64).max(0.0);
            let with_loss = if loss > 0.02 { cap * 3 / 4 } else { 2_000_000 };
            let c = Congestion {
                delay_based: 2_000_000,
                with_loss,
                loss,
            };
            (c, None)
        }
    }

    /// Random loss of `loss` behind a standing queue that is not a cap
    /// (a delay step on a busy receiver): the loss-based part short
    /// whatever is sent, the loss the same.
    fn random(loss: f64) -> impl FnMut(Option<Decision>) -> (Congestion, Option<u64>) {
        move |_| {
            let c = Congestion {
                delay_based: 2_000_000,
                with_loss: 150_000,
                loss,
            };
            (c, None)
        }
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn random_loss_behind_a_standing_queue_gets_its_strip_undone_and_is_not_believed() {
        let mut t = origin();
        let mut p = VideoPause::default();
        let strip = ms(STRIP_HOLD) + 250;
        let out = run_with(&mut p, &mut t, strip, random(0.10));
        assert!(out.last().unwrap().strip, "stripped at the strip hold");
        // The trial: stripped while it runs, undone at its end, before
        // the pause hold: no video paused.
        let out = run_with(&mut p, &mut t, ms(LOSS_TRIAL), random(0.10));
        assert!(
            out[..out.len() - 1]
                .iter()
                .all(|d| d.strip && d.forwarded == 2)
        );
        let end = *out.last().unwrap();
        assert_eq!(
            (end.strip, end.forwarded, end.proof_wanted),
            (false, 2, None)
        );
        // Not believed for a minute: nothing held back.
        let out = run_with(&mut p, &mut t, ms(DISTRUST_MIN) - 250, random(0.10));
        assert!(out.iter().all(|d| !d.strip && d.forwarded == 2), "{out:?}");
        // Believed again: a trial again, undone again.
        let out = run_with(&mut p, &mut t, 250 + strip + ms(LOSS_TRIAL), random(0.10));
        assert!(out.iter().any(|d| d.strip));
        assert!(out.iter().all(|d| d.forwarded == 2));
        assert!(!out.last().unwrap().strip);
        // Failed again soon after: not believed for twice as long.
        let out = run_with(&mut p, &mut t, 2 * ms(DISTRUST_MIN) - 250, random(0.10));
        assert!(out.iter().all(|d| !d.strip && d.forwarded == 2), "{out:?}");
        // Long after the last distrust ended, a failed trial distrusts for
        // the shortest time again.
        run(&mut p, &mut t, ms(DISTRUST_MAX), 2_000_000, None);
        run_with(&mut p, &mut t, strip + ms(LOSS_TRIAL), random(0.10));
        assert_eq!(p.distrust, DISTRUST_MIN);
    }

    #[test]
    fn a_pause_for_random_loss_is_undone_too() {
        // The strip's trial saw nothing to judge by (no loss figure), so
        // the pause comes; its trial sees random loss.
        let mut t = origin();
        let mut p = VideoPause::default();
        let out = run_with(&mut p, &mut t, ms(STRIP_HOLD) + 1_250, random(f64::NAN));
        assert!(out.last().unwrap().strip);
        let out = run_with(&mut p, &mut t, ms(PAUSE_HOLD), random(0.10));
        let paused = out.iter().position(|d| d.forwarded == 1).unwrap();
        let undone = out[paused..].iter().position(|d| d.forwarded == 2).unwrap();
        assert_eq!(undone as u64 * 250, ms(LOSS_TRIAL), "{out:?}");
        assert!(!out.last().unwrap().strip);
    }

    #[test]
    fn a_drop_tail_caps_loss_falls_when_less_is_sent_and_its_pause_stands() {
        // 300 kbit/s: everything but one video fits. 150 kbit/s: even the
        // deepest level loses 40 %, but far less than before.
        for cap in [300_000, 150_000] {
            let mut t = origin();
            let mut p = VideoPause::default();
            let out = run_with(&mut p, &mut t, ms(PAUSE_HOLD) + 250, capped(cap));
            assert_eq!(out.last().unwrap().forwarded, 1, "{cap}");
            let out = run_with(&mut p, &mut t, 60_000, capped(cap));
            assert!(
                out.iter().all(|d| d.strip && d.forwarded == 1),
                "{cap}: {out:?}"
            );
        }
    }

    #[test]
    fn a_growing_queue_pauses_with_no_trial_whatever_the_loss() {
        let mut t = origin();
        let mut p = VideoPause::default();
        let growing = |_| {
            let c = Congestion {
                delay_based: 250_000,
                with_loss: 250_000,
                loss: 0.10,
            };
            (c, None)
        };
        let out = run_with(&mut p, &mut t, ms(PAUSE_HOLD) + 60_000, growing);
        let paused = out.iter().position(|d| d.forwarded == 1).unwrap();
        assert!(out[paused..].iter().all(|d| d.forwarded == 1), "{out:?}");
    }

    #[test]
    fn a_trial_with_no_loss_reported_lets_the_step_stand() {
        let mut t = origin();
        let mut p = VideoPause::default();
        // Every loss figure unreadable (NaN): nothing to judge by.
        let out = run_with(&mut p, &mut t, ms(PAUSE_HOLD) + 30_000, random(f64::NAN));
        let paused = out.iter().position(|d| d.forwarded == 1).unwrap();
        assert_eq!(paused as u64 * 250, ms(PAUSE_HOLD), "{out:?}");
        assert!(out[paused..].iter().all(|d| d.strip && d.forwarded == 1));
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
            last = Some(p.decide(t, Some(queue(120_000)), None, &audio));
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
