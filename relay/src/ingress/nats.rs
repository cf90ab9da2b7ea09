//! Sources over NATS (spec `relay.md` §4.4): core subscriptions and
//! JetStream durable pull consumers, each a
//! [source](crate::runtime#the-source-seam).
//!
//! **Core mode.** One subscription per configured subject, in the queue
//! group (`queue_group`, default `cc-relay`: relays sharing it each get a
//! share of the messages; `null`: every relay gets every message). Messages
//! are drained at once into an [`Inbox`] so that the client never drops
//! silently, then handed to the runtime in batches: every message waiting
//! for a subject is joined into one batch with that subject's default
//! cluster. Nobody can be told about a refusal, so a message refused by the
//! runtime (disk limits, a full `reject_new` queue) or larger than
//! `max_message_bytes` is dropped and counted. Delivery into the relay is
//! at most once.
//!
//! **JetStream mode.** The relay binds to (or creates) the durable pull
//! consumer on the stream and pulls messages; each message is acknowledged
//! only after its lines are on disk, naked with a delay when the runtime
//! refuses it for now (so the stream keeps it), and terminated when it can
//! never be taken (too large, or invalid with `invalid_lines: reject`).
//! Messages not acknowledged within `ack_wait` (a relay killed mid-batch)
//! are delivered again, to this relay or another one on the same durable:
//! at least once from the stream, duplicates possible.
//!
//! In a JetStream cluster the server answers nothing to a pull request it
//! loses (the consumer had no leader yet, or its leader's server died), so
//! the input pulls only once the bound consumer reports a leader, binds
//! again when the client reconnects while no message waits (the requests
//! of the old connection may be gone), gives up on a pull after two missed
//! idle heartbeats, and bounds every JetStream API request by
//! [`API_TIMEOUT`]: the input takes messages again a few seconds after the
//! cluster has elected new leaders.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer, stream};
use bytes::{Bytes, BytesMut};
use cc_common::nats::{self, Inbox, InboxLimits, Status};
use cc_common::telemetry::Throttle;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;

use crate::config::{JetStreamIngress, NatsIngress, StreamStorage};
use crate::metrics::IngressLabels;
use crate::nats::{SourceCounters, subject_matches};
use crate::runtime::{Batch, Refused, RuleGroup, Runtime, Turn};

/// Messages joined into one batch at most (core mode).
const BATCH_MAX_BYTES: usize = 4 << 20;

/// Batches of one subject (core) or one consumer (JetStream) stored at
/// once: the next ones are processed while the previous one waits for its
/// group commit. Their records are appended in the order the messages
/// arrived ([`Turn`]); with two on the way, waiting for that turn cost a
/// tenth of the core rate, with three none (`BENCHMARKS.md`).
const PIPELINE: usize = 3;

/// How long a core-mode batch may wait for its group commit.
const CORE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a message the runtime refused waits before JetStream delivers
/// it again.
const NAK_DELAY: Duration = Duration::from_secs(5);

/// Waiting before binding the consumer again after an error.
const REBIND_DELAY: Duration = Duration::from_secs(2);

/// Idle heartbeat asked for with each pull request. A pull request the
/// server lost (its consumer changed leader) shows only as two missed
/// heartbeats, after which the consumer is bound again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a JetStream API request (stream and consumer info, creation)
/// may take. A request to a consumer whose leader just died goes
/// unanswered; the client's own limit (10 s) would hold the input up for
/// long after a new leader is elected.
const API_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a bound consumer may stay without a leader before it is bound
/// again.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a consumer without a leader is asked again.
const LEADER_POLL: Duration = Duration::from_millis(100);

/// How long shutdown waits for a core input to unsubscribe and store what
/// it received.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages of a core subscription allowed to wait at most.
const INBOX_MAX_BYTES: usize = 256 << 20;

