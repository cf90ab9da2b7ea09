//! Model-based test (vector disk_v2 style): random sequences of Append, PeekBatch, Ack,
//! DropOldest, DeadLetter, corrupt-value injection and Reopen run against the real
//! [`Queue`] and a small in-memory model (a `BTreeMap` per upstream) in lockstep; after
//! every step the visible state must agree: peek results, removed stats, counters,
//! dead-letter counts and the exact set of queued ids.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;

use super::{collector_lines, open, random_lines, test_config};
use crate::queue::{Queue, QueueConfig, QueueStats, Record, RecordMeta, RemovedStats};

const UPSTREAMS: [&str; 2] = ["alpha", "beta"];
const CLUSTERS: [&str; 3] = ["", "fritz", "alex"];

#[derive(Debug, Clone)]
struct RecSpec {
    lines: usize,
    seed: u64,
    noisy: bool,
    ingest: u64,
    hops: u8,
    cluster: usize,
}

impl RecSpec {
    fn build(&self) -> Record {
        let payload = if self.noisy {
            random_lines(self.lines, 40, self.seed)
        } else {
            collector_lines(self.lines, self.seed)
        };
        Record::new(
            RecordMeta {
                ingest_time_ms: self.ingest,
                hops: self.hops,
                cluster: CLUSTERS[self.cluster].to_owned(),
                source: "model".to_owned(),
            },
            payload,
        )
        .unwrap()
    }
}

fn rec_spec() -> impl Strategy<Value = RecSpec> {
    (
        1usize..12,
        any::<u64>(),
        any::<bool>(),
        0u64..2_000_000_000_000,
        any::<u8>(),
        0usize..CLUSTERS.len(),
    )
        .prop_map(|(lines, seed, noisy, ingest, hops, cluster)| RecSpec {
            lines,
            seed,
            noisy,
            ingest,
            hops,
            cluster,
        })
}

#[derive(Debug, Clone)]
enum After {
    Start,
    /// The id of the n-th queued record (or, if `plus_one`, one past it: not an id).
    Queued(Index, bool),
}

#[derive(Debug, Clone)]
enum Action {
    Append {
        /// Bit i set = upstream i receives the records.
        targets: u8,
        records: Vec<RecSpec>,
    },
    Peek {
        up: usize,
        max_records: usize,
        max_bytes: u64,
        after: After,
    },
    Ack {
        up: usize,
        picks: Vec<Index>,
        bogus: bool,
    },
    DropOldest {
        up: usize,
        bytes: u64,
        after: After,
    },
    DeadLetter {
        up: usize,
        pick: Index,
        status: Option<u16>,
    },
    /// A valid record with its last byte flipped, written past the codec.
    Corrupt {
        up: usize,
        spec: RecSpec,
    },
    /// Bytes that are not a record at all (unreadable header).
    Garbage {
        up: usize,
        len: usize,
    },
    /// Flush, drop without clean shutdown, open the same directory again.
    Reopen,
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![
        1 => Just(After::Start),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(i, p)| After::Queued(i, p)),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let up = 0usize..UPSTREAMS.len();
    prop_oneof![
        4 => (1u8..4, prop::collection::vec(rec_spec(), 1..4))
            .prop_map(|(targets, records)| Action::Append { targets, records }),
        3 => (up.clone(), 0usize..6, 0u64..4_000, after()).prop_map(
            |(up, max_records, max_bytes, after)| Action::Peek { up, max_records, max_bytes, after }
        ),
        3 => (up.clone(), prop::collection::vec(any::<Index>(), 0..4), any::<bool>())
            .prop_map(|(up, picks, bogus)| Action::Ack { up, picks, bogus }),
        1 => (up.clone(), 0u64..3_000, after())
            .prop_map(|(up, bytes, after)| Action::DropOldest { up, bytes, after }),
        1 => (up.clone(), any::<Index>(), prop::option::of(400u16..600))
            .prop_map(|(up, pick, status)| Action::DeadLetter { up, pick, status }),
        1 => (up.clone(), rec_spec()).prop_map(|(up, spec)| Action::Corrupt { up, spec }),
        1 => (up, 0usize..40).prop_map(|(up, len)| Action::Garbage { up, len }),
        1 => Just(Action::Reopen),
    ]
}

