//! cc-store's HTTP API abused the ways a compute network can abuse it:
//! bytes trickled one at a time, thousands of idle connections, a line of
//! 100 MB, huge and deeply nested query JSON, bytes that are not UTF-8,
//! timestamps and values at the edges of their types, ten thousand hosts in
//! one batch and one client flooding the store. Each test checks the answer
//! (`store.md` §3, and our `main.read-timeout`/`max-body-size`) and that a
//! well-behaved client, writing and querying all along, keeps being served.
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
    open_fds, oversized_heads, send_raw, trickle, trickle_on,
};
use common::{Process, now, start_store, start_store_in, store_config, wait_for};
use serde_json::{Value, json};

/// Small limits and timeouts, so that every abuse is cut off quickly.
fn config() -> Value {
    let mut config = store_config();
    config["main"] = json!({
        "read-timeout": "1s",
        "write-timeout": "1s",
        "max-body-size": "1MiB"
    });
    config
}

/// A client that behaves: writes one sample and queries its series, both
/// answered 200.
fn client(store: &Process) -> Bystander {
    let addr = store.addr.clone();
    Bystander::start(move |n| {
        let t = now();
        let line = format!("cpu_load,hostname=bystander,type=node value={n} {t}\n");
        expect_status(
            &addr,
            "POST",
            "/api/write?cluster=c",
            &[],
            line.as_bytes(),
            200,
        )?;
        let query = json!({
            "cluster": "c", "from": t - 600, "to": t + 60,
            "queries": [{"metric": "cpu_load", "host": "bystander"}]
        })
        .to_string();
        let r = expect_status(&addr, "GET", "/api/query", &[], query.as_bytes(), 200)?;
        let body: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        if body["results"][0][0]["data"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            return Err(format!("no data in {body}"));
        }
        Ok(())
    })
}

/// Queries `body` and parses the answer, which must be JSON.
fn query(store: &Process, body: &str) -> (u16, Value) {
    let r = store.request("GET", "/api/query", &[], body.as_bytes());
    let value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
    (r.status, value)
}

/// The store's debug dump, which must be JSON.
fn debug_dump(store: &Process) -> Value {
    let r = store.request("GET", "/api/debug", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn trickled_headers_are_cut_off_at_the_read_timeout() {
    let store = start_store(config());
    let bystander = client(&store);
    let head = b"GET /api/query HTTP/1.1\r\nHost: store\r\nContent-Length: 2\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n{}";
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = store.addr.clone();
            std::thread::spawn(move || {
                trickle(
                    &addr,
                    head,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                )
            })
        })
        .collect();
    bystander.expect_served(5, Duration::from_secs(10));
    for t in slow {
        let t = t.join().unwrap();
        assert!(
            t.sent < head.len() - 2,
            "the store waited for all {} header bytes: {t:?}",
            head.len() - 2
        );
        assert!(
            t.lasted >= Duration::from_millis(900) && t.lasted < Duration::from_secs(4),
            "read-timeout is 1 s: {t:?}"
        );
        if let Some(answer) = &t.answer {
            assert_eq!(answer.status, 408, "{}", answer.text());
        }
    }
    bystander.finish();
}

#[test]
fn oversized_headers_get_431() {
    let store = start_store(config());
    let bystander = client(&store);
    for (method, path) in [("POST", "/api/write?cluster=c"), ("GET", "/api/query")] {
        for (what, request) in oversized_heads(method, path) {
            let (answer, _) = send_raw(&store.addr, request);
            let answer = answer.unwrap_or_else(|| panic!("{what} to {path}: no answer"));
            assert_eq!(answer.status, 431, "{what} to {path}");
        }
    }
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
}

