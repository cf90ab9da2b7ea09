//! Line protocol → samples in the tree; shared by HTTP `/api/write` and NATS.
//!
//! Per line (cc-metric-store's rules, with the deviations listed below):
//!
//! 1. The measurement must be a configured metric; other lines are skipped
//!    and counted, without looking further (so a malformed line of an
//!    unknown metric is not an error either).
//! 2. Tags: `cluster` (default: the request's `?cluster=` or the NATS
//!    subscription's `cluster-tag`), `hostname` or `host`, and the sub-device
//!    path built from `type`/`type-id` (level `<type><type-id>`, `type=node`
//!    ignored) and `stype`/`stype-id`; an `stype` without `type` is dropped.
//!    Other tags are ignored.
//! 3. A line whose cluster or host name would leave the checkpoint directory
//!    (`.`, or a name containing `..`, `/`, `\` or a NUL byte) is skipped and
//!    counted, as upstream skips it; the rest of the batch is stored and the
//!    request is still answered 200. A warning names the first such line of
//!    a batch, at most once a minute.
//! 4. Fields: only `value`, as float, integer or unsigned; the last one wins.
//! 5. Timestamp: a line without one takes the previous line's (the first
//!    line: the time the batch arrived).
//! 6. A sample older than the newest chunk of its series is skipped and
//!    counted (upstream's "from past").
//! 7. A sample more than [`MAX_FUTURE`] seconds ahead of the store's clock
//!    is an error: stored, it would make every later sample of its series
//!    "from past" until the clock caught up, and retention would never free
//!    its chunk.
//!
//! Every line that is not stored is counted by [`Rejection`] in the
//! [`IngestReport`] of its batch; the caller adds the report to the
//! store's [`IngestTotals`] once per batch (what `/metrics` shows), so
//! counting costs the ingest loop nothing but a local increment.
//!
//! Deviations from upstream, each an improvement no client relies on:
//!
//! - An invalid line ([`LineError`]) does not stop the batch: every
//!   well-formed line is stored, and the batch is still answered with 400
//!   naming the first invalid line, so senders see the error.
//! - Timestamps in milliseconds, microseconds or nanoseconds are recognised
//!   by magnitude and converted to seconds (upstream silently uses "now").
//! - A sample more than ten minutes ahead of the store's clock is an error
//!   (upstream stores it, and its series then refuses every current sample).
//! - A line without a host, or with an empty cluster, is an error (upstream
//!   stores it under an empty name).
//! - The `(cluster, host)` level is resolved per line, so lines that rely on
//!   the default cluster never land in the previous line's host.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cc_common::lineproto::{ErrorKind, FieldValue, Line, ParseError, Precision, parse_lines};

use crate::persist::wal::EncodeError;
use crate::persist::{HostFiles, OwnedHostGuard, Persistence};
use crate::store::MetricStore;
use crate::tree::Level;
use foldhash::fast::RandomState;

/// Latest accepted timestamp in seconds (the year 5138): later ones, and
/// negative ones, are errors rather than slots no arithmetic can handle.
pub const MAX_TIMESTAMP: i64 = 100_000_000_000;

/// How far (seconds) a sample may be ahead of the time its batch arrived:
/// what a sender's clock may be off by (the relay's default `max_future` is
/// the same ten minutes).
pub const MAX_FUTURE: i64 = 600;

/// Why a line was not stored: the `reason` label of
/// `ccstore_ingest_rejected_lines_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The measurement is not a configured metric (skipped, not an error).
    UnknownMetric,
    /// The sample is older than the newest chunk of its series (skipped,
    /// not an error).
    TooOld,
    /// The cluster or host name would leave the checkpoint directory, or is
    /// longer than a file name may be (skipped, not an error).
    UnsafeName,
    /// The line is not valid line protocol.
    Syntax,
    /// A field other than `value`, or a string or boolean value.
    BadField,
    /// The timestamp is not a number, or out of range.
    BadTimestamp,
    /// No `hostname` (or `host`) tag.
    NoHost,
    /// Neither a `cluster` tag nor a default cluster.
    NoCluster,
    /// A metric or level name longer than the WAL format can hold.
    NameTooLong,
}

