//! What an operator does with dead letters (spec `relay.md` §4.7, §4.12):
//! export them as line protocol, replay them into their upstream's queue,
//! purge them. Shared by the offline `cc-relay dlq …` commands
//! ([`crate::offline`]) and the admin endpoints of a running relay
//! (`/dlq/<upstream>`, see [`crate::admin`]).
//!
//! A dead letter is one line an upstream refused (`rejected`, `too_large`)
//! or a queue record that failed to decode (`corrupt`, kept verbatim). Only
//! the former are line protocol: export and replay pass over corrupt
//! records and count them as skipped; `dlq dump` shows them and purge
//! removes them.

use crate::queue::{DeadLetterEntry, Queue, QueueError};

/// A name that is not one of the configured upstreams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no upstream named {name:?} in the configuration (configured: {configured})")]
pub struct UnknownUpstream {
    /// The name asked for.
    pub name: String,
    /// The configured names, comma-separated (`none` if there are none).
    pub configured: String,
}

/// Checks that `name` is one of `configured`.
///
/// # Errors
///
/// [`UnknownUpstream`], naming the configured upstreams.
pub fn check_upstream<'a>(
    name: &str,
    configured: impl IntoIterator<Item = &'a str>,
) -> Result<(), UnknownUpstream> {
    let names: Vec<&str> = configured.into_iter().collect();
    if names.contains(&name) {
        return Ok(());
    }
    Err(UnknownUpstream {
        name: name.to_owned(),
        configured: if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
    })
}

/// Dead-lettered lines as line protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// The lines, each `\n`-terminated.
    pub text: Vec<u8>,
    /// How many lines `text` holds.
    pub lines: u64,
    /// Entries passed over: corrupt records, entries that do not decode.
    pub skipped: u64,
}

/// The lines of up to `max` dead letters of `upstream`, oldest first, one per
/// line, as they would be sent again: a line without a `cluster` tag whose
/// record had a default cluster (the `?cluster=` its requests carried) gets
/// it as a `cluster` tag, as the NATS sink writes it, so that every line
/// stands on its own (e.g. for `curl --data-binary @file`).
///
/// # Errors
///
/// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`],
/// [`QueueError::Storage`].
pub fn export(queue: &Queue, upstream: &str, max: usize) -> Result<Export, QueueError> {
    let (entries, skipped) = queue.dlq_replayable(upstream, max)?;
    let mut out = Export {
        skipped,
        ..Export::default()
    };
    let mut buf = String::new();
    for (_, entry) in &entries {
        out.lines += write_lines(entry, &mut out.text, &mut buf);
    }
    Ok(out)
}

/// Appends the lines of `entry` to `out` (see [`export`]); returns how many.
fn write_lines(entry: &DeadLetterEntry, out: &mut Vec<u8>, buf: &mut String) -> u64 {
    let mut n = 0;
    for raw in entry.lines.split_inclusive(|b| *b == b'\n') {
        let line = if entry.cluster.is_empty() {
            raw
        } else {
            crate::forward::nats::with_cluster(raw, &entry.cluster, buf)
                .map_or(raw, |()| buf.as_bytes())
        };
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Origin, QueueConfig};

    fn origin(cluster: &str) -> Origin<'_> {
        Origin {
            record_id: 1,
            cluster,
            hops: 0,
        }
    }

    #[test]
    fn unknown_upstream_names_the_configured_ones() {
        assert!(check_upstream("store", ["a", "store"]).is_ok());
        let e = check_upstream("stor", ["store", "backup"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no upstream named \"stor\" in the configuration (configured: store, backup)"
        );
        let none = check_upstream("x", []).unwrap_err();
        assert!(none.to_string().ends_with("(configured: none)"), "{none}");
    }

    #[test]
    fn export_writes_lines_alone_with_their_default_cluster_and_skips_corrupt_records() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), &["a".to_owned()], QueueConfig::default()).unwrap();
        q.dead_letter(
            "a",
            origin("fritz"),
            b"m,hostname=h foo=1 1\n",
            "rejected",
            None,
        )
        .unwrap();
        q.dead_letter(
            "a",
            origin("fritz"),
            b"m,cluster=alex,hostname=h foo=2 2\n",
            "rejected",
            Some(400),
        )
        .unwrap();
        q.dead_letter("a", origin(""), b"m,hostname=h foo=3 3", "rejected", None)
            .unwrap();
        q.insert_raw_for_test("a", 1_000_000, &[0xFF, 1, 2]);
        // A peek moves the undecodable record to the dead-letter tree.
        assert!(q.peek_batch("a", 10, u64::MAX, None).unwrap().is_empty());
        let all = export(&q, "a", usize::MAX).unwrap();
        assert_eq!(
            String::from_utf8(all.text).unwrap(),
            "m,cluster=fritz,hostname=h foo=1 1\n\
             m,cluster=alex,hostname=h foo=2 2\n\
             m,hostname=h foo=3 3\n"
        );
        assert_eq!((all.lines, all.skipped), (3, 1));
        let one = export(&q, "a", 1).unwrap();
        assert_eq!(one.lines, 1);
        assert!(matches!(
            export(&q, "b", 1),
            Err(QueueError::UnknownUpstream { .. })
        ));
    }
}
