//! Checkpoint cleanup: removes snapshot files that fell out of the retention
//! window, either deleting them or archiving them to Parquet first.
//!
//! # Which files
//!
//! In every `<root>/<cluster>/<host>/` directory, a snapshot file
//! (`<from>.json`, `<from>.bin`) is *selected* when its name timestamp is
//! non-zero and `≤ cutoff` **and** the end of its window (`to`, from the
//! file's header) is `≤ cutoff`. Upstream looks at the name only, so the one
//! file whose window straddles the cutoff is removed with data that is still
//! within retention; here such a file waits for a later round.
//!
//! Everything else is left alone: `current.wal`, `*.bin.tmp`,
//! `*.quarantined`, sub-directories and unknown files. A snapshot file whose
//! name is not a number, or that cannot be read, is kept and reported in
//! [`CleanupReport::errors`] (upstream aborts the whole round instead). A
//! missing root directory means there is nothing to do.
//!
//! To learn the window, a `.bin` file's 20-byte header is read; a `.json`
//! file is parsed (without building the tree in delete mode: its top-level
//! `from`/`to` are written last).
//!
//! # Delete mode
//!
//! Selected files are deleted, hosts `workers` at a time.
//!
//! # Archive mode
//!
//! Per cluster, the selected files of every host are read in full (hosts
//! `workers` at a time) and written, as they complete, as one row group per
//! host into `<archive>/<cluster>/<cutoff>.parquet` (Zstandard). The file is
//! written as `<cutoff>.parquet.tmp`, fsynced and renamed over any existing
//! file, and the directory fsynced; only then are the archived snapshot files
//! deleted. If writing fails, the temporary file is removed and every
//! snapshot file kept. If the cluster yields no row at all (no file, or only
//! NaNs), no Parquet file is written and the files are kept (as upstream).
//!
//! Schema ([`SCHEMA`]), all columns required:
//!
//! | column | type | content |
//! |---|---|---|
//! | `cluster` | BYTE_ARRAY (STRING) | cluster directory name |
//! | `hostname` | BYTE_ARRAY (STRING) | host directory name |
//! | `metric` | BYTE_ARRAY (STRING) | metric name |
//! | `scope` | BYTE_ARRAY (STRING) | `node` at host level, else [`parse_scope`] of the level name |
//! | `scope_id` | BYTE_ARRAY (STRING) | `""` at host level, else [`parse_scope`] of the level name |
//! | `timestamp` | INT64 | `start + i·frequency` |
//! | `frequency` | INT64 | seconds |
//! | `value` | FLOAT | the value as `f32`; NaN values are not written |
//!
//! Row order within a host: files by ascending name timestamp; within a
//! file, depth-first: a level's metrics by name (each in time order), then
//! its children by name.

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::{ColumnWriter, ColumnWriterImpl};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde::Deserialize;

use super::snapshot::{self, Format, SnapLevel, SnapMetric, Snapshot, SnapshotError};

/// The Parquet schema of an archive file (cc-metric-store's).
pub const SCHEMA: &str = "message metrics {
  required binary cluster (STRING);
  required binary hostname (STRING);
  required binary metric (STRING);
  required binary scope (STRING);
  required binary scope_id (STRING);
  required int64 timestamp;
  required int64 frequency;
  required float value;
}";

/// Values handed to a Parquet column writer at a time.
const BATCH: usize = 8192;

/// Level-name prefixes that carry an id, checked in this order, and the
/// scope each one stands for.
const SCOPE_PREFIXES: [(&str, &str); 6] = [
    ("socket", "socket"),
    ("memoryDomain", "memoryDomain"),
    ("core", "core"),
    ("hwthread", "hwthread"),
    ("cpu", "hwthread"),
    ("accelerator", "accelerator"),
];

/// What one cleanup round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Snapshot files removed from the checkpoint directory (deleted, or
    /// archived and then deleted): the number the one-shot command prints.
    pub files: usize,
    /// Rows written to Parquet files (always 0 in delete mode), to tell an
    /// operator how much the archive grew.
    pub rows: u64,
    /// Problems that were logged and skipped (each names the file or
    /// directory); the files concerned are kept for a later round.
    pub errors: Vec<String>,
}

