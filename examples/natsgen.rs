//! NATS load generator: publishes realistic ClusterCockpit line protocol to
//! a subject, as collectors with a NATS sink do, and reports published lines
//! per second. With `--subscribe` it also subscribes to the subject on a
//! connection of its own and reports the lines it received per second: the
//! raw nats-server publish/subscribe throughput on this machine, the ceiling
//! for anything that takes the same messages.
//!
//! A message is one host's interval by default (`--batch-lines 230`: 72
//! hwthreads × 3 metrics, 2 sockets × 2 metrics, 10 node metrics), as a
//! collector publishes it; the line shapes are those of `loadgen`. Messages
//! are built once; only their timestamps change (round `r` of the `--hosts`
//! hosts carries `start + r × step`).
//!
//! ```text
//! cargo run --release --example natsgen -- \
//!     --server nats://127.0.0.1:4222 --subject metrics.fritz \
//!     --connections 2 --duration 10s --subscribe
//! ```
//!
//! `--rate` paces the publishers (messages per second in all), `--messages`
//! stops after that many messages, and `--final LINE` publishes one more
//! message after everything else has reached the server (a marker whose
//! arrival at a subscriber shows that all before it arrived).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt as _;

#[path = "common/lines.rs"]
mod lines;

/// How long after `--duration` the publishers may take to finish.
const GRACE: Duration = Duration::from_secs(30);

