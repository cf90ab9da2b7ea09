//! NATS connections shared by both binaries: how to connect (servers,
//! credentials, TLS), what the connection is doing ([`Status`]), and how to
//! read a subscription without losing messages unseen ([`Inbox`]).
//!
//! # Connecting
//!
//! [`connect`] never waits for a server: the client keeps trying every
//! server of the list, forever, with a backoff of up to 4 s between rounds
//! (also for the first connection), so a relay or store started before its
//! NATS server, or while the server refuses its credentials, comes up and
//! connects as soon as it can. Until then [`Status::is_connected`] is false,
//! and every change of state and every error is logged (the same error at
//! most once a minute). Only options that can never work (an unreadable
//! `.creds` file, a server address that is no URL) are errors of
//! [`connect`].
//!
//! # Slow consumers
//!
//! The client hands a subscription's messages to the program through a
//! buffer of `subscription_capacity` messages and **drops** messages when
//! that buffer is full, telling only through a lossy event. [`Inbox::drain`]
//! therefore empties the client's buffer at once into a queue bounded in
//! bytes and messages; when the program falls behind by more than that, the
//! inbox drops the newest messages itself and counts each one
//! ([`Status::dropped`]), and logs it. The client's own drops are counted
//! from its events ([`Status::slow_consumer_events`]), which under a flood
//! undercount: they are a signal, never an exact figure.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event, ServerAddr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::secret::Secret;

/// Credentials for a NATS server. Several may be set at once (a server
/// asking for user and password ignores the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// User name and password.
    pub user_password: Option<(String, Secret)>,
    /// Authentication token.
    pub token: Option<Secret>,
    /// Bare nkey seed (`SU…`).
    pub nkey_seed: Option<Secret>,
    /// `.creds` file (user JWT and nkey seed).
    pub creds_file: Option<PathBuf>,
}

/// Client TLS towards a NATS server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client key, with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub require: bool,
    /// Start TLS before the NATS `INFO` exchange (servers configured with
    /// `handshake_first`, nats-server 2.10.4 and later).
    pub handshake_first: bool,
}

/// How to reach one NATS deployment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); the client fails
    /// over between them, and learns further cluster members from them.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// Client TLS.
    pub tls: Tls,
    /// The name the connection shows in the server's monitoring
    /// (`cc-relay ingress:collectors`).
    pub client_name: String,
    /// Messages the client buffers per subscription before it drops.
    pub subscription_capacity: usize,
}

/// Options that can never connect.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No server is configured.
    #[error("no NATS server configured")]
    NoServers,
    /// A server address is not a NATS URL.
    #[error("NATS server address {address:?} is invalid: {message}")]
    Address {
        /// The address as configured.
        address: String,
        /// Why it is invalid.
        message: String,
    },
    /// The `.creds` file cannot be used.
    #[error("cannot use NATS credentials file {}", path.display())]
    Creds {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The nkey seed is not one.
    #[error("the NATS nkey seed is not a valid seed")]
    Nkey,
    /// The client refused the options.
    #[error("cannot start the NATS client")]
    Connect(#[source] async_nats::ConnectError),
}

/// The credentials a client presents, worked out from [`Auth`]: the `.creds`
/// file read and its seed and the nkey seed turned into keys.
#[derive(Clone, Default)]
struct Presented {
    user_password: Option<(String, Secret)>,
    token: Option<Secret>,
    nkey: Option<Arc<nkeys::KeyPair>>,
    /// User JWT and the key that signs with it.
    creds: Option<(String, Arc<nkeys::KeyPair>)>,
}

impl Presented {
    fn from_auth(auth: &Auth) -> Result<Presented, NatsError> {
        let nkey = match &auth.nkey_seed {
            Some(seed) => Some(Arc::new(
                nkeys::KeyPair::from_seed(seed.expose().trim()).map_err(|_| NatsError::Nkey)?,
            )),
            None => None,
        };
        let creds = match &auth.creds_file {
            Some(path) => {
                let creds_error = |message: &str| NatsError::Creds {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
                };
                let text = std::fs::read_to_string(path).map_err(|source| NatsError::Creds {
                    path: path.clone(),
                    source,
                })?;
                let (jwt, seed) =
                    parse_creds(&text).ok_or_else(|| creds_error("no user JWT and nkey seed"))?;
                let key = nkeys::KeyPair::from_seed(seed)
                    .map_err(|_| creds_error("the nkey seed is not a valid seed"))?;
                Some((jwt.to_owned(), Arc::new(key)))
            }
            None => None,
        };
        Ok(Presented {
            user_password: auth.user_password.clone(),
            token: auth.token.clone(),
            nkey,
            creds,
        })
    }

    fn is_empty(&self) -> bool {
        self.user_password.is_none()
            && self.token.is_none()
            && self.nkey.is_none()
            && self.creds.is_none()
    }
}

/// The two blocks of a `.creds` file: the user JWT, then the nkey seed, each
/// on its own line between `-----BEGIN …-----` and `------END …------`.
fn parse_creds(text: &str) -> Option<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.contains("BEGIN") {
            let value = lines.by_ref().find(|l| !l.is_empty())?;
            blocks.push(value);
        }
    }
    match blocks.as_slice() {
        [jwt, seed, ..] if !jwt.starts_with("---") && !seed.starts_with("---") => Some((jwt, seed)),
        _ => None,
    }
}

