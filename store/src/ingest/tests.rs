use std::collections::BTreeMap;

use super::*;
/// The store's clock in these tests: after every timestamp they write.
const NOW: i64 = 2_000_000_000;

use crate::config::{Aggregation, MetricConfig};
use crate::registry::Registry;

fn store() -> MetricStore {
    let mut metrics = BTreeMap::new();
    for (name, aggregation) in [
        ("cpu_load", Aggregation::None),
        ("flops_any", Aggregation::Sum),
        ("mem_bw", Aggregation::Sum),
        ("net_bw", Aggregation::Sum),
        ("acc_utilization", Aggregation::Avg),
    ] {
        metrics.insert(
            name.to_owned(),
            MetricConfig {
                frequency: 60,
                aggregation,
            },
        );
    }
    MetricStore::new(Registry::new(&metrics))
}

fn values(store: &MetricStore, path: &[&str], metric: &str) -> Vec<f64> {
    let id = store.registry().id(metric).unwrap();
    let level = store
        .root()
        .find(path)
        .unwrap_or_else(|| panic!("no level {path:?}"));
    let data = level.read();
    let chain = data.chains.get(id).and_then(Option::as_ref).expect("chain");
    chain.chunks().iter().flat_map(|c| c.data.clone()).collect()
}

#[test]
fn places_samples_by_tags() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=h,type=node value=1 1700000000
flops_any,cluster=c,hostname=h,type=hwthread,type-id=3 value=2 1700000000
flops_any,cluster=c,hostname=h,type-id=3,type=socket value=3 1700000000
acc_utilization,cluster=c,hostname=h,type=accelerator,type-id=00000000:49:00.0 value=4 1700000000
mem_bw,cluster=c,hostname=h,type=socket,type-id=0,stype=memctrl,stype-id=1 value=5 1700000000
net_bw,cluster=c,hostname=h,type=node,stype=network,stype-id=eth0 value=6 1700000000
cpu_load,cluster=c,host=h2,type=node,type-id=0 value=7 1700000000
cpu_load,hostname=h3 value=8 1700000000
";
    let report = ingest(&s, body, "d", NOW);
    assert_eq!(report.written, 8, "{report:?}");
    assert_eq!(values(&s, &["c", "h"], "cpu_load"), [1.0]);
    assert_eq!(values(&s, &["c", "h", "hwthread3"], "flops_any"), [2.0]);
    assert_eq!(values(&s, &["c", "h", "socket3"], "flops_any"), [3.0]);
    assert_eq!(
        values(
            &s,
            &["c", "h", "accelerator00000000:49:00.0"],
            "acc_utilization"
        ),
        [4.0]
    );
    assert_eq!(
        values(&s, &["c", "h", "socket0", "memctrl1"], "mem_bw"),
        [5.0]
    );
    assert_eq!(
        values(&s, &["c", "h"], "net_bw"),
        [6.0],
        "stype without type is dropped"
    );
    assert_eq!(
        values(&s, &["c", "h2", "0"], "cpu_load"),
        [7.0],
        "type=node,type-id=0 quirk"
    );
    assert_eq!(
        values(&s, &["d", "h3"], "cpu_load"),
        [8.0],
        "default cluster"
    );
}

#[test]
fn unknown_metrics_are_skipped_even_when_malformed() {
    let s = store();
    let body = b"unknown_metric,cluster=c,hostname=h value=1 1700000000
unknown_metric,cluster=c,hostname=h,broken value=1
cpu_load,cluster=c,hostname=h value=2 1700000000
";
    let report = ingest(&s, body, "", NOW);
    assert_eq!(
        (report.written, report.unknown_metric(), report.invalid()),
        (1, 2, 0)
    );
    assert_eq!(report.invalid_lines(), None);
}

#[test]
fn a_broken_measurement_is_an_error_whatever_the_metric() {
    // No name, or bytes that are not UTF-8 in the name: a syntax error in
    // the measurement (spec §2.3 step 1), not an unknown metric. Bytes that
    // are not UTF-8 after the name of an unknown metric are skipped with it.
    let s = store();
    let body = b",hostname=x value=1 1700000000
cpu\xffload,hostname=x value=1 1700000000
  \xff,hostname=x value=1 1700000000
unknown_metric,hostname=\xff value=1 1700000000
cpu_load,cluster=c,hostname=h value=2 1700000000
";
    let report = ingest(&s, body, "c", NOW);
    assert_eq!(
        (report.written, report.unknown_metric(), report.invalid()),
        (1, 1, 3),
        "{report:?}"
    );
    assert_eq!(report.rejected(Rejection::Syntax), 3);
    assert!(
        report
            .invalid_lines()
            .unwrap()
            .to_string()
            .starts_with("at line 1:1: missing measurement name"),
        "{}",
        report.invalid_lines().unwrap()
    );
}

