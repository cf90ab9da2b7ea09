//! The metric registry: the metrics the store accepts, each with a dense id.
//!
//! With a `metrics` section in the configuration the registry is fixed at
//! start-up: samples of other names are dropped at ingest, and ids follow the
//! names' sorted order, so they are the same on every start.
//!
//! Without a `metrics` section the registry **learns**: the first sample of
//! a new name registers it (logged once). Its frequency is
//! [`PROVISIONAL_FREQUENCY`] until a second, later sample of the same series
//! shows the collectors' interval ([`Registry::observe`]); a frequency found
//! in a checkpoint is taken as it is. A learned metric's aggregation is the
//! one of the built-in metric list when the name is on it, otherwise `null`
//! (no aggregation across sub-levels: a query that would need it answers with
//! an error instead of a guess).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use foldhash::fast::RandomState;
use parking_lot::RwLock;

use crate::config::{Aggregation, MetricConfig};
use crate::tree::{Level, MetricId};

/// Frequency of a learned metric until its samples show their interval.
pub const PROVISIONAL_FREQUENCY: i64 = 60;

/// Bounds of a frequency learned from two samples' distance, in seconds.
pub const LEARNED_FREQUENCY_RANGE: std::ops::RangeInclusive<i64> = 1..=3600;

/// How many metrics a learning registry takes; samples of further names are
/// dropped as unknown (and logged).
pub const LEARNED_CAPACITY: usize = 4096;

/// A metric the store accepts.
#[derive(Debug)]
pub struct MetricInfo {
    /// Measurement name.
    pub name: String,
    /// Slot width in seconds (> 0); changes once for a learned metric.
    frequency: AtomicI64,
    /// How a query combines several chains (children) of this metric.
    pub aggregation: Aggregation,
    /// Whether the frequency is final: configured, found in a checkpoint, or
    /// learned from two samples.
    settled: AtomicBool,
}

impl MetricInfo {
    fn new(name: &str, frequency: i64, aggregation: Aggregation, settled: bool) -> MetricInfo {
        MetricInfo {
            name: name.to_owned(),
            frequency: AtomicI64::new(frequency),
            aggregation,
            settled: AtomicBool::new(settled),
        }
    }

    /// Slot width in seconds.
    #[must_use]
    pub fn frequency(&self) -> i64 {
        self.frequency.load(Ordering::Relaxed)
    }

    /// Whether the frequency is final.
    #[must_use]
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }
}

/// The metrics of a learning registry.
#[derive(Debug)]
struct Learned {
    by_name: RwLock<HashMap<String, MetricId, RandomState>>,
    /// Aggregations of the built-in metric list, for names found on it.
    known: BTreeMap<String, Aggregation>,
}

/// All metrics the store accepts.
#[derive(Debug)]
pub struct Registry {
    /// Metric by id; filled in id order and never emptied, so references
    /// into it stay valid while the registry lives.
    slots: Box<[OnceLock<MetricInfo>]>,
    /// Configured names (a fixed registry).
    fixed: HashMap<String, MetricId, RandomState>,
    /// `Some` for a learning registry.
    learned: Option<Learned>,
}

impl Default for Registry {
    /// A fixed registry without metrics.
    fn default() -> Self {
        Registry::new(&BTreeMap::new())
    }
}

impl Registry {
    /// A fixed registry: exactly the metrics of the `metrics` section.
    #[must_use]
    pub fn new(metrics: &BTreeMap<String, MetricConfig>) -> Registry {
        let slots: Box<[OnceLock<MetricInfo>]> = metrics
            .iter()
            .map(|(name, m)| {
                OnceLock::from(MetricInfo::new(name, m.frequency, m.aggregation, true))
            })
            .collect();
        let fixed = metrics
            .keys()
            .enumerate()
            .map(|(id, name)| (name.clone(), id))
            .collect();
        Registry {
            slots,
            fixed,
            learned: None,
        }
    }

    /// A learning registry (no `metrics` section). `known` supplies the
    /// aggregation of names it lists (the built-in metric list).
    #[must_use]
    pub fn learning(known: &BTreeMap<String, MetricConfig>) -> Registry {
        Registry {
            slots: (0..LEARNED_CAPACITY).map(|_| OnceLock::new()).collect(),
            fixed: HashMap::default(),
            learned: Some(Learned {
                by_name: RwLock::new(HashMap::default()),
                known: known
                    .iter()
                    .map(|(name, m)| (name.clone(), m.aggregation))
                    .collect(),
            }),
        }
    }

