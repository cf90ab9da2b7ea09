//! Model test: random writes and checkpoints, then a restore (from the
//! snapshots, and from snapshots plus WAL after a "crash"), must read back
//! exactly what the original store held (at f32 precision in `wal` format).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::checkpoint::checkpoint_all;
use super::restore::{RestoreProgress, restore};
use super::{Format, Persistence};
use crate::config::{Aggregation, MetricConfig};
use crate::ingest::ingest;
use crate::registry::Registry;
use crate::store::MetricStore;

fn registry() -> Registry {
    let mut metrics = BTreeMap::new();
    for (name, frequency) in [("cpu_load", 60), ("mem_bw", 10)] {
        metrics.insert(
            name.to_owned(),
            MetricConfig {
                frequency,
                aggregation: Aggregation::Sum,
            },
        );
    }
    Registry::new(&metrics)
}

#[derive(Debug, Clone)]
enum Op {
    /// host, level, metric, slot, value
    Write(u8, u8, u8, u16, i16),
    Checkpoint,
    /// Stop (cleanly or by crash, as the test says) and restore.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..3, 0u8..3, 0u8..2, 0u16..1500, any::<i16>())
            .prop_map(|(h, l, m, s, v)| Op::Write(h, l, m, s, v)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
    ]
}

const T0: i64 = 1_700_000_000;

fn line(host: u8, level: u8, metric: u8, slot: u16, value: i16) -> String {
    let (name, f) = if metric == 0 {
        ("cpu_load", 60)
    } else {
        ("mem_bw", 10)
    };
    let tags = match level {
        0 => String::new(),
        1 => ",type=socket,type-id=0".to_owned(),
        _ => ",type=socket,type-id=1,stype=core,stype-id=3".to_owned(),
    };
    // On the grid, so that every chunk of a series shares it.
    let ts = T0 + i64::from(slot) * f;
    let v = f64::from(value) / 4.0;
    format!("{name},cluster=c,hostname=h{host}{tags} value={v} {ts}\n")
}

