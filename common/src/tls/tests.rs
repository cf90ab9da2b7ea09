use std::io::Write;

use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/tls")
        .join(name)
}

fn server() -> Arc<ServerConfig> {
    server_config(
        &fixture("server.pem"),
        &fixture("server-key.pem"),
        None,
        false,
    )
    .unwrap()
}

fn mtls_server(require_client_cert: bool) -> Arc<ServerConfig> {
    server_config(
        &fixture("server.pem"),
        &fixture("server-key.pem"),
        Some(&fixture("ca.pem")),
        require_client_cert,
    )
    .unwrap()
}

/// Runs a TLS handshake between the two configs entirely in memory, then sends a few
/// bytes from client to server. Returns the first error either side reports.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<(ServerConnection, ClientConnection), rustls::Error> {
    let mut server_conn = ServerConnection::new(server)?;
    let mut client_conn =
        ClientConnection::new(client, ServerName::try_from("localhost").unwrap())?;
    client_conn.writer().write_all(b"ping").unwrap();

    let mut received = Vec::new();
    for _ in 0..20 {
        let mut wire = Vec::new();
        while client_conn.wants_write() {
            client_conn.write_tls(&mut wire).unwrap();
        }
        let mut reader = wire.as_slice();
        while !reader.is_empty() {
            server_conn.read_tls(&mut reader).unwrap();
            server_conn.process_new_packets()?;
        }

        let mut wire = Vec::new();
        while server_conn.wants_write() {
            server_conn.write_tls(&mut wire).unwrap();
        }
        let mut reader = wire.as_slice();
        while !reader.is_empty() {
            client_conn.read_tls(&mut reader).unwrap();
            client_conn.process_new_packets()?;
        }

        let mut buf = [0_u8; 64];
        if let Ok(n) = std::io::Read::read(&mut server_conn.reader(), &mut buf) {
            received.extend_from_slice(&buf[..n]);
        }
        if !client_conn.is_handshaking() && !server_conn.is_handshaking() && received == b"ping" {
            return Ok((server_conn, client_conn));
        }
    }
    panic!("handshake did not complete in 20 round trips");
}

#[test]
fn install_crypto_provider_is_idempotent_across_threads() {
    let threads: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(install_crypto_provider))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    install_crypto_provider();
    assert!(CryptoProvider::get_default().is_some());
}

