//! The receiver's replay window over a link's sequence numbers: each
//! number is taken once, and one more than [`WINDOW`] behind the newest is
//! refused (its resend would be too late to matter anyway).

/// Sequence numbers remembered behind the newest.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen, and newer than the newest by this much (1: the next).
    Ahead(u64),
    /// Not seen, within the window behind the newest (a late or resent
    /// one).
    Late,
    Duplicate,
    TooOld,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    newest: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// What `seq` would be; changes nothing (the datagram is not
    /// authenticated yet).
    pub fn check(&self, seq: u64) -> Seen {
        let Some(newest) = self.newest else {
            return Seen::Ahead(1);
        };
        if seq > newest {
            return Seen::Ahead(seq - newest);
        }
        if newest - seq >= WINDOW {
            return Seen::TooOld;
        }
        if self.bit(seq) {
            Seen::Duplicate
        } else {
            Seen::Late
        }
    }

    /// Takes `seq` (after [`ReplayWindow::check`] said it may be and it was
    /// authenticated).
    pub fn mark(&mut self, seq: u64) {
        match self.newest {
            Some(newest) if seq <= newest => {
                if newest - seq < WINDOW {
                    self.set(seq);
                }
            }
            Some(newest) => {
                if seq - newest >= WINDOW {
                    self.bits = [0; WORDS];
                } else {
                    for s in newest + 1..seq {
                        self.clear(s);
                    }
                }
                self.clear(seq);
                self.set(seq);
                self.newest = Some(seq);
            }
            None => {
                self.set(seq);
                self.newest = Some(seq);
            }
        }
    }

    fn index(seq: u64) -> (usize, u64) {
        let i = (seq % WINDOW) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn bit(&self, seq: u64) -> bool {
        let (w, b) = Self::index(seq);
        self.bits[w] & b != 0
    }

    fn set(&mut self, seq: u64) {
        let (w, b) = Self::index(seq);
        self.bits[w] |= b;
    }

    fn clear(&mut self, seq: u64) {
        let (w, b) = Self::index(seq);
        self.bits[w] &= !b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_is_taken_once_and_old_ones_never() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(0), Seen::Ahead(1));
        w.mark(0);
        assert_eq!(w.check(0), Seen::Duplicate);
        assert_eq!(w.check(3), Seen::Ahead(3));
        w.mark(3);
        assert_eq!(w.check(1), Seen::Late);
        w.mark(1);
        assert_eq!(w.check(1), Seen::Duplicate);
        assert_eq!(w.check(2), Seen::Late);
        w.mark(5000);
        assert_eq!(w.check(3), Seen::TooOld);
        assert_eq!(w.check(5000 - WINDOW + 1), Seen::Late);
        assert_eq!(w.check(5000 - WINDOW), Seen::TooOld);
        // A slot reused by a newer number is not the older one's.
        w.mark(5001);
        assert_eq!(w.check(5001 - WINDOW), Seen::TooOld);
        assert_eq!(w.check(5001), Seen::Duplicate);
        assert_eq!(w.check(4999), Seen::Late);
    }

    #[test]
    fn a_jump_within_the_window_forgets_the_slots_it_passes() {
        let mut w = ReplayWindow::default();
        for s in 0..WINDOW {
            w.mark(s);
        }
        w.mark(WINDOW + 10);
        for s in WINDOW..WINDOW + 10 {
            assert_eq!(w.check(s), Seen::Late, "{s}");
        }
        assert_eq!(w.check(11), Seen::Duplicate);
        assert_eq!(w.check(10), Seen::TooOld);
    }
}