#[test]
fn bad_lines_are_reported_and_good_ones_stored() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=h value=1 1700000000
cpu_load,cluster=c,hostname=h value=\"x\" 1700000060
cpu_load,cluster=c,hostname=h foo=1 1700000060
cpu_load,cluster=c,hostname value=1 1700000060
cpu_load,cluster=c,hostname=h value=2 1700000060
";
    let report = ingest(&s, body, "", NOW);
    assert_eq!((report.written, report.invalid()), (2, 3), "{report:?}");
    assert_eq!(
        report.invalid_lines().unwrap().to_string(),
        "at line 2: host h: unsupported value type in message: string (and 2 more invalid lines)"
    );
    assert_eq!(
        (
            report.rejected(Rejection::BadField),
            report.rejected(Rejection::Syntax)
        ),
        (2, 1)
    );
    assert_eq!(values(&s, &["c", "h"], "cpu_load"), [1.0, 2.0]);
}

#[test]
fn unknown_field_names_the_host_and_value() {
    let s = store();
    let report = ingest(
        &s,
        b"cpu_load,cluster=c,hostname=h foo=1.5 1700000000\n",
        "",
        NOW,
    );
    assert_eq!(
        report.invalid_lines().unwrap().to_string(),
        "at line 1: host h: unknown field: 'foo' (value: 1.5)"
    );
}

#[test]
fn integer_and_unsigned_values_are_accepted() {
    let s = store();
    let report = ingest(
        &s,
        b"cpu_load,cluster=c,hostname=h value=1i 1700000000\ncpu_load,cluster=c,hostname=h value=2u 1700000060\n",
        "",
        NOW,
    );
    assert_eq!(report.written, 2);
    assert_eq!(values(&s, &["c", "h"], "cpu_load"), [1.0, 2.0]);
}

#[test]
fn missing_timestamps_take_the_previous_line_or_now() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=a value=1
cpu_load,cluster=c,hostname=b value=2 1700000000
cpu_load,cluster=c,hostname=c value=3
";
    ingest(&s, body, "", 1_700_000_300);
    let start_of = |host: &str| {
        let id = s.registry().id("cpu_load").unwrap();
        let level = s.root().find(&["c", host]).unwrap();
        let data = level.read();
        data.chains[id].as_ref().unwrap().head().unwrap().start
    };
    assert_eq!(start_of("a"), 1_700_000_300 - 30);
    assert_eq!(start_of("b"), 1_700_000_000 - 30);
    assert_eq!(start_of("c"), 1_700_000_000 - 30);
}

#[test]
fn sub_second_timestamps_are_converted_to_seconds() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=ms value=1 1700000000123
cpu_load,cluster=c,hostname=us value=1 1700000000123456
cpu_load,cluster=c,hostname=ns value=1 1700000000123456789
";
    assert_eq!(ingest(&s, body, "", NOW).written, 3);
    for host in ["ms", "us", "ns"] {
        let id = s.registry().id("cpu_load").unwrap();
        let level = s.root().find(&["c", host]).unwrap();
        let start = level.read().chains[id]
            .as_ref()
            .unwrap()
            .head()
            .unwrap()
            .start;
        assert_eq!(start, 1_700_000_000 - 30, "{host}");
    }
}

#[test]
fn unsafe_names_are_skipped_and_the_batch_stays_valid() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=../etc value=1 1700000000
cpu_load,cluster=a/b,hostname=h value=1 1700000000
cpu_load,cluster=c,hostname=a\\\\b value=1 1700000000
cpu_load,cluster=c,hostname=. value=1 1700000000
cpu_load,cluster=..,hostname=h value=1 1700000000
cpu_load,cluster=c,hostname=ok value=1 1700000000
";
    let report = ingest(&s, body, "", NOW);
    assert_eq!(
        (
            report.written,
            report.rejected(Rejection::UnsafeName),
            report.invalid()
        ),
        (1, 5, 0),
        "{report:?}"
    );
    assert_eq!(report.invalid_lines(), None, "a write is answered 200");
    assert_eq!(s.root().child_names(), ["c"]);
    assert_eq!(s.root().find(&["c"]).unwrap().child_names(), ["ok"]);
}

#[test]
fn unsafe_name_rule() {
    for bad in [".", "..", "a..b", "../x", "a/b", "/", "a\\b", "a\0b"] {
        assert!(is_unsafe_name(bad), "{bad:?}");
    }
    assert!(!is_unsafe_name(&"n".repeat(MAX_NAME_BYTES)));
    assert!(
        is_unsafe_name(&"n".repeat(MAX_NAME_BYTES + 1)),
        "longer than a file name"
    );
    for good in ["", "a", "a.b", ".a", "a.", "node-01", "00000000:49:00.0"] {
        assert!(!is_unsafe_name(good), "{good:?}");
    }
}

