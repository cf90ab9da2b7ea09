//! Persistence: checkpoints on disk, restored at start.
//!
//! Layout (cc-metric-store's): `<directory>/<cluster>/<host>/` holds
//! snapshots named by their window start (`<from>.bin` or `<from>.json`) and,
//! in `wal` format, `current.wal` with every sample written since the last
//! snapshot of that host.
//!
//! How data reaches the disk:
//!
//! - In `wal` format every accepted sample is appended to its host's WAL
//!   before the write request is answered (it is in the operating system's
//!   page cache then, so it survives the process being killed), and WAL
//!   files are fsynced every `wal-fsync-interval` (so it survives a power
//!   loss once that interval has passed).
//! - Every `checkpoint-interval`, and at shutdown, each host whose data
//!   changed gets a snapshot of what changed: every slot written since its
//!   last snapshot, whatever its timestamp (so late and old samples are kept
//!   too). The snapshot is written to a temporary file, fsynced and renamed;
//!   only then is the host's WAL removed. WAL appends of a host wait while
//!   its own snapshot is taken, so no sample falls between the two.
//! - Snapshot names only grow per host, so loading them in name order
//!   applies them in the order they were written.
//!
//! See [`restore`] for the start-up side.

pub mod checkpoint;
pub mod cleanup;
pub mod restore;
pub mod snapshot;
pub mod wal;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

pub use snapshot::Format;

/// Name of the write-ahead log in a host directory.
pub const WAL_FILE: &str = "current.wal";

/// Prefix of a WAL set aside while a snapshot of its host is written
/// (`current.wal.<n>`): ingest goes on into a new `current.wal` meanwhile,
/// and the file is removed once the snapshot is on disk. Left behind by a
/// crash or a failed snapshot, it is replayed at start before
/// `current.wal`, oldest `<n>` first.
pub const SET_ASIDE_WAL_PREFIX: &str = "current.wal.";

/// File created and removed at start to check that the directory is
/// writable (ignored by restore should it be left behind).
pub const WRITE_PROBE: &str = ".cc-store-write-test";

/// Extension appended to files set aside at start-up because they could
/// not be read.
pub const QUARANTINE_SUFFIX: &str = ".quarantined";

/// With more WAL files than this to sync, the whole file system is synced
/// at once.
const SYNCFS_FROM: usize = 16;

/// WAL bytes buffered per host before they are written out mid-batch.
const WAL_BUFFER: usize = 256 * 1024;

/// Host files by `(cluster, host)`.
type HostMap = HashMap<(Box<str>, Box<str>), Arc<HostFiles>>;

/// The checkpoint directory and the per-host files in it.
#[derive(Debug)]
pub struct Persistence {
    root: PathBuf,
    format: Format,
    wal: bool,
    max_wal_size: u64,
    hosts: RwLock<HostMap>,
    /// Set when some host's WAL outgrew `max-wal-size` and wants an early
    /// snapshot.
    oversized: AtomicBool,
    wal_bytes: AtomicU64,
    wal_errors: AtomicU64,
    /// Bytes in all WAL files now: the sum of every host's `wal_len`,
    /// changed together with it.
    wal_on_disk: AtomicU64,
    /// Outcomes of checkpoint rounds (`/metrics`).
    checkpoints: CheckpointStats,
}

/// What checkpoint rounds did since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Rounds finished.
    pub rounds: AtomicU64,
    /// Host snapshots that failed.
    pub failures: AtomicU64,
    /// Unix seconds at the end of the last round in which no host failed
    /// (0: none yet).
    pub last_success: AtomicI64,
    /// Duration of the last round, in microseconds.
    pub last_duration_us: AtomicU64,
}

/// The files of one host.
#[derive(Debug)]
pub struct HostFiles {
    cluster: Box<str>,
    host: Box<str>,
    dir: PathBuf,
    state: Arc<Mutex<HostState>>,
    /// Held while a snapshot of this host is taken and written, so that two
    /// rounds (periodic, WAL size, memory cap, shutdown) never overlap.
    snapshotting: Mutex<()>,
}

/// A host's lock held by its owner (see [`HostFiles::lock_owned`]).
pub type OwnedHostGuard = parking_lot::ArcMutexGuard<parking_lot::RawMutex, HostState>;

