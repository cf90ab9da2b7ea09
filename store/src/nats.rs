//! NATS ingestion: line protocol published on the subjects of
//! `metric-store.nats-subscriptions` goes into the store, each message
//! decoded with the `cluster-tag` of the subscription it came through.
//!
//! # What is guaranteed
//!
//! Core NATS, **at most once**: plain subscriptions (no queue group, so every
//! store subscribed receives every message), no JetStream, no
//! acknowledgement. A message published while the store is down, or while
//! its connection is lost, is gone; so is a message dropped because the
//! store fell too far behind (counted and logged, see below). Everything
//! the store has taken from NATS is stored, also at a clean shutdown.
//!
//! # Flow
//!
//! ```text
//! NATS client ──subscribe(subject)──▶ Inbox (bounded) ──▶ dispatcher ──▶ lane 1..num-workers ──▶ ingest()
//!   (connects and reconnects          one per entry       one per entry   by the message's       on the blocking pool,
//!    in the background)                                                   subject                with the entry's cluster-tag
//! ```
//!
//! - [`cc_common::nats::connect`] returns at once and keeps (re)connecting
//!   forever, also when the server is down or refuses the credentials at
//!   start; it logs every change of state and error (the same error at most
//!   once a minute). The store serves HTTP meanwhile.
//! - Every entry gets its own subscription,
//!   [`Inbox`](cc_common::nats::Inbox) and dispatcher task; the dispatcher
//!   hands each message to a lane together with *its* entry's cluster tag,
//!   so two entries never mix their tags (upstream shares one queue between
//!   entries and applies a random one's tag). Decoding is the same
//!   [`ingest`](crate::ingest::ingest) as `POST /api/write`: a bad line is
//!   counted and skipped, the lines around it are stored.
//! - Concurrency: `num-workers` lanes decode in parallel, each lane one
//!   message after the other. All messages published on one subject (the
//!   subject of the message, which may differ from the subscription's when
//!   it has wildcards) go through the same lane, so they are stored in the
//!   order they arrived. Upstream decodes the messages of one subject in
//!   parallel; a series' later sample can then be stored first, and the
//!   earlier one is refused as older than its chunk (a new series, or a new
//!   chunk every 512 samples) or overwrites a newer value. One subject is
//!   thus decoded on one core (about a million lines a second); per-node
//!   subjects (`hpc.<node>` behind a subscription to `hpc.*`) and several
//!   subscriptions spread over the lanes.
//! - Invalid lines are logged at most once a minute per subscription, with
//!   the number of invalid messages not logged in between.
//!
//! # Subscribed before the restore, decoding after it
//!
//! [`NatsIngest::start`] subscribes *before* the checkpoints are restored;
//! messages arriving meanwhile wait in the inboxes, and
//! [`NatsIngest::start_decoding`] lets the decoders run once the restore has
//! finished. Decoding during the restore would lose data: a live sample
//! creates a head chunk starting at its own time, and then
//! - a restored snapshot chunk that starts earlier replaces it
//!   ([`Chain::merge_loaded`](crate::buffer::Chain::merge_loaded) drops every
//!   chunk starting at or after the loaded one: the live samples are lost),
//! - a replayed WAL record older than that head is refused as "from past"
//!   ([`Chain::write`](crate::buffer::Chain::write)), and
//! - the live sample's WAL record would be appended to a `current.wal` the
//!   restore is still reading (and may cut at a torn tail).
//!
//! Lines without a timestamp are stamped with the time their message
//! *arrived*, not the time it was decoded, so waiting out a restore does not
//! move them.
//!
//! # Inbox limits
//!
//! Per subscription the inbox holds at most [`INBOX_MESSAGES`] messages
//! (more with many workers: `num-workers · 256`, upstream's queue size) and
//! [`INBOX_BYTES_TOTAL`] payload bytes shared out among the subscriptions
//! (but at least [`INBOX_BYTES_MIN`] each). 131 072 messages are what a
//! cluster of 1000 nodes, each publishing one message every 10 s (100
//! messages/s), sends in almost 22 minutes, and in over 2 hours at one
//! message per node a minute: enough for the restore of a large store. At
//! 4 KiB per message (a node's ~100 node-level metrics as line protocol)
//! that is the 512 MiB byte cap; bigger messages reach the byte cap first.
//! Each waiting message costs some 300 bytes on top of its payload. Beyond
//! the limits the inbox drops the newest messages, counts them
//! ([`Status::dropped`]) and logs it; the client's own drops show as
//! slow-consumer events ([`Status::slow_consumer_events`]).
//!
//! # Shutdown
//!
//! [`NatsIngest::finish`] (when shutdown starts) drains the client: the
//! server is told to stop sending (`UNSUB`), messages already on their way
//! are delivered into the inboxes, the connection closes. If that does not
//! complete within [`DRAIN_WAIT`] (no server connection), reading stops
//! with what has arrived. Then every queued message is decoded, and only
//! then may the final checkpoint run.

