//! The settings objects inside an upstream (`upstreams[].batch`, `.retry`,
//! `.buffer`, `.auth`, `.tls`, …) with their spec defaults (§4.7).

use std::path::PathBuf;
use std::time::Duration;

use cc_common::config::ByteSize;
use serde::{Deserialize, Serialize};

use crate::config::values::Secret;
use crate::config::{GIB, MIB};

/// `upstreams[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamType {
    /// `ccms-http`: cc-metric-store's (or cc-store's) `/api/write`: seconds,
    /// `ccms` validation, no compression.
    CcmsHttp,
    /// `relay-http`: another cc-relay's HTTP ingress (chaining, §4.13).
    RelayHttp,
    /// `nats`: publish to a NATS subject (core or JetStream).
    Nats,
}

impl UpstreamType {
    /// The config spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CcmsHttp => "ccms-http",
            Self::RelayHttp => "relay-http",
            Self::Nats => "nats",
        }
    }

    /// Whether the upstream is a metric store (`ccms-*`).
    #[must_use]
    pub const fn is_ccms(self) -> bool {
        matches!(self, Self::CcmsHttp)
    }

    /// Whether the upstream is reached over HTTP.
    #[must_use]
    pub const fn is_http(self) -> bool {
        matches!(self, Self::CcmsHttp | Self::RelayHttp)
    }
}

/// `upstreams[].filter`: empty lists accept everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamFilter {
    /// `message_types`: `metric`, `event`, `log`, `control`.
    pub message_types: Vec<MessageType>,
    /// `include_measurements`: only these.
    pub include_measurements: Vec<String>,
    /// `exclude_measurements`: never these.
    pub exclude_measurements: Vec<String>,
    /// `include_clusters`: only lines of these (effective) clusters.
    pub include_clusters: Vec<String>,
}

/// A kind of cc-lib message, for [`UpstreamFilter::message_types`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// `metric`: has a `value` field.
    Metric,
    /// `event`.
    Event,
    /// `log`.
    Log,
    /// `control`.
    Control,
}

impl MessageType {
    /// The config spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Event => "event",
            Self::Log => "log",
            Self::Control => "control",
        }
    }
}

/// `upstreams[].batch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// `max_bytes`: uncompressed body size per request. Default 1 MiB.
    pub max_bytes: ByteSize,
    /// `max_lines`: lines per request. Default 50000.
    pub max_lines: usize,
    /// `linger`: wait this long for more data when less than a full batch is
    /// queued. Default 1 s.
    #[serde(with = "cc_common::config::duration")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(MIB),
            max_lines: 50_000,
            linger: Duration::from_secs(1),
        }
    }
}

/// `upstreams[].retry`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// `initial_backoff`. Default 500 ms.
    #[serde(with = "cc_common::config::duration")]
    pub initial_backoff: Duration,
    /// `max_backoff`. Default 30 s.
    #[serde(with = "cc_common::config::duration")]
    pub max_backoff: Duration,
    /// `multiplier`: backoff growth per failure, ≥ 1. Default 2.0.
    pub multiplier: f64,
    /// `jitter`: `full` (sleep uniformly in [0, backoff], default) or `none`.
    pub jitter: Jitter,
    /// `auth_backoff`: backoff cap while getting 401/403. Default 60 s.
    #[serde(with = "cc_common::config::duration")]
    pub auth_backoff: Duration,
    /// `poison_attempts`: attempts on a non-retryable 4xx before bisecting. Default 3.
    pub poison_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: Jitter::Full,
            auth_backoff: Duration::from_secs(60),
            poison_attempts: 3,
        }
    }
}

/// `upstreams[].retry.jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// `full`: sleep a uniformly random time in [0, current backoff].
    #[default]
    Full,
    /// `none`: sleep the backoff exactly.
    None,
}

/// `upstreams[].buffer`: limits of the upstream's queue (§4.8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// `max_bytes`: stored (compressed) bytes in the queue. Default 4 GiB.
    pub max_bytes: ByteSize,
    /// `when_full`: `drop_oldest` (default) or `reject_new`.
    pub when_full: WhenFull,
    /// `max_age`: records older than this (by ingest time) are dropped, not
    /// sent. Default 48 h.
    #[serde(with = "cc_common::config::duration")]
    pub max_age: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(4 * GIB),
            when_full: WhenFull::DropOldest,
            max_age: Duration::from_secs(48 * 3600),
        }
    }
}

/// `upstreams[].buffer.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// `drop_oldest`: evict from the head of the queue; new data is always accepted.
    #[default]
    DropOldest,
    /// `reject_new`: refuse new data (503) — only for senders that retry.
    RejectNew,
}

/// `upstreams[].dead_letter`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// `max_bytes`: cap of the `dlq:` tree, oldest dropped first; 0 keeps no
    /// dead letters (they are only counted). Default 64 MiB.
    pub max_bytes: ByteSize,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(64 * MIB),
        }
    }
}

/// `upstreams[].auth`. HTTP types use `jwt`/`jwt_file` (bearer token) or
/// `username` + `password_file` (basic auth); the other keys belong to `nats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamAuth {
    /// `jwt`: the token inline (discouraged; warned about). Serialized as `***`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Secret>,
    /// `jwt_file`: file holding the token; re-read on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_file: Option<PathBuf>,
    /// `username` for basic auth, with `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `password_file`: basic-auth password (HTTP) or NATS password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `user` (type `nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `token_file` (type `nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `nkey_seed_file` (type `nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// `creds_file` (type `nats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
}

/// What an HTTP upstream request carries in `Authorization`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamCredentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

/// `upstreams[].tls`. HTTP types use the first five keys; `require` and
/// `handshake_first` belong to `nats`. A certificate or CA file only matters
/// for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// `ca_file`: PEM CAs trusted instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: client certificate (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: client key, with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `server_name`: name to verify the certificate for instead of the
    /// URL's host (the name sent in the handshake, SNI, stays the URL's
    /// host: a server that picks its certificate by SNI must be reached by
    /// that name).
    pub server_name: Option<String>,
    /// `insecure_skip_verify`: accept any server certificate (warned about).
    pub insecure_skip_verify: bool,
    /// `require` (type `nats`).
    #[serde(skip_serializing_if = "is_false")]
    pub require: bool,
    /// `handshake_first` (type `nats`).
    #[serde(skip_serializing_if = "is_false")]
    pub handshake_first: bool,
}

/// `upstreams[].compress`: request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `none`.
    #[default]
    None,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

/// `upstreams[].jetstream` (type `nats`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamJetStream {
    /// `ack_timeout`: wait this long for the PubAck. Default 10 s.
    #[serde(with = "cc_common::config::duration")]
    pub ack_timeout: Duration,
}

impl Default for UpstreamJetStream {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
        }
    }
}

// serde's skip_serializing_if passes a reference.
fn is_false(value: &bool) -> bool {
    !*value
}
