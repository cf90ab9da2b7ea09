//! Rates from counter snapshots, taken when a status page or its JSON is
//! asked for.
//!
//! A status page shows "lines per second" without a background task: every
//! request hands its counters to [`RateWindow::observe`], which keeps a
//! short history of snapshots and answers the rate of each counter against
//! the newest snapshot that is at least `min_span` old. A page refreshing
//! every 5 s thus sees the rate over the last 5 s; a script asking once a
//! minute the rate over that minute. Snapshots older than `max_span` are
//! forgotten, so the first request after a long pause has no rate (`None`)
//! rather than an average over hours.
//!
//! Invariants: snapshots are ordered by time; at most one is kept per
//! [`RECORD_EVERY`], so the history holds at most `max_span / RECORD_EVERY`
//! entries however many clients ask.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A new snapshot is kept only if the newest kept one is at least this old.
pub const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Counter values by name, at one moment.
pub type Counters = BTreeMap<String, u64>;

/// The recent history of some counters (see the module documentation).
#[derive(Debug)]
pub struct RateWindow {
    /// A rate is computed over at least this long (shorter spans are noise).
    min_span: Duration,
    /// Snapshots older than this are dropped.
    max_span: Duration,
    /// Oldest first.
    snapshots: VecDeque<(Instant, Counters)>,
}

impl Default for RateWindow {
    /// Rates over at least 2 s, from snapshots at most 10 min old.
    fn default() -> Self {
        RateWindow::new(Duration::from_secs(2), Duration::from_secs(600))
    }
}

/// Per-second rates of some counters over one span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// The span the rates are measured over; `None` when there was no
    /// snapshot old enough (then there are no rates).
    pub span: Option<Duration>,
    per_second: BTreeMap<String, f64>,
}

impl Rates {
    /// The rate of `name` per second; `None` when it was not measured (no
    /// earlier snapshot, or the counter is new).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.per_second.get(name).copied()
    }
}

impl RateWindow {
    /// A window computing rates over at least `min_span` from snapshots at
    /// most `max_span` old.
    #[must_use]
    pub fn new(min_span: Duration, max_span: Duration) -> RateWindow {
        RateWindow {
            min_span,
            max_span: max_span.max(min_span),
            snapshots: VecDeque::new(),
        }
    }

    /// Records `counters` as taken at `at` and answers their rates since the
    /// newest earlier snapshot at least `min_span` old. A counter that went
    /// down (it cannot, within one process) counts as rate 0.
    pub fn observe(&mut self, at: Instant, counters: Counters) -> Rates {
        let max_span = self.max_span;
        self.snapshots
            .retain(|(t, _)| at.saturating_duration_since(*t) <= max_span);
        let reference = self
            .snapshots
            .iter()
            .rev()
            .find(|(t, _)| at.saturating_duration_since(*t) >= self.min_span);
        let rates = match reference {
            Some((then, old)) => {
                let span = at.saturating_duration_since(*then);
                let secs = span.as_secs_f64();
                let per_second = counters
                    .iter()
                    .filter_map(|(name, now)| {
                        let before = old.get(name)?;
                        #[expect(clippy::cast_precision_loss, reason = "a rate")]
                        let delta = now.saturating_sub(*before) as f64;
                        Some((name.clone(), delta / secs))
                    })
                    .collect();
                Rates {
                    span: Some(span),
                    per_second,
                }
            }
            None => Rates::default(),
        };
        let due = self
            .snapshots
            .back()
            .is_none_or(|(t, _)| at.saturating_duration_since(*t) >= RECORD_EVERY);
        if due {
            self.snapshots.push_back((at, counters));
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(pairs: &[(&str, u64)]) -> Counters {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn the_first_look_has_no_rate_the_next_one_does() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let first = w.observe(t0, counters(&[("a", 100)]));
        assert_eq!(first.span, None);
        assert_eq!(first.get("a"), None);
        let later = w.observe(
            t0 + Duration::from_secs(5),
            counters(&[("a", 150), ("b", 7)]),
        );
        assert_eq!(later.span, Some(Duration::from_secs(5)));
        assert_eq!(later.get("a"), Some(10.0));
        assert_eq!(later.get("b"), None, "a new counter has no rate yet");
    }

    #[test]
    fn rates_span_at_least_the_minimum_and_use_the_newest_such_snapshot() {
        let mut w = RateWindow::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let _ = w.observe(at(0), counters(&[("a", 0)]));
        let _ = w.observe(at(10), counters(&[("a", 100)]));
        // One second after the last look: measured against t=0, not t=10.
        let r = w.observe(at(11), counters(&[("a", 110)]));
        assert_eq!(r.span, Some(Duration::from_secs(11)));
        assert_eq!(r.get("a"), Some(10.0));
        // Later: against t=11 (the newest old enough).
        let r = w.observe(at(22), counters(&[("a", 220)]));
        assert_eq!(r.span, Some(Duration::from_secs(11)));
        assert_eq!(r.get("a"), Some(10.0));
    }

    #[test]
    fn old_snapshots_are_forgotten() {
        let mut w = RateWindow::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        let _ = w.observe(t0, counters(&[("a", 0)]));
        let r = w.observe(t0 + Duration::from_secs(3600), counters(&[("a", 3600)]));
        assert_eq!(r.span, None, "no average over an hour");
    }

    #[test]
    fn many_looks_keep_one_snapshot_per_second() {
        let mut w = RateWindow::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        for ms in (0..10_000).step_by(10) {
            let _ = w.observe(t0 + Duration::from_millis(ms), counters(&[("a", ms)]));
        }
        assert!(w.snapshots.len() <= 10, "{}", w.snapshots.len());
    }

    #[test]
    fn a_counter_that_went_down_has_rate_zero() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let _ = w.observe(t0, counters(&[("a", 50)]));
        let r = w.observe(t0 + Duration::from_secs(5), counters(&[("a", 10)]));
        assert_eq!(r.get("a"), Some(0.0));
    }
}
