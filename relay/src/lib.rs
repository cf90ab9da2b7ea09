//! cc-relay: the per-rack relay between ClusterCockpit collectors and the metric store.
//!
//! Collectors post InfluxDB line protocol to the relay (over HTTP or NATS); the
//! relay stores every accepted batch durably before it acknowledges it and
//! forwards it upward to cc-store (or another relay), retrying until the
//! upstream has it. This crate holds the program; `main.rs` only parses the
//! command line and calls into it.
//!
//! Layout:
//! - [`cli`]: command-line flags.
//! - [`process`]: per-line timestamp normalisation, rules, validation and routing.
//! - [`queue`]: the durable per-upstream queues in sled (record format, group-commit
//!   flusher).

pub mod cli;
pub mod process;
pub mod queue;
