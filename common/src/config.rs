//! JSON configuration loading shared by `cc-relay` and `cc-store`.
//!
//! Both binaries read one JSON file into their own config structs; this module
//! supplies the pieces around that:
//!
//! - [`load_json`] / [`parse_json`]: deserialize with [`serde_path_to_error`],
//!   so an error names the file, the key path (`upstreams[1].buffer.max_bytes`),
//!   the line and column, and serde's own message;
//! - [`ConfigError::invalid`]: the error a binary's `validate()` step returns,
//!   displayed as `FILE: KEY: MESSAGE`;
//! - [`duration`] and [`option_duration`]: `#[serde(with = …)]` helpers for
//!   human-readable durations (`"48h"`, `"200ms"`, `"1h30m"`, or a bare integer
//!   number of seconds);
//! - [`ByteSize`]: byte counts written as `"64MiB"`, `"10MB"` or a bare integer.
//!
//! Secrets (JWT keys, credentials) may sit in these files; nothing here logs
//! file contents, and error messages only quote the offending *value* for
//! durations and sizes, never whole documents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Failure to load or validate a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid JSON or does not match the expected structure.
    ///
    /// Displayed as `ORIGIN: at KEY (line L, column C): MESSAGE`, e.g.
    /// ``/etc/cc-relay.json: at upstreams[0].adress (line 7, column 14): unknown field `adress`, …``.
    #[error("{origin}: {}: {message}", describe_position(.key, *.line, *.column))]
    Parse {
        /// File name (or other origin label) of the text.
        origin: String,
        /// Key path of the failing value, e.g. `main.jwt-public-key`;
        /// empty when the error is at the top level.
        key: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde's message without the position suffix.
        message: String,
    },
    /// A value parsed but failed a semantic check (`validate()` in the binaries).
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// File name (or other origin label) of the config.
        file: String,
        /// Key path of the rejected value.
        key: String,
        /// Why the value is rejected.
        message: String,
    },
}

impl ConfigError {
    /// An error for a value that parsed but is not acceptable, for the
    /// `validate()` step of a binary's config: displayed as `FILE: KEY: MESSAGE`.
    pub fn invalid(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

fn describe_position(key: &str, line: usize, column: usize) -> String {
    if key.is_empty() {
        format!("line {line}, column {column}")
    } else {
        format!("at {key} (line {line}, column {column})")
    }
}

/// Reads the JSON file at `path` and deserializes it into `T`.
///
/// Unknown keys are rejected only if `T` says so (`#[serde(deny_unknown_fields)]`).
/// Trailing characters after the JSON value are an error.
///
/// # Errors
///
/// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Parse`] if
/// it is not valid JSON for `T` (the error names the file, key path and position).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(&text, &path.display().to_string())
}

/// Deserializes `text` into `T`; `origin` names the text in errors (a file
/// name, or a label such as `built-in defaults`).
///
/// # Errors
///
/// [`ConfigError::Parse`] if `text` is not valid JSON for `T`.
pub fn parse_json<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { String::new() } else { key };
        parse_error(origin, key, err.inner())
    })?;
    de.end()
        .map_err(|err| parse_error(origin, String::new(), &err))?;
    Ok(value)
}

fn parse_error(origin: &str, key: String, err: &serde_json::Error) -> ConfigError {
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    ConfigError::Parse {
        origin: origin.to_owned(),
        key,
        line,
        column,
        message,
    }
}

const DURATION_EXAMPLE: &str = "expected a duration such as \"10s\", \"200ms\", \"1h30m\" or \"48h\", or an integer number of seconds";

/// Parses one duration string: humantime syntax (Go-style `"1h30m"`, `"200ms"`,
/// `"48h"`) or `"0"`.
fn parse_duration_text(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration {text:?} ({err}); {DURATION_EXAMPLE}"))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = std::time::Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration such as \"10s\", \"200ms\" or \"1h30m\", or an integer number of seconds",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration_text(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(std::time::Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(std::time::Duration::from_secs)
            .map_err(|_| {
                E::custom(format!(
                    "invalid duration {v}: negative; {DURATION_EXAMPLE}"
                ))
            })
    }
}

/// `#[serde(with = "cc_common::config::duration")]` for [`std::time::Duration`].
///
/// Accepts a humantime string (`"48h"`, `"200ms"`, `"1h30m"`, `"10s"`, `"0"`)
/// or a bare JSON integer meaning seconds; serializes as a humantime string
/// (`"1h 30m"`), which parses back to the same value.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Serializes `value` as a humantime string.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    /// Deserializes a humantime string or an integer number of seconds.
    ///
    /// # Errors
    ///
    /// A message naming the bad value and giving an example of a valid one.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(super::DurationVisitor)
    }
}

/// `#[serde(with = "cc_common::config::option_duration")]` for
/// `Option<std::time::Duration>`: `null` is `None`, anything else as in
/// [`duration`]. Add `#[serde(default)]` so a missing key is `None` too.
pub mod option_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "super::duration")] Duration);

    /// Serializes `Some` as a humantime string and `None` as `null`.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.collect_str(&humantime::format_duration(*d)),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes `null` as `None`, otherwise as [`super::duration`].
    ///
    /// # Errors
    ///
    /// A message naming the bad value and giving an example of a valid one.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }
}

