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
//! 3. Fields: only `value`, as float, integer or unsigned; the last one wins.
//! 4. Timestamp: a line without one takes the previous line's (the first
//!    line: the time the batch arrived).
//!
//! Deviations from upstream, each an improvement no client relies on:
//!
//! - A bad line does not stop the batch: every well-formed line is stored,
//!   and the batch is still answered with 400 naming the first bad line, so
//!   senders see the error.
//! - Timestamps in milliseconds, microseconds or nanoseconds are recognised
//!   by magnitude and converted to seconds (upstream silently uses "now").
//! - A line without a host, with an empty cluster, or with `..`, `/` or `\`
//!   in cluster or host is an error (upstream stores it, or skips it
//!   silently, and may then write checkpoints outside its directory).
//! - The `(cluster, host)` level is resolved per line, so lines that rely on
//!   the default cluster never land in the previous line's host.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Arc;

use cc_common::lineproto::{FieldValue, Line, Precision, parse_lines};

use crate::persist::{HostFiles, OwnedHostGuard, Persistence};
use crate::store::MetricStore;
use crate::tree::Level;
use foldhash::fast::RandomState;

/// Latest accepted timestamp in seconds (the year 5138): later ones, and
/// negative ones, are errors rather than slots no arithmetic can handle.
pub const MAX_TIMESTAMP: i64 = 100_000_000_000;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Non-blank, non-comment lines seen.
    pub lines: usize,
    /// Samples stored.
    pub written: usize,
    /// Lines of metrics that are not configured (skipped, not an error).
    pub unknown_metric: usize,
    /// Samples older than the newest chunk of their series (skipped).
    pub too_old: usize,
    /// Lines rejected as invalid.
    pub invalid: usize,
    /// The first invalid line's message.
    pub first_error: Option<String>,
    /// Writing the WAL failed: the samples are in memory but not on disk.
    pub wal_error: Option<String>,
}

impl IngestReport {
    /// The error text for a 400 answer, if any line was invalid.
    #[must_use]
    pub fn error_message(&self) -> Option<String> {
        let first = self.first_error.as_ref()?;
        Some(match self.invalid {
            0 | 1 => first.clone(),
            n => format!("{first} (and {} more invalid lines)", n - 1),
        })
    }

    fn reject(&mut self, message: impl FnOnce() -> String) {
        self.invalid += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
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
                let measurement = measurement_of(body, e.offset);
                if store.registry().id(&measurement).is_none() {
                    report.unknown_metric += 1;
                    store.note_unknown_metric(&measurement);
                } else {
                    report.reject(|| e.to_string());
                }
                continue;
            }
        };
        let Some((metric, info)) = store.registry().lookup(line.measurement()) else {
            report.unknown_metric += 1;
            store.note_unknown_metric(line.measurement());
            continue;
        };
        let ts = match line.timestamp() {
            Some(ts) => Precision::seconds_by_magnitude(ts),
            None => last_ts,
        };
        if !(0..=MAX_TIMESTAMP).contains(&ts) {
            report.reject(|| {
                format!(
                    "at line {}: timestamp {ts} is out of range (0 to {MAX_TIMESTAMP} seconds)",
                    line.number()
                )
            });
            continue;
        }
        last_ts = ts;
        let value = match value_of(&line) {
            Ok(v) => v,
            Err(message) => {
                report.reject(|| format!("at line {}: {message}", line.number()));
                continue;
            }
        };
        let level = match resolve_level(store, &line, default_cluster, &mut scratch) {
            Ok(index) => match scratch.levels.get(index) {
                Some(level) => level,
                None => continue,
            },
            Err(message) => {
                report.reject(|| format!("at line {}: {message}", line.number()));
                continue;
            }
        };
        let stored = match (wal, &scratch.files) {
            (Some(wal), Some(files)) => {
                // The record goes into the host's WAL buffer and the sample
                // into memory under one lock, so that a snapshot of the host
                // (which takes the same lock) sees both or neither.
                let state = scratch.held.get_or_insert_with(|| files.lock_owned());
                let selector = selector(&scratch.type_path, &scratch.stype_path);
                let mark = state.mark();
                if let Err(e) = state.record(ts, line.measurement(), selector.as_slice(), value) {
                    report.reject(|| format!("at line {}: {e}", line.number()));
                    continue;
                }
                let stored = level.write_sample(metric, info.frequency, ts, value);
                if stored.is_err() {
                    // Not stored, so not journaled either.
                    state.rewind(mark);
                }
                if state.buffer_full()
                    && let Err(e) = wal.flush_wal(files, state)
                {
                    report.wal_error.get_or_insert_with(|| wal_error(files, &e));
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
            _ => level.write_sample(metric, info.frequency, ts, value),
        };
        match stored {
            Ok(()) => report.written += 1,
            Err(_) => report.too_old += 1,
        }
    }
    scratch.held = None;
    if let Some(wal) = wal {
        flush_touched(wal, &mut scratch.touched, &mut report);
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
            report
                .wal_error
                .get_or_insert_with(|| wal_error(&files, &e));
        }
    }
}