#[derive(Debug, Clone)]
enum Entry {
    Valid {
        record: Record,
        stored: u64,
    },
    /// Not decodable; its header fields (if readable) still count.
    Corrupt {
        lines: u64,
        raw: u64,
        stored: u64,
        ingest: Option<u64>,
    },
}

impl Entry {
    fn removed(&self) -> RemovedStats {
        match self {
            Entry::Valid { record, stored } => RemovedStats {
                records: 1,
                lines: u64::from(record.line_count()),
                stored_bytes: *stored,
                raw_bytes: record.payload().len() as u64,
            },
            Entry::Corrupt {
                lines, raw, stored, ..
            } => RemovedStats {
                records: 1,
                lines: *lines,
                stored_bytes: *stored,
                raw_bytes: *raw,
            },
        }
    }

    fn ingest(&self) -> Option<u64> {
        match self {
            Entry::Valid { record, .. } => Some(record.ingest_time_ms()),
            Entry::Corrupt { ingest, .. } => *ingest,
        }
    }
}

fn add(total: &mut RemovedStats, r: RemovedStats) {
    total.records += r.records;
    total.lines += r.lines;
    total.stored_bytes += r.stored_bytes;
    total.raw_bytes += r.raw_bytes;
}

#[derive(Debug, Default)]
struct Lane {
    entries: BTreeMap<u64, Entry>,
    dlq: u64,
    corrupt_total: u64,
}

impl Lane {
    fn stats(&self) -> QueueStats {
        let mut t = RemovedStats::default();
        for e in self.entries.values() {
            add(&mut t, e.removed());
        }
        QueueStats {
            records: t.records,
            lines: t.lines,
            stored_bytes: t.stored_bytes,
            raw_bytes: t.raw_bytes,
            oldest_ingest_ms: self.entries.values().take(64).find_map(Entry::ingest),
        }
    }

    fn resolve(&self, after: &After) -> Option<u64> {
        match after {
            After::Start => None,
            After::Queued(i, plus_one) => {
                if self.entries.is_empty() {
                    return None;
                }
                let id = *self.entries.keys().nth(i.index(self.entries.len()))?;
                Some(if *plus_one { id + 1 } else { id })
            }
        }
    }

    fn start(after: Option<u64>) -> Option<u64> {
        match after {
            None => Some(0),
            Some(a) => a.checked_add(1),
        }
    }

    fn peek(
        &mut self,
        max_records: usize,
        max_bytes: u64,
        after: Option<u64>,
    ) -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        let Some(start) = Self::start(after) else {
            return out;
        };
        if max_records == 0 {
            return out;
        }
        let mut bytes = 0u64;
        let mut corrupt = Vec::new();
        for (id, e) in self.entries.range(start..) {
            match e {
                Entry::Valid { record, .. } => {
                    let raw = record.payload().len() as u64;
                    if !out.is_empty() && bytes + raw > max_bytes {
                        break;
                    }
                    bytes += raw;
                    out.push((*id, record.clone()));
                    if out.len() >= max_records {
                        break;
                    }
                }
                Entry::Corrupt { .. } => corrupt.push(*id),
            }
        }
        for id in corrupt {
            self.entries.remove(&id);
            self.dlq += 1;
            self.corrupt_total += 1;
        }
        out
    }

    fn ack(&mut self, ids: &[u64]) -> RemovedStats {
        let mut t = RemovedStats::default();
        for id in ids {
            if let Some(e) = self.entries.remove(id) {
                add(&mut t, e.removed());
            }
        }
        t
    }

    fn drop_oldest(&mut self, bytes: u64, after: Option<u64>) -> RemovedStats {
        let mut t = RemovedStats::default();
        let Some(start) = Self::start(after) else {
            return t;
        };
        if bytes == 0 {
            return t;
        }
        let ids: Vec<u64> = self.entries.range(start..).map(|(id, _)| *id).collect();
        for id in ids {
            if t.stored_bytes >= bytes {
                break;
            }
            if let Some(e) = self.entries.remove(&id) {
                add(&mut t, e.removed());
            }
        }
        t
    }
}

