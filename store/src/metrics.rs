//! The store's own metrics, served at `GET /metrics` (not the metrics it
//! stores): Prometheus text, or OpenMetrics when the scraper asks for it
//! (see [`cc_common::metrics`]). Every name starts with `ccstore_`; the
//! README lists them all.
//!
//! What is counted where:
//!
//! - Ingest: each batch (a write request, a NATS message) is counted in its
//!   own [`IngestReport`](crate::ingest::IngestReport) and added to the
//!   store's [`IngestTotals`](crate::ingest::IngestTotals) once, with a
//!   handful of relaxed atomic additions; nothing is counted under a lock
//!   or per line outside the batch.
//! - HTTP: the API's [`Metrics::observe`] counts and times every answer of
//!   an `/api/` route.
//! - Checkpoints, the WAL and the restore keep their own atomics in
//!   [`Persistence`] and [`RestoreProgress`]; freed chunks are counted by the
//!   store; NATS by its connection [`Status`] and each [`Subscription`].
//!
//! The [`StoreCollector`] reads all of that at scrape time. It also walks
//! the level tree for the series, chunk and memory figures
//! ([`Level::census`](crate::tree::Level::census): one shared lock at a
//! time, on a blocking thread; about 0.1 s per million series on a busy
//! two-core machine), so ingest does not pay for series accounting and a
//! scrape holds up no writer for longer than one level takes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cc_common::metrics::{Format, Registry, encode_family, register_build_info};
use cc_common::nats::Status;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::ingest::{Rejection, Source};
use crate::nats::Subscription;
use crate::persist::Persistence;
use crate::persist::restore::RestoreProgress;
use crate::store::{FreeReason, MetricStore};

/// The prefix of every metric name.
pub const PREFIX: &str = "ccstore";

/// The git commit this binary was built from (`unknown` without git).
pub const COMMIT: &str = env!("CC_STORE_COMMIT");

/// Upper bounds (seconds) of the request duration histogram: a write of
/// 10 000 lines takes a few milliseconds, a large query up to seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// An API endpoint: the `endpoint` label of the HTTP families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/write`.
    Write,
    /// `/api/query`.
    Query,
    /// `/api/free`.
    Free,
    /// `/api/debug`.
    Debug,
    /// `/api/healthcheck`.
    Healthcheck,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Write,
        Endpoint::Query,
        Endpoint::Free,
        Endpoint::Debug,
        Endpoint::Healthcheck,
    ];

    /// The label value.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Endpoint::Write => "write",
            Endpoint::Query => "query",
            Endpoint::Free => "free",
            Endpoint::Debug => "debug",
            Endpoint::Healthcheck => "healthcheck",
        }
    }

    /// The endpoint a request path reaches (`/api/write`, `/api/write/…`).
    #[must_use]
    pub fn of_path(path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix("/api/")?;
        let name = rest.split('/').next().unwrap_or(rest);
        Endpoint::ALL.into_iter().find(|e| e.label() == name)
    }
}

/// Label set of `ccstore_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    code: u16,
}

/// Label set of `ccstore_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

/// The constructor of the duration histograms.
type HistogramFn = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the collector reads at scrape time.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The data and the ingest totals.
    pub store: Arc<MetricStore>,
    /// Checkpoints and the WAL.
    pub persistence: Arc<Persistence>,
    /// The checkpoint loading at start.
    pub restore: Arc<RestoreProgress>,
    /// `memory-cap` in bytes (0: none).
    pub memory_cap: u64,
}

/// NATS ingestion, once it runs.
#[derive(Debug)]
struct NatsView {
    status: Arc<Status>,
    subscriptions: Vec<Arc<Subscription>>,
}

/// The registry `/metrics` serves, and the HTTP families the API feeds.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<EndpointLabels, Histogram, HistogramFn>,
    nats: Arc<OnceLock<NatsView>>,
}