/// The credentials a client presents when it connects, and again at every
/// reconnection. [`Credentials::replace`] (SIGHUP) changes them for the
/// next connection; an established connection keeps its session.
pub struct Credentials {
    current: parking_lot::RwLock<Presented>,
    /// User and password written into a server URL, when no others are set.
    from_url: Option<(String, Secret)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Credentials {
    /// Reads `auth` (the `.creds` file, the nkey seed).
    ///
    /// # Errors
    ///
    /// A `.creds` file that cannot be read or holds no JWT and seed, or a
    /// seed that is not one.
    pub fn new(auth: &Auth) -> Result<Credentials, NatsError> {
        Ok(Credentials {
            current: parking_lot::RwLock::new(Presented::from_auth(auth)?),
            from_url: None,
        })
    }

    /// Presents `fresh`'s credentials from the next connection on (read
    /// with [`Credentials::new`], so that all of a reload can be checked
    /// before any is used); a user and password from the server URL stay.
    pub fn replace(&self, fresh: Credentials) {
        *self.current.write() = fresh.current.into_inner();
    }

    /// What to send in the `CONNECT` for the server's `nonce`.
    fn present(&self, nonce: &[u8]) -> Result<async_nats::Auth, async_nats::AuthError> {
        let current = self.current.read().clone();
        let mut auth = async_nats::Auth::new();
        if let Some((user, password)) = current.user_password.or_else(|| self.from_url.clone()) {
            auth.username = Some(user);
            auth.password = Some(password.expose().to_owned());
        }
        auth.token = current.token.map(|t| t.expose().to_owned());
        let sign = |key: &nkeys::KeyPair| {
            key.sign(nonce)
                .map_err(|e| async_nats::AuthError::new(format!("cannot sign the nonce: {e}")))
        };
        if let Some(key) = &current.nkey {
            auth.nkey = Some(key.public_key());
            auth.signature = Some(sign(key)?);
        }
        if let Some((jwt, key)) = &current.creds {
            auth.jwt = Some(jwt.clone());
            auth.signature = Some(sign(key)?);
        }
        Ok(auth)
    }
}

/// What a NATS connection is doing, for `/metrics`, `/status`, readiness
/// and the log. Shared by the connection's event handler and the program.
#[derive(Debug)]
pub struct Status {
    role: String,
    connected: AtomicBool,
    connects: AtomicU64,
    connections: tokio::sync::watch::Sender<u64>,
    disconnects: AtomicU64,
    slow_consumer_events: AtomicU64,
    dropped: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
    error_log: parking_lot::Mutex<Option<(String, Instant)>>,
    drop_log: crate::telemetry::Throttle,
}

/// The same error is logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

impl Status {
    /// A fresh, not yet connected status for `role` (`ingress:collectors`,
    /// `upstream:head`, `store`), the label of the metrics and logs.
    #[must_use]
    pub fn new(role: impl Into<String>) -> Self {
        Status {
            role: role.into(),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            connections: tokio::sync::watch::Sender::new(0),
            disconnects: AtomicU64::new(0),
            slow_consumer_events: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
            error_log: parking_lot::Mutex::new(None),
            drop_log: crate::telemetry::Throttle::new(ERROR_LOG_EVERY),
        }
    }

