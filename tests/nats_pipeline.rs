//! The whole NATS pipeline: collectors post to cc-relay over HTTP, the relay
//! publishes to a real `nats-server` (an upstream of type `nats`, core or
//! JetStream), and cc-store takes the lines from its NATS subscriptions.
//! What the store answers to `/api/query` is compared value by value.
//!
//! The relay writes a record's default cluster (`?cluster=`) into every
//! line without a `cluster` tag on NATS egress, so such lines land under
//! that cluster whatever the store's subscription tag; lines without any
//! cluster land under the subscription's tag.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use common::nats::{NatsServer, NatsSetup};
use common::{
    Process, metric, now, relay_config, start_relay, start_store, store_config, wait_for,
};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A store subscribed to `ccms.metrics` (tag `fritz`) and `ccms.other` (tag
/// `alex`), with several decoder lanes, so that a message decoded with the
/// wrong subscription's tag would show.
fn start_subscribed_store(nats: &NatsServer) -> Process {
    let mut config = store_config();
    config["nats"] = json!({"address": nats.url()});
    config["metric-store"]["nats-subscriptions"] = json!([
        {"subscribe-to": "ccms.metrics", "cluster-tag": "fritz"},
        {"subscribe-to": "ccms.other", "cluster-tag": "alex"}
    ]);
    config["metric-store"]["num-workers"] = json!(4);
    let store = start_store(config);
    // Core NATS: what is published before the store subscribed is gone.
    let subscribed = wait_for(Duration::from_secs(20), || {
        nats.monitor("/connz?subs=1").is_some_and(|connz| {
            connz["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["name"] == "cc-store")
                .any(|c| {
                    let subs = c["subscriptions_list"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    ["ccms.metrics", "ccms.other"]
                        .iter()
                        .all(|s| subs.iter().any(|l| l == s))
                })
        })
    });
    assert!(
        subscribed,
        "cc-store did not subscribe:\n{}",
        store.log_text()
    );
    store
}

/// A relay with the HTTP ingress `local` and one `nats` upstream `bus`
/// publishing to `ccms.metrics`.
fn start_publishing_relay(nats: &NatsServer, mode: &str) -> (Process, String) {
    let (relay, admin) = start_relay(relay_config(json!([{
        "name": "bus",
        "type": "nats",
        "servers": [nats.url()],
        "subject": "ccms.metrics",
        "mode": mode,
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "500ms"}
    }])));
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &admin,
            "ccrelay_nats_connected{role=\"upstream:bus\"}"
        ) == 1.0),
        "{}",
        relay.log_text()
    );
    (relay, admin)
}

/// A start time on the minute grid, one hour ago.
fn hour_ago() -> i64 {
    (now() - 3600) / 60 * 60
}

const HOSTS: i64 = 5;
const STEPS: i64 = 10;

/// The value of host `h` at step `s` in a cluster (`base` tells clusters apart).
fn value(base: f64, h: i64, s: i64) -> f64 {
    base + (h * 100 + s) as f64
}

/// Lines without a cluster tag: `cpu_load` of hosts `n0…` at `STEPS`
/// minutes from `t0`, one body per step (one request each).
fn bodies(t0: i64, base: f64) -> Vec<String> {
    (0..STEPS)
        .map(|s| {
            (0..HOSTS)
                .map(|h| {
                    format!(
                        "cpu_load,hostname=n{h} value={} {}\n",
                        value(base, h, s),
                        t0 + 60 * s
                    )
                })
                .collect()
        })
        .collect()
}

