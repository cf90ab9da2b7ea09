//! Query latency: `cc_store::query::execute` + `render` for one request
//! against a pre-filled store, i.e. everything `GET /api/query` does after
//! decoding the body (which is decoded once, outside the timed loop).
//!
//! Data: one host, 24 h at 10 s (8 640 slots per chain), values 0..100 with
//! two decimals from a fixed-seed generator:
//! - `cpu_load` (frequency 10, avg) at node level;
//! - `flops_any` (frequency 10, sum) on 128 hwthreads `hwthread0..127`.
//!
//! Cases:
//! - `node_1_metric`: `cpu_load` of the host (1 chain, 8 640 points);
//! - `node_aggregated_128_hwthreads`: a node-level query of `flops_any`,
//!   which sums the 128 hwthread chains into one series of 8 640 points;
//! - `hwthreads_128_rows`: `flops_any` with `type: hwthread` and the 128
//!   type-ids, not aggregated: 128 entries of 8 640 points.
//!
//! Run: `cargo bench -p cc-store --bench query -- --warm-up-time 1 --measurement-time 5`

use std::collections::BTreeMap;
use std::hint::black_box;

use cc_store::config::{Aggregation, MetricConfig};
use cc_store::query::{QueryRequest, Response, execute, render};
use cc_store::registry::Registry;
use cc_store::store::MetricStore;
use criterion::{Criterion, criterion_group, criterion_main};

const CLUSTER: &str = "fritz";
const HOST: &str = "f0001";
/// Metric frequency, seconds.
const FREQUENCY: i64 = 10;
/// Points per chain: 24 h at 10 s.
const POINTS: usize = 8640;
/// Hardware threads of the host.
const HWTHREADS: usize = 128;
/// First sample's timestamp.
const START: i64 = 1_700_000_000;
/// End of the data (exclusive).
const END: i64 = START + 86_400;

fn metrics() -> BTreeMap<String, MetricConfig> {
    [
        ("cpu_load", Aggregation::Avg),
        ("flops_any", Aggregation::Sum),
    ]
    .into_iter()
    .map(|(name, aggregation)| {
        (
            name.to_owned(),
            MetricConfig {
                frequency: FREQUENCY,
                aggregation,
            },
        )
    })
    .collect()
}

/// The store: `cpu_load` on the host, `flops_any` on its 128 hwthreads.
fn store() -> MetricStore {
    let store = MetricStore::new(Registry::new(&metrics()));
    let registry = store.registry();
    let (Some(cpu_load), Some(flops_any)) = (registry.id("cpu_load"), registry.id("flops_any"))
    else {
        panic!("both metrics are configured");
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut value = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 40) % 10_000) as f64 / 100.0
    };
    let host = store.root().find_or_create(&[CLUSTER, HOST]);
    let threads: Vec<_> = (0..HWTHREADS)
        .map(|t| host.child_or_create(&format!("hwthread{t}")))
        .collect();
    let mut failed = 0usize;
    for ts in (START..END).step_by(FREQUENCY.unsigned_abs() as usize) {
        failed += usize::from(host.write_sample(cpu_load, FREQUENCY, ts, value()).is_err());
        for thread in &threads {
            failed += usize::from(
                thread
                    .write_sample(flops_any, FREQUENCY, ts, value())
                    .is_err(),
            );
        }
    }
    assert!(failed == 0, "{failed} samples were rejected");
    store
}

/// A request for the whole day with `query` as its only query.
fn request(query: &str) -> QueryRequest {
    let body =
        format!(r#"{{"cluster":"{CLUSTER}","from":{START},"to":{END},"queries":[{query}]}}"#);
    match QueryRequest::from_body(body.as_bytes()) {
        Ok(req) => req,
        Err(e) => panic!("bad benchmark request {body}: {e}"),
    }
}

/// Precondition: one row of `entries` entries, each with `POINTS` values
/// and no error.
fn check(response: &Response, entries: usize) {
    assert!(
        response.results.len() == 1,
        "one row expected, got {}",
        response.results.len()
    );
    for row in &response.results {
        assert!(
            row.len() == entries,
            "{} entries, expected {entries}",
            row.len()
        );
        for entry in row {
            assert!(entry.error.is_none(), "query failed: {:?}", entry.error);
            let n = entry.data.as_ref().map_or(0, Vec::len);
            assert!(n == POINTS, "{n} points, expected {POINTS}");
        }
    }
}

fn query_bench(c: &mut Criterion) {
    let store = store();
    let ids: Vec<String> = (0..HWTHREADS).map(|t| t.to_string()).collect();
    let ids = serde_json::to_string(&ids).unwrap_or_default();
    let cases = [
        (
            "node_1_metric",
            request(&format!(r#"{{"metric":"cpu_load","host":"{HOST}"}}"#)),
            1,
        ),
        (
            "node_aggregated_128_hwthreads",
            request(&format!(r#"{{"metric":"flops_any","host":"{HOST}"}}"#)),
            1,
        ),
        (
            "hwthreads_128_rows",
            request(&format!(
                r#"{{"metric":"flops_any","host":"{HOST}","type":"hwthread","type-ids":{ids}}}"#
            )),
            HWTHREADS,
        ),
    ];

    let mut group = c.benchmark_group("query");
    for (name, req, entries) in &cases {
        check(&execute(&store, req), *entries);
        group.bench_function(*name, |b| {
            b.iter(|| {
                let response = execute(&store, black_box(req));
                black_box(render(&response).len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, query_bench);
criterion_main!(benches);
