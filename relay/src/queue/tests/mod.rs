//! Tests of the queue: record codec, sled store, group-commit flusher, and a model-based
//! property test of the store against an in-memory model (vector's disk_v2 style).

mod dead_letter;
mod flusher;
mod gather;
mod model;
mod record;
mod store;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Queue, QueueConfig, QueueError, Record, RecordMeta};

/// Collector-like line protocol (~85 bytes a line), deterministic in `seed`.
pub(crate) fn collector_lines(n: usize, seed: u64) -> Vec<u8> {
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
        let metric = METRICS[(x >> 33) as usize % METRICS.len()];
        let host = 100 + (x >> 40) % 64;
        let tid = (x >> 20) % 72;
        let value = ((x >> 11) % 100_000) as f64 / 100.0;
        let ts = 1_718_000_000 + (i as u64 / 500) * 10;
        writeln!(
            out,
            "{metric},cluster=fritz,hostname=f{host:04},type=hwthread,type-id={tid} value={value} {ts}"
        )
        .unwrap();
    }
    out.into_bytes()
}

/// Printable but incompressible lines, deterministic in `seed`.
pub(crate) fn random_lines(n: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n * (len + 1));
    for _ in 0..n {
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(b'!' + (x % 90) as u8);
        }
        out.push(b'\n');
    }
    out
}

pub(crate) fn meta(ingest_time_ms: u64) -> RecordMeta {
    RecordMeta {
        ingest_time_ms,
        hops: 0,
        cluster: "fritz".into(),
        source: "http:test:127.0.0.1".into(),
    }
}

pub(crate) fn record(ingest_time_ms: u64, lines: usize, seed: u64) -> Record {
    Record::new(meta(ingest_time_ms), collector_lines(lines, seed)).unwrap()
}

/// Where test dead letters come from: record `id`, cluster `fritz`.
pub(crate) fn origin(id: u64) -> super::Origin<'static> {
    super::Origin {
        record_id: id,
        cluster: "fritz",
        hops: 0,
    }
}

pub(crate) fn test_config() -> QueueConfig {
    QueueConfig {
        cache_capacity: 16 * 1024 * 1024,
        ..QueueConfig::default()
    }
}

pub(crate) fn names(upstreams: &[&str]) -> Vec<String> {
    upstreams.iter().map(|s| (*s).to_owned()).collect()
}

/// Opens a queue; retries briefly while a just-dropped instance still holds sled's
/// file lock (sled's background threads release it asynchronously).
pub(crate) fn open(dir: &Path, upstreams: &[&str]) -> Queue {
    open_with(dir, upstreams, test_config())
}

pub(crate) fn open_with(dir: &Path, upstreams: &[&str], cfg: QueueConfig) -> Queue {
    try_open(dir, upstreams, cfg).unwrap_or_else(|e| panic!("open {}: {e:?}", dir.display()))
}

/// `Queue::open`, retried while sled's file lock is still held (at most 10 s, then the
/// `Locked` error is returned like any other).
pub(crate) fn try_open(
    dir: &Path,
    upstreams: &[&str],
    cfg: QueueConfig,
) -> Result<Queue, QueueError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Queue::open(dir, &names(upstreams), cfg.clone()) {
            Err(QueueError::Open { .. } | QueueError::Locked { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Asserts that the in-memory counters equal sums over the tree's values.
pub(crate) fn assert_counters_match_tree(q: &Queue, upstream: &str) {
    let entries = q.raw_entries_for_test(upstream);
    let stats = q.len(upstream).unwrap();
    assert_eq!(stats.records, entries.len() as u64, "records of {upstream}");
    let stored: u64 = entries.iter().map(|(_, v)| v.len() as u64).sum();
    assert_eq!(stats.stored_bytes, stored, "stored bytes of {upstream}");
    let (mut lines, mut raw) = (0u64, 0u64);
    let mut oldest = None;
    for (_, v) in &entries {
        if let Ok(h) = super::record::Header::parse(v) {
            lines += u64::from(h.line_count);
            raw += u64::from(h.raw_len);
            oldest = oldest.or(Some(h.ingest_time_ms));
        }
    }
    assert_eq!(stats.lines, lines, "lines of {upstream}");
    assert_eq!(stats.raw_bytes, raw, "raw bytes of {upstream}");
    assert_eq!(stats.oldest_ingest_ms, oldest, "oldest of {upstream}");
}

/// Polls `cond` until it holds; panics naming `what` after 10 s.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