#[test]
fn trickled_bodies_get_408_at_the_deadline() {
    let store = start_store(config());
    let bystander = client(&store);
    let line = format!("cpu_load,hostname=slow,type=node value=1 {}\n", now());
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let (addr, line) = (store.addr.clone(), line.clone());
            std::thread::spawn(move || {
                let head = format!(
                    "POST /api/write?cluster=c HTTP/1.1\r\nHost: store\r\nContent-Length: {}\r\n\r\n",
                    line.len()
                );
                let mut request = head.into_bytes();
                let body_from = request.len();
                request.extend(line.as_bytes());
                // The head at once, then the body byte by byte.
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream.write_all(&request[..body_from]).unwrap();
                trickle_on(
                    stream,
                    &request[body_from..],
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                )
            })
        })
        .collect();
    bystander.expect_served(5, Duration::from_secs(10));
    for t in slow {
        let t = t.join().unwrap();
        let answer = t
            .answer
            .as_ref()
            .expect("an answer before the connection closes");
        assert_eq!(answer.status, 408, "{}", answer.text());
        assert_eq!(
            answer.json(),
            json!({"status": "Request Timeout", "error": "request not completed in time"})
        );
        // read-timeout + write-timeout.
        assert!(
            t.lasted >= Duration::from_millis(1900) && t.lasted < Duration::from_secs(5),
            "{t:?}"
        );
    }
    bystander.finish();
    let (_, answer) = query(
        &store,
        &json!({"cluster": "c", "from": now() - 600, "to": now() + 60,
                "queries": [{"metric": "cpu_load", "host": "slow"}]})
        .to_string(),
    );
    assert!(
        answer["results"][0][0]["data"].is_null(),
        "nothing of a body that never arrived is stored: {answer}"
    );
}

#[test]
fn five_thousand_idle_connections_are_held_then_closed() {
    const IDLE: usize = 5000;
    ensure_open_files(IDLE as u64 + 1000);
    let mut config = config();
    // Long enough to open them all and be served meanwhile.
    config["main"]["read-timeout"] = json!("6s");
    let store = start_store(config);
    let bystander = client(&store);
    idle_connections_are_held_then_freed(store.pid(), &store.addr, IDLE, bystander);
}

/// Posts one line of `len` bytes (a host name of `x`s) to `/api/write` as
/// a stream; returns the answer and how many bytes the store took.
fn post_long_line(store: &Process, len: usize) -> (Option<common::Response>, usize) {
    let head = "cpu_load,cluster=c,type=node,hostname=";
    let tail = format!(" value=1 {}\n", now());
    let mut stream = TcpStream::connect(&store.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let request = format!(
                "POST /api/write HTTP/1.1\r\nHost: store\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{head}",
                head.len() + len + tail.len()
            );
            if stream.write_all(request.as_bytes()).is_err() {
                return 0;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                if stream.write_all(&chunk[..n]).is_err() {
                    return sent;
                }
                sent += n;
            }
            let _ = stream.write_all(tail.as_bytes());
            sent
        })
    };
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    (common::parse_response_bytes(&raw), writer.join().unwrap())
}

#[test]
fn a_100_mb_line_gets_413_or_is_skipped() {
    const LINE: usize = 100 * 1024 * 1024;
    // Beyond max-body-size: refused before it is read.
    let store = start_store(config());
    let bystander = client(&store);
    let (answer, sent) = post_long_line(&store, LINE);
    let answer = answer.expect("an answer");
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(sent < LINE / 2, "the store read {sent} bytes of the line");
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
    drop(store);

    // Within the default limit (256 MiB): the line is read, and its host
    // name (a 100 MB directory name) never reaches the tree or the disk.
    let mut config = store_config();
    config["main"] = json!({"read-timeout": "20s"});
    let store = start_store(config);
    let bystander = client(&store);
    let (answer, sent) = post_long_line(&store, LINE);
    assert_eq!(sent, LINE);
    let answer = answer.expect("an answer");
    assert!(
        answer.status == 200 || answer.status == 400,
        "{} {}",
        answer.status,
        answer.text()
    );
    bystander.expect_served(3, Duration::from_secs(10));
    bystander.finish();
    let dump = debug_dump(&store);
    let hosts: Vec<&String> = dump["data"]["c"]
        .as_object()
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    assert!(
        hosts.iter().all(|h| h.len() < 1000),
        "a host name of {} bytes",
        hosts.iter().map(|h| h.len()).max().unwrap_or(0)
    );
}