impl Rejection {
    /// Number of reasons.
    pub const COUNT: usize = 9;

    /// Every reason, in label order of `/metrics`.
    pub const ALL: [Rejection; Rejection::COUNT] = [
        Rejection::UnknownMetric,
        Rejection::TooOld,
        Rejection::UnsafeName,
        Rejection::Syntax,
        Rejection::BadField,
        Rejection::BadTimestamp,
        Rejection::NoHost,
        Rejection::NoCluster,
        Rejection::NameTooLong,
    ];

    /// The label value.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Rejection::UnknownMetric => "unknown_metric",
            Rejection::TooOld => "too_old",
            Rejection::UnsafeName => "unsafe_name",
            Rejection::Syntax => "syntax",
            Rejection::BadField => "bad_field",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::NoHost => "no_host",
            Rejection::NoCluster => "no_cluster",
            Rejection::NameTooLong => "name_too_long",
        }
    }

    /// Whether the line is an error (a write request with one is answered
    /// 400), rather than skipped as upstream skips it.
    #[must_use]
    pub const fn is_error(self) -> bool {
        !matches!(
            self,
            Rejection::UnknownMetric | Rejection::TooOld | Rejection::UnsafeName
        )
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// An invalid line. The messages are the texts of cc-metric-store's API
/// (`at line L: …`, syntax errors `at line L:C: …`); a write request with
/// invalid lines is answered 400 with the first one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not valid line protocol.
    #[error(transparent)]
    Syntax(#[from] ParseError),
    /// A timestamp before 1970 or after [`MAX_TIMESTAMP`] seconds.
    #[error("at line {line}: timestamp {ts} is out of range (0 to {MAX_TIMESTAMP} seconds)")]
    TimestampOutOfRange {
        /// 1-based line number in the batch.
        line: usize,
        /// The timestamp, converted to seconds.
        ts: i64,
    },
    /// A timestamp more than [`MAX_FUTURE`] seconds ahead of the store's
    /// clock.
    #[error(
        "at line {line}: timestamp {ts} is {} s ahead of the store's clock (at most {MAX_FUTURE} s); is the sender's clock right?",
        ts.saturating_sub(*now)
    )]
    TimestampInFuture {
        /// 1-based line number in the batch.
        line: usize,
        /// The timestamp, converted to seconds.
        ts: i64,
        /// The store's clock when the batch arrived.
        now: i64,
    },
    /// A field other than `value`.
    #[error("at line {line}: host {host}: unknown field: '{key}' (value: {value})")]
    UnknownField {
        /// 1-based line number in the batch.
        line: usize,
        /// The line's host tag ("" without one).
        host: String,
        /// The field's key.
        key: String,
        /// The start of the field's value.
        value: String,
    },
    /// A string or boolean `value`.
    #[error("at line {line}: host {host}: unsupported value type in message: {kind}")]
    UnsupportedValue {
        /// 1-based line number in the batch.
        line: usize,
        /// The line's host tag ("" without one).
        host: String,
        /// `string` or `boolean`.
        kind: &'static str,
    },
    /// No `value` field.
    #[error("at line {line}: no 'value' field")]
    NoValue {
        /// 1-based line number in the batch.
        line: usize,
    },
    /// No `hostname` or `host` tag.
    #[error("at line {line}: line has no hostname (or host) tag")]
    NoHost {
        /// 1-based line number in the batch.
        line: usize,
    },
    /// Neither a `cluster` tag nor a default cluster.
    #[error("at line {line}: host {host}: no cluster (neither a cluster tag nor ?cluster=)")]
    NoCluster {
        /// 1-based line number in the batch.
        line: usize,
        /// The line's host.
        host: String,
    },
    /// A name the WAL cannot hold.
    #[error("at line {line}: {source}")]
    NameTooLong {
        /// 1-based line number in the batch.
        line: usize,
        /// Which name.
        source: EncodeError,
    },
}

