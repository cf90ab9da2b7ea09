//! The upstreams of the configuration as the runtime needs them: one
//! [`Upstream`] handle, one [`Sink`] and one [`Worker`] each, and the line
//! rules they share.

use std::sync::Arc;

use parking_lot::RwLock;

use super::StartError;
use crate::config::{self, Config, HttpIngress, RuleSet, UpstreamCredentials, UpstreamType};
use crate::forward::http::{Compress, HttpUpstream, Kind};
use crate::forward::retry::RetryPolicy;
use crate::forward::sink::Sink;
use crate::forward::{Worker, WorkerSettings};
use crate::process::{Rules, Target};
use crate::queue::Queue;
use crate::runtime::{QueueLimit, Upstream};

/// One enabled upstream, ready to run: its handle, its worker, and what
/// SIGHUP may replace.
pub(super) struct Prepared {
    pub(super) handle: Arc<Upstream>,
    pub(super) worker: Worker,
    pub(super) auth: Arc<RwLock<Option<String>>>,
    pub(super) client: (reqwest::Url, Arc<RwLock<reqwest::Client>>),
}

/// The enabled upstreams: handles, sinks and workers.
pub(super) fn build_upstreams(
    config: &Config,
    queue: &Arc<Queue>,
) -> Result<Vec<Prepared>, StartError> {
    config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .map(|u| prepare_upstream(config, u, queue))
        .collect()
}

fn prepare_upstream(
    config: &Config,
    u: &config::Upstream,
    queue: &Arc<Queue>,
) -> Result<Prepared, StartError> {
    let kind = match u.kind {
        UpstreamType::CcmsHttp => Kind::Ccms,
        UpstreamType::RelayHttp => Kind::Relay,
        UpstreamType::Nats => {
            return Err(StartError::Unsupported(format!(
                "upstream {}: NATS upstreams are not supported by this version",
                u.name
            )));
        }
    };
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
    let worker = Worker::new(
        worker_settings(u),
        Arc::clone(queue),
        Arc::clone(&handle),
        sink,
    );
    Ok(Prepared {
        handle,
        worker,
        auth,
        client: (url, client),
    })
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
/// settings (with the listener's input unit, if it sets one), one rule set,
/// and the listener's line limit.
pub(super) fn rules_for(config: &Config, set: &RuleSet, listener: Option<&HttpIngress>) -> Rules {
    let mut timestamp = config.processing.timestamp.clone();
    if let Some(input) = listener.and_then(|l| l.input_precision) {
        timestamp.input_precision = input;
    }
    Rules {
        timestamp,
        set: set.clone(),
        materialize_cluster: config.processing.materialize_cluster,
        validate: config.processing.validate,
        max_line_bytes: listener.map_or(64 * 1024, |l| {
            usize::try_from(l.max_line_bytes.as_u64()).unwrap_or(usize::MAX)
        }),
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
