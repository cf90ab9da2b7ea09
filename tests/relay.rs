//! cc-relay driven the way collectors, operators and stores meet it: the real
//! binary on free ports, forwarding to a scripted upstream or a real cc-store.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use common::{
    Stub, metric, mint_token, now, relay_config, start_relay, start_relay_in, start_relay_when,
    start_store, store_config, wait_for,
};
use serde_json::{Value, json};

fn upstream(name: &str, kind: &str, url: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "url": url,
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms", "poison_attempts": 1}
    })
}

/// [`one_store`] whose batches wait up to `linger` for more records.
fn store_lingering(stub: &Stub, linger: &str) -> Value {
    let mut config = one_store(stub);
    config["upstreams"][0]["batch"]["linger"] = json!(linger);
    config
}

/// A relay config with one `ccms-http` upstream `store`: the stub.
fn one_store(stub: &Stub) -> Value {
    relay_config(json!([upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr)
    )]))
}

fn post(relay: &common::Process, query: &str, body: &str) -> common::Response {
    relay.request("POST", &format!("/api/write{query}"), &[], body.as_bytes())
}

#[test]
fn forwards_lines_unchanged_except_timestamp_units() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("store.jwt");
    std::fs::write(&jwt, "relay-token\n").unwrap();
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    );
    up["auth"] = json!({"jwt_file": jwt});
    let (relay, _admin) = start_relay(relay_config(json!([up])));
    let t = now();
    let body = format!(
        "cpu_load,hostname=f0101,type=node value=12.5 {t}\n\
         cpu_user,hostname=f0101,type=hwthread,type-id=17 value=98.1 {t}123\n\
         mem_used,cluster=fritz,hostname=f0101,type=node,unit=GBytes value=187.25 {t}000000000\n"
    );
    let r = post(&relay, "?cluster=alex", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cc-relay-accepted"), Some("3"));
    assert!(
        wait_for(Duration::from_secs(10), || stub.delivered_lines().len()
            == 3),
        "{:?}",
        stub.requests()
    );
    let req = &stub.requests()[0];
    assert_eq!(req.target, "/api/write?cluster=alex");
    assert_eq!(req.header("authorization"), Some("Bearer relay-token"));
    assert_eq!(
        req.header("content-encoding"),
        None,
        "never compressed towards a store"
    );
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        format!(
            "cpu_load,hostname=f0101,type=node value=12.5 {t}\n\
             cpu_user,hostname=f0101,type=hwthread,type-id=17 value=98.1 {t}\n\
             mem_used,cluster=fritz,hostname=f0101,type=node,unit=GBytes value=187.25 {t}\n"
        )
    );
}

#[test]
fn store_outage_loses_nothing() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/api/write");
    let (relay, admin) = start_relay(relay_config(json!([upstream("store", "ccms-http", &url)])));
    let t = now() / 60 * 60 - 3600;
    for batch in 0..20 {
        let body: String = (0..50)
            .map(|i| format!("cpu_load,hostname=h{i} value={batch} {}\n", t + batch * 60))
            .collect();
        let r = post(&relay, "?cluster=c", &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(metric(&admin, "ccrelay_queue_lines"), 1000.0);
    // The store comes up on the port the relay forwards to.
    let mut config = store_config();
    config["main"]["addr"] = json!(format!("127.0.0.1:{port}"));
    let store = common::start_store_on(config, port);
    let all_there = wait_for(Duration::from_secs(20), || {
        let q = json!({"cluster":"c","from":t - 60,"to":t + 20 * 60,"queries":
            (0..50).map(|i| json!({"metric":"cpu_load","host":format!("h{i}")})).collect::<Vec<_>>()});
        let r = store.request("GET", "/api/query", &[], q.to_string().as_bytes());
        let v = r.json();
        (0..50).all(|i| {
            v["results"][i][0]["data"]
                .as_array()
                .is_some_and(|d| d.iter().filter(|x| !x.is_null()).count() == 20)
        })
    });
    assert!(all_there, "relay log:\n{}", relay.log_text());
    // The relay acknowledges its queue once the store's answer is in; that
    // may come a moment after the data is queryable.
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
}

#[test]
fn upstream_errors_are_retried_until_it_recovers() {
    let stub = Stub::start();
    stub.answer(|_| 503);
    let (relay, admin) = start_relay(one_store(&stub));
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=h value=1 {t}\n")).status,
        200
    );
    assert!(wait_for(Duration::from_secs(5), || stub.requests().len() >= 3));
    assert_eq!(metric(&admin, "ccrelay_upstream_up"), 0.0);
    stub.answer(|_| 200);
    assert!(wait_for(Duration::from_secs(5), || stub
        .delivered_lines()
        .len()
        == 1));
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    assert_eq!(metric(&admin, "ccrelay_upstream_up"), 1.0);
    assert!(metric(&admin, "ccrelay_upstream_failures_total") >= 2.0);
    assert!(
        metric(
            &admin,
            "ccrelay_upstream_failures_total{upstream=\"store\",reason=\"http_5xx\"}"
        ) >= 2.0
    );
    assert!(metric(&admin, "ccrelay_upstream_request_seconds_count") >= 3.0);
    assert!(metric(&admin, "ccrelay_ingest_ack_seconds_count") >= 1.0);
}

#[test]
fn a_poison_line_is_bisected_away() {
    let stub = Stub::start();
    stub.answer(|req| {
        if String::from_utf8_lossy(&req.body).contains("foo=1") {
            400
        } else {
            200
        }
    });
    let mut config = one_store(&stub);
    config["processing"] = json!({"validate": "none"});
    let (relay, admin) = start_relay(config);
    let t = now();
    let mut lines: Vec<String> = (0..100)
        .map(|i| format!("m,hostname=h{i} value={i} {t}\n"))
        .collect();
    lines.insert(50, format!("m,hostname=bad foo=1 {t}\n"));
    let body = lines.concat();
    assert_eq!(post(&relay, "?cluster=c", &body).status, 200);
    assert!(
        wait_for(Duration::from_secs(20), || stub.delivered_lines().len()
            == 100),
        "delivered {}",
        stub.delivered_lines().len()
    );
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_deadletter_lines_total"
    ) == 1.0));
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    assert!(!stub.delivered_lines().iter().any(|l| l.contains("foo=1")));
}

