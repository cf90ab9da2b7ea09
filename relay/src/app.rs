//! Start-up and shutdown of the relay: configuration → queue → workers →
//! admin → ingress, in that order (spec `relay.md` §4.12), and the reverse
//! on SIGTERM.
//!
//! Shutdown: ingress answers 503 to new requests while in-flight requests
//! still get their acknowledgement; workers keep forwarding for
//! `shutdown_grace` (or until their queues are empty); whatever is left
//! stays queued on disk for the next start.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use cc_common::auth::JwtVerifier;
use cc_common::shutdown::Shutdown;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{
    self, Config, HttpIngress, InputPrecision, RecordCompression, RuleSet, UpstreamCredentials,
    UpstreamType, ValidateProfile,
};
use crate::forward::http::{Compress, HttpUpstream, Kind};
use crate::forward::retry::RetryPolicy;
use crate::forward::{Worker, WorkerSettings};
use crate::ingress::{self, Auth, ListenerSettings, QueueLimit, Shared};
use crate::process::{Filter, MissingTimestamp, Rules, Target, Validate};
use crate::queue::{Flusher, Queue, QueueConfig, SplitLimits};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The queue database could not be opened.
    #[error("opening the queue in {0}")]
    Queue(String, #[source] Box<crate::queue::QueueError>),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Which listener.
        what: Box<str>,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error("TLS set-up for {0}")]
    Tls(String, #[source] Box<cc_common::tls::TlsError>),
    /// An HTTP client could not be built.
    #[error("HTTP client for upstream {0}")]
    Client(String, #[source] Box<reqwest::Error>),
    /// A JWT key could not be used.
    #[error("JWT keys of ingress {0}")]
    Jwt(String, #[source] Box<cc_common::auth::KeyError>),
    /// The queue storage failed while running (the relay stopped taking data).
    #[error("queue storage failed: {0}")]
    StorageFailed(String),
    /// Something the configuration asks for that this build cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// The global line rules of the configuration, with one upstream's rule set.
fn rules_for(config: &Config, set: &RuleSet, listener: Option<&HttpIngress>) -> Rules {
    let ts = &config.processing.timestamp;
    let input = listener
        .and_then(|l| l.input_precision)
        .unwrap_or(ts.input_precision);
    Rules {
        input_precision: match input {
            InputPrecision::Auto => None,
            InputPrecision::Fixed(p) => Some(p),
        },
        output_precision: ts.output_precision,
        missing: match ts.missing {
            config::MissingTimestamp::StampIngest => MissingTimestamp::StampIngest,
            config::MissingTimestamp::Drop => MissingTimestamp::Drop,
            config::MissingTimestamp::Keep => MissingTimestamp::Keep,
        },
        max_future: ts.max_future,
        max_past: ts.max_past,
        drop_measurements: set.drop_measurements.iter().cloned().collect(),
        keep_measurements: set.keep_measurements.iter().cloned().collect(),
        drop_measurements_regex: set
            .drop_measurements_regex
            .iter()
            .map(|r| r.regex().clone())
            .collect(),
        rename_measurements: set.rename_measurements.clone().into_iter().collect(),
        drop_tags: set.drop_tags.iter().cloned().collect(),
        rename_tags: set.rename_tags.clone().into_iter().collect(),
        add_tags: set.add_tags.clone(),
        set_tags: set.set_tags.clone(),
        materialize_cluster: config.processing.materialize_cluster,
        validate: match config.processing.validate {
            ValidateProfile::None => Validate::None,
            ValidateProfile::Syntax => Validate::Syntax,
            ValidateProfile::Ccms => Validate::Ccms,
        },
        max_line_bytes: listener.map_or(64 * 1024, |l| {
            usize::try_from(l.max_line_bytes.as_u64()).unwrap_or(usize::MAX)
        }),
    }
}

fn auth_header(credentials: &UpstreamCredentials) -> Option<String> {
    use base64::Engine as _;
    match credentials {
        UpstreamCredentials::None => None,
        UpstreamCredentials::Bearer(token) => Some(format!("Bearer {}", token.expose().trim())),
        UpstreamCredentials::Basic { username, password } => {
            let raw = format!("{username}:{}", password.expose().trim());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
        }
    }
}

/// Where the configuration came from, for SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The configuration file, re-read on SIGHUP for `log.level` (and to
    /// report changed keys that need a restart); `None` for the built-in
    /// defaults.
    pub config_path: Option<std::path::PathBuf>,
    /// The log level was given on the command line: SIGHUP keeps it.
    pub log_level_fixed: bool,
}

/// Runs the relay until `shutdown` fires.
///
/// # Errors
///
/// Start-up failures; see [`StartError`].
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), StartError> {
    run_with(config, shutdown, RunOptions::default()).await
}

/// [`run`], with what SIGHUP needs to re-read the configuration file.
///
/// # Errors
///
/// Start-up failures; see [`StartError`].
#[expect(
    clippy::too_many_lines,
    reason = "the start-up sequence reads best in one place"
)]
pub async fn run_with(
    config: Config,
    shutdown: Shutdown,
    options: RunOptions,
) -> Result<(), StartError> {
    cc_common::tls::install_crypto_provider();
    // Listen for SIGHUP from the start: its default action would end the
    // process while the queue is still being opened.
    let hup = cc_common::shutdown::sighup_stream().ok();
    if !config.ingress.nats.is_empty()
        || config
            .upstreams
            .iter()
            .any(|u| u.kind == UpstreamType::Nats)
    {
        return Err(StartError::Unsupported(
            "NATS ingress and upstreams are not supported by this version".into(),
        ));
    }
    // Queue.
    let enabled: Vec<&config::Upstream> = config.upstreams.iter().filter(|u| u.enabled).collect();
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let storage = &config.storage;
    let compress_threshold = match storage.record_compression {
        RecordCompression::Zstd => crate::queue::record::DEFAULT_COMPRESS_THRESHOLD,
        RecordCompression::None => usize::MAX,
    };
    let queue_config = QueueConfig {
        cache_capacity: storage.cache_capacity.as_u64(),
        flush_every_ms: storage.flush_every_ms,
        compress_threshold,
        zstd_level: storage.zstd_level,
        dead_letter_max_bytes: config
            .upstreams
            .iter()
            .map(|u| u.dead_letter.max_bytes.as_u64())
            .max()
            .unwrap_or(64 << 20),
    };
    let data_dir = config.data_dir.clone();
    let queue = tokio::task::spawn_blocking(move || Queue::open(&data_dir, &names, queue_config))
        .await
        .map_err(|e| StartError::Unsupported(format!("queue open task failed: {e}")))?
        .map_err(|e| StartError::Queue(config.data_dir.display().to_string(), Box::new(e)))?;
    let queue = Arc::new(queue);
    for (name, stats) in queue.stats() {
        tracing::info!(upstream = %name, records = stats.records, lines = stats.lines, bytes = stats.stored_bytes, "queue recovered");
    }
    let flusher = Arc::new(Flusher::with_delay(
        Arc::clone(&queue),
        storage.group_commit_delay,
    ));
    let disk_limits = crate::housekeeper::DiskLimits {
        data_dir: config.data_dir.clone(),
        max_disk_bytes: storage.max_disk_bytes.as_u64(),
        min_free_bytes: storage.min_free_disk_bytes.as_u64(),
        min_free_percent: storage.min_free_disk_percent,
        interval: storage.disk_check_interval,
    };
    let disk = Arc::new(crate::housekeeper::DiskState::default());
    {
        let (q, l, d) = (Arc::clone(&queue), disk_limits.clone(), Arc::clone(&disk));
        let _ = tokio::task::spawn_blocking(move || crate::housekeeper::check(&q, &l, &d)).await;
    }

    // Workers.
    let mut workers = Vec::new();
    let mut targets = Vec::new();
    let mut limits = Vec::new();
    let mut wakers = Vec::new();
    let mut in_flight = Vec::new();
    let mut auth_handles = Vec::new();
    let mut clients = Vec::new();
    for u in &enabled {
        let kind = match u.kind {
            UpstreamType::CcmsHttp => Kind::Ccms,
            UpstreamType::RelayHttp => Kind::Relay,
            UpstreamType::Nats => continue,
        };
        let Some(url) = u.url.clone() else {
            return Err(StartError::Unsupported(format!(
                "upstream {} has no url",
                u.name
            )));
        };
        let client = Arc::new(RwLock::new(upstream_client(u, &url)?));
        clients.push((u.name.clone(), url.clone(), Arc::clone(&client)));
        let auth = Arc::new(RwLock::new(auth_header(&u.credentials)));
        auth_handles.push((u.name.clone(), Arc::clone(&auth)));
        let upstream = HttpUpstream {
            client,
            url,
            kind,
            default_cluster: u.cluster.clone(),
            auth,
            instance_id: config.instance_id.clone(),
            compress: match u.compress {
                config::Compression::None => Compress::None,
                config::Compression::Gzip => Compress::Gzip,
                config::Compression::Zstd => Compress::Zstd,
            },
            headers: u
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let settings = WorkerSettings {
            name: u.name.clone(),
            max_bytes: u.batch.max_bytes.as_u64(),
            max_lines: u64::try_from(u.batch.max_lines).unwrap_or(u64::MAX),
            linger: u.batch.linger,
            max_age: Some(u.buffer.max_age).filter(|d| !d.is_zero()),
            retry: RetryPolicy {
                initial: u.retry.initial_backoff,
                max: u.retry.max_backoff,
                multiplier: u.retry.multiplier,
                jitter: u.retry.jitter == config::Jitter::Full,
                auth_max: u.retry.auth_backoff,
                poison_attempts: u.retry.poison_attempts.max(1),
            },
            max_in_flight: u.max_in_flight,
        };
        let worker = Worker::new(settings, Arc::clone(&queue), upstream);
        wakers.push(Arc::clone(&worker.wake));
        in_flight.push(Arc::clone(&worker.in_flight));
        targets.push(Target {
            name: u.name.clone(),
            ccms: u.kind.is_ccms(),
            filter: Filter {
                message_types: u
                    .filter
                    .message_types
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect(),
                include_measurements: u.filter.include_measurements.clone(),
                exclude_measurements: u.filter.exclude_measurements.clone(),
                include_clusters: u.filter.include_clusters.clone(),
            },
        });
        limits.push(QueueLimit {
            max_bytes: u.buffer.max_bytes.as_u64(),
            reject_new: u.buffer.when_full == config::WhenFull::RejectNew,
        });
        workers.push(worker);
    }
    // Upstreams with equal line rules are processed together.
    let mut rule_sets: Vec<(RuleSet, Vec<usize>)> = Vec::new();
    for (index, u) in enabled
        .iter()
        .filter(|u| u.kind != UpstreamType::Nats)
        .enumerate()
    {
        match rule_sets.iter_mut().find(|(set, _)| *set == u.rules) {
            Some((_, members)) => members.push(index),
            None => rule_sets.push((u.rules.clone(), vec![index])),
        }
    }

    let shared = Arc::new(Shared {
        queue: Arc::clone(&queue),
        flusher: Arc::clone(&flusher),
        targets,
        limits,
        wakers,
        in_flight,
        split: SplitLimits {
            max_raw_bytes: usize::try_from(storage.record_max_raw_bytes.as_u64())
                .unwrap_or(usize::MAX),
            max_stored_bytes: usize::try_from(storage.record_max_stored_bytes.as_u64())
                .unwrap_or(usize::MAX),
            compress_threshold,
            zstd_level: storage.zstd_level,
        },
        accepting: AtomicBool::new(true),
        disk: Arc::clone(&disk),
        counters: ingress::IngressCounters::default(),
    });

    // Disk limits: checked once above, then periodically.
    let housekeeping = tokio::spawn(crate::housekeeper::run(
        Arc::clone(&queue),
        disk_limits,
        Arc::clone(&disk),
        shutdown.token(),
    ));

    // Bind everything before serving anything, so a bad address fails start-up.
    let admin_listener = bind(config.admin.address, "admin")?;
    let mut ingress_listeners = Vec::new();
    for l in &config.ingress.http {
        ingress_listeners.push((bind(l.address, &format!("ingress {}", l.name))?, l));
    }

    let worker_stop = CancellationToken::new();
    let mut counters = Vec::new();
    let mut worker_tasks = Vec::new();
    for worker in workers {
        counters.push((worker_name(&worker), Arc::clone(&worker.counters)));
        worker_tasks.push(tokio::spawn(
            worker.run(worker_stop.clone(), shutdown.token()),
        ));
    }

    let admin_token = Arc::new(RwLock::new(admin_token_of(&config)));
    let admin_state = Arc::new(AdminState {
        queue: Arc::clone(&queue),
        shared: Arc::clone(&shared),
        upstreams: counters,
        flush: flusher.stats(),
        token: Arc::clone(&admin_token),
        instance_id: config.instance_id.clone(),
    });
    let admin_app = admin::router(admin_state);
    let mut server_tls = Vec::new();
    let admin_task = serve(
        admin_listener,
        config.admin.address,
        config.admin.tls.as_ref(),
        "admin",
        None,
        admin_app,
        shutdown.token(),
        Duration::from_secs(2),
        &mut server_tls,
    )?;

    let mut ingress_tasks = Vec::new();
    let mut listener_auth = Vec::new();
    for (listener, l) in ingress_listeners {
        let groups = rule_sets
            .iter()
            .map(|(set, members)| ingress::RuleGroup {
                rules: rules_for(&config, set, Some(l)),
                default_cluster: set.default_cluster.clone(),
                targets: members
                    .iter()
                    .filter_map(|&i| shared.targets.get(i).cloned())
                    .collect(),
                indices: members.clone(),
            })
            .collect();
        let settings = listener_settings(l, groups)?;
        listener_auth.push((l.name.clone(), Arc::clone(&settings.auth)));
        let app = ingress::router(settings, Arc::clone(&shared));
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: l.address,
            what: l.name.as_str().into(),
            source,
        })?;
        // One timer covers both the idle wait for the next request on a
        // keep-alive connection and reading its headers, so the larger of the
        // two settings applies: an idle collector connection must survive its
        // flush interval.
        let header_timeout = l.header_read_timeout.max(l.idle_timeout);
        let task = serve(
            listener,
            addr,
            l.tls.as_ref(),
            &format!("ingress {}", l.name),
            Some(header_timeout),
            app,
            shutdown.token(),
            l.ack_timeout + Duration::from_secs(1),
            &mut server_tls,
        )?;
        tracing::info!(ingress = %l.name, address = %addr, tls = l.tls.is_some(), "accepting collector data");
        ingress_tasks.push(task);
    }
    tracing::info!(
        instance = %config.instance_id,
        admin = %config.admin.address,
        upstreams = enabled.len(),
        "cc-relay running"
    );

    let reload = spawn_secret_reload(
        config.clone(),
        options,
        hup,
        Secrets {
            upstreams: auth_handles,
            listeners: listener_auth,
            admin_token,
            clients,
            server_tls,
        },
        shutdown.token(),
    );
    let storage_failed = Arc::new(AtomicBool::new(false));
    {
        // A storage error is sticky: stop taking data and exit non-zero so that
        // the service manager restarts the relay on a fresh database handle.
        let (q, failed, sd) = (
            Arc::clone(&queue),
            Arc::clone(&storage_failed),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = sd.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if !q.is_healthy() {
                    tracing::error!(reason = %q.poison_reason().unwrap_or_default(), "queue storage failed; shutting down");
                    failed.store(true, Ordering::Relaxed);
                    sd.trigger();
                    return;
                }
            }
        });
    }

    // Run until asked to stop.
    shutdown.cancelled().await;
    tracing::info!(
        "shutting down: no new data accepted; forwarding for up to {:?}",
        config.shutdown_grace
    );
    shared.accepting.store(false, Ordering::Relaxed);
    for task in ingress_tasks {
        let _ = task.await;
    }
    // Keep forwarding while there is something to forward, within the grace.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    while tokio::time::Instant::now() < deadline && !shutdown.is_forced() {
        let backlog: u64 = queue
            .stats()
            .iter()
            .filter(|(n, _)| enabled.iter().any(|u| &u.name == n))
            .map(|(_, s)| s.records)
            .sum();
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker_stop.cancel();
    for task in worker_tasks {
        let _ = task.await;
    }
    reload.abort();
    housekeeping.abort();
    let _ = admin_task.await;
    let queue_for_close = Arc::clone(&queue);
    let closed = tokio::task::spawn_blocking(move || queue_for_close.mark_clean_shutdown()).await;
    match closed {
        Ok(Ok(())) => tracing::info!("queue flushed; cc-relay stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "final queue flush failed"),
        Err(e) => tracing::error!(error = %e, "final queue flush task failed"),
    }
    if storage_failed.load(Ordering::Relaxed) {
        return Err(StartError::StorageFailed(
            queue.poison_reason().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// The HTTP client of an upstream: its timeouts, and for `https` its CA and
/// client certificate.
fn upstream_client(
    u: &config::Upstream,
    url: &reqwest::Url,
) -> Result<reqwest::Client, StartError> {
    let mut builder = reqwest::Client::builder()
        .timeout(u.timeout)
        .connect_timeout(u.connect_timeout)
        .pool_idle_timeout(u.pool_idle_timeout);
    if url.scheme() == "https" {
        let check = cc_common::tls::ServerCheck {
            server_name: u.tls.server_name.clone(),
            insecure_skip_verify: u.tls.insecure_skip_verify,
        };
        let tls = cc_common::tls::client_config_checked(
            u.tls.ca_file.as_deref(),
            u.tls.cert_file.as_deref().zip(u.tls.key_file.as_deref()),
            &check,
        )
        .map_err(|e| StartError::Tls(format!("upstream {}", u.name), Box::new(e)))?;
        builder = builder.tls_backend_preconfigured((*tls).clone());
    }
    builder
        .build()
        .map_err(|e| StartError::Client(u.name.clone(), Box::new(e)))
}

/// A TLS listener whose certificate SIGHUP can replace.
struct ReloadableTls {
    what: String,
    files: config::ServerTls,
    handle: axum_server::tls_rustls::RustlsConfig,
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop`
/// fires, then lets in-flight requests finish within `grace`. For a TLS
/// listener, `reloadable` gets the handle that swaps its certificate.
#[expect(
    clippy::too_many_arguments,
    reason = "two call sites, each naming every setting"
)]
fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<&config::ServerTls>,
    what: &str,
    header_timeout: Option<Duration>,
    app: axum::Router,
    stop: CancellationToken,
    grace: Duration,
    reloadable: &mut Vec<ReloadableTls>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, StartError> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        stopper.graceful_shutdown(Some(grace));
    });
    let mut server = axum_server::from_tcp(listener).map_err(|source| StartError::Bind {
        addr,
        what: what.into(),
        source,
    })?;
    if let Some(timeout) = header_timeout {
        server
            .http_builder()
            .http1()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(timeout);
    }
    let service = app.into_make_service();
    Ok(match tls {
        Some(tls) => {
            let cfg = cc_common::tls::server_config(
                &tls.cert_file,
                &tls.key_file,
                tls.client_ca_file.as_deref(),
                tls.require_client_cert,
            )
            .map_err(|e| StartError::Tls(what.to_owned(), Box::new(e)))?;
            let handle_tls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            reloadable.push(ReloadableTls {
                what: what.to_owned(),
                files: tls.clone(),
                handle: handle_tls.clone(),
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(handle_tls);
            tokio::spawn(server.acceptor(acceptor).handle(handle).serve(service))
        }
        None => tokio::spawn(server.handle(handle).serve(service)),
    })
}

/// SIGHUP: re-reads the configuration file for `log.level`, and names the
/// other keys that changed (they take effect at the next start).
fn reload_file(running: &Config, options: &RunOptions) {
    let Some(path) = &options.config_path else {
        return;
    };
    let fresh = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %cc_common::error_chain(&e), "SIGHUP: cannot re-read the configuration; nothing else changes");
            return;
        }
    };
    if !options.log_level_fixed {
        match cc_common::telemetry::set_level(&fresh.log.level) {
            Ok(true) => tracing::info!(level = %fresh.log.level, "SIGHUP: log level set"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the old log level"),
        }
    }
    if fresh.log.format != running.log.format {
        tracing::warn!("SIGHUP: log.format changed; it takes effect only after a restart");
    }
    let (old, new) = (running.redacted(), fresh.redacted());
    let mut changed: Vec<String> = Vec::new();
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        for (key, value) in new {
            if key != "log" && old.get(key) != Some(value) {
                changed.push(key.clone());
            }
        }
        changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    }
    if !changed.is_empty() {
        tracing::warn!(
            keys = ?changed,
            "SIGHUP: these configuration sections changed and take effect only after a restart"
        );
    }
}

/// Re-reads the TLS files of every listener and `https` upstream.
fn reload_tls(config: &Config, secrets: &Secrets) {
    for listener in &secrets.server_tls {
        let files = &listener.files;
        match cc_common::tls::server_config(
            &files.cert_file,
            &files.key_file,
            files.client_ca_file.as_deref(),
            files.require_client_cert,
        ) {
            Ok(cfg) => {
                listener.handle.reload_from_config(cfg);
                tracing::info!(listener = %listener.what, cert = %files.cert_file.display(), "SIGHUP: TLS certificate re-read");
            }
            Err(e) => tracing::error!(
                listener = %listener.what,
                error = %cc_common::error_chain(&e),
                "SIGHUP: keeping the old TLS certificate"
            ),
        }
    }
    for (name, url, client) in &secrets.clients {
        if url.scheme() != "https" {
            continue;
        }
        let Some(u) = config.upstreams.iter().find(|u| &u.name == name) else {
            continue;
        };
        match upstream_client(u, url) {
            Ok(fresh) => *client.write() = fresh,
            Err(e) => tracing::error!(
                upstream = %name,
                error = %cc_common::error_chain(&e),
                "SIGHUP: keeping the old TLS files"
            ),
        }
    }
}

fn worker_name(worker: &Worker) -> String {
    worker.name().to_owned()
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind {
        addr,
        what: what.into(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            addr,
            what: what.into(),
            source,
        })?;
    Ok(listener)
}

/// The keys and users of a listener, from its (re-)loaded configuration.
fn listener_credentials(l: &HttpIngress) -> Result<ingress::Credentials, StartError> {
    let verifier = if l.auth.public_keys.is_empty() {
        None
    } else {
        Some(
            JwtVerifier::new(l.auth.public_keys.clone())
                .map_err(|e| StartError::Jwt(l.name.clone(), Box::new(e)))?
                .with_leeway(l.auth.leeway),
        )
    };
    Ok(ingress::Credentials {
        verifier,
        basic_users: l.auth.basic_users.clone(),
    })
}

fn listener_settings(
    l: &HttpIngress,
    rule_groups: Vec<ingress::RuleGroup>,
) -> Result<ListenerSettings, StartError> {
    let rule_groups: Arc<[ingress::RuleGroup]> = rule_groups.into();
    Ok(ListenerSettings {
        name: l.name.clone(),
        paths: l.paths.clone(),
        auth: Arc::new(Auth {
            mode: match l.auth.mode {
                config::AuthMode::None => ingress::AuthMode::None,
                config::AuthMode::Jwt => ingress::AuthMode::Jwt,
                config::AuthMode::Basic => ingress::AuthMode::Basic,
                config::AuthMode::JwtOrBasic => ingress::AuthMode::JwtOrBasic,
            },
            credentials: RwLock::new(listener_credentials(l)?),
            accept_x_auth_token: l.auth.accept_x_auth_token,
            required_roles: l.auth.required_roles.clone(),
            require_sub: l.auth.require_sub,
        }),
        max_body_bytes: usize::try_from(l.max_body_bytes.as_u64()).unwrap_or(usize::MAX),
        max_decompressed_bytes: usize::try_from(l.max_decompressed_bytes.as_u64())
            .unwrap_or(usize::MAX),
        accept_encodings: l
            .accept_encodings
            .iter()
            .map(|e| match e {
                config::ContentEncoding::Identity => "identity".to_owned(),
                config::ContentEncoding::Gzip => "gzip".to_owned(),
                config::ContentEncoding::Zstd => "zstd".to_owned(),
            })
            .collect(),
        ack_timeout: l.ack_timeout,
        body_read_timeout: l.body_read_timeout,
        max_concurrent_requests: l.max_concurrent_requests,
        success_status: l
            .success_status
            .and_then(|status| StatusCode::from_u16(status).ok()),
        reject_invalid: l.invalid_lines == config::InvalidLines::Reject,
        trust_query_cluster: l.trust_query_cluster,
        default_cluster: l.default_cluster.clone(),
        input_precision: match &l.input_precision {
            Some(InputPrecision::Fixed(p)) => Some(*p),
            _ => None,
        },
        max_hops: l.max_hops,
        rule_groups,
    })
}

fn admin_token_of(config: &Config) -> Option<String> {
    config
        .admin
        .auth_token
        .as_ref()
        .map(|t| t.expose().trim().to_owned())
}

/// Everything SIGHUP can replace at run time.
struct Secrets {
    /// Per upstream: its `Authorization` header.
    upstreams: Vec<(String, Arc<RwLock<Option<String>>>)>,
    /// Per listener: its keys and users.
    listeners: Vec<(String, Arc<Auth>)>,
    /// The admin token.
    admin_token: Arc<RwLock<Option<String>>>,
    /// Per upstream: its URL and HTTP client (TLS files).
    clients: Vec<(String, reqwest::Url, Arc<RwLock<reqwest::Client>>)>,
    /// TLS listeners (ingress and admin): certificate, key, client CA.
    server_tls: Vec<ReloadableTls>,
}

/// SIGHUP: re-reads every secret file (upstream tokens and passwords, ingress
/// JWT keys and basic users, the admin token). All files are read first; if
/// any cannot be read, nothing changes and the old secrets stay in use. Then
/// the TLS files: each listener's certificate, key and client CA, and each
/// `https` upstream's CA and client certificate; one that cannot be loaded
/// keeps its old files (logged), the others change. New connections use
/// the new files; open ones keep theirs.
fn spawn_secret_reload(
    config: Config,
    options: RunOptions,
    hup: Option<tokio::signal::unix::Signal>,
    secrets: Secrets,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP; secrets are read only at start");
            return;
        };
        let mut config = config;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            // Each part on its own: a bad secret file must not stop a
            // certificate rotation or a log level change.
            reload_secrets(&mut config, &secrets);
            reload_tls(&config, &secrets);
            reload_file(&config, &options);
        }
    })
}

/// SIGHUP: re-reads the secret files; all or nothing.
fn reload_secrets(config: &mut Config, secrets: &Secrets) {
    let mut candidate = config.clone();
    if let Err(e) = candidate.reload_secrets() {
        tracing::error!(error = %cc_common::error_chain(&e), "SIGHUP: cannot re-read secrets; keeping the old ones");
        return;
    }
    // Every listener's keys first; nothing changes unless all of them load.
    let mut fresh = Vec::new();
    for (name, auth) in &secrets.listeners {
        let Some(l) = candidate.ingress.http.iter().find(|l| &l.name == name) else {
            continue;
        };
        match listener_credentials(l) {
            Ok(c) => fresh.push((auth, c)),
            Err(e) => {
                tracing::error!(ingress = %name, error = %cc_common::error_chain(&e), "SIGHUP: keeping all old secrets");
                return;
            }
        }
    }
    for (auth, credentials) in fresh {
        *auth.credentials.write() = credentials;
    }
    for (name, handle) in &secrets.upstreams {
        if let Some(u) = candidate.upstreams.iter().find(|u| &u.name == name) {
            *handle.write() = auth_header(&u.credentials);
        }
    }
    *secrets.admin_token.write() = admin_token_of(&candidate);
    *config = candidate;
    tracing::info!("SIGHUP: secrets re-read");
}