/// Everything the store holds, read back per series as a query would.
fn dump(store: &MetricStore) -> Vec<(String, i64, i64, Vec<Option<f64>>)> {
    let mut out = Vec::new();
    for (cluster, host, level) in super::checkpoint::host_levels(store.root()) {
        let mut stack = vec![(format!("{cluster}/{host}"), level)];
        while let Some((path, level)) = stack.pop() {
            let data = level.read();
            for (id, chain) in data.chains.iter().enumerate() {
                let Some(chain) = chain else { continue };
                let mut values = Vec::new();
                let w = chain.read(0, i64::MAX / 4, &mut values);
                let name = &store.registry().get(id).unwrap().name;
                out.push((
                    format!("{path}:{name}"),
                    w.from,
                    w.to,
                    values
                        .into_iter()
                        .map(|v| (!v.is_nan()).then_some(v))
                        .collect(),
                ));
            }
            for (name, child) in &data.children {
                stack.push((format!("{path}/{name}"), Arc::clone(child)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn run(ops: &[Op], format: Format, crash: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let wal = format == Format::Bin;
    if crash && !wal {
        // JSON format has no WAL: only what was checkpointed survives.
        return Ok(());
    }
    let mut persistence = Arc::new(Persistence::new(dir.path(), format, wal, 0).unwrap());
    let mut store = MetricStore::new(registry()).with_wal(Arc::clone(&persistence));
    for op in ops {
        match *op {
            Op::Write(h, l, m, s, v) => {
                let report = ingest(
                    &store,
                    line(h, l, m, s, v).as_bytes(),
                    "",
                    T0 + 1_000_000_000,
                );
                prop_assert_eq!(report.invalid(), 0);
                prop_assert!(report.wal_error.is_none());
            }
            Op::Checkpoint => {
                let r = checkpoint_all(&store, &persistence, T0 + 100_000, 2);
                prop_assert_eq!(r.failed, 0);
            }
            Op::Restart => {
                (store, persistence) = restart(dir.path(), format, store, &persistence, crash)?;
            }
        }
    }
    restart(dir.path(), format, store, &persistence, crash)?;
    Ok(())
}

/// Stops `store` (a last checkpoint unless `crash`), restores a new store
/// from the directory and checks that it reads back exactly the same.
fn restart(
    dir: &std::path::Path,
    format: Format,
    store: MetricStore,
    persistence: &Arc<Persistence>,
    crash: bool,
) -> Result<(MetricStore, Arc<Persistence>), TestCaseError> {
    let wal = format == Format::Bin;
    if !crash {
        let r = checkpoint_all(&store, persistence, T0 + 100_000, 2);
        prop_assert_eq!(r.failed, 0);
    }
    let expected = dump(&store);
    drop(store);

    let fresh = Arc::new(Persistence::new(dir, format, wal, 0).unwrap());
    let restored = MetricStore::new(registry()).with_wal(Arc::clone(&fresh));
    let report = restore(&restored, &fresh, i64::MIN, 2, &RestoreProgress::default()).unwrap();
    prop_assert_eq!(report.quarantined, 0);
    let got = dump(&restored);
    prop_assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        prop_assert_eq!(&g.0, &e.0);
        prop_assert_eq!((g.1, g.2), (e.1, e.2), "window of {}", g.0);
        // Values are multiples of 1/4 within ±8192: exact in f32 too.
        prop_assert_eq!(&g.3, &e.3, "values of {}", g.0);
    }
    Ok((restored, fresh))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn restore_after_clean_shutdown_matches_the_store_bin(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops, Format::Bin, false)?;
    }

    #[test]
    fn restore_after_clean_shutdown_matches_the_store_json(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops, Format::Json, false)?;
    }

    #[test]
    fn restore_after_a_crash_matches_the_store_from_snapshots_and_wal(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops, Format::Bin, true)?;
    }
}

/// Cases the model test once found, kept as plain tests.
#[test]
fn found_cases_stay_fixed() {
    use Op::{Checkpoint as CP, Write as W};
    let cases: [&[Op]; 3] = [
        // A rejected late sample must not reach the WAL.
        &[
            W(2, 0, 0, 0, 117),
            W(2, 0, 0, 1373, 2292),
            CP,
            W(2, 0, 0, 594, 8505),
        ],
        // A late sample into the restored head's saved slots.
        &[
            W(1, 2, 1, 686, 0),
            CP,
            W(1, 2, 1, 1162, 0),
            W(1, 2, 1, 871, -24356),
        ],
        // A late sample into a chunk started after the last checkpoint.
        &[
            W(1, 1, 1, 2, 0),
            W(1, 1, 1, 477, 0),
            CP,
            W(1, 1, 1, 760, 0),
            W(1, 1, 1, 1228, 0),
            W(1, 1, 1, 760, 1),
        ],
    ];
    for ops in cases {
        for (format, crash) in [
            (Format::Bin, false),
            (Format::Json, false),
            (Format::Bin, true),
        ] {
            if let Err(e) = run(ops, format, crash) {
                panic!("{ops:?} {format:?} crash={crash}: {e}");
            }
        }
    }
}

#[test]
fn a_failed_snapshot_leaves_its_data_unsaved_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = Arc::new(Persistence::new(dir.path(), Format::Json, false, 0).unwrap());
    let store = MetricStore::new(registry());
    let body = format!("cpu_load,cluster=c,hostname=h value=1.5 {T0}\n");
    assert_eq!(
        ingest(&store, body.as_bytes(), "", T0 + 1_000_000_000).written,
        1
    );
    let expected = dump(&store);
    // A file where the host's directory belongs: the snapshot cannot be written.
    std::fs::create_dir_all(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c/h"), "in the way").unwrap();
    let report = checkpoint_all(&store, &persistence, T0 + 60, 1);
    assert_eq!((report.written, report.failed), (0, 1));
    std::fs::remove_file(dir.path().join("c/h")).unwrap();
    let report = checkpoint_all(&store, &persistence, T0 + 120, 1);
    assert_eq!((report.written, report.failed), (1, 0), "taken again");

    let fresh = Arc::new(Persistence::new(dir.path(), Format::Json, false, 0).unwrap());
    let restored = MetricStore::new(registry());
    restore(&restored, &fresh, i64::MIN, 1, &RestoreProgress::default()).unwrap();
    assert_eq!(dump(&restored), expected);
}

#[test]
fn implausible_saved_metrics_are_skipped_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("c/h");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(
        host.join("1000.json"),
        r#"{"metrics":{
            "cpu_load":{"frequency":1000000000000,"start":1000,"data":[1,2]},
            "mem_bw":{"frequency":10,"start":9223372036854775000,"data":[1]}},
          "children":{"socket0":{"metrics":{"mem_bw":{"frequency":10,"start":1000,"data":[5]}},"children":{}}},
          "from":1000,"to":2000}"#,
    )
    .unwrap();
    let persistence = Arc::new(Persistence::new(dir.path(), Format::Json, false, 0).unwrap());
    let store = MetricStore::new(registry());
    let report = restore(
        &store,
        &persistence,
        i64::MIN,
        1,
        &RestoreProgress::default(),
    )
    .unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(report.unknown_values, 3, "both absurd metrics skipped");
    let got = dump(&store);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].3, vec![Some(5.0)]);
}

