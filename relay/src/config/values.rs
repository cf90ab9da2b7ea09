//! Value types used by several config sections: [`Secret`], [`InputPrecision`],
//! [`AnchoredRegex`], [`ServerTls`], and the serde helpers for units, windows and lists.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::str::FromStr;

use cc_common::lineproto::Precision;
use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use cc_common::secret::{REDACTED, Secret, SecretError, permission_warning, read_secret_text};

/// Unit of incoming timestamps: detected per line, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputPrecision {
    /// `auto`: the unit in which the value falls within 2001-09-09 … 2286-11-20
    /// (10, 13, 16 or 19 digits).
    #[default]
    Auto,
    /// `s`, `ms`, `us` or `ns`.
    Fixed(Precision),
}

impl InputPrecision {
    /// The fixed unit, `None` for [`InputPrecision::Auto`].
    #[must_use]
    pub const fn fixed(self) -> Option<Precision> {
        match self {
            Self::Auto => None,
            Self::Fixed(unit) => Some(unit),
        }
    }
}

impl FromStr for InputPrecision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Fixed).map_err(|_| {
            format!("unknown timestamp precision {s:?} (expected auto, s, ms, us or ns)")
        })
    }
}

impl fmt::Display for InputPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Fixed(unit) => f.write_str(unit.as_str()),
        }
    }
}

impl Serialize for InputPrecision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InputPrecision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// `#[serde(with = …)]` for a [`Precision`] written as `s`, `ms`, `us` or `ns`.
pub(super) mod precision {
    use cc_common::lineproto::Precision;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Precision,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Precision, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// `#[serde(with = …)]` for a [`cc_common::telemetry::LogFormat`] (`text` or `json`).
pub(super) mod log_format {
    use cc_common::telemetry::LogFormat;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &LogFormat,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<LogFormat, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(de::Error::custom(format!(
                "unknown log format {text:?} (expected text or json)"
            ))),
        }
    }
}

/// `#[serde(with = …)]` for an `Option<Duration>` where `"0"` (or `null`)
/// disables the check: zero becomes `None`; `None` is written as `"0s"`.
pub(super) mod window {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "cc_common::config::duration")] Duration);

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let value = value.unwrap_or(Duration::ZERO);
        serializer.collect_str(&humantime::format_duration(value))
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let value = Option::<Wrapped>::deserialize(deserializer)?;
        Ok(value.map(|Wrapped(d)| d).filter(|d| !d.is_zero()))
    }
}

/// `#[serde(deserialize_with = …)]` for a list that may also be written as a
/// single value (`"key"` or `["key1", "key2"]`); `null` is the empty list.
pub(super) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            T::deserialize(v.into_deserializer()).map(|one| vec![one])
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_any(OneOrMany(PhantomData))
}

/// A regular expression (Rust `regex` syntax) that must match a whole name:
/// the pattern `p` is compiled as `^(?:p)$`.
#[derive(Clone, Debug)]
pub struct AnchoredRegex {
    pattern: String,
    regex: regex::Regex,
}

impl AnchoredRegex {
    /// Compiles `pattern`, anchored at both ends.
    ///
    /// # Errors
    ///
    /// The `regex` crate's error for invalid syntax or a pattern too large.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            regex,
        })
    }

    /// The pattern as written in the config (without the anchors).
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The compiled, anchored expression.
    #[must_use]
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    /// Whether the whole of `text` matches.
    #[must_use]
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for AnchoredRegex {}

impl Serialize for AnchoredRegex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        Self::new(&pattern).map_err(|err| {
            de::Error::custom(format!("invalid regular expression {pattern:?}: {err}"))
        })
    }
}

/// TLS of a listener (`ingress.http[].tls`, `admin.tls`): presence enables HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// `cert_file`: PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `key_file`: PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    pub key_file: PathBuf,
    /// `client_ca_file`: PEM CA certificates; when set, clients are asked for a
    /// certificate signed by one of them.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `require_client_cert`: reject clients without a valid certificate
    /// (needs `client_ca_file`).
    #[serde(default)]
    pub require_client_cert: bool,
}
