//! Disk limits (spec `relay.md` §4.8): the global cap on the queue's size on
//! disk and the free-space floor of the filesystem holding it.
//!
//! Every `disk_check_interval` the housekeeper compares the database's size
//! with `max_disk_bytes` and the filesystem's free space with
//! `min_free_disk_bytes` / `min_free_disk_percent` (the stricter wins).
//! Over a limit it evicts the oldest records across all queues (oldest ingest
//! time first) until the queued data is at 90 % of what the limit allows; every
//! eviction is counted as `reason="disk_pressure"`. Because sled frees space
//! lazily, it switches all ingress to refusing new data (503, `/readyz` 503,
//! `ccrelay_storage_pressure` 1) while the database stays above 110 % of the
//! cap or free space below half the floor, and resumes below the limits. The
//! relay never runs its filesystem full: sled would turn that into a
//! permanent I/O error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::Queue;

/// Limits and where to check them.
#[derive(Debug, Clone)]
pub struct DiskLimits {
    /// The relay's data directory (the filesystem to watch).
    pub data_dir: PathBuf,
    /// Cap on the database's size on disk.
    pub max_disk_bytes: u64,
    /// Keep at least this many bytes free.
    pub min_free_bytes: u64,
    /// Keep at least this share of the filesystem free.
    pub min_free_percent: f64,
    /// Check period.
    pub interval: Duration,
}

/// What the housekeeper found, for `/metrics` and ingress.
#[derive(Debug, Default)]
pub struct DiskState {
    /// Ingress refuses new data while set.
    pub pressure: AtomicBool,
    /// Free bytes on the data filesystem at the last check.
    pub free_bytes: AtomicU64,
    /// Lines and records evicted for disk pressure, per upstream.
    evicted: parking_lot::Mutex<BTreeMap<String, (u64, u64)>>,
}

impl DiskState {
    /// Lines and records evicted from `upstream`'s queue for disk pressure
    /// (`reason="disk_pressure"`).
    #[must_use]
    pub fn evicted(&self, upstream: &str) -> (u64, u64) {
        self.evicted
            .lock()
            .get(upstream)
            .copied()
            .unwrap_or_default()
    }

    /// Every queue with evictions for disk pressure, configured (and
    /// enabled) or not: name, lines, records.
    #[must_use]
    pub fn evicted_all(&self) -> Vec<(String, u64, u64)> {
        self.evicted
            .lock()
            .iter()
            .map(|(name, (lines, records))| (name.clone(), *lines, *records))
            .collect()
    }

    fn count_eviction(&self, upstream: &str, lines: u64, records: u64) {
        let mut evicted = self.evicted.lock();
        let entry = match evicted.get_mut(upstream) {
            Some(entry) => entry,
            None => evicted.entry(upstream.to_owned()).or_default(),
        };
        entry.0 += lines;
        entry.1 += records;
    }
}

/// Free bytes and total bytes of the filesystem holding `path`.
fn filesystem_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size();
    Some((
        st.blocks_available().saturating_mul(frag),
        st.blocks().saturating_mul(frag),
    ))
}

/// Runs the checks until `stop` fires.
pub async fn run(
    queue: Arc<Queue>,
    limits: DiskLimits,
    state: Arc<DiskState>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(limits.interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (q, l, s) = (Arc::clone(&queue), limits.clone(), Arc::clone(&state));
        if let Err(e) = tokio::task::spawn_blocking(move || check(&q, &l, &s)).await {
            tracing::error!(error = %e, "disk check failed");
        }
    }
}

