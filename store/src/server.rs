//! Start-up of the service: listener, TLS, privilege drop, serving until shutdown.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use cc_common::auth::JwtVerifier;
use cc_common::shutdown::Shutdown;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::registry::Registry;
use crate::store::MetricStore;

/// How long in-flight requests may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The configured address.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The HTTPS certificate or key could not be loaded.
    #[error("HTTPS set-up")]
    Tls(#[from] cc_common::tls::TlsError),
    /// The JWT key could not be used.
    #[error("JWT set-up")]
    Jwt(#[from] cc_common::auth::KeyError),
    /// Dropping privileges failed.
    #[error("dropping privileges")]
    Privileges(#[from] PrivilegeError),
    /// The HTTP server failed.
    #[error("HTTP server")]
    Serve(#[source] std::io::Error),
}

/// Binds the configured address, then serves the API until `shutdown` fires.
///
/// # Errors
///
/// See [`RunError`].
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    let addr = config.main.bind_address();
    let listener = TcpListener::bind(&addr).map_err(|source| RunError::Bind {
        addr: addr.clone(),
        source,
    })?;
    serve(config, listener, shutdown).await
}

/// Serves the API on an already bound listener until `shutdown` fires.
///
/// # Errors
///
/// See [`RunError`].
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    cc_common::tls::install_crypto_provider();
    listener.set_nonblocking(true).map_err(RunError::Serve)?;
    let local: SocketAddr = listener.local_addr().map_err(RunError::Serve)?;
    let tls = match config.main.https() {
        Some((cert, key)) => Some(cc_common::tls::server_config(cert, key, None, false)?),
        None => None,
    };
    drop_privileges(config.main.user.as_deref(), config.main.group.as_deref())?;

    let verifier = match &config.main.jwt_public_key {
        Some(key) => Some(JwtVerifier::new(vec![key.clone()])?),
        None => None,
    };
    if verifier.is_none() {
        tracing::warn!(
            "no jwt-public-key configured: the API accepts every request without authentication"
        );
    }
    let store = Arc::new(MetricStore::new(Registry::new(&config.metrics)));
    let state = Arc::new(AppState {
        store,
        verifier,
        admin_roles: config.main.admin_roles.clone(),
    });
    let max_body = usize::try_from(config.main.max_body_size.as_u64()).unwrap_or(usize::MAX);
    let deadline = config.main.read_timeout + config.main.write_timeout;
    let app = api::router(Arc::clone(&state), max_body).layer(axum::middleware::from_fn(
        move |req, next| api::deadline(deadline, req, next),
    ));
    if let Some(retention) = config.metric_store.retention() {
        let store = Arc::clone(&state.store);
        shutdown.spawn(
            "retention",
            retention_task(store, retention, shutdown.token()),
        );
    }

    let handle: Handle<SocketAddr> = Handle::new();
    let stopper = handle.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        tracing::info!("shutting down: finishing in-flight requests");
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, scheme, metrics = config.metrics.len(), "cc-store listening");
    let result = match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
                .map_err(RunError::Serve)?
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .map_err(RunError::Serve)?
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    };
    result.map_err(RunError::Serve)
}

/// Frees data older than `retention` every `retention / 2` (cc-metric-store's
/// retention task; the first round runs half a period after start).
async fn retention_task(
    store: Arc<MetricStore>,
    retention: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let period = (retention / 2).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let cutoff =
            crate::api::write::unix_now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.root().free(cutoff)).await {
            Ok(freed) => tracing::info!(
                freed,
                cutoff,
                "retention: freed chunks older than the retention window"
            ),
            Err(e) => tracing::error!(error = %e, "retention round failed"),
        }
    }
}

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// No such group.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// A system call failed.
    #[error("{call} failed")]
    Sys {
        /// Which call.
        call: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
}

/// Switches to `group`, then `user` (cc-metric-store's `main.group`/`main.user`),
/// after the listener is bound. Nothing happens for empty names.
///
/// # Errors
///
/// Unknown names, or the system refusing the change (e.g. not running as root).
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), PrivilegeError> {
    use nix::unistd::{Group, User, setgid, setgroups, setuid};
    let sys = |call| move |source| PrivilegeError::Sys { call, source };
    if let Some(name) = group.filter(|g| !g.is_empty()) {
        let group = Group::from_name(name)
            .map_err(sys("getgrnam"))?
            .ok_or_else(|| PrivilegeError::UnknownGroup(name.to_owned()))?;
        setgroups(&[group.gid]).map_err(sys("setgroups"))?;
        setgid(group.gid).map_err(sys("setgid"))?;
        tracing::info!(group = name, "switched group");
    }
    if let Some(name) = user.filter(|u| !u.is_empty()) {
        let user = User::from_name(name)
            .map_err(sys("getpwnam"))?
            .ok_or_else(|| PrivilegeError::UnknownUser(name.to_owned()))?;
        setuid(user.uid).map_err(sys("setuid"))?;
        tracing::info!(user = name, "switched user");
    }
    Ok(())
}
