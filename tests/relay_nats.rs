//! cc-relay with NATS: inputs (core subscriptions in a queue group,
//! JetStream durable consumers) and `nats` upstreams, against a real
//! `nats-server` started by each test on free ports.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::nats::{NatsAuth, NatsServer, NatsSetup};
use common::{Process, Stub, metric, now, start_relay, start_relay_in, start_relay_when, wait_for};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A relay configuration with one NATS input and one upstream to `stub`.
fn config(input: Value, stub: &Stub) -> Value {
    json!({
        "instance_id": "nats-relay",
        "ingress": {"nats": [input]},
        "upstreams": [{
            "name": "store",
            "type": "ccms-http",
            "url": format!("http://{}/api/write", stub.addr),
            "batch": {"linger": "20ms"},
            "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"}
        }],
        "shutdown_grace": "2s"
    })
}

fn input(server: &NatsServer, subject: &str) -> Value {
    json!({
        "name": "bus",
        "servers": [server.url()],
        "subjects": [{"subject": subject, "cluster": "fritz"}]
    })
}

/// `n` distinct lines for hosts `<tag><i>`, all with the same timestamp
/// (taken once per test process), so that calling it again gives the same lines.
fn lines(tag: &str, n: usize) -> Vec<String> {
    static T: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let t = *T.get_or_init(now);
    (0..n)
        .map(|i| format!("cpu_load,hostname={tag}{i} value={i} {t}"))
        .collect()
}

