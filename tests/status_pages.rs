//! The status pages (`GET /`) and their JSON (`GET /status`) of a running
//! cc-relay and cc-store: the figures after known traffic, an upstream that
//! is down and comes back, dead letters, hosts that stopped reporting, the
//! authentication of both, and the pages as headless Chromium renders them.
//!
//! The Chromium tests need Debian's `chromium` (`scripts/test` installs it);
//! without it they fail, they are not skipped.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use common::{
    Process, Stub, browser, free_port, mint_token, now, relay_config, start_relay,
    start_relay_when, start_store, start_store_on, start_store_with_main, store_config,
    test_public_key, wait_for,
};
use serde_json::{Value, json};

/// Waits at most this long for a figure to show up.
const WAIT: Duration = Duration::from_secs(15);

fn get_json(addr: &str, path: &str) -> Value {
    let r = common::http(addr, "GET", path, &[], b"").unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn upstream(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "type": "ccms-http",
        "url": url,
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms", "poison_attempts": 1}
    })
}

/// A relay with upstream `store` on `store_port` (nothing listens there
/// yet) and upstream `picky`, a stub that refuses lines of host `bad` with
/// 400 (they go to the dead-letter queue).
fn relay_with_a_down_store(store_port: u16) -> (Process, String, Stub) {
    let picky = Stub::start();
    picky.answer(|req| {
        if String::from_utf8_lossy(&req.body).contains("hostname=bad") {
            400
        } else {
            200
        }
    });
    let config = relay_config(json!([
        upstream("store", &format!("http://127.0.0.1:{store_port}/api/write")),
        upstream("picky", &format!("http://{}/api/write", picky.addr)),
    ]));
    let (relay, admin) = start_relay(config);
    (relay, admin, picky)
}

/// Five lines: four good hosts and `bad`.
fn five_lines() -> String {
    let t = now();
    ["n1", "n2", "n3", "n4", "bad"]
        .iter()
        .map(|h| format!("cpu_load,hostname={h},type=node value=1 {t}\n"))
        .collect()
}

/// The entry of `name` in the relay's `upstreams`.
fn upstream_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream {name} in {status}"))
}

