//! Orderly shutdown: a cancellation token tree, a task tracker, and SIGTERM/SIGINT handling.
//!
//! A [`Shutdown`] is created once in `main` and cloned into every component. Long-lived
//! tasks are started with [`Shutdown::spawn`] (so they are tracked) and watch
//! [`Shutdown::child_token`] or [`Shutdown::cancelled`] (so they learn when to stop).
//! The sequence in `main` is:
//!
//! 1. [`listen_for_signals`]: the first SIGTERM/SIGINT calls [`Shutdown::trigger`];
//! 2. `shutdown.cancelled().await`, then stop accepting work;
//! 3. [`Shutdown::finish`] with the grace period: waits for tracked tasks, `false` if the
//!    grace expired;
//! 4. final flushes, exit.
//!
//! **Forced shutdown.** A second SIGTERM/SIGINT while shutting down cancels a separate
//! *force* token ([`Shutdown::force_token`], [`Shutdown::forced`]). This module never exits
//! the process itself: `main` decides, typically by racing its orderly shutdown against
//! `forced()` and exiting with a non-zero status when the latter wins (the relay spec asks
//! for an immediate exit; durable data is safe either way).
//!
//! [`sighup_stream`] gives the SIGHUP stream used for reloading secrets and certificates.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why signal handling could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Called outside a tokio runtime.
    #[error("signal handlers need a running tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    /// The OS refused to install a signal handler.
    #[error("cannot install a handler for {signal}")]
    InstallHandler {
        /// The signal's name, e.g. `SIGTERM`.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The shutdown state shared by all tasks of a process. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled once shutdown starts; every task's token is a child of it.
    token: CancellationToken,
    /// Cancelled when shutdown must not wait any longer (second signal). Independent of
    /// `token` so that watching it never fires on an ordinary shutdown.
    force: CancellationToken,
    /// Every task started with [`Shutdown::spawn`], so [`Shutdown::finish`] can wait for them.
    tracker: TaskTracker,
}

impl Shutdown {
    /// A new shutdown state: not triggered, no tasks.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A clone of the root token; cancelled when shutdown is triggered.
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// A new child of the root token: cancelled with it, but cancelling the child (to stop
    /// one component early) leaves the rest running.
    #[must_use]
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// A handle to the task tracker, for callers that spawn on it themselves.
    #[must_use]
    pub fn tracker(&self) -> TaskTracker {
        self.tracker.clone()
    }

    /// Spawns `future` on the tracker; logs at debug level when it ends (error if it panics).
    ///
    /// The task is not cancelled automatically: it should watch [`Shutdown::child_token`]
    /// or [`Shutdown::cancelled`].
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime, like [`tokio::spawn`].
    pub fn spawn<F>(&self, name: impl Into<Cow<'static, str>>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut guard = TaskEndLog {
            name: name.into(),
            completed: false,
        };
        self.tracker.spawn(async move {
            tracing::debug!(task = %guard.name, "task started");
            let output = future.await;
            guard.mark_completed();
            output
        })
    }

    /// Starts shutdown: cancels the root token and so every child token. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has been triggered.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown has been triggered (immediately if it already was).
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Forces shutdown: triggers it (if not yet done) and cancels the force token.
    pub fn force(&self) {
        self.token.cancel();
        self.force.cancel();
    }

    /// A clone of the force token; cancelled by [`Shutdown::force`], e.g. on a second signal.
    #[must_use]
    pub fn force_token(&self) -> CancellationToken {
        self.force.clone()
    }

    /// Whether shutdown has been forced.
    #[must_use]
    pub fn is_forced(&self) -> bool {
        self.force.is_cancelled()
    }

    /// Completes once shutdown has been forced.
    pub async fn forced(&self) {
        self.force.cancelled().await;
    }

    /// Closes the tracker and waits up to `grace` for every tracked task to end.
    ///
    /// Does **not** cancel anything: call [`Shutdown::trigger`] first, or let tasks drain
    /// on their own for a while before cancelling them. Returns `true` if all tasks ended in
    /// time, `false` (with a warning) if the grace period expired; the remaining tasks keep
    /// running until the runtime shuts down.
    pub async fn finish(self, grace: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            tracing::debug!("all tasks finished");
            true
        } else {
            tracing::warn!(
                remaining = self.tracker.len(),
                grace = ?grace,
                "tasks still running after the shutdown grace period"
            );
            false
        }
    }
}

