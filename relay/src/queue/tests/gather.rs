//! Group commit gathers writers that are already appending into the flush
//! that is about to start, and never waits for later ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::eventually;
use crate::queue::flusher::FlushTarget;
use crate::queue::{Flusher, QueueError};

#[derive(Default)]
struct Counting {
    flushes: AtomicUsize,
}

impl FlushTarget for Counting {
    fn flush_blocking(&self) -> Result<(), String> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn check_healthy(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Long enough that a test finishing well before it proves the flush did
/// not wait it out.
const LONG: Duration = Duration::from_secs(30);

fn flusher() -> (Arc<Counting>, Arc<Flusher>) {
    let target = Arc::new(Counting::default());
    let flusher = Arc::new(Flusher::start(target.clone(), Duration::ZERO, LONG));
    (target, flusher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_waits_for_a_writer_that_is_appending() {
    let (target, flusher) = flusher();
    let writer = flusher.writing();
    let waiting = tokio::spawn({
        let flusher = Arc::clone(&flusher);
        async move { flusher.wait_durable().await }
    });
    eventually("the waiter to register", || flusher.pending_len() == 1).await;
    // Give the flusher every chance to (wrongly) flush without the writer.
    tokio::task::yield_now().await;
    assert_eq!(target.flushes.load(Ordering::SeqCst), 0, "flushed early");
    assert!(!waiting.is_finished());
    writer.durable().await.unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(
        target.flushes.load(Ordering::SeqCst),
        1,
        "both served by one flush"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_gives_up_releases_the_flush() {
    let (target, flusher) = flusher();
    let writer = flusher.writing();
    let started = Instant::now();
    let waiting = tokio::spawn({
        let flusher = Arc::clone(&flusher);
        async move { flusher.wait_durable().await }
    });
    eventually("the waiter to register", || flusher.pending_len() == 1).await;
    drop(writer);
    waiting.await.unwrap().unwrap();
    assert!(started.elapsed() < LONG / 2);
    assert_eq!(target.flushes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_writers_do_not_hold_back_a_flush() {
    let (target, flusher) = flusher();
    let early = flusher.writing();
    let started = Instant::now();
    let waiting = tokio::spawn({
        let flusher = Arc::clone(&flusher);
        async move { flusher.wait_durable().await }
    });
    eventually("the waiter to register", || flusher.pending_len() == 1).await;
    // The flush gathers once it sees the waiter; a writer announced after
    // that belongs to the next flush. Announce it only once gathering began
    // (the waiter list is taken only after gathering, so poll the epoch).
    eventually("gathering to begin", || flusher.epoch() > 0).await;
    let late = flusher.writing();
    early.durable().await.unwrap();
    waiting.await.unwrap().unwrap();
    assert!(started.elapsed() < LONG / 2, "waited for the late writer");
    assert_eq!(target.flushes.load(Ordering::SeqCst), 1);
    late.durable().await.unwrap();
    assert_eq!(target.flushes.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_never_arrives_holds_back_one_flush_only() {
    let gather = Duration::from_secs(2);
    let target = Arc::new(Counting::default());
    let flusher = Arc::new(Flusher::start(target.clone(), Duration::ZERO, gather));
    // A sender whose body never comes (announced, never registered).
    let _stuck = flusher.writing();
    let first = Instant::now();
    flusher.wait_durable().await.unwrap();
    assert!(first.elapsed() >= gather, "the first flush waits for it");
    let second = Instant::now();
    flusher.wait_durable().await.unwrap();
    assert!(
        second.elapsed() < gather / 2,
        "later flushes do not wait for it again ({:?})",
        second.elapsed()
    );
    assert_eq!(target.flushes.load(Ordering::SeqCst), 2);
}

/// Panics on its first flush, then succeeds.
#[derive(Default)]
struct PanicsOnce {
    flushes: AtomicUsize,
}

impl FlushTarget for PanicsOnce {
    fn flush_blocking(&self) -> Result<(), String> {
        assert!(
            self.flushes.fetch_add(1, Ordering::SeqCst) > 0,
            "the first flush panics (on purpose)"
        );
        Ok(())
    }

    fn check_healthy(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_flush_fails_its_waiters_and_the_next_flush_runs() {
    let target = Arc::new(PanicsOnce::default());
    let flusher = Flusher::start(target.clone(), Duration::ZERO, LONG);
    let first = flusher.wait_durable().await;
    assert!(
        matches!(&first, Err(QueueError::Poisoned { reason }) if reason.contains("panicked")),
        "{first:?}"
    );
    flusher.wait_durable().await.unwrap();
    assert_eq!(target.flushes.load(Ordering::SeqCst), 2);
}
