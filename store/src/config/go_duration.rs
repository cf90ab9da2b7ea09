//! `#[serde(with = "go_duration")]`: a Go duration string (humantime
//! spellings as a fallback) or an integer number of seconds; never negative.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

const EXAMPLES: &str =
    "expected a duration such as \"48h\", \"90m\", \"1h30m\", \"10s\" or \"300ms\"";

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"48h\" or \"1h30m\", or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v).map(Duration::from_secs).map_err(|_| {
            E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))
        })
    }
}

/// Parses a duration as written in cc-metric-store files.
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "invalid duration {text:?}: negative durations are not allowed (use \"0s\" where zero means off)"
        ));
    }
    match parse_go(trimmed) {
        Ok(duration) => Ok(duration),
        Err(TOO_LARGE) => Err(format!("invalid duration {text:?}: {TOO_LARGE}")),
        Err(reason) => match humantime::parse_duration(trimmed) {
            Ok(duration) if duration > MAX => {
                Err(format!("invalid duration {text:?}: {TOO_LARGE}"))
            }
            Ok(duration) => Ok(duration),
            Err(_) => Err(format!("invalid duration {text:?}: {reason}; {EXAMPLES}")),
        },
    }
}

const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Go's limit, also applied to humantime spellings: no fallback then.
const TOO_LARGE: &str = "too large (at most 2562047h, about 292 years)";

/// Go's `time.ParseDuration` for non-negative values: `0`, or one or
/// more `<decimal><unit>` with units ns, us, µs, μs, ms, s, m, h.
fn parse_go(text: &str) -> Result<Duration, &'static str> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty");
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        rest = tail;

        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err("malformed number");
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err("missing unit (ns, us, ms, s, m or h)"),
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        let too_large = TOO_LARGE;
        let int_value: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large)?
        };
        let mut nanos = int_value.checked_mul(unit_nanos).ok_or(too_large)?;
        if !frac_part.is_empty() {
            // Digits beyond 18 change the result by less than a
            // nanosecond per hour; dropping them rounds down, like Go.
            let digits = frac_part.get(..18).unwrap_or(frac_part);
            let frac_value: u128 = digits.parse().map_err(|_| "malformed number")?;
            let scale = 10u128.pow(u32::try_from(digits.len()).map_err(|_| too_large)?);
            nanos = nanos
                .checked_add(frac_value * unit_nanos / scale)
                .ok_or(too_large)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or(too_large)?;
    }
    // Go's limit: i64 nanoseconds.
    let nanos = u64::try_from(total_nanos)
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or(TOO_LARGE)?;
    Ok(Duration::from_nanos(nanos))
}
