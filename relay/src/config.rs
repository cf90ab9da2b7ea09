//! The `cc-relay` configuration file (spec `relay.md` §4.2–§4.7): loading, defaults,
//! validation, secrets, and the redacted dump.
//!
//! One JSON file (default `/etc/cc-relay/config.json`) with snake_case keys. Every
//! object rejects unknown keys, so a typo is a startup error naming the file, the key
//! path and the position, e.g.
//! ``relay.json: at upstreams[0].buffer.max_byte (line 31, column 20): unknown field `max_byte`, …``.
//! Durations are humantime strings (`"500ms"`, `"48h"`, `"1h30m"`) or integer
//! seconds; sizes are `"64MiB"`-style strings or integer bytes.
//!
//! [`Config::load`] checks everything once: types (serde), then values and
//! cross-checks ([`ConfigError::Invalid`] naming the key), then it reads every file
//! the relay needs credentials from — JWT public keys, the basic-auth users file, the
//! admin token, upstream tokens and passwords — so a bad file stops startup (and
//! `--check-config`) instead of failing the first request. TLS certificate and key
//! files are only checked to be readable here; the listeners and clients parse them.
//! The rest of the program reads plain, validated values: parsed keys, [`Secret`]s,
//! compiled regexes, enums, and per-upstream rule sets with the overrides applied
//! ([`Upstream::rules`]).
//!
//! Relative paths are taken from the directory of the config file
//! ([`Config::from_json_str`]'s `base_dir`) and stored resolved.
//!
//! Secrets never reach `Debug`, `Display` or `Serialize` output: they are
//! [`Secret`]s (printed as `***`), basic-auth users print their names only, and
//! [`Config::redacted`] (the effective config for `--check-config` and the startup
//! log) also masks URL passwords, URL query values other than `cluster`, and extra
//! upstream header values. Problems that do not stop the relay (an inline token, a
//! group-readable secret file, a weak validation profile next to a store upstream) are
//! collected in [`Config::warnings`]; the caller logs them with
//! [`Config::log_warnings`] once logging is set up. SIGHUP re-reads the credential
//! files through [`Config::reload_secrets`] (and the application re-reads the
//! TLS files of listeners and upstreams).
//!
//! NATS inputs and upstreams of type `nats` get their credential files read at load
//! ([`NatsConnection`]), like the HTTP credentials.

mod general;
mod ingress;
mod nats;
mod processing;
mod upstream;
mod values;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError, parse_json};
use serde::{Deserialize, Serialize};

pub use general::{AdminConfig, LogConfig, RecordCompression, StorageConfig};
pub use ingress::{AuthMode, BasicUsers, ContentEncoding, HttpAuth, HttpIngress, InvalidLines};
pub use nats::{
    JetStreamIngress, NatsAuth, NatsConnection, NatsIngress, NatsMode, NatsSubject, NatsTls,
    StreamConfig, StreamStorage,
};
pub use processing::{
    MissingTimestamp, Processing, RuleSet, TimestampConfig, UpstreamProcessing, ValidateProfile,
};
pub use upstream::{
    BatchConfig, BufferConfig, Compression, DeadLetterConfig, Jitter, MessageType, RetryConfig,
    Upstream, UpstreamAuth, UpstreamCredentials, UpstreamFilter, UpstreamJetStream, UpstreamTls,
    UpstreamType, WhenFull, redact_url,
};
pub use values::{
    AnchoredRegex, InputPrecision, REDACTED, Secret, SecretError, ServerTls, permission_warning,
};

/// `data_dir` when the key is missing.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cc-relay";

/// [`Config::source`] of [`Config::embedded_default`].
pub const EMBEDDED_DEFAULT_SOURCE: &str = "built-in defaults";

