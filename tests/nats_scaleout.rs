//! Scale-out over JetStream: two cc-relays share one durable consumer on a
//! replicated stream of a three-server NATS cluster and forward everything
//! to two cc-stores each. While collectors publish, one relay is killed
//! with SIGKILL and restarted, and the NATS server the other relay is
//! connected to is killed; afterwards both stores hold every published
//! line, and the relay that lost its server delivers a last round alone.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use common::nats::NatsCluster;
use common::{
    Process, metric, now, start_relay, start_relay_in, start_store, store_config, wait_for,
};
use serde_json::{Value, json};

/// Hosts, each one `cpu_load` series.
const HOSTS: usize = 200;
/// Lines per NATS message (consecutive hosts, one timestamp).
const LINES_PER_MESSAGE: usize = 10;
/// Messages per minute slot: one line for every host.
const MESSAGES_PER_SLOT: usize = HOSTS / LINES_PER_MESSAGE;
/// Minute slots published during the test, after the seed slot.
const SLOTS: usize = 100;
/// Messages published during the test (20 000 lines).
const MESSAGES: usize = SLOTS * MESSAGES_PER_SLOT;
/// How long the publisher spreads them over, at least.
const PUBLISH_TIME: Duration = Duration::from_secs(6);
/// Racks: the subjects are `metrics.rack<n>`.
const RACKS: usize = 4;
/// Deadline of each wait (generous for CI on two cores).
const DEADLINE: Duration = Duration::from_secs(60);

/// The value of `host` in minute slot `slot` (slot 0: the seed); unique.
fn value(host: usize, slot: usize) -> f64 {
    (slot * 1000 + host) as f64
}

/// Subject and body of the `n`-th message of minute slot `slot`.
fn message(t0: i64, slot: usize, n: usize) -> (String, String) {
    let t = t0 + 60 * slot as i64;
    let body = (n * LINES_PER_MESSAGE..(n + 1) * LINES_PER_MESSAGE)
        .map(|h| format!("cpu_load,hostname=h{h:03} value={} {t}\n", value(h, slot)))
        .collect();
    (format!("metrics.rack{}", n % RACKS), body)
}

/// Publishes with JetStream until the stream acknowledged the message,
/// retrying while the cluster re-elects; the message id lets the stream
/// drop a retried message it already has. Returns the number of retries.
async fn publish_acked(
    js: &jetstream::Context,
    subject: String,
    id: String,
    body: String,
) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut retries = 0;
    loop {
        let publish = PublishMessage::build()
            .payload(body.clone().into())
            .message_id(id.clone());
        let acked = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => match tokio::time::timeout(Duration::from_secs(2), ack).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no PubAck within 2 s".to_owned()),
            },
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return retries,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "message {id} not stored in {DEADLINE:?}: {e}"
                );
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A relay taking `metrics.>` from the shared durable consumer and
/// forwarding to both stores.
fn relay_config(id: &str, cluster: &NatsCluster, stores: &[&Process]) -> Value {
    let upstreams: Vec<Value> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            json!({
                "name": format!("store-{i}"),
                "type": "ccms-http",
                "url": format!("http://{}/api/write", store.addr),
                "batch": {"linger": "20ms"},
                "retry": {"initial_backoff": "50ms", "max_backoff": "500ms"}
            })
        })
        .collect();
    json!({
        "instance_id": id,
        "ingress": {"nats": [{
            "name": "bus",
            "servers": cluster.urls(),
            "subjects": [{"subject": "metrics.>", "cluster": "fritz"}],
            "mode": "jetstream",
            "jetstream": {
                "stream": "METRICS",
                "create_stream": false,
                "durable": "cc-relays",
                "ack_wait": "5s"
            }
        }]},
        "upstreams": upstreams,
        "shutdown_grace": "2s"
    })
}

