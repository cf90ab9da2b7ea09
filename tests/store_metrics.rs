//! `/metrics` of a running cc-store: exact counts after known traffic over
//! HTTP and NATS, the checkpoint, WAL and restore figures, `promtool check
//! metrics`, and `main.metrics-endpoint-auth`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::nats::{NatsServer, NatsSetup};
use common::{
    Process, mint_token, now, promtool_check, sample, start_store, start_store_in,
    start_store_with_main, store_config, test_public_key, wait_for,
};
use serde_json::json;

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn scrape(store: &Process) -> String {
    let r = store.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn write(store: &Process, query: &str, body: &str) -> u16 {
    store
        .request("POST", &format!("/api/write{query}"), &[], body.as_bytes())
        .status
}

/// Asserts every `(series, value)` of `expected` in `text`.
fn expect_all(text: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(sample(text, series), Some(*value), "{series} in:\n{text}");
    }
}

/// Sum of the sizes of every `current.wal` below `dir`.
fn wal_bytes_below(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += wal_bytes_below(&path);
        } else if path.file_name().is_some_and(|n| n == "current.wal") {
            total += std::fs::metadata(&path).unwrap().len();
        }
    }
    total
}

/// The families every store exposes, with their types (NATS ones only
/// with NATS ingestion).
const FAMILIES: [(&str, &str); 31] = [
    ("ccstore_build_info", "gauge"),
    ("ccstore_start_time_seconds", "gauge"),
    ("ccstore_http_requests_total", "counter"),
    ("ccstore_http_request_duration_seconds", "histogram"),
    ("ccstore_ingest_lines_total", "counter"),
    ("ccstore_ingest_samples_total", "counter"),
    ("ccstore_ingest_bytes_total", "counter"),
    ("ccstore_ingest_rejected_lines_total", "counter"),
    ("ccstore_clusters", "gauge"),
    ("ccstore_hosts", "gauge"),
    ("ccstore_series", "gauge"),
    ("ccstore_chunks", "gauge"),
    ("ccstore_memory_used_bytes", "gauge"),
    ("ccstore_memory_cap_bytes", "gauge"),
    ("ccstore_freed_chunks_total", "counter"),
    ("ccstore_checkpoint_rounds_total", "counter"),
    ("ccstore_checkpoint_failures_total", "counter"),
    ("ccstore_checkpoint_last_success_timestamp_seconds", "gauge"),
    ("ccstore_checkpoint_last_duration_seconds", "gauge"),
    ("ccstore_wal_bytes", "gauge"),
    ("ccstore_wal_written_bytes_total", "counter"),
    ("ccstore_wal_errors_total", "counter"),
    ("ccstore_restore_in_progress", "gauge"),
    ("ccstore_restore_hosts", "gauge"),
    ("ccstore_restore_hosts_done", "gauge"),
    ("ccstore_restore_files_total", "counter"),
    ("ccstore_restore_read_bytes_total", "counter"),
    ("ccstore_nats_connected", "gauge"),
    ("ccstore_nats_messages_total", "counter"),
    ("ccstore_nats_dropped_messages_total", "counter"),
    ("ccstore_nats_invalid_messages_total", "counter"),
];

fn assert_families(text: &str, nats: bool) {
    for (name, kind) in FAMILIES {
        let present = text.lines().any(|l| l == format!("# TYPE {name} {kind}"));
        let wanted = nats || !name.starts_with("ccstore_nats_");
        assert_eq!(present, wanted, "# TYPE {name} {kind} in:\n{text}");
    }
}

