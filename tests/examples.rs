//! The deployment examples in `examples/` run as they are written: each test
//! takes the example files, replaces only addresses, directories, keys and
//! limits of this machine, and drives the real programs with them.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::nats::{free_ports, nats_server_binary};
use common::{Stub, http, now, start_relay_in, wait_for};
use nkeys::KeyPair;
use serde_json::{Value, json};

fn example(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A rack relay example taking collectors' JWTs, made to run here: data in
/// `dir`, free ports, the test key pair's public key for the collectors.
fn rack_relay_example(rel: &str, dir: &tempfile::TempDir) -> Value {
    let mut relay: Value = serde_json::from_str(&example(rel)).unwrap();
    relay["data_dir"] = json!(dir.path().join("data").display().to_string());
    relay["admin"]["address"] = Value::Null;
    relay["ingress"]["http"][0]["address"] = Value::Null;
    relay["ingress"]["http"][0]["auth"]["jwt_public_key_file"] = json!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/jwt/test-public.b64")
            .display()
            .to_string()
    );
    relay
}

/// `text` with `from` replaced by `to`; `from` must occur.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replace(from, to)
}

fn secret_file(path: &Path, content: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("{content}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// Posts `n` lines of `cpu_load` for `host` (one per minute from `t`) to a
/// relay as the collectors' http sink does: a bearer token, no content type.
fn post_lines(relay: &str, token: &str, host: &str, t: i64, from: i64, n: i64) {
    let body: String = (from..from + n)
        .map(|i| format!("cpu_load,hostname={host} value={i} {}\n", t + i * 60))
        .collect();
    let r = http(
        relay,
        "POST",
        "/api/write?cluster=fritz",
        &[("Authorization", &format!("Bearer {token}"))],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// How many `cpu_load` values of `host` in cluster `fritz` the store holds
/// from `t` on (0 while it does not answer).
fn stored_points(store: &common::Process, host: &str, t: i64) -> usize {
    stored_points_as(store, &[], host, t)
}

/// [`stored_points`] with request headers (a token).
fn stored_points_as(
    store: &common::Process,
    headers: &[(&str, &str)],
    host: &str,
    t: i64,
) -> usize {
    let q = json!({"cluster": "fritz", "from": t - 60, "to": t + 3600,
                   "queries": [{"metric": "cpu_load", "host": host}]});
    let r = store.request("GET", "/api/query", headers, q.to_string().as_bytes());
    if r.status != 200 {
        return 0;
    }
    r.json()["results"][0][0]["data"]
        .as_array()
        .map_or(0, |d| d.iter().filter(|v| !v.is_null()).count())
}

/// A nats-server started on a configuration file; killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn the_nats_cluster_example_carries_collector_lines_to_the_store() {
    let dir = tempfile::tempdir().unwrap();

    // nats-server on the example's configuration.
    let ports = free_ports(2);
    let relay_key = KeyPair::new_user();
    let mut conf = example("nats-cluster/nats-server.conf");
    conf = replace(
        &conf,
        "listen: 0.0.0.0:4222",
        &format!("listen: 127.0.0.1:{}", ports[0]),
    );
    conf = replace(
        &conf,
        "http: 127.0.0.1:8222",
        &format!("http: 127.0.0.1:{}", ports[1]),
    );
    conf = replace(
        &conf,
        "/var/lib/nats/jetstream",
        &dir.path().join("jetstream").display().to_string(),
    );
    conf = replace(&conf, "max_file_store: 64GB", "max_file_store: 1GB");
    conf = replace(
        &conf,
        "UBLHG3SU73WBXKJOHOD33JLFJXMWTOKN4GVZOU6OTN2XYKKPZXEVEGWI",
        &relay_key.public_key(),
    );
    let conf_path = dir.path().join("nats-server.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("nats.log");
    let server = Server {
        child: Command::new(nats_server_binary())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let monitor = format!("127.0.0.1:{}", ports[1]);
    assert!(
        wait_for(Duration::from_secs(20), || http(
            &monitor,
            "GET",
            "/healthz",
            &[],
            b""
        )
        .is_ok_and(|r| r.status == 200)),
        "nats-server did not come up:\n{}",
        server.log_text()
    );
    let url = format!("nats://127.0.0.1:{}", ports[0]);

    // cc-relay on the example's configuration.
    let relay_dir = tempfile::tempdir().unwrap();
    let stub = Stub::start();
    let mut relay: Value = serde_json::from_str(&example("nats-cluster/cc-relay.json")).unwrap();
    relay["data_dir"] = json!(relay_dir.path().join("data").display().to_string());
    relay["admin"]["address"] = Value::Null;
    let input = &mut relay["ingress"]["nats"][0];
    input["servers"] = json!([url]);
    input["auth"]["nkey_seed_file"] = json!(secret_file(
        &relay_dir.path().join("relay.nk"),
        &relay_key.seed().unwrap()
    ));
    // This machine's JetStream takes smaller streams.
    input["jetstream"]["stream_config"]["max_bytes"] = json!("64MiB");
    let store = &mut relay["upstreams"][0];
    store["url"] = json!(format!("http://{}/api/write", stub.addr));
    store["auth"]["jwt_file"] = json!(secret_file(
        &relay_dir.path().join("store.jwt"),
        "example-token"
    ));
    let (relay, _admin) = start_relay_in(relay, relay_dir);

    // A collector with the example sink's settings publishes a node's lines.
    let sink: Value = serde_json::from_str(&example("nats-cluster/collector-sink.json")).unwrap();
    let sink = &sink["nats-fritz"];
    assert_eq!(sink["type"], "nats");
    let subject = sink["subject"].as_str().unwrap().to_owned();
    let t = now();
    let lines: Vec<String> = (0..20)
        .map(|i| format!("cpu_load,hostname=node{i:03},type=node value={i} {t}"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (user, password) = (
        sink["user"].as_str().unwrap().to_owned(),
        sink["password"].as_str().unwrap().to_owned(),
    );
    let sub_refused = rt.block_on(async {
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let collector = async_nats::ConnectOptions::with_user_and_password(user, password)
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(url.as_str())
            .await
            .unwrap();
        collector
            .publish(subject.clone(), lines.join("\n").into())
            .await
            .unwrap();
        collector.flush().await.unwrap();
        // Collectors may not read anything.
        let _sub = collector.subscribe("ccmetrics.>").await.unwrap();
        collector.flush().await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Some(async_nats::Event::ServerError(e))) => break e.to_string(),
                Ok(Some(_)) => {}
                _ => break String::new(),
            }
        }
    });
    assert!(
        sub_refused
            .to_lowercase()
            .contains("permissions violation for subscription"),
        "{sub_refused:?}"
    );

    let delivered = wait_for(Duration::from_secs(20), || {
        let got = stub.delivered_lines();
        lines.iter().all(|l| got.contains(l))
    });
    assert!(
        delivered,
        "delivered: {:?}\nrelay log:\n{}\nnats log:\n{}",
        stub.delivered_lines(),
        relay.log_text(),
        server.log_text()
    );
    // The store was asked for the example's cluster.
    assert!(
        stub.requests()
            .iter()
            .all(|r| r.target.contains("cluster=fritz")),
        "{:?}",
        stub.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    );
}

/// The metric names an expression of the rules file uses.
fn metric_names(rules: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["ccrelay_", "ccstore_"] {
        let mut rest = rules;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn the_alert_rules_and_dashboard_use_metrics_the_programs_export() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring/cc-alerts.yml");
    let out = match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: this test checks the alert rules with it; install \
             Debian's `prometheus` package (scripts/test does)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A store and a relay, both with NATS, after some traffic: every
    // family the rules name must be in their /metrics.
    let nats = common::nats::NatsServer::start(common::nats::NatsSetup::new());
    let mut store_config = common::store_config();
    store_config["nats"] = json!({ "address": nats.url() });
    store_config["metric-store"]["nats-subscriptions"] =
        json!([{ "subscribe-to": "hpc.metrics", "cluster-tag": "fritz" }]);
    let store = common::start_store(store_config);
    let mut relay = common::relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", store.addr)
    }]));
    relay["ingress"]["nats"] = json!([{
        "name": "bus",
        "servers": [nats.url()],
        "subjects": [{ "subject": "metrics.>", "cluster": "fritz" }]
    }]);
    let (relay, admin) = common::start_relay(relay);
    let body = format!("cpu_load,hostname=n1 value=1 {}\n", now());
    let r = http(
        &relay.addr,
        "POST",
        "/api/write?cluster=fritz",
        &[],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let relay_metrics = http(&admin, "GET", "/metrics", &[], b"").unwrap().text();
    // Once the relay has delivered, every per-cluster family has a series.
    let store_scrape = || store.request("GET", "/metrics", &[], b"").text();
    assert!(
        wait_for(Duration::from_secs(20), || common::sample(
            &store_scrape(),
            "ccstore_hosts"
        ) == Some(1.0)),
        "{}",
        store_scrape()
    );
    let store_metrics = store_scrape();
    // The dashboard: every panel but the rows queries something.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring/cc-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            exprs.push_str(target["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let rules = std::fs::read_to_string(&path).unwrap();
    let used = metric_names(&format!("{rules}\n{exprs}"));
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<String> = used
        .into_iter()
        .filter(|name| {
            let text = if name.starts_with("ccrelay_") {
                &relay_metrics
            } else {
                &store_metrics
            };
            !text.contains(&format!("# TYPE {name} ")) && !text.contains(&format!("\n{name}{{"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the rules or the dashboard use metrics the programs do not export: {missing:?}\n--- relay ---\n{relay_metrics}\n--- store ---\n{store_metrics}"
    );
}

#[test]
fn the_small_cluster_example_keeps_every_line_across_a_store_restart() {
    // cc-store on its reference configuration: the test key, this
    // machine's directories, no NATS server.
    let store_dir = tempfile::tempdir().unwrap();
    let mut store_config: Value = serde_json::from_str(&example("cc-store/config.json")).unwrap();
    store_config["main"]["jwt-public-key"] = json!(common::test_public_key());
    let var = store_dir.path().join("var");
    store_config["metric-store"]["checkpoints"]["directory"] =
        json!(var.join("checkpoints").display().to_string());
    store_config["metric-store"]["cleanup"]["directory"] =
        json!(var.join("archive").display().to_string());
    store_config["nats"] = Value::Null;
    let store = common::start_store_in(store_config.clone(), store_dir);

    // The rack relay on the example, with the store's token.
    let dir = tempfile::tempdir().unwrap();
    let mut relay = rack_relay_example("small-cluster/cc-relay.json", &dir);
    let store_token = common::mint_token(&json!({"sub": "rack17-relay", "roles": ["api"]}));
    relay["upstreams"][0]["url"] = json!(format!("http://{}/api/write", store.addr));
    relay["upstreams"][0]["auth"]["jwt_file"] =
        json!(secret_file(&dir.path().join("store.jwt"), &store_token));
    let (relay, _admin) = start_relay_in(relay, dir);

    let collector = common::mint_token(&json!({"sub": "n1"}));
    let t = now() - 600;
    let auth = format!("Bearer {store_token}");
    let points =
        |store: &common::Process| stored_points_as(store, &[("Authorization", &auth)], "n1", t);
    post_lines(&relay.addr, &collector, "n1", t, 0, 4);
    assert!(
        wait_for(Duration::from_secs(20), || points(&store) == 4),
        "the store got {} of 4\n{}",
        points(&store),
        relay.log_text()
    );

    // The store restarts (an upgrade); the collectors keep posting.
    let port: u16 = store.addr.rsplit(':').next().unwrap().parse().unwrap();
    let (status, store_dir) = store.stop();
    assert!(status.success(), "{status}");
    post_lines(&relay.addr, &collector, "n1", t, 4, 4);
    let store = common::start_store_on_in(store_config, port, store_dir);
    assert!(
        wait_for(Duration::from_secs(30), || points(&store) == 8),
        "after the restart the store has {} of 8\n{}",
        points(&store),
        relay.log_text()
    );
}

#[test]
fn the_two_stores_example_feeds_both_and_rides_out_one_being_down() {
    // Two stores, one relay on the example's configuration.
    let store_a = common::start_store(common::store_config());
    let mut store_b = common::start_store(common::store_config());
    let dir = tempfile::tempdir().unwrap();
    let mut relay = rack_relay_example("two-stores/cc-relay.json", &dir);
    let store_jwt = secret_file(&dir.path().join("store.jwt"), "example-token");
    for (upstream, store) in relay["upstreams"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip([&store_a, &store_b])
    {
        upstream["url"] = json!(format!("http://{}/api/write", store.addr));
        upstream["auth"]["jwt_file"] = json!(store_jwt);
    }
    let (relay, _admin) = start_relay_in(relay, dir);
    let token = common::mint_token(&json!({"sub": "node1"}));
    let t = now() - 600;
    let post = |from, n| post_lines(&relay.addr, &token, "n1", t, from, n);
    let points = |store: &common::Process| stored_points(store, "n1", t);
    post(0, 4);
    assert!(
        wait_for(Duration::from_secs(20), || points(&store_a) == 4
            && points(&store_b) == 4),
        "both stores get every line: {} / {}\n{}",
        points(&store_a),
        points(&store_b),
        relay.log_text()
    );

    // Store B goes down; store A keeps getting data, B's lines wait on disk.
    let b_port: u16 = store_b.addr.rsplit(':').next().unwrap().parse().unwrap();
    let (_, b_dir) = store_b.stop();
    post(4, 4);
    assert!(
        wait_for(Duration::from_secs(20), || points(&store_a) == 8),
        "store A: {}",
        points(&store_a)
    );
    // Store B comes back on its port and directory, and catches up.
    store_b = common::start_store_on_in(common::store_config(), b_port, b_dir);
    assert!(
        wait_for(Duration::from_secs(30), || points(&store_b) == 8),
        "store B after its restart: {}\n{}",
        points(&store_b),
        relay.log_text()
    );
}

#[test]
fn the_isolated_network_example_passes_lines_through_two_relays_over_mutual_tls() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let tls_file = |name: &str| json!(tls.join(name).display().to_string());
    let public_key = json!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/jwt/test-public.b64")
            .display()
            .to_string()
    );
    let store = common::start_store(common::store_config());

    // The head-node relay: mutual TLS and a relay token from the racks,
    // the store on its own network.
    let head_dir = tempfile::tempdir().unwrap();
    let mut head: Value =
        serde_json::from_str(&example("isolated-network/head-relay.json")).unwrap();
    head["data_dir"] = json!(head_dir.path().join("data").display().to_string());
    head["admin"]["address"] = Value::Null;
    let ingress = &mut head["ingress"]["http"][0];
    ingress["address"] = Value::Null;
    ingress["tls"]["cert_file"] = tls_file("server.pem");
    ingress["tls"]["key_file"] = tls_file("server-key.pem");
    ingress["tls"]["client_ca_file"] = tls_file("ca.pem");
    ingress["auth"]["jwt_public_key_file"] = public_key.clone();
    head["upstreams"][0]["url"] = json!(format!("http://{}/api/write", store.addr));
    head["upstreams"][0]["auth"]["jwt_file"] = json!(secret_file(
        &head_dir.path().join("store.jwt"),
        "store-token"
    ));
    let (head, _) = start_relay_in(head, head_dir);
    let head_port = head.addr.rsplit(':').next().unwrap().to_owned();

    // The rack relay on the compute network.
    let rack_dir = tempfile::tempdir().unwrap();
    let mut rack: Value =
        serde_json::from_str(&example("isolated-network/rack-relay.json")).unwrap();
    rack["data_dir"] = json!(rack_dir.path().join("data").display().to_string());
    rack["admin"]["address"] = Value::Null;
    rack["ingress"]["http"][0]["address"] = Value::Null;
    rack["ingress"]["http"][0]["auth"]["jwt_public_key_file"] = public_key;
    let up = &mut rack["upstreams"][0];
    // The test certificate names `localhost`.
    up["url"] = json!(format!("https://localhost:{head_port}/api/write"));
    up["tls"]["ca_file"] = tls_file("ca.pem");
    up["tls"]["cert_file"] = tls_file("client.pem");
    up["tls"]["key_file"] = tls_file("client-key.pem");
    up["auth"]["jwt_file"] = json!(secret_file(
        &rack_dir.path().join("rack17.jwt"),
        &common::mint_token(&json!({"sub": "rack17", "roles": ["relay"]}))
    ));
    let (rack, _) = start_relay_in(rack, rack_dir);

    // A collector posts to the rack relay; the lines reach the store.
    let t = now() - 300;
    let token = common::mint_token(&json!({"sub": "n7"}));
    post_lines(&rack.addr, &token, "n7", t, 0, 5);
    let stored = || stored_points(&store, "n7", t);
    assert!(
        wait_for(Duration::from_secs(20), || stored() == 5),
        "stored {}\nrack relay:\n{}\nhead relay:\n{}",
        stored(),
        rack.log_text(),
        head.log_text()
    );

    // Without a client certificate, even with a relay token, the head relay
    // takes nothing.
    let relay_token = common::mint_token(&json!({"sub": "rack17", "roles": ["relay"]}));
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(tls.join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {relay_token}")])
        .args([
            "--data-binary",
            &format!("cpu_load,hostname=n8 value=1 {t}\n"),
        ])
        .arg(format!(
            "https://localhost:{head_port}/api/write?cluster=fritz"
        ))
        .output()
        .expect("curl (scripts/test installs it)");
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
}

/// `text` with every `/etc/cc-relay/<name>` replaced by a file of that name
/// in `dir` holding what such a file holds: a public key, a token, an NKey
/// seed, a certificate or key of the test CA.
fn with_etc_files(text: &str, dir: &Path) -> String {
    const PREFIX: &str = "/etc/cc-relay/";
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let mut rest = text;
    while let Some(start) = rest.find(PREFIX) {
        let after = &rest[start + PREFIX.len()..];
        let end = after.find('"').unwrap();
        let name = &after[..end];
        let path = dir.join(name);
        let copy = |from: PathBuf| std::fs::copy(from, &path).map(|_| ()).unwrap();
        if name.ends_with(".pub") {
            copy(fixtures.join("test-public.b64"));
        } else if name.ends_with(".crt") {
            copy(tls.join("server.pem"));
        } else if name.ends_with(".key") {
            copy(tls.join("server-key.pem"));
        } else if name.ends_with(".pem") {
            copy(tls.join("ca.pem"));
        } else if name.ends_with(".nk") {
            secret_file(&path, &KeyPair::new_user().seed().unwrap());
        } else if name.ends_with(".creds") {
            let user = KeyPair::new_user();
            let account = KeyPair::new_account();
            let jwt = common::nats::jwt::user(&account, &user, "relay", None);
            std::fs::write(&path, common::nats::jwt::creds(&jwt, &user.seed().unwrap())).unwrap();
        } else {
            secret_file(&path, "example-token");
        }
        rest = &after[end..];
    }
    text.replace(PREFIX, &format!("{}/", dir.display()))
}

#[test]
fn every_example_configuration_passes_check_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    // Every JSON file below examples/ is a relay configuration, except the
    // store's and the collectors' sink entries, so a new example is checked
    // without being listed here.
    let mut relay_configs = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() || dir.ends_with("cc-store") || dir.ends_with("monitoring") {
            continue;
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with("collector") {
                relay_configs.push(path);
            }
        }
    }
    assert!(relay_configs.len() >= 8, "{relay_configs:?}");
    for path in relay_configs {
        let dir = tempfile::tempdir().unwrap();
        let text = with_etc_files(&std::fs::read_to_string(&path).unwrap(), dir.path());
        let config = dir.path().join("relay.json");
        std::fs::write(&config, text).unwrap();
        let out = common::relay_cli(&config, &["--check-config"]);
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The store's example loads as it is.
    let out = Command::new(common::binary("cc-store"))
        .arg("--config")
        .arg(root.join("cc-store/config.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(": OK: listens on"), "{summary}");
    // And a broken one names the key.
    let broken = tempfile::tempdir().unwrap();
    let path = broken.path().join("config.json");
    std::fs::write(
        &path,
        std::fs::read_to_string(root.join("cc-store/config.json"))
            .unwrap()
            .replace("\"retention-in-memory\"", "\"retention-in-memroy\""),
    )
    .unwrap();
    let out = Command::new(common::binary("cc-store"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retention-in-memroy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every HTTP `collector-sink.json` points at what the relay of its example
/// listens on: the ingress port and one of its paths, with a JWT when the
/// ingress wants one.
#[test]
fn collector_sink_entries_match_their_relay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for dir in ["small-cluster", "two-stores", "isolated-network"] {
        let relay_file = if dir == "isolated-network" {
            "rack-relay.json"
        } else {
            "cc-relay.json"
        };
        let relay: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(dir).join(relay_file)).unwrap(),
        )
        .unwrap();
        let sinks: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(dir).join("collector-sink.json")).unwrap(),
        )
        .unwrap();
        let ingress = &relay["ingress"]["http"][0];
        let port = ingress["address"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap();
        for (name, sink) in sinks.as_object().unwrap() {
            assert_eq!(sink["type"], "http", "{dir}: {name}");
            let url = sink["url"].as_str().unwrap();
            let (authority, rest) = url
                .strip_prefix("http://")
                .unwrap()
                .split_once('/')
                .unwrap();
            assert!(authority.ends_with(&format!(":{port}")), "{dir}: {url}");
            let path = format!("/{}", rest.split('?').next().unwrap());
            let paths = ingress["paths"].as_array().cloned().unwrap_or_else(|| {
                ["/api/write", "/api/write/", "/write", "/api/v2/write"]
                    .iter()
                    .map(|p| json!(p))
                    .collect()
            });
            assert!(
                paths.contains(&json!(path)),
                "{dir}: {path} not in {paths:?}"
            );
            if ingress["auth"]["mode"] == "jwt" {
                assert!(sink["jwt"].is_string(), "{dir}: the relay wants a JWT");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}
