//! Twenty `kill -9` rounds under load, for each program: a client posts
//! without pause while the program is killed and restarted on its data, and
//! at the end every line the program acknowledged is accounted for.
//!
//! - cc-relay: every acknowledged line reaches the upstream (at least once).
//! - cc-store: every acknowledged sample is in the store after the last
//!   restart (a kill loses nothing the WAL was given; only a crash of the
//!   machine loses up to `wal-fsync-interval`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{
    Stub, http, now, relay_config, start_relay_in, start_store_in, store_config, wait_for,
};
use serde_json::json;

const ROUNDS: usize = 20;
/// Lines per request.
const HOSTS: usize = 20;

/// How long to let the load run before the next kill: 150 to 450 ms, varied
/// so that kills land in different phases (request read, group commit,
/// forwarding, snapshot).
fn pause(round: usize) -> Duration {
    Duration::from_millis(150 + (round as u64 * 7919) % 300)
}

/// Posts batch after batch to whatever address `target` holds, recording the
/// batch numbers answered 200, until `stop` is set.
fn load(
    target: Arc<Mutex<String>>,
    path: &'static str,
    body: impl Fn(u64) -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut batch = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let addr = target.lock().unwrap().clone();
            match http(&addr, "POST", path, &[], body(batch).as_bytes()) {
                Ok(r) if r.status == 200 => acknowledged.push(batch),
                // Refused or cut off: not acknowledged, so not counted; a
                // collector would send it again.
                _ => thread::sleep(Duration::from_millis(20)),
            }
            batch += 1;
        }
        acknowledged
    })
}

#[test]
fn relay_killed_twenty_times_under_load_forwards_every_acknowledged_line() {
    let stub = Stub::start();
    let url = format!("http://{}/api/write", stub.addr);
    let config = relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": url,
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"}
    }]));
    let (mut relay, _) = start_relay_in(config.clone(), tempfile::tempdir().unwrap());
    let target = Arc::new(Mutex::new(relay.addr.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let t = now();
    let poster = load(
        Arc::clone(&target),
        "/api/write?cluster=c",
        move |batch| {
            (0..HOSTS)
                .map(|h| format!("m,hostname=h{h} value={batch} {t}\n"))
                .collect()
        },
        Arc::clone(&stop),
    );
    for round in 0..ROUNDS {
        thread::sleep(pause(round));
        let dir = relay.kill9();
        let (restarted, _) = start_relay_in(config.clone(), dir);
        relay = restarted;
        *target.lock().unwrap() = relay.addr.clone();
    }
    thread::sleep(pause(ROUNDS));
    stop.store(true, Ordering::Relaxed);
    let acknowledged = poster.join().unwrap();
    assert!(
        acknowledged.len() > ROUNDS * 5,
        "too little load to mean anything: {} batches",
        acknowledged.len()
    );

    // Every acknowledged batch reaches the upstream, each of its lines.
    let missing = || -> BTreeSet<(u64, usize)> {
        let delivered: BTreeSet<String> = stub
            .delivered_lines()
            .into_iter()
            .map(|l| {
                l.rsplit_once(' ')
                    .map_or(l.clone(), |(head, _)| head.to_owned())
            })
            .collect();
        acknowledged
            .iter()
            .flat_map(|&b| (0..HOSTS).map(move |h| (b, h)))
            .filter(|(b, h)| {
                !delivered.contains(&format!("m,cluster=c,hostname=h{h} value={b}"))
                    && !delivered.contains(&format!("m,hostname=h{h} value={b}"))
            })
            .collect()
    };
    let complete = wait_for(Duration::from_secs(60), || missing().is_empty());
    let lost = missing();
    assert!(
        complete,
        "{} of {} acknowledged lines never reached the upstream, e.g. {:?}; a delivered line \
         looks like {:?}\n{}",
        lost.len(),
        acknowledged.len() * HOSTS,
        lost.iter().take(5).collect::<Vec<_>>(),
        stub.delivered_lines().first(),
        relay.log_text()
    );
}

#[test]
fn store_killed_twenty_times_under_load_keeps_every_acknowledged_sample() {
    let mut config = store_config();
    config["metric-store"]["checkpoint-interval"] = json!("1s");
    let mut store = start_store_in(config.clone(), tempfile::tempdir().unwrap());
    let port: u16 = store.addr.rsplit(':').next().unwrap().parse().unwrap();
    let target = Arc::new(Mutex::new(store.addr.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    // Batch b is minute b of a day that ended an hour ago, for every host.
    let t0 = (now() - 25 * 3600) / 60 * 60;
    let poster = load(
        Arc::clone(&target),
        "/api/write",
        move |batch| {
            (0..HOSTS)
                .map(|h| {
                    format!(
                        "cpu_load,cluster=c,hostname=h{h} value={batch} {}\n",
                        t0 + 60 * batch as i64
                    )
                })
                .collect()
        },
        Arc::clone(&stop),
    );
    for round in 0..ROUNDS {
        thread::sleep(pause(round));
        let dir = store.kill9();
        store = common::start_store_on_in(config.clone(), port, dir);
    }
    thread::sleep(pause(ROUNDS));
    stop.store(true, Ordering::Relaxed);
    let acknowledged = poster.join().unwrap();
    assert!(
        acknowledged.len() > ROUNDS * 5,
        "too little load to mean anything: {} batches",
        acknowledged.len()
    );
    let last = *acknowledged.last().unwrap() as i64;
    // One more restart, so that what is checked is what the disk held.
    let dir = store.kill9();
    let store = common::start_store_on_in(config, port, dir);
    for h in 0..HOSTS {
        let q = json!({"cluster": "c", "from": t0, "to": t0 + 60 * (last + 1),
                       "with-padding": false,
                       "queries": [{"metric": "cpu_load", "host": format!("h{h}")}]});
        let r = store.request("GET", "/api/query", &[], q.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        let entry = &answer["results"][0][0];
        let from = entry["from"].as_i64().unwrap_or(t0);
        let data = entry["data"].as_array().cloned().unwrap_or_default();
        let lost: Vec<u64> = acknowledged
            .iter()
            .copied()
            .filter(|&b| {
                let slot = (t0 + 60 * b as i64 - from).div_euclid(60);
                usize::try_from(slot)
                    .ok()
                    .and_then(|i| data.get(i))
                    .and_then(serde_json::Value::as_f64)
                    != Some(b as f64)
            })
            .collect();
        assert!(
            lost.is_empty(),
            "host h{h}: {} of {} acknowledged samples missing, e.g. {:?}\n{}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(5)],
            store.log_text()
        );
    }
}
