//! Writes a synthetic checkpoint directory for the restore benchmark.
//!
//!     cargo run --release -p cc-store --example gen-checkpoints -- DIR [HOSTS] [METRICS] [HOURS] [FORMAT]
//!
//! `HOSTS` nodes of cluster `bench` (default 1000) with `METRICS` metrics
//! `m0`, `m1`, … (default 20) at 60 s for the last `HOURS` hours (default
//! 48), as one snapshot per 12 hours and host, in `bin` (default) or `json`.

use std::path::PathBuf;

use cc_store::persist::snapshot::{self, Format, SnapLevel, SnapMetric, Snapshot};
use cc_store::persist::write_atomically;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: gen-checkpoints DIR [HOSTS] [METRICS] [HOURS] [bin|json]");
        std::process::exit(2);
    };
    let num = |i: usize, default: i64| {
        args.get(i)
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let (hosts, metrics, hours) = (num(1, 1000), num(2, 20), num(3, 48));
    let format = match args.get(4).map(String::as_str) {
        Some("json") => Format::Json,
        _ => Format::Bin,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let window = 12 * 3600;
    let first = now - hours * 3600 + 60;
    let mut bytes = 0u64;
    for h in 0..hosts {
        let host_dir = dir.join("bench").join(format!("n{h}"));
        let mut from = first;
        while from < now {
            let to = (from + window).min(now);
            let slots = usize::try_from((to - from) / 60).unwrap_or(0);
            let mut root = SnapLevel::default();
            for m in 0..metrics {
                let data = (0..slots)
                    .map(|i| ((h * 7 + m * 13) as f64 + i as f64 * 0.25) % 1000.0)
                    .collect();
                root.metrics.insert(
                    format!("m{m}"),
                    SnapMetric {
                        frequency: 60,
                        start: from,
                        data,
                    },
                );
            }
            let snap = Snapshot { from, to, root };
            let path = host_dir.join(format!("{from}.{}", format.extension()));
            write_atomically(&path, |out| snapshot::write(format, &snap, out))?;
            bytes += std::fs::metadata(&path)?.len();
            from = to;
        }
    }
    println!(
        "wrote {hosts} hosts × {metrics} metrics × {hours} h: {:.1} MB under {}",
        bytes as f64 / 1e6,
        dir.display()
    );
    Ok(())
}
