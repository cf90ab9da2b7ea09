//! Section `ingress.http[]` (§4.3): HTTP listeners, their authentication
//! settings and the basic-auth users file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cc_common::auth::PublicKey;
use cc_common::config::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};

use super::values::{self, InputPrecision, Secret, SecretError, ServerTls, one_or_many};
use super::{Ctx, KIB, MIB, check_cluster, positive_duration, positive_size};

/// One HTTP listener (`ingress.http[]`), accepting line protocol as the
/// cc-metric-collector HTTP sink sends it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngress {
    /// `name` (required): label in metrics, logs and record sources; unique
    /// among all ingresses.
    pub name: String,
    /// `address`: IP and port to listen on. Default `0.0.0.0:8080`.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// `paths`: write endpoints. Default `["/api/write", "/api/write/", "/write",
    /// "/api/v2/write"]`.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// `tls`: serve HTTPS, optionally with client certificates.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// `auth`: who may write.
    #[serde(default)]
    pub auth: HttpAuth,
    /// `max_body_bytes`: request body limit before decoding → 413. Default 32 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// `max_decompressed_bytes`: limit after `Content-Encoding` decoding → 413
    /// (zip-bomb guard). Default 128 MiB.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: ByteSize,
    /// `max_line_bytes`: longer lines are invalid (`too_long`). Default 64 KiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// `accept_encodings`: accepted `Content-Encoding`s; others → 415.
    /// Default all three.
    #[serde(default = "default_accept_encodings")]
    pub accept_encodings: Vec<ContentEncoding>,
    /// `idle_timeout`: keep-alive idle timeout. Default 120 s. The HTTP stack
    /// uses one timer for the idle wait and for reading request headers, so
    /// the larger of `idle_timeout` and `header_read_timeout` bounds both,
    /// from the moment a connection is accepted.
    #[serde(default = "default_idle_timeout", with = "cc_common::config::duration")]
    pub idle_timeout: Duration,
    /// `header_read_timeout`. Default 10 s.
    #[serde(
        default = "default_header_read_timeout",
        with = "cc_common::config::duration"
    )]
    pub header_read_timeout: Duration,
    /// `body_read_timeout`. Default 30 s.
    #[serde(
        default = "default_body_read_timeout",
        with = "cc_common::config::duration"
    )]
    pub body_read_timeout: Duration,
    /// `ack_timeout`: answer 503 if the batch is not durable within this time;
    /// keep it below the collectors' 5 s client timeout. Default 4 s.
    #[serde(default = "default_ack_timeout", with = "cc_common::config::duration")]
    pub ack_timeout: Duration,
    /// `max_concurrent_requests`: requests processed at once, each from the
    /// moment its body is in; requests beyond this wait (bounded by
    /// `ack_timeout`). Bodies still arriving may hold this many times
    /// `max_body_bytes`. Default 256.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// `success_status`: 200 or 204 on every path of this listener. Unset: 204
    /// on InfluxDB's own paths (`/write`, `/api/v2/write`; InfluxDB clients
    /// treat anything else as a failed write) and 200 elsewhere (the
    /// collectors' http sink accepts only 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_status: Option<u16>,
    /// `invalid_lines`: `drop` (store the valid lines, default) or `reject`
    /// (400 for the whole request).
    #[serde(default)]
    pub invalid_lines: InvalidLines,
    /// `trust_query_cluster`: use `?cluster=` as the default cluster of the
    /// request's lines. Default true.
    #[serde(default = "yes")]
    pub trust_query_cluster: bool,
    /// `default_cluster`: listener-level default cluster (below the query
    /// parameter, above `processing.default_cluster`).
    #[serde(default)]
    pub default_cluster: Option<String>,
    /// `input_precision`: unit of incoming timestamps; `None` (key absent) uses
    /// `processing.timestamp.input_precision`. `?precision=` overrides per request.
    #[serde(default)]
    pub input_precision: Option<InputPrecision>,
    /// `max_hops`: requests whose `X-CC-Relay-Hops` exceeds this get 508. Default 8.
    #[serde(default = "default_max_hops")]
    pub max_hops: u32,
}

