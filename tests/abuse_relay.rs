//! cc-relay's HTTP ingress abused the ways a compute network can abuse it:
//! bytes trickled one at a time, thousands of idle connections, a line of
//! 100 MB, compression bombs, bytes that are not UTF-8, timestamps and
//! values at the edges of their types, ten thousand hosts in one batch and
//! one client flooding the relay. Each test checks the answer the spec asks
//! for (`relay.md` §4.3, §4.5) and that a well-behaved collector, posting
//! and reading `/status` all along, keeps being served.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::abuse::{
    Bystander, Flood, ensure_open_files, expect_status, idle_connections_are_held_then_freed,
    oversized_heads, peak_rss, send_raw, trickle, trickle_on,
};
use common::{Process, Stub, metric, now, relay_config, start_relay, wait_for};
use serde_json::{Value, json};

/// Time between two trickled bytes.
const PAUSE: Duration = Duration::from_millis(100);
/// How long a trickling client waits for the server after its last byte.
const WAIT: Duration = Duration::from_secs(5);

/// Small limits and timeouts, so that every abuse is cut off quickly.
fn config(stub: &Stub) -> Value {
    let mut config = relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
        "batch": {"linger": "20ms"},
        "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"}
    }]));
    config["ingress"]["http"][0] = json!({
        "name": "local",
        "header_read_timeout": "1s",
        "idle_timeout": "1s",
        "body_read_timeout": "1s",
        "max_body_bytes": "1MiB",
        "max_decompressed_bytes": "8MiB",
        "max_line_bytes": "64KiB"
    });
    config
}

/// A collector that behaves: posts one line and reads `/status`, both
/// answered 200.
fn collector(relay: &Process, admin: &str) -> Bystander {
    let (ingress, admin) = (relay.addr.clone(), admin.to_owned());
    Bystander::start(move |n| {
        let body = format!(
            "cpu_load,hostname=bystander,type=node value={n} {}\n",
            now()
        );
        let r = expect_status(
            &ingress,
            "POST",
            "/api/write?cluster=c",
            &[],
            body.as_bytes(),
            200,
        )?;
        if r.header("x-cc-relay-accepted") != Some("1") {
            return Err(format!("line not accepted: {:?}", r.headers));
        }
        expect_status(&admin, "GET", "/status", &[], b"", 200).map(drop)
    })
}

/// Lines of the bystander the stub received.
fn bystander_lines(stub: &Stub) -> usize {
    stub.delivered_lines()
        .iter()
        .filter(|l| l.contains("hostname=bystander"))
        .count()
}

/// `ccrelay_ingest_invalid_lines_total` for one reason.
fn invalid(admin: &str, reason: &str) -> f64 {
    let text = common::http(admin, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    text.lines()
        .filter(|l| {
            l.starts_with("ccrelay_ingest_invalid_lines_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn trickled_headers_are_cut_off_at_the_header_timeout() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let head = b"POST /api/write?cluster=c HTTP/1.1\r\nHost: relay\r\nContent-Length: 30\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = relay.addr.clone();
            std::thread::spawn(move || trickle(&addr, head, PAUSE, WAIT))
        })
        .collect();
    bystander.expect_served(5, Duration::from_secs(10));
    for t in slow {
        let t = t.join().unwrap();
        assert!(
            t.sent < head.len(),
            "the relay waited for all {} header bytes: {t:?}",
            head.len()
        );
        assert!(
            t.lasted >= Duration::from_millis(900) && t.lasted < Duration::from_secs(4),
            "header_read_timeout is 1 s: {t:?}"
        );
        if let Some(answer) = &t.answer {
            assert_eq!(answer.status, 408, "{}", answer.text());
        }
    }
    assert!(bystander.finish() >= 5);
    assert!(wait_for(Duration::from_secs(10), || bystander_lines(&stub) > 0));
}

#[test]
fn oversized_headers_get_431() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    for (addr, path) in [
        (relay.addr.as_str(), "/api/write?cluster=c"),
        (admin.as_str(), "/status"),
    ] {
        for (what, request) in oversized_heads("POST", path) {
            let (answer, _) = send_raw(addr, request);
            let answer = answer.unwrap_or_else(|| panic!("{what} to {path}: no answer"));
            assert_eq!(answer.status, 431, "{what} to {path}");
        }
        bystander.expect_served(2, Duration::from_secs(5));
    }
    bystander.finish();
}

#[test]
fn trickled_bodies_get_408_at_the_body_timeout() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let body = format!("cpu_load,hostname=slow,type=node value=1 {}\n", now());
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let (addr, body) = (relay.addr.clone(), body.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                let head = format!(
                    "POST /api/write?cluster=c HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                trickle_on(stream, body.as_bytes(), PAUSE, WAIT)
            })
        })
        .collect();
    bystander.expect_served(5, Duration::from_secs(10));
    for t in slow {
        let t = t.join().unwrap();
        let (sent, lasted) = (t.sent, t.lasted);
        assert!(sent < body.len(), "all of the body was taken: {sent}");
        let answer = t.answer.expect("an answer before the connection closes");
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (408, "request body not received in time\n")
        );
        assert!(
            lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(4),
            "body_read_timeout is 1 s: {lasted:?}"
        );
    }
    assert!(bystander.finish() >= 5);
    assert!(
        !stub
            .delivered_lines()
            .iter()
            .any(|l| l.contains("hostname=slow")),
        "nothing of a body that never arrived is forwarded"
    );
}