impl Metrics {
    /// The registry: build information, the HTTP families (every endpoint's
    /// histogram present from the start) and a collector reading `sources`.
    #[must_use]
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        register_build_info(
            &mut registry,
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("commit", COMMIT.to_owned()),
            ],
        );
        let requests: Family<RequestLabels, Counter> = Family::default();
        let durations: Family<EndpointLabels, Histogram, HistogramFn> =
            Family::new_with_constructor(latency_histogram);
        for endpoint in Endpoint::ALL {
            let _ = durations.get_or_create(&EndpointLabels {
                endpoint: endpoint.label(),
            });
        }
        registry.register(
            "http_requests",
            "Answers of the /api/ routes, by endpoint and status code (401, 403 and 503 included)",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request reaching its /api/ route to its answer, by endpoint",
            durations.clone(),
        );
        let nats = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(StoreCollector {
            sources,
            nats: Arc::clone(&nats),
            started: cc_common::time::now_secs(),
        }));
        Metrics {
            registry,
            requests,
            durations,
            nats,
        }
    }

    /// Counts an answer of `endpoint` with `status` that took `elapsed`.
    pub fn observe(&self, endpoint: Endpoint, status: StatusCode, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.label(),
                code: status.as_u16(),
            })
            .inc();
        self.durations
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.label(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Adds the NATS families, read from the connection's `status` and the
    /// `subscriptions` (once; later calls change nothing).
    pub fn attach_nats(&self, status: Arc<Status>, subscriptions: Vec<Arc<Subscription>>) {
        let _ = self.nats.set(NatsView {
            status,
            subscriptions,
        });
    }

    /// The NATS connection's state, once NATS ingestion runs.
    #[must_use]
    pub fn nats_status(&self) -> Option<Arc<Status>> {
        self.nats.get().map(|n| Arc::clone(&n.status))
    }

    /// The answer to a scrape with `headers` (format by `Accept`).
    #[must_use]
    pub fn response(&self, headers: &HeaderMap) -> Response {
        cc_common::metrics::response(&self.registry, headers)
    }

    /// Everything, encoded in `format`.
    ///
    /// # Errors
    ///
    /// A family failed to encode.
    pub fn encode(&self, format: Format) -> Result<String, fmt::Error> {
        cc_common::metrics::encode(&self.registry, format)
    }
}

/// The scrape-time part of the store's metrics.
#[derive(Debug)]
pub struct StoreCollector {
    sources: Sources,
    nats: Arc<OnceLock<NatsView>>,
    /// Unix seconds when the metrics were set up (at start).
    started: i64,
}

/// The label set of a family without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// One series without labels.
fn single<M>(metric: M) -> [([(&'static str, &'static str); 0], M); 1] {
    [(NO_LABELS, metric)]
}

fn counter(n: u64) -> ConstCounter {
    ConstCounter::new(n)
}

fn gauge<T>(n: T) -> ConstGauge<T> {
    ConstGauge::new(n)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let enc = &mut encoder;
        encode_family(
            enc,
            "start_time_seconds",
            "Start of the process, Unix seconds",
            single(gauge(self.started)),
        )?;
        self.ingest(enc)?;
        self.tree(enc)?;
        self.persistence(enc)?;
        self.restore(enc)?;
        self.nats(enc)
    }
}

impl StoreCollector {
    fn ingest(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let store = &self.sources.store;
        let by_source = |get: fn(&crate::ingest::IngestTotals) -> u64| {
            Source::ALL.map(|s| {
                (
                    [("source", s.label())],
                    counter(get(store.ingest_totals(s))),
                )
            })
        };
        encode_family(
            enc,
            "ingest_lines",
            "Lines received (blank lines and comments not counted), by source (http, nats)",
            by_source(|t| t.lines()),
        )?;
        encode_family(
            enc,
            "ingest_samples",
            "Samples stored, by source",
            by_source(|t| t.written()),
        )?;
        encode_family(
            enc,
            "ingest_bytes",
            "Request bodies and NATS payloads received, by source",
            by_source(|t| t.bytes()),
        )?;
        let rejected = Source::ALL.into_iter().flat_map(|s| {
            Rejection::ALL.map(|r| {
                (
                    [("source", s.label()), ("reason", r.label())],
                    counter(store.ingest_totals(s).rejected(r)),
                )
            })
        });
        encode_family(
            enc,
            "ingest_rejected_lines",
            "Lines not stored, by source and reason (unknown_metric, too_old and \
             unsafe_name are skipped as upstream skips them; the others make a write \
             request a 400)",
            rejected,
        )
    }

