//! Group commit: many writers share one fsync (spec §4.6 step 3).
//!
//! A writer appends its records, then awaits [`Flusher::wait_durable`], which registers
//! a waiter. One thread loops: when at least one waiter is pending (and, optionally, after
//! `group_commit_delay`), it takes **all** pending waiters, runs one flush (sled `flush`,
//! i.e. write-out plus fsync), and wakes exactly those waiters with
//! the result. Waiters that register while a flush runs wait for the next one, because
//! the flush in progress may have started before their last insert. So an `Ok` means: a
//! flush that *started after* the caller registered — hence after its inserts — returned
//! `Ok`.
//!
//! Flush count, latency (count, total, max) and waiters per flush are kept in
//! [`FlushStats`] (atomics), with a latency and a waiters-per-flush histogram for
//! `/metrics` (`ccrelay_sled_flush_seconds`, `ccrelay_sled_flush_waiters`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use super::{Queue, QueueError};

/// Something that can be made durable: the queue, or a fake in tests.
pub(crate) trait FlushTarget: Send + Sync + 'static {
    /// Blocking flush; `Err` carries the text that poisoned the target.
    fn flush_blocking(&self) -> Result<(), String>;
    /// Fails fast when the target is already poisoned.
    fn check_healthy(&self) -> Result<(), QueueError>;
}

impl FlushTarget for Queue {
    fn flush_blocking(&self) -> Result<(), String> {
        self.flush().map_err(|e| match e {
            QueueError::Poisoned { reason } => reason,
            other => self.poison_reason().unwrap_or_else(|| other.to_string()),
        })
    }

    fn check_healthy(&self) -> Result<(), QueueError> {
        match self.poison_reason() {
            Some(reason) => Err(QueueError::Poisoned { reason }),
            None => Ok(()),
        }
    }
}

/// Upper bounds (seconds) of the flush latency histogram
/// (`ccrelay_sled_flush_seconds`).
pub const FLUSH_LATENCY_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upper bounds of the waiters-per-flush histogram (`ccrelay_sled_flush_waiters`).
pub const FLUSH_WAITER_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Flush counters shared with the admin endpoint (relaxed atomics) and the
/// two histograms of `/metrics`.
#[derive(Debug)]
pub struct FlushStats {
    flushes: AtomicU64,
    failures: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    waiters: AtomicU64,
    max_waiters: AtomicU64,
    latency: Histogram,
    waiters_per_flush: Histogram,
}

impl Default for FlushStats {
    fn default() -> Self {
        FlushStats {
            flushes: AtomicU64::default(),
            failures: AtomicU64::default(),
            total_us: AtomicU64::default(),
            max_us: AtomicU64::default(),
            waiters: AtomicU64::default(),
            max_waiters: AtomicU64::default(),
            latency: Histogram::new(FLUSH_LATENCY_BUCKETS),
            waiters_per_flush: Histogram::new(FLUSH_WAITER_BUCKETS),
        }
    }
}

/// A copy of [`FlushStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushStatsSnapshot {
    /// Flushes run (successful or not).
    pub flushes: u64,
    /// Flushes that failed.
    pub failures: u64,
    /// Sum of flush durations, µs.
    pub total_us: u64,
    /// Longest flush, µs.
    pub max_us: u64,
    /// Waiters woken, summed over all flushes.
    pub waiters: u64,
    /// Most waiters served by one flush.
    pub max_waiters: u64,
}

