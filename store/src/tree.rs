//! The level tree: root → cluster → host → sub-device levels, each holding one
//! optional [`Chain`] per configured metric.
//!
//! Every level has its own reader/writer lock over its chains and its map of
//! children; there is no global lock. A write locks only the level it writes
//! to (after shared lookups on the way down), so ingest into different hosts
//! and different sub-devices of one host proceeds in parallel, and queries
//! hold a shared lock on one level at a time while they copy values out.
//!
//! Levels are created on demand by writes (and by checkpoint restore), never
//! by queries, health checks or `free`.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use parking_lot::RwLock;

use crate::buffer::{Chain, WriteError};

/// Index of a configured metric in [`Metrics`].
pub type MetricId = usize;

/// What a subtree holds (see [`Level::census`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Levels, the subtree's root included.
    pub levels: usize,
    /// Chains: one per metric and level that holds data.
    pub series: usize,
    /// Chunks of all chains.
    pub chunks: usize,
    /// Bytes, as [`Level::allocated_bytes`] counts them.
    pub bytes: usize,
}

/// One level of the tree.
#[derive(Debug)]
pub struct Level {
    inner: RwLock<LevelData>,
}

/// What a level holds, behind its lock.
#[derive(Debug, Default)]
pub struct LevelData {
    /// One optional chain per metric, indexed by [`MetricId`].
    pub chains: Vec<Option<Chain>>,
    /// Child levels by name (`hwthread17`, `socket0`, …).
    pub children: HashMap<Box<str>, Arc<Level>, RandomState>,
}

impl LevelData {
    /// Whether the level holds neither data nor children.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && self.chains.iter().all(Option::is_none)
    }
}

impl Default for Level {
    fn default() -> Self {
        Level::new()
    }
}

impl Level {
    /// An empty level.
    #[must_use]
    pub fn new() -> Level {
        Level {
            inner: RwLock::new(LevelData::default()),
        }
    }

    /// Shared access to the level's data.
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, LevelData> {
        self.inner.read()
    }

