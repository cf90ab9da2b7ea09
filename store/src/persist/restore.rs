//! Loading checkpoints at start-up.
//!
//! For every `<cluster>/<host>` directory, in parallel (`num-workers` hosts
//! at a time), streaming each file:
//!
//! 1. Snapshots (`<from>.json`, `<from>.bin`, mixed) are applied in name
//!    order, skipping those whose window ended before the cutoff (now minus
//!    `retention-in-memory`). A later snapshot supersedes what earlier ones
//!    held from its first value on. Metrics that are not configured are
//!    dropped; a metric saved at another frequency than the configured one
//!    is converted to it (each value goes to the slot holding the middle of
//!    its old slot).
//! 2. WALs set aside for a snapshot that did not finish
//!    (`current.wal.<n>`, oldest first), then `current.wal`, are replayed
//!    through the normal write path. A torn tail (what a crash leaves) ends
//!    the replay and is cut off the file.
//!
//! Nothing here stops the store from starting: a snapshot that cannot be
//! read, a WAL with a wrong header, or a snapshot with a non-numeric name is
//! renamed to `<name>.quarantined` with a warning (and kept for inspection);
//! stray files where directories belong are logged and left alone; leftover
//! `*.tmp` files of interrupted snapshots are removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::snapshot::{self, Format, SnapLevel};
use super::wal::{OpenError, WalReader};
use super::{Persistence, QUARANTINE_SUFFIX, WAL_FILE, safe_dir_name, set_aside_number};
use crate::buffer::{Chain, Chunk};
use crate::registry::Registry;
use crate::store::MetricStore;
use crate::tree::Level;

/// Buffer size for reading checkpoint files.
const READ_BUFFER: usize = 256 * 1024;

/// JSON snapshots up to this size are read whole and parsed from memory
/// (bounding restore memory by `num-workers` times this); larger ones are
/// parsed as a stream.
const JSON_IN_MEMORY: u64 = 16 << 20;

/// Restore progress, readable while it runs.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Host directories found.
    pub hosts_total: AtomicUsize,
    /// Host directories finished.
    pub hosts_done: AtomicUsize,
    /// Bytes of checkpoint files read.
    pub bytes: AtomicU64,
    /// Checkpoint files read (snapshots and WAL files).
    pub files: AtomicU64,
    /// Set once the restore has finished.
    pub done: AtomicBool,
}

/// What a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// Host directories restored.
    pub hosts: usize,
    /// Snapshot files loaded.
    pub files: usize,
    /// Snapshot files skipped as older than the cutoff.
    pub skipped: usize,
    /// Values loaded from snapshots.
    pub values: usize,
    /// WAL records replayed.
    pub wal_records: usize,
    /// WAL files whose torn tail was cut off.
    pub torn_wals: usize,
    /// Files renamed to `*.quarantined`.
    pub quarantined: usize,
    /// Values of metrics that are not configured (dropped).
    pub unknown_values: usize,
    /// Metrics converted to the configured frequency.
    pub converted: usize,
    /// Bytes read.
    pub bytes: u64,
}

impl RestoreReport {
    fn add(&mut self, other: &RestoreReport) {
        self.hosts += other.hosts;
        self.files += other.files;
        self.skipped += other.skipped;
        self.values += other.values;
        self.wal_records += other.wal_records;
        self.torn_wals += other.torn_wals;
        self.quarantined += other.quarantined;
        self.unknown_values += other.unknown_values;
        self.converted += other.converted;
        self.bytes += other.bytes;
    }
}

