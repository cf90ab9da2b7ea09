use super::*;

#[test]
fn server_list_must_not_be_empty() {
    assert!(matches!(server_addrs(&[]), Err(NatsError::NoServers)));
}

#[test]
fn credentials_in_urls_are_taken_from_them() {
    let addrs = server_addrs(&[
        "nats://h1:4222".to_owned(),
        "nats://alice:s3cret@h2:4222".to_owned(),
    ])
    .unwrap();
    let (user, password) = url_credentials(&addrs).unwrap();
    assert_eq!(user, "alice");
    assert_eq!(password.expose(), "s3cret");
    assert!(url_credentials(&addrs[..1]).is_none());
}

#[test]
fn a_bad_address_is_named_without_credentials() {
    let err = server_addrs(&["nats://alice:s3cret@".to_owned()]).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn several_servers_parse() {
    let addrs = server_addrs(&[
        "nats://127.0.0.1:4222".to_owned(),
        "tls://nats2.example:4443".to_owned(),
        "nats3".to_owned(),
    ])
    .unwrap();
    assert_eq!(addrs.len(), 3);
}

#[test]
fn redacting_keeps_scheme_and_host() {
    assert_eq!(redact_server("nats://u:p@h:1"), "nats://***@h:1");
    assert_eq!(redact_server("nats://h:1"), "nats://h:1");
}

#[test]
fn status_counts_reconnects_and_keeps_the_last_error() {
    let status = Status::new("ingress:test");
    let mut connections = status.connections();
    assert!(!status.is_connected());
    status.on_event(&Event::Connected);
    assert!(connections.has_changed().unwrap());
    assert_eq!(*connections.borrow_and_update(), 1);
    assert!(status.is_connected());
    assert_eq!(status.reconnects(), 0);
    status.on_event(&Event::Disconnected);
    assert!(!status.is_connected());
    assert_eq!(status.disconnects(), 1);
    status.on_event(&Event::SlowConsumer(7));
    assert_eq!(status.slow_consumer_events(), 1);
    assert!(status.last_error().unwrap().contains("subscription 7"));
    assert!(!connections.has_changed().unwrap());
    status.on_event(&Event::Connected);
    assert_eq!(status.reconnects(), 1);
    assert_eq!(*connections.borrow_and_update(), 2);
    assert_eq!(status.last_error(), None, "a connection clears the error");
}

#[tokio::test]
async fn a_missing_creds_file_is_an_error_naming_it() {
    let options = Options {
        servers: vec!["nats://127.0.0.1:1".to_owned()],
        auth: Auth {
            creds_file: Some(PathBuf::from("/nonexistent/x.creds")),
            ..Auth::default()
        },
        tls: Tls::default(),
        client_name: "test".to_owned(),
        subscription_capacity: 16,
    };
    let err = connect(&options, Arc::new(Status::new("t")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.creds"), "{err}");
}

#[tokio::test]
async fn connecting_to_nothing_returns_at_once_and_stays_disconnected() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = Options {
        servers: vec![format!("nats://127.0.0.1:{port}")],
        auth: Auth::default(),
        tls: Tls::default(),
        client_name: "test".to_owned(),
        subscription_capacity: 16,
    };
    let status = Arc::new(Status::new("t"));
    let (client, _credentials) = tokio::time::timeout(
        Duration::from_secs(5),
        connect(&options, Arc::clone(&status)),
    )
    .await
    .expect("connect must not wait for a server")
    .unwrap();
    assert!(!status.is_connected());
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Pending
    );
}

fn message(len: usize) -> async_nats::Message {
    async_nats::Message {
        subject: "s".into(),
        reply: None,
        payload: bytes::Bytes::from(vec![b'x'; len]),
        headers: None,
        status: None,
        description: None,
        length: len,
    }
}

async fn take_all(inbox: &mut Inbox) -> Vec<usize> {
    let mut got = Vec::new();
    while let Some(d) = inbox.recv().await {
        got.push(d.message.payload.len());
    }
    got
}

#[tokio::test]
async fn an_inbox_passes_everything_within_its_limits() {
    let status = Arc::new(Status::new("t"));
    let stream = futures_util::stream::iter((1..=10).map(message));
    let limits = InboxLimits {
        messages: 10,
        bytes: 55,
    };
    let mut inbox = Inbox::drain(stream, limits, Arc::clone(&status));
    assert_eq!(take_all(&mut inbox).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(status.dropped(), 0);
}

#[tokio::test]
async fn an_inbox_drops_and_counts_beyond_its_message_limit() {
    let status = Arc::new(Status::new("t"));
    let stream = futures_util::stream::iter((0..10).map(|_| message(3)));
    let limits = InboxLimits {
        messages: 4,
        bytes: 1 << 20,
    };
    let mut inbox = Inbox::drain(stream, limits, Arc::clone(&status));
    // Nothing is taken while the stream is drained: 4 fit, 6 are dropped.
    let got = take_all(&mut inbox).await;
    assert_eq!(got.len(), 4);
    assert_eq!(status.dropped(), 6);
    assert!(status.last_error().unwrap().contains("6 dropped"));
}

#[tokio::test]
async fn an_inbox_drops_beyond_its_byte_limit_but_passes_one_oversized_message() {
    let status = Arc::new(Status::new("t"));
    let sizes = [100, 5, 5, 5];
    let stream = futures_util::stream::iter(sizes.map(message));
    let limits = InboxLimits {
        messages: 100,
        bytes: 10,
    };
    let mut inbox = Inbox::drain(stream, limits, Arc::clone(&status));
    // The oversized first message passes alone (the budget was untouched);
    // then two of 5 bytes fit, and the third does not.
    assert_eq!(take_all(&mut inbox).await, vec![100, 5, 5]);
    assert_eq!(status.dropped(), 1);
}

#[tokio::test]
async fn room_is_given_back_when_a_message_is_taken() {
    let status = Arc::new(Status::new("t"));
    let (tx, rx) = futures_channel_like();
    let limits = InboxLimits {
        messages: 1,
        bytes: 100,
    };
    let mut inbox = Inbox::drain(rx, limits, Arc::clone(&status));
    for _ in 0..3 {
        tx.send(message(10)).unwrap();
        let d = inbox.recv().await.unwrap();
        drop(d);
    }
    assert_eq!(status.dropped(), 0);
}

/// A stream fed by hand.
fn futures_channel_like() -> (
    mpsc::UnboundedSender<async_nats::Message>,
    impl futures_util::Stream<Item = async_nats::Message> + Unpin + Send + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (tx, stream)
}

const CREDS: &str = "-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.

-----BEGIN USER NKEY SEED-----
SEED-PLACEHOLDER
------END USER NKEY SEED------
";

#[test]
fn creds_files_give_their_jwt_and_seed() {
    assert_eq!(
        parse_creds(CREDS),
        Some((
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln",
            "SEED-PLACEHOLDER"
        ))
    );
    assert_eq!(
        parse_creds(&CREDS.replace("\n", "\r\n")).map(|c| c.1),
        Some("SEED-PLACEHOLDER")
    );
    let jwt_only = CREDS.split("*****").next().unwrap();
    assert_eq!(parse_creds(jwt_only), None);
    assert_eq!(parse_creds("not a creds file"), None);
    assert_eq!(parse_creds("-----BEGIN X-----\n------END X------\n"), None);
}

#[test]
fn credentials_sign_the_nonce_and_can_be_replaced() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let creds = Credentials::new(&Auth {
        nkey_seed: Some(Secret::new(&seed)),
        ..Auth::default()
    })
    .unwrap();
    let auth = creds.present(b"nonce-1").unwrap();
    assert_eq!(auth.nkey.as_deref(), Some(user.public_key().as_str()));
    let signature = auth.signature.unwrap();
    assert!(user.verify(b"nonce-1", &signature).is_ok());
    assert!(user.verify(b"nonce-2", &signature).is_err());
    assert_eq!(auth.username, None);

    // A bad seed is refused before anything is replaced.
    let bad = Auth {
        nkey_seed: Some(Secret::new("SUnotaseed")),
        ..Auth::default()
    };
    assert!(matches!(Credentials::new(&bad), Err(NatsError::Nkey)));

    creds.replace(
        Credentials::new(&Auth {
            user_password: Some(("relay".into(), Secret::new("new"))),
            ..Auth::default()
        })
        .unwrap(),
    );
    let auth = creds.present(b"n").unwrap();
    assert_eq!(
        (
            auth.username.as_deref(),
            auth.password.as_deref(),
            auth.nkey
        ),
        (Some("relay"), Some("new"), None)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user.creds");
    std::fs::write(&path, CREDS.replace("SEED-PLACEHOLDER", &seed)).unwrap();
    creds.replace(
        Credentials::new(&Auth {
            creds_file: Some(path.clone()),
            ..Auth::default()
        })
        .unwrap(),
    );
    let auth = creds.present(b"nonce-3").unwrap();
    assert_eq!(
        auth.jwt.as_deref(),
        Some("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln")
    );
    assert!(user.verify(b"nonce-3", &auth.signature.unwrap()).is_ok());
    std::fs::write(&path, "garbage").unwrap();
    let err = Credentials::new(&Auth {
        creds_file: Some(path),
        ..Auth::default()
    })
    .unwrap_err();
    assert!(matches!(err, NatsError::Creds { .. }), "{err:?}");
}
