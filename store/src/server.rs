//! Start-up of the service: listener, TLS, privilege drop, serving until shutdown.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use cc_common::auth::JwtVerifier;
use cc_common::shutdown::Shutdown;

use std::sync::atomic::Ordering;

use crate::api::write::unix_now;
use crate::api::{self, AppState};
use crate::config::{Config, FileFormat, MetricStoreConfig};
use crate::metrics::{Metrics, Sources};
use crate::nats::NatsIngest;
use crate::nodes::{NodeProvider, UsedNodes};
use crate::persist::restore::RestoreProgress;
use crate::persist::{self, Format, Persistence};
use crate::registry::Registry;
use crate::status::StatusSources;
use crate::store::{FreeReason, MetricStore};

/// How long in-flight requests may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Time systemd is asked to allow after each progress report of the
/// checkpoint restore (reports come every 5 s).
const RESTORE_PROGRESS_ALLOWANCE: Duration = Duration::from_secs(30);

/// Time systemd is asked to allow for the final checkpoint.
const FINAL_CHECKPOINT_ALLOWANCE: Duration = Duration::from_secs(120);

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
    /// The checkpoint directory cannot be created, written or listed.
    #[error("checkpoint directory {dir} (it must be writable by the user cc-store runs as)")]
    Checkpoints {
        /// The configured directory.
        dir: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the configured address, then serves the API until `shutdown` fires.
///
/// # Errors
///
/// See [`RunError`].
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
    let addr = config.main.bind_address();
    let listener = cc_common::net::bind_tcp(addr.as_str()).map_err(|source| RunError::Bind {
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
    // Created (and checked) as the user the store runs as, so that a
    // directory it could not write fails the start, not every write.
    let checkpoints = &config.metric_store.checkpoints;
    let persistence = Arc::new(
        Persistence::new(
            &checkpoints.directory,
            match checkpoints.file_format {
                FileFormat::Wal => Format::Bin,
                FileFormat::Json => Format::Json,
            },
            checkpoints.file_format == FileFormat::Wal,
            checkpoints.max_wal_size,
        )
        .map_err(|source| RunError::Checkpoints {
            dir: checkpoints.directory.display().to_string(),
            source,
        })?,
    );

    let verifier = match &config.main.jwt_public_key {
        Some(key) => Some(JwtVerifier::new(vec![key.clone()])?),
        None => None,
    };
    if verifier.is_none() {
        tracing::warn!(
            "no jwt-public-key configured: the API accepts every request without authentication"
        );
    }
    let store = Arc::new(
        MetricStore::new(if config.learn_metrics {
            Registry::learning(&Config::embedded_default().metrics)
        } else {
            Registry::new(&config.metrics)
        })
        .with_wal(Arc::clone(&persistence)),
    );
    let restore = Arc::new(RestoreProgress::default());
    let sources = Sources {
        store: Arc::clone(&store),
        persistence: Arc::clone(&persistence),
        restore: Arc::clone(&restore),
        memory_cap: config.metric_store.memory_cap_bytes,
    };
    let metrics = Arc::new(Metrics::new(sources.clone()));
    let status = Arc::new(StatusSources {
        sources,
        metrics: Arc::clone(&metrics),
        checkpoint_interval: config.metric_store.checkpoint_interval,
        started: cc_common::time::now_secs(),
        rates: parking_lot::Mutex::default(),
    });
    let state = Arc::new(AppState {
        store,
        verifier,
        admin_roles: config.main.admin_roles.clone(),
        restore: Arc::clone(&restore),
        metrics: Arc::clone(&metrics),
        metrics_auth: config.main.metrics_endpoint_auth,
        status,
    });
    let max_body = usize::try_from(config.main.max_body_size.as_u64()).unwrap_or(usize::MAX);
    let deadline = config.main.read_timeout + config.main.write_timeout;
    let app = api::router(Arc::clone(&state), max_body).layer(axum::middleware::from_fn(
        move |req, next| api::deadline(deadline, req, next),
    ));
    let handle: Handle<SocketAddr> = Handle::new();
    let stopper = handle.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        tracing::info!("shutting down: finishing in-flight requests");
        cc_common::systemd::stopping("shutting down: finishing requests, then a final checkpoint");
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, scheme, metrics = config.metrics.len(), "cc-store listening");
    // `read-timeout` bounds the wait for a request's head too, on a new
    // connection and between requests on a kept-alive one (Go's ReadTimeout
    // counts from the accept, and its idle timeout defaults to it): a client
    // that sends nothing, or its headers a byte at a time, is disconnected
    // then instead of holding a connection open. HTTP/1.1 only (as TLS's
    // ALPN offers): protocol detection would wait for a first byte without
    // any timeout.
    let header_timeout = config.main.read_timeout;
    let server = tokio::spawn(async move {
        match tls {
            Some(tls) => {
                let mut server =
                    axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))?
                        .http1_only();
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(header_timeout);
                server.handle(handle).serve(app.into_make_service()).await
            }
            None => {
                let mut server = axum_server::from_tcp(listener)?.http1_only();
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(header_timeout);
                server.handle(handle).serve(app.into_make_service()).await
            }
        }
    });

    let ms = &config.metric_store;
    let workers = ms.workers();
    // Subscribed before the restore, so that nothing published meanwhile is
    // lost; decoded only after it (see `crate::nats`).
    let nats = NatsIngest::start(&config, &state.store).await;
    if let Some(nats) = &nats {
        metrics.attach_nats(Arc::clone(nats.status()), nats.subscriptions().to_vec());
    }
    let restored = restore_checkpoints(&state.store, &persistence, ms, workers, &restore).await;
    if let Err(e) = restored {
        shutdown.trigger();
        let _ = server.await;
        return Err(e);
    }
    if let Some(nats) = &nats {
        nats.start_decoding();
    }
    start_background_tasks(&state.store, &persistence, &config, &shutdown);
    cc_common::systemd::ready(&format!("serving on {local}; checkpoints loaded"));
    cc_common::systemd::spawn_watchdog();

    // At shutdown NATS is drained while HTTP finishes its requests; both
    // are done before the final checkpoint.
    let http = async {
        let result = match server.await {
            Ok(result) => result.map_err(RunError::Serve),
            Err(e) => Err(RunError::Serve(std::io::Error::other(e))),
        };
        shutdown.trigger();
        result
    };
    let nats = async {
        if let Some(nats) = nats {
            shutdown.cancelled().await;
            nats.finish().await;
        }
    };
    let (result, ()) = tokio::join!(http, nats);
    cc_common::systemd::status("writing the final checkpoint");
    cc_common::systemd::extend_timeout(FINAL_CHECKPOINT_ALLOWANCE);
    final_checkpoint(&state.store, &persistence, workers).await;
    result
}

