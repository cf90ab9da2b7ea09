//! Lock-free counters shared between the data path and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) for request and acknowledgement latencies.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS`]).
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all observations in microseconds.
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = self.counts.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Per-bucket counts (the last is the overflow) and the sum in seconds.
    #[must_use]
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds as seconds"
        )]
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (counts, sum)
    }
}

/// Why an attempt to send failed (the `reason` label of
/// `ccrelay_upstream_failures_total`).
pub const FAILURE_REASONS: [&str; 6] =
    ["connect", "timeout", "tls", "http_4xx", "http_5xx", "auth"];

/// Failures per reason ([`FAILURE_REASONS`]).
#[derive(Debug, Default)]
pub struct FailureCounts([AtomicU64; FAILURE_REASONS.len()]);

impl FailureCounts {
    /// Counts one failure.
    pub fn add(&self, reason: &str) {
        let index = FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        if let Some(c) = self.0.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(reason, count)` pairs.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        FAILURE_REASONS
            .iter()
            .zip(&self.0)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_sum() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let (counts, sum) = h.snapshot();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[5], 1, "30 ms is in the 50 ms bucket");
        assert_eq!(counts[LATENCY_BUCKETS.len()], 1, "above every bound");
        assert!((sum - 20.0305).abs() < 1e-9);
    }

    #[test]
    fn failure_reasons_are_counted_apart() {
        let f = FailureCounts::default();
        f.add("timeout");
        f.add("timeout");
        f.add("auth");
        let snap = f.snapshot();
        assert!(
            snap.contains(&("timeout", 2))
                && snap.contains(&("auth", 1))
                && snap.contains(&("connect", 0))
        );
    }
}
