//! Fuzzes cc-store's query API: the request JSON decoder and the execution of
//! every request it accepts on a small store holding node, socket and
//! hwthread data.
//!
//! Oracles: no panic, no runaway allocation (libFuzzer's RSS limit); every
//! answer renders as valid JSON.
//!
//! Run: `cargo fuzz run query` (from the repository root).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cc_store::config::{Aggregation, MetricConfig};
use cc_store::ingest::ingest;
use cc_store::query::{QueryRequest, execute, render};
use cc_store::registry::Registry;
use cc_store::store::MetricStore;
use libfuzzer_sys::fuzz_target;

/// Three metrics, two hosts, 30 minutes of samples at node, socket and
/// hwthread level, around t = 1 000 000; and a host with gaps.
fn store() -> &'static MetricStore {
    static STORE: OnceLock<MetricStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut metrics = BTreeMap::new();
        for (name, frequency, aggregation) in [
            ("cpu_load", 60, Aggregation::None),
            ("flops_any", 60, Aggregation::Sum),
            ("clock", 10, Aggregation::Avg),
        ] {
            metrics.insert(
                name.to_owned(),
                MetricConfig {
                    frequency,
                    aggregation,
                },
            );
        }
        let store = MetricStore::new(Registry::new(&metrics));
        let mut body = String::new();
        for host in ["a", "b"] {
            for k in 0..180 {
                let t = 1_000_000 + 10 * k;
                body.push_str(&format!(
                    "clock,cluster=c,hostname={host},type=socket,type-id={} value={k} {t}\n",
                    k % 2
                ));
                if k % 6 == 0 {
                    body.push_str(&format!("cpu_load,cluster=c,hostname={host} value={k} {t}\n"));
                    for id in 0..4 {
                        body.push_str(&format!(
                            "flops_any,cluster=c,hostname={host},type=hwthread,type-id={id} value={id} {t}\n"
                        ));
                    }
                }
            }
        }
        // A host whose series have gaps between chunks, short and long.
        for (k, t) in [999_000, 1_000_000, 1_000_060, 1_100_000, 9_000_000]
            .into_iter()
            .enumerate()
        {
            body.push_str(&format!("cpu_load,cluster=c,hostname=gaps value={k} {t}\n"));
        }
        let report = ingest(&store, body.as_bytes(), "c", 9_000_000);
        assert!(report.written > 0);
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let store = store();
    if let Ok(request) = QueryRequest::from_body(data) {
        let response = execute(store, &request);
        let out = render(&response);
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
            panic!("invalid JSON answer ({e}): {}", String::from_utf8_lossy(&out));
        }
    }
});
