//! Start-up and shutdown of the relay, in the order of spec `relay.md`
//! §4.12: configuration → queue → runtime (upstream handles) → admin →
//! upstream workers → sources; the reverse on SIGTERM.
//!
//! Shutdown: `/readyz` and the write paths answer 503 and the listeners stop
//! taking connections, while requests in flight still get their
//! acknowledgement; workers keep forwarding for `shutdown_grace` (or until
//! their queues are empty); whatever is left stays queued on disk for the
//! next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cc_common::shutdown::Shutdown;
use parking_lot::RwLock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod listeners;
mod upstreams;

pub(crate) use self::listeners::listener_credentials;
use self::listeners::listener_settings;
use self::upstreams::{Prepared, build_upstreams, rule_sets, rules_for};
pub(crate) use self::upstreams::{auth_header, upstream_client};
use crate::admin::{self, AdminState};
use cc_common::nats::Status;
use cc_common::telemetry::Throttle;

use crate::config::{Config, HttpIngress, NatsIngress, RecordCompression, RuleSet};
use crate::housekeeper::{DiskLimits, DiskState};
use crate::ingress;
use crate::ingress::nats::NatsSource;
use crate::listen::{Bound, bind, serve};
use crate::nats::{NatsLink, NatsLinks, SourceCounters, client_options};
use crate::queue::{Flusher, Queue, QueueConfig, SplitLimits};
use crate::reload::Secrets;
use crate::runtime::{RuleGroup, Runtime, Upstream};

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
    /// A NATS client could not be started.
    #[error("NATS client for {0}")]
    Nats(String, #[source] Box<cc_common::nats::NatsError>),
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
pub async fn run_with(
    config: Config,
    shutdown: Shutdown,
    options: RunOptions,
) -> Result<(), StartError> {
    cc_common::tls::install_crypto_provider();
    // Listen for SIGHUP from the start: its default action would end the
    // process while the queue is still being opened.
    let hup = cc_common::shutdown::sighup_stream().ok();
    let queue = open_queue(&config).await?;
    let disk_limits = disk_limits(&config);
    let disk = first_disk_check(&queue, &disk_limits).await;
    let nats_links = Arc::new(NatsLinks::default());
    let upstreams = build_upstreams(&config, &queue, &nats_links).await?;
    let runtime = Arc::new(Runtime::new(
        Arc::clone(&queue),
        Flusher::with_delay(Arc::clone(&queue), config.storage.group_commit_delay),
        upstreams.iter().map(|u| Arc::clone(&u.handle)).collect(),
        split_limits(&config),
        Arc::clone(&disk),
        nats_links,
    ));
    let housekeeping = tokio::spawn(crate::housekeeper::run(
        Arc::clone(&queue),
        disk_limits,
        disk,
        shutdown.token(),
    ));
    // Bind everything before serving anything, so a bad address fails start-up.
    let admin_socket = bind(config.admin.address, "admin")?;
    let ingress_sockets = config
        .ingress
        .http
        .iter()
        .map(|l| Ok((bind(l.address, &format!("ingress {}", l.name))?, l)))
        .collect::<Result<Vec<_>, StartError>>()?;

    let worker_stop = CancellationToken::new();
    let mut secrets = Secrets {
        upstreams: Vec::new(),
        listeners: Vec::new(),
        admin_token: Arc::new(RwLock::new(admin_token_of(&config))),
        clients: Vec::new(),
        server_tls: Vec::new(),
        runtime: Arc::clone(&runtime),
    };
    // The admin listener outlives the drain: load balancers see /readyz go
    // 503, and /metrics and /status show the drain until the end.
    let admin_stop = CancellationToken::new();
    let admin_task = start_admin(&config, &runtime, admin_socket, &admin_stop, &mut secrets)?;
    let worker_tasks = start_workers(upstreams, &mut secrets, &worker_stop, &shutdown);
    let groups = rule_sets(&config, runtime.upstreams());
    let mut source_tasks = Vec::new();
    for (socket, l) in ingress_sockets {
        source_tasks.push(start_http_source(
            &config,
            l,
            &groups,
            &runtime,
            socket,
            &shutdown,
            &mut secrets,
        )?);
    }
    let nats_stop = CancellationToken::new();
    let mut nats_tasks = Vec::new();
    for input in &config.ingress.nats {
        nats_tasks.push(start_nats_source(&config, input, &groups, &runtime, &nats_stop).await?);
    }
    tracing::info!(
        instance = %config.instance_id,
        admin = %config.admin.address,
        upstreams = runtime.upstreams().len(),
        "cc-relay running"
    );
    runtime.mark_started();
    cc_common::systemd::ready(&format!(
        "accepting data; forwarding to {} upstream(s)",
        runtime.upstreams().len()
    ));
    cc_common::systemd::spawn_watchdog();
    let reload = crate::reload::spawn(config.clone(), options, hup, secrets, shutdown.token());
    let storage_failed = watch_storage(&queue, &shutdown);

    shutdown.cancelled().await;
    tracing::info!(
        "shutting down: no new data accepted; forwarding for up to {:?}",
        config.shutdown_grace
    );
    cc_common::systemd::stopping(&format!(
        "shutting down: forwarding for up to {:?}",
        config.shutdown_grace
    ));
    // NATS inputs first: they unsubscribe and store what they already
    // received before the runtime refuses data.
    nats_stop.cancel();
    for task in nats_tasks {
        let _ = task.await;
    }
    runtime.stop_accepting();
    for task in source_tasks {
        let _ = task.await;
    }
    drain(&runtime, config.shutdown_grace, &shutdown).await;
    worker_stop.cancel();
    for task in worker_tasks {
        let _ = task.await;
    }
    reload.abort();
    housekeeping.abort();
    admin_stop.cancel();
    let _ = admin_task.await;
    close_queue(&queue).await;
    if storage_failed.load(Ordering::Relaxed) {
        return Err(StartError::StorageFailed(
            queue.poison_reason().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// Opens the queue (one tree per configured upstream) and logs what it
/// recovered.
async fn open_queue(config: &Config) -> Result<Arc<Queue>, StartError> {
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let queue_config = queue_config(config);
    let data_dir = config.data_dir.clone();
    let queue = tokio::task::spawn_blocking(move || Queue::open(&data_dir, &names, queue_config))
        .await
        .map_err(|e| StartError::Unsupported(format!("queue open task failed: {e}")))?
        .map_err(|e| StartError::Queue(config.data_dir.display().to_string(), Box::new(e)))?;
    for (name, stats) in queue.stats() {
        tracing::info!(upstream = %name, records = stats.records, lines = stats.lines, bytes = stats.stored_bytes, "queue recovered");
    }
    Ok(Arc::new(queue))
}

/// The queue engine's settings from the `storage` section (also for the
/// offline commands, so that what they write is stored as the relay would).
pub(crate) fn queue_config(config: &Config) -> QueueConfig {
    let storage = &config.storage;
    QueueConfig {
        cache_capacity: storage.cache_capacity.as_u64(),
        flush_every_ms: storage.flush_every_ms,
        compress_threshold: compress_threshold(config),
        zstd_level: storage.zstd_level,
        dead_letter_max_bytes: config
            .upstreams
            .iter()
            .map(|u| u.dead_letter.max_bytes.as_u64())
            .max()
            .unwrap_or(64 << 20),
    }
}

fn compress_threshold(config: &Config) -> usize {
    match config.storage.record_compression {
        RecordCompression::Zstd => crate::queue::record::DEFAULT_COMPRESS_THRESHOLD,
        RecordCompression::None => usize::MAX,
    }
}

/// How ingested lines are split into records (`storage.record_*`).
pub(crate) fn split_limits(config: &Config) -> SplitLimits {
    let storage = &config.storage;
    SplitLimits {
        max_raw_bytes: usize::try_from(storage.record_max_raw_bytes.as_u64()).unwrap_or(usize::MAX),
        max_stored_bytes: usize::try_from(storage.record_max_stored_bytes.as_u64())
            .unwrap_or(usize::MAX),
        compress_threshold: compress_threshold(config),
        zstd_level: storage.zstd_level,
    }
}

fn disk_limits(config: &Config) -> DiskLimits {
    let storage = &config.storage;
    DiskLimits {
        data_dir: config.data_dir.clone(),
        max_disk_bytes: storage.max_disk_bytes.as_u64(),
        min_free_bytes: storage.min_free_disk_bytes.as_u64(),
        min_free_percent: storage.min_free_disk_percent,
        interval: storage.disk_check_interval,
    }
}

/// The disk limits are checked once before anything is accepted.
async fn first_disk_check(queue: &Arc<Queue>, limits: &DiskLimits) -> Arc<DiskState> {
    let disk = Arc::new(DiskState::default());
    let (q, l, d) = (Arc::clone(queue), limits.clone(), Arc::clone(&disk));
    let _ = tokio::task::spawn_blocking(move || crate::housekeeper::check(&q, &l, &d)).await;
    disk
}

fn start_workers(
    upstreams: Vec<Prepared>,
    secrets: &mut Secrets,
    worker_stop: &CancellationToken,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for p in upstreams {
        let name = p.handle.name.clone();
        if let Some(http) = p.http {
            secrets.upstreams.push((name.clone(), http.auth));
            secrets.clients.push((name, http.client.0, http.client.1));
        }
        tasks.push(tokio::spawn(
            p.worker.run(worker_stop.clone(), shutdown.token()),
        ));
    }
    tasks
}

/// How long the admin listener waits for a request's headers, and keeps an
/// idle connection open: hyper's default, longer than a scrape interval, so
/// that a scraper's connection is reused.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn start_admin(
    config: &Config,
    runtime: &Arc<Runtime>,
    socket: std::net::TcpListener,
    stop: &CancellationToken,
    secrets: &mut Secrets,
) -> Result<JoinHandle<std::io::Result<()>>, StartError> {
    let state = Arc::new(AdminState {
        runtime: Arc::clone(runtime),
        token: Arc::clone(&secrets.admin_token),
        instance_id: config.instance_id.clone(),
        registry: crate::metrics::registry(runtime),
        rates: parking_lot::Mutex::default(),
        nats_gates_readiness: config.ingress.http.is_empty(),
    });
    let bound = Bound {
        listener: socket,
        addr: config.admin.address,
        what: "admin".into(),
        tls: config.admin.tls.clone(),
        header_timeout: ADMIN_HEADER_TIMEOUT,
        grace: Duration::from_secs(2),
    };
    serve(
        bound,
        admin::router(state),
        stop.clone(),
        &mut secrets.server_tls,
    )
}

fn start_http_source(
    config: &Config,
    l: &HttpIngress,
    sets: &[(RuleSet, Vec<Arc<Upstream>>)],
    runtime: &Arc<Runtime>,
    socket: std::net::TcpListener,
    shutdown: &Shutdown,
    secrets: &mut Secrets,
) -> Result<JoinHandle<std::io::Result<()>>, StartError> {
    let groups: Arc<[RuleGroup]> = sets
        .iter()
        .map(|(set, members)| RuleGroup {
            rules: rules_for(
                config,
                set,
                l.input_precision,
                Some(l.max_line_bytes.as_u64()),
            ),
            default_cluster: set.default_cluster.clone(),
            members: members.clone(),
        })
        .collect();
    let settings = listener_settings(l, groups)?;
    secrets
        .listeners
        .push((l.name.clone(), Arc::clone(&settings.auth)));
    let app = ingress::router(settings, Arc::clone(runtime));
    let addr = socket.local_addr().map_err(|source| StartError::Bind {
        addr: l.address,
        what: l.name.as_str().into(),
        source,
    })?;
    // One timer covers both the idle wait for the next request on a
    // keep-alive connection and reading its headers, so the larger of the
    // two settings applies: an idle collector connection must survive its
    // flush interval.
    let bound = Bound {
        listener: socket,
        addr,
        what: format!("ingress {}", l.name),
        tls: l.tls.clone(),
        header_timeout: l.header_read_timeout.max(l.idle_timeout),
        grace: l.ack_timeout + Duration::from_secs(1),
    };
    let task = serve(bound, app, shutdown.token(), &mut secrets.server_tls)?;
    tracing::info!(ingress = %l.name, address = %addr, tls = l.tls.is_some(), "accepting collector data");
    Ok(task)
}

/// Messages the NATS client buffers per subscription before the input's
/// inbox takes them (async-nats' default).
const CLIENT_BUFFER: usize = 65_536;

/// Starts a NATS input: its client (connecting in the background) and the
/// task taking its messages until `stop` fires.
async fn start_nats_source(
    config: &Config,
    input: &NatsIngress,
    sets: &[(RuleSet, Vec<Arc<Upstream>>)],
    runtime: &Arc<Runtime>,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let role = format!("ingress:{}", input.name);
    let Some(connection) = &input.connection else {
        return Err(StartError::Unsupported(format!(
            "{role} has no NATS servers"
        )));
    };
    let groups: Arc<[RuleGroup]> = sets
        .iter()
        .map(|(set, members)| RuleGroup {
            rules: rules_for(config, set, input.input_precision, None),
            default_cluster: set.default_cluster.clone(),
            members: members.clone(),
        })
        .collect();
    let status = Arc::new(Status::new(role.clone()));
    // The client's own buffer is only a hand-over to the inbox, which
    // holds `subscription_capacity` messages and counts what it drops.
    let options = client_options(connection, &config.instance_id, &role, CLIENT_BUFFER);
    let (client, credentials) = cc_common::nats::connect(&options, Arc::clone(&status))
        .await
        .map_err(|e| StartError::Nats(role.clone(), Box::new(e)))?;
    let name: Arc<str> = Arc::from(input.name.as_str());
    runtime.counters.add_source(&name);
    let counters = Arc::new(SourceCounters::default());
    runtime.nats.add(NatsLink {
        status: Arc::clone(&status),
        source: Some((Arc::clone(&name), Arc::clone(&counters))),
        credentials,
    });
    let source = NatsSource {
        name: Arc::clone(&name),
        config: input.clone(),
        groups,
        runtime: Arc::clone(runtime),
        status,
        counters,
        client,
        drop_log: Throttle::new(Duration::from_secs(60)),
    };
    tracing::info!(
        ingress = %input.name,
        servers = %connection.servers.iter().map(|s| cc_common::nats::redact_server(s)).collect::<Vec<_>>().join(","),
        mode = if input.mode == crate::config::NatsMode::Jetstream { "jetstream" } else { "core" },
        "taking collector data from NATS"
    );
    Ok(tokio::spawn(source.run(stop.clone())))
}

/// A storage error is sticky: stop taking data and exit non-zero so that
/// the service manager restarts the relay on a fresh database handle.
fn watch_storage(queue: &Arc<Queue>, shutdown: &Shutdown) -> Arc<AtomicBool> {
    let failed = Arc::new(AtomicBool::new(false));
    let (q, flag, sd) = (Arc::clone(queue), Arc::clone(&failed), shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = sd.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if !q.is_healthy() {
                tracing::error!(reason = %q.poison_reason().unwrap_or_default(), "queue storage failed; shutting down");
                flag.store(true, Ordering::Relaxed);
                sd.trigger();
                return;
            }
        }
    });
    failed
}

/// Keeps forwarding while there is something to forward, within the grace.
async fn drain(runtime: &Runtime, grace: Duration, shutdown: &Shutdown) {
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && !shutdown.is_forced() {
        if runtime.backlog() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn close_queue(queue: &Arc<Queue>) {
    let q = Arc::clone(queue);
    match tokio::task::spawn_blocking(move || q.mark_clean_shutdown()).await {
        Ok(Ok(())) => tracing::info!("queue flushed; cc-relay stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "final queue flush failed"),
        Err(e) => tracing::error!(error = %e, "final queue flush task failed"),
    }
}

pub(crate) fn admin_token_of(config: &Config) -> Option<String> {
    config
        .admin
        .auth_token
        .as_ref()
        .map(|t| t.expose().trim().to_owned())
}
