//! Forwarding: one worker per upstream, reading its queue oldest first.
//!
//! A worker takes a batch from the head of its queue (records with the same
//! default cluster, up to `batch.max_bytes`/`batch.max_lines`, waiting up to
//! `batch.linger` for a fuller batch), sends it, and deletes the records once
//! the upstream answered 2xx. It never drops data because an upstream is
//! down or refuses credentials; it retries with exponential backoff and full
//! jitter. A batch the upstream refuses as bad (400 and the like) is split in
//! halves, by records and then by lines, until the refused lines are found;
//! those go to the dead-letter tree and everything else is delivered, so one
//! poison line never blocks a queue. While an upstream fails, the worker
//! probes it with single records.
//!
//! Delivery is at least once: a crash between the upstream's 2xx and the
//! deletion, a timeout, or a bisection re-sends lines (the store overwrites
//! identical samples).
//!
//! With `max_in_flight` above 1 the worker keeps up to that many batches on
//! the way at once, each with its own retries, taking the next records after
//! the last one handed out; batches may then arrive out of order. While the
//! upstream fails, no new batch starts until one gets through.

mod batch;
pub mod http;
pub mod nats;
pub mod retry;
pub mod sink;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::http::Piece;
use self::retry::{Backoff, Outcome, RetryPolicy};
use self::sink::{Attempt, Sink};
use crate::queue::Queue;
use crate::runtime::Upstream;

/// The smallest batch size a 413 can shrink `batch.max_bytes` to.
const MIN_BATCH_BYTES: u64 = 16 * 1024;

/// Batch and timing settings of one upstream.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Upstream name (its queue).
    pub name: String,
    /// Uncompressed bytes per request.
    pub max_bytes: u64,
    /// Lines per request.
    pub max_lines: u64,
    /// Wait this long for a fuller batch.
    pub linger: Duration,
    /// Records older than this are dropped instead of sent.
    pub max_age: Option<Duration>,
    /// Retry timing.
    pub retry: RetryPolicy,
    /// Batches on the way at once (at least 1).
    pub max_in_flight: usize,
}

/// A forwarding worker: drives one upstream's sink with batches from its
/// queue.
#[derive(Debug)]
pub struct Worker {
    core: Arc<Core>,
    /// Fires when shutdown begins: stop lingering.
    draining: CancellationToken,
}

/// What the worker and its batches on the way share.
#[derive(Debug)]
struct Core {
    settings: WorkerSettings,
    queue: Arc<Queue>,
    sink: Sink,
    /// The upstream's handle: wake-up, window on the way, counters.
    upstream: Arc<Upstream>,
    state: parking_lot::Mutex<State>,
}

/// Mutable state of a worker (never locked across an await).
#[derive(Debug)]
struct State {
    backoff: Backoff,
    /// Current batch size limit (shrinks after 413).
    max_bytes: u64,
    /// Send single records until the next success.
    probing: bool,
}

use cc_common::time::now_ms;

impl Worker {
    /// A worker for one upstream.
    #[must_use]
    pub fn new(
        settings: WorkerSettings,
        queue: Arc<Queue>,
        upstream: Arc<Upstream>,
        sink: Sink,
    ) -> Worker {
        let state = State {
            backoff: Backoff::new(settings.retry),
            max_bytes: settings.max_bytes,
            probing: false,
        };
        Worker {
            core: Arc::new(Core {
                settings,
                queue,
                sink,
                upstream,
                state: parking_lot::Mutex::new(state),
            }),
            draining: CancellationToken::new(),
        }
    }