/// Loads the checkpoints while the API answers 503, logging progress.
async fn restore_checkpoints(
    store: &Arc<MetricStore>,
    persistence: &Arc<Persistence>,
    ms: &MetricStoreConfig,
    workers: usize,
    progress: &Arc<RestoreProgress>,
) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let cutoff = match ms.retention() {
        Some(r) => unix_now() - i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
        None => i64::MIN,
    };
    tracing::info!(directory = %persistence.root().display(), workers, "loading checkpoints");
    cc_common::systemd::status("loading checkpoints");
    cc_common::systemd::extend_timeout(RESTORE_PROGRESS_ALLOWANCE);
    let task = {
        let (store, persistence, progress) = (
            Arc::clone(store),
            Arc::clone(persistence),
            Arc::clone(progress),
        );
        tokio::task::spawn_blocking(move || {
            persist::restore::restore(&store, &persistence, cutoff, workers, &progress)
        })
    };
    tokio::pin!(task);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = ticker.tick() => {
                let (done, total, mb) = (
                    progress.hosts_done.load(Ordering::Relaxed),
                    progress.hosts_total.load(Ordering::Relaxed),
                    progress.bytes.load(Ordering::Relaxed) / 1_000_000,
                );
                tracing::info!(hosts_done = done, hosts = total, mb_read = mb, "loading checkpoints");
                // Still making progress: systemd's start timeout counts
                // from here.
                cc_common::systemd::status(&format!(
                    "loading checkpoints: {done} of {total} hosts, {mb} MB read"
                ));
                cc_common::systemd::extend_timeout(RESTORE_PROGRESS_ALLOWANCE);
            }
        }
    };
    let report = match joined {
        Ok(Ok(report)) => report,
        Ok(Err(source)) => {
            return Err(RunError::Checkpoints {
                dir: persistence.root().display().to_string(),
                source,
            });
        }
        Err(e) => {
            return Err(RunError::Checkpoints {
                dir: persistence.root().display().to_string(),
                source: std::io::Error::other(e),
            });
        }
    };
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a log figure")]
    let mb_per_s = report.bytes as f64 / 1e6 / secs.max(1e-9);
    tracing::info!(
        hosts = report.hosts,
        files = report.files,
        skipped_old_files = report.skipped,
        values = report.values,
        wal_records = report.wal_records,
        torn_wals = report.torn_wals,
        quarantined = report.quarantined,
        converted_frequency = report.converted,
        dropped_unknown_values = report.unknown_values,
        mb = report.bytes / 1_000_000,
        seconds = format!("{secs:.2}"),
        mb_per_s = format!("{mb_per_s:.0}"),
        "checkpoints loaded"
    );
    Ok(())
}