    /// Whether this registry learns metrics from their samples.
    #[must_use]
    pub fn is_learning(&self) -> bool {
        self.learned.is_some()
    }

    /// The id of `name`, if the store accepts it already.
    #[must_use]
    pub fn id(&self, name: &str) -> Option<MetricId> {
        match &self.learned {
            None => self.fixed.get(name).copied(),
            Some(learned) => learned.by_name.read().get(name).copied(),
        }
    }

    /// The metric with id `id`.
    #[must_use]
    pub fn get(&self, id: MetricId) -> Option<&MetricInfo> {
        self.slots.get(id).and_then(OnceLock::get)
    }

    /// The metric named `name`, with its id, if the store accepts it already.
    #[must_use]
    pub fn lookup(&self, name: &str) -> Option<(MetricId, &MetricInfo)> {
        let id = self.id(name)?;
        Some((id, self.get(id)?))
    }

    /// [`Self::lookup`], registering `name` first in a learning registry.
    /// `frequency` is the one a checkpoint gives (then it is final); without
    /// it the metric starts at [`PROVISIONAL_FREQUENCY`]. `None` from a fixed
    /// registry for an unconfigured name, and from a full learning registry.
    pub fn lookup_or_learn(
        &self,
        name: &str,
        frequency: Option<i64>,
    ) -> Option<(MetricId, &MetricInfo)> {
        if let Some(found) = self.lookup(name) {
            return Some(found);
        }
        let learned = self.learned.as_ref()?;
        if name.is_empty() {
            return None;
        }
        let mut by_name = learned.by_name.write();
        if let Some(&id) = by_name.get(name) {
            return Some((id, self.get(id)?));
        }
        let id = by_name.len();
        let slot = self.slots.get(id)?;
        let aggregation = learned
            .known
            .get(name)
            .copied()
            .unwrap_or(Aggregation::None);
        let settled = frequency.is_some_and(|f| f > 0);
        let info = MetricInfo::new(
            name,
            frequency
                .filter(|f| *f > 0)
                .unwrap_or(PROVISIONAL_FREQUENCY),
            aggregation,
            settled,
        );
        if slot.set(info).is_err() {
            return None;
        }
        by_name.insert(name.to_owned(), id);
        drop(by_name);
        let info = self.get(id)?;
        if settled {
            tracing::info!(
                metric = name,
                frequency = info.frequency(),
                aggregation = aggregation_word(aggregation),
                "learned a metric from the checkpoints (no `metrics` section in the configuration)"
            );
        } else {
            tracing::info!(
                metric = name,
                aggregation = aggregation_word(aggregation),
                "learned a new metric from its first sample (no `metrics` section in the \
                 configuration); its frequency is {PROVISIONAL_FREQUENCY} s until a second \
                 sample of the same series shows the collectors' interval"
            );
        }
        Some((id, info))
    }

    /// For a learned metric whose frequency is not final yet: if the chain
    /// of `metric` in `level` holds a single sample older than `ts`, the
    /// distance is the collectors' interval and becomes the metric's
    /// frequency (clamped to [`LEARNED_FREQUENCY_RANGE`]). Call before
    /// writing the sample at `ts`.
    pub fn observe(&self, metric: MetricId, info: &MetricInfo, level: &Level, ts: i64) {
        if info.is_settled() {
            return;
        }
        let Some(previous) = level.single_sample_time(metric) else {
            return;
        };
        if ts <= previous {
            return;
        }
        let interval = (ts - previous).clamp(
            *LEARNED_FREQUENCY_RANGE.start(),
            *LEARNED_FREQUENCY_RANGE.end(),
        );
        if info
            .settled
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            info.frequency.store(interval, Ordering::Relaxed);
            tracing::info!(
                metric = info.name,
                frequency = interval,
                "learned a metric's frequency from the distance of its first two samples"
            );
        }
    }

    /// All metrics in id order.
    pub fn metrics(&self) -> impl Iterator<Item = &MetricInfo> {
        self.slots.iter().map_while(OnceLock::get)
    }

    /// Number of metrics.
    #[must_use]
    pub fn len(&self) -> usize {
        self.metrics().count()
    }

    /// Whether there is no metric (yet).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.get(0).is_none()
    }
}

fn aggregation_word(aggregation: Aggregation) -> &'static str {
    match aggregation {
        Aggregation::Sum => "sum",
        Aggregation::Avg => "avg",
        Aggregation::None => "null",
    }
}

#[cfg(test)]
mod tests;
