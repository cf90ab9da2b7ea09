//! rustls server and client configurations from PEM files, with `ring` as the only provider.
//!
//! The whole dependency tree uses one crypto provider, `ring` (aws-lc-rs needs a C build and
//! is kept out; CI checks `cargo tree -i aws-lc-sys`). Two ways lead to it:
//!
//! - [`install_crypto_provider`] makes `ring` the process default, for libraries that build
//!   their own rustls configs (reqwest with `rustls-no-provider`, async-nats). Call it first
//!   thing in `main` and in every test that builds such a client.
//! - [`server_config`] and [`client_config`] pass the provider explicitly, so they work
//!   whether or not the default was installed.
//!
//! Certificates and keys are PEM files; keys may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
//! Every error names the file it is about.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rustls::crypto::{CryptoProvider, ring};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered by [`server_config`]: HTTP/1.1 only (no HTTP/2 listener).
pub const SERVER_ALPN: &[&[u8]] = &[b"http/1.1"];

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate file could not be read or is not valid PEM.
    #[error("cannot read certificates from {path}")]
    ReadCertificates {
        /// The certificate file.
        path: PathBuf,
        /// The I/O or PEM error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` section.
    #[error("no certificate found in {path}")]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// A private key file could not be read, is not valid PEM or holds no private key.
    #[error("cannot read private key from {path}")]
    ReadPrivateKey {
        /// The key file.
        path: PathBuf,
        /// The I/O or PEM error (`no items found` when the file holds no key).
        #[source]
        source: pem::Error,
    },
    /// A certificate in a CA file is not usable as a trust anchor.
    #[error("invalid CA certificate in {path}")]
    InvalidCaCertificate {
        /// The CA file.
        path: PathBuf,
        /// What rustls/webpki objected to.
        #[source]
        source: rustls::Error,
    },
    /// A certificate chain and key do not form a usable identity (e.g. they do not match).
    #[error("cannot use certificate {cert_path} with key {key_path}")]
    Identity {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// What rustls objected to.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the client CA file.
    #[error("cannot verify client certificates with CA file {path}")]
    ClientVerifier {
        /// The client CA file.
        path: PathBuf,
        /// What the verifier builder objected to.
        #[source]
        source: VerifierBuilderError,
    },
    /// Client certificates are required, but no client CA file was given to check them with.
    #[error("client certificates are required but no client CA file is configured")]
    ClientCaMissing,
    /// The system trust store yielded no usable root certificate.
    #[error(
        "no usable root certificate in the system trust store ({errors} load errors, {ignored} unparsable certificates)"
    )]
    NoSystemRoots {
        /// How many errors the native-certs loader reported.
        errors: usize,
        /// How many certificates were found but could not be parsed.
        ignored: usize,
    },
    /// The crypto provider rejected the default protocol versions (not expected with ring).
    #[error("the ring crypto provider does not support the default TLS versions")]
    Provider(#[source] rustls::Error),
    /// `server_name` is not a DNS name or IP address.
    #[error("invalid server name {0:?} (expected a DNS name or an IP address)")]
    InvalidServerName(String),
    /// The certificate verifier could not be built from the roots.
    #[error("cannot build the server certificate verifier")]
    ServerVerifier(#[source] rustls::client::VerifierBuilderError),
}

/// How a client checks the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCheck {
    /// Verify the certificate for this name instead of the one in the URL
    /// (e.g. when connecting by IP address to a server whose certificate
    /// names its host).
    pub server_name: Option<String>,
    /// Accept any certificate. The connection is encrypted but not
    /// authenticated; for tests and emergencies only.
    pub insecure_skip_verify: bool,
}

/// Installs `ring` as the process-wide default rustls crypto provider.
///
/// Idempotent and safe to call from many threads (tests call it concurrently): only the
/// first call does anything, and a provider that was installed by someone else is kept.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if ring::default_provider().install_default().is_err() {
            tracing::debug!("a process-wide rustls crypto provider was already installed");
        }
    });
}

