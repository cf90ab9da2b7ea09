//! The sled store: open/validation, append/peek/ack, limits, dead letters, corruption,
//! reopen durability (in-process and with a killed child process), poisoning.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::{
    assert_counters_match_tree, names, open, open_with, origin, record, test_config, try_open,
};
use crate::queue::{Flusher, Queue, QueueConfig, QueueError, Record, RemovedStats};

fn all(q: &Queue, up: &str) -> Vec<(u64, Record)> {
    q.peek_batch(up, usize::MAX, u64::MAX, None).unwrap()
}

#[test]
fn open_validates_upstream_names() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "Store", "a/b", "q:x", "ä", &"a".repeat(49)] {
        let err = Queue::open(dir.path(), &names(&[bad]), test_config()).unwrap_err();
        assert!(
            matches!(err, QueueError::InvalidUpstreamName { ref name } if name == bad),
            "{bad:?}: {err:?}"
        );
    }
    let err = Queue::open(dir.path(), &names(&["a", "b", "a"]), test_config()).unwrap_err();
    assert!(matches!(err, QueueError::DuplicateUpstream { ref name } if name == "a"));
    let ok = names(&["store", "relay-2", "site_b", &"z".repeat(48)]);
    let q = Queue::open(dir.path(), &ok, test_config()).unwrap();
    assert_eq!(q.upstreams().count(), 4);
    assert!(q.path().ends_with("db"));
}

#[test]
fn a_second_open_of_the_same_directory_fails_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _q = open(dir.path(), &["a"]);
    let err = Queue::open(dir.path(), &names(&["a"]), test_config()).unwrap_err();
    assert!(
        matches!(err, QueueError::Locked { ref path } if path == &dir.path().join("db")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
}

#[test]
fn append_assigns_one_increasing_id_per_record_shared_by_all_trees() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a", "b"]);
    let recs = vec![record(10, 3, 1), record(11, 300, 2), record(12, 1, 3)];
    let ids = q.append(&["b", "a", "b"], &recs).unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    for up in ["a", "b"] {
        let got = all(&q, up);
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), recs);
        let s = q.len(up).unwrap();
        assert_eq!(s.records, 3);
        assert_eq!(s.lines, 304);
        assert_eq!(s.oldest_ingest_ms, Some(10));
        assert!(s.stored_bytes < s.raw_bytes, "compression applied: {s:?}");
        assert_counters_match_tree(&q, up);
    }
    let more = q.append(&["a"], &[record(13, 1, 4)]).unwrap();
    assert!(more[0] > ids[2]);
    assert_eq!(q.len("a").unwrap().records, 4);
    assert_eq!(q.len("b").unwrap().records, 3);
    assert!(q.append(&[], &recs).unwrap().is_empty());
    assert!(q.append(&["a"], &[]).unwrap().is_empty());
}

#[test]
fn append_to_an_unknown_upstream_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let err = q.append(&["a", "nope"], &[record(1, 1, 1)]).unwrap_err();
    assert!(matches!(err, QueueError::UnknownUpstream { ref name } if name == "nope"));
    assert_eq!(q.len("a").unwrap().records, 0);
    assert!(matches!(
        q.len("nope"),
        Err(QueueError::UnknownUpstream { .. })
    ));
    assert!(q.is_healthy(), "a caller error does not poison");
}

#[test]
fn peek_respects_after_max_records_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let recs: Vec<Record> = (0..6).map(|i| record(i, 10, i)).collect();
    let ids = q.append(&["a"], &recs).unwrap();
    let raw = recs[0].payload().len() as u64;

    let p = q.peek_batch("a", 2, u64::MAX, None).unwrap();
    assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), ids[..2]);
    let p = q.peek_batch("a", 10, u64::MAX, Some(ids[1])).unwrap();
    assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), ids[2..]);
    // `after` need not be a queued id.
    let p = q.peek_batch("a", 1, u64::MAX, Some(ids[3] - 1)).unwrap();
    assert_eq!(p[0].0, ids[3]);
    // Byte budget: stops before exceeding it, but always returns one record.
    let p = q.peek_batch("a", 10, 1, None).unwrap();
    assert_eq!(p.len(), 1);
    let p = q.peek_batch("a", 10, raw * 3 + raw / 2, None).unwrap();
    assert!(p.len() <= 3);
    // The budget is inclusive: exactly two payloads fit, one byte less fits one.
    let two = raw + recs[1].payload().len() as u64;
    assert_eq!(q.peek_batch("a", 10, two, None).unwrap().len(), 2);
    assert_eq!(q.peek_batch("a", 10, two - 1, None).unwrap().len(), 1);
    assert!(q.peek_batch("a", 0, u64::MAX, None).unwrap().is_empty());
    assert!(
        q.peek_batch("a", 5, u64::MAX, Some(u64::MAX))
            .unwrap()
            .is_empty()
    );
    assert!(
        q.peek_batch("a", 5, u64::MAX, Some(ids[5]))
            .unwrap()
            .is_empty()
    );
    // Peeking removes nothing.
    assert_eq!(q.len("a").unwrap().records, 6);
}

