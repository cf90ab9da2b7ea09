//! systemd notifications of both binaries (`Type=notify` units): each test
//! starts the real binary with `NOTIFY_SOCKET` pointing at a datagram
//! socket of its own and reads what the service tells systemd.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Stub, binary, free_port, http, relay_config, store_config};
use serde_json::json;

/// A socket standing in for systemd's notification socket.
struct Systemd {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Systemd {
    fn bind(dir: &Path) -> (Systemd, String) {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (
            Systemd {
                socket,
                seen: Vec::new(),
            },
            path.display().to_string(),
        )
    }

    /// Reads messages until one contains `wanted`; returns it. Panics after
    /// 20 s, or when `child` exits first.
    fn wait_for(&mut self, wanted: &str, child: &mut Child, log: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(message.clone());
                if message.lines().any(|l| l == wanted) {
                    return message;
                }
            } else if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "exited ({status}) before {wanted}; seen {:?}\n{}",
                    self.seen,
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        panic!(
            "no {wanted} within 20 s; seen {:?}\n{}",
            self.seen,
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// A child process that is killed if the test ends without stopping it
/// (a failed assertion must not leave a relay or store running).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(name: &str, args: &[&str], dir: &Path, notify: &str, watchdog: bool) -> Guard {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    // systemd names the watched process in WATCHDOG_PID: the binary is
    // started by a shell that sets its own PID and then becomes the binary.
    let mut command = if watchdog {
        let mut c = Command::new("sh");
        c.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
            .arg(binary(name))
            .args(args)
            .env("WATCHDOG_USEC", "400000");
        c
    } else {
        let mut c = Command::new(binary(name));
        c.args(args);
        c
    };
    command
        .current_dir(dir)
        .env("NOTIFY_SOCKET", notify)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log);
    Guard(command.spawn().unwrap())
}

fn terminate(child: &mut Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("did not exit within 20 s");
}

#[test]
fn the_store_reports_loading_then_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (mut systemd, notify) = Systemd::bind(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = store_config();
    config["main"]["addr"] = json!(addr);
    config["metric-store"]["checkpoints"]["directory"] =
        json!(dir.path().join("checkpoints").display().to_string());
    let path = dir.path().join("store.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let log = dir.path().join("cc-store.log");
    let mut store = spawn(
        "cc-store",
        &["-config", path.to_str().unwrap()],
        dir.path(),
        &notify,
        false,
    );

    let ready = systemd.wait_for("READY=1", &mut store, &log);
    assert!(
        ready.contains("STATUS=serving on") && ready.contains("checkpoints loaded"),
        "{ready}"
    );
    assert!(
        systemd
            .seen
            .iter()
            .any(|m| m.contains("STATUS=loading checkpoints")),
        "the restore is announced before READY: {:?}",
        systemd.seen
    );
    // READY means the checkpoints are loaded: no more 503 while loading.
    let r = http(&addr, "GET", "/api/healthcheck", &[], b"").unwrap();
    assert_ne!(r.status, 503, "{}", r.text());

    terminate(&mut store);
    let stopping = systemd.wait_for("STOPPING=1", &mut store, &log);
    assert!(stopping.contains("STATUS=shutting down"), "{stopping}");
    systemd.wait_for("STATUS=writing the final checkpoint", &mut store, &log);
    assert!(wait_exit(&mut store).success());
}

#[test]
fn the_relay_reports_ready_pings_the_watchdog_and_reports_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (mut systemd, notify) = Systemd::bind(dir.path());
    let stub = Stub::start();
    let ingress = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut config = relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr)
    }]));
    config["ingress"]["http"][0]["address"] = json!(ingress);
    config["admin"] = json!({"address": admin});
    config["data_dir"] = json!(dir.path().join("data").display().to_string());
    let path = dir.path().join("relay.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let log = dir.path().join("cc-relay.log");
    let mut relay = spawn(
        "cc-relay",
        &["--config", path.to_str().unwrap()],
        dir.path(),
        &notify,
        true,
    );

    let ready = systemd.wait_for("READY=1", &mut relay, &log);
    assert!(
        ready.contains("STATUS=accepting data; forwarding to 1 upstream(s)"),
        "{ready}"
    );
    // READY means accepting: a write is acknowledged at once.
    let r = http(
        &ingress,
        "POST",
        "/api/write?cluster=c",
        &[],
        format!("cpu_load,hostname=n1 value=1 {}\n", common::now()).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // WATCHDOG_USEC=400000: pings every 200 ms.
    systemd.wait_for("WATCHDOG=1", &mut relay, &log);
    systemd.wait_for("WATCHDOG=1", &mut relay, &log);

    terminate(&mut relay);
    let stopping = systemd.wait_for("STOPPING=1", &mut relay, &log);
    assert!(stopping.contains("STATUS=shutting down"), "{stopping}");
    assert!(wait_exit(&mut relay).success());
}