/// Publishes each body as one message and flushes.
fn publish(rt: &tokio::runtime::Runtime, server: &NatsServer, subject: &str, bodies: &[String]) {
    rt.block_on(async {
        let client = server.connect().await;
        for b in bodies {
            client
                .publish(subject.to_owned(), b.clone().into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
}

/// The lines the stub accepted, without the `cluster=…` tag the relay may
/// have added, as a set; and the total count (duplicates included).
fn delivered(stub: &Stub) -> (BTreeSet<String>, usize) {
    let all = stub.delivered_lines();
    let n = all.len();
    (all.into_iter().collect(), n)
}

fn wait_delivered(stub: &Stub, expected: &[String], relay: &Process) {
    wait_delivered_from(stub, expected, relay, None);
}

/// [`wait_delivered`]; on failure it also shows what `server` saw.
fn wait_delivered_from(
    stub: &Stub,
    expected: &[String],
    relay: &Process,
    server: Option<&NatsServer>,
) {
    let ok = wait_for(Duration::from_secs(20), || {
        let (set, _) = delivered(stub);
        expected.iter().all(|l| set.contains(l))
    });
    let (set, _) = delivered(stub);
    let missing: Vec<&String> = expected.iter().filter(|l| !set.contains(*l)).collect();
    assert!(
        ok,
        "{} of {} lines missing, e.g. {:?}\nrelay log:\n{}\nrelay counters:\n{}\n{}",
        missing.len(),
        expected.len(),
        missing.first(),
        relay.log_text(),
        relay_counters(relay),
        server.map(NatsServer::traffic).unwrap_or_default()
    );
}

/// The relay's NATS, ingest and upstream series, to tell a message that
/// never arrived from one that was not forwarded.
fn relay_counters(relay: &Process) -> String {
    let config: Value = std::fs::read_to_string(relay.dir.path().join("relay.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let Some(admin) = config["admin"]["address"].as_str() else {
        return "(no admin address)".to_owned();
    };
    match common::http(admin, "GET", "/metrics", &[], b"") {
        Ok(r) => r
            .text()
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && [
                        "ccrelay_nats",
                        "ccrelay_ingest_lines",
                        "ccrelay_upstream_sent",
                        "ccrelay_queue_records",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(no /metrics: {e})"),
    }
}

#[test]
fn core_input_forwards_with_the_subject_cluster() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(input(&server, "metrics.>"), &stub));
    let sent = lines("n", 50);
    // Collectors send several lines per message, with or without a final newline.
    let bodies: Vec<String> = sent.chunks(10).map(|c| c.join("\n")).collect();
    publish(&rt, &server, "metrics.rack1", &bodies);
    wait_delivered(&stub, &sent, &relay);
    let requests = stub.requests();
    assert!(
        requests.iter().all(|r| r.target.contains("cluster=fritz")),
        "{:?}",
        requests.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert_eq!(
        metric(&admin, "ccrelay_nats_messages_total{ingress=\"bus\"}"),
        5.0
    );
    assert_eq!(
        metric(&admin, "ccrelay_ingest_lines_total{ingress=\"bus\"}"),
        50.0
    );
    assert_eq!(
        metric(&admin, "ccrelay_nats_connected{role=\"ingress:bus\"}"),
        1.0
    );
    // A subject outside the pattern is not taken.
    publish(&rt, &server, "other.rack1", &lines("x", 1));
    publish(&rt, &server, "metrics.rack2", &lines("y", 1));
    wait_delivered(&stub, &lines("y", 1), &relay);
    assert!(!delivered(&stub).0.iter().any(|l| l.contains("hostname=x0")));
}

#[test]
fn two_relays_in_one_queue_group_take_each_message_once() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    let (relay_a, admin_a) = start_relay(config(input(&server, "metrics.>"), &stub));
    let (relay_b, admin_b) = start_relay(config(input(&server, "metrics.>"), &stub));
    let sent = lines("q", 400);
    publish(&rt, &server, "metrics.rack1", &sent);
    wait_delivered(&stub, &sent, &relay_a);
    let (set, total) = delivered(&stub);
    assert_eq!(set.len(), 400);
    assert_eq!(total, 400, "a line was delivered twice");
    let a = metric(&admin_a, "ccrelay_nats_messages_total");
    let b = metric(&admin_b, "ccrelay_nats_messages_total");
    assert_eq!(a + b, 400.0);
    assert!(
        a > 0.0 && b > 0.0,
        "one relay got nothing: {a} / {b}\n{}",
        relay_b.log_text()
    );

    // Without a queue group, every relay gets every message.
    let stub2 = Stub::start();
    let mut solo = input(&server, "solo.>");
    solo["queue_group"] = Value::Null;
    let (_r1, _) = start_relay(config(solo.clone(), &stub2));
    let (_r2, _) = start_relay(config(solo, &stub2));
    publish(&rt, &server, "solo.x", &lines("s", 10));
    assert!(wait_for(Duration::from_secs(10), || stub2
        .delivered_lines()
        .len()
        == 20));
}

/// Starts a relay whose input authenticates with `auth` against `server`
/// and checks that a message gets through.
fn relay_gets_through(server: &NatsServer, auth: Value) {
    let rt = runtime();
    let stub = Stub::start();
    let mut i = input(server, "metrics.>");
    i["auth"] = auth;
    if server.has_tls() {
        let files = server.tls_files();
        i["tls"] = if files.verify {
            json!({"ca_file": files.ca, "cert_file": files.client_cert, "key_file": files.client_key})
        } else {
            json!({"ca_file": files.ca})
        };
    }
    let (relay, _admin) = start_relay(config(i, &stub));
    let sent = lines("a", 3);
    publish(&rt, server, "metrics.r", &sent);
    wait_delivered_from(&stub, &sent, &relay, Some(server));
    assert!(!relay.log_text().contains("authorization violation"));
}

fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

#[test]
fn every_auth_mode_connects() {
    let dir = tempfile::tempdir().unwrap();

    let server = NatsServer::start(NatsSetup::new().user_password("relay", "s3cret"));
    let password = secret_file(dir.path(), "password", "s3cret");
    relay_gets_through(&server, json!({"user": "relay", "password_file": password}));

    let server = NatsServer::start(NatsSetup::new().token("t0ken"));
    let token = secret_file(dir.path(), "token", "t0ken");
    relay_gets_through(&server, json!({"token_file": token}));

    let server = NatsServer::start(NatsSetup::new().auth(NatsAuth::Nkey));
    let seed = server.write_nkey_seed_file();
    relay_gets_through(&server, json!({"nkey_seed_file": seed}));

    let server = NatsServer::start(NatsSetup::new().auth(NatsAuth::Creds));
    relay_gets_through(&server, json!({"creds_file": server.creds_file()}));
}

#[test]
fn tls_with_a_private_ca() {
    let server = NatsServer::start(NatsSetup::new().tls());
    assert!(server.url().starts_with("tls://"));
    relay_gets_through(&server, json!({}));
}

#[test]
fn mutual_tls_with_a_client_certificate() {
    let server = NatsServer::start(NatsSetup::new().mutual_tls());
    relay_gets_through(&server, json!({}));
    // Without the client certificate the server refuses the relay.
    let stub = Stub::start();
    let mut i = input(&server, "metrics.>");
    i["tls"] = json!({"ca_file": server.ca_file()});
    let dir = tempfile::tempdir().unwrap();
    let (relay, admin) = start_relay_when(config(i, &stub), dir, |admin| {
        common::http(admin, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    // The refusal is reported, and the input stays down.
    let refused = wait_for(Duration::from_secs(10), || {
        let status = common::http(&admin, "GET", "/status", &[], b"")
            .unwrap()
            .json();
        status["nats"][0]["last_error"].is_string()
    });
    assert!(refused, "no error reported:\n{}", relay.log_text());
    assert_eq!(
        metric(&admin, "ccrelay_nats_connected{role=\"ingress:bus\"}"),
        0.0
    );
    assert_eq!(
        common::http(&admin, "GET", "/readyz", &[], b"")
            .unwrap()
            .status,
        503
    );
}

#[test]
fn wrong_credentials_are_reported_and_retried() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new().user_password("relay", "s3cret"));
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = secret_file(dir.path(), "password", "wrong");
    let mut i = input(&server, "metrics.>");
    i["auth"] = json!({"user": "relay", "password_file": wrong});
    let relay_dir = tempfile::tempdir().unwrap();
    let (relay, admin) = start_relay_when(config(i, &stub), relay_dir, |admin| {
        common::http(admin, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(wait_for(Duration::from_secs(10), || relay
        .log_text()
        .contains("authorization violation")));
    let ready = common::http(&admin, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("ingress:bus"), "{}", ready.text());
    assert_eq!(
        metric(&admin, "ccrelay_nats_connected{role=\"ingress:bus\"}"),
        0.0
    );
    assert!(
        !relay.log_text().contains("wrong"),
        "the password is logged"
    );
    let status = common::http(&admin, "GET", "/status", &[], b"")
        .unwrap()
        .json();
    assert!(
        status["nats"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("authorization"),
        "{status}"
    );
    // Still running, still trying: the file put right and SIGHUP, and the
    // relay connects with the new password at its next attempt; no restart.
    std::fs::write(&wrong, "s3cret\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &relay.pid().to_string()])
        .status()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &admin,
            "ccrelay_nats_connected{role=\"ingress:bus\"}"
        ) == 1.0
            && common::http(&admin, "GET", "/readyz", &[], b"")
                .is_ok_and(|r| r.status == 200)),
        "{}",
        relay.log_text()
    );
    assert!(relay.log_text().contains("SIGHUP: secrets re-read"));
    let sent = lines("w", 2);
    publish(&rt, &server, "metrics.r", &sent);
    wait_delivered(&stub, &sent, &relay);
}

#[test]
fn core_input_reconnects_after_a_broker_restart() {
    let rt = runtime();
    let mut server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(input(&server, "metrics.>"), &stub));
    let first = lines("b", 5);
    publish(&rt, &server, "metrics.r", &first);
    wait_delivered(&stub, &first, &relay);
    server.stop();
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_nats_connected{role=\"ingress:bus\"}"
    ) == 0.0));
    assert_eq!(
        common::http(&admin, "GET", "/readyz", &[], b"")
            .unwrap()
            .status,
        503
    );
    server.restart();
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &admin,
            "ccrelay_nats_connected{role=\"ingress:bus\"}"
        ) == 1.0),
        "{}",
        relay.log_text()
    );
    assert!(
        metric(
            &admin,
            "ccrelay_nats_reconnects_total{role=\"ingress:bus\"}"
        ) >= 1.0
    );
    let second = lines("c", 5);
    // The subscription is renewed on the new connection.
    let ok = wait_for(Duration::from_secs(10), || {
        publish(&rt, &server, "metrics.r", &second);
        let set = delivered(&stub).0;
        second.iter().all(|l| set.contains(l))
    });
    assert!(ok, "{}", relay.log_text());
}

fn jetstream_input(server: &NatsServer) -> Value {
    let mut i = input(server, "metrics.>");
    i["mode"] = json!("jetstream");
    i["jetstream"] = json!({
        "stream": "METRICS",
        "create_stream": true,
        "stream_config": {"max_bytes": "64MiB"},
        "ack_wait": "5s"
    });
    i
}

/// Waits until the relay created the stream and its durable consumer.
fn wait_consumer(rt: &tokio::runtime::Runtime, server: &NatsServer, relay: &Process) {
    let ok = wait_for(Duration::from_secs(10), || {
        rt.block_on(async {
            let js = jetstream::new(server.connect().await);
            match js.get_stream("METRICS").await {
                Ok(stream) => stream
                    .get_consumer::<jetstream::consumer::pull::Config>("cc-relay-bus")
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        })
    });
    assert!(
        ok,
        "the relay did not create the stream and its consumer:\n{}",
        relay.log_text()
    );
}

#[test]
fn jetstream_input_acks_only_stored_lines_and_survives_kill_9() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new().jetstream(true));
    let stub = Stub::start();
    stub.answer(|_| 503);
    let (relay, admin) = start_relay(config(jetstream_input(&server), &stub));
    let sent = lines("j", 300);
    // The stream exists once the relay bound its consumer.
    wait_consumer(&rt, &server, &relay);
    publish(&rt, &server, "metrics.r", &sent);
    // The store is down, yet the relay takes (and acks) everything: it is on disk.
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &admin,
            "ccrelay_nats_acks_total{ingress=\"bus\",kind=\"ack\"}"
        ) == 300.0),
        "{}",
        relay.log_text()
    );
    assert_eq!(metric(&admin, "ccrelay_queue_lines"), 300.0);
    let dir = relay.kill9();
    stub.answer(|_| 200);
    let (relay, _admin) = start_relay_in(config(jetstream_input(&server), &stub), dir);
    wait_delivered(&stub, &sent, &relay);
}