/// A fresh `ring` provider, passed explicitly to every builder in this module.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds the TLS configuration of an HTTPS listener.
///
/// `cert_file` holds the server certificate chain (leaf first), `key_file` its private key.
/// With `client_ca`, clients are asked for a certificate signed by one of the CAs in that
/// file; `require_client_cert` decides whether a client without one is rejected (`true`)
/// or let through unauthenticated (`false`). ALPN offers [`SERVER_ALPN`].
///
/// # Errors
///
/// [`TlsError::ReadCertificates`], [`TlsError::NoCertificate`] or
/// [`TlsError::ReadPrivateKey`] when a file cannot be read or holds nothing usable
/// (each naming the file); [`TlsError::InvalidCaCertificate`] or
/// [`TlsError::ClientVerifier`] for a bad client CA file; [`TlsError::ClientCaMissing`] if
/// `require_client_cert` is set without `client_ca`; [`TlsError::Identity`] if the key does
/// not belong to the certificate.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certificates(cert_file)?;
    let key = load_private_key(key_file)?;

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let builder = match client_ca {
        Some(ca_file) => {
            let roots = load_root_store(ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|source| TlsError::ClientVerifier {
                    path: ca_file.to_path_buf(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None if require_client_cert => return Err(TlsError::ClientCaMissing),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Identity {
            cert_path: cert_file.to_path_buf(),
            key_path: key_file.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|proto| proto.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Builds the TLS configuration of an outgoing connection (HTTPS or NATS upstream).
///
/// The trusted roots are the certificates in `ca_file` if given, otherwise the system's
/// trust store (via `rustls-native-certs`; certificates that fail to load are logged as
/// warnings). `client_cert` is a `(certificate chain, private key)` pair presented for
/// mutual TLS. No ALPN protocols are set; the HTTP or NATS client sets its own.
///
/// # Errors
///
/// [`TlsError::ReadCertificates`], [`TlsError::NoCertificate`] or
/// [`TlsError::InvalidCaCertificate`] for an unusable `ca_file`;
/// [`TlsError::NoSystemRoots`] if the system trust store yields no usable certificate;
/// [`TlsError::ReadPrivateKey`] or [`TlsError::Identity`] for an unusable client
/// certificate or key.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_checked(ca_file, client_cert, &ServerCheck::default())
}

/// [`client_config`] with a different check of the server's certificate:
/// against a fixed name, or none at all (then no roots are loaded).
///
/// # Errors
///
/// As [`client_config`], and [`TlsError::InvalidServerName`].
pub fn client_config_checked(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    check: &ServerCheck,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        if check.insecure_skip_verify {
            Arc::new(verify::AcceptAny {
                provider: Arc::clone(&provider),
            })
        } else {
            let roots = match ca_file {
                Some(path) => load_root_store(path)?,
                None => load_system_roots()?,
            };
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .map_err(TlsError::ServerVerifier)?;
            match &check.server_name {
                None => webpki,
                Some(name) => Arc::new(verify::FixedName {
                    inner: webpki,
                    name: rustls_pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| TlsError::InvalidServerName(name.clone()))?,
                }),
            }
        };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        Some((cert_file, key_file)) => {
            let certs = load_certificates(cert_file)?;
            let key = load_private_key(key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| TlsError::Identity {
                    cert_path: cert_file.to_path_buf(),
                    key_path: key_file.to_path_buf(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Reads every `CERTIFICATE` section of a PEM file; at least one must be present.
fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::ReadCertificates {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::ReadPrivateKey {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds a root store from every certificate in a CA file; each must be a valid anchor.
fn load_root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|source| TlsError::InvalidCaCertificate {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(roots)
}

/// Builds a root store from the system's trust store, skipping (and logging) bad entries.
fn load_system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "cannot load a certificate from the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            added,
            "skipped unparsable certificates in the system trust store"
        );
    }
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots {
            errors: found.errors.len(),
            ignored,
        });
    }
    tracing::debug!(
        added,
        "loaded root certificates from the system trust store"
    );
    Ok(roots)
}

/// Server certificate verifiers for `server_name` and `insecure_skip_verify`.
mod verify {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Verifies like `inner`, but for a fixed name.
    #[derive(Debug)]
    pub(super) struct FixedName {
        pub(super) inner: Arc<rustls::client::WebPkiServerVerifier>,
        pub(super) name: ServerName<'static>,
    }

    impl ServerCertVerifier for FixedName {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.inner
                .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    /// Accepts any certificate (the handshake signatures are still checked,
    /// so the peer holds the key of the certificate it shows).
    #[derive(Debug)]
    pub(super) struct AcceptAny {
        pub(super) provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests;