#[test]
fn relay_status_shows_sources_queue_depth_errors_dead_letters_and_rates() {
    let store_port = free_port();
    let (relay, admin, _picky) = relay_with_a_down_store(store_port);
    let r = relay.request(
        "POST",
        "/api/write?cluster=fritz",
        &[],
        five_lines().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The store is down: its five lines wait, with its error; the picky
    // upstream took four and dead-lettered one.
    let mut status = Value::Null;
    let settled = wait_for(WAIT, || {
        status = get_json(&admin, "/status");
        let store = upstream_status(&status, "store");
        let picky = upstream_status(&status, "picky");
        store["queued_lines"] == 5
            && store["up"] == false
            && store["last_error"].as_str().is_some_and(|e| !e.is_empty())
            && picky["sent_lines"] == 4
            && picky["dead_lettered_lines"] == 1
            && picky["queued_lines"] == 0
    });
    assert!(settled, "{status}\n{}", relay.log_text());
    let store = upstream_status(&status, "store").clone();
    assert!(store["failures"].as_u64().unwrap() >= 1, "{store}");
    assert!(store["last_error_ms"].as_u64().unwrap() > 0, "{store}");
    assert_eq!(store["last_success_ms"], 0);
    assert!(store["stored_bytes"].as_u64().unwrap() > 0, "{store}");
    assert!(store["limit_bytes"].as_u64().unwrap() > 0, "{store}");
    assert_eq!(upstream_status(&status, "picky")["dead_letter_records"], 1);
    assert_eq!(status["received_lines"], 5);
    assert_eq!(status["sources"][0]["name"], "local");
    assert_eq!(status["sources"][0]["received_lines"], 5);
    assert_eq!(
        (
            &status["storage_healthy"],
            &status["accepting"],
            &status["disk_pressure"]
        ),
        (&json!(true), &json!(true), &json!(false))
    );

    // Rates need two looks at least two seconds apart.
    let rated = wait_for(WAIT, || {
        status = get_json(&admin, "/status");
        status["rate_window_seconds"].is_number()
    });
    assert!(rated, "{status}");
    assert!(status["sources"][0]["lines_per_second"].is_number());
    assert!(upstream_status(&status, "picky")["sent_lines_per_second"].is_number());

    // The page says the same, escaped.
    let page = common::http(&admin, "GET", "/", &[], b"").unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let text = browser::visible_text(&page.text());
    assert!(text.contains("cc-relay test-relay"), "{text}");
    let error = store["last_error"].as_str().unwrap();
    assert!(text.contains(error), "{error:?} not in {text}");

    // The store comes up: the queue drains.
    let _store = start_store_on(store_config(), store_port);
    let drained = wait_for(WAIT, || {
        status = get_json(&admin, "/status");
        let store = upstream_status(&status, "store");
        store["queued_lines"] == 0
            && store["up"] == true
            && store["sent_lines"] == 5
            && store["lag_seconds"] == 0
            && store["last_success_ms"].as_u64().unwrap_or(0) > 0
    });
    assert!(drained, "{status}\n{}", relay.log_text());
}

#[test]
fn relay_status_page_and_json_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let stub = Stub::start();
    let mut config = relay_config(json!([upstream(
        "store",
        &format!("http://{}/api/write", stub.addr)
    )]));
    config["admin"] = json!({"auth_token_file": token_file});
    let bearer = [("Authorization", "Bearer s3cret")];
    let (_relay, admin) = start_relay_when(config, dir, |admin| {
        common::http(admin, "GET", "/readyz", &bearer, b"").is_ok_and(|r| r.status == 200)
    });
    for path in ["/", "/status"] {
        let open = common::http(&admin, "GET", path, &[], b"").unwrap();
        assert_eq!(open.status, 401, "{path}");
        let wrong = common::http(
            &admin,
            "GET",
            path,
            &[("Authorization", "Bearer nope")],
            b"",
        )
        .unwrap();
        assert_eq!(wrong.status, 401, "{path}");
        let right = common::http(&admin, "GET", path, &bearer, b"").unwrap();
        assert_eq!(right.status, 200, "{path}");
        assert!(!right.text().contains("s3cret"), "the token is shown");
    }
    let health = common::http(&admin, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 200, "/healthz stays open");
}

