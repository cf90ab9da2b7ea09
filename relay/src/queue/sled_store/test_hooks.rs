//! Test-only access that bypasses the record codec and the counters' normal paths.

use super::{Queue, id_of, key, sizes_of};

/// Hooks for tests in this crate: raw access that bypasses the record codec.
impl Queue {
    /// Inserts `bytes` under `id` in `upstream`'s queue, counted like an append.
    pub(crate) fn insert_raw_for_test(&self, upstream: &str, id: u64, bytes: &[u8]) {
        let lane = self.lane(upstream).unwrap();
        let mut st = lane.state.lock();
        lane.q.insert(key(id), bytes).unwrap();
        st.stats.add(sizes_of(bytes));
        if st.stats.oldest_ingest_ms.is_none() {
            st.stats.oldest_ingest_ms = self.head_ingest(lane).unwrap();
        }
    }

    /// Every (id, value) of `upstream`'s queue, in key order.
    pub(crate) fn raw_entries_for_test(&self, upstream: &str) -> Vec<(u64, Vec<u8>)> {
        let lane = self.lane(upstream).unwrap();
        lane.q
            .iter()
            .map(|item| {
                let (k, v) = item.unwrap();
                (id_of(&k).unwrap(), v.to_vec())
            })
            .collect()
    }

    /// A fresh id from the engine.
    pub(crate) fn generate_id_for_test(&self) -> u64 {
        self.db.generate_id().unwrap()
    }

    /// Poisons the queue as an engine error would.
    pub(crate) fn poison_for_test(&self, reason: &str) {
        self.poison.set(reason.to_owned());
    }
}
