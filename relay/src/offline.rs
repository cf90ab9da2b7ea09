//! Offline maintenance commands (`cc-relay queue …`, `cc-relay dlq …`): they
//! open the relay's queue database directly, so they only work while the
//! service is stopped (sled holds an exclusive lock); the running service
//! shows the same numbers on `/status`.

use std::fmt::Write as _;

use crate::cli::{DlqCommand, QueueCommand};
use crate::config::Config;
use crate::queue::{Queue, QueueConfig, QueueError};

/// Why an offline command failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The queue could not be opened (is the service running?).
    #[error("opening the queue in {0} (is cc-relay still running?)")]
    Open(String, #[source] Box<QueueError>),
    /// An operation on the queue failed.
    #[error("queue operation failed")]
    Queue(#[from] Box<QueueError>),
    /// The upstream is not configured.
    #[error("no upstream named {0:?} in the configuration")]
    UnknownUpstream(String),
}

fn open(config: &Config) -> Result<Queue, OfflineError> {
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    Queue::open(&config.data_dir, &names, QueueConfig::default())
        .map_err(|e| OfflineError::Open(config.data_dir.display().to_string(), Box::new(e)))
}

fn known(config: &Config, upstream: &str) -> Result<(), OfflineError> {
    if config.upstreams.iter().any(|u| u.name == upstream) {
        Ok(())
    } else {
        Err(OfflineError::UnknownUpstream(upstream.to_owned()))
    }
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
            known(config, upstream)?;
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
            known(config, upstream)?;
            let removed = queue.drop_oldest(upstream, u64::MAX).map_err(Box::new)?;
            queue.flush().map_err(Box::new)?;
            let _ = writeln!(
                out,
                "purged {} records ({} lines) from {upstream}",
                removed.records, removed.lines
            );
        }
        QueueCommand::PurgeOrphans => {
            let purged = queue.purge_orphans().map_err(Box::new)?;
            queue.flush().map_err(Box::new)?;
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
    Ok(out)
}

/// Runs a `dlq` subcommand; returns what to print.
///
/// # Errors
///
/// See [`OfflineError`].
pub fn dlq(config: &Config, command: &DlqCommand) -> Result<String, OfflineError> {
    let queue = open(config)?;
    let mut out = String::new();
    match command {
        DlqCommand::Dump { upstream, limit } => {
            known(config, upstream)?;
            for (_, entry) in queue.dlq_entries(upstream, *limit).map_err(Box::new)? {
                let _ = writeln!(
                    out,
                    "# {} record {} status {} {}",
                    when(Some(entry.time_ms)),
                    entry.record_id,
                    entry
                        .status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    entry.reason
                );
                out.push_str(&String::from_utf8_lossy(&entry.lines));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}