use std::sync::Arc;
use std::time::Duration;

use cc_common::nats::{Auth, InboxLimits, NatsError, Options, Status, Tls, redact_server};
use cc_common::secret::Secret;

use crate::config::{Config, NatsConfig, NatsSubscription};
use crate::store::MetricStore;

mod decoders;
mod subscription;

pub use decoders::Decoders;
pub use subscription::{Counts, Subscription, decode};

/// The name the store's connection shows in the server's monitoring.
pub const CLIENT_NAME: &str = "cc-store";

/// Messages an inbox holds at least (see the module docs for the figure).
pub const INBOX_MESSAGES: usize = 131_072;

/// Payload bytes all inboxes together hold at most (unless there are more
/// than 32 subscriptions, see [`INBOX_BYTES_MIN`]).
pub const INBOX_BYTES_TOTAL: usize = 512 << 20;

/// Payload bytes one inbox holds at least, however many subscriptions share
/// [`INBOX_BYTES_TOTAL`].
pub const INBOX_BYTES_MIN: usize = 16 << 20;

/// Messages the NATS client buffers per subscription before it drops; the
/// inbox empties this buffer as messages arrive, so it only absorbs bursts.
pub const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// How long shutdown waits for the client to drain before it stops reading.
pub const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// A connection still down this long after start is reported.
const NOT_CONNECTED_WARNING: Duration = Duration::from_secs(10);

/// The client options for the `nats` section: its `address` (several
/// servers may be given separated by commas, as the Go client accepts),
/// user and password when both are set, the `.creds` file, and no TLS
/// beyond what a `tls://` address asks for.
#[must_use]
pub fn options(nats: &NatsConfig) -> Options {
    Options {
        servers: nats
            .address
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        auth: Auth {
            user_password: nats
                .user_password()
                .map(|(user, password)| (user.to_owned(), Secret::new(password))),
            creds_file: nats.creds_file_path.clone(),
            ..Auth::default()
        },
        tls: Tls::default(),
        client_name: CLIENT_NAME.to_owned(),
        subscription_capacity: SUBSCRIPTION_CAPACITY,
    }
}

/// The limits of each inbox for `workers` decoders and `subscriptions`
/// subscriptions (see the module docs).
#[must_use]
pub fn inbox_limits(workers: usize, subscriptions: usize) -> InboxLimits {
    InboxLimits {
        messages: INBOX_MESSAGES.max(workers.saturating_mul(256)),
        bytes: (INBOX_BYTES_TOTAL / subscriptions.max(1)).max(INBOX_BYTES_MIN),
    }
}

/// Why NATS ingestion could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The connection options can never work.
    #[error("cannot connect to NATS")]
    Connect(#[from] NatsError),
    /// No subscription could be made.
    #[error("no NATS subscription could be made")]
    NoSubscriptions,
}

/// NATS ingestion of a running store.
#[derive(Debug)]
pub struct NatsIngest {
    client: async_nats::Client,
    status: Arc<Status>,
    decoders: Decoders,
}

impl NatsIngest {
    /// Connects and subscribes as `config` says (nothing when it has no
    /// `nats` section or no `nats-subscriptions`). Messages wait until
    /// [`Self::start_decoding`]. Problems are logged: the store runs on
    /// without NATS (as upstream) when the options can never work, and
    /// keeps trying to connect otherwise.
    pub async fn start(config: &Config, store: &Arc<MetricStore>) -> Option<NatsIngest> {
        let nats = config.nats.as_ref()?;
        let entries = &config.metric_store.nats_subscriptions;
        if entries.is_empty() {
            tracing::info!(
                "nats is configured but metric-store.nats-subscriptions is empty: not connecting to NATS"
            );
            return None;
        }
        match Self::subscribe(nats, entries, config.metric_store.workers(), store).await {
            Ok(ingest) => Some(ingest),
            Err(e) => {
                tracing::error!(
                    error = %cc_common::error_chain(&e),
                    "NATS ingestion is off (send line protocol to /api/write instead)"
                );
                None
            }
        }
    }

