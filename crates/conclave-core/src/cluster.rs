//! Cluster decisions without I/O: whether this node still owns a meeting
//! ([`LeaseKeeper`]) and which node a new meeting goes to ([`least_loaded`]).
//!
//! The server's Redis shell (`conclave::cluster`) sends the commands and
//! reports their replies here with the instant it *sent* them: Redis starts a
//! lease's time-to-live when it receives the command, which is after the send,
//! so counting from the send never believes in a lease longer than Redis
//! keeps it. Time comes from the caller, so the tests run leases of minutes in
//! microseconds.

use std::time::{Duration, Instant};

/// The fraction of the time-to-live kept back from a lease's believed end, for
/// the rate difference between this clock and Redis' (both monotonic, but not
/// the same oscillator).
const DRIFT_MARGIN_DIVISOR: u32 = 20;

/// How often a lease is renewed: three chances before it runs out.
const RENEWALS_PER_TTL: u32 = 3;

/// What Redis answered to a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewReply {
    /// The lease was still ours and its time-to-live starts again.
    Renewed,
    /// Someone else holds the lease, or took it and let it go (the fencing
    /// counter moved past our token): the meeting is no longer ours.
    NotOurs,
    /// No answer: Redis is down or unreachable.
    Unreachable,
}

/// Whether this node may serve the meeting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The lease is ours until at least the renewal's send time plus its
    /// time-to-live: serve it fully.
    Owner,
    /// Redis did not answer and the lease's time may have run out. Nobody can
    /// take it while Redis is unreachable for us all, so running media goes
    /// on; nothing that needs ownership (a new join) is done until a renewal
    /// says the lease is still ours.
    Unconfirmed,
    /// Another node holds the meeting (or may): stop serving it.
    Lost,
}

/// One meeting's lease as this node holds it, with its fencing token.
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    token: u64,
    ttl: Duration,
    /// The lease is certainly ours until then.
    valid_until: Instant,
    next_renewal: Instant,
    lost: bool,
}

impl LeaseKeeper {
    /// A lease Redis granted with fencing `token` to a request sent at `sent_at`.
    pub fn acquired(token: u64, ttl: Duration, sent_at: Instant) -> LeaseKeeper {
        let mut k = LeaseKeeper {
            token,
            ttl,
            valid_until: sent_at,
            next_renewal: sent_at,
            lost: false,
        };
        k.confirmed(sent_at);
        k
    }

    fn confirmed(&mut self, sent_at: Instant) {
        let margin = self.ttl / DRIFT_MARGIN_DIVISOR;
        self.valid_until = sent_at + self.ttl.saturating_sub(margin);
        self.next_renewal = sent_at + self.ttl / RENEWALS_PER_TTL;
    }

    /// The fencing token: strictly larger for every later holder, so that
    /// anything written under the lease can be refused from an older one.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// When to send the next renewal (`None` once lost: nothing to renew).
    pub fn next_renewal(&self) -> Option<Instant> {
        (!self.lost).then_some(self.next_renewal)
    }

    /// Takes in Redis' answer to a renewal sent at `sent_at`; returns the
    /// standing at `now`.
    pub fn on_renew(&mut self, reply: RenewReply, sent_at: Instant, now: Instant) -> Standing {
        match reply {
            RenewReply::Renewed if !self.lost => self.confirmed(sent_at),
            RenewReply::Renewed => {}
            RenewReply::NotOurs => self.lost = true,
            // Try again soon, not at the usual pace: a third of the TTL
            // without an answer is long when the lease is running out.
            RenewReply::Unreachable => {
                self.next_renewal = now + (self.ttl / (RENEWALS_PER_TTL * 3)).max(ms(50));
            }
        }
        self.standing(now)
    }

    /// Whether the meeting may be served at `now`.
    pub fn standing(&self, now: Instant) -> Standing {
        if self.lost {
            Standing::Lost
        } else if now < self.valid_until {
            Standing::Owner
        } else {
            Standing::Unconfirmed
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether a node takes new meetings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Serving,
    /// Shutting down: it keeps its meetings for now and takes no new ones.
    Draining,
}

/// A node's load, as its registry record reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    pub node_id: String,
    pub state: NodeState,
    /// Members seated in its meetings.
    pub participants: u64,
    /// RTP packets forwarded per second, lately.
    pub packets_per_sec: u64,
}

/// The serving node a new meeting should go to: the fewest participants
/// (each costs a media session and its forwarding), then the fewest packets
/// forwarded per second (the same people can cost more as video), then the
/// node ID, so that every node given the same records picks the same one.
/// `None` when no node is serving.
pub fn least_loaded(nodes: &[NodeLoad]) -> Option<&NodeLoad> {
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Serving)
        .min_by(|a, b| {
            (a.participants, a.packets_per_sec, &a.node_id).cmp(&(
                b.participants,
                b.packets_per_sec,
                &b.node_id,
            ))
        })
}