/// Checkpointing, WAL syncing, retention and the memory cap.
fn start_background_tasks(
    store: &Arc<MetricStore>,
    persistence: &Arc<Persistence>,
    config: &Config,
    shutdown: &Shutdown,
) {
    let ms = &config.metric_store;
    let workers = ms.workers();
    shutdown.spawn(
        "checkpoints",
        checkpoint_task(
            Arc::clone(store),
            Arc::clone(persistence),
            ms.checkpoint_interval,
            workers,
            shutdown.token(),
        ),
    );
    if persistence.has_wal() {
        shutdown.spawn(
            "wal-sync",
            wal_sync_task(
                Arc::clone(persistence),
                ms.checkpoints.wal_fsync_interval,
                shutdown.token(),
            ),
        );
    }
    if let Some(retention) = ms.retention() {
        let nodes = match &config.main.backend_url {
            Some(url) => match NodeProvider::new(url, config.main.backend_token.clone()) {
                Ok(provider) => Some(provider),
                Err(e) => {
                    tracing::error!(error = %e, "node provider disabled");
                    None
                }
            },
            None => None,
        };
        shutdown.spawn(
            "retention",
            retention_task(Arc::clone(store), retention, nodes, shutdown.token()),
        );
        shutdown.spawn(
            "cleanup",
            cleanup_task(
                persistence.root().to_path_buf(),
                ms.cleanup
                    .archive_directory()
                    .map(std::path::Path::to_path_buf),
                retention,
                ms.cleanup.interval.unwrap_or(retention),
                workers,
                shutdown.token(),
            ),
        );
    }
    if ms.memory_cap_bytes > 0 {
        shutdown.spawn(
            "memory-cap",
            memory_task(
                Arc::clone(store),
                Arc::clone(persistence),
                ms.memory_cap_bytes,
                ms.retention(),
                workers,
                shutdown.token(),
            ),
        );
    }
}

