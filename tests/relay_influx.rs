//! InfluxDB clients write to cc-relay unchanged: the InfluxDB 1 (`influxdb`)
//! and InfluxDB 2 (`influxdb-client`) Python libraries, used exactly as their
//! documentation shows, against the relay's `/write` and `/api/v2/write`.
//!
//! The libraries come from PyPI; `scripts/test` installs them. A machine
//! without them fails these tests with the command that installs them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Stub, mint_token, now, relay_config, start_relay, test_public_key, wait_for};
use serde_json::{Value, json};

/// Runs a Python snippet with the client libraries; panics with the command
/// that installs them if they are missing.
fn run_client(script: &str, env: &[(&str, &str)]) -> std::process::Output {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for the InfluxDB client tests: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'influxdb"),
        "the InfluxDB client libraries are missing: pip install influxdb influxdb-client \
         (./scripts/test installs them)\n{stderr}"
    );
    output
}

/// Runs a snippet that must succeed; returns what it printed.
fn python(script: &str, env: &[(&str, &str)]) -> String {
    let output = run_client(script, env);
    assert!(
        output.status.success(),
        "client failed:\n{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a snippet that must fail; returns what it printed on stderr.
fn python_fails(script: &str, env: &[(&str, &str)]) -> String {
    let output = run_client(script, env);
    assert!(!output.status.success(), "the client should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn store(stub: &Stub) -> Value {
    relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
        "batch": {"linger": "20ms"}
    }]))
}

fn delivered(stub: &Stub, line_start: &str) -> bool {
    wait_for(Duration::from_secs(10), || {
        stub.delivered_lines()
            .iter()
            .any(|l| l.starts_with(line_start))
    })
}

const V1_WRITE: &str = r#"
import os
from influxdb import InfluxDBClient
host, port = os.environ["RELAY"].split(":")
client = InfluxDBClient(host=host, port=int(port), username=os.environ.get("USER_NAME", "root"),
                        password=os.environ.get("PASSWORD", "root"), database="metrics")
ok = client.write_points([os.environ["LINE"]], time_precision="s", protocol="line")
print("written" if ok else "refused")
"#;

#[test]
fn influxdb_1_client_writes_to_write() {
    let stub = Stub::start();
    let (relay, _admin) = start_relay(store(&stub));
    let line = format!(
        "cpu_load,cluster=fritz,hostname=n1,type=node value=1.5 {}",
        now()
    );
    let out = python(V1_WRITE, &[("RELAY", &relay.addr), ("LINE", &line)]);
    assert_eq!(out.trim(), "written");
    assert!(delivered(&stub, "cpu_load,cluster=fritz,hostname=n1"));
    // The line reaches the store exactly as written (seconds, no rewrite).
    assert!(
        stub.delivered_lines().contains(&line),
        "{:?}",
        stub.delivered_lines()
    );
}

#[test]
fn influxdb_1_client_authenticates_with_user_and_password() {
    let stub = Stub::start();
    let mut config = store(&stub);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "collector:s3cret\n").unwrap();
    config["ingress"]["http"][0]["auth"] =
        json!({"mode": "basic", "basic_users_file": users.display().to_string()});
    let (relay, _admin) = start_relay(config);
    let line = format!(
        "mem_used,cluster=fritz,hostname=n2,type=node value=7 {}",
        now()
    );
    let out = python(
        V1_WRITE,
        &[
            ("RELAY", &relay.addr),
            ("LINE", &line),
            ("USER_NAME", "collector"),
            ("PASSWORD", "s3cret"),
        ],
    );
    assert_eq!(out.trim(), "written");
    assert!(delivered(&stub, "mem_used,cluster=fritz,hostname=n2"));
    // A wrong password is an error the client raises.
    let refused = python_fails(
        V1_WRITE,
        &[
            ("RELAY", &relay.addr),
            ("LINE", &line),
            ("USER_NAME", "collector"),
            ("PASSWORD", "wrong"),
        ],
    );
    assert!(refused.contains("401"), "{refused}");
}

const V2_WRITE: &str = r#"
import os
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url="http://" + os.environ["RELAY"], token=os.environ.get("TOKEN", "none"), org="site") as client:
    client.write_api(write_options=SYNCHRONOUS).write(bucket="metrics", record=os.environ["LINE"],
                                                      write_precision=WritePrecision.S)
print("written")
"#;

#[test]
fn influxdb_2_client_writes_to_api_v2_write() {
    let stub = Stub::start();
    let (relay, _admin) = start_relay(store(&stub));
    let line = format!(
        "flops_any,cluster=fritz,hostname=n3,type=node value=3 {}",
        now()
    );
    let out = python(V2_WRITE, &[("RELAY", &relay.addr), ("LINE", &line)]);
    assert_eq!(out.trim(), "written");
    assert!(delivered(&stub, "flops_any,cluster=fritz,hostname=n3"));
}

#[test]
fn influxdb_2_client_authenticates_with_a_jwt_as_its_token() {
    let stub = Stub::start();
    let mut config = store(&stub);
    config["ingress"]["http"][0]["auth"] =
        json!({"mode": "jwt", "jwt_public_key": test_public_key()});
    let (relay, _admin) = start_relay(config);
    let line = format!(
        "ib_recv,cluster=fritz,hostname=n4,type=node value=4 {}",
        now()
    );
    let token = mint_token(&json!({"sub": "n4"}));
    let out = python(
        V2_WRITE,
        &[("RELAY", &relay.addr), ("LINE", &line), ("TOKEN", &token)],
    );
    assert_eq!(out.trim(), "written");
    assert!(delivered(&stub, "ib_recv,cluster=fritz,hostname=n4"));
    let refused = python_fails(
        V2_WRITE,
        &[
            ("RELAY", &relay.addr),
            ("LINE", &line),
            ("TOKEN", "not-a-jwt"),
        ],
    );
    assert!(refused.contains("401"), "{refused}");
}

#[test]
fn each_path_answers_as_its_senders_expect_unless_configured() {
    let stub = Stub::start();
    let (relay, _admin) = start_relay(store(&stub));
    let body = format!("m,cluster=c,hostname=h value=1 {}\n", now());
    for (path, status) in [
        ("/api/write", 200),
        ("/api/write/", 200),
        ("/write?db=x&precision=s", 204),
        ("/api/v2/write?org=o&bucket=b&precision=s", 204),
    ] {
        let r = relay.request("POST", path, &[], body.as_bytes());
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("x-cc-relay-accepted"), Some("1"), "{path}");
    }
    let r = relay.request("POST", "/write?precision=h", &[], body.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.text().contains("hours"), "{}", r.text());
    drop(relay);

    let mut config = store(&stub);
    config["ingress"]["http"][0]["success_status"] = json!(200);
    let (relay, _admin) = start_relay(config);
    for path in ["/api/write", "/write", "/api/v2/write"] {
        assert_eq!(
            relay.request("POST", path, &[], body.as_bytes()).status,
            200,
            "{path}"
        );
    }
}
