//! One NATS subscription's cluster tag and counters, and the decoding of
//! one message with them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::Message;

use crate::config::NatsSubscription;
use crate::ingest::{IngestReport, Source, ingest};
use crate::store::MetricStore;

/// Invalid lines are logged at most this often per subscription.
const INVALID_LOG_EVERY: Duration = Duration::from_secs(60);

/// Header carrying the arrival time (Unix seconds) of a message from its
/// subscription to its decoder. It never leaves the process.
pub(crate) const RECEIVED_HEADER: &str = "Cc-Store-Received";

/// One entry of `metric-store.nats-subscriptions` and what came through it.
#[derive(Debug)]
pub struct Subscription {
    subject: String,
    cluster_tag: String,
    received: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    lines: AtomicU64,
    written: AtomicU64,
    invalid_lines: AtomicU64,
    invalid_messages: AtomicU64,
    unknown_metric: AtomicU64,
    too_old: AtomicU64,
    wal_errors: AtomicU64,
    /// Invalid messages are logged at most once a minute.
    invalid_log: cc_common::telemetry::Throttle,
}

/// The counters of a [`Subscription`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages taken from NATS (some may still wait, or have been dropped).
    pub received: u64,
    /// Messages decoded.
    pub messages: u64,
    /// Payload bytes decoded.
    pub bytes: u64,
    /// Lines decoded.
    pub lines: u64,
    /// Samples stored.
    pub written: u64,
    /// Lines rejected as invalid.
    pub invalid_lines: u64,
    /// Messages with at least one invalid line.
    pub invalid_messages: u64,
    /// Lines of metrics that are not configured.
    pub unknown_metric: u64,
    /// Samples older than the newest chunk of their series.
    pub too_old: u64,
    /// Messages whose samples could not be written to the WAL.
    pub wal_errors: u64,
}

impl Subscription {
    /// A subscription for `entry`, with zero counts.
    #[must_use]
    pub fn new(entry: &NatsSubscription) -> Subscription {
        Subscription {
            subject: entry.subscribe_to.clone(),
            cluster_tag: entry.cluster_tag.clone().unwrap_or_default(),
            received: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            written: AtomicU64::new(0),
            invalid_lines: AtomicU64::new(0),
            invalid_messages: AtomicU64::new(0),
            unknown_metric: AtomicU64::new(0),
            too_old: AtomicU64::new(0),
            wal_errors: AtomicU64::new(0),
            invalid_log: cc_common::telemetry::Throttle::new(INVALID_LOG_EVERY),
        }
    }

    /// `subscribe-to`.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `cluster-tag` ("" when absent): the cluster of lines without a
    /// `cluster` tag.
    #[must_use]
    pub fn cluster_tag(&self) -> &str {
        &self.cluster_tag
    }

    /// The counters now.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            received: get(&self.received),
            messages: get(&self.messages),
            bytes: get(&self.bytes),
            lines: get(&self.lines),
            written: get(&self.written),
            invalid_lines: get(&self.invalid_lines),
            invalid_messages: get(&self.invalid_messages),
            unknown_metric: get(&self.unknown_metric),
            too_old: get(&self.too_old),
            wal_errors: get(&self.wal_errors),
        }
    }

    /// Counts a message taken from NATS.
    pub(crate) fn count_arrival(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, bytes: usize, report: &IngestReport) {
        let add = |c: &AtomicU64, n: usize| {
            c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        add(&self.messages, 1);
        add(&self.bytes, bytes);
        add(&self.lines, report.lines);
        add(&self.written, report.written);
        add(&self.invalid_lines, report.invalid());
        add(&self.unknown_metric, report.unknown_metric());
        add(&self.too_old, report.too_old());
        if report.wal_error.is_some() {
            // `ingest` has logged it.
            add(&self.wal_errors, 1);
        }
        if report.invalid() > 0 {
            add(&self.invalid_messages, 1);
            self.log_invalid(report);
        }
    }

    /// Logs a message's invalid lines, at most once a minute.
    fn log_invalid(&self, report: &IngestReport) {
        let Some(unlogged) = self.invalid_log.due() else {
            return;
        };
        tracing::warn!(
            subject = %self.subject,
            cluster_tag = %self.cluster_tag,
            invalid_lines = report.invalid(),
            stored = report.written,
            error = %report.first_error.as_ref().map(ToString::to_string).unwrap_or_default(),
            unlogged_invalid_messages = unlogged,
            "NATS message with invalid lines (its valid lines are stored; \
             invalid messages are logged at most once a minute)"
        );
    }
}

/// Decodes one message into `store` with the cluster tag of `subscription`.
/// Lines without a timestamp get the message's arrival time (or now).
pub fn decode(store: &MetricStore, subscription: &Subscription, message: &Message) -> IngestReport {
    let now = received_at(message).unwrap_or_else(cc_common::time::now_secs);
    let report = ingest(store, &message.payload, &subscription.cluster_tag, now);
    subscription.record(message.payload.len(), &report);
    store.count_batch(Source::Nats, message.payload.len(), &report);
    report
}

/// The arrival time stamped by [`Arrivals`].
fn received_at(message: &Message) -> Option<i64> {
    message
        .headers
        .as_ref()?
        .get(RECEIVED_HEADER)?
        .as_str()
        .parse()
        .ok()
}