#[test]
fn missing_host_or_cluster_are_errors() {
    let s = store();
    let body = b"cpu_load,cluster=c value=1 1700000000
cpu_load,hostname=h value=1 1700000000
cpu_load,cluster=c,hostname=ok value=1 1700000000
";
    let report = ingest(&s, body, "", NOW);
    assert_eq!((report.written, report.invalid()), (1, 2), "{report:?}");
    assert_eq!(
        (
            report.rejected(Rejection::NoHost),
            report.rejected(Rejection::NoCluster)
        ),
        (1, 1)
    );
    assert_eq!(
        report.invalid_lines().unwrap().to_string(),
        "at line 1: line has no hostname (or host) tag (and 1 more invalid lines)"
    );
    assert_eq!(
        LineError::NoCluster {
            line: 2,
            host: "h".into()
        }
        .to_string(),
        "at line 2: host h: no cluster (neither a cluster tag nor ?cluster=)"
    );
}

#[test]
fn lines_without_cluster_tag_never_land_in_the_previous_host() {
    let s = store();
    let body = b"cpu_load,cluster=x,hostname=h value=1 1700000000
cpu_load,hostname=h value=2 1700000000
";
    ingest(&s, body, "d", NOW);
    assert_eq!(values(&s, &["x", "h"], "cpu_load"), [1.0]);
    assert_eq!(values(&s, &["d", "h"], "cpu_load"), [2.0]);
}

#[test]
fn samples_older_than_the_head_are_counted_not_errors() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=h value=1 1700000000
cpu_load,cluster=c,hostname=h value=2 1600000000
";
    let report = ingest(&s, body, "", NOW);
    assert_eq!(
        (report.written, report.too_old(), report.invalid()),
        (1, 1, 0)
    );
}

#[test]
fn empty_body_does_nothing() {
    let s = store();
    let report = ingest(&s, b"", "c", NOW);
    assert_eq!((report.lines, report.written, report.invalid()), (0, 0, 0));
    assert!(report.first_error.is_none() && report.wal_error.is_none());
}

#[test]
fn timestamps_out_of_range_are_errors_not_slots() {
    let s = store();
    let body = b"cpu_load,cluster=c,hostname=h value=1 -5\ncpu_load,cluster=c,hostname=h value=1 -1000000000000\ncpu_load,cluster=c,hostname=h value=2 1000\n";
    let report = ingest(&s, body, "", NOW);
    assert_eq!((report.invalid(), report.written), (2, 1));
    assert_eq!(report.rejected(Rejection::BadTimestamp), 2);
    assert!(
        report
            .first_error
            .unwrap()
            .to_string()
            .contains("out of range")
    );
}

#[test]
fn every_rejection_has_its_own_counter_and_label() {
    for (i, reason) in Rejection::ALL.iter().enumerate() {
        assert_eq!(reason.index(), i, "{reason:?}");
    }
    let mut labels: Vec<&str> = Rejection::ALL.iter().map(|r| r.label()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Rejection::COUNT);
    let skipped: Vec<&str> = Rejection::ALL
        .iter()
        .filter(|r| !r.is_error())
        .map(|r| r.label())
        .collect();
    assert_eq!(skipped, ["unknown_metric", "too_old", "unsafe_name"]);
}

#[test]
fn levels_found_again_within_a_batch_stay_with_their_host() {
    let s = store();
    // Hosts come back after others, with the same and with other
    // sub-levels; `socket0` + `memctrl1` and `socket01` are different levels.
    let body = b"flops_any,cluster=c,hostname=a,type=hwthread,type-id=1 value=1 1700000000
flops_any,cluster=c,hostname=a,type=hwthread,type-id=2 value=2 1700000000
flops_any,cluster=c,hostname=b,type=hwthread,type-id=1 value=3 1700000000
mem_bw,cluster=c,hostname=b,type=socket,type-id=0,stype=memctrl,stype-id=1 value=4 1700000000
mem_bw,cluster=c,hostname=b,type=socket,type-id=01 value=5 1700000000
flops_any,cluster=c,hostname=a,type=hwthread,type-id=1 value=6 1700000060
flops_any,cluster=c,hostname=a value=7 1700000000
flops_any,cluster=c,hostname=b,type=hwthread,type-id=1 value=8 1700000060
mem_bw,cluster=c,hostname=b,type=socket,type-id=0,stype=memctrl,stype-id=1 value=9 1700000060
";
    let report = ingest(&s, body, "d", NOW);
    assert_eq!(report.written, 9, "{report:?}");
    assert_eq!(
        values(&s, &["c", "a", "hwthread1"], "flops_any"),
        [1.0, 6.0]
    );
    assert_eq!(values(&s, &["c", "a", "hwthread2"], "flops_any"), [2.0]);
    assert_eq!(values(&s, &["c", "a"], "flops_any"), [7.0]);
    assert_eq!(
        values(&s, &["c", "b", "hwthread1"], "flops_any"),
        [3.0, 8.0]
    );
    assert_eq!(
        values(&s, &["c", "b", "socket0", "memctrl1"], "mem_bw"),
        [4.0, 9.0]
    );
    assert_eq!(values(&s, &["c", "b", "socket01"], "mem_bw"), [5.0]);
}