#[test]
fn wal_files_written_since_the_last_sync_are_synced_once() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = Arc::new(Persistence::new(dir.path(), Format::Bin, true, 0).unwrap());
    let store = MetricStore::new(registry()).with_wal(Arc::clone(&persistence));
    assert_eq!(persistence.sync_wals().unwrap(), 0, "nothing written yet");
    let body = format!(
        "cpu_load,cluster=c,hostname=a value=1 {T0}\ncpu_load,cluster=c,hostname=b value=1 {T0}\n"
    );
    assert_eq!(
        ingest(&store, body.as_bytes(), "", T0 + 1_000_000_000).written,
        2
    );
    assert!(
        dir.path().join("c/a/current.wal").exists(),
        "in the file before the answer"
    );
    assert_eq!(persistence.sync_wals().unwrap(), 2);
    assert_eq!(persistence.sync_wals().unwrap(), 0, "nothing new");
    let body = format!("cpu_load,cluster=c,hostname=a value=2 {}\n", T0 + 60);
    ingest(&store, body.as_bytes(), "", T0 + 1_000_000_000);
    assert_eq!(
        persistence.sync_wals().unwrap(),
        1,
        "only the host written to"
    );
}

#[test]
fn a_wal_set_aside_for_a_failed_snapshot_is_replayed_at_start_and_removed_after_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = Arc::new(Persistence::new(dir.path(), Format::Bin, true, 0).unwrap());
    let store = MetricStore::new(registry()).with_wal(Arc::clone(&persistence));
    let write = |store: &MetricStore, ts: i64, v: f64| {
        let body = format!("cpu_load,cluster=c,hostname=h value={v} {ts}\n");
        assert_eq!(
            ingest(store, body.as_bytes(), "", T0 + 1_000_000_000).written,
            1
        );
    };
    write(&store, T0, 1.5);
    let host = dir.path().join("c/h");
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&host)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // A directory where the snapshot's temporary file belongs: the WAL is
    // set aside, then writing the snapshot fails.
    let blocker = host.join(format!("{}.bin.tmp", T0 - 30));
    std::fs::create_dir_all(&blocker).unwrap();
    let report = checkpoint_all(&store, &persistence, T0 + 60, 1);
    assert_eq!((report.written, report.failed), (0, 1));
    // Later samples go to a new WAL.
    write(&store, T0 + 60, 2.5);
    let found = names();
    assert!(found.contains(&"current.wal".to_owned()), "{found:?}");
    assert_eq!(
        found
            .iter()
            .filter(|n| n.starts_with(super::SET_ASIDE_WAL_PREFIX))
            .count(),
        1,
        "{found:?}"
    );
    let expected = dump(&store);
    assert!(persistence.wal_on_disk() > 2 * super::wal::HEADER_LEN);

    // A crash now: both WALs are replayed.
    drop(store);
    let fresh = Arc::new(Persistence::new(dir.path(), Format::Bin, true, 0).unwrap());
    let restored = MetricStore::new(registry()).with_wal(Arc::clone(&fresh));
    restore(&restored, &fresh, i64::MIN, 1, &RestoreProgress::default()).unwrap();
    assert_eq!(dump(&restored), expected);

    // The next snapshot holds everything and removes both.
    std::fs::remove_dir(&blocker).unwrap();
    let report = checkpoint_all(&restored, &fresh, T0 + 120, 1);
    assert_eq!((report.written, report.failed), (1, 0));
    let found = names();
    assert!(
        found.iter().all(|n| n.ends_with(".bin")),
        "only snapshots left: {found:?}"
    );
    assert_eq!(fresh.wal_on_disk(), 0);
}
