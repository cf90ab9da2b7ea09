//! Section `ingress.nats[]` (§4.4) and the NATS pieces of `upstreams[]`: servers,
//! credentials (read from their files at load), TLS, subjects, and the JetStream
//! settings of a durable consumer.

use std::path::PathBuf;
use std::time::Duration;

use cc_common::config::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

use super::ingress::{InvalidLines, check_ingress_name};
use super::values::InputPrecision;
use super::values::permission_warning;
use super::{Ctx, check_cluster, positive_duration, positive_size};
use super::{GIB, MIB};

/// One NATS input (`ingress.nats[]`, §4.4): core subscriptions (with a queue
/// group) or a JetStream durable pull consumer.
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
    /// `subscription_capacity`: messages received and waiting to be stored, per
    /// subject; beyond it messages are dropped and counted (slow consumer).
    /// Default 65536.
    #[serde(default = "default_subscription_capacity")]
    pub subscription_capacity: usize,
    /// `invalid_lines`: `drop` (default) or `reject`.
    #[serde(default)]
    pub invalid_lines: InvalidLines,
    /// `input_precision`: `None` uses the global setting.
    #[serde(default)]
    pub input_precision: Option<InputPrecision>,
    /// Servers, credentials and TLS as the client needs them (not a config
    /// key; filled at load, with the secrets read from their files).
    #[serde(skip)]
    pub connection: Option<NatsConnection>,
}

/// Where and how to connect, with the credentials read (from
/// `ingress.nats[]` or a `nats` upstream).
#[derive(Debug, Clone)]
pub struct NatsConnection {
    /// Server URLs.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: cc_common::nats::Auth,
    /// Client TLS.
    pub tls: cc_common::nats::Tls,
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
    pub(super) fn validate(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        check_ingress_name(ctx, &format!("{key}.name"), &self.name)?;
        self.connection = Some(nats_connection!(ctx, key, self)?);
        if self.subjects.is_empty() {
            return Err(ctx.invalid(format!("{key}.subjects"), "needs at least one subject"));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            check_subject(
                ctx,
                &format!("{key}.subjects[{i}].subject"),
                &s.subject,
                true,
            )?;
            if let Some(cluster) = &s.cluster {
                check_cluster(ctx, &format!("{key}.subjects[{i}].cluster"), cluster)?;
            }
            if self.subjects.iter().take(i).any(|e| e.subject == s.subject) {
                return Err(ctx.invalid(
                    format!("{key}.subjects[{i}].subject"),
                    format!("{:?} is listed twice", s.subject),
                ));
            }
        }
        if let Some(group) = &self.queue_group {
            check_token(ctx, &format!("{key}.queue_group"), group)?;
        }
        positive_size(
            ctx,
            &format!("{key}.max_message_bytes"),
            self.max_message_bytes,
        )?;
        if self.subscription_capacity == 0 {
            return Err(ctx.invalid(format!("{key}.subscription_capacity"), "must be at least 1"));
        }
        match (self.mode, &mut self.jetstream) {
            (NatsMode::Core, Some(_)) => ctx.warn(
                format!("{key}.jetstream"),
                "is ignored: mode is core (set \"mode\": \"jetstream\" to use it)",
            ),
            (NatsMode::Core, None) => {}
            (NatsMode::Jetstream, js) => {
                let js = js.get_or_insert_with(JetStreamIngress::default);
                js.validate(ctx, &format!("{key}.jetstream"), &self.name)?;
                if self.subjects.len() > 1 {
                    ctx.warn(
                        format!("{key}.subjects"),
                        "several subjects in JetStream mode: the consumer takes every subject \
                         of the stream (no filter); the clusters of the subjects still apply",
                    );
                }
            }
        }
        Ok(())
    }

    /// The durable consumer's name (`jetstream.durable`, default
    /// `cc-relay-<name>`).
    #[must_use]
    pub fn durable(&self) -> String {
        self.jetstream
            .as_ref()
            .and_then(|js| js.durable.clone())
            .unwrap_or_else(|| format!("cc-relay-{}", self.name))
    }
}