/// Mutable per-host persistence state, behind the host's lock.
#[derive(Debug, Default)]
pub struct HostState {
    /// The open WAL, shared with the fsync task.
    wal: Option<Arc<File>>,
    /// Bytes in the WAL file (header included).
    wal_len: u64,
    /// Encoded records not yet written to the file.
    buf: Vec<u8>,
    /// Whether the file has data written since its last fsync.
    unsynced: bool,
    /// Name (window start) of the newest snapshot of this host.
    pub(crate) last_snapshot: i64,
    /// A failed WAL write left bytes that could not be cut off: no more
    /// appends (writes answer 500) until a snapshot replaces the WAL.
    wal_broken: bool,
    /// Restore could not read this host's files: no snapshot may replace
    /// them (its WAL keeps growing) until the next start.
    pub(crate) blocked: bool,
    /// WALs set aside for snapshots and not yet removed, oldest first, with
    /// their sizes.
    set_aside: Vec<(PathBuf, u64)>,
}

impl Persistence {
    /// Persistence under `root` writing snapshots in `format`, with a WAL if
    /// `wal` is set. Creates `root` (mode 0755) if needed.
    ///
    /// # Errors
    ///
    /// The directory cannot be created.
    pub fn new(root: &Path, format: Format, wal: bool, max_wal_size: u64) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let probe = root.join(format!("{WRITE_PROBE}-{}", std::process::id()));
        File::create(&probe)?;
        fs::remove_file(&probe)?;
        Ok(Persistence {
            root: root.to_path_buf(),
            format,
            wal,
            max_wal_size,
            hosts: RwLock::new(HashMap::new()),
            oversized: AtomicBool::new(false),
            wal_bytes: AtomicU64::new(0),
            wal_errors: AtomicU64::new(0),
            wal_on_disk: AtomicU64::new(0),
            checkpoints: CheckpointStats::default(),
        })
    }

    /// The checkpoint directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The snapshot format.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether samples go to a WAL.
    #[must_use]
    pub fn has_wal(&self) -> bool {
        self.wal
    }

    /// WAL bytes written since start.
    #[must_use]
    pub fn wal_bytes(&self) -> u64 {
        self.wal_bytes.load(Ordering::Relaxed)
    }

    /// Failed WAL writes and fsyncs since start.
    #[must_use]
    pub fn wal_errors(&self) -> u64 {
        self.wal_errors.load(Ordering::Relaxed)
    }

    /// Bytes in the WAL files of all hosts now (headers included).
    #[must_use]
    pub fn wal_on_disk(&self) -> u64 {
        self.wal_on_disk.load(Ordering::Relaxed)
    }

    /// What checkpoint rounds did since start.
    #[must_use]
    pub fn checkpoint_stats(&self) -> &CheckpointStats {
        &self.checkpoints
    }

    /// Records a finished checkpoint round: `failed` hosts could not be
    /// saved, it ended at `now` (Unix seconds) and took `took`.
    pub fn record_checkpoint(&self, failed: usize, now: i64, took: Duration) {
        let c = &self.checkpoints;
        c.rounds.fetch_add(1, Ordering::Relaxed);
        c.failures
            .fetch_add(u64::try_from(failed).unwrap_or(u64::MAX), Ordering::Relaxed);
        c.last_duration_us.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if failed == 0 {
            c.last_success.store(now, Ordering::Relaxed);
        }
    }

    /// Sets a host's WAL length, keeping [`Self::wal_on_disk`] in step.
    pub(crate) fn set_wal_len(&self, state: &mut HostState, len: u64) {
        if len >= state.wal_len {
            self.wal_on_disk
                .fetch_add(len - state.wal_len, Ordering::Relaxed);
        } else {
            self.wal_on_disk
                .fetch_sub(state.wal_len - len, Ordering::Relaxed);
        }
        state.wal_len = len;
    }

    /// Sets the WAL of `files` aside for a snapshot (see
    /// [`SET_ASIDE_WAL_PREFIX`]): it is closed and renamed, and the next
    /// record opens a new one. Records still buffered stay buffered for the
    /// new file. Returns how many set-aside WALs the host has now; once the
    /// snapshot is written, [`Self::remove_set_aside`] removes them.
    ///
    /// # Errors
    ///
    /// The rename failed; the WAL stays in place.
    pub fn set_wal_aside(&self, files: &HostFiles, state: &mut HostState) -> io::Result<usize> {
        let path = files.dir.join(WAL_FILE);
        if state.wal.is_some() || state.wal_len > 0 || path.exists() {
            let previous = state
                .set_aside
                .last()
                .and_then(|(p, _)| set_aside_number(p))
                .unwrap_or(0);
            let number = cc_common::time::now_ms().max(previous + 1);
            let to = files.dir.join(format!("{SET_ASIDE_WAL_PREFIX}{number}"));
            match fs::rename(&path, &to) {
                Ok(()) => state.set_aside.push((to, state.wal_len)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Its bytes stay counted in `wal_on_disk` until it is removed.
            state.wal = None;
            state.wal_len = 0;
            state.unsynced = false;
            state.wal_broken = false;
        }
        Ok(state.set_aside.len())
    }

    /// Removes the first `count` set-aside WALs of a host (their samples
    /// are in a snapshot now).
    ///
    /// # Errors
    ///
    /// A file exists and cannot be removed; the rest are still tried, and
    /// the failed one is tried again next time.
    pub fn remove_set_aside(&self, state: &mut HostState, count: usize) -> io::Result<()> {
        let mut first_error = None;
        let mut kept = Vec::new();
        let count = count.min(state.set_aside.len());
        for (path, len) in state.set_aside.drain(..count) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    first_error.get_or_insert(e);
                    kept.push((path, len));
                }
                _ => {
                    let _ =
                        self.wal_on_disk
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                Some(n.saturating_sub(len))
                            });
                }
            }
        }
        state.set_aside.splice(..0, kept);
        first_error.map_or(Ok(()), Err)
    }

    /// Registers WALs set aside by an earlier run (found at start, oldest
    /// first), so that the host's next snapshot removes them.
    pub(crate) fn adopt_set_aside(&self, state: &mut HostState, found: Vec<(PathBuf, u64)>) {
        for (_, len) in &found {
            self.wal_on_disk.fetch_add(*len, Ordering::Relaxed);
        }
        state.set_aside = found;
    }

    /// The files of `cluster`/`host`, registered on first use.
    pub fn host(&self, cluster: &str, host: &str) -> Arc<HostFiles> {
        if let Some(files) = self
            .hosts
            .read()
            .get(&(Box::from(cluster), Box::from(host)))
        {
            return Arc::clone(files);
        }
        let mut hosts = self.hosts.write();
        Arc::clone(
            hosts
                .entry((Box::from(cluster), Box::from(host)))
                .or_insert_with(|| {
                    Arc::new(HostFiles {
                        cluster: Box::from(cluster),
                        host: Box::from(host),
                        dir: self.root.join(cluster).join(host),
                        state: Arc::new(Mutex::new(HostState::default())),
                        snapshotting: Mutex::new(()),
                    })
                }),
        )
    }

    /// Every registered host.
    #[must_use]
    pub fn hosts(&self) -> Vec<Arc<HostFiles>> {
        self.hosts.read().values().cloned().collect()
    }

    /// Writes the buffered WAL records of `files` to its file.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or written; the records stay buffered.
    pub fn flush_wal(&self, files: &HostFiles, state: &mut HostState) -> io::Result<()> {
        if state.buf.is_empty() {
            return Ok(());
        }
        let result = self.append_wal(files, state);
        if result.is_err() {
            self.wal_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn append_wal(&self, files: &HostFiles, state: &mut HostState) -> io::Result<()> {
        if state.wal_broken {
            return Err(io::Error::other(
                "an earlier WAL write failed and could not be undone; waiting for a snapshot",
            ));
        }
        let file = match &state.wal {
            Some(file) => Arc::clone(file),
            None => {
                let file = open_wal(&self.root, &files.dir)?;
                let len = file.metadata()?.len();
                let file = Arc::new(file);
                state.wal = Some(Arc::clone(&file));
                self.set_wal_len(state, len);
                file
            }
        };
        if let Err(e) = (&*file).write_all(&state.buf) {
            // Part of the buffer may be in the file: cut it off, so that the
            // records written after it (once there is room again) are not
            // behind a torn record. The buffer stays for the next try.
            if file.set_len(state.wal_len).is_err() {
                state.wal_broken = true;
                state.wal = None;
            }
            return Err(e);
        }
        let n = state.buf.len() as u64;
        self.set_wal_len(state, state.wal_len + n);
        self.wal_bytes.fetch_add(n, Ordering::Relaxed);
        state.buf.clear();
        state.unsynced = true;
        if self.max_wal_size > 0 && state.wal_len >= self.max_wal_size {
            self.oversized.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether a WAL outgrew `max-wal-size` since the last call.
    pub fn take_oversized(&self) -> bool {
        self.oversized.swap(false, Ordering::Relaxed)
    }

    /// Hosts whose WAL is at or over `max-wal-size`.
    #[must_use]
    pub fn oversized_hosts(&self) -> Vec<Arc<HostFiles>> {
        if self.max_wal_size == 0 {
            return Vec::new();
        }
        self.hosts()
            .into_iter()
            .filter(|h| h.state.lock().wal_len >= self.max_wal_size)
            .collect()
    }

    /// Fsyncs every WAL written since the last call. Returns how many files
    /// were synced.
    ///
    /// # Errors
    ///
    /// The first failed fsync (the others are still attempted).
    pub fn sync_wals(&self) -> io::Result<usize> {
        let mut dirty = Vec::new();
        for files in self.hosts() {
            let mut state = files.state.lock();
            if !state.unsynced {
                continue;
            }
            state.unsynced = false;
            if let Some(file) = state.wal.clone() {
                dirty.push((Arc::clone(&files), file));
            }
        }
        if dirty.len() > SYNCFS_FROM {
            // One journal commit for the whole file system instead of one
            // per file: far cheaper with hundreds of busy hosts.
            if let Some((_, file)) = dirty.first() {
                match nix::unistd::syncfs(file.as_ref()) {
                    Ok(()) => return Ok(dirty.len()),
                    Err(e) => {
                        for (files, _) in &dirty {
                            files.state.lock().unsynced = true;
                        }
                        self.wal_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(io::Error::from(e));
                    }
                }
            }
        }
        let mut first_error = None;
        let mut synced = 0;
        for (files, file) in dirty {
            {
                match file.sync_data() {
                    Ok(()) => synced += 1,
                    Err(e) => {
                        files.state.lock().unsynced = true;
                        self.wal_errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(synced),
        }
    }
}

impl HostFiles {
    /// Cluster name.
    #[must_use]
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Host name.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Locks the host's state (WAL appends and snapshots of this host).
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, HostState> {
        self.state.lock()
    }

    /// Taken for the whole of a snapshot of this host (see
    /// [`HostFiles`]); ingest never takes it.
    pub fn snapshot_guard(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.snapshotting.lock()
    }

    /// [`Self::lock`], as a guard that owns its share of the lock (so that
    /// ingest can keep it across the consecutive lines of one host).
    pub fn lock_owned(&self) -> OwnedHostGuard {
        Mutex::lock_arc(&self.state)
    }
}

impl HostState {
    /// Adds one sample to the WAL buffer.
    ///
    /// # Errors
    ///
    /// A name the WAL cannot hold.
    pub fn record(
        &mut self,
        ts: i64,
        metric: &str,
        selector: &[&str],
        value: f64,
    ) -> Result<(), wal::EncodeError> {
        wal::encode_record(&mut self.buf, ts, metric, selector, value)
    }

    /// The current end of the WAL buffer, for [`Self::rewind`].
    #[must_use]
    pub fn mark(&self) -> usize {
        self.buf.len()
    }

    /// Drops records added after `mark` (a sample that was not stored).
    pub fn rewind(&mut self, mark: usize) {
        self.buf.truncate(mark);
    }

    /// Whether enough is buffered to write it out now.
    #[must_use]
    pub fn buffer_full(&self) -> bool {
        self.buf.len() >= WAL_BUFFER
    }
}

/// The `<n>` of a set-aside WAL's name.
#[must_use]
pub fn set_aside_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(SET_ASIDE_WAL_PREFIX)?
        .parse()
        .ok()
}

/// Opens (creating it and its directories, which are then fsynced so that
/// the new entries survive a power loss) the WAL in `dir`, with a complete
/// header.
fn open_wal(root: &Path, dir: &Path) -> io::Result<File> {
    let created_dirs = !dir.exists();
    fs::create_dir_all(dir)?;
    let path = dir.join(WAL_FILE);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let len = file.metadata()?.len();
    if len < wal::HEADER_LEN {
        // New, or a header cut short by a crash.
        file.set_len(0)?;
        let mut header = Vec::new();
        wal::encode_header(&mut header);
        (&file).write_all(&header)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        if created_dirs {
            // The host directory, and possibly the cluster directory.
            if let Some(cluster) = dir.parent() {
                File::open(cluster)?.sync_all()?;
                if cluster != root {
                    File::open(root)?.sync_all()?;
                }
            }
        }
    }
    Ok(file)
}

/// Writes `bytes` to `path` crash-safely: a temporary file beside it,
/// fsynced, renamed over `path`, and the directory fsynced.
///
/// # Errors
///
/// Any step failing; the temporary file is removed then.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = io::BufWriter::with_capacity(256 * 1024, &file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is safe as a directory name below the checkpoint root.
#[must_use]
pub fn safe_dir_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

#[cfg(test)]
mod tests;
