//! Writing snapshots: what changed in each host since its last snapshot.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::snapshot::{self, SnapLevel, SnapMetric, Snapshot};
use super::{HostFiles, Persistence, safe_dir_name, write_atomically};
use crate::buffer::Unsaved;
use crate::registry::Registry;
use crate::store::MetricStore;
use crate::tree::Level;

/// What one checkpoint round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Hosts looked at.
    pub hosts: usize,
    /// Snapshot files written.
    pub written: usize,
    /// Values in them.
    pub values: usize,
    /// Hosts whose snapshot failed (kept for the next round, WAL kept).
    pub failed: usize,
    /// The first failure, for the log.
    pub first_error: Option<String>,
}

/// Every `(cluster, host, level)` of the tree.
#[must_use]
pub fn host_levels(root: &Level) -> Vec<(String, String, Arc<Level>)> {
    let clusters: Vec<(String, Arc<Level>)> = root
        .read()
        .children
        .iter()
        .map(|(name, level)| (name.to_string(), Arc::clone(level)))
        .collect();
    let mut out = Vec::new();
    for (cluster, level) in clusters {
        for (host, level) in &level.read().children {
            out.push((cluster.clone(), host.to_string(), Arc::clone(level)));
        }
    }
    out
}

/// Snapshots every host with unsaved data, `workers` hosts at a time.
pub fn checkpoint_all(
    store: &MetricStore,
    persistence: &Persistence,
    now: i64,
    workers: usize,
) -> CheckpointReport {
    let hosts = host_levels(store.root());
    checkpoint_hosts(store, persistence, hosts, now, workers)
}

