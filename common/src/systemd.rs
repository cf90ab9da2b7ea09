//! systemd service notifications (`Type=notify` units), through `sd-notify`.
//!
//! Every call is a no-op when the process was not started by systemd (no
//! `NOTIFY_SOCKET` in the environment), so the binaries call them
//! unconditionally:
//!
//! - [`ready`] once the service does its job (listeners bound, data loaded);
//! - [`status`] for the one-line state `systemctl status` shows (checkpoints
//!   loading, queue draining);
//! - [`extend_timeout`] while a long start-up or shutdown step is still
//!   making progress, so that `TimeoutStartSec`/`TimeoutStopSec` count from
//!   the last sign of life instead of from the start;
//! - [`stopping`] when shutdown begins;
//! - [`spawn_watchdog`] when the unit sets `WatchdogSec=`: a task on the
//!   runtime pings systemd at half the interval, so a stuck runtime is
//!   restarted.
//!
//! A failed notification is logged at debug level and otherwise ignored:
//! it must never stop the service.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "systemd notification failed");
    }
}

/// `READY=1` with a status line.
pub fn ready(status_line: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status_line)]);
}

/// `STATUS=…`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// `EXTEND_TIMEOUT_USEC=…`: the current start-up or shutdown step needs up
/// to `by` more.
pub fn extend_timeout(by: Duration) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::ExtendTimeoutUsec(usec)]);
}

/// `STOPPING=1` with a status line.
pub fn stopping(status_line: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status_line)]);
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC` for this
/// process), if any.
#[must_use]
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// With `WatchdogSec=` set on the unit, spawns a task on the current tokio
/// runtime that sends `WATCHDOG=1` at half the interval until the process
/// ends. Returns whether it did.
pub fn spawn_watchdog() -> bool {
    let Some(interval) = watchdog_interval() else {
        return false;
    };
    let period = (interval / 2).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
    tracing::info!(interval = ?interval, "systemd watchdog on");
    true
}