/// Values of every host's `cpu_load` in cluster `fritz` over slots
/// `0..slots` (`None` for gaps); a host without data has an empty list.
fn all_series(store: &Process, t0: i64, slots: usize) -> Vec<Vec<Option<f64>>> {
    let queries: Vec<Value> = (0..HOSTS)
        .map(|h| json!({"metric": "cpu_load", "host": format!("h{h:03}")}))
        .collect();
    let body = json!({"cluster": "fritz", "from": t0, "to": t0 + 60 * slots as i64,
                      "queries": queries});
    let r = store.request("GET", "/api/query", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (0..HOSTS)
        .map(|h| {
            v["results"][h][0]["data"]
                .as_array()
                .map(|d| d.iter().map(Value::as_f64).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// Samples stored per host.
fn counts(store: &Process, t0: i64, slots: usize) -> Vec<usize> {
    all_series(store, t0, slots)
        .iter()
        .map(|s| s.iter().flatten().count())
        .collect()
}

/// Index of the server holding the connection named `name`.
fn server_of(cluster: &NatsCluster, name: &str) -> Option<usize> {
    (0..3).find(|&i| {
        cluster.monitor(i, "/connz").is_some_and(|connz| {
            connz["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == name)
        })
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every log a relay wrote in its directory (each start writes its own),
/// oldest first.
fn relay_logs(dir: &std::path::Path) -> String {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| (e.metadata().and_then(|m| m.modified()).ok(), e.path()))
        .collect();
    logs.sort();
    logs.iter()
        .map(|(_, path)| std::fs::read_to_string(path).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("--- restarted ---\n")
}

/// Waits until both stores hold slots `0..slots` of every host; the
/// message of a failure names what is missing and shows `context()`.
fn wait_stored(stores: &[Process], t0: i64, slots: usize, context: impl Fn() -> String) {
    let complete = wait_for(DEADLINE, || {
        stores
            .iter()
            .all(|s| counts(s, t0, slots).iter().all(|&c| c == slots))
    });
    if !complete {
        let missing: Vec<String> = stores
            .iter()
            .map(|s| {
                let c = counts(s, t0, slots);
                format!(
                    "{} samples of {} hosts",
                    HOSTS * slots - c.iter().sum::<usize>(),
                    c.iter().filter(|&&n| n < slots).count()
                )
            })
            .collect();
        panic!("missing in the stores: {missing:?}\n{}", context());
    }
}

#[test]
fn two_relays_on_a_shared_durable_survive_a_relay_kill_and_a_server_kill() {
    let started = Instant::now();
    let rt = runtime();
    let mut cluster = NatsCluster::start();
    let js = rt.block_on(async {
        let js = jetstream::new(cluster.connect().await);
        js.create_stream(stream::Config {
            name: "METRICS".into(),
            subjects: vec!["metrics.>".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            max_bytes: 64 << 20,
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });
    let stores = [start_store(store_config()), start_store(store_config())];
    let targets: Vec<&Process> = stores.iter().collect();
    let config = |id: &str| relay_config(id, &cluster, &targets);
    let (relay1, admin1) = start_relay(config("relay-1"));
    let (relay2, admin2) = start_relay(config("relay-2"));

    // Both relays pull from the durable before anything is published.
    let both_pulling = wait_for(DEADLINE, || {
        rt.block_on(async {
            let Ok(stream) = js.get_stream("METRICS").await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<jetstream::consumer::pull::Config>("cc-relays")
                .await
            else {
                return false;
            };
            consumer.info().await.is_ok_and(|i| i.num_waiting >= 2)
        })
    });
    assert!(
        both_pulling,
        "the relays do not both pull from the durable:\n{}\n{}",
        relay1.log_text(),
        relay2.log_text()
    );

    // The seed: each series starts in both stores at slot 0, so that a
    // later sample delivered ahead of an earlier one (redelivery after the
    // kill) is never older than the series' first chunk, which the store
    // would refuse.
    let t0 = (now() - 3 * 3600) / 60 * 60;
    rt.block_on(async {
        for n in 0..MESSAGES_PER_SLOT {
            let (subject, body) = message(t0, 0, n);
            publish_acked(&js, subject, format!("seed-{n}"), body).await;
        }
    });
    wait_stored(&stores, t0, 1, || {
        format!(
            "relay 1:\n{}\nrelay 2:\n{}",
            relay1.log_text(),
            relay2.log_text()
        )
    });
    let seeded = started.elapsed();

    // Collectors publish at a steady rate in the background.
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, published) = (js.clone(), Arc::clone(&published));
        rt.spawn(async move {
            let begin = tokio::time::Instant::now();
            let pace = PUBLISH_TIME / MESSAGES as u32;
            let mut retries = 0;
            for k in 0..MESSAGES {
                tokio::time::sleep_until(begin + pace * k as u32).await;
                let (subject, body) = message(t0, 1 + k / MESSAGES_PER_SLOT, k % MESSAGES_PER_SLOT);
                retries += publish_acked(&js, subject, format!("m-{k}"), body).await;
                published.store(k + 1, Ordering::Relaxed);
            }
            retries
        })
    };
    let progress = |quarters: usize| {
        let reached = wait_for(DEADLINE, || {
            published.load(Ordering::Relaxed) >= MESSAGES * quarters / 4
        });
        assert!(reached, "the publisher is stuck at {published:?}");
    };

    // A quarter in: relay 1 dies with messages pulled but not acknowledged,
    // and lines acknowledged but not yet forwarded; it restarts on its data.
    progress(1);
    let relay1_before = metric(&admin1, "ccrelay_nats_messages_total{ingress=\"bus\"}");
    let dir = relay1.kill9();
    let (relay1, admin1) = start_relay_in(config("relay-1"), dir);

    // Half-way: the NATS server relay 2 is connected to dies (with it, the
    // stream's or consumer's leader, or the meta leader, at times).
    progress(2);
    // Relay 2 may be between two connections at this moment (a reconnect
    // under load): wait until a server lists it again.
    let mut victim = None;
    wait_for(Duration::from_secs(20), || {
        victim = server_of(&cluster, "cc-relay relay-2 ingress:bus");
        victim.is_some()
    });
    let victim = victim
        .unwrap_or_else(|| panic!("relay 2 is connected to no server:\n{}", relay2.log_text()));
    let relay2_at_kill = metric(&admin2, "ccrelay_nats_messages_total{ingress=\"bus\"}");
    cluster.kill(victim);

    let retries = rt
        .block_on(async { tokio::time::timeout(2 * DEADLINE, publisher).await })
        .expect("the publisher did not finish")
        .unwrap();
    let publish_done = started.elapsed();
    let context = || {
        format!(
            "relay 1:\n{}\nrelay 2:\n{}\nNATS server {victim} (killed):\n{}",
            relay_logs(relay1.dir.path()),
            relay2.log_text(),
            cluster.log_tail(victim)
        )
    };
    wait_stored(&stores, t0, SLOTS + 1, context);
    let stored = started.elapsed();

    // Both relays took a share, relay 1 also after its restart.
    let relay1_after = metric(&admin1, "ccrelay_nats_messages_total{ingress=\"bus\"}");
    let relay2_total = metric(&admin2, "ccrelay_nats_messages_total{ingress=\"bus\"}");
    assert!(
        relay1_before > 0.0 && relay1_after > 0.0 && relay2_total > 0.0,
        "relay 1 took {relay1_before} before and {relay1_after} after its restart, \
         relay 2 {relay2_total}"
    );
    for admin in [&admin1, &admin2] {
        assert!(wait_for(DEADLINE, || metric(admin, "ccrelay_queue_lines") == 0.0));
    }

    // Relay 2 lost its server and may have left the rest to relay 1; with
    // relay 1 stopped, it alone delivers one more slot.
    assert!(
        metric(
            &admin2,
            "ccrelay_nats_reconnects_total{role=\"ingress:bus\"}"
        ) >= 1.0,
        "relay 2 was on server {victim} and did not reconnect"
    );
    let (status, dir) = relay1.stop();
    assert!(
        status.success(),
        "relay 1 stopped with {status}:\n{}",
        relay_logs(dir.path())
    );
    rt.block_on(async {
        for n in 0..MESSAGES_PER_SLOT {
            let (subject, body) = message(t0, SLOTS + 1, n);
            publish_acked(&js, subject, format!("tail-{n}"), body).await;
        }
    });
    let slots = SLOTS + 2;
    wait_stored(&stores, t0, slots, || {
        format!(
            "relay 2 alone:\n{}\nNATS server {victim} (killed):\n{}",
            relay2.log_text(),
            cluster.log_tail(victim)
        )
    });
    let relay2_after = metric(&admin2, "ccrelay_nats_messages_total{ingress=\"bus\"}");
    assert!(relay2_after >= relay2_total + MESSAGES_PER_SLOT as f64);

    // Every sample has exactly the value published for it.
    for (i, store) in stores.iter().enumerate() {
        for (h, series) in all_series(store, t0, slots).iter().enumerate() {
            let expected: Vec<Option<f64>> = (0..slots).map(|s| Some(value(h, s))).collect();
            assert_eq!(series, &expected, "store {i}, host h{h:03}");
        }
    }
    eprintln!(
        "seeded after {seeded:?}, {MESSAGES} messages published by {publish_done:?} \
         ({retries} publish retries) and stored by {stored:?}, the last slot by {:?}; \
         relay 1 took {relay1_before} + {relay1_after} messages, relay 2 \
         {relay2_at_kill} before and {} after NATS server {victim} was killed",
        started.elapsed(),
        relay2_after - relay2_at_kill
    );
}
