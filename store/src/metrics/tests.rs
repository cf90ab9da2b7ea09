use std::collections::BTreeMap;

use super::*;
/// The store's clock in these tests: after every timestamp they write.
const NOW: i64 = 2_000_000_000;

use crate::config::{Aggregation, MetricConfig};
use crate::ingest::ingest;
use crate::persist::checkpoint::checkpoint_all;
use crate::persist::{Format as SnapshotFormat, wal};
use crate::registry::Registry;

fn registry() -> Registry {
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "cpu_load".to_owned(),
        MetricConfig {
            frequency: 60,
            aggregation: Aggregation::None,
        },
    );
    Registry::new(&metrics)
}

/// A store with a WAL in `dir`, and its metrics.
fn setup(dir: &std::path::Path) -> (Arc<MetricStore>, Arc<Persistence>, Metrics) {
    let persistence = Arc::new(Persistence::new(dir, SnapshotFormat::Bin, true, 0).unwrap());
    let store = Arc::new(MetricStore::new(registry()).with_wal(Arc::clone(&persistence)));
    let restore = Arc::new(RestoreProgress::default());
    restore.done.store(true, Ordering::Release);
    let metrics = Metrics::new(Sources {
        store: Arc::clone(&store),
        persistence: Arc::clone(&persistence),
        restore,
        memory_cap: 2_000_000_000,
    });
    (store, persistence, metrics)
}

/// The value of the sample line `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn endpoints_are_found_by_path_prefix() {
    assert_eq!(Endpoint::of_path("/api/write"), Some(Endpoint::Write));
    assert_eq!(Endpoint::of_path("/api/write/"), Some(Endpoint::Write));
    assert_eq!(Endpoint::of_path("/api/query/x/y"), Some(Endpoint::Query));
    assert_eq!(
        Endpoint::of_path("/api/healthcheck"),
        Some(Endpoint::Healthcheck)
    );
    assert_eq!(Endpoint::of_path("/api/writer"), None);
    assert_eq!(Endpoint::of_path("/metrics"), None);
}

#[test]
fn ingest_totals_are_counted_per_source_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, metrics) = setup(dir.path());
    let body = b"cpu_load,hostname=a value=1 1700000000
