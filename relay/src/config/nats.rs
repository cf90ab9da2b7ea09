//! Section `ingress.nats[]` (§4.4) and the NATS pieces of `upstreams[]`: parsed so
//! that files written for a later release load with precise key errors, refused at
//! validation because this version of cc-relay does not speak NATS.

use std::path::PathBuf;
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::ingress::InvalidLines;
use super::values::InputPrecision;
use super::{GIB, MIB};

/// One NATS input (`ingress.nats[]`, §4.4). Parsed so that files written for a
/// later release give precise errors; this version refuses NATS at validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsIngress {
    /// `name` (required).
    pub name: String,
    /// `servers` (required): `nats://` or `tls://` URLs.
    pub servers: Vec<String>,
    /// `auth`: credentials.
    #[serde(default)]
    pub auth: NatsAuth,
    /// `tls`: client TLS.
    #[serde(default)]
    pub tls: NatsTls,
    /// `subjects` (required): subjects with their default cluster.
    pub subjects: Vec<NatsSubject>,
    /// `mode`: `core` (default) or `jetstream`.
    #[serde(default)]
    pub mode: NatsMode,
    /// `queue_group`: core-mode queue group; `null` means every relay gets every
    /// message. Default `"cc-relay"`.
    #[serde(
        default = "default_queue_group",
        deserialize_with = "Option::deserialize"
    )]
    pub queue_group: Option<String>,
    /// `jetstream`: settings for `mode: jetstream`.
    #[serde(default)]
    pub jetstream: Option<JetStreamIngress>,
    /// `max_message_bytes`: larger messages are counted and dropped. Default 8 MiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: ByteSize,
    /// `subscription_capacity`: client-side buffer in messages. Default 65536.
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
    /// `invalid_lines`: `drop` (default) or `reject`.
    #[serde(default)]
    pub invalid_lines: InvalidLines,
    /// `input_precision`: `None` uses the global setting.
    #[serde(default)]
    pub input_precision: Option<InputPrecision>,
}

/// NATS credentials (`ingress.nats[].auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// `user`, with `password_file`.
    pub user: Option<String>,
    /// `password_file`.
    pub password_file: Option<PathBuf>,
    /// `token_file`.
    pub token_file: Option<PathBuf>,
    /// `nkey_seed_file`: bare nkey seed (`SU…`).
    pub nkey_seed_file: Option<PathBuf>,
    /// `creds_file`: `.creds` file (user JWT + seed).
    pub creds_file: Option<PathBuf>,
}

/// NATS client TLS (`ingress.nats[].tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: client certificate.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: client key.
    pub key_file: Option<PathBuf>,
    /// `require`: refuse plain connections.
    pub require: bool,
    /// `handshake_first`: TLS before the NATS INFO exchange.
    pub handshake_first: bool,
}

/// `ingress.nats[].subjects[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSubject {
    /// `subject` (required); wildcards allowed.
    pub subject: String,
    /// `cluster`: default cluster for lines from this subject.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// `mode` of a NATS input or upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsMode {
    /// `core`: plain publish/subscribe, no acknowledgements.
    #[default]
    Core,
    /// `jetstream`: durable stream with acknowledgements.
    Jetstream,
}

/// `ingress.nats[].jetstream`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetStreamIngress {
    /// `stream`: the stream capturing the collectors' subjects (required in
    /// JetStream mode).
    pub stream: Option<String>,
    /// `create_stream`: create it if absent, with `stream_config`.
    pub create_stream: bool,
    /// `stream_config`: settings of a created stream.
    pub stream_config: StreamConfig,
    /// `durable`: consumer name; default `cc-relay-<name>`.
    pub durable: Option<String>,
    /// `ack_wait`. Default 30 s.
    #[serde(with = "cc_common::config::duration")]
    pub ack_wait: Duration,
    /// `max_ack_pending`. Default 1000.
    pub max_ack_pending: u32,
    /// `fetch_batch`: messages per pull. Default 64.
    pub fetch_batch: usize,
}

impl Default for JetStreamIngress {
    fn default() -> Self {
        Self {
            stream: None,
            create_stream: false,
            stream_config: StreamConfig::default(),
            durable: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            fetch_batch: 64,
        }
    }
}

/// `ingress.nats[].jetstream.stream_config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// `max_age`. Default 2 h.
    #[serde(with = "cc_common::config::duration")]
    pub max_age: Duration,
    /// `max_bytes`. Default 4 GiB.
    pub max_bytes: ByteSize,
    /// `storage`: `file` (default) or `memory`.
    pub storage: StreamStorage,
    /// `replicas`. Default 1.
    pub replicas: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(2 * 3600),
            max_bytes: ByteSize(4 * GIB),
            storage: StreamStorage::File,
            replicas: 1,
        }
    }
}

/// `stream_config.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStorage {
    /// `file`.
    #[default]
    File,
    /// `memory`.
    Memory,
}

fn default_queue_group() -> Option<String> {
    Some("cc-relay".to_owned())
}

fn default_max_message_bytes() -> ByteSize {
    ByteSize(8 * MIB)
}

fn default_subscription_capacity() -> usize {
    65_536
}

impl NatsIngress {
    pub(super) fn validate(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        Err(ctx.invalid(
            key,
            format!(
                "NATS ingress is not supported by this version of cc-relay ({key}); \
                 it comes with a later release. Remove it, or let the collectors use an HTTP \
                 ingress (input {:?})",
                self.name
            ),
        ))
    }
}