    /// The role label.
    #[must_use]
    pub fn role(&self) -> &str {
        &self.role
    }

    /// True while a server connection is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Connections made after the first one.
    #[must_use]
    pub fn reconnects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Sees the number of connections made so far change each time the
    /// client connects or reconnects: what a server kept for the old
    /// connection (e.g. a JetStream pull request) may be gone and need
    /// renewing.
    #[must_use]
    pub fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// Connections lost.
    #[must_use]
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Slow-consumer events of the client: each stands for at least one
    /// message the client dropped; under a flood they undercount.
    #[must_use]
    pub fn slow_consumer_events(&self) -> u64 {
        self.slow_consumer_events.load(Ordering::Relaxed)
    }

    /// Messages an [`Inbox`] dropped because the program fell behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The last error the client or server reported (no credentials in it).
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::Connected => {
                self.connected.store(true, Ordering::Relaxed);
                let n = self.connects.fetch_add(1, Ordering::Relaxed);
                self.connections.send_replace(n + 1);
                *self.last_error.lock() = None;
                *self.error_log.lock() = None;
                if n == 0 {
                    tracing::info!(role = %self.role, "NATS connected");
                } else {
                    tracing::info!(role = %self.role, reconnects = n, "NATS reconnected");
                }
            }
            Event::Disconnected => {
                self.connected.store(false, Ordering::Relaxed);
                self.disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(role = %self.role, "NATS connection lost; reconnecting");
            }
            Event::Closed => {
                self.connected.store(false, Ordering::Relaxed);
                tracing::info!(role = %self.role, "NATS connection closed");
            }
            Event::LameDuckMode => {
                tracing::warn!(role = %self.role, "NATS server is entering lame duck mode; it will close the connection soon");
            }
            Event::Draining => {}
            Event::SlowConsumer(sid) => {
                self.slow_consumer_events.fetch_add(1, Ordering::Relaxed);
                self.error(format!(
                    "slow consumer: the NATS client dropped messages of subscription {sid}"
                ));
            }
            Event::ServerError(e) => self.error(format!("NATS server error: {e}")),
            Event::ClientError(e) => self.error(format!("NATS client error: {e}")),
        }
    }

    /// Records and logs an error, the same text at most once a minute.
    fn error(&self, text: String) {
        *self.last_error.lock() = Some(text.clone());
        let mut log = self.error_log.lock();
        let due = match &*log {
            Some((last, at)) => *last != text || at.elapsed() >= ERROR_LOG_EVERY,
            None => true,
        };
        if due {
            tracing::error!(role = %self.role, error = %text, "NATS");
            *log = Some((text, Instant::now()));
        }
    }

    /// Counts dropped messages; logs at most once a minute (the total
    /// changes with every drop, so the same-text rule of [`Self::error`]
    /// would let every one through).
    fn count_dropped(&self, n: u64) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let text = format!(
            "messages arrive faster than they are processed; dropping ({total} dropped so far)"
        );
        if self.drop_log.due().is_some() {
            tracing::error!(role = %self.role, error = %text, "NATS");
        }
        *self.last_error.lock() = Some(text);
    }
}

/// Starts a NATS client for `options`; it connects in the background and
/// reports to `status`.
///
/// # Errors
///
/// [`NatsError`] for options that can never work.
pub async fn connect(
    options: &Options,
    status: Arc<Status>,
) -> Result<(async_nats::Client, Arc<Credentials>), NatsError> {
    let addrs = server_addrs(&options.servers)?;
    let mut credentials = Credentials::new(&options.auth)?;
    credentials.from_url = url_credentials(&addrs);
    let credentials = Arc::new(credentials);
    let empty = credentials.from_url.is_none() && credentials.current.read().is_empty();
    let mut opts = if empty {
        ConnectOptions::new()
    } else {
        // Asked at every connection, so that replaced credentials are used
        // from the next one on.
        let credentials = Arc::clone(&credentials);
        ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
            let auth = credentials.present(&nonce);
            async move { auth }
        })
    };
    opts = opts
        .name(&options.client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(options.subscription_capacity.max(1))
        .event_callback(move |event| {
            let status = Arc::clone(&status);
            async move { status.on_event(&event) }
        });
    let tls = &options.tls;
    if let Some(ca) = &tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let wants_tls = tls.require
        || tls.ca_file.is_some()
        || options.servers.iter().any(|s| s.starts_with("tls://"));
    if wants_tls {
        opts = opts.require_tls(true);
    }
    if tls.handshake_first {
        opts = opts.tls_first();
    }
    let client = opts.connect(addrs).await.map_err(NatsError::Connect)?;
    Ok((client, credentials))
}

