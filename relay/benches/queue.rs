//! Queue benchmarks: durable ingest throughput through the group-commit flusher, batch
//! splitting, and (printed once, not timed) bytes on disk per million lines.
//!
//! `append_flush/4x5000_lines`: 4 tokio tasks each append one 5 000-line batch
//! (≈420 KB of collector-like line protocol, split into records as ingest does) and
//! await `wait_durable`; one iteration = 20 000 durable lines. The records are acked
//! after each iteration (untimed), so the queue stays in steady state.
//!
//! Run: `cargo bench -p cc-relay --bench queue`.

#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark aborts on any failure; indices are within fixed-size setup data"
)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cc_relay::queue::{Flusher, Queue, QueueConfig, Record, RecordMeta, SplitLimits};
use criterion::{Criterion, Throughput};

const LINES_PER_BATCH: usize = 5_000;
const WRITERS: usize = 4;

fn collector_lines(n: usize, seed: u64) -> Vec<u8> {
    const METRICS: [&str; 8] = [
        "cpu_load",
        "cpu_user",
        "mem_used",
        "flops_any",
        "mem_bw",
        "net_bytes_in",
        "ib_recv",
        "cpu_power",
    ];
    let mut x = seed;
    let mut out = String::with_capacity(n * 90);
    for i in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let metric = METRICS
            .get((x >> 33) as usize % METRICS.len())
            .unwrap_or(&"m");
        let host = 100 + (x >> 40) % 64;
        let tid = (x >> 20) % 72;
        let value = ((x >> 11) % 100_000) as f64 / 100.0;
        let ts = 1_718_000_000 + (i as u64 / 500) * 10;
        let _ = writeln!(
            out,
            "{metric},cluster=fritz,hostname=f{host:04},type=hwthread,type-id={tid} value={value} {ts}"
        );
    }
    out.into_bytes()
}

fn batches(n: usize) -> Vec<Arc<Vec<Record>>> {
    let meta = RecordMeta {
        ingest_time_ms: 1_718_000_000_000,
        hops: 0,
        cluster: "fritz".into(),
        source: "http:bench:127.0.0.1".into(),
    };
    (0..n)
        .map(|i| {
            let lines = collector_lines(LINES_PER_BATCH, i as u64 + 1);
            Arc::new(Record::from_batch(&meta, &lines, &SplitLimits::default()).expect("records"))
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(dir: &Path) -> Arc<Queue> {
    Arc::new(Queue::open(dir, &["store".to_owned()], QueueConfig::default()).expect("open"))
}

/// One round: `WRITERS` tasks each append a batch and wait until it is durable.
async fn round(
    q: &Arc<Queue>,
    flusher: &Arc<Flusher>,
    batches: &[Arc<Vec<Record>>],
    next: &mut usize,
) -> Vec<u64> {
    let mut tasks = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let batch = Arc::clone(&batches[*next % batches.len()]);
        *next += 1;
        let (q, f) = (Arc::clone(q), Arc::clone(flusher));
        tasks.push(tokio::spawn(async move {
            let ids = q.append(&["store"], &batch).expect("append");
            f.wait_durable().await.expect("durable");
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("task"));
    }
    ids
}

fn bench_append_flush(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let q = open(dir.path());
    let flusher = Arc::new(rt.block_on(async { Flusher::new(Arc::clone(&q)) }));
    let batches = batches(16);
    let mut next = 0usize;

    let mut group = c.benchmark_group("append_flush");
    group.throughput(Throughput::Elements((WRITERS * LINES_PER_BATCH) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("4x5000_lines", |b| {
        b.iter_custom(|iters| {
            let mut busy = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let ids = rt.block_on(round(&q, &flusher, &batches, &mut next));
                busy += start.elapsed();
                q.ack("store", &ids).expect("ack");
            }
            busy
        });
    });
    group.finish();
    let s = flusher.stats().snapshot();
    println!(
        "flusher: {} flushes for {} waiters (max {} per flush), mean {:.2} ms, max {:.2} ms",
        s.flushes,
        s.waiters,
        s.max_waiters,
        s.total_us as f64 / s.flushes.max(1) as f64 / 1e3,
        s.max_us as f64 / 1e3
    );
}

fn bench_split(c: &mut Criterion) {
    let meta = RecordMeta::default();
    let lines = collector_lines(LINES_PER_BATCH, 7);
    let mut group = c.benchmark_group("split");
    group.throughput(Throughput::Bytes(lines.len() as u64));
    group.bench_function("5000_lines_into_records", |b| {
        b.iter(|| Record::from_batch(&meta, &lines, &SplitLimits::default()).expect("split"));
    });
    group.finish();
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Appends 1 000 000 lines (200 batches) through the flusher and prints the footprint.
fn disk_usage_report() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let q = open(dir.path());
    let flusher = Arc::new(rt.block_on(async { Flusher::new(Arc::clone(&q)) }));
    let batches = batches(16);
    let raw_per_batch: usize = batches[0].iter().map(|r| r.payload().len()).sum();
    let mut next = 0usize;
    let start = Instant::now();
    let rounds = 1_000_000 / (WRITERS * LINES_PER_BATCH);
    for _ in 0..rounds {
        rt.block_on(round(&q, &flusher, &batches, &mut next));
    }
    let elapsed = start.elapsed();
    q.flush().expect("flush");
    let stats = q.len("store").expect("stats");
    let on_disk = q.size_on_disk().expect("size");
    let files = dir_size(dir.path());
    println!(
        "1M lines: {} records, raw {:.1} MB ({} B/batch), stored {:.1} MB (zstd {:.1}x), \
         sled size_on_disk {:.1} MB, files {:.1} MB => {:.1} MB on disk per million lines; \
         ingest {:.0} lines/s durable",
        stats.records,
        stats.raw_bytes as f64 / 1e6,
        raw_per_batch,
        stats.stored_bytes as f64 / 1e6,
        stats.raw_bytes as f64 / stats.stored_bytes.max(1) as f64,
        on_disk as f64 / 1e6,
        files as f64 / 1e6,
        files as f64 / 1e6,
        1_000_000.0 / elapsed.as_secs_f64()
    );
    // Drain it again (FIFO churn) and show how much space sled keeps.
    loop {
        let got = q.peek_batch("store", 64, 1 << 20, None).expect("peek");
        if got.is_empty() {
            break;
        }
        let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        q.ack("store", &ids).expect("ack");
    }
    q.flush().expect("flush");
    println!(
        "after draining: sled size_on_disk {:.1} MB, files {:.1} MB",
        q.size_on_disk().expect("size") as f64 / 1e6,
        dir_size(dir.path()) as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    if !quick {
        disk_usage_report();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_append_flush(&mut c);
    bench_split(&mut c);
    c.final_summary();
}
