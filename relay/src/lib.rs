//! cc-relay: the per-rack relay between ClusterCockpit collectors and the metric store.
//!
//! Collectors post InfluxDB line protocol to the relay over HTTP (NATS is not
//! built yet); the relay stores every accepted batch durably before it
//! acknowledges it and forwards it upward to cc-store (or another relay),
//! retrying until the upstream has it. This crate holds the program; `main.rs` only parses the
//! command line and calls into it.
//!
//! Layout, in the order data flows:
//! - [`ingress`]: HTTP sources: auth, limits, decoding, status codes.
//! - [`runtime`]: the runtime every source hands its batches to
//!   ([`runtime::Runtime::accept`]), with one [`runtime::Upstream`] handle
//!   per destination; its module doc is the source seam (how a NATS source
//!   plugs in).
//! - [`process`]: per-line timestamp normalisation, rules, validation and routing.
//! - [`queue`]: the durable per-upstream queues in sled (record format, group-commit
//!   flusher).
//! - [`forward`]: one worker per upstream: batching, retries, bisection;
//!   [`forward::sink`] is the sink seam (how a NATS sink plugs in).
//! - [`app`]: start-up and shutdown, step by step; [`listen`] binds and serves
//!   sockets; [`reload`] handles SIGHUP.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, `/status`.
//! - [`housekeeper`]: the global disk cap and free-space floor.
//! - [`config`], [`cli`]: the configuration file and the command line.
//! - [`metrics`]: the prometheus-client metrics and the registry `/metrics` serves.
//! - [`offline`]: `queue` and `dlq` maintenance commands.

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