#[test]
fn every_line_and_request_is_counted_exactly_and_promtool_agrees() {
    let store = start_store(store_config());
    let t = now() / 60 * 60;
    let day = 86_400;
    // 4 lines, 4 samples, 2 hosts, 4 series.
    let good = format!(
        "cpu_load,hostname=h1 value=1 {t}\nmem_used,hostname=h1 value=2 {t}\n\
         cpu_load,hostname=h2 value=3 {t}\nflops_any,hostname=h2,type=hwthread,type-id=0 value=4 {t}\n"
    );
    assert_eq!(write(&store, "?cluster=c", &good), 200);
    // Comments and blank lines are not lines; the unknown metric is skipped.
    let unknown = format!(
        "# a comment\n\nno_such_metric,hostname=h3 value=1 {t}\ncpu_load,hostname=h3 value=5 {t}\n"
    );
    assert_eq!(write(&store, "?cluster=c", &unknown), 200);
    // Older than the newest chunk of its series: skipped.
    let old = format!("cpu_load,hostname=h1 value=6 {}\n", t - day);
    assert_eq!(write(&store, "?cluster=c", &old), 200);
    // Two bad fields and a syntax error: 400, the good line is stored.
    let invalid = format!(
        "cpu_load,hostname=h1 value=\"x\" {t}\ncpu_load,hostname=h1 foo=1 {t}\n\
         cpu_load,hostname h1 value=1 {t}\ncpu_load,hostname=h4 value=7 {t}\n"
    );
    assert_eq!(write(&store, "?cluster=c", &invalid), 400);
    // Names that would leave the checkpoint directory: skipped, 200.
    let unsafe_names = format!(
        "cpu_load,hostname=../../etc value=1 {t}\ncpu_load,cluster=a/b,hostname=h value=1 {t}\n"
    );
    assert_eq!(write(&store, "?cluster=c", &unsafe_names), 200);
    // No cluster (empty ?cluster=) and no host.
    let nameless = format!("cpu_load,hostname=h value=1 {t}\ncpu_load,cluster=c value=1 {t}\n");
    assert_eq!(write(&store, "?cluster=", &nameless), 400);
    assert_eq!(
        write(&store, "?cluster=c", "cpu_load,hostname=h1 value=1 -5\n"),
        400
    );

    let q =
        json!({"cluster":"c","from":t,"to":t + 60,"queries":[{"metric":"cpu_load","host":"h4"}]});
    let r = store.request("GET", "/api/query", &[], q.to_string().as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][0][0]["data"], json!([7.0]));
    assert_eq!(
        store.request("GET", "/api/query", &[], b"not json").status,
        400
    );
    let health = json!({"cluster":"c","nodes":["h1"],"metric-names":["cpu_load"]});
    let r = store.request(
        "GET",
        "/api/healthcheck",
        &[],
        health.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        store
            .request("GET", "/api/debug?selector=c:h1", &[], b"")
            .status,
        200
    );
    assert_eq!(
        store
            .request("GET", "/api/debug?selector=nope", &[], b"")
            .status,
        400
    );
    let r = store.request("POST", "/api/free?to=1000", &[], b"[[\"c\",\"h1\"]]");
    assert_eq!((r.status, r.text().as_str()), (200, "buffers freed: 0\n"));
    assert_eq!(store.request("POST", "/api/free", &[], b"[]").status, 400);
    assert_eq!(store.request("GET", "/nothing", &[], b"").status, 404);

    let text = scrape(&store);
    let reason =
        |r: &str| format!("ccstore_ingest_rejected_lines_total{{source=\"http\",reason=\"{r}\"}}");
    let code =
        |e: &str, c: u16| format!("ccstore_http_requests_total{{endpoint=\"{e}\",code=\"{c}\"}}");
    let count =
        |e: &str| format!("ccstore_http_request_duration_seconds_count{{endpoint=\"{e}\"}}");
    let owned: Vec<(String, f64)> = vec![
        ("ccstore_ingest_lines_total{source=\"http\"}".into(), 16.0),
        ("ccstore_ingest_samples_total{source=\"http\"}".into(), 6.0),
        ("ccstore_ingest_lines_total{source=\"nats\"}".into(), 0.0),
        (reason("unknown_metric"), 1.0),
        (reason("too_old"), 1.0),
        (reason("unsafe_name"), 2.0),
        (reason("syntax"), 1.0),
        (reason("bad_field"), 2.0),
        (reason("bad_timestamp"), 1.0),
        (reason("no_host"), 1.0),
        (reason("no_cluster"), 1.0),
        (reason("name_too_long"), 0.0),
        (code("write", 200), 4.0),
        (code("write", 400), 3.0),
        (count("write"), 7.0),
        // The harness's readiness probe is one more 200 (earlier probes may
        // have got 503).
        (code("query", 200), 2.0),
        (code("query", 400), 1.0),
        (code("healthcheck", 200), 1.0),
        (count("healthcheck"), 1.0),
        (code("debug", 200), 1.0),
        (code("debug", 400), 1.0),
        (code("free", 200), 1.0),
        (code("free", 400), 1.0),
        (count("free"), 2.0),
        ("ccstore_clusters".into(), 1.0),
        ("ccstore_hosts".into(), 4.0),
        ("ccstore_series".into(), 6.0),
        ("ccstore_chunks".into(), 6.0),
        ("ccstore_memory_cap_bytes".into(), 0.0),
        ("ccstore_freed_chunks_total{reason=\"api\"}".into(), 0.0),
        ("ccstore_checkpoint_rounds_total".into(), 0.0),
        (
            "ccstore_checkpoint_last_success_timestamp_seconds".into(),
            0.0,
        ),
        ("ccstore_restore_in_progress".into(), 0.0),
        ("ccstore_restore_hosts".into(), 0.0),
        (
            "ccstore_wal_bytes".into(),
            wal_bytes_below(&store.dir.path().join("checkpoints")) as f64,
        ),
    ];
    let expected: Vec<(&str, f64)> = owned.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    expect_all(&text, &expected);
    assert!(sample(&text, "ccstore_wal_bytes").unwrap() > 0.0);
    assert!(sample(&text, "ccstore_memory_used_bytes").unwrap() > 0.0);
    let bytes = sample(&text, "ccstore_ingest_bytes_total{source=\"http\"}").unwrap();
    let sent = [&good, &unknown, &old, &invalid, &unsafe_names, &nameless]
        .iter()
        .map(|b| b.len())
        .sum::<usize>()
        + "cpu_load,hostname=h1 value=1 -5\n".len();
    assert_eq!(bytes, sent as f64);
    assert!(
        !text.contains("code=\"404\"") && !text.contains("endpoint=\"metrics\""),
        "unknown paths and scrapes are not counted:\n{text}"
    );
    let build = text
        .lines()
        .find(|l| l.starts_with("ccstore_build_info{"))
        .unwrap();
    assert!(
        build.starts_with(&format!(
            "ccstore_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )) && build.ends_with("\"} 1"),
        "{build}"
    );
    assert_families(&text, false);
    promtool_check(&text);

    let r = store.request("GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], b"");
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.text().ends_with("# EOF\n"), "{}", r.text());
}