#[test]
fn huge_and_deeply_nested_query_json_is_refused() {
    let store = start_store(config());
    let bystander = client(&store);
    let t = now();
    // Nesting a recursive parser would follow until its stack ends.
    for depth in [200, 100_000] {
        let nested = format!(
            "{{\"cluster\":\"c\",\"from\":0,\"to\":{t},\"queries\":[{}{}]}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        for (method, path) in [
            ("GET", "/api/query"),
            ("GET", "/api/healthcheck"),
            ("POST", "/api/free?to=1"),
        ] {
            let r = store.request(method, path, &[], nested.as_bytes());
            assert_eq!(r.status, 400, "{path} depth {depth}: {}", r.text());
        }
        let r = store.request(
            "GET",
            "/api/query",
            &[],
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).as_bytes(),
        );
        assert_eq!(r.status, 400, "objects nested {depth} deep: {}", r.text());
    }
    bystander.expect_served(3, Duration::from_secs(5));

    // Beyond max-body-size: 413.
    let many: Vec<Value> = (0..40_000)
        .map(|i| json!({"metric": "cpu_load", "host": format!("nobody{i}")}))
        .collect();
    let huge = json!({"cluster": "c", "from": t - 600, "to": t, "queries": many}).to_string();
    assert!(huge.len() > 1024 * 1024);
    let r = store.request("GET", "/api/query", &[], huge.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());

    // Within it: as many queries as fit, each answered.
    let many: Vec<Value> = (0..15_000)
        .map(|i| json!({"metric": "cpu_load", "host": format!("n{i}")}))
        .collect();
    let big = json!({"cluster": "c", "from": t - 600, "to": t, "queries": many}).to_string();
    assert!(big.len() < 1024 * 1024);
    let (status, answer) = query(&store, &big);
    assert_eq!(status, 200);
    assert_eq!(answer["results"].as_array().unwrap().len(), 15_000);
    // for-all-nodes over a huge cluster list.
    let everywhere = json!({
        "cluster": "c", "from": t - 600, "to": t,
        "for-all-nodes": (0..20_000).map(|i| format!("m{i}")).collect::<Vec<_>>(),
    })
    .to_string();
    let r = store.request("GET", "/api/query", &[], everywhere.as_bytes());
    assert!(r.status == 200 || r.status == 400, "{}", r.text());
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
}