#[test]
fn slow_bodies_do_not_take_every_request_slot() {
    let stub = Stub::start();
    let mut config = config(&stub);
    config["ingress"]["http"][0]["max_concurrent_requests"] = json!(4);
    config["ingress"]["http"][0]["body_read_timeout"] = json!("5s");
    config["ingress"]["http"][0]["ack_timeout"] = json!("1s");
    let (relay, admin) = start_relay(config);
    let (sent_head, heads) = std::sync::mpsc::channel();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = relay.addr.clone();
            let sent_head = sent_head.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream
                    .write_all(b"POST /api/write?cluster=c HTTP/1.1\r\nHost: relay\r\nContent-Length: 40\r\n\r\n")
                    .unwrap();
                sent_head.send(()).unwrap();
                trickle_on(stream, &[b'x'; 40], PAUSE, WAIT)
            })
        })
        .collect();
    // The slow requests are in (as many as there are slots); the client
    // needs three rounds while their bodies take four seconds.
    for _ in 0..4 {
        heads.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    let bystander = collector(&relay, &admin);
    bystander.expect_served(3, Duration::from_secs(4));
    bystander.finish();
    for t in slow {
        // Each slow body is answered once it is in (it is not line
        // protocol: 400).
        let trickled = t.join().unwrap();
        assert_eq!(trickled.sent, 40);
        assert_eq!(trickled.answer.map(|a| a.status), Some(400));
    }
}

#[test]
fn five_thousand_idle_connections_are_held_then_closed() {
    const IDLE: usize = 5000;
    // The test holds IDLE sockets and so does the relay (it inherits the
    // limit when started afterwards).
    ensure_open_files(IDLE as u64 + 1000);
    let stub = Stub::start();
    let mut config = config(&stub);
    // Long enough to open them all and be served meanwhile.
    config["ingress"]["http"][0]["idle_timeout"] = json!("6s");
    config["ingress"]["http"][0]["header_read_timeout"] = json!("6s");
    let (relay, admin) = start_relay(config);
    let bystander = collector(&relay, &admin);
    idle_connections_are_held_then_freed(relay.pid(), &relay.addr, IDLE, bystander);
}

/// The start and the end of one `cpu_load` line whose host name goes in
/// between.
fn long_line_parts(t: i64) -> (String, String) {
    (
        "cpu_load,cluster=c,type=node,hostname=".to_owned(),
        format!(" value=1 {t}\n"),
    )
}

