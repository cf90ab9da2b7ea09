//! `/metrics` of a running cc-relay after some traffic, as `promtool` and
//! Prometheus read it: the names, types and labels of spec `relay.md` §4.11.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Stub, mint_token, now, promtool_check, relay_config, sample, start_relay, wait_for};
use serde_json::json;

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The families the relay exposes once it has seen traffic like the test's
/// (spec §4.11 without the NATS families, which come with NATS support,
/// and `ccrelay_orphan_queue_bytes`, which needs an orphaned queue).
const FAMILIES: [(&str, &str); 29] = [
    ("ccrelay_build_info", "gauge"),
    ("ccrelay_ingest_requests_total", "counter"),
    ("ccrelay_ingest_lines_total", "counter"),
    ("ccrelay_ingest_bytes_total", "counter"),
    ("ccrelay_ingest_invalid_lines_total", "counter"),
    ("ccrelay_ingest_ack_seconds", "histogram"),
    ("ccrelay_auth_failures_total", "counter"),
    ("ccrelay_queue_records", "gauge"),
    ("ccrelay_queue_lines", "gauge"),
    ("ccrelay_queue_stored_bytes", "gauge"),
    ("ccrelay_queue_raw_bytes", "gauge"),
    ("ccrelay_queue_oldest_age_seconds", "gauge"),
    ("ccrelay_queue_limit_bytes", "gauge"),
    ("ccrelay_upstream_up", "gauge"),
    ("ccrelay_upstream_sent_batches_total", "counter"),
    ("ccrelay_upstream_sent_lines_total", "counter"),
    ("ccrelay_upstream_sent_bytes_total", "counter"),
    ("ccrelay_upstream_failures_total", "counter"),
    ("ccrelay_upstream_request_seconds", "histogram"),
    ("ccrelay_upstream_backoff_seconds", "gauge"),
    ("ccrelay_upstream_auth_failing", "gauge"),
    ("ccrelay_upstream_misconfigured", "gauge"),
    ("ccrelay_dropped_lines_total", "counter"),
    ("ccrelay_dropped_records_total", "counter"),
    ("ccrelay_deadletter_lines_total", "counter"),
    ("ccrelay_sled_flush_seconds", "histogram"),
    ("ccrelay_sled_flush_waiters", "histogram"),
    ("ccrelay_sled_errors_total", "counter"),
    ("ccrelay_sled_size_on_disk_bytes", "gauge"),
];

#[test]
fn metrics_after_traffic_pass_promtool_and_carry_the_spec_names() {
    let stub = Stub::start();
    let mut config = relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
        "batch": {"linger": "20ms"}
    }]));
    config["ingress"]["http"][0]["auth"] =
        json!({"mode": "jwt", "jwt_public_key": common::test_public_key()});
    let (relay, admin) = start_relay(config);
    let token = format!("Bearer {}", mint_token(&json!({"sub": "node1"})));
    let t = now();
    let body = format!(
        "cpu_load,hostname=h1 value=1 {t}\nnot line protocol\nmem_used,hostname=h1 value=2 {t}\n"
    );
    for _ in 0..2 {
        let r = relay.request(
            "POST",
            "/api/write?cluster=c",
            &[("Authorization", &token)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let refused = relay.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(refused.status, 401);
    assert!(
        wait_for(Duration::from_secs(10), || stub.delivered_lines().len()
            == 4),
        "{}",
        relay.log_text()
    );

    let scrape = || common::http(&admin, "GET", "/metrics", &[], b"").unwrap();
    let sent = "ccrelay_upstream_sent_lines_total{upstream=\"store\"}";
    assert!(
        wait_for(Duration::from_secs(10), || sample(&scrape().text(), sent)
            == Some(4.0)),
        "{}",
        scrape().text()
    );

    // Anything but Prometheus gets the text format, which promtool lints.
    let plain = scrape();
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = plain.text();
    promtool_check(&text);
    for (name, kind) in FAMILIES {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no {kind} {name}:\n{text}"
        );
    }

    let build = text
        .lines()
        .find(|l| l.starts_with("ccrelay_build_info{"))
        .unwrap();
    let commit = build
        .split("commit=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        build,
        format!(
            "ccrelay_build_info{{version=\"{version}\",commit=\"{commit}\",sled_version=\"0.34.7\"}} 1"
        )
    );
    let in_git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "built from a git checkout, the commit label is the short hash: {build}"
        );
    } else {
        assert!(!commit.is_empty(), "{build}");
    }

    let expect = |series: &str, want: f64| {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    };
    expect("ccrelay_ingest_ack_seconds_count{ingress=\"local\"}", 3.0);
    expect(
        "ccrelay_ingest_ack_seconds_bucket{ingress=\"local\",le=\"+Inf\"}",
        3.0,
    );
    expect(
        "ccrelay_ingest_requests_total{ingress=\"local\",code=\"200\"}",
        2.0,
    );
    expect(
        "ccrelay_ingest_requests_total{ingress=\"local\",code=\"401\"}",
        1.0,
    );
    expect(
        "ccrelay_ingest_invalid_lines_total{ingress=\"local\",reason=\"syntax\"}",
        2.0,
    );
    expect(
        "ccrelay_auth_failures_total{ingress=\"local\",reason=\"missing\"}",
        1.0,
    );
    for op in ["insert", "read", "remove", "flush", "generate_id"] {
        expect(&format!("ccrelay_sled_errors_total{{op=\"{op}\"}}"), 0.0);
    }
    for reason in ["buffer_full", "max_age", "disk_pressure"] {
        let labels = format!("{{upstream=\"store\",reason=\"{reason}\"}}");
        expect(&format!("ccrelay_dropped_lines_total{labels}"), 0.0);
        expect(&format!("ccrelay_dropped_records_total{labels}"), 0.0);
    }
    expect(
        "ccrelay_dropped_records_total{upstream=\"store\",reason=\"corrupt\"}",
        0.0,
    );

    // Prometheus asks for OpenMetrics and gets it: the same series, counter
    // families named without `_total`, `# EOF` last.
    let om = common::http(
        &admin,
        "GET",
        "/metrics",
        &[("Accept", PROMETHEUS_ACCEPT)],
        b"",
    )
    .unwrap();
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om = om.text();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.lines()
            .any(|l| l == "# TYPE ccrelay_sled_errors counter"),
        "{om}"
    );
    assert_eq!(
        sample(&om, "ccrelay_sled_errors_total{op=\"flush\"}"),
        Some(0.0),
        "{om}"
    );
    assert!(om.lines().any(|l| l == build), "{om}");
}