#[test]
fn invalid_utf8_in_tags_is_a_bad_request_after_the_good_lines() {
    let store = start_store(config());
    let bystander = client(&store);
    let t = now();
    let mut body = Vec::new();
    body.extend(format!("cpu_load,hostname=good,type=node value=1 {t}\n").as_bytes());
    body.extend(b"cpu_load,hostname=bad\xff\xfe,type=node value=2 ");
    body.extend(format!("{t}\n").as_bytes());
    body.extend(format!("cpu_load,hostname=good2,type=node value=3 {t}\n").as_bytes());
    let r = store.request("POST", "/api/write?cluster=c", &[], &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let error = r.json();
    assert_eq!(error["status"], "Bad Request");
    assert!(
        error["error"].as_str().unwrap().contains("UTF-8"),
        "{error}"
    );
    let series = |host: &str| {
        let (status, answer) = query(
            &store,
            &json!({"cluster": "c", "from": t - 60, "to": t + 60,
                    "queries": [{"metric": "cpu_load", "host": host}]})
            .to_string(),
        );
        assert_eq!(status, 200);
        answer["results"][0][0]["data"].clone()
    };
    assert!(series("good").is_array(), "the line before is stored");
    // Bytes that are not UTF-8 never become a level: the dump is JSON.
    let dump = debug_dump(&store);
    assert!(
        dump["data"]["c"]
            .as_object()
            .unwrap()
            .keys()
            .all(|h| !h.starts_with("bad")),
        "{dump}"
    );
    // A cluster name that is not UTF-8 in the query string.
    let r = store.request(
        "POST",
        "/api/write?cluster=%ff%fe",
        &[],
        format!("cpu_load,hostname=h,type=node value=1 {t}\n").as_bytes(),
    );
    assert!(r.status == 200 || r.status == 400, "{}", r.text());
    debug_dump(&store);
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
}

#[test]
fn timestamps_at_the_i64_limits_neither_crash_nor_poison_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = start_store_in(config(), dir);
    let bystander = client(&store);
    let t = now();
    let edges = [
        i64::MAX.to_string(),
        i64::MIN.to_string(),
        (i64::MAX - 30).to_string(),
        (i64::MIN + 30).to_string(),
        "9223372036854775808".to_owned(),
        "-9223372036854775809".to_owned(),
        "-1".to_owned(),
        "0".to_owned(),
    ];
    // One host per edge: a series with two samples centuries apart is the
    // subject of `a_query_from_the_epoch_costs_what_its_data_costs`.
    let mut hosts = vec!["bystander".to_owned()];
    for (i, ts) in edges.iter().enumerate() {
        let line = format!("cpu_load,hostname=edge{i},type=node value=1 {ts}\n");
        let r = store.request("POST", "/api/write?cluster=c", &[], line.as_bytes());
        assert!(
            r.status == 200 || r.status == 400,
            "{ts}: {} {}",
            r.status,
            r.text()
        );
        if r.status == 400 {
            assert_eq!(r.json()["status"], "Bad Request", "{ts}");
        } else {
            hosts.push(format!("edge{i}"));
        }
    }
    // Queries over the whole range of i64, and with the edges as ends.
    for (from, to) in [
        (i64::MIN, i64::MAX),
        (i64::MIN, 0),
        (0, i64::MAX),
        (i64::MAX - 1, i64::MAX),
        (i64::MIN, i64::MIN + 1),
        (i64::MAX, i64::MIN),
        (t - 600, t + 60),
    ] {
        let queries: Vec<Value> = hosts
            .iter()
            .map(|h| json!({"metric": "cpu_load", "host": h}))
            .collect();
        let body = json!({"cluster": "c", "from": from, "to": to, "with-padding": false,
                          "queries": queries})
        .to_string();
        let (status, _) = query(&store, &body);
        assert!(status == 200 || status == 400, "[{from}, {to}): {status}");
        let free = store.request("POST", &format!("/api/free?to={from}"), &[], b"[]");
        assert_eq!(free.status, 200, "free to {from}: {}", free.text());
    }
    // Padding from i64::MIN is bounded (4 Mi nulls), not 2^57 of them.
    let (status, answer) = query(
        &store,
        &json!({"cluster": "c", "from": i64::MIN, "to": i64::MAX,
                "queries": [{"metric": "cpu_load", "host": "bystander"}]})
        .to_string(),
    );
    assert_eq!(status, 200);
    let data = answer["results"][0][0]["data"].as_array().unwrap();
    assert!(data.len() <= (1 << 22) + 1000, "{} points", data.len());
    bystander.expect_served(3, Duration::from_secs(5));
    debug_dump(&store);
    // What was written comes back after a restart.
    let (status, dir) = store.stop();
    assert!(status.success(), "{status}");
    bystander.finish();
    let store = start_store_in(config(), dir);
    let again = client(&store);
    again.expect_served(3, Duration::from_secs(5));
    again.finish();
}

