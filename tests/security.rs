//! Security of both programs as an attacker on the compute network and an
//! administrator reading logs meet it (`relay.md` §4.3, §4.10; `store.md`
//! §4): secrets never reach a log, `/status`, `/metrics` or
//! `--check-config`; forged, expired, truncated and foreign tokens are
//! refused on every protected endpoint; admin endpoints need their token.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::nats::{NatsServer, NatsSetup};
use common::{
    Stub, metric, mint_token, now, start_relay_logging, start_relay_when, start_store_logging,
    start_store_with_main, store_config, test_public_key, wait_for,
};
use serde_json::{Value, json};

/// Writes `content` to `dir/name`, readable by its owner only, and returns
/// the path.
fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// A token signed with another Ed25519 key than the test key pair.
fn foreign_token(claims: &Value) -> String {
    // PKCS#8 v1 of an Ed25519 key: a fixed prefix, then the 32-byte seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend([7u8; 32]);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )
    .unwrap()
}

/// A compact JWS with the given header and claims and `signature` as is.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Tokens that must be refused with the test key pair configured, by name.
/// Their claims would be enough for every endpoint.
fn forged_tokens() -> Vec<(&'static str, String)> {
    let t = now();
    let claims = json!({"sub": "mallory", "roles": ["admin", "api", "collector"]});
    let good = mint_token(&claims);
    let signature = good.rsplit('.').next().unwrap().to_owned();
    let hs256 = |secret: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    };
    let with = |extra: Value| {
        let mut c = claims.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let key_text = test_public_key();
    let key_raw = STANDARD.decode(&key_text).unwrap();
    let mut two_segments = good.clone();
    two_segments.truncate(good.rfind('.').unwrap());
    vec![
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &claims, ""),
        ),
        (
            "alg none with a signature",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &claims, &signature),
        ),
        (
            "alg None",
            raw_token(&json!({"alg": "None", "typ": "JWT"}), &claims, ""),
        ),
        (
            "HS256 keyed with the public key's base64",
            hs256(key_text.as_bytes()),
        ),
        ("HS256 keyed with the raw public key", hs256(&key_raw)),
        (
            "RS256 header on an EdDSA signature",
            raw_token(&json!({"alg": "RS256", "typ": "JWT"}), &claims, &signature),
        ),
        (
            "expired an hour ago",
            mint_token(&with(json!({"exp": t - 3600}))),
        ),
        (
            "valid from in an hour",
            mint_token(&with(json!({"nbf": t + 3600}))),
        ),
        (
            "issued in an hour",
            mint_token(&with(json!({"iat": t + 3600}))),
        ),
        ("truncated signature", good[..good.len() - 8].to_owned()),
        ("signature cut off", format!("{two_segments}.")),
        ("two segments", two_segments),
        ("header only", good.split('.').next().unwrap().to_owned()),
        ("signed with another key", foreign_token(&claims)),
        (
            "payload swapped under a valid signature",
            raw_token(
                &json!({"alg": "EdDSA", "typ": "JWT"}),
                &with(json!({"sub": "root"})),
                &signature,
            ),
        ),
        ("empty", String::new()),
        ("garbage", "not.a.token".to_owned()),
    ]
}

#[test]
fn forged_tokens_are_refused_by_the_relay_ingress() {
    let stub = Stub::start();
    let mut config = common::relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
    }]));
    config["ingress"]["http"][0]["auth"] =
        json!({"mode": "jwt", "jwt_public_key": test_public_key()});
    let (relay, admin) = common::start_relay(config);
    let line = format!(
        "cpu_load,cluster=c,hostname=h,type=node value=1 {}\n",
        now()
    );
    let paths = [
        "/api/write",
        "/api/write/",
        "/write?db=x",
        "/api/v2/write?org=o&bucket=b",
    ];
    let good = mint_token(&json!({"sub": "collector"}));
    for path in paths {
        let r = relay.request(
            "POST",
            path,
            &[("Authorization", &format!("Bearer {good}"))],
            line.as_bytes(),
        );
        assert!((200..300).contains(&r.status), "{path}: {}", r.text());
    }
    let mut refused = 0;
    for (name, token) in forged_tokens() {
        for path in paths {
            for (header, value) in [
                ("Authorization", format!("Bearer {token}")),
                ("Authorization", format!("Token {token}")),
                ("X-Auth-Token", token.clone()),
            ] {
                let r = relay.request("POST", path, &[(header, &value)], line.as_bytes());
                assert_eq!(
                    r.status,
                    401,
                    "{name} as {header}: {value:?} on {path}: {}",
                    r.text()
                );
                assert_eq!(
                    r.header("www-authenticate"),
                    Some("Bearer realm=\"cc-relay\""),
                    "{name} on {path}"
                );
                refused += 1;
            }
        }
    }
    for path in paths {
        let r = relay.request("POST", path, &[], line.as_bytes());
        assert_eq!(
            (r.status, r.text().as_str()),
            (401, "credentials required\n")
        );
        let basic = format!("Basic {}", STANDARD.encode("collector:pw"));
        let r = relay.request("POST", path, &[("Authorization", &basic)], line.as_bytes());
        assert_eq!(r.status, 401, "basic auth is not a mode of this listener");
    }
    assert_eq!(
        metric(&admin, "ccrelay_ingest_lines_total{ingress=\"local\"}"),
        4.0,
        "only the lines of the good token were taken"
    );
    assert!(
        metric(&admin, "ccrelay_auth_failures_total{") >= f64::from(refused),
        "every refusal counted"
    );
}