#[test]
fn checkpoint_wal_and_restore_figures_follow_the_disk() {
    let mut config = store_config();
    config["metric-store"]["checkpoint-interval"] = json!("1s");
    let store = start_store_in(config.clone(), tempfile::tempdir().unwrap());
    let t0 = now();
    let body = format!("cpu_load,hostname=a value=1 {t0}\ncpu_load,hostname=b value=2 {t0}\n");
    assert_eq!(write(&store, "?cluster=c", &body), 200);
    let checkpoints = store.dir.path().join("checkpoints");
    // The next round snapshots both hosts and removes their WAL files.
    let saved = wait_for(Duration::from_secs(20), || {
        let text = scrape(&store);
        sample(&text, "ccstore_checkpoint_last_success_timestamp_seconds")
            .is_some_and(|t| t >= t0 as f64)
            && sample(&text, "ccstore_wal_bytes") == Some(0.0)
            && wal_bytes_below(&checkpoints) == 0
    });
    assert!(saved, "{}\n{}", scrape(&store), store.log_text());
    let text = scrape(&store);
    assert!(sample(&text, "ccstore_checkpoint_rounds_total").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "ccstore_checkpoint_failures_total"),
        Some(0.0)
    );
    assert!(sample(&text, "ccstore_checkpoint_last_duration_seconds").unwrap() >= 0.0);
    assert!(sample(&text, "ccstore_wal_written_bytes_total").unwrap() > 0.0);

    // One more sample in a WAL, then a restart: the restore reads both
    // hosts' snapshots and the WAL.
    assert_eq!(
        write(
            &store,
            "?cluster=c",
            &format!("cpu_load,hostname=a value=3 {}\n", t0 + 60)
        ),
        200
    );
    let (status, dir) = store.stop();
    assert!(status.success());
    let snapshots = std::fs::read_dir(dir.path().join("checkpoints/c/a"))
        .unwrap()
        .count()
        + std::fs::read_dir(dir.path().join("checkpoints/c/b"))
            .unwrap()
            .count();
    let on_disk: u64 = ["a", "b"]
        .iter()
        .flat_map(|h| std::fs::read_dir(dir.path().join("checkpoints/c").join(h)).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let store = start_store_in(config, dir);
    let text = scrape(&store);
    expect_all(
        &text,
        &[
            ("ccstore_restore_in_progress", 0.0),
            ("ccstore_restore_hosts", 2.0),
            ("ccstore_restore_hosts_done", 2.0),
            ("ccstore_restore_files_total", snapshots as f64),
            ("ccstore_restore_read_bytes_total", on_disk as f64),
            ("ccstore_hosts", 2.0),
            ("ccstore_series", 2.0),
        ],
    );
}