impl CleanupReport {
    fn error(&mut self, message: String) {
        tracing::warn!("checkpoint cleanup: {message}");
        self.errors.push(message);
    }
}

/// Splits a level name into its Parquet `scope` and `scope_id`.
///
/// A name that starts with `socket`, `memoryDomain`, `core`, `hwthread`,
/// `cpu` or `accelerator` (checked in this order) followed by a digit gives
/// that prefix (`cpu` becomes `hwthread`) and the rest as id; any other name
/// is the scope itself, with an empty id. `socket12` → (`socket`, `12`),
/// `cpu0` → (`hwthread`, `0`), `socketX` → (`socketX`, ``).
#[must_use]
pub fn parse_scope(name: &str) -> (String, String) {
    for (prefix, scope) in SCOPE_PREFIXES {
        if let Some(id) = name.strip_prefix(prefix)
            && id.starts_with(|c: char| c.is_ascii_digit())
        {
            return (scope.to_owned(), id.to_owned());
        }
    }
    (name.to_owned(), String::new())
}

/// Removes the snapshot files under `root` whose data is entirely older than
/// `cutoff` (see the module documentation): deleted if `archive` is `None`,
/// else archived into `<archive>/<cluster>/<cutoff>.parquet` first. Up to
/// `workers` host directories are read at a time (at least one).
///
/// Problems with single files, hosts or clusters are logged, recorded in
/// [`CleanupReport::errors`] and skipped; the files concerned are kept.
///
/// # Errors
///
/// Only when `root` exists but cannot be listed.
pub fn cleanup(
    root: &Path,
    cutoff: i64,
    archive: Option<&Path>,
    workers: usize,
) -> io::Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let clusters = match list_dirs(root, &mut report) {
        Ok(clusters) => clusters,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    };
    match archive {
        None => {
            let mut hosts = Vec::new();
            for (_, dir) in &clusters {
                match list_dirs(dir, &mut report) {
                    Ok(list) => hosts.extend(list.into_iter().map(|(_, dir)| dir)),
                    Err(e) => report.error(describe(dir, "cannot list cluster directory", &e)),
                }
            }
            for_each_parallel(
                &hosts,
                workers,
                |dir| delete_host(dir, cutoff),
                |(deleted, errors)| {
                    report.files += deleted;
                    for e in errors {
                        report.error(e);
                    }
                    true
                },
            );
        }
        Some(archive) => {
            for (cluster, dir) in &clusters {
                match list_dirs(dir, &mut report) {
                    Ok(hosts) => {
                        archive_cluster(cluster, &hosts, cutoff, archive, workers, &mut report);
                    }
                    Err(e) => report.error(describe(dir, "cannot list cluster directory", &e)),
                }
            }
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------- listing

/// The sub-directories of `dir` with their names, sorted. Names that are
/// not UTF-8 are reported and skipped; other entries are ignored.
fn list_dirs(dir: &Path, report: &mut CleanupReport) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => out.push((name, entry.path())),
            Err(_) => report.error(format!(
                "{}: directory name is not UTF-8; skipped",
                entry.path().display()
            )),
        }
    }
    out.sort();
    Ok(out)
}

/// A snapshot file whose name is at or before the cutoff.
#[derive(Debug)]
struct Candidate {
    /// The name's timestamp (the window start).
    ts: i64,
    /// The full path.
    path: PathBuf,
    /// Its format, from the extension.
    format: Format,
}

/// The snapshot files of a host directory whose name timestamp is non-zero
/// and `≤ cutoff`, ascending. Snapshot-like names that are not numeric go
/// to `errors`.
fn candidates(dir: &Path, cutoff: i64, errors: &mut Vec<String>) -> Vec<Candidate> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(describe(dir, "cannot list host directory", &e));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(describe(dir, "cannot list host directory", &e));
                return Vec::new();
            }
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !snapshot::has_snapshot_extension(&name) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => continue,
            Ok(_) => {}
            Err(e) => {
                errors.push(describe(&entry.path(), "cannot stat", &e));
                continue;
            }
        }
        match snapshot::parse_file_name(&name) {
            Some((ts, format)) if ts != 0 && ts <= cutoff => out.push(Candidate {
                ts,
                path: entry.path(),
                format,
            }),
            Some(_) => {}
            None => errors.push(format!(
                "{}: snapshot file name is not a number; skipped",
                entry.path().display()
            )),
        }
    }
    out.sort_by(|a, b| (a.ts, &a.path).cmp(&(b.ts, &b.path)));
    out
}

