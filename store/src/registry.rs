//! The metric registry: the configured metrics, each with a dense id.
//!
//! Fixed at start-up from the `metrics` section of the configuration; samples
//! of other names are dropped at ingest. Ids follow the names' sorted order,
//! so they are the same on every start with the same configuration.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

use crate::config::{Aggregation, MetricConfig};
use crate::tree::MetricId;

/// A configured metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// Measurement name.
    pub name: String,
    /// Slot width in seconds (> 0).
    pub frequency: i64,
    /// How a query combines several chains (children) of this metric.
    pub aggregation: Aggregation,
}

/// All configured metrics.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    metrics: Vec<MetricInfo>,
    by_name: HashMap<String, MetricId, RandomState>,
}

impl Registry {
    /// Builds the registry from the `metrics` configuration section.
    #[must_use]
    pub fn new(metrics: &BTreeMap<String, MetricConfig>) -> Registry {
        let metrics: Vec<MetricInfo> = metrics
            .iter()
            .map(|(name, m)| MetricInfo {
                name: name.clone(),
                frequency: m.frequency,
                aggregation: m.aggregation,
            })
            .collect();
        let by_name = metrics
            .iter()
            .enumerate()
            .map(|(id, m)| (m.name.clone(), id))
            .collect();
        Registry { metrics, by_name }
    }

    /// The id of `name`, if configured.
    #[must_use]
    pub fn id(&self, name: &str) -> Option<MetricId> {
        self.by_name.get(name).copied()
    }

    /// The metric with id `id`.
    #[must_use]
    pub fn get(&self, id: MetricId) -> Option<&MetricInfo> {
        self.metrics.get(id)
    }

    /// The metric named `name`, with its id.
    #[must_use]
    pub fn lookup(&self, name: &str) -> Option<(MetricId, &MetricInfo)> {
        let id = self.id(name)?;
        Some((id, self.metrics.get(id)?))
    }

    /// All metrics in id order.
    #[must_use]
    pub fn metrics(&self) -> &[MetricInfo] {
        &self.metrics
    }

    /// Number of metrics.
    #[must_use]
    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    /// Whether no metric is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}