impl FlushStats {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a waiter count as a histogram observation"
    )]
    fn record(&self, elapsed: Duration, waiters: usize, ok: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let waiters = waiters as u64;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.waiters.fetch_add(waiters, Ordering::Relaxed);
        self.max_waiters.fetch_max(waiters, Ordering::Relaxed);
        self.latency.observe(elapsed.as_secs_f64());
        self.waiters_per_flush.observe(waiters as f64);
    }

    /// Reads all counters.
    #[must_use]
    pub fn snapshot(&self) -> FlushStatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FlushStatsSnapshot {
            flushes: load(&self.flushes),
            failures: load(&self.failures),
            total_us: load(&self.total_us),
            max_us: load(&self.max_us),
            waiters: load(&self.waiters),
            max_waiters: load(&self.max_waiters),
        }
    }

    /// Duration of every flush in seconds ([`FLUSH_LATENCY_BUCKETS`]); a
    /// handle on the live histogram.
    #[must_use]
    pub fn latency(&self) -> Histogram {
        self.latency.clone()
    }

    /// Waiters served by every flush ([`FLUSH_WAITER_BUCKETS`]); a handle on
    /// the live histogram.
    #[must_use]
    pub fn waiters_per_flush(&self) -> Histogram {
        self.waiters_per_flush.clone()
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Default)]
struct Pending {
    waiters: Vec<Waiter>,
    /// Writers between [`Flusher::writing`] and their registration as waiters,
    /// announced since the last flush began gathering.
    writing: usize,
    /// Writers announced in the epoch before, still not registered: the flush
    /// in the making waits for these (a bounded time), not for later ones, and
    /// not again for these once it ran.
    earlier: usize,
    /// Advances each time a flush begins gathering.
    epoch: u64,
    closed: bool,
}

impl Pending {
    /// A writer announced in `epoch` registered or gave up; true if it was the
    /// last one a gathering flush waits for. Writers older than the flush
    /// before are no longer counted: each holds back at most one flush.
    fn retire(&mut self, epoch: u64) -> bool {
        if epoch == self.epoch {
            self.writing = self.writing.saturating_sub(1);
            false
        } else if epoch + 1 == self.epoch {
            self.earlier = self.earlier.saturating_sub(1);
            self.earlier == 0
        } else {
            false
        }
    }
}

/// How long a flush waits for writers already under way to register.
const GATHER_MAX: Duration = Duration::from_millis(2);

struct Shared {
    target: Arc<dyn FlushTarget>,
    pending: Mutex<Pending>,
    wake: Condvar,
    stats: Arc<FlushStats>,
    delay: Duration,
    /// Longest wait for announced writers ([`GATHER_MAX`]).
    gather: Duration,
}

/// The group-commit flusher: one thread making appends durable for many waiters at
/// once. Dropping it (or [`Flusher::shutdown`]) stops the thread.
///
/// A dedicated thread rather than a task on the blocking pool: a flush then costs no
/// hand-off between runtime and pool threads, which on a busy machine was a large
/// part of its latency.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for Flusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flusher")
            .field("delay", &self.shared.delay)
            .field("stats", &self.shared.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Flusher {
    /// Starts the flusher thread for `queue`: a flush starts once a waiter is pending
    /// and no flush is running, after waiting up to 2 ms for writers already
    /// announced (see [`Flusher::writing`]).
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread.
    #[must_use]
    pub fn new(queue: Arc<Queue>) -> Flusher {
        Flusher::with_delay(queue, Duration::ZERO)
    }

    /// Like [`Flusher::new`], waiting `group_commit_delay` more before every flush to
    /// gather more writers into it (`storage.group_commit_delay`).
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread.
    #[must_use]
    pub fn with_delay(queue: Arc<Queue>, group_commit_delay: Duration) -> Flusher {
        Flusher::with_target(queue, group_commit_delay)
    }

    pub(crate) fn with_target(target: Arc<dyn FlushTarget>, delay: Duration) -> Flusher {
        Flusher::start(target, delay, GATHER_MAX)
    }

    #[expect(
        clippy::expect_used,
        reason = "a process that cannot start one thread at start-up cannot run"
    )]
    pub(crate) fn start(
        target: Arc<dyn FlushTarget>,
        delay: Duration,
        gather: Duration,
    ) -> Flusher {
        let shared = Arc::new(Shared {
            target,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            stats: Arc::new(FlushStats::default()),
            delay,
            gather,
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("cc-relay-commit".into())
                .spawn(move || run(&shared))
                // INVARIANT: only fails when the OS refuses a thread (resource limits).
                .expect("starting the group-commit thread")
        };
        Flusher {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Waits until everything appended before this call is durable: resolves after a
    /// flush that started after the registration returned.
    ///
    /// # Errors
    ///
    /// [`QueueError::Poisoned`] if the queue is (or the flush made it) poisoned;
    /// [`QueueError::FlusherStopped`] after shutdown.
    pub async fn wait_durable(&self) -> Result<(), QueueError> {
        let rx = self.register(None)?;
        Self::outcome(rx).await
    }

    /// Adds a waiter (and ends a writer's announcement, in the same critical section).
    fn register(
        &self,
        announced: Option<u64>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, QueueError> {
        let healthy = self.shared.target.check_healthy();
        let (tx, rx) = oneshot::channel();
        let wake = {
            let mut p = self.shared.pending.lock();
            let released = announced.is_some_and(|epoch| p.retire(epoch));
            healthy?;
            if p.closed {
                return Err(QueueError::FlusherStopped);
            }
            p.waiters.push(tx);
            // The flusher needs waking for the first waiter, or when the last
            // writer it gathers for arrives; otherwise it is busy or will look.
            p.waiters.len() == 1 || released
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(rx)
    }

    async fn outcome(rx: oneshot::Receiver<Result<(), String>>) -> Result<(), QueueError> {
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(QueueError::Poisoned { reason }),
            Err(_) => Err(QueueError::FlusherStopped),
        }
    }

    /// Announces a writer that is about to append: until it registers (with
    /// [`Writing::durable`]) or gives up (drops the guard), the next flush waits up
    /// to 2 ms for it, so that writers arriving together share one fsync instead of
    /// each starting their own. A flush waits only for writers announced before it
    /// began gathering, never for a stream of later ones.
    #[must_use]
    pub fn writing(&self) -> Writing<'_> {
        let mut p = self.shared.pending.lock();
        p.writing += 1;
        Writing {
            flusher: self,
            epoch: p.epoch,
            registered: false,
        }
    }

    /// The flush counters (shared; cheap to clone for the admin endpoint).
    #[must_use]
    pub fn stats(&self) -> Arc<FlushStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Stops the thread after the flush in progress (if any) and waits for it.
    pub async fn shutdown(self) {
        self.close();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("group-commit flusher thread failed");
            }
        }
    }

    fn close(&self) {
        self.shared.pending.lock().closed = true;
        self.shared.wake.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.pending.lock().epoch
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.shared.pending.lock().waiters.len()
    }
}

