//! Per-value sizes read from record headers (the counters' unit) and the sticky
//! poison state.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::queue::record::Header;
use crate::queue::{QueueError, QueueStats, RemovedStats};

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
