//! Logging set-up: one `tracing` subscriber per process, text or JSON, filtered by `RUST_LOG`.
//!
//! Both binaries call [`init`] once, first thing in `main`:
//!
//! - [`LogFormat::Text`] writes human-readable lines to **stderr** (colours only when stderr
//!   is a terminal);
//! - [`LogFormat::Json`] writes one JSON object per line to **stdout**, for journald, Loki
//!   and other collectors that parse structured logs.
//!
//! The filter comes from `RUST_LOG` when that variable is set and non-empty, otherwise from
//! the directive the caller passes (the `log.level` config key, `--log-level`, or the
//! upstream `-loglevel` flag mapped by [`go_loglevel_directive`]). An invalid `RUST_LOG` is
//! an error rather than being silently ignored, so a typo does not hide logs.

use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// The environment variable that overrides the configured log filter.
pub const ENV_FILTER_VAR: &str = "RUST_LOG";

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    #[default]
    Text,
    /// One JSON object per line on stdout.
    Json,
}

impl LogFormat {
    /// The name used on the command line and in config files (`"text"` or `"json"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string given for a [`LogFormat`] is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}; expected one of: text, json")]
pub struct ParseLogFormatError(String);

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// Parses `text` or `json` (ASCII case-insensitive, surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.eq_ignore_ascii_case("text") {
            Ok(Self::Text)
        } else if trimmed.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else {
            Err(ParseLogFormatError(s.to_owned()))
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `RUST_LOG` is set but is not a valid filter.
    #[error("invalid {var} value {value:?}")]
    InvalidEnvFilter {
        /// The variable's name (`RUST_LOG`).
        var: &'static str,
        /// The value as found (lossily converted if it was not UTF-8).
        value: String,
        /// What the filter parser objected to (absent when the value is not UTF-8).
        #[source]
        source: Option<ParseError>,
    },
    /// The default directive given by the caller is not a valid filter.
    #[error("invalid log filter directive {directive:?}")]
    InvalidDirective {
        /// The directive as given.
        directive: String,
        /// What the filter parser objected to.
        #[source]
        source: ParseError,
    },
    /// A global subscriber was already installed (e.g. `init` was called twice).
    #[error("logging is already initialised")]
    AlreadyInitialised(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Installs the process-wide `tracing` subscriber.
///
/// `default_directive` (e.g. `"info"` or `"info,cc_relay=debug"`) is used when `RUST_LOG`
/// is unset or empty. Text goes to stderr, JSON (one object per line) to stdout.
///
/// # Errors
///
/// [`TelemetryError::InvalidEnvFilter`] if `RUST_LOG` is set to something that is not a
/// valid filter, [`TelemetryError::InvalidDirective`] if `default_directive` is not, and
/// [`TelemetryError::AlreadyInitialised`] if a global subscriber is already installed
/// (calling `init` twice never panics).
pub fn init(format: LogFormat, default_directive: &str) -> Result<(), TelemetryError> {
    let filter = build_filter(std::env::var_os(ENV_FILTER_VAR), default_directive)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Text => {
            let builder = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            builder.try_init()
        }
        LogFormat::Json => {
            let builder = builder
                .json()
                .with_ansi(false)
                .with_writer(std::io::stdout)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            builder.try_init()
        }
    };
    result.map_err(TelemetryError::AlreadyInitialised)
}

/// Swaps the filter of the subscriber installed by [`init`].
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: std::sync::OnceLock<Reload> = std::sync::OnceLock::new();

/// Replaces the log filter set by [`init`] with `directive` (e.g. on
/// SIGHUP). Returns `Ok(false)` without a change when `RUST_LOG` is set
/// (the environment wins, as at start) or logging was not initialised here.
///
/// # Errors
///
/// [`TelemetryError::InvalidDirective`] for a directive that does not
/// parse; the old filter stays.
pub fn set_level(directive: &str) -> Result<bool, TelemetryError> {
    if std::env::var_os(ENV_FILTER_VAR).is_some_and(|v| !v.is_empty()) {
        return Ok(false);
    }
    let Some(reload) = RELOAD.get() else {
        return Ok(false);
    };
    let filter = build_filter(None, directive)?;
    Ok(reload(filter).is_ok())
}

/// Builds the filter from the value of `RUST_LOG` (if any) or the default directive.
fn build_filter(
    rust_log: Option<OsString>,
    default_directive: &str,
) -> Result<EnvFilter, TelemetryError> {
    if let Some(raw) = rust_log.filter(|value| !value.is_empty()) {
        let Some(value) = raw.to_str() else {
            return Err(TelemetryError::InvalidEnvFilter {
                var: ENV_FILTER_VAR,
                value: raw.to_string_lossy().into_owned(),
                source: None,
            });
        };
        return EnvFilter::builder().parse(value).map_err(|source| {
            TelemetryError::InvalidEnvFilter {
                var: ENV_FILTER_VAR,
                value: value.to_owned(),
                source: Some(source),
            }
        });
    }
    // The NATS client logs every failed reconnect attempt itself;
    // [`crate::nats`] reports the same events once, rate-limited. Its own
    // lines stay visible when a directive names `async_nats`.
    let quiet;
    let directive = if default_directive.contains("async_nats") {
        default_directive
    } else {
        quiet = format!("{default_directive},async_nats=off");
        &quiet
    };
    EnvFilter::builder()
        .parse(directive)
        .map_err(|source| TelemetryError::InvalidDirective {
            directive: default_directive.to_owned(),
            source,
        })
}

/// Lets a log line that may repeat at a high rate (a dropped message, an
/// invalid line) through at most once per period, and counts the ones held
/// back so that the next line can say how many there were.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    /// When a line was last let through, and how many were held back since.
    state: parking_lot::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    /// At most one line per `every`.
    #[must_use]
    pub fn new(every: std::time::Duration) -> Self {
        Throttle {
            every,
            state: parking_lot::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` if a line may be logged now, `n` being the lines held back
    /// since the last one; `None` (and one more held back) otherwise.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock();
        if state.0.is_some_and(|at| at.elapsed() < self.every) {
            state.1 += 1;
            return None;
        }
        state.0 = Some(std::time::Instant::now());
        Some(std::mem::take(&mut state.1))
    }
}

/// Maps an upstream cc-metric-store `-loglevel` value to a `tracing` filter directive.
///
/// Accepts `debug`, `info`, `warn`, `err` and `crit` (the upstream names) plus `warning`
/// and `error`, ASCII case-insensitively. `tracing` has no level above `error`, so `crit`
/// maps to `error` as well. Returns `None` for anything else.
#[must_use]
pub fn go_loglevel_directive(level: &str) -> Option<&'static str> {
    const TABLE: [(&str, &str); 7] = [
        ("debug", "debug"),
        ("info", "info"),
        ("warn", "warn"),
        ("warning", "warn"),
        ("err", "error"),
        ("error", "error"),
        ("crit", "error"),
    ];
    let level = level.trim();
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(level))
        .map(|&(_, directive)| directive)
}

#[cfg(test)]
mod tests;
