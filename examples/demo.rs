//! The main job on one machine (`./scripts/demo`): a real cc-store and a real
//! cc-relay on their built-in defaults, a synthetic rack of collectors posting
//! to the relay, the store stopped and restarted in the middle of the run, and
//! at the end every point read back through the store's query API.
//!
//! The rack: `--nodes` nodes with 2 sockets and 128 hardware threads each,
//! sending 4 node, 3 socket and 4 hwthread metrics every 60 s, as
//! cc-metric-collector does. `--simulate` of that traffic (timestamps in the
//! past, one interval after another) is compressed into `--duration` of wall
//! time. While the store is down the relay keeps acknowledging and holds the
//! lines on disk; when the store is back the relay drains its queue. The
//! summary compares, per metric, the points the relay acknowledged with the
//! points the store returns for the same range.
//!
//! Without `--once` both programs keep running after the summary until
//! Ctrl-C (or SIGTERM), which stops them with one SIGTERM each.
//!
//! ```text
//! ./scripts/demo                      # build, then run the whole story
//! cargo run --release --example demo -- --once --duration 8s --outage 2s
//! ```

#![allow(
    clippy::indexing_slicing,
    reason = "only serde_json::Value is indexed, by key, which yields Null instead of panicking"
)]

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Where the programs listen on their built-in defaults.
const RELAY_WRITE: &str = "http://127.0.0.1:8080/api/write?cluster=demo";
const RELAY_ADMIN: &str = "http://127.0.0.1:9109";
const STORE: &str = "http://127.0.0.1:8082";
/// The cluster the rack belongs to.
const CLUSTER: &str = "demo";
/// Collector interval (the store's built-in metrics all have frequency 60).
const INTERVAL_S: i64 = 60;
const SOCKETS: usize = 2;
const HWTHREADS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Node,
    Socket,
    Hwthread,
}

impl Scope {
    fn word(self) -> &'static str {
        match self {
            Scope::Node => "node",
            Scope::Socket => "socket",
            Scope::Hwthread => "hwthread",
        }
    }

    /// Series per node at this scope.
    fn ids(self) -> usize {
        match self {
            Scope::Node => 1,
            Scope::Socket => SOCKETS,
            Scope::Hwthread => HWTHREADS,
        }
    }
}

/// The metrics each synthetic collector sends (all in the store's built-in
/// metric list), with a typical magnitude.
const METRICS: [(&str, Scope, f64); 11] = [
    ("cpu_load", Scope::Node, 96.0),
    ("mem_used", Scope::Node, 180.0),
    ("net_bw", Scope::Node, 2.0e6),
    ("ib_bw", Scope::Node, 4.0e8),
    ("mem_bw", Scope::Socket, 120.0),
    ("cpu_power", Scope::Socket, 210.0),
    ("mem_power", Scope::Socket, 30.0),
    ("cpu_user", Scope::Hwthread, 85.0),
    ("flops_any", Scope::Hwthread, 12.0),
    ("ipc", Scope::Hwthread, 1.6),
    ("clock", Scope::Hwthread, 2400.0),
];

