//! The relay's metrics (spec `relay.md` §4.11) and the one registry `/metrics`
//! serves.
//!
//! Everything is a `prometheus-client` metric, owned where it is counted:
//!
//! - the sources' families (label `ingress`): [`IngestCounters`], in the
//!   runtime;
//! - each upstream's counters and request histogram:
//!   [`UpstreamCounters`](crate::runtime::UpstreamCounters), in its handle;
//!   the `upstream` label is added when they are encoded;
//! - the queue's engine errors per operation
//!   ([`Queue::engine_errors`](crate::queue::Queue::engine_errors)) and the
//!   group commit's histograms ([`FlushStats`](crate::queue::FlushStats)).
//!
//! [`registry`] registers handles on all of them (metric handles are shared,
//! so the registry sees the live values) together with a [`collector`] that
//! reads, at scrape time, what is state rather than a count: queue sizes,
//! upstream health, disk state, dead-letter and orphan trees.
//!
//! Counters are registered without their `_total` suffix: the encoder adds it.

pub mod collector;

use std::sync::Arc;

use cc_common::metrics::{Registry, register_build_info};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::runtime::Runtime;

/// The prefix of every metric name.
pub const PREFIX: &str = "ccrelay";

/// The git commit this binary was built from (`unknown` without git).
pub const COMMIT: &str = env!("CC_RELAY_COMMIT");

pub use crate::cli::SLED_VERSION;

/// Upper bounds (seconds) for request and acknowledgement latencies.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram in seconds with [`LATENCY_BUCKETS`].
#[must_use]
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Counters for a fixed list of reasons, all present (at 0) from the start.
#[derive(Debug)]
pub struct ReasonCounts<const N: usize> {
    reasons: [&'static str; N],
    counts: [Counter; N],
}

impl<const N: usize> ReasonCounts<N> {
    /// Counters for `reasons`.
    #[must_use]
    pub fn new(reasons: [&'static str; N]) -> Self {
        ReasonCounts {
            reasons,
            counts: std::array::from_fn(|_| Counter::default()),
        }
    }

    /// Counts `n` for `reason`; a reason not in the list is a bug and is
    /// not counted.
    pub fn add(&self, reason: &str, n: u64) {
        let counter = self
            .reasons
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.counts.get(i));
        match counter {
            Some(c) => {
                c.inc_by(n);
            }
            None => debug_assert!(
                self.reasons.contains(&reason),
                "reason {reason:?} is not one of {:?}",
                self.reasons
            ),
        }
    }

    /// The count of `reason` (0 for a reason not in the list).
    #[must_use]
    pub fn get(&self, reason: &str) -> u64 {
        self.iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, c)| c.get())
    }

    /// The sum over all reasons.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().map(Counter::get).sum()
    }

    /// `(reason, counter)` pairs, in list order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Counter)> {
        self.reasons.iter().copied().zip(&self.counts)
    }
}

/// Why an attempt to send failed (the `reason` label of
/// `ccrelay_upstream_failures_total`).
pub const FAILURE_REASONS: [&str; 7] = [
    "connect", "timeout", "tls", "http_4xx", "http_5xx", "auth", "nats",
];

/// Why lines went to the dead-letter queue (the `reason` label of
/// `ccrelay_deadletter_lines_total`): the upstream refused them (4xx) or
/// found a single line too large (413).
pub const DEAD_LETTER_REASONS: [&str; 2] = ["rejected", "too_large"];

/// Lines and records an upstream lost for one reason
/// (`ccrelay_dropped_lines_total`, `ccrelay_dropped_records_total`).
#[derive(Debug, Default)]
pub struct Dropped {
    /// Lines dropped.
    pub lines: Counter,
    /// Records (queue entries) they were stored in.
    pub records: Counter,
}

impl Dropped {
    /// Counts `records` records holding `lines` lines.
    pub fn add(&self, lines: u64, records: u64) {
        self.lines.inc_by(lines);
        self.records.inc_by(records);
    }
}