/// A store whose configuration has no `metrics` section.
fn learning_store() -> MetricStore {
    let mut known = BTreeMap::new();
    known.insert(
        "flops_any".to_owned(),
        MetricConfig {
            frequency: 60,
            aggregation: Aggregation::Sum,
        },
    );
    MetricStore::new(Registry::learning(&known))
}

fn chunk_frequencies(store: &MetricStore, path: &[&str], metric: &str) -> Vec<i64> {
    let id = store.registry().id(metric).unwrap();
    let level = store.root().find(path).unwrap();
    let data = level.read();
    let chain = data.chains.get(id).and_then(Option::as_ref).expect("chain");
    chain.chunks().iter().map(|c| c.frequency).collect()
}

#[test]
fn without_configured_metrics_every_metric_is_learned_with_its_interval() {
    let s = learning_store();
    // First interval: two hosts, one new metric each; both registered at
    // the provisional frequency.
    let report = ingest(
        &s,
        b"my_gauge,cluster=c,hostname=a value=1 1700000000\n\
          my_gauge,cluster=c,hostname=b value=2 1700000000\n\
          flops_any,cluster=c,hostname=a,type=hwthread,type-id=0 value=3 1700000000\n",
        "",
        NOW,
    );
    assert_eq!(report.written, 3, "{report:?}");
    assert_eq!(report.unknown_metric(), 0);
    let (_, info) = s.registry().lookup("my_gauge").unwrap();
    assert!(!info.is_settled());
    assert_eq!(info.frequency(), crate::registry::PROVISIONAL_FREQUENCY);
    // Aggregation: the built-in list's for names it knows, null otherwise.
    assert_eq!(info.aggregation, Aggregation::None);
    assert_eq!(
        s.registry().lookup("flops_any").unwrap().1.aggregation,
        Aggregation::Sum
    );

    // Second interval, 10 s later: the distance is the frequency, and the
    // first samples move onto the new slots of every host.
    for k in 1..=3 {
        let t = 1_700_000_000 + 10 * k;
        let body = format!(
            "my_gauge,cluster=c,hostname=a value={} {t}\nmy_gauge,cluster=c,hostname=b value={} {t}\n",
            1 + k,
            2 + k
        );
        let report = ingest(&s, body.as_bytes(), "", NOW);
        assert_eq!(report.written, 2, "{report:?}");
    }
    let (_, info) = s.registry().lookup("my_gauge").unwrap();
    assert!(info.is_settled());
    assert_eq!(info.frequency(), 10);
    assert_eq!(values(&s, &["c", "a"], "my_gauge"), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(values(&s, &["c", "b"], "my_gauge"), [2.0, 3.0, 4.0, 5.0]);
    assert_eq!(chunk_frequencies(&s, &["c", "b"], "my_gauge"), [10]);
}

#[test]
fn an_empty_metrics_section_still_accepts_nothing() {
    let s = MetricStore::new(Registry::new(&BTreeMap::new()));
    let report = ingest(
        &s,
        b"my_gauge,cluster=c,hostname=a value=1 1700000000\n",
        "",
        NOW,
    );
    assert_eq!(report.written, 0);
    assert_eq!(report.unknown_metric(), 1);
    assert!(s.registry().is_empty());
}

#[test]
fn samples_more_than_ten_minutes_ahead_are_errors_and_do_not_block_the_series() {
    let s = store();
    let now = 1_700_000_000;
    let body = format!(
        "cpu_load,cluster=c,hostname=h value=9 {}\n\
         cpu_load,cluster=c,hostname=h value=1 {now}\n\
         cpu_load,cluster=c,hostname=ok value=2 {}\n",
        now + MAX_FUTURE + 1,
        now + MAX_FUTURE
    );
    let report = ingest(&s, body.as_bytes(), "", now);
    assert_eq!(report.written, 2, "{report:?}");
    assert_eq!(report.rejected(Rejection::BadTimestamp), 1);
    assert_eq!(
        report.invalid_lines().unwrap().to_string(),
        "at line 1: timestamp 1700000601 is 601 s ahead of the store's clock (at most 600 s); \
         is the sender's clock right?"
    );
    assert_eq!(values(&s, &["c", "h"], "cpu_load"), [1.0]);
    assert_eq!(values(&s, &["c", "ok"], "cpu_load"), [2.0]);
}