/// Writes snapshots every `interval`, and early for hosts whose WAL reached
/// `max-wal-size`.
async fn checkpoint_task(
    store: Arc<MetricStore>,
    persistence: Arc<Persistence>,
    interval: Duration,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut oversize = tokio::time::interval(Duration::from_secs(1));
    loop {
        let early = tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => false,
            _ = oversize.tick() => {
                if !persistence.take_oversized() {
                    continue;
                }
                true
            }
        };
        let (s, p) = (Arc::clone(&store), Arc::clone(&persistence));
        let work = move || {
            let now = unix_now();
            if early {
                let wanted: std::collections::HashSet<(String, String)> = p
                    .oversized_hosts()
                    .iter()
                    .map(|h| (h.cluster().to_owned(), h.host().to_owned()))
                    .collect();
                let hosts = persist::checkpoint::host_levels(s.root())
                    .into_iter()
                    .filter(|(c, h, _)| wanted.contains(&(c.clone(), h.clone())))
                    .collect();
                persist::checkpoint::checkpoint_hosts(&s, &p, hosts, now, workers)
            } else {
                persist::checkpoint::checkpoint_all(&s, &p, now, workers)
            }
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(report) => {
                log_checkpoint(&report, if early { "WAL size limit" } else { "periodic" })
            }
            Err(e) => tracing::error!(error = %e, "checkpoint round failed"),
        }
    }
}

fn log_checkpoint(report: &persist::checkpoint::CheckpointReport, why: &str) {
    if report.failed > 0 {
        tracing::error!(
            why,
            written = report.written,
            failed = report.failed,
            first_error = report.first_error.as_deref().unwrap_or(""),
            "checkpoint incomplete: failed hosts keep their WAL and are saved in full next time"
        );
    } else {
        tracing::info!(
            why,
            hosts = report.hosts,
            written = report.written,
            values = report.values,
            "checkpoint written"
        );
    }
}

/// Deletes or archives checkpoint files whose data is older than the
/// retention window: once right after start (so a store restarted more often
/// than its retention period still cleans up), then every `every`
/// (`cleanup.interval`, by default the retention period).
async fn cleanup_task(
    root: std::path::PathBuf,
    archive: Option<std::path::PathBuf>,
    retention: Duration,
    every: Duration,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let cutoff = unix_now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let mode = if archive.is_some() {
            "archive"
        } else {
            "delete"
        };
        let (root, archive) = (root.clone(), archive.clone());
        let work = move || persist::cleanup::cleanup(&root, cutoff, archive.as_deref(), workers);
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(report)) if report.files > 0 || !report.errors.is_empty() => tracing::info!(
                files = report.files,
                rows = report.rows,
                kept_with_errors = report.errors.len(),
                cutoff,
                mode,
                "cleaned up old checkpoint files"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "checkpoint cleanup failed"),
            Err(e) => tracing::error!(error = %e, "checkpoint cleanup task failed"),
        }
    }
}

/// Fsyncs the WAL files every `interval`.
async fn wal_sync_task(
    persistence: Arc<Persistence>,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let p = Arc::clone(&persistence);
        match tokio::task::spawn_blocking(move || p.sync_wals()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "WAL fsync failed"),
            Err(e) => tracing::error!(error = %e, "WAL fsync task failed"),
        }
    }
}