/// One NATS input, ready to run.
#[derive(Debug)]
pub struct NatsSource {
    /// The input's name (the `ingress` label).
    pub name: Arc<str>,
    /// The input's configuration.
    pub config: NatsIngress,
    /// The line rules of its upstreams.
    pub groups: Arc<[RuleGroup]>,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// Its connection's state.
    pub status: Arc<Status>,
    /// Its counters.
    pub counters: Arc<SourceCounters>,
    /// The connected client.
    pub client: async_nats::Client,
    /// Warnings about lost messages, at most once a minute.
    pub drop_log: Throttle,
}

impl NatsSource {
    /// Runs until `stop` fires. Core mode then unsubscribes and takes what
    /// was already received; JetStream mode stops pulling (messages on the
    /// way are delivered again later).
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        match this
            .config
            .jetstream
            .clone()
            .filter(|_| this.is_jetstream())
        {
            Some(js) => Arc::clone(&this).run_jetstream(js, stop).await,
            None => Arc::clone(&this).run_core(stop).await,
        }
    }

    fn is_jetstream(&self) -> bool {
        self.config.mode == crate::config::NatsMode::Jetstream
    }

    /// `invalid_lines: reject`: a message with an invalid line is refused
    /// whole (and judged on its own, never joined with others).
    fn rejects_invalid(&self) -> bool {
        self.config.invalid_lines == crate::config::InvalidLines::Reject
    }

    /// Counts `n` messages lost for `reason` and warns, at most once a
    /// minute (the counters have every one).
    fn dropped(&self, reason: &'static str, n: u64, detail: &str) {
        self.counters.dropped.add(reason, n);
        if let Some(unlogged) = self.drop_log.due() {
            tracing::warn!(
                ingress = %self.config.name,
                reason,
                messages = n,
                unlogged_warnings = unlogged,
                "NATS messages dropped: {detail} (logged at most once a minute; \
                 ccrelay_nats_dropped_messages_total counts all)"
            );
        }
    }

    async fn run_core(self: Arc<Self>, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        let limits = InboxLimits {
            messages: self.config.subscription_capacity,
            bytes: INBOX_MAX_BYTES,
        };
        for subject in &self.config.subjects {
            let subscribed = match &self.config.queue_group {
                Some(group) => {
                    self.client
                        .queue_subscribe(subject.subject.clone(), group.clone())
                        .await
                }
                None => self.client.subscribe(subject.subject.clone()).await,
            };
            let subscriber = match subscribed {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(ingress = %self.config.name, subject = %subject.subject, error = %e, "cannot subscribe");
                    continue;
                }
            };
            tracing::info!(
                ingress = %self.config.name,
                subject = %subject.subject,
                queue_group = self.config.queue_group.as_deref().unwrap_or("(none)"),
                "subscribed"
            );
            let inbox = Inbox::drain(subscriber, limits, Arc::clone(&self.status));
            let cluster = subject.cluster.clone();
            tasks.spawn(Arc::clone(&self).take_core(inbox, cluster));
        }
        // Taking messages once the server has processed the subscriptions.
        // An account that may not use `_INBOX.>` cannot show it; once
        // connected for a few attempts, the input counts as taking anyway.
        let mut unconfirmed = 0_u32;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                confirmed = nats::round_trip(&self.client, REBIND_DELAY) => {
                    if self.status.is_connected() && !confirmed {
                        unconfirmed += 1;
                    }
                    if confirmed || unconfirmed >= 3 {
                        if !confirmed {
                            tracing::info!(ingress = %self.config.name, "the server does not echo a message to this client's inbox; taking messages without that confirmation");
                        }
                        self.counters.taking.store(true, Ordering::Relaxed);
                        break;
                    }
                },
            }
        }
        stop.cancelled().await;
        // Unsubscribe everywhere and let the inboxes empty: every message the
        // server already sent is still taken. A client that is not
        // connected cannot drain; its inboxes are emptied all the same.
        let drained = async {
            if let Err(e) = self.client.drain().await {
                tracing::warn!(ingress = %self.config.name, error = %e, "NATS drain failed");
            }
            while tasks.join_next().await.is_some() {}
        };
        let limit = if self.status.is_connected() {
            DRAIN_TIMEOUT
        } else {
            Duration::from_secs(1)
        };
        if tokio::time::timeout(limit, drained).await.is_err() {
            tracing::warn!(ingress = %self.config.name, "NATS input did not drain in time; messages not yet received are left to the server");
        }
        tracing::info!(ingress = %self.config.name, "NATS input stopped");
    }

    /// Takes the messages of one subscription until it ends.
    async fn take_core(self: Arc<Self>, mut inbox: Inbox, cluster: Option<String>) {
        let max_message = self.max_message_bytes();
        let reject = self.rejects_invalid();
        let mut storing = tokio::task::JoinSet::new();
        // Batches are stored side by side, their records appended in order.
        let mut last = None;
        while let Some(first) = inbox.recv().await {
            let received = Instant::now();
            let mut body = BytesMut::new();
            let mut messages = 0_u64;
            let mut next = Some(first);
            while let Some(delivery) = next.take() {
                let payload = &delivery.message.payload;
                self.counters.messages.inc();
                if payload.len() > max_message {
                    self.too_large(payload.len());
                } else {
                    append_lines(&mut body, payload);
                    messages += 1;
                }
                drop(delivery);
                // With `reject`, every message is judged on its own.
                if !reject && body.len() < BATCH_MAX_BYTES {
                    next = inbox.try_recv();
                }
            }
            if body.is_empty() {
                continue;
            }
            while storing.len() >= PIPELINE {
                let _ = storing.join_next().await;
            }
            let (this, cluster) = (Arc::clone(&self), cluster.clone());
            let turn = Turn::next(&mut last);
            storing.spawn(async move {
                this.store_core(body.freeze(), cluster, messages, received, turn)
                    .await;
            });
        }
        while storing.join_next().await.is_some() {}
    }

    /// Stores one core batch of `messages` messages, counting what is refused.
    async fn store_core(
        &self,
        body: Bytes,
        cluster: Option<String>,
        messages: u64,
        received: Instant,
        turn: Turn,
    ) {
        // Kept (a reference, not a copy) to count the lines of a refusal.
        let kept = body.clone();
        match self
            .accept(body, cluster, CORE_ACK_TIMEOUT, received, Some(turn))
            .await
        {
            Ok(()) => {}
            Err(Refused::QueueFull(upstream)) => {
                if let Some(u) = self.runtime.upstreams().iter().find(|u| u.name == upstream) {
                    let lines = memchr::memchr_iter(b'\n', &kept).count() as u64;
                    u.counters.rejected_full.inc_by(lines);
                }
                self.dropped(
                    "refused",
                    messages,
                    &format!("the queue of upstream {upstream} is full (when_full: reject_new)"),
                );
            }
            Err(Refused::Invalid { rejected, first }) => self.dropped(
                "invalid",
                messages,
                &format!("{rejected} invalid lines (invalid_lines: reject); first: {first}"),
            ),
            Err(why) => self.dropped(
                "refused",
                messages,
                &format!("the relay does not take data now ({why})"),
            ),
        }
    }

    async fn accept(
        &self,
        body: Bytes,
        cluster: Option<String>,
        ack_timeout: Duration,
        received: Instant,
        turn: Option<Turn>,
    ) -> Result<(), Refused> {
        self.runtime.check()?;
        let writing = self.runtime.writing();
        let batch = Batch {
            protocol: "nats",
            source: Arc::clone(&self.name),
            body,
            cluster,
            precision: None,
            hops: 0,
            reject_invalid: self.rejects_invalid(),
            turn,
        };
        let accepted = self
            .runtime
            .accept(writing, &self.groups, batch, ack_timeout)
            .await?;
        if let Some(first) = &accepted.first_error {
            tracing::debug!(ingress = %self.config.name, rejected = accepted.rejected, first = %first, "invalid lines dropped");
        }
        // Receive → durable, i.e. until the messages may be acknowledged.
        let labels = IngressLabels {
            ingress: Arc::clone(&self.name),
        };
        self.runtime
            .counters
            .ack_seconds
            .get_or_create(&labels)
            .observe(received.elapsed().as_secs_f64());
        Ok(())
    }

    fn max_message_bytes(&self) -> usize {
        usize::try_from(self.config.max_message_bytes.as_u64()).unwrap_or(usize::MAX)
    }

    fn too_large(&self, len: usize) {
        self.dropped(
            "too_large",
            1,
            &format!(
                "a message of {len} bytes is larger than max_message_bytes ({})",
                self.config.max_message_bytes
            ),
        );
    }

    /// The default cluster of a message on `subject`: that of the first
    /// configured subject it matches.
    fn cluster_of(&self, subject: &str) -> Option<String> {
        self.config
            .subjects
            .iter()
            .find(|s| subject_matches(&s.subject, subject))
            .and_then(|s| s.cluster.clone())
    }

    async fn run_jetstream(self: Arc<Self>, js: JetStreamIngress, stop: CancellationToken) {
        let context = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(self.client.clone());
        let durable = self.config.durable();
        while !stop.is_cancelled() {
            let consumer = tokio::select! {
                () = stop.cancelled() => break,
                c = self.bind(&context, &js, &durable) => c,
            };
            let bound = match consumer {
                Ok(mut c) => self.wait_for_leader(&mut c, &stop).await.map(|()| c),
                Err(e) => Err(e),
            };
            let consumer = match bound {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(ingress = %self.config.name, durable = %durable, error = %e, "cannot bind the JetStream consumer; retrying");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(REBIND_DELAY) => continue,
                    }
                }
            };
            if stop.is_cancelled() {
                break;
            }
            tracing::info!(ingress = %self.config.name, stream = js.stream.as_deref().unwrap_or(""), durable = %durable, "pulling from JetStream");
            self.counters.taking.store(true, Ordering::Relaxed);
            match self.pull(&consumer, &js, &stop).await {
                Ok(Pulled::Stopped) => {}
                Ok(Pulled::Reconnected) => {
                    tracing::info!(ingress = %self.config.name, durable = %durable, "NATS reconnected; binding the JetStream consumer again");
                }
                Err(e) => {
                    tracing::warn!(ingress = %self.config.name, error = %e, "JetStream pull failed; binding again");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(REBIND_DELAY) => {}
                    }
                }
            }
        }
        tracing::info!(ingress = %self.config.name, "NATS input stopped");
    }

    /// The durable consumer: bound if it exists, else created (and the
    /// stream too with `create_stream`).
    async fn bind(
        &self,
        context: &jetstream::Context,
        js: &JetStreamIngress,
        durable: &str,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, async_nats::Error> {
        let name = js.stream.clone().unwrap_or_default();
        let stream = if js.create_stream {
            let sc = &js.stream_config;
            context
                .get_or_create_stream(stream::Config {
                    name,
                    subjects: self
                        .config
                        .subjects
                        .iter()
                        .map(|s| s.subject.clone())
                        .collect(),
                    max_age: sc.max_age,
                    max_bytes: i64::try_from(sc.max_bytes.as_u64()).unwrap_or(i64::MAX),
                    storage: match sc.storage {
                        StreamStorage::File => stream::StorageType::File,
                        StreamStorage::Memory => stream::StorageType::Memory,
                    },
                    num_replicas: usize::try_from(sc.replicas).unwrap_or(1),
                    ..Default::default()
                })
                .await?
        } else {
            context.get_stream(name).await?
        };
        // One subject: it filters; several: no filter (nats-server 2.9 has
        // no filter with several subjects).
        let filter_subject = match self.config.subjects.as_slice() {
            [only] => only.subject.clone(),
            _ => String::new(),
        };
        let config = consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: js.ack_wait,
            max_ack_pending: i64::from(js.max_ack_pending),
            filter_subject,
            ..Default::default()
        };
        Ok(stream.get_or_create_consumer(durable, config).await?)
    }

    /// Waits until the consumer has a leader. In a JetStream cluster a
    /// consumer just created, or one whose leader's server just died, has
    /// none for a moment; a pull request sent then goes unanswered, and
    /// the pull would notice only through missed heartbeats.
    async fn wait_for_leader(
        &self,
        consumer: &mut consumer::Consumer<consumer::pull::Config>,
        stop: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let deadline = tokio::time::Instant::now() + LEADER_TIMEOUT;
        let mut info = consumer.cached_info().clone();
        // A single server reports itself as the leader.
        while info
            .cluster
            .as_ref()
            .is_some_and(|c| c.leader.as_deref().is_none_or(str::is_empty))
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(
                    format!("the consumer has had no leader for {LEADER_TIMEOUT:?}").into(),
                );
            }
            tracing::debug!(ingress = %self.config.name, "the JetStream consumer has no leader yet");
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(LEADER_POLL) => {}
            }
            info = consumer.info().await?.clone();
        }
        Ok(())
    }

    /// Pulls and takes messages until `stop` fires, the client reconnects
    /// while no message waits (the server may have forgotten the pull
    /// requests of the old connection), or the pull fails.
    async fn pull(
        self: &Arc<Self>,
        consumer: &consumer::Consumer<consumer::pull::Config>,
        js: &JetStreamIngress,
        stop: &CancellationToken,
    ) -> Result<Pulled, async_nats::Error> {
        let mut connections = self.status.connections();
        connections.borrow_and_update();
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(js.fetch_batch)
            .heartbeat(PULL_HEARTBEAT)
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        // A batch must be on disk well before the server delivers it again.
        let ack_timeout = js.ack_wait.mul_f64(0.8);
        let mut storing = tokio::task::JoinSet::new();
        let result = self
            .pull_into(
                &mut messages,
                &mut storing,
                &mut connections,
                js,
                ack_timeout,
                stop,
            )
            .await;
        // Every batch taken is answered before the pull ends.
        while storing.join_next().await.is_some() {}
        result
    }

    /// The loop of [`Self::pull`]: hands batches to `storing`, at most
    /// [`PIPELINE`] at once.
    async fn pull_into(
        self: &Arc<Self>,
        messages: &mut consumer::pull::Stream,
        storing: &mut tokio::task::JoinSet<()>,
        connections: &mut tokio::sync::watch::Receiver<u64>,
        js: &JetStreamIngress,
        ack_timeout: Duration,
        stop: &CancellationToken,
    ) -> Result<Pulled, async_nats::Error> {
        // As in core mode: side by side, appended in the order pulled.
        let mut last = None;
        loop {
            // Messages first: while they flow, the pull is alive whatever
            // happened to the connection.
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(Pulled::Stopped),
                m = messages.next() => m,
                Ok(()) = connections.changed() => return Ok(Pulled::Reconnected),
            };
            let mut batch = Vec::with_capacity(js.fetch_batch);
            let mut next = first;
            loop {
                match next {
                    Some(Ok(m)) => batch.push(m),
                    Some(Err(e)) => {
                        self.take_jetstream(batch, ack_timeout, None).await;
                        return Err(e.into());
                    }
                    None => {
                        self.take_jetstream(batch, ack_timeout, None).await;
                        return Err("the message stream ended".into());
                    }
                }
                if batch.len() >= js.fetch_batch {
                    break;
                }
                match messages.next().now_or_never() {
                    Some(m) => next = m,
                    None => break,
                }
            }
            while storing.len() >= PIPELINE {
                let _ = storing.join_next().await;
            }
            let this = Arc::clone(self);
            let turn = Turn::next(&mut last);
            storing.spawn(async move {
                this.take_jetstream(batch, ack_timeout, Some(turn)).await;
            });
        }
    }

    /// Stores a pulled batch and answers every message of it.
    /// Its records are appended in `turn`.
    async fn take_jetstream(
        &self,
        batch: Vec<jetstream::Message>,
        ack_timeout: Duration,
        turn: Option<Turn>,
    ) {
        if batch.is_empty() {
            return;
        }
        let received = Instant::now();
        let c = &self.counters;
        c.unacked.fetch_add(batch.len() as i64, Ordering::Relaxed);
        let max_message = self.max_message_bytes();
        let reject = self.rejects_invalid();
        // Messages with the same default cluster go in together, in order.
        let mut groups: Vec<(Option<String>, BytesMut, Vec<jetstream::Message>)> = Vec::new();
        for m in batch {
            c.messages.inc();
            if m.info().is_ok_and(|i| i.delivered > 1) {
                c.redelivered.inc();
            }
            if m.payload.len() > max_message {
                self.too_large(m.payload.len());
                self.answer(&m, AckKind::Term).await;
                continue;
            }
            let cluster = self.cluster_of(m.subject.as_str());
            let joined = !reject && groups.last().is_some_and(|(cl, _, _)| *cl == cluster);
            match groups.last_mut() {
                Some((_, body, members)) if joined => {
                    append_lines(body, &m.payload);
                    members.push(m);
                }
                _ => {
                    let mut body = BytesMut::new();
                    append_lines(&mut body, &m.payload);
                    groups.push((cluster, body, vec![m]));
                }
            }
        }
        let mut turns = match turn {
            Some(t) => t.spread(groups.len()),
            None => Vec::new(),
        }
        .into_iter();
        for (cluster, body, members) in groups {
            let turn = turns.next().flatten();
            let kind = match self
                .accept(body.freeze(), cluster, ack_timeout, received, turn)
                .await
            {
                Ok(()) => AckKind::Ack,
                Err(Refused::Invalid { rejected, first }) => {
                    self.dropped(
                        "invalid",
                        members.len() as u64,
                        &format!(
                            "{rejected} invalid lines, terminated (invalid_lines: reject); first: {first}"
                        ),
                    );
                    AckKind::Term
                }
                Err(why) => {
                    if let Some(unlogged) = self.drop_log.due() {
                        tracing::warn!(ingress = %self.config.name, messages = members.len(), reason = %why, unlogged_warnings = unlogged, "messages not taken now; JetStream delivers them again (logged at most once a minute)");
                    }
                    AckKind::Nak(Some(NAK_DELAY))
                }
            };
            for m in &members {
                self.answer(m, kind).await;
            }
        }
    }

    async fn answer(&self, m: &jetstream::Message, kind: AckKind) {
        let c = &self.counters;
        c.unacked.fetch_sub(1, Ordering::Relaxed);
        c.acks.add(
            match kind {
                AckKind::Ack => "ack",
                AckKind::Term => "term",
                _ => "nak",
            },
            1,
        );
        if let Err(e) = m.ack_with(kind).await {
            tracing::warn!(ingress = %self.config.name, error = %e, "cannot answer a JetStream message; it will be delivered again");
        }
    }
}

/// Why a pull ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pulled {
    /// The input is stopping.
    Stopped,
    /// The client connected again: bind and pull anew.
    Reconnected,
}

/// Appends the lines of `payload` to `body`, ending them with a newline.
fn append_lines(body: &mut BytesMut, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    body.extend_from_slice(payload);
    if !payload.ends_with(b"\n") {
        body.extend_from_slice(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_joined_line_by_line() {
        let mut body = BytesMut::new();
        append_lines(&mut body, b"a v=1 1");
        append_lines(&mut body, b"b v=2 2\n");
        append_lines(&mut body, b"");
        append_lines(&mut body, b"c v=3 3\nd v=4 4");
        assert_eq!(&body[..], b"a v=1 1\nb v=2 2\nc v=3 3\nd v=4 4\n");
    }
}