/// Writes, for cluster `fritz`, host `f0101` now and `f0102` ten minutes
/// ago (ten periods of 60 s), and for cluster `alex`, `a0101` now and
/// `a<0102>` seven minutes ago; returns the two old times.
fn write_hosts(store: &Process) -> (i64, i64) {
    let t = now();
    let (f_old, a_old) = (t - 600, t - 420);
    let body = format!(
        "cpu_load,cluster=fritz,hostname=f0101,type=node value=1 {t}\n\
         cpu_load,cluster=fritz,hostname=f0102,type=node value=1 {f_old}\n\
         cpu_load,cluster=alex,hostname=a0101,type=node value=1 {t}\n\
         cpu_load,cluster=alex,hostname=a<0102>,type=node value=1 {a_old}\n"
    );
    let r = store.request("POST", "/api/write", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    (f_old, a_old)
}

#[test]
fn store_status_lists_silent_hosts_per_cluster_and_the_ingest() {
    let store = start_store(store_config());
    let (f_old, a_old) = write_hosts(&store);
    let status = get_json(&store.addr, "/status");
    assert_eq!(
        (
            &status["clusters"],
            &status["hosts"],
            &status["metrics"],
            &status["silent_after_periods"]
        ),
        (&json!(2), &json!(4), &json!(6), &json!(5))
    );
    assert_eq!(
        status["per_cluster"],
        json!([
            {"cluster": "alex", "hosts": 2,
             "silent_hosts": [{"host": "a<0102>", "last_sample_time": a_old}]},
            {"cluster": "fritz", "hosts": 2,
             "silent_hosts": [{"host": "f0102", "last_sample_time": f_old}]}
        ])
    );
    let http = &status["ingest"][0];
    assert_eq!(
        (&http["source"], &http["lines"], &http["samples"]),
        (&json!("http"), &json!(4), &json!(4))
    );
    assert_eq!(status["restore"]["in_progress"], false);
    assert!(status["memory_used_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["memory_cap_bytes"], 0);
    assert_eq!(status["checkpoint"]["last_success_time"], 0);
    assert!(status["checkpoint"]["interval_seconds"].as_u64().unwrap() > 0);
    assert_eq!(status["nats"], Value::Null);

    let mut later = Value::Null;
    let rated = wait_for(WAIT, || {
        later = get_json(&store.addr, "/status");
        later["rate_window_seconds"].is_number()
    });
    assert!(rated, "{later}");
    assert_eq!(later["ingest"][0]["lines_per_second"], 0.0, "{later}");

    let page = store.request("GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text().contains("a&lt;0102&gt;"),
        "host names are escaped"
    );
}

#[test]
fn store_status_follows_the_metrics_endpoint_switch() {
    let guarded = start_store_with_main(json!({
        "jwt-public-key": test_public_key(),
        "admin-roles": ["admin"],
        "metrics-endpoint-auth": true
    }));
    let user = format!(
        "Bearer {}",
        mint_token(&json!({"sub": "u", "roles": ["user"]}))
    );
    let admin = format!(
        "Bearer {}",
        mint_token(&json!({"sub": "a", "roles": ["admin"]}))
    );
    for path in ["/", "/status"] {
        assert_eq!(guarded.request("GET", path, &[], b"").status, 401, "{path}");
        for (token, code) in [(&user, 403), (&admin, 200)] {
            let r = guarded.request("GET", path, &[("Authorization", token)], b"");
            assert_eq!(r.status, code, "{path}: {}", r.text());
        }
    }
    // Open by default, like /metrics, while the API itself needs a token.
    let open = start_store_with_main(json!({"jwt-public-key": test_public_key()}));
    assert_eq!(open.request("GET", "/status", &[], b"").status, 200);
    assert_eq!(open.request("GET", "/", &[], b"").status, 200);
    assert_eq!(
        open.request("GET", "/api/query", &[], b"{}").status,
        401,
        "the API is not open"
    );
}

#[test]
fn relay_page_in_chromium_shows_the_queue_and_the_upstream_error() {
    let store_port = free_port();
    let (relay, admin, _picky) = relay_with_a_down_store(store_port);
    let r = relay.request(
        "POST",
        "/api/write?cluster=fritz",
        &[],
        five_lines().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut status = Value::Null;
    let settled = wait_for(WAIT, || {
        status = get_json(&admin, "/status");
        let store = upstream_status(&status, "store");
        store["queued_lines"] == 5
            && store["last_error"].as_str().is_some_and(|e| !e.is_empty())
            && upstream_status(&status, "picky")["dead_lettered_lines"] == 1
    });
    assert!(settled, "{status}");
    let error = upstream_status(&status, "store")["last_error"]
        .as_str()
        .unwrap()
        .to_owned();

    let url = format!("http://{admin}/");
    let page = browser::render(&url);
    let text = &page.text;
    // The store's row: name, state, five queued lines, and its error; the
    // picky upstream's dead letter.
    for expected in [
        "cc-relay test-relay",
        "accepting data",
        "local",
        "store down",
        "picky",
        "1 (1)",
        error.as_str(),
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let store_row = text
        .split("store down")
        .nth(1)
        .expect("the store's row")
        .split("picky")
        .next()
        .unwrap();
    assert!(
        store_row.trim_start().contains(" 5 "),
        "queue depth 5 not in the store's row: {store_row}"
    );
    let png = relay.dir.path().join("relay-status.png");
    browser::screenshot(&url, &png, 1400, 700);
}

#[test]
fn store_page_in_chromium_shows_the_hosts_that_stopped_reporting() {
    let store = start_store(store_config());
    let _ = write_hosts(&store);
    let url = format!("http://{}/", store.addr);
    let page = browser::render(&url);
    let text = &page.text;
    for expected in [
        "cc-store",
        "loaded at start",
        "2 clusters, 4 hosts",
        "Hosts not reporting 2",
        "alex 2 1",
        "fritz 2 1",
        "alex a<0102> 7 min",
        "fritz f0102 10 min",
        "(no memory-cap)",
        "http 4",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(
        !text.contains("f0101 "),
        "a reporting host is listed:\n{text}"
    );
    assert!(page.dom.contains("a&lt;0102&gt;"), "the name is escaped");
    let png = store.dir.path().join("store-status.png");
    browser::screenshot(&url, &png, 1400, 900);
}
