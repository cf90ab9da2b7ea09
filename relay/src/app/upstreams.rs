//! The upstreams of the configuration as the runtime needs them: one
//! [`Upstream`] handle, one [`Sink`] and one [`Worker`] each, and the line
//! rules they share.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use cc_common::nats::Status;
use parking_lot::RwLock;

use super::StartError;
use crate::config::{
    self, Config, InputPrecision, NatsMode, RuleSet, UpstreamCredentials, UpstreamType,
};
use crate::forward::http::{Compress, HttpUpstream, Kind};
use crate::forward::retry::RetryPolicy;
use crate::forward::sink::{NatsUpstream, Sink};
use crate::forward::{Worker, WorkerSettings};
use crate::nats::{NatsLink, NatsLinks, client_options};
use crate::process::{Rules, Target};
use crate::queue::Queue;
use crate::runtime::{QueueLimit, Upstream};

/// One enabled upstream, ready to run: its handle, its worker, and what
/// SIGHUP may replace.
pub(super) struct Prepared {
    pub(super) handle: Arc<Upstream>,
    pub(super) worker: Worker,
    /// HTTP upstreams: the `Authorization` value and the client, which
    /// SIGHUP may replace.
    pub(super) http: Option<HttpParts>,
}

/// What SIGHUP may replace of an HTTP upstream.
pub(super) struct HttpParts {
    pub(super) auth: Arc<RwLock<Option<String>>>,
    pub(super) client: (reqwest::Url, Arc<RwLock<reqwest::Client>>),
}

/// The enabled upstreams: handles, sinks and workers. NATS upstreams are
/// registered with `links` (their clients connect in the background).
pub(super) async fn build_upstreams(
    config: &Config,
    queue: &Arc<Queue>,
    links: &NatsLinks,
) -> Result<Vec<Prepared>, StartError> {
    let mut out = Vec::new();
    for u in config.upstreams.iter().filter(|u| u.enabled) {
        let handle = Arc::new(Upstream::new(
            u.name.clone(),
            Target {
                name: u.name.clone(),
                ccms: u.kind.is_ccms(),
                filter: u.filter.clone(),
            },
            QueueLimit {
                max_bytes: u.buffer.max_bytes.as_u64(),
                reject_new: u.buffer.when_full == config::WhenFull::RejectNew,
            },
        ));
        let (sink, http) = match u.kind {
            UpstreamType::CcmsHttp => http_sink(config, u, Kind::Ccms)?,
            UpstreamType::RelayHttp => http_sink(config, u, Kind::Relay)?,
            UpstreamType::Nats => (nats_sink(config, u, links).await?, None),
        };
        let worker = Worker::new(
            worker_settings(u),
            Arc::clone(queue),
            Arc::clone(&handle),
            sink,
        );
        out.push(Prepared {
            handle,
            worker,
            http,
        });
    }
    Ok(out)
}

/// The sink of a `nats` upstream, its client started.
async fn nats_sink(
    config: &Config,
    u: &config::Upstream,
    links: &NatsLinks,
) -> Result<Sink, StartError> {
    let Some(connection) = &u.connection else {
        return Err(StartError::Unsupported(format!(
            "upstream {} has no NATS servers",
            u.name
        )));
    };
    let role = format!("upstream:{}", u.name);
    let status = Arc::new(Status::new(role.clone()));
    let options = client_options(connection, &config.instance_id, &role, 1024);
    let (client, credentials) = cc_common::nats::connect(&options, Arc::clone(&status))
        .await
        .map_err(|e| StartError::Nats(role.clone(), Box::new(e)))?;
    links.add(NatsLink {
        status: Arc::clone(&status),
        source: None,
        credentials,
    });
    let ack_timeout = u
        .jetstream
        .as_ref()
        .map_or(Duration::from_secs(10), |js| js.ack_timeout);
    let subject = u.subject.clone().unwrap_or_default();
    let mode = u.mode.unwrap_or_default();
    let jetstream = (mode == NatsMode::Jetstream).then(|| jetstream::new(client.clone()));
    let describe = format!(
        "nats {} subject {subject} ({})",
        connection.servers.join(","),
        if jetstream.is_some() {
            "jetstream"
        } else {
            "core"
        }
    );
    Ok(Sink::Nats(Box::new(NatsUpstream {
        client,
        jetstream,
        subject,
        ack_timeout,
        max_bytes: usize::try_from(u.batch.max_bytes.as_u64()).unwrap_or(usize::MAX),
        id_prefix: format!("{}:{}", config.instance_id, u.name),
        status,
        describe,
    })))
}