/// Snapshots the given hosts, `workers` at a time, and records the round
/// in [`Persistence::checkpoint_stats`].
pub fn checkpoint_hosts(
    store: &MetricStore,
    persistence: &Persistence,
    hosts: Vec<(String, String, Arc<Level>)>,
    now: i64,
    workers: usize,
) -> CheckpointReport {
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let report = Mutex::new(CheckpointReport {
        hosts: hosts.len(),
        ..CheckpointReport::default()
    });
    let work = || {
        while let Some((cluster, host, level)) = hosts.get(next.fetch_add(1, Ordering::Relaxed)) {
            if !safe_dir_name(cluster) || !safe_dir_name(host) {
                tracing::warn!(
                    cluster,
                    host,
                    "not saving a host whose name is unsafe as a directory"
                );
                continue;
            }
            let files = persistence.host(cluster, host);
            let result = checkpoint_host(store.registry(), persistence, &files, level, now);
            let mut r = report.lock();
            match result {
                Ok(Some(values)) => {
                    r.written += 1;
                    r.values += values;
                }
                Ok(None) => {}
                Err(e) => {
                    r.failed += 1;
                    r.first_error
                        .get_or_insert_with(|| format!("{}: {e}", files.dir().display()));
                }
            }
        }
    };
    let workers = workers.clamp(1, hosts.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    let report = report.into_inner();
    persistence.record_checkpoint(
        report.failed,
        cc_common::time::now_secs(),
        started.elapsed(),
    );
    report
}

/// Snapshots one host: the chunks written since its last snapshot (after a
/// failed snapshot, what it had taken is unsaved again). Returns the number
/// of values written, or `None` if nothing had changed.
///
/// The host's WAL lock (which its ingest takes) is held only to take the
/// data and set the WAL aside, never while files are written and fsynced:
/// ingest into the host goes on into a new WAL meanwhile. Once the snapshot
/// is on disk the set-aside WAL is removed; should the snapshot fail, it
/// stays (and is replayed at the next start) and the next snapshot takes
/// the same data again.
///
/// # Errors
///
/// Setting the WAL aside or writing the snapshot failed.
pub fn checkpoint_host(
    registry: &Registry,
    persistence: &Persistence,
    files: &HostFiles,
    level: &Level,
    now: i64,
) -> io::Result<Option<usize>> {
    let _one_at_a_time = files.snapshot_guard();
    let (parts, mut last_name, set_aside) = {
        let mut state = files.lock();
        if state.blocked {
            return Err(io::Error::other(
                "its files could not be read at start; they are left alone (and its WAL grows) until the next start",
            ));
        }
        if persistence.has_wal() {
            // Buffered records go to the file first, so that the WAL set
            // aside holds every sample the snapshot takes.
            if let Err(e) = persistence.flush_wal(files, &mut state) {
                tracing::warn!(dir = %files.dir().display(), error = %e, "WAL write failed before a snapshot");
            }
        }
        let (older, heads) = take_unsaved(level, registry, false);
        if heads.is_empty() {
            // Every sample of the WAL is in an earlier snapshot already.
            if persistence.has_wal() {
                let count = persistence.set_wal_aside(files, &mut state)?;
                persistence.remove_set_aside(&mut state, count)?;
            }
            return Ok(None);
        }
        // Older chunks first (in runs without long gaps), the newest chunks
        // in a last file, so that a restore puts every newest chunk back as
        // it was.
        let parts: Vec<SnapLevel> = older.into_iter().chain([heads]).collect();
        let set_aside = if persistence.has_wal() {
            match persistence.set_wal_aside(files, &mut state) {
                Ok(count) => count,
                Err(e) => {
                    drop(state);
                    for part in &parts {
                        mark_unsaved(level, registry, part);
                    }
                    return Err(e);
                }
            }
        } else {
            0
        };
        (parts, state.last_snapshot, set_aside)
    };
    let mut values = 0;
    let mut written = Ok(());
    for part in &parts {
        if part.is_empty() {
            continue;
        }
        let (min_start, max_end) = bounds(part);
        // Names only grow per host, and never run ahead of the clock (a
        // sample from the future must not hold back later names).
        let name = min_start.min(now).max(last_name.saturating_add(1));
        let snap = Snapshot {
            from: name,
            to: now.max(max_end).max(name),
            root: part.clone(),
        };
        let format = persistence.format();
        let path = files.dir().join(format!("{name}.{}", format.extension()));
        if let Err(e) = write_atomically(&path, |out| snapshot::write(format, &snap, out)) {
            written = Err(e);
            break;
        }
        last_name = name;
        values += part.value_count();
    }
    let mut state = files.lock();
    state.last_snapshot = last_name;
    if let Err(e) = written {
        drop(state);
        // Everything taken is unsaved again, for the next round; the WALs
        // set aside keep it on disk until then.
        for part in &parts {
            mark_unsaved(level, registry, part);
        }
        return Err(e);
    }
    if let Err(e) = persistence.remove_set_aside(&mut state, set_aside) {
        tracing::warn!(dir = %files.dir().display(), error = %e, "cannot remove a WAL after its snapshot");
    }
    Ok(Some(values))
}

/// Marks what `snap` took from `level` as unsaved again.
fn mark_unsaved(level: &Level, registry: &Registry, snap: &SnapLevel) {
    {
        let mut data = level.write();
        for (name, metric) in &snap.metrics {
            if let Some(Some(chain)) = registry.id(name).and_then(|id| data.chains.get_mut(id)) {
                chain.mark_unsaved_from(metric.start);
            }
        }
    }
    for (name, child) in &snap.children {
        if let Some(level) = level.child(name) {
            mark_unsaved(&level, registry, child);
        }
    }
}

/// Takes the unsaved data of `level` and its descendants, marking it saved:
/// layers of the older unsaved chunks (layer `i` holds every chain's `i`-th
/// run), and the newest chunks.
#[must_use]
pub fn take_unsaved(level: &Level, registry: &Registry, all: bool) -> (Vec<SnapLevel>, SnapLevel) {
    let mut older: Vec<SnapLevel> = Vec::new();
    let mut heads = SnapLevel::default();
    let metric = |u: Unsaved| SnapMetric {
        frequency: u.frequency,
        start: u.start,
        data: u.data,
    };
    let children: Vec<(String, Arc<Level>)> = {
        let mut data = level.write();
        for (id, slot) in data.chains.iter_mut().enumerate() {
            let Some(chain) = slot else { continue };
            let Some(info) = registry.get(id) else {
                continue;
            };
            if let Some(parts) = chain.take_unsaved(all) {
                for (i, run) in parts.older.into_iter().enumerate() {
                    if older.len() <= i {
                        older.resize_with(i + 1, SnapLevel::default);
                    }
                    if let Some(layer) = older.get_mut(i) {
                        layer.metrics.insert(info.name.clone(), metric(run));
                    }
                }
                heads.metrics.insert(info.name.clone(), metric(parts.head));
            }
        }
        data.children
            .iter()
            .map(|(name, child)| (name.to_string(), Arc::clone(child)))
            .collect()
    };
    for (name, child) in children {
        let (child_older, child_heads) = take_unsaved(&child, registry, all);
        for (i, layer) in child_older.into_iter().enumerate() {
            if layer.is_empty() {
                continue;
            }
            if older.len() <= i {
                older.resize_with(i + 1, SnapLevel::default);
            }
            if let Some(o) = older.get_mut(i) {
                o.children.insert(name.clone(), layer);
            }
        }
        if !child_heads.is_empty() {
            heads.children.insert(name, child_heads);
        }
    }
    (older, heads)
}

/// Earliest start and latest end of the values in `level`.
fn bounds(level: &SnapLevel) -> (i64, i64) {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for m in level.metrics.values() {
        lo = lo.min(m.start);
        let n = i64::try_from(m.data.len()).unwrap_or(i64::MAX);
        hi = hi.max(m.start.saturating_add(n.saturating_mul(m.frequency)));
    }
    for child in level.children.values() {
        let (l, h) = bounds(child);
        lo = lo.min(l);
        hi = hi.max(h);
    }
    (lo, hi)
}