/// The configuration used without a config file: HTTP ingress `local` on
/// `127.0.0.1:8080` without authentication, data under `./var/relay`, admin on
/// `127.0.0.1:9109`, and one `ccms-http` upstream `store` at
/// `http://127.0.0.1:8082/api/write` (a local cc-store's default address) without
/// authentication. Everything else takes its default.
pub const EMBEDDED_DEFAULT_JSON: &str = r#"{
  "data_dir": "./var/relay",
  "admin": { "address": "127.0.0.1:9109" },
  "ingress": {
    "http": [{ "name": "local", "address": "127.0.0.1:8080", "auth": { "mode": "none" } }]
  },
  "upstreams": [{
    "name": "store",
    "type": "ccms-http",
    "url": "http://127.0.0.1:8082/api/write"
  }]
}
"#;

/// The whole relay configuration, validated ([`Config::load`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `instance_id`: the relay's identity in logs, `/status`, `X-CC-Relay-Id`
    /// and the names of its NATS connections. Default: the short host name (up
    /// to the first dot). `[A-Za-z0-9._-]{1,64}`.
    #[serde(default = "default_instance_id")]
    pub instance_id: String,
    /// `data_dir`: the sled database lives in `<data_dir>/db`. Must be on a real
    /// block device (fsync is the durability guarantee).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `log`: level and output format (command-line flags override them).
    #[serde(default)]
    pub log: LogConfig,
    /// `admin`: the `/metrics`, `/healthz`, `/readyz`, `/status` listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `storage`: sled and disk-limit settings.
    #[serde(default)]
    pub storage: StorageConfig,
    /// `ingress`: where lines come in; at least one listener overall.
    #[serde(default)]
    pub ingress: IngressConfig,
    /// `processing`: global line handling (§4.5).
    #[serde(default)]
    pub processing: Processing,
    /// `upstreams`: forwarding destinations, at least one, names unique.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    /// `shutdown_grace`: how long upstream workers keep forwarding after SIGTERM.
    #[serde(
        default = "default_shutdown_grace",
        with = "cc_common::config::duration"
    )]
    pub shutdown_grace: Duration,
    /// Where the configuration came from (a file path or
    /// [`EMBEDDED_DEFAULT_SOURCE`]); errors and logs name it.
    #[serde(skip)]
    pub source: String,
    /// Problems found at load that do not stop the relay; see [`Config::log_warnings`].
    #[serde(skip)]
    pub warnings: Vec<ConfigWarning>,
}

/// A problem in the configuration that does not stop the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Key path the warning is about, e.g. `upstreams[0].auth.jwt`.
    pub key: String,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Section `ingress`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// `http`: HTTP listeners (§4.3).
    pub http: Vec<HttpIngress>,
    /// `nats`: NATS inputs (§4.4).
    pub nats: Vec<NatsIngress>,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The short host name, or `cc-relay` if there is none or it is not a valid
/// `instance_id`.
fn default_instance_id() -> String {
    short_hostname()
        .filter(|name| valid_instance_id(name))
        .unwrap_or_else(|| "cc-relay".to_owned())
}

