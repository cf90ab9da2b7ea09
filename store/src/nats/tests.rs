use std::collections::BTreeMap;
use std::path::PathBuf;

use super::decoders::lane_of;
use super::subscription::RECEIVED_HEADER;
use super::*;
use crate::config::{Aggregation, MetricConfig};
use crate::registry::Registry;
use async_nats::Message;
use futures_util::Stream;
use tokio::sync::mpsc;

fn store() -> Arc<MetricStore> {
    let mut metrics = BTreeMap::new();
    for name in ["cpu_load", "mem_used"] {
        metrics.insert(
            name.to_owned(),
            MetricConfig {
                frequency: 60,
                aggregation: Aggregation::None,
            },
        );
    }
    Arc::new(MetricStore::new(Registry::new(&metrics)))
}

/// The values stored for `metric` at `path`, all chunks together.
fn values(store: &MetricStore, path: &[&str], metric: &str) -> Option<Vec<f64>> {
    let id = store.registry().id(metric)?;
    let level = store.root().find(path)?;
    let data = level.read();
    let chain = data.chains.get(id)?.as_ref()?;
    Some(chain.chunks().iter().flat_map(|c| c.data.clone()).collect())
}

/// The first timestamp stored for `metric` at `path`.
fn first_time(store: &MetricStore, path: &[&str], metric: &str) -> Option<i64> {
    let id = store.registry().id(metric)?;
    let level = store.root().find(path)?;
    let data = level.read();
    let chain = data.chains.get(id)?.as_ref()?;
    chain
        .chunks()
        .first()
        .map(crate::buffer::Chunk::first_write)
}

fn message(subject: &str, payload: &str) -> Message {
    Message {
        subject: subject.into(),
        reply: None,
        payload: bytes::Bytes::from(payload.to_owned()),
        headers: None,
        status: None,
        description: None,
        length: payload.len(),
    }
}

fn entry(subject: &str, cluster_tag: Option<&str>) -> NatsSubscription {
    NatsSubscription {
        subscribe_to: subject.to_owned(),
        cluster_tag: cluster_tag.map(str::to_owned),
    }
}

fn nats_config(address: &str) -> NatsConfig {
    NatsConfig {
        address: address.to_owned(),
        username: None,
        password: None,
        creds_file_path: None,
    }
}

fn decoders(store: &Arc<MetricStore>, workers: usize) -> Decoders {
    Decoders::new(
        Arc::clone(store),
        Arc::new(Status::new("store")),
        inbox_limits(workers, 2),
        workers,
    )
}

#[test]
fn options_take_address_credentials_and_creds_file() {
    let mut config = nats_config("nats://nats.example:4222");
    config.username = Some("cc".to_owned());
    config.password = Some("s3cret".to_owned());
    config.creds_file_path = Some(PathBuf::from("/etc/cc/store.creds"));
    let o = options(&config);
    assert_eq!(o.servers, vec!["nats://nats.example:4222"]);
    let (user, password) = o.auth.user_password.unwrap();
    assert_eq!((user.as_str(), password.expose()), ("cc", "s3cret"));
    assert_eq!(
        o.auth.creds_file.as_deref(),
        Some(std::path::Path::new("/etc/cc/store.creds"))
    );
    assert!(o.auth.token.is_none() && o.auth.nkey_seed.is_none());
    assert_eq!(o.tls, Tls::default());
    assert_eq!(o.client_name, "cc-store");
    assert!(o.subscription_capacity >= 1024);
}

#[test]
fn a_user_without_password_is_not_sent() {
    let mut config = nats_config("nats://h:4222");
    config.username = Some("cc".to_owned());
    assert!(options(&config).auth.user_password.is_none());
    config.username = None;
    config.password = Some("pw".to_owned());
    assert!(options(&config).auth.user_password.is_none());
}

#[test]
fn an_address_may_list_several_servers_as_the_go_client_accepts() {
    let o = options(&nats_config("nats://a:4222, nats://b:4222,,"));
    assert_eq!(o.servers, vec!["nats://a:4222", "nats://b:4222"]);
}

#[test]
fn inbox_limits_cover_a_long_restore_and_share_the_byte_cap() {
    let one = inbox_limits(4, 1);
    assert_eq!(one.messages, INBOX_MESSAGES);
    assert_eq!(one.bytes, INBOX_BYTES_TOTAL);
    // 1000 nodes, a message each every 10 s: over 20 minutes of restore.
    assert!(one.messages >= 1000 / 10 * 20 * 60);
    let two = inbox_limits(4, 2);
    assert_eq!(two.bytes * 2, INBOX_BYTES_TOTAL);
    assert_eq!(inbox_limits(1024, 1).messages, 1024 * 256);
    assert_eq!(inbox_limits(1, 1000).bytes, INBOX_BYTES_MIN);
}

