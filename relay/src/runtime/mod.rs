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
    /// Its place among the batches of its source ([`Turn::next`]): a
    /// source storing several batches at once processes them side by side,
    /// and their records are appended in this order.
    pub turn: Option<Turn>,
}

/// A batch's place in the order of its source's appends: its records are
/// appended after those of the batch before it, and the batch after it
/// waits for them. Processing and compression run side by side; only the
/// append (a few sled inserts) takes turns.
#[derive(Debug)]
pub struct Turn {
    /// Resolves once the previous batch's records are appended.
    previous: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Dropped once this batch's records are appended (or it has none).
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Turn {
    /// The turn of the next batch; call once per batch, in arrival order.
    /// `last` keeps the chain between calls (start with `None`).
    #[must_use]
    pub fn next(last: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> Turn {
        let (done, next) = tokio::sync::oneshot::channel();
        Turn {
            previous: last.replace(next),
            done: Some(done),
        }
    }

    /// This turn shared by `n` batches taken one after the other: the first
    /// waits for the previous batch, the next batch waits for the last.
    #[must_use]
    pub fn spread(mut self, n: usize) -> Vec<Option<Turn>> {
        if n == 0 {
            // Nothing to append: passed on when dropped, in order.
            return Vec::new();
        }
        let (previous, done) = (self.previous.take(), self.done.take());
        let mut turns: Vec<Option<Turn>> = (0..n).map(|_| None).collect();
        if let Some(first) = turns.first_mut() {
            *first = Some(Turn {
                previous,
                done: None,
            });
        }
        if let Some(last) = turns.last_mut() {
            match last {
                Some(turn) => turn.done = done,
                None => {
                    *last = Some(Turn {
                        previous: None,
                        done,
                    });
                }
            }
        }
        turns
    }

    async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Dropped before its turn came (its task was cancelled): the next
        // batch must still wait for the previous one.
        if let (Some(previous), Some(done)) = (self.previous.take(), self.done.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = previous.await;
                drop(done);
            });
        }
    }
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
/// A batch processed, its records built, not appended yet.
struct Prepared {
    accepted: Accepted,
    /// Records and the upstreams that share them.
    appends: Vec<(Vec<Record>, Vec<Arc<Upstream>>)>,
}

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
        let mut turn = batch.turn.take();
        let prepared = if batch.body.len() <= INLINE_BODY_BYTES {
            self.prepare(groups, &batch)
        } else {
            let (runtime, groups) = (Arc::clone(self), Arc::clone(groups));
            let task = tokio::task::spawn_blocking(move || runtime.prepare(&groups, &batch));
            task.await
                .map_err(|e| {
                    tracing::error!(error = %e, "ingest worker failed");
                    Refused::Internal
                })
                .and_then(|r| r)
        };
        // Whatever the outcome, the turn is waited for and then passed on,
        // so that the order holds across batches that fail.
        if let Some(turn) = turn.as_mut() {
            turn.wait().await;
        }
        let stored = prepared.and_then(|p| self.append(p));
        drop(turn);
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

    /// Processes and builds the records (compressed), counting the lines.
    fn prepare(&self, groups: &[RuleGroup], batch: &Batch) -> Result<Prepared, Refused> {
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
        let mut appends = Vec::new();
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
                appends.push((records, members.into_iter().cloned().collect()));
            }
        }
        Ok(Prepared {
            accepted: Accepted {
                accepted,
                rejected,
                first_error,
            },
            appends,
        })
    }

    /// Appends prepared records (not durable yet).
    fn append(&self, prepared: Prepared) -> Result<Stored, Refused> {
        let mut used: Vec<Arc<Upstream>> = Vec::new();
        for (records, members) in prepared.appends {
            let names: Vec<&str> = members.iter().map(|u| u.name.as_str()).collect();
            if let Err(e) = self.queue.append(&names, &records) {
                tracing::error!(error = %e, "storage failed; refusing data");
                return Err(Refused::StorageFailed);
            }
            used.extend(members);
        }
        for u in &used {
            u.evict_over_limit(&self.queue);
        }
        Ok(Stored {
            accepted: prepared.accepted,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `turn`'s wait finished within a moment.
    async fn comes(turn: &mut Turn) -> bool {
        tokio::time::timeout(Duration::from_millis(50), turn.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn turns_come_in_the_order_they_were_given() {
        let mut last = None;
        let mut first = Turn::next(&mut last);
        let mut second = Turn::next(&mut last);
        let mut third = Turn::next(&mut last);
        assert!(comes(&mut first).await, "the first waits for nobody");
        assert!(!comes(&mut third).await);
        assert!(!comes(&mut second).await);
        drop(first);
        assert!(comes(&mut second).await);
        drop(second);
        assert!(comes(&mut third).await);
    }

    #[tokio::test]
    async fn a_turn_dropped_before_it_came_still_keeps_the_order() {
        let mut last = None;
        let first = Turn::next(&mut last);
        let second = Turn::next(&mut last); // its batch fails or is cancelled
        let mut third = Turn::next(&mut last);
        drop(second);
        assert!(!comes(&mut third).await, "the first is still appending");
        drop(first);
        assert!(comes(&mut third).await);
    }

    #[tokio::test]
    async fn a_spread_turn_waits_once_and_passes_on_after_the_last() {
        let mut last = None;
        let first = Turn::next(&mut last);
        let shared = Turn::next(&mut last);
        let mut after = Turn::next(&mut last);
        let mut parts = shared.spread(3);
        assert_eq!(parts.len(), 3);
        let (mut a, b, c) = (parts.remove(0).unwrap(), parts.remove(0), parts.remove(0));
        assert!(b.is_none());
        assert!(
            !comes(&mut a).await,
            "the first part waits for the batch before"
        );
        drop(first);
        assert!(comes(&mut a).await);
        drop(a);
        assert!(!comes(&mut after).await, "not before the last part");
        drop(c);
        assert!(comes(&mut after).await);

        // Spread over nothing: passed on in order all the same.
        let mut last = None;
        let first = Turn::next(&mut last);
        let empty = Turn::next(&mut last);
        let mut after = Turn::next(&mut last);
        assert!(empty.spread(0).is_empty());
        assert!(!comes(&mut after).await);
        drop(first);
        assert!(comes(&mut after).await);
    }
}
