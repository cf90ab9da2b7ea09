//! Dead letters: rejected lines stored with their reason, corrupt records moved aside,
//! and the `dead_letter.max_bytes` cap.

use parking_lot::MutexGuard;
use sled::{Batch, IVec};

use super::{Lane, LaneState, Queue, REASON_CORRUPT, id_of, key, now_ms, sizes_of};
use crate::queue::record::DeadLetterEntry;
use crate::queue::{DlqStats, QueueError, RemovedStats};

impl Queue {
    /// Stores rejected line(s) of record `id` in `upstream`'s dead-letter tree with a
    /// reason and the HTTP status (spec §4.7). Does not touch the queue: the caller acks
    /// the record once its other lines are delivered. Evicts the oldest dead letters
    /// beyond [`crate::queue::QueueConfig::dead_letter_max_bytes`]. No flush.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownUpstream`], [`QueueError::Poisoned`], [`QueueError::Storage`].
    pub fn dead_letter(
        &self,
        upstream: &str,
        id: u64,
        lines: &[u8],
        reason: &str,
        status: Option<u16>,
    ) -> Result<(), QueueError> {
        self.poison.check()?;
        let lane = self.lane(upstream)?;
        let entry = DeadLetterEntry {
            time_ms: now_ms(),
            record_id: id,
            status,
            reason: reason.to_owned(),
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
