//! Ingest throughput: lines per second through `cc_store::ingest::ingest`
//! (parse + resolve level + write sample), beside a parse-only loop over the
//! same body, so the split between parsing and applying is visible.
//!
//! The batch is one 60 s collection interval of 44 hosts as
//! `examples/loadgen.rs` builds it: per host 72 hwthreads × 3 metrics,
//! 2 sockets × 2 metrics and 10 node metrics (230 lines; 10 120 lines in
//! all), without a `cluster` tag (the default cluster applies, as with
//! `/api/write?cluster=fritz`). All 15 metrics are configured at frequency 60
//! with sum or avg aggregation. Every iteration writes the next interval
//! (timestamps advance by 60 s, patched in place outside the timed region),
//! so samples append to the head chunks and never overwrite. The store is
//! replaced by a fresh, pre-filled one (untimed) before its chains would need
//! a second chunk, so memory stays bounded however many iterations run.
//!
//! Run: `cargo bench -p cc-store --bench ingest -- --warm-up-time 1 --measurement-time 5`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cc_common::lineproto::parse_lines;
use cc_store::buffer::CHUNK_CAPACITY;
use cc_store::config::{Aggregation, MetricConfig};
use cc_store::ingest::ingest;
use cc_store::registry::Registry;
use cc_store::store::MetricStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Hosts per batch: `ceil(10 000 / 230)`, as loadgen's `--batch-lines 10000`.
const HOSTS: usize = 44;
/// Lines per host per interval.
const LINES_PER_HOST: usize = 72 * 3 + 2 * 2 + 10;
/// Collection interval and metric frequency, seconds.
const STEP: i64 = 60;
/// First interval's timestamp.
const START: i64 = 1_700_000_000;
/// Cluster of lines without a `cluster` tag.
const CLUSTER: &str = "fritz";
/// Intervals written into one store before it is replaced (the pre-fill
/// interval included, the head chunk of every chain is never full).
const INTERVALS_PER_STORE: usize = CHUNK_CAPACITY - 1;

const HWTHREAD_METRICS: [&str; 3] = ["cpu_load", "cpu_user", "flops_any"];
const SOCKET_METRICS: [&str; 2] = ["mem_bw", "cpu_power"];
const NODE_METRICS: [&str; 10] = [
    "mem_used",
    "net_bytes_in",
    "net_bytes_out",
    "ib_recv",
    "ib_xmit",
    "lustre_read_bw",
    "lustre_write_bw",
    "nfs4_total",
    "disk_free",
    "load_one",
];

/// The `metrics` configuration: all metrics at frequency 60; averages for
/// ratios and loads, sums for everything else.
fn metrics() -> BTreeMap<String, MetricConfig> {
    HWTHREAD_METRICS
        .iter()
        .chain(&SOCKET_METRICS)
        .chain(&NODE_METRICS)
        .map(|&name| {
            let aggregation = match name {
                "cpu_load" | "cpu_user" | "load_one" => Aggregation::Avg,
                _ => Aggregation::Sum,
            };
            (
                name.to_owned(),
                MetricConfig {
                    frequency: STEP,
                    aggregation,
                },
            )
        })
        .collect()
}

/// One interval of `HOSTS` hosts with a 10-digit timestamp placeholder whose
/// offsets are returned (the same layout as loadgen's batches).
fn batch() -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(HOSTS * LINES_PER_HOST * 80);
    let mut ts_offsets = Vec::with_capacity(HOSTS * LINES_PER_HOST);
    let mut seed = 42_u64;
    let mut line = |out: &mut Vec<u8>, prefix: String| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v = (seed >> 40) % 100_000;
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(format!(" value={}.{} ", v / 100, v % 100).as_bytes());
        ts_offsets.push(out.len());
        out.extend_from_slice(b"0000000000\n");
    };
    for h in 0..HOSTS {
        let host = format!("f{h:04}");
        for metric in HWTHREAD_METRICS {
            for t in 0..72 {
                line(
                    &mut out,
                    format!("{metric},hostname={host},type=hwthread,type-id={t}"),
                );
            }
        }
        for metric in SOCKET_METRICS {
            for s in 0..2 {
                line(
                    &mut out,
                    format!("{metric},hostname={host},type=socket,type-id={s}"),
                );
            }
        }
        for metric in NODE_METRICS {
            line(&mut out, format!("{metric},hostname={host},type=node"));
        }
    }
    (out, ts_offsets)
}

/// Overwrites every line's timestamp with `ts`.
fn stamp(body: &mut [u8], offsets: &[usize], ts: i64) {
    let digits = format!("{ts:010}");
    for &off in offsets {
        if let Some(slot) = body.get_mut(off..off + 10) {
            slot.copy_from_slice(digits.as_bytes());
        }
    }
}

/// Batch timestamps of a store's life: interval `i` at `START + i·STEP`.
fn interval_ts(i: usize) -> i64 {
    START + i64::try_from(i).unwrap_or(0) * STEP
}

/// A store with interval 0 already written, so all levels and chains exist
/// and the timed writes measure the steady state.
fn prefilled_store(
    metrics: &BTreeMap<String, MetricConfig>,
    body: &mut [u8],
    offsets: &[usize],
) -> MetricStore {
    let store = MetricStore::new(Registry::new(metrics));
    stamp(body, offsets, interval_ts(0));
    let report = ingest(&store, body, CLUSTER, interval_ts(0));
    assert!(
        report.written == offsets.len() && report.invalid() == 0,
        "pre-fill must store every line: {report:?}"
    );
    store
}

fn ingest_bench(c: &mut Criterion) {
    let metrics = metrics();
    let (mut body, offsets) = batch();
    let lines = offsets.len();

    // Precondition: the next interval appends every line (none invalid,
    // unknown or too old).
    {
        let store = prefilled_store(&metrics, &mut body, &offsets);
        stamp(&mut body, &offsets, interval_ts(1));
        let report = ingest(&store, &body, CLUSTER, interval_ts(1));
        assert!(
            report.lines == lines && report.written == lines,
            "every line must be stored: {report:?}"
        );
    }

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(lines as u64));

    group.bench_function("ingest_10k_lines", |b| {
        let mut store = prefilled_store(&metrics, &mut body, &offsets);
        let mut next = 1;
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if next >= INTERVALS_PER_STORE {
                    // Untimed: a fresh store before chains would roll over
                    // into a second chunk (and to bound memory).
                    store = prefilled_store(&metrics, &mut body, &offsets);
                    next = 1;
                }
                let ts = interval_ts(next);
                stamp(&mut body, &offsets, ts);
                next += 1;
                let start = Instant::now();
                let report = ingest(&store, black_box(&body), CLUSTER, ts);
                elapsed += start.elapsed();
                black_box(report);
            }
            elapsed
        });
    });

    group.bench_function("parse_only_10k_lines", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut tags = 0usize;
            let mut bytes = 0usize;
            let mut ts = 0i64;
            for line in parse_lines(black_box(&body)).flatten() {
                bytes += line.measurement().len();
                for (k, v) in line.tags() {
                    tags += k.len() + v.len();
                }
                sum += line.first_field().1.as_f64().unwrap_or(0.0);
                ts = ts.wrapping_add(line.timestamp().unwrap_or(0));
            }
            black_box((sum, tags, bytes, ts))
        });
    });
    group.finish();
}

criterion_group!(benches, ingest_bench);
criterion_main!(benches);
