use std::collections::BTreeMap;

use super::*;
use crate::config::MetricConfig;
use crate::ingest::ingest;
use crate::registry::Registry;

fn store() -> MetricStore {
    let mut metrics = BTreeMap::new();
    for (name, frequency, aggregation) in [
        ("cpu_load", 60, Aggregation::None),
        ("flops_any", 60, Aggregation::Sum),
        ("clock", 60, Aggregation::Avg),
        ("mem_bw", 10, Aggregation::Sum),
    ] {
        metrics.insert(
            name.to_owned(),
            MetricConfig {
                frequency,
                aggregation,
            },
        );
    }
    MetricStore::new(Registry::new(&metrics))
}

fn write(store: &MetricStore, body: &str) {
    let report = ingest(store, body.as_bytes(), "", crate::ingest::MAX_TIMESTAMP);
    assert_eq!(report.invalid(), 0, "{report:?}");
}

fn query(store: &MetricStore, body: &str) -> String {
    let req = QueryRequest::from_body(body.as_bytes()).unwrap();
    String::from_utf8(render(&execute(store, &req))).unwrap()
}

fn worked_example() -> MetricStore {
    let s = store();
    write(
        &s,
        "cpu_load,cluster=c,hostname=h value=1 1000\ncpu_load,cluster=c,hostname=h value=2 1060\ncpu_load,cluster=c,hostname=h value=3 1120\n",
    );
    s
}

#[test]
fn worked_example_byte_for_byte() {
    let s = worked_example();
    assert_eq!(
        query(
            &s,
            r#"{"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]}"#
        ),
        "{\"results\":[[{\"data\":[null,1.000,2.000,3.000],\"from\":1000,\"to\":1180,\"resolution\":60,\"avg\":2.00,\"min\":1.00,\"max\":3.00}]]}\n"
    );
    assert_eq!(
        query(
            &s,
            r#"{"cluster":"c","from":1030,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]}"#
        ),
        "{\"results\":[[{\"data\":[2.000,3.000],\"from\":1030,\"to\":1150,\"resolution\":60,\"avg\":2.50,\"min\":2.00,\"max\":3.00}]]}\n"
    );
}

#[test]
fn resolution_rules() {
    let s = worked_example();
    let out = query(
        &s,
        r#"{"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_load","host":"h","resolution":90}]}"#,
    );
    assert_eq!(
        out,
        "{\"results\":[[{\"error\":\"new sampling frequency (90) must be a multiple of old frequency (60)\",\"from\":0,\"to\":0,\"resolution\":0,\"avg\":0.00,\"min\":0.00,\"max\":0.00}]]}\n"
    );
    let out = query(
        &s,
        r#"{"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_load","host":"h","resolution":120}]}"#,
    );
    assert!(out.contains("\"resolution\":60"), "{out}");
}

#[test]
fn long_series_are_downsampled_with_lttb() {
    let s = store();
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!(
            "cpu_load,cluster=c,hostname=h value={} {}\n",
            i % 7,
            1_000_000 + i * 60
        ));
    }
    write(&s, &body);
    let req = QueryRequest::from_body(
        br#"{"cluster":"c","from":1000000,"to":1200000,"queries":[{"metric":"cpu_load","host":"h","resolution":240}]}"#,
    )
    .unwrap();
    let entry = &execute(&s, &req).results[0][0];
    assert_eq!(entry.resolution, 240);
    assert_eq!(entry.data.as_ref().unwrap().len(), 500);
}

#[test]
fn unknown_metric_and_bad_range_are_error_entries() {
    let s = worked_example();
    let out = query(
        &s,
        r#"{"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_laod","host":"h"}]}"#,
    );
    assert_eq!(
        out,
        "{\"results\":[[{\"error\":\"[METRICSTORE]> unknown metric: cpu_laod\",\"from\":0,\"to\":0,\"resolution\":0,\"avg\":0.00,\"min\":0.00,\"max\":0.00}]]}\n"
    );
    let out = query(
        &s,
        r#"{"cluster":"c","from":1200,"to":900,"queries":[{"metric":"cpu_load","host":"h"}]}"#,
    );
    assert!(out.contains("[METRICSTORE]> invalid time range"), "{out}");
}

