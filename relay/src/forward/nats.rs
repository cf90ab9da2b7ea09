//! The NATS sink (spec `relay.md` §4.7, NATS egress): an upstream of type
//! `nats` publishes its batches to one subject.
//!
//! A batch is cut into messages no larger than the server's `max_payload`
//! (less a margin for headers) at line boundaries; lines without a
//! `cluster` tag get the record's default cluster written in as one, since
//! a message carries no query parameter.
//!
//! - **core**: the messages are published and the connection flushed;
//!   success means the bytes reached the server, nothing more. A subscriber
//!   that is down or slow loses them (at most once from here on).
//! - **jetstream**: each message carries `Nats-Msg-Id:
//!   <instance>:<upstream>:<first>-<last>:<n>`, and the batch counts as
//!   delivered only when every message's PubAck arrived (a duplicate PubAck,
//!   after a retry within the stream's de-duplication window, counts too).
//!   Until then the records stay queued: at least once into the stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use cc_common::lineproto::{escape_key, parse_lines};
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
            Some(js) => self.publish_jetstream(js, pieces, messages).await,
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

    async fn publish_core(&self, messages: Vec<Bytes>) -> Result<(), String> {
        for m in messages {
            self.client
                .publish(self.subject.clone(), m)
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
        pieces: &[Piece],
        messages: Vec<Bytes>,
    ) -> Result<(), String> {
        let first = pieces.first().map_or(0, |p| p.id);
        let last = pieces.last().map_or(0, |p| p.id);
        let mut acks = Vec::with_capacity(messages.len());
        for (n, m) in messages.into_iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{}:{first}-{last}:{n}", self.id_prefix).as_str(),
            );
            let ack = js
                .publish_with_headers(self.subject.clone(), headers, m)
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

/// The lines of `pieces` as messages of at most `limit` bytes, cut at line
/// boundaries, each line without a `cluster` tag given its piece's default
/// cluster. `Err(len)`: a single line of `len` bytes is larger than `limit`.
fn messages(pieces: &[Piece], limit: usize) -> Result<Vec<Bytes>, usize> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut line_buf = String::new();
    for piece in pieces {
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
            if current.len() + line.len() > limit {
                out.push(Bytes::from(std::mem::take(&mut current)));
            }
            current.extend_from_slice(line);
        }
    }
    if !current.is_empty() {
        out.push(Bytes::from(current));
    }
    Ok(out)
}

/// Writes `raw` (one `\n`-terminated line) into `out` with a `cluster` tag
/// added, if it has none; `None` if it has one (or cannot be parsed).
pub(crate) fn with_cluster(raw: &[u8], cluster: &str, out: &mut String) -> Option<()> {
    let line = parse_lines(raw).next()?.ok()?;
    if line.tag("cluster").is_some() {
        return None;
    }
    let text = line.raw();
    let fields = line.raw_fields();
    let offset = (fields.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let head = text.get(..offset)?.trim_end_matches(' ');
    let tail = text.get(offset..)?;
    out.clear();
    out.push_str(head);
    out.push_str(",cluster=");
    escape_key(out, cluster);
    out.push(' ');
    out.push_str(tail);
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
        }
    }

    fn text(messages: &[Bytes]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn the_default_cluster_becomes_a_tag_where_none_is_written() {
        let pieces = [piece(
            1,
            "fritz",
            "cpu_load,hostname=n1 value=1 10\nmem,cluster=alex,hostname=n2 value=2 10\nflops value=3\n",
        )];
        let out = text(&messages(&pieces, 1 << 20).unwrap());
        assert_eq!(
            out,
            [
                "cpu_load,hostname=n1,cluster=fritz value=1 10\nmem,cluster=alex,hostname=n2 value=2 10\nflops,cluster=fritz value=3\n"
            ]
        );
    }

    #[test]
    fn clusters_needing_escapes_are_escaped() {
        let pieces = [piece(1, "a b,c", "m value=1 1\n")];
        let out = text(&messages(&pieces, 1 << 20).unwrap());
        assert_eq!(out, ["m,cluster=a\\ b\\,c value=1 1\n"]);
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
    fn batches_are_cut_at_line_boundaries_under_the_limit() {
        let pieces = [
            piece(1, "", "a value=1 1\nb value=2 2\n"),
            piece(2, "", "c value=3 3\n"),
        ];
        // Each line is 12 bytes: two fit in 25, the third starts a message.
        let out = text(&messages(&pieces, 25).unwrap());
        assert_eq!(out, ["a value=1 1\nb value=2 2\n", "c value=3 3\n"]);
        assert_eq!(messages(&pieces, 11), Err(12));
    }
}