impl JetStreamIngress {
    fn validate(&mut self, ctx: &mut Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
        match &self.stream {
            None => {
                return Err(ctx.invalid(
                    format!("{key}.stream"),
                    "is required in JetStream mode (the stream that captures the collectors' subjects)",
                ));
            }
            Some(stream) => check_js_name(ctx, &format!("{key}.stream"), stream)?,
        }
        let durable = self
            .durable
            .clone()
            .unwrap_or_else(|| format!("cc-relay-{name}"));
        check_js_name(ctx, &format!("{key}.durable"), &durable)?;
        positive_duration(ctx, &format!("{key}.ack_wait"), self.ack_wait)?;
        if self.max_ack_pending == 0 {
            return Err(ctx.invalid(format!("{key}.max_ack_pending"), "must be at least 1"));
        }
        if self.fetch_batch == 0 {
            return Err(ctx.invalid(format!("{key}.fetch_batch"), "must be at least 1"));
        }
        let sc = &self.stream_config;
        positive_duration(ctx, &format!("{key}.stream_config.max_age"), sc.max_age)?;
        positive_size(ctx, &format!("{key}.stream_config.max_bytes"), sc.max_bytes)?;
        if !(1..=5).contains(&sc.replicas) {
            return Err(ctx.invalid(
                format!("{key}.stream_config.replicas"),
                "must be between 1 and 5",
            ));
        }
        Ok(())
    }
}

/// [`connection`] for a section with the NATS keys `servers`, `auth.user`,
/// `auth.*_file`, `tls.*` (a NATS input, a `nats` upstream).
macro_rules! nats_connection {
    ($ctx:expr, $key:expr, $section:expr) => {{
        let section = &mut *$section;
        let auth = $crate::config::nats::ConnectionAuth {
            user: section.auth.user.as_deref(),
            password_file: &mut section.auth.password_file,
            token_file: &mut section.auth.token_file,
            nkey_seed_file: &mut section.auth.nkey_seed_file,
            creds_file: &mut section.auth.creds_file,
        };
        let tls = $crate::config::nats::ConnectionTls {
            ca_file: &mut section.tls.ca_file,
            cert_file: &mut section.tls.cert_file,
            key_file: &mut section.tls.key_file,
            require: section.tls.require,
            handshake_first: section.tls.handshake_first,
        };
        $crate::config::nats::connection($ctx, $key, &section.servers, auth, tls)
    }};
}
pub(super) use nats_connection;

/// The credential keys of a NATS connection, wherever they are written.
pub(super) struct ConnectionAuth<'a> {
    pub(super) user: Option<&'a str>,
    pub(super) password_file: &'a mut Option<PathBuf>,
    pub(super) token_file: &'a mut Option<PathBuf>,
    pub(super) nkey_seed_file: &'a mut Option<PathBuf>,
    pub(super) creds_file: &'a mut Option<PathBuf>,
}

/// The TLS keys of a NATS connection.
pub(super) struct ConnectionTls<'a> {
    pub(super) ca_file: &'a mut Option<PathBuf>,
    pub(super) cert_file: &'a mut Option<PathBuf>,
    pub(super) key_file: &'a mut Option<PathBuf>,
    pub(super) require: bool,
    pub(super) handshake_first: bool,
}

