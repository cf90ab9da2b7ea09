//! Tools of the abuse tests: a well-behaved client that keeps being served
//! (or not) while a test misbehaves towards the same server, raw sockets
//! that trickle bytes, and the open-file limit the idle-connection tests
//! need.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one round of a [`Bystander`] may take before it counts as not
/// served.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A client that behaves: it runs a round (typically one write and one
/// read) every 50 ms on fresh connections until it is finished, and keeps
/// count of what it was served.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    slowest: Arc<Mutex<Duration>>,
    thread: Option<JoinHandle<()>>,
}

impl Bystander {
    /// Starts running `round(n)` for n = 0, 1, …; a round answers
    /// `Err(what went wrong)` when it was not served as a client expects.
    pub fn start(round: impl Fn(u64) -> Result<(), String> + Send + 'static) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let thread = {
            let (stop, served, failures, slowest) = (
                Arc::clone(&stop),
                Arc::clone(&served),
                Arc::clone(&failures),
                Arc::clone(&slowest),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = round(n);
                    let took = started.elapsed();
                    {
                        let mut slowest = slowest.lock().unwrap();
                        *slowest = (*slowest).max(took);
                    }
                    match outcome {
                        Ok(()) if took <= PATIENCE => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => failures
                            .lock()
                            .unwrap()
                            .push(format!("round {n} served only after {took:?}")),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("round {n} after {took:?}: {e}")),
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Bystander {
            stop,
            served,
            failures,
            slowest,
            thread: Some(thread),
        }
    }

    /// Rounds served so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Waits until `n` more rounds than now have been served (while the
    /// abuse goes on); panics naming what went wrong after `timeout`.
    pub fn expect_served(&self, n: usize, timeout: Duration) {
        let target = self.served() + n;
        let deadline = Instant::now() + timeout;
        while self.served() < target {
            let failures = self.failures.lock().unwrap().clone();
            assert!(
                failures.is_empty(),
                "the well-behaved client was not served: {failures:#?}"
            );
            assert!(
                Instant::now() < deadline,
                "the well-behaved client was served {} of {n} rounds in {timeout:?}",
                n + self.served() - target
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the client and asserts that every round was served in time;
    /// returns how many were.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "the well-behaved client was not served ({} rounds were, slowest {:?}): {failures:#?}",
            self.served(),
            self.slowest.lock().unwrap()
        );
        self.served()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A round of a bystander: `method path` with `body` answered with
/// `status` within [`PATIENCE`].
pub fn expect_status(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    status: u16,
) -> Result<super::Response, String> {
    match super::http_within(addr, method, path, headers, body, PATIENCE) {
        Ok(r) if r.status == status => Ok(r),
        Ok(r) => Err(format!(
            "{method} {path}: {} instead of {status}: {}",
            r.status,
            r.text()
        )),
        Err(e) => Err(format!("{method} {path}: {e}")),
    }
}

/// What became of a connection that sent its bytes slowly.
#[derive(Debug)]
pub struct Trickled {
    /// Bytes written before the server stopped taking them (or all).
    pub sent: usize,
    /// The server's answer, if it gave one before closing.
    pub answer: Option<super::Response>,
    /// Time from the first byte to the end of the connection.
    pub lasted: Duration,
}

/// Connects to `addr` and trickles `bytes` with [`trickle_on`].
pub fn trickle(addr: &str, bytes: &[u8], pause: Duration, wait: Duration) -> Trickled {
    trickle_on(TcpStream::connect(addr).unwrap(), bytes, pause, wait)
}

/// Writes `bytes` to `stream` one at a time with `pause` between them
/// until they are all sent or the server answers or ends the connection,
/// then reads what the server says until it closes (at most `wait` after
/// the last byte). `lasted` counts from the first byte.
pub fn trickle_on(
    mut stream: TcpStream,
    bytes: &[u8],
    pause: Duration,
    wait: Duration,
) -> Trickled {
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for byte in bytes {
        if closed_by_peer(&stream) || stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(pause);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Trickled {
        sent,
        answer: super::parse_response(&raw).ok(),
        lasted: started.elapsed(),
    }
}

/// Whether the peer has answered or closed the connection (a peek that
/// does not wait).
fn closed_by_peer(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let peeked = stream.peek(&mut byte);
    stream.set_nonblocking(false).unwrap();
    match peeked {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Raises the soft limit on open files to at least `needed` (up to the hard
/// limit), for the test and the binaries it starts afterwards; panics
/// naming both limits when the hard limit is lower.
pub fn ensure_open_files(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "this test needs {needed} open files, the hard limit is {hard} (soft {soft}): \
         raise it (ulimit -Hn, LimitNOFILE) to run it"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Peak resident memory (`VmHWM`) of process `pid` in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sends `bytes` as they are (from a second thread, so that an answer that
/// comes before the end is read meanwhile) and reads until the server
/// closes; returns the answer, if any, and how many bytes were taken.
pub fn send_raw(addr: &str, bytes: Vec<u8>) -> (Option<super::Response>, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sent = 0;
            for chunk in bytes.chunks(64 * 1024) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    };
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = writer.join().unwrap();
    (super::parse_response(&raw).ok(), sent)
}

/// Requests with one header of 1 MiB, and with 500 headers.
pub fn oversized_heads(method: &str, path: &str) -> Vec<(&'static str, Vec<u8>)> {
    let start = format!("{method} {path} HTTP/1.1\r\nHost: server\r\nConnection: close\r\n");
    let end = "Content-Length: 0\r\n\r\n";
    let big = format!("{start}X-Big: {}\r\n{end}", "a".repeat(1 << 20));
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        ("a header of 1 MiB", big.into_bytes()),
        ("500 headers", format!("{start}{many}{end}").into_bytes()),
    ]
}

/// Opens `n` connections to `addr` that never send a byte and checks, for
/// the server process `pid`: it holds them all while `bystander` keeps being
/// served, its idle or header timeout (a few seconds, as the test configured
/// it) closes every one of them within 15 s, and it releases their
/// descriptors; then `bystander` is served again and finished.
pub fn idle_connections_are_held_then_freed(pid: u32, addr: &str, n: usize, bystander: Bystander) {
    let before = open_fds(pid);
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..n)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} of {n}: {e}")))
        .collect();
    let held = super::wait_for(Duration::from_secs(5), || open_fds(pid) >= before + n);
    assert!(
        held,
        "the server holds {} descriptors, {before} before {n} connections",
        open_fds(pid)
    );
    bystander.expect_served(3, Duration::from_secs(5));
    assert!(
        open_fds(pid) >= before + n,
        "served while all {n} were still open ({:?} after opening them)",
        opened.elapsed()
    );
    // The timeout frees every one of them.
    for s in &idle {
        s.set_nonblocking(true).expect("non-blocking socket");
    }
    let mut open: Vec<&TcpStream> = idle.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !open.is_empty() && Instant::now() < deadline {
        open.retain(|s| {
            let mut b = [0u8; 1];
            matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open.is_empty(),
        "{} of {n} idle connections still open {:?} after they were opened",
        open.len(),
        opened.elapsed()
    );
    drop(idle);
    assert!(
        super::wait_for(Duration::from_secs(5), || open_fds(pid) < before + 50),
        "descriptors not released: {} (before: {before})",
        open_fds(pid)
    );
    bystander.expect_served(3, Duration::from_secs(5));
    bystander.finish();
}

/// Clients that post `body` to `path` as fast as the server answers, each
/// on its own thread, until [`Flood::finish`].
pub struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<BTreeMap<String, usize>>>,
}

impl Flood {
    /// Starts `clients` flooding `addr`.
    pub fn start(addr: &str, path: &str, clients: usize, body: String) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let body = Arc::new(body);
        let threads = (0..clients)
            .map(|_| {
                let (addr, path, body, stop) = (
                    addr.to_owned(),
                    path.to_owned(),
                    Arc::clone(&body),
                    Arc::clone(&stop),
                );
                std::thread::spawn(move || {
                    let mut outcomes = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = match super::http(&addr, "POST", &path, &[], body.as_bytes())
                        {
                            Ok(r) if r.status == 503 && r.header("retry-after").is_none() => {
                                "503 without Retry-After".to_owned()
                            }
                            Ok(r) => r.status.to_string(),
                            Err(e) => format!("{e} after {:?}", started.elapsed()),
                        };
                        *outcomes.entry(outcome).or_default() += 1;
                    }
                    outcomes
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stops the flood and returns how its requests ended: answers by
    /// status code (`"503 without Retry-After"` apart), the rest by error.
    pub fn finish(self) -> BTreeMap<String, usize> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for t in self.threads {
            for (outcome, n) in t.join().unwrap() {
                *all.entry(outcome).or_default() += n;
            }
        }
        all
    }
}
