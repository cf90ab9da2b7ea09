use super::*;
use crate::persist::Persistence;
use crate::persist::restore::RestoreProgress;
use crate::registry::Registry;
use crate::store::MetricStore;

fn sources(dir: &std::path::Path, store: &Arc<MetricStore>) -> StatusSources {
    let persistence =
        Arc::new(Persistence::new(dir, crate::persist::Format::Bin, true, 0).unwrap());
    let restore = Arc::new(RestoreProgress::default());
    restore.done.store(true, Ordering::Release);
    let sources = Sources {
        store: Arc::clone(store),
        persistence,
        restore,
        memory_cap: 1 << 30,
    };
    StatusSources {
        metrics: Arc::new(Metrics::new(sources.clone())),
        sources,
        checkpoint_interval: Duration::from_secs(3600),
        started: cc_common::time::now_secs() - 100,
        rates: parking_lot::Mutex::default(),
    }
}

fn store() -> Arc<MetricStore> {
    use crate::config::{Aggregation, MetricConfig};
    let metric = |aggregation| MetricConfig {
        frequency: 60,
        aggregation,
    };
    let metrics = BTreeMap::from([
        ("cpu_load".to_owned(), metric(Aggregation::None)),
        ("flops_any".to_owned(), metric(Aggregation::Sum)),
    ]);
    Arc::new(MetricStore::new(Registry::new(&metrics)))
}

/// The text a reader sees in `html` (tags dropped, entities decoded).
fn visible(html: &str) -> String {
    cc_common::status_page::visible_text(html)
}

#[test]
fn silent_hosts_are_listed_by_name_per_cluster_with_their_newest_sample() {
    let dir = tempfile::tempdir().unwrap();
    let store = store();
    let now = cc_common::time::now_secs();
    let root = store.root();
    // Fresh: written now. Silent: six periods ago (the rule is five).
    root.find_or_create(&["fritz", "f0101"])
        .write_sample(0, 60, now, 1.0)
        .unwrap();
    root.find_or_create(&["fritz", "f0102"])
        .write_sample(0, 60, now - 360, 1.0)
        .unwrap();
    // A host with only a fresh socket-level series reports.
    root.find_or_create(&["fritz", "f0103", "socket0"])
        .write_sample(1, 60, now, 1.0)
        .unwrap();
    root.find_or_create(&["alex", "a<0201>"])
        .write_sample(0, 60, now - 4000, 1.0)
        .unwrap();
    let snapshot = sources(dir.path(), &store).snapshot();
    assert_eq!(
        (snapshot.clusters, snapshot.hosts, snapshot.metrics),
        (2, 4, 2)
    );
    assert_eq!(snapshot.silent_after_periods, 5);
    type Listed<'a> = (&'a str, usize, Vec<(&'a str, Option<i64>)>);
    let clusters: Vec<Listed<'_>> = snapshot
        .per_cluster
        .iter()
        .map(|c| {
            let silent = c
                .silent_hosts
                .iter()
                .map(|h| (h.host.as_str(), h.last_sample_time))
                .collect();
            (c.cluster.as_str(), c.hosts, silent)
        })
        .collect();
    assert_eq!(
        clusters,
        [
            ("alex", 1, vec![("a<0201>", Some(now - 4000))]),
            ("fritz", 3, vec![("f0102", Some(now - 360))]),
        ]
    );
    let html = snapshot.render();
    let text = visible(&html);
    for expected in [
        "Hosts not reporting",
        "a<0201>",
        "1 h 6 min ago",
        "f0102",
        "6 min 0 s ago",
        "2 clusters, 4 hosts",
        "2 configured metrics",
        "of 1.00 GiB memory-cap",
        "loaded at start",
        "none since start (every 1 h 0 min)",
        "rates appear on the next reload",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(html.contains("a&lt;0201&gt;"), "names are escaped");
    assert!(!html.contains("<0201>"));
}

#[test]
fn ingest_rates_appear_on_the_second_look() {
    let dir = tempfile::tempdir().unwrap();
    let store = store();
    let sources = sources(dir.path(), &store);
    let first = sources.snapshot();
    assert_eq!(first.rate_window_seconds, None);
    assert_eq!(first.ingest[0].lines_per_second, None);
    // The window needs two looks at least its minimum span apart: feed it
    // an old look directly rather than waiting.
    {
        let mut w = sources.rates.lock();
        *w = RateWindow::default();
        let mut old = BTreeMap::new();
        old.insert("lines:http".to_owned(), 0);
        let _ = w.observe(Instant::now() - Duration::from_secs(4), old);
    }
    let now = cc_common::time::now_secs();
    let report = crate::ingest::ingest(
        &store,
        format!("cpu_load,cluster=c,hostname=h value=1 {now}\n").as_bytes(),
        "",
        now,
    );
    store.count_batch(Source::Http, 40, &report);
    let second = sources.snapshot();
    let http = &second.ingest[0];
    assert_eq!((http.source, http.lines, http.samples), ("http", 1, 1));
    let rate = http.lines_per_second.unwrap();
    assert!(rate > 0.1 && rate <= 0.25, "{rate}");
    assert!(second.rate_window_seconds.unwrap() >= 4.0);
    assert_eq!(http.samples_per_second, None, "not in the old look");
}

#[test]
fn restore_progress_and_an_overdue_checkpoint_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let store = store();
    let sources = sources(dir.path(), &store);
    let r = &sources.sources.restore;
    r.done.store(false, Ordering::Release);
    r.hosts_total.store(40, Ordering::Relaxed);
    r.hosts_done.store(12, Ordering::Relaxed);
    let mut snapshot = sources.snapshot();
    assert!(snapshot.restore.in_progress);
    snapshot.checkpoint.last_success_time = snapshot.time - 3 * 3600;
    snapshot.memory_used_bytes = 1000 << 20;
    let text = visible(&snapshot.render());
    for expected in [
        "loading: 12 of 40 hosts",
        "3 h 0 min ago",
        "overdue",
        "1000 MiB of 1.00 GiB memory-cap (98 %)",
        "Every host reports.",
        "No data yet.",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn json_names_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let store = store();
    let json = serde_json::to_value(sources(dir.path(), &store).snapshot()).unwrap();
    for key in [
        "version",
        "time",
        "start_time",
        "restore",
        "clusters",
        "hosts",
        "metrics",
        "series",
        "memory_used_bytes",
        "memory_cap_bytes",
        "rate_window_seconds",
        "ingest",
        "checkpoint",
        "nats",
        "silent_after_periods",
        "per_cluster",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(json["checkpoint"]["interval_seconds"], 3600);
    assert_eq!(json["ingest"][1]["source"], "nats");
    assert_eq!(json["restore"]["in_progress"], false);
}
