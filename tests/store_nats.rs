//! cc-store's NATS ingestion against a real `nats-server` (Debian's 2.9.10),
//! started by each test on free loopback ports: what is published is
//! queryable under the subscription's cluster tag, subscriptions keep their
//! tags apart, nothing published during the checkpoint restore or taken
//! before a clean shutdown is lost, and a NATS server that is down or
//! refuses the store's credentials never stops the store from serving HTTP.
//!
//! The servers come from the shared harness (`tests/common/nats.rs`); a
//! missing `nats-server` binary fails these tests, they are never skipped.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::nats::{NatsServer, NatsSetup};
use common::{
    Process, http, now, spawn_store_in, start_store, start_store_in, store_config, wait_for,
    wait_until_up,
};
use serde_json::{Value, json};

/// The connection named `cc-store`, as the server's monitoring shows it.
fn store_connection(nats: &NatsServer) -> Option<Value> {
    nats.monitor("/connz?subs=1")?["connections"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "cc-store")
        .cloned()
}

/// Waits until the store has subscribed to every one of `subjects`.
fn wait_for_store_subscriptions(nats: &NatsServer, subjects: &[&str]) {
    let subscribed = wait_for(Duration::from_secs(20), || {
        store_connection(nats).is_some_and(|c| {
            let list = c["subscriptions_list"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            subjects.iter().all(|s| list.iter().any(|l| l == s))
        })
    });
    assert!(
        subscribed,
        "cc-store did not subscribe to {subjects:?}: {:?}",
        store_connection(nats)
    );
}

/// Waits until the server has sent `n` messages to the store.
fn wait_for_store_to_receive(nats: &NatsServer, n: u64) {
    let received = wait_for(Duration::from_secs(20), || {
        store_connection(nats).is_some_and(|c| c["out_msgs"].as_u64() == Some(n))
    });
    assert!(
        received,
        "cc-store did not receive {n} messages: {:?}",
        store_connection(nats)
    );
}

/// A NATS client publishing from the test.
struct Publisher {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl Publisher {
    fn connect(nats: &NatsServer) -> Publisher {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(nats.connect());
        Publisher { runtime, client }
    }

    fn publish(&self, subject: &str, payload: String) {
        self.runtime
            .block_on(self.client.publish(subject.to_owned(), payload.into()))
            .unwrap();
    }

    /// Returns once everything published is with the server.
    fn flush(&self) {
        self.runtime.block_on(self.client.flush()).unwrap();
    }
}

fn nats_store_config(url: &str, subscriptions: Value) -> Value {
    let mut config = store_config();
    config["nats"] = json!({ "address": url });
    config["metric-store"]["nats-subscriptions"] = subscriptions;
    config
}

/// The values of one series from `/api/query` (`None` for gaps); empty when
/// the store has none.
fn series(
    store: &Process,
    cluster: &str,
    host: &str,
    metric: &str,
    from: i64,
    to: i64,
) -> Vec<Option<f64>> {
    let body = json!({"cluster": cluster, "from": from, "to": to,
                      "queries": [{"metric": metric, "host": host}]});
    let r = store.request("GET", "/api/query", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["results"][0][0]["data"]
        .as_array()
        .map(|data| data.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn some(values: impl IntoIterator<Item = f64>) -> Vec<Option<f64>> {
    values.into_iter().map(Some).collect()
}

/// A start time on the minute grid, `hours` ago.
fn hours_ago(hours: i64) -> i64 {
    (now() - hours * 3600) / 60 * 60
}

#[test]
fn published_lines_are_stored_under_the_subscription_cluster_tag() {
    let nats = NatsServer::start(NatsSetup::new());
    let store = start_store(nats_store_config(
        &nats.url(),
        json!([{"subscribe-to": "hpc.metrics", "cluster-tag": "alpha"}]),
    ));
    wait_for_store_subscriptions(&nats, &["hpc.metrics"]);
    let publisher = Publisher::connect(&nats);
    let t0 = hours_ago(1);
    publisher.publish(
        "hpc.metrics",
        format!(
            "cpu_load,hostname=n1 value=1.5 {t0}\n\
             cpu_load,hostname=n1 value=2.5 {}\n\
             mem_used,cluster=beta,hostname=n1 value=7 {t0}\n",
            t0 + 60
        ),
    );
    publisher.flush();
    let stored = wait_for(Duration::from_secs(10), || {
        series(&store, "alpha", "n1", "cpu_load", t0, t0 + 120) == some([1.5, 2.5])
    });
    assert!(stored, "{}", store.log_text());
    // A cluster tag in the line wins over the subscription's.
    assert_eq!(
        series(&store, "beta", "n1", "mem_used", t0, t0 + 60),
        some([7.0])
    );
    assert!(series(&store, "alpha", "n1", "mem_used", t0, t0 + 60).is_empty());
}

#[test]
fn two_subscriptions_keep_their_cluster_tags_apart() {
    let nats = NatsServer::start(NatsSetup::new());
    let mut config = nats_store_config(
        &nats.url(),
        json!([{"subscribe-to": "hpc.a", "cluster-tag": "alpha"},
               {"subscribe-to": "hpc.b", "cluster-tag": "beta"}]),
    );
    config["metric-store"]["num-workers"] = json!(4);
    let store = start_store(config);
    wait_for_store_subscriptions(&nats, &["hpc.a", "hpc.b"]);
    let publisher = Publisher::connect(&nats);
    let t0 = hours_ago(2);
    // The same untagged lines on both subjects, interleaved; only the value
    // tells which subject a sample came through.
    let steps = 30;
    for step in 0..steps {
        for (subject, value) in [("hpc.a", 1.0), ("hpc.b", 2.0)] {
            let body: String = (0..10)
                .map(|n| format!("cpu_load,hostname=n{n} value={value} {}\n", t0 + 60 * step))
                .collect();
            publisher.publish(subject, body);
        }
    }
    publisher.flush();
    let to = t0 + 60 * steps;
    let stored = wait_for(Duration::from_secs(15), || {
        (0..10).all(|n| {
            let host = format!("n{n}");
            series(&store, "alpha", &host, "cpu_load", t0, to).len() == 30
                && series(&store, "beta", &host, "cpu_load", t0, to).len() == 30
        })
    });
    assert!(stored, "{}", store.log_text());
    for n in 0..10 {
        let host = format!("n{n}");
        assert_eq!(
            series(&store, "alpha", &host, "cpu_load", t0, to),
            some([1.0; 30]),
            "{host}"
        );
        assert_eq!(
            series(&store, "beta", &host, "cpu_load", t0, to),
            some([2.0; 30]),
            "{host}"
        );
    }
}

/// A JSON snapshot of one host holding `values` of `metric` from `t0` on.
fn snapshot_json(metric: &str, t0: i64, values: &[f64]) -> String {
    let to = t0 + 60 * values.len() as i64;
    json!({
        "from": t0,
        "to": to,
        "metrics": {metric: {"frequency": 60, "start": t0 - 30, "data": values}},
        "children": {}
    })
    .to_string()
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn messages_published_during_the_restore_are_all_stored_after_it() {
    let t0 = hours_ago(10);
    let snapshot: Vec<f64> = (0..120).map(|i| 1000.0 + f64::from(i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints/alpha");
    // A large checkpoint directory: 300 hosts of two hours each...
    for n in 0..300 {
        let host = checkpoints.join(format!("n{n:03}"));
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(
            host.join(format!("{t0}.json")),
            snapshot_json("mem_used", t0, &snapshot),
        )
        .unwrap();
    }
    // ...and, restored last, a host whose snapshot is a FIFO: the restore
    // waits on it (like a very slow disk) until the test writes into it.
    let slow = checkpoints.join("slow").join(format!("{t0}.json"));
    mkfifo(&slow);

    let nats = NatsServer::start(NatsSetup::new());
    let mut config = nats_store_config(
        &nats.url(),
        json!([{"subscribe-to": "hpc.metrics", "cluster-tag": "alpha"}]),
    );
    config["metric-store"]["num-workers"] = json!(2);
    let mut store = spawn_store_in(config, dir);
    wait_for_store_subscriptions(&nats, &["hpc.metrics"]);
    let restoring =
        || http(&store.addr, "GET", "/api/query/", &[], b"{}").is_ok_and(|r| r.status == 503);
    assert!(
        wait_for(Duration::from_secs(10), restoring),
        "{}",
        store.log_text()
    );

    // Samples after the snapshot of `slow`, and of a host without
    // checkpoints. Decoded during the restore, the ones of `slow` would be
    // replaced by the restored chunk.
    let t1 = t0 + 60 * 120;
    let messages = 300;
    let publisher = Publisher::connect(&nats);
    for i in 0..messages {
        let t = t1 + 60 * i;
        publisher.publish(
            "hpc.metrics",
            format!(
                "mem_used,hostname=slow value={i} {t}\nmem_used,hostname=fresh value={i} {t}\n"
            ),
        );
    }
    publisher.flush();
    wait_for_store_to_receive(&nats, messages as u64);
    assert!(restoring(), "the restore must still be running");

    std::fs::write(&slow, snapshot_json("mem_used", t0, &snapshot)).unwrap();
    wait_until_up(&mut store);
    let published = (0..messages).map(|i| i as f64);
    let end = t1 + 60 * messages;
    let decoded = wait_for(Duration::from_secs(10), || {
        series(&store, "alpha", "slow", "mem_used", t0, end).len() == 120 + messages as usize
    });
    assert!(decoded, "{}", store.log_text());
    assert_eq!(
        series(&store, "alpha", "slow", "mem_used", t0, end),
        some(snapshot.iter().copied().chain(published.clone())),
        "{}",
        store.log_text()
    );
    let fresh = wait_for(Duration::from_secs(10), || {
        series(&store, "alpha", "fresh", "mem_used", t1, end).len() == messages as usize
    });
    assert!(fresh, "{}", store.log_text());
    assert_eq!(
        series(&store, "alpha", "fresh", "mem_used", t1, end),
        some(published)
    );
    assert_eq!(
        series(&store, "alpha", "n123", "mem_used", t0, t1),
        some(snapshot.iter().copied())
    );
}

#[test]
fn the_store_serves_without_a_nats_server_and_ingests_once_it_is_up() {
    // Started for its ports and config, then stopped until the store runs.
    let mut nats = NatsServer::start(NatsSetup::new());
    nats.stop();
    let store = start_store(nats_store_config(
        &nats.url(),
        json!([{"subscribe-to": "hpc.metrics", "cluster-tag": "alpha"}]),
    ));
    let t0 = hours_ago(1);
    let r = store.request(
        "POST",
        "/api/write?cluster=alpha",
        &[],
        format!("cpu_load,hostname=http value=1 {t0}\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        series(&store, "alpha", "http", "cpu_load", t0, t0 + 60),
        some([1.0])
    );

    let logged = wait_for(Duration::from_secs(10), || {
        store.log_text().contains("ERROR cc_common::nats")
    });
    assert!(
        logged,
        "the failing connection is logged:\n{}",
        store.log_text()
    );

    nats.restart();
    wait_for_store_subscriptions(&nats, &["hpc.metrics"]);
    let publisher = Publisher::connect(&nats);
    publisher.publish(
        "hpc.metrics",
        format!("cpu_load,hostname=n1 value=4 {t0}\n"),
    );
    publisher.flush();
    let stored = wait_for(Duration::from_secs(10), || {
        series(&store, "alpha", "n1", "cpu_load", t0, t0 + 60) == some([4.0])
    });
    assert!(stored, "{}", store.log_text());
}

#[test]
fn wrong_credentials_are_logged_and_the_store_keeps_serving() {
    let password = "Wr0ng-Passw0rd";
    let nats = NatsServer::start(NatsSetup::new().user_password("a", "b"));
    let mut config = nats_store_config(
        &nats.url(),
        json!([{"subscribe-to": "hpc.metrics", "cluster-tag": "alpha"}]),
    );
    config["nats"]["username"] = json!("a");
    config["nats"]["password"] = json!(password);
    let mut store = start_store(config);
    let logged = wait_for(Duration::from_secs(15), || {
        store
            .log_text()
            .to_lowercase()
            .contains("authorization violation")
    });
    assert!(logged, "{}", store.log_text());
    assert!(!store.log_text().contains(password), "{}", store.log_text());
    assert!(store_connection(&nats).is_none());

    let t0 = hours_ago(1);
    let r = store.request(
        "POST",
        "/api/write?cluster=alpha",
        &[],
        format!("cpu_load,hostname=h value=3 {t0}\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        series(&store, "alpha", "h", "cpu_load", t0, t0 + 60),
        some([3.0])
    );
    assert!(store.is_running());
}

#[test]
fn a_clean_shutdown_stores_every_message_taken_from_nats() {
    let nats = NatsServer::start(NatsSetup::new());
    let subscriptions = json!([{"subscribe-to": "hpc.metrics", "cluster-tag": "alpha"}]);
    let mut config = nats_store_config(&nats.url(), subscriptions);
    config["metric-store"]["num-workers"] = json!(2);
    let store = start_store(config);
    wait_for_store_subscriptions(&nats, &["hpc.metrics"]);
    let publisher = Publisher::connect(&nats);
    // 50 hosts, 20 messages each of 100 timestamps × 2 metrics: 200 000
    // lines, which the store is still decoding when it is told to stop.
    let t0 = hours_ago(40);
    let (hosts, per_host, stamps) = (50, 20, 100);
    for m in 0..per_host {
        for h in 0..hosts {
            let mut body = String::new();
            for k in 0..stamps {
                let i = m * stamps + k;
                let t = t0 + 60 * i;
                body.push_str(&format!(
                    "cpu_load,hostname=h{h} value={i} {t}\nmem_used,hostname=h{h} value={i} {t}\n"
                ));
            }
            publisher.publish("hpc.metrics", body);
        }
    }
    publisher.flush();
    wait_for_store_to_receive(&nats, (hosts * per_host) as u64);
    let (status, dir) = store.stop();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("store.log")).unwrap();
    assert!(
        log.contains(&format!("messages={}", hosts * per_host)),
        "{log}"
    );
    let drained = log.find("NATS subscription ended").expect("NATS summary");
    let saved = log.find("why=\"shutdown\"").expect("shutdown checkpoint");
    assert!(
        drained < saved,
        "NATS is drained before the final checkpoint:\n{log}"
    );

    // The checkpoint written at shutdown holds every sample.
    let store = start_store_in(store_config(), dir);
    let expected = some((0..per_host * stamps).map(|i| i as f64));
    let end = t0 + 60 * per_host * stamps;
    for h in 0..hosts {
        let host = format!("h{h}");
        for metric in ["cpu_load", "mem_used"] {
            assert_eq!(
                series(&store, "alpha", &host, metric, t0, end),
                expected,
                "{host} {metric}"
            );
        }
    }
}

/// The architecture guide's "Large Cluster (External + NATS)" cc-metric-store
/// configuration, as administrators copy it (no `metrics` section, the
/// guide's `checkpoints.interval` and `cleanup.interval`), with only its
/// address, directories, NATS URL, password and key filled in: the store
/// starts, subscribes, learns each metric's interval from the collectors'
/// samples, and answers cc-backend's queries at that resolution.
#[test]
fn the_architecture_guides_large_cluster_config_runs_as_written() {
    let nats = NatsServer::start(NatsSetup::new().user_password("cc-metric-store", "s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::fixture(
        "store/architecture-guide-large-cluster.json",
    ))
    .unwrap()
    .replace("@ADDR@", "127.0.0.1:0")
    .replace("@JWT_PUBLIC_KEY@", &common::test_public_key())
    .replace("@NATS_URL@", &nats.url())
    .replace("@NATS_PASSWORD@", "s3cret")
    .replace("@DIR@", &dir.path().display().to_string());
    assert!(!text.contains('@'), "a placeholder is left: {text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert!(config.get("metrics").is_none());
    let store = start_store_in(config.clone(), dir);
    wait_for_store_subscriptions(&nats, &["hpc-nats"]);

    // Collectors publish every 10 s: node-level cpu_load and a metric no
    // built-in list knows, per hardware thread.
    let publisher = Publisher::connect(&nats);
    let t0 = hours_ago(1);
    for k in 0..6 {
        let t = t0 + 10 * k;
        publisher.publish(
            "hpc-nats",
            format!(
                "cpu_load,hostname=n1,type=node value={k} {t}\n\
                 site_temp,hostname=n1,type=hwthread,type-id=0 value={} {t}\n\
                 site_temp,hostname=n1,type=hwthread,type-id=1 value={} {t}\n",
                40 + k,
                50 + k
            ),
        );
    }
    publisher.flush();

    let token = common::mint_token(&json!({"sub": "cc-backend", "roles": ["api"]}));
    let auth = format!("Bearer {token}");
    let query = |store: &Process, q: Value| -> Value {
        let body = json!({"cluster": "mycluster", "from": t0, "to": t0 + 60, "queries": [q]});
        let r = store.request(
            "GET",
            "/api/query?version=v2",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["results"][0].clone()
    };
    let stored = wait_for(Duration::from_secs(15), || {
        query(&store, json!({"metric": "cpu_load", "host": "n1"}))[0]["data"]
            .as_array()
            .is_some_and(|d| d.len() == 6)
    });
    assert!(stored, "{}", store.log_text());
    let cpu = query(&store, json!({"metric": "cpu_load", "host": "n1"}));
    assert_eq!(cpu[0]["resolution"], 10, "{cpu}");
    assert_eq!(cpu[0]["data"], json!([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    let temps = query(
        &store,
        json!({"metric": "site_temp", "host": "n1", "type": "hwthread",
                             "type-ids": ["0", "1"]}),
    );
    assert_eq!(
        temps[1]["data"],
        json!([50.0, 51.0, 52.0, 53.0, 54.0, 55.0]),
        "{temps}"
    );
    // Its aggregation is unknown, so the store refuses to guess one for the
    // node.
    let node = query(
        &store,
        json!({"metric": "site_temp", "host": "n1", "type": "hwthread",
                            "type-ids": ["0", "1"], "aggreg": true}),
    );
    assert!(node[0]["error"].is_string(), "{node}");

    let log = store.log_text();
    assert!(log.contains("learned a new metric"), "{log}");
    assert!(
        log.contains("checkpoints.interval"),
        "the alias notice: {log}"
    );

    // After a restart the metrics are known again, with the same interval,
    // from what the store wrote to disk.
    let (status, dir) = store.stop();
    assert!(status.success(), "{status}");
    let store = start_store_in(config, dir);
    let cpu = query(&store, json!({"metric": "cpu_load", "host": "n1"}));
    assert_eq!(cpu[0]["resolution"], 10, "{cpu}");
    assert_eq!(cpu[0]["data"], json!([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    let temps = query(
        &store,
        json!({"metric": "site_temp", "host": "n1", "type": "hwthread",
                                     "type-ids": ["0", "1"]}),
    );
    assert_eq!(
        temps[0]["data"],
        json!([40.0, 41.0, 42.0, 43.0, 44.0, 45.0]),
        "{temps}"
    );
}