impl LineError {
    /// The `reason` label this error is counted under.
    #[must_use]
    pub fn reason(&self) -> Rejection {
        match self {
            LineError::Syntax(e) if e.kind == ErrorKind::InvalidTimestamp => {
                Rejection::BadTimestamp
            }
            LineError::Syntax(_) => Rejection::Syntax,
            LineError::TimestampOutOfRange { .. } | LineError::TimestampInFuture { .. } => {
                Rejection::BadTimestamp
            }
            LineError::UnknownField { .. }
            | LineError::UnsupportedValue { .. }
            | LineError::NoValue { .. } => Rejection::BadField,
            LineError::NoHost { .. } => Rejection::NoHost,
            LineError::NoCluster { .. } => Rejection::NoCluster,
            LineError::NameTooLong { .. } => Rejection::NameTooLong,
        }
    }
}

/// The invalid lines of a batch, as a write request's 400 answer states
/// them: the first one, and how many more there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLines {
    /// The first invalid line.
    pub first: LineError,
    /// Invalid lines after it.
    pub more: usize,
}

impl std::fmt::Display for InvalidLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.first)?;
        if self.more > 0 {
            write!(f, " (and {} more invalid lines)", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidLines {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.first)
    }
}

/// The WAL of a host could not be written: the batch's samples are in
/// memory but not on disk (a write request is answered 500).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write the WAL of {cluster}/{host}: {source}")]
pub struct WalWriteError {
    /// The host's cluster.
    pub cluster: String,
    /// The host.
    pub host: String,
    /// What the OS said.
    pub source: Arc<std::io::Error>,
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct IngestReport {
    /// Non-blank, non-comment lines seen.
    pub lines: usize,
    /// Samples stored.
    pub written: usize,
    /// Lines not stored, by [`Rejection::index`].
    rejected: [usize; Rejection::COUNT],
    /// The first invalid line.
    pub first_error: Option<LineError>,
    /// Writing the WAL failed: the samples are in memory but not on disk.
    pub wal_error: Option<WalWriteError>,
}

impl IngestReport {
    /// Lines not stored for `reason`.
    #[must_use]
    pub fn rejected(&self, reason: Rejection) -> usize {
        self.rejected.get(reason.index()).copied().unwrap_or(0)
    }

    /// Invalid lines (those that make a write request a 400).
    #[must_use]
    pub fn invalid(&self) -> usize {
        Rejection::ALL
            .iter()
            .filter(|r| r.is_error())
            .map(|r| self.rejected(*r))
            .sum()
    }

    /// Lines of metrics that are not configured.
    #[must_use]
    pub fn unknown_metric(&self) -> usize {
        self.rejected(Rejection::UnknownMetric)
    }

    /// Samples older than the newest chunk of their series.
    #[must_use]
    pub fn too_old(&self) -> usize {
        self.rejected(Rejection::TooOld)
    }

    /// The answer to a write request with invalid lines, if any.
    #[must_use]
    pub fn invalid_lines(&self) -> Option<InvalidLines> {
        let first = self.first_error.clone()?;
        Some(InvalidLines {
            first,
            more: self.invalid().saturating_sub(1),
        })
    }

    fn skip(&mut self, reason: Rejection) {
        if let Some(n) = self.rejected.get_mut(reason.index()) {
            *n += 1;
        }
    }

    fn reject(&mut self, error: impl FnOnce() -> LineError) {
        let error = error();
        self.skip(error.reason());
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }
}

/// Where batches come from: the `source` label of the ingest families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/write`.
    Http,
    /// NATS subscriptions.
    Nats,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 2] = [Source::Http, Source::Nats];

    /// The label value.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Nats => "nats",
        }
    }
}

