//! The in-memory metric store: the level tree plus the metric registry.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cc_common::telemetry::Throttle;
use parking_lot::Mutex;

use crate::persist::Persistence;
use crate::registry::Registry;
use crate::tree::Level;

/// How many distinct unknown metric names are remembered for logging.
const UNKNOWN_NAMES_LOGGED: usize = 1024;

/// Lines skipped for unsafe cluster or host names are logged at most this
/// often.
const UNSAFE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The store's data: shared by the HTTP API, NATS ingest and background tasks.
#[derive(Debug)]
pub struct MetricStore {
    root: Arc<Level>,
    registry: Registry,
    /// Unknown metric names already logged, so each is logged once.
    unknown_logged: Mutex<HashSet<String>>,
    /// Lines of unconfigured metrics dropped since start.
    unknown_lines: AtomicU64,
    /// The checkpoint directory, when samples are journaled to a WAL.
    wal: Option<Arc<Persistence>>,
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
            unknown_lines: AtomicU64::new(0),
            wal: None,
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

    /// Lines of unconfigured metrics dropped since start.
    #[must_use]
    pub fn unknown_lines(&self) -> u64 {
        self.unknown_lines.load(Ordering::Relaxed)
    }

    /// Counts a line of an unconfigured metric and logs the name the first
    /// time it is seen (collectors often send more metrics than a store keeps).
    pub fn note_unknown_metric(&self, name: &str) {
        self.unknown_lines.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.unknown_logged.lock();
        if logged.len() < UNKNOWN_NAMES_LOGGED && !logged.contains(name) {
            logged.insert(name.to_owned());
            tracing::info!(
                metric = name,
                "dropping lines of a metric that is not configured"
            );
        }
    }

    /// Warns (at most once a minute) that a batch had `lines` lines whose
    /// cluster or host name would leave the checkpoint directory, the first
    /// being line `line` with `cluster` and `host`.
    pub fn note_unsafe_names(&self, line: usize, cluster: &str, host: &str, lines: usize) {
        if let Some(unlogged) = self.unsafe_log.due() {
            tracing::warn!(
                line,
                cluster,
                host,
                lines,
                unlogged_batches = unlogged,
                "skipping lines whose cluster or host name would leave the checkpoint directory \
                 ('.', or containing '..', '/', '\\' or NUL); the rest of the batch is stored \
                 (logged at most once a minute)"
            );
        }
    }
}