/// A writer announced with [`Flusher::writing`].
#[derive(Debug)]
pub struct Writing<'a> {
    flusher: &'a Flusher,
    epoch: u64,
    registered: bool,
}

impl Writing<'_> {
    /// Waits until everything this writer appended is durable; see
    /// [`Flusher::wait_durable`].
    ///
    /// # Errors
    ///
    /// As [`Flusher::wait_durable`].
    pub async fn durable(mut self) -> Result<(), QueueError> {
        self.registered = true;
        let rx = self.flusher.register(Some(self.epoch))?;
        Flusher::outcome(rx).await
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.registered && self.flusher.shared.pending.lock().retire(self.epoch) {
            self.flusher.shared.wake.notify_one();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(shared: &Shared) {
    loop {
        let waiters = {
            let mut p = shared.pending.lock();
            while p.waiters.is_empty() {
                if p.closed {
                    return;
                }
                shared.wake.wait(&mut p);
            }
            // Writers already appending would otherwise need a flush of their own.
            p.epoch += 1;
            // Writers of older epochs had their flush; only these count now.
            p.earlier = std::mem::take(&mut p.writing);
            if p.earlier > 0 {
                let deadline = Instant::now() + shared.gather;
                while p.earlier > 0
                    && !p.closed
                    && !shared.wake.wait_until(&mut p, deadline).timed_out()
                {}
            }
            if !shared.delay.is_zero() {
                // Gather more writers for the whole delay (new waiters notify).
                let deadline = Instant::now() + shared.delay;
                while !p.closed && !shared.wake.wait_until(&mut p, deadline).timed_out() {}
            }
            std::mem::take(&mut p.waiters)
        };
        let started = Instant::now();
        // A panic inside the engine fails this flush's waiters (as an error
        // does) instead of ending the thread that every later writer needs.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.target.flush_blocking()
        }))
        .unwrap_or_else(|_| Err("the flush panicked".to_owned()));
        shared
            .stats
            .record(started.elapsed(), waiters.len(), result.is_ok());
        for w in waiters {
            // A waiter that gave up (request cancelled) is fine to skip.
            let _ = w.send(result.clone());
        }
        // Waiters that registered during this flush are taken at the top of the loop
        // and get the next flush.
    }
}