fn hwthreads() -> MetricStore {
    let s = store();
    let mut body = String::new();
    for t in 0..4 {
        for (i, ts) in [1000, 1060, 1120].iter().enumerate() {
            body.push_str(&format!(
                "flops_any,cluster=c,hostname=h,type=hwthread,type-id={t} value={} {ts}\n",
                t * 10 + i
            ));
            body.push_str(&format!(
                "clock,cluster=c,hostname=h,type=hwthread,type-id={t} value={} {ts}\n",
                (t + 1) * 1000
            ));
            body.push_str(&format!(
                "cpu_load,cluster=c,hostname=h,type=hwthread,type-id={t} value=1 {ts}\n"
            ));
        }
    }
    write(&s, &body);
    s
}

fn data_of(entry: &Entry) -> Vec<f64> {
    entry.data.clone().unwrap()
}

#[test]
fn per_id_rows_omit_missing_ids() {
    let s = hwthreads();
    let req = QueryRequest::from_body(br#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"flops_any","host":"h","type":"hwthread","type-ids":["0","1","9"],"aggreg":false}]}"#).unwrap();
    let row = &execute(&s, &req).results[0];
    assert_eq!(row.len(), 2);
    assert_eq!(data_of(&row[0]), [0.0, 1.0, 2.0]);
    assert_eq!(data_of(&row[1]), [10.0, 11.0, 12.0]);
}

#[test]
fn aggregation_sum_avg_and_none() {
    let s = hwthreads();
    let run = |body: &str| execute(&s, &QueryRequest::from_body(body.as_bytes()).unwrap()).results;
    let agg = run(
        r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"flops_any","host":"h","type":"hwthread","type-ids":["0","1"],"aggreg":true}]}"#,
    );
    assert_eq!(data_of(&agg[0][0]), [10.0, 12.0, 14.0]);
    let all = run(
        r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"flops_any","host":"h"}]}"#,
    );
    assert_eq!(data_of(&all[0][0]), [60.0, 64.0, 68.0]);
    let avg =
        run(r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"clock","host":"h"}]}"#);
    assert_eq!(data_of(&avg[0][0]), [2500.0, 2500.0, 2500.0]);
    let none = run(
        r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]}"#,
    );
    assert_eq!(none[0][0].error, Some(SelectorError::InvalidAggregation));
    assert_eq!(
        SelectorError::InvalidAggregation.to_string(),
        "[METRICSTORE]> invalid aggregation"
    );
}

#[test]
fn chains_of_different_extent_combine_over_the_common_window() {
    let s = store();
    write(
        &s,
        "flops_any,cluster=c,hostname=h,type=socket,type-id=0 value=1 1000
flops_any,cluster=c,hostname=h,type=socket,type-id=0 value=1 1060
flops_any,cluster=c,hostname=h,type=socket,type-id=0 value=1 1120
flops_any,cluster=c,hostname=h,type=socket,type-id=1 value=2 1060
flops_any,cluster=c,hostname=h,type=socket,type-id=1 value=2 1120
",
    );
    let req = QueryRequest::from_body(
        br#"{"cluster":"c","from":900,"to":1200,"queries":[{"metric":"flops_any","host":"h"}]}"#,
    )
    .unwrap();
    let entry = &execute(&s, &req).results[0][0];
    assert_eq!(entry.error, None);
    assert_eq!((entry.from, entry.to), (1060, 1180));
    // Padding: 1060/60 - 900/60 = 2 nulls.
    let data = data_of(entry);
    assert_eq!(data.len(), 4);
    assert!(data[0].is_nan() && data[1].is_nan());
    assert_eq!(&data[2..], [3.0, 3.0]);
}

