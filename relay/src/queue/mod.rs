//! Durable per-upstream queues: every accepted batch lives here until its upstream has it.
//!
//! # Design
//!
//! One embedded sled database (`sled =0.34.7`) at `<data_dir>/db`, opened once per
//! process (sled holds an exclusive file lock). The rest of the relay sees only the
//! types of this module — no sled type appears in a public signature — so the engine
//! can be swapped for a segmented log, redb or fjall later (spec §7.5).
//!
//! ```text
//! tree            key                      value
//! meta            UTF-8 name               schema_version (u32 BE = 1), instance_id (UUID text),
//!                                          created_ms (u64 BE), upstreams (comma list),
//!                                          clean_shutdown ([1] after a clean stop, [0] while running)
//! q:<upstream>    record id (u64 BE)       record (see [`record`])
//! dlq:<upstream>  entry id (u64 BE)        dead-letter entry (see [`record::DeadLetterEntry`])
//! ```
//!
//! Record format, version 2 (little-endian fields; version 1 is the same without `hops`
//! and is still decoded, with `hops = 0`):
//!
//! ```text
//! struct Record {
//!     version:        u8,   // 2
//!     flags:          u8,   // bit0 = payload is one zstd frame; other bits must be 0
//!     hops:           u8,   // X-CC-Relay-Hops of the request the lines came from (v2)
//!     ingest_time_ms: u64,  // relay wall clock at acceptance
//!     line_count:     u32,  // number of '\n' in the uncompressed payload
//!     raw_len:        u32,  // uncompressed payload length (≤ 64 MiB)
//!     cluster_len:    u16, cluster: [u8; cluster_len],  // default cluster, UTF-8, may be empty
//!     source_len:     u16, source:  [u8; source_len],   // e.g. "http:collectors:10.1.17.5"
//!     crc32c:         u32,  // over the uncompressed payload
//!     payload:        [u8], // rest: lines, each '\n'-terminated (zstd-compressed if bit0)
//! }
//! ```
//!
//! # Invariants
//!
//! - **Ids.** One `generate_id()` per record, the same id in every target tree; ids are
//!   generated and inserted under one append lock, so within a tree key order equals
//!   insertion order (FIFO). Ids are monotonic across restarts but not contiguous (sled
//!   skips 2 000 000 after an unclean stop).
//! - **Append is not durable.** [`Queue::append`] applies one batch per tree and returns;
//!   durability comes from [`Flusher::wait_durable`] (group commit, spec §4.6 step 3): a
//!   flush that *started after* the caller registered has returned `Ok`.
//! - **Ack/eviction need no flush.** A lost removal means a duplicate, never a loss.
//! - **Counters are in memory.** Each tree is scanned once at open (header only, no
//!   checksum); afterwards the counters change under the same per-upstream lock as the
//!   tree, so they always equal the sum over the tree's values. `oldest_ingest_ms` is the
//!   ingest time of the record at the head of the queue.
//! - **Corruption never blocks.** A value that fails to decode (length, version, zstd,
//!   CRC) is moved to `dlq:<upstream>` with reason `"corrupt"` when a peek meets it, and
//!   counted.
//! - **Sticky poisoning** (as in fjall): the first sled error sets a poisoned flag with
//!   the error text; every later mutating call fails fast with [`QueueError::Poisoned`].
//!   sled itself keeps the first I/O error as a global error, so continuing is pointless;
//!   the relay stops accepting and exits so systemd restarts it.
//!
//! # Sled settings (spec §7.4)
//!
//! `cache_capacity` 128 MiB, `flush_every_ms` 500, `mode` LowSpace, `use_compression`
//! false (payloads are compressed here instead), default 512 KiB segments. Records are
//! split so that every stored value stays ≤ 64 KiB ([`record::split_payload`]), far below
//! sled's ≈128 KiB blob threshold, above which space amplification explodes (§7.3).
//!
//! Layout of this module: [`record`] (record and dead-letter formats, batch splitting),
//! [`sled_store`] ([`Queue`] on sled), [`flusher`] (group commit).

pub mod flusher;
pub mod record;
pub mod sled_store;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::PathBuf;

pub use flusher::{FlushStats, FlushStatsSnapshot, Flusher, Writing};
pub use record::{DeadLetterEntry, Record, RecordError, RecordMeta, SplitLimits, split_payload};
pub use sled_store::Queue;

/// Version of the tree layout written to `meta/schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Settings of the queue engine (the `storage` section of the config, spec §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// sled page cache in bytes; sled's own 1 GiB default is sized for databases, a
    /// queue's working set is only its head and tail.
    pub cache_capacity: u64,
    /// sled background flush interval; acks never rely on it, it only bounds how many
    /// deletions a crash can undo.
    pub flush_every_ms: Option<u64>,
    /// Payloads of at least this many bytes are zstd-compressed when that shrinks them;
    /// `usize::MAX` switches compression off (`record_compression: none`).
    pub compress_threshold: usize,
    /// zstd level for record payloads (`storage.zstd_level`, 1–9).
    pub zstd_level: i32,
    /// Cap on the stored bytes of each `dlq:` tree; the oldest entries are evicted.
    pub dead_letter_max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            cache_capacity: 128 * 1024 * 1024,
            flush_every_ms: Some(500),
            compress_threshold: record::DEFAULT_COMPRESS_THRESHOLD,
            zstd_level: record::DEFAULT_ZSTD_LEVEL,
            dead_letter_max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Size of one upstream's queue, from in-memory counters (never an O(n) tree walk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records in the tree.
    pub records: u64,
    /// Lines in those records.
    pub lines: u64,
    /// Bytes of the stored values (compressed payload plus header): what
    /// `buffer.max_bytes` limits.
    pub stored_bytes: u64,
    /// Uncompressed payload bytes: what the upstream will receive.
    pub raw_bytes: u64,
    /// Ingest time of the record at the head of the queue; `None` when empty.
    pub oldest_ingest_ms: Option<u64>,
}