/// Runs a synthetic rack through a real cc-relay into a real cc-store, stops
/// the store mid-run, and shows that every point arrives.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Args {
    /// Stop both programs and exit after the summary (exit status 0 only if
    /// nothing was lost).
    #[arg(long)]
    once: bool,
    /// Wall-clock length of the traffic.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Collector traffic to send (one interval every 60 s of it), compressed
    /// into --duration.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    simulate: Duration,
    /// Nodes in the synthetic rack (each 2 sockets, 128 hardware threads).
    #[arg(long, default_value_t = 40)]
    nodes: usize,
    /// How long the store stays down in the middle of the run (0s: no outage).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Directory the programs run in: their data goes to `var/relay` and
    /// `var/checkpoints` below it, their logs to `var/cc-store.log` and
    /// `var/cc-relay.log`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Directory holding cc-store and cc-relay (default: the cargo target
    /// directory this demo was built into).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("\ndemo: {err:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<i32> {
    if args.nodes == 0 || args.nodes > 999 {
        bail!("--nodes must be between 1 and 999");
    }
    let intervals = args.simulate.as_secs() / INTERVAL_S as u64;
    if intervals == 0 {
        bail!("--simulate must cover at least one 60 s interval");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if !args.outage.is_zero() && args.outage >= args.duration {
        bail!("--outage must be shorter than --duration");
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => default_bin_dir()?,
    };
    let var = args.dir.join("var");
    std::fs::create_dir_all(&var).with_context(|| format!("creating {}", var.display()))?;
    for port in [8080, 8082, 9109] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port} on 127.0.0.1 is taken: the demo runs both programs on their \
                 built-in defaults (relay 8080, store 8082, relay admin 9109); stop whatever \
                 listens there (an earlier demo?) and try again"
            );
        }
    }
    let mut stop = StopSignal::new()?;
    cc_common::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;

    let mut procs = Procs {
        store: Program::new("cc-store", &bin_dir, &args.dir, &["-loglevel", "info"])?,
        relay: Program::new("cc-relay", &bin_dir, &args.dir, &[])?,
    };
    let outcome = tokio::select! {
        r = story(&args, intervals, &client, &mut procs) => Some(r),
        () = stop.recv() => None,
    };
    let code = match outcome {
        None => {
            println!("\ndemo: interrupted; stopping cc-relay and cc-store");
            130
        }
        Some(Err(err)) => {
            procs.stop_all().await;
            return Err(err);
        }
        Some(Ok(lost)) if args.once => i32::from(lost),
        Some(Ok(lost)) => {
            println!();
            println!("Both programs keep running on their defaults; Ctrl-C stops them.");
            for (what, url) in [
                ("cc-store (cc-metric-store API, /metrics)", STORE.to_owned()),
                ("cc-relay (collectors post here)", RELAY_WRITE.to_owned()),
                ("cc-relay admin (/status, /metrics)", RELAY_ADMIN.to_owned()),
                (
                    "status pages (open them in a browser)",
                    format!("{RELAY_ADMIN}/  {STORE}/"),
                ),
                (
                    "logs",
                    format!(
                        "{}, {}",
                        procs.store.log.display(),
                        procs.relay.log.display()
                    ),
                ),
            ] {
                println!("  {:<42} {url}", format!("{what}:"));
            }
            tokio::select! {
                () = stop.recv() => {}
                r = procs.watch() => { procs.stop_all().await; return Err(r); }
            }
            println!("\ndemo: stopping cc-relay and cc-store");
            i32::from(lost)
        }
    };
    procs.stop_all().await;
    Ok(code)
}

/// SIGINT and SIGTERM, listened to from the start so that a signal that
/// arrives between two waits is not lost.
struct StopSignal {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// `target/<profile>/examples/demo` → `target/<profile>`.
fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the demo executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("the demo executable has no parent directory; pass --bin-dir")
}

/// One of the two programs, started in its own process group so that a
/// Ctrl-C in the terminal reaches only the demo, which then stops it once.
struct Program {
    name: &'static str,
    path: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Program {
    fn new(name: &'static str, bin_dir: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} not found; build it with `cargo build --release --workspace --bins` \
                 (./scripts/demo does) or pass --bin-dir",
                path.display()
            );
        }
        let log = dir.join("var").join(format!("{name}.log"));
        std::fs::write(&log, b"").with_context(|| format!("creating {}", log.display()))?;
        Ok(Self {
            name,
            path,
            dir: dir.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log,
            child: None,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.path)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// An error with the end of the log if the program has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(self.died(&format!("exited ({status})")))
            }
            Err(err) => Err(anyhow!("waiting for {}: {err}", self.name)),
        }
    }

    fn died(&self, how: &str) -> anyhow::Error {
        anyhow!(
            "{} {how}; the end of its log ({}):\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 20)
        )
    }

    /// Sends one SIGTERM and waits for the exit (SIGKILL after `grace`).
    async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    eprintln!(
                        "demo: {} did not stop within {grace:?}; killing it",
                        self.name
                    );
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

struct Procs {
    store: Program,
    relay: Program,
}

impl Procs {
    async fn stop_all(&mut self) {
        // The relay first: it stops taking data and keeps forwarding for its
        // shutdown grace; what it still holds stays in its queue on disk.
        self.relay.stop(Duration::from_secs(30)).await;
        self.store.stop(Duration::from_secs(60)).await;
    }

