//! Byte formats of queue values: records (lines + metadata) and dead-letter entries.
//!
//! The record layout is documented in the [module above](super); in short: a fixed
//! little-endian header (version, flags, hops, ingest time, line count, raw length), two
//! length-prefixed strings (default cluster, source), a CRC32C of the uncompressed
//! payload and the payload, optionally one zstd frame.
//!
//! Version history:
//! - **1** — spec/relay.md §4.6 as written.
//! - **2** — adds `hops: u8` after `flags`: the `X-CC-Relay-Hops` count of the request
//!   the lines came from, so a relay forwarding to another relay sends `hops + 1` and
//!   loops are cut after `max_hops` (§4.13). Version 1 values decode with `hops = 0`.
//!
//! [`Record::decode`] checks every length against the buffer, the version, the flags,
//! the zstd frame's declared size, the CRC and the line count, and never panics on
//! arbitrary bytes (property-tested).
//!
//! Dead-letter entry layout, version 2 (little-endian; version 1 is the same
//! without `hops` and `cluster` and is still decoded, with `hops = 0` and no
//! cluster):
//!
//! ```text
//! struct DeadLetterEntry {
//!     version:   u8,   // 2
//!     time_ms:   u64,  // when it was dead-lettered
//!     record_id: u64,  // queue record the lines came from
//!     status:    u16,  // HTTP status, 0 = none
//!     hops:      u8,   // hop count of that record (v2)
//!     reason_len: u8, reason: [u8; reason_len],     // "rejected: …", "corrupt", …
//!     cluster_len: u16, cluster: [u8; cluster_len], // that record's default cluster (v2)
//!     crc32c:    u32,  // over `lines`
//!     lines:     [u8], // the rejected line(s); for "corrupt" the undecodable value verbatim
//! }
//! ```
//!
//! Version 2 keeps the default cluster and hop count of the record so that
//! `dlq replay` queues the lines exactly as they were first sent.

use memchr::memchr_iter;

mod codec;
mod dead_letter;
mod split;

pub use dead_letter::DeadLetterEntry;
pub use split::{SplitLimits, split_payload, split_payload_with};

/// Record version written by this build.
pub const RECORD_VERSION: u8 = 2;
/// Oldest record version still decoded (no `hops` byte).
pub const RECORD_VERSION_V1: u8 = 1;
/// Flag bit: the payload is one zstd frame.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
const KNOWN_FLAGS: u8 = FLAG_ZSTD;

/// Default `compress_threshold`: smaller payloads are stored as they are.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 512;
/// Default zstd level (`storage.zstd_level`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Default `record_max_raw_bytes`: uncompressed bytes per record before splitting.
pub const DEFAULT_MAX_RAW_BYTES: usize = 256 * 1024;
/// Default `record_max_stored_bytes`: stored bytes per record after compression.
pub const DEFAULT_MAX_STORED_BYTES: usize = 64 * 1024;

/// Longest default cluster name accepted in a record.
pub const MAX_CLUSTER_LEN: usize = 255;
/// Longer `source` labels are truncated (at a character boundary) to this many bytes.
pub const MAX_SOURCE_LEN: usize = 512;
/// Largest uncompressed payload of one record; also bounds what decode allocates.
pub const MAX_RAW_LEN: usize = 64 * 1024 * 1024;
/// Bytes [`split_payload`] keeps free for the header, so that header + payload stays
/// within `max_stored_bytes`: covers the fixed part, a maximal cluster and source.
pub const HEADER_RESERVE: usize = 1024;

/// Header bytes before the cluster string (version 2).
const FIXED_V2: usize = 19;
/// Header bytes before the cluster string (version 1).
const FIXED_V1: usize = 18;