    /// Connects to `nats` (in the background) and subscribes to every entry.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the options can never work or no subject can be
    /// subscribed to.
    pub async fn subscribe(
        nats: &NatsConfig,
        entries: &[NatsSubscription],
        workers: usize,
        store: &Arc<MetricStore>,
    ) -> Result<NatsIngest, StartError> {
        let options = options(nats);
        let servers: Vec<String> = options.servers.iter().map(|s| redact_server(s)).collect();
        let status = Arc::new(Status::new("store"));
        let (client, _credentials) =
            cc_common::nats::connect(&options, Arc::clone(&status)).await?;
        let limits = inbox_limits(workers, entries.len());
        let mut decoders = Decoders::new(Arc::clone(store), Arc::clone(&status), limits, workers);
        for (i, entry) in entries.iter().enumerate() {
            if entries
                .get(..i)
                .is_some_and(|before| before.iter().any(|e| e.subscribe_to == entry.subscribe_to))
            {
                tracing::warn!(
                    subject = %entry.subscribe_to,
                    "subscribing to the same NATS subject again: every message on it is stored \
                     once per subscription, each with its own cluster-tag for lines without a cluster tag"
                );
            }
            match client.subscribe(entry.subscribe_to.clone()).await {
                Ok(subscriber) => decoders.add(subscriber, Arc::new(Subscription::new(entry))),
                Err(e) => tracing::error!(
                    subject = %entry.subscribe_to,
                    error = %e,
                    "cannot subscribe to this NATS subject; its messages are not ingested"
                ),
            }
        }
        if decoders.subscriptions().is_empty() {
            return Err(StartError::NoSubscriptions);
        }
        tracing::info!(
            servers = ?servers,
            subjects = ?decoders.subscriptions().iter().map(|s| s.subject()).collect::<Vec<_>>(),
            workers,
            inbox_messages = limits.messages,
            inbox_mb = limits.bytes >> 20,
            "NATS: subscribed; connecting in the background (core NATS, at most once, no acknowledgement)"
        );
        let watch = Arc::clone(&status);
        tokio::spawn(async move {
            tokio::time::sleep(NOT_CONNECTED_WARNING).await;
            if !watch.is_connected() {
                tracing::warn!(
                    servers = ?servers,
                    last_error = watch.last_error().as_deref().unwrap_or("none"),
                    "NATS: still not connected; the store keeps trying, and ingests once connected"
                );
            }
        });
        Ok(NatsIngest {
            client,
            status,
            decoders,
        })
    }

    /// The connection's state and the messages dropped by the inboxes.
    #[must_use]
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// The subscriptions and their counters.
    #[must_use]
    pub fn subscriptions(&self) -> &[Arc<Subscription>] {
        self.decoders.subscriptions()
    }

    /// Lets the decoders run (after the restore).
    pub fn start_decoding(&self) {
        let waiting: u64 = self
            .subscriptions()
            .iter()
            .map(|s| s.counts().received)
            .sum();
        tracing::info!(
            received_during_restore = waiting,
            dropped = self.status.dropped(),
            "NATS: decoding messages"
        );
        self.decoders.open();
    }

    /// Stops ingestion at shutdown: drains the client (no new messages,
    /// those on their way are taken), decodes everything taken, and logs a
    /// summary. Returns once every taken message is in the store.
    pub async fn finish(mut self) {
        match tokio::time::timeout(DRAIN_WAIT, self.client.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "NATS drain failed"),
            Err(_) => tracing::warn!("NATS drain could not be requested in time"),
        }
        if !self.decoders.finish(DRAIN_WAIT).await {
            tracing::warn!(
                "NATS drain did not complete (no server connection?): stopped reading with what had arrived"
            );
        }
        for sub in self.subscriptions() {
            let c = sub.counts();
            tracing::info!(
                subject = %sub.subject(),
                cluster_tag = %sub.cluster_tag(),
                received = c.received,
                messages = c.messages,
                mb = c.bytes / 1_000_000,
                lines = c.lines,
                stored = c.written,
                invalid_lines = c.invalid_lines,
                unknown_metric = c.unknown_metric,
                too_old = c.too_old,
                wal_errors = c.wal_errors,
                "NATS subscription ended"
            );
        }
        tracing::info!(
            dropped = self.status.dropped(),
            slow_consumer_events = self.status.slow_consumer_events(),
            reconnects = self.status.reconnects(),
            "NATS ingestion stopped"
        );
    }
}

#[cfg(test)]
mod tests;
