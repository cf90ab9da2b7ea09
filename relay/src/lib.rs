//! cc-relay: the per-rack relay between ClusterCockpit collectors and the metric store.
//!
//! Collectors send InfluxDB line protocol to the relay over HTTP or NATS
//! (core subscriptions or a JetStream durable consumer); the relay stores
//! every accepted batch durably before it acknowledges it and forwards it
//! upward to cc-store, another relay, or a NATS subject, retrying until the
//! upstream has it. This crate holds the program; `main.rs` only parses the
//! command line and calls into it.
//!
//! Layout, in the order data flows:
//! - [`ingress`]: the sources: HTTP (auth, limits, decoding, status codes)
//!   and NATS (core and JetStream).
//! - [`runtime`]: the runtime every source hands its batches to
//!   ([`runtime::Runtime::accept`]), with one [`runtime::Upstream`] handle
//!   per destination; its module doc is the source seam.
//! - [`process`]: per-line timestamp normalisation, rules, validation and routing.
//! - [`queue`]: the durable per-upstream queues in sled (record format, group-commit
//!   flusher).
//! - [`forward`]: one worker per upstream: batching, retries, bisection;
//!   [`forward::sink`] is the sink seam (HTTP and NATS sinks).
//! - [`nats`]: the NATS connections, for metrics and readiness.
//! - [`app`]: start-up and shutdown, step by step; [`listen`] binds and serves
//!   sockets; [`reload`] handles SIGHUP.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, `/status`, `/`;
//!   [`status`] is what `/status` (JSON) and `/` (the status page) show.
//! - [`housekeeper`]: the global disk cap and free-space floor.
//! - [`config`], [`cli`]: the configuration file and the command line.
//! - [`metrics`]: the prometheus-client metrics and the registry `/metrics` serves.
//! - [`offline`]: `queue` and `dlq` maintenance commands.
//! - [`dead_letters`]: export, replay and purge of dead letters, offline and
//!   on the admin listener.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod dead_letters;
pub mod forward;
pub mod housekeeper;
pub mod ingress;
pub mod listen;
pub mod metrics;
pub mod nats;
pub mod offline;
pub mod process;
pub mod queue;
pub mod reload;
pub mod runtime;
pub mod status;