#[test]
fn the_relay_admin_endpoints_need_the_admin_token() {
    let stub = Stub::start();
    let dir = tempfile::tempdir().unwrap();
    let token = "admin-token-5a1f0c";
    let mut config = common::relay_config(json!([{
        "name": "store",
        "type": "ccms-http",
        "url": format!("http://{}/api/write", stub.addr),
    }]));
    config["admin"] = json!({"auth_token_file": secret_file(dir.path(), "admin.token", token)});
    let right = format!("Bearer {token}");
    let (_relay, admin) = start_relay_when(config, dir, |admin| {
        common::http(admin, "GET", "/readyz", &[("Authorization", &right)], b"")
            .is_ok_and(|r| r.status == 200)
    });
    let mut wrong: Vec<(String, String)> = forged_tokens()
        .into_iter()
        .map(|(name, t)| (name.to_owned(), format!("Bearer {t}")))
        .collect();
    for (name, value) in [
        ("no scheme", token.to_owned()),
        (
            "basic",
            format!("Basic {}", STANDARD.encode(format!("admin:{token}"))),
        ),
        ("lower-case scheme", format!("bearer {token}")),
        ("prefix", format!("Bearer {}", &token[..token.len() - 1])),
        ("longer", format!("Bearer {token}x")),
        ("other case", format!("Bearer {}", token.to_uppercase())),
        (
            "a valid JWT",
            format!("Bearer {}", mint_token(&json!({"sub": "a"}))),
        ),
    ] {
        wrong.push((name.to_owned(), value));
    }
    for path in ["/metrics", "/readyz", "/status", "/"] {
        let r = common::http(&admin, "GET", path, &[], b"").unwrap();
        assert_eq!(
            (r.status, r.text().as_str()),
            (401, "admin token required\n"),
            "{path} without a token"
        );
        for (name, value) in &wrong {
            let r = common::http(&admin, "GET", path, &[("Authorization", value)], b"").unwrap();
            assert_eq!(r.status, 401, "{path} with {name}: {}", r.text());
        }
        let r = common::http(&admin, "GET", path, &[("Authorization", &right)], b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = common::http(&admin, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 200, "liveness needs no token");
}

/// Every protected route of the store with a request it would answer.
fn store_routes(t: i64) -> Vec<(&'static str, String, Vec<u8>)> {
    let line = format!("cpu_load,hostname=h,type=node value=1 {t}\n").into_bytes();
    let query = json!({"cluster": "c", "from": t - 60, "to": t + 60,
                       "queries": [{"metric": "cpu_load", "host": "h"}]})
    .to_string()
    .into_bytes();
    let health = json!({"cluster": "c", "nodes": ["h"], "metric-names": ["cpu_load"]})
        .to_string()
        .into_bytes();
    let mut routes = Vec::new();
    for slash in ["", "/"] {
        routes.push(("POST", format!("/api/write{slash}?cluster=c"), line.clone()));
        routes.push(("GET", format!("/api/query{slash}"), query.clone()));
        routes.push(("GET", format!("/api/healthcheck{slash}"), health.clone()));
        routes.push(("POST", format!("/api/free{slash}?to=1"), b"[]".to_vec()));
        routes.push(("GET", format!("/api/debug{slash}"), Vec::new()));
    }
    routes.push(("GET", "/metrics".to_owned(), Vec::new()));
    routes.push(("GET", "/status".to_owned(), Vec::new()));
    routes.push(("GET", "/".to_owned(), Vec::new()));
    routes
}

/// Routes that need one of the `admin-roles`.
fn admin_only(path: &str) -> bool {
    path.starts_with("/api/free") || path.starts_with("/api/debug") || !path.starts_with("/api/")
}

#[test]
fn forged_tokens_are_refused_on_every_store_endpoint() {
    let store = start_store_with_main(json!({
        "jwt-public-key": test_public_key(),
        "admin-roles": ["admin"],
        "metrics-endpoint-auth": true
    }));
    let t = now();
    let admin = format!(
        "Bearer {}",
        mint_token(&json!({"sub": "a", "roles": ["admin"]}))
    );
    let user = format!(
        "Bearer {}",
        mint_token(&json!({"sub": "u", "roles": ["api"]}))
    );
    for (method, path, body) in store_routes(t) {
        let r = store.request(method, &path, &[], &body);
        assert_eq!(
            (r.status, r.text().as_str()),
            (401, "Use JWT Authentication\n"),
            "{method} {path} without a token"
        );
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        for (name, token) in forged_tokens() {
            let auth = format!("Bearer {token}");
            let r = store.request(method, &path, &[("Authorization", &auth)], &body);
            assert_eq!(r.status, 401, "{name} on {method} {path}: {}", r.text());
            assert!(
                !r.text().trim().is_empty()
                    && r.header("content-type") == Some("text/plain; charset=utf-8"),
                "{name} on {path}: a plain-text reason"
            );
            if token.len() > 20 {
                assert!(!r.text().contains(&token), "{name} on {path}: token echoed");
            }
        }
        for (name, header) in [
            (
                "X-Auth-Token",
                (
                    "X-Auth-Token",
                    admin.trim_start_matches("Bearer ").to_owned(),
                ),
            ),
            (
                "lower-case scheme",
                ("Authorization", admin.replacen("Bearer", "bearer", 1)),
            ),
            (
                "basic",
                ("Authorization", format!("Basic {}", STANDARD.encode("a:b"))),
            ),
        ] {
            let r = store.request(method, &path, &[(header.0, &header.1)], &body);
            assert_eq!(r.status, 401, "{name} on {method} {path}: {}", r.text());
        }
        let r = store.request(method, &path, &[("Authorization", &user)], &body);
        let expected = if admin_only(&path) { 403 } else { 200 };
        assert_eq!(
            r.status,
            expected,
            "a token without the admin role on {path}: {}",
            r.text()
        );
        let r = store.request(method, &path, &[("Authorization", &admin)], &body);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    }
}

/// Strings that must appear nowhere, each with a name for the message.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: &str) {
        assert!(value.len() >= 8, "{name}: too short to search for");
        self.0.push((name.to_owned(), value.to_owned()));
        // A log could print a token's signature on its own.
        if value.matches('.').count() == 2 {
            let signature = value.rsplit('.').next().unwrap();
            if signature.len() >= 16 {
                self.0
                    .push((format!("{name} (signature)"), signature.to_owned()));
            }
        }
    }

    fn assert_absent(&self, place: &str, text: &str) {
        for (name, value) in &self.0 {
            assert!(
                !text.contains(value.as_str()),
                "{name} appears in {place}:\n{}",
                text.lines()
                    .filter(|l| l.contains(value.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn secrets_appear_in_no_log_status_metrics_or_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut secrets = Secrets(Vec::new());

    let nats_password = "nats-password-61c0de";
    let nats_token = "nats-token-b7e4a2";
    let wrong_nats_password = "wrong-nats-password-9d3f";
    let nats_user = NatsServer::start(NatsSetup::new().user_password("relay", nats_password));
    let nats_tok = NatsServer::start(NatsSetup::new().token(nats_token));
    for (name, v) in [
        ("NATS password", nats_password),
        ("NATS token", nats_token),
        ("wrong NATS password", wrong_nats_password),
    ] {
        secrets.add(name, v);
    }

    // The store: token-protected, with a node provider token and NATS
    // credentials.
    let backend = Stub::start();
    backend.answer(|_| 401);
    let backend_token = "backend-token-0f9e8d";
    secrets.add("store backend-token", backend_token);
    let mut store_cfg = store_config();
    store_cfg["main"] = json!({
        "jwt-public-key": test_public_key(),
        "backend-url": format!("http://{}", backend.addr),
        "backend-token": backend_token,
    });
    store_cfg["nats"] =
        json!({"address": nats_user.url(), "username": "relay", "password": nats_password});
    store_cfg["metric-store"]["nats-subscriptions"] =
        json!([{"subscribe-to": "store.metrics", "cluster-tag": "c"}]);
    let store = start_store_logging(store_cfg.clone(), "debug");

    // The relay: every kind of secret it reads.
    let store_token = mint_token(&json!({"sub": "relay", "roles": ["api"]}));
    let collector_token = mint_token(&json!({"sub": "node1"}));
    let forged = forged_tokens();
    let admin_token = "admin-token-3c9b71";
    let wrong_admin_token = "wrong-admin-token-44e1";
    let basic_password = "basic-password-8a2d";
    let wrong_basic_password = "wrong-basic-password-17ce";
    let upstream_password = "upstream-password-e05b";
    let header_secret = "header-secret-92fa";
    let query_secret = "query-secret-c3d8";
    for (name, v) in [
        ("store token (relay upstream)", store_token.as_str()),
        ("collector token", collector_token.as_str()),
        ("admin token", admin_token),
        ("wrong admin token", wrong_admin_token),
        ("basic password", basic_password),
        ("wrong basic password", wrong_basic_password),
        ("upstream password", upstream_password),
        ("upstream header value", header_secret),
        ("upstream query secret", query_secret),
    ] {
        secrets.add(name, v);
    }
    for (user, password) in [
        ("collector", basic_password),
        ("collector", wrong_basic_password),
        ("rack", upstream_password),
    ] {
        secrets.add(
            "basic credentials (base64)",
            &STANDARD.encode(format!("{user}:{password}")),
        );
    }
    for (name, token) in &forged {
        if token.len() >= 8 {
            secrets.add(&format!("forged token ({name})"), token);
        }
    }
    let site = Stub::start();
    site.answer(|_| 401);
    let relay_dir = tempfile::tempdir().unwrap();
    let mut config = common::relay_config(json!([
        {
            "name": "store", "type": "ccms-http",
            "url": format!("http://{}/api/write", store.addr),
            "auth": {"jwt_file": secret_file(d, "store.jwt", &store_token)},
            "batch": {"linger": "20ms"}
        },
        {
            "name": "site", "type": "relay-http",
            "url": format!("http://{}/api/write?apikey={query_secret}", site.addr),
            "auth": {"username": "rack", "password_file": secret_file(d, "upstream.pw", upstream_password)},
            "headers": {"X-Site-Key": header_secret},
            "batch": {"linger": "20ms"},
            "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"}
        },
        {
            "name": "bus", "type": "nats", "servers": [nats_tok.url()], "subject": "relayed",
            "auth": {"token_file": secret_file(d, "nats-up.token", nats_token)}
        }
    ]));
    config["ingress"]["http"][0]["auth"] = json!({
        "mode": "jwt_or_basic",
        "jwt_public_key": test_public_key(),
        "basic_users_file": secret_file(d, "users", &format!("collector:{basic_password}")),
    });
    config["ingress"]["nats"] = json!([
        {"name": "bus-user", "servers": [nats_user.url()], "subjects": [{"subject": "metrics.a", "cluster": "c"}],
         "auth": {"user": "relay", "password_file": secret_file(d, "nats.pw", nats_password)}},
        {"name": "bus-token", "servers": [nats_tok.url()], "subjects": [{"subject": "metrics.b", "cluster": "c"}],
         "auth": {"token_file": secret_file(d, "nats.token", nats_token)}},
        {"name": "bus-wrong", "servers": [nats_user.url()], "subjects": [{"subject": "metrics.c", "cluster": "c"}],
         "auth": {"user": "relay", "password_file": secret_file(d, "nats-wrong.pw", wrong_nats_password)}}
    ]);
    config["admin"] = json!({"auth_token_file": secret_file(d, "admin.token", admin_token)});
    // One NATS input cannot log in, so /readyz stays 503: wait for liveness.
    let (relay, admin) = start_relay_logging(
        config,
        relay_dir,
        |admin| common::http(admin, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200),
        "debug",
    );
    let admin_auth = format!("Bearer {admin_token}");

    // Exercise every credential, right and wrong.
    let t = now();
    let line = |host: &str| format!("cpu_load,hostname={host},type=node value=1 {t}\n");
    let post = |query: &str, headers: &[(&str, &str)], host: &str| {
        relay
            .request(
                "POST",
                &format!("/api/write?cluster=c{query}"),
                headers,
                line(host).as_bytes(),
            )
            .status
    };
    let basic =
        |password: &str| format!("Basic {}", STANDARD.encode(format!("collector:{password}")));
    assert_eq!(
        post(
            "",
            &[("Authorization", &format!("Bearer {collector_token}"))],
            "jwt"
        ),
        200
    );
    assert_eq!(
        post("", &[("X-Auth-Token", &collector_token)], "xauth"),
        200
    );
    assert_eq!(
        post("", &[("Authorization", &basic(basic_password))], "basic"),
        200
    );
    assert_eq!(
        post(&format!("&u=collector&p={basic_password}"), &[], "query"),
        200
    );
    assert_eq!(
        post("", &[("Authorization", &basic(wrong_basic_password))], "x"),
        401
    );
    assert_eq!(
        post(&format!("&u=collector&p={wrong_basic_password}"), &[], "x"),
        401
    );
    for (_, token) in &forged {
        assert_eq!(
            post("", &[("Authorization", &format!("Bearer {token}"))], "x"),
            401
        );
    }
    for (auth, status) in [
        (admin_auth.clone(), 200),
        (format!("Bearer {wrong_admin_token}"), 401),
    ] {
        let r = common::http(&admin, "GET", "/status", &[("Authorization", &auth)], b"").unwrap();
        assert_eq!(r.status, status);
    }
    // NATS in, through both servers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connected = |role: &str| {
        common::http(
            &admin,
            "GET",
            "/metrics",
            &[("Authorization", &admin_auth)],
            b"",
        )
        .map(|r| {
            common::sample(
                &r.text(),
                &format!("ccrelay_nats_connected{{role=\"{role}\"}}"),
            )
        })
        .ok()
        .flatten()
            == Some(1.0)
    };
    assert!(
        wait_for(Duration::from_secs(20), || connected("ingress:bus-user")
            && connected("ingress:bus-token")),
        "{}",
        relay.log_text()
    );
    rt.block_on(async {
        for (server, subject, host) in [
            (&nats_user, "metrics.a", "nats-user"),
            (&nats_tok, "metrics.b", "nats-token"),
        ] {
            let client = server.connect().await;
            client.publish(subject, line(host).into()).await.unwrap();
            client.flush().await.unwrap();
        }
        // And into the store over NATS.
        let client = nats_user.connect().await;
        client
            .publish("store.metrics", line("store-nats").into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    });
    // The relay's token reached the store, its password the site.
    let store_auth = format!("Bearer {}", mint_token(&json!({"sub": "reader"})));
    let stored = |host: &str| {
        let q = json!({"cluster": "c", "from": t - 60, "to": t + 60,
                       "queries": [{"metric": "cpu_load", "host": host}]})
        .to_string();
        store
            .request(
                "GET",
                "/api/query",
                &[("Authorization", &store_auth)],
                q.as_bytes(),
            )
            .json()["results"][0][0]["data"]
            .is_array()
    };
    assert!(
        wait_for(Duration::from_secs(20), || [
            "jwt",
            "basic",
            "nats-user",
            "nats-token",
            "store-nats"
        ]
        .iter()
        .all(|h| stored(h))),
        "relay:\n{}\nstore:\n{}",
        relay.log_text(),
        store.log_text()
    );
    assert!(wait_for(Duration::from_secs(10), || site.requests().len() >= 2));
    assert_eq!(
        site.requests()[0].header("authorization"),
        Some(
            format!(
                "Basic {}",
                STANDARD.encode(format!("rack:{upstream_password}"))
            )
            .as_str()
        )
    );
    assert!(
        wait_for(Duration::from_secs(20), || relay
            .log_text()
            .contains("bus-wrong")),
        "the refused NATS login is logged:\n{}",
        relay.log_text()
    );
    // Tokens the store refuses, and its own node provider token.
    for (_, token) in &forged {
        let r = store.request(
            "GET",
            "/api/query",
            &[("Authorization", &format!("Bearer {token}"))],
            b"{}",
        );
        assert_eq!(r.status, 401);
    }
    // SIGHUP re-reads every secret file.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(relay.pid()).unwrap()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(10), || relay
        .log_text()
        .to_lowercase()
        .contains("sighup")));

    // Now look everywhere.
    let get = |addr: &str, path: &str, auth: &str| {
        common::http(addr, "GET", path, &[("Authorization", auth)], b"")
            .unwrap()
            .text()
    };
    for path in ["/status", "/metrics", "/"] {
        secrets.assert_absent(&format!("relay {path}"), &get(&admin, path, &admin_auth));
        secrets.assert_absent(
            &format!("store {path}"),
            &get(&store.addr, path, &store_auth),
        );
    }
    let relay_check = common::relay_cli(&relay.dir.path().join("relay.json"), &["--check-config"]);
    assert!(relay_check.status.success(), "{relay_check:?}");
    let store_check = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(store.dir.path().join("config.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(store_check.status.success(), "{store_check:?}");
    for (name, out) in [("relay", relay_check), ("store", store_check)] {
        secrets.assert_absent(
            &format!("{name} --check-config"),
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let relay_log = relay.log_text();
    let store_log = store.log_text();
    assert!(
        relay_log.contains("DEBUG"),
        "the relay logged at debug level"
    );
    assert!(
        store_log.contains("DEBUG"),
        "the store logged at debug level"
    );
    secrets.assert_absent("the relay's log", &relay_log);
    secrets.assert_absent("the store's log", &store_log);
    drop(relay);
    drop(store);
}

#[test]
fn credentials_written_into_urls_are_never_shown() {
    let mut secrets = Secrets(Vec::new());
    let upstream_password = "url-password-5e7c2a";
    let nats_password = "url-nats-password-a41d";
    secrets.add("password in an upstream URL", upstream_password);
    secrets.add("password in the store's NATS address", nats_password);
    let nats = NatsServer::start(NatsSetup::new().user_password("store", nats_password));

    // The store takes NATS credentials from its address, as upstream does.
    let mut config = store_config();
    config["nats"] = json!({"address": nats.url().replacen(
        "nats://",
        &format!("nats://store:{nats_password}@"),
        1
    )});
    config["metric-store"]["nats-subscriptions"] =
        json!([{"subscribe-to": "m", "cluster-tag": "c"}]);
    let store = start_store_logging(config, "debug");
    assert!(
        wait_for(Duration::from_secs(20), || common::sample(
            &store.request("GET", "/metrics", &[], b"").text(),
            "ccstore_nats_connected"
        ) == Some(1.0)),
        "{}",
        store.log_text()
    );

    // The relay accepts a password in an upstream URL (with a warning) and
    // sends it as basic authentication.
    let stub = Stub::start();
    let mut config = common::relay_config(json!([{
        "name": "site", "type": "relay-http",
        "url": format!("http://rack:{upstream_password}@{}/api/write", stub.addr),
        "batch": {"linger": "20ms"}
    }]));
    config["ingress"]["http"][0]["name"] = json!("local");
    let (relay, admin) = start_relay_logging(
        config,
        tempfile::tempdir().unwrap(),
        |admin| common::http(admin, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200),
        "debug",
    );
    let line = format!(
        "cpu_load,cluster=c,hostname=h,type=node value=1 {}\n",
        now()
    );
    assert_eq!(
        relay
            .request("POST", "/api/write", &[], line.as_bytes())
            .status,
        200
    );
    assert!(wait_for(Duration::from_secs(10), || !stub
        .requests()
        .is_empty()));
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some(
            format!(
                "Basic {}",
                STANDARD.encode(format!("rack:{upstream_password}"))
            )
            .as_str()
        )
    );

    let relay_check = common::relay_cli(&relay.dir.path().join("relay.json"), &["--check-config"]);
    let store_check = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(store.dir.path().join("config.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    for (place, out) in [
        ("relay --check-config", relay_check),
        ("store --check-config", store_check),
    ] {
        assert!(out.status.success(), "{place}: {out:?}");
        secrets.assert_absent(
            place,
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    for path in ["/status", "/metrics", "/"] {
        secrets.assert_absent(
            &format!("relay {path}"),
            &common::http(&admin, "GET", path, &[], b"").unwrap().text(),
        );
        secrets.assert_absent(
            &format!("store {path}"),
            &store.request("GET", path, &[], b"").text(),
        );
    }
    secrets.assert_absent("the relay's log", &relay.log_text());
    secrets.assert_absent("the store's log", &store.log_text());
}