/// `ingress.http[].auth`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuth {
    /// `mode`: `none` (default), `jwt`, `basic` or `jwt_or_basic`.
    pub mode: AuthMode,
    /// `jwt_public_key`: Ed25519 public key(s) as standard base64 of the raw 32
    /// bytes (or SPKI PEM text); a string or a list (rotation).
    #[serde(deserialize_with = "one_or_many")]
    pub jwt_public_key: Vec<String>,
    /// `jwt_public_key_file`: file(s) holding a PEM SPKI key or the base64 key;
    /// a path or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub jwt_public_key_file: Vec<PathBuf>,
    /// `accept_x_auth_token`: also read the token from `X-Auth-Token`. Default true.
    pub accept_x_auth_token: bool,
    /// `required_roles`: if not empty, the token's `roles` claim must hold one.
    pub required_roles: Vec<String>,
    /// `require_sub`: require a `sub` claim. Default false.
    pub require_sub: bool,
    /// `leeway`: clock skew allowed for `exp`/`nbf`. Default 60 s.
    #[serde(with = "cc_common::config::duration")]
    pub leeway: Duration,
    /// `basic_users_file`: `user:password` lines for the basic modes.
    pub basic_users_file: Option<PathBuf>,
    /// The keys of `jwt_public_key` and `jwt_public_key_file`, in that order;
    /// loaded when the mode accepts JWTs (not a config key).
    #[serde(skip)]
    pub public_keys: Vec<PublicKey>,
    /// The users of `basic_users_file`; loaded when the mode accepts basic
    /// auth (not a config key).
    #[serde(skip)]
    pub basic_users: Option<BasicUsers>,
}

impl Default for HttpAuth {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            jwt_public_key: Vec::new(),
            jwt_public_key_file: Vec::new(),
            accept_x_auth_token: true,
            required_roles: Vec::new(),
            require_sub: false,
            leeway: Duration::from_secs(60),
            basic_users_file: None,
            public_keys: Vec::new(),
            basic_users: None,
        }
    }
}

/// `ingress.http[].auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `none`: anyone who can connect may write.
    #[default]
    None,
    /// `jwt`: an EdDSA JWT in `Authorization: Bearer` (or `X-Auth-Token`).
    Jwt,
    /// `basic`: HTTP basic auth against `basic_users_file`.
    Basic,
    /// `jwt_or_basic`: either.
    JwtOrBasic,
}

impl AuthMode {
    /// Whether JWTs are accepted.
    #[must_use]
    pub const fn accepts_jwt(self) -> bool {
        matches!(self, Self::Jwt | Self::JwtOrBasic)
    }

    /// Whether basic auth is accepted.
    #[must_use]
    pub const fn accepts_basic(self) -> bool {
        matches!(self, Self::Basic | Self::JwtOrBasic)
    }
}

/// An accepted request `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentEncoding {
    /// `identity`: uncompressed (also a missing header).
    Identity,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

impl ContentEncoding {
    /// The encoding a `Content-Encoding` header names (any case; `x-gzip`
    /// is gzip, an empty value is identity); `None` for any other.
    #[must_use]
    pub fn from_header(value: &str) -> Option<ContentEncoding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "identity" | "" => Some(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Some(ContentEncoding::Gzip),
            "zstd" => Some(ContentEncoding::Zstd),
            _ => None,
        }
    }
}

/// `invalid_lines`: what an invalid line does to its request or message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidLines {
    /// `drop`: keep the valid lines, count the rest.
    #[default]
    Drop,
    /// `reject`: refuse the whole request (400) and store nothing.
    Reject,
}

/// Users and passwords for HTTP basic auth, from `basic_users_file`.
///
/// The file has one `user:password` line per user (the password is everything
/// after the first colon); empty lines and lines starting with `#` are skipped.
/// Hashed passwords (argon2, bcrypt) are refused for now. `Debug` shows user
/// names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BasicUsers {
    users: BTreeMap<String, Secret>,
}