cpu_load,hostname=a value=2 1600000000
nope,hostname=a value=1 1700000000
cpu_load,hostname=../x value=1 1700000000
cpu_load,hostname=b foo=1 1700000000
";
    let report = ingest(&store, body, "c", NOW);
    store.count_batch(Source::Http, body.len(), &report);
    let report = ingest(
        &store,
        b"cpu_load,hostname=z value=1 1700000000\n",
        "c",
        NOW,
    );
    store.count_batch(Source::Nats, 39, &report);
    let text = metrics.encode(Format::Text).unwrap();
    let expect = [
        ("ccstore_ingest_lines_total{source=\"http\"}", 5.0),
        ("ccstore_ingest_lines_total{source=\"nats\"}", 1.0),
        ("ccstore_ingest_samples_total{source=\"http\"}", 1.0),
        ("ccstore_ingest_samples_total{source=\"nats\"}", 1.0),
        ("ccstore_ingest_bytes_total{source=\"nats\"}", 39.0),
        (
            "ccstore_ingest_rejected_lines_total{source=\"http\",reason=\"too_old\"}",
            1.0,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"http\",reason=\"unknown_metric\"}",
            1.0,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"http\",reason=\"unsafe_name\"}",
            1.0,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"http\",reason=\"bad_field\"}",
            1.0,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"nats\",reason=\"syntax\"}",
            0.0,
        ),
        ("ccstore_clusters", 1.0),
        ("ccstore_hosts", 2.0),
        ("ccstore_series", 2.0),
        ("ccstore_chunks", 2.0),
        ("ccstore_memory_cap_bytes", 2e9),
        ("ccstore_restore_in_progress", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    let used = sample(&text, "ccstore_memory_used_bytes").unwrap();
    assert_eq!(used, store.root().allocated_bytes() as f64);
    assert!(text.contains("ccstore_build_info{version=\""), "{text}");
    assert!(
        !text.contains("ccstore_nats_"),
        "no NATS families without NATS"
    );
}

#[test]
fn checkpoints_and_wal_bytes_follow_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, persistence, metrics) = setup(dir.path());
    let before = metrics.encode(Format::Text).unwrap();
    assert_eq!(
        sample(&before, "ccstore_checkpoint_last_success_timestamp_seconds"),
        Some(0.0)
    );
    assert_eq!(sample(&before, "ccstore_wal_bytes"), Some(0.0));

    let report = ingest(
        &store,
        b"cpu_load,hostname=a value=1 1700000000\n",
        "c",
        NOW,
    );
    assert!(report.wal_error.is_none());
    let wal_file = dir.path().join("c/a").join(crate::persist::WAL_FILE);
    let on_disk = std::fs::metadata(&wal_file).unwrap().len();
    assert!(on_disk > wal::HEADER_LEN);
    let text = metrics.encode(Format::Text).unwrap();
    assert_eq!(sample(&text, "ccstore_wal_bytes"), Some(on_disk as f64));
    assert_eq!(
        sample(&text, "ccstore_wal_written_bytes_total"),
        Some((on_disk - wal::HEADER_LEN) as f64)
    );

    let t0 = cc_common::time::now_secs();
    assert_eq!(
        checkpoint_all(&store, &persistence, 1_700_000_100, 1).failed,
        0
    );
    assert!(!wal_file.exists(), "the snapshot replaced the WAL");
    let after = metrics.encode(Format::Text).unwrap();
    assert_eq!(sample(&after, "ccstore_wal_bytes"), Some(0.0));
    assert_eq!(sample(&after, "ccstore_checkpoint_rounds_total"), Some(1.0));
    assert_eq!(
        sample(&after, "ccstore_checkpoint_failures_total"),
        Some(0.0)
    );
    let last = sample(&after, "ccstore_checkpoint_last_success_timestamp_seconds").unwrap();
    assert!(last >= t0 as f64, "{last} < {t0}");
    assert!(sample(&after, "ccstore_checkpoint_last_duration_seconds").is_some());
}

#[test]
fn freed_chunks_and_http_requests_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, metrics) = setup(dir.path());
    store.count_freed(FreeReason::Retention, 3);
    store.count_freed(FreeReason::Api, 1);
    metrics.observe(Endpoint::Query, StatusCode::OK, Duration::from_millis(3));
    metrics.observe(Endpoint::Query, StatusCode::OK, Duration::from_millis(30));
    metrics.observe(
        Endpoint::Write,
        StatusCode::BAD_REQUEST,
        Duration::from_micros(200),
    );
    let text = metrics.encode(Format::Text).unwrap();
    for (series, value) in [
        ("ccstore_freed_chunks_total{reason=\"retention\"}", 3.0),
        ("ccstore_freed_chunks_total{reason=\"memory_cap\"}", 0.0),
        ("ccstore_freed_chunks_total{reason=\"api\"}", 1.0),
        (
            "ccstore_http_requests_total{endpoint=\"query\",code=\"200\"}",
            2.0,
        ),
        (
            "ccstore_http_requests_total{endpoint=\"write\",code=\"400\"}",
            1.0,
        ),
        (
            "ccstore_http_request_duration_seconds_count{endpoint=\"query\"}",
            2.0,
        ),
        (
            "ccstore_http_request_duration_seconds_bucket{endpoint=\"query\",le=\"0.005\"}",
            1.0,
        ),
        (
            "ccstore_http_request_duration_seconds_count{endpoint=\"free\"}",
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
}

#[test]
fn openmetrics_is_served_to_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, metrics) = setup(dir.path());
    let text = metrics.encode(Format::OpenMetrics).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE ccstore_ingest_lines counter\n"),
        "{text}"
    );
}
