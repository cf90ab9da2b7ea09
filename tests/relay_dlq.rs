//! Dead letters as an operator meets them: a line the upstream refuses lands
//! in the dead-letter queue; it is exported, replayed and purged on the
//! running relay's admin listener (behind the admin token) and with the
//! offline `cc-relay dlq …` commands once the relay is stopped.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Process, Response, Stub, now, relay_config, sample, start_relay_when, wait_for};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-admin-token";
const BEARER: &str = "Bearer s3cret-admin-token";

/// A relay forwarding to `stub` as upstream `store` (refused lines go to the
/// dead-letter queue at once), with an admin token.
fn start(stub: &Stub, dir: tempfile::TempDir) -> (Process, String) {
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut config = relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms", "poison_attempts": 1}
    }]));
    // The refused lines have no `value` field: only a store refuses them.
    config["processing"] = json!({"validate": "none"});
    config["admin"] = json!({"auth_token_file": token_file});
    start_relay_when(config, dir, |admin| {
        common::http(admin, "GET", "/readyz", &[("Authorization", BEARER)], b"")
            .is_ok_and(|r| r.status == 200)
    })
}

fn admin(addr: &str, method: &str, path: &str) -> Response {
    common::http(addr, method, path, &[("Authorization", BEARER)], b"").unwrap()
}

fn scrape(addr: &str, series: &str) -> Option<f64> {
    sample(&admin(addr, "GET", "/metrics").text(), series)
}

fn post(relay: &Process, body: &str) {
    let r = relay.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Refuses lines with a `foo` field (400), takes everything else.
fn refuse_foo(stub: &Stub) {
    stub.answer(|req| {
        if String::from_utf8_lossy(&req.body).contains(" foo=") {
            400
        } else {
            200
        }
    });
}

fn dead_lettered(addr: &str, n: f64) -> bool {
    let series = "ccrelay_deadletter_records{upstream=\"store\"}";
    wait_for(Duration::from_secs(10), || scrape(addr, series) == Some(n))
}

fn cli(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = common::relay_cli(config, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dead_letters_are_exported_replayed_and_purged_on_the_admin_listener() {
    let stub = Stub::start();
    refuse_foo(&stub);
    let (relay, addr) = start(&stub, tempfile::tempdir().unwrap());
    let t = now();
    post(
        &relay,
        &format!("m,hostname=bad foo=1 {t}\nm,hostname=ok value=1 {t}\n"),
    );
    assert!(dead_lettered(&addr, 1.0), "{}", relay.log_text());
    assert!(wait_for(Duration::from_secs(10), || stub
        .delivered_lines()
        .contains(&format!("m,hostname=ok value=1 {t}"))));

    // The admin token is required, as for /status and /metrics.
    for (method, path) in [
        ("GET", "/dlq/store"),
        ("POST", "/dlq/store/replay"),
        ("POST", "/dlq/store/purge"),
    ] {
        let r = common::http(&addr, method, path, &[], b"").unwrap();
        assert_eq!(r.status, 401, "{method} {path}");
        let wrong = [("Authorization", "Bearer wrong")];
        let r = common::http(&addr, method, path, &wrong, b"").unwrap();
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(
        scrape(&addr, "ccrelay_deadletter_records{upstream=\"store\"}"),
        Some(1.0)
    );

    // Export: the line alone, its request's cluster written in as a tag.
    let r = admin(&addr, "GET", "/dlq/store");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), format!("m,cluster=c,hostname=bad foo=1 {t}\n"));
    assert_eq!(r.header("x-cc-relay-lines"), Some("1"));
    assert_eq!(r.header("x-cc-relay-skipped"), Some("0"));
    assert_eq!(admin(&addr, "GET", "/dlq/store?limit=0").text(), "");
    assert_eq!(admin(&addr, "GET", "/dlq/store?limit=many").status, 400);

    // Unknown upstreams name the configured ones; mutations are not GETs.
    let r = admin(&addr, "GET", "/dlq/nope");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("(configured: store)"), "{}", r.text());
    assert_eq!(admin(&addr, "POST", "/dlq/nope/replay").status, 404);
    assert_eq!(admin(&addr, "GET", "/dlq/store/replay").status, 405);
    assert_eq!(admin(&addr, "GET", "/dlq/store/purge").status, 405);
    assert_eq!(
        scrape(&addr, "ccrelay_deadletter_records{upstream=\"store\"}"),
        Some(1.0)
    );

    // Replay once the upstream takes the line: it arrives as first sent.
    stub.answer(|_| 200);
    let r = admin(&addr, "POST", "/dlq/store/replay");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"upstream": "store", "replayed_lines": 1, "skipped": 0, "dead_letter_records": 0})
    );
    let refused = format!("m,hostname=bad foo=1 {t}");
    assert!(
        wait_for(Duration::from_secs(10), || stub
            .delivered_lines()
            .contains(&refused)),
        "{}",
        relay.log_text()
    );
    let delivery = stub
        .requests()
        .into_iter()
        .rfind(|s| s.status == 200 && String::from_utf8_lossy(&s.body).contains(&refused))
        .unwrap();
    assert_eq!(delivery.target, "/api/write?cluster=c");
    assert!(dead_lettered(&addr, 0.0));
    assert_eq!(admin(&addr, "GET", "/dlq/store").text(), "");

    // Purge: a new dead letter, then none.
    refuse_foo(&stub);
    post(&relay, &format!("m,hostname=bad foo=2 {t}\n"));
    assert!(dead_lettered(&addr, 1.0), "{}", relay.log_text());
    let r = admin(&addr, "POST", "/dlq/store/purge");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"upstream": "store", "purged": 1, "dead_letter_records": 0})
    );
    assert!(dead_lettered(&addr, 0.0));
    assert_eq!(admin(&addr, "GET", "/dlq/store").text(), "");
    let status: Value = admin(&addr, "GET", "/status").json();
    assert_eq!(status["upstreams"][0]["dead_letter_records"], json!(0));
    assert_eq!(
        status["upstreams"][0]["dead_lettered_lines"],
        json!(2),
        "a count since start, which replay and purge do not lower"
    );
}