    fn tree(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let root = self.sources.store.root();
        // Clusters by name, taken without holding the root's lock further.
        let clusters: Vec<(String, Arc<crate::tree::Level>)> = root
            .read()
            .children
            .iter()
            .map(|(name, level)| (name.to_string(), Arc::clone(level)))
            .collect();
        let hosts: usize = clusters.iter().map(|(_, c)| c.read().children.len()).sum();
        let census = root.census();
        encode_family(
            enc,
            "clusters",
            "Clusters in memory",
            single(gauge(to_u64(clusters.len()))),
        )?;
        encode_family(
            enc,
            "hosts",
            "Hosts in memory",
            single(gauge(to_u64(hosts))),
        )?;
        // Per cluster, the hosts none of whose series got a sample in the
        // last five of its periods.
        let now = cc_common::time::now_secs();
        let silent: Vec<(String, u64)> = clusters
            .into_iter()
            .map(|(name, cluster)| {
                let hosts: Vec<Arc<crate::tree::Level>> =
                    cluster.read().children.values().cloned().collect();
                let silent = hosts.iter().filter(|h| !h.has_fresh_data(now)).count();
                (name, to_u64(silent))
            })
            .collect();
        encode_family(
            enc,
            "silent_hosts",
            "Hosts in memory none of whose series got a sample within five of its periods, by cluster \
             (nodes that stopped reporting, or left the cluster less than retention-in-memory ago)",
            silent
                .into_iter()
                .map(|(cluster, n)| ([("cluster", cluster)], gauge(n))),
        )?;
        encode_family(
            enc,
            "series",
            "Series in memory (one per metric and level holding data)",
            single(gauge(to_u64(census.series))),
        )?;
        encode_family(
            enc,
            "chunks",
            "Chunks (blocks of up to 512 samples) in memory",
            single(gauge(to_u64(census.chunks))),
        )?;
        encode_family(
            enc,
            "memory_used_bytes",
            "Memory held by the data, as the memory cap counts it (sample arrays by \
             capacity plus a fixed cost per chunk and level)",
            single(gauge(to_u64(census.bytes))),
        )?;
        encode_family(
            enc,
            "memory_cap_bytes",
            "metric-store.memory-cap in bytes; 0 means no cap",
            single(gauge(self.sources.memory_cap)),
        )?;
        let store = &self.sources.store;
        encode_family(
            enc,
            "freed_chunks",
            "Chunks freed, by reason (retention, memory_cap, api for POST /api/free)",
            FreeReason::ALL.map(|r| ([("reason", r.label())], counter(store.freed(r)))),
        )
    }

    #[expect(clippy::cast_precision_loss, reason = "durations as float seconds")]
    fn persistence(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let p = &self.sources.persistence;
        let c = p.checkpoint_stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        encode_family(
            enc,
            "checkpoint_rounds",
            "Checkpoint rounds finished (periodic, early for the WAL size, before \
             freeing for the memory cap)",
            single(counter(get(&c.rounds))),
        )?;
        encode_family(
            enc,
            "checkpoint_failures",
            "Host snapshots that could not be written (the host keeps its WAL and is \
             saved in the next round)",
            single(counter(get(&c.failures))),
        )?;
        encode_family(
            enc,
            "checkpoint_last_success_timestamp_seconds",
            "End of the last checkpoint round in which every host was saved, Unix \
             seconds; 0 before the first",
            single(gauge(c.last_success.load(Ordering::Relaxed))),
        )?;
        encode_family(
            enc,
            "checkpoint_last_duration_seconds",
            "Duration of the last checkpoint round",
            single(gauge(get(&c.last_duration_us) as f64 / 1e6)),
        )?;
        encode_family(
            enc,
            "wal_bytes",
            "Bytes in the WAL files on disk (0 with file-format json)",
            single(gauge(p.wal_on_disk())),
        )?;
        encode_family(
            enc,
            "wal_written_bytes",
            "Bytes appended to WAL files",
            single(counter(p.wal_bytes())),
        )?;
        encode_family(
            enc,
            "wal_errors",
            "Failed WAL writes and fsyncs",
            single(counter(p.wal_errors())),
        )
    }