#[test]
fn a_query_from_the_epoch_costs_a_bounded_amount_whatever_it_spans() {
    let mut config = config();
    // The largest answer here is ~85 MB: time to send it on a busy machine.
    config["main"]["write-timeout"] = json!("60s");
    let store = start_store(config);
    let bystander = client(&store);
    let t = now();
    let body = format!(
        "cpu_load,hostname=old,type=node value=1 1000000000\ncpu_load,hostname=old,type=node value=2 {t}\n\
         cpu_load,hostname=new,type=node value=3 {t}\n"
    );
    let r = store.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // A sample from 2001 and one from now are 13 M slots apart at 60 s,
    // more than one entry may make up: the gap is not read, and the entry
    // starts after it.
    let q = json!({"cluster": "c", "from": 0, "to": t + 60, "with-padding": false,
                   "queries": [{"metric": "cpu_load", "host": "old"}]})
    .to_string();
    let (status, answer) = query(&store, &q);
    assert_eq!(status, 200);
    assert_eq!(answer["results"][0][0]["data"], json!([2.0]), "{answer}");
    // Twenty entries padded from 1970: 29 M nulls each (145 MB of JSON)
    // without a bound; the request's budget of 16 Mi nulls caps them all
    // together, and every entry still ends with its data.
    let queries: Vec<Value> = (0..20)
        .map(|_| json!({"metric": "cpu_load", "host": "new"}))
        .collect();
    let q = json!({"cluster": "c", "from": 0, "to": t + 60, "queries": queries}).to_string();
    let r = store.request("GET", "/api/query", &[], q.as_bytes());
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(text.matches("null").count(), 1 << 24);
    assert_eq!(text.matches("3.000]").count(), 20);
    assert!(bystander.finish() >= 1);
}

#[test]
fn a_sample_far_in_the_future_does_not_block_its_series() {
    let store = start_store(config());
    let t = now();
    // i64::MAX reads as nanoseconds: the year 2262.
    for (ts, status) in [(i64::MAX, 400), (t + 3600, 400), (t, 200)] {
        let line = format!("cpu_load,hostname=h,type=node value=1 {ts}\n");
        let r = store.request("POST", "/api/write?cluster=c", &[], line.as_bytes());
        assert_eq!(r.status, status, "{ts}: {}", r.text());
        if status == 400 {
            assert!(
                r.text().contains("ahead of the store's clock"),
                "{}",
                r.text()
            );
        }
    }
    let (_, answer) = query(
        &store,
        &json!({"cluster": "c", "from": t - 60, "to": t + 60, "with-padding": false,
                "queries": [{"metric": "cpu_load", "host": "h"}]})
        .to_string(),
    );
    assert_eq!(
        answer["results"][0][0]["data"],
        json!([1.0]),
        "the current sample is stored: {answer}"
    );
}

#[test]
fn nan_and_infinite_values_are_refused_and_huge_ones_stay_json() {
    let store = start_store(config());
    let bystander = client(&store);
    let t = now();
    for v in [
        "NaN", "nan", "Inf", "+Inf", "-Inf", "inf", "infinity", "1e400", "-1e400",
    ] {
        let line = format!("cpu_load,hostname=bad,type=node value={v} {t}\n");
        let r = store.request("POST", "/api/write?cluster=c", &[], line.as_bytes());
        assert_eq!(r.status, 400, "value={v}: {}", r.text());
        assert_eq!(r.json()["status"], "Bad Request");
    }
    // Huge finite values, scaled into infinity: the answer is still JSON.
    // (A sum that overflows gives `min` f64::MAX, as upstream computes it,
    // a 309-digit number serde_json does not read back.)
    let body: String = (0..4)
        .map(|i| format!("flops_any,hostname=big,type=hwthread,type-id={i} value=1e307 {t}\n"))
        .collect();
    let r = store.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, answer) = query(
        &store,
        &json!({"cluster": "c", "from": t - 60, "to": t + 60, "queries": [
            {"metric": "flops_any", "host": "big"},
            {"metric": "flops_any", "host": "big", "type": "hwthread", "type-ids": ["0", "1"], "aggreg": false},
            {"metric": "flops_any", "host": "big", "scale-by": 1e300}
        ]})
        .to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 3, "{answer}");
    let max = answer["results"][0][0]["max"].as_f64().unwrap();
    assert!(
        (max / 4e307 - 1.0).abs() < 1e-9,
        "the sum of four: {answer}"
    );
    assert_eq!(
        answer["results"][2][0]["max"],
        Value::Null,
        "1e307 scaled by 1e300 is infinite: null, {answer}"
    );
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
}