#[test]
fn ack_removes_exactly_the_given_ids_and_updates_counters() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a", "b"]);
    let recs: Vec<Record> = (0..5).map(|i| record(100 + i, 2, i)).collect();
    let ids = q.append(&["a", "b"], &recs).unwrap();
    let removed = q.ack("a", &[ids[0], ids[2], ids[2], 12_345]).unwrap();
    assert_eq!(removed.records, 2);
    assert_eq!(removed.lines, 4);
    assert_eq!(
        all(&q, "a").iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![ids[1], ids[3], ids[4]]
    );
    assert_eq!(q.len("a").unwrap().oldest_ingest_ms, Some(101));
    assert_eq!(
        q.len("b").unwrap().records,
        5,
        "other upstreams keep their copy"
    );
    assert_counters_match_tree(&q, "a");
    assert_eq!(q.ack("a", &[]).unwrap(), RemovedStats::default());
    q.ack("a", &[ids[1], ids[3], ids[4]]).unwrap();
    let s = q.len("a").unwrap();
    assert_eq!(
        (s.records, s.lines, s.stored_bytes, s.raw_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(s.oldest_ingest_ms, None);
}

#[test]
fn drop_oldest_evicts_from_the_head_and_spares_the_in_flight_window() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let recs: Vec<Record> = (0..10).map(|i| record(i, 5, i)).collect();
    let ids = q.append(&["a"], &recs).unwrap();
    let sizes: Vec<u64> = q
        .raw_entries_for_test("a")
        .iter()
        .map(|(_, v)| v.len() as u64)
        .collect();

    assert_eq!(q.drop_oldest("a", 0).unwrap(), RemovedStats::default());
    let r = q.drop_oldest("a", sizes[0] + 1).unwrap();
    assert_eq!(r.records, 2);
    assert_eq!(r.stored_bytes, sizes[0] + sizes[1]);
    assert_eq!(r.lines, 10);
    assert_eq!(all(&q, "a")[0].0, ids[2]);

    // Window ids[2..=3] is in flight: eviction starts after it.
    let r = q.drop_oldest_after("a", 1, Some(ids[3])).unwrap();
    assert_eq!(r.records, 1);
    let left: Vec<u64> = all(&q, "a").iter().map(|x| x.0).collect();
    assert_eq!(
        left,
        [ids[2], ids[3], ids[5], ids[6], ids[7], ids[8], ids[9]]
    );
    assert_eq!(q.len("a").unwrap().oldest_ingest_ms, Some(2));

    let r = q.drop_oldest("a", u64::MAX).unwrap();
    assert_eq!(r.records, 7);
    assert_eq!(q.len("a").unwrap().records, 0);
    assert_counters_match_tree(&q, "a");
}

#[test]
fn drop_older_than_stops_at_the_first_young_record() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let ids = q
        .append(
            &["a"],
            &[
                record(10, 1, 1),
                record(20, 1, 2),
                record(30, 1, 3),
                record(15, 1, 4),
            ],
        )
        .unwrap();
    let r = q.drop_older_than("a", 25, None).unwrap();
    assert_eq!(r.records, 2);
    assert_eq!(
        all(&q, "a").iter().map(|x| x.0).collect::<Vec<_>>(),
        ids[2..]
    );
    assert_eq!(q.drop_older_than("a", 25, None).unwrap().records, 0);
    assert_eq!(q.len("a").unwrap().oldest_ingest_ms, Some(30));
}

#[test]
fn dead_letters_are_stored_counted_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        dead_letter_max_bytes: 400,
        ..test_config()
    };
    let q = open_with(dir.path(), &["a"], cfg.clone());
    q.dead_letter("a", origin(7), b"bad foo=1 1\n", "rejected", Some(400))
        .unwrap();
    assert_eq!(q.dlq_len("a").unwrap(), 1);
    let e = q.dlq_entries("a", 10).unwrap();
    assert_eq!(e[0].1.record_id, 7);
    assert_eq!(e[0].1.status, Some(400));
    assert_eq!(e[0].1.reason, "rejected");
    assert_eq!(e[0].1.lines, b"bad foo=1 1\n");
    assert_eq!((e[0].1.cluster.as_str(), e[0].1.hops), ("fritz", 0));

    for i in 0..20u64 {
        q.dead_letter("a", origin(i), &[b'x'; 60], "rejected", None)
            .unwrap();
    }
    let s = q.dlq_stats("a").unwrap();
    assert!(s.stored_bytes <= 400, "{s:?}");
    assert_eq!(s.records + s.evicted_total, 21);
    let e = q.dlq_entries("a", 100).unwrap();
    assert_eq!(e.len() as u64, s.records);
    assert_eq!(
        e.last().unwrap().1.record_id,
        19,
        "the newest entries are kept"
    );
    // The queue itself is untouched; counters survive a reopen.
    assert_eq!(q.len("a").unwrap().records, 0);
    q.flush().unwrap();
    drop(q);
    let q = open_with(dir.path(), &["a"], cfg);
    assert_eq!(q.dlq_stats("a").unwrap().records, s.records);
    assert_eq!(q.dlq_stats("a").unwrap().stored_bytes, s.stored_bytes);
}

