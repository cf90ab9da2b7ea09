//! Dead letters: rejected lines stored with their reason, corrupt records moved aside,
//! the `dead_letter.max_bytes` cap, and the operator's replay and purge.
//!
//! # Replay never loses a line
//!
//! [`Queue::dlq_replay`] copies entries into the queue as new records, flushes (fsync),
//! and only then removes the entries from the dead-letter tree. A crash before the
//! flush returned leaves the entries in the dead-letter tree (and perhaps some of the
//! new records too); a crash after it leaves the lines in the queue (and perhaps still
//! in the dead-letter tree, if the removal was not written yet). So a crash may
//! duplicate lines — a second replay sends them twice, which the store tolerates — but
//! never loses one.

use parking_lot::MutexGuard;
use sled::{Batch, IVec};

use super::{Lane, LaneState, Queue, REASON_CORRUPT, id_of, key, now_ms, sizes_of};
use crate::queue::record::{DeadLetterEntry, Record, RecordMeta, SplitLimits};
use crate::queue::{DlqPurged, DlqReplayed, DlqStats, Origin, QueueError, RemovedStats};

impl Queue {
    /// Stores rejected line(s) of record `origin` in `upstream`'s dead-letter tree with
    /// a reason and the HTTP status (spec §4.7), and the record's default cluster and
    /// hop count for a replay. Does not touch the queue: the caller acks
    /// the record once its other lines are delivered. Evicts the oldest dead letters
    /// beyond [`crate::queue::QueueConfig::dead_letter_max_bytes`]. No flush.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn dead_letter(
        &self,
        upstream: &str,
        origin: Origin<'_>,
        lines: &[u8],
        reason: &str,
        status: Option<u16>,
    ) -> Result<(), QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let entry = DeadLetterEntry {
            time_ms: now_ms(),
            record_id: origin.record_id,
            status,
            reason: reason.to_owned(),
            cluster: origin.cluster.to_owned(),
            hops: origin.hops,
            lines: lines.to_vec(),
        }
        .encode();
        let mut st = lane.state.lock();
        let dlq_id = self.engine("generate_id", self.db.generate_id())?;
        self.insert_dead_letter(lane, &mut st, dlq_id, entry)
    }

    /// Number of dead-letter entries of `upstream`.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`].
    pub fn dlq_len(&self, upstream: &str) -> Result<u64, QueueError> {
        Ok(self.dlq_stats(upstream)?.records)
    }

    /// Dead-letter counters of `upstream` (in memory; readable while poisoned).
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`].
    pub fn dlq_stats(&self, upstream: &str) -> Result<DlqStats, QueueError> {
        Ok(self.lane(upstream)?.state.lock().dlq)
    }

    /// Up to `max` dead-letter entries of `upstream`, oldest first (for `dlq dump`);
    /// undecodable entries are skipped with a warning.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn dlq_entries(
        &self,
        upstream: &str,
        max: usize,
    ) -> Result<Vec<(u64, DeadLetterEntry)>, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let mut out = Vec::new();
        for item in lane.dlq.iter() {
            if out.len() >= max {
                break;
            }
            let (k, v) = self.engine("read", item)?;
            match (id_of(&k), DeadLetterEntry::decode(&v)) {
                (Some(id), Ok(e)) => out.push((id, e)),
                (_, Err(e)) => {
                    tracing::warn!(upstream, error = %e, "undecodable dead-letter entry")
                }
                (None, Ok(_)) => tracing::warn!(upstream, "dead-letter entry with a malformed key"),
            }
        }
        Ok(out)
    }

    /// Up to `max` entries of `upstream` that hold line protocol
    /// ([`DeadLetterEntry::is_replayable`]), oldest first, and how many entries were
    /// passed over on the way (corrupt records, entries that do not decode).
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn dlq_replayable(
        &self,
        upstream: &str,
        max: usize,
    ) -> Result<(Vec<(u64, DeadLetterEntry)>, u64), QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let mut out = Vec::new();
        let mut skipped = 0u64;
        if max == 0 {
            return Ok((out, skipped));
        }
        for item in lane.dlq.iter() {
            let (k, v) = self.engine("read", item)?;
            match (id_of(&k), DeadLetterEntry::decode(&v)) {
                (Some(id), Ok(e)) if e.is_replayable() => {
                    out.push((id, e));
                    if out.len() >= max {
                        break;
                    }
                }
                _ => skipped += 1,
            }
        }
        Ok((out, skipped))
    }

    /// Moves up to `max` dead-lettered lines of `upstream` back into its queue, oldest
    /// first, as new records (ingest time now, so `buffer.max_age` counts from the
    /// replay; each with the default cluster and hop count of the record the line came
    /// from, split with `limits`); they are then forwarded with the usual retries, and
    /// a line the upstream refuses again is dead-lettered again. Corrupt records and
    /// entries that do not decode are left in place and counted as skipped.
    ///
    /// Durable and crash-safe: the new records are flushed before the entries are
    /// removed, so a crash can duplicate lines but never lose one (module docs). One
    /// replay or purge runs at a time.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`]
    /// (the lines are then in the dead-letter tree, the queue, or both).
    pub fn dlq_replay(
        &self,
        upstream: &str,
        max: usize,
        limits: &SplitLimits,
    ) -> Result<DlqReplayed, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let _one_at_a_time = self.dlq_maintenance.lock();
        let mut done = self.replay_stage(upstream, max, limits)?;
        if done.keys.is_empty() {
            return Ok(done.result);
        }
        // INVARIANT: nothing leaves the dead-letter tree before its copy is durable.
        self.flush()?;
        let mut st = lane.state.lock();
        self.remove_dead_letters(lane, &mut st, &done.keys)?;
        done.result.entries = done.keys.len() as u64;
        Ok(done.result)
    }

    /// Step one of [`Queue::dlq_replay`]: appends the lines of up to `max` replayable
    /// entries to the queue (not durable yet) and returns their dead-letter keys. Only
    /// this step has run when a crash hits before the flush; tests call it alone.
    pub(crate) fn replay_stage(
        &self,
        upstream: &str,
        max: usize,
        limits: &SplitLimits,
    ) -> Result<Staged, QueueError> {
        let (entries, skipped) = self.dlq_replayable(upstream, max)?;
        let mut staged = Staged {
            keys: Vec::new(),
            result: DlqReplayed {
                skipped,
                ..DlqReplayed::default()
            },
        };
        let now = now_ms();
        let mut rest = entries.as_slice();
        while let Some((_, first)) = rest.first() {
            // Consecutive entries of the same origin share records.
            let n = rest
                .iter()
                .take_while(|(_, e)| e.cluster == first.cluster && e.hops == first.hops)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let mut payload = Vec::new();
            for (_, e) in group {
                payload.extend_from_slice(&e.lines);
                if !payload.ends_with(b"\n") {
                    payload.push(b'\n');
                }
            }
            let meta = RecordMeta {
                ingest_time_ms: now,
                hops: first.hops,
                cluster: first.cluster.clone(),
                source: format!("dlq-replay:{upstream}"),
            };
            let records = match Record::from_batch(&meta, &payload, limits) {
                Ok(records) => records,
                Err(e) => {
                    // Cannot happen for lines that came from a record; leave them.
                    tracing::warn!(upstream, error = %e, "dead letters cannot be queued again; left in place");
                    staged.result.skipped += group.len() as u64;
                    continue;
                }
            };
            let ids = self.append(&[upstream], &records)?;
            staged.result.lines += records
                .iter()
                .map(|r| u64::from(r.line_count()))
                .sum::<u64>();
            staged.result.record_ids.extend(ids);
            staged.keys.extend(group.iter().map(|(id, _)| *id));
        }
        Ok(staged)
    }

    /// Removes every dead-letter entry of `upstream`, corrupt ones included (one atomic
    /// batch, no flush of its own: a removal lost in a crash brings the entries back).
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn dlq_purge(&self, upstream: &str) -> Result<DlqPurged, QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let _one_at_a_time = self.dlq_maintenance.lock();
        let mut st = lane.state.lock();
        let mut batch = Batch::default();
        let mut purged = DlqPurged::default();
        for item in lane.dlq.iter() {
            let (k, v) = self.engine("read", item)?;
            purged.entries += 1;
            purged.stored_bytes += v.len() as u64;
            batch.remove(k);
        }
        if purged.entries > 0 {
            self.engine("remove", lane.dlq.apply_batch(batch))?;
            st.dlq.records = st.dlq.records.saturating_sub(purged.entries);
            st.dlq.stored_bytes = st.dlq.stored_bytes.saturating_sub(purged.stored_bytes);
        }
        Ok(purged)
    }

    /// Removes the entries `ids` that are still there (the cap may have evicted some)
    /// and keeps the counters in step; returns what went.
    fn remove_dead_letters(
        &self,
        lane: &Lane,
        st: &mut MutexGuard<'_, LaneState>,
        ids: &[u64],
    ) -> Result<DlqPurged, QueueError> {
        let mut batch = Batch::default();
        let mut gone = DlqPurged::default();
        for id in ids {
            if let Some(v) = self.engine("read", lane.dlq.get(key(*id)))? {
                batch.remove(key(*id).as_slice());
                gone.entries += 1;
                gone.stored_bytes += v.len() as u64;
            }
        }
        if gone.entries > 0 {
            self.engine("remove", lane.dlq.apply_batch(batch))?;
            st.dlq.records = st.dlq.records.saturating_sub(gone.entries);
            st.dlq.stored_bytes = st.dlq.stored_bytes.saturating_sub(gone.stored_bytes);
        }
        Ok(gone)
    }

    /// Moves an undecodable value from the queue to the dead-letter tree (same id), unless
    /// someone else already did. Insert before remove: a crash in between leaves a copy
    /// in both trees, and the next peek overwrites the same dead-letter key.
    pub(super) fn move_corrupt(
        &self,
        upstream: &str,
        lane: &Lane,
        k: &IVec,
        v: &IVec,
        why: &str,
    ) -> Result<(), QueueError> {
        let mut st = lane.state.lock();
        match self.engine("read", lane.q.get(k))? {
            Some(current) if current == *v => {}
            _ => return Ok(()),
        }
        let record_id = id_of(k);
        let dlq_id = match record_id {
            Some(id) => id,
            None => self.engine("generate_id", self.db.generate_id())?,
        };
        let entry = DeadLetterEntry {
            time_ms: now_ms(),
            record_id: record_id.unwrap_or(0),
            status: None,
            reason: REASON_CORRUPT.to_owned(),
            cluster: String::new(),
            hops: 0,
            lines: v.to_vec(),
        }
        .encode();
        self.insert_dead_letter(lane, &mut st, dlq_id, entry)?;
        self.engine("remove", lane.q.remove(k))?;
        let mut removed = RemovedStats::default();
        removed.add(sizes_of(v));
        self.account_removal(lane, &mut st, &removed)?;
        st.dlq.corrupt_total += 1;
        tracing::warn!(
            upstream,
            id = ?record_id,
            bytes = v.len(),
            error = why,
            "corrupt queue record moved to the dead-letter tree"
        );
        Ok(())
    }

    fn insert_dead_letter(
        &self,
        lane: &Lane,
        st: &mut MutexGuard<'_, LaneState>,
        dlq_id: u64,
        entry: Vec<u8>,
    ) -> Result<(), QueueError> {
        let len = entry.len() as u64;
        let old = self.engine("insert", lane.dlq.insert(key(dlq_id), entry))?;
        if let Some(old) = old {
            st.dlq.records = st.dlq.records.saturating_sub(1);
            st.dlq.stored_bytes = st.dlq.stored_bytes.saturating_sub(old.len() as u64);
        }
        st.dlq.records += 1;
        st.dlq.stored_bytes += len;
        // Cap: evict the oldest entries, but keep the newest one whatever its size.
        let cap = self.cfg.dead_letter_max_bytes;
        if st.dlq.stored_bytes > cap {
            let mut batch = Batch::default();
            let (mut n, mut bytes) = (0u64, 0u64);
            for item in lane.dlq.iter() {
                if st.dlq.stored_bytes - bytes <= cap || st.dlq.records - n <= 1 {
                    break;
                }
                let (k, v) = self.engine("read", item)?;
                n += 1;
                bytes += v.len() as u64;
                batch.remove(k);
            }
            self.engine("remove", lane.dlq.apply_batch(batch))?;
            st.dlq.records -= n;
            st.dlq.stored_bytes -= bytes;
            st.dlq.evicted_total += n;
        }
        Ok(())
    }
}

/// What the first step of a replay queued: the dead-letter keys to remove once the
/// copies are durable, and the counts so far.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) keys: Vec<u64>,
    pub(crate) result: DlqReplayed,
}
