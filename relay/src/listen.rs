//! Listening sockets: bound before anything is served (a bad address fails
//! the start), served over HTTP or HTTPS until shutdown, TLS certificates
//! swappable at run time.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::StartError;
use crate::config;

/// A bound socket and how to serve it.
#[derive(Debug)]
pub struct Bound {
    /// The socket (non-blocking).
    pub listener: TcpListener,
    /// Its address, for errors.
    pub addr: SocketAddr,
    /// Name in logs and errors (`admin`, `ingress collectors`).
    pub what: String,
    /// HTTPS settings.
    pub tls: Option<config::ServerTls>,
    /// Longest wait for a request's headers, including the wait for the
    /// first byte on a new connection and the idle wait on a kept-alive one.
    pub header_timeout: Duration,
    /// Time in-flight requests get after shutdown began.
    pub grace: Duration,
}

/// A TLS listener whose certificate SIGHUP can replace.
#[derive(Debug)]
pub struct ReloadableTls {
    /// Name in logs.
    pub what: String,
    /// Its files.
    pub files: config::ServerTls,
    /// Swaps the certificate of new connections.
    pub handle: axum_server::tls_rustls::RustlsConfig,
}

/// Binds `addr` for `what`.
///
/// # Errors
///
/// [`StartError::Bind`].
pub fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    let failed = |source| StartError::Bind {
        addr,
        what: what.into(),
        source,
    };
    let listener = cc_common::net::bind_tcp(addr).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    Ok(listener)
}

/// Serves `app` on `bound` until `stop` fires, then lets in-flight requests
/// finish within the grace. A TLS listener's certificate handle is added to
/// `reloadable`.
///
/// # Errors
///
/// [`StartError::Bind`] or [`StartError::Tls`].
pub fn serve(
    bound: Bound,
    app: axum::Router,
    stop: CancellationToken,
    reloadable: &mut Vec<ReloadableTls>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, StartError> {
    let Bound {
        listener,
        addr,
        what,
        tls,
        header_timeout,
        grace,
    } = bound;
    let handle = axum_server::Handle::<SocketAddr>::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        stopper.graceful_shutdown(Some(grace));
    });
    // HTTP/1.1 only (TLS offers nothing else in ALPN): without it every new
    // connection first goes through protocol detection, which waits for
    // the client's first bytes without any timeout, so a client that
    // connects and sends nothing would hold its connection for ever.
    let mut server = axum_server::from_tcp(listener)
        .map_err(|source| StartError::Bind {
            addr,
            what: what.as_str().into(),
            source,
        })?
        .http1_only();
    server
        .http_builder()
        .http1()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let service = app.into_make_service();
    Ok(match tls {
        Some(tls) => {
            let cfg = cc_common::tls::server_config(
                &tls.cert_file,
                &tls.key_file,
                tls.client_ca_file.as_deref(),
                tls.require_client_cert,
            )
            .map_err(|e| StartError::Tls(what.clone(), Box::new(e)))?;
            let handle_tls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            reloadable.push(ReloadableTls {
                what,
                files: tls,
                handle: handle_tls.clone(),
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(handle_tls);
            tokio::spawn(server.acceptor(acceptor).handle(handle).serve(service))
        }
        None => tokio::spawn(server.handle(handle).serve(service)),
    })
}
