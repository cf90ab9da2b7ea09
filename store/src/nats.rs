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
//! - Every entry gets its own subscription, [`Inbox`] and dispatcher task;
//!   the dispatcher hands each message to a lane together with *its*
//!   entry's cluster tag, so two entries never mix their tags (upstream
//!   shares one queue between entries and applies a random one's tag).
//!   Decoding is the same [`ingest`] as `POST /api/write`: a bad line is
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

use std::future::Future as _;
use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::Message;
use cc_common::nats::{
    Auth, Delivery, Inbox, InboxLimits, NatsError, Options, Status, Tls, redact_server,
};
use cc_common::secret::Secret;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use crate::config::{Config, NatsConfig, NatsSubscription};
use crate::ingest::{IngestReport, ingest};
use crate::store::MetricStore;

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

/// Invalid lines are logged at most this often per subscription.
const INVALID_LOG_EVERY: Duration = Duration::from_secs(60);

/// A connection still down this long after start is reported.
const NOT_CONNECTED_WARNING: Duration = Duration::from_secs(10);

/// Header carrying the arrival time (Unix seconds) of a message from its
/// subscription to its decoder. It never leaves the process.
const RECEIVED_HEADER: &str = "Cc-Store-Received";

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

/// One entry of `metric-store.nats-subscriptions` and what came through it.
#[derive(Debug)]
pub struct Subscription {
    subject: String,
    cluster_tag: String,
    received: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    lines: AtomicU64,
    written: AtomicU64,
    invalid_lines: AtomicU64,
    invalid_messages: AtomicU64,
    unknown_metric: AtomicU64,
    too_old: AtomicU64,
    wal_errors: AtomicU64,
    /// When invalid lines were last logged, and how many invalid messages
    /// went unlogged since.
    invalid_log: parking_lot::Mutex<(Option<Instant>, u64)>,
}

/// The counters of a [`Subscription`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages taken from NATS (some may still wait, or have been dropped).
    pub received: u64,
    /// Messages decoded.
    pub messages: u64,
    /// Payload bytes decoded.
    pub bytes: u64,
    /// Lines decoded.
    pub lines: u64,
    /// Samples stored.
    pub written: u64,
    /// Lines rejected as invalid.
    pub invalid_lines: u64,
    /// Messages with at least one invalid line.
    pub invalid_messages: u64,
    /// Lines of metrics that are not configured.
    pub unknown_metric: u64,
    /// Samples older than the newest chunk of their series.
    pub too_old: u64,
    /// Messages whose samples could not be written to the WAL.
    pub wal_errors: u64,
}

impl Subscription {
    /// A subscription for `entry`, with zero counts.
    #[must_use]
    pub fn new(entry: &NatsSubscription) -> Subscription {
        Subscription {
            subject: entry.subscribe_to.clone(),
            cluster_tag: entry.cluster_tag.clone().unwrap_or_default(),
            received: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            written: AtomicU64::new(0),
            invalid_lines: AtomicU64::new(0),
            invalid_messages: AtomicU64::new(0),
            unknown_metric: AtomicU64::new(0),
            too_old: AtomicU64::new(0),
            wal_errors: AtomicU64::new(0),
            invalid_log: parking_lot::Mutex::new((None, 0)),
        }
    }

    /// `subscribe-to`.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `cluster-tag` ("" when absent): the cluster of lines without a
    /// `cluster` tag.
    #[must_use]
    pub fn cluster_tag(&self) -> &str {
        &self.cluster_tag
    }

