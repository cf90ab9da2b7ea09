//! Section `processing` (§4.5) and the per-upstream rule overrides
//! (`upstreams[].processing`, steps 6–8 only).

use std::collections::BTreeMap;
use std::time::Duration;

use cc_common::config::ConfigError;
use cc_common::lineproto::Precision;
use serde::{Deserialize, Serialize};

use super::values::{self, AnchoredRegex, InputPrecision};
use super::{Ctx, check_cluster, check_name};

/// Global line processing (`processing`). The timestamp settings and the
/// validation profile apply to every line; the rule keys (steps 6–8) may be
/// overridden per upstream, see [`Upstream::rules`](super::Upstream::rules).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processing {
    /// `default_cluster`: last-resort default cluster (step 8).
    pub default_cluster: Option<String>,
    /// `materialize_cluster`: write the default cluster into lines as a `cluster`
    /// tag instead of carrying it as record metadata. Default false.
    pub materialize_cluster: bool,
    /// `timestamp`: unit detection, normalisation, missing stamps, sanity window.
    pub timestamp: TimestampConfig,
    /// `drop_measurements`: exact names dropped.
    pub drop_measurements: Vec<String>,
    /// `keep_measurements`: if not empty, only these pass.
    pub keep_measurements: Vec<String>,
    /// `drop_measurements_regex`: names matching one of these (whole name) are dropped.
    pub drop_measurements_regex: Vec<AnchoredRegex>,
    /// `rename_measurements`: `{old: new}`.
    pub rename_measurements: BTreeMap<String, String>,
    /// `drop_tags`: tag keys removed.
    pub drop_tags: Vec<String>,
    /// `rename_tags`: `{old: new}`; no-op where the new key exists.
    pub rename_tags: BTreeMap<String, String>,
    /// `add_tags`: `{key: value}` added where absent.
    pub add_tags: BTreeMap<String, String>,
    /// `set_tags`: `{key: value}` always set.
    pub set_tags: BTreeMap<String, String>,
    /// `validate` as written; `None` when absent.
    #[serde(rename = "validate", skip_serializing)]
    validate_setting: Option<ValidateProfile>,
    /// The effective `validate` profile (step 9): as written, or `ccms` if any
    /// upstream is `ccms-http`, else `syntax`.
    #[serde(rename = "validate", skip_deserializing)]
    pub validate: ValidateProfile,
}

impl Default for Processing {
    fn default() -> Self {
        Self {
            default_cluster: None,
            materialize_cluster: false,
            timestamp: TimestampConfig::default(),
            drop_measurements: Vec::new(),
            keep_measurements: Vec::new(),
            drop_measurements_regex: Vec::new(),
            rename_measurements: BTreeMap::new(),
            drop_tags: Vec::new(),
            rename_tags: BTreeMap::new(),
            add_tags: BTreeMap::new(),
            set_tags: BTreeMap::new(),
            validate_setting: None,
            validate: ValidateProfile::Syntax,
        }
    }
}

/// `processing.timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimestampConfig {
    /// `input_precision`: unit of incoming timestamps (step 2). Default `auto`.
    pub input_precision: InputPrecision,
    /// `output_precision`: unit written to the queue (step 3). Default `s`; must
    /// be `s` with a `ccms-http` upstream.
    #[serde(with = "values::precision")]
    pub output_precision: Precision,
    /// `missing`: lines without timestamp (step 4). Default `stamp_ingest`.
    pub missing: MissingTimestamp,
    /// `max_future`: lines further ahead of the relay clock are invalid
    /// (step 5). Default 10 min; `"0"` disables (`None`).
    #[serde(with = "values::window")]
    pub max_future: Option<Duration>,
    /// `max_past`: lines further behind are invalid. Default 7 days; `"0"`
    /// disables (`None`).
    #[serde(with = "values::window")]
    pub max_past: Option<Duration>,
}

