//! Section `upstreams[]` (§4.7): forwarding destinations, their batching, retry,
//! buffer limits, credentials, TLS and per-upstream rule overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cc_common::config::ConfigError;
use serde::{Deserialize, Serialize};
use url::Url;

use super::nats::{NatsConnection, NatsMode, check_subject, nats_connection};
use super::processing::{Processing, RuleSet, UpstreamProcessing};
use super::values::{self, REDACTED, Secret, SecretError};
use super::{Ctx, StorageConfig, check_cluster, check_name, positive_duration, positive_size};

mod redact;
pub use redact::redact_url;
mod settings;

pub use settings::{
    BatchConfig, BufferConfig, Compression, DeadLetterConfig, Jitter, MessageType, RetryConfig,
    UpstreamAuth, UpstreamCredentials, UpstreamFilter, UpstreamJetStream, UpstreamTls,
    UpstreamType, WhenFull,
};

/// One forwarding destination (`upstreams[]`), served by its own worker and
/// its own durable queue (`q:<name>`). `Debug` masks the URL's secrets and
/// the header values, like `Serialize`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `name` (required): `[a-z0-9_-]{1,48}`, unique; names the queue tree, so
    /// renaming starts an empty queue.
    pub name: String,
    /// `type` (required): `ccms-http`, `relay-http` or `nats`.
    #[serde(rename = "type")]
    pub kind: UpstreamType,
    /// `enabled`: a disabled upstream keeps its queue but forwards nothing.
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `filter`: which lines this upstream receives (step 10). Default all.
    #[serde(default)]
    pub filter: UpstreamFilter,
    /// `batch`: request size and linger.
    #[serde(default)]
    pub batch: BatchConfig,
    /// `max_in_flight`: concurrent requests; more than 1 gives up strict
    /// ordering. Default 1.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// `retry`: backoff policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// `buffer`: limits of this upstream's queue (§4.8).
    #[serde(default)]
    pub buffer: BufferConfig,
    /// `dead_letter`: limit of the `dlq:` tree.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// `url`: full `http://` or `https://` URL (HTTP types; always `Some` for
    /// them after load). Serialized with its password and query values (other
    /// than `cluster`) masked.
    #[serde(default, with = "redact::url_serde")]
    pub url: Option<Url>,
    /// `cluster`: `cluster` query parameter for records without a default cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// `auth`: credentials sent upstream.
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// `tls`: client TLS settings.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// `timeout`: whole request. Default 30 s.
    #[serde(default = "default_timeout", with = "cc_common::config::duration")]
    pub timeout: Duration,
    /// `connect_timeout`. Default 5 s.
    #[serde(
        default = "default_connect_timeout",
        with = "cc_common::config::duration"
    )]
    pub connect_timeout: Duration,
    /// `pool_idle_timeout`: idle pooled connections are closed after this. Default 90 s.
    #[serde(
        default = "default_pool_idle_timeout",
        with = "cc_common::config::duration"
    )]
    pub pool_idle_timeout: Duration,
    /// `compress`: request body compression; only `relay-http` may use `gzip`
    /// or `zstd`. Default `none`.
    #[serde(default)]
    pub compress: Compression,
    /// `headers`: extra static request headers. Serialized with values masked.
    #[serde(default, serialize_with = "redact::redact_values")]
    pub headers: BTreeMap<String, String>,
    /// `processing`: overrides of the rule keys (steps 6–8) for this upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<UpstreamProcessing>,
    /// `servers` (type `nats`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// `subject` (type `nats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `mode` (type `nats`): `core` or `jetstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NatsMode>,
    /// `jetstream` (type `nats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<UpstreamJetStream>,
    /// Servers, credentials and TLS of a `nats` upstream, the secrets read
    /// (not a config key; filled at load).
    #[serde(skip)]
    pub connection: Option<NatsConnection>,
    /// Credentials read from `auth` (not a config key); re-read with
    /// [`Upstream::read_credentials`] on SIGHUP.
    #[serde(skip)]
    pub credentials: UpstreamCredentials,
    /// The effective rules of steps 6–8 for this upstream: `processing` with
    /// this upstream's overrides applied (not a config key).
    #[serde(skip)]
    pub rules: RuleSet,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), REDACTED))
            .collect();
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("filter", &self.filter)
            .field("batch", &self.batch)
            .field("max_in_flight", &self.max_in_flight)
            .field("retry", &self.retry)
            .field("buffer", &self.buffer)
            .field("dead_letter", &self.dead_letter)
            .field("url", &self.url.as_ref().map(redact_url))
            .field("cluster", &self.cluster)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("compress", &self.compress)
            .field("headers", &headers)
            .field("processing", &self.processing)
            .field("servers", &self.servers)
            .field("subject", &self.subject)
            .field("mode", &self.mode)
            .field("jetstream", &self.jetstream)
            .field("connection", &self.connection)
            .field("credentials", &self.credentials)
            .field("rules", &self.rules)
            .finish()
    }
}