#[test]
fn dead_letters_are_exported_replayed_and_purged_offline() {
    let stub = Stub::start();
    refuse_foo(&stub);
    let (relay, addr) = start(&stub, tempfile::tempdir().unwrap());
    let t = now();
    post(
        &relay,
        &format!("m,hostname=a foo=3 {t}\nm,hostname=b foo=4 {t}\n"),
    );
    assert!(dead_lettered(&addr, 2.0), "{}", relay.log_text());
    let config = relay.dir.path().join("relay.json");

    // While the relay runs, its database is locked, and the command says so.
    let (ok, out, err) = cli(&config, &["dlq", "export", "store"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("is cc-relay still running?"), "{err}");
    assert!(err.contains("/dlq/UPSTREAM"), "{err}");

    let (status, dir) = relay.stop();
    assert!(status.success());
    let config = dir.path().join("relay.json");
    let both = format!("m,cluster=c,hostname=a foo=3 {t}\nm,cluster=c,hostname=b foo=4 {t}\n");

    let (ok, out, err) = cli(&config, &["dlq", "export", "store"]);
    assert!(ok, "{err}");
    assert_eq!(out, both, "only the lines on stdout");
    assert!(
        err.contains("exported 2 dead-lettered lines of store"),
        "{err}"
    );
    let file = dir.path().join("dead.lp");
    let file_arg = file.to_str().unwrap();
    let (ok, out, err) = cli(&config, &["dlq", "export", "store", "--output", file_arg]);
    assert!(ok && out.is_empty(), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), both);
    let (ok, out, _) = cli(&config, &["dlq", "export", "store", "--limit", "1"]);
    assert!(ok);
    assert_eq!(out, format!("m,cluster=c,hostname=a foo=3 {t}\n"));

    let (ok, _, err) = cli(&config, &["dlq", "replay", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("no upstream named \"nope\" in the configuration (configured: store)"),
        "{err}"
    );

    // Replay the older one, purge the other.
    let (ok, out, err) = cli(&config, &["dlq", "replay", "store", "--limit", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("replayed 1 dead-lettered lines into the queue of store")
            && out.contains("1 dead letters left"),
        "{out}"
    );
    let (_, queued, _) = cli(&config, &["queue", "dump", "store"]);
    assert_eq!(queued, format!("m,hostname=a foo=3 {t}\n"));
    let (ok, out, err) = cli(&config, &["dlq", "purge", "store"]);
    assert!(ok, "{err}");
    assert_eq!(out, "purged 1 dead letters of store\n");
    let (ok, out, _) = cli(&config, &["dlq", "export", "store"]);
    assert!(ok && out.is_empty(), "{out}");

    // Started again, the relay forwards the replayed line as first sent.
    stub.answer(|_| 200);
    let config_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let (relay, addr) = start_relay_when(config_json, dir, |admin| {
        common::http(admin, "GET", "/readyz", &[("Authorization", BEARER)], b"")
            .is_ok_and(|r| r.status == 200)
    });
    let replayed = format!("m,hostname=a foo=3 {t}");
    assert!(
        wait_for(Duration::from_secs(10), || stub
            .delivered_lines()
            .contains(&replayed)),
        "{}",
        relay.log_text()
    );
    assert!(
        !relay.log_text().contains("not shut down cleanly"),
        "offline commands keep the clean-shutdown flag:\n{}",
        relay.log_text()
    );
    assert_eq!(
        scrape(&addr, "ccrelay_deadletter_records{upstream=\"store\"}"),
        Some(0.0)
    );
    assert!(
        !stub
            .delivered_lines()
            .contains(&format!("m,hostname=b foo=4 {t}"))
    );
}