    /// The upstream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.core.settings.name
    }

    /// Forwards until `stop` fires. Records that are not delivered by then stay
    /// queued. Once `draining` fires (shutdown began), batches no longer wait
    /// for `batch.linger`: what is queued goes out at once.
    pub async fn run(mut self, stop: CancellationToken, draining: CancellationToken) {
        self.draining = draining;
        let core = Arc::clone(&self.core);
        let name = core.settings.name.clone();
        tracing::info!(upstream = %name, sink = %core.sink.describe(), max_in_flight = core.settings.max_in_flight, "forwarding");
        let mut batches: tokio::task::JoinSet<(bool, Vec<u64>)> = tokio::task::JoinSet::new();
        // Last record id handed to a batch still on the way.
        let mut cursor: Option<u64> = None;
        while !stop.is_cancelled() {
            let mut crashed = false;
            while let Some(done) = batches.try_join_next() {
                match self.finish(done) {
                    Ok(ok) => crashed |= !ok,
                    Err(e) => {
                        tracing::error!(upstream = %name, error = %e, "queue failed; forwarding stops");
                        return;
                    }
                }
            }
            if crashed {
                // A batch task failed (a bug): its records stay queued; do
                // not resend them in a tight loop.
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            if batches.is_empty() {
                cursor = None;
                *core.upstream.in_flight.lock() = None;
            }
            // While the upstream is unreachable or failing, only the batches
            // already on the way retry; new ones start once one gets through
            // (a refused line being split out does not hold others back).
            let room = batches.len() < core.settings.max_in_flight.max(1)
                && (batches.is_empty() || !core.state.lock().probing);
            if !room {
                tokio::select! {
                    () = stop.cancelled() => {}
                    done = batches.join_next() => if let Some(done) = done
                        && let Err(e) = self.finish(done)
                    {
                        tracing::error!(upstream = %name, error = %e, "queue failed; forwarding stops");
                        return;
                    },
                }
                continue;
            }
            let pieces = match self.next_batch(&stop, cursor, !batches.is_empty()).await {
                Ok(Some(pieces)) => pieces,
                Ok(None) => {
                    if !batches.is_empty() {
                        // Everything queued is on the way: wait for more data
                        // or for a batch to finish.
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = core.upstream.wake.notified() => {}
                            done = batches.join_next() => if let Some(done) = done
                                && let Err(e) = self.finish(done)
                            {
                                tracing::error!(upstream = %name, error = %e, "queue failed; forwarding stops");
                                return;
                            },
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(upstream = %name, error = %e, "queue failed; forwarding stops");
                    return;
                }
            };
            let ids: Vec<u64> = pieces.iter().map(|p| p.id).collect();
            let last = ids.last().copied().unwrap_or(0);
            cursor = Some(last);
            tracing::debug!(upstream = %name, first = ids.first(), last, "sending batch");
            let (core, stop) = (Arc::clone(&core), stop.clone());
            batches.spawn(async move { (core.deliver(pieces, &stop).await, ids) });
        }
        // Stopped: batches on the way end without acknowledging anything.
        while let Some(done) = batches.join_next().await {
            let _ = self.finish(done);
        }
    }

    /// Acknowledges the records of a delivered batch. `Ok(false)` if the
    /// batch's task failed.
    fn finish(
        &self,
        done: Result<(bool, Vec<u64>), tokio::task::JoinError>,
    ) -> Result<bool, crate::queue::QueueError> {
        match done {
            Ok((true, ids)) => self
                .core
                .queue
                .ack(&self.core.settings.name, &ids)
                .map(|_| true),
            Ok((false, _)) => Ok(true),
            Err(e) => {
                tracing::error!(upstream = %self.core.settings.name, error = %e, "a batch task failed; its records stay queued");
                Ok(false)
            }
        }
    }
}

/// After a failure that is not about the lines (unreachable, 5xx, refused
/// credentials): the retries send only the first record of `item` as a
/// probe, and the rest waits in `work` to go as one batch after it.
fn probe_with_first_record(
    item: &mut Vec<Piece>,
    work: &mut std::collections::VecDeque<(Vec<Piece>, bool)>,
    is_part: bool,
) {
    // The halves of a bisected record share its id: one record, one probe.
    let first = item.first().map(|p| p.id);
    let n = item.iter().take_while(|p| Some(p.id) == first).count();
    if n < item.len() {
        let rest = item.split_off(n);
        work.push_front((rest, is_part));
    }
}

impl Core {
    /// Delivers a batch, bisecting around lines the upstream refuses. Returns
    /// false if `stop` fired first (nothing may be acknowledged then).
    async fn deliver(&self, batch: Vec<Piece>, stop: &CancellationToken) -> bool {
        // Work list, in order: the left half of a split is always resent first.
        // Each entry: the pieces, and whether it is a part of a split item
        // (already known to hold a refused line, so it is split at once).
        let mut work: std::collections::VecDeque<(Vec<Piece>, bool)> =
            std::collections::VecDeque::from([(batch, false)]);
        while let Some((mut item, is_part)) = work.pop_front() {
            let mut poison_attempts = 0;
            loop {
                if stop.is_cancelled() {
                    return false;
                }
                // Lines that aged past max_age while the upstream failed are
                // dropped (and counted), never sent.
                self.drop_expired(&mut item);
                if item.is_empty() {
                    break;
                }
                let started = std::time::Instant::now();
                let attempt = tokio::select! {
                    biased;
                    a = self.sink.send(&item) => a,
                    () = stop.cancelled() => return false,
                };
                self.upstream
                    .counters
                    .request_seconds
                    .observe(started.elapsed().as_secs_f64());
                match attempt {
                    Attempt::Answered {
                        outcome,
                        failure,
                        retry_after,
                        detail,
                        body,
                    } => {
                        if let Some(reason) = failure {
                            self.upstream.counters.failure_reasons.add(reason, 1);
                        }
                        match outcome {
                            Outcome::Delivered => {
                                self.delivered(&item);
                                break;
                            }
                            Outcome::Poison(status) => {
                                poison_attempts += 1;
                                self.failed(outcome, &detail);
                                if !is_part && poison_attempts < self.settings.retry.poison_attempts
                                {
                                    if !self.pause(outcome, retry_after, stop).await {
                                        return false;
                                    }
                                    continue;
                                }
                                self.split_or_dead_letter(item, &mut work, status, &body);
                                break;
                            }
                            Outcome::TooLarge => {
                                self.failed(outcome, "HTTP 413: batch too large");
                                {
                                    let mut state = self.state.lock();
                                    state.max_bytes = (state.max_bytes / 2).max(MIN_BATCH_BYTES);
                                }
                                self.split_or_dead_letter(item, &mut work, 413, &body);
                                break;
                            }
                            Outcome::Auth(_) | Outcome::Misconfigured(_) | Outcome::Transient => {
                                self.failed(outcome, &detail);
                                probe_with_first_record(&mut item, &mut work, is_part);
                                if !self.pause(outcome, retry_after, stop).await {
                                    return false;
                                }
                            }
                        }
                    }
                    Attempt::Failed { reason, message } => {
                        self.upstream.counters.failure_reasons.add(reason, 1);
                        self.failed(Outcome::Transient, &message);
                        probe_with_first_record(&mut item, &mut work, is_part);
                        if !self.pause_until_reachable(stop).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Removes pieces older than `buffer.max_age` from `item`, counting them.
    fn drop_expired(&self, item: &mut Vec<Piece>) {
        let Some(max_age) = self.settings.max_age else {
            return;
        };
        let cutoff =
            now_ms().saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        let before: u64 = item.iter().map(|p| u64::from(p.lines)).sum();
        // Halves of a bisected record share its id: count each record once.
        let mut dropped_ids: Vec<u64> = item
            .iter()
            .filter(|p| p.ingest_ms < cutoff)
            .map(|p| p.id)
            .collect();
        dropped_ids.dedup();
        item.retain(|p| p.ingest_ms >= cutoff);
        let after: u64 = item.iter().map(|p| u64::from(p.lines)).sum();
        if before > after {
            self.upstream
                .counters
                .expired
                .add(before - after, dropped_ids.len() as u64);
            tracing::warn!(
                upstream = %self.settings.name,
                lines = before - after,
                "dropped lines older than buffer.max_age"
            );
        }
    }

    /// Splits a refused item: by records, then a single record by lines; a
    /// single refused line goes to the dead-letter tree.
    fn split_or_dead_letter(
        &self,
        mut item: Vec<Piece>,
        work: &mut std::collections::VecDeque<(Vec<Piece>, bool)>,
        status: u16,
        body: &[u8],
    ) {
        if item.len() > 1 {
            let right = item.split_off(item.len() / 2);
            work.push_front((right, true));
            work.push_front((item, true));
            return;
        }
        let Some(piece) = item.pop() else { return };
        if piece.lines > 1 {
            let (left, right) = piece.halves();
            work.push_front((vec![right], true));
            work.push_front((vec![left], true));
            return;
        }
        let reason = if status == 413 {
            "too_large"
        } else {
            "rejected"
        };
        let note = format!("{reason}: {}", excerpt(body));
        let origin = crate::queue::Origin {
            record_id: piece.id,
            cluster: &piece.cluster,
            hops: piece.hops,
        };
        match self.queue.dead_letter(
            &self.settings.name,
            origin,
            &piece.body,
            &note,
            Some(status),
        ) {
            Ok(()) => {
                self.upstream.counters.dead_lettered.add(reason, 1);
                tracing::warn!(
                    upstream = %self.settings.name,
                    status,
                    line = %String::from_utf8_lossy(&piece.body).trim_end(),
                    "upstream refuses a line; moved to the dead-letter queue"
                );
            }
            Err(e) => {
                tracing::error!(upstream = %self.settings.name, error = %e, "dead-lettering failed")
            }
        }
    }

    fn delivered(&self, item: &[Piece]) {
        let c = &self.upstream.counters;
        c.sent_batches.inc();
        c.sent_lines
            .inc_by(item.iter().map(|p| u64::from(p.lines)).sum());
        c.sent_bytes
            .inc_by(item.iter().map(|p| p.body.len() as u64).sum());
        c.last_success_ms.store(now_ms(), Ordering::Relaxed);
        if !c.up.swap(true, Ordering::Relaxed) {
            tracing::info!(upstream = %self.settings.name, "upstream accepts data again");
        }
        c.auth_failing.store(false, Ordering::Relaxed);
        c.misconfigured.store(false, Ordering::Relaxed);
        c.backoff_ms.store(0, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.backoff.reset();
        state.probing = false;
        if state.max_bytes < self.settings.max_bytes {
            state.max_bytes = (state.max_bytes * 2).min(self.settings.max_bytes);
        }
    }

    fn failed(&self, outcome: Outcome, message: &str) {
        let c = &self.upstream.counters;
        c.auth_failing
            .store(matches!(outcome, Outcome::Auth(_)), Ordering::Relaxed);
        c.misconfigured.store(
            matches!(outcome, Outcome::Misconfigured(_)),
            Ordering::Relaxed,
        );
        let was_up = c.up.swap(false, Ordering::Relaxed);
        let mut last = c.last_error.lock();
        if was_up || *last != message {
            tracing::warn!(upstream = %self.settings.name, error = message, "sending failed; will retry");
        }
        *last = message.to_owned();
        drop(last);
        c.last_error_ms.store(now_ms(), Ordering::Relaxed);
        if !matches!(outcome, Outcome::Poison(_) | Outcome::TooLarge) {
            self.state.lock().probing = true;
        }
    }

    /// Sleeps the backoff; false if `stop` fired meanwhile.
    /// After a connection failure: sleeps the backoff, but checks every
    /// 200 ms whether the upstream accepts TCP connections again (a NATS
    /// sink: whether its client reconnected) and ends the wait as soon as it
    /// does, so that forwarding resumes within a fraction of a second of a
    /// store or broker restart, whatever the backoff grew to.
    async fn pause_until_reachable(&self, stop: &CancellationToken) -> bool {
        let delay = self
            .state
            .lock()
            .backoff
            .next_delay(Outcome::Transient, None);
        self.upstream.counters.backoff_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.upstream.counters.retries.inc();
        let deadline = tokio::time::Instant::now() + delay;
        let target = self.sink.socket_target();
        // A NATS sink that lost its connection resumes once the client is
        // connected again.
        let was_down = self.sink.is_connected() == Some(false);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return true;
            }
            let step = (deadline - now).min(Duration::from_millis(200));
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(step) => {}
            }
            if was_down && self.sink.is_connected() == Some(true) {
                return true;
            }
            if let Some(target) = &target {
                let probe = tokio::time::timeout(
                    Duration::from_millis(200),
                    tokio::net::TcpStream::connect(target.as_str()),
                );
                if matches!(probe.await, Ok(Ok(_))) {
                    return true;
                }
            }
        }
    }

    async fn pause(
        &self,
        outcome: Outcome,
        retry_after: Option<Duration>,
        stop: &CancellationToken,
    ) -> bool {
        let delay = self.state.lock().backoff.next_delay(outcome, retry_after);
        self.upstream.counters.backoff_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.upstream.counters.retries.inc();
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body.get(..512).unwrap_or(body));
    text.trim().to_owned()
}