/// Logs the end of a task spawned by [`Shutdown::spawn`], however it ends.
struct TaskEndLog {
    /// The task's name, for the log line.
    name: Cow<'static, str>,
    /// Set after the future returned; otherwise the task panicked or was aborted.
    completed: bool,
}

impl TaskEndLog {
    /// Records that the task's future returned normally.
    fn mark_completed(&mut self) {
        self.completed = true;
    }
}

impl Drop for TaskEndLog {
    fn drop(&mut self) {
        if self.completed {
            tracing::debug!(task = %self.name, "task finished");
        } else if std::thread::panicking() {
            tracing::error!(task = %self.name, "task panicked");
        } else {
            tracing::debug!(task = %self.name, "task dropped before completion");
        }
    }
}

/// Installs SIGTERM and SIGINT handlers that drive `shutdown`.
///
/// The first signal triggers the shutdown (logged at info level). A signal arriving while
/// shutdown is already under way (a second signal, or one after a programmatic
/// [`Shutdown::trigger`]) is logged as a warning and calls [`Shutdown::force`]; the listener
/// task then ends. It also ends if the shutdown is forced by other means. The process is
/// never exited here: `main` watches [`Shutdown::forced`].
///
/// The handlers are installed before this function returns, so a signal sent right after
/// it is not lost. The returned task is not tracked (it would keep
/// [`Shutdown::finish`] waiting); abort it or let it end with the runtime.
///
/// # Errors
///
/// [`ShutdownError::NoRuntime`] outside a tokio runtime, [`ShutdownError::InstallHandler`]
/// if the OS refuses a handler.
pub fn listen_for_signals(shutdown: &Shutdown) -> Result<JoinHandle<()>, ShutdownError> {
    let handle = tokio::runtime::Handle::try_current().map_err(ShutdownError::NoRuntime)?;
    let mut sigterm = install(SignalKind::terminate(), "SIGTERM")?;
    let mut sigint = install(SignalKind::interrupt(), "SIGINT")?;
    let shutdown = shutdown.clone();
    Ok(handle.spawn(async move {
        loop {
            let received = tokio::select! {
                () = shutdown.forced() => return,
                received = sigterm.recv() => received.map(|()| "SIGTERM"),
                received = sigint.recv() => received.map(|()| "SIGINT"),
            };
            let Some(name) = received else {
                // The signal driver is gone: the runtime is shutting down.
                return;
            };
            if shutdown.is_triggered() {
                tracing::warn!(
                    signal = name,
                    "received a second signal while shutting down; forcing"
                );
                shutdown.force();
                return;
            }
            tracing::info!(signal = name, "received signal; shutting down");
            shutdown.trigger();
        }
    }))
}

/// A stream of SIGHUP deliveries, for reloading secrets, certificates and the log level.
///
/// Installing it replaces the default action of SIGHUP (terminate) for the whole process.
///
/// # Errors
///
/// [`ShutdownError::NoRuntime`] outside a tokio runtime, [`ShutdownError::InstallHandler`]
/// if the OS refuses the handler.
pub fn sighup_stream() -> Result<Signal, ShutdownError> {
    tokio::runtime::Handle::try_current().map_err(ShutdownError::NoRuntime)?;
    install(SignalKind::hangup(), "SIGHUP")
}

/// Installs one signal handler. The caller has checked that a runtime is current.
fn install(kind: SignalKind, name: &'static str) -> Result<Signal, ShutdownError> {
    signal(kind).map_err(|source| ShutdownError::InstallHandler {
        signal: name,
        source,
    })
}

#[cfg(test)]
mod tests;