fn yes() -> bool {
    true
}

fn default_max_in_flight() -> usize {
    1
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

/// Headers the relay sets itself; `headers` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "user-agent",
    "x-cc-relay-hops",
    "x-cc-relay-id",
    "x-cc-relay-batch",
];

impl Upstream {
    pub(super) fn validate(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
        processing: &Processing,
        storage: &StorageConfig,
    ) -> Result<(), ConfigError> {
        let name_ok = (1..=48).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !name_ok {
            return Err(ctx.invalid(
                format!("{key}.name"),
                format!(
                    "{:?} is not usable: 1 to 48 characters from a-z, 0-9, '_', '-'",
                    self.name
                ),
            ));
        }
        if self.kind == UpstreamType::Nats {
            self.validate_nats(ctx, key)?;
        } else {
            self.check_nats_keys_absent(ctx, key)?;
        }
        self.validate_filter(ctx, key)?;
        positive_size(ctx, &format!("{key}.batch.max_bytes"), self.batch.max_bytes)?;
        if self.batch.max_lines == 0 {
            return Err(ctx.invalid(format!("{key}.batch.max_lines"), "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(ctx.invalid(format!("{key}.max_in_flight"), "must be at least 1"));
        }
        if self.max_in_flight > 1 {
            ctx.warn(
                format!("{key}.max_in_flight"),
                "above 1 gives up the ordering of lines towards this upstream",
            );
        }
        self.validate_retry(ctx, key)?;
        positive_size(
            ctx,
            &format!("{key}.buffer.max_bytes"),
            self.buffer.max_bytes,
        )?;
        positive_duration(ctx, &format!("{key}.buffer.max_age"), self.buffer.max_age)?;
        if self.buffer.max_bytes > storage.max_disk_bytes {
            ctx.warn(
                format!("{key}.buffer.max_bytes"),
                format!(
                    "is above storage.max_disk_bytes ({}): the disk limit evicts first",
                    storage.max_disk_bytes
                ),
            );
        }
        if self.kind != UpstreamType::Nats {
            self.validate_url(ctx, key)?;
            self.validate_auth(ctx, key)?;
            self.validate_tls(ctx, key)?;
        }
        if let Some(cluster) = &self.cluster {
            check_cluster(ctx, &format!("{key}.cluster"), cluster)?;
        }
        positive_duration(ctx, &format!("{key}.timeout"), self.timeout)?;
        positive_duration(ctx, &format!("{key}.connect_timeout"), self.connect_timeout)?;
        if self.kind.is_ccms() && self.compress != Compression::None {
            return Err(ctx.invalid(
                format!("{key}.compress"),
                "must be \"none\" for a ccms-http upstream (the store does not decode compressed \
                 bodies); compression is for relay-http",
            ));
        }
        self.validate_headers(ctx, key)?;
        self.rules = match &self.processing {
            Some(overrides) => {
                overrides.validate(ctx, &format!("{key}.processing"))?;
                overrides.apply(processing.rules())
            }
            None => processing.rules(),
        };
        Ok(())
    }

    /// The keys of a `nats` upstream: servers, subject, credentials, TLS; and
    /// none of the HTTP-only keys.
    fn validate_nats(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let http_only = [
            ("url", self.url.is_some()),
            ("cluster", self.cluster.is_some()),
            // Durations have defaults: a value other than those was written.
            ("timeout", self.timeout != default_timeout()),
            (
                "connect_timeout",
                self.connect_timeout != default_connect_timeout(),
            ),
            (
                "pool_idle_timeout",
                self.pool_idle_timeout != default_pool_idle_timeout(),
            ),
            ("auth.jwt", self.auth.jwt.is_some()),
            ("auth.jwt_file", self.auth.jwt_file.is_some()),
            ("auth.username", self.auth.username.is_some()),
            ("tls.server_name", self.tls.server_name.is_some()),
            ("tls.insecure_skip_verify", self.tls.insecure_skip_verify),
            ("compress", self.compress != Compression::None),
            ("headers", !self.headers.is_empty()),
        ];
        if let Some((name, _)) = http_only.into_iter().find(|(_, set)| *set) {
            let hint = match name {
                "url" => " (a nats upstream uses servers and subject)",
                "cluster" => {
                    " (lines without a cluster tag get their request's default cluster as a tag)"
                }
                "timeout" => " (use jetstream.ack_timeout)",
                "auth.username" => " (NATS uses auth.user)",
                _ => "",
            };
            return Err(ctx.invalid(
                format!("{key}.{name}"),
                format!("is not used by type nats{hint}"),
            ));
        }
        match &self.subject {
            Some(subject) => check_subject(ctx, &format!("{key}.subject"), subject, false)?,
            None => {
                return Err(ctx.invalid(
                    format!("{key}.subject"),
                    "is required for type nats (the subject to publish to)",
                ));
            }
        }
        let mode = self.mode.unwrap_or_default();
        if mode == NatsMode::Core && self.jetstream.is_some() {
            ctx.warn(
                format!("{key}.jetstream"),
                "is ignored: mode is core (set \"mode\": \"jetstream\" to use it)",
            );
        }
        if let Some(js) = &self.jetstream {
            positive_duration(ctx, &format!("{key}.jetstream.ack_timeout"), js.ack_timeout)?;
        }
        self.connection = Some(nats_connection!(ctx, key, self)?);
        Ok(())
    }

    fn check_nats_keys_absent(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let nats_only = [
            ("servers", !self.servers.is_empty()),
            ("subject", self.subject.is_some()),
            ("mode", self.mode.is_some()),
            ("jetstream", self.jetstream.is_some()),
            ("auth.user", self.auth.user.is_some()),
            ("auth.token_file", self.auth.token_file.is_some()),
            ("auth.nkey_seed_file", self.auth.nkey_seed_file.is_some()),
            ("auth.creds_file", self.auth.creds_file.is_some()),
            ("tls.require", self.tls.require),
            ("tls.handshake_first", self.tls.handshake_first),
        ];
        match nats_only.into_iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(ctx.invalid(
                format!("{key}.{name}"),
                format!("only for type nats, not {}", self.kind.as_str()),
            )),
            None => Ok(()),
        }
    }

    fn validate_filter(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let lists = [
            ("include_measurements", &self.filter.include_measurements),
            ("exclude_measurements", &self.filter.exclude_measurements),
            ("include_clusters", &self.filter.include_clusters),
        ];
        for (name, list) in lists {
            for (i, item) in list.iter().enumerate() {
                check_name(ctx, &format!("{key}.filter.{name}[{i}]"), item)?;
            }
        }
        Ok(())
    }

    fn validate_retry(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let retry = &self.retry;
        positive_duration(
            ctx,
            &format!("{key}.retry.initial_backoff"),
            retry.initial_backoff,
        )?;
        if retry.max_backoff < retry.initial_backoff {
            return Err(ctx.invalid(
                format!("{key}.retry.max_backoff"),
                "must not be below retry.initial_backoff",
            ));
        }
        if !(retry.multiplier.is_finite() && retry.multiplier >= 1.0) {
            return Err(ctx.invalid(
                format!("{key}.retry.multiplier"),
                format!("must be at least 1.0, not {}", retry.multiplier),
            ));
        }
        positive_duration(
            ctx,
            &format!("{key}.retry.auth_backoff"),
            retry.auth_backoff,
        )?;
        if retry.poison_attempts == 0 {
            return Err(ctx.invalid(format!("{key}.retry.poison_attempts"), "must be at least 1"));
        }
        Ok(())
    }

    fn validate_url(&self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let field = format!("{key}.url");
        let Some(url) = &self.url else {
            return Err(ctx.invalid(
                field,
                format!("is required for type {}", self.kind.as_str()),
            ));
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ctx.invalid(
                field,
                format!(
                    "must be an http:// or https:// URL, not {}://",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ctx.invalid(field, "has no host"));
        }
        if url.fragment().is_some() {
            return Err(ctx.invalid(field, "must not have a #fragment"));
        }
        if url.password().is_some() {
            ctx.warn(
                field,
                "holds a password; use auth.username and auth.password_file instead",
            );
        }
        Ok(())
    }

    fn validate_auth(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let auth = &mut self.auth;
        ctx.resolve_opt(&mut auth.jwt_file);
        ctx.resolve_opt(&mut auth.password_file);
        if auth.jwt.is_some() && auth.jwt_file.is_some() {
            return Err(ctx.invalid(
                format!("{key}.auth.jwt_file"),
                "auth.jwt and auth.jwt_file are mutually exclusive",
            ));
        }
        match (&auth.username, &auth.password_file) {
            (Some(_), None) => {
                return Err(ctx.invalid(
                    format!("{key}.auth.password_file"),
                    "auth.username needs auth.password_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ctx.invalid(
                    format!("{key}.auth.username"),
                    "auth.password_file needs auth.username",
                ));
            }
            (Some(user), Some(_)) if user.is_empty() || user.contains(':') => {
                return Err(ctx.invalid(
                    format!("{key}.auth.username"),
                    "must not be empty or contain ':'",
                ));
            }
            _ => {}
        }
        let has_token = auth.jwt.is_some() || auth.jwt_file.is_some();
        if has_token && auth.username.is_some() {
            return Err(ctx.invalid(
                format!("{key}.auth.username"),
                "a JWT (auth.jwt / auth.jwt_file) and basic auth (auth.username) cannot both be sent",
            ));
        }
        if let Some(jwt) = &auth.jwt {
            if jwt.expose().trim().is_empty() {
                return Err(ctx.invalid(format!("{key}.auth.jwt"), "is empty"));
            }
            ctx.warn(
                format!("{key}.auth.jwt"),
                "token written inline in the config; prefer auth.jwt_file (re-read on SIGHUP)",
            );
        }
        Ok(())
    }

    fn validate_tls(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let tls = &mut self.tls;
        ctx.resolve_opt(&mut tls.ca_file);
        ctx.resolve_opt(&mut tls.cert_file);
        ctx.resolve_opt(&mut tls.key_file);
        for (name, path) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if let Some(path) = path {
                ctx.readable(&format!("{key}.tls.{name}"), path)?;
            }
        }
        ctx.key_pair(key, tls.cert_file.as_ref(), tls.key_file.as_ref())?;
        if tls.server_name.as_deref().is_some_and(str::is_empty) {
            return Err(ctx.invalid(format!("{key}.tls.server_name"), "must not be empty"));
        }
        if tls.insecure_skip_verify {
            ctx.warn(
                format!("{key}.tls.insecure_skip_verify"),
                "the server certificate is not verified: anyone on the path can read and \
                 change the data and take the credentials",
            );
        }
        let configured = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.server_name.is_some()
            || tls.insecure_skip_verify;
        if configured && self.url.as_ref().is_some_and(|u| u.scheme() == "http") {
            ctx.warn(format!("{key}.tls"), "is ignored: the url is plain http://");
        }
        Ok(())
    }

    fn validate_headers(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let has_credentials =
            self.auth.jwt.is_some() || self.auth.jwt_file.is_some() || self.auth.username.is_some();
        for (name, value) in &self.headers {
            let field = format!("{key}.headers.{name}");
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(ctx.invalid(field, "is not a valid HTTP header name"));
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(ctx.invalid(field, "is set by the relay itself"));
            }
            if lower == "authorization" && has_credentials {
                return Err(ctx.invalid(field, "conflicts with auth (which sets Authorization)"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(ctx.invalid(field, "value contains a control character"));
            }
        }
        Ok(())
    }

    /// Reads the credentials `auth` names (the token or password file, or the
    /// inline token). Call again on SIGHUP to pick up a rotated token.
    ///
    /// # Errors
    ///
    /// [`SecretError`] naming the file that cannot be read or is empty.
    pub fn read_credentials(&self) -> Result<UpstreamCredentials, SecretError> {
        let auth = &self.auth;
        if let Some(token) = &auth.jwt {
            return Ok(UpstreamCredentials::Bearer(token.clone()));
        }
        if let Some(path) = &auth.jwt_file {
            return Secret::from_file(path).map(UpstreamCredentials::Bearer);
        }
        if let (Some(username), Some(path)) = (&auth.username, &auth.password_file) {
            return Ok(UpstreamCredentials::Basic {
                username: username.clone(),
                password: Secret::from_file(path)?,
            });
        }
        Ok(UpstreamCredentials::None)
    }

    /// Loads [`Upstream::credentials`], naming the key on error and warning
    /// about readable secret files.
    pub(super) fn read_files(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        let file = match (&self.auth.jwt_file, &self.auth.password_file) {
            (Some(path), _) => Some(("jwt_file", path)),
            (None, Some(path)) => Some(("password_file", path)),
            (None, None) => None,
        };
        let field = file.map_or_else(
            || format!("{key}.auth"),
            |(name, _)| format!("{key}.auth.{name}"),
        );
        self.credentials = self
            .read_credentials()
            .map_err(|err| ctx.invalid(&field, cc_common::error_chain(&err)))?;
        if let Some((_, path)) = file
            && let Some(warning) = values::permission_warning(path)
        {
            ctx.warn(field, warning);
        }
        Ok(())
    }
}
