//! The NATS sink (spec `relay.md` §4.7, NATS egress): an upstream of type
//! `nats` publishes its batches to one subject.
//!
//! A message holds at most min(`batch.max_bytes`, the server's
//! `max_payload` less a margin for headers). Lines without a `cluster` tag
//! get the record's default cluster written in as one (the tags then sorted
//! by key), since a message carries no query parameter. A batch is one
//! message when it fits; one that does not is sent as several, each of
//! whole records. Only a record too large for any message, or a part of a
//! record left by the bisection around a refused line, goes in messages of
//! its own, cut between its lines.
//!
//! - **core**: the messages are published and the connection flushed;
//!   success means the bytes reached the server, nothing more. A subscriber
//!   that is down or slow loses them (at most once from here on).
//! - **jetstream**: each message carries `Nats-Msg-Id:
//!   <instance_id>:<upstream>:<first>-<last>`, the ids of the first and last
//!   record in it (a part of a record adds `:<line>`, the record's line it
//!   starts at, counted from 0), and the batch counts as delivered only when every
//!   message's PubAck arrived (a duplicate PubAck, after a retry within the
//!   stream's de-duplication window, counts too). Until then the records stay
//!   queued: at least once into the stream.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use cc_common::lineproto::{escape_key, escape_measurement, parse_lines};
use cc_common::nats::Status;

use super::http::Piece;
use super::retry::Outcome;
use super::sink::Attempt;

/// Room left in a message for headers and protocol.
const HEADROOM: usize = 1024;

/// A NATS upstream.
#[derive(Debug)]
pub struct NatsUpstream {
    /// The client.
    pub client: async_nats::Client,
    /// The JetStream context (`mode: jetstream`), or `None` (core).
    pub jetstream: Option<jetstream::Context>,
    /// The subject.
    pub subject: String,
    /// How long to wait for the flush or the PubAcks.
    pub ack_timeout: Duration,
    /// `batch.max_bytes`.
    pub max_bytes: usize,
    /// `<instance_id>:<upstream>`, the start of every `Nats-Msg-Id`.
    pub id_prefix: String,
    /// The connection's state.
    pub status: Arc<Status>,
    /// Where it publishes, for logs.
    pub describe: String,
}

impl NatsUpstream {
    /// Publishes one batch.
    pub async fn send(&self, pieces: &[Piece]) -> Attempt {
        if !self.status.is_connected() {
            let why = self
                .status
                .last_error()
                .map_or_else(String::new, |e| format!(" ({e})"));
            return Attempt::Failed {
                reason: "nats",
                message: format!("not connected to NATS{why}"),
            };
        }
        let server_max = self.client.max_payload().saturating_sub(HEADROOM).max(1);
        let limit = self.max_bytes.min(server_max).max(1);
        let messages = match messages(pieces, limit) {
            Ok(m) => m,
            Err(len) => {
                return Attempt::Answered {
                    outcome: Outcome::TooLarge,
                    failure: Some("nats"),
                    retry_after: None,
                    detail: format!(
                        "a line of {len} bytes does not fit in a NATS message ({limit} bytes)"
                    ),
                    body: Vec::new(),
                };
            }
        };
        let result = match &self.jetstream {
            None => self.publish_core(messages).await,
            Some(js) => self.publish_jetstream(js, messages).await,
        };
        match result {
            Ok(()) => Attempt::Answered {
                outcome: Outcome::Delivered,
                failure: None,
                retry_after: None,
                detail: String::new(),
                body: Vec::new(),
            },
            Err(message) => Attempt::Failed {
                reason: "nats",
                message,
            },
        }
    }

    async fn publish_core(&self, messages: Vec<Message>) -> Result<(), String> {
        for m in messages {
            self.client
                .publish(self.subject.clone(), m.body)
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        match tokio::time::timeout(self.ack_timeout, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("flush: {e}")),
            Err(_) => Err(format!("flush: no answer within {:?}", self.ack_timeout)),
        }
    }

    async fn publish_jetstream(
        &self,
        js: &jetstream::Context,
        messages: Vec<Message>,
    ) -> Result<(), String> {
        let mut acks = Vec::with_capacity(messages.len());
        for m in messages {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.id(&self.id_prefix).as_str());
            let ack = js
                .publish_with_headers(self.subject.clone(), headers, m.body)
                .await
                .map_err(|e| format!("JetStream publish: {e}"))?;
            acks.push(ack.into_future());
        }
        let all = futures_util::future::join_all(acks);
        match tokio::time::timeout(self.ack_timeout, all).await {
            Ok(results) => {
                for r in results {
                    r.map_err(|e| format!("JetStream PubAck: {e}"))?;
                }
                Ok(())
            }
            Err(_) => Err(format!("no PubAck within {:?}", self.ack_timeout)),
        }
    }
}

