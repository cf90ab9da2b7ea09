//! [`Queue`]: the per-upstream durable queues on one sled database.
//!
//! The formats, invariants and settings are documented on the [parent module](super).
//! Concurrency: appends are serialised by one append lock (id generation and the
//! per-tree batches happen under it, so key order is insertion order in every tree);
//! every mutation of a tree and its counters happens under that upstream's lane lock
//! (lock order: dead-letter maintenance lock, append lock, then lane locks in name
//! order). Peeks take no lock except to move a corrupt record aside.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use parking_lot::{Mutex, MutexGuard};
use sled::Batch;

use super::record::Record;
use super::{
    DlqStats, EngineError, OrphanQueue, QueueConfig, QueueError, QueueStats, RemovedStats,
};

mod accounting;
mod dead_letter;
mod recovery;
#[cfg(test)]
mod test_hooks;

use accounting::{EngineErrors, Poison, Sizes, sizes_of};

use recovery::{
    META_CLEAN_SHUTDOWN, OLDEST_SCAN_LIMIT, find_orphans, init_meta, scan_dlq, scan_queue,
};

/// Dead-letter reason for records that fail to decode.
pub const REASON_CORRUPT: &str = "corrupt";

/// Checks an upstream name against `[a-z0-9_-]{1,48}` (it becomes part of tree names).
///
/// # Errors
///
/// [`QueueError::InvalidUpstreamName`].
pub fn validate_upstream_name(name: &str) -> Result<(), QueueError> {
    let ok = (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidUpstreamName {
            name: name.to_owned(),
        })
    }
}

/// The durable queues of all configured upstreams.
pub struct Queue {
    db: sled::Db,
    meta: sled::Tree,
    /// `<data_dir>/db`, for messages.
    path: PathBuf,
    cfg: QueueConfig,
    /// One lane per configured upstream; a BTreeMap so multi-tree writes go in a fixed order.
    lanes: BTreeMap<String, Lane>,
    /// Serialises appends: ids are generated and inserted in one critical section.
    append_lock: Mutex<()>,
    /// Serialises dead-letter replays and purges (see [`Queue::dlq_replay`]).
    dlq_maintenance: Mutex<()>,
    poison: Poison,
    errors: EngineErrors,
    instance_id: String,
    created_ms: u64,
    previous_clean_shutdown: Option<bool>,
    orphans: Vec<OrphanQueue>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("upstreams", &self.lanes.keys().collect::<Vec<_>>())
            .field("instance_id", &self.instance_id)
            .field("poisoned", &self.poison.reason())
            .finish_non_exhaustive()
    }
}

/// One upstream: its queue tree, its dead-letter tree and their counters.
struct Lane {
    q: sled::Tree,
    dlq: sled::Tree,
    /// Counters; the lock also serialises every mutation of `q` and `dlq`, which keeps
    /// the counters equal to the trees' contents.
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    stats: QueueStats,
    dlq: DlqStats,
}

/// Whether sled refused to open because another process holds the database's lock:
/// sled 0.34.7 (pinned) reports that as an `Io` error whose text starts with "could not
/// acquire lock" (`Config::open_file`); it has no error kind of its own.
fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn id_of(k: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes)
}

/// First key strictly after `after` (`None` = from the start); `None` if nothing can follow.
fn start_key(after: Option<u64>) -> Option<[u8; 8]> {
    match after {
        None => Some(key(0)),
        Some(a) => a.checked_add(1).map(key),
    }
}

use cc_common::time::now_ms;

