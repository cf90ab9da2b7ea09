//! Self-tests of the NATS harness (`tests/common/nats.rs`): every auth mode,
//! TLS, JetStream across restarts and a three-server cluster, checked with
//! async-nats against the real `nats-server`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use std::fmt::Display;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use common::nats::{ClientAuth, NatsAuth, NatsCluster, NatsServer, NatsSetup, jwt};
use futures_util::StreamExt as _;
use nkeys::KeyPair;

/// Subscribes, publishes one message and receives it.
async fn round_trip(client: &Client, subject: &str) {
    let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    client
        .publish(subject.to_owned(), "hello".into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.payload, "hello");
}

/// Connecting with `options` fails with an authorization violation.
async fn assert_refused(options: ConnectOptions, url: &str) {
    let err = options
        .connect(url)
        .await
        .expect_err("connecting with wrong credentials must fail");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "unexpected error: {err}"
    );
}

/// Retries `f` every 100 ms until it succeeds or `timeout` passes (each
/// new error is logged once).
async fn retry<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let e = e.to_string();
                if e != last {
                    eprintln!("{what}: {e} (retrying)");
                    last = e;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: still failing after {timeout:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_round_trip_and_max_payload() {
    let server = NatsServer::start(NatsSetup::new().max_payload(4096));
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert_eq!(server.client_auth(), ClientAuth::None);
    let client = async_nats::connect(server.url()).await.unwrap();
    assert_eq!(client.server_info().max_payload, 4096);
    round_trip(&client, "plain.test").await;
    let err = client
        .publish("plain.test", vec![0u8; 5000].into())
        .await
        .expect_err("payload over max_payload");
    assert!(err.to_string().contains("max payload"), "{err}");
    assert!(server.log_text().contains("Server is ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_auth() {
    let server = NatsServer::start(NatsSetup::new().user_password("relay", "s3cret"));
    assert_eq!((server.user(), server.password()), ("relay", "s3cret"));
    let client = ConnectOptions::new()
        .user_and_password(server.user().into(), server.password().into())
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "up.test").await;
    let url = server.url();
    assert_refused(
        ConnectOptions::new().user_and_password("relay".into(), "wrong".into()),
        &url,
    )
    .await;
    assert_refused(ConnectOptions::new(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth() {
    let server = NatsServer::start(NatsSetup::new().token("t0ken-xyz"));
    let client = ConnectOptions::new()
        .token(server.token().into())
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "token.test").await;
    assert_refused(
        ConnectOptions::new().token("t0ken-abc".into()),
        &server.url(),
    )
    .await;
    assert_refused(ConnectOptions::new(), &server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_auth() {
    let server = NatsServer::start(NatsSetup::new().auth(NatsAuth::Nkey));
    let seed = server.nkey_seed().to_owned();
    assert!(seed.starts_with("SU"), "{seed}");
    assert!(server.nkey_public().starts_with('U'));
    let file = server.write_nkey_seed_file();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), seed);
    assert!(
        std::fs::read_to_string(server.dir().join("nats.conf"))
            .unwrap()
            .contains(&server.nkey_public())
    );

    let client = ConnectOptions::new()
        .nkey(seed)
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "nkey.test").await;
    let stranger = KeyPair::new_user().seed().unwrap();
    assert_refused(ConnectOptions::new().nkey(stranger), &server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_auth_with_jetstream() {
    let server = NatsServer::start(NatsSetup::new().auth(NatsAuth::Creds).jetstream(true));
    // The JWT chain: operator (self-signed) -> account -> user.
    let operator = jwt::claims(server.operator_jwt());
    assert_eq!(operator["iss"], server.operator_public_key());
    assert_eq!(operator["sub"], server.operator_public_key());
    let account = jwt::claims(server.account_jwt());
    assert_eq!(account["iss"], server.operator_public_key());
    assert_eq!(account["sub"], server.account_public_key());
    assert_eq!(account["nats"]["limits"]["disk_storage"], -1);
    let creds = std::fs::read_to_string(server.creds_file()).unwrap();
    let user_jwt = creds.lines().nth(1).unwrap().to_owned();
    let user = jwt::claims(&user_jwt);
    assert_eq!(user["iss"], server.account_public_key());
    assert_eq!(user["nats"]["type"], "user");
    assert_eq!(user["jti"].as_str().unwrap().len(), 52);

    let client = ConnectOptions::with_credentials_file(server.creds_file())
        .await
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "creds.test").await;
    // The account has JetStream.
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "CREDS".into(),
        subjects: vec!["creds.js.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = js
        .publish("creds.js.a", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.stream, "CREDS");

    // A user of an account the operator never signed.
    let foreign = KeyPair::new_account();
    let intruder = KeyPair::new_user();
    let text = jwt::creds(
        &jwt::user(&foreign, &intruder, "intruder", None),
        &intruder.seed().unwrap(),
    );
    assert_refused(
        ConnectOptions::with_credentials(&text).unwrap(),
        &server.url(),
    )
    .await;
    // The right JWT with someone else's seed.
    let thief = jwt::creds(&user_jwt, &KeyPair::new_user().seed().unwrap());
    assert_refused(
        ConnectOptions::with_credentials(&thief).unwrap(),
        &server.url(),
    )
    .await;
    // Another user minted for the account works.
    let other = server.mint_creds("second", None);
    ConnectOptions::with_credentials_file(other)
        .await
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_user_may_only_publish() {
    let modes = [
        NatsAuth::UserPassword {
            user: "reader".into(),
            password: "pw".into(),
        },
        NatsAuth::Nkey,
        NatsAuth::Creds,
    ];
    for auth in modes {
        let server = NatsServer::start(NatsSetup::new().auth(auth.clone()).collector("metrics.>"));
        let reader = server.connect().await;
        let mut sub = reader.subscribe(">").await.unwrap();
        reader.flush().await.unwrap();

        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let collector = server
            .collector_auth()
            .apply(ConnectOptions::new())
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(server.url())
            .await
            .unwrap();
        collector
            .publish("other.subject", "forbidden".into())
            .await
            .unwrap();
        collector
            .publish("metrics.node1", "allowed".into())
            .await
            .unwrap();
        collector.flush().await.unwrap();
        // Messages of one connection arrive in order: had the forbidden one
        // passed, it would come first.
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message within 5 s")
            .unwrap();
        assert_eq!(msg.subject.as_str(), "metrics.node1", "{auth:?}");
        assert_eq!(msg.payload, "allowed");

        let _sub = collector.subscribe("metrics.>").await.unwrap();
        collector.flush().await.unwrap();
        let mut violations = Vec::new();
        while violations.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap_or_else(|_| panic!("{auth:?}: violations seen: {violations:?}"))
                .unwrap();
            if let Event::ServerError(e) = event {
                violations.push(e.to_string().to_lowercase());
            }
        }
        assert!(
            violations[0].contains("permissions violation for publish"),
            "{violations:?}"
        );
        assert!(
            violations[1].contains("permissions violation for subscription"),
            "{violations:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_needs_the_generated_ca() {
    let server = NatsServer::start(NatsSetup::new().tls());
    assert!(
        server.url().starts_with("tls://127.0.0.1:"),
        "{}",
        server.url()
    );
    assert!(!server.tls_files().verify);
    let client = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(server.ca_file().to_owned())
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "tls.test").await;
    let err = ConnectOptions::new()
        .require_tls(true)
        .connect(server.url())
        .await
        .expect_err("a client that does not trust the test CA must fail");
    // async-nats 0.51 reports a rejected certificate as an I/O error.
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate() {
    let server = NatsServer::start(NatsSetup::new().mutual_tls().token("tls-token"));
    let files = server.tls_files().clone();
    assert!(files.verify);
    let client = ConnectOptions::new()
        .token("tls-token".into())
        .require_tls(true)
        .add_root_certificates(files.ca.clone())
        .add_client_certificate(
            server.client_cert_file().to_owned(),
            server.client_key_file().to_owned(),
        )
        .connect(server.url())
        .await
        .unwrap();
    round_trip(&client, "mtls.test").await;
    // The convenience options do the same.
    round_trip(&server.connect().await, "mtls.test2").await;

    ConnectOptions::new()
        .token("tls-token".into())
        .require_tls(true)
        .add_root_certificates(files.ca.clone())
        .connect(server.url())
        .await
        .expect_err("no client certificate must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_file_stream_survives_restart_and_kill() {
    let mut server = NatsServer::start(NatsSetup::new().jetstream(true));
    let (port, url) = (server.port(), server.url());
    {
        let js = jetstream::new(server.connect().await);
        js.create_stream(stream::Config {
            name: "METRICS".into(),
            subjects: vec!["metrics.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..3 {
            js.publish(format!("metrics.{i}"), format!("m{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }

    server.restart();
    assert_eq!((server.port(), server.url()), (port, url.clone()));
    let js = jetstream::new(server.connect().await);
    let mut stream = js.get_stream("METRICS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    js.publish("metrics.3", "m3".into())
        .await
        .unwrap()
        .await
        .unwrap();
    drop((js, stream));

    server.kill();
    assert!(!server.is_running());
    server.restart();
    assert!(server.is_running());
    let js = jetstream::new(server.connect().await);
    let mut stream = js.get_stream("METRICS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4);
    for i in 0..4u64 {
        let msg = stream.get_raw_message(i + 1).await.unwrap();
        assert_eq!(msg.payload, format!("m{i}"));
        assert_eq!(msg.subject.as_str(), format!("metrics.{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_r3_stream_survives_a_killed_leader() {
    let mut cluster = NatsCluster::start();
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert!(cluster.meta_leader().is_some());
    let js = jetstream::new(cluster.connect().await);
    let config = stream::Config {
        name: "R3".into(),
        subjects: vec!["r3.>".into()],
        storage: stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    };
    let mut stream = retry("create R3 stream", Duration::from_secs(20), async || {
        js.get_or_create_stream(config.clone()).await
    })
    .await;
    // Message ids make retried publishes idempotent.
    let publish = async |i: usize| {
        retry(
            &format!("publish {i}"),
            Duration::from_secs(30),
            async || -> Result<PublishAck, PublishError> {
                js.send_publish(
                    format!("r3.{i}"),
                    PublishMessage::build()
                        .payload(format!("m{i}").into())
                        .message_id(format!("id-{i}")),
                )
                .await?
                .await
            },
        )
        .await
    };
    for i in 0..5 {
        let ack = publish(i).await;
        assert_eq!(ack.sequence, i as u64 + 1);
    }
    let info = stream.info().await.unwrap();
    let leader = info.cluster.as_ref().unwrap().leader.clone().unwrap();
    assert_eq!(info.cluster.as_ref().unwrap().replicas.len(), 2);
    let killed = cluster.index_of(&leader).expect("leader is one of ours");

    let started = Instant::now();
    cluster.kill(killed);
    for i in 5..10 {
        publish(i).await;
    }
    eprintln!("publishing resumed {:?} after the kill", started.elapsed());
    let info = retry("stream info", Duration::from_secs(20), async || {
        stream.info().await.cloned()
    })
    .await;
    assert_eq!(info.state.messages, 10);
    assert_ne!(info.cluster.unwrap().leader.unwrap(), leader);
    for i in 0..10u64 {
        let msg = stream.get_raw_message(i + 1).await.unwrap();
        assert_eq!(msg.payload, format!("m{i}"));
    }

    // The killed server comes back into the cluster.
    cluster.restart(killed);
    assert!(cluster.monitor(killed, "/healthz").is_some());
    assert_eq!(cluster.urls(), urls);
}

/// `cc_common::nats::round_trip` confirms that a connection's subscriptions
/// are in force, and says so only when the server echoed its probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_confirms_subscriptions_and_fails_without_inbox_rights() {
    let server = NatsServer::start(NatsSetup::new().auth(NatsAuth::Nkey).collector("metrics.>"));
    let relay = server.connect().await;
    let mut sub = relay.subscribe("metrics.>").await.unwrap();
    assert!(cc_common::nats::round_trip(&relay, Duration::from_secs(5)).await);
    // Subscribed for sure: a message from another connection is received.
    let other = server.connect().await;
    other.publish("metrics.a", "x".into()).await.unwrap();
    other.flush().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message within 5 s")
        .unwrap();
    assert_eq!(msg.payload, "x");

    // A publish-only account never gets its probe back.
    let collector = server
        .collector_auth()
        .apply(ConnectOptions::new())
        .connect(server.url())
        .await
        .unwrap();
    let started = Instant::now();
    assert!(!cc_common::nats::round_trip(&collector, Duration::from_millis(500)).await);
    assert!(started.elapsed() < Duration::from_secs(3));
}