    /// The counters now.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            received: get(&self.received),
            messages: get(&self.messages),
            bytes: get(&self.bytes),
            lines: get(&self.lines),
            written: get(&self.written),
            invalid_lines: get(&self.invalid_lines),
            invalid_messages: get(&self.invalid_messages),
            unknown_metric: get(&self.unknown_metric),
            too_old: get(&self.too_old),
            wal_errors: get(&self.wal_errors),
        }
    }

    fn record(&self, bytes: usize, report: &IngestReport) {
        let add = |c: &AtomicU64, n: usize| {
            c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        add(&self.messages, 1);
        add(&self.bytes, bytes);
        add(&self.lines, report.lines);
        add(&self.written, report.written);
        add(&self.invalid_lines, report.invalid);
        add(&self.unknown_metric, report.unknown_metric);
        add(&self.too_old, report.too_old);
        if report.wal_error.is_some() {
            // `ingest` has logged it.
            add(&self.wal_errors, 1);
        }
        if report.invalid > 0 {
            add(&self.invalid_messages, 1);
            self.log_invalid(report);
        }
    }

    /// Logs a message's invalid lines, at most once a minute.
    fn log_invalid(&self, report: &IngestReport) {
        let mut log = self.invalid_log.lock();
        if log.0.is_some_and(|at| at.elapsed() < INVALID_LOG_EVERY) {
            log.1 += 1;
            return;
        }
        let unlogged = std::mem::take(&mut log.1);
        log.0 = Some(Instant::now());
        drop(log);
        tracing::warn!(
            subject = %self.subject,
            cluster_tag = %self.cluster_tag,
            invalid_lines = report.invalid,
            stored = report.written,
            error = report.first_error.as_deref().unwrap_or(""),
            unlogged_invalid_messages = unlogged,
            "NATS message with invalid lines (its valid lines are stored; \
             invalid messages are logged at most once a minute)"
        );
    }
}

/// Decodes one message into `store` with the cluster tag of `subscription`.
/// Lines without a timestamp get the message's arrival time (or now).
pub fn decode(store: &MetricStore, subscription: &Subscription, message: &Message) -> IngestReport {
    let now = received_at(message).unwrap_or_else(cc_common::time::now_secs);
    let report = ingest(store, &message.payload, &subscription.cluster_tag, now);
    subscription.record(message.payload.len(), &report);
    report
}

/// The arrival time stamped by [`Arrivals`].
fn received_at(message: &Message) -> Option<i64> {
    message
        .headers
        .as_ref()?
        .get(RECEIVED_HEADER)?
        .as_str()
        .parse()
        .ok()
}

/// A subscription's messages as they arrive: stamped with their arrival
/// time and counted. Ends when the subscription ends, or, once `stop` is
/// cancelled, as soon as no message is ready.
struct Arrivals<S> {
    inner: S,
    subscription: Arc<Subscription>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Dropped with the stream, which tells shutdown that reading ended.
    _alive: mpsc::Sender<()>,
}

impl<S> Stream for Arrivals<S>
where
    S: Stream<Item = Message> + Unpin,
{
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(mut message)) => {
                this.subscription.received.fetch_add(1, Ordering::Relaxed);
                message
                    .headers
                    .get_or_insert_default()
                    .insert(RECEIVED_HEADER, cc_common::time::now_secs().to_string());
                Poll::Ready(Some(message))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.stop.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A message waiting in a lane, with the subscription it came through.
type Job = (Arc<Subscription>, Delivery);

/// The lane of a message: one per (subscription, subject), so that the
/// messages of one subject are decoded in the order they arrived.
fn lane_of(subscription: usize, subject: &str, lanes: usize) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((subscription, subject));
    let lanes = u64::try_from(lanes.max(1)).unwrap_or(1);
    usize::try_from(hash % lanes).unwrap_or(0)
}

/// The decoding side, independent of the client: each subscription's inbox
/// and dispatcher task, and `num-workers` lanes that decode on the blocking
/// pool, each one message after the other. Nothing is decoded before
/// [`Self::open`].
#[derive(Debug)]
pub struct Decoders {
    status: Arc<Status>,
    limits: InboxLimits,
    /// The lanes' inputs; emptied by [`Self::finish`] so the lanes end.
    lanes: Vec<mpsc::Sender<Job>>,
    /// Cancelled when decoding may begin.
    opened: CancellationToken,
    tracker: TaskTracker,
    /// Cancelled to stop reading the subscriptions.
    stop_reading: CancellationToken,
    alive_tx: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
    subscriptions: Vec<Arc<Subscription>>,
}