impl Queue {
    /// Opens (or creates) the database at `<data_dir>/db` with the settings of spec §7.4,
    /// one `q:`/`dlq:` tree pair per upstream.
    ///
    /// Scans every tree once to rebuild the counters, reports `q:` trees of upstreams no
    /// longer configured (warning; see [`Queue::orphans`]), checks the schema version and
    /// durably clears the clean-shutdown flag.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidUpstreamName`], [`QueueError::DuplicateUpstream`],
    /// [`QueueError::CreateDir`], [`QueueError::Locked`] (another process holds the
    /// database), [`QueueError::Open`], [`QueueError::NewerSchema`],
    /// [`QueueError::MetaCorrupt`].
    pub fn open(
        data_dir: &Path,
        upstreams: &[String],
        cfg: QueueConfig,
    ) -> Result<Queue, QueueError> {
        let mut names = BTreeSet::new();
        for name in upstreams {
            validate_upstream_name(name)?;
            if !names.insert(name.clone()) {
                return Err(QueueError::DuplicateUpstream { name: name.clone() });
            }
        }
        let path = data_dir.join("db");
        std::fs::create_dir_all(&path).map_err(|source| QueueError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let open_err = |e: sled::Error| QueueError::Open {
            path: path.clone(),
            source: EngineError::new(e),
        };
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cfg.cache_capacity)
            .flush_every_ms(cfg.flush_every_ms)
            .mode(sled::Mode::LowSpace)
            .use_compression(false)
            .open()
            .map_err(|e| {
                if is_locked(&e) {
                    QueueError::Locked { path: path.clone() }
                } else {
                    open_err(e)
                }
            })?;
        let meta = db.open_tree("meta").map_err(open_err)?;
        let info = init_meta(&db, &meta, &names, &path)?;

        let mut lanes = BTreeMap::new();
        for name in &names {
            let q = db.open_tree(format!("q:{name}")).map_err(open_err)?;
            let dlq = db.open_tree(format!("dlq:{name}")).map_err(open_err)?;
            let state = LaneState {
                stats: scan_queue(&q).map_err(open_err)?,
                dlq: scan_dlq(&dlq).map_err(open_err)?,
            };
            tracing::info!(
                upstream = %name,
                records = state.stats.records,
                lines = state.stats.lines,
                stored_bytes = state.stats.stored_bytes,
                oldest_ingest_ms = ?state.stats.oldest_ingest_ms,
                dead_letters = state.dlq.records,
                "queue recovered"
            );
            lanes.insert(
                name.clone(),
                Lane {
                    q,
                    dlq,
                    state: Mutex::new(state),
                },
            );
        }
        let orphans = find_orphans(&db, &names).map_err(open_err)?;
        for o in &orphans {
            tracing::warn!(
                upstream = %o.upstream,
                records = o.records,
                stored_bytes = o.stored_bytes,
                "queue of an upstream that is no longer configured is left alone \
                 (delete it with --purge-orphans)"
            );
        }
        if info.previous_clean_shutdown == Some(false) {
            tracing::info!(path = %path.display(), "queue was not shut down cleanly; recovered by sled");
        }
        Ok(Queue {
            db,
            meta,
            path,
            cfg,
            lanes,
            append_lock: Mutex::new(()),
            dlq_maintenance: Mutex::new(()),
            poison: Poison::default(),
            errors: EngineErrors::default(),
            instance_id: info.instance_id,
            created_ms: info.created_ms,
            previous_clean_shutdown: info.previous_clean_shutdown,
            orphans,
        })
    }

    /// Stores `records` in the queue of every upstream in `upstreams` and returns their
    /// ids (one per record, the same in every tree, increasing). Atomic per tree (one
    /// insert for one record, one batch for several), trees in name order; **not durable** until a flush (see
    /// [`super::Flusher::wait_durable`]). Duplicate names count once; no names or no
    /// records store nothing and return no ids.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`] (nothing is written), [`QueueError::Poisoned`],
    /// [`QueueError::Storage`] (poisons the queue).
    pub fn append(&self, upstreams: &[&str], records: &[Record]) -> Result<Vec<u64>, QueueError> {
        self.poison.check()?;
        let mut targets = BTreeMap::new();
        for name in upstreams {
            targets.insert(*name, self.lane(name)?);
        }
        if targets.is_empty() || records.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<(Vec<u8>, Sizes)> = records
            .iter()
            .map(|r| {
                let v = r.encode_with(self.cfg.compress_threshold, self.cfg.zstd_level);
                let s = sizes_of(&v);
                (v, s)
            })
            .collect();

        let _append = self.append_lock.lock();
        let mut ids = Vec::with_capacity(records.len());
        for _ in records {
            ids.push(self.engine("generate_id", self.db.generate_id())?);
        }
        for lane in targets.values() {
            let mut st = lane.state.lock();
            if let ([id], [(value, _)]) = (ids.as_slice(), encoded.as_slice()) {
                // One record: a plain insert, as atomic as a batch of one. sled seals
                // its log buffer and hands it to its I/O threads for every batch, but
                // single inserts share the buffer until the next flush: one write and
                // one thread hand-off less per request.
                self.engine("insert", lane.q.insert(key(*id), value.as_slice()))?;
            } else {
                let mut batch = Batch::default();
                for (id, (value, _)) in ids.iter().zip(&encoded) {
                    batch.insert(key(*id).as_slice(), value.as_slice());
                }
                self.engine("insert", lane.q.apply_batch(batch))?;
            }
            for (_, s) in &encoded {
                st.stats.add(*s);
            }
            if st.stats.oldest_ingest_ms.is_none() {
                st.stats.oldest_ingest_ms = self.head_ingest(lane)?;
            }
        }
        Ok(ids)
    }