#[test]
fn chains_on_offset_grids_are_paired_slot_by_slot_as_upstream_does() {
    // Socket 0 writes at 1000 and 1060, socket 1 at 1020 and 1080: their
    // slots start 20 s apart. Upstream reads the second chain on the
    // first's window and pairs slot i with slot i; so do we, in either
    // order, and nothing at the end is lost.
    let s = store();
    write(
        &s,
        "clock,cluster=c,hostname=h,type=socket,type-id=0 value=1 1000
clock,cluster=c,hostname=h,type=socket,type-id=0 value=2 1060
clock,cluster=c,hostname=h,type=socket,type-id=1 value=4 1020
clock,cluster=c,hostname=h,type=socket,type-id=1 value=6 1080
",
    );
    for ids in [r#"["0","1"]"#, r#"["1","0"]"#] {
        let body = format!(
            r#"{{"cluster":"c","from":940,"to":1300,"with-padding":false,"queries":[{{"metric":"clock","host":"h","type":"socket","type-ids":{ids},"aggreg":true}}]}}"#
        );
        let req = QueryRequest::from_body(body.as_bytes()).unwrap();
        let entry = &execute(&s, &req).results[0][0];
        assert_eq!(entry.error, None, "{ids}");
        assert_eq!((entry.from, entry.to), (1020, 1140), "{ids}");
        assert_eq!(data_of(entry), [2.5, 4.0], "{ids}");
    }
}

#[test]
fn stats_data_and_scaling_switches() {
    let s = worked_example();
    let out = query(
        &s,
        r#"{"cluster":"c","from":1000,"to":1200,"with-stats":false,"queries":[{"metric":"cpu_load","host":"h"}]}"#,
    );
    assert!(
        out.contains("\"avg\":0.00,\"min\":0.00,\"max\":0.00"),
        "{out}"
    );
    let out = query(
        &s,
        r#"{"cluster":"c","from":1000,"to":1200,"with-data":false,"queries":[{"metric":"cpu_load","host":"h"}]}"#,
    );
    assert!(!out.contains("data"), "{out}");
    let out = query(
        &s,
        r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"cpu_load","host":"h","scale-by":2}]}"#,
    );
    assert!(
        out.contains("[2.000,4.000,6.000]") && out.contains("\"avg\":4.00"),
        "{out}"
    );
    let out = query(
        &s,
        r#"{"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"cpu_load","host":"h","scale-by":null}]}"#,
    );
    assert!(
        out.contains("[null,null,null]") && out.contains("\"avg\":null"),
        "{out}"
    );
    let out = query(
        &s,
        r#"{"cluster":"c","from":900,"to":1200,"with-padding":false,"queries":[{"metric":"cpu_load","host":"h"}]}"#,
    );
    assert!(out.contains("\"data\":[1.000,"), "{out}");
}

#[test]
fn for_all_nodes_echoes_the_generated_queries() {
    let s = worked_example();
    write(&s, "cpu_load,cluster=c,hostname=a value=5 1000\n");
    let out = query(
        &s,
        r#"{"cluster":"c","from":1000,"to":1100,"for-all-nodes":["cpu_load"],"queries":null}"#,
    );
    assert_eq!(
        out,
        "{\"queries\":[{\"metric\":\"cpu_load\",\"host\":\"a\",\"resolution\":0,\"aggreg\":false},{\"metric\":\"cpu_load\",\"host\":\"h\",\"resolution\":0,\"aggreg\":false}],\"results\":[[{\"data\":[5.000],\"from\":1000,\"to\":1060,\"resolution\":60,\"avg\":5.00,\"min\":5.00,\"max\":5.00}],[{\"data\":[1.000,2.000],\"from\":1000,\"to\":1120,\"resolution\":60,\"avg\":1.50,\"min\":1.00,\"max\":2.00}]]}\n"
    );
}

