//! Prometheus metrics for `/metrics`.
//!
//! Each server owns its own recorder rather than installing a process-wide
//! one: several servers can then run in one process (the tests do) without
//! mixing their numbers, and nothing outside this module depends on a
//! global. Handles ([`Counter`], [`Gauge`], [`Histogram`]) are registered
//! once and cloned to where things happen; updating one is an atomic add.
//!
//! Media counters are not touched per packet: each media worker reads its
//! routers' per-peer counters every few seconds ([`MediaCounters`]) and adds
//! what grew since the last read.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Upper bounds (seconds) of the join latency histogram: a join waits for
/// the store and argon2, so tens of milliseconds to a few seconds.
const JOIN_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why a join was refused, the `reason` label of
/// `conclave_join_failures_total`. A fixed set keeps the label's cardinality
/// bounded whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// A wrong passcode or an unknown meeting (the two look alike).
    Passcode,
    /// Too many failed attempts from this address or on this meeting.
    RateLimited,
    /// A resume with a token the meeting does not know, or of a meeting
    /// that is not running.
    Resume,
    /// The meeting is gone, or the server is shutting down.
    Unavailable,
    /// The meeting's join policy refused the account or guest
    /// (`sign_in_required`, `organisation_only`).
    Policy,
    /// The store failed.
    Internal,
}

impl JoinFailure {
    fn label(self) -> &'static str {
        match self {
            JoinFailure::Passcode => "passcode",
            JoinFailure::RateLimited => "rate_limited",
            JoinFailure::Resume => "resume",
            JoinFailure::Unavailable => "unavailable",
            JoinFailure::Policy => "policy",
            JoinFailure::Internal => "internal",
        }
    }

    const ALL: [JoinFailure; 6] = [
        JoinFailure::Passcode,
        JoinFailure::RateLimited,
        JoinFailure::Resume,
        JoinFailure::Unavailable,
        JoinFailure::Policy,
        JoinFailure::Internal,
    ];
}

/// The server's metrics: the recorder that renders them and the handles
/// the rest of the server updates.
pub struct Metrics {
    handle: PrometheusHandle,
    meetings: Gauge,
    /// Seated members of all running meetings (each room adds its change).
    pub participants: Gauge,
    /// People in the waiting rooms of all running meetings.
    pub waiting: Gauge,
    /// Joins handed to a meeting (admitted, or put in its waiting room).
    pub joins: Counter,
    failures: [Counter; 6],
    /// Sign-ins refused because the address was blocked.
    pub sign_in_blocks: Counter,
    /// Seconds from a join message to its hand-over to the meeting.
    pub join_seconds: Histogram,
    /// Store operations that failed during a join or in a meeting.
    pub store_errors: Counter,
    /// Redis commands that failed or timed out (cluster mode).
    pub redis_errors: Counter,
    /// Meeting WebSockets this node relayed to the node running the meeting.
    pub relayed_sockets: Counter,
    /// Cascade control input refused (cluster mode, issue 23), by reason:
    /// unauthenticated, stale (not the lease holder's), bad message.
    pub cascade_refused: [Counter; 3],
    pub media: MediaCounters,
}

/// Counters the media workers add to ([`crate::media`]), every few seconds.
#[derive(Clone)]
pub struct MediaCounters {
    pub forwarded_packets: Counter,
    pub bytes_out: Counter,
    pub bytes_in: Counter,
    pub keyframe_requests_in: Counter,
    pub keyframe_requests_out: Counter,
    pub retransmitted: Counter,
    /// Forwarded packets again, readable: the cluster's node record reports
    /// packets per second from it (Prometheus' counters are write-only).
    pub forwarded_total: Arc<AtomicU64>,
}

impl MediaCounters {
    /// Counters that count nothing, for workers built without a server.
    pub fn noop() -> Self {
        MediaCounters {
            forwarded_packets: Counter::noop(),
            bytes_out: Counter::noop(),
            bytes_in: Counter::noop(),
            keyframe_requests_in: Counter::noop(),
            keyframe_requests_out: Counter::noop(),
            retransmitted: Counter::noop(),
            forwarded_total: Arc::default(),
        }
    }
}

/// A counter counted twice: exported, and in an atomic the server can read.
struct Tee {
    exported: Counter,
    total: Arc<AtomicU64>,
}

