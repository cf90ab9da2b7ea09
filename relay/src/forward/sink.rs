//! The sink seam: where a worker delivers its batches.
//!
//! A *sink* takes a batch of queued lines ([`Piece`]s, oldest first, one
//! default cluster) and reports one [`Attempt`]: delivered, refused with a
//! classification ([`Outcome`]: retry later, retry with the auth cap, split
//! out a poison line, shrink the batch), or not reached at all. The worker
//! ([`super::Worker`]) owns everything else: batching, backoff, bisection,
//! the dead-letter queue, acknowledging the queue after a delivery. So a
//! sink only speaks its protocol.
//!
//! Sinks: HTTP ([`HttpUpstream`]: `ccms-http` to a store, `relay-http` to
//! another relay) and NATS ([`NatsUpstream`]): core NATS reports
//! `Delivered` once `flush()` returned (the bytes reached the server,
//! nothing more) and `Failed` with reason `nats` otherwise; JetStream
//! reports `Delivered` only after every PubAck of the batch (published with
//! a `Nats-Msg-Id` so that a retry is de-duplicated).

use std::time::Duration;

pub use super::http::HttpUpstream;
pub use super::http::Piece;
pub use super::nats::NatsUpstream;
use super::retry::Outcome;

/// The result of one delivery attempt.
#[derive(Debug)]
pub enum Attempt {
    /// The upstream answered.
    Answered {
        /// What the answer means for the batch.
        outcome: Outcome,
        /// The `reason` label of `ccrelay_upstream_failures_total` when it
        /// was not delivered (`http_4xx`, `http_5xx`, `auth`).
        failure: Option<&'static str>,
        /// The least delay before a retry the upstream asked for.
        retry_after: Option<Duration>,
        /// The answer in a few words, for logs and `/status`
        /// (`HTTP 503: store is restarting`).
        detail: String,
        /// The start of the answer's body (for the dead-letter queue).
        body: Vec<u8>,
    },
    /// No answer: connection, TLS or timeout error.
    Failed {
        /// `connect`, `timeout`, `tls`, `nats` (the failure reason label).
        reason: &'static str,
        /// The error with its causes.
        message: String,
    },
}

/// Where one upstream's worker delivers.
#[derive(Debug)]
pub enum Sink {
    /// `ccms-http` or `relay-http`.
    Http(HttpUpstream),
    /// `nats`.
    Nats(Box<NatsUpstream>),
}

impl Sink {
    /// Where it delivers, for logs (no credentials).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Sink::Http(h) => h.display_url(),
            Sink::Nats(n) => n.describe.clone(),
        }
    }

    /// Delivers one batch.
    pub async fn send(&self, pieces: &[Piece]) -> Attempt {
        match self {
            Sink::Http(h) => h.send(pieces).await,
            Sink::Nats(n) => n.send(pieces).await,
        }
    }

    /// Whether the sink's connection is up, for sinks that keep one (NATS);
    /// `None` for the others.
    #[must_use]
    pub fn is_connected(&self) -> Option<bool> {
        match self {
            Sink::Http(_) => None,
            Sink::Nats(n) => Some(n.status.is_connected()),
        }
    }

    /// `host:port` to probe for reachability while the upstream is down
    /// (`None`: the sink cannot be probed; the worker sleeps its backoff).
    #[must_use]
    pub fn socket_target(&self) -> Option<String> {
        match self {
            Sink::Http(h) => h.socket_target(),
            // The client reconnects by itself; the backoff is slept out.
            Sink::Nats(_) => None,
        }
    }
}