/// `path: what: error: its sources…`.
fn describe(path: &Path, what: &str, err: &dyn Error) -> String {
    format!(
        "{}: {what}: {}",
        path.display(),
        cc_common::error_chain(err)
    )
}

// ---------------------------------------------------------------- delete

/// The top-level window end of a JSON snapshot (written last, after the
/// tree); everything else is skipped without being built.
#[derive(Deserialize)]
struct JsonWindow {
    #[serde(default)]
    to: i64,
}

/// The window end of a snapshot file.
fn read_window_end(path: &Path, format: Format) -> Result<i64, SnapshotError> {
    let file = File::open(path)?;
    match format {
        Format::Bin => Ok(snapshot::read_bin_window(file)?.1),
        Format::Json => {
            let window: JsonWindow = serde_json::from_reader(BufReader::new(file))?;
            Ok(window.to)
        }
    }
}

/// Deletes the selected files of one host directory: how many, and what
/// went wrong.
fn delete_host(dir: &Path, cutoff: i64) -> (usize, Vec<String>) {
    let mut errors = Vec::new();
    let mut deleted = 0;
    for candidate in candidates(dir, cutoff, &mut errors) {
        match read_window_end(&candidate.path, candidate.format) {
            Ok(to) if to > cutoff => {}
            Ok(_) => match fs::remove_file(&candidate.path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => errors.push(describe(&candidate.path, "cannot delete", &e)),
            },
            Err(e) => errors.push(describe(&candidate.path, "unreadable, kept", &e)),
        }
    }
    (deleted, errors)
}

// ---------------------------------------------------------------- archive

/// The selected, fully read snapshots of one host.
struct HostData {
    /// Host directory name.
    host: String,
    /// Snapshots in ascending name order, with their paths.
    files: Vec<(PathBuf, Snapshot)>,
    /// Problems met reading the directory.
    errors: Vec<String>,
}

/// Reads the selected files of one host directory.
fn read_host(host: &str, dir: &Path, cutoff: i64) -> HostData {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for candidate in candidates(dir, cutoff, &mut errors) {
        let read = File::open(&candidate.path)
            .map_err(SnapshotError::from)
            .and_then(|file| {
                snapshot::read(candidate.format, BufReader::with_capacity(64 * 1024, file))
            });
        match read {
            Ok(snap) if snap.to > cutoff => {}
            Ok(snap) => files.push((candidate.path, snap)),
            Err(e) => errors.push(describe(&candidate.path, "unreadable, kept", &e)),
        }
    }
    HostData {
        host: host.to_owned(),
        files,
        errors,
    }
}

/// An archive file being written.
struct Sink {
    /// The temporary file (renamed to `path` when complete).
    tmp: PathBuf,
    /// The final name.
    path: PathBuf,
    writer: SerializedFileWriter<BufWriter<File>>,
}