#[test]
fn jetstream_input_loses_nothing_when_killed_mid_stream() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new().jetstream(true));
    let stub = Stub::start();
    let (relay, _admin) = start_relay(config(jetstream_input(&server), &stub));
    wait_consumer(&rt, &server, &relay);
    let sent = lines("k", 3000);
    let mut relay = Some(relay);
    for (round, chunk) in sent.chunks(1000).enumerate() {
        publish(&rt, &server, "metrics.r", chunk);
        if round < 2 {
            // Killed while it works through the chunk, then restarted.
            let r = relay.take().unwrap();
            let dir = r.kill9();
            relay = Some(start_relay_in(config(jetstream_input(&server), &stub), dir).0);
        }
    }
    wait_delivered(&stub, &sent, relay.as_ref().unwrap());
}

#[test]
fn nats_upstream_core_publishes_with_the_cluster_as_a_tag() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let mut config = common::relay_config(json!([{
        "name": "bus",
        "type": "nats",
        "servers": [server.url()],
        "subject": "up.metrics",
        "batch": {"linger": "20ms"}
    }]));
    config["ingress"]["http"][0]["default_cluster"] = json!("fritz");
    let (received, relay, admin) = rt.block_on(async {
        let client = server.connect().await;
        let mut sub = client.subscribe("up.metrics").await.unwrap();
        client.flush().await.unwrap();
        let (relay, admin) = start_relay(config);
        let t = now();
        let body = format!(
            "cpu_load,hostname=n1 value=1 {t}\nmem_used,cluster=alex,hostname=n2 value=2 {t}\n"
        );
        let r = relay.request("POST", "/api/write", &[], body.as_bytes());
        assert_eq!(r.status, 200);
        let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("no message")
            .unwrap();
        (
            String::from_utf8(msg.payload.to_vec()).unwrap(),
            relay,
            admin,
        )
    });
    assert!(
        received.contains("cpu_load,cluster=fritz,hostname=n1 value=1"),
        "{received}"
    );
    assert!(
        received.contains("mem_used,cluster=alex,hostname=n2 value=2"),
        "{received}"
    );
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_queue_lines{upstream=\"bus\"}"
    ) == 0.0));
    assert_eq!(
        metric(&admin, "ccrelay_nats_connected{role=\"upstream:bus\"}"),
        1.0
    );
    drop(relay);
}

