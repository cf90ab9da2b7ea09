use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Generous deadline for things that should happen within milliseconds.
const DEADLINE: Duration = Duration::from_secs(5);

fn send_signal_to_self(name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed: {status}");
}

#[tokio::test]
async fn trigger_cancels_root_and_child_tokens() {
    let shutdown = Shutdown::new();
    let root = shutdown.token();
    let child = shutdown.child_token();
    let clone = shutdown.clone();
    assert!(!shutdown.is_triggered());
    assert!(!child.is_cancelled());

    clone.trigger();

    assert!(shutdown.is_triggered());
    assert!(root.is_cancelled());
    assert!(child.is_cancelled());
    assert!(!shutdown.is_forced(), "an ordinary shutdown is not forced");
    tokio::time::timeout(DEADLINE, shutdown.cancelled())
        .await
        .unwrap();
}

#[tokio::test]
async fn cancelling_a_child_leaves_the_root_running() {
    let shutdown = Shutdown::new();
    let child = shutdown.child_token();
    let sibling = shutdown.child_token();
    child.cancel();
    assert!(!shutdown.is_triggered());
    assert!(!sibling.is_cancelled());
}

#[tokio::test]
async fn force_also_triggers() {
    let shutdown = Shutdown::new();
    let force = shutdown.force_token();
    shutdown.force();
    assert!(force.is_cancelled());
    assert!(shutdown.is_triggered());
    tokio::time::timeout(DEADLINE, shutdown.forced())
        .await
        .unwrap();
}

#[tokio::test]
async fn finish_returns_true_when_tasks_stop_on_cancellation() {
    let shutdown = Shutdown::new();
    let stopped = Arc::new(AtomicUsize::new(0));
    for i in 0..3 {
        let token = shutdown.child_token();
        let stopped = Arc::clone(&stopped);
        shutdown.spawn(format!("worker-{i}"), async move {
            token.cancelled().await;
            stopped.fetch_add(1, Ordering::SeqCst);
        });
    }
    shutdown.spawn("quick", async {});
    shutdown.trigger();
    assert!(shutdown.clone().finish(DEADLINE).await);
    assert_eq!(stopped.load(Ordering::SeqCst), 3);
    assert!(shutdown.tracker().is_empty());
}

#[tokio::test]
async fn finish_returns_false_when_a_task_ignores_cancellation() {
    let shutdown = Shutdown::new();
    let token = shutdown.child_token();
    shutdown.spawn("polite", async move { token.cancelled().await });
    shutdown.spawn("stubborn", tokio::time::sleep(Duration::from_secs(30)));
    shutdown.trigger();
    let started = std::time::Instant::now();
    assert!(!shutdown.finish(Duration::from_millis(50)).await);
    assert!(started.elapsed() < DEADLINE);
}

#[tokio::test]
async fn spawn_returns_the_task_output() {
    let shutdown = Shutdown::new();
    let handle = shutdown.spawn("answer", async { 42 });
    assert_eq!(handle.await.unwrap(), 42);
}

#[test]
fn signal_helpers_outside_a_runtime_are_errors() {
    let shutdown = Shutdown::new();
    assert!(matches!(
        listen_for_signals(&shutdown),
        Err(ShutdownError::NoRuntime(_))
    ));
    assert!(matches!(sighup_stream(), Err(ShutdownError::NoRuntime(_))));
}

// The signal tests send real signals to this test process. That is safe under both
// nextest (one process per test) and `cargo test` (shared process): the handlers are
// installed before any signal is sent and stay installed for the life of the process,
// so the default action (terminate) never runs, and each test only asserts what a
// signal from a concurrently running signal test cannot undo.

#[tokio::test]
async fn sigterm_triggers_shutdown() {
    let shutdown = Shutdown::new();
    let _listener = listen_for_signals(&shutdown).unwrap();
    send_signal_to_self("TERM");
    tokio::time::timeout(DEADLINE, shutdown.cancelled())
        .await
        .expect("SIGTERM did not trigger the shutdown in time");
}

#[tokio::test]
async fn second_signal_forces_shutdown() {
    let shutdown = Shutdown::new();
    let listener = listen_for_signals(&shutdown).unwrap();
    send_signal_to_self("INT");
    tokio::time::timeout(DEADLINE, shutdown.cancelled())
        .await
        .expect("SIGINT did not trigger the shutdown in time");
    send_signal_to_self("TERM");
    tokio::time::timeout(DEADLINE, shutdown.forced())
        .await
        .expect("a second signal did not force the shutdown in time");
    tokio::time::timeout(DEADLINE, listener)
        .await
        .expect("the listener did not end after forcing")
        .unwrap();
}

#[tokio::test]
async fn sighup_stream_receives_sighup() {
    let mut hangups = sighup_stream().unwrap();
    send_signal_to_self("HUP");
    tokio::time::timeout(DEADLINE, hangups.recv())
        .await
        .expect("SIGHUP was not delivered in time");
}
