//! The group-commit flusher: shared fsyncs, the "started after registration" rule,
//! failure propagation, shutdown.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{eventually, open, record};
use crate::queue::flusher::FlushTarget;
use crate::queue::{Flusher, QueueError};

/// A flush target whose flushes block until the test releases them.
#[derive(Default)]
struct Gated {
    started: AtomicUsize,
    finished: AtomicUsize,
    /// Flushes allowed to finish so far.
    permits: Mutex<usize>,
    cv: Condvar,
    fail: Mutex<Option<String>>,
    /// How long each flush takes at least (a slow disk): waiters pile up meanwhile.
    sleep: Duration,
}

impl Gated {
    fn open_gate() -> Gated {
        let g = Gated::default();
        *g.permits.lock() = usize::MAX / 2;
        g
    }

    fn release(&self, n: usize) {
        *self.permits.lock() += n;
        self.cv.notify_all();
    }
}

impl FlushTarget for Gated {
    fn flush_blocking(&self) -> Result<(), String> {
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(self.sleep);
        let mut permits = self.permits.lock();
        while *permits < n {
            self.cv.wait(&mut permits);
        }
        drop(permits);
        self.finished.fetch_add(1, Ordering::SeqCst);
        match self.fail.lock().clone() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn check_healthy(&self) -> Result<(), QueueError> {
        if self.finished.load(Ordering::SeqCst) > 0
            && let Some(reason) = self.fail.lock().clone()
        {
            return Err(QueueError::Poisoned { reason });
        }
        Ok(())
    }
}

/// Polls `fut` once (with a waker that does nothing): `Ready` only if its result is
/// already there.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waiters_share_flushes() {
    let target = Arc::new(Gated {
        sleep: Duration::from_millis(20),
        ..Gated::open_gate()
    });
    let flusher = Arc::new(Flusher::with_target(target.clone(), Duration::ZERO));
    let n = 200;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let f = Arc::clone(&flusher);
        tasks.push(tokio::spawn(async move { f.wait_durable().await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = flusher.stats().snapshot();
    assert_eq!(s.waiters, n);
    assert!(s.flushes <= 5, "{n} waiters took {} flushes", s.flushes);
    assert_eq!(s.flushes as usize, target.started.load(Ordering::SeqCst));
    assert!(s.max_waiters > 1);
    assert!(s.max_us >= 20_000 && s.total_us >= s.max_us, "{s:?}");
    let stats = flusher.stats();
    assert_eq!(stats.latency().count(), s.flushes);
    assert_eq!(stats.waiters_per_flush().count(), s.flushes);
    assert!((stats.waiters_per_flush().sum() - n as f64).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_a_real_queue_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(open(dir.path(), &["a"]));
    let flusher = Arc::new(Flusher::new(Arc::clone(&q)));
    let n = 64u64;
    let barrier = Arc::new(tokio::sync::Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (q, f, b) = (Arc::clone(&q), Arc::clone(&flusher), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            q.append(&["a"], &[record(i, 50, i)]).unwrap();
            f.wait_durable().await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = flusher.stats().snapshot();
    assert_eq!(s.waiters, n);
    assert!(s.flushes < n, "every writer got its own fsync: {s:?}");
    assert_eq!(q.len("a").unwrap().records, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_only_woken_by_a_flush_that_started_after_it_registered() {
    let target = Arc::new(Gated::default());
    let flusher = Arc::new(Flusher::with_target(target.clone(), Duration::ZERO));

    let f = Arc::clone(&flusher);
    let first = tokio::spawn(async move { f.wait_durable().await });
    eventually("flush 1 to start", || {
        target.started.load(Ordering::SeqCst) == 1
    })
    .await;

    // Registers while flush 1 is running (its inserts may postdate flush 1's start).
    // Polled by hand, not spawned: whether it resolved is then a fact, not a race
    // with the scheduler.
    let mut second = Box::pin(flusher.wait_durable());
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(flusher.pending_len(), 1, "waiter 2 registered");

    target.release(1);
    first.await.unwrap().unwrap();
    eventually("flush 2 to start", || {
        target.started.load(Ordering::SeqCst) == 2
    })
    .await;
    // Flush 2 starts only after flush 1's results were sent, so had waiter 2
    // been among flush 1's waiters, its result would be there now.
    assert!(
        poll_once(&mut second).is_pending(),
        "woken by the flush that began before it"
    );

    target.release(1);
    second.await.unwrap();
    assert_eq!(target.finished.load(Ordering::SeqCst), 2);
    assert_eq!(flusher.stats().snapshot().flushes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_fails_its_waiters_and_every_later_one() {
    let target = Arc::new(Gated::default());
    *target.fail.lock() = Some("flush: injected EIO".into());
    let flusher = Arc::new(Flusher::with_target(target.clone(), Duration::ZERO));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let f = Arc::clone(&flusher);
        tasks.push(tokio::spawn(async move { f.wait_durable().await }));
    }
    eventually("a flush to start", || {
        target.started.load(Ordering::SeqCst) >= 1
    })
    .await;
    target.release(10);
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(
            matches!(err, QueueError::Poisoned { ref reason } if reason == "flush: injected EIO"),
            "{err:?}"
        );
    }
    let started = target.started.load(Ordering::SeqCst);
    let err = flusher.wait_durable().await.unwrap_err();
    assert!(matches!(err, QueueError::Poisoned { .. }));
    assert_eq!(
        target.started.load(Ordering::SeqCst),
        started,
        "fails fast, no flush"
    );
    assert!(flusher.stats().snapshot().failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_queue_fails_waiters_fast() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(open(dir.path(), &["a"]));
    let flusher = Flusher::new(Arc::clone(&q));
    flusher.wait_durable().await.unwrap();
    q.poison_for_test("insert: injected ENOSPC");
    let err = flusher.wait_durable().await.unwrap_err();
    assert!(
        matches!(err, QueueError::Poisoned { ref reason } if reason == "insert: injected ENOSPC"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_delay_gathers_writers() {
    let target = Arc::new(Gated::open_gate());
    let flusher = Arc::new(Flusher::with_target(
        target.clone(),
        Duration::from_millis(200),
    ));
    let mut first = Box::pin(flusher.wait_durable());
    assert!(poll_once(&mut first).is_pending());
    // The flusher has seen the first writer and waits out the delay: the
    // epoch is bumped under the lock that it releases only while it waits.
    eventually("the delay to begin", || flusher.epoch() == 1).await;
    let mut later = Vec::new();
    for _ in 0..9 {
        let mut w = Box::pin(flusher.wait_durable());
        assert!(poll_once(&mut w).is_pending());
        later.push(w);
    }
    // Registering nine waiters takes microseconds, far less than the delay;
    // without the delay, the first writer's flush would be on its way already.
    assert_eq!(target.started.load(Ordering::SeqCst), 0, "flushed early");
    assert_eq!(flusher.pending_len(), 10);
    first.await.unwrap();
    for w in later {
        w.await.unwrap();
    }
    let s = flusher.stats().snapshot();
    assert_eq!((s.flushes, s.max_waiters), (1, 10), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_an_idle_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(open(dir.path(), &["a"]));
    let flusher = Flusher::new(Arc::clone(&q));
    flusher.wait_durable().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), flusher.shutdown())
        .await
        .expect("shutdown hangs");
}