/// Archives the selected files of one cluster; see the module docs.
fn archive_cluster(
    cluster: &str,
    hosts: &[(String, PathBuf)],
    cutoff: i64,
    archive: &Path,
    workers: usize,
    report: &mut CleanupReport,
) {
    let cluster_bytes = Bytes::copy_from_slice(cluster.as_bytes());
    let dir = archive.join(cluster);
    let path = dir.join(format!("{cutoff}.parquet"));
    let mut sink: Option<Sink> = None;
    let mut failure: Option<String> = None;
    let mut archived: Vec<PathBuf> = Vec::new();
    let mut rows = 0u64;
    for_each_parallel(
        hosts,
        workers,
        |(host, dir)| read_host(host, dir, cutoff),
        |data| {
            for e in data.errors {
                report.error(e);
            }
            let runs = host_runs(&data.files);
            let host_rows: u64 = runs.iter().map(|r| r.rows as u64).sum();
            if host_rows > 0 {
                let written = match &mut sink {
                    Some(sink) => Ok(sink),
                    None => open_sink(&path).map(|s| sink.insert(s)),
                }
                .and_then(|sink| {
                    write_row_group(&mut sink.writer, &cluster_bytes, &data.host, &runs)
                        .map_err(io::Error::other)
                });
                if let Err(e) = written {
                    failure = Some(describe(&path, "cannot write archive", &e));
                    return false;
                }
                rows += host_rows;
            }
            archived.extend(data.files.into_iter().map(|(path, _)| path));
            true
        },
    );
    if let Some(message) = failure {
        if let Some(sink) = sink {
            let _ = fs::remove_file(&sink.tmp);
        }
        report.error(format!("{message}; checkpoint files of {cluster} kept"));
        return;
    }
    let Some(sink) = sink else {
        // No row (no file selected, or only gaps): nothing written, files kept.
        return;
    };
    let tmp = sink.tmp.clone();
    if let Err(e) = finish_sink(sink) {
        let _ = fs::remove_file(&tmp);
        report.error(format!(
            "{}; checkpoint files of {cluster} kept",
            describe(&path, "cannot write archive", &e)
        ));
        return;
    }
    report.rows += rows;
    for file in archived {
        match fs::remove_file(&file) {
            Ok(()) => report.files += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report.error(describe(&file, "archived but cannot delete", &e)),
        }
    }
}

/// Creates `<path>.tmp` and starts a Parquet file in it.
fn open_sink(path: &Path) -> io::Result<Sink> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(io::Error::other)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build(),
    );
    let file = File::create(&tmp)?;
    let writer =
        SerializedFileWriter::new(BufWriter::with_capacity(256 * 1024, file), schema, props)
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                io::Error::other(e)
            })?;
    Ok(Sink {
        tmp,
        path: path.to_path_buf(),
        writer,
    })
}

/// Writes the footer, fsyncs, renames into place and fsyncs the directory.
fn finish_sink(sink: Sink) -> io::Result<()> {
    let file = sink
        .writer
        .into_inner()
        .map_err(io::Error::other)?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&sink.tmp, &sink.path)?;
    if let Some(dir) = sink.path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One metric of one level of one file: a run of rows sharing every column
/// but `timestamp` and `value`.
struct Run<'a> {
    metric: Bytes,
    scope: Bytes,
    scope_id: Bytes,
    values: &'a SnapMetric,
    /// Non-NaN values in `values`.
    rows: usize,
}

/// The runs of a host's files, in row order.
fn host_runs(files: &[(PathBuf, Snapshot)]) -> Vec<Run<'_>> {
    fn walk<'a>(level: &'a SnapLevel, scope: Bytes, scope_id: Bytes, out: &mut Vec<Run<'a>>) {
        for (name, metric) in &level.metrics {
            let rows = metric.data.iter().filter(|v| !v.is_nan()).count();
            if rows > 0 {
                out.push(Run {
                    metric: Bytes::copy_from_slice(name.as_bytes()),
                    scope: scope.clone(),
                    scope_id: scope_id.clone(),
                    values: metric,
                    rows,
                });
            }
        }
        for (name, child) in &level.children {
            let (scope, id) = parse_scope(name);
            walk(child, Bytes::from(scope), Bytes::from(id), out);
        }
    }
    let mut out = Vec::new();
    for (_, snap) in files {
        walk(
            &snap.root,
            Bytes::from_static(b"node"),
            Bytes::new(),
            &mut out,
        );
    }
    out
}

/// Timestamps of the non-NaN values of a run.
fn run_times(m: &SnapMetric) -> impl Iterator<Item = i64> + '_ {
    m.data
        .iter()
        .zip(0i64..)
        .filter(|(v, _)| !v.is_nan())
        .map(|(_, i)| m.start.saturating_add(i.saturating_mul(m.frequency)))
}