/// One message of a batch: whole records `first..=last`, or a part of
/// record `first` (= `last`) starting at its line `part` (counted from 0).
#[derive(Debug, PartialEq)]
struct Message {
    first: u64,
    last: u64,
    part: Option<u32>,
    body: Bytes,
}

impl Message {
    /// Its `Nats-Msg-Id`: the same for the same lines, whichever batch they
    /// are sent in, and different for different lines.
    fn id(&self, prefix: &str) -> String {
        let mut id = format!("{prefix}:{}-{}", self.first, self.last);
        if let Some(line) = self.part {
            let _ = write!(id, ":{line}");
        }
        id
    }
}

/// The lines of `pieces` as messages of at most `limit` bytes, each line
/// without a `cluster` tag given its piece's default cluster. Whole records
/// are packed together, in order; a part of a record (after bisection) and
/// a record larger than `limit` go in messages of their own, cut at line
/// boundaries. `Err(len)`: a single line of `len` bytes is larger than
/// `limit`.
fn messages(pieces: &[Piece], limit: usize) -> Result<Vec<Message>, usize> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut range: Option<(u64, u64)> = None;
    let mut record: Vec<u8> = Vec::new();
    let mut line_buf = String::new();
    let flush = |out: &mut Vec<Message>, current: &mut Vec<u8>, range: &mut Option<(u64, u64)>| {
        if let Some((first, last)) = range.take() {
            out.push(Message {
                first,
                last,
                part: None,
                body: Bytes::from(std::mem::take(current)),
            });
        }
    };
    for piece in pieces {
        record.clear();
        for raw in piece.body.split_inclusive(|b| *b == b'\n') {
            let line: &[u8] = if piece.cluster.is_empty() {
                raw
            } else {
                with_cluster(raw, &piece.cluster, &mut line_buf)
                    .map_or(raw, |()| line_buf.as_bytes())
            };
            if line.len() > limit {
                return Err(line.len());
            }
            record.extend_from_slice(line);
        }
        if record.is_empty() {
            continue;
        }
        if piece.part.is_none() && record.len() <= limit {
            if current.len() + record.len() > limit {
                flush(&mut out, &mut current, &mut range);
            }
            current.extend_from_slice(&record);
            range = Some(range.map_or((piece.id, piece.id), |(first, _)| (first, piece.id)));
            continue;
        }
        // A part of a record, or a record too large for one message: its
        // own messages, cut between lines, each named by its first line.
        flush(&mut out, &mut current, &mut range);
        let first_line = piece.part.unwrap_or(0);
        let mut part = Vec::new();
        let mut part_start = first_line;
        let numbered = (first_line..).zip(record.split_inclusive(|b| *b == b'\n'));
        for (line_no, line) in numbered {
            if !part.is_empty() && part.len() + line.len() > limit {
                out.push(Message {
                    first: piece.id,
                    last: piece.id,
                    part: Some(part_start),
                    body: Bytes::from(std::mem::take(&mut part)),
                });
                part_start = line_no;
            }
            part.extend_from_slice(line);
        }
        out.push(Message {
            first: piece.id,
            last: piece.id,
            part: Some(part_start),
            body: Bytes::from(part),
        });
    }
    flush(&mut out, &mut current, &mut range);
    Ok(out)
}