/// The host name up to its first dot, if the system has one.
fn short_hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_str()?;
    let short = name.split('.').next().unwrap_or(name).trim();
    (!short.is_empty()).then(|| short.to_owned())
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    /// Loads and validates the file at `path`, reading every credential file it
    /// names. Relative paths in it are taken from the file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read; [`ConfigError::Parse`] for
    /// invalid JSON, unknown keys or wrongly typed values; [`ConfigError::Invalid`]
    /// for rejected values, failed cross-checks and unusable files. All name the file
    /// and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Self::from_json_str(&text, &path.display().to_string(), base_dir)
    }

    /// Loads and validates `text`; `origin` names it in errors and becomes
    /// [`Config::source`], `base_dir` is where relative paths start.
    ///
    /// # Errors
    ///
    /// As [`Config::load`], without [`ConfigError::Read`].
    pub fn from_json_str(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = parse_json(text, origin)?;
        let mut ctx = Ctx {
            origin,
            base_dir,
            warnings: Vec::new(),
        };
        config.validate(&mut ctx)?;
        config.read_files(&mut ctx)?;
        config.source = origin.to_owned();
        config.warnings = ctx.warnings;
        Ok(config)
    }

    /// The built-in configuration used without a config file
    /// ([`EMBEDDED_DEFAULT_JSON`]), loaded through the same checks as a file.
    #[must_use]
    #[expect(
        clippy::expect_used,
        reason = "constant input, checked by the unit test embedded_default_loads"
    )]
    pub fn embedded_default() -> Self {
        // INVARIANT: EMBEDDED_DEFAULT_JSON is a constant that names no file and
        // that the unit test `embedded_default_loads` loads successfully; the only
        // environment-dependent default, instance_id, falls back to "cc-relay"
        // when the host name is missing or unusable.
        Self::from_json_str(
            EMBEDDED_DEFAULT_JSON,
            EMBEDDED_DEFAULT_SOURCE,
            Path::new("."),
        )
        .expect("built-in default configuration is valid")
    }

    /// The effective configuration (defaults filled in, paths resolved, the
    /// `validate` profile decided) as JSON, with every secret replaced by `***`:
    /// inline tokens, URL passwords, URL query values other than `cluster`, and
    /// extra upstream header values. Values read from files are not included.
    /// For `--check-config` and the startup log.
    #[must_use]
    pub fn redacted(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|err| {
            // Only a path that is not UTF-8 can get here.
            serde_json::Value::String(format!("<configuration cannot be shown: {err}>"))
        })
    }

    /// Logs [`Config::warnings`] at `warn` level. Call once, after logging is set up.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(
                config = %self.source,
                key = %warning.key,
                "{}",
                warning.message
            );
        }
    }

    /// Re-reads every credential file (SIGHUP, §4.12): JWT public key files, the
    /// basic-auth users file, the admin token, upstream `jwt_file` and
    /// `password_file`. All or nothing: on error `self` is unchanged. Warnings
    /// (e.g. a group-readable file) are logged. Other keys are not re-read; a
    /// changed config file needs a restart.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key of the first file that cannot be
    /// used.
    pub fn reload_secrets(&mut self) -> Result<(), ConfigError> {
        let mut fresh = self.clone();
        let mut ctx = Ctx {
            origin: &self.source,
            base_dir: Path::new("."),
            warnings: Vec::new(),
        };
        fresh.read_files(&mut ctx)?;
        for warning in &ctx.warnings {
            tracing::warn!(config = %self.source, key = %warning.key, "{}", warning.message);
        }
        *self = fresh;
        Ok(())
    }

    /// Whether any upstream (enabled or not) is of type `ccms-http`.
    #[must_use]
    pub fn has_ccms_upstream(&self) -> bool {
        self.upstreams.iter().any(|u| u.kind.is_ccms())
    }

    fn validate(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConfigError> {
        check_instance_id(ctx, &self.instance_id)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ctx.invalid("data_dir", "must not be empty"));
        }
        ctx.resolve(&mut self.data_dir);
        self.log.validate(ctx)?;
        self.admin.validate(ctx)?;
        self.storage.validate(ctx)?;

        let record_max_raw = self.storage.record_max_raw_bytes.as_u64();
        for (i, listener) in self.ingress.http.iter_mut().enumerate() {
            listener.validate(ctx, &format!("ingress.http[{i}]"), record_max_raw)?;
        }
        for (i, input) in self.ingress.nats.iter_mut().enumerate() {
            input.validate(ctx, &format!("ingress.nats[{i}]"))?;
        }
        if self.ingress.http.is_empty() && self.ingress.nats.is_empty() {
            return Err(ctx.invalid(
                "ingress",
                "at least one ingress (ingress.http or ingress.nats) is required",
            ));
        }
        let mut names = BTreeSet::new();
        let ingress_names = self
            .ingress
            .http
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("ingress.http[{i}].name"), l.name.as_str()))
            .chain(
                self.ingress
                    .nats
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("ingress.nats[{i}].name"), n.name.as_str())),
            );
        for (key, name) in ingress_names {
            if !names.insert(name) {
                return Err(ctx.invalid(key, format!("ingress name {name:?} is used twice")));
            }
        }
        self.check_listen_addresses(ctx)?;

        self.processing.validate(ctx, "processing")?;
        if self.upstreams.is_empty() {
            return Err(ctx.invalid("upstreams", "at least one upstream is required"));
        }
        let mut names = BTreeSet::new();
        for (i, upstream) in self.upstreams.iter_mut().enumerate() {
            let key = format!("upstreams[{i}]");
            upstream.validate(ctx, &key, &self.processing, &self.storage)?;
            if !names.insert(upstream.name.clone()) {
                return Err(ctx.invalid(
                    format!("{key}.name"),
                    format!("upstream name {:?} is used twice", upstream.name),
                ));
            }
        }
        if self.upstreams.iter().all(|u| !u.enabled) {
            ctx.warn(
                "upstreams",
                "every upstream is disabled: lines are queued but nothing is forwarded",
            );
        }
        let has_ccms = self.has_ccms_upstream();
        self.processing.check_against_upstreams(ctx, has_ccms)?;
        Ok(())
    }

    /// Two listeners (HTTP ingress or admin) on the same address cannot both start.
    fn check_listen_addresses(&self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        let mut seen: Vec<(SocketAddr, String)> = Vec::new();
        let listeners = self
            .ingress
            .http
            .iter()
            .enumerate()
            .map(|(i, l)| (l.address, format!("ingress.http[{i}].address")))
            .chain(std::iter::once((
                self.admin.address,
                "admin.address".to_owned(),
            )));
        for (address, key) in listeners {
            if address.port() == 0 {
                continue;
            }
            let clash = seen.iter().find(|(other, _)| {
                other.port() == address.port()
                    && (other.ip() == address.ip()
                        || other.ip().is_unspecified()
                        || address.ip().is_unspecified())
            });
            if let Some((_, other_key)) = clash {
                return Err(
                    ctx.invalid(key, format!("address {address} collides with {other_key}"))
                );
            }
            seen.push((address, key));
        }
        Ok(())
    }

    /// Reads every credential file into the resolved fields (load and SIGHUP).
    fn read_files(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConfigError> {
        self.admin.auth_token = match &self.admin.auth_token_file {
            Some(path) => Some(ctx.secret_file("admin.auth_token_file", path)?),
            None => None,
        };
        for (i, listener) in self.ingress.http.iter_mut().enumerate() {
            listener
                .auth
                .read_files(ctx, &format!("ingress.http[{i}].auth"))?;
        }
        for (i, upstream) in self.upstreams.iter_mut().enumerate() {
            upstream.read_files(ctx, &format!("upstreams[{i}]"))?;
        }
        // NATS credentials: password, token and seed files (the `.creds`
        // file is read by the client's credentials).
        for (i, input) in self.ingress.nats.iter_mut().enumerate() {
            input.connection = Some(nats::nats_connection!(
                ctx,
                &format!("ingress.nats[{i}]"),
                input
            )?);
        }
        for (i, upstream) in self.upstreams.iter_mut().enumerate() {
            if upstream.kind == UpstreamType::Nats {
                upstream.connection = Some(nats::nats_connection!(
                    ctx,
                    &format!("upstreams[{i}]"),
                    upstream
                )?);
            }
        }
        Ok(())
    }
}