/// Loads every host under the checkpoint root into `store`.
///
/// # Errors
///
/// Only a root directory that cannot be listed; problems with single files
/// are logged and worked around.
pub fn restore(
    store: &MetricStore,
    persistence: &Persistence,
    cutoff: i64,
    workers: usize,
    progress: &RestoreProgress,
) -> io::Result<RestoreReport> {
    let hosts = host_dirs(persistence.root())?;
    progress.hosts_total.store(hosts.len(), Ordering::Relaxed);
    let next = AtomicUsize::new(0);
    let total = Mutex::new(RestoreReport::default());
    let work = || {
        while let Some((cluster, host, dir)) = hosts.get(next.fetch_add(1, Ordering::Relaxed)) {
            let report = restore_host(store, persistence, cluster, host, dir, cutoff, progress);
            total.lock().add(&report);
            progress.hosts_done.fetch_add(1, Ordering::Relaxed);
        }
    };
    let workers = workers.clamp(1, hosts.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    if cutoff > i64::MIN {
        let freed = store.root().free_saved(cutoff);
        store.count_freed(crate::store::FreeReason::Retention, freed);
    }
    progress.done.store(true, Ordering::Release);
    Ok(total.into_inner())
}

/// The `<cluster>/<host>` directories under `root`.
fn host_dirs(root: &Path) -> io::Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for cluster in entries {
        let cluster = cluster?;
        let Some(cluster_name) = dir_name(&cluster.path(), root) else {
            continue;
        };
        let hosts = match fs::read_dir(cluster.path()) {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::warn!(dir = %cluster.path().display(), error = %e, "cannot list a cluster directory; skipping it");
                continue;
            }
        };
        for host in hosts {
            let Ok(host) = host else { continue };
            if let Some(host_name) = dir_name(&host.path(), &cluster.path()) {
                out.push((cluster_name.clone(), host_name, host.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The name of `path` if it is a directory usable as a cluster or host.
fn dir_name(path: &Path, parent: &Path) -> Option<String> {
    if path
        .file_name()?
        .to_str()
        .is_some_and(|n| n.starts_with(super::WRITE_PROBE))
        && !path.is_dir()
    {
        return None;
    }
    let name = path.file_name()?.to_str().map(str::to_owned);
    let is_dir = path.is_dir();
    match name {
        Some(name) if is_dir && safe_dir_name(&name) => Some(name),
        _ if !is_dir => {
            tracing::warn!(
                file = %path.display(),
                "ignoring a file in {} where only directories belong",
                parent.display()
            );
            None
        }
        _ => {
            tracing::warn!(dir = %path.display(), "ignoring a directory whose name is not valid UTF-8");
            None
        }
    }
}

fn restore_host(
    store: &MetricStore,
    persistence: &Persistence,
    cluster: &str,
    host: &str,
    dir: &Path,
    cutoff: i64,
    progress: &RestoreProgress,
) -> RestoreReport {
    let mut report = RestoreReport {
        hosts: 1,
        ..RestoreReport::default()
    };
    let mut snapshots: Vec<(i64, Format, PathBuf)> = Vec::new();
    let mut wal = None;
    let mut set_aside: Vec<(u64, PathBuf)> = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if path.is_dir() {
                    continue;
                }
                if name == WAL_FILE {
                    wal = Some(path);
                } else if let Some(number) = set_aside_number(&path) {
                    set_aside.push((number, path));
                } else if let Some((ts, format)) = snapshot::parse_file_name(name) {
                    snapshots.push((ts, format, path));
                } else if snapshot::has_snapshot_extension(name) {
                    quarantine(&path, "its name is not a number", &mut report);
                } else if name.ends_with(".tmp") {
                    tracing::info!(file = %path.display(), "removing an unfinished snapshot");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot list a host directory; its data is not loaded, and its files are left alone until the next start");
            persistence.host(cluster, host).lock().blocked = true;
            return report;
        }
    }
    snapshots.sort_by_key(|(ts, format, _)| (*ts, *format == Format::Bin));
    let level = store.root().find_or_create(&[cluster, host]);
    let registry = store.registry();
    let mut last = 0;
    let mut blocked = false;
    for (ts, format, path) in &snapshots {
        last = last.max(*ts);
        match load_file(&level, registry, *format, path, cutoff, &mut report) {
            Ok(bytes) => {
                progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                progress.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(snapshot::SnapshotError::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => {
                // The disk, not the file: keep it, and keep everything of
                // this host as it is until the next start.
                tracing::error!(file = %path.display(), error = %e, "cannot read a checkpoint file; this host's files are left alone until the next start");
                blocked = true;
            }
            Err(e) => {
                let why = format!("it cannot be read: {}", cc_common::error_chain(&e));
                quarantine(path, &why, &mut report);
            }
        }
    }
    reopen_heads(&level);
    // Replays one WAL, counting its bytes as restore progress; false when
    // it could not be read.
    let replay = |path: &Path, report: &mut RestoreReport| {
        let bytes_before = report.bytes;
        let ok = replay_wal(&level, registry, path, cutoff, report);
        progress
            .bytes
            .fetch_add(report.bytes - bytes_before, Ordering::Relaxed);
        progress.files.fetch_add(1, Ordering::Relaxed);
        ok
    };
    set_aside.sort_unstable_by_key(|(number, _)| *number);
    let mut set_aside_found = Vec::new();
    for (_, path) in set_aside {
        blocked |= !replay(&path, &mut report);
        if let Ok(meta) = fs::metadata(&path) {
            set_aside_found.push((path, meta.len()));
        }
    }
    let mut wal_len = 0;
    if let Some(path) = wal {
        blocked |= !replay(&path, &mut report);
        // What is left of it (cut at a torn tail, or gone) stays until the
        // host's next snapshot.
        wal_len = fs::metadata(&path).map_or(0, |m| m.len());
    }
    let files = persistence.host(cluster, host);
    let mut state = files.lock();
    state.last_snapshot = last;
    state.blocked = blocked;
    persistence.set_wal_len(&mut state, wal_len);
    persistence.adopt_set_aside(&mut state, set_aside_found);
    report
}

/// Loads one snapshot; returns the bytes read.
fn load_file(
    level: &Arc<Level>,
    registry: &Registry,
    format: Format,
    path: &Path,
    cutoff: i64,
    report: &mut RestoreReport,
) -> Result<u64, snapshot::SnapshotError> {
    let len = fs::metadata(path)?.len();
    let snap = match format {
        Format::Bin => {
            // The window first: a file that ended before the cutoff is not
            // read any further.
            let mut reader = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
            let (from, to) = snapshot::read_bin_window(&mut reader)?;
            if to != 0 && to < cutoff {
                report.skipped += 1;
                return Ok(0);
            }
            snapshot::read_bin_body(reader, from, to)?
        }
        // serde_json parses a slice several times faster than a reader.
        Format::Json if len <= JSON_IN_MEMORY => snapshot::read_json_slice(&fs::read(path)?)?,
        Format::Json => {
            snapshot::read_json(BufReader::with_capacity(READ_BUFFER, File::open(path)?))?
        }
    };
    report.bytes += len;
    if snap.to != 0 && snap.to < cutoff {
        report.skipped += 1;
        return Ok(len);
    }
    report.files += 1;
    load_level(level, snap.root, registry, report);
    Ok(len)
}

/// Adds a snapshot level's metrics to `level` (and its children below).
pub fn load_level(
    level: &Arc<Level>,
    snap: SnapLevel,
    registry: &Registry,
    report: &mut RestoreReport,
) {
    {
        let mut data = level.write();
        for (name, metric) in snap.metrics {
            let Some((id, info)) = registry.lookup_or_learn(&name, Some(metric.frequency)) else {
                report.unknown_values += metric.data.len();
                continue;
            };
            if metric.data.is_empty() {
                continue;
            }
            if !plausible(
                metric.start,
                metric.frequency,
                metric.data.len(),
                info.frequency(),
            ) {
                tracing::warn!(
                    metric = name,
                    start = metric.start,
                    frequency = metric.frequency,
                    values = metric.data.len(),
                    "skipping a metric whose start or frequency no store could have written"
                );
                report.unknown_values += metric.data.len();
                continue;
            }
            report.values += metric.data.len();
            let chunk = if metric.frequency == info.frequency() {
                Chunk::loaded(metric.start, metric.frequency, metric.data)
            } else {
                report.converted += 1;
                convert(
                    metric.start,
                    metric.frequency,
                    &metric.data,
                    info.frequency(),
                )
            };
            if data.chains.len() <= id {
                data.chains.resize_with(id + 1, || None);
            }
            if let Some(slot) = data.chains.get_mut(id) {
                match slot {
                    Some(chain) => chain.merge_loaded(chunk),
                    None => *slot = Chain::from_chunks(vec![chunk]),
                }
            }
        }
    }
    for (name, child) in snap.children {
        load_level(&level.child_or_create(&name), child, registry, report);
    }
}

/// Lets the newest chunk of every chain below `level` take more samples.
fn reopen_heads(level: &Arc<Level>) {
    let children: Vec<Arc<Level>> = {
        let mut data = level.write();
        for chain in data.chains.iter_mut().flatten() {
            chain.reopen_head();
        }
        data.children.values().cloned().collect()
    };
    for child in &children {
        reopen_heads(child);
    }
}

/// Whether a saved metric can be loaded without overflow or an absurd
/// allocation: a start within the timestamps ingest accepts, a frequency
/// from 1 s to a year, and no more than a year of 1 s slots once converted
/// to the configured frequency.
fn plausible(start: i64, frequency: i64, len: usize, configured: i64) -> bool {
    const YEAR: i64 = 366 * 24 * 3600;
    let limit = crate::ingest::MAX_TIMESTAMP;
    let Ok(len) = i64::try_from(len) else {
        return false;
    };
    (-YEAR..=limit).contains(&start)
        && (1..=YEAR).contains(&frequency)
        && configured > 0
        && len
            .checked_mul(frequency)
            .is_some_and(|span| span / configured <= YEAR)
}

/// Values saved at `old` seconds per slot, moved to slots of `new` seconds:
/// each goes to the new slot holding the middle of its old slot (the last
/// one wins when several land in one slot).
#[must_use]
pub fn convert(start: i64, old: i64, values: &[f64], new: i64) -> Chunk {
    let n = i64::try_from(values.len()).unwrap_or(i64::MAX);
    let len = usize::try_from((n.saturating_mul(old) + new - 1) / new).unwrap_or(0);
    let mut data = vec![f64::NAN; len];
    for (i, v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let middle = i64::try_from(i).unwrap_or(i64::MAX) * old + old / 2;
        if let Some(slot) = usize::try_from(middle / new)
            .ok()
            .and_then(|k| data.get_mut(k))
        {
            *slot = *v;
        }
    }
    Chunk::loaded(start, new, data)
}

/// Replays a WAL; false if it could not be read for reasons of the disk
/// (then it must stay as it is).
fn replay_wal(
    level: &Arc<Level>,
    registry: &Registry,
    path: &Path,
    cutoff: i64,
    report: &mut RestoreReport,
) -> bool {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot open a WAL; its samples are not restored, and it is left alone until the next start");
            return false;
        }
    };
    let mut reader = match WalReader::new(BufReader::with_capacity(READ_BUFFER, file)) {
        Ok(r) => r,
        Err(OpenError::Empty) => {
            let _ = fs::remove_file(path);
            return true;
        }
        Err(OpenError::Io(e)) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read a WAL; it is left alone until the next start");
            return false;
        }
        Err(e) => {
            quarantine(path, &e.to_string(), report);
            return true;
        }
    };
    let mut records = 0;
    while let Some(record) = reader.next_record() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "reading a WAL failed after {records} records; it is left alone until the next start");
                return false;
            }
        };
        records += 1;
        if record.ts < cutoff {
            continue;
        }
        let Some((id, info)) = registry.lookup_or_learn(&record.metric, None) else {
            report.unknown_values += 1;
            continue;
        };
        let target = level.find_or_create(&record.selector);
        registry.observe(id, info, &target, record.ts);
        // A sample older than what the snapshots hold is already in them.
        let _ = target.write_sample(id, info.frequency(), record.ts, record.value);
    }
    report.wal_records += records;
    report.bytes += reader.valid_len();
    if let Some(problem) = reader.tail_problem() {
        report.torn_wals += 1;
        let keep = reader.valid_len();
        tracing::warn!(
            file = %path.display(),
            records,
            kept_bytes = keep,
            "WAL ends in a damaged record ({problem}), as a crash leaves it; cutting it off there"
        );
        let cut = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(keep).and_then(|()| f.sync_all()));
        if let Err(e) = cut {
            tracing::error!(file = %path.display(), error = %e, "cannot cut the WAL's damaged tail; it is left alone until the next start");
            return false;
        }
    }
    true
}

/// Renames a file that cannot be used to `<name>.quarantined`.
fn quarantine(path: &Path, why: &str, report: &mut RestoreReport) {
    let mut target = path.as_os_str().to_owned();
    target.push(QUARANTINE_SUFFIX);
    let target = PathBuf::from(target);
    match fs::rename(path, &target) {
        Ok(()) => {
            report.quarantined += 1;
            tracing::warn!(
                file = %path.display(),
                moved_to = %target.display(),
                "set aside a checkpoint file: {why}"
            );
        }
        Err(e) => tracing::warn!(
            file = %path.display(),
            error = %e,
            "ignoring a checkpoint file ({why}); it could not be renamed"
        ),
    }
}