impl BasicUsers {
    /// Reads and parses a users file.
    ///
    /// # Errors
    ///
    /// [`SecretError::Read`] if the file cannot be read, [`SecretError::Format`]
    /// naming the line of a malformed, hashed or duplicate entry,
    /// [`SecretError::Empty`] if it defines no user.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = values::read_secret_text(path)?;
        let format_error = |line, message: &str| SecretError::Format {
            path: path.to_path_buf(),
            line,
            message: message.to_owned(),
        };
        let mut users = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(format_error(number, "expected user:password"));
            };
            if user.is_empty() {
                return Err(format_error(number, "empty user name"));
            }
            if password.is_empty() {
                return Err(format_error(number, "empty password"));
            }
            if password.starts_with("$argon2") || password.starts_with("$2") {
                return Err(format_error(
                    number,
                    "hashed passwords are not supported yet; write the password in plain text \
                     and keep the file readable by the relay only",
                ));
            }
            if users
                .insert(user.to_owned(), Secret::new(password))
                .is_some()
            {
                return Err(format_error(number, "user is listed twice"));
            }
        }
        if users.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { users })
    }

    /// Whether `user` exists and `password` is theirs. The comparison takes the
    /// same time for every password of the right length.
    #[must_use]
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|stored| stored.matches(password))
    }

    /// The user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no user (never true for a loaded file).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl fmt::Debug for BasicUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_paths() -> Vec<String> {
    ["/api/write", "/api/write/", "/write", "/api/v2/write"]
        .map(str::to_owned)
        .to_vec()
}

fn default_max_body_bytes() -> ByteSize {
    ByteSize(32 * MIB)
}

fn default_max_decompressed_bytes() -> ByteSize {
    ByteSize(128 * MIB)
}

fn default_max_line_bytes() -> ByteSize {
    ByteSize(64 * KIB)
}

fn default_accept_encodings() -> Vec<ContentEncoding> {
    vec![
        ContentEncoding::Identity,
        ContentEncoding::Gzip,
        ContentEncoding::Zstd,
    ]
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(4)
}

fn default_max_concurrent_requests() -> usize {
    256
}

fn default_max_hops() -> u32 {
    8
}

fn yes() -> bool {
    true
}

/// The cc-lib HTTP sink's client timeout; acks must come before it.
const COLLECTOR_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

