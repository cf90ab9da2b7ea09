//! Per-value sizes read from record headers (the counters' unit), the sticky
//! poison state and the engine errors per operation.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Queue;
use crate::queue::record::Header;
use crate::queue::{EngineOp, QueueError, QueueStats, RemovedStats};

/// Sticky failure state (fjall's "poisoned"): set by the first engine error.
#[derive(Debug, Default)]
pub(super) struct Poison {
    pub(super) flag: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Poison {
    pub(super) fn check(&self) -> Result<(), QueueError> {
        if self.flag.load(Ordering::Acquire) {
            Err(QueueError::Poisoned {
                reason: self.reason().unwrap_or_default(),
            })
        } else {
            Ok(())
        }
    }

    pub(super) fn reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    pub(super) fn set(&self, reason: String) {
        let mut r = self.reason.lock();
        if r.is_none() {
            tracing::error!(error = %reason, "queue storage failed; refusing further writes");
            *r = Some(reason);
        }
        self.flag.store(true, Ordering::Release);
    }
}

/// Engine operations whose errors are counted (the `op` label values).
pub(super) const ENGINE_OPS: [&str; 7] = [
    "generate_id",
    "insert",
    "read",
    "remove",
    "flush",
    "drop_tree",
    "size_on_disk",
];

/// Engine errors per operation (`ccrelay_sled_errors_total`); every known
/// operation is there from the start, at 0.
#[derive(Debug)]
pub(super) struct EngineErrors(Family<EngineOp, Counter>);

impl Default for EngineErrors {
    fn default() -> Self {
        let family = Family::default();
        for op in ENGINE_OPS {
            let _ = family.get_or_create(&EngineOp { op });
        }
        EngineErrors(family)
    }
}

impl EngineErrors {
    pub(super) fn count(&self, op: &'static str) {
        self.0.get_or_create(&EngineOp { op }).inc();
    }
}

impl Queue {
    /// Engine errors per operation since open: the first one poisons the
    /// queue (except in [`Queue::size_on_disk`]), so in a running relay a
    /// count is at most 1 before the restart. A handle on the live counters,
    /// for the metrics registry.
    #[must_use]
    pub fn engine_errors(&self) -> Family<EngineOp, Counter> {
        self.errors.0.clone()
    }
}

/// Sizes of one stored value, from its header (no checksum, no decompression).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    pub(super) lines: u64,
    pub(super) raw: u64,
    pub(super) stored: u64,
    pub(super) ingest: Option<u64>,
}

pub(super) fn sizes_of(value: &[u8]) -> Sizes {
    let stored = value.len() as u64;
    match Header::parse(value) {
        Ok(h) => Sizes {
            lines: u64::from(h.line_count),
            raw: u64::from(h.raw_len),
            stored,
            ingest: Some(h.ingest_time_ms),
        },
        // Unreadable header: counted by its stored size; peek moves it to the DLQ.
        Err(_) => Sizes {
            lines: 0,
            raw: 0,
            stored,
            ingest: None,
        },
    }
}

impl RemovedStats {
    pub(super) fn add(&mut self, s: Sizes) {
        self.records += 1;
        self.lines += s.lines;
        self.stored_bytes += s.stored;
        self.raw_bytes += s.raw;
    }
}

impl QueueStats {
    pub(super) fn add(&mut self, s: Sizes) {
        self.records += 1;
        self.lines += s.lines;
        self.stored_bytes += s.stored;
        self.raw_bytes += s.raw;
    }

    pub(super) fn remove(&mut self, r: &RemovedStats) {
        self.records = self.records.saturating_sub(r.records);
        self.lines = self.lines.saturating_sub(r.lines);
        self.stored_bytes = self.stored_bytes.saturating_sub(r.stored_bytes);
        self.raw_bytes = self.raw_bytes.saturating_sub(r.raw_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueConfig;

    #[test]
    fn engine_errors_are_counted_per_operation_and_poison() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), &["a".to_owned()], QueueConfig::default()).unwrap();
        let count = |op| q.engine_errors().get_or_create(&EngineOp { op }).get();
        assert!(ENGINE_OPS.iter().all(|op| count(op) == 0));
        let injected = sled::Error::Unsupported("injected".into());
        let err = q.engine::<()>("insert", Err(injected)).unwrap_err();
        assert!(matches!(err, QueueError::Storage { op: "insert", .. }));
        assert_eq!((count("insert"), count("flush")), (1, 0));
        assert!(!q.is_healthy());
    }
}