impl Default for TimestampConfig {
    fn default() -> Self {
        Self {
            input_precision: InputPrecision::Auto,
            output_precision: Precision::Seconds,
            missing: MissingTimestamp::StampIngest,
            max_future: Some(Duration::from_secs(10 * 60)),
            max_past: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// `processing.timestamp.missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTimestamp {
    /// `stamp_ingest`: stamp the relay's receive time, in the output unit.
    #[default]
    StampIngest,
    /// `drop`: the line is invalid.
    Drop,
    /// `keep`: forward without timestamp (refused with `ccms-http` upstreams).
    Keep,
}

/// `processing.validate`: the validation profile (step 9), weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidateProfile {
    /// `none`: nothing beyond the syntax check every line gets.
    None,
    /// `syntax`: syntax only.
    #[default]
    Syntax,
    /// `ccms`: what cc-metric-store accepts (one numeric `value` field, a
    /// `hostname`/`host` tag, URL-safe cluster, no path separators).
    Ccms,
}

/// The rules of steps 6–8 as one upstream sees them: the global `processing`
/// keys with that upstream's overrides applied. Equal rule sets can share one
/// processing pass.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RuleSet {
    /// Last-resort default cluster.
    pub default_cluster: Option<String>,
    /// Measurements dropped by exact name.
    pub drop_measurements: Vec<String>,
    /// If not empty, only these measurements pass.
    pub keep_measurements: Vec<String>,
    /// Measurements dropped by anchored pattern.
    pub drop_measurements_regex: Vec<AnchoredRegex>,
    /// Measurement renames `{old: new}`.
    pub rename_measurements: BTreeMap<String, String>,
    /// Tag keys removed.
    pub drop_tags: Vec<String>,
    /// Tag renames `{old: new}`.
    pub rename_tags: BTreeMap<String, String>,
    /// Tags added where absent.
    pub add_tags: BTreeMap<String, String>,
    /// Tags always set.
    pub set_tags: BTreeMap<String, String>,
}

impl RuleSet {
    /// Whether no measurement or tag rule is set (lines pass unchanged; the
    /// default cluster is metadata, not a change).
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.drop_measurements.is_empty()
            && self.keep_measurements.is_empty()
            && self.drop_measurements_regex.is_empty()
            && self.rename_measurements.is_empty()
            && self.drop_tags.is_empty()
            && self.rename_tags.is_empty()
            && self.add_tags.is_empty()
            && self.set_tags.is_empty()
    }

    /// Whether a line of measurement `name` survives the drop and keep rules
    /// (step 6, before renaming).
    #[must_use]
    pub fn keeps_measurement(&self, name: &str) -> bool {
        !self.drop_measurements.iter().any(|m| m == name)
            && !self
                .drop_measurements_regex
                .iter()
                .any(|r| r.is_match(name))
            && (self.keep_measurements.is_empty()
                || self.keep_measurements.iter().any(|m| m == name))
    }
}

/// Per-upstream overrides of the rule keys (`upstreams[].processing`). A key
/// set here replaces the global value of that key for this upstream (lists and
/// maps are replaced, not merged); absent keys inherit the global value.
/// Timestamp keys, `validate` and `materialize_cluster` are global only.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamProcessing {
    /// `default_cluster`.
    pub default_cluster: Option<String>,
    /// `drop_measurements`.
    pub drop_measurements: Option<Vec<String>>,
    /// `keep_measurements`.
    pub keep_measurements: Option<Vec<String>>,
    /// `drop_measurements_regex`.
    pub drop_measurements_regex: Option<Vec<AnchoredRegex>>,
    /// `rename_measurements`.
    pub rename_measurements: Option<BTreeMap<String, String>>,
    /// `drop_tags`.
    pub drop_tags: Option<Vec<String>>,
    /// `rename_tags`.
    pub rename_tags: Option<BTreeMap<String, String>>,
    /// `add_tags`.
    pub add_tags: Option<BTreeMap<String, String>>,
    /// `set_tags`.
    pub set_tags: Option<BTreeMap<String, String>>,
    /// Refused: timestamp handling is global.
    #[serde(skip_serializing)]
    timestamp: Option<serde_json::Value>,
    /// Refused: the validation profile is global.
    #[serde(skip_serializing)]
    validate: Option<serde_json::Value>,
    /// Refused: global.
    #[serde(skip_serializing)]
    materialize_cluster: Option<serde_json::Value>,
}

impl Processing {
    /// The global rule set (steps 6–8).
    #[must_use]
    pub fn rules(&self) -> RuleSet {
        RuleSet {
            default_cluster: self.default_cluster.clone(),
            drop_measurements: self.drop_measurements.clone(),
            keep_measurements: self.keep_measurements.clone(),
            drop_measurements_regex: self.drop_measurements_regex.clone(),
            rename_measurements: self.rename_measurements.clone(),
            drop_tags: self.drop_tags.clone(),
            rename_tags: self.rename_tags.clone(),
            add_tags: self.add_tags.clone(),
            set_tags: self.set_tags.clone(),
        }
    }