#[test]
fn a_100_mb_line_is_refused_whole_or_as_too_long() {
    const LINE: usize = 100 * 1024 * 1024;
    let stub = Stub::start();
    let mut config = config(&stub);
    // Room for the compressed line to be decoded, so that the line limit
    // is what refuses it.
    config["ingress"]["http"][0]["max_decompressed_bytes"] = json!("128MiB");
    let (relay, admin) = start_relay(config);
    let bystander = collector(&relay, &admin);

    // Sent as it is: the body limit (1 MiB) answers 413 long before the
    // end of the line.
    let (head, tail) = long_line_parts(now());
    let mut stream = TcpStream::connect(&relay.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let head = head.clone();
        std::thread::spawn(move || {
            let request = format!(
                "POST /api/write?cluster=c HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{head}",
                head.len() + LINE + 12
            );
            let mut sent = 0;
            if stream.write_all(request.as_bytes()).is_err() {
                return sent;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while sent < LINE {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    };
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let sent = writer.join().unwrap();
    let answer = common::parse_response_bytes(&raw).expect("an answer");
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "body larger than 1048576 bytes\n")
    );
    assert!(sent < LINE / 2, "the relay read {sent} bytes of the line");
    bystander.expect_served(3, Duration::from_secs(5));

    // Compressed (0.1 MB of zstd frames): decoded within the limit, the
    // line is longer than max_line_bytes and nothing of it is stored.
    let mut body = zstd::bulk::compress(head.as_bytes(), 1).unwrap();
    let filler = zstd::bulk::compress(&vec![b'x'; 1024 * 1024], 1).unwrap();
    for _ in 0..LINE / (1024 * 1024) {
        body.extend_from_slice(&filler);
    }
    body.extend(zstd::bulk::compress(tail.as_bytes(), 1).unwrap());
    let good = format!("cpu_load,hostname=h,type=node value=2 {}\n", now());
    body.extend(zstd::bulk::compress(good.as_bytes(), 1).unwrap());
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("Content-Encoding", "zstd")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.header("x-cc-relay-accepted"),
            r.header("x-cc-relay-rejected")
        ),
        (Some("1"), Some("1")),
        "the line after the long one is kept"
    );
    assert_eq!(invalid(&admin, "too_long"), 1.0);
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
    assert!(wait_for(Duration::from_secs(10), || {
        stub.delivered_lines().iter().any(|l| l.contains("value=2"))
    }));
    assert!(
        stub.requests().iter().all(|s| s.body.len() < 1024 * 1024),
        "no part of the long line is forwarded"
    );
}

/// `n` MiB of zeros as `n` concatenated members/frames of the encoding.
fn bomb(encoding: &str, mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1024 * 1024];
    let one = match encoding {
        "gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&zeros).unwrap();
            gz.finish().unwrap()
        }
        _ => zstd::bulk::compress(&zeros, 3).unwrap(),
    };
    one.repeat(mib)
}

#[test]
fn gzip_and_zstd_bombs_get_413_without_being_decoded_whole() {
    let stub = Stub::start();
    let mut config = config(&stub);
    // Room for the compressed bombs: the decoded size is what refuses them.
    config["ingress"]["http"][0]["max_body_bytes"] = json!("2MiB");
    let (relay, admin) = start_relay(config);
    let bystander = collector(&relay, &admin);
    let rss_before = peak_rss(relay.pid());
    for encoding in ["gzip", "zstd"] {
        // 1 GiB of zeros each, in about 1 MB (gzip) or 40 KB (zstd).
        let body = bomb(encoding, 1024);
        assert!(body.len() < 2 * 1024 * 1024, "{encoding}: {}", body.len());
        let bombers: Vec<_> = (0..8)
            .map(|_| {
                let (addr, body) = (relay.addr.clone(), body.clone());
                std::thread::spawn(move || {
                    common::http(
                        &addr,
                        "POST",
                        "/api/write?cluster=c",
                        &[("Content-Encoding", encoding)],
                        &body,
                    )
                    .unwrap()
                })
            })
            .collect();
        bystander.expect_served(3, Duration::from_secs(10));
        for b in bombers {
            let r = b.join().unwrap();
            assert_eq!(
                (r.status, r.text().as_str()),
                (413, "decoded body larger than 8388608 bytes\n"),
                "{encoding}"
            );
        }
    }
    let grown = peak_rss(relay.pid()).saturating_sub(rss_before);
    assert!(
        grown < 256 * 1024 * 1024,
        "16 bombs of 1 GiB with an 8 MiB limit grew the relay's peak memory by {} MiB",
        grown / 1024 / 1024
    );
    // Members and frames after the first are read, not dropped: a body of
    // several gzip members is decoded whole.
    let t = now();
    let mut body = Vec::new();
    for host in ["a", "b"] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(format!("cpu_load,hostname={host},type=node value=1 {t}\n").as_bytes())
            .unwrap();
        body.extend(gz.finish().unwrap());
    }
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cc-relay-accepted"), Some("2"));
    bystander.finish();
}

