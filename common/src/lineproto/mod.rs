//! InfluxDB line protocol: decoding, encoding and timestamp precision.
//!
//! Collectors send batches such as
//!
//! ```text
//! cpu_load,cluster=fritz,hostname=f0201,type=node value=12.5 1732870000
//! cpu_user,cluster=fritz,hostname=f0201,type=hwthread,type-id=17 value=98.1 1732870000
//! ```
//!
//! [`parse_lines`] yields one `Result` per line, with its line number, so one
//! bad line never hides the good ones around it:
//!
//! ```
//! use cc_common::lineproto::{parse_lines, FieldValue};
//!
//! let batch = b"cpu_load,hostname=f0201 value=35.5 1732870000\nmem_used,hostname=f0201 1732870000\n";
//! let mut lines = parse_lines(batch);
//! let first = lines.next().unwrap().unwrap();
//! assert_eq!(first.measurement(), "cpu_load");
//! assert_eq!(first.tag("hostname").as_deref(), Some("f0201"));
//! assert_eq!(first.field("value"), Some(FieldValue::Float(35.5)));
//! assert_eq!(first.timestamp(), Some(1732870000));
//! let second = lines.next().unwrap().unwrap_err();
//! assert_eq!(
//!     second.to_string(),
//!     "at line 2:35: expected '=' after field key (near \"1732870000\")"
//! );
//! ```
//!
//! The decoder borrows from the input and copies only tokens that contain
//! escapes. [`write_line`] and [`OwnedLine`] encode; `parse(format(x)) == x`
//! holds for every line the encoder accepts (a property test checks it).
//! [`Precision`] converts timestamps between units and detects the unit of a
//! timestamp from its magnitude.

mod format;
mod parse;

use std::fmt;
use std::str::FromStr;

pub use format::{FormatError, escape_key, escape_measurement, write_field_value, write_line};
pub use parse::{
    ErrorKind, FieldValue, Fields, Line, Lines, ParseError, Tags, parse_lines, parse_str,
};

/// A line detached from its input buffer; convenient for building lines and
/// for tests. The hot paths use the borrowed [`Line`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OwnedLine {
    /// Measurement (metric) name.
    pub measurement: String,
    /// Tags in wire order.
    pub tags: Vec<(String, String)>,
    /// Fields in wire order; at least one for a valid line.
    pub fields: Vec<(String, FieldValue<'static>)>,
    /// Timestamp in the sender's unit.
    pub timestamp: Option<i64>,
}

impl From<&Line<'_>> for OwnedLine {
    fn from(line: &Line<'_>) -> Self {
        OwnedLine {
            measurement: line.measurement().to_owned(),
            tags: line
                .tags()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            fields: line
                .fields()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            timestamp: line.timestamp(),
        }
    }
}

impl fmt::Display for OwnedLine {
    /// The wire form without the trailing newline; lines the encoder refuses
    /// (see [`write_line`]) render as an empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if self.write_to(&mut s).is_ok() {
            f.write_str(s.trim_end_matches('\n'))
        } else {
            Ok(())
        }
    }
}

/// The unit of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// Seconds (`s`): what cc-metric-store stores.
    Seconds,
    /// Milliseconds (`ms`).
    Millis,
    /// Microseconds (`us`).
    Micros,
    /// Nanoseconds (`ns`): the InfluxDB default.
    Nanos,
}

/// A timestamp outside the range in which its unit can be told from its
/// magnitude, or one that overflows when converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "timestamp {0} has no recognisable unit (expected 10, 13, 16 or 19 digits: 2001-09-09 to 2286-11-20)"
)]
pub struct UndecidableTimestamp(pub i64);

/// An unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?} (expected s, ms, us or ns)")]
pub struct UnknownPrecision(pub String);

impl Precision {
    /// Units per second.
    #[must_use]
    pub const fn per_second(self) -> i64 {
        match self {
            Precision::Seconds => 1,
            Precision::Millis => 1_000,
            Precision::Micros => 1_000_000,
            Precision::Nanos => 1_000_000_000,
        }
    }

    /// The short name used in configs and `?precision=` (`s`, `ms`, `us`, `ns`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::Seconds => "s",
            Precision::Millis => "ms",
            Precision::Micros => "us",
            Precision::Nanos => "ns",
        }
    }

    /// Converts `ts` from this unit to `to`. Going to a coarser unit rounds
    /// towards negative infinity (floor), so `1999 ms` is second `1` and
    /// `-1 ms` is second `-1`. `None` if the result overflows an i64.
    #[must_use]
    pub fn convert(self, ts: i64, to: Precision) -> Option<i64> {
        let (from, to) = (self.per_second(), to.per_second());
        if from == to {
            Some(ts)
        } else if from > to {
            Some(ts.div_euclid(from / to))
        } else {
            ts.checked_mul(to / from)
        }
    }

    /// Tells the unit of a Unix timestamp from its magnitude: the unit in which
    /// it falls between 2001-09-09 and 2286-11-20, i.e. 10 digits are seconds,
    /// 13 milliseconds, 16 microseconds and 19 nanoseconds.
    ///
    /// # Errors
    ///
    /// Any other magnitude (including negative values) is undecidable.
    pub fn detect(ts: i64) -> Result<Precision, UndecidableTimestamp> {
        match ts {
            1_000_000_000..=9_999_999_999 => Ok(Precision::Seconds),
            1_000_000_000_000..=9_999_999_999_999 => Ok(Precision::Millis),
            1_000_000_000_000_000..=9_999_999_999_999_999 => Ok(Precision::Micros),
            1_000_000_000_000_000_000..=i64::MAX => Ok(Precision::Nanos),
            _ => Err(UndecidableTimestamp(ts)),
        }
    }

    /// The store's reading of a timestamp of unknown unit, in seconds: values
    /// up to 1e10 are seconds (negative ones included), up to 1e13
    /// milliseconds, up to 1e16 microseconds, anything larger nanoseconds.
    #[must_use]
    pub fn seconds_by_magnitude(ts: i64) -> i64 {
        let unit = match ts {
            i64::MIN..=10_000_000_000 => Precision::Seconds,
            10_000_000_001..=10_000_000_000_000 => Precision::Millis,
            10_000_000_000_001..=10_000_000_000_000_000 => Precision::Micros,
            _ => Precision::Nanos,
        };
        // Converting to a coarser unit never overflows.
        unit.convert(ts, Precision::Seconds).unwrap_or(ts)
    }
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "s" => Ok(Precision::Seconds),
            "ms" => Ok(Precision::Millis),
            "us" | "µs" => Ok(Precision::Micros),
            "ns" => Ok(Precision::Nanos),
            other => Err(UnknownPrecision(other.to_owned())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