    fn restore(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let r = &self.sources.restore;
        encode_family(
            enc,
            "restore_in_progress",
            "1 while the checkpoints are being loaded (the API answers 503), then 0",
            single(gauge(i64::from(!r.done.load(Ordering::Acquire)))),
        )?;
        encode_family(
            enc,
            "restore_hosts",
            "Host directories the restore found",
            single(gauge(to_u64(r.hosts_total.load(Ordering::Relaxed)))),
        )?;
        encode_family(
            enc,
            "restore_hosts_done",
            "Host directories the restore has finished",
            single(gauge(to_u64(r.hosts_done.load(Ordering::Relaxed)))),
        )?;
        encode_family(
            enc,
            "restore_files",
            "Checkpoint files (snapshots and WAL files) the restore has read",
            single(counter(r.files.load(Ordering::Relaxed))),
        )?;
        encode_family(
            enc,
            "restore_read_bytes",
            "Bytes of checkpoint files the restore has read",
            single(counter(r.bytes.load(Ordering::Relaxed))),
        )
    }

    fn nats(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(nats) = self.nats.get() else {
            return Ok(());
        };
        let status = &nats.status;
        encode_family(
            enc,
            "nats_connected",
            "1 while the connection to the NATS server is up",
            single(gauge(i64::from(status.is_connected()))),
        )?;
        encode_family(
            enc,
            "nats_reconnects",
            "NATS connections made again after the first",
            single(counter(status.reconnects())),
        )?;
        encode_family(
            enc,
            "nats_dropped_messages",
            "NATS messages dropped because the store fell behind (inboxes full)",
            single(counter(status.dropped())),
        )?;
        encode_family(
            enc,
            "nats_slow_consumer_events",
            "Times the NATS client reported dropping messages for a slow consumer",
            single(counter(status.slow_consumer_events())),
        )?;
        // Entries with the same subject and cluster tag are summed (one
        // series each).
        let mut subs: Vec<(String, String, crate::nats::Counts)> = Vec::new();
        for s in &nats.subscriptions {
            let c = s.counts();
            match subs
                .iter_mut()
                .find(|(subject, tag, _)| subject == s.subject() && tag == s.cluster_tag())
            {
                Some((_, _, sum)) => {
                    sum.received += c.received;
                    sum.bytes += c.bytes;
                    sum.invalid_messages += c.invalid_messages;
                }
                None => subs.push((s.subject().to_owned(), s.cluster_tag().to_owned(), c)),
            }
        }
        type Field = fn(&crate::nats::Counts) -> u64;
        let families: [(&str, &str, Field); 3] = [
            (
                "nats_messages",
                "NATS messages received, by subscription (subject, cluster_tag)",
                |c| c.received,
            ),
            (
                "nats_bytes",
                "Payload bytes of the NATS messages decoded, by subscription",
                |c| c.bytes,
            ),
            (
                "nats_invalid_messages",
                "NATS messages with at least one invalid line, by subscription",
                |c| c.invalid_messages,
            ),
        ];
        for (name, help, field) in families {
            let series = subs.iter().map(|(subject, tag, c)| {
                (
                    [("subject", subject.as_str()), ("cluster_tag", tag.as_str())],
                    counter(field(c)),
                )
            });
            encode_family(enc, name, help, series)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
