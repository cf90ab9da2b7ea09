//! Realistic ClusterCockpit line protocol for the load generators
//! (`loadgen`, `natsgen`): per host and interval 72 hwthreads × 3 metrics,
//! 2 sockets × 2 metrics and 10 node metrics (230 lines). Bodies are built
//! once with a 10-digit timestamp placeholder; senders copy a template and
//! [`stamp`] it, so they spend their CPU on sending, not on formatting.

/// Lines per host per interval.
pub const LINES_PER_HOST: usize = 72 * 3 + 2 * 2 + 10;

/// A body and the offsets of its lines' timestamps.
pub type Template = (Vec<u8>, Vec<usize>);

/// The bodies of one interval of `hosts` hosts, `batch_lines` lines each at
/// most: whole hosts per body when a batch holds at least one host, else
/// each host's lines cut in order.
pub fn templates(hosts: usize, batch_lines: usize) -> Vec<Template> {
    let hosts_per_batch = if batch_lines < LINES_PER_HOST {
        hosts
    } else {
        batch_lines / LINES_PER_HOST
    }
    .max(1);
    let batches = hosts.div_ceil(hosts_per_batch);
    let mut seed = 42;
    (0..batches)
        .map(|b| {
            let first = b * hosts_per_batch;
            batch(first, hosts_per_batch.min(hosts - first), &mut seed)
        })
        .flat_map(|t| split_lines(t, batch_lines))
        .collect()
}

/// One interval of `hosts` hosts starting at `first_host`, with a 10-digit
/// timestamp placeholder whose offsets are returned.
fn batch(first_host: usize, hosts: usize, seed: &mut u64) -> Template {
    let mut out = Vec::with_capacity(hosts * LINES_PER_HOST * 90);
    let mut ts_offsets = Vec::with_capacity(hosts * LINES_PER_HOST);
    let mut line = |out: &mut Vec<u8>, prefix: String, seed: &mut u64| {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let v = (*seed >> 40) % 100_000;
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(format!(" value={}.{} ", v / 100, v % 100).as_bytes());
        ts_offsets.push(out.len());
        out.extend_from_slice(b"0000000000\n");
    };
    for h in first_host..first_host + hosts {
        let host = format!("f{h:04}");
        for metric in ["cpu_load", "cpu_user", "flops_any"] {
            for t in 0..72 {
                line(
                    &mut out,
                    format!("{metric},hostname={host},type=hwthread,type-id={t}"),
                    seed,
                );
            }
        }
        for metric in ["mem_bw", "cpu_power"] {
            for s in 0..2 {
                line(
                    &mut out,
                    format!("{metric},hostname={host},type=socket,type-id={s}"),
                    seed,
                );
            }
        }
        for metric in [
            "mem_used",
            "net_bytes_in",
            "net_bytes_out",
            "ib_recv",
            "ib_xmit",
            "lustre_read_bw",
            "lustre_write_bw",
            "nfs4_total",
            "disk_free",
            "load_one",
        ] {
            line(
                &mut out,
                format!("{metric},hostname={host},type=node"),
                seed,
            );
        }
    }
    (out, ts_offsets)
}

/// Splits a template into pieces of at most `max_lines` lines (a host's
/// lines in several requests, when a batch is smaller than one host).
fn split_lines(template: Template, max_lines: usize) -> Vec<Template> {
    let (body, offsets) = template;
    if max_lines == 0 || offsets.len() <= max_lines {
        return vec![(body, offsets)];
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    for chunk in offsets.chunks(max_lines) {
        // A line ends 11 bytes after its timestamp offset ("0000000000\n").
        let end = chunk.last().map_or(start, |last| last + 11);
        let piece = body.get(start..end).unwrap_or_default().to_vec();
        pieces.push((piece, chunk.iter().map(|o| o - start).collect()));
        start = end;
    }
    pieces
}

/// Writes `ts` (10 digits) at every timestamp offset of `body`.
pub fn stamp(body: &mut [u8], offsets: &[usize], ts: i64) {
    let digits = format!("{ts:010}");
    for &off in offsets {
        if let Some(slot) = body.get_mut(off..off + 10) {
            slot.copy_from_slice(digits.as_bytes());
        }
    }
}
