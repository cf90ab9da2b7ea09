use prometheus_client::collector::Collector;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;

use super::*;

#[test]
fn negotiates_openmetrics_only_when_preferred() {
    let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let prometheus_3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let cases = [
        (None, Format::Text),
        (Some("*/*"), Format::Text),
        (Some("text/plain"), Format::Text),
        (Some(prometheus_2), Format::OpenMetrics),
        (Some(prometheus_3), Format::OpenMetrics),
        (
            Some("Application/OpenMetrics-Text; version=1.0.0"),
            Format::OpenMetrics,
        ),
        (
            Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Text,
        ),
        (Some("application/openmetrics-text;q=0"), Format::Text),
        (Some("application/json"), Format::Text),
    ];
    for (accept, want) in cases {
        assert_eq!(Format::negotiate(accept), want, "{accept:?}");
    }
}

fn sample_registry() -> Registry {
    let mut registry = Registry::with_prefix("cctest");
    register_build_info(
        &mut registry,
        vec![("version", "1.2.3".into()), ("commit", "abc1234".into())],
    );
    let requests: Family<Vec<(&'static str, String)>, Counter> = Family::default();
    requests
        .get_or_create(&vec![("ingress", "local \"quoted\"".to_owned())])
        .inc_by(3);
    registry.register("requests", "Requests", requests);
    let latency = Histogram::new([0.1, 1.0]);
    latency.observe(0.05);
    latency.observe(5.0);
    registry.register("latency_seconds", "Latency", latency);
    registry
}

#[test]
fn text_format_names_counters_with_total_and_escapes_labels() {
    let text = encode(&sample_registry(), Format::Text).unwrap();
    for line in [
        "# HELP cctest_build_info What is running; always 1.",
        "# TYPE cctest_build_info gauge",
        "cctest_build_info{version=\"1.2.3\",commit=\"abc1234\"} 1",
        "# TYPE cctest_requests_total counter",
        "cctest_requests_total{ingress=\"local \\\"quoted\\\"\"} 3",
        "# TYPE cctest_latency_seconds histogram",
        "cctest_latency_seconds_bucket{le=\"0.1\"} 1",
        "cctest_latency_seconds_bucket{le=\"+Inf\"} 2",
        "cctest_latency_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("# EOF"), "{text}");
}

#[test]
fn openmetrics_format_ends_with_eof() {
    let text = encode(&sample_registry(), Format::OpenMetrics).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.lines().any(|l| l == "# TYPE cctest_requests counter"),
        "{text}"
    );
    assert!(text.contains("cctest_requests_total{"), "{text}");
}

#[derive(Debug)]
struct Scraped;

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode_family(
            &mut encoder,
            "queue_lines",
            "Lines queued",
            [("a", 5_i64), ("b", 0)].map(|(u, n)| ([("upstream", u)], ConstGauge::new(n))),
        )?;
        encode_family(
            &mut encoder,
            "evicted",
            "Evicted records",
            [([("upstream", "a")], ConstCounter::new(7_u64))],
        )?;
        encode_family(
            &mut encoder,
            "never_seen",
            "Not written: no series",
            std::iter::empty::<([(&str, &str); 0], ConstGauge)>(),
        )?;
        encode_family(
            &mut encoder,
            "size_bytes",
            "Unlabelled",
            [([] as [(&str, &str); 0], ConstGauge::new(42_u64))],
        )
    }
}

#[test]
fn collector_families_are_prefixed_typed_and_skipped_when_empty() {
    let mut registry = Registry::with_prefix("cctest");
    registry.register_collector(Box::new(Scraped));
    let text = encode(&registry, Format::Text).unwrap();
    let want = "# HELP cctest_queue_lines Lines queued.\n\
                # TYPE cctest_queue_lines gauge\n\
                cctest_queue_lines{upstream=\"a\"} 5\n\
                cctest_queue_lines{upstream=\"b\"} 0\n\
                # HELP cctest_evicted_total Evicted records.\n\
                # TYPE cctest_evicted_total counter\n\
                cctest_evicted_total{upstream=\"a\"} 7\n\
                # HELP cctest_size_bytes Unlabelled.\n\
                # TYPE cctest_size_bytes gauge\n\
                cctest_size_bytes 42\n";
    assert_eq!(text, want);
}

#[tokio::test]
async fn router_answers_in_the_negotiated_format() {
    use tower::ServiceExt as _;

    let app: Router = router(Arc::new(sample_registry()));
    let get = |accept: Option<&'static str>| {
        let mut req = axum::http::Request::get("/metrics");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        req.body(axum::body::Body::empty()).unwrap()
    };
    let plain = app.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()[header::CONTENT_TYPE], TEXT_CONTENT_TYPE);
    let om = app
        .oneshot(get(Some("application/openmetrics-text;version=1.0.0")))
        .await
        .unwrap();
    assert_eq!(om.headers()[header::CONTENT_TYPE], OPENMETRICS_CONTENT_TYPE);
    let body = axum::body::to_bytes(om.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(body.ends_with(b"# EOF\n"));
}
