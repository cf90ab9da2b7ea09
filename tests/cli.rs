//! The binaries' command lines, as an administrator uses them.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test fails loudly"
)]

mod common;

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(common::binary(bin))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn both_binaries_print_their_version() {
    let version = env!("CARGO_PKG_VERSION");
    let is_commit =
        |c: &str| c == "unknown" || (c.len() == 12 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    // Both name the commit they were built from.
    let out = run("cc-store", &["--version"]);
    assert!(out.status.success(), "cc-store --version failed");
    let text = stdout(&out);
    let commit = text
        .trim()
        .strip_prefix(&format!("cc-store {version} (commit "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {text}"));
    assert!(is_commit(commit), "{text}");
    // The relay also names the sled version of its queue.
    let out = run("cc-relay", &["--version"]);
    assert!(out.status.success(), "cc-relay --version failed");
    let text = stdout(&out);
    let rest = text
        .trim()
        .strip_prefix(&format!("cc-relay {version} (commit "))
        .unwrap_or_else(|| panic!("unexpected --version: {text}"));
    let (commit, sled) = rest.split_once(", ").unwrap();
    assert!(is_commit(commit), "{text}");
    assert_eq!(sled, "sled 0.34.7)");
}

#[test]
fn store_accepts_upstream_go_style_flags() {
    let out = run("cc-store", &["-version"]);
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("cc-store "));
    let out = run("cc-store", &["-help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("--config <FILE>"));
}

#[test]
fn help_explains_the_programs() {
    let store = stdout(&run("cc-store", &["--help"]));
    for needle in [
        "cc-metric-store",
        "--config <FILE>",
        "--loglevel <LEVEL>",
        "--cleanup-checkpoints",
    ] {
        assert!(
            store.contains(needle),
            "cc-store --help lacks {needle:?}:\n{store}"
        );
    }
    let relay = stdout(&run("cc-relay", &["--help"]));
    for needle in [
        "-c, --config <FILE>",
        "--check-config",
        "--log-format <FORMAT>",
        "keeps every accepted batch on disk",
    ] {
        assert!(
            relay.contains(needle),
            "cc-relay --help lacks {needle:?}:\n{relay}"
        );
    }
}

#[test]
fn unknown_flags_fail_with_a_message() {
    for bin in ["cc-store", "cc-relay"] {
        let out = run(bin, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--no-such-flag"), "{bin}: {err}");
    }
}

#[test]
fn store_rejects_an_unknown_log_level() {
    let out = run("cc-store", &["-loglevel", "verbose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown log level \"verbose\""));
}

#[test]
fn both_binaries_print_completions_and_a_manual_page() {
    for name in ["cc-relay", "cc-store"] {
        let out = run(name, &["--completions", "bash"]);
        assert!(out.status.success(), "{name} --completions bash failed");
        let script = stdout(&out);
        assert!(script.contains("--check-config"), "{name}: {script}");
        // The script is valid bash.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &script).unwrap();
        let check = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        for shell in ["zsh", "fish"] {
            let out = run(name, &["--completions", shell]);
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "{name} {shell}"
            );
        }
        let out = run(name, &["--manpage"]);
        assert!(out.status.success(), "{name} --manpage failed");
        let page = stdout(&out);
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        assert!(page.contains("check\\-config"), "{page}");
        // An unknown shell is a usage error naming the choices.
        let out = run(name, &["--completions", "tcsh"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
    }
}

#[test]
fn store_reads_config_json_in_its_directory_as_upstream_does() {
    let dir = tempfile::tempdir().unwrap();
    let check = |dir: &std::path::Path| {
        let out = Command::new(common::binary("cc-store"))
            .arg("--check-config")
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    let text = check(dir.path());
    assert!(text.starts_with("built-in defaults: OK"), "{text}");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"main": {"addr": "127.0.0.1:18082"},
            "metrics": {"cpu_load": {"frequency": 10, "aggregation": null}},
            "metric-store": {"retention-in-memory": "1h", "memory-cap": 0}}"#,
    )
    .unwrap();
    let text = check(dir.path());
    assert!(
        text.starts_with("config.json: OK: listens on 127.0.0.1:18082, 1 metrics"),
        "{text}"
    );
}

#[test]
fn relay_token_signs_what_relay_and_store_accept() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .expect("openssl runs (Debian package openssl)");
    assert!(made.success());
    // The public half in both forms the docs give.
    let public_pem = dir.path().join("jwt.pub");
    assert!(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public_pem)
            .status()
            .unwrap()
            .success()
    );
    let der = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    use base64::Engine as _;
    let raw = &der.stdout[der.stdout.len() - 32..];
    let public_b64 = base64::engine::general_purpose::STANDARD.encode(raw);

    let key_arg = key.display().to_string();
    let out = run(
        "cc-relay",
        &[
            "token",
            "--key",
            &key_arg,
            "--sub",
            "node1",
            "--role",
            "api",
            "--valid-for",
            "1h",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let token = stdout(&out).trim().to_owned();
    assert_eq!(token.matches('.').count(), 2, "{token}");

    // A store with the key's raw base64 takes the token.
    let store = common::start_store_with_main(serde_json::json!({"jwt-public-key": public_b64}));
    let line = format!("cpu_load,cluster=c,hostname=n1 value=1 {}\n", common::now());
    let auth = format!("Bearer {token}");
    let r = store.request(
        "POST",
        "/api/write",
        &[("Authorization", &auth)],
        line.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = store.request(
        "POST",
        "/api/write",
        &[("Authorization", "Bearer x.y.z")],
        line.as_bytes(),
    );
    assert_eq!(r.status, 401);

    // A relay with the PEM public key takes it too.
    let stub = common::Stub::start();
    let config = serde_json::json!({
        "ingress": {"http": [{"name": "local",
            "auth": {"mode": "jwt", "jwt_public_key_file": public_pem, "required_roles": ["api"]}}]},
        "upstreams": [{"name": "store", "type": "ccms-http",
                       "url": format!("http://{}/api/write", stub.addr)}]
    });
    let (relay, _) = common::start_relay(config);
    let r = relay.request(
        "POST",
        "/api/write",
        &[("Authorization", &auth)],
        line.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A file that is not a private key is named.
    let pub_arg = public_pem.display().to_string();
    let out = run("cc-relay", &["token", "--key", &pub_arg, "--sub", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jwt.pub") && err.contains("not an Ed25519 private key"),
        "{err}"
    );
}