/// The values of one series from `/api/query` (`None` for gaps).
fn series(store: &Process, cluster: &str, host: &str, metric: &str, t0: i64) -> Vec<Option<f64>> {
    let body = json!({"cluster": cluster, "from": t0, "to": t0 + 60 * STEPS,
                      "queries": [{"metric": metric, "host": host}]});
    let r = store.request("GET", "/api/query", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["results"][0][0]["data"]
        .as_array()
        .map(|data| data.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn expected(base: f64, h: i64) -> Vec<Option<f64>> {
    (0..STEPS).map(|s| Some(value(base, h, s))).collect()
}

/// Posts the lines of both clusters to the relay, interleaved (one request
/// with `?cluster=alex`, one without), plus a line with its own cluster
/// tag, and checks that the store has every value under the right cluster.
fn post_and_check(relay: &Process, store: &Process, t0: i64) {
    for (plain, alex) in bodies(t0, 0.0).iter().zip(bodies(t0, 1000.0)) {
        let r = relay.request("POST", "/api/write", &[], plain.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        let r = relay.request("POST", "/api/write?cluster=alex", &[], alex.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A cluster tag in the line wins over `?cluster=` and the subscription.
    let tagged = format!("mem_used,cluster=beta,hostname=n0 value=7 {t0}\n");
    let r = relay.request("POST", "/api/write?cluster=alex", &[], tagged.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());

    let all_there = wait_for(Duration::from_secs(20), || {
        (0..HOSTS).all(|h| {
            let host = format!("n{h}");
            series(store, "fritz", &host, "cpu_load", t0) == expected(0.0, h)
                && series(store, "alex", &host, "cpu_load", t0) == expected(1000.0, h)
        }) && series(store, "beta", "n0", "mem_used", t0).first() == Some(&Some(7.0))
    });
    let mut report = String::new();
    for h in 0..HOSTS {
        let host = format!("n{h}");
        for cluster in ["fritz", "alex"] {
            report.push_str(&format!(
                "{cluster}/{host}: {:?}\n",
                series(store, cluster, &host, "cpu_load", t0)
            ));
        }
    }
    assert!(
        all_there,
        "the store does not hold what was posted:\n{report}relay log:\n{}\nstore log:\n{}",
        relay.log_text(),
        store.log_text()
    );
    // Nothing of the tagged line landed under the request's or the
    // subscription's cluster.
    for cluster in ["alex", "fritz"] {
        assert!(
            series(store, cluster, "n0", "mem_used", t0)
                .iter()
                .all(Option::is_none),
            "mem_used under {cluster}"
        );
    }
}

#[test]
fn relay_publishes_and_the_store_subscribes() {
    let nats = NatsServer::start(NatsSetup::new());
    let store = start_subscribed_store(&nats);
    let (relay, admin) = start_publishing_relay(&nats, "core");
    let t0 = hour_ago();
    post_and_check(&relay, &store, t0);
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    assert_eq!(
        metric(&admin, "ccrelay_upstream_sent_lines_total"),
        (2 * HOSTS * STEPS + 1) as f64
    );
}

/// Every line stored in stream `name`.
fn stream_lines(rt: &tokio::runtime::Runtime, nats: &NatsServer, name: &str) -> BTreeSet<String> {
    rt.block_on(async {
        let js = jetstream::new(nats.connect().await);
        let stream = js.get_stream(name).await.unwrap();
        let stored = stream.get_info().await.unwrap().state.messages;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config::default())
            .await
            .unwrap();
        let mut out = BTreeSet::new();
        let mut messages = consumer
            .fetch()
            .max_messages(usize::try_from(stored).unwrap())
            .messages()
            .await
            .unwrap();
        while let Some(m) = messages.next().await {
            let m = m.unwrap();
            // `Nats-Msg-Id: <instance_id>:<upstream>:<first>-<last>` (spec
            // §4.7): the relay's records in the message.
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .expect("every message has a Nats-Msg-Id");
            let range = id
                .strip_prefix("test-relay:bus:")
                .unwrap_or_else(|| panic!("{id}"));
            let (first, last) = range.split_once('-').unwrap_or_else(|| panic!("{id}"));
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            assert!(first <= last, "{id}");
            for l in String::from_utf8(m.payload.to_vec()).unwrap().lines() {
                out.insert(l.to_owned());
            }
        }
        out
    })
}

#[test]
fn relay_publishes_into_a_stream_and_the_store_subscribes() {
    let rt = runtime();
    let nats = NatsServer::start(NatsSetup::new().jetstream(true));
    rt.block_on(async {
        let js = jetstream::new(nats.connect().await);
        js.create_stream(stream::Config {
            name: "CCMS".into(),
            subjects: vec!["ccms.metrics".into()],
            storage: stream::StorageType::File,
            max_bytes: 64 << 20,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let store = start_subscribed_store(&nats);
    let (relay, admin) = start_publishing_relay(&nats, "jetstream");
    let t0 = hour_ago();
    post_and_check(&relay, &store, t0);
    // Delivered means acknowledged by the stream: everything is in it too,
    // with the default cluster written into the lines.
    assert!(wait_for(Duration::from_secs(10), || metric(
        &admin,
        "ccrelay_queue_lines"
    ) == 0.0));
    let stored = stream_lines(&rt, &nats, "CCMS");
    assert_eq!(stored.len(), (2 * HOSTS * STEPS + 1) as usize, "{stored:?}");
    for s in 0..STEPS {
        for h in 0..HOSTS {
            let t = t0 + 60 * s;
            let plain = format!("cpu_load,hostname=n{h} value={} {t}", value(0.0, h, s));
            let alex = format!(
                "cpu_load,cluster=alex,hostname=n{h} value={} {t}",
                value(1000.0, h, s)
            );
            assert!(stored.contains(&plain), "{plain} not in the stream");
            assert!(stored.contains(&alex), "{alex} not in the stream");
        }
    }
}
