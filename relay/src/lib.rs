//! cc-relay: the per-rack relay between ClusterCockpit collectors and the metric store.
//!
//! Collectors post InfluxDB line protocol to the relay (over HTTP or NATS); the
//! relay stores every accepted batch durably before it acknowledges it and
//! forwards it upward to cc-store (or another relay), retrying until the
//! upstream has it. This crate holds the program; `main.rs` only parses the
//! command line and calls into it.
//!
//! Layout:
//! - [`app`]: start-up and shutdown: queue, workers, admin, ingress.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, `/status`.
//! - [`cli`]: command-line flags.
//! - [`config`]: the configuration file: loading, defaults, validation, secrets.
//! - [`forward`]: one worker per upstream: batching, retries, bisection.
//! - [`housekeeper`]: the global disk cap and free-space floor.
//! - [`ingress`]: the HTTP write endpoint: auth, limits, decoding, durable acknowledgement.
//! - [`metrics`]: histograms and labelled counters behind `/metrics`.
//! - [`offline`]: `queue` and `dlq` maintenance commands.
//! - [`process`]: per-line timestamp normalisation, rules, validation and routing.
//! - [`queue`]: the durable per-upstream queues in sled (record format, group-commit
//!   flusher).

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod forward;
pub mod housekeeper;
pub mod ingress;
pub mod listen;
pub mod metrics;
pub mod offline;
pub mod process;
pub mod queue;
pub mod reload;
pub mod runtime;