/// What one source delivered since start: the sums of its batches'
/// [`IngestReport`]s, added once per batch.
#[derive(Debug, Default)]
pub struct IngestTotals {
    lines: AtomicU64,
    written: AtomicU64,
    bytes: AtomicU64,
    rejected: [AtomicU64; Rejection::COUNT],
}

impl IngestTotals {
    /// Adds a batch of `bytes` bytes.
    pub fn add(&self, bytes: usize, report: &IngestReport) {
        let add = |c: &AtomicU64, n: usize| {
            if n > 0 {
                c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
        };
        add(&self.lines, report.lines);
        add(&self.written, report.written);
        add(&self.bytes, bytes);
        for (total, n) in self.rejected.iter().zip(report.rejected) {
            add(total, n);
        }
    }

    /// Lines received.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Samples stored.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Body (payload) bytes received.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Lines not stored for `reason`.
    #[must_use]
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Reused per batch so that no line allocates.
struct Scratch {
    cluster: String,
    host: String,
    type_path: String,
    stype_path: String,
    /// The `(cluster, host)` of the previous line.
    cached: Option<(String, String)>,
    /// The cached host's level (first) and the levels below it met in
    /// this batch, so that a line finds its level without locking or
    /// reference counting.
    levels: Vec<Arc<Level>>,
    /// The WAL of the cached host, in `wal` format.
    files: Option<Arc<HostFiles>>,
    /// The cached host's WAL lock, held from its first line to the last of
    /// a run of lines of that host: one lock per run instead of per line.
    held: Option<OwnedHostGuard>,
    /// Indexes into `levels` by the hash of the path below the host
    /// (`type`, or `type` NUL `stype`); a hit is confirmed with `paths`.
    below: HashMap<u64, usize, RandomState>,
    /// The path of each entry of `levels`; the strings are reused from
    /// host to host, so that finding a level allocates nothing.
    paths: Vec<String>,
    hasher: RandomState,
    /// The key being looked up in `below`.
    below_key: String,
    /// Hosts whose WAL got records in this batch.
    touched: Vec<Arc<HostFiles>>,
    /// The unconfigured metric of the previous line, already noted.
    last_unknown: String,
    /// The first line skipped for an unsafe name: its number, cluster and host.
    first_unsafe: Option<(usize, String, String)>,
}

/// Why a line's level could not be resolved.
enum Unresolved {
    /// Skipped: the name would leave the checkpoint directory.
    Unsafe,
    /// An invalid line.
    Invalid(LineError),
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            cluster: String::new(),
            host: String::new(),
            type_path: String::new(),
            stype_path: String::new(),
            cached: None,
            levels: Vec::new(),
            files: None,
            held: None,
            below: HashMap::default(),
            paths: Vec::new(),
            hasher: RandomState::default(),
            below_key: String::new(),
            touched: Vec::new(),
            last_unknown: String::new(),
            first_unsafe: None,
        }
    }
}

