use super::*;

fn upstream(name: &str) -> UpstreamStatus {
    UpstreamStatus {
        name: name.to_owned(),
        up: true,
        auth_failing: false,
        misconfigured: false,
        queued_records: 0,
        queued_lines: 0,
        stored_bytes: 0,
        limit_bytes: 1 << 30,
        lag_seconds: 0,
        sent_lines: 0,
        sent_lines_per_second: None,
        failures: 0,
        backoff_ms: 0,
        last_success_ms: 0,
        last_error: String::new(),
        last_error_ms: 0,
        dead_lettered_lines: 0,
        dead_letter_records: 0,
        dropped_lines: 0,
    }
}

fn status() -> RelayStatus {
    let now = 1_765_000_000_000;
    let mut down = upstream("store<b>");
    down.up = false;
    down.queued_records = 3;
    down.queued_lines = 1234;
    down.stored_bytes = 2048;
    down.lag_seconds = 75;
    down.failures = 9;
    down.backoff_ms = 4000;
    down.last_error = "connect: Connection refused <os error 111>".to_owned();
    down.last_error_ms = now - 2000;
    down.dead_lettered_lines = 2;
    down.dead_letter_records = 1;
    let mut fine = upstream("archive");
    fine.sent_lines = 5000;
    fine.sent_lines_per_second = Some(250.0);
    fine.last_success_ms = now - 1000;
    RelayStatus {
        instance_id: "rack-7".to_owned(),
        version: "0.1.0",
        time_ms: now,
        storage_healthy: true,
        accepting: true,
        disk_pressure: false,
        received_lines: 6234,
        rate_window_seconds: Some(5.0),
        sources: vec![SourceStatus {
            name: "collectors".to_owned(),
            received_lines: 6234,
            received_bytes: 300_000,
            lines_per_second: Some(311.7),
        }],
        upstreams: vec![down, fine],
        nats: vec![NatsStatus {
            role: "ingress:bus".to_owned(),
            connected: false,
            reconnects: 2,
            last_error: Some("authorization violation".to_owned()),
            source: Some(NatsSourceStatus {
                messages: 10,
                dropped_messages: 0,
                slow_consumer_dropped: 0,
            }),
        }],
    }
}

/// The text a reader sees in `html` (tags dropped, entities decoded).
fn visible(html: &str) -> String {
    cc_common::status_page::visible_text(html)
}

#[test]
fn the_page_shows_rates_queues_errors_and_dead_letters() {
    let html = status().render();
    let text = visible(&html);
    for expected in [
        "cc-relay rack-7",
        "rates over the last 5 s",
        "accepting data",
        "collectors",
        "312/s",
        "store<b>",
        "down; retry in 4 s",
        "1\u{202f}234",
        "2.00 KiB of 1.00 GiB",
        "1 min 15 s",
        "connect: Connection refused <os error 111>",
        "2 s ago",
        "2 (1)",
        "archive",
        "250/s",
        "1 s ago",
        "ingress:bus",
        "not connected",
        "authorization violation",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(html.contains("store&lt;b&gt;"), "names are escaped");
    assert!(!html.contains("<b>"), "no markup from names");
}

#[test]
fn the_page_says_why_data_is_refused() {
    let mut s = status();
    s.disk_pressure = true;
    assert!(visible(&s.render()).contains("disk limits reached: refusing data"));
    s.storage_healthy = false;
    assert!(visible(&s.render()).contains("storage failed"));
}

#[test]
fn the_first_look_has_no_rates_yet() {
    let mut s = status();
    s.rate_window_seconds = None;
    s.sources[0].lines_per_second = None;
    let text = visible(&s.render());
    assert!(text.contains("rates appear on the next reload"), "{text}");
    assert!(text.contains('—'));
}

#[test]
fn nats_section_only_with_nats() {
    let mut s = status();
    s.nats.clear();
    assert!(!visible(&s.render()).contains("NATS connections"));
}

#[test]
fn json_keeps_the_spec_fields_and_adds_rates() {
    let json = serde_json::to_value(status()).unwrap();
    for key in [
        "instance_id",
        "version",
        "storage_healthy",
        "accepting",
        "received_lines",
        "upstreams",
        "nats",
        "sources",
        "disk_pressure",
        "rate_window_seconds",
        "time_ms",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    let up = &json["upstreams"][0];
    for key in [
        "name",
        "queued_records",
        "queued_lines",
        "stored_bytes",
        "lag_seconds",
        "up",
        "sent_lines",
        "backoff_ms",
        "last_success_ms",
        "last_error",
        "dead_lettered_lines",
        "last_error_ms",
        "dead_letter_records",
        "dropped_lines",
        "sent_lines_per_second",
        "limit_bytes",
        "failures",
    ] {
        assert!(up.get(key).is_some(), "{key} missing in {up}");
    }
    assert_eq!(json["sources"][0]["lines_per_second"], 311.7);
    assert_eq!(
        json["upstreams"][0]["sent_lines_per_second"],
        serde_json::Value::Null
    );
    assert_eq!(json["nats"][0]["source"]["messages"], 10);
}
