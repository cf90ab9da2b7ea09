//! cc-store: the ClusterCockpit metric store.
//!
//! A drop-in replacement for cc-metric-store: the same configuration file, the
//! same HTTP API (write, query, free, debug, healthcheck) and Ed25519 JWT
//! authentication, line protocol over HTTP and from NATS subscriptions (core
//! NATS: at most once, no acknowledgement), and checkpoints restored at
//! start. This crate holds the program; `main.rs` only parses the command
//! line and calls into it.
//!
//! Layout:
//! - [`cli`]: command-line flags, including the single-dash spellings of the
//!   upstream Go program;
//! - [`config`]: the cc-metric-store configuration file;
//! - [`registry`]: the configured metrics;
//! - [`buffer`]: fixed-frequency chunks and chains of samples;
//! - [`tree`]: the level tree (cluster → host → sub-devices);
//! - [`store`]: the tree and the registry together;
//! - [`ingest`]: line protocol into the tree;
//! - [`metrics`]: the store's own Prometheus metrics (`/metrics`);
//! - [`nats`]: line protocol from NATS subscriptions into [`ingest`];
//! - [`nodes`]: cc-backend's list of nodes running jobs (kept by retention);
//! - [`persist`]: checkpoints (snapshots and WAL), restore and cleanup;
//! - [`resample`]: LTTB downsampling of query results;
//! - [`stats`]: query statistics and the fixed-decimal JSON numbers of the API;
//! - [`status`]: the status page (`/`) and its JSON (`/status`).

pub mod api;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod nats;
pub mod nodes;
pub mod persist;
pub mod query;
pub mod registry;
pub mod resample;
pub mod server;
pub mod stats;
pub mod status;
pub mod store;
pub mod tree;