/// Checks servers, credentials and TLS of a NATS connection at `key` and
/// reads its secret files.
pub(super) fn connection(
    ctx: &mut Ctx<'_>,
    key: &str,
    servers: &[String],
    auth: ConnectionAuth<'_>,
    tls: ConnectionTls<'_>,
) -> Result<NatsConnection, ConfigError> {
    if servers.is_empty() {
        return Err(ctx.invalid(
            format!("{key}.servers"),
            "needs at least one server (nats://host:4222)",
        ));
    }
    for (i, server) in servers.iter().enumerate() {
        check_server(ctx, &format!("{key}.servers[{i}]"), server)?;
    }
    let mut out = cc_common::nats::Auth::default();
    match (auth.user, auth.password_file.as_mut()) {
        (Some(user), Some(path)) => {
            if user.is_empty() {
                return Err(ctx.invalid(format!("{key}.auth.user"), "must not be empty"));
            }
            ctx.resolve(path);
            let password = ctx.secret_file(&format!("{key}.auth.password_file"), path)?;
            out.user_password = Some((user.to_owned(), password));
        }
        (Some(_), None) => {
            return Err(ctx.invalid(
                format!("{key}.auth.password_file"),
                "auth.user needs auth.password_file",
            ));
        }
        (None, Some(_)) => {
            return Err(ctx.invalid(
                format!("{key}.auth.user"),
                "auth.password_file needs auth.user",
            ));
        }
        (None, None) => {}
    }
    if let Some(path) = auth.token_file.as_mut() {
        ctx.resolve(path);
        out.token = Some(ctx.secret_file(&format!("{key}.auth.token_file"), path)?);
    }
    if let Some(path) = auth.nkey_seed_file.as_mut() {
        ctx.resolve(path);
        let field = format!("{key}.auth.nkey_seed_file");
        let seed = ctx.secret_file(&field, path)?;
        if !seed.expose().starts_with('S') {
            return Err(ctx.invalid(
                field,
                format!(
                    "{} does not hold an nkey seed (a line starting with \"SU\")",
                    path.display()
                ),
            ));
        }
        out.nkey_seed = Some(seed);
    }
    if let Some(path) = auth.creds_file.as_mut() {
        ctx.resolve(path);
        let field = format!("{key}.auth.creds_file");
        ctx.readable(&field, path)?;
        if let Some(warning) = permission_warning(path) {
            ctx.warn(field, warning);
        }
        out.creds_file = Some(path.clone());
    }
    for (name, path) in [
        ("ca_file", &mut *tls.ca_file),
        ("cert_file", &mut *tls.cert_file),
        ("key_file", &mut *tls.key_file),
    ] {
        ctx.resolve_opt(path);
        if let Some(p) = path.as_ref() {
            ctx.readable(&format!("{key}.tls.{name}"), p)?;
        }
    }
    ctx.key_pair(key, tls.cert_file.as_ref(), tls.key_file.as_ref())?;
    Ok(NatsConnection {
        servers: servers.to_vec(),
        auth: out,
        tls: cc_common::nats::Tls {
            ca_file: tls.ca_file.clone(),
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            require: tls.require,
            handshake_first: tls.handshake_first,
        },
    })
}

fn check_server(ctx: &Ctx<'_>, key: &str, server: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(server).ok().filter(|u| {
        matches!(u.scheme(), "nats" | "tls") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    let Some(url) = parsed else {
        return Err(ctx.invalid(
            key,
            format!(
                "{:?} is not a NATS server URL (nats://host:4222 or tls://host:4222)",
                cc_common::nats::redact_server(server)
            ),
        ));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ctx.invalid(
            key,
            "must not carry credentials; use auth.user and auth.password_file",
        ));
    }
    Ok(())
}

/// A subject: dot-separated tokens, no spaces; wildcards (`*`, a final `>`)
/// only where `wildcards`.
pub(super) fn check_subject(
    ctx: &Ctx<'_>,
    key: &str,
    subject: &str,
    wildcards: bool,
) -> Result<(), ConfigError> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len().saturating_sub(1);
    let ok = !subject.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
                && (wildcards && (*t == "*" || (*t == ">" && i == last)) || !t.contains(['*', '>']))
        });
    if ok {
        Ok(())
    } else {
        let what = if wildcards {
            "a NATS subject (tokens separated by '.', no spaces; '*' and a final '>' as wildcards)"
        } else {
            "a NATS subject without wildcards (tokens separated by '.', no spaces)"
        };
        Err(ctx.invalid(key, format!("{subject:?} is not {what}")))
    }
}

/// A queue group name: one token.
fn check_token(ctx: &Ctx<'_>, key: &str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ctx.invalid(key, format!("{token:?} must be one word without spaces")));
    }
    Ok(())
}

/// Stream and consumer names: no spaces, dots, wildcards or path separators.
fn check_js_name(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        });
    if ok {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            format!(
                "{name:?} is not usable as a JetStream name (no spaces, '.', '*', '>', '/', '\\')"
            ),
        ))
    }
}