#[test]
fn server_config_builds_from_pem_files() {
    let config = server();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn server_config_accepts_pkcs1_rsa_key() {
    server_config(
        &fixture("rsa-server.pem"),
        &fixture("rsa-server-key.pem"),
        None,
        false,
    )
    .unwrap();
}

#[test]
fn server_config_accepts_sec1_key() {
    // The client identity has a SEC1 key; it is a valid server identity too.
    server_config(
        &fixture("client.pem"),
        &fixture("client-key.pem"),
        None,
        false,
    )
    .unwrap();
}

#[test]
fn server_config_with_client_ca_builds() {
    mtls_server(true);
    mtls_server(false);
}

#[test]
fn missing_certificate_file_error_names_the_path() {
    let missing = fixture("does-not-exist.pem");
    let err = server_config(&missing, &fixture("server-key.pem"), None, false).unwrap_err();
    assert!(matches!(err, TlsError::ReadCertificates { .. }), "{err:?}");
    assert!(err.to_string().contains("does-not-exist.pem"), "{err}");
}

#[test]
fn missing_key_file_error_names_the_path() {
    let missing = fixture("no-such-key.pem");
    let err = server_config(&fixture("server.pem"), &missing, None, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read private key from {}", missing.display())
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("I/O error"), "{source}");
}

#[test]
fn file_without_certificate_is_an_error() {
    let key_file = fixture("server-key.pem");
    let err = server_config(&key_file, &key_file, None, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no certificate found in {}", key_file.display())
    );
}

#[test]
fn file_without_private_key_is_an_error() {
    let cert_file = fixture("server.pem");
    let err = server_config(&cert_file, &cert_file, None, false).unwrap_err();
    assert!(matches!(err, TlsError::ReadPrivateKey { .. }), "{err:?}");
    assert!(err.to_string().contains("server.pem"), "{err}");
}

#[test]
fn garbage_pem_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pem");
    std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = server_config(&path, &fixture("server-key.pem"), None, false).unwrap_err();
    assert!(matches!(err, TlsError::ReadCertificates { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.pem"), "{err}");
}

#[test]
fn mismatched_key_is_an_error() {
    let err = server_config(
        &fixture("server.pem"),
        &fixture("client-key.pem"),
        None,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::Identity { .. }), "{err:?}");
}

#[test]
fn requiring_client_certs_without_a_ca_is_an_error() {
    let err = server_config(
        &fixture("server.pem"),
        &fixture("server-key.pem"),
        None,
        true,
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::ClientCaMissing), "{err:?}");
}

#[test]
fn client_config_with_ca_builds() {
    client_config(Some(&fixture("ca.pem")), None).unwrap();
    client_config(
        Some(&fixture("ca.pem")),
        Some((&fixture("client.pem"), &fixture("client-key.pem"))),
    )
    .unwrap();
}

#[test]
fn client_config_with_missing_ca_names_the_path() {
    let missing = fixture("missing-ca.pem");
    let err = client_config(Some(&missing), None).unwrap_err();
    assert!(err.to_string().contains("missing-ca.pem"), "{err}");
}

#[test]
fn client_config_from_system_roots_builds_or_says_why_not() {
    // Machines without a CA bundle get the typed error, never a panic.
    match client_config(None, None) {
        Ok(_) | Err(TlsError::NoSystemRoots { .. }) => {}
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[test]
fn handshake_succeeds_with_the_right_ca() {
    let client = client_config(Some(&fixture("ca.pem")), None).unwrap();
    let (server_conn, client_conn) = handshake(server(), client).unwrap();
    assert_eq!(server_conn.alpn_protocol(), None, "client offered no ALPN");
    assert!(client_conn.peer_certificates().is_some());
}

#[test]
fn handshake_negotiates_http1_alpn() {
    let mut client = (*client_config(Some(&fixture("ca.pem")), None).unwrap()).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (server_conn, _) = handshake(server(), Arc::new(client)).unwrap();
    assert_eq!(server_conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn handshake_succeeds_with_rsa_server_certificate() {
    let server = server_config(
        &fixture("rsa-server.pem"),
        &fixture("rsa-server-key.pem"),
        None,
        false,
    )
    .unwrap();
    let client = client_config(Some(&fixture("ca.pem")), None).unwrap();
    handshake(server, client).unwrap();
}

#[test]
fn handshake_fails_with_a_wrong_ca() {
    let client = client_config(Some(&fixture("other-ca.pem")), None).unwrap();
    let err = handshake(server(), client).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "unexpected error: {err:?}"
    );
}

#[test]
fn mutual_tls_handshake_succeeds_with_client_certificate() {
    let client = client_config(
        Some(&fixture("ca.pem")),
        Some((&fixture("client.pem"), &fixture("client-key.pem"))),
    )
    .unwrap();
    let (server_conn, _) = handshake(mtls_server(true), client).unwrap();
    assert_eq!(server_conn.peer_certificates().map(<[_]>::len), Some(1));
}

#[test]
fn mutual_tls_rejects_client_without_certificate_when_required() {
    let client = client_config(Some(&fixture("ca.pem")), None).unwrap();
    let err = handshake(mtls_server(true), client)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, rustls::Error::NoCertificatesPresented),
        "unexpected error: {err:?}"
    );
}

#[test]
fn optional_client_auth_lets_anonymous_clients_in() {
    let client = client_config(Some(&fixture("ca.pem")), None).unwrap();
    let (server_conn, _) = handshake(mtls_server(false), client).unwrap();
    assert!(server_conn.peer_certificates().is_none());
}

#[test]
fn mutual_tls_rejects_certificate_without_client_auth_usage() {
    // Signed by the trusted CA, but its extended key usage is serverAuth only.
    let client = client_config(
        Some(&fixture("ca.pem")),
        Some((&fixture("rsa-server.pem"), &fixture("rsa-server-key.pem"))),
    )
    .unwrap();
    let err = handshake(mtls_server(true), client)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "unexpected error: {err:?}"
    );
}

#[test]
fn a_fixed_server_name_replaces_the_connection_name() {
    // The handshake connects as "localhost"; the certificate names it.
    let check = |name: &str| ServerCheck {
        server_name: Some(name.to_owned()),
        insecure_skip_verify: false,
    };
    let named = client_config_checked(Some(&fixture("ca.pem")), None, &check("localhost")).unwrap();
    assert!(handshake(server(), named).is_ok());
    let other =
        client_config_checked(Some(&fixture("ca.pem")), None, &check("elsewhere.example")).unwrap();
    assert!(matches!(
        handshake(server(), other).map(|_| ()).unwrap_err(),
        rustls::Error::InvalidCertificate(_)
    ));
    assert!(matches!(
        client_config_checked(Some(&fixture("ca.pem")), None, &check("not a name")),
        Err(TlsError::InvalidServerName(_))
    ));
}

#[test]
fn insecure_skip_verify_accepts_an_unknown_issuer_and_needs_no_roots() {
    let strict = client_config(Some(&fixture("other-ca.pem")), None).unwrap();
    assert!(handshake(server(), strict).is_err());
    let insecure = client_config_checked(
        Some(&fixture("other-ca.pem")),
        None,
        &ServerCheck {
            server_name: None,
            insecure_skip_verify: true,
        },
    )
    .unwrap();
    assert!(handshake(server(), insecure).is_ok());
}