#[test]
fn invalid_utf8_in_tags_rejects_those_lines_only() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let t = now();
    let mut body = Vec::new();
    body.extend(format!("cpu_load,hostname=good,type=node value=1 {t}\n").as_bytes());
    body.extend(b"cpu_load,hostname=bad\xff\xfe,type=node value=2 ");
    body.extend(format!("{t}\n").as_bytes());
    body.extend(b"cpu_load,hostname=h,type\xc3\x28=node value=3 ");
    body.extend(format!("{t}\n").as_bytes());
    body.extend(b"cpu_\xed\xa0\x80load,hostname=h,type=node value=4 ");
    body.extend(format!("{t}\n").as_bytes());
    body.extend(format!("cpu_load,hostname=good2,type=node value=5 {t}\n").as_bytes());
    let r = relay.request("POST", "/api/write?cluster=c", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.header("x-cc-relay-accepted"),
            r.header("x-cc-relay-rejected")
        ),
        (Some("2"), Some("3"))
    );
    assert_eq!(invalid(&admin, "syntax"), 3.0);
    // Only invalid lines: 400 with the reason.
    let r = relay.request(
        "POST",
        "/api/write?cluster=c",
        &[],
        b"cpu_load,hostname=\xff value=1 1\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("no valid line: "), "{}", r.text());
    assert!(r.text().contains("UTF-8"), "{}", r.text());
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
    assert!(wait_for(Duration::from_secs(10), || {
        let lines = stub.delivered_lines();
        lines.iter().any(|l| l.contains("hostname=good,"))
            && lines.iter().any(|l| l.contains("hostname=good2,"))
    }));
    let forwarded = stub.requests();
    assert!(
        forwarded
            .iter()
            .all(|s| std::str::from_utf8(&s.body).is_ok()),
        "only UTF-8 reaches the store"
    );
}

#[test]
fn timestamps_at_the_i64_limits_are_invalid_not_fatal() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let t = now();
    let edges = [
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999",
        "-1",
        "0",
    ];
    for precision in [
        "",
        "&precision=s",
        "&precision=ms",
        "&precision=us",
        "&precision=ns",
    ] {
        let mut body: String = edges
            .iter()
            .map(|ts| format!("cpu_load,hostname=edge,type=node value=1 {ts}\n"))
            .collect();
        body.push_str(&format!("cpu_load,hostname=ok,type=node value=1 {t}\n"));
        let query = format!("/api/write?cluster=c{precision}");
        let r = relay.request("POST", &query, &[], body.as_bytes());
        // The current second is valid only in seconds or with detection.
        let in_seconds = precision.is_empty() || precision == "&precision=s";
        let accepted = if in_seconds { "1" } else { "0" };
        let status = if in_seconds { 200 } else { 400 };
        assert_eq!(r.status, status, "{query}: {}", r.text());
        assert_eq!(
            (
                r.header("x-cc-relay-accepted"),
                r.header("x-cc-relay-rejected")
            ),
            (Some(accepted), Some(if in_seconds { "7" } else { "8" })),
            "{query}"
        );
        bystander.expect_served(1, Duration::from_secs(5));
    }
    bystander.finish();
    let delivered = stub.delivered_lines();
    assert!(
        !delivered.iter().any(|l| l.contains("hostname=edge")),
        "{delivered:?}"
    );
}