struct Args {
    server: String,
    subject: String,
    connections: usize,
    batch_lines: usize,
    hosts: usize,
    duration: Duration,
    messages: u64,
    rate: f64,
    start: i64,
    step: i64,
    subscribe: bool,
    final_line: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1_700_000_000, |d| d.as_secs() as i64);
    let mut args = Args {
        server: "nats://127.0.0.1:4222".into(),
        subject: "metrics.fritz".into(),
        connections: 1,
        batch_lines: lines::LINES_PER_HOST,
        hosts: 1000,
        duration: Duration::from_secs(10),
        messages: u64::MAX,
        rate: 0.0,
        start: now - 86_400,
        step: 60,
        subscribe: false,
        final_line: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value()?,
            "--subject" => args.subject = value()?,
            "--connections" => args.connections = value()?.parse()?,
            "--batch-lines" => args.batch_lines = value()?.parse()?,
            "--hosts" => args.hosts = value()?.parse()?,
            "--duration" => args.duration = humantime::parse_duration(&value()?)?,
            "--messages" => args.messages = value()?.parse()?,
            "--rate" => args.rate = value()?.parse()?,
            "--start" => args.start = value()?.parse()?,
            "--step" => args.step = value()?.parse()?,
            "--subscribe" => args.subscribe = true,
            "--final" => args.final_line = Some(value()?),
            "--help" | "-h" => {
                println!(
                    "natsgen [--server nats://HOST:PORT] [--subject S] [--connections N] \
                     [--batch-lines N] [--hosts N] [--duration 10s] [--messages N] \
                     [--rate MESSAGES_PER_SEC (0: flat out)] [--start UNIX] [--step SECONDS] \
                     [--subscribe] [--final LINE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if args.connections == 0 || args.batch_lines == 0 || args.hosts == 0 {
        bail!("--connections, --batch-lines and --hosts must be positive");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a number ≥ 0");
    }
    Ok(args)
}

/// Counters shared by the publishers and the subscriber.
#[derive(Default)]
struct Counts {
    published_messages: AtomicU64,
    published_lines: AtomicU64,
    received_messages: AtomicU64,
    received_lines: AtomicU64,
    /// Nanoseconds after the start when the last message arrived.
    last_received: AtomicU64,
    slow_consumer: AtomicU64,
    disconnects: AtomicU64,
}

async fn connect(
    args: &Args,
    name: &str,
    counts: &Arc<Counts>,
) -> anyhow::Result<async_nats::Client> {
    let events = Arc::clone(counts);
    async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |event| {
            let events = Arc::clone(&events);
            async move {
                match event {
                    async_nats::Event::SlowConsumer(_) => {
                        events.slow_consumer.fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Disconnected => {
                        events.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
        .connect(&args.server)
        .await
        .with_context(|| format!("connecting to {}", args.server))
}

/// What the publishers share.
struct Publishing {
    args: Arc<Args>,
    templates: Vec<lines::Template>,
    /// The next message's number (all connections together).
    next: AtomicU64,
    counts: Arc<Counts>,
    stop: AtomicBool,
    /// Messages per second per connection (0: flat out).
    rate: f64,
    started: Instant,
}

/// Publishes until the deadline, the message limit or `stop`; paced to
/// `rate` messages per second when it is positive. Returns once what it
/// published has reached the server.
async fn publish(client: async_nats::Client, p: Arc<Publishing>) -> anyhow::Result<()> {
    let Publishing {
        args,
        templates,
        next,
        counts,
        stop,
        rate,
        started,
    } = &*p;
    let subject = async_nats::Subject::from(args.subject.as_str());
    let count = templates.len() as u64;
    let mut sent = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        if *rate > 0.0 {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if sent >= due {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= args.messages {
            break;
        }
        let Some((template, offsets)) = templates.get((n % count) as usize) else {
            break;
        };
        let mut body = template.clone();
        let round = i64::try_from(n / count).unwrap_or(0);
        lines::stamp(&mut body, offsets, args.start + round * args.step);
        client.publish(subject.clone(), body.into()).await?;
        sent += 1;
        counts.published_messages.fetch_add(1, Ordering::Relaxed);
        counts
            .published_lines
            .fetch_add(offsets.len() as u64, Ordering::Relaxed);
    }
    client.flush().await?;
    Ok(())
}

/// Counts what arrives on `subscriber` (lines = newlines).
async fn receive(mut subscriber: async_nats::Subscriber, counts: Arc<Counts>, base: Instant) {
    while let Some(message) = subscriber.next().await {
        let lines = message.payload.iter().filter(|&&b| b == b'\n').count();
        counts.received_messages.fetch_add(1, Ordering::Relaxed);
        counts
            .received_lines
            .fetch_add(lines as u64, Ordering::Relaxed);
        let at = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counts.last_received.store(at, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(parse_args()?);
    let templates = lines::templates(args.hosts, args.batch_lines);
    let lines_per_round: usize = templates.iter().map(|(_, o)| o.len()).sum();
    let bytes_per_round: usize = templates.iter().map(|(b, _)| b.len()).sum();
    eprintln!(
        "natsgen: {} hosts, {} messages of ~{} lines (~{} bytes) per round, {} publisher connections, {}, {:?}{}",
        args.hosts,
        templates.len(),
        lines_per_round / templates.len().max(1),
        bytes_per_round / templates.len().max(1),
        args.connections,
        if args.rate > 0.0 {
            format!("{} messages/s", args.rate)
        } else {
            "flat out".to_owned()
        },
        args.duration,
        if args.subscribe { ", subscribing" } else { "" }
    );
    let counts = Arc::new(Counts::default());
    let base = Instant::now();

    let receiver = if args.subscribe {
        let client = connect(&args, "natsgen-sub", &counts).await?;
        let subscriber = client.subscribe(args.subject.clone()).await?;
        // The subscription is with the server before anything is published.
        client.flush().await?;
        Some((
            client,
            tokio::spawn(receive(subscriber, Arc::clone(&counts), base)),
        ))
    } else {
        None
    };

    let mut clients = Vec::new();
    for i in 0..args.connections {
        clients.push(connect(&args, &format!("natsgen-pub-{i}"), &counts).await?);
    }
    let publishing = Arc::new(Publishing {
        args: Arc::clone(&args),
        templates,
        next: AtomicU64::new(0),
        counts: Arc::clone(&counts),
        stop: AtomicBool::new(false),
        rate: args.rate / args.connections as f64,
        started: Instant::now(),
    });
    let started = publishing.started;
    let mut publishers = tokio::task::JoinSet::new();
    for client in &clients {
        publishers.spawn(publish(client.clone(), Arc::clone(&publishing)));
    }
    let stopper = {
        let publishing = Arc::clone(&publishing);
        tokio::spawn(async move {
            tokio::time::sleep(publishing.args.duration).await;
            publishing.stop.store(true, Ordering::Relaxed);
        })
    };
    // Publishers block while the server is gone (the client reconnects
    // forever): give up on them well after the deadline.
    let finished = tokio::time::timeout(args.duration + GRACE, async {
        while let Some(done) = publishers.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("natsgen: publisher failed: {e:#}"),
                Err(e) => eprintln!("natsgen: publisher panicked: {e}"),
            }
        }
    })
    .await;
    if finished.is_err() {
        bail!("the publishers did not finish {GRACE:?} after the deadline (is the server gone?)");
    }
    stopper.abort();
    let published_in = started.elapsed().as_secs_f64();
    if let (Some(line), Some(client)) = (&args.final_line, clients.first()) {
        tokio::time::timeout(GRACE, async {
            client
                .publish(
                    args.subject.clone(),
                    format!("{line}\n").into_bytes().into(),
                )
                .await?;
            client.flush().await?;
            anyhow::Ok(())
        })
        .await
        .context("publishing the final line timed out")??;
    }
    let published = counts.published_messages.load(Ordering::Relaxed);
    let published_lines = counts.published_lines.load(Ordering::Relaxed);
    let mut report = format!(
        "published_messages={published} published_lines={published_lines} seconds={published_in:.2} \
         pub_lines_per_sec={:.0} pub_messages_per_sec={:.0}",
        published_lines as f64 / published_in,
        published as f64 / published_in,
    );

    if let Some((_client, task)) = &receiver {
        // Everything has reached the server; wait until it has all arrived,
        // or nothing more arrived for a second (the rest was dropped).
        let expected = published + u64::from(args.final_line.is_some());
        let mut seen = counts.received_messages.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while seen < expected && quiet_since.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = counts.received_messages.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            }
        }
        task.abort();
        let last = Duration::from_nanos(counts.last_received.load(Ordering::Relaxed));
        let received_in = last.saturating_sub(started - base).as_secs_f64();
        let received_lines = counts.received_lines.load(Ordering::Relaxed);
        report.push_str(&format!(
            " received_messages={seen} received_lines={received_lines} recv_seconds={received_in:.2} \
             recv_lines_per_sec={:.0}",
            if received_in > 0.0 {
                received_lines as f64 / received_in
            } else {
                0.0
            }
        ));
    }
    report.push_str(&format!(
        " slow_consumer_events={} disconnects={}",
        counts.slow_consumer.load(Ordering::Relaxed),
        counts.disconnects.load(Ordering::Relaxed)
    ));
    println!("{report}");
    Ok(())
}
