//! Opening the database: `meta` (schema version, instance id, clean-shutdown flag),
//! the one-pass scans that rebuild the counters, and orphaned queues.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use super::{now_ms, sizes_of};
use crate::queue::{DlqStats, EngineError, OrphanQueue, QueueError, QueueStats, SCHEMA_VERSION};

const META_SCHEMA_VERSION: &str = "schema_version";
const META_INSTANCE_ID: &str = "instance_id";
const META_CREATED_MS: &str = "created_ms";
const META_UPSTREAMS: &str = "upstreams";
/// `[1]` after a clean shutdown, `[0]` while a process has the database open.
pub(super) const META_CLEAN_SHUTDOWN: &str = "clean_shutdown";

/// How many records from the head are inspected to find the oldest ingest time when the
/// head records have unreadable headers.
pub(super) const OLDEST_SCAN_LIMIT: usize = 64;

/// A random (version 4) UUID in text form, from std's per-process random hash keys.
fn new_instance_id() -> String {
    let mut h1 = std::collections::hash_map::RandomState::new().build_hasher();
    h1.write_u128(u128::from(now_ms()));
    h1.write_u32(std::process::id());
    let a = h1.finish();
    let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
    h2.write_u64(a);
    let b = h2.finish();
    let mut v = (u128::from(a) << 64) | u128::from(b);
    v = (v & !(0xF << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        v >> 96,
        (v >> 80) & 0xffff,
        (v >> 64) & 0xffff,
        (v >> 48) & 0xffff,
        v & 0xffff_ffff_ffff
    )
}

/// What `meta` said at open.
pub(super) struct MetaInfo {
    pub(super) instance_id: String,
    pub(super) created_ms: u64,
    pub(super) previous_clean_shutdown: Option<bool>,
}

/// Reads or initialises `meta`; clears the clean-shutdown flag durably.
pub(super) fn init_meta(
    db: &sled::Db,
    meta: &sled::Tree,
    upstreams: &BTreeSet<String>,
    path: &Path,
) -> Result<MetaInfo, QueueError> {
    let err = |e: sled::Error| QueueError::Open {
        path: path.to_path_buf(),
        source: EngineError::new(e),
    };
    match meta.get(META_SCHEMA_VERSION).map_err(err)? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| QueueError::MetaCorrupt {
                    key: META_SCHEMA_VERSION,
                })?;
            if found > SCHEMA_VERSION {
                return Err(QueueError::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        None => {
            meta.insert(META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())
                .map_err(err)?;
        }
    }
    let instance_id = match meta.get(META_INSTANCE_ID).map_err(err)? {
        Some(v) => String::from_utf8(v.to_vec()).map_err(|_| QueueError::MetaCorrupt {
            key: META_INSTANCE_ID,
        })?,
        None => {
            let id = new_instance_id();
            meta.insert(META_INSTANCE_ID, id.as_bytes()).map_err(err)?;
            id
        }
    };
    let created_ms = match meta.get(META_CREATED_MS).map_err(err)? {
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| QueueError::MetaCorrupt {
                key: META_CREATED_MS,
            })?,
        None => {
            let now = now_ms();
            meta.insert(META_CREATED_MS, &now.to_be_bytes())
                .map_err(err)?;
            now
        }
    };
    let previous_clean_shutdown = meta
        .get(META_CLEAN_SHUTDOWN)
        .map_err(err)?
        .map(|v| v.as_ref() == [1u8]);
    meta.insert(META_CLEAN_SHUTDOWN, &[0u8]).map_err(err)?;
    let joined = upstreams.iter().cloned().collect::<Vec<_>>().join(",");
    meta.insert(META_UPSTREAMS, joined.as_bytes())
        .map_err(err)?;
    db.flush().map_err(err)?;
    Ok(MetaInfo {
        instance_id,
        created_ms,
        previous_clean_shutdown,
    })
}

/// Counters of a queue tree from one pass over its values (headers only).
pub(super) fn scan_queue(q: &sled::Tree) -> sled::Result<QueueStats> {
    let mut stats = QueueStats::default();
    for (i, item) in q.iter().enumerate() {
        let (_, v) = item?;
        let s = sizes_of(&v);
        stats.add(s);
        if stats.oldest_ingest_ms.is_none() && i < OLDEST_SCAN_LIMIT {
            stats.oldest_ingest_ms = s.ingest;
        }
    }
    Ok(stats)
}

pub(super) fn scan_dlq(dlq: &sled::Tree) -> sled::Result<DlqStats> {
    let mut stats = DlqStats::default();
    for item in dlq.iter() {
        let (_, v) = item?;
        stats.records += 1;
        stats.stored_bytes += v.len() as u64;
    }
    Ok(stats)
}

pub(super) fn find_orphans(
    db: &sled::Db,
    configured: &BTreeSet<String>,
) -> sled::Result<Vec<OrphanQueue>> {
    let mut orphans = Vec::new();
    for name in db.tree_names() {
        let Some(upstream) = name
            .strip_prefix(b"q:")
            .and_then(|n| std::str::from_utf8(n).ok())
        else {
            continue;
        };
        if configured.contains(upstream) {
            continue;
        }
        let tree = db.open_tree(&name)?;
        let (mut records, mut stored_bytes) = (0u64, 0u64);
        for item in tree.iter() {
            let (_, v) = item?;
            records += 1;
            stored_bytes += v.len() as u64;
        }
        orphans.push(OrphanQueue {
            upstream: upstream.to_owned(),
            records,
            stored_bytes,
        });
    }
    Ok(orphans)
}

impl super::Queue {
    /// `q:` trees found at open whose upstream is not configured.
    #[must_use]
    pub fn orphans(&self) -> &[OrphanQueue] {
        &self.orphans
    }

    /// Deletes the `q:` and `dlq:` trees of the orphans found at open
    /// (`--purge-orphans`); returns their upstream names.
    ///
    /// # Errors
    ///
    /// [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn purge_orphans(&self) -> Result<Vec<String>, QueueError> {
        self.poison.check()?;
        let mut purged = Vec::new();
        for o in &self.orphans {
            self.engine("drop_tree", self.db.drop_tree(format!("q:{}", o.upstream)))?;
            self.engine(
                "drop_tree",
                self.db.drop_tree(format!("dlq:{}", o.upstream)),
            )?;
            purged.push(o.upstream.clone());
        }
        self.flush()?;
        Ok(purged)
    }
}