#[test]
fn selector_construction() {
    let q = |json: &str| serde_json::from_str::<Query>(json).unwrap();
    let name = |s: &str| Element::Name(s.to_owned());
    assert_eq!(
        selectors("c", &q(r#"{"host":"h"}"#)),
        [vec![name("c"), name("h")]]
    );
    assert_eq!(
        selectors(
            "c",
            &q(r#"{"host":"h","type":"socket","type-ids":["0"],"aggreg":true}"#)
        ),
        [vec![name("c"), name("h"), name("socket0")]]
    );
    assert_eq!(
        selectors(
            "c",
            &q(
                r#"{"host":"h","type":"core","type-ids":["0","1"],"aggreg":true,"subtype":"x","subtype-ids":[]}"#
            )
        ),
        [vec![
            name("c"),
            name("h"),
            Element::Group(vec!["core0".into(), "core1".into()]),
            Element::Group(vec![])
        ]]
    );
    assert_eq!(
        selectors("c", &q(r#"{"host":"h","type":"socket","type-ids":["0","1"],"subtype":"mc","subtype-ids":["a","b"]}"#)).len(),
        4
    );
    assert!(selectors("c", &q(r#"{"host":"h","type":"socket","type-ids":[]}"#)).is_empty());
}

#[test]
fn request_decoding_is_lenient_like_upstream() {
    let req = QueryRequest::from_body(
        br#"{"Cluster":"c","FROM":1,"to":2,"unknown":true,"with-stats":null,"Queries":[{"Metric":"m","type-ids":null}]} trailing"#,
    )
    .unwrap();
    assert_eq!(req.cluster, "c");
    assert_eq!((req.from, req.to), (1, 2));
    assert!(req.with_stats && req.with_data && req.with_padding);
    assert_eq!(req.queries[0].metric, "m");
    assert_eq!(QueryRequest::from_body(b"").unwrap_err().to_string(), "EOF");
    assert!(QueryRequest::from_body(br#"{"from":1.5}"#).is_err());
    assert!(QueryRequest::from_body(br#"{"queries":[{"type-ids":[1]}]}"#).is_err());
    assert!(QueryRequest::from_body(b"[1]").is_err());
}

#[test]
fn empty_request_answers_empty_results() {
    let s = store();
    assert_eq!(query(&s, "{}"), "{\"results\":[]}\n");
}

#[test]
fn a_range_over_all_of_i64_does_not_overflow() {
    // Padding is computed from `to - from`: i64::MIN to i64::MAX does not
    // fit an i64. Without padding the data alone comes back.
    let s = worked_example();
    let out = query(
        &s,
        &format!(
            r#"{{"cluster":"c","from":{},"to":{},"with-padding":false,"queries":[{{"metric":"cpu_load","host":"h"}}]}}"#,
            i64::MIN,
            i64::MAX
        ),
    );
    assert!(
        out.starts_with("{\"results\":[[{\"data\":[1.000,2.000,3.000],"),
        "{out}"
    );
    // With padding from a `from` close to the data.
    let out = query(
        &s,
        &format!(
            r#"{{"cluster":"c","from":880,"to":{},"queries":[{{"metric":"cpu_load","host":"h"}}]}}"#,
            i64::MAX
        ),
    );
    assert!(
        out.starts_with("{\"results\":[[{\"data\":[null,null,1.000,2.000,3.000],"),
        "{out}"
    );
    // With padding from i64::MIN: bounded, not an allocation of 2^57 slots.
    let out = query(
        &s,
        &format!(
            r#"{{"cluster":"c","from":{},"to":{},"queries":[{{"metric":"cpu_load","host":"h"}}]}}"#,
            i64::MIN,
            i64::MAX
        ),
    );
    assert_eq!(out.matches("null").count(), MAX_ENTRY_NULLS, "padding");
    assert!(out.contains("null,1.000,2.000,3.000],"));
}

#[test]
fn a_request_makes_up_at_most_its_budget_of_nulls() {
    let s = worked_example();
    // Five entries padded from the epoch: four take a full entry's share
    // each, which is the whole request's budget; the fifth gets its data
    // without padding.
    let q = r#"{"metric":"cpu_load","host":"h"}"#;
    let out = query(
        &s,
        &format!(
            r#"{{"cluster":"c","from":0,"to":2000,"queries":[{}]}}"#,
            [q; 5].join(",")
        ),
    );
    assert_eq!(MAX_REQUEST_NULLS, 4 * MAX_ENTRY_NULLS);
    // From 0 at 60 s, the padding wanted is 16 slots (1000 / 60): within
    // every budget.
    assert_eq!(out.matches("null").count(), 5 * 16);
    let wide = format!(
        r#"{{"cluster":"c","from":{},"to":2000,"queries":[{}]}}"#,
        i64::MIN / 2,
        [q; 5].join(",")
    );
    let out = query(&s, &wide);
    assert_eq!(out.matches("null").count(), MAX_REQUEST_NULLS);
    assert!(
        out.contains("}],[{\"data\":[1.000,2.000,3.000],"),
        "the last entry is not padded: {}",
        &out[out.len() - 200..]
    );
}