/// Decodes `body` and writes its samples into `store`. `default_cluster`
/// applies to lines without a `cluster` tag; `now` (Unix seconds) stamps a
/// leading line without timestamp.
pub fn ingest(store: &MetricStore, body: &[u8], default_cluster: &str, now: i64) -> IngestReport {
    let mut report = IngestReport::default();
    let mut scratch = Scratch::new();
    let wal = store.wal().map(Arc::as_ref);
    let mut last_ts = now;
    for result in parse_lines(body) {
        report.lines += 1;
        let line = match result {
            Ok(line) => line,
            Err(e) => {
                let (measurement, in_measurement) = measurement_of(body, &e);
                // A broken measurement is an error whatever the metric (spec
                // §2.3 step 1); other errors only in lines of known metrics.
                if !in_measurement
                    && !store.registry().is_learning()
                    && store.registry().id(&measurement).is_none()
                {
                    report.skip(Rejection::UnknownMetric);
                    store.note_unknown_metric(&measurement);
                } else {
                    report.reject(|| LineError::Syntax(e));
                }
                continue;
            }
        };
        let Some((metric, info)) = store.registry().lookup_or_learn(line.measurement(), None)
        else {
            report.skip(Rejection::UnknownMetric);
            // Lines of one metric come in runs: the store's list of logged
            // names is consulted once per run, not per line.
            if scratch.last_unknown != line.measurement() {
                scratch.last_unknown.clear();
                scratch.last_unknown.push_str(line.measurement());
                store.note_unknown_metric(line.measurement());
            }
            continue;
        };
        let ts = match line.timestamp() {
            Some(ts) => Precision::seconds_by_magnitude(ts),
            None => last_ts,
        };
        if !(0..=MAX_TIMESTAMP).contains(&ts) {
            report.reject(|| LineError::TimestampOutOfRange {
                line: line.number(),
                ts,
            });
            continue;
        }
        if ts > now.saturating_add(MAX_FUTURE) {
            report.reject(|| LineError::TimestampInFuture {
                line: line.number(),
                ts,
                now,
            });
            continue;
        }
        last_ts = ts;
        let value = match value_of(&line) {
            Ok(v) => v,
            Err(e) => {
                report.reject(|| e);
                continue;
            }
        };
        let level = match resolve_level(store, &line, default_cluster, &mut scratch) {
            Ok(index) => match scratch.levels.get(index) {
                Some(level) => level,
                None => continue,
            },
            Err(Unresolved::Unsafe) => {
                report.skip(Rejection::UnsafeName);
                if scratch.first_unsafe.is_none() {
                    scratch.first_unsafe =
                        Some((line.number(), scratch.cluster.clone(), scratch.host.clone()));
                }
                continue;
            }
            Err(Unresolved::Invalid(e)) => {
                report.reject(|| e);
                continue;
            }
        };
        store.registry().observe(metric, info, level, ts);
        let stored = match (wal, &scratch.files) {
            (Some(wal), Some(files)) => {
                // The record goes into the host's WAL buffer and the sample
                // into memory under one lock, so that a snapshot of the host
                // (which takes the same lock) sees both or neither.
                let state = scratch.held.get_or_insert_with(|| files.lock_owned());
                let selector = selector(&scratch.type_path, &scratch.stype_path);
                let mark = state.mark();
                if let Err(source) =
                    state.record(ts, line.measurement(), selector.as_slice(), value)
                {
                    report.reject(|| LineError::NameTooLong {
                        line: line.number(),
                        source,
                    });
                    continue;
                }
                let stored = level.write_sample(metric, info.frequency(), ts, value);
                if stored.is_err() {
                    // Not stored, so not journaled either.
                    state.rewind(mark);
                }
                if state.buffer_full()
                    && let Err(e) = wal.flush_wal(files, state)
                {
                    report.wal_error.get_or_insert_with(|| wal_error(files, e));
                }
                if !scratch
                    .touched
                    .last()
                    .is_some_and(|t| Arc::ptr_eq(t, files))
                {
                    scratch.touched.push(Arc::clone(files));
                }
                stored
            }
            _ => level.write_sample(metric, info.frequency(), ts, value),
        };
        match stored {
            Ok(()) => report.written += 1,
            Err(_) => report.skip(Rejection::TooOld),
        }
    }
    scratch.held = None;
    if let Some(wal) = wal {
        flush_touched(wal, &mut scratch.touched, &mut report);
    }
    if let Some((line, cluster, host)) = scratch.first_unsafe {
        store.note_unsafe_names(
            line,
            &cluster,
            &host,
            report.rejected(Rejection::UnsafeName),
        );
    }
    report
}

