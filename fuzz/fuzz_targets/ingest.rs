//! Fuzzes cc-store's write path as HTTP bodies and NATS messages reach it:
//! decoding, tag handling, level creation and sample writes, with a fixed
//! metric list and with a learning registry (no `metrics` section).
//!
//! Oracles: no panic; every line is either written or counted as rejected
//! exactly once.
//!
//! Run: `cargo fuzz run ingest` (from the repository root).
#![no_main]

use std::collections::BTreeMap;

use cc_store::config::{Aggregation, MetricConfig};
use cc_store::ingest::{Rejection, ingest};
use cc_store::registry::Registry;
use cc_store::store::MetricStore;
use libfuzzer_sys::fuzz_target;

fn fixed() -> Registry {
    let mut metrics = BTreeMap::new();
    for name in ["cpu_load", "flops_any", "m"] {
        metrics.insert(
            name.to_owned(),
            MetricConfig {
                frequency: 10,
                aggregation: Aggregation::Sum,
            },
        );
    }
    Registry::new(&metrics)
}

const REASONS: [Rejection; 9] = [
    Rejection::UnknownMetric,
    Rejection::TooOld,
    Rejection::UnsafeName,
    Rejection::Syntax,
    Rejection::BadField,
    Rejection::BadTimestamp,
    Rejection::NoHost,
    Rejection::NoCluster,
    Rejection::NameTooLong,
];

fuzz_target!(|data: &[u8]| {
    for registry in [fixed(), Registry::learning(&BTreeMap::new())] {
        let store = MetricStore::new(registry);
        let report = ingest(&store, data, "fuzz", 1_700_000_000);
        let rejected: usize = REASONS.iter().map(|r| report.rejected(*r)).sum();
        assert_eq!(
            report.written + rejected,
            report.lines,
            "every line is written or counted once: {report:?}"
        );
    }
});
