//! The relay runtime: the durable queue, the group commit and one
//! [`Upstream`] handle per destination, and the one operation every source
//! needs: [`Runtime::accept`] a batch of lines.
//!
//! # The source seam
//!
//! A *source* is whatever brings lines in: the HTTP listeners today
//! ([`crate::ingress::http`]), NATS core subscriptions and JetStream
//! consumers ([`crate::ingress::nats`]). Every source follows the same
//! contract:
//!
//! 1. ask [`Runtime::check`] whether data is accepted at all (not shutting
//!    down, storage healthy, no disk pressure, no `reject_new` queue full),
//!    and refuse early if not (HTTP: 503; JetStream: nak with a delay);
//! 2. announce the batch with [`Runtime::writing`] as soon as it is known to
//!    come (a group commit about to start then waits a moment for it), and
//!    hand the body with its context (source name, default cluster,
//!    timestamp unit, hop count, rule groups) to [`Runtime::accept`], which
//!    processes the lines per rule group, appends them to every matching
//!    upstream's queue and waits for the group commit;
//! 3. acknowledge the sender only when `accept` returned `Ok`: the lines are
//!    then on disk (HTTP answers 2xx; a JetStream source acks the message;
//!    a core NATS source has no one to tell). On `Err` the sender is told to
//!    retry ([`Refused`] says why), and nothing it sent may be acknowledged.
//!
//! Workers are woken per upstream after the commit; they never look at the
//! sources.

pub mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cc_common::lineproto::Precision;

pub use self::upstream::{QueueLimit, Upstream, UpstreamCounters};
use crate::housekeeper::DiskState;
pub use crate::metrics::IngestCounters;
use crate::metrics::ReasonLabels;
use crate::process::{Context, Invalid, Rules, process};
use crate::queue::{Flusher, Queue, Record, RecordMeta, SplitLimits, Writing};

/// Decoded bodies up to this size are processed on the calling task; larger
/// ones on the blocking pool, so that a big batch never stalls the runtime's
/// workers while one node's lines cost no thread hand-off.
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Upstreams that share the same line rules (`processing`, with the
/// per-upstream overrides applied, and the source's timestamp settings).
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// The rules.
    pub rules: Rules,
    /// Default cluster of last resort for these upstreams.
    pub default_cluster: Option<String>,
    /// The upstreams.
    pub members: Vec<Arc<Upstream>>,
}

/// A batch of lines from a source.
#[derive(Debug)]
pub struct Batch {
    /// The kind of source (`http`): with `source`, the label each record
    /// keeps of where its lines came from (`http:collectors`).
    pub protocol: &'static str,
    /// The source's name (the `ingress` label of the metrics).
    pub source: Arc<str>,
    /// The lines, decoded.
    pub body: Bytes,
    /// Default cluster for lines without a `cluster` tag, before the rule
    /// groups' own default.
    pub cluster: Option<String>,
    /// Timestamp unit the sender declared (`None`: detect).
    pub precision: Option<Precision>,
    /// Relays the lines went through already.
    pub hops: u32,
    /// Refuse the whole batch if any line is invalid.
    pub reject_invalid: bool,
    /// Told once the batch's lines are queued (or refused), before the
    /// group commit: a source storing several batches at once waits for it
    /// before it hands over the next, so that records keep arrival order.
    pub queued: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What happened to an accepted batch: its valid lines are on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Lines queued for at least one upstream.
    pub accepted: u64,
    /// Invalid lines, dropped.
    pub rejected: u64,
    /// The first invalid line's description.
    pub first_error: Option<String>,
}

/// Why a batch was not accepted; nothing of it may be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Shutdown began.
    #[error("shutting down")]
    ShuttingDown,
    /// The queue storage failed; the relay is about to exit.
    #[error("storage failed; not accepting data")]
    StorageFailed,
    /// The disk limits are reached.
    #[error("disk limits reached; not accepting data")]
    DiskPressure,
    /// A `reject_new` upstream's queue is full.
    #[error("queue of upstream {0} is full")]
    QueueFull(String),
    /// The group commit did not finish within the source's deadline.
    #[error("storage too slow; retry")]
    TooSlow,
    /// `invalid_lines: reject` and some lines are invalid.
    #[error("{rejected} invalid lines, nothing stored (invalid_lines: reject); first: {first}")]
    Invalid {
        /// Invalid lines.
        rejected: u64,
        /// The first one's description.
        first: String,
    },
    /// A bug (a task panicked, a record could not be built).
    #[error("internal error")]
    Internal,
}