#[test]
fn metrics_endpoint_auth_guards_metrics_as_debug() {
    let open = start_store_with_main(
        json!({"jwt-public-key": test_public_key(), "admin-roles": ["admin"]}),
    );
    assert_eq!(
        open.request("GET", "/api/debug", &[], b"").status,
        401,
        "the API needs a token"
    );
    assert_eq!(
        open.request("GET", "/metrics", &[], b"").status,
        200,
        "/metrics is open by default"
    );
    drop(open);

    let guarded = start_store_with_main(json!({
        "jwt-public-key": test_public_key(),
        "admin-roles": ["admin"],
        "metrics-endpoint-auth": true
    }));
    let r = guarded.request("GET", "/metrics", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Use JWT Authentication\n")
    );
    let user = format!(
        "Bearer {}",
        mint_token(&json!({"sub":"u","roles":["user"]}))
    );
    let admin = format!(
        "Bearer {}",
        mint_token(&json!({"sub":"a","roles":["admin"]}))
    );
    for (token, status) in [(&user, 403), (&admin, 200)] {
        let r = guarded.request("GET", "/metrics", &[("Authorization", token)], b"");
        assert_eq!(r.status, status, "{}", r.text());
    }
    let r = guarded.request("GET", "/metrics", &[("Authorization", &admin)], b"");
    promtool_check(&r.text());
}

