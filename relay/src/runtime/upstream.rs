//! One upstream's handle: everything the relay keeps about one destination,
//! owned in one place and shared (`Arc<Upstream>`) by the sources that queue
//! lines for it, its forwarding worker and the admin endpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;

use crate::metrics::{
    DEAD_LETTER_REASONS, Dropped, FAILURE_REASONS, ReasonCounts, latency_histogram,
};
use crate::process::{Route, Target};
use crate::queue::Queue;

/// An upstream: its routing, its queue limit, its worker's wake-up and
/// window, its counters.
#[derive(Debug)]
pub struct Upstream {
    /// Name in logs and metrics; its queue tree is `q:<name>`.
    pub name: String,
    /// Which lines it receives (filter and validation profile).
    pub target: Target,
    /// How much its queue may hold, and what happens beyond.
    pub limit: QueueLimit,
    /// Wakes its worker after lines were queued for it.
    pub wake: Notify,
    /// Last record id handed to a batch on the way (`None`: nothing on the
    /// way; ids start at 0, so 0 is a record like any other). Eviction of a
    /// full queue never touches ids up to it; locked while the worker reads a
    /// batch and while a source evicts, so that neither misses the other.
    pub in_flight: parking_lot::Mutex<Option<u64>>,
    /// Forwarding and queue-limit counters.
    pub counters: UpstreamCounters,
}

impl Route for std::sync::Arc<Upstream> {
    fn target(&self) -> &Target {
        &self.target
    }
}

/// One upstream's queue limit (`buffer.max_bytes`, `buffer.when_full`).
#[derive(Debug, Clone)]
pub struct QueueLimit {
    /// Stored bytes allowed in the upstream's queue.
    pub max_bytes: u64,
    /// Refuse new data (503) instead of dropping the oldest.
    pub reject_new: bool,
}

/// Counters of one upstream, read by the admin endpoints. The counts and
/// the request histogram are `prometheus-client` metrics, unlabelled: the
/// metrics collector adds the `upstream` label. The flags and times are the
/// worker's view of the upstream's state, read at scrape time.
#[derive(Debug)]
pub struct UpstreamCounters {
    /// Failed attempts per reason ([`FAILURE_REASONS`]).
    pub failure_reasons: ReasonCounts<{ FAILURE_REASONS.len() }>,
    /// Duration of every request, in seconds.
    pub request_seconds: Histogram,
    /// Batches delivered.
    pub sent_batches: Counter,
    /// Lines delivered.
    pub sent_lines: Counter,
    /// Bytes delivered.
    pub sent_bytes: Counter,
    /// Attempts that were retries.
    pub retries: Counter,
    /// Lines moved to the dead-letter tree, per reason ([`DEAD_LETTER_REASONS`]).
    pub dead_lettered: ReasonCounts<{ DEAD_LETTER_REASONS.len() }>,
    /// Lines (and their records) dropped because they were older than `max_age`.
    pub expired: Dropped,
    /// Lines (and their records) dropped from the full queue (`drop_oldest`).
    pub dropped_full: Dropped,
    /// Lines of core NATS messages dropped because this upstream's full
    /// `reject_new` queue refused them (never stored, so no records).
    pub rejected_full: Counter,
    /// 1 after the last success, 0 after the last failure.
    pub up: AtomicBool,
    /// 401/403 seen on the last attempt.
    pub auth_failing: AtomicBool,
    /// 404/405 seen on the last attempt.
    pub misconfigured: AtomicBool,
    /// Current backoff in milliseconds.
    pub backoff_ms: AtomicU64,
    /// Unix ms of the last delivery.
    pub last_success_ms: AtomicU64,
    /// Text of the last error.
    pub last_error: parking_lot::Mutex<String>,
    /// Unix ms of the last failed attempt (0: none yet).
    pub last_error_ms: AtomicU64,
}

impl Default for UpstreamCounters {
    fn default() -> Self {
        UpstreamCounters {
            failure_reasons: ReasonCounts::new(FAILURE_REASONS),
            request_seconds: latency_histogram(),
            sent_batches: Counter::default(),
            sent_lines: Counter::default(),
            sent_bytes: Counter::default(),
            retries: Counter::default(),
            dead_lettered: ReasonCounts::new(DEAD_LETTER_REASONS),
            expired: Dropped::default(),
            dropped_full: Dropped::default(),
            rejected_full: Counter::default(),
            up: AtomicBool::default(),
            auth_failing: AtomicBool::default(),
            misconfigured: AtomicBool::default(),
            backoff_ms: AtomicU64::default(),
            last_success_ms: AtomicU64::default(),
            last_error: parking_lot::Mutex::default(),
            last_error_ms: AtomicU64::default(),
        }
    }
}

impl Upstream {
    /// A handle with fresh counters (the upstream counts as up until a
    /// delivery fails).
    #[must_use]
    pub fn new(name: String, target: Target, limit: QueueLimit) -> Upstream {
        let counters = UpstreamCounters::default();
        counters.up.store(true, Ordering::Relaxed);
        Upstream {
            name,
            target,
            limit,
            wake: Notify::new(),
            in_flight: parking_lot::Mutex::new(None),
            counters,
        }
    }

    /// A `reject_new` upstream whose queue has reached its limit.
    #[must_use]
    pub fn refuses_new(&self, queue: &Queue) -> bool {
        self.limit.reject_new
            && queue
                .len(&self.name)
                .is_ok_and(|s| s.stored_bytes >= self.limit.max_bytes)
    }

    /// `drop_oldest`: evicts from the head of the queue while it is over its
    /// limit, sparing the records on the way.
    pub fn evict_over_limit(&self, queue: &Queue) {
        if self.limit.reject_new {
            return;
        }
        let Ok(stats) = queue.len(&self.name) else {
            return;
        };
        if stats.stored_bytes <= self.limit.max_bytes {
            return;
        }
        // Held while evicting, so that the worker cannot take records into
        // a batch in between.
        let window = self.in_flight.lock();
        let after = *window;
        let evicted =
            queue.drop_oldest_after(&self.name, stats.stored_bytes - self.limit.max_bytes, after);
        drop(window);
        match evicted {
            Ok(removed) if removed.records > 0 => {
                self.counters
                    .dropped_full
                    .add(removed.lines, removed.records);
                tracing::warn!(
                    upstream = %self.name,
                    lines = removed.lines,
                    ?after,
                    "queue full (buffer.max_bytes): dropped the oldest lines"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(upstream = %self.name, error = %e, "evicting from a full queue failed");
            }
        }
    }
}