    pub(super) fn validate(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        if let Some(cluster) = &self.default_cluster {
            check_cluster(ctx, &format!("{key}.default_cluster"), cluster)?;
        }
        check_list(
            ctx,
            &format!("{key}.drop_measurements"),
            &self.drop_measurements,
        )?;
        check_list(
            ctx,
            &format!("{key}.keep_measurements"),
            &self.keep_measurements,
        )?;
        check_map(
            ctx,
            &format!("{key}.rename_measurements"),
            &self.rename_measurements,
        )?;
        check_list(ctx, &format!("{key}.drop_tags"), &self.drop_tags)?;
        check_map(ctx, &format!("{key}.rename_tags"), &self.rename_tags)?;
        check_map(ctx, &format!("{key}.add_tags"), &self.add_tags)?;
        check_map(ctx, &format!("{key}.set_tags"), &self.set_tags)?;
        Ok(())
    }

    /// Cross-checks with the upstream types, and decides the `validate` profile.
    pub(super) fn check_against_upstreams(
        &mut self,
        ctx: &mut Ctx<'_>,
        has_ccms: bool,
    ) -> Result<(), ConfigError> {
        if has_ccms && self.timestamp.output_precision != Precision::Seconds {
            return Err(ctx.invalid(
                "processing.timestamp.output_precision",
                format!(
                    "must be \"s\" with a ccms-http upstream (cc-metric-store reads timestamps \
                     as seconds), not {:?}",
                    self.timestamp.output_precision.as_str()
                ),
            ));
        }
        if has_ccms && self.timestamp.missing == MissingTimestamp::Keep {
            return Err(ctx.invalid(
                "processing.timestamp.missing",
                "\"keep\" is refused with a ccms-http upstream (the store would stamp its own \
                 receive time); use stamp_ingest or drop",
            ));
        }
        let default = if has_ccms {
            ValidateProfile::Ccms
        } else {
            ValidateProfile::Syntax
        };
        self.validate = self.validate_setting.unwrap_or(default);
        if has_ccms && self.validate < ValidateProfile::Ccms {
            ctx.warn(
                "processing.validate",
                "is weaker than \"ccms\" although a ccms-http upstream is configured; lines \
                 the store would refuse can abort the rest of its batch",
            );
        }
        Ok(())
    }
}

impl UpstreamProcessing {
    pub(super) fn validate(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        for (name, value) in [
            ("timestamp", &self.timestamp),
            ("validate", &self.validate),
            ("materialize_cluster", &self.materialize_cluster),
        ] {
            if value.is_some() {
                return Err(ctx.invalid(
                    format!("{key}.{name}"),
                    format!(
                        "cannot be set per upstream (only the measurement, tag and \
                         default_cluster rules can); set processing.{name} instead"
                    ),
                ));
            }
        }
        if let Some(cluster) = &self.default_cluster {
            check_cluster(ctx, &format!("{key}.default_cluster"), cluster)?;
        }
        let lists = [
            ("drop_measurements", &self.drop_measurements),
            ("keep_measurements", &self.keep_measurements),
            ("drop_tags", &self.drop_tags),
        ];
        for (name, list) in lists {
            if let Some(list) = list {
                check_list(ctx, &format!("{key}.{name}"), list)?;
            }
        }
        let maps = [
            ("rename_measurements", &self.rename_measurements),
            ("rename_tags", &self.rename_tags),
            ("add_tags", &self.add_tags),
            ("set_tags", &self.set_tags),
        ];
        for (name, map) in maps {
            if let Some(map) = map {
                check_map(ctx, &format!("{key}.{name}"), map)?;
            }
        }
        Ok(())
    }

    /// `global` with the keys set here replaced.
    pub(super) fn apply(&self, global: RuleSet) -> RuleSet {
        fn pick<T: Clone>(local: &Option<T>, global: T) -> T {
            local.clone().unwrap_or(global)
        }
        RuleSet {
            default_cluster: self.default_cluster.clone().or(global.default_cluster),
            drop_measurements: pick(&self.drop_measurements, global.drop_measurements),
            keep_measurements: pick(&self.keep_measurements, global.keep_measurements),
            drop_measurements_regex: pick(
                &self.drop_measurements_regex,
                global.drop_measurements_regex,
            ),
            rename_measurements: pick(&self.rename_measurements, global.rename_measurements),
            drop_tags: pick(&self.drop_tags, global.drop_tags),
            rename_tags: pick(&self.rename_tags, global.rename_tags),
            add_tags: pick(&self.add_tags, global.add_tags),
            set_tags: pick(&self.set_tags, global.set_tags),
        }
    }
}

fn check_list(ctx: &Ctx<'_>, key: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, name) in list.iter().enumerate() {
        check_name(ctx, &format!("{key}[{i}]"), name)?;
    }
    Ok(())
}

fn check_map(ctx: &Ctx<'_>, key: &str, map: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (from, to) in map {
        check_name(ctx, key, from)?;
        check_name(ctx, &format!("{key}.{from}"), to)?;
    }
    Ok(())
}
