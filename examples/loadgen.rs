//! Load generator: posts realistic ClusterCockpit line protocol to a write
//! endpoint (cc-store, cc-relay, or any InfluxDB-compatible `/write`) and
//! reports accepted lines per second.
//!
//! Every batch is one collection interval of a group of hosts: per host
//! 72 hwthreads × 3 metrics, 2 sockets × 2 metrics, 10 node metrics
//! (230 lines). Batches are built once; only their timestamps change, so the
//! generator spends its CPU on sending, not on formatting.
//!
//! ```text
//! cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:8082/api/write?cluster=fritz \
//!     --connections 4 --batch-lines 5000 --duration 20s
//! ```

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[path = "common/http.rs"]
mod http;
#[path = "common/lines.rs"]
mod lines;
use lines::stamp;

struct Args {
    host: String,
    path: String,
    connections: usize,
    batch_lines: usize,
    duration: Duration,
    hosts: usize,
    start: i64,
    step: i64,
    rounds: u64,
    rate: Option<f64>,
    header: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        host: "127.0.0.1:8082".into(),
        path: "/api/write?cluster=fritz".into(),
        connections: 4,
        batch_lines: 5000,
        duration: Duration::from_secs(10),
        hosts: 1000,
        start: 1_700_000_000,
        step: 60,
        rounds: u64::MAX,
        rate: None,
        header: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => (args.host, args.path) = http::split_url(&value()?)?,
            "--connections" => args.connections = value()?.parse()?,
            "--batch-lines" => args.batch_lines = value()?.parse()?,
            "--duration" => args.duration = humantime::parse_duration(&value()?)?,
            "--hosts" => args.hosts = value()?.parse()?,
            "--start" => args.start = value()?.parse()?,
            "--step" => args.step = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            "--rate" => args.rate = Some(value()?.parse()?).filter(|r: &f64| *r > 0.0),
            "--header" => args.header.push(value()?),
            "--help" | "-h" => {
                println!(
                    "loadgen --url http://HOST:PORT/PATH [--connections N] [--batch-lines N] \
                     [--duration 10s] [--hosts N] [--start UNIX] [--step SECONDS] [--rounds N] [--rate LINES_PER_SEC] [--header 'K: V']"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if args.connections == 0 || args.batch_lines == 0 || args.hosts == 0 {
        bail!("--connections, --batch-lines and --hosts must be positive");
    }
    Ok(args)
}

/// Sends one request on a keep-alive connection; returns the status.
fn post(conn: &mut BufReader<TcpStream>, args: &Args, body: &[u8]) -> anyhow::Result<u16> {
    http::request(conn, "POST", &args.host, &args.path, &args.header, body)
        .map(|(status, _)| status)
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    // Batches of whole hosts; smaller batches cut the hosts' lines in order.
    let templates = lines::templates(args.hosts, args.batch_lines);
    let lines_per_round: usize = templates.iter().map(|(_, o)| o.len()).sum();
    let bytes_per_round: usize = templates.iter().map(|(b, _)| b.len()).sum();
    eprintln!(
        "loadgen: {} hosts, {} batches of ~{} lines per round ({} bytes), {} connections, {:?}",
        args.hosts,
        templates.len(),
        lines_per_round / templates.len().max(1),
        bytes_per_round,
        args.connections,
        args.duration
    );
    let templates = Arc::new(templates);
    let next = Arc::new(AtomicU64::new(0));
    let lines_ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // With --rate: lines handed out so far, each batch sent no earlier than
    // its share of the rate allows.
    let scheduled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let scheduled = Arc::clone(&scheduled);
        let (args, templates, next, lines_ok, failures, stop) = (
            Arc::clone(&args),
            Arc::clone(&templates),
            Arc::clone(&next),
            Arc::clone(&lines_ok),
            Arc::clone(&failures),
            Arc::clone(&stop),
        );
        workers.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<Duration>> {
                let mut conn = BufReader::new(TcpStream::connect(&args.host)?);
                conn.get_ref().set_nodelay(true)?;
                let mut latencies = Vec::new();
                let mut body = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let count = templates.len() as u64;
                    if n / count >= args.rounds {
                        break;
                    }
                    let Some((template, offsets)) = templates.get((n % count) as usize) else {
                        break;
                    };
                    if let Some(rate) = args.rate {
                        let before = scheduled.fetch_add(offsets.len() as u64, Ordering::Relaxed);
                        let due = started + Duration::from_secs_f64(before as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    body.clear();
                    body.extend_from_slice(template);
                    let round = i64::try_from(n / count).unwrap_or(0);
                    stamp(&mut body, offsets, args.start + round * args.step);
                    let t0 = Instant::now();
                    match post(&mut conn, &args, &body) {
                        Ok(200..=299) => {
                            lines_ok.fetch_add(offsets.len() as u64, Ordering::Relaxed);
                        }
                        Ok(status) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            if failures.load(Ordering::Relaxed) < 5 {
                                eprintln!("loadgen: status {status}");
                            }
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("loadgen: {e:#}; reconnecting");
                            conn = BufReader::new(TcpStream::connect(&args.host)?);
                        }
                    }
                    latencies.push(t0.elapsed());
                }
                Ok(latencies)
            },
        ));
    }
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline && !workers.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => eprintln!("loadgen: worker failed: {e:#}"),
            Err(_) => eprintln!("loadgen: worker panicked"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ok = lines_ok.load(Ordering::Relaxed);
    println!(
        "lines_ok={ok} seconds={elapsed:.2} lines_per_sec={:.0} requests={} failures={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        ok as f64 / elapsed,
        latencies.len(),
        failures.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