#[test]
fn nats_upstream_jetstream_waits_for_pubacks_and_survives_a_broker_restart() {
    let rt = runtime();
    let mut server = NatsServer::start(NatsSetup::new().jetstream(true));
    create_up_stream(&rt, &server);
    let mut upstream = jetstream_upstream(&server);
    upstream["jetstream"] = json!({"ack_timeout": "2s"});
    // A backoff longer than the test's deadline: only the wake-up on
    // reconnection can resume forwarding in time.
    upstream["retry"] = json!({"initial_backoff": "60s", "max_backoff": "60s", "jitter": "none"});
    let (relay, admin) = start_relay(common::relay_config(json!([upstream])));
    let post = |tag: &str, n: usize| {
        let body: String = lines(tag, n).iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            relay
                .request("POST", "/api/write", &[], body.as_bytes())
                .status,
            200
        );
    };
    post("p", 100);
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_upstream_sent_lines_total"
    ) == 100.0));
    server.stop();
    post("r", 100);
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_upstream_failures_total{upstream=\"bus\",reason=\"nats\"}"
    ) >= 1.0));
    assert_eq!(metric(&admin, "ccrelay_queue_lines"), 100.0);
    server.restart();
    assert!(
        wait_for(Duration::from_secs(20), || metric(
            &admin,
            "ccrelay_queue_lines"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    // Every line is in the stream once it counts as delivered.
    let stored = stream_lines(&rt, &server, "UP");
    for l in lines("p", 100).iter().chain(lines("r", 100).iter()) {
        assert!(stored.contains(l), "{l} not in the stream");
    }
}

/// The stream `UP` (file storage) capturing `up.metrics`.
fn create_up_stream(rt: &tokio::runtime::Runtime, server: &NatsServer) {
    rt.block_on(async {
        let js = jetstream::new(server.connect().await);
        js.create_stream(stream::Config {
            name: "UP".into(),
            subjects: vec!["up.metrics".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    });
}

/// A `nats` upstream `bus` publishing to `up.metrics` in JetStream mode,
/// with quick retries.
fn jetstream_upstream(server: &NatsServer) -> Value {
    json!({
        "name": "bus",
        "type": "nats",
        "servers": [server.url()],
        "subject": "up.metrics",
        "mode": "jetstream",
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms", "poison_attempts": 1}
    })
}

/// Every line stored in the stream `name` (up to 1 000 messages).
fn stream_lines(rt: &tokio::runtime::Runtime, server: &NatsServer, name: &str) -> BTreeSet<String> {
    rt.block_on(async {
        let js = jetstream::new(server.connect().await);
        let stream = js.get_stream(name).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config::default())
            .await
            .unwrap();
        let mut out = BTreeSet::new();
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            for l in String::from_utf8(m.payload.to_vec()).unwrap().lines() {
                out.insert(l.to_owned());
            }
        }
        out
    })
}

#[test]
fn nats_upstream_jetstream_keeps_every_part_of_a_bisected_record() {
    // A line too large for the server's messages is split out of its
    // record and dead-lettered; the record's other lines go out in parts,
    // and the stream (which de-duplicates by Nats-Msg-Id) must keep each.
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new().jetstream(true).max_payload(4096));
    create_up_stream(&rt, &server);
    let (relay, admin) = start_relay(common::relay_config(json!([jetstream_upstream(&server)])));
    let (before, after) = (lines("a", 10), lines("b", 10));
    let huge = format!(
        "cpu_load,hostname=huge,note={} value=1 {}",
        "x".repeat(5000),
        now()
    );
    let body: String = before
        .iter()
        .chain(std::iter::once(&huge))
        .chain(after.iter())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        relay
            .request("POST", "/api/write", &[], body.as_bytes())
            .status,
        200
    );
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &admin,
            "ccrelay_queue_lines{upstream=\"bus\"}"
        ) == 0.0),
        "{}",
        relay.log_text()
    );
    assert_eq!(
        metric(
            &admin,
            "ccrelay_deadletter_lines_total{upstream=\"bus\",reason=\"too_large\"}"
        ),
        1.0
    );
    let stored = stream_lines(&rt, &server, "UP");
    for l in before.iter().chain(after.iter()) {
        assert!(stored.contains(l), "{l} not in the stream: {stored:?}");
    }
}