/// The queue, the group commit and the upstreams; shared by sources,
/// workers and the admin endpoints.
#[derive(Debug)]
pub struct Runtime {
    queue: Arc<Queue>,
    flusher: Flusher,
    upstreams: Vec<Arc<Upstream>>,
    split: SplitLimits,
    accepting: AtomicBool,
    /// Set once every source has started (and registered what readiness
    /// depends on).
    started: AtomicBool,
    disk: Arc<DiskState>,
    /// Source counters.
    pub counters: IngestCounters,
    /// The NATS connections of sources and upstreams.
    pub nats: Arc<crate::nats::NatsLinks>,
}

/// What a batch did before the group commit.
struct Stored {
    accepted: Accepted,
    /// Upstreams that got lines (to wake after the commit).
    used: Vec<Arc<Upstream>>,
}

impl Runtime {
    /// A runtime over an open queue; `nats` holds the NATS connections of
    /// the upstreams (the sources add theirs when they start).
    #[must_use]
    pub fn new(
        queue: Arc<Queue>,
        flusher: Flusher,
        upstreams: Vec<Arc<Upstream>>,
        split: SplitLimits,
        disk: Arc<DiskState>,
        nats: Arc<crate::nats::NatsLinks>,
    ) -> Runtime {
        Runtime {
            queue,
            flusher,
            upstreams,
            split,
            accepting: AtomicBool::new(true),
            started: AtomicBool::new(false),
            disk,
            counters: IngestCounters::default(),
            nats,
        }
    }

    /// The queue.
    #[must_use]
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// The upstreams, in configuration order.
    #[must_use]
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// How lines are split into records (`storage.record_*`).
    #[must_use]
    pub fn split_limits(&self) -> SplitLimits {
        self.split
    }

    /// The group commit's counters.
    #[must_use]
    pub fn flush_stats(&self) -> Arc<crate::queue::FlushStats> {
        self.flusher.stats()
    }

    /// The disk limits state.
    #[must_use]
    pub fn disk(&self) -> &DiskState {
        &self.disk
    }