#[test]
fn corrupt_records_are_moved_to_the_dead_letter_tree_and_never_block() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let first = q.append(&["a"], &[record(1, 3, 1)]).unwrap()[0];
    // Garbage bytes, then a record with one payload bit flipped, written directly.
    let garbage_id = q.generate_id_for_test();
    q.insert_raw_for_test("a", garbage_id, b"\xffnot a record at all");
    let flipped_id = q.generate_id_for_test();
    let mut flipped = record(2, 300, 2).encode(512);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(Record::decode(&flipped).is_err());
    q.insert_raw_for_test("a", flipped_id, &flipped);
    let good = q.append(&["a"], &[record(3, 3, 3)]).unwrap()[0];
    assert_eq!(q.len("a").unwrap().records, 4);
    assert_counters_match_tree(&q, "a");

    // Counters survive a reopen with the corrupt values in place.
    q.flush().unwrap();
    drop(q);
    let q = open(dir.path(), &["a"]);
    assert_eq!(q.len("a").unwrap().records, 4);
    assert_counters_match_tree(&q, "a");

    let p = q.peek_batch("a", 10, u64::MAX, Some(first)).unwrap();
    assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![good]);
    let dlq = q.dlq_stats("a").unwrap();
    assert_eq!((dlq.records, dlq.corrupt_total), (2, 2));
    let entries = q.dlq_entries("a", 10).unwrap();
    assert_eq!(entries[0].0, garbage_id);
    assert_eq!(entries[0].1.reason, "corrupt");
    assert_eq!(entries[0].1.lines, b"\xffnot a record at all");
    assert_eq!(entries[1].0, flipped_id);
    assert_eq!(entries[1].1.lines, flipped);
    assert_eq!(q.len("a").unwrap().records, 2);
    assert_counters_match_tree(&q, "a");
    assert_eq!(
        all(&q, "a").iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![first, good]
    );
    assert!(q.is_healthy());
}

#[test]
fn flushed_records_survive_reopen_without_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected: Vec<(u64, Record)> = Vec::new();
    let mut last_id = 0;
    let instance = open(dir.path(), &["a"]).instance_id().to_owned();
    for round in 0..25u64 {
        let q = open(dir.path(), &["a"]);
        assert_eq!(q.instance_id(), instance);
        assert_eq!(q.previous_shutdown_clean(), Some(false), "round {round}");
        assert_eq!(all(&q, "a"), expected, "round {round}");
        assert_counters_match_tree(&q, "a");
        if round % 3 == 2 {
            q.ack("a", &[expected[0].0]).unwrap();
            expected.remove(0);
        }
        let recs: Vec<Record> = (0..3)
            .map(|i| record(round * 10 + i, 20, round + i))
            .collect();
        let ids = q.append(&["a"], &recs).unwrap();
        assert!(ids[0] > last_id, "ids keep increasing across restarts");
        last_id = ids[2];
        expected.extend(ids.into_iter().zip(recs));
        q.flush().unwrap();
        // Dropped without mark_clean_shutdown.
    }
}

#[test]
fn clean_shutdown_flag_and_meta_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    assert_eq!(q.previous_shutdown_clean(), None);
    let (id, created) = (q.instance_id().to_owned(), q.created_ms());
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "version-4 UUID: {id}");
    q.mark_clean_shutdown().unwrap();
    drop(q);
    let q = open(dir.path(), &["a"]);
    assert_eq!(q.previous_shutdown_clean(), Some(true));
    assert_eq!((q.instance_id(), q.created_ms()), (id.as_str(), created));
    drop(q);
    let q = open(dir.path(), &["a"]);
    assert_eq!(q.previous_shutdown_clean(), Some(false));
    assert!(q.size_on_disk().unwrap() > 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &["a"]));
    {
        // The queue just dropped may hold sled's file lock a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(dir.path().join("db")) {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("sled::open: {e}"),
            }
        };
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = try_open(dir.path(), &["a"], test_config()).unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::NewerSchema {
                found: 99,
                supported: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn orphaned_queues_are_reported_left_alone_and_purgeable() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a", "old"]);
    q.append(&["old"], &[record(1, 2, 1), record(2, 2, 2)])
        .unwrap();
    q.flush().unwrap();
    drop(q);

    let q = open(dir.path(), &["a"]);
    let o = q.orphans();
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].upstream.as_str(), o[0].records), ("old", 2));
    assert!(o[0].stored_bytes > 0);
    drop(q);

    // Left alone: configuring it again finds the data.
    let q = open(dir.path(), &["a", "old"]);
    assert_eq!(q.len("old").unwrap().records, 2);
    assert!(q.orphans().is_empty());
    drop(q);

    let q = open(dir.path(), &["a"]);
    assert_eq!(q.purge_orphans().unwrap(), vec!["old".to_owned()]);
    drop(q);
    let q = open(dir.path(), &["a"]);
    assert!(q.orphans().is_empty());
}

