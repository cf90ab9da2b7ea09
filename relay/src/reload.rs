//! SIGHUP: what the relay re-reads while it runs (spec `relay.md` §4.12).
//!
//! Secret files (upstream tokens and passwords, ingress JWT keys and basic
//! users, the admin token, NATS credentials) change all together or not at
//! all (a NATS connection presents its new credentials from its next
//! connection; an established one keeps its session); TLS files of
//! listeners and `https` upstreams change one by one (a broken one keeps its
//! old files); the configuration file is re-read for `log.level`, and every
//! other changed section is named in the log (it needs a restart).

use std::sync::Arc;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::app::{RunOptions, admin_token_of, auth_header, listener_credentials, upstream_client};
use crate::config::Config;
use crate::ingress::Auth;
use crate::listen::ReloadableTls;
use crate::runtime::Runtime;

/// Everything SIGHUP can replace at run time.
#[derive(Debug)]
pub struct Secrets {
    /// Per upstream: its `Authorization` header.
    pub upstreams: Vec<(String, Arc<RwLock<Option<String>>>)>,
    /// Per listener: its keys and users.
    pub listeners: Vec<(String, Arc<Auth>)>,
    /// The admin token.
    pub admin_token: Arc<RwLock<Option<String>>>,
    /// Per upstream: its URL and HTTP client (TLS files).
    pub clients: Vec<(String, reqwest::Url, Arc<RwLock<reqwest::Client>>)>,
    /// TLS listeners (ingress and admin): certificate, key, client CA.
    pub server_tls: Vec<ReloadableTls>,
    /// The runtime, for its NATS connections' credentials.
    pub runtime: Arc<Runtime>,
}

/// SIGHUP: re-reads every secret file (upstream tokens and passwords, ingress
/// JWT keys and basic users, the admin token). All files are read first; if
/// any cannot be read, nothing changes and the old secrets stay in use. Then
/// the TLS files: each listener's certificate, key and client CA, and each
/// `https` upstream's CA and client certificate; one that cannot be loaded
/// keeps its old files (logged), the others change. New connections use
/// the new files; open ones keep theirs.
pub fn spawn(
    config: Config,
    options: RunOptions,
    hup: Option<tokio::signal::unix::Signal>,
    secrets: Secrets,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP; secrets are read only at start");
            return;
        };
        let mut config = config;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            // Each part on its own: a bad secret file must not stop a
            // certificate rotation or a log level change.
            reload_secrets(&mut config, &secrets);
            reload_tls(&config, &secrets);
            reload_file(&config, &options);
        }
    })
}

/// SIGHUP: re-reads the secret files; all or nothing.
fn reload_secrets(config: &mut Config, secrets: &Secrets) {
    let mut candidate = config.clone();
    if let Err(e) = candidate.reload_secrets() {
        tracing::error!(error = %cc_common::error_chain(&e), "SIGHUP: cannot re-read secrets; keeping the old ones");
        return;
    }
    // Every listener's keys first; nothing changes unless all of them load.
    let mut fresh = Vec::new();
    for (name, auth) in &secrets.listeners {
        let Some(l) = candidate.ingress.http.iter().find(|l| &l.name == name) else {
            continue;
        };
        match listener_credentials(l) {
            Ok(c) => fresh.push((auth, c)),
            Err(e) => {
                tracing::error!(ingress = %name, error = %cc_common::error_chain(&e), "SIGHUP: keeping all old secrets");
                return;
            }
        }
    }
    // Every NATS connection's credentials (the `.creds` files read and
    // parsed, the seeds valid) likewise.
    let mut nats = Vec::new();
    for link in secrets.runtime.nats.all() {
        let role = link.status.role();
        let Some(connection) = nats_connection(&candidate, role) else {
            continue;
        };
        match cc_common::nats::Credentials::new(&connection.auth) {
            Ok(fresh) => nats.push((link, fresh)),
            Err(e) => {
                tracing::error!(role = %role, error = %cc_common::error_chain(&e), "SIGHUP: keeping all old secrets");
                return;
            }
        }
    }
    for (auth, credentials) in fresh {
        *auth.credentials.write() = credentials;
    }
    for (link, fresh) in nats {
        link.credentials.replace(fresh);
    }
    for (name, handle) in &secrets.upstreams {
        if let Some(u) = candidate.upstreams.iter().find(|u| &u.name == name) {
            *handle.write() = auth_header(&u.credentials);
        }
    }
    *secrets.admin_token.write() = admin_token_of(&candidate);
    *config = candidate;
    tracing::info!("SIGHUP: secrets re-read");
}
/// The NATS connection settings of `role` (`ingress:<name>`,
/// `upstream:<name>`) in `config`.
fn nats_connection<'c>(
    config: &'c Config,
    role: &str,
) -> Option<&'c crate::config::NatsConnection> {
    if let Some(name) = role.strip_prefix("ingress:") {
        return config
            .ingress
            .nats
            .iter()
            .find(|i| i.name == name)?
            .connection
            .as_ref();
    }
    let name = role.strip_prefix("upstream:")?;
    config
        .upstreams
        .iter()
        .find(|u| u.name == name)?
        .connection
        .as_ref()
}

/// SIGHUP: re-reads the configuration file for `log.level`, and names the
/// other keys that changed (they take effect at the next start).
fn reload_file(running: &Config, options: &RunOptions) {
    let Some(path) = &options.config_path else {
        return;
    };
    let fresh = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %cc_common::error_chain(&e), "SIGHUP: cannot re-read the configuration; nothing else changes");
            return;
        }
    };
    if !options.log_level_fixed {
        match cc_common::telemetry::set_level(&fresh.log.level) {
            Ok(true) => tracing::info!(level = %fresh.log.level, "SIGHUP: log level set"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the old log level"),
        }
    }
    if fresh.log.format != running.log.format {
        tracing::warn!("SIGHUP: log.format changed; it takes effect only after a restart");
    }
    let (old, new) = (running.redacted(), fresh.redacted());
    let mut changed: Vec<String> = Vec::new();
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        for (key, value) in new {
            if key != "log" && old.get(key) != Some(value) {
                changed.push(key.clone());
            }
        }
        changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    }
    if !changed.is_empty() {
        tracing::warn!(
            keys = ?changed,
            "SIGHUP: these configuration sections changed and take effect only after a restart"
        );
    }
}

/// Re-reads the TLS files of every listener and `https` upstream.
fn reload_tls(config: &Config, secrets: &Secrets) {
    for listener in &secrets.server_tls {
        let files = &listener.files;
        match cc_common::tls::server_config(
            &files.cert_file,
            &files.key_file,
            files.client_ca_file.as_deref(),
            files.require_client_cert,
        ) {
            Ok(cfg) => {
                listener.handle.reload_from_config(cfg);
                tracing::info!(listener = %listener.what, cert = %files.cert_file.display(), "SIGHUP: TLS certificate re-read");
            }
            Err(e) => tracing::error!(
                listener = %listener.what,
                error = %cc_common::error_chain(&e),
                "SIGHUP: keeping the old TLS certificate"
            ),
        }
    }
    for (name, url, client) in &secrets.clients {
        if url.scheme() != "https" {
            continue;
        }
        let Some(u) = config.upstreams.iter().find(|u| &u.name == name) else {
            continue;
        };
        match upstream_client(u, url) {
            Ok(fresh) => *client.write() = fresh,
            Err(e) => tracing::error!(
                upstream = %name,
                error = %cc_common::error_chain(&e),
                "SIGHUP: keeping the old TLS files"
            ),
        }
    }
}