impl HttpIngress {
    pub(super) fn validate(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
        record_max_raw_bytes: u64,
    ) -> Result<(), ConfigError> {
        check_ingress_name(ctx, &format!("{key}.name"), &self.name)?;
        if self.paths.is_empty() {
            return Err(ctx.invalid(format!("{key}.paths"), "needs at least one path"));
        }
        for (i, path) in self.paths.iter().enumerate() {
            let valid = path.starts_with('/')
                && !path
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
            if !valid {
                return Err(ctx.invalid(
                    format!("{key}.paths[{i}]"),
                    format!("{path:?} is not a path (must start with '/', no query or spaces)"),
                ));
            }
            if self.paths.iter().take(i).any(|earlier| earlier == path) {
                return Err(ctx.invalid(
                    format!("{key}.paths[{i}]"),
                    format!("{path:?} is listed twice"),
                ));
            }
        }
        if let Some(tls) = &mut self.tls {
            ctx.server_tls(&format!("{key}.tls"), tls)?;
        }
        self.auth.validate(ctx, &format!("{key}.auth"))?;

        positive_size(ctx, &format!("{key}.max_body_bytes"), self.max_body_bytes)?;
        positive_size(
            ctx,
            &format!("{key}.max_decompressed_bytes"),
            self.max_decompressed_bytes,
        )?;
        positive_size(ctx, &format!("{key}.max_line_bytes"), self.max_line_bytes)?;
        if self.max_line_bytes.as_u64() >= record_max_raw_bytes {
            return Err(ctx.invalid(
                format!("{key}.max_line_bytes"),
                format!(
                    "must be below storage.record_max_raw_bytes ({}): a record holds at least one whole line",
                    ByteSize(record_max_raw_bytes)
                ),
            ));
        }
        if self.accept_encodings.is_empty() {
            return Err(ctx.invalid(
                format!("{key}.accept_encodings"),
                "needs at least one encoding (identity, gzip, zstd)",
            ));
        }
        for (name, value) in [
            ("idle_timeout", self.idle_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("ack_timeout", self.ack_timeout),
        ] {
            positive_duration(ctx, &format!("{key}.{name}"), value)?;
        }
        if self.ack_timeout >= COLLECTOR_CLIENT_TIMEOUT {
            ctx.warn(
                format!("{key}.ack_timeout"),
                "is not below the collectors' 5s client timeout: a slow ack looks like a failure to them",
            );
        }
        if self.max_concurrent_requests == 0 {
            return Err(ctx.invalid(
                format!("{key}.max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if let Some(status) = self.success_status
            && !matches!(status, 200 | 204)
        {
            return Err(ctx.invalid(
                format!("{key}.success_status"),
                format!("must be 200 or 204, not {status}"),
            ));
        }
        if let Some(cluster) = &self.default_cluster {
            check_cluster(ctx, &format!("{key}.default_cluster"), cluster)?;
        }
        if self.max_hops == 0 {
            return Err(ctx.invalid(format!("{key}.max_hops"), "must be at least 1"));
        }
        Ok(())
    }
}

impl HttpAuth {
    fn validate(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        for path in &mut self.jwt_public_key_file {
            ctx.resolve(path);
        }
        ctx.resolve_opt(&mut self.basic_users_file);
        let has_keys = !self.jwt_public_key.is_empty() || !self.jwt_public_key_file.is_empty();
        if self.mode.accepts_jwt() && !has_keys {
            return Err(ctx.invalid(
                format!("{key}.jwt_public_key"),
                "auth.mode accepts JWTs but neither jwt_public_key nor jwt_public_key_file is set",
            ));
        }
        if self.mode.accepts_basic() && self.basic_users_file.is_none() {
            return Err(ctx.invalid(
                format!("{key}.basic_users_file"),
                "auth.mode accepts basic auth but basic_users_file is not set",
            ));
        }
        if !self.mode.accepts_jwt() && has_keys {
            ctx.warn(
                format!("{key}.jwt_public_key"),
                "JWT keys are ignored: auth.mode does not accept JWTs",
            );
        }
        if !self.mode.accepts_basic() && self.basic_users_file.is_some() {
            ctx.warn(
                format!("{key}.basic_users_file"),
                "ignored: auth.mode does not accept basic auth",
            );
        }
        for (i, role) in self.required_roles.iter().enumerate() {
            if role.is_empty() {
                return Err(ctx.invalid(format!("{key}.required_roles[{i}]"), "empty role"));
            }
        }
        Ok(())
    }

    /// Loads the JWT keys and basic-auth users the mode uses.
    pub(super) fn read_files(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        self.public_keys.clear();
        if self.mode.accepts_jwt() {
            let indexed = |name: &str, i: usize, len: usize| {
                if len > 1 {
                    format!("{key}.{name}[{i}]")
                } else {
                    format!("{key}.{name}")
                }
            };
            let inline_count = self.jwt_public_key.len();
            for (i, text) in self.jwt_public_key.iter().enumerate() {
                let text = text.trim();
                let parsed = if text.starts_with("-----BEGIN") {
                    PublicKey::from_pem(text.as_bytes())
                } else {
                    PublicKey::from_base64(text)
                };
                let public_key = parsed.map_err(|err| {
                    ctx.invalid(
                        indexed("jwt_public_key", i, inline_count),
                        cc_common::error_chain(&err),
                    )
                })?;
                self.public_keys.push(public_key);
            }
            let file_count = self.jwt_public_key_file.len();
            for (i, path) in self.jwt_public_key_file.iter().enumerate() {
                let public_key = PublicKey::from_file(path).map_err(|err| {
                    ctx.invalid(
                        indexed("jwt_public_key_file", i, file_count),
                        cc_common::error_chain(&err),
                    )
                })?;
                self.public_keys.push(public_key);
            }
        }
        self.basic_users = None;
        if let (true, Some(path)) = (self.mode.accepts_basic(), &self.basic_users_file) {
            let field = format!("{key}.basic_users_file");
            let users = BasicUsers::from_file(path)
                .map_err(|err| ctx.invalid(&field, cc_common::error_chain(&err)))?;
            if let Some(warning) = values::permission_warning(path) {
                ctx.warn(field, warning);
            }
            self.basic_users = Some(users);
        }
        Ok(())
    }
}

pub(super) fn check_ingress_name(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&name.len())
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':');
    if ok {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            format!(
                "{name:?} is not usable: 1 to 64 characters, no spaces, control characters or ':'"
            ),
        ))
    }
}