/// Why a value is not a valid record (or dead-letter entry), or a record cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The value ends before a field it announces.
    #[error("record truncated: {field} needs {needed} bytes at offset {offset}, {len} in value")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Where it starts.
        offset: usize,
        /// Total length of the value.
        len: usize,
    },
    /// Unknown format version.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// Flag bits this build does not know.
    #[error("unknown record flags {0:#04x}")]
    UnknownFlags(u8),
    /// `raw_len` exceeds [`MAX_RAW_LEN`].
    #[error("record payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced or given length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stored or decompressed payload length differs from `raw_len`.
    #[error("record payload is {actual} bytes, header says {expected}")]
    LengthMismatch {
        /// `raw_len` from the header.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// The zstd frame is invalid.
    #[error("record payload does not decompress: {0}")]
    Decompress(String),
    /// CRC32C of the payload differs.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload.
        computed: u32,
    },
    /// `line_count` differs from the number of newlines.
    #[error("record says {expected} lines, payload has {actual}")]
    LineCountMismatch {
        /// From the header.
        expected: u32,
        /// Counted.
        actual: u32,
    },
    /// A string field is not UTF-8.
    #[error("record field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// The payload is empty.
    #[error("record payload is empty")]
    EmptyPayload,
    /// The payload does not end with `\n`.
    #[error("record payload does not end with a newline")]
    Unterminated,
    /// The default cluster is longer than [`MAX_CLUSTER_LEN`].
    #[error("default cluster of {0} bytes is too long")]
    ClusterTooLong(usize),
}

/// Metadata shared by all records built from one ingested batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// Relay wall clock when the batch was accepted (Unix ms); drives `max_age` and lag.
    pub ingest_time_ms: u64,
    /// `X-CC-Relay-Hops` of the request (0 from collectors); forwarded as `hops + 1`.
    pub hops: u8,
    /// Default cluster for lines without a `cluster` tag; empty = none. Forwarded as the
    /// `cluster` query parameter, so batches never mix defaults.
    pub cluster: String,
    /// Where the lines came from, for tracing and dead-letter dumps.
    pub source: String,
}

/// One queue record: whole `\n`-terminated lines plus the metadata they travel with.
///
/// The constructor enforces the invariants the format relies on (non-empty,
/// newline-terminated, bounded lengths), so every `Record` encodes and decodes back to
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    meta: RecordMeta,
    line_count: u32,
    payload: Vec<u8>,
    /// The payload's zstd frame, when splitting already computed it.
    compressed: CompressedCache,
}

/// A cached zstd frame of a record's payload. It is derived data: records
/// compare equal whether or not they carry it.
#[derive(Debug, Clone, Default)]
struct CompressedCache(Option<(i32, Vec<u8>)>);

impl PartialEq for CompressedCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CompressedCache {}

impl Record {
    /// Builds a record from whole lines.
    ///
    /// `meta.source` longer than [`MAX_SOURCE_LEN`] is truncated at a character boundary.
    ///
    /// # Errors
    ///
    /// [`RecordError::EmptyPayload`], [`RecordError::Unterminated`] (last byte is not
    /// `\n`), [`RecordError::TooLarge`] (over [`MAX_RAW_LEN`]),
    /// [`RecordError::ClusterTooLong`].
    pub fn new(mut meta: RecordMeta, payload: Vec<u8>) -> Result<Record, RecordError> {
        if payload.is_empty() {
            return Err(RecordError::EmptyPayload);
        }
        if payload.last() != Some(&b'\n') {
            return Err(RecordError::Unterminated);
        }
        if payload.len() > MAX_RAW_LEN {
            return Err(RecordError::TooLarge {
                len: payload.len(),
                max: MAX_RAW_LEN,
            });
        }
        if meta.cluster.len() > MAX_CLUSTER_LEN {
            return Err(RecordError::ClusterTooLong(meta.cluster.len()));
        }
        truncate_at_char_boundary(&mut meta.source, MAX_SOURCE_LEN);
        let line_count = count_lines(&payload);
        Ok(Record {
            meta,
            line_count,
            payload,
            compressed: CompressedCache::default(),
        })
    }