    /// Up to `max_records` records from the head of `upstream`'s queue, oldest first,
    /// starting after id `after` (so a worker can keep several batches in flight).
    ///
    /// Stops before a record that would take the sum of payload (uncompressed) bytes past
    /// `max_bytes`, but always returns at least one record if any is queued. Records that
    /// fail to decode are moved to the dead-letter tree (reason `"corrupt"`), counted in
    /// [`DlqStats::corrupt_total`] and skipped; they never block the queue. Nothing is
    /// removed otherwise: the caller [acks](Queue::ack) what it delivered.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn peek_batch(
        &self,
        upstream: &str,
        max_records: usize,
        max_bytes: u64,
        after: Option<u64>,
    ) -> Result<Vec<(u64, Record)>, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let mut out = Vec::new();
        let Some(start) = start_key(after) else {
            return Ok(out);
        };
        if max_records == 0 {
            return Ok(out);
        }
        let mut bytes = 0u64;
        let mut corrupt = Vec::new();
        for item in lane.q.range(start..) {
            let (k, v) = self.engine("read", item)?;
            let decoded = match id_of(&k) {
                Some(id) => Record::decode(&v)
                    .map(|r| (id, r))
                    .map_err(|e| e.to_string()),
                None => Err(format!("key of {} bytes", k.len())),
            };
            match decoded {
                Ok((id, record)) => {
                    let raw = record.payload().len() as u64;
                    if !out.is_empty() && bytes.saturating_add(raw) > max_bytes {
                        break;
                    }
                    bytes = bytes.saturating_add(raw);
                    out.push((id, record));
                    if out.len() >= max_records {
                        break;
                    }
                }
                Err(why) => corrupt.push((k, v, why)),
            }
        }
        for (k, v, why) in corrupt {
            self.move_corrupt(upstream, lane, &k, &v, &why)?;
        }
        Ok(out)
    }

    /// Removes exactly the records `ids` from `upstream`'s queue (one atomic batch, no
    /// flush: a lost removal only causes a duplicate delivery). Ids that are not queued
    /// are ignored.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn ack(&self, upstream: &str, ids: &[u64]) -> Result<RemovedStats, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut st = lane.state.lock();
        let mut removed = RemovedStats::default();
        let mut batch = Batch::default();
        for id in ids {
            if let Some(v) = self.engine("read", lane.q.get(key(id)))? {
                removed.add(sizes_of(&v));
                batch.remove(key(id).as_slice());
            }
        }
        if removed.records > 0 {
            self.engine("remove", lane.q.apply_batch(batch))?;
            self.account_removal(lane, &mut st, &removed)?;
        }
        Ok(removed)
    }

    /// Evicts records from the head of `upstream`'s queue until at least `bytes_to_free`
    /// stored bytes are freed (`buffer.when_full = drop_oldest`). Same as
    /// [`Queue::drop_oldest_after`] with no protected window.
    ///
    /// # Errors
    ///
    /// As [`Queue::drop_oldest_after`].
    pub fn drop_oldest(
        &self,
        upstream: &str,
        bytes_to_free: u64,
    ) -> Result<RemovedStats, QueueError> {
        self.drop_oldest_after(upstream, bytes_to_free, None)
    }

    /// Evicts the oldest records *after* id `after` — the end of a worker's in-flight
    /// window, which is never evicted — until at least `bytes_to_free` stored bytes are
    /// freed or the queue is exhausted. Returns what was removed, for
    /// `ccrelay_dropped_*{reason="buffer_full"}`.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn drop_oldest_after(
        &self,
        upstream: &str,
        bytes_to_free: u64,
        after: Option<u64>,
    ) -> Result<RemovedStats, QueueError> {
        if bytes_to_free == 0 {
            self.poison.check()?;
            self.lane(upstream)?;
            return Ok(RemovedStats::default());
        }
        self.evict_from_head(upstream, after, |removed, _| {
            removed.stored_bytes >= bytes_to_free
        })
    }

    /// Evicts records after id `after` whose ingest time is before `cutoff_ms`
    /// (`buffer.max_age`), stopping at the first younger record (ids are in ingest order)
    /// or at a record whose header is unreadable (a peek dead-letters it).
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn drop_older_than(
        &self,
        upstream: &str,
        cutoff_ms: u64,
        after: Option<u64>,
    ) -> Result<RemovedStats, QueueError> {
        self.evict_from_head(upstream, after, |_, s| {
            s.ingest.is_none_or(|t| t >= cutoff_ms)
        })
    }

    /// Counters of `upstream`'s queue, from memory (O(1); readable while poisoned).
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`].
    pub fn len(&self, upstream: &str) -> Result<QueueStats, QueueError> {
        Ok(self.lane(upstream)?.state.lock().stats)
    }

    /// Counters of every upstream, in name order.
    #[must_use]
    pub fn stats(&self) -> Vec<(String, QueueStats)> {
        self.lanes
            .iter()
            .map(|(name, lane)| (name.clone(), lane.state.lock().stats))
            .collect()
    }

    /// The configured upstreams, in name order.
    pub fn upstreams(&self) -> impl Iterator<Item = &str> {
        self.lanes.keys().map(String::as_str)
    }

    /// Size of the database files (`ccrelay_sled_size_on_disk_bytes`, the
    /// `max_disk_bytes` check). An error here does not poison the queue.
    ///
    /// # Errors
    ///
    /// [`QueueError::Storage`].
    pub fn size_on_disk(&self) -> Result<u64, QueueError> {
        self.db.size_on_disk().map_err(|e| {
            self.errors.count("size_on_disk");
            QueueError::Storage {
                op: "size_on_disk",
                source: EngineError::new(e),
            }
        })
    }

    /// Writes out everything appended so far and fsyncs it (blocking; use the
    /// [`super::Flusher`] on async paths).
    ///
    /// # Errors
    ///
    /// [`QueueError::Poisoned`], [`QueueError::Storage`] (poisons the queue).
    pub fn flush(&self) -> Result<(), QueueError> {
        self.poison.check()?;
        self.engine("flush", self.db.flush()).map(|_| ())
    }

    /// Records a clean shutdown in `meta` and flushes; call last, after the workers
    /// stopped. The next open reports it in [`Queue::previous_shutdown_clean`].
    ///
    /// # Errors
    ///
    /// [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn mark_clean_shutdown(&self) -> Result<(), QueueError> {
        self.poison.check()?;
        self.engine("insert", self.meta.insert(META_CLEAN_SHUTDOWN, &[1u8]))?;
        self.flush()
    }

    /// `false` once an engine error poisoned the queue (`/healthz`, `/readyz`).
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        !self.poison.flag.load(Ordering::Acquire)
    }

    /// Text of the error that poisoned the queue, if any.
    #[must_use]
    pub fn poison_reason(&self) -> Option<String> {
        self.poison.reason()
    }

    /// Relay instance UUID, created with the database.
    #[must_use]
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// When the database was created (Unix ms).
    #[must_use]
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Whether the previous process marked a clean shutdown; `None` for a new database.
    #[must_use]
    pub fn previous_shutdown_clean(&self) -> Option<bool> {
        self.previous_clean_shutdown
    }

    /// Database directory (`<data_dir>/db`).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lane(&self, upstream: &str) -> Result<&Lane, QueueError> {
        self.lanes
            .get(upstream)
            .ok_or_else(|| QueueError::UnknownUpstream {
                name: upstream.to_owned(),
            })
    }

    /// Maps an engine result; an error poisons the queue.
    fn engine<T>(&self, op: &'static str, r: sled::Result<T>) -> Result<T, QueueError> {
        r.map_err(|e| {
            self.errors.count(op);
            self.poison.set(format!("{op}: {e}"));
            QueueError::Storage {
                op,
                source: EngineError::new(e),
            }
        })
    }

    /// Ingest time of the first record (in key order) with a readable header.
    fn head_ingest(&self, lane: &Lane) -> Result<Option<u64>, QueueError> {
        for item in lane.q.iter().take(OLDEST_SCAN_LIMIT) {
            let (_, v) = self.engine("read", item)?;
            if let Some(t) = sizes_of(&v).ingest {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn account_removal(
        &self,
        lane: &Lane,
        st: &mut MutexGuard<'_, LaneState>,
        removed: &RemovedStats,
    ) -> Result<(), QueueError> {
        st.stats.remove(removed);
        st.stats.oldest_ingest_ms = if st.stats.records == 0 {
            None
        } else {
            self.head_ingest(lane)?
        };
        Ok(())
    }

    fn evict_from_head(
        &self,
        upstream: &str,
        after: Option<u64>,
        mut stop: impl FnMut(&RemovedStats, &Sizes) -> bool,
    ) -> Result<RemovedStats, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let mut removed = RemovedStats::default();
        let Some(start) = start_key(after) else {
            return Ok(removed);
        };
        let mut st = lane.state.lock();
        let mut batch = Batch::default();
        for item in lane.q.range(start..) {
            let (k, v) = self.engine("read", item)?;
            let s = sizes_of(&v);
            if stop(&removed, &s) {
                break;
            }
            removed.add(s);
            batch.remove(k);
        }
        if removed.records > 0 {
            self.engine("remove", lane.q.apply_batch(batch))?;
            self.account_removal(lane, &mut st, &removed)?;
        }
        Ok(removed)
    }
}