/// Label set of the per-source families.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// The source's (listener's) name.
    pub ingress: Arc<str>,
}

/// Label set of `ccrelay_ingest_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The source's name.
    pub ingress: Arc<str>,
    /// The HTTP status code of the answer.
    pub code: u16,
}

/// Label set of the per-source families with a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The source's name.
    pub ingress: Arc<str>,
    /// Why (an invalid line's or a refused credential's reason).
    pub reason: &'static str,
}

/// The constructor of the acknowledgement histograms.
type HistogramFn = fn() -> Histogram;

/// Counters of the sources, by source name.
#[derive(Debug)]
pub struct IngestCounters {
    /// Requests by status code (`ccrelay_ingest_requests_total`).
    pub requests: Family<RequestLabels, Counter>,
    /// Lines received (`ccrelay_ingest_lines_total`).
    pub lines: Family<IngressLabels, Counter>,
    /// Decoded body bytes received (`ccrelay_ingest_bytes_total`).
    pub bytes: Family<IngressLabels, Counter>,
    /// Invalid lines by reason (`ccrelay_ingest_invalid_lines_total`).
    pub invalid: Family<ReasonLabels, Counter>,
    /// Authentication failures by reason (`missing`, `jwt`, `claims`,
    /// `basic`; `ccrelay_auth_failures_total`).
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Time from receiving a request to answering it, or NATS messages to
    /// their being on disk (`ccrelay_ingest_ack_seconds`).
    pub ack_seconds: Family<IngressLabels, Histogram, HistogramFn>,
    /// Lines received by all sources together (for `/status`).
    received_lines: Counter,
    /// The sources' names, in the order they started (for `/status`: a
    /// `Family` cannot be listed).
    sources: parking_lot::Mutex<Vec<Arc<str>>>,
}

/// What one source received, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTotals {
    /// The source's name.
    pub name: Arc<str>,
    /// Lines received.
    pub lines: u64,
    /// Decoded bytes received.
    pub bytes: u64,
}

impl Default for IngestCounters {
    fn default() -> Self {
        IngestCounters {
            requests: Family::default(),
            lines: Family::default(),
            bytes: Family::default(),
            invalid: Family::default(),
            auth_failures: Family::default(),
            ack_seconds: Family::new_with_constructor(latency_histogram),
            received_lines: Counter::default(),
            sources: parking_lot::Mutex::default(),
        }
    }
}

impl IngestCounters {
    /// Makes a source's line, byte and acknowledgement series exist (at 0)
    /// before its first request, and lists it on the status page (once,
    /// also when it is started again).
    pub fn add_source(&self, source: &Arc<str>) {
        {
            let mut sources = self.sources.lock();
            if !sources.contains(source) {
                sources.push(Arc::clone(source));
            }
        }
        let labels = IngressLabels {
            ingress: Arc::clone(source),
        };
        let _ = self.lines.get_or_create(&labels);
        let _ = self.bytes.get_or_create(&labels);
        let _ = self.ack_seconds.get_or_create(&labels);
    }

    /// Counts a batch of `lines` lines in `bytes` decoded bytes from `source`.
    pub fn received(&self, source: &Arc<str>, lines: u64, bytes: u64) {
        let labels = IngressLabels {
            ingress: Arc::clone(source),
        };
        self.lines.get_or_create(&labels).inc_by(lines);
        self.bytes.get_or_create(&labels).inc_by(bytes);
        self.received_lines.inc_by(lines);
    }

    /// Lines received by all sources.
    #[must_use]
    pub fn total_lines(&self) -> u64 {
        self.received_lines.get()
    }