/// Waits until the server has processed everything `client` sent before:
/// subscriptions made earlier are in force once this returns `true`.
///
/// `flush` only empties the socket; this sends a message to a fresh inbox
/// of the client's own and waits for it to come back, which the server does
/// only after every earlier command of the connection. `false` when the
/// message did not return within `limit` (not connected, or no permission
/// to use `_INBOX.>`).
pub async fn round_trip(client: &async_nats::Client, limit: Duration) -> bool {
    use futures_util::StreamExt as _;
    let probe = async {
        let inbox = client.new_inbox();
        let mut echo = client.subscribe(inbox.clone()).await.ok()?;
        client.publish(inbox, bytes::Bytes::new()).await.ok()?;
        client.flush().await.ok()?;
        echo.next().await
    };
    matches!(tokio::time::timeout(limit, probe).await, Ok(Some(_)))
}

fn server_addrs(servers: &[String]) -> Result<Vec<ServerAddr>, NatsError> {
    if servers.is_empty() {
        return Err(NatsError::NoServers);
    }
    servers
        .iter()
        .map(|s| {
            s.parse().map_err(|e: std::io::Error| NatsError::Address {
                address: redact_server(s),
                message: e.to_string(),
            })
        })
        .collect()
}

/// User and password written into a server URL (`nats://user:pass@host`),
/// which the client would not send by itself.
fn url_credentials(addrs: &[ServerAddr]) -> Option<(String, Secret)> {
    addrs.iter().find_map(|a| {
        let user = a.username()?;
        Some((user.to_owned(), Secret::new(a.password().unwrap_or(""))))
    })
}

/// `s` without any user information, for messages.
#[must_use]
pub fn redact_server(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!(
                "{}://***@{}",
                s.get(..scheme).unwrap_or(""),
                s.get(at + 1..).unwrap_or("")
            )
        }
        _ => s.to_owned(),
    }
}

/// Limits of an [`Inbox`].
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Messages waiting at most.
    pub messages: usize,
    /// Payload bytes waiting at most.
    pub bytes: usize,
}

/// A message taken from an [`Inbox`]; its room in the inbox is given back
/// when it is dropped.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: async_nats::Message,
    _room: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

/// The receiving end of a drained subscription: messages wait here, bounded
/// in bytes and count, until the program takes them.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Delivery>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// Spawns a task that moves every message of `subscriber` (a
    /// subscription, or any stream of messages) into a new
    /// inbox at once; beyond `limits` it drops messages and counts them in
    /// `status`. The task ends when the subscription ends (unsubscribed,
    /// drained, client closed) or the inbox is dropped.
    #[must_use]
    pub fn drain<S>(mut subscriber: S, limits: InboxLimits, status: Arc<Status>) -> Inbox
    where
        S: futures_util::Stream<Item = async_nats::Message> + Unpin + Send + 'static,
    {
        use futures_util::StreamExt as _;
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = limits.bytes.clamp(1, Semaphore::MAX_PERMITS);
        let room = Arc::new(Semaphore::new(budget));
        let count = Arc::new(Semaphore::new(limits.messages.max(1)));
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Ok(one) = Arc::clone(&count).try_acquire_owned() else {
                    status.count_dropped(1);
                    continue;
                };
                let size = u32::try_from(message.payload.len().max(1)).unwrap_or(u32::MAX);
                let bytes = match Arc::clone(&room).try_acquire_many_owned(size) {
                    Ok(bytes) => Some(bytes),
                    // A message larger than the whole budget still passes when
                    // nothing else waits, so that the program can refuse it by
                    // its own size limit and say so.
                    Err(_) if room.available_permits() == budget => None,
                    Err(_) => {
                        status.count_dropped(1);
                        continue;
                    }
                };
                let delivery = Delivery {
                    message,
                    _room: (one, bytes),
                };
                if tx.send(delivery).is_err() {
                    break;
                }
            }
        });
        Inbox { rx }
    }

    /// The next message; `None` once the subscription ended and every
    /// message was taken.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests;
