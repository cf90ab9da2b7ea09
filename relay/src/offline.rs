//! Offline maintenance commands (`cc-relay queue …`, `cc-relay dlq …`): they
//! open the relay's queue database directly, so they only work while the
//! service is stopped (sled holds an exclusive lock, and these commands say
//! so when they meet it); the running service shows the same numbers on
//! `/status` and offers the dead-letter commands on its admin listener
//! (`/dlq/<upstream>`).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::{DlqCommand, QueueCommand};
use crate::config::Config;
use crate::dead_letters::{self, UnknownUpstream};
use crate::queue::{Queue, QueueError};

/// Why an offline command failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Another process holds the queue database.
    #[error(
        "the queue database in {0} is locked by another process: is cc-relay still running? \
         Stop the service first (e.g. `systemctl stop cc-relay`); a running relay shows its \
         queues on /status and offers the dead-letter commands on its admin listener \
         (GET /dlq/UPSTREAM, POST /dlq/UPSTREAM/replay, POST /dlq/UPSTREAM/purge)"
    )]
    Locked(String),
    /// The queue could not be opened.
    #[error("opening the queue in {0}")]
    Open(String, #[source] Box<QueueError>),
    /// An operation on the queue failed.
    #[error("queue operation failed")]
    Queue(#[from] Box<QueueError>),
    /// The upstream is not configured.
    #[error(transparent)]
    UnknownUpstream(#[from] UnknownUpstream),
    /// The output file could not be written.
    #[error("writing {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What an offline command prints: `stdout` is its result (for `dlq export`
/// the lines and nothing else), `stderr` a summary for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Printed {
    /// For stdout.
    pub stdout: Vec<u8>,
    /// For stderr (empty: nothing).
    pub stderr: String,
}

fn open(config: &Config) -> Result<Queue, OfflineError> {
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let dir = config.data_dir.display().to_string();
    Queue::open(&config.data_dir, &names, crate::app::queue_config(config)).map_err(|e| match e {
        QueueError::Locked { .. } => OfflineError::Locked(dir),
        e => OfflineError::Open(dir, Box::new(e)),
    })
}

/// Flushes what the command wrote and leaves the clean-shutdown flag as the
/// relay left it (opening clears it), so that the next start does not report
/// an unclean stop that did not happen.
fn close(queue: &Queue) -> Result<(), OfflineError> {
    if queue.previous_shutdown_clean() == Some(true) {
        queue.mark_clean_shutdown().map_err(Box::new)?;
    } else {
        queue.flush().map_err(Box::new)?;
    }
    Ok(())
}

fn known(config: &Config, upstream: &str) -> Result<(), OfflineError> {
    dead_letters::check_upstream(upstream, config.upstreams.iter().map(|u| u.name.as_str()))?;
    Ok(())
}

fn when(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        },
    )
}

/// Runs a `queue` subcommand; returns what to print.
///
/// # Errors
///
/// See [`OfflineError`].
pub fn queue(config: &Config, command: &QueueCommand) -> Result<String, OfflineError> {
    if let QueueCommand::Dump { upstream, .. } | QueueCommand::Purge { upstream } = command {
        known(config, upstream)?;
    }
    let queue = open(config)?;
    let mut out = String::new();
    match command {
        QueueCommand::Stats => {
            let _ = writeln!(
                out,
                "upstream\trecords\tlines\tstored_bytes\traw_bytes\toldest"
            );
            for (name, s) in queue.stats() {
                let _ = writeln!(
                    out,
                    "{name}\t{}\t{}\t{}\t{}\t{}",
                    s.records,
                    s.lines,
                    s.stored_bytes,
                    s.raw_bytes,
                    when(s.oldest_ingest_ms)
                );
            }
            for o in queue.orphans() {
                let _ = writeln!(
                    out,
                    "{} (orphan: not in the configuration)\t{}\t-\t{}\t-\t-",
                    o.upstream, o.records, o.stored_bytes
                );
            }
        }
        QueueCommand::Dump { upstream, limit } => {
            let mut after = None;
            let mut printed = 0usize;
            'outer: loop {
                let batch = queue
                    .peek_batch(upstream, 256, u64::MAX, after)
                    .map_err(Box::new)?;
                if batch.is_empty() {
                    break;
                }
                for (id, record) in batch {
                    after = Some(id);
                    for line in String::from_utf8_lossy(record.payload()).lines() {
                        if printed >= *limit {
                            break 'outer;
                        }
                        let _ = writeln!(out, "{line}");
                        printed += 1;
                    }
                }
            }
        }
        QueueCommand::Purge { upstream } => {
            let removed = queue.drop_oldest(upstream, u64::MAX).map_err(Box::new)?;
            let _ = writeln!(
                out,
                "purged {} records ({} lines) from {upstream}",
                removed.records, removed.lines
            );
        }
        QueueCommand::PurgeOrphans => {
            let purged = queue.purge_orphans().map_err(Box::new)?;
            let _ = writeln!(
                out,
                "purged orphan queues: {}",
                if purged.is_empty() {
                    "none".to_owned()
                } else {
                    purged.join(", ")
                }
            );
        }
    }
    close(&queue)?;
    Ok(out)
}