    /// Splits a batch of lines into records with [`split_payload_with`] and the given
    /// limits; every record gets a copy of `meta`.
    ///
    /// # Errors
    ///
    /// As [`Record::new`]; an unterminated last line gives [`RecordError::Unterminated`].
    pub fn from_batch(
        meta: &RecordMeta,
        lines: &[u8],
        limits: &SplitLimits,
    ) -> Result<Vec<Record>, RecordError> {
        split::split_with_compressed(lines, limits)
            .into_iter()
            .map(|(piece, compressed)| {
                let mut record = Record::new(meta.clone(), piece.to_vec())?;
                record.compressed = CompressedCache(compressed.map(|c| (limits.zstd_level, c)));
                Ok(record)
            })
            .collect()
    }

    /// The metadata.
    #[must_use]
    pub fn meta(&self) -> &RecordMeta {
        &self.meta
    }

    /// Ingest time (Unix ms).
    #[must_use]
    pub fn ingest_time_ms(&self) -> u64 {
        self.meta.ingest_time_ms
    }

    /// Hop count of the request the lines came from.
    #[must_use]
    pub fn hops(&self) -> u8 {
        self.meta.hops
    }

    /// Default cluster (empty = none).
    #[must_use]
    pub fn cluster(&self) -> &str {
        &self.meta.cluster
    }

    /// Source label.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.meta.source
    }

    /// Number of lines.
    #[must_use]
    pub fn line_count(&self) -> u32 {
        self.line_count
    }

    /// The lines, each `\n`-terminated.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the lines out of the record.
    #[must_use]
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Encodes with the default zstd level; see [`Record::encode_with`].
    #[must_use]
    pub fn encode(&self, compress_threshold: usize) -> Vec<u8> {
        self.encode_with(compress_threshold, DEFAULT_ZSTD_LEVEL)
    }

    /// Encodes the record (current version). The payload is zstd-compressed when it has
    /// at least `compress_threshold` bytes and compression makes it smaller; otherwise
    /// (or if zstd fails) it is stored as it is.
    #[must_use]
    pub fn encode_with(&self, compress_threshold: usize, zstd_level: i32) -> Vec<u8> {
        let crc = crc32c::crc32c(&self.payload);
        let cached = match &self.compressed.0 {
            Some((level, c)) if *level == zstd_level => Some(c),
            _ => None,
        };
        let computed;
        let compressed = if self.payload.len() < compress_threshold {
            None
        } else if let Some(c) = cached {
            Some(c)
        } else {
            computed = codec::compress(&self.payload, zstd_level)
                .ok()
                .filter(|c| c.len() < self.payload.len());
            computed.as_ref()
        };
        let (flags, stored): (u8, &[u8]) = match &compressed {
            Some(c) => (FLAG_ZSTD, c),
            None => (0, &self.payload),
        };
        let cluster = self.meta.cluster.as_bytes();
        let source = self.meta.source.as_bytes();
        let mut out =
            Vec::with_capacity(FIXED_V2 + 2 + cluster.len() + 2 + source.len() + 4 + stored.len());
        out.push(RECORD_VERSION);
        out.push(flags);
        out.push(self.meta.hops);
        out.extend_from_slice(&self.meta.ingest_time_ms.to_le_bytes());
        out.extend_from_slice(&self.line_count.to_le_bytes());
        out.extend_from_slice(&len_u32(self.payload.len()).to_le_bytes());
        put_str16(&mut out, cluster);
        put_str16(&mut out, source);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(stored);
        out
    }

    /// Decodes and verifies a stored value.
    ///
    /// # Errors
    ///
    /// Any [`RecordError`] describing the first check that failed.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let header = Header::parse(bytes)?;
        let mut r = Reader::new(bytes, header.fixed_len);
        let cluster = r.str16("cluster")?;
        let source = r.str16("source")?;
        let stored_crc = r.u32("crc32c")?;
        let stored = r.rest();
        let raw_len = header.raw_len as usize;
        if raw_len > MAX_RAW_LEN {
            return Err(RecordError::TooLarge {
                len: raw_len,
                max: MAX_RAW_LEN,
            });
        }
        let payload = if header.flags & FLAG_ZSTD != 0 {
            decompress(stored, raw_len)?
        } else {
            if stored.len() != raw_len {
                return Err(RecordError::LengthMismatch {
                    expected: raw_len,
                    actual: stored.len(),
                });
            }
            stored.to_vec()
        };
        let computed = crc32c::crc32c(&payload);
        if computed != stored_crc {
            return Err(RecordError::ChecksumMismatch {
                stored: stored_crc,
                computed,
            });
        }
        if payload.is_empty() {
            return Err(RecordError::EmptyPayload);
        }
        if payload.last() != Some(&b'\n') {
            return Err(RecordError::Unterminated);
        }
        let lines = count_lines(&payload);
        if lines != header.line_count {
            return Err(RecordError::LineCountMismatch {
                expected: header.line_count,
                actual: lines,
            });
        }
        if cluster.len() > MAX_CLUSTER_LEN {
            return Err(RecordError::ClusterTooLong(cluster.len()));
        }
        Ok(Record {
            meta: RecordMeta {
                ingest_time_ms: header.ingest_time_ms,
                hops: header.hops,
                cluster,
                source,
            },
            line_count: lines,
            payload,
            compressed: CompressedCache::default(),
        })
    }
}

