//! The in-memory metric store: the level tree plus the metric registry.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cc_common::telemetry::Throttle;
use parking_lot::Mutex;

use crate::ingest::{IngestReport, IngestTotals, Source};
use crate::persist::Persistence;
use crate::registry::Registry;
use crate::tree::Level;

/// How many distinct unknown metric names are remembered for logging.
const UNKNOWN_NAMES_LOGGED: usize = 1024;

/// Lines skipped for unsafe cluster or host names are logged at most this
/// often.
const UNSAFE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why chunks were freed: the `reason` label of
/// `ccstore_freed_chunks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeReason {
    /// Older than `retention-in-memory` (and saved in a checkpoint).
    Retention,
    /// Freed early to get under `memory-cap`.
    MemoryCap,
    /// Asked for with `POST /api/free`.
    Api,
}

impl FreeReason {
    /// Every reason.
    pub const ALL: [FreeReason; 3] = [
        FreeReason::Retention,
        FreeReason::MemoryCap,
        FreeReason::Api,
    ];

    /// The label value.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            FreeReason::Retention => "retention",
            FreeReason::MemoryCap => "memory_cap",
            FreeReason::Api => "api",
        }
    }
}

/// The store's data: shared by the HTTP API, NATS ingest and background tasks.
#[derive(Debug)]
pub struct MetricStore {
    root: Arc<Level>,
    registry: Registry,
    /// Unknown metric names already logged, so each is logged once.
    unknown_logged: Mutex<HashSet<String>>,
    /// The checkpoint directory, when samples are journaled to a WAL.
    wal: Option<Arc<Persistence>>,
    /// What each source delivered, by [`Source`] (`/metrics`).
    totals: [IngestTotals; 2],
    /// Chunks freed, by [`FreeReason`] (`/metrics`).
    freed: [AtomicU64; 3],
    /// Warnings about unsafe names are throttled: a sender with a bad
    /// host name repeats it in every batch.
    unsafe_log: Throttle,
}

impl MetricStore {
    /// An empty store for the configured metrics.
    #[must_use]
    pub fn new(registry: Registry) -> MetricStore {
        MetricStore {
            root: Arc::new(Level::new()),
            registry,
            unknown_logged: Mutex::new(HashSet::new()),
            wal: None,
            totals: Default::default(),
            freed: Default::default(),
            unsafe_log: Throttle::new(UNSAFE_LOG_EVERY),
        }
    }

    /// The same store, appending every accepted sample to the WAL of
    /// `persistence` before it is stored.
    #[must_use]
    pub fn with_wal(mut self, persistence: Arc<Persistence>) -> MetricStore {
        self.wal = persistence.has_wal().then_some(persistence);
        self
    }

    /// Where samples are journaled, if they are.
    #[must_use]
    pub fn wal(&self) -> Option<&Arc<Persistence>> {
        self.wal.as_ref()
    }

    /// The root of the level tree (its children are clusters).
    #[must_use]
    pub fn root(&self) -> &Arc<Level> {
        &self.root
    }

    /// The configured metrics.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Logs the name of an unconfigured metric the first time it is seen
    /// (collectors often send more metrics than a store keeps; the lines are
    /// counted in `ccstore_ingest_rejected_lines_total{reason="unknown_metric"}`).
    pub fn note_unknown_metric(&self, name: &str) {
        let mut logged = self.unknown_logged.lock();
        if logged.len() < UNKNOWN_NAMES_LOGGED && !logged.contains(name) {
            logged.insert(name.to_owned());
            tracing::info!(
                metric = name,
                "dropping lines of a metric that is not configured"
            );
        }
    }

    /// Adds a batch of `bytes` bytes from `source` to the totals.
    pub fn count_batch(&self, source: Source, bytes: usize, report: &IngestReport) {
        self.ingest_totals(source).add(bytes, report);
    }

    /// What `source` delivered since start.
    #[must_use]
    pub fn ingest_totals(&self, source: Source) -> &IngestTotals {
        match source {
            Source::Http => &self.totals[0],
            Source::Nats => &self.totals[1],
        }
    }

    /// Counts `n` chunks freed for `reason`.
    pub fn count_freed(&self, reason: FreeReason, n: usize) {
        self.freed_counter(reason)
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Chunks freed for `reason` since start.
    #[must_use]
    pub fn freed(&self, reason: FreeReason) -> u64 {
        self.freed_counter(reason).load(Ordering::Relaxed)
    }

    fn freed_counter(&self, reason: FreeReason) -> &AtomicU64 {
        match reason {
            FreeReason::Retention => &self.freed[0],
            FreeReason::MemoryCap => &self.freed[1],
            FreeReason::Api => &self.freed[2],
        }
    }

    /// Warns (at most once a minute) that a batch had `lines` lines whose
    /// cluster or host name would leave the checkpoint directory, the first
    /// being line `line` with `cluster` and `host`.
    pub fn note_unsafe_names(&self, line: usize, cluster: &str, host: &str, lines: usize) {
        if let Some(unlogged) = self.unsafe_log.due() {
            // A name may be megabytes long: the log gets its start.
            let start = |name: &str| -> String {
                let mut cut: String = name.chars().take(64).collect();
                if cut.len() < name.len() {
                    cut.push_str(&format!("… ({} bytes)", name.len()));
                }
                cut
            };
            tracing::warn!(
                line,
                cluster = start(cluster),
                host = start(host),
                lines,
                unlogged_batches = unlogged,
                "skipping lines whose cluster or host name would leave the checkpoint directory \
                 ('.', or containing '..', '/', '\\' or NUL) or is longer than 255 bytes; \
                 the rest of the batch is stored (logged at most once a minute)"
            );
        }
    }
}