/// Writes the WAL records of this batch to their files, so that they are
/// in the operating system's hands before the batch is acknowledged.
fn flush_touched(wal: &Persistence, touched: &mut Vec<Arc<HostFiles>>, report: &mut IngestReport) {
    touched.sort_unstable_by_key(Arc::as_ptr);
    touched.dedup_by(|a, b| Arc::ptr_eq(a, b));
    for files in touched.drain(..) {
        let mut state = files.lock();
        if let Err(e) = wal.flush_wal(&files, &mut state) {
            report.wal_error.get_or_insert_with(|| wal_error(&files, e));
        }
    }
}

fn wal_error(files: &HostFiles, source: std::io::Error) -> WalWriteError {
    let error = WalWriteError {
        cluster: files.cluster().to_owned(),
        host: files.host().to_owned(),
        source: Arc::new(source),
    };
    tracing::error!("{error}");
    error
}

/// The level path below the host: `[]`, `[type]` or `[type, stype]`.
fn selector<'a>(type_path: &'a str, stype_path: &'a str) -> SmallPath<'a> {
    match (type_path.is_empty(), stype_path.is_empty()) {
        (true, _) => SmallPath {
            parts: [""; 2],
            len: 0,
        },
        (false, true) => SmallPath {
            parts: [type_path, ""],
            len: 1,
        },
        (false, false) => SmallPath {
            parts: [type_path, stype_path],
            len: 2,
        },
    }
}

/// Up to two level names, without allocating.
struct SmallPath<'a> {
    parts: [&'a str; 2],
    len: usize,
}

impl SmallPath<'_> {
    fn as_slice(&self) -> &[&str] {
        self.parts.get(..self.len).unwrap_or_default()
    }
}

/// The measurement of the line `e` is about, as far as it can be told
/// without parsing (up to the first space or comma), and whether the error
/// lies in it (no measurement, or bytes that are not UTF-8 in it).
fn measurement_of(body: &[u8], e: &ParseError) -> (String, bool) {
    let line = body.get(e.offset..).unwrap_or_default();
    let blanks = line
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(line.len());
    let rest = line.get(blanks..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b',' | b'\n' | b'\r'))
        .unwrap_or(rest.len());
    let in_measurement = match e.kind {
        ErrorKind::MissingMeasurement => true,
        ErrorKind::InvalidUtf8 => e.column.saturating_sub(1) < blanks + end,
        _ => false,
    };
    let name = String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned();
    (name, in_measurement)
}

/// The sample value: the last `value` field, which must be numeric.
fn value_of(line: &Line<'_>) -> Result<f64, LineError> {
    let host = || {
        line.tag("hostname")
            .or_else(|| line.tag("host"))
            .map(|h| h.into_owned())
            .unwrap_or_default()
    };
    let mut value = None;
    for (key, field) in line.fields() {
        if key != "value" {
            return Err(LineError::UnknownField {
                line: line.number(),
                host: host(),
                key: key.into_owned(),
                value: field_text(&field),
            });
        }
        match field.as_f64() {
            Some(v) => value = Some(v),
            None => {
                return Err(LineError::UnsupportedValue {
                    line: line.number(),
                    host: host(),
                    kind: field.kind_name(),
                });
            }
        }
    }
    value.ok_or(LineError::NoValue {
        line: line.number(),
    })
}

fn field_text(field: &FieldValue<'_>) -> String {
    let mut out = String::new();
    cc_common::lineproto::write_field_value(&mut out, field);
    out.chars().take(40).collect()
}

/// The longest cluster or host name: the longest file name of the usual
/// Linux file systems (`NAME_MAX`), since each becomes a directory of the
/// checkpoint tree.
pub const MAX_NAME_BYTES: usize = 255;