#[tokio::test]
async fn each_subscription_stores_with_its_own_cluster_tag() {
    let store = store();
    let mut d = decoders(&store, 4);
    let a = Arc::new(Subscription::new(&entry("site.a", Some("alpha"))));
    let b = Arc::new(Subscription::new(&entry("site.b", Some("beta"))));
    // Many messages each, interleaved in time, so that with several workers a
    // shared queue would mix them up.
    let batch = |v: i64| {
        (0..50)
            .map(|i| {
                message(
                    "x",
                    &format!("cpu_load,hostname=h{i} value={v} {}\n", 1_700_000_000 + i),
                )
            })
            .collect::<Vec<_>>()
    };
    d.add(futures_util::stream::iter(batch(1)), Arc::clone(&a));
    d.add(futures_util::stream::iter(batch(2)), Arc::clone(&b));
    d.open();
    assert!(d.finish(Duration::from_secs(5)).await, "streams end");
    for i in 0..50 {
        let host = format!("h{i}");
        assert_eq!(
            values(&store, &["alpha", &host], "cpu_load"),
            Some(vec![1.0])
        );
        assert_eq!(
            values(&store, &["beta", &host], "cpu_load"),
            Some(vec![2.0])
        );
    }
    assert_eq!(store.root().child_names().len(), 2, "only alpha and beta");
    for sub in [&a, &b] {
        let c = sub.counts();
        assert_eq!(
            (c.received, c.messages, c.lines, c.written),
            (50, 50, 50, 50)
        );
    }
}

#[tokio::test]
async fn a_cluster_tag_in_the_line_wins_and_a_missing_subscription_tag_is_an_invalid_line() {
    let store = store();
    let mut d = decoders(&store, 1);
    let tagged = Arc::new(Subscription::new(&entry("t", Some("alpha"))));
    let untagged = Arc::new(Subscription::new(&entry("u", None)));
    let msgs = |_| {
        vec![message(
            "x",
            "cpu_load,cluster=gamma,hostname=h value=3 1700000000\ncpu_load,hostname=h value=4 1700000000\n",
        )]
    };
    d.add(futures_util::stream::iter(msgs(0)), Arc::clone(&tagged));
    d.add(futures_util::stream::iter(msgs(1)), Arc::clone(&untagged));
    d.open();
    d.finish(Duration::from_secs(5)).await;
    assert_eq!(values(&store, &["gamma", "h"], "cpu_load"), Some(vec![3.0]));
    assert_eq!(values(&store, &["alpha", "h"], "cpu_load"), Some(vec![4.0]));
    assert_eq!(untagged.counts().invalid_lines, 1);
    assert_eq!(tagged.counts().invalid_lines, 0);
}

#[tokio::test]
async fn invalid_lines_are_counted_and_the_lines_around_them_stored() {
    let store = store();
    let mut d = decoders(&store, 2);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    let body = "cpu_load,hostname=h value=1 1700000000\n\
                cpu_load,hostname=h value=oops 1700000060\n\
                cpu_load,hostname=h value=3 1700000120\n";
    let stream = futures_util::stream::iter((0..3).map(|_| message("s", body)));
    d.add(stream, Arc::clone(&sub));
    d.open();
    d.finish(Duration::from_secs(5)).await;
    assert_eq!(
        values(&store, &["c", "h"], "cpu_load").map(|v| (v.len(), v[0], v[2])),
        Some((3, 1.0, 3.0))
    );
    let c = sub.counts();
    assert_eq!(
        (
            c.messages,
            c.lines,
            c.written,
            c.invalid_lines,
            c.invalid_messages
        ),
        (3, 9, 6, 3, 3)
    );
    assert_eq!(c.bytes, 3 * body.len() as u64);
}

/// A stream fed by hand, and the sender feeding it.
fn hand_fed() -> (
    mpsc::UnboundedSender<Message>,
    impl Stream<Item = Message> + Unpin + Send + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (tx, stream)
}

/// Lets the spawned inbox and decoder tasks run for a while.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn nothing_is_decoded_before_open_and_nothing_taken_is_lost() {
    let store = store();
    let mut d = decoders(&store, 2);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    let (tx, stream) = hand_fed();
    d.add(stream, Arc::clone(&sub));
    for i in 0..10 {
        tx.send(message(
            "s",
            &format!("cpu_load,hostname=h value={i} {}\n", 1_700_000_000 + 60 * i),
        ))
        .unwrap();
    }
    settle().await;
    assert_eq!(sub.counts().received, 10, "taken from the subscription");
    assert_eq!(sub.counts().messages, 0, "but not decoded");
    assert!(store.root().child_names().is_empty());
    d.open();
    drop(tx);
    assert!(d.finish(Duration::from_secs(5)).await);
    let expected: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(values(&store, &["c", "h"], "cpu_load"), Some(expected));
}