#[test]
fn a_core_input_that_falls_behind_counts_and_logs_every_dropped_message() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    let mut i = input(&server, "metrics.>");
    // An inbox of 4 messages overflows at once under a burst.
    i["subscription_capacity"] = json!(4);
    let (relay, admin) = start_relay(config(i, &stub));
    let sent = lines("f", 20_000);
    publish(&rt, &server, "metrics.r", &sent);
    let settled = wait_for(Duration::from_secs(20), || {
        let taken = metric(&admin, "ccrelay_nats_messages_total");
        let lost = metric(&admin, "ccrelay_nats_slow_consumer_total");
        taken + lost == 20_000.0
    });
    let taken = metric(&admin, "ccrelay_nats_messages_total");
    let lost = metric(&admin, "ccrelay_nats_slow_consumer_total");
    assert!(
        settled,
        "taken {taken} + lost {lost} != 20000\n{}",
        relay.log_text()
    );
    assert!(
        lost > 0.0,
        "nothing was dropped: the test did not overflow the inbox"
    );
    // Said, but not once per dropped message.
    let said = relay.log_text().matches("dropping").count();
    assert!((1..=2).contains(&said), "{said} log lines about dropping");
    // Whatever was taken is delivered.
    assert!(wait_for(Duration::from_secs(20), || stub
        .delivered_lines()
        .len()
        == taken as usize));
}