/// What an ack or an eviction removed from a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedStats {
    /// Records removed (ids that were not present are not counted).
    pub records: u64,
    /// Lines in those records.
    pub lines: u64,
    /// Stored bytes freed (logically; sled reclaims disk space lazily).
    pub stored_bytes: u64,
    /// Uncompressed payload bytes removed.
    pub raw_bytes: u64,
}

/// Size of one upstream's dead-letter tree and what went into it since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DlqStats {
    /// Entries in the `dlq:` tree.
    pub records: u64,
    /// Stored bytes of those entries.
    pub stored_bytes: u64,
    /// Corrupt queue records moved to the dead-letter tree since open.
    pub corrupt_total: u64,
    /// Entries evicted because the tree exceeded `dead_letter_max_bytes`, since open.
    pub evicted_total: u64,
}

/// The queue record dead-lettered lines came from ([`Queue::dead_letter`]):
/// kept with them so that a replay sends them as they were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The record's id.
    pub record_id: u64,
    /// Its default cluster (empty for none).
    pub cluster: &'a str,
    /// Its hop count.
    pub hops: u8,
}

/// What [`Queue::dlq_replay`] moved back into a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqReplayed {
    /// Dead-letter entries moved (each is one refused line).
    pub entries: u64,
    /// Lines queued again.
    pub lines: u64,
    /// Entries passed over and left in place: corrupt records (not line
    /// protocol) and entries that do not decode.
    pub skipped: u64,
    /// Ids of the new queue records.
    pub record_ids: Vec<u64>,
}

/// What [`Queue::dlq_purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DlqPurged {
    /// Entries removed, corrupt ones included.
    pub entries: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
}

/// A `q:` tree whose upstream is no longer configured (spec §4.6, "orphans").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanQueue {
    /// Upstream name (the tree is `q:<name>`).
    pub upstream: String,
    /// Records in the tree.
    pub records: u64,
    /// Stored bytes in the tree (for `ccrelay_orphan_queue_bytes`).
    pub stored_bytes: u64,
}

/// An error of the storage engine, kept opaque so the engine can change.
#[derive(Debug)]
pub struct EngineError(sled::Error);

impl EngineError {
    pub(crate) fn new(e: sled::Error) -> EngineError {
        EngineError(e)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The `op` label of `ccrelay_sled_errors_total`: the engine call that failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct EngineOp {
    /// `insert`, `read`, `remove`, `flush`, `generate_id`, `drop_tree` or
    /// `size_on_disk` (the `op` of [`QueueError::Storage`]).
    pub op: &'static str,
}

/// Errors of the durable queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// An upstream name does not match `[a-z0-9_-]{1,48}`.
    #[error("invalid upstream name {name:?}: must match [a-z0-9_-]{{1,48}}")]
    InvalidUpstreamName {
        /// The offending name.
        name: String,
    },
    /// The same upstream name was given twice.
    #[error("upstream {name:?} is configured twice")]
    DuplicateUpstream {
        /// The repeated name.
        name: String,
    },
    /// A call named an upstream the queue was not opened with.
    #[error("unknown upstream {name:?}")]
    UnknownUpstream {
        /// The unknown name.
        name: String,
    },
    /// The data directory could not be created.
    #[error("creating queue directory {path}")]
    CreateDir {
        /// Directory that failed.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened (locked by another process, unreadable, …).
    #[error("opening queue database at {path}")]
    Open {
        /// Database directory.
        path: PathBuf,
        /// Engine error.
        #[source]
        source: EngineError,
    },
    /// Another process has the database open: sled takes an exclusive lock, and the
    /// relay holds it while it runs.
    #[error(
        "the queue database {path} is locked by another process (a cc-relay, or an offline \
         `queue`/`dlq` command, has this data_dir open)"
    )]
    Locked {
        /// Database directory.
        path: PathBuf,
    },
    /// The database was written by a newer relay.
    #[error("queue schema version {found} is newer than this build supports ({supported})")]
    NewerSchema {
        /// Version found in `meta`.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// A `meta` value has the wrong shape.
    #[error("queue metadata key {key:?} is malformed")]
    MetaCorrupt {
        /// The key.
        key: &'static str,
    },
    /// The engine failed; the queue is poisoned from now on.
    #[error("queue storage failed during {op}")]
    Storage {
        /// Operation that failed (`insert`, `flush`, `remove`, …).
        op: &'static str,
        /// Engine error.
        #[source]
        source: EngineError,
    },
    /// An earlier engine error poisoned the queue; nothing is written any more.
    #[error("queue storage is poisoned by an earlier error: {reason}")]
    Poisoned {
        /// Text of the first error.
        reason: String,
    },
    /// The group-commit flusher task is gone (shut down or panicked).
    #[error("the group-commit flusher has stopped")]
    FlusherStopped,
}