/// The shutdown checkpoint: everything not yet saved, then a last WAL sync.
async fn final_checkpoint(
    store: &Arc<MetricStore>,
    persistence: &Arc<Persistence>,
    workers: usize,
) {
    let (s, p) = (Arc::clone(store), Arc::clone(persistence));
    let work = move || {
        let report = persist::checkpoint::checkpoint_all(&s, &p, unix_now(), workers);
        let synced = p.sync_wals();
        (report, synced)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok((report, synced)) => {
            log_checkpoint(&report, "shutdown");
            if let Err(e) = synced {
                tracing::error!(error = %e, "final WAL fsync failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "shutdown checkpoint failed"),
    }
}

/// Keeps the data's memory under `cap` bytes (cc-metric-store's memory
/// tracker, without its bugs): every 5 s it measures the tree (slot arrays
/// by capacity plus a fixed cost per chunk and level); above the cap it
/// first saves everything to a checkpoint, then frees the oldest data in steps (older than 75 %, 50 %,
/// 25 % of the retention window) until usage is under the cap.
async fn memory_task(
    store: Arc<MetricStore>,
    persistence: Arc<Persistence>,
    cap: u64,
    retention: Option<Duration>,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut wait = MEMORY_CHECK;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let (s, p) = (Arc::clone(&store), Arc::clone(&persistence));
        let work = move || enforce_memory_cap(&s, &p, cap, retention, workers);
        match tokio::task::spawn_blocking(work).await {
            Ok(used) => {
                wait = if used > cap {
                    MEMORY_CHECK_OVER
                } else {
                    MEMORY_CHECK
                };
            }
            Err(e) => tracing::error!(error = %e, "memory check failed"),
        }
    }
}

/// Period of memory checks (a walk over the tree: milliseconds even for
/// thousands of nodes).
const MEMORY_CHECK: Duration = Duration::from_secs(5);
/// Wait after a round that could not get under the cap, so that the error
/// is not repeated every few seconds.
const MEMORY_CHECK_OVER: Duration = Duration::from_secs(30);

/// One memory check; returns the bytes in use afterwards.
pub fn enforce_memory_cap(
    store: &MetricStore,
    persistence: &Persistence,
    cap: u64,
    retention: Option<Duration>,
    workers: usize,
) -> u64 {
    let measure = || store.root().allocated_bytes() as u64;
    let used = measure();
    if used <= cap {
        return used;
    }
    let report = persist::checkpoint::checkpoint_all(store, persistence, unix_now(), workers);
    log_checkpoint(&report, "memory cap");
    let window = retention.map_or(0, |r| i64::try_from(r.as_secs()).unwrap_or(i64::MAX));
    let mut now_used = used;
    for fraction in [3, 2, 1] {
        let cutoff = unix_now() - window / 4 * fraction;
        let freed = store.root().free_saved(cutoff);
        store.count_freed(FreeReason::MemoryCap, freed);
        now_used = measure();
        tracing::warn!(
            cap,
            used_before = used,
            used = now_used,
            freed_chunks = freed,
            cutoff,
            "memory cap exceeded: freed the oldest data"
        );
        if now_used < cap {
            return now_used;
        }
    }
    tracing::error!(
        cap,
        used = now_used,
        "still over the memory cap after freeing down to a quarter of the retention window"
    );
    now_used
}

/// Frees data older than `retention` every `retention / 2` (cc-metric-store's
/// retention task; the first round runs half a period after start). With a
/// node provider, nodes that run jobs keep their data; when cc-backend
/// cannot be asked, everything older than the window is freed (upstream
/// frees nothing then, so memory grows while cc-backend is down).
async fn retention_task(
    store: Arc<MetricStore>,
    retention: Duration,
    nodes: Option<NodeProvider>,
    stop: tokio_util::sync::CancellationToken,
) {
    let period = (retention / 2).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let cutoff = unix_now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let used = match &nodes {
            None => None,
            Some(provider) => match provider.used_nodes(cutoff).await {
                Ok(used) => Some(used),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "retention: cannot get the nodes running jobs from cc-backend; freeing all data older than the window"
                    );
                    None
                }
            },
        };
        let kept = used
            .as_ref()
            .map_or(0, |u| u.values().map(|h| h.len()).sum::<usize>());
        let store = Arc::clone(&store);
        let work = move || {
            let freed = match used.filter(|u| !u.is_empty()) {
                None => store.root().free_saved(cutoff),
                Some(used) => free_except(&store, cutoff, &used),
            };
            store.count_freed(FreeReason::Retention, freed);
            freed
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(freed) => tracing::info!(
                freed,
                cutoff,
                nodes_kept_for_jobs = kept,
                "retention: freed chunks older than the retention window"
            ),
            Err(e) => tracing::error!(error = %e, "retention round failed"),
        }
    }
}

/// Frees chunks older than `cutoff` of every host not in `used`, then
/// removes levels left empty.
fn free_except(store: &MetricStore, cutoff: i64, used: &UsedNodes) -> usize {
    let mut freed = 0;
    for (cluster, host, level) in persist::checkpoint::host_levels(store.root()) {
        if used
            .get(&cluster)
            .is_some_and(|hosts| hosts.contains(&host))
        {
            continue;
        }
        freed += level.free_saved(cutoff);
    }
    // Frees nothing more, but drops the hosts and clusters now empty.
    store.root().free(i64::MIN);
    freed
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