#[test]
fn ccms_validation_refuses_lines_the_store_would_reject() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(one_store(&stub));
    let t = now();
    let r = post(
        &relay,
        "?cluster=c",
        &format!("m,hostname=h foo=1 {t}\nm,hostname=h value=2 {t}\nm value=3 {t}\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.header("x-cc-relay-accepted"),
            r.header("x-cc-relay-rejected")
        ),
        (Some("1"), Some("2"))
    );
    assert!(wait_for(Duration::from_secs(5), || stub
        .delivered_lines()
        .len()
        == 1));
    assert_eq!(metric(&admin, "ccrelay_ingest_invalid_lines_total"), 2.0);
}

#[test]
fn acknowledged_lines_survive_kill_9() {
    let stub = Stub::start();
    stub.answer(|_| 503);
    let url = format!("http://{}/api/write", stub.addr);
    let config = relay_config(json!([upstream("store", "ccms-http", &url)]));
    let (relay, _) = start_relay(config.clone());
    let t = now();
    let mut sent = Vec::new();
    for batch in 0..10 {
        let body: String = (0..100)
            .map(|i| format!("m,hostname=h{i} value={batch} {t}\n"))
            .collect();
        assert_eq!(post(&relay, "?cluster=c", &body).status, 200);
        sent.extend(body.lines().map(str::to_owned));
    }
    let dir = relay.kill9();
    stub.answer(|_| 200);
    let (relay, admin) = start_relay_in(config, dir);
    assert!(
        wait_for(Duration::from_secs(20), || metric(
            &admin,
            "ccrelay_queue_lines"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    let delivered: std::collections::HashSet<String> = stub.delivered_lines().into_iter().collect();
    let missing: Vec<&String> = sent.iter().filter(|l| !delivered.contains(*l)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged lines lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[test]
fn relays_chain_to_the_store() {
    let store = start_store(store_config());
    let (site, _) = start_relay(relay_config(json!([upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", store.addr)
    )])));
    let mut rack_up = upstream(
        "site",
        "relay-http",
        &format!("http://{}/api/write", site.addr),
    );
    rack_up["compress"] = json!("zstd");
    let (rack, _) = start_relay(relay_config(json!([rack_up])));
    let t = now() / 60 * 60;
    let body = format!("cpu_load,hostname=h1 value=4 {t}\ncpu_load,hostname=h2 value=5 {t}\n");
    assert_eq!(post(&rack, "?cluster=fritz", &body).status, 200);
    let arrived = wait_for(Duration::from_secs(15), || {
        let q = json!({"cluster":"fritz","from":t - 60,"to":t + 60,"queries":[{"metric":"cpu_load","host":"h1"},{"metric":"cpu_load","host":"h2"}]});
        let v = store
            .request("GET", "/api/query", &[], q.to_string().as_bytes())
            .json();
        v["results"][0][0]["max"] == json!(4.0) && v["results"][1][0]["max"] == json!(5.0)
    });
    assert!(
        arrived,
        "rack:\n{}\nsite:\n{}",
        rack.log_text(),
        site.log_text()
    );
}

#[test]
fn hop_limit_stops_loops() {
    let stub = Stub::start();
    let (relay, _) = start_relay(one_store(&stub));
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("X-CC-Relay-Hops", "9"), ("X-CC-Relay-Id", "other")],
        format!("m,hostname=h value=1 {}\n", now()).as_bytes(),
    );
    assert_eq!(r.status, 508);
}

#[test]
fn fan_out_keeps_the_healthy_upstream_flowing() {
    let good = Stub::start();
    let down = Stub::start();
    down.answer(|_| 503);
    let (relay, admin) = start_relay(relay_config(json!([
        upstream(
            "good",
            "ccms-http",
            &format!("http://{}/api/write", good.addr)
        ),
        upstream(
            "down",
            "ccms-http",
            &format!("http://{}/api/write", down.addr)
        )
    ])));
    let t = now();
    for i in 0..5 {
        assert_eq!(
            post(
                &relay,
                "?cluster=c",
                &format!("m,hostname=h value={i} {t}\n")
            )
            .status,
            200
        );
    }
    assert!(wait_for(Duration::from_secs(5), || good
        .delivered_lines()
        .len()
        == 5));
    // The records are deleted right after the upstream's answer.
    assert!(wait_for(Duration::from_secs(5), || {
        common::http(&admin, "GET", "/metrics", &[], b"")
            .unwrap()
            .text()
            .contains("ccrelay_queue_lines{upstream=\"good\"} 0")
    }));
    let text = common::http(&admin, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    assert!(
        text.contains("ccrelay_queue_lines{upstream=\"down\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("ccrelay_queue_lines{upstream=\"good\"} 0"),
        "{text}"
    );
    // Every request waited for a group-commit flush; both are histograms.
    assert!(
        metric(&admin, "ccrelay_sled_flush_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("ccrelay_sled_flush_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    assert!(
        metric(&admin, "ccrelay_sled_flush_waiters_sum") >= 5.0,
        "{text}"
    );
    down.answer(|_| 200);
    assert!(wait_for(Duration::from_secs(5), || down
        .delivered_lines()
        .len()
        == 5));
}

#[test]
fn full_queues_drop_oldest_or_reject_new() {
    let down = Stub::start();
    down.answer(|_| 503);
    let url = format!("http://{}/api/write", down.addr);
    let mut drop_up = upstream("store", "ccms-http", &url);
    drop_up["buffer"] = json!({"max_bytes": 3000, "when_full": "drop_oldest"});
    let (relay, admin) = start_relay(relay_config(json!([drop_up])));
    let t = now();
    for batch in 0..40 {
        let body: String = (0..20)
            .map(|i| format!("m,hostname=h{i},batch=b{batch} value={batch} {t}\n"))
            .collect();
        assert_eq!(
            post(&relay, "?cluster=c", &body).status,
            200,
            "drop_oldest always accepts"
        );
        if batch == 0 {
            // The first batch is on its way (refused, retried) before the
            // queue fills: it is the batch in flight.
            assert!(
                wait_for(Duration::from_secs(10), || down
                    .requests()
                    .iter()
                    .any(|r| String::from_utf8_lossy(&r.body).contains("batch=b0 "))),
                "{}",
                relay.log_text()
            );
        }
    }
    let dropped = metric(&admin, "ccrelay_dropped_lines_total");
    assert!(dropped > 0.0);
    assert!(
        metric(
            &admin,
            "ccrelay_dropped_records_total{upstream=\"store\",reason=\"buffer_full\"}"
        ) > 0.0
    );
    assert!(metric(&admin, "ccrelay_queue_stored_bytes") <= 3000.0 + 2000.0);
    down.answer(|_| 200);
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    let delivered = down.delivered_lines();
    assert!(
        delivered.iter().any(|l| l.contains("batch=b39")),
        "the newest data is kept"
    );
    assert!(
        delivered.iter().any(|l| l.contains("batch=b0 ")),
        "the batch in flight when the queue filled is never evicted"
    );
    let unique: std::collections::HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "no line delivered twice");
    assert_eq!(
        delivered.len() as f64 + dropped,
        800.0,
        "every line delivered or counted as dropped ({} delivered, {dropped} dropped)",
        delivered.len()
    );
    drop(relay);

    let mut reject_up = upstream("store", "ccms-http", &url);
    reject_up["buffer"] = json!({"max_bytes": 1000, "when_full": "reject_new"});
    down.answer(|_| 503);
    let (relay, _) = start_relay(relay_config(json!([reject_up])));
    let mut statuses = Vec::new();
    for batch in 0..40 {
        let body: String = (0..20)
            .map(|i| format!("m,hostname=h{i} value={batch} {t}\n"))
            .collect();
        let r = post(&relay, "?cluster=c", &body);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[test]
fn jwt_ingress_authentication() {
    let stub = Stub::start();
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["auth"] = json!({"mode": "jwt", "jwt_public_key": common::test_public_key(), "required_roles": ["collector"]});
    let (relay, admin) = start_relay(config);
    let body = format!("m,hostname=h value=1 {}\n", now());
    let send = |headers: &[(&str, &str)]| {
        relay
            .request("POST", "/api/write?cluster=c", headers, body.as_bytes())
            .status
    };
    let good = mint_token(&json!({"sub": "node1", "roles": ["collector"]}));
    let norole = mint_token(&json!({"sub": "node1", "roles": ["user"]}));
    let expired = mint_token(&json!({"sub": "node1", "roles": ["collector"], "exp": now() - 3600}));
    assert_eq!(send(&[]), 401);
    assert_eq!(send(&[("Authorization", &format!("Bearer {good}"))]), 200);
    assert_eq!(send(&[("X-Auth-Token", &good)]), 200);
    assert_eq!(send(&[("Authorization", &format!("Bearer {norole}"))]), 403);
    assert_eq!(
        send(&[("Authorization", &format!("Bearer {expired}"))]),
        401
    );
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "roles": ["collector"]}),
        &jsonwebtoken::EncodingKey::from_secret(common::test_public_key().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(send(&[("Authorization", &format!("Bearer {hs}"))]), 401);
    let failures = |reason: &str| {
        metric(
            &admin,
            &format!("ccrelay_auth_failures_total{{ingress=\"local\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failures("missing"), 1.0);
    assert_eq!(failures("claims"), 1.0, "the token without the role");
    assert_eq!(failures("jwt"), 2.0, "expired, and HS256");
    assert_eq!(
        metric(&admin, "ccrelay_ingest_lines_total{ingress=\"local\"}"),
        2.0,
        "lines of the accepted requests only"
    );
    assert_eq!(
        metric(&admin, "ccrelay_ingest_bytes_total{ingress=\"local\"}"),
        2.0 * body.len() as f64
    );
}

#[test]
fn body_limits_and_encodings() {
    let stub = Stub::start();
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["max_body_bytes"] = json!("4KiB");
    config["ingress"]["http"][0]["max_decompressed_bytes"] = json!("8KiB");
    let (relay, _) = start_relay(config);
    let t = now();
    let big = format!("m,hostname=h value=1 {t}\n").repeat(400);
    assert_eq!(post(&relay, "?cluster=c", &big).status, 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, big.as_bytes()).unwrap();
    let bomb = gz.finish().unwrap();
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(r.status, 413, "decoded size beyond max_decompressed_bytes");
    let small = format!("m,hostname=h value=1 {t}\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, small.as_bytes()).unwrap();
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 200);
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("Content-Encoding", "br")],
        small.as_bytes(),
    );
    assert_eq!(r.status, 415);
    assert_eq!(
        post(&relay, "?cluster=c", "garbage without fields\n").status,
        400
    );
    assert_eq!(relay.request("GET", "/api/write", &[], b"").status, 405);
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let stub = Stub::start();
    // A long linger: only the drain at shutdown can deliver the line in time.
    let (relay, _) = start_relay(store_lingering(&stub, "30s"));
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=h value=1 {t}\n")).status,
        200
    );
    let status = relay.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(stub.delivered_lines().len(), 1);
}

#[test]
fn a_failing_upstream_is_probed_with_one_record_then_sent_full_batches() {
    let stub = Stub::start();
    stub.answer(|_| 503);
    // The three records below go out together in the first attempt.
    let (relay, _) = start_relay(store_lingering(&stub, "300ms"));
    let t = now();
    let records = [
        format!("m,hostname=a value=1 {t}\nm,hostname=a value=2 {t}\n"),
        format!("m,hostname=b value=3 {t}\n"),
        format!("m,hostname=c value=4 {t}\n"),
    ];
    for body in &records {
        assert_eq!(post(&relay, "?cluster=c", body).status, 200);
    }
    // Several failed attempts: after the first, only the oldest record goes.
    assert!(wait_for(Duration::from_secs(10), || stub.requests().len() >= 4));
    stub.answer(|_| 200);
    let all: Vec<String> = records
        .iter()
        .flat_map(|r| r.lines())
        .map(str::to_owned)
        .collect();
    assert!(wait_for(Duration::from_secs(10), || stub
        .delivered_lines()
        .len()
        >= all.len()));
    let seen = stub.requests();
    let first_ok = seen.iter().position(|r| r.status == 200).unwrap();
    for retry in &seen[1..=first_ok] {
        assert_eq!(
            String::from_utf8_lossy(&retry.body),
            records[0],
            "a retry while the upstream fails is a probe of one record"
        );
    }
    // After the probe got through, the rest goes together.
    assert_eq!(
        String::from_utf8_lossy(&seen[first_ok + 1].body),
        format!("{}{}", records[1], records[2])
    );
    assert_eq!(stub.delivered_lines(), all);
}

#[test]
fn the_admin_endpoints_answer_through_the_shutdown_drain() {
    // The store is down: the relay forwards for the whole grace period, and
    // meanwhile a load balancer must see /readyz say 503, and an operator
    // the drain on /metrics.
    let stub = Stub::start();
    stub.answer(|_| 503);
    let mut config = relay_config(json!([upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    )]));
    config["shutdown_grace"] = json!("3s");
    let (relay, admin) = start_relay(config);
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=h value=1 {t}\n")).status,
        200
    );
    std::process::Command::new("kill")
        .args(["-TERM", &relay.pid().to_string()])
        .status()
        .unwrap();
    let draining = wait_for(Duration::from_secs(2), || {
        common::http(&admin, "GET", "/readyz", &[], b"")
            .is_ok_and(|r| r.status == 503 && r.text() == "shutting down\n")
    });
    assert!(draining, "{}", relay.log_text());
    assert_eq!(
        common::http(&admin, "GET", "/healthz", &[], b"")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        metric(&admin, "ccrelay_queue_lines{upstream=\"store\"}"),
        1.0
    );
    assert!(relay.log_text().contains("shutting down"));
    let status = relay.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.json");
    let mut config = relay_config(json!([upstream(
        "store",
        "ccms-http",
        "http://127.0.0.1:1/api/write"
    )]));
    config["upstreams"][0]["bufer"] = json!({});
    std::fs::write(&path, config.to_string()).unwrap();
    let out = common::relay_cli(&path, &["--check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bufer") && err.contains("relay.json"), "{err}");
    config["upstreams"][0]
        .as_object_mut()
        .unwrap()
        .remove("bufer");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = common::relay_cli(&path, &["--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn free_space_floor_refuses_new_data() {
    let stub = Stub::start();
    let mut config = one_store(&stub);
    // No real filesystem has 99.99 % free: the floor is always under water.
    config["storage"] = json!({"min_free_disk_percent": 99.99, "disk_check_interval": "100ms"});
    // /readyz stays 503 here: wait for liveness instead.
    let (relay, admin) = start_relay_when(config, tempfile::tempdir().unwrap(), |admin| {
        common::http(admin, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let ready = common::http(&admin, "GET", "/readyz", &[], b"").map(|r| r.status);
    let write = post(
        &relay,
        "?cluster=c",
        &format!("m,hostname=h value=1 {}\n", now()),
    );
    let pressure = metric(&admin, "ccrelay_storage_pressure");
    assert_eq!(ready.unwrap(), 503);
    assert_eq!(write.status, 503);
    assert!(write.header("retry-after").is_some());
    assert_eq!(pressure, 1.0);
}

#[test]
fn a_body_that_never_arrives_times_out() {
    use std::io::{Read, Write};
    let stub = Stub::start();
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["body_read_timeout"] = json!("300ms");
    let (relay, _) = start_relay(config);
    let mut conn = std::net::TcpStream::connect(&relay.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(
        b"POST /api/write?cluster=c HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm,host",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn refused_credentials_never_drop_data_and_sighup_rereads_them() {
    let stub = Stub::start();
    stub.answer(|req| {
        if req.header("authorization") == Some("Bearer good") {
            200
        } else {
            401
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("store.jwt");
    std::fs::write(&jwt, "stale\n").unwrap();
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    );
    up["auth"] = json!({"jwt_file": jwt});
    up["retry"]["auth_backoff"] = json!("200ms");
    let (relay, admin) = start_relay(relay_config(json!([up])));
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=h value=1 {t}\n")).status,
        200
    );
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_upstream_auth_failing"
    ) == 1.0));
    assert_eq!(
        metric(&admin, "ccrelay_queue_lines"),
        1.0,
        "nothing dropped for auth errors"
    );
    std::fs::write(&jwt, "good\n").unwrap();
    let pid = relay.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        wait_for(Duration::from_secs(5), || stub.delivered_lines().len() == 1),
        "{}",
        relay.log_text()
    );
    assert_eq!(metric(&admin, "ccrelay_upstream_auth_failing"), 0.0);
}

#[test]
fn lines_older_than_max_age_are_dropped_not_sent() {
    let stub = Stub::start();
    stub.answer(|_| 503);
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    );
    up["buffer"] = json!({"max_age": "1s"});
    let (relay, admin) = start_relay(relay_config(json!([up])));
    let t = now();
    assert_eq!(
        post(
            &relay,
            "?cluster=c",
            &format!("m,hostname=h value=1 {t}\nm,hostname=h2 value=1 {t}\n")
        )
        .status,
        200
    );
    // The relay keeps retrying; once the lines are older than max_age, the
    // next attempt drops them instead of sending them.
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &admin,
            "ccrelay_dropped_lines_total{upstream=\"store\",reason=\"max_age\"}"
        ) == 2.0),
        "{}",
        relay.log_text()
    );
    stub.answer(|_| 200);
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    assert!(stub.delivered_lines().is_empty());
    let text = common::http(&admin, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    assert!(
        text.contains("ccrelay_dropped_lines_total{upstream=\"store\",reason=\"max_age\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("ccrelay_dropped_records_total{upstream=\"store\",reason=\"max_age\"} 1"),
        "both lines came in one record: {text}"
    );
    assert_eq!(
        post(
            &relay,
            "?cluster=c",
            &format!("m,hostname=h value=2 {}\n", now())
        )
        .status,
        200
    );
    assert!(wait_for(Duration::from_secs(5), || stub
        .delivered_lines()
        .len()
        == 1));
}

#[test]
fn offline_commands_show_queues_and_dead_letters() {
    let stub = Stub::start();
    stub.answer(|req| {
        if String::from_utf8_lossy(&req.body).contains("foo=1") {
            400
        } else {
            503
        }
    });
    let mut config = one_store(&stub);
    config["processing"] = json!({"validate": "none"});
    let (relay, admin) = start_relay(config);
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=bad foo=1 {t}\n")).status,
        200
    );
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_deadletter_lines_total"
    ) == 1.0));
    assert_eq!(
        post(
            &relay,
            "?cluster=c",
            &format!("m,hostname=ok value=1 {t}\n")
        )
        .status,
        200
    );
    let (status, dir) = {
        // The database is locked while the relay runs.
        let config_path = relay.dir.path().join("relay.json");
        let out = common::relay_cli(&config_path, &["queue", "stats"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("still running"));
        relay.stop()
    };
    assert!(status.success());
    let config_path = dir.path().join("relay.json");
    let run = |args: &[&str]| {
        let out = common::relay_cli(&config_path, args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stats, err) = run(&["queue", "stats"]);
    assert!(ok, "{err}");
    assert!(
        stats.lines().any(|l| l.starts_with("store\t1\t1\t")),
        "{stats}"
    );
    let (ok, dump, _) = run(&["queue", "dump", "store"]);
    assert!(ok);
    assert_eq!(dump, format!("m,hostname=ok value=1 {t}\n"));
    let (ok, dlq, _) = run(&["dlq", "dump", "store"]);
    assert!(ok);
    assert!(
        dlq.contains("status 400") && dlq.contains(&format!("m,hostname=bad foo=1 {t}")),
        "{dlq}"
    );
    let (ok, purged, _) = run(&["queue", "purge", "store"]);
    assert!(ok && purged.contains("purged 1 records"), "{purged}");
    let (_, stats, _) = run(&["queue", "stats"]);
    assert!(
        stats.lines().any(|l| l.starts_with("store\t0\t0\t")),
        "{stats}"
    );
}

#[test]
fn forwards_over_https_trusting_the_configured_ca() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let port = common::free_port();
    let mut store_cfg = store_config();
    store_cfg["main"] = json!({
        "https-cert-file": tls.join("server.pem"),
        "https-key-file": tls.join("server-key.pem"),
    });
    // start_store waits for plain HTTP; start this one by hand.
    let dir = tempfile::tempdir().unwrap();
    store_cfg["main"]["addr"] = json!(format!("127.0.0.1:{port}"));
    store_cfg["metric-store"]["checkpoints"]["directory"] = json!(dir.path().join("cp"));
    let path = dir.path().join("store.json");
    std::fs::write(&path, store_cfg.to_string()).unwrap();
    let store = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("https://127.0.0.1:{port}/api/write"),
    );
    up["tls"] = json!({"ca_file": tls.join("ca.pem")});
    let mut wrong_ca = upstream(
        "untrusted",
        "ccms-http",
        &format!("https://127.0.0.1:{port}/api/write"),
    );
    let trust = dir.path().join("trust.pem");
    std::fs::copy(tls.join("other-ca.pem"), &trust).unwrap();
    wrong_ca["tls"] = json!({"ca_file": trust});
    let url = format!("https://127.0.0.1:{port}/api/write");
    let mut renamed = upstream("renamed", "ccms-http", &url);
    renamed["tls"] = json!({"ca_file": tls.join("ca.pem"), "server_name": "localhost"});
    let mut wrong_name = upstream("wrong_name", "ccms-http", &url);
    wrong_name["tls"] = json!({"ca_file": tls.join("ca.pem"), "server_name": "elsewhere.example"});
    let mut insecure = upstream("insecure", "ccms-http", &url);
    insecure["tls"] = json!({"insecure_skip_verify": true});
    let (relay, admin) = start_relay(relay_config(json!([
        up, wrong_ca, renamed, wrong_name, insecure
    ])));
    let t = now() / 60 * 60;
    assert_eq!(
        post(
            &relay,
            "?cluster=c",
            &format!("cpu_load,hostname=h value=7 {t}\n")
        )
        .status,
        200
    );
    let sent = |name: &str| {
        metric(
            &admin,
            &format!("ccrelay_upstream_sent_lines_total{{upstream=\"{name}\"}}"),
        )
    };
    let delivered = wait_for(Duration::from_secs(10), || {
        sent("store") == 1.0 && sent("renamed") == 1.0 && sent("insecure") == 1.0
    });
    let text = common::http(&admin, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    let stop_store = |mut store: std::process::Child| {
        let _ = store.kill();
        let _ = store.wait();
    };
    if !delivered {
        stop_store(store);
        panic!("{}\n{text}", relay.log_text());
    }
    assert!(
        text.contains("ccrelay_upstream_sent_lines_total{upstream=\"untrusted\"} 0"),
        "{text}"
    );
    assert_eq!(
        sent("wrong_name"),
        0.0,
        "the certificate does not name it: {text}"
    );
    assert!(
        text.contains("ccrelay_queue_lines{upstream=\"untrusted\"} 1"),
        "{text}"
    );
    // The right CA put in place and SIGHUP: the queued line goes out.
    std::fs::copy(tls.join("ca.pem"), &trust).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &relay.pid().to_string()])
        .status()
        .unwrap();
    let now_trusted = wait_for(Duration::from_secs(10), || {
        metric(
            &admin,
            "ccrelay_upstream_sent_lines_total{upstream=\"untrusted\"}",
        ) == 1.0
    });
    stop_store(store);
    assert!(now_trusted, "{}", relay.log_text());
}

#[test]
fn batches_never_mix_default_clusters() {
    let stub = Stub::start();
    stub.answer(|_| 503);
    let (relay, _) = start_relay(one_store(&stub));
    let t = now();
    for cluster in ["alex", "fritz", "alex"] {
        assert_eq!(
            post(
                &relay,
                &format!("?cluster={cluster}"),
                &format!("m,hostname={cluster} value=1 {t}\n")
            )
            .status,
            200
        );
    }
    stub.answer(|_| 200);
    assert!(wait_for(Duration::from_secs(10), || stub
        .delivered_lines()
        .len()
        == 3));
    for req in stub.requests().iter().filter(|r| r.status == 200) {
        let cluster = req.target.split("cluster=").nth(1).unwrap().to_owned();
        let body = String::from_utf8_lossy(&req.body);
        assert!(
            body.lines()
                .all(|l| l.contains(&format!("hostname={cluster} "))),
            "{} got {body}",
            req.target
        );
    }
}

#[test]
fn a_slow_upstream_is_retried_after_the_timeout() {
    let stub = Stub::start();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = std::sync::Arc::clone(&calls);
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    stub.answer(move |_| {
        // The first answer comes after the relay gave up waiting: it is held
        // until the test saw the timeout counted.
        if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(30));
        }
        200
    });
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    );
    up["timeout"] = json!("500ms");
    let (relay, admin) = start_relay(relay_config(json!([up])));
    let t = now();
    assert_eq!(
        post(&relay, "?cluster=c", &format!("m,hostname=h value=1 {t}\n")).status,
        200
    );
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &admin,
            "ccrelay_upstream_failures_total{upstream=\"store\",reason=\"timeout\"}"
        ) >= 1.0),
        "{}",
        relay.log_text()
    );
    release.send(()).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &admin,
            "ccrelay_queue_lines"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    assert!(
        metric(&admin, "ccrelay_upstream_failures_total") >= 1.0,
        "the timed-out attempt counts as a failure"
    );
    assert!(
        metric(
            &admin,
            "ccrelay_upstream_failures_total{upstream=\"store\",reason=\"timeout\"}"
        ) >= 1.0
    );
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "retried after the timeout"
    );
}

