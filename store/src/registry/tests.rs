use std::collections::BTreeMap;

use super::*;
use crate::config::MetricConfig;

fn config(names: &[(&str, i64)]) -> BTreeMap<String, MetricConfig> {
    names
        .iter()
        .map(|(name, frequency)| {
            (
                (*name).to_owned(),
                MetricConfig {
                    frequency: *frequency,
                    aggregation: Aggregation::Avg,
                },
            )
        })
        .collect()
}

#[test]
fn a_fixed_registry_has_the_configured_metrics_in_name_order_and_learns_nothing() {
    let r = Registry::new(&config(&[("mem_bw", 30), ("cpu_load", 60)]));
    assert!(!r.is_learning());
    assert_eq!(r.id("cpu_load"), Some(0));
    assert_eq!(r.id("mem_bw"), Some(1));
    assert_eq!(r.get(1).map(MetricInfo::frequency), Some(30));
    assert!(r.lookup_or_learn("other", Some(10)).is_none());
    assert_eq!(r.len(), 2);
    let names: Vec<&str> = r.metrics().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["cpu_load", "mem_bw"]);
}

#[test]
fn a_learning_registry_registers_each_name_once() {
    let r = Registry::learning(&config(&[("clock", 60)]));
    assert!(r.is_learning() && r.is_empty());
    let (a, info) = r.lookup_or_learn("x", None).unwrap();
    assert!(!info.is_settled());
    assert_eq!(info.frequency(), PROVISIONAL_FREQUENCY);
    assert_eq!(r.lookup_or_learn("x", Some(5)).map(|(id, _)| id), Some(a));
    let (b, info) = r.lookup_or_learn("clock", Some(15)).unwrap();
    assert_ne!(a, b);
    assert!(info.is_settled(), "a checkpoint's frequency is final");
    assert_eq!(info.frequency(), 15);
    assert_eq!(info.aggregation, Aggregation::Avg, "from the built-in list");
    assert!(r.lookup_or_learn("", None).is_none());
    assert_eq!(r.len(), 2);
}

#[test]
fn a_learning_registry_is_bounded() {
    let r = Registry::learning(&BTreeMap::new());
    for i in 0..LEARNED_CAPACITY {
        assert!(r.lookup_or_learn(&format!("m{i}"), Some(60)).is_some());
    }
    assert!(r.lookup_or_learn("one_too_many", Some(60)).is_none());
    assert!(r.lookup("m0").is_some());
}

#[test]
fn the_frequency_is_the_distance_of_a_series_first_two_samples() {
    let r = Registry::learning(&BTreeMap::new());
    let level = Level::new();
    let (id, info) = r.lookup_or_learn("x", None).unwrap();
    // No sample yet: nothing to learn from.
    r.observe(id, info, &level, 1000);
    assert!(!info.is_settled());
    level.write_sample(id, info.frequency(), 1000, 1.0).unwrap();
    // The same time again teaches nothing.
    r.observe(id, info, &level, 1000);
    assert!(!info.is_settled());
    r.observe(id, info, &level, 1030);
    assert!(info.is_settled());
    assert_eq!(info.frequency(), 30);
    // Settled is settled.
    r.observe(id, info, &level, 1031);
    assert_eq!(info.frequency(), 30);

    // Distances beyond an hour are clamped.
    let (id, info) = r.lookup_or_learn("slow", None).unwrap();
    level.write_sample(id, info.frequency(), 0, 1.0).unwrap();
    r.observe(id, info, &level, 90_000);
    assert_eq!(info.frequency(), 3600);
}