fn wal_error(files: &HostFiles, e: &std::io::Error) -> String {
    let message = format!(
        "cannot write the WAL of {}/{}: {e}",
        files.cluster(),
        files.host()
    );
    tracing::error!("{message}");
    message
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

/// The measurement of the line starting at `offset`, as far as it can be told
/// without parsing (up to the first space or comma).
fn measurement_of(body: &[u8], offset: usize) -> String {
    let rest = body.get(offset..).unwrap_or_default();
    let rest = rest
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .and_then(|p| rest.get(p..))
        .unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b',' | b'\n' | b'\r'))
        .unwrap_or(rest.len());
    String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned()
}

/// The sample value: the last `value` field, which must be numeric.
fn value_of(line: &Line<'_>) -> Result<f64, String> {
    let mut value = None;
    for (key, field) in line.fields() {
        if key != "value" {
            let host = line.tag("hostname").or_else(|| line.tag("host"));
            return Err(format!(
                "host {}: unknown field: '{key}' (value: {})",
                host.as_deref().unwrap_or(""),
                field_text(&field)
            ));
        }
        match field.as_f64() {
            Some(v) => value = Some(v),
            None => {
                let host = line.tag("hostname").or_else(|| line.tag("host"));
                return Err(format!(
                    "host {}: unsupported value type in message: {}",
                    host.as_deref().unwrap_or(""),
                    field.kind_name()
                ));
            }
        }
    }
    value.ok_or_else(|| "no 'value' field".to_owned())
}

fn field_text(field: &FieldValue<'_>) -> String {
    let mut out = String::new();
    cc_common::lineproto::write_field_value(&mut out, field);
    out.chars().take(40).collect()
}

/// Finds (creating as needed) the level a line's sample belongs to; returns
/// its index in `s.levels`.
fn resolve_level(
    store: &MetricStore,
    line: &Line<'_>,
    default_cluster: &str,
    s: &mut Scratch,
) -> Result<usize, String> {
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
    if s.host.is_empty() {
        return Err("line has no hostname (or host) tag".to_owned());
    }
    if s.cluster.is_empty() {
        return Err(format!(
            "host {}: no cluster (neither a cluster tag nor ?cluster=)",
            s.host
        ));
    }
    for name in [&s.cluster, &s.host] {
        if name.contains("..") || name.contains('/') || name.contains('\\') || name == "." {
            return Err(format!(
                "refusing cluster/host name {name:?}: it is '.' or contains '..', '/' or '\\'"
            ));
        }
    }
    if !matches!(&s.cached, Some((c, h)) if *c == s.cluster && *h == s.host) {
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
    let Some(host) = s.levels.first() else {
        return Err("internal error: no host level".to_owned());
    };
    let typed = host.child_or_create(&s.type_path);
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