#[test]
fn nan_and_infinite_values_are_invalid_lines() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let t = now();
    let bad = [
        "NaN", "nan", "Inf", "+Inf", "-Inf", "inf", "infinity", "1e400", "-1e400", "1e99999",
    ];
    let mut body: String = bad
        .iter()
        .map(|v| format!("cpu_load,hostname=bad,type=node value={v} {t}\n"))
        .collect();
    body.push_str(&format!(
        "cpu_load,hostname=big,type=node value=1.7976931348623157e308 {t}\n"
    ));
    body.push_str(&format!(
        "cpu_load,hostname=tiny,type=node value=5e-324 {t}\n"
    ));
    let r = relay.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.header("x-cc-relay-accepted"),
            r.header("x-cc-relay-rejected")
        ),
        (Some("2"), Some(&*bad.len().to_string()))
    );
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
    assert!(wait_for(Duration::from_secs(10), || {
        stub.delivered_lines()
            .iter()
            .filter(|l| l.contains("hostname=big") || l.contains("hostname=tiny"))
            .count()
            == 2
    }));
    assert!(
        !stub
            .delivered_lines()
            .iter()
            .any(|l| l.contains("hostname=bad"))
    );
}

#[test]
fn ten_thousand_hosts_in_one_batch_are_all_forwarded() {
    const HOSTS: usize = 10_000;
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    let bystander = collector(&relay, &admin);
    let t = now();
    let body: String = (0..HOSTS)
        .map(|h| format!("cpu_load,hostname=n{h:05},type=node value={h} {t}\n"))
        .collect();
    assert!(body.len() < 1024 * 1024);
    let r = relay.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cc-relay-accepted"), Some("10000"));
    bystander.expect_served(3, Duration::from_secs(5));
    let all = wait_for(Duration::from_secs(15), || {
        stub.delivered_lines()
            .iter()
            .filter(|l| l.contains("hostname=n"))
            .count()
            >= HOSTS
    });
    bystander.finish();
    let mut hosts: Vec<String> = stub
        .delivered_lines()
        .iter()
        .filter_map(|l| {
            l.split(',')
                .find_map(|p| p.strip_prefix("hostname=n"))
                .map(str::to_owned)
        })
        .collect();
    assert!(all, "{} of {HOSTS} lines delivered", hosts.len());
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), HOSTS, "every host once at least");
}

#[test]
fn a_flooding_client_leaves_others_their_share() {
    let stub = Stub::start();
    let mut config = config(&stub);
    // Few slots, so that the flood keeps them all busy.
    config["ingress"]["http"][0]["max_concurrent_requests"] = json!(2);
    let (relay, admin) = start_relay(config);
    let t = now();
    let batch: String = (0..2000)
        .map(|i| format!("cpu_load,hostname=flood{i},type=node value={i} {t}\n"))
        .collect();
    let flood = Flood::start(&relay.addr, "/api/write?cluster=c", 16, batch);
    // The flood is on before the collector comes.
    assert!(wait_for(Duration::from_secs(5), || metric(
        &admin,
        "ccrelay_ingest_requests_total{"
    ) >= 16.0));
    let bystander = collector(&relay, &admin);
    bystander.expect_served(20, Duration::from_secs(15));
    let served = bystander.finish();
    let flood = flood.finish();
    assert!(
        flood.keys().all(|s| s == "200" || s == "503"),
        "the flood got {flood:?}"
    );
    assert!(
        flood.get("200").copied().unwrap_or(0) >= served,
        "the flood was served too: {flood:?}"
    );
}

#[test]
fn a_body_broken_off_is_counted_as_a_bad_request_not_as_too_large() {
    let stub = Stub::start();
    let (relay, admin) = start_relay(config(&stub));
    {
        use std::io::Write as _;
        let mut conn = std::net::TcpStream::connect(&relay.addr).unwrap();
        conn.write_all(
            b"POST /api/write?cluster=c HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm,h",
        )
        .unwrap();
        // Gone with 97 bytes of the body missing.
    }
    assert!(
        wait_for(Duration::from_secs(5), || metric(
            &admin,
            "ccrelay_ingest_requests_total{ingress=\"local\",code=\"400\"}"
        ) == 1.0),
        "{}",
        relay.log_text()
    );
    assert_eq!(
        metric(
            &admin,
            "ccrelay_ingest_requests_total{ingress=\"local\",code=\"413\"}"
        ),
        0.0
    );
}