/// Whether the connection named `cc-store` has subscribed to `subject`, as
/// the server's monitoring shows it.
fn store_subscribed(nats: &NatsServer, subject: &str) -> bool {
    nats.monitor("/connz?subs=1")
        .and_then(|v| v["connections"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["name"] == "cc-store")
        .flat_map(|c| {
            c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .any(|s| s == subject)
}

#[test]
fn nats_messages_are_counted_per_subscription() {
    let nats = NatsServer::start(NatsSetup::new());
    let mut config = store_config();
    config["nats"] = json!({ "address": nats.url() });
    config["metric-store"]["nats-subscriptions"] =
        json!([{"subscribe-to": "metrics.>", "cluster-tag": "c"}]);
    let store = start_store(config);
    let connected = wait_for(Duration::from_secs(20), || {
        sample(&scrape(&store), "ccstore_nats_connected") == Some(1.0)
    });
    assert!(connected, "{}", store.log_text());

    let t = now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let payloads = [
        format!("cpu_load,hostname=n1 value=1 {t}\nmem_used,hostname=n1 value=2 {t}\n"),
        format!("cpu_load,hostname=n2 value=3 {t}\ncpu_load,hostname=n2 foo=1 {t}\n"),
        format!("no_such_metric,hostname=n3 value=1 {t}\n"),
    ];
    runtime.block_on(async {
        let client = nats.connect().await;
        // The store subscribes before it connects: wait until the server
        // routes the subject to it, then publish.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !store_subscribed(&nats, "metrics.>") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cc-store never subscribed: {:?}",
                nats.monitor("/connz?subs=1")
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for (i, p) in payloads.iter().enumerate() {
            client
                .publish(format!("metrics.node{i}"), p.clone().into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
    let sub = "{subject=\"metrics.>\",cluster_tag=\"c\"}";
    let done = wait_for(Duration::from_secs(20), || {
        sample(
            &scrape(&store),
            "ccstore_ingest_lines_total{source=\"nats\"}",
        ) == Some(5.0)
    });
    let text = scrape(&store);
    assert!(done, "{text}\n{}", store.log_text());
    let bytes: usize = payloads.iter().map(String::len).sum();
    let owned = [
        (format!("ccstore_nats_messages_total{sub}"), 3.0),
        (format!("ccstore_nats_bytes_total{sub}"), bytes as f64),
        (format!("ccstore_nats_invalid_messages_total{sub}"), 1.0),
        ("ccstore_nats_connected".to_owned(), 1.0),
        ("ccstore_nats_dropped_messages_total".to_owned(), 0.0),
        (
            "ccstore_ingest_samples_total{source=\"nats\"}".to_owned(),
            3.0,
        ),
        (
            "ccstore_ingest_bytes_total{source=\"nats\"}".to_owned(),
            bytes as f64,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"nats\",reason=\"bad_field\"}".to_owned(),
            1.0,
        ),
        (
            "ccstore_ingest_rejected_lines_total{source=\"nats\",reason=\"unknown_metric\"}"
                .to_owned(),
            1.0,
        ),
        (
            "ccstore_ingest_lines_total{source=\"http\"}".to_owned(),
            0.0,
        ),
    ];
    let expected: Vec<(&str, f64)> = owned.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    expect_all(&text, &expected);
    assert_families(&text, true);
    promtool_check(&text);
}

#[test]
fn hosts_that_stopped_reporting_are_counted_per_cluster() {
    let store = start_store(store_config());
    let t = now();
    // In fritz: n1 reports, n2 last reported 20 minutes ago (frequency
    // 60 s: stale after five minutes); in alex, n3 reports.
    let body = format!(
        "cpu_load,hostname=n1 value=1 {t}\n\
         cpu_load,hostname=n2 value=1 {}\n\
         mem_bw,hostname=n2,type=socket,type-id=0 value=1 {}\n",
        t - 1200,
        t - 1300
    );
    assert_eq!(write(&store, "?cluster=fritz", &body), 200);
    assert_eq!(
        write(
            &store,
            "?cluster=alex",
            &format!("cpu_load,hostname=n3 value=1 {t}\n")
        ),
        200
    );
    let text = scrape(&store);
    expect_all(
        &text,
        &[
            ("ccstore_silent_hosts{cluster=\"fritz\"}", 1.0),
            ("ccstore_silent_hosts{cluster=\"alex\"}", 0.0),
            ("ccstore_hosts", 3.0),
        ],
    );
    // n2 reports again.
    assert_eq!(
        write(
            &store,
            "?cluster=fritz",
            &format!("cpu_load,hostname=n2 value=2 {t}\n")
        ),
        200
    );
    expect_all(
        &scrape(&store),
        &[("ccstore_silent_hosts{cluster=\"fritz\"}", 0.0)],
    );
}