/// The fixed part of a record header, readable without checksum or decompression;
/// used to rebuild counters at open and to size removed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) flags: u8,
    pub(crate) hops: u8,
    pub(crate) ingest_time_ms: u64,
    pub(crate) line_count: u32,
    pub(crate) raw_len: u32,
    fixed_len: usize,
}

impl Header {
    /// Parses and checks version and flags of the fixed header part.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, RecordError> {
        let mut r = Reader::new(bytes, 0);
        let version = r.u8("version")?;
        let fixed_len = match version {
            RECORD_VERSION => FIXED_V2,
            RECORD_VERSION_V1 => FIXED_V1,
            v => return Err(RecordError::UnsupportedVersion(v)),
        };
        let flags = r.u8("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(RecordError::UnknownFlags(flags));
        }
        let hops = if version == RECORD_VERSION {
            r.u8("hops")?
        } else {
            0
        };
        let ingest_time_ms = r.u64("ingest_time_ms")?;
        let line_count = r.u32("line_count")?;
        let raw_len = r.u32("raw_len")?;
        Ok(Header {
            flags,
            hops,
            ingest_time_ms,
            line_count,
            raw_len,
            fixed_len,
        })
    }
}

fn decompress(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, RecordError> {
    // Check the frame's declared size before allocating `raw_len` bytes.
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n != raw_len as u64 => {
            return Err(RecordError::LengthMismatch {
                expected: raw_len,
                actual: usize::try_from(n).unwrap_or(usize::MAX),
            });
        }
        Ok(_) => {}
        Err(e) => return Err(RecordError::Decompress(format!("bad frame header: {e:?}"))),
    }
    let payload =
        codec::decompress(stored, raw_len).map_err(|e| RecordError::Decompress(e.to_string()))?;
    if payload.len() != raw_len {
        return Err(RecordError::LengthMismatch {
            expected: raw_len,
            actual: payload.len(),
        });
    }
    Ok(payload)
}

/// Bounds-checked little-endian reader over a value.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { bytes, pos }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(RecordError::Truncated {
                field,
                needed: n,
                offset: self.pos,
                len: self.bytes.len(),
            })?;
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn str16(&mut self, field: &'static str) -> Result<String, RecordError> {
        let n = usize::from(self.u16(field)?);
        let s = self.take(n, field)?;
        String::from_utf8(s.to_vec()).map_err(|_| RecordError::NotUtf8(field))
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        s
    }
}

fn put_str16(out: &mut Vec<u8>, s: &[u8]) {
    // Callers bound the lengths (MAX_CLUSTER_LEN, MAX_SOURCE_LEN), far below u16::MAX.
    let n = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(s.get(..n).unwrap_or_default());
}

fn len_u32(n: usize) -> u32 {
    // Payloads are bounded by MAX_RAW_LEN (64 MiB) in Record::new.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn count_lines(payload: &[u8]) -> u32 {
    u32::try_from(memchr_iter(b'\n', payload).count()).unwrap_or(u32::MAX)
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