#[test]
fn removed_upstreams_leave_orphan_queues_until_purged() {
    let down = Stub::start();
    down.answer(|_| 503);
    let url = format!("http://{}/api/write", down.addr);
    let config = relay_config(json!([
        upstream("old", "ccms-http", &url),
        upstream("new", "ccms-http", &url)
    ]));
    let (relay, _) = start_relay(config);
    assert_eq!(
        post(
            &relay,
            "?cluster=c",
            &format!("m,hostname=h value=1 {}\n", now())
        )
        .status,
        200
    );
    let (status, dir) = relay.stop();
    assert!(status.success());
    // "old" is gone from the configuration: its queue stays and is reported.
    let (relay, _) = start_relay_in(
        relay_config(json!([upstream("new", "ccms-http", &url)])),
        dir,
    );
    assert!(relay.log_text().contains("old"), "{}", relay.log_text());
    let (status, dir) = relay.stop();
    assert!(status.success());
    let config_path = dir.path().join("relay.json");
    let run = |args: &[&str]| {
        let out = common::relay_cli(&config_path, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["queue", "stats"]).contains("old (orphan"));
    assert!(run(&["queue", "purge-orphans"]).contains("old"));
    assert!(!run(&["queue", "stats"]).contains("orphan"));
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_line() {
    let stub = Stub::start();
    // Slow 2xx answers: kills land between the upstream's answer and the
    // deletion of the records, as well as in the middle of ingest.
    stub.answer(|_| {
        std::thread::sleep(Duration::from_millis(30));
        200
    });
    let url = format!("http://{}/api/write", stub.addr);
    let config = relay_config(json!([upstream("store", "ccms-http", &url)]));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let t = now();
    let mut dir = tempfile::tempdir().unwrap();
    for round in 0..3u32 {
        let (relay, _) = start_relay_in(config.clone(), dir);
        let addr = relay.addr.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poster = {
            let (acked, stop) = (std::sync::Arc::clone(&acked), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut batch = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let lines: Vec<String> = (0..50)
                        .map(|i| format!("m,hostname=r{round}b{batch}l{i} value=1 {t}"))
                        .collect();
                    let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
                    match common::http(&addr, "POST", "/api/write?cluster=c", &[], body.as_bytes())
                    {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().extend(lines),
                        _ => {}
                    }
                    batch += 1;
                }
            })
        };
        // Killed once the relay is busy both ways: 100, 150, 200 batches of
        // this round acknowledged (as many as a few hundred ms bring on an
        // idle machine, but not fewer on a loaded one) and some of them
        // forwarded.
        let acked_before = acked.lock().unwrap().len();
        let batches = 100 + 50 * round as usize;
        let this_round = format!("hostname=r{round}b");
        let busy = wait_for(Duration::from_secs(30), || {
            acked.lock().unwrap().len() >= acked_before + 50 * batches
                && stub
                    .delivered_lines()
                    .iter()
                    .any(|l| l.contains(&this_round))
        });
        assert!(busy, "round {round}: {}", relay.log_text());
        dir = relay.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poster.join().unwrap();
    }
    let (relay, admin) = start_relay_in(config, dir);
    assert!(
        wait_for(Duration::from_secs(30), || metric(
            &admin,
            "ccrelay_queue_lines"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    let delivered: std::collections::HashSet<String> = stub.delivered_lines().into_iter().collect();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "the test must acknowledge data: {}",
        acked.len()
    );
    let lost: Vec<&String> = acked.iter().filter(|l| !delivered.contains(*l)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged lines lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}

#[test]
fn https_ingress_with_client_certificates() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let stub = Stub::start();
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["tls"] = json!({
        "cert_file": tls.join("server.pem"),
        "key_file": tls.join("server-key.pem"),
        "client_ca_file": tls.join("ca.pem"),
        "require_client_cert": true
    });
    let (relay, _) = start_relay(config);
    let port = relay.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/api/write?cluster=c");
    let body = format!("m,hostname=h value=1 {}\n", now());
    let curl = |extra: &[&std::ffi::OsStr]| {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(tls.join("ca.pem"))
            .args(extra)
            .args(["--data-binary", &body, &url])
            .output()
            .unwrap()
    };
    let with_cert = curl(&[
        "--cert".as_ref(),
        tls.join("client.pem").as_os_str(),
        "--key".as_ref(),
        tls.join("client-key.pem").as_os_str(),
    ]);
    assert_eq!(String::from_utf8_lossy(&with_cert.stdout), "200");
    let without = curl(&[]);
    assert_ne!(
        String::from_utf8_lossy(&without.stdout),
        "200",
        "a client without certificate is refused"
    );
    assert!(wait_for(Duration::from_secs(5), || stub
        .delivered_lines()
        .len()
        == 1));
}

#[test]
fn sighup_rotates_ingress_keys_and_the_admin_token() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("jwt.pub");
    // Start with another key than the one the test tokens are signed with.
    std::fs::write(&key_file, "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=\n").unwrap();
    let admin_token = dir.path().join("admin.token");
    std::fs::write(&admin_token, "first\n").unwrap();
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["auth"] = json!({"mode": "jwt", "jwt_public_key_file": key_file});
    config["admin"] = json!({"auth_token_file": admin_token});
    // /readyz needs the token now.
    let (relay, admin) = start_relay_when(config, dir, |admin| {
        common::http(
            admin,
            "GET",
            "/readyz",
            &[("Authorization", "Bearer first")],
            b"",
        )
        .is_ok_and(|r| r.status == 200)
    });
    let ingress = relay.addr.clone();
    let token = mint_token(&json!({"sub": "node1"}));
    let write = || {
        common::http(
            &ingress,
            "POST",
            "/api/write?cluster=c",
            &[("Authorization", &format!("Bearer {token}"))],
            format!("m,hostname=h value=1 {}\n", now()).as_bytes(),
        )
        .map(|r| r.status)
        .unwrap_or(0)
    };
    let status_with = |t: &str| {
        common::http(
            &admin,
            "GET",
            "/status",
            &[("Authorization", &format!("Bearer {t}"))],
            b"",
        )
        .map(|r| r.status)
        .unwrap_or(0)
    };
    let before = (write(), status_with("second"));
    std::fs::write(&key_file, format!("{}\n", common::test_public_key())).unwrap();
    std::fs::write(&admin_token, "second\n").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &relay.pid().to_string()])
        .status();
    let rotated = wait_for(Duration::from_secs(5), || write() == 200);
    let after = (status_with("first"), status_with("second"));
    assert_eq!(before, (401, 401));
    assert!(rotated, "the new key is used after SIGHUP");
    assert_eq!(
        after,
        (401, 200),
        "the new admin token replaces the old one"
    );
}