/// Runs a `dlq` subcommand; returns what to print.
///
/// # Errors
///
/// See [`OfflineError`].
pub fn dlq(config: &Config, command: &DlqCommand) -> Result<Printed, OfflineError> {
    let (DlqCommand::Dump { upstream, .. }
    | DlqCommand::Export { upstream, .. }
    | DlqCommand::Replay { upstream, .. }
    | DlqCommand::Purge { upstream }) = command;
    known(config, upstream)?;
    let queue = open(config)?;
    let mut out = Printed::default();
    match command {
        DlqCommand::Dump { upstream, limit } => {
            let mut text = String::new();
            for (_, entry) in queue.dlq_entries(upstream, *limit).map_err(Box::new)? {
                let _ = write!(
                    text,
                    "# {} record {} status {}",
                    when(Some(entry.time_ms)),
                    entry.record_id,
                    entry
                        .status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                );
                if !entry.cluster.is_empty() {
                    let _ = write!(text, " cluster {}", entry.cluster);
                }
                let _ = writeln!(text, " {}", entry.reason);
                text.push_str(&String::from_utf8_lossy(&entry.lines));
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            out.stdout = text.into_bytes();
        }
        DlqCommand::Export {
            upstream,
            output,
            limit,
        } => {
            let export = dead_letters::export(&queue, upstream, limit.unwrap_or(usize::MAX))
                .map_err(Box::new)?;
            let _ = write!(
                out.stderr,
                "exported {} dead-lettered lines of {upstream}",
                export.lines
            );
            match output {
                Some(path) => {
                    std::fs::write(path, &export.text).map_err(|source| OfflineError::Write {
                        path: path.clone(),
                        source,
                    })?;
                    let _ = write!(out.stderr, " to {}", path.display());
                }
                None => out.stdout = export.text,
            }
            skipped_note(&mut out.stderr, export.skipped);
        }
        DlqCommand::Replay { upstream, limit } => {
            let replayed = queue
                .dlq_replay(
                    upstream,
                    limit.unwrap_or(usize::MAX),
                    &crate::app::split_limits(config),
                )
                .map_err(Box::new)?;
            let left = queue.dlq_len(upstream).map_err(Box::new)?;
            let mut text = format!(
                "replayed {} dead-lettered lines into the queue of {upstream} (forwarded at the \
                 next start); {left} dead letters left",
                replayed.lines
            );
            skipped_note(&mut text, replayed.skipped);
            out.stdout = text.into_bytes();
        }
        DlqCommand::Purge { upstream } => {
            let purged = queue.dlq_purge(upstream).map_err(Box::new)?;
            out.stdout =
                format!("purged {} dead letters of {upstream}\n", purged.entries).into_bytes();
        }
    }
    close(&queue)?;
    Ok(out)
}

/// Ends a summary with the corrupt records passed over, if any, and a newline.
fn skipped_note(text: &mut String, skipped: u64) {
    if skipped > 0 {
        let _ = write!(
            text,
            "; {skipped} entries skipped, which are not line protocol (corrupt records: \
             `dlq dump` shows them, `dlq purge` removes them)"
        );
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
}