#[test]
fn jetstream_input_survives_a_broker_restart() {
    let rt = runtime();
    let mut server = NatsServer::start(NatsSetup::new().jetstream(true));
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(jetstream_input(&server), &stub));
    wait_consumer(&rt, &server, &relay);
    let first = lines("m", 500);
    publish(&rt, &server, "metrics.r", &first);
    server.stop();
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_nats_connected{role=\"ingress:bus\"}"
    ) == 0.0));
    server.restart();
    let second = lines("n", 500);
    publish(&rt, &server, "metrics.r", &second);
    let all: Vec<String> = first.into_iter().chain(second).collect();
    wait_delivered(&stub, &all, &relay);
}

#[test]
fn jetstream_input_naks_while_a_reject_new_queue_is_full() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new().jetstream(true));
    let stub = Stub::start();
    stub.answer(|_| 503);
    let mut cfg = config(jetstream_input(&server), &stub);
    // One small record fills the queue; then the input must refuse.
    cfg["upstreams"][0]["buffer"] = json!({"max_bytes": "1KiB", "when_full": "reject_new"});
    cfg["storage"] = json!({"record_compression": "none"});
    let (relay, admin) = start_relay(cfg);
    wait_consumer(&rt, &server, &relay);
    let sent = lines("z", 200);
    for chunk in sent.chunks(20) {
        publish(&rt, &server, "metrics.r", &[chunk.join("\n")]);
    }
    assert!(
        wait_for(Duration::from_secs(15), || metric(
            &admin,
            "ccrelay_nats_acks_total{ingress=\"bus\",kind=\"nak\"}"
        ) >= 1.0),
        "{}",
        relay.log_text()
    );
    // The store comes back: the queue drains, the naked messages return and
    // every line arrives.
    stub.answer(|_| 200);
    wait_delivered(&stub, &sent, &relay);
    assert_eq!(metric(&admin, "ccrelay_nats_dropped_messages_total"), 0.0);
}