#[tokio::test]
async fn finishing_stops_a_stream_that_does_not_end_and_decodes_what_arrived() {
    let store = store();
    let mut d = decoders(&store, 1);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    let (tx, stream) = hand_fed();
    d.add(stream, Arc::clone(&sub));
    for i in 0..5 {
        tx.send(message(
            "s",
            &format!("mem_used,hostname=h value={i} {}\n", 1_700_000_000 + 60 * i),
        ))
        .unwrap();
    }
    d.open();
    // The sender stays alive, like a client that cannot drain.
    let ended = d.finish(Duration::from_millis(100)).await;
    assert!(!ended);
    assert_eq!(sub.counts().messages, 5);
    assert_eq!(
        values(&store, &["c", "h"], "mem_used").map(|v| v.len()),
        Some(5)
    );
    drop(tx);
}

#[test]
fn a_line_without_timestamp_gets_the_arrival_time() {
    let store = store();
    let sub = Subscription::new(&entry("s", Some("c")));
    let mut m = message("s", "cpu_load,hostname=h value=7\n");
    m.headers
        .get_or_insert_default()
        .insert(RECEIVED_HEADER, "1700000000");
    let report = decode(&store, &sub, &m);
    assert_eq!(report.written, 1);
    assert_eq!(
        first_time(&store, &["c", "h"], "cpu_load"),
        Some(1_700_000_000)
    );
}

#[tokio::test]
async fn arriving_messages_are_stamped() {
    let store = store();
    let mut d = decoders(&store, 1);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    let before = cc_common::time::now_secs();
    d.add(
        futures_util::stream::iter(vec![message("s", "cpu_load,hostname=h value=7\n")]),
        Arc::clone(&sub),
    );
    d.open();
    d.finish(Duration::from_secs(5)).await;
    let after = cc_common::time::now_secs();
    let t = first_time(&store, &["c", "h"], "cpu_load").unwrap();
    assert!((before..=after).contains(&t), "{before} <= {t} <= {after}");
}

#[tokio::test]
async fn messages_beyond_the_inbox_limit_are_dropped_and_counted() {
    let store = store();
    let status = Arc::new(Status::new("store"));
    let limits = InboxLimits {
        messages: 3,
        bytes: 1 << 20,
    };
    let mut d = Decoders::new(Arc::clone(&store), Arc::clone(&status), limits, 1);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    let msgs =
        (0..10).map(|i| message("s", &format!("cpu_load,hostname=h{i} value=1 1700000000\n")));
    // Not opened: the first messages fill the inbox (one more waits in the
    // decoder for a permit).
    d.add(
        futures_util::stream::iter(msgs.collect::<Vec<_>>()),
        Arc::clone(&sub),
    );
    settle().await;
    d.open();
    d.finish(Duration::from_secs(5)).await;
    let c = sub.counts();
    assert_eq!(c.received, 10);
    assert_eq!(c.messages + status.dropped(), 10);
    assert!(status.dropped() >= 6, "dropped {}", status.dropped());
}

#[tokio::test]
async fn the_messages_of_one_subject_are_stored_in_order_with_many_workers() {
    let store = store();
    let mut d = decoders(&store, 8);
    let sub = Arc::new(Subscription::new(&entry("s", Some("c"))));
    // A new series over more than one chunk: out of order, its first sample
    // and the first of the second chunk would be refused as too old.
    let msgs: Vec<Message> = (0..600)
        .map(|i| {
            message(
                "s",
                &format!("cpu_load,hostname=h value={i} {}\n", 1_700_000_000 + 60 * i),
            )
        })
        .collect();
    d.add(futures_util::stream::iter(msgs), Arc::clone(&sub));
    d.open();
    d.finish(Duration::from_secs(5)).await;
    let expected: Vec<f64> = (0..600).map(f64::from).collect();
    assert_eq!(values(&store, &["c", "h"], "cpu_load"), Some(expected));
    assert_eq!(sub.counts().too_old, 0);
}

#[test]
fn a_subject_keeps_its_lane_and_subjects_spread_over_lanes() {
    assert_eq!(lane_of(0, "hpc.n1", 8), lane_of(0, "hpc.n1", 8));
    let used: std::collections::HashSet<usize> = (0..100)
        .map(|i| lane_of(0, &format!("hpc.n{i}"), 8))
        .collect();
    assert!(used.len() >= 6, "{used:?}");
    assert!((0..100).all(|i| lane_of(i, "x", 3) < 3));
    assert_eq!(lane_of(5, "x", 0), 0);
}
