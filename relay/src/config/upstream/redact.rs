//! How an upstream's URL and headers appear in logs, dumps and
//! `--check-config`: passwords and values masked.

use std::collections::BTreeMap;

use serde::Serializer;
use url::Url;

use crate::config::REDACTED;

/// `url` as written in the config: parsed on load, shown redacted.
pub(super) mod url_serde {
    use serde::{Deserialize, Deserializer, Serializer, de};
    use url::Url;

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Option<Url>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(url) => serializer.serialize_str(&super::redact_url(url)),
            None => serializer.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Url>, D::Error> {
        // The URL is not quoted in the error: it may hold a password.
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                Url::parse(text.trim())
                    .map_err(|err| de::Error::custom(format!("invalid URL: {err}")))
            })
            .transpose()
    }
}

pub(super) fn redact_values<S: Serializer>(
    map: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.keys().map(|name| (name, REDACTED)))
}

/// `url` for logs and status output: the password (if any) and every query
/// value except `cluster` replaced by `***`.
#[must_use]
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Cannot fail: a URL with a password has a host.
        let _ = shown.set_password(Some(REDACTED));
    }
    if shown.query().is_some_and(|q| !q.is_empty()) {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "cluster" {
                    value.into_owned()
                } else {
                    REDACTED.to_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}