/// What validation needs besides the config: where it came from, where relative
/// paths start, and the warnings found so far.
struct Ctx<'a> {
    origin: &'a str,
    base_dir: &'a Path,
    warnings: Vec<ConfigWarning>,
}

impl Ctx<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.origin, key, message)
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            key: key.into(),
            message: message.into(),
        });
    }

    fn resolve(&self, path: &mut PathBuf) {
        let base_is_cwd = self.base_dir.as_os_str().is_empty() || self.base_dir == Path::new(".");
        if path.is_relative() && !path.as_os_str().is_empty() && !base_is_cwd {
            *path = self.base_dir.join(&*path);
        }
    }

    fn resolve_opt(&self, path: &mut Option<PathBuf>) {
        if let Some(path) = path {
            self.resolve(path);
        }
    }

    /// The file at `path` exists and can be opened for reading.
    fn readable(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        if path.as_os_str().is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        match std::fs::File::open(path) {
            Ok(_) if path.is_file() => Ok(()),
            Ok(_) => Err(self.invalid(key, format!("{} is not a file", path.display()))),
            Err(err) => Err(self.invalid(key, format!("cannot read {}: {err}", path.display()))),
        }
    }

    fn server_tls(&self, key: &str, tls: &mut ServerTls) -> Result<(), ConfigError> {
        self.resolve(&mut tls.cert_file);
        self.resolve(&mut tls.key_file);
        self.resolve_opt(&mut tls.client_ca_file);
        self.readable(&format!("{key}.cert_file"), &tls.cert_file)?;
        self.readable(&format!("{key}.key_file"), &tls.key_file)?;
        match &tls.client_ca_file {
            Some(ca) => self.readable(&format!("{key}.client_ca_file"), ca),
            None if tls.require_client_cert => Err(self.invalid(
                format!("{key}.require_client_cert"),
                "needs client_ca_file (the CAs that sign client certificates)",
            )),
            None => Ok(()),
        }
    }

    /// `tls.cert_file` and `tls.key_file` of the section at `key` come together.
    fn key_pair(
        &self,
        key: &str,
        cert: Option<&PathBuf>,
        private_key: Option<&PathBuf>,
    ) -> Result<(), ConfigError> {
        match (cert, private_key) {
            (Some(_), None) => Err(self.invalid(
                format!("{key}.tls.key_file"),
                "tls.cert_file needs tls.key_file",
            )),
            (None, Some(_)) => Err(self.invalid(
                format!("{key}.tls.cert_file"),
                "tls.key_file needs tls.cert_file",
            )),
            _ => Ok(()),
        }
    }

    /// Reads a secret file, warning if others can read it.
    fn secret_file(&mut self, key: &str, path: &Path) -> Result<Secret, ConfigError> {
        let secret = Secret::from_file(path)
            .map_err(|err| self.invalid(key, cc_common::error_chain(&err)))?;
        if let Some(warning) = permission_warning(path) {
            self.warn(key, warning);
        }
        Ok(secret)
    }
}

fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_instance_id(ctx: &Ctx<'_>, id: &str) -> Result<(), ConfigError> {
    if valid_instance_id(id) {
        Ok(())
    } else {
        Err(ctx.invalid(
            "instance_id",
            format!("{id:?} is not usable: 1 to 64 characters from A-Z, a-z, 0-9, '.', '_', '-'"),
        ))
    }
}

fn positive_size(ctx: &Ctx<'_>, key: &str, size: ByteSize) -> Result<(), ConfigError> {
    if size.as_u64() == 0 {
        Err(ctx.invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

fn positive_duration(ctx: &Ctx<'_>, key: &str, duration: Duration) -> Result<(), ConfigError> {
    if duration.is_zero() {
        Err(ctx.invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// A cluster name: what the `ccms` profile accepts and what travels as the
/// `cluster` query parameter — URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// no `..`.
fn check_cluster(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            format!(
                "cluster name {name:?} is not usable: 1 to 255 characters from \
                 A-Z, a-z, 0-9, '-', '.', '_', '~', and no \"..\""
            ),
        ))
    }
}

/// A measurement name or tag key/value used in a rule: not empty, no control
/// characters (line-protocol escaping is the processor's business).
fn check_name(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        Err(ctx.invalid(key, "must not be empty"))
    } else if name.chars().any(char::is_control) {
        Err(ctx.invalid(
            key,
            format!("{name:?} contains a control character (newline, tab, …)"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
