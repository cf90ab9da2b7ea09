//! Query generator: sends a set of queries in turn, again and again, over
//! one keep-alive connection and reports each one's latency (median, p99,
//! maximum).
//!
//! ```text
//! cargo run --release --example querygen -- \
//!     --name node --url 'http://127.0.0.1:8082/api/query?version=v2' \
//!     --body '{"cluster":"fritz","from":…,"to":…,"queries":[…]}' \
//!     --name other --url … --body … \
//!     --duration 20s --pause 10ms
//! ```
//!
//! Each `--name` starts a query; `--url` and `--body` after it belong to it.
//! With a body the request is `GET` with that body, as cc-backend queries
//! cc-metric-store; without, a plain `GET` of the URL (e.g. a
//! VictoriaMetrics `query_range` URL). All URLs must name the same server. Every answer must be a 200 with a
//! body of at least `--min-bytes`, so that an empty or failing answer is
//! not mistaken for a fast one.

use std::io::BufReader;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[path = "common/http.rs"]
mod http;

struct Query {
    name: String,
    path: String,
    body: Vec<u8>,
    latencies: Vec<Duration>,
    bytes: usize,
}

struct Args {
    host: String,
    queries: Vec<Query>,
    duration: Duration,
    pause: Duration,
    min_bytes: usize,
    header: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        host: String::new(),
        queries: Vec::new(),
        duration: Duration::from_secs(10),
        pause: Duration::ZERO,
        min_bytes: 1,
        header: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => args.queries.push(Query {
                name: value()?,
                path: String::new(),
                body: Vec::new(),
                latencies: Vec::new(),
                bytes: 0,
            }),
            "--url" => {
                let (host, path) = http::split_url(&value()?)?;
                if !args.host.is_empty() && args.host != host {
                    bail!("every --url must name the same server");
                }
                args.host = host;
                args.queries.last_mut().context("--url before --name")?.path = path;
            }
            "--body" => {
                args.queries
                    .last_mut()
                    .context("--body before --name")?
                    .body = value()?.into_bytes();
            }
            "--duration" => args.duration = humantime::parse_duration(&value()?)?,
            "--pause" => args.pause = humantime::parse_duration(&value()?)?,
            "--min-bytes" => args.min_bytes = value()?.parse()?,
            "--header" => args.header.push(value()?),
            "--help" | "-h" => {
                println!(
                    "querygen (--name NAME --url http://HOST:PORT/PATH [--body JSON])... \
                     [--duration 10s] [--pause 0ms] [--min-bytes 1] [--header 'K: V']"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if args.queries.is_empty() || args.queries.iter().any(|q| q.path.is_empty()) {
        bail!("every query needs --name and --url");
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let mut args = parse_args()?;
    let mut conn = BufReader::new(TcpStream::connect(&args.host)?);
    conn.get_ref().set_nodelay(true)?;
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline {
        for q in &mut args.queries {
            let t0 = Instant::now();
            let (status, length) =
                http::request(&mut conn, "GET", &args.host, &q.path, &args.header, &q.body)?;
            q.latencies.push(t0.elapsed());
            if status != 200 || length < args.min_bytes {
                bail!(
                    "{}: answer {status} with {length} bytes (wanted 200 and at least {} bytes)",
                    q.name,
                    args.min_bytes
                );
            }
            q.bytes = length;
            if !args.pause.is_zero() {
                std::thread::sleep(args.pause);
            }
        }
    }
    for q in &mut args.queries {
        q.latencies.sort_unstable();
        let ms = |p: f64| {
            q.latencies
                .get(((q.latencies.len() as f64 - 1.0) * p) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "query={} queries={} answer_bytes={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            q.name,
            q.latencies.len(),
            q.bytes,
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
    }
    Ok(())
}
