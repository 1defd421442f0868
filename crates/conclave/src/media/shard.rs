//! Which media worker serves each member of a spread meeting (issue 23): a
//! pure decision, kept apart from the I/O so that it can be tested alone.
//!
//! A meeting starts on its home worker (a hash of its ID, so rooms need no
//! shared table). Once it has `spread_from` members, each newcomer goes to
//! the least-loaded worker, counted in members over all meetings; ties go
//! to the home worker, then to the lowest index. A member stays where it
//! was placed until it leaves: its WebRTC session lives on that worker's
//! port. The meeting is then served by a router shard on every worker that
//! holds one of its members (`conclave_media::relay`).

use std::collections::{BTreeSet, HashMap};

use conclave_proto::ParticipantId;

/// Where one meeting's members are.
#[derive(Debug)]
pub struct Placement {
    home: usize,
    /// 0: never spread.
    spread_from: usize,
    members: HashMap<ParticipantId, usize>,
}

/// The outcome of [`Placement::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub worker: usize,
    /// The member was not placed before (its worker's load grows by one).
    pub new: bool,
    /// The meeting had no shard on that worker before.
    pub new_shard: bool,
}

impl Placement {
    pub fn new(home: usize, spread_from: usize) -> Self {
        Placement {
            home,
            spread_from,
            members: HashMap::new(),
        }
    }

    pub fn home(&self) -> usize {
        self.home
    }

    /// The worker of a member placed before.
    pub fn worker_of(&self, member: ParticipantId) -> Option<usize> {
        self.members.get(&member).copied()
    }

    /// The worker that serves `member`: where it was placed, or, for a
    /// newcomer, where it goes now given each worker's `loads`.
    pub fn place(&mut self, member: ParticipantId, loads: &[usize]) -> Placed {
        if let Some(worker) = self.worker_of(member) {
            return Placed {
                worker,
                new: false,
                new_shard: false,
            };
        }
        let spread = self.spread_from > 0 && self.members.len() >= self.spread_from;
        let worker = if spread {
            least_loaded(loads, self.home)
        } else {
            self.home
        };
        let new_shard = worker != self.home && !self.members.values().any(|w| *w == worker);
        self.members.insert(member, worker);
        Placed {
            worker,
            new: true,
            new_shard,
        }
    }

    /// The member left: the worker it was on, if it was placed.
    pub fn leave(&mut self, member: ParticipantId) -> Option<usize> {
        self.members.remove(&member)
    }

    /// Each placed member and its worker.
    pub fn members(&self) -> impl Iterator<Item = (ParticipantId, usize)> + '_ {
        self.members.iter().map(|(p, w)| (*p, *w))
    }

    /// The workers that hold members now, with the home one.
    pub fn workers(&self) -> BTreeSet<usize> {
        let mut w: BTreeSet<usize> = self.members.values().copied().collect();
        w.insert(self.home);
        w
    }
}

/// The worker with the fewest members; `prefer` on a tie, then the lowest
/// index. `loads` may be empty (then `prefer`).
pub fn least_loaded(loads: &[usize], prefer: usize) -> usize {
    let Some(&min) = loads.iter().min() else {
        return prefer;
    };
    if loads.get(prefer) == Some(&min) {
        return prefer;
    }
    loads.iter().position(|&l| l == min).unwrap_or(prefer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> ParticipantId {
        ParticipantId(n)
    }

    #[test]
    fn least_loaded_prefers_home_on_a_tie_then_the_lowest_index() {
        assert_eq!(least_loaded(&[3, 1, 1], 2), 2);
        assert_eq!(least_loaded(&[3, 1, 1], 0), 1);
        assert_eq!(least_loaded(&[0, 0], 1), 1);
        assert_eq!(least_loaded(&[], 4), 4);
        assert_eq!(least_loaded(&[5, 2, 9], 2), 1);
    }

    #[test]
    fn a_meeting_stays_home_until_spread_from_then_fills_the_least_loaded_workers() {
        let mut loads = vec![0usize; 2];
        let mut m = Placement::new(1, 3);
        let place = |m: &mut Placement, id: u64, loads: &mut Vec<usize>| {
            let placed = m.place(p(id), loads);
            if placed.new {
                loads[placed.worker] += 1;
            }
            placed
        };
        // The first three stay home.
        for id in 1..=3 {
            let placed = place(&mut m, id, &mut loads);
            assert_eq!((placed.worker, placed.new_shard), (1, false));
        }
        // The fourth opens a shard on the idle worker; the next ones even
        // the load out.
        let fourth = place(&mut m, 4, &mut loads);
        assert_eq!(
            fourth,
            Placed {
                worker: 0,
                new: true,
                new_shard: true
            }
        );
        for id in 5..=10 {
            place(&mut m, id, &mut loads);
        }
        assert_eq!(loads, vec![5, 5]);
        assert_eq!(m.workers(), BTreeSet::from([0, 1]));
        // A member asked about again stays where it is.
        assert_eq!(
            m.place(p(4), &[0, 100]),
            Placed {
                worker: 0,
                new: false,
                new_shard: false
            }
        );
        assert_eq!(m.leave(p(4)), Some(0));
        assert_eq!(m.leave(p(4)), None);
        assert!(m.worker_of(p(5)).is_some());
    }

    #[test]
    fn spread_from_zero_keeps_every_member_home_whatever_the_load() {
        let mut m = Placement::new(0, 0);
        for id in 0..50 {
            assert_eq!(m.place(p(id), &[1000, 0, 0]).worker, 0);
        }
        assert_eq!(m.workers(), BTreeSet::from([0]));
    }

    #[test]
    fn other_meetings_count_toward_the_load() {
        // Worker 0 is busy with other meetings: a spread meeting homed there
        // sends newcomers elsewhere until the load is even.
        let mut loads = vec![6usize, 0, 2];
        let mut m = Placement::new(0, 1);
        assert_eq!(m.place(p(1), &loads).worker, 0);
        loads[0] += 1;
        let mut got = Vec::new();
        for id in 2..=8 {
            let w = m.place(p(id), &loads).worker;
            loads[w] += 1;
            got.push(w);
        }
        assert_eq!(got, vec![1, 1, 1, 2, 1, 2, 1]);
        assert_eq!(loads, vec![7, 5, 4]);
    }
}