    /// What each source received, in the order the sources started.
    #[must_use]
    pub fn per_source(&self) -> Vec<SourceTotals> {
        let names: Vec<Arc<str>> = self.sources.lock().clone();
        names
            .into_iter()
            .map(|name| {
                let labels = IngressLabels {
                    ingress: Arc::clone(&name),
                };
                let lines = self.lines.get_or_create(&labels).get();
                let bytes = self.bytes.get_or_create(&labels).get();
                SourceTotals { name, lines, bytes }
            })
            .collect()
    }
}

/// The registry `/metrics` serves: build information, handles on every
/// metric of `runtime` and the scrape-time [`collector`].
#[must_use]
pub fn registry(runtime: &Arc<Runtime>) -> Registry {
    let mut r = Registry::with_prefix(PREFIX);
    register_build_info(
        &mut r,
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("commit", COMMIT.to_owned()),
            ("sled_version", SLED_VERSION.to_owned()),
        ],
    );
    let c = &runtime.counters;
    r.register(
        "ingest_requests",
        "Ingest requests by listener and status code",
        c.requests.clone(),
    );
    r.register(
        "ingest_lines",
        "Lines received by listener",
        c.lines.clone(),
    );
    r.register(
        "ingest_bytes",
        "Decoded body bytes received by listener",
        c.bytes.clone(),
    );
    r.register(
        "ingest_invalid_lines",
        "Invalid lines by listener and reason",
        c.invalid.clone(),
    );
    r.register(
        "auth_failures",
        "Requests refused for credentials, by listener and reason",
        c.auth_failures.clone(),
    );
    r.register(
        "ingest_ack_seconds",
        "Time from receiving a request to answering it (after the group commit), or NATS \
         messages to their being on disk (when JetStream ones are acknowledged), by ingress",
        c.ack_seconds.clone(),
    );
    let flush = runtime.flush_stats();
    r.register(
        "sled_flush_seconds",
        "Duration of group-commit flushes (fsyncs)",
        flush.latency(),
    );
    r.register(
        "sled_flush_waiters",
        "Requests made durable by one flush",
        flush.waiters_per_flush(),
    );
    r.register(
        "sled_errors",
        "Storage engine errors by operation (the first one stops the relay)",
        runtime.queue().engine_errors(),
    );
    r.register_collector(Box::new(collector::RelayCollector::new(Arc::clone(
        runtime,
    ))));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_apart_and_all_exist() {
        let f = ReasonCounts::new(FAILURE_REASONS);
        f.add("timeout", 1);
        f.add("timeout", 1);
        f.add("auth", 3);
        assert_eq!(
            (f.get("timeout"), f.get("auth"), f.get("connect")),
            (2, 3, 0)
        );
        assert_eq!(f.total(), 5);
        let listed: Vec<&str> = f.iter().map(|(r, _)| r).collect();
        assert_eq!(listed, FAILURE_REASONS);
    }

    #[test]
    fn latency_histogram_has_the_latency_buckets() {
        let h = latency_histogram();
        h.observe(0.0005);
        h.observe(0.03);
        h.observe(20.0);
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 20.0305).abs() < 1e-9);
    }

    #[test]
    fn ingest_counters_sum_lines_over_sources() {
        let c = IngestCounters::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        c.add_source(&a);
        c.received(&a, 10, 100);
        c.received(&b, 5, 50);
        let labels = |s: &Arc<str>| IngressLabels {
            ingress: Arc::clone(s),
        };
        assert_eq!(c.total_lines(), 15);
        assert_eq!(c.lines.get_or_create(&labels(&a)).get(), 10);
        assert_eq!(c.bytes.get_or_create(&labels(&b)).get(), 50);
    }

    #[test]
    fn sources_are_listed_once_in_start_order() {
        let c = IngestCounters::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        c.add_source(&b);
        c.add_source(&a);
        c.add_source(&b);
        c.received(&a, 3, 30);
        let listed = c.per_source();
        let names: Vec<&str> = listed.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!((listed[1].lines, listed[1].bytes), (3, 30));
    }
}