/// Writes one row group holding `runs`.
fn write_row_group(
    writer: &mut SerializedFileWriter<BufWriter<File>>,
    cluster: &Bytes,
    host: &str,
    runs: &[Run<'_>],
) -> Result<(), ParquetError> {
    let host = Bytes::copy_from_slice(host.as_bytes());
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match (index, column.untyped()) {
            (0, ColumnWriter::ByteArrayColumnWriter(w)) => {
                write_repeated(w, runs.iter().map(|r| (cluster, r.rows)))?;
            }
            (1, ColumnWriter::ByteArrayColumnWriter(w)) => {
                write_repeated(w, runs.iter().map(|r| (&host, r.rows)))?;
            }
            (2, ColumnWriter::ByteArrayColumnWriter(w)) => {
                write_repeated(w, runs.iter().map(|r| (&r.metric, r.rows)))?;
            }
            (3, ColumnWriter::ByteArrayColumnWriter(w)) => {
                write_repeated(w, runs.iter().map(|r| (&r.scope, r.rows)))?;
            }
            (4, ColumnWriter::ByteArrayColumnWriter(w)) => {
                write_repeated(w, runs.iter().map(|r| (&r.scope_id, r.rows)))?;
            }
            (5, ColumnWriter::Int64ColumnWriter(w)) => {
                write_batched(w, runs.iter().flat_map(|r| run_times(r.values)))?;
            }
            (6, ColumnWriter::Int64ColumnWriter(w)) => {
                write_batched(
                    w,
                    runs.iter()
                        .flat_map(|r| std::iter::repeat_n(r.values.frequency, r.rows)),
                )?;
            }
            (7, ColumnWriter::FloatColumnWriter(w)) => {
                write_batched(
                    w,
                    runs.iter().flat_map(|r| {
                        r.values.data.iter().filter(|v| !v.is_nan()).map(|v| {
                            #[allow(clippy::cast_possible_truncation, reason = "the column is f32")]
                            let v = *v as f32;
                            v
                        })
                    }),
                )?;
            }
            _ => {
                return Err(ParquetError::General(format!(
                    "archive schema has an unexpected column {index}"
                )));
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    Ok(())
}

/// Writes each byte string `n` times.
fn write_repeated<'b>(
    w: &mut ColumnWriterImpl<'_, ByteArrayType>,
    items: impl Iterator<Item = (&'b Bytes, usize)>,
) -> Result<(), ParquetError> {
    write_batched(
        w,
        items.flat_map(|(bytes, n)| std::iter::repeat_n(ByteArray::from(bytes.clone()), n)),
    )
}

/// Writes `values` to a required column, [`BATCH`] at a time.
fn write_batched<T: parquet::data_type::DataType>(
    w: &mut ColumnWriterImpl<'_, T>,
    values: impl Iterator<Item = T::T>,
) -> Result<(), ParquetError> {
    let mut batch = Vec::with_capacity(BATCH);
    for v in values {
        batch.push(v);
        if batch.len() == BATCH {
            w.write_batch(&batch, None, None)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        w.write_batch(&batch, None, None)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- threads

/// Runs `work` on every item with up to `workers` threads and hands each
/// result to `consume` on the calling thread, in completion order. When
/// `consume` returns `false`, no further result is consumed (workers stop
/// after their current item).
fn for_each_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
    mut consume: impl FnMut(R) -> bool,
) {
    let workers = workers.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let claim = || items.get(next.fetch_add(1, Ordering::Relaxed));
    if workers == 1 {
        while let Some(item) = claim() {
            if !consume(work(item)) {
                return;
            }
        }
        return;
    }
    thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(workers);
        let mut spawned = 0;
        for i in 0..workers {
            let tx = tx.clone();
            let (claim, work) = (&claim, &work);
            let started = thread::Builder::new()
                .name(format!("cleanup-{i}"))
                .spawn_scoped(scope, move || {
                    while let Some(item) = claim() {
                        if tx.send(work(item)).is_err() {
                            break;
                        }
                    }
                });
            if started.is_ok() {
                spawned += 1;
            }
        }
        drop(tx);
        if spawned == 0 {
            // No thread could be started: do the work here.
            while let Some(item) = claim() {
                if !consume(work(item)) {
                    return;
                }
            }
            return;
        }
        // Consuming by value drops the receiver on an early stop, so that
        // blocked workers see the closed channel and finish.
        for result in rx {
            if !consume(result) {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests;