#[test]
fn ten_thousand_hosts_in_one_batch_are_stored() {
    const HOSTS: usize = 10_000;
    let mut config = config();
    // Snapshots only: a WAL file per new host costs a few fsyncs each
    // (10 s for 10 000 in a debug build); the WAL's open files are the
    // subject of `more_hosts_than_the_usual_open_file_limit`.
    config["metric-store"]["checkpoints"]["file-format"] = json!("json");
    let store = start_store(config);
    let bystander = client(&store);
    let t = now();
    let body: String = (0..HOSTS)
        .map(|h| format!("cpu_load,hostname=n{h:05},type=node value={h} {t}\n"))
        .collect();
    assert!(body.len() < 1024 * 1024);
    let r = store.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    bystander.expect_served(3, Duration::from_secs(10));
    let (status, answer) = query(
        &store,
        &json!({"cluster": "c", "from": t - 60, "to": t + 60,
                "queries": [{"metric": "cpu_load", "host": "n09999"}]})
        .to_string(),
    );
    assert_eq!(status, 200);
    assert!(
        answer["results"][0][0]["data"]
            .as_array()
            .unwrap()
            .contains(&json!(9999.0)),
        "{answer}"
    );
    let all = json!({"cluster": "c", "from": t - 60, "to": t + 60,
                     "for-all-nodes": ["cpu_load"]})
    .to_string();
    let (status, answer) = query(&store, &all);
    assert_eq!(status, 200);
    assert_eq!(
        answer["results"].as_array().unwrap().len(),
        HOSTS + 1,
        "every host (and the bystander)"
    );
    bystander.finish();
}

#[test]
fn more_hosts_than_the_usual_open_file_limit() {
    const HOSTS: usize = 1500;
    // The soft limit of a process started outside a unit with LimitNOFILE,
    // which the store inherits; it raises it to the hard limit, as Go
    // programs do, since it keeps one WAL file open per host.
    ensure_open_files(HOSTS as u64 + 1000);
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, hard).unwrap();
    let mut config = config();
    config["main"]["read-timeout"] = json!("20s");
    let store = start_store(config);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", store.pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[0], open_files[1],
        "soft limit raised to the hard one: {limits}"
    );
    let fds_before = open_fds(store.pid());
    let bystander = client(&store);
    let t = now();
    let body: String = (0..HOSTS)
        .map(|h| format!("cpu_load,hostname=n{h:05},type=node value={h} {t}\n"))
        .collect();
    let r = store.request("POST", "/api/write?cluster=c", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    bystander.expect_served(3, Duration::from_secs(10));
    // One WAL file open per host, no more (docs/sizing.md, "Open files").
    let fds = open_fds(store.pid());
    assert!(
        fds > 1024 && fds <= fds_before + HOSTS + 100,
        "{fds} open descriptors after writing {HOSTS} hosts ({fds_before} before)"
    );
    bystander.finish();
}

#[test]
fn a_flooding_client_leaves_others_their_share() {
    let store = start_store(config());
    let t = now();
    let batch: String = (0..2000)
        .map(|i| format!("cpu_load,hostname=flood{i},type=node value={i} {t}\n"))
        .collect();
    let flood = Flood::start(&store.addr, "/api/write?cluster=c", 16, batch);
    // The flood is on before the client comes.
    assert!(wait_for(Duration::from_secs(5), || common::metric(
        &store.addr,
        "ccstore_http_requests_total{"
    ) >= 16.0));
    let bystander = client(&store);
    bystander.expect_served(20, Duration::from_secs(15));
    bystander.finish();
    let flood = flood.finish();
    // Under the flood some requests outlast read-timeout + write-timeout
    // (two seconds here) and get 408, which the sender retries; no
    // connection ends without an answer.
    assert!(
        flood.keys().all(|s| s == "200" || s == "408"),
        "the flood got {flood:?}"
    );
    assert!(
        flood.get("200").copied().unwrap_or(0) > flood.get("408").copied().unwrap_or(0),
        "the flood was served too: {flood:?}"
    );
}