    /// False once shutdown began.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Whether every source has started: before that `/readyz` cannot tell
    /// whether all of them take data.
    #[must_use]
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Start-up is complete: every source is running.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    /// Shutdown: every later batch is refused with [`Refused::ShuttingDown`].
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }

    /// Records queued for the upstreams, all together.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.upstreams
            .iter()
            .filter_map(|u| self.queue.len(&u.name).ok())
            .map(|s| s.records)
            .sum()
    }

    /// Announces a batch on its way in (step 0 of the source contract): a
    /// group commit about to start waits a moment for batches announced
    /// before it, so that senders arriving together share one fsync. Take it
    /// as soon as a batch is known to come (before reading its body) and
    /// hand it to [`Runtime::accept`]; dropping it withdraws the announcement.
    #[must_use]
    pub fn writing(&self) -> Writing<'_> {
        self.flusher.writing()
    }

    /// Whether a batch would be accepted now (step 1 of the source contract).
    ///
    /// # Errors
    ///
    /// The reason it would be refused.
    pub fn check(&self) -> Result<(), Refused> {
        if !self.is_accepting() {
            return Err(Refused::ShuttingDown);
        }
        if !self.queue.is_healthy() {
            return Err(Refused::StorageFailed);
        }
        if self.disk.pressure.load(Ordering::Relaxed) {
            return Err(Refused::DiskPressure);
        }
        if let Some(full) = self.upstreams.iter().find(|u| u.refuses_new(&self.queue)) {
            return Err(Refused::QueueFull(full.name.clone()));
        }
        Ok(())
    }

    /// Processes `batch` with `groups`, queues its lines for every upstream
    /// that should get them and waits, at most `ack_timeout`, until they are
    /// on disk (steps 2 and 3 of the source contract).
    ///
    /// # Errors
    ///
    /// [`Refused`]: nothing of the batch may be acknowledged. Lines may have
    /// been queued all the same (a commit that took too long); the sender
    /// retries and the upstream gets them twice, which the store tolerates.
    pub async fn accept(
        self: &Arc<Self>,
        writing: Writing<'_>,
        groups: &Arc<[RuleGroup]>,
        mut batch: Batch,
        ack_timeout: Duration,
    ) -> Result<Accepted, Refused> {
        let queued = batch.queued.take();
        let stored = if batch.body.len() <= INLINE_BODY_BYTES {
            self.store(groups, &batch)
        } else {
            let (runtime, groups) = (Arc::clone(self), Arc::clone(groups));
            let task = tokio::task::spawn_blocking(move || runtime.store(&groups, &batch));
            task.await
                .map_err(|e| {
                    tracing::error!(error = %e, "ingest worker failed");
                    Refused::Internal
                })
                .and_then(|r| r)
        };
        if let Some(tx) = queued {
            let _ = tx.send(());
        }
        let stored = stored?;
        if !stored.used.is_empty() {
            match tokio::time::timeout(ack_timeout, writing.durable()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "storage failed; refusing data");
                    return Err(Refused::StorageFailed);
                }
                Err(_) => return Err(Refused::TooSlow),
            }
            for u in &stored.used {
                u.wake.notify_one();
            }
        }
        Ok(stored.accepted)
    }

    /// Processes and appends (not durable yet).
    fn store(&self, groups: &[RuleGroup], batch: &Batch) -> Result<Stored, Refused> {
        let now = cc_common::time::since_epoch();
        // Process once per rule group. Steps 1-5 (syntax, timestamps) are the
        // same in every group, so their counts are taken from the group that
        // refused most; a line counts as accepted if some group queued it,
        // which with several groups is approximated by the largest count.
        let mut results = Vec::with_capacity(groups.len());
        for group in groups {
            let ctx = Context {
                default_cluster: batch
                    .cluster
                    .clone()
                    .or_else(|| group.default_cluster.clone()),
                precision: batch.precision,
                now_ns: i128::try_from(now.as_nanos()).unwrap_or(0),
            };
            let processed = process(&batch.body, &group.rules, &ctx, &group.members);
            results.push((ctx.default_cluster, processed));
        }
        let mut invalid: BTreeMap<Invalid, u64> = BTreeMap::new();
        let mut accepted = 0;
        let mut filtered = u64::MAX;
        let mut first_error = None;
        for (_, p) in &results {
            for (why, n) in &p.invalid {
                let e = invalid.entry(*why).or_insert(0);
                *e = (*e).max(*n);
            }
            accepted = accepted.max(p.accepted);
            filtered = filtered.min(p.filtered);
            if first_error.is_none() {
                first_error.clone_from(&p.first_error);
            }
        }
        let filtered = if results.is_empty() { 0 } else { filtered };
        let rejected: u64 = invalid.values().sum();
        self.count(batch, accepted + filtered + rejected, &invalid);
        if batch.reject_invalid && rejected > 0 {
            return Err(Refused::Invalid {
                rejected,
                first: first_error.unwrap_or_default(),
            });
        }
        if let Some(first) = &first_error {
            tracing::debug!(source = %batch.source, rejected, first = %first, "invalid lines dropped");
        }
        let mut used: Vec<Arc<Upstream>> = Vec::new();
        for (cluster, processed) in &results {
            let meta = RecordMeta {
                ingest_time_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                hops: u8::try_from(batch.hops).unwrap_or(u8::MAX),
                cluster: cluster.clone().unwrap_or_default(),
                source: format!("{}:{}", batch.protocol, batch.source),
            };
            // Upstreams that receive the very same lines share records (same ids).
            let mut same: Vec<(&[u8], Vec<&Arc<Upstream>>)> = Vec::new();
            for routed in processed.routed.iter().filter(|r| r.count > 0) {
                match same
                    .iter_mut()
                    .find(|(lines, _)| *lines == routed.lines.as_slice())
                {
                    Some((_, members)) => members.push(routed.to),
                    None => same.push((routed.lines.as_slice(), vec![routed.to])),
                }
            }
            for (lines, members) in same {
                let records = Record::from_batch(&meta, lines, &self.split).map_err(|e| {
                    tracing::error!(error = %e, "cannot build queue records");
                    Refused::Internal
                })?;
                let names: Vec<&str> = members.iter().map(|u| u.name.as_str()).collect();
                if let Err(e) = self.queue.append(&names, &records) {
                    tracing::error!(error = %e, "storage failed; refusing data");
                    return Err(Refused::StorageFailed);
                }
                used.extend(members.into_iter().cloned());
            }
        }
        for u in &used {
            u.evict_over_limit(&self.queue);
        }
        Ok(Stored {
            accepted: Accepted {
                accepted,
                rejected,
                first_error,
            },
            used,
        })
    }

    fn count(&self, batch: &Batch, lines: u64, invalid: &BTreeMap<Invalid, u64>) {
        let c = &self.counters;
        c.received(&batch.source, lines, batch.body.len() as u64);
        for (why, n) in invalid {
            let labels = ReasonLabels {
                ingress: Arc::clone(&batch.source),
                reason: why.as_str(),
            };
            c.invalid.get_or_create(&labels).inc_by(*n);
        }
    }
}