#[cfg(test)]
// The tests start their virtual clock at a real instant (the core itself
// only ever takes `now` from its caller).
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(9);

    #[test]
    fn a_fresh_lease_is_owned_until_its_ttl_less_the_margin_counted_from_the_send() {
        let t0 = Instant::now();
        let k = LeaseKeeper::acquired(7, TTL, t0);
        assert_eq!(k.token(), 7);
        assert_eq!(k.standing(t0), Standing::Owner);
        // 9 s less a twentieth: 8.55 s.
        assert_eq!(k.standing(t0 + ms(8_549)), Standing::Owner);
        assert_eq!(k.standing(t0 + ms(8_550)), Standing::Unconfirmed);
        assert_eq!(k.next_renewal(), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_renewal_counts_from_its_send_not_from_its_answer() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(1, TTL, t0);
        let sent = t0 + Duration::from_secs(3);
        // The answer took 2 s: the lease runs from the send, at the latest.
        let answered = sent + Duration::from_secs(2);
        assert_eq!(
            k.on_renew(RenewReply::Renewed, sent, answered),
            Standing::Owner
        );
        assert_eq!(k.standing(sent + ms(8_549)), Standing::Owner);
        assert_eq!(k.standing(sent + ms(8_550)), Standing::Unconfirmed);
        assert_eq!(k.next_renewal(), Some(sent + Duration::from_secs(3)));
    }

    #[test]
    fn renewed_on_time_the_lease_never_lapses() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(1, TTL, t0);
        let mut now = t0;
        for _ in 0..1000 {
            now = k.next_renewal().expect("held");
            assert_eq!(k.standing(now), Standing::Owner);
            k.on_renew(RenewReply::Renewed, now, now + ms(5));
        }
        assert!(now > t0 + Duration::from_secs(2900));
    }

    #[test]
    fn not_ours_is_final_even_if_a_late_renewal_succeeds() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(3, TTL, t0);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(k.on_renew(RenewReply::NotOurs, t1, t1), Standing::Lost);
        assert_eq!(k.next_renewal(), None);
        // An answer to an earlier request arriving late changes nothing.
        assert_eq!(k.on_renew(RenewReply::Renewed, t1, t1), Standing::Lost);
        assert_eq!(k.standing(t1), Standing::Lost);
    }

    #[test]
    fn unreachable_redis_keeps_ownership_until_the_lease_would_have_run_out() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(1, TTL, t0);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(
            k.on_renew(RenewReply::Unreachable, t1, t1 + ms(500)),
            Standing::Owner
        );
        // Retried sooner than the usual third of the TTL.
        let retry = k.next_renewal().expect("held");
        assert_eq!(retry, t1 + ms(500) + ms(1000));
        let t2 = t0 + Duration::from_secs(9);
        assert_eq!(
            k.on_renew(RenewReply::Unreachable, t2, t2),
            Standing::Unconfirmed
        );
        // Redis is back and the lease is still ours: owner again.
        let t3 = t2 + Duration::from_secs(20);
        assert_eq!(k.on_renew(RenewReply::Renewed, t3, t3), Standing::Owner);
        assert_eq!(k.token(), 1);
    }

    #[test]
    fn back_from_an_outage_to_find_the_meeting_taken_it_is_lost() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(1, TTL, t0);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(k.standing(t1), Standing::Unconfirmed);
        assert_eq!(k.on_renew(RenewReply::NotOurs, t1, t1), Standing::Lost);
    }

    #[test]
    fn a_very_short_ttl_still_retries_at_a_sane_pace() {
        let t0 = Instant::now();
        let mut k = LeaseKeeper::acquired(1, ms(90), t0);
        k.on_renew(RenewReply::Unreachable, t0, t0);
        assert_eq!(k.next_renewal(), Some(t0 + ms(50)));
    }

    fn node(id: &str, state: NodeState, participants: u64, pps: u64) -> NodeLoad {
        NodeLoad {
            node_id: id.into(),
            state,
            participants,
            packets_per_sec: pps,
        }
    }

    #[test]
    fn placement_picks_the_serving_node_with_the_fewest_participants() {
        let nodes = [
            node("a", NodeState::Serving, 40, 10),
            node("b", NodeState::Draining, 0, 0),
            node("c", NodeState::Serving, 12, 9_000),
            node("d", NodeState::Serving, 30, 0),
        ];
        assert_eq!(least_loaded(&nodes).map(|n| n.node_id.as_str()), Some("c"));
    }

    #[test]
    fn placement_breaks_ties_by_packets_then_by_id() {
        let nodes = [
            node("b", NodeState::Serving, 5, 100),
            node("a", NodeState::Serving, 5, 100),
            node("c", NodeState::Serving, 5, 50),
        ];
        assert_eq!(least_loaded(&nodes).map(|n| n.node_id.as_str()), Some("c"));
        let tied = [
            node("b", NodeState::Serving, 5, 100),
            node("a", NodeState::Serving, 5, 100),
        ];
        assert_eq!(least_loaded(&tied).map(|n| n.node_id.as_str()), Some("a"));
    }

    #[test]
    fn placement_finds_nobody_when_all_drain() {
        assert!(least_loaded(&[]).is_none());
        let nodes = [node("a", NodeState::Draining, 0, 0)];
        assert!(least_loaded(&nodes).is_none());
    }

    #[test]
    fn placement_of_a_burst_spreads_over_equal_nodes() {
        // Each placed meeting brings its first member: 200 creations over
        // three empty nodes end within one of each other.
        let mut nodes: Vec<NodeLoad> = ["a", "b", "c"]
            .iter()
            .map(|id| node(id, NodeState::Serving, 0, 0))
            .collect();
        for _ in 0..200 {
            let id = least_loaded(&nodes).expect("serving").node_id.clone();
            if let Some(n) = nodes.iter_mut().find(|n| n.node_id == id) {
                n.participants += 1;
            }
        }
        let counts: Vec<u64> = nodes.iter().map(|n| n.participants).collect();
        assert_eq!(counts.iter().sum::<u64>(), 200);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    }
}