/// Writes `raw` (one `\n`-terminated line) into `out` with a `cluster` tag
/// added, if it has none; `None` if it has one (or cannot be parsed). The
/// tags are then in key order, as after any change of tags (spec step 7).
pub(crate) fn with_cluster(raw: &[u8], cluster: &str, out: &mut String) -> Option<()> {
    let line = parse_lines(raw).next()?.ok()?;
    let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = line.tags().collect();
    if tags.iter().any(|(k, _)| k == "cluster") {
        return None;
    }
    tags.push((Cow::Borrowed("cluster"), Cow::Borrowed(cluster)));
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    out.clear();
    escape_measurement(out, line.measurement());
    for (k, v) in &tags {
        out.push(',');
        escape_key(out, k);
        out.push('=');
        escape_key(out, v);
    }
    out.push(' ');
    out.push_str(line.raw_fields());
    if let Some(ts) = line.timestamp() {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(id: u64, cluster: &str, body: &str) -> Piece {
        Piece {
            id,
            cluster: cluster.to_owned(),
            hops: 0,
            ingest_ms: 0,
            lines: u32::try_from(body.lines().count()).unwrap(),
            body: body.as_bytes().to_vec(),
            part: None,
        }
    }

    fn text(messages: &[Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
            .collect()
    }

    fn ids(messages: &[Message]) -> Vec<String> {
        messages.iter().map(|m| m.id("relay1:up")).collect()
    }

    #[test]
    fn the_default_cluster_becomes_a_tag_where_none_is_written() {
        let pieces = [piece(
            1,
            "fritz",
            "cpu_load,hostname=n1 value=1 10\nmem,cluster=alex,hostname=n2 value=2 10\nflops value=3\nm,z=1,a=2 v=1,w=\"x y\" 11\n",
        )];
        let out = text(&messages(&pieces, 1 << 20).unwrap());
        assert_eq!(
            out,
            [
                "cpu_load,cluster=fritz,hostname=n1 value=1 10\nmem,cluster=alex,hostname=n2 value=2 10\nflops,cluster=fritz value=3\nm,a=2,cluster=fritz,z=1 v=1,w=\"x y\" 11\n"
            ]
        );
    }

    #[test]
    fn clusters_needing_escapes_are_escaped() {
        let pieces = [piece(1, "a b,c", "m\\ x value=1 1\n")];
        let out = text(&messages(&pieces, 1 << 20).unwrap());
        assert_eq!(out, ["m\\ x,cluster=a\\ b\\,c value=1 1\n"]);
    }

    #[test]
    fn lines_without_a_default_cluster_pass_unchanged() {
        let pieces = [piece(1, "", "m,hostname=n1  value=1 1\n")];
        assert_eq!(
            text(&messages(&pieces, 1 << 20).unwrap()),
            ["m,hostname=n1  value=1 1\n"]
        );
    }

    #[test]
    fn a_batch_that_fits_is_one_message_named_by_its_records() {
        let pieces = [
            piece(7, "", "a value=1 1\n"),
            piece(8, "", "b value=2 2\n"),
            piece(9, "", "c value=3 3\n"),
        ];
        let out = messages(&pieces, 1 << 20).unwrap();
        assert_eq!(ids(&out), ["relay1:up:7-9"]);
        assert_eq!(text(&out), ["a value=1 1\nb value=2 2\nc value=3 3\n"]);
    }

    #[test]
    fn larger_batches_are_cut_between_records_and_big_records_between_lines() {
        let pieces = [
            piece(1, "", "a value=1 1\n"),
            piece(2, "", "b value=2 2\n"),
            piece(3, "", "c value=3 3\n"),
            piece(4, "", "d value=4 4\ne value=5 5\nf value=6 6\n"),
            piece(5, "", "g value=7 7\n"),
        ];
        // Each line is 12 bytes: two fit in 25.
        let out = messages(&pieces, 25).unwrap();
        assert_eq!(
            ids(&out),
            [
                "relay1:up:1-2",
                "relay1:up:3-3",
                "relay1:up:4-4:0",
                "relay1:up:4-4:2",
                "relay1:up:5-5"
            ]
        );
        assert_eq!(
            text(&out),
            [
                "a value=1 1\nb value=2 2\n",
                "c value=3 3\n",
                "d value=4 4\ne value=5 5\n",
                "f value=6 6\n",
                "g value=7 7\n"
            ]
        );
        assert!(out.iter().all(|m| m.body.len() <= 25));
        assert_eq!(messages(&pieces, 11), Err(12));
    }

    #[test]
    fn the_parts_of_a_bisected_record_have_ids_of_their_own() {
        // A record of five lines split as the bisection splits it, each
        // part sent in a batch of its own: a stream that de-duplicates by
        // `Nats-Msg-Id` must keep every part.
        let record = piece(
            9,
            "",
            "a value=1 1\nb value=2 2\nc value=3 3\nd value=4 4\ne value=5 5\n",
        );
        let (left, right) = record.halves();
        let (right_left, right_right) = right.halves();
        let mut seen = Vec::new();
        for part in [left, right_left, right_right] {
            let out = messages(&[part], 1 << 20).unwrap();
            assert_eq!(out.len(), 1);
            seen.extend(ids(&out));
        }
        assert_eq!(
            seen,
            ["relay1:up:9-9:0", "relay1:up:9-9:2", "relay1:up:9-9:3"]
        );
        // The whole record keeps the plain form.
        let whole = piece(9, "", "a value=1 1\n");
        assert_eq!(
            ids(&messages(&[whole], 1 << 20).unwrap()),
            ["relay1:up:9-9"]
        );
    }
}