#[test]
fn a_nats_outage_does_not_make_a_relay_with_http_listeners_unready() {
    // Every relay sees a broker outage at once; were they all unready, the
    // load balancer in front of their HTTP listeners would have none left.
    let stub = Stub::start();
    let mut cfg = config(
        json!({
            "name": "bus",
            "servers": [format!("nats://127.0.0.1:{}", common::free_port())],
            "subjects": [{"subject": "metrics.>", "cluster": "fritz"}]
        }),
        &stub,
    );
    cfg["ingress"]["http"] = json!([{"name": "collectors"}]);
    let (relay, admin) = start_relay(cfg);
    let down = metric(&admin, "ccrelay_nats_connected{role=\"ingress:bus\"}");
    assert_eq!(down, 0.0, "the input has no server to connect to");
    let ready = common::http(&admin, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let sent = lines("h", 3);
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[],
        sent.join("\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
    wait_delivered(&stub, &sent, &relay);
}

#[test]
fn core_input_drops_and_counts_what_a_full_reject_new_queue_refuses() {
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    stub.answer(|_| 503);
    let mut cfg = config(input(&server, "metrics.>"), &stub);
    // One message fills the queue; core NATS cannot be told to resend, so
    // later messages are dropped and counted (spec §4.8: `rejected_full`).
    cfg["upstreams"][0]["buffer"] = json!({"max_bytes": "1KiB", "when_full": "reject_new"});
    cfg["storage"] = json!({"record_compression": "none"});
    let (relay, admin) = start_relay(cfg);
    let first = lines("a", 30);
    publish(&rt, &server, "metrics.r", &[first.join("\n")]);
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &admin,
            "ccrelay_queue_lines{upstream=\"store\"}"
        ) == 30.0),
        "{}",
        relay.log_text()
    );
    let refused: Vec<String> = [lines("b", 30), lines("c", 30)]
        .iter()
        .map(|l| l.join("\n"))
        .collect();
    publish(&rt, &server, "metrics.r", &refused);
    let series = "ccrelay_dropped_lines_total{upstream=\"store\",reason=\"rejected_full\"}";
    assert!(
        wait_for(Duration::from_secs(10), || metric(&admin, series) == 60.0),
        "{}\n{}",
        metric(&admin, series),
        relay.log_text()
    );
    assert_eq!(
        metric(
            &admin,
            "ccrelay_nats_dropped_messages_total{ingress=\"bus\",reason=\"refused\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &admin,
            "ccrelay_dropped_records_total{upstream=\"store\",reason=\"rejected_full\"}"
        ),
        0.0,
        "nothing refused was ever a record"
    );
    // The first message was stored and is delivered once the store is back.
    stub.answer(|_| 200);
    wait_delivered(&stub, &first, &relay);
    assert!(
        metric(&admin, "ccrelay_ingest_ack_seconds_count{ingress=\"bus\"}") >= 1.0,
        "the stored message's receive-to-durable time is observed"
    );
}

#[test]
fn core_messages_are_forwarded_in_the_order_they_arrived() {
    // With `invalid_lines: reject` every message is a batch of its own, and
    // two are stored at once: a large one (processed off the async threads)
    // followed by a small one must still become records in that order.
    let rt = runtime();
    let server = NatsServer::start(NatsSetup::new());
    let stub = Stub::start();
    let mut i = input(&server, "metrics.>");
    i["invalid_lines"] = json!("reject");
    let (relay, _admin) = start_relay(config(i, &stub));
    let t = now();
    let mut bodies = Vec::new();
    let mut expected = Vec::new();
    for round in 0..10 {
        let big: Vec<String> = (0..4000)
            .map(|k| format!("cpu_load,hostname=big{round}x{k} value={k} {t}"))
            .collect();
        let small = format!("cpu_load,hostname=small{round} value={round} {t}");
        expected.extend(big.iter().cloned());
        expected.push(small.clone());
        bodies.push(big.join("\n"));
        bodies.push(small);
    }
    publish(&rt, &server, "metrics.r", &bodies);
    assert!(
        wait_for(Duration::from_secs(30), || stub.delivered_lines().len()
            >= expected.len()),
        "{} of {} lines\n{}",
        stub.delivered_lines().len(),
        expected.len(),
        relay.log_text()
    );
    let got = stub.delivered_lines();
    let at: std::collections::HashMap<&str, usize> = got
        .iter()
        .enumerate()
        .map(|(n, l)| (l.as_str(), n))
        .collect();
    for pair in expected.windows(2) {
        assert!(
            at[pair[0].as_str()] < at[pair[1].as_str()],
            "{} arrived after {}",
            pair[0],
            pair[1]
        );
    }
}
