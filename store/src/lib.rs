//! cc-store: the ClusterCockpit metric store.
//!
//! A drop-in replacement for cc-metric-store: the same configuration file, the
//! same HTTP API (write, query, free, debug, healthcheck) and Ed25519 JWT
//! authentication, NATS ingestion, and checkpoints restored at start. This
//! crate holds the program; `main.rs` only parses the command line and calls
//! into it.
//!
//! Layout:
//! - [`cli`]: command-line flags, including the single-dash spellings of the
//!   upstream Go program;
//! - [`config`]: the cc-metric-store configuration file;
//! - [`resample`]: LTTB downsampling of query results;
//! - [`stats`]: query statistics and the fixed-decimal JSON numbers of the API.

pub mod cli;
pub mod config;
pub mod resample;
pub mod stats;
