//! Line processing benchmark: one collector batch through
//! [`cc_relay::process::process`] with the default rules and one `ccms-http`
//! upstream (validation profile `ccms`, as the default configuration with a
//! store upstream has it), the way every HTTP request is handled.
//!
//! `process/1000_lines`: 1 000 lines of ClusterCockpit collector output
//! (hwthread, socket and node metrics of a few hosts, ~85 bytes each, second
//! timestamps, no `cluster` tag: the request's `?cluster=` supplies it).
//!
//! Run: `cargo bench -p cc-relay --bench process`.

#![expect(
    clippy::indexing_slicing,
    reason = "indices are within fixed-size setup data"
)]

use std::fmt::Write as _;
use std::hint::black_box;

use cc_relay::config::{UpstreamFilter, ValidateProfile};
use cc_relay::process::{Context, Rules, Target, process};
use criterion::{Criterion, Throughput};

const LINES: usize = 1_000;
const TS: i64 = 1_718_000_000;

fn collector_lines(n: usize) -> Vec<u8> {
    let mut out = String::with_capacity(n * 90);
    let mut x: u64 = 42;
    for i in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let host = i / 230;
        let v = (x >> 40) % 100_000;
        let (metric, kind, id) = match i % 230 {
            k @ 0..216 => (
                ["cpu_load", "cpu_user", "flops_any"][k / 72],
                "hwthread",
                k % 72,
            ),
            k @ 216..220 => (["mem_bw", "cpu_power"][(k - 216) / 2], "socket", k % 2),
            k => ("net_bytes_in", "node", k),
        };
        let _ = if kind == "node" {
            writeln!(
                out,
                "{metric},hostname=f{host:04},type=node value={}.{} {TS}",
                v / 100,
                v % 100
            )
        } else {
            writeln!(
                out,
                "{metric},hostname=f{host:04},type={kind},type-id={id} value={}.{} {TS}",
                v / 100,
                v % 100
            )
        };
    }
    out.into_bytes()
}

fn main() {
    let body = collector_lines(LINES);
    let rules = Rules {
        validate: ValidateProfile::Ccms,
        ..Rules::default()
    };
    let ctx = Context {
        default_cluster: Some("fritz".to_owned()),
        precision: None,
        now_ns: i128::from(TS) * 1_000_000_000,
    };
    let targets = [Target {
        name: "store".to_owned(),
        ccms: true,
        filter: UpstreamFilter::default(),
    }];
    let check = process(&body, &rules, &ctx, &targets);
    assert_eq!(check.accepted, LINES as u64, "every line is accepted");

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("1000_lines", |b| {
        b.iter(|| {
            let out = process(black_box(&body), &rules, &ctx, &targets);
            black_box(out.routed.first().map(|r| r.lines.len()))
        });
    });
    group.finish();
    c.final_summary();
}
