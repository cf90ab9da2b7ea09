//! cc-store's checkpoints through the real binary: clean restarts in both
//! formats, crash recovery from the WAL, files written by upstream, damaged
//! files, frequency changes and the memory cap.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Process, files_below, now, start_store_in, store_config, wait_for};
use serde_json::{Value, json};

fn write(store: &Process, body: &str) {
    let r = store.request("POST", "/api/write?cluster=fritz", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

fn query(store: &Process, body: &Value) -> String {
    let r = store.request("GET", "/api/query", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn config_with(format: &str, extra: &Value) -> Value {
    let mut config = store_config();
    config["metric-store"]["checkpoints"]["file-format"] = json!(format);
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            config["metric-store"][k] = v.clone();
        }
    }
    config
}

/// Samples for three hosts, a socket level, and one metric whose samples are
/// ten hours older than the rest (upstream's JSON checkpoints lose those).
fn sample_batch(t0: i64) -> String {
    let mut body = String::new();
    for host in ["n1", "n2", "n3"] {
        for i in 0..20 {
            let ts = t0 + i * 60;
            let v = i as f64 * 0.5;
            body.push_str(&format!("cpu_load,hostname={host} value={v} {ts}\n"));
            body.push_str(&format!(
                "mem_bw,hostname={host},type=socket,type-id=0 value={} {ts}\n",
                v + 100.0
            ));
            body.push_str(&format!(
                "mem_used,hostname={host} value={} {}\n",
                v * 4.0,
                ts - 36_000
            ));
        }
    }
    body
}

fn queries(t0: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for host in ["n1", "n2", "n3"] {
        out.push(
            json!({"cluster": "fritz", "from": t0 - 600, "to": t0 + 1800,
            "queries": [{"metric": "cpu_load", "host": host},
                        {"metric": "mem_bw", "host": host, "type": "socket", "type-ids": ["0"]}]}),
        );
        out.push(json!({"cluster": "fritz", "from": t0 - 40_000, "to": t0,
            "queries": [{"metric": "mem_used", "host": host}]}));
    }
    out
}

fn restart_keeps_everything(format: &str, extension: &str) {
    let t0 = now() - 3600;
    let store = start_store_in(
        config_with(format, &json!({})),
        tempfile::tempdir().unwrap(),
    );
    write(&store, &sample_batch(t0));
    let before: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert!(
        before[1].contains("2.000"),
        "old samples are there: {}",
        before[1]
    );
    let (status, dir) = store.stop();
    assert!(status.success(), "{status}");

    let files = files_below(&dir.path().join("checkpoints"));
    for host in ["n1", "n2", "n3"] {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("fritz/{host}/")) && f.ends_with(extension)),
            "a {extension} snapshot per host: {files:?}"
        );
    }
    assert!(
        !files.iter().any(|f| f.ends_with("current.wal")),
        "the shutdown snapshot replaces the WAL: {files:?}"
    );

    let store = start_store_in(config_with(format, &json!({})), dir);
    let after: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert_eq!(before, after);
    assert!(wait_for(Duration::from_secs(10), || store
        .log_text()
        .contains("checkpoints loaded")));

    // A second restart without new data changes nothing either.
    let (_, dir) = store.stop();
    let store = start_store_in(config_with(format, &json!({})), dir);
    let again: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert_eq!(before, again);
}

#[test]
fn sigterm_and_restart_keep_every_sample_in_wal_format() {
    restart_keeps_everything("wal", ".bin");
}

#[test]
fn sigterm_and_restart_keep_every_sample_in_json_format() {
    restart_keeps_everything("json", ".json");
}