/// The sink of an HTTP upstream, with what SIGHUP may replace.
fn http_sink(
    config: &Config,
    u: &config::Upstream,
    kind: Kind,
) -> Result<(Sink, Option<HttpParts>), StartError> {
    let Some(url) = u.url.clone() else {
        return Err(StartError::Unsupported(format!(
            "upstream {} has no url",
            u.name
        )));
    };
    let client = Arc::new(RwLock::new(upstream_client(u, &url)?));
    let auth = Arc::new(RwLock::new(auth_header(&u.credentials)));
    let sink = Sink::Http(HttpUpstream {
        client: Arc::clone(&client),
        url: url.clone(),
        kind,
        default_cluster: u.cluster.clone(),
        auth: Arc::clone(&auth),
        instance_id: config.instance_id.clone(),
        compress: match u.compress {
            config::Compression::None => Compress::None,
            config::Compression::Gzip => Compress::Gzip,
            config::Compression::Zstd => Compress::Zstd,
        },
        headers: u
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    Ok((
        sink,
        Some(HttpParts {
            auth,
            client: (url, client),
        }),
    ))
}

fn worker_settings(u: &config::Upstream) -> WorkerSettings {
    WorkerSettings {
        name: u.name.clone(),
        max_bytes: u.batch.max_bytes.as_u64(),
        max_lines: u64::try_from(u.batch.max_lines).unwrap_or(u64::MAX),
        linger: u.batch.linger,
        max_age: Some(u.buffer.max_age).filter(|d| !d.is_zero()),
        retry: RetryPolicy {
            initial: u.retry.initial_backoff,
            max: u.retry.max_backoff,
            multiplier: u.retry.multiplier,
            jitter: u.retry.jitter == config::Jitter::Full,
            auth_max: u.retry.auth_backoff,
            poison_attempts: u.retry.poison_attempts.max(1),
        },
        max_in_flight: u.max_in_flight,
    }
}

/// Upstreams with equal line rules are processed together.
pub(super) fn rule_sets(
    config: &Config,
    upstreams: &[Arc<Upstream>],
) -> Vec<(RuleSet, Vec<Arc<Upstream>>)> {
    let mut sets: Vec<(RuleSet, Vec<Arc<Upstream>>)> = Vec::new();
    for u in config.upstreams.iter().filter(|u| u.enabled) {
        let Some(handle) = upstreams.iter().find(|h| h.name == u.name) else {
            continue;
        };
        match sets.iter_mut().find(|(set, _)| *set == u.rules) {
            Some((_, members)) => members.push(Arc::clone(handle)),
            None => sets.push((u.rules.clone(), vec![Arc::clone(handle)])),
        }
    }
    sets
}

/// The line rules of one processing pass: the configuration's timestamp
/// settings (with the source's input unit, if it sets one), one rule set,
/// and the source's line limit (64 KiB if it sets none).
pub(super) fn rules_for(
    config: &Config,
    set: &RuleSet,
    input_precision: Option<InputPrecision>,
    max_line_bytes: Option<u64>,
) -> Rules {
    let mut timestamp = config.processing.timestamp.clone();
    if let Some(input) = input_precision {
        timestamp.input_precision = input;
    }
    Rules {
        timestamp,
        set: set.clone(),
        materialize_cluster: config.processing.materialize_cluster,
        validate: config.processing.validate,
        max_line_bytes: max_line_bytes
            .map_or(64 * 1024, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

pub(crate) fn auth_header(credentials: &UpstreamCredentials) -> Option<String> {
    use base64::Engine as _;
    match credentials {
        UpstreamCredentials::None => None,
        UpstreamCredentials::Bearer(token) => Some(format!("Bearer {}", token.expose().trim())),
        UpstreamCredentials::Basic { username, password } => {
            let raw = format!("{username}:{}", password.expose().trim());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
        }
    }
}

/// The HTTP client of an upstream: its timeouts, and for `https` its CA and
/// client certificate.
pub(crate) fn upstream_client(
    u: &config::Upstream,
    url: &reqwest::Url,
) -> Result<reqwest::Client, StartError> {
    let mut builder = reqwest::Client::builder()
        .timeout(u.timeout)
        .connect_timeout(u.connect_timeout)
        .pool_idle_timeout(u.pool_idle_timeout);
    if url.scheme() == "https" {
        let check = cc_common::tls::ServerCheck {
            server_name: u.tls.server_name.clone(),
            insecure_skip_verify: u.tls.insecure_skip_verify,
        };
        let tls = cc_common::tls::client_config_checked(
            u.tls.ca_file.as_deref(),
            u.tls.cert_file.as_deref().zip(u.tls.key_file.as_deref()),
            &check,
        )
        .map_err(|e| StartError::Tls(format!("upstream {}", u.name), Box::new(e)))?;
        builder = builder.tls_backend_preconfigured((*tls).clone());
    }
    builder
        .build()
        .map_err(|e| StartError::Client(u.name.clone(), Box::new(e)))
}