/// Whether `name` cannot be a cluster or host directory name: it would leave
/// the checkpoint directory (`.`, or containing `..`, `/`, `\` or NUL), or
/// is longer than [`MAX_NAME_BYTES`] (no file system would take it, and a
/// host name of megabytes would be held in memory for as long as its data).
#[must_use]
pub fn is_unsafe_name(name: &str) -> bool {
    name == "."
        || name.len() > MAX_NAME_BYTES
        || name.contains("..")
        || name.contains(['/', '\\', '\0'])
}

/// Finds (creating as needed) the level a line's sample belongs to; returns
/// its index in `s.levels`.
fn resolve_level(
    store: &MetricStore,
    line: &Line<'_>,
    default_cluster: &str,
    s: &mut Scratch,
) -> Result<usize, Unresolved> {
    s.cluster.clear();
    s.cluster.push_str(default_cluster);
    s.host.clear();
    s.type_path.clear();
    s.stype_path.clear();
    for (key, value) in line.tags() {
        match &*key {
            "cluster" => {
                s.cluster.clear();
                s.cluster.push_str(&value);
            }
            "hostname" | "host" => {
                s.host.clear();
                s.host.push_str(&value);
            }
            "type" if &*value != "node" => prepend_or_set(&mut s.type_path, &value),
            "type" => {}
            "type-id" => s.type_path.push_str(&value),
            "stype" => prepend_or_set(&mut s.stype_path, &value),
            "stype-id" => s.stype_path.push_str(&value),
            _ => {}
        }
    }
    if !matches!(&s.cached, Some((c, h)) if *c == s.cluster && *h == s.host) {
        // Only checked names are cached.
        if is_unsafe_name(&s.cluster) || is_unsafe_name(&s.host) {
            return Err(Unresolved::Unsafe);
        }
        if s.host.is_empty() {
            return Err(Unresolved::Invalid(LineError::NoHost {
                line: line.number(),
            }));
        }
        if s.cluster.is_empty() {
            return Err(Unresolved::Invalid(LineError::NoCluster {
                line: line.number(),
                host: s.host.clone(),
            }));
        }
        // Another host: its predecessor's WAL lock goes first, so that no
        // task ever holds two.
        s.held = None;
        s.below.clear();
        s.levels.clear();
        s.levels.push(
            store
                .root()
                .find_or_create(&[s.cluster.as_str(), s.host.as_str()]),
        );
        match s.paths.first_mut() {
            Some(path) => path.clear(),
            None => s.paths.push(String::new()),
        }
        s.cached = Some((s.cluster.clone(), s.host.clone()));
        s.files = store.wal().map(|wal| wal.host(&s.cluster, &s.host));
    }
    if s.type_path.is_empty() {
        return Ok(0);
    }
    s.below_key.clear();
    s.below_key.push_str(&s.type_path);
    if !s.stype_path.is_empty() {
        s.below_key.push('\0');
        s.below_key.push_str(&s.stype_path);
    }
    let hash = s.hasher.hash_one(s.below_key.as_str());
    if let Some(&index) = s.below.get(&hash)
        && s.paths.get(index).is_some_and(|p| *p == s.below_key)
    {
        return Ok(index);
    }
    let typed = match s.levels.first() {
        Some(host) => host.child_or_create(&s.type_path),
        // Not reached: the host's level is always first. Index 0 of an
        // empty table makes the caller skip the line.
        None => return Ok(0),
    };
    let level = if s.stype_path.is_empty() {
        typed
    } else {
        typed.child_or_create(&s.stype_path)
    };
    let index = s.levels.len();
    s.levels.push(level);
    match s.paths.get_mut(index) {
        Some(path) => {
            path.clear();
            path.push_str(&s.below_key);
        }
        None => s.paths.push(s.below_key.clone()),
    }
    s.below.insert(hash, index);
    Ok(index)
}

fn prepend_or_set(path: &mut String, value: &str) {
    if path.is_empty() {
        path.push_str(value);
    } else {
        path.insert_str(0, value);
    }
}

#[cfg(test)]
mod tests;