/// A number of bytes, written in config files as a plain JSON integer or a
/// string with a unit.
///
/// Units (case-insensitive, optional space before them): `B`; binary `KiB`,
/// `MiB`, `GiB`, `TiB`, `PiB`, `EiB` (powers of 1024); decimal `kB`, `MB`,
/// `GB`, `TB`, `PB`, `EB` (powers of 1000). No unit means bytes. Fractions
/// are allowed (`"1.5GiB"`) and rounded down to whole bytes
/// (at most 18 fraction digits are honoured).
/// [`Display`](fmt::Display) writes the largest binary unit that represents
/// the value exactly (`"64MiB"`, `"1500B"`), which parses back unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> Self {
        size.0
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        Self(bytes)
    }
}

/// Why a byte-size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// Nothing but whitespace.
    #[error("empty byte size; expected e.g. \"64MiB\", \"10MB\" or \"100\"")]
    Empty,
    /// Starts with a minus sign.
    #[error("byte size {0:?} is negative")]
    Negative(String),
    /// The number part is not a plain decimal number.
    #[error("byte size {0:?} does not start with a number; expected e.g. \"64MiB\" or \"1.5GiB\"")]
    InvalidNumber(String),
    /// The unit is not one of the known ones.
    #[error(
        "unknown unit {unit:?} in byte size {text:?}; use B, KiB, MiB, GiB, TiB, PiB, EiB, kB, MB, GB, TB, PB or EB"
    )]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole value as written.
        text: String,
    },
    /// The value does not fit in 64 bits.
    #[error("byte size {0:?} is too large")]
    TooLarge(String),
}

/// Multiplier of a (lower-cased) unit, or `None` if unknown.
fn unit_multiplier(unit: &str) -> Option<u64> {
    const KI: u64 = 1024;
    const K: u64 = 1000;
    Some(match unit {
        "" | "b" => 1,
        "kib" => KI,
        "mib" => KI.pow(2),
        "gib" => KI.pow(3),
        "tib" => KI.pow(4),
        "pib" => KI.pow(5),
        "eib" => KI.pow(6),
        "kb" => K,
        "mb" => K.pow(2),
        "gb" => K.pow(3),
        "tb" => K.pow(4),
        "pb" => K.pow(5),
        "eb" => K.pow(6),
        _ => return None,
    })
}

/// Most fraction digits honoured; more would overflow the exact arithmetic.
const MAX_FRACTION_DIGITS: usize = 18;

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ByteSizeError::Empty);
        }
        if trimmed.starts_with('-') {
            return Err(ByteSizeError::Negative(text.to_owned()));
        }
        let number_len = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(number_len);
        let unit = unit.trim_start();

        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        let well_formed = !int_part.is_empty()
            && (!number.contains('.') || !frac_part.is_empty())
            && !frac_part.contains('.');
        if !well_formed {
            return Err(ByteSizeError::InvalidNumber(text.to_owned()));
        }
        let multiplier = unit_multiplier(&unit.to_ascii_lowercase()).ok_or_else(|| {
            ByteSizeError::UnknownUnit {
                unit: unit.to_owned(),
                text: text.to_owned(),
            }
        })?;

        let too_large = || ByteSizeError::TooLarge(text.to_owned());
        let int_value: u128 = int_part.parse().map_err(|_| too_large())?;
        let mut total = int_value
            .checked_mul(u128::from(multiplier))
            .ok_or_else(too_large)?;
        if !frac_part.is_empty() {
            // Digits past MAX_FRACTION_DIGITS are dropped: they add less than
            // multiplier / 10^18 bytes (under two bytes even for EiB), and
            // dropping them only rounds down.
            let digits = frac_part.get(..MAX_FRACTION_DIGITS).unwrap_or(frac_part);
            let frac_value: u128 = digits
                .parse()
                .map_err(|_| ByteSizeError::InvalidNumber(text.to_owned()))?;
            let scale = 10u128.pow(u32::try_from(digits.len()).map_err(|_| too_large())?);
            // frac_value < 10^18 and multiplier < 2^64, so this fits in u128.
            let frac_bytes = frac_value
                .checked_mul(u128::from(multiplier))
                .ok_or_else(too_large)?
                / scale;
            total = total.checked_add(frac_bytes).ok_or_else(too_large)?;
        }
        u64::try_from(total).map(ByteSize).map_err(|_| too_large())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 6] = [
            ("EiB", 1 << 60),
            ("PiB", 1 << 50),
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        if self.0 != 0 {
            for (name, size) in UNITS {
                if self.0.is_multiple_of(size) {
                    return write!(f, "{}{name}", self.0 / size);
                }
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as \"64MiB\", \"10MB\" or an integer number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(ByteSizeError::Negative(v.to_string())))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests;
