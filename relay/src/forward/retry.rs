//! What an upstream's answer means, and how long to wait before trying again.
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | delivered |
//! | 400, 422, other 4xx | the batch holds a line the upstream refuses: retry a few times, then bisect |
//! | 413 | the batch is too large: halve the batch size and split |
//! | 401, 403 | credentials refused: retry slowly (never drop data for this) |
//! | 404, 405 | misconfigured URL: retry at the longest backoff |
//! | 408, 429, 5xx, no answer | transient: retry with backoff, honouring `Retry-After` |

use std::time::Duration;

/// The classification of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// A client error that resending the same lines will not fix.
    Poison(u16),
    /// 413.
    TooLarge,
    /// 401 or 403.
    Auth(u16),
    /// 404 or 405.
    Misconfigured(u16),
    /// Anything worth retrying as is.
    Transient,
}

/// Classifies an HTTP status code.
#[must_use]
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        413 => Outcome::TooLarge,
        401 | 403 => Outcome::Auth(status),
        404 | 405 => Outcome::Misconfigured(status),
        408 | 429 => Outcome::Transient,
        400..=499 => Outcome::Poison(status),
        _ => Outcome::Transient,
    }
}

/// Retry timing of one upstream (`retry.*` keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Longest delay for transient failures.
    pub max: Duration,
    /// Growth factor per failure.
    pub multiplier: f64,
    /// Sleep a uniformly random part of the delay (full jitter).
    pub jitter: bool,
    /// Longest delay while credentials are refused.
    pub auth_max: Duration,
    /// Attempts on a client error before bisecting.
    pub poison_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
            auth_max: Duration::from_secs(60),
            poison_attempts: 3,
        }
    }
}

/// Exponential backoff with optional full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    current: Duration,
}

impl Backoff {
    /// A fresh backoff at the initial delay.
    #[must_use]
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            current: policy.initial,
        }
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.policy.initial;
    }

    /// The delay before the next attempt after `outcome`, at least
    /// `retry_after` when the upstream asked for it; grows the backoff.
    pub fn next_delay(&mut self, outcome: Outcome, retry_after: Option<Duration>) -> Duration {
        let cap = match outcome {
            Outcome::Auth(_) => self.policy.auth_max,
            _ => self.policy.max,
        };
        let ceiling = match outcome {
            Outcome::Misconfigured(_) => cap,
            _ => self.current.min(cap),
        };
        let delay = if self.policy.jitter {
            ceiling.mul_f64(fastrand::f64())
        } else {
            ceiling
        };
        self.current = self
            .current
            .mul_f64(self.policy.multiplier.max(1.0))
            .min(cap);
        match retry_after {
            Some(min) => delay.max(min),
            None => delay,
        }
    }

    /// The current (un-jittered) backoff, for the gauge.
    #[must_use]
    pub fn current(&self) -> Duration {
        self.current
    }
}

/// Parses a `Retry-After` header: delay in seconds or an HTTP date.
#[must_use]
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(value)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn httpdate_parse(value: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
        let parts: Vec<&str> = value.split_whitespace().collect();
        let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
            return None;
        };
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| m == month)?
            + 1;
        humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let table = [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (400, Outcome::Poison(400)),
            (422, Outcome::Poison(422)),
            (418, Outcome::Poison(418)),
            (413, Outcome::TooLarge),
            (401, Outcome::Auth(401)),
            (403, Outcome::Auth(403)),
            (404, Outcome::Misconfigured(404)),
            (405, Outcome::Misconfigured(405)),
            (408, Outcome::Transient),
            (429, Outcome::Transient),
            (500, Outcome::Transient),
            (503, Outcome::Transient),
            (508, Outcome::Transient),
            (302, Outcome::Transient),
        ];
        for (status, outcome) in table {
            assert_eq!(classify(status), outcome, "{status}");
        }
    }

    fn fixed() -> RetryPolicy {
        RetryPolicy {
            jitter: false,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            auth_max: Duration::from_secs(60),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(fixed());
        let delays: Vec<u64> = (0..6)
            .map(|_| b.next_delay(Outcome::Transient, None).as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(
            b.next_delay(Outcome::Transient, None),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn auth_failures_back_off_to_their_own_cap() {
        let mut b = Backoff::new(fixed());
        let last = (0..20)
            .map(|_| b.next_delay(Outcome::Auth(401), None))
            .last();
        assert_eq!(last, Some(Duration::from_secs(60)));
    }

    #[test]
    fn misconfiguration_waits_the_longest() {
        let mut b = Backoff::new(fixed());
        assert_eq!(
            b.next_delay(Outcome::Misconfigured(404), None),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn retry_after_is_a_minimum() {
        let mut b = Backoff::new(fixed());
        assert_eq!(
            b.next_delay(Outcome::Transient, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn full_jitter_stays_within_the_backoff() {
        let mut b = Backoff::new(RetryPolicy::default());
        for _ in 0..100 {
            let ceiling = b.current().min(Duration::from_secs(30));
            assert!(b.next_delay(Outcome::Transient, None) <= ceiling);
        }
    }

    #[test]
    fn retry_after_header_forms() {
        let now = humantime::parse_rfc3339("1994-11-06T08:49:30Z").unwrap();
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