impl Decoders {
    /// Decoders for `store` in `workers` lanes, with inboxes of `limits`
    /// whose drops are counted in `status`.
    #[must_use]
    pub fn new(
        store: Arc<MetricStore>,
        status: Arc<Status>,
        limits: InboxLimits,
        workers: usize,
    ) -> Decoders {
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let opened = CancellationToken::new();
        let tracker = TaskTracker::new();
        let lanes = (0..workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_BATCH);
                tracker.spawn(lane(rx, Arc::clone(&store), opened.clone()));
                tx
            })
            .collect();
        Decoders {
            status,
            limits,
            lanes,
            opened,
            tracker,
            stop_reading: CancellationToken::new(),
            alive_tx: Some(alive_tx),
            alive_rx,
            subscriptions: Vec::new(),
        }
    }

    /// Starts reading `messages` (a subscription) into a new inbox, and its
    /// dispatcher task, which hands each message to the lane of its subject
    /// together with `subscription` (and so its cluster tag).
    pub fn add<S>(&mut self, messages: S, subscription: Arc<Subscription>)
    where
        S: Stream<Item = Message> + Unpin + Send + 'static,
    {
        let Some(alive) = self.alive_tx.clone() else {
            return;
        };
        let arrivals = Arrivals {
            inner: messages,
            subscription: Arc::clone(&subscription),
            stop: Box::pin(self.stop_reading.clone().cancelled_owned()),
            _alive: alive,
        };
        let mut inbox = Inbox::drain(arrivals, self.limits, Arc::clone(&self.status));
        let index = self.subscriptions.len();
        self.subscriptions.push(Arc::clone(&subscription));
        let lanes = self.lanes.clone();
        self.tracker.spawn(async move {
            while let Some(delivery) = inbox.recv().await {
                let i = lane_of(index, &delivery.message.subject, lanes.len());
                let Some(lane) = lanes.get(i) else { return };
                if lane
                    .send((Arc::clone(&subscription), delivery))
                    .await
                    .is_err()
                {
                    // INVARIANT: lanes end only after every sender is gone.
                    tracing::error!(subject = %subscription.subject, "NATS decoding stopped");
                    return;
                }
            }
        });
    }

    /// The subscriptions added.
    #[must_use]
    pub fn subscriptions(&self) -> &[Arc<Subscription>] {
        &self.subscriptions
    }

    /// Lets decoding begin. Idempotent.
    pub fn open(&self) {
        self.opened.cancel();
    }

    /// Waits up to `wait` for every subscription stream to end, then stops
    /// reading them (taking what is ready), and decodes everything queued.
    /// Returns whether the streams ended by themselves.
    pub async fn finish(&mut self, wait: Duration) -> bool {
        self.alive_tx = None;
        let ended = tokio::time::timeout(wait, self.alive_rx.recv())
            .await
            .is_ok();
        if !ended {
            self.stop_reading.cancel();
            let _ = self.alive_rx.recv().await;
        }
        self.lanes.clear();
        self.open();
        self.tracker.close();
        self.tracker.wait().await;
        ended
    }
}

/// Messages a lane takes (and decodes in one blocking call) at a time, and
/// how many wait in it.
const LANE_BATCH: usize = 64;

/// One lane: from [`Decoders::open`] on, decodes its messages in order,
/// each batch of waiting ones in one call on the blocking pool.
async fn lane(mut rx: mpsc::Receiver<Job>, store: Arc<MetricStore>, opened: CancellationToken) {
    opened.cancelled().await;
    let mut batch = Vec::with_capacity(LANE_BATCH);
    while rx.recv_many(&mut batch, LANE_BATCH).await > 0 {
        let store = Arc::clone(&store);
        let work = move || {
            for (subscription, delivery) in batch.drain(..) {
                decode(&store, &subscription, &delivery.message);
                // Frees the message's room in its inbox.
                drop(delivery);
            }
            batch
        };
        batch = match tokio::task::spawn_blocking(work).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "NATS decoding failed");
                Vec::with_capacity(LANE_BATCH)
            }
        };
    }
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
        let client = cc_common::nats::connect(&options, Arc::clone(&status)).await?;
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
