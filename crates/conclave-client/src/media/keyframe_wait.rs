//! When a received video needs a key frame asked for (RTCP PLI), as a
//! browser's decoder does it.
//!
//! A video's frames are useless until one key frame has been opened: every
//! later frame refers back to it. The server asks the publisher for one
//! when a subscriber starts receiving a track, but a member that has just
//! joined often gets that key frame before its E2EE keys (its MLS Welcome
//! comes after admission), cannot open it, and then receives only deltas
//! until something else makes the publisher send a key frame. With the
//! server's own str0m pacing, a simulcast layer switch soon after the start
//! happened to provide one; with the fast path (issue 16) the first layer
//! is often the last, and a recorder wrote no video at all.
//!
//! So a receiver waits for a key frame from the start and again after any
//! frame it could not open (its references may now be missing), and asks
//! for one when it opens a frame that is not one: only then would a key
//! frame help, since it has the keys. At most once per [`ASK_EVERY`]: the
//! request or the key frame may be lost, and the publisher answers one
//! request per track per half second anyway.
//!
//! Pure state on caller-supplied time.

use std::time::{Duration, Instant};

/// How long a request is given to bring a key frame before it is repeated.
pub(crate) const ASK_EVERY: Duration = Duration::from_secs(1);

/// One received video's wait for a key frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyframeWait {
    /// A key frame has been opened, and no frame failed to open since.
    have_reference: bool,
    last_asked: Option<Instant>,
}

/// A received video frame, as far as the wait is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    /// It could not be opened (no key yet, or not for this sender).
    Not,
    Delta,
    Key,
}

impl KeyframeWait {
    /// Notes a frame received at `now`; true if a key frame should be asked
    /// for now.
    pub(crate) fn on_frame(&mut self, frame: Opened, now: Instant) -> bool {
        match frame {
            Opened::Key => {
                self.have_reference = true;
                false
            }
            Opened::Not => {
                self.have_reference = false;
                false
            }
            Opened::Delta if self.have_reference => false,
            Opened::Delta => {
                let due = self
                    .last_asked
                    .is_none_or(|t| now.saturating_duration_since(t) >= ASK_EVERY);
                if due {
                    self.last_asked = Some(now);
                }
                due
            }
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

    /// The recorder's case: the key frame comes before the keys, then only
    /// deltas. The first delta it opens asks for a key frame, once a second
    /// until one comes; then no more.
    #[test]
    fn a_key_frame_missed_before_the_keys_is_asked_for_once_they_open_frames() {
        let t0 = origin();
        let ms = Duration::from_millis;
        let mut w = KeyframeWait::default();
        assert!(
            !w.on_frame(Opened::Not, t0),
            "no keys yet: a key frame would not help"
        );
        assert!(!w.on_frame(Opened::Not, t0 + ms(33)));
        assert!(
            w.on_frame(Opened::Delta, t0 + ms(66)),
            "keys now, no reference"
        );
        assert!(!w.on_frame(Opened::Delta, t0 + ms(100)));
        assert!(!w.on_frame(Opened::Delta, t0 + ms(1_000)));
        assert!(
            w.on_frame(Opened::Delta, t0 + ms(1_066)),
            "asked again after a second"
        );
        assert!(!w.on_frame(Opened::Key, t0 + ms(1_100)));
        for i in 1..100 {
            assert!(!w.on_frame(Opened::Delta, t0 + ms(1_100 + 33 * i)));
        }
    }

    #[test]
    fn a_frame_that_does_not_open_mid_stream_starts_the_wait_again() {
        let t0 = origin();
        let ms = Duration::from_millis;
        let mut w = KeyframeWait::default();
        assert!(!w.on_frame(Opened::Key, t0));
        assert!(!w.on_frame(Opened::Delta, t0 + ms(33)));
        assert!(!w.on_frame(Opened::Not, t0 + ms(66)));
        assert!(w.on_frame(Opened::Delta, t0 + ms(100)));
        assert!(!w.on_frame(Opened::Key, t0 + ms(200)));
        assert!(!w.on_frame(Opened::Delta, t0 + ms(233)));
    }
}