    /// Exclusive access to the level's data.
    pub fn write(&self) -> parking_lot::RwLockWriteGuard<'_, LevelData> {
        self.inner.write()
    }

    /// The child named `name`, if it exists.
    #[must_use]
    pub fn child(&self, name: &str) -> Option<Arc<Level>> {
        self.inner.read().children.get(name).cloned()
    }

    /// The child named `name`, created if missing.
    pub fn child_or_create(&self, name: &str) -> Arc<Level> {
        if let Some(child) = self.child(name) {
            return child;
        }
        let mut data = self.inner.write();
        Arc::clone(
            data.children
                .entry(Box::from(name))
                .or_insert_with(|| Arc::new(Level::new())),
        )
    }

    /// The level at `path` below this one, if every step exists.
    #[must_use]
    pub fn find<S: AsRef<str>>(self: &Arc<Self>, path: &[S]) -> Option<Arc<Level>> {
        let mut cur = Arc::clone(self);
        for name in path {
            cur = cur.child(name.as_ref())?;
        }
        Some(cur)
    }

    /// The level at `path` below this one, created as needed.
    pub fn find_or_create<S: AsRef<str>>(self: &Arc<Self>, path: &[S]) -> Arc<Level> {
        let mut cur = Arc::clone(self);
        for name in path {
            cur = cur.child_or_create(name.as_ref());
        }
        cur
    }

    /// Writes one sample of `metric` (slot width `frequency`) into this level.
    ///
    /// # Errors
    ///
    /// [`WriteError::FromPast`] if the sample is older than the head chunk.
    pub fn write_sample(
        &self,
        metric: MetricId,
        frequency: i64,
        ts: i64,
        value: f64,
    ) -> Result<(), WriteError> {
        let mut data = self.inner.write();
        if data.chains.len() <= metric {
            data.chains.resize_with(metric + 1, || None);
        }
        match data.chains.get_mut(metric) {
            Some(Some(chain)) => {
                chain.adopt_frequency(frequency);
                chain.write(ts, value)
            }
            Some(slot) => {
                *slot = Some(Chain::with_sample(ts, value, frequency));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The time of the only sample of `metric` in this level, if its chain
    /// holds exactly one (how a learned metric's interval is found).
    #[must_use]
    pub fn single_sample_time(&self, metric: MetricId) -> Option<i64> {
        let data = self.inner.read();
        let chain = data.chains.get(metric)?.as_ref()?;
        match chain.chunks() {
            [only] if only.len() == 1 => Some(only.first_write()),
            _ => None,
        }
    }

    /// Frees, in this level's subtree, every chunk that ended before `t`, and
    /// removes descendants left without data or children (except levels in
    /// use elsewhere right now, e.g. by a write in progress, so that no
    /// sample goes into a level that is no longer in the tree). This level
    /// itself stays. Returns the number of chunks freed.
    pub fn free(&self, t: i64) -> usize {
        self.free_inner(t, false)
    }

    /// [`Self::free`], but keeps chunks not yet saved to a checkpoint (they
    /// go in a later round, once saved): what retention and the memory cap
    /// use, so that freeing never loses data from disk.
    pub fn free_saved(&self, t: i64) -> usize {
        self.free_inner(t, true)
    }

    fn free_inner(&self, t: i64, keep_unsaved: bool) -> usize {
        let mut data = self.inner.write();
        let mut freed = 0;
        for slot in &mut data.chains {
            if let Some(chain) = slot {
                freed += chain.free(t, keep_unsaved);
                if chain.is_empty() {
                    *slot = None;
                }
            }
        }
        data.children.retain(|_, child| {
            freed += child.free_inner(t, keep_unsaved);
            // New references are only made under this level's lock, which
            // is held: a count of one is ours alone.
            Arc::strong_count(child) > 1 || !child.read().is_empty()
        });
        freed
    }

    /// Whether any series in this subtree has a sample in its newest chunk
    /// that is not stale at `now` (within five of its periods, the rule of
    /// the health check). Stops at the first such series, so a host that
    /// reports is answered quickly.
    #[must_use]
    pub fn has_fresh_data(&self, now: i64) -> bool {
        let children: Vec<Arc<Level>> = {
            let data = self.inner.read();
            if data
                .chains
                .iter()
                .flatten()
                .any(|c| c.head_is_stale(now) == Some(false))
            {
                return true;
            }
            data.children.values().cloned().collect()
        };
        children.iter().any(|c| c.has_fresh_data(now))
    }

    /// Time of the newest sample anywhere in this subtree, Unix seconds
    /// ([`Chain::newest_sample`]); `None` without data. Holds one level's
    /// shared lock at a time, as [`Level::census`] does.
    #[must_use]
    pub fn newest_sample(&self) -> Option<i64> {
        let (own, children) = {
            let data = self.inner.read();
            let own = data
                .chains
                .iter()
                .flatten()
                .filter_map(Chain::newest_sample)
                .max();
            let children: Vec<Arc<Level>> = data.children.values().cloned().collect();
            (own, children)
        };
        children
            .iter()
            .filter_map(|c| c.newest_sample())
            .chain(own)
            .max()
    }

    /// Bytes held by this subtree: slot arrays by capacity, plus a rough
    /// fixed cost per chunk and per level (what the memory cap counts).
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.census().bytes
    }

    /// Levels, series, chunks and bytes of this subtree, in one walk that
    /// holds one level's shared lock at a time: a level's children are
    /// copied out and its lock released before they are visited, so a walk
    /// over a large tree never holds up the creation of a level (and the
    /// readers queued behind it) for longer than one level takes.
    #[must_use]
    pub fn census(&self) -> Census {
        const LEVEL_OVERHEAD: usize = 256;
        const CHUNK_OVERHEAD: usize = 64;
        let (mut census, children) = {
            let data = self.inner.read();
            let mut census = Census {
                levels: 1,
                bytes: LEVEL_OVERHEAD
                    + data.chains.capacity() * std::mem::size_of::<Option<Chain>>(),
                ..Census::default()
            };
            for chain in data.chains.iter().flatten() {
                census.series += 1;
                census.chunks += chain.chunks().len();
                census.bytes += chain.allocated_bytes() + chain.chunks().len() * CHUNK_OVERHEAD;
            }
            let children: Vec<Arc<Level>> = data.children.values().cloned().collect();
            (census, children)
        };
        for child in &children {
            let c = child.census();
            census.levels += c.levels;
            census.series += c.series;
            census.chunks += c.chunks;
            census.bytes += c.bytes;
        }
        census
    }

    /// Names of the children, sorted.
    #[must_use]
    pub fn child_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .read()
            .children
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Visits every chain of `metric` that a query ending at this level
    /// selects: this level's own chain if it has one, otherwise, recursively,
    /// those of its children (in name order, so results are reproducible).
    pub fn visit_chains(&self, metric: MetricId, visit: &mut dyn FnMut(&Chain)) {
        let data = self.inner.read();
        if let Some(Some(chain)) = data.chains.get(metric) {
            visit(chain);
            return;
        }
        let mut children: Vec<(&Box<str>, &Arc<Level>)> = data.children.iter().collect();
        children.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (_, child) in children {
            child.visit_chains(metric, visit);
        }
    }

    /// Visits every level of the subtree (this one included), depth first.
    pub fn visit_levels(&self, visit: &mut dyn FnMut(&LevelData)) {
        let data = self.inner.read();
        visit(&data);
        for child in data.children.values() {
            child.visit_levels(visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_created_on_demand_and_found_again() {
        let root = Arc::new(Level::new());
        let host = root.find_or_create(&["c", "h"]);
        host.write_sample(0, 60, 1000, 1.0).unwrap();
        assert!(root.find(&["c", "h"]).is_some());
        assert!(root.find(&["c", "x"]).is_none());
        assert_eq!(root.child_names(), ["c"]);
    }

    #[test]
    fn fresh_data_is_found_anywhere_below_a_host() {
        let root = Arc::new(Level::new());
        let host = root.find_or_create(&["c", "h"]);
        assert!(!host.has_fresh_data(1000), "no data at all");
        // A node metric written at 1000 (frequency 60) is fresh until 1300.
        host.write_sample(0, 60, 1000, 1.0).unwrap();
        assert!(host.has_fresh_data(1300));
        assert!(!host.has_fresh_data(1400));
        // A newer sample two levels down keeps the host fresh.
        root.find_or_create(&["c", "h", "socket0", "memctrl1"])
            .write_sample(1, 60, 1300, 2.0)
            .unwrap();
        assert!(host.has_fresh_data(1400));
        assert!(root.has_fresh_data(1400));
        assert!(!host.has_fresh_data(1700));
    }

    #[test]
    fn the_newest_sample_is_found_anywhere_below_a_host() {
        let root = Arc::new(Level::new());
        let host = root.find_or_create(&["c", "h"]);
        assert_eq!(host.newest_sample(), None);
        host.write_sample(0, 60, 1000, 1.0).unwrap();
        assert_eq!(host.newest_sample(), Some(1000));
        root.find_or_create(&["c", "h", "socket0"])
            .write_sample(1, 10, 1300, 2.0)
            .unwrap();
        assert_eq!(host.newest_sample(), Some(1300));
        assert_eq!(root.newest_sample(), Some(1300));
    }

    #[test]
    fn visit_prefers_the_level_own_chain() {
        let root = Arc::new(Level::new());
        let host = root.find_or_create(&["c", "h"]);
        for t in 0..3 {
            host.child_or_create(&format!("hwthread{t}"))
                .write_sample(1, 60, 1000, f64::from(t))
                .unwrap();
        }
        let mut seen = 0;
        host.visit_chains(1, &mut |_| seen += 1);
        assert_eq!(seen, 3, "children's chains when the host has none");
        host.write_sample(1, 60, 1000, 9.0).unwrap();
        let mut values = Vec::new();
        host.visit_chains(1, &mut |c| values.push(c.head().unwrap().data[0]));
        assert_eq!(values, [9.0], "the host's own chain hides its children");
    }

    #[test]
    fn free_keeps_an_empty_level_that_a_writer_still_holds() {
        let root = Arc::new(Level::new());
        let held = root.find_or_create(&["c", "h"]);
        assert_eq!(root.free(1000), 0);
        assert!(root.find(&["c", "h"]).is_some(), "held by a writer");
        held.write_sample(0, 10, 100, 1.0).unwrap();
        drop(held);
        root.free(1000);
        assert!(root.find(&["c"]).is_none(), "emptied and no longer held");
    }

    #[test]
    fn free_removes_emptied_descendants_but_not_the_start_level() {
        let root = Arc::new(Level::new());
        let host = root.find_or_create(&["c", "h"]);
        host.child_or_create("socket0")
            .write_sample(0, 10, 100, 1.0)
            .unwrap();
        host.write_sample(0, 10, 100, 1.0).unwrap();
        assert_eq!(host.free(50), 0);
        assert_eq!(host.free(1000), 2);
        assert!(host.read().is_empty());
        assert!(root.find(&["c", "h"]).is_some(), "start level stays");
        drop(host);
        assert_eq!(root.free(1000), 0);
        assert!(root.find(&["c"]).is_none(), "emptied levels below go");
    }
}
