//! README command 1 (`./scripts/demo`, i.e. the `demo` example) runs its
//! whole story in a short form: real cc-store and cc-relay on their built-in
//! defaults, a synthetic rack, the store stopped and restarted mid-run, every
//! point read back; then one Ctrl-C stops everything.
//!
//! The demo uses the programs' default ports (8080, 8082, 9109), so both
//! runs live in one test and never overlap.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/deps/<test>` → `target/<profile>/examples/demo`
/// (`cargo test` and `cargo nextest run` build the examples).
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/demo");
    assert!(
        path.exists(),
        "{} not found: build it with `cargo build --example demo`",
        path.display()
    );
    path
}

fn ports_free() -> bool {
    [8080, 8082, 9109]
        .iter()
        .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

fn wait_ports_free(deadline: Duration) {
    let start = Instant::now();
    while !ports_free() {
        assert!(
            start.elapsed() < deadline,
            "ports 8080/8082/9109 still taken {deadline:?} after the demo ended: a program \
             was left behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_runs_the_story_and_stops_on_one_ctrl_c() {
    assert!(
        ports_free(),
        "the demo needs 127.0.0.1 ports 8080, 8082 and 9109, and something holds one of them"
    );
    let bin_dir = demo_binary()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();

    // 1. `--once`: the whole story, exit 0, everything read back.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(demo_binary())
        .args([
            "--once",
            "--duration",
            "6s",
            "--outage",
            "2s",
            "--nodes",
            "8",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo --once failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for expected in [
        "stopping cc-store for 2s",
        "starting cc-store again",
        "cc-store is back",
        "the relay has caught up",
        "Nothing lost",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // 8 nodes × 60 intervals: 480 points per node metric, ×128 per hwthread
    // metric; the table shows them sent and stored.
    let row = |metric: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{metric} ")))
            .unwrap_or_else(|| panic!("no row for {metric} in:\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("cpu_load")[1..], ["node", "480", "480"]);
    assert_eq!(row("flops_any")[1..], ["hwthread", "61440", "61440"]);
    assert_eq!(row("total")[1..], ["250560", "250560"]);
    wait_ports_free(Duration::from_secs(10));
    let log = std::fs::read_to_string(dir.path().join("var/cc-relay.log")).unwrap();
    assert!(log.contains("cc-relay stopped"), "relay log:\n{log}");
    assert!(
        !log.contains("second signal"),
        "the relay got more than one signal:\n{log}"
    );

    // 2. Without `--once` both keep running; one Ctrl-C (SIGINT to the
    // terminal's process group) stops the demo and both programs cleanly.
    let dir = tempfile::tempdir().unwrap();
    let mut child = own_process_group(
        Command::new(demo_binary())
            .args(["--duration", "2s", "--outage", "0s", "--nodes", "2"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--bin-dir")
            .arg(&bin_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let _guard = StopOnDrop(i32::try_from(child.id()).unwrap());
    let mut seen = String::new();
    let start = Instant::now();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        seen.push_str(&line);
        if line.contains("Ctrl-C stops them") {
            break;
        }
        assert!(
            n > 0 && start.elapsed() < Duration::from_secs(120),
            "the demo did not reach its running state:\n{seen}"
        );
    }
    let pgid = i32::try_from(child.id()).unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}\n{seen}{rest}");
    assert!(rest.contains("stopping cc-relay and cc-store"), "{rest}");
    wait_ports_free(Duration::from_secs(10));
    for name in ["cc-relay", "cc-store"] {
        let log = std::fs::read_to_string(dir.path().join(format!("var/{name}.log"))).unwrap();
        assert!(
            log.contains("SIGTERM") && !log.contains("second signal"),
            "{name} was not stopped with exactly one SIGTERM:\n{log}"
        );
    }
}

/// Stops the demo (and so its programs) if the test fails before it does.
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// The demo in a session of its own, like a shell job: a SIGINT to its
/// process group is the terminal's Ctrl-C.
fn own_process_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}
