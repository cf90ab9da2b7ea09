//! Shared building blocks of `cc-relay` and `cc-store`.
//!
//! Both programs speak the same wire formats and follow the same operational
//! conventions, so everything they have in common lives here, once:
//!
//! - [`lineproto`]: a zero-copy InfluxDB line-protocol parser that yields one
//!   result per line, a formatter, and timestamp precision handling;
//! - [`auth`]: Ed25519 (EdDSA) JWT verification with the time-claim rules of
//!   cc-metric-store and a bounded cache of verified tokens;
//! - [`config`]: JSON config loading whose errors name the file, the key and
//!   the position, plus human-readable durations (`"48h"`) and byte sizes
//!   (`"64MiB"`);
//! - [`metrics`]: the `prometheus-client` registry served at `/metrics`
//!   (format negotiation, build information, scrape-time families);
//! - [`net`]: listening sockets with the accept backlog a cluster needs;
//! - [`nats`]: NATS client connections (servers, credentials, TLS), their
//!   state for metrics and readiness, and subscriptions drained without
//!   unseen losses;
//! - [`rlimit`]: the open-file limit raised to the hard limit, as Go
//!   programs do;
//! - [`secret`]: credentials read from files and never printed;
//! - [`status_page`]: the HTML status pages (`GET /`): escaping, layout,
//!   number formats, and rates from counter snapshots;
//! - [`telemetry`]: `tracing` set-up (`RUST_LOG`, text or JSON output);
//! - [`time`]: the wall clock in seconds and milliseconds;
//! - [`tls`]: rustls server and client configurations from PEM files, with
//!   `ring` as the one crypto provider;
//! - [`shutdown`]: SIGTERM/SIGINT turned into a cancellation token, plus a
//!   task tracker for orderly shutdown;
//! - [`systemd`]: readiness, status lines and the watchdog of `Type=notify`
//!   units.

pub mod auth;
pub mod config;
pub mod lineproto;
pub mod metrics;
pub mod nats;
pub mod net;
pub mod rlimit;
pub mod secret;
pub mod shutdown;
pub mod status_page;
pub mod systemd;
pub mod telemetry;
pub mod time;
pub mod tls;

/// An error with all its causes, joined by `: ` (`cannot read x: permission
/// denied`), for messages that end up in a log line or on a terminal.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