    /// Resolves with an error when either program exits.
    async fn watch(&mut self) -> anyhow::Error {
        loop {
            if let Err(e) = self.store.check() {
                return e;
            }
            if let Err(e) = self.relay.check() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// Whether the store answers and has finished restoring its checkpoints
/// (`/api/healthcheck` answers 503 while it restores, 400 to a request
/// without a body once it is ready).
async fn store_ready(client: &reqwest::Client) -> bool {
    client
        .get(format!("{STORE}/api/healthcheck"))
        .send()
        .await
        .is_ok_and(|r| r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE)
}

/// Waits until `url` answers 200 (or, for the store, until it is ready),
/// failing early if `program` exits.
async fn wait_ready(
    client: &reqwest::Client,
    program: &mut Program,
    url: &str,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        program.check()?;
        let ready = if url.starts_with(STORE) {
            store_ready(client).await
        } else {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        };
        if ready {
            return Ok(start.elapsed());
        }
        if start.elapsed() > deadline {
            return Err(program.died(&format!("did not answer {url} within {deadline:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the collectors have had acknowledged, and what the progress line shows.
#[derive(Default)]
struct Counters {
    /// Lines the relay acknowledged.
    lines: AtomicU64,
    /// Node-intervals the relay acknowledged (each holds every metric once
    /// per id of its scope).
    posts: AtomicU64,
    /// Requests the relay did not acknowledge (retried).
    refused: AtomicU64,
    /// Intervals sent so far.
    intervals: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreState {
    Up,
    Down,
    Restoring,
}

/// The whole story; returns whether points were lost.
async fn story(
    args: &Args,
    intervals: u64,
    client: &reqwest::Client,
    procs: &mut Procs,
) -> anyhow::Result<bool> {
    let t_end = (cc_common::time::now_secs() / INTERVAL_S) * INTERVAL_S;
    let t0 = t_end - intervals as i64 * INTERVAL_S;
    let hwthread_lines = args.nodes * metrics_lines();
    println!(
        "A rack of {} nodes ({SOCKETS} sockets, {HWTHREADS} hardware threads each) sends {} \
         of collector traffic ({intervals} intervals of {hwthread_lines} lines) in {}.",
        args.nodes,
        humantime::format_duration(args.simulate),
        humantime::format_duration(args.duration),
    );
    println!(
        "cc-relay takes it on {RELAY_WRITE} and keeps it on disk until cc-store ({STORE}) has it."
    );

    procs.store.start()?;
    procs.relay.start()?;
    wait_ready(
        client,
        &mut procs.store,
        &format!("{STORE}/api/healthcheck"),
        Duration::from_secs(120),
    )
    .await?;
    wait_ready(
        client,
        &mut procs.relay,
        &format!("{RELAY_ADMIN}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    let base = relay_status(client).await?;
    println!(
        "Both are up. Each line: time since the start, simulated minutes sent, lines/s into \
         and out of the relay, lines in its disk queue, lines delivered to the store."
    );

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut sender = tokio::spawn(send_rack(
        client.clone(),
        args.nodes,
        t0,
        intervals,
        args.duration,
        Arc::clone(&counters),
    ));
    let mut progress = Progress::new(start, intervals, base.clone());
    let outage_at = args.duration.mul_f64(0.4);
    let mut store_state = StoreState::Up;
    let mut outage_end: Option<Instant> = None;
    let mut restarted_at: Option<Instant> = None;
    let mut drain: Option<(Instant, u64)> = None;
    // The relay's queue depth in normal operation (batches lingering and in
    // flight), taken just before the outage: the drain is over once the
    // queue is back near it.
    let mut queue_before = 0;
    let rack_interval_lines = (args.nodes * metrics_lines()) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = true;
    loop {
        tick.tick().await;
        procs.relay.check()?;
        if store_state != StoreState::Down {
            procs.store.check()?;
        }
        if sending && sender.is_finished() {
            sending = false;
            (&mut sender).await.context("the rack's sender task")??;
        }
        let status = relay_status(client).await?;
        match store_state {
            StoreState::Up
                if !args.outage.is_zero()
                    && outage_end.is_none()
                    && start.elapsed() >= outage_at =>
            {
                progress.event(&format!(
                    "stopping cc-store for {} (a restart, a crash or a network outage look \
                     the same to the relay)",
                    humantime::format_duration(args.outage)
                ));
                queue_before = status.queued_lines;
                let exit = procs.store.stop(Duration::from_secs(60)).await;
                match exit {
                    Some(s) if s.success() => {}
                    Some(s) => return Err(procs.store.died(&format!("stopped with {s}"))),
                    None => return Err(anyhow!("cc-store was not running")),
                }
                store_state = StoreState::Down;
                outage_end = Some(Instant::now() + args.outage);
            }
            StoreState::Down if outage_end.is_some_and(|t| Instant::now() >= t) => {
                progress.event(&format!(
                    "starting cc-store again; it restores its checkpoints (relay holding {} lines)",
                    status.queued_lines
                ));
                procs.store.start()?;
                store_state = StoreState::Restoring;
                restarted_at = Some(Instant::now());
            }
            StoreState::Restoring if store_ready(client).await => {
                let took = restarted_at.map(|t| t.elapsed()).unwrap_or_default();
                progress.event(&format!(
                    "cc-store is back (restored in {:.1} s); the relay drains its {} queued lines",
                    took.as_secs_f64(),
                    status.queued_lines
                ));
                store_state = StoreState::Up;
                drain = Some((Instant::now(), status.sent_lines));
            }
            _ => {}
        }
        if let Some((since, sent_before)) = drain
            && store_state == StoreState::Up
            && (status.queued_lines <= queue_before + rack_interval_lines || !sending)
        {
            let secs = since.elapsed().as_secs_f64().max(0.001);
            let delivered = status.sent_lines.saturating_sub(sent_before);
            progress.event(&format!(
                "the relay has caught up: {delivered} lines delivered in {secs:.1} s since the \
                 store came back ({}/s)",
                si(delivered as f64 / secs)
            ));
            drain = None;
        }
        progress.update(&status, &counters, store_state);
        let acked = counters.lines.load(Ordering::Relaxed);
        if !sending
            && store_state == StoreState::Up
            && drain.is_none()
            && status.queued_lines == 0
            && status.received_lines.saturating_sub(base.received_lines) >= acked
            && status.sent_lines.saturating_sub(base.sent_lines) >= acked
        {
            break;
        }
        if !sending && start.elapsed() > args.duration + Duration::from_secs(180) {
            return Err(anyhow!(
                "the relay still holds {} lines 3 minutes after the traffic ended (last upstream \
                 error: {}); see {}",
                status.queued_lines,
                status.last_error.as_deref().unwrap_or("none"),
                procs.relay.log.display()
            ));
        }
    }
    progress.finish();

    println!(
        "\nReading the whole range back from cc-store, as cc-backend reads a job's metrics \
         ({} to {}, every node, every scope):",
        rfc3339(t0),
        rfc3339(t_end)
    );
    let lost = summary(client, args.nodes, t0, t_end, &counters, &progress).await?;
    Ok(lost)
}

/// The fields of the relay's `/status` the demo shows.
#[derive(Debug, Clone, Default)]
struct RelayStatus {
    received_lines: u64,
    queued_lines: u64,
    sent_lines: u64,
    up: bool,
    last_error: Option<String>,
}

async fn relay_status(client: &reqwest::Client) -> anyhow::Result<RelayStatus> {
    let body: Value = client
        .get(format!("{RELAY_ADMIN}/status"))
        .send()
        .await
        .context("asking the relay for /status")?
        .error_for_status()?
        .json()
        .await
        .context("the relay's /status is not JSON")?;
    let upstream = body["upstreams"]
        .as_array()
        .and_then(|u| u.first())
        .context("the relay's /status lists no upstream")?;
    Ok(RelayStatus {
        received_lines: body["received_lines"].as_u64().unwrap_or(0),
        queued_lines: upstream["queued_lines"].as_u64().unwrap_or(0),
        sent_lines: upstream["sent_lines"].as_u64().unwrap_or(0),
        up: upstream["up"].as_bool().unwrap_or(false),
        last_error: upstream["last_error"].as_str().map(str::to_owned),
    })
}

/// Lines one node sends per interval.
fn metrics_lines() -> usize {
    METRICS.iter().map(|(_, scope, _)| scope.ids()).sum()
}

/// One node's lines for interval `k` (timestamp `t`), as cc-metric-collector
/// formats them. Values are a slow wave per node plus a per-id offset.
fn node_body(node: &str, n: usize, k: u64, t: i64) -> String {
    let mut body = String::with_capacity(metrics_lines() * 64);
    let phase = (k as f64) / 7.0 + n as f64;
    for (metric, scope, magnitude) in METRICS {
        for id in 0..scope.ids() {
            let wave = 0.75 + 0.2 * (phase + id as f64 / 16.0).sin();
            let value = (magnitude * wave * 1000.0).round() / 1000.0;
            let _ = match scope {
                Scope::Node => {
                    writeln!(body, "{metric},hostname={node},type=node value={value} {t}")
                }
                _ => writeln!(
                    body,
                    "{metric},hostname={node},type={},type-id={id} value={value} {t}",
                    scope.word()
                ),
            };
        }
    }
    body
}

fn node_name(n: usize, nodes: usize) -> String {
    if nodes > 99 {
        format!("r01n{:03}", n + 1)
    } else {
        format!("r01n{:02}", n + 1)
    }
}

/// The collectors: every interval each node posts its lines; a request the
/// relay does not acknowledge is retried, as the collectors' http sink does.
async fn send_rack(
    client: reqwest::Client,
    nodes: usize,
    t0: i64,
    intervals: u64,
    duration: Duration,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let per_interval = duration.div_f64(intervals as f64);
    for k in 0..intervals {
        tokio::time::sleep_until((start + per_interval.mul_f64(k as f64)).into()).await;
        let t = t0 + (k as i64 + 1) * INTERVAL_S - 1;
        let mut posts = tokio::task::JoinSet::new();
        for n in 0..nodes {
            let client = client.clone();
            let counters = Arc::clone(&counters);
            posts.spawn(async move {
                let body = node_body(&node_name(n, nodes), n, k, t);
                let lines = metrics_lines() as u64;
                for attempt in 0..50 {
                    match client.post(RELAY_WRITE).body(body.clone()).send().await {
                        Ok(r) if r.status().is_success() => {
                            counters.lines.fetch_add(lines, Ordering::Relaxed);
                            counters.posts.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        Ok(r) if r.status().is_client_error() => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            return Err(anyhow!("the relay refused a batch: {status} {text}"));
                        }
                        _ => {
                            counters.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                        }
                    }
                }
                Err(anyhow!("the relay did not take a batch after 50 attempts"))
            });
        }
        while let Some(r) = posts.join_next().await {
            r.context("a collector task")??;
        }
        counters.intervals.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The one updating progress line (a line per second when not on a terminal).
struct Progress {
    start: Instant,
    intervals: u64,
    base: RelayStatus,
    tty: bool,
    last: Option<(Instant, u64, u64)>,
    last_print: Option<Instant>,
    peak_in: f64,
    peak_out: f64,
    peak_queue: u64,
    line_shown: bool,
}

impl Progress {
    fn new(start: Instant, intervals: u64, base: RelayStatus) -> Self {
        Self {
            start,
            intervals,
            base,
            tty: std::io::stdout().is_terminal(),
            last: None,
            last_print: None,
            peak_in: 0.0,
            peak_out: 0.0,
            peak_queue: 0,
            line_shown: false,
        }
    }

    fn update(&mut self, status: &RelayStatus, counters: &Counters, store: StoreState) {
        let now = Instant::now();
        let received = status
            .received_lines
            .saturating_sub(self.base.received_lines);
        let sent = status.sent_lines.saturating_sub(self.base.sent_lines);
        let rates = match self.last {
            Some((t, r, s)) if now.duration_since(t) >= Duration::from_millis(900) => {
                let secs = now.duration_since(t).as_secs_f64();
                let rates = ((received - r) as f64 / secs, (sent - s) as f64 / secs);
                self.last = Some((now, received, sent));
                self.peak_in = self.peak_in.max(rates.0);
                self.peak_out = self.peak_out.max(rates.1);
                Some(rates)
            }
            Some(_) => None,
            None => {
                self.last = Some((now, received, sent));
                None
            }
        };
        self.peak_queue = self.peak_queue.max(status.queued_lines);
        if !self.tty {
            if rates.is_none() {
                return;
            }
            if self
                .last_print
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
            {
                return;
            }
        }
        let (rate_in, rate_out) = match rates {
            Some(rates) => rates,
            None if self.tty && self.line_shown => return,
            None => (0.0, 0.0),
        };
        self.last_print = Some(now);
        let done = counters.intervals.load(Ordering::Relaxed);
        let store = match store {
            StoreState::Up if status.up || status.queued_lines == 0 => "store up".to_owned(),
            StoreState::Up => "store up, relay retrying".to_owned(),
            StoreState::Down => "store DOWN: relay keeps the lines on disk".to_owned(),
            StoreState::Restoring => "store restoring its checkpoints".to_owned(),
        };
        let line = format!(
            "{:5.1} s  sim {:3}/{} min  in {:>7} lines/s  out {:>7} lines/s  queued {:>8}  \
             delivered {:>9}  {store}",
            self.start.elapsed().as_secs_f64(),
            done,
            self.intervals,
            si(rate_in),
            si(rate_out),
            status.queued_lines,
            sent,
        );
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        self.line_shown = true;
    }

    /// Prints an event on its own line, above the progress line.
    fn event(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty && self.line_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(
            out,
            "{:5.1} s  == {text}",
            self.start.elapsed().as_secs_f64()
        );
        let _ = out.flush();
        self.line_shown = false;
    }

    fn finish(&mut self) {
        if self.tty && self.line_shown {
            println!();
        }
    }
}

/// A Unix time in seconds as `2026-12-07T18:00:00Z`.
fn rfc3339(t: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `1234567.0` → `1.23M`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Queries every metric of every node for `[t0, t_end)` and prints points
/// sent vs stored; returns whether any point is missing.
async fn summary(
    client: &reqwest::Client,
    nodes: usize,
    t0: i64,
    t_end: i64,
    counters: &Counters,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let posts = counters.posts.load(Ordering::Relaxed);
    println!(
        "{:<11} {:<9} {:>12} {:>12}",
        "metric", "scope", "points sent", "stored"
    );
    let mut total_sent = 0u64;
    let mut total_stored = 0u64;
    for (metric, scope, _) in METRICS {
        let ids: Vec<String> = (0..scope.ids()).map(|i| i.to_string()).collect();
        let queries: Vec<Value> = (0..nodes)
            .map(|n| match scope {
                Scope::Node => json!({ "metric": metric, "host": node_name(n, nodes) }),
                _ => json!({
                    "metric": metric,
                    "host": node_name(n, nodes),
                    "type": scope.word(),
                    "type-ids": ids,
                }),
            })
            .collect();
        let request = json!({
            "cluster": CLUSTER,
            "from": t0,
            "to": t_end,
            "with-stats": false,
            "with-data": true,
            "queries": queries,
        });
        let response = client
            .get(format!("{STORE}/api/query?version=v2"))
            .body(request.to_string())
            .send()
            .await
            .with_context(|| format!("querying {metric}"))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("querying {metric}: {status} {body}");
        }
        let body: Value =
            serde_json::from_str(&body).with_context(|| format!("the answer for {metric}"))?;
        let stored: u64 = body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|entry| entry["data"].as_array())
            .map(|data| data.iter().filter(|v| v.is_number()).count() as u64)
            .sum();
        let sent = posts * scope.ids() as u64;
        total_sent += sent;
        total_stored += stored;
        let mark = if stored >= sent { "" } else { "  MISSING" };
        println!(
            "{metric:<11} {:<9} {sent:>12} {stored:>12}{mark}",
            scope.word()
        );
    }
    println!("{:<21} {total_sent:>12} {total_stored:>12}", "total");
    println!(
        "Peaks: {} lines/s into the relay, {} lines/s out to the store, {} lines in the \
         relay's queue.",
        si(progress.peak_in),
        si(progress.peak_out),
        progress.peak_queue
    );
    let refused = counters.refused.load(Ordering::Relaxed);
    if refused > 0 {
        println!("({refused} requests were retried by the collectors.)");
    }
    if total_stored < total_sent {
        println!(
            "LOST: {} of {total_sent} points are not in the store.",
            total_sent - total_stored
        );
        Ok(true)
    } else {
        println!("Nothing lost: every point the relay acknowledged is in the store.");
        Ok(false)
    }
}
