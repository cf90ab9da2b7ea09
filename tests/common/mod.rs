//! Shared harness of the end-to-end tests: finds and starts the real binaries
//! on free loopback ports, talks plain HTTP/1.1 to them, and mints JWTs.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test harness: failures should be loud"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod abuse;
pub mod browser;
pub mod nats;

/// Path of a workspace binary (`cc-store`, `cc-relay`) built next to the test
/// executable (`target/<profile>/`). `cargo nextest run --workspace` and
/// `cargo build --workspace --bins` build them.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Path of a file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request (any method may carry a body, as cc-backend's
/// `GET /api/query` does) and reads the whole response.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    http_within(addr, method, path, headers, body, Duration::from_secs(30))
}

/// [`http`] with `timeout` for connecting and for each read and write.
pub fn http_within(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let socket = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, addr.to_owned()))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Parses raw response bytes read off a socket; `None` if they are not a
/// whole HTTP response head.
pub fn parse_response_bytes(raw: &[u8]) -> Option<Response> {
    parse_response(raw).ok()
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A running binary, killed when dropped.
pub struct Process {
    child: Child,
    /// `127.0.0.1:port` of its HTTP listener.
    pub addr: String,
    /// Its working directory (config, data).
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Process {
    /// Sends an HTTP request to the process.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(&self.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log_text()))
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.stop().0
    }

    /// Sends SIGTERM, waits for the exit status and hands back the directory.
    pub fn stop(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "process ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (status, dir)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cc-store` with the given configuration (its `main.addr` is set to
/// a free port) and waits until it answers HTTP.
pub fn start_store(config: serde_json::Value) -> Process {
    start_store_in(config, tempfile::tempdir().expect("temp dir"))
}

/// Starts `cc-store` on [`store_config`] with `main` as its `main` section
/// (authentication, roles, …).
pub fn start_store_with_main(main: serde_json::Value) -> Process {
    let mut config = store_config();
    config["main"] = main;
    start_store(config)
}

/// Starts `cc-store` on a given loopback port.
pub fn start_store_on(config: serde_json::Value, port: u16) -> Process {
    start_store_with(config, port, tempfile::tempdir().expect("temp dir"))
}

/// Starts `cc-store` on a given loopback port in `dir` (e.g. a store that
/// was stopped, started again where its clients expect it).
pub fn start_store_on_in(config: serde_json::Value, port: u16, dir: tempfile::TempDir) -> Process {
    start_store_with(config, port, dir)
}

/// Starts `cc-store` in `dir` (its checkpoints go to `dir/checkpoints`
/// unless the config names a directory), e.g. the directory of a store
/// stopped before, and waits until it has loaded its checkpoints.
pub fn start_store_in(config: serde_json::Value, mut dir: tempfile::TempDir) -> Process {
    // A port found free may be taken by another test before the store binds
    // it: then the store is started again on another port.
    for _ in 1..3 {
        let mut process = spawn_store(config.clone(), free_port(), dir);
        match try_until_up(&mut process) {
            Ok(()) => return process,
            Err(log) if log.contains("Address already in use") => {
                dir = std::mem::replace(&mut process.dir, tempfile::tempdir().expect("temp dir"));
            }
            Err(log) => panic!("{log}"),
        }
    }
    start_store_with(config, free_port(), dir)
}

fn start_store_with(config: serde_json::Value, port: u16, dir: tempfile::TempDir) -> Process {
    let mut process = spawn_store(config, port, dir);
    wait_until_up(&mut process);
    process
}

/// Starts `cc-store` in `dir` on a free port without waiting for it: it may
/// still be loading its checkpoints (answering 503) when this returns.
pub fn spawn_store_in(config: serde_json::Value, dir: tempfile::TempDir) -> Process {
    spawn_store(config, free_port(), dir)
}

fn spawn_store(config: serde_json::Value, port: u16, dir: tempfile::TempDir) -> Process {
    spawn_store_logging(config, port, dir, "info")
}

/// Starts `cc-store` with `-loglevel level` (`debug`, `info`, …) and waits
/// until it answers HTTP.
pub fn start_store_logging(config: serde_json::Value, level: &str) -> Process {
    let mut process = spawn_store_logging(
        config,
        free_port(),
        tempfile::tempdir().expect("temp dir"),
        level,
    );
    wait_until_up(&mut process);
    process
}

fn spawn_store_logging(
    mut config: serde_json::Value,
    port: u16,
    dir: tempfile::TempDir,
    level: &str,
) -> Process {
    let addr = format!("127.0.0.1:{port}");
    config["main"]["addr"] = serde_json::Value::from(addr.clone());
    if config["metric-store"]["checkpoints"]["directory"].is_null() {
        config["metric-store"]["checkpoints"]["directory"] =
            serde_json::Value::from(dir.path().join("checkpoints").display().to_string());
    }
    let config_path = dir.path().join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .expect("write config");
    let log = dir.path().join("store.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let child = Command::new(binary("cc-store"))
        .arg("-config")
        .arg(&config_path)
        .args(["-loglevel", level])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start cc-store");
    Process {
        child,
        addr,
        dir,
        log,
    }
}

/// Waits until the store answers HTTP with something else than 503 (it has
/// loaded its checkpoints); panics if it exits or takes longer than 15 s.
pub fn wait_until_up(p: &mut Process) {
    if let Err(message) = try_until_up(p) {
        panic!("{message}");
    }
}

/// [`wait_until_up`], with the reason as an error when the process exits
/// first.
fn try_until_up(p: &mut Process) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Err(format!(
                "process exited early ({status}):\n{}",
                p.log_text()
            ));
        }
        // 503 while checkpoints are loading.
        if http(&p.addr, "GET", "/api/query/", &[], b"{}").is_ok_and(|r| r.status != 503) {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "not up in time:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A store configuration in the upstream layout with a few metrics.
pub fn store_config() -> serde_json::Value {
    serde_json::json!({
        "main": {},
        "metrics": {
            "cpu_load": {"frequency": 60, "aggregation": null},
            "flops_any": {"frequency": 60, "aggregation": "sum"},
            "clock": {"frequency": 60, "aggregation": "avg"},
            "mem_bw": {"frequency": 60, "aggregation": "sum"},
            "acc_utilization": {"frequency": 60, "aggregation": "avg"},
            "mem_used": {"frequency": 60, "aggregation": null}
        },
        "metric-store": {
            "retention-in-memory": "48h",
            "memory-cap": 0,
            "checkpoints": {"file-format": "wal"}
        }
    })
}

/// Standard base64 of the test key pair's public key.
pub fn test_public_key() -> String {
    std::fs::read_to_string(fixture("jwt/test-public.b64"))
        .expect("test key")
        .trim()
        .to_owned()
}

/// A token signed with the test key pair carrying `claims`.
pub fn mint_token(claims: &serde_json::Value) -> String {
    let pem = std::fs::read(fixture("jwt/test-private.pem")).expect("test private key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("ed25519 key");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .expect("sign")
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Starts `cc-relay` with `config` (ingress `local` and `admin` get free
/// ports; `data_dir` defaults to a temp dir) and waits for `/readyz`.
/// Returns the process (its `addr` is the ingress) and the admin address.
pub fn start_relay(config: serde_json::Value) -> (Process, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    start_relay_in(config, dir)
}

/// Like [`start_relay`], in an existing directory (for restarts on the same data).
pub fn start_relay_in(config: serde_json::Value, dir: tempfile::TempDir) -> (Process, String) {
    start_relay_when(config, dir, |admin| {
        http(admin, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    })
}

/// Starts `cc-relay` and waits until `ready(admin address)` holds (for relays
/// whose `/readyz` is not plain and open: TLS, a token, disk pressure).
/// Addresses already in `config` are kept; missing ones get free ports.
pub fn start_relay_when(
    config: serde_json::Value,
    dir: tempfile::TempDir,
    ready: impl Fn(&str) -> bool,
) -> (Process, String) {
    start_relay_logging(config, dir, ready, "info")
}

/// [`start_relay_when`] with `--log-level level` (`debug`, `info`, …).
pub fn start_relay_logging(
    mut config: serde_json::Value,
    mut dir: tempfile::TempDir,
    ready: impl Fn(&str) -> bool,
    level: &str,
) -> (Process, String) {
    // A relay with only NATS inputs has no HTTP ingress address.
    let has_ingress = config["ingress"]["http"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let ingress_free = has_ingress && config["ingress"]["http"][0]["address"].is_null();
    let admin_free = config["admin"]["address"].is_null();
    if config["data_dir"].is_null() {
        config["data_dir"] = serde_json::Value::from(dir.path().join("data").display().to_string());
    }
    // A port found free may be taken by another test before the relay binds
    // it: then the relay is started again on other ports.
    for attempt in 1..=3 {
        if ingress_free {
            config["ingress"]["http"][0]["address"] =
                serde_json::Value::from(format!("127.0.0.1:{}", free_port()));
        }
        if admin_free {
            // Two calls of free_port may hand out the same port: the relay
            // would refuse an admin address equal to its ingress one.
            let ingress = config["ingress"]["http"][0]["address"].clone();
            let admin = loop {
                let candidate = serde_json::Value::from(format!("127.0.0.1:{}", free_port()));
                if candidate != ingress {
                    break candidate;
                }
            };
            config["admin"]["address"] = admin;
        }
        let ingress = if has_ingress {
            config["ingress"]["http"][0]["address"]
                .as_str()
                .unwrap()
                .to_owned()
        } else {
            String::new()
        };
        let admin = config["admin"]["address"].as_str().unwrap().to_owned();
        let config_path = dir.path().join("relay.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        let log = dir.path().join(format!("relay-{}.log", free_port()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary("cc-relay"))
            .arg("--config")
            .arg(&config_path)
            .args(["--log-level", level])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start cc-relay");
        let mut process = Process {
            child,
            addr: ingress,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let started = loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                let log = process.log_text();
                if attempt < 3
                    && (ingress_free || admin_free)
                    && log.contains("Address already in use")
                {
                    break false;
                }
                panic!("cc-relay exited early ({status}):\n{log}");
            }
            if ready(&admin) {
                break true;
            }
            assert!(
                Instant::now() < deadline,
                "relay not ready:\n{}",
                process.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        };
        if started {
            return (process, admin);
        }
        dir = std::mem::replace(&mut process.dir, tempfile::tempdir().expect("temp dir"));
    }
    unreachable!("the last attempt either starts or panics")
}

impl Process {
    /// Kills the process with SIGKILL and hands back its directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }
}

/// A relay configuration with one ingress (`local`) and the given upstreams.
pub fn relay_config(upstreams: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "instance_id": "test-relay",
        "ingress": {"http": [{"name": "local"}]},
        "upstreams": upstreams,
        "shutdown_grace": "2s"
    })
}

/// One request as a stub upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// What the stub answered.
    pub status: u16,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Answer = dyn Fn(&Seen) -> u16 + Send + Sync;

/// A scripted HTTP upstream: records every request and answers with the
/// status its function picks (keep-alive, Content-Length bodies).
pub struct Stub {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Requests seen so far.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    answer: std::sync::Arc<std::sync::RwLock<Box<Answer>>>,
}

impl Stub {
    /// Starts a stub answering 200 to everything.
    pub fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer: std::sync::Arc<std::sync::RwLock<Box<Answer>>> =
            std::sync::Arc::new(std::sync::RwLock::new(Box::new(|_: &Seen| 200)));
        let (s2, a2) = (std::sync::Arc::clone(&seen), std::sync::Arc::clone(&answer));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s3, a3) = (std::sync::Arc::clone(&s2), std::sync::Arc::clone(&a2));
                std::thread::spawn(move || serve_stub_connection(conn, &s3, &a3));
            }
        });
        Stub { addr, seen, answer }
    }

    /// Changes how the stub answers.
    pub fn answer(&self, f: impl Fn(&Seen) -> u16 + Send + Sync + 'static) {
        *self.answer.write().unwrap() = Box::new(f);
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Lines received in requests the stub answered with 200, in order.
    pub fn delivered_lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .flat_map(|s| {
                String::from_utf8_lossy(&s.body)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn serve_stub_connection(
    conn: TcpStream,
    seen: &std::sync::Mutex<Vec<Seen>>,
    answer: &std::sync::RwLock<Box<Answer>>,
) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut request = Seen {
            method,
            target,
            headers,
            body,
            status: 0,
        };
        let status = (answer.read().unwrap())(&request);
        request.status = status;
        seen.lock().unwrap().push(request);
        let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The sum of every series of the relay's `/metrics` whose line starts with
/// `name` (a metric name, optionally with the start of its labels).
pub fn metric(admin: &str, name: &str) -> f64 {
    let text = http(admin, "GET", "/metrics", &[], b"")
        .expect("scrape /metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the sample line `series` (metric name and labels exactly as
/// written) in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `body` (its stdin); panics with promtool's
/// findings, or when promtool is not installed (the test fails, it is not
/// skipped).
pub fn promtool_check(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: this test lints /metrics with it; install \
             Debian's `prometheus` package (scripts/test does)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- body ---\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    check()
}

/// Runs `cc-relay -c CONFIG ARGS…` to completion (offline commands,
/// `--check-config`).
pub fn relay_cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("cc-relay"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run cc-relay")
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A tmpfs of a given size mounted on a directory, for tests that fill a
/// disk (root only: the mount fails the test with a clear message
/// otherwise); unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `6m`) on `dir`.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "this test mounts a {size} tmpfs on {} to fill the disk and needs root (CI runs as root)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