/// One round of checks (also run once at start-up).
pub fn check(queue: &Queue, limits: &DiskLimits, state: &DiskState) {
    let on_disk = queue.size_on_disk().unwrap_or(0);
    let (free, total) = filesystem_space(&limits.data_dir).unwrap_or((u64::MAX, u64::MAX));
    state.free_bytes.store(free, Ordering::Relaxed);
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a percentage of a size"
    )]
    let floor = limits
        .min_free_bytes
        .max((total as f64 * limits.min_free_percent / 100.0) as u64);
    let over_cap = on_disk > limits.max_disk_bytes;
    let low_space = free < floor;
    if over_cap || low_space {
        // Queued bytes to get rid of: down to 90 % of the cap, or enough to
        // give back the missing free space.
        let queued: u64 = queue.stats().iter().map(|(_, s)| s.stored_bytes).sum();
        let mut to_free = if over_cap {
            on_disk.saturating_sub(limits.max_disk_bytes / 10 * 9)
        } else {
            0
        };
        if low_space {
            to_free = to_free.max(floor - free);
        }
        evict_oldest(queue, to_free.min(queued), state);
    }
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "hysteresis thresholds"
    )]
    let hard_cap = (limits.max_disk_bytes as f64 * 1.1) as u64;
    let pressure = on_disk > hard_cap
        || free < floor / 2
        || (low_space && queue.stats().iter().all(|(_, s)| s.records == 0));
    let was = state.pressure.swap(pressure, Ordering::Relaxed);
    if pressure && !was {
        tracing::error!(
            on_disk,
            free,
            floor,
            "disk limits exceeded: refusing new data until space is back"
        );
    } else if was && !pressure {
        tracing::warn!(
            on_disk,
            free,
            "disk space back within limits: accepting data again"
        );
    }
}

/// Evicts at least `bytes` stored bytes, oldest ingest time first across queues.
fn evict_oldest(queue: &Queue, bytes: u64, state: &DiskState) {
    let mut freed = 0;
    while freed < bytes {
        let oldest = queue
            .stats()
            .into_iter()
            .filter(|(_, s)| s.records > 0)
            .min_by_key(|(_, s)| s.oldest_ingest_ms.unwrap_or(u64::MAX));
        let Some((name, _)) = oldest else { break };
        match queue.drop_oldest(&name, 1) {
            Ok(removed) if removed.records > 0 => {
                freed += removed.stored_bytes;
                state.count_eviction(&name, removed.lines, removed.records);
            }
            Ok(_) => break,
            Err(e) => {
                tracing::error!(upstream = %name, error = %e, "evicting for disk pressure failed");
                break;
            }
        }
    }
    if freed > 0 {
        tracing::warn!(
            freed_bytes = freed,
            "disk limits: dropped the oldest queued data"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::{open, record};

    fn limits(dir: &std::path::Path, max_disk_bytes: u64) -> DiskLimits {
        DiskLimits {
            data_dir: dir.to_path_buf(),
            max_disk_bytes,
            min_free_bytes: 0,
            min_free_percent: 0.0,
            interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn over_the_cap_the_oldest_records_go_first_and_are_counted_per_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), &["a", "b"]);
        // "b" holds the oldest records, "a" the newest.
        queue.append(&["b"], &[record(1_000, 20, 1)]).unwrap();
        queue.append(&["a"], &[record(2_000, 20, 2)]).unwrap();
        queue.append(&["a"], &[record(3_000, 20, 3)]).unwrap();
        queue.flush().unwrap();
        let state = DiskState::default();
        // Within a generous cap nothing happens.
        check(&queue, &limits(dir.path(), u64::MAX / 2), &state);
        assert!(state.evicted_all().is_empty());
        assert!(!state.pressure.load(Ordering::Relaxed));
        // A cap far below the database's size evicts everything, oldest first.
        check(&queue, &limits(dir.path(), 1), &state);
        assert_eq!(state.evicted("b"), (20, 1));
        assert_eq!(state.evicted("a"), (40, 2));
        assert_eq!(
            state.evicted_all(),
            [("a".to_owned(), 40, 2), ("b".to_owned(), 20, 1)]
        );
        assert!(
            state.pressure.load(Ordering::Relaxed),
            "sled frees space lazily: new data is refused meanwhile"
        );
    }
}