#[test]
fn the_first_engine_error_poisons_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), &["a"]);
    let id = q.append(&["a"], &[record(1, 1, 1)]).unwrap()[0];
    assert!(q.is_healthy());
    q.poison_for_test("flush: injected EIO");
    q.poison_for_test("a second error does not replace the first");
    assert!(!q.is_healthy());
    assert_eq!(q.poison_reason().as_deref(), Some("flush: injected EIO"));
    let poisoned = |r: Result<(), QueueError>| {
        assert!(
            matches!(r, Err(QueueError::Poisoned { ref reason }) if reason == "flush: injected EIO"),
            "{r:?}"
        );
    };
    poisoned(q.append(&["a"], &[record(2, 1, 2)]).map(|_| ()));
    poisoned(q.peek_batch("a", 1, 1, None).map(|_| ()));
    poisoned(q.ack("a", &[id]).map(|_| ()));
    poisoned(q.drop_oldest("a", 1).map(|_| ()));
    poisoned(q.dead_letter("a", origin(id), b"x\n", "rejected", None));
    poisoned(q.flush());
    poisoned(q.mark_clean_shutdown());
    // Counters stay readable for /status.
    assert_eq!(q.len("a").unwrap().records, 1);
}

/// Child side of [`acknowledged_records_survive_sigkill`]: appends through the flusher
/// from 4 tasks and prints `acked <id>` once each append is durable, until killed.
#[test]
#[ignore = "run as a child process by acknowledged_records_survive_sigkill"]
fn crash_child() {
    let Ok(dir) = std::env::var("CC_RELAY_QUEUE_CRASH_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let q = Arc::new(open(std::path::Path::new(&dir), &["a", "b"]));
        let flusher = Arc::new(Flusher::new(Arc::clone(&q)));
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let (q, flusher) = (Arc::clone(&q), Arc::clone(&flusher));
            tasks.push(tokio::spawn(async move {
                for i in 0..100_000u64 {
                    let recs = [record(t * 1_000_000 + i, 50, i), record(i, 1, t)];
                    let ids = q.append(&["a", "b"], &recs).unwrap();
                    flusher.wait_durable().await.unwrap();
                    println!("acked {} {}", ids[0], ids[1]);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Kill -9 at random moments while 4 writers append through the group commit: every
/// id reported durable before the kill is in both trees after reopening.
#[test]
fn acknowledged_records_survive_sigkill() {
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..4usize {
        let mut child = Command::new(&exe)
            .args([
                "queue::tests::store::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CC_RELAY_QUEUE_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let kill_after = 20 + round * 37;
        let mut seen = 0;
        let mut line = String::new();
        let parse = |line: &str, acked: &mut Vec<u64>| {
            if let Some(rest) = line.trim_end().strip_prefix("acked ") {
                let ids: Vec<u64> = rest.split(' ').map(|s| s.parse().unwrap()).collect();
                if ids.len() == 2 {
                    acked.extend(ids);
                    return true;
                }
            }
            false
        };
        while seen < kill_after {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("child exited early");
            }
            if parse(&line, &mut acked) {
                seen += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Complete lines still in the pipe were acknowledged before the kill.
        for line in reader.lines().map_while(Result::ok) {
            parse(&format!("{line}\n"), &mut acked);
        }

        let q = open(dir.path(), &["a", "b"]);
        for up in ["a", "b"] {
            let present: std::collections::BTreeSet<u64> =
                all(&q, up).into_iter().map(|(id, _)| id).collect();
            let missing: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
            assert!(missing.is_empty(), "round {round}, {up}: lost {missing:?}");
            assert_counters_match_tree(&q, up);
            assert_eq!(q.dlq_len(up).unwrap(), 0);
        }
        assert_eq!(q.previous_shutdown_clean(), Some(false));
    }
    assert!(acked.len() >= 2 * (20 + 57 + 94 + 131));
}