#[test]
fn kill_9_loses_no_acknowledged_sample() {
    let t0 = now() - 3600;
    let config = config_with(
        "wal",
        &json!({"checkpoints": {"file-format": "wal", "wal-fsync-interval": "100ms"}}),
    );
    let store = start_store_in(config.clone(), tempfile::tempdir().unwrap());
    write(&store, &sample_batch(t0));
    let before: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    // The WAL is in the kernel's hands before the answer, so kill -9 loses
    // nothing at any moment; the fsync interval matters for power loss only
    // (not simulated here; `sync_wals` has its own test).
    let dir = store.kill9();
    let files = files_below(&dir.path().join("checkpoints"));
    assert!(
        files.contains(&"fritz/n1/current.wal".to_owned()),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with(".bin")),
        "no snapshot yet: {files:?}"
    );

    let store = start_store_in(config.clone(), dir);
    let after: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert_eq!(before, after);

    // The replayed samples go into the next snapshot, so a second crash
    // after a clean checkpoint loses nothing either.
    let (_, dir) = store.stop();
    let files = files_below(&dir.path().join("checkpoints"));
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("fritz/n1/") && f.ends_with(".bin")),
        "{files:?}"
    );
    let store = start_store_in(config, dir);
    write(
        &store,
        &format!("cpu_load,hostname=n1 value=99 {}\n", t0 + 1500),
    );
    // At once, as above: the answer is the moment the sample must be safe.
    let dir = store.kill9();
    let store = start_store_in(config_with("wal", &json!({})), dir);
    let last: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert_eq!(before[1..], last[1..]);
    assert!(last[0].contains("99.000"), "{}", last[0]);
}

/// Copies the upstream fixtures into a fresh store directory.
fn fixture_dir() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(
        &common::fixture("checkpoints/upstream"),
        &dir.path().join("checkpoints"),
    );
    dir
}

const T: i64 = 1_760_000_000;

fn fixture_query(store: &Process, host: &str, metric: &str, extra: Value) -> Value {
    let mut q = json!({"metric": metric, "host": host});
    if let (Some(q), Some(extra)) = (q.as_object_mut(), extra.as_object()) {
        q.extend(extra.clone());
    }
    let body = json!({"cluster": "fritz", "from": T, "to": T + 1200, "queries": [q]});
    serde_json::from_str(&query(store, &body)).unwrap()
}