struct Harness {
    dir: tempfile::TempDir,
    cfg: QueueConfig,
    queue: Option<Queue>,
    lanes: Vec<Lane>,
    /// Highest id handed out so far (sled's first id is 0).
    max_id: Option<u64>,
}

impl Harness {
    fn q(&self) -> &Queue {
        self.queue.as_ref().unwrap()
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.q().generate_id_for_test();
        assert!(self.max_id.is_none_or(|m| id > m));
        self.max_id = Some(id);
        id
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match action {
            Action::Append { targets, records } => {
                let ups: Vec<&str> = (0..UPSTREAMS.len())
                    .filter(|i| targets & (1 << i) != 0)
                    .map(|i| UPSTREAMS[i])
                    .collect();
                let recs: Vec<Record> = records.iter().map(RecSpec::build).collect();
                let ids = self.q().append(&ups, &recs).unwrap();
                prop_assert_eq!(ids.len(), recs.len());
                for id in &ids {
                    prop_assert!(
                        self.max_id.is_none_or(|m| *id > m),
                        "id {} not above {:?}",
                        id,
                        self.max_id
                    );
                    self.max_id = Some(*id);
                }
                for (i, lane) in self.lanes.iter_mut().enumerate() {
                    if targets & (1 << i) == 0 {
                        continue;
                    }
                    for (id, r) in ids.iter().zip(&recs) {
                        let stored = r
                            .encode_with(self.cfg.compress_threshold, self.cfg.zstd_level)
                            .len();
                        lane.entries.insert(
                            *id,
                            Entry::Valid {
                                record: r.clone(),
                                stored: stored as u64,
                            },
                        );
                    }
                }
            }
            Action::Peek {
                up,
                max_records,
                max_bytes,
                after,
            } => {
                let after = self.lanes[*up].resolve(after);
                let real = self
                    .q()
                    .peek_batch(UPSTREAMS[*up], *max_records, *max_bytes, after)
                    .unwrap();
                let model = self.lanes[*up].peek(*max_records, *max_bytes, after);
                prop_assert_eq!(real, model);
            }
            Action::Ack { up, picks, bogus } => {
                let lane = &mut self.lanes[*up];
                let keys: Vec<u64> = lane.entries.keys().copied().collect();
                let mut ids: Vec<u64> = if keys.is_empty() {
                    Vec::new()
                } else {
                    picks.iter().map(|p| keys[p.index(keys.len())]).collect()
                };
                if *bogus {
                    ids.push(self.max_id.map_or(17, |m| m + 17));
                }
                let model = lane.ack(&ids);
                let real = self.q().ack(UPSTREAMS[*up], &ids).unwrap();
                prop_assert_eq!(real, model);
            }
            Action::DropOldest { up, bytes, after } => {
                let after = self.lanes[*up].resolve(after);
                let model = self.lanes[*up].drop_oldest(*bytes, after);
                let real = self
                    .q()
                    .drop_oldest_after(UPSTREAMS[*up], *bytes, after)
                    .unwrap();
                prop_assert_eq!(real, model);
            }
            Action::DeadLetter { up, pick, status } => {
                let lane = &mut self.lanes[*up];
                let (id, lines) = match lane
                    .entries
                    .iter()
                    .nth(pick.index(lane.entries.len().max(1)))
                {
                    Some((id, Entry::Valid { record, .. })) => (*id, record.payload().to_vec()),
                    _ => (0, b"orphan value=1 1\n".to_vec()),
                };
                lane.dlq += 1;
                self.q()
                    .dead_letter(
                        UPSTREAMS[*up],
                        crate::queue::Origin {
                            record_id: id,
                            cluster: "fritz",
                            hops: 0,
                        },
                        &lines,
                        "rejected",
                        *status,
                    )
                    .unwrap();
            }
            Action::Corrupt { up, spec } => {
                let r = spec.build();
                let mut bad = r.encode_with(self.cfg.compress_threshold, self.cfg.zstd_level);
                let last = bad.len() - 1;
                bad[last] ^= 0xA5;
                if Record::decode(&bad).is_err() {
                    let id = self.fresh_id();
                    self.q().insert_raw_for_test(UPSTREAMS[*up], id, &bad);
                    self.lanes[*up].entries.insert(
                        id,
                        Entry::Corrupt {
                            lines: u64::from(r.line_count()),
                            raw: r.payload().len() as u64,
                            stored: bad.len() as u64,
                            ingest: Some(r.ingest_time_ms()),
                        },
                    );
                }
            }
            Action::Garbage { up, len } => {
                let mut bytes = vec![0x5Au8; *len];
                if let Some(b) = bytes.first_mut() {
                    *b = 0xFF; // no such version: the header is unreadable
                }
                let id = self.fresh_id();
                self.q().insert_raw_for_test(UPSTREAMS[*up], id, &bytes);
                self.lanes[*up].entries.insert(
                    id,
                    Entry::Corrupt {
                        lines: 0,
                        raw: 0,
                        stored: *len as u64,
                        ingest: None,
                    },
                );
            }
            Action::Reopen => {
                self.q().flush().unwrap();
                self.queue = None;
                self.queue = Some(open(self.dir.path(), &UPSTREAMS));
                for lane in &mut self.lanes {
                    lane.corrupt_total = 0; // a process-lifetime counter
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let q = self.q();
        prop_assert!(q.is_healthy());
        for (i, up) in UPSTREAMS.iter().enumerate() {
            let lane = &self.lanes[i];
            prop_assert_eq!(q.len(up).unwrap(), lane.stats(), "counters of {}", up);
            let dlq = q.dlq_stats(up).unwrap();
            prop_assert_eq!(dlq.records, lane.dlq, "dead letters of {}", up);
            prop_assert_eq!(dlq.corrupt_total, lane.corrupt_total);
            prop_assert_eq!(dlq.evicted_total, 0);
            let real_ids: Vec<u64> = q
                .raw_entries_for_test(up)
                .iter()
                .map(|(id, _)| *id)
                .collect();
            let model_ids: Vec<u64> = lane.entries.keys().copied().collect();
            prop_assert_eq!(real_ids, model_ids, "ids of {}", up);
        }
        Ok(())
    }
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config();
    let queue = Some(open(dir.path(), &UPSTREAMS));
    let mut h = Harness {
        dir,
        cfg,
        queue,
        lanes: UPSTREAMS.iter().map(|_| Lane::default()).collect(),
        max_id: None,
    };
    for a in actions {
        h.step(a)?;
    }
    // Finally everything still queued must survive one more reopen, in order.
    h.step(&Action::Reopen)?;
    let q = h.q();
    for (i, up) in UPSTREAMS.iter().enumerate() {
        let expected: Vec<u64> = h.lanes[i].entries.keys().copied().collect();
        let got: Vec<u64> = q
            .raw_entries_for_test(up)
            .iter()
            .map(|(id, _)| *id)
            .collect();
        prop_assert_eq!(got, expected);
    }
    Ok(())
}

proptest! {
    // Each case opens sled databases in a temp dir: keep the count fixed and modest
    // (CI's PROPTEST_CASES is meant for the cheap codec properties).
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(actions in prop::collection::vec(action(), 1..40)) {
        run(&actions)?;
    }
}