impl metrics::CounterFn for Tee {
    fn increment(&self, value: u64) {
        self.exported.increment(value);
        self.total
            .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.exported.absolute(value);
        self.total
            .fetch_max(value, std::sync::atomic::Ordering::Relaxed);
    }
}

static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets(JOIN_BUCKETS)
            // A fixed, valid list: set_buckets only fails on an empty one.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        let counter = |name: &'static str, help: &'static str| {
            recorder.describe_counter(name.into(), None, help.into());
            recorder.register_counter(&Key::from_static_name(name), &META)
        };
        let gauge = |name: &'static str, help: &'static str| {
            recorder.describe_gauge(name.into(), None, help.into());
            recorder.register_gauge(&Key::from_static_name(name), &META)
        };
        recorder.describe_counter(
            "conclave_join_failures_total".into(),
            None,
            "Joins and resumes refused, by reason".into(),
        );
        recorder.describe_counter(
            "conclave_cascade_refused_total".into(),
            None,
            "Cascade control channels and messages refused, by reason (cluster mode)".into(),
        );
        let failures = JoinFailure::ALL.map(|f| {
            let key = Key::from_parts(
                "conclave_join_failures_total",
                vec![Label::new("reason", f.label())],
            );
            recorder.register_counter(&key, &META)
        });
        recorder.describe_histogram(
            "conclave_join_duration_seconds".into(),
            Some(Unit::Seconds),
            "Time from a join message to its hand-over to the meeting".into(),
        );
        let join_seconds = recorder.register_histogram(
            &Key::from_static_name("conclave_join_duration_seconds"),
            &META,
        );
        let forwarded_total = Arc::new(AtomicU64::new(0));
        let media = MediaCounters {
            forwarded_packets: Counter::from_arc(Arc::new(Tee {
                exported: counter(
                    "conclave_media_forwarded_packets_total",
                    "RTP packets forwarded to subscribers",
                ),
                total: Arc::clone(&forwarded_total),
            })),
            bytes_out: counter(
                "conclave_media_sent_bytes_total",
                "Media bytes sent to peers",
            ),
            bytes_in: counter(
                "conclave_media_received_bytes_total",
                "Media bytes received from peers",
            ),
            keyframe_requests_in: counter(
                "conclave_media_pli_received_total",
                "Key frame requests (PLI/FIR) subscribers sent",
            ),
            keyframe_requests_out: counter(
                "conclave_media_pli_sent_total",
                "Key frame requests (PLI) the router sent publishers",
            ),
            retransmitted: counter(
                "conclave_media_nack_resent_total",
                "Packets sent again for subscribers' NACKs (fast path)",
            ),
            forwarded_total,
        };
        Arc::new(Metrics {
            meetings: gauge("conclave_meetings", "Meetings running"),
            participants: gauge(
                "conclave_participants",
                "Members seated in running meetings",
            ),
            waiting: gauge("conclave_waiting", "People in waiting rooms"),
            joins: counter("conclave_joins_total", "Joins handed to a meeting"),
            failures,
            sign_in_blocks: counter(
                "conclave_sign_in_blocked_total",
                "Sign-ins refused because the address was blocked",
            ),
            join_seconds,
            store_errors: counter(
                "conclave_store_errors_total",
                "Store operations that failed in joins and meetings",
            ),
            redis_errors: counter(
                "conclave_redis_errors_total",
                "Redis commands that failed or timed out (cluster mode)",
            ),
            relayed_sockets: counter(
                "conclave_relayed_sockets_total",
                "Meeting WebSockets relayed to the node running the meeting (cluster mode)",
            ),
            cascade_refused: ["unauthenticated", "stale", "bad_message"].map(|reason| {
                recorder.register_counter(
                    &Key::from_parts(
                        "conclave_cascade_refused_total",
                        vec![Label::new("reason", reason)],
                    ),
                    &META,
                )
            }),
            media,
            handle,
        })
    }

    /// Counts a refused join or resume.
    pub fn join_failed(&self, why: JoinFailure) {
        if let Some(i) = JoinFailure::ALL.iter().position(|f| *f == why) {
            self.failures[i].increment(1);
        }
    }

    /// Records a join's latency.
    pub fn join_took(&self, d: Duration) {
        self.join_seconds.record(d.as_secs_f64());
    }

    /// The text exposition format, with the running meetings counted now.
    pub fn render(&self, meetings: usize) -> String {
        self.meetings.set(meetings as f64);
        self.handle.render()
    }
}