fn data(result: &Value) -> Vec<Value> {
    result["results"][0][0]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn files_written_by_upstream_load_and_damaged_ones_are_set_aside() {
    // The fixtures are from 2025: keep ten years in memory.
    let config = config_with("wal", &json!({"retention-in-memory": "87600h"}));
    let store = start_store_in(config, fixture_dir());

    // node001: binary snapshot, then the WAL's two good records; its torn
    // third record is cut off.
    let cpu = fixture_query(&store, "node001", "cpu_load", json!({}));
    assert_eq!(
        data(&cpu),
        [json!(1.5), Value::Null, json!(2.5), json!(3.5)],
        "{cpu}"
    );
    let bw = fixture_query(
        &store,
        "node001",
        "mem_bw",
        json!({"type": "socket", "type-ids": ["0"]}),
    );
    assert_eq!(data(&bw), [json!(10.0), json!(11.0), json!(12.0)], "{bw}");
    let wal = store
        .dir
        .path()
        .join("checkpoints/fritz/node001/current.wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    assert_eq!(len, 4 + 35 + 41, "torn tail cut off the WAL");

    // node002: upstream JSON with an unconfigured metric and a hwthread.
    let cpu = fixture_query(&store, "node002", "cpu_load", json!({}));
    assert_eq!(
        data(&cpu),
        [json!(0.5), json!(1.0), Value::Null, json!(2.0)],
        "{cpu}"
    );
    let hw = fixture_query(
        &store,
        "node002",
        "cpu_load",
        json!({"type": "hwthread", "type-ids": ["3"]}),
    );
    assert_eq!(data(&hw), [json!(7.0)], "{hw}");

    // node003: the good JSON loads, the truncated binary is set aside.
    let cpu = fixture_query(&store, "node003", "cpu_load", json!({}));
    assert_eq!(data(&cpu)[..2], [json!(5.0), json!(6.0)], "{cpu}");
    let files = files_below(&store.dir.path().join("checkpoints"));
    assert!(
        files.contains(&format!("fritz/node003/{}.bin.quarantined", T + 600)),
        "{files:?}"
    );
    // node004: a non-numeric name is set aside too.
    assert!(
        files.contains(&"fritz/node004/latest.bin.quarantined".to_owned()),
        "{files:?}"
    );
    assert!(
        files.contains(&"fritz/notes.txt".to_owned()),
        "stray file left alone"
    );
    let log = store.log_text();
    assert!(log.contains("set aside a checkpoint file"), "{log}");
    assert!(log.contains("cutting it off"), "{log}");
    assert!(log.contains("notes.txt"), "{log}");
}

#[test]
fn a_changed_frequency_converts_restored_data() {
    let t0 = (now() - 3600) / 60 * 60;
    let mut body = String::new();
    for i in 0..4 {
        body.push_str(&format!(
            "cpu_load,hostname=n1 value={} {}\n",
            i + 1,
            t0 + i * 60
        ));
    }
    let store = start_store_in(config_with("wal", &json!({})), tempfile::tempdir().unwrap());
    write(&store, &body);
    let (_, dir) = store.stop();

    let mut config = config_with("wal", &json!({}));
    config["metrics"]["cpu_load"]["frequency"] = json!(30);
    let store = start_store_in(config, dir);
    let r: Value = serde_json::from_str(&query(
        &store,
        &json!({"cluster": "fritz", "from": t0 - 60, "to": t0 + 240,
                "queries": [{"metric": "cpu_load", "host": "n1"}]}),
    ))
    .unwrap();
    let row = &r["results"][0][0];
    assert_eq!(row["resolution"], json!(30), "{r}");
    let values: Vec<Value> = row["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v.is_null())
        .cloned()
        .collect();
    assert_eq!(
        values,
        [json!(1.0), json!(2.0), json!(3.0), json!(4.0)],
        "{r}"
    );
    // New samples at the new frequency go on after the converted ones.
    write(
        &store,
        &format!("cpu_load,hostname=n1 value=5 {}\n", t0 + 240),
    );
    let r = query(
        &store,
        &json!({"cluster": "fritz", "from": t0 + 240, "to": t0 + 300,
                "queries": [{"metric": "cpu_load", "host": "n1"}]}),
    );
    assert!(r.contains("5.000"), "{r}");
}

#[test]
fn the_memory_cap_frees_the_oldest_data_first() {
    let t = now();
    let mut body = String::new();
    for host in 0..20 {
        // Old data (from 40 h ago, still inside the 48 h retention): five
        // hours, about 2.4 KB per series; and ten minutes of new data.
        for i in 0..300 {
            body.push_str(&format!(
                "cpu_load,hostname=h{host} value=1 {}\n",
                t - 40 * 3600 + i * 60
            ));
        }
        for i in 0..10 {
            body.push_str(&format!(
                "mem_used,hostname=h{host} value=2 {}\n",
                t - 600 + i * 60
            ));
        }
    }
    // 20 KB: far less than the old data, more than the new.
    let config = config_with("wal", &json!({"memory-cap": 0.00002}));
    let store = start_store_in(config, tempfile::tempdir().unwrap());
    write(&store, &body);
    let old = json!({"cluster": "fritz", "from": t - 41 * 3600, "to": t - 39 * 3600,
                     "queries": [{"metric": "cpu_load", "host": "h0"}]});
    let new = json!({"cluster": "fritz", "from": t - 700, "to": t,
                     "queries": [{"metric": "mem_used", "host": "h0"}]});
    assert!(query(&store, &old).contains("1.000"));
    assert!(
        wait_for(Duration::from_secs(20), || store
            .log_text()
            .contains("memory cap exceeded")),
        "{}",
        store.log_text()
    );
    let r = query(&store, &old);
    assert!(!r.contains("1.000"), "old data freed: {r}");
    assert!(query(&store, &new).contains("2.000"), "new data kept");
    // What was freed had been saved first.
    let (_, dir) = store.stop();
    let files = files_below(&dir.path().join("checkpoints"));
    assert!(
        files.iter().any(|f| f.starts_with("fritz/h0/")),
        "{files:?}"
    );
}

#[test]
fn unsafe_host_names_never_reach_the_checkpoint_tree() {
    let store = start_store_in(config_with("wal", &json!({})), tempfile::tempdir().unwrap());
    let t = now();
    // Skipped (spec store.md §2.3 step 4), the rest stored: still a 200.
    let r = store.request(
        "POST",
        "/api/write?cluster=fritz",
        &[],
        format!("cpu_load,hostname=. value=1 {t}\ncpu_load,hostname=ok value=1 {t}\n").as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    let (_, dir) = store.stop();
    let files: Vec<PathBuf> = files_below(&dir.path().join("checkpoints"))
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert!(!files.is_empty());
    assert!(files.iter().all(|f| f.starts_with("fritz/ok")), "{files:?}");
}

fn cleanup_config(dir: &Path, mode: &str) -> PathBuf {
    let mut config = store_config();
    config["metric-store"]["retention-in-memory"] = json!("1h");
    config["metric-store"]["checkpoints"]["directory"] =
        json!(dir.join("checkpoints").display().to_string());
    config["metric-store"]["cleanup"] =
        json!({"mode": mode, "directory": dir.join("archive").display().to_string()});
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn cleanup_cli(config: &Path) -> std::process::Output {
    std::process::Command::new(common::binary("cc-store"))
        .args(["-config", config.to_str().unwrap(), "-cleanup-checkpoints"])
        .output()
        .unwrap()
}

#[test]
fn cleanup_checkpoints_archives_old_files_to_parquet() {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = fixture_dir();
    let config = cleanup_config(dir.path(), "archive");
    let out = cleanup_cli(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("Cleanup done: 3 checkpoint files archived to parquet"),
        "{stdout}"
    );
    let archived: Vec<PathBuf> = std::fs::read_dir(dir.path().join("archive/fritz"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    let name = archived[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cutoff: i64 = name.strip_suffix(".parquet").unwrap().parse().unwrap();
    assert!(
        (cutoff - (now() - 3600)).abs() < 60,
        "named by the cutoff: {name}"
    );

    let reader = SerializedFileReader::new(std::fs::File::open(&archived[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    let columns: Vec<String> = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(
        columns,
        [
            "cluster",
            "hostname",
            "metric",
            "scope",
            "scope_id",
            "timestamp",
            "frequency",
            "value"
        ]
    );
    assert_eq!(meta.num_row_groups(), 3, "one row group per host");
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).unwrap() {
        rows.push(row.unwrap().to_string());
    }
    // node001: 2 + 2 values, node002: 3 + 1 + 1, node003: 2; no NaN.
    assert_eq!(rows.len(), 11, "{rows:#?}");
    assert!(
        rows.iter().any(|r| r.contains("hostname: \"node002\"")
            && r.contains("scope: \"hwthread\"")
            && r.contains("scope_id: \"3\"")
            && r.contains("value: 7.0")),
        "{rows:#?}"
    );

    let files = files_below(&dir.path().join("checkpoints"));
    assert!(
        !files.contains(&format!("fritz/node001/{T}.bin")),
        "archived: {files:?}"
    );
    assert!(
        !files.contains(&format!("fritz/node003/{T}.json")),
        "{files:?}"
    );
    assert!(
        files.contains(&"fritz/node001/current.wal".to_owned()),
        "{files:?}"
    );
    assert!(
        files.contains(&format!("fritz/node003/{}.bin", T + 600)),
        "a corrupt file is kept: {files:?}"
    );
    assert!(
        files.contains(&"fritz/node004/latest.bin".to_owned()),
        "{files:?}"
    );
}

#[test]
fn cleanup_checkpoints_without_a_configuration_file_deletes_nothing() {
    // Run where the built-in default directory (./var/checkpoints) holds an
    // old snapshot: without a configuration naming the retention and the
    // directory, nothing may be deleted.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("var/checkpoints/fritz/node001/1000.bin");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"old").unwrap();
    let out = std::process::Command::new(common::binary("cc-store"))
        .arg("-cleanup-checkpoints")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs a configuration file"), "{stderr}");
    assert!(old.exists(), "the old snapshot is still there");
}

#[test]
fn cleanup_checkpoints_deletes_old_files_and_so_does_a_starting_store() {
    let dir = fixture_dir();
    let config = cleanup_config(dir.path(), "delete");
    let out = cleanup_cli(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The truncated binary snapshot of node003 counts too: its window (in
    // its intact header) is old, and deleting needs no more than that.
    assert_eq!(stdout.trim(), "Cleanup done: 4 checkpoint files deleted.");
    let files = files_below(&dir.path().join("checkpoints"));
    assert!(
        !files.iter().any(|f| f.ends_with(&format!("{T}.bin"))),
        "{files:?}"
    );
    assert!(!dir.path().join("archive").exists());

    // A store cleans up right after it started, not one retention period
    // later.
    let dir = fixture_dir();
    let mut config = store_config();
    config["metric-store"]["retention-in-memory"] = json!("1h");
    let store = start_store_in(config, dir);
    let node001 = store
        .dir
        .path()
        .join(format!("checkpoints/fritz/node001/{T}.bin"));
    assert!(
        wait_for(Duration::from_secs(10), || !node001.exists()),
        "{}",
        store.log_text()
    );
    assert!(wait_for(Duration::from_secs(10), || store
        .log_text()
        .contains("cleaned up old checkpoint files")));
}

#[test]
fn periodic_snapshots_replace_the_wal_and_survive_kill_9() {
    let t0 = now() - 3600;
    let config = config_with(
        "wal",
        &json!({"checkpoint-interval": "1s",
                "checkpoints": {"file-format": "wal", "wal-fsync-interval": "100ms"}}),
    );
    let store = start_store_in(config.clone(), tempfile::tempdir().unwrap());
    write(&store, &sample_batch(t0));
    let before: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    let host = store.dir.path().join("checkpoints/fritz/n1");
    let snapshot_written = || {
        let files: Vec<String> = std::fs::read_dir(&host)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.iter().any(|f| f.ends_with(".bin")) && !files.iter().any(|f| f == "current.wal")
    };
    assert!(
        wait_for(Duration::from_secs(10), snapshot_written),
        "{}",
        store.log_text()
    );
    assert!(wait_for(Duration::from_secs(10), || store
        .log_text()
        .contains("checkpoint written")));
    let dir = store.kill9();
    let store = start_store_in(config, dir);
    let after: Vec<String> = queries(t0).iter().map(|q| query(&store, q)).collect();
    assert_eq!(before, after);
}

#[test]
fn a_wal_over_max_wal_size_gets_an_early_snapshot() {
    let t0 = now() - 3600;
    let config = config_with(
        "wal",
        &json!({"checkpoints": {"file-format": "wal", "max-wal-size": 2000}}),
    );
    let store = start_store_in(config, tempfile::tempdir().unwrap());
    // 60 records of about 40 bytes for n1: over the limit.
    write(&store, &sample_batch(t0));
    let host = store.dir.path().join("checkpoints/fritz/n1");
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::read_dir(&host)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        }),
        "{}",
        store.log_text()
    );
    // The round is logged once every host in it is done.
    assert!(
        wait_for(Duration::from_secs(10), || store
            .log_text()
            .contains("WAL size limit")),
        "{}",
        store.log_text()
    );
    // Small again: the snapshot replaced it.
    let wal = host.join("current.wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) < 2000);
}

#[test]
fn the_default_configuration_bounds_a_wal_at_16_mib() {
    let config = config_with("wal", &json!({}));
    assert!(
        config["metric-store"]["checkpoints"]
            .get("max-wal-size")
            .is_none()
    );
    let store = start_store_in(config, tempfile::tempdir().unwrap());
    let host = store.dir.path().join("checkpoints/fritz/big");
    let snapshot_taken = || {
        std::fs::read_dir(&host)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".bin"))
    };
    // One host, 128 hwthreads: about 45 WAL bytes per sample, so 400 000
    // samples (18 MB) pass the default limit.
    let t0 = now() - 30 * 3600;
    let mut sent = 0;
    for minute in 0..(400_000 / 128 / 2 + 1) {
        let ts = t0 + minute * 60;
        let mut body = String::with_capacity(128 * 2 * 70);
        for t in 0..128 {
            body.push_str(&format!(
                "cpu_load,hostname=big,type=hwthread,type-id={t} value=1 {ts}\n"
            ));
            body.push_str(&format!(
                "flops_any,hostname=big,type=hwthread,type-id={t} value=2 {ts}\n"
            ));
        }
        write(&store, &body);
        sent += 256;
        if sent % 25_600 == 0 && snapshot_taken() {
            break;
        }
    }
    assert!(
        sent >= 16 * 1024 * 1024 / 48,
        "limit passed too early: {sent} samples"
    );
    assert!(
        wait_for(Duration::from_secs(20), snapshot_taken),
        "{}",
        store.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(20), || std::fs::metadata(
            host.join("current.wal")
        )
        .map_or(0, |m| m.len())
            < 16 << 20),
        "{}",
        store.log_text()
    );
    // The round is logged once every host in it is done.
    assert!(
        wait_for(Duration::from_secs(20), || store
            .log_text()
            .contains("WAL size limit")),
        "{}",
        store.log_text()
    );
}

/// A one-route HTTP server standing in for cc-backend: answers every request
/// with `body` and remembers the request heads.
fn fake_backend(body: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

fn retention_store(backend_url: &str) -> (Process, i64) {
    let mut config = store_config();
    config["main"]["backend-url"] = json!(backend_url);
    config["main"]["backend-token"] = json!("secret-token");
    config["metric-store"]["retention-in-memory"] = json!("4s");
    // Retention frees only what a checkpoint has saved.
    config["metric-store"]["checkpoint-interval"] = json!("1s");
    let store = start_store_in(config, tempfile::tempdir().unwrap());
    let t = now() - 100;
    write(
        &store,
        &format!("cpu_load,hostname=run1 value=1 {t}\ncpu_load,hostname=idle1 value=1 {t}\n"),
    );
    (store, t)
}

fn has_data(store: &Process, host: &str, t: i64) -> bool {
    query(
        store,
        &json!({"cluster": "fritz", "from": t - 60, "to": t + 60,
                "queries": [{"metric": "cpu_load", "host": host}]}),
    )
    .contains("1.000")
}

#[test]
fn retention_keeps_the_nodes_cc_backend_reports_running_jobs() {
    let (url, seen) = fake_backend(r#"{"usedNodes":{"fritz":["run1"]}}"#);
    let (store, t) = retention_store(&url);
    assert!(has_data(&store, "idle1", t));
    assert!(
        wait_for(Duration::from_secs(10), || !has_data(&store, "idle1", t)),
        "{}",
        store.log_text()
    );
    assert!(
        has_data(&store, "run1", t),
        "a node running a job keeps its data"
    );
    let requests = seen.lock().unwrap().clone();
    let first = requests.first().expect("cc-backend was asked");
    assert!(first.starts_with("GET /api/jobs/used_nodes?ts="), "{first}");
    assert!(
        first
            .to_ascii_lowercase()
            .contains("authorization: bearer secret-token"),
        "{first}"
    );
}

#[test]
fn retention_frees_everything_old_when_cc_backend_cannot_be_asked() {
    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let (store, t) = retention_store(&closed);
    assert!(
        wait_for(Duration::from_secs(10), || !has_data(&store, "run1", t)
            && !has_data(&store, "idle1", t)),
        "{}",
        store.log_text()
    );
    assert!(
        store
            .log_text()
            .contains("cannot get the nodes running jobs")
    );
}

/// The checkpoint directory fills up: writes that cannot reach the WAL get
/// 500 (so the sender keeps them), failed snapshots are counted, queries
/// keep being answered; once space is back, writes and snapshots succeed
/// again, and after a restart every acknowledged sample is there.
#[test]
fn a_full_checkpoint_disk_refuses_writes_keeps_serving_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir(&checkpoints).unwrap();
    let mount = common::Tmpfs::mount(&checkpoints, "4m");
    // Most of the space is taken by a file the test removes later.
    let filler = checkpoints.join("filler");
    std::fs::write(&filler, vec![0u8; 3 * 1024 * 1024 + 512 * 1024]).unwrap();

    let mut config = store_config();
    config["metric-store"]["checkpoints"]["directory"] = json!(checkpoints.display().to_string());
    config["metric-store"]["checkpoint-interval"] = json!("1s");
    let store = start_store_in(config.clone(), dir);

    // Node-level cpu_load of 20 hosts, five minutes per round.
    const ROUNDS: i64 = 400;
    let t0 = (now() - 36 * 3600) / 60 * 60;
    let post = |round: i64| {
        let body: String = (0..20)
            .flat_map(|h| {
                (0..5).map(move |m| {
                    format!(
                        "cpu_load,cluster=c,hostname=h{h} value={round} {}\n",
                        t0 + 60 * (5 * round + m)
                    )
                })
            })
            .collect();
        store.request("POST", "/api/write", &[], body.as_bytes())
    };
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for round in 0..ROUNDS {
        let r = post(round);
        if r.status == 200 {
            acknowledged.push(round);
        } else {
            refused = Some((round, r.status, r.text()));
            break;
        }
    }
    let (refused_round, status, text) = refused.expect("the disk never filled up");
    assert_eq!(status, 500, "{text}");
    assert!(text.to_lowercase().contains("wal"), "{text}");
    assert!(!acknowledged.is_empty());

    // Queries are still answered, with what was acknowledged.
    let values = |store: &Process, host: &str| -> usize {
        let q = json!({"cluster": "c", "from": t0, "to": t0 + 300 * ROUNDS,
                       "queries": [{"metric": "cpu_load", "host": host}]});
        let r = store.request("GET", "/api/query", &[], q.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["results"][0][0]["data"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|v| !v.is_null()).count())
    };
    assert!(values(&store, "h7") >= 5 * acknowledged.len());
    let scrape = |store: &Process| store.request("GET", "/metrics", &[], b"").text();
    let failed = wait_for(Duration::from_secs(20), || {
        common::sample(&scrape(&store), "ccstore_checkpoint_failures_total")
            .is_some_and(|v| v > 0.0)
    });
    assert!(failed, "no failed snapshot counted:\n{}", store.log_text());

    // Space comes back: the refused round is sent again and taken, and a
    // checkpoint round succeeds.
    std::fs::remove_file(&filler).unwrap();
    let since = now();
    let taken = wait_for(Duration::from_secs(20), || {
        post(refused_round).status == 200
    });
    assert!(taken, "writes are still refused:\n{}", store.log_text());
    acknowledged.push(refused_round);
    let saved = wait_for(Duration::from_secs(30), || {
        common::sample(
            &scrape(&store),
            "ccstore_checkpoint_last_success_timestamp_seconds",
        )
        .is_some_and(|t| t >= since as f64)
    });
    assert!(
        saved,
        "no checkpoint succeeded after the space came back:\n{}",
        store.log_text()
    );

    // A restart on the same directory has every acknowledged sample.
    let (status, dir) = store.stop();
    assert!(status.success(), "{status}");
    let store = start_store_in(config, dir);
    for host in ["h0", "h7", "h19"] {
        assert_eq!(values(&store, host), 5 * acknowledged.len(), "{host}");
    }
    drop(store);
    drop(mount);
}