#[test]
fn the_printed_default_configuration_loads_again() {
    let out = std::process::Command::new(common::binary("cc-relay"))
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["ingress"]["http"][0]["address"], "127.0.0.1:8080");
    assert_eq!(
        printed["upstreams"][0]["url"],
        "http://127.0.0.1:8082/api/write"
    );
    let check = common::relay_cli(&path, &["--check-config"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn per_upstream_rules_shape_each_upstreams_lines() {
    let a = Stub::start();
    let b = Stub::start();
    let mut up_a = upstream("a", "ccms-http", &format!("http://{}/api/write", a.addr));
    up_a["processing"] = json!({"drop_measurements": ["secret"], "add_tags": {"site": "x"}});
    let mut up_b = upstream("b", "relay-http", &format!("http://{}/api/write", b.addr));
    up_b["processing"] = json!({"default_cluster": "other"});
    let mut config = relay_config(json!([up_a, up_b]));
    config["processing"] = json!({"default_cluster": "main"});
    let (relay, _) = start_relay(config);
    let t = now();
    let r = post(
        &relay,
        "",
        &format!("secret,hostname=h value=1 {t}\nm,hostname=h value=2 {t}\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cc-relay-accepted"), Some("2"));
    assert!(wait_for(Duration::from_secs(5), || a
        .delivered_lines()
        .len()
        == 1
        && b.delivered_lines().len() == 2));
    assert_eq!(
        a.delivered_lines(),
        [format!("m,hostname=h,site=x value=2 {t}")]
    );
    assert_eq!(a.requests()[0].target, "/api/write?cluster=main");
    assert_eq!(b.requests()[0].target, "/api/write?cluster=other");
    assert_eq!(
        b.delivered_lines()[0],
        format!("secret,hostname=h value=1 {t}")
    );
}

/// Mounts a tmpfs of `size` at `dir` (root only); false where that is not possible.
#[test]
fn a_storage_error_stops_acknowledging_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _tmpfs = common::Tmpfs::mount(&data, "6m");
    let stub = Stub::start();
    stub.answer(|_| 503);
    let mut config = one_store(&stub);
    // No protection: let the filesystem run full under sled.
    config["storage"] =
        json!({"min_free_disk_bytes": 0, "min_free_disk_percent": 0, "record_compression": "none"});
    config["data_dir"] = json!(data);
    let (relay, _) = start_relay(config.clone());
    let t = now();
    let mut acked = Vec::new();
    let mut refused = false;
    for batch in 0..400 {
        let lines: Vec<String> = (0..200)
            .map(|i| format!("m,hostname=b{batch}l{i} value={i} {t}"))
            .collect();
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        match common::http(
            &relay.addr,
            "POST",
            "/api/write?cluster=c",
            &[],
            body.as_bytes(),
        ) {
            Ok(r) if r.status == 200 => acked.extend(lines),
            Ok(r) => {
                assert_eq!(r.status, 503, "{}", r.text());
                refused = true;
                break;
            }
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "the filesystem never filled up");
    assert!(!acked.is_empty());
    // The relay stops on its own and reports the failure.
    let exited = wait_for(Duration::from_secs(15), || {
        common::http(
            &relay.addr,
            "POST",
            "/api/write?cluster=c",
            &[],
            b"m,hostname=x value=1 1\n",
        )
        .is_err()
    });
    assert!(exited, "{}", relay.log_text());
    let log = relay.log_text();
    let (status, dir) = relay.stop();
    assert!(
        !status.success(),
        "exit status after a storage failure: {status}"
    );
    assert!(log.contains("storage failed"), "{log}");
    // More room, the upstream back: everything acknowledged arrives.
    assert!(
        std::process::Command::new("mount")
            .args(["-o", "remount,size=64m"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    stub.answer(|_| 200);
    let (relay, admin) = start_relay_in(config, dir);
    assert!(
        wait_for(Duration::from_secs(20), || metric(
            &admin,
            "ccrelay_queue_lines"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    let delivered: std::collections::HashSet<String> = stub.delivered_lines().into_iter().collect();
    let lost = acked.iter().filter(|l| !delivered.contains(*l)).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged lines lost", acked.len());
}

#[test]
fn admin_endpoints_over_https() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let stub = Stub::start();
    let (config, admin_port) =
        https_admin_config(&stub, &tls.join("server.pem"), &tls.join("server-key.pem"));
    let ca = tls.join("ca.pem");
    // Ready once the admin listener answers over HTTPS (start fails otherwise).
    let (_relay, admin) = start_relay_when(config, tempfile::tempdir().unwrap(), |_| {
        https_healthz(admin_port, Some(&ca)) == "200"
    });
    let plain = common::http(&admin, "GET", "/healthz", &[], b"");
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status != 200),
        "no plain HTTP on the TLS port"
    );
}

/// A relay config whose admin listener serves HTTPS with `cert`/`key`, and
/// its admin port (the stub upstream must outlive the relay).
fn https_admin_config(stub: &Stub, cert: &std::path::Path, key: &std::path::Path) -> (Value, u16) {
    let mut config = one_store(stub);
    let admin_port = common::free_port();
    config["admin"] = json!({
        "address": format!("127.0.0.1:{admin_port}"),
        "tls": {"cert_file": cert, "key_file": key}
    });
    (config, admin_port)
}

/// `GET /healthz` over HTTPS with curl: the status code, or `000` when the
/// handshake or the certificate check fails. `ca`: trust this CA; `None`:
/// accept any certificate.
fn https_healthz(port: u16, ca: Option<&std::path::Path>) -> String {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    match ca {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    cmd.arg(format!("https://localhost:{port}/healthz"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn sighup_replaces_the_tls_certificate_of_a_listener() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let ca = fixtures.join("ca.pem");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let install = |c: &str, k: &str| {
        std::fs::copy(fixtures.join(c), &cert).unwrap();
        std::fs::copy(fixtures.join(k), &key).unwrap();
    };
    install("server.pem", "server-key.pem");
    let stub = Stub::start();
    let (config, admin_port) = https_admin_config(&stub, &cert, &key);
    let https = |verify: bool| https_healthz(admin_port, verify.then_some(ca.as_path()));
    let (relay, _) = start_relay_when(config, tempfile::tempdir().unwrap(), |_| {
        https(true) == "200"
    });
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &relay.pid().to_string()])
            .status()
            .unwrap();
    };

    // A broken certificate file keeps the old certificate in use.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    hup();
    assert!(
        wait_for(Duration::from_secs(5), || relay
            .log_text()
            .contains("keeping the old TLS certificate")),
        "{}",
        relay.log_text()
    );
    assert_eq!(https(true), "200");

    // A certificate the client does not accept for this server (a client
    // certificate): new connections get it, so verification now fails,
    // while the listener still serves.
    install("client.pem", "client-key.pem");
    hup();
    assert!(
        wait_for(Duration::from_secs(5), || https(true) == "000"),
        "{}",
        relay.log_text()
    );
    assert_eq!(https(false), "200");

    // And back.
    install("server.pem", "server-key.pem");
    hup();
    assert!(wait_for(Duration::from_secs(5), || https(true) == "200"));
}

/// Lines of an upstream with `max_in_flight`, a stub that takes 300 ms per
/// request, and 8 single-line requests: how many requests the stub saw at
/// once at the most, once every line arrived.
fn most_concurrent_requests(max_in_flight: usize) -> (usize, Vec<String>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let stub = Stub::start();
    let now_open = std::sync::Arc::new(AtomicUsize::new(0));
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let (open, top) = (
        std::sync::Arc::clone(&now_open),
        std::sync::Arc::clone(&most),
    );
    stub.answer(move |_| {
        let n = open.fetch_add(1, Ordering::SeqCst) + 1;
        top.fetch_max(n, Ordering::SeqCst);
        // A fixed time on purpose: it is the window in which a relay that
        // ignored max_in_flight would have more requests open at once, which
        // no condition can stand in for.
        std::thread::sleep(Duration::from_millis(300));
        open.fetch_sub(1, Ordering::SeqCst);
        200
    });
    let mut up = upstream(
        "store",
        "ccms-http",
        &format!("http://{}/api/write", stub.addr),
    );
    up["max_in_flight"] = json!(max_in_flight);
    up["batch"]["max_lines"] = json!(1);
    let (relay, _) = start_relay(relay_config(json!([up])));
    let t = now();
    for i in 0..8 {
        assert_eq!(
            post(
                &relay,
                "?cluster=c",
                &format!("m,hostname=h{i} value={i} {t}\n")
            )
            .status,
            200
        );
    }
    assert!(
        wait_for(Duration::from_secs(20), || stub.delivered_lines().len()
            >= 8),
        "{}",
        relay.log_text()
    );
    let mut lines = stub.delivered_lines();
    lines.sort();
    (most.load(Ordering::SeqCst), lines)
}

#[test]
fn max_in_flight_sends_batches_concurrently_and_delivers_each_once() {
    let (most, lines) = most_concurrent_requests(4);
    assert!((2..=4).contains(&most), "{most} requests at once");
    assert_eq!(lines.len(), 8, "{lines:?}");
    let (most, lines) = most_concurrent_requests(1);
    assert_eq!(most, 1, "one at a time by default");
    assert_eq!(lines.len(), 8, "{lines:?}");
}

#[test]
fn sighup_applies_log_level_and_names_changes_that_need_a_restart() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut config = one_store(&stub);
    config["ingress"]["http"][0]["address"] = json!(format!("127.0.0.1:{}", common::free_port()));
    config["admin"] = json!({"address": admin});
    config["data_dir"] = json!(dir.path().join("data"));
    config["log"] = json!({"level": "warn"});
    let path = dir.path().join("relay.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let log = dir.path().join("relay.log");
    let mut child = std::process::Command::new(common::binary("cc-relay"))
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_for(Duration::from_secs(10), || {
        common::http(&admin, "GET", "/healthz", &[], b"").is_ok()
    });
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(up, "{}", text());
        assert!(!text().contains("cc-relay running"), "info is off at warn");
        config["log"] = json!({"level": "info"});
        config["shutdown_grace"] = json!("7s");
        std::fs::write(&path, config.to_string()).unwrap();
        hup();
        assert!(
            wait_for(Duration::from_secs(20), || text().contains("log level set")),
            "{}",
            text()
        );
        let log_text = text();
        assert!(
            log_text.contains("take effect only after a restart")
                && log_text.contains("shutdown_grace"),
            "{log_text}"
        );
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The disk runs low under the relay (a filler file on a tmpfs takes the
/// space below `min_free_disk_bytes`): it stops acknowledging and says so on
/// `/readyz` and `/metrics`, keeps forwarding what it holds, and takes data
/// again once the space is back.
#[test]
fn low_disk_stops_acknowledging_keeps_forwarding_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _tmpfs = common::Tmpfs::mount(&data, "64m");
    let stub = Stub::start();
    stub.answer(|_| 503);
    // The five batches below go out (and fail) as one: then everything is
    // in flight before the disk runs low, and what the eviction drops from
    // the queue is still held by the worker.
    let mut config = store_lingering(&stub, "500ms");
    config["storage"] = json!({"min_free_disk_bytes": "16MiB", "min_free_disk_percent": 0,
                               "disk_check_interval": "100ms"});
    config["data_dir"] = json!(data.join("relay"));
    let (relay, admin) = start_relay(config);
    let t = now();
    let batch = |b: usize| -> String {
        (0..50)
            .map(|i| format!("m,hostname=h{i} value={b} {t}\n"))
            .collect()
    };
    for b in 0..5 {
        assert_eq!(post(&relay, "?cluster=c", &batch(b)).status, 200);
    }
    assert!(wait_for(Duration::from_secs(10), || !stub
        .requests()
        .is_empty()));
    let first = stub.requests()[0].body.clone();
    assert_eq!(
        first.iter().filter(|&&b| b == b'\n').count(),
        250,
        "setup: the first attempt carries all five batches"
    );

    // The filler leaves less than the floor.
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 56 << 20]).unwrap();
    let refused = wait_for(Duration::from_secs(10), || {
        common::http(&admin, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 503)
    });
    assert!(refused, "{}", relay.log_text());
    let r = post(&relay, "?cluster=c", &batch(99));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(metric(&admin, "ccrelay_storage_pressure"), 1.0);
    assert!(
        relay.log_text().contains("disk limits exceeded"),
        "{}",
        relay.log_text()
    );

    // What it holds still goes out.
    stub.answer(|_| 200);
    let distinct = || {
        stub.delivered_lines()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let delivered = wait_for(Duration::from_secs(30), || distinct() == 250);
    assert!(
        delivered,
        "{} of 250 lines delivered under low disk\n{}",
        distinct(),
        relay.log_text()
    );

    // Space is back: data is taken again.
    std::fs::remove_file(&filler).unwrap();
    let ready = wait_for(Duration::from_secs(10), || {
        common::http(&admin, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "{}", relay.log_text());
    assert_eq!(post(&relay, "?cluster=c", &batch(5)).status, 200);
    assert!(
        wait_for(Duration::from_secs(30), || distinct() == 300),
        "{} of 300 lines delivered after the space came back\n{}",
        distinct(),
        relay.log_text()
    );
    assert_eq!(metric(&admin, "ccrelay_storage_pressure"), 0.0);
}
