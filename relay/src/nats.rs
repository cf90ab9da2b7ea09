//! What the relay keeps of its NATS connections: one [`NatsLink`] per NATS
//! input and per `nats` upstream, registered with the runtime so that
//! `/metrics`, `/status` and `/readyz` can see every connection's state
//! and every source's message counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use cc_common::nats::{Options, Status};
use prometheus_client::metrics::counter::Counter;

use crate::config::NatsConnection;
use crate::metrics::ReasonCounts;

/// Why a NATS source lost messages (the `reason` label of
/// `ccrelay_nats_dropped_messages_total`): larger than `max_message_bytes`,
/// refused by the runtime (disk pressure, `reject_new`, shutdown; core mode
/// only: JetStream naks those), holding invalid lines with
/// `invalid_lines: reject`.
pub const NATS_DROP_REASONS: [&str; 3] = ["too_large", "refused", "invalid"];

/// How a JetStream source answered messages (the `kind` label of
/// `ccrelay_nats_acks_total`).
pub const ACK_KINDS: [&str; 3] = ["ack", "nak", "term"];

/// Counters of one NATS source.
#[derive(Debug)]
pub struct SourceCounters {
    /// Messages received.
    pub messages: Counter,
    /// Messages lost, by reason ([`NATS_DROP_REASONS`]).
    pub dropped: ReasonCounts<3>,
    /// JetStream answers, by kind ([`ACK_KINDS`]).
    pub acks: ReasonCounts<3>,
    /// JetStream messages delivered more than once.
    pub redelivered: Counter,
    /// JetStream messages received and not answered yet.
    pub unacked: AtomicI64,
    /// The input takes messages: its subscriptions are known to the server
    /// (core), or its consumer is bound (JetStream).
    pub taking: AtomicBool,
}

impl Default for SourceCounters {
    fn default() -> Self {
        SourceCounters {
            messages: Counter::default(),
            dropped: ReasonCounts::new(NATS_DROP_REASONS),
            acks: ReasonCounts::new(ACK_KINDS),
            redelivered: Counter::default(),
            unacked: AtomicI64::new(0),
            taking: AtomicBool::new(false),
        }
    }
}

/// One NATS connection of the relay.
#[derive(Debug, Clone)]
pub struct NatsLink {
    /// `ingress:<name>` or `upstream:<name>`, and the connection's state.
    pub status: Arc<Status>,
    /// For a source: its name and counters.
    pub source: Option<(Arc<str>, Arc<SourceCounters>)>,
    /// What the connection presents at its next (re)connection; SIGHUP
    /// replaces it.
    pub credentials: Arc<cc_common::nats::Credentials>,
}

/// The NATS connections of the relay.
#[derive(Debug, Default)]
pub struct NatsLinks {
    links: parking_lot::Mutex<Vec<NatsLink>>,
}

impl NatsLinks {
    /// Adds a connection.
    pub fn add(&self, link: NatsLink) {
        self.links.lock().push(link);
    }

    /// Every connection, in the order they were added.
    #[must_use]
    pub fn all(&self) -> Vec<NatsLink> {
        self.links.lock().clone()
    }

    /// The roles of the sources that do not take messages: not connected,
    /// or not subscribed (bound) yet.
    #[must_use]
    pub fn sources_down(&self) -> Vec<String> {
        self.links
            .lock()
            .iter()
            .filter(|l| {
                l.source.as_ref().is_some_and(|(_, c)| {
                    !l.status.is_connected() || !c.taking.load(Ordering::Relaxed)
                })
            })
            .map(|l| l.status.role().to_owned())
            .collect()
    }
}

/// The client options of a configured connection.
#[must_use]
pub fn client_options(
    connection: &NatsConnection,
    instance_id: &str,
    role: &str,
    subscription_capacity: usize,
) -> Options {
    Options {
        servers: connection.servers.clone(),
        auth: connection.auth.clone(),
        tls: connection.tls.clone(),
        client_name: format!("cc-relay {instance_id} {role}"),
        subscription_capacity,
    }
}

/// Whether `subject` matches the subscription pattern `pattern` (`*` one
/// token, a final `>` one or more).
#[must_use]
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut pattern_tokens = pattern.split('.').peekable();
    while let Some(p) = pattern_tokens.next() {
        if p == ">" && pattern_tokens.peek().is_none() {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if p == "*" || p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("metrics", "metrics"));
        assert!(!subject_matches("metrics", "metrics.a"));
        assert!(subject_matches("metrics.*", "metrics.a"));
        assert!(!subject_matches("metrics.*", "metrics.a.b"));
        assert!(!subject_matches("metrics.*", "metrics"));
        assert!(subject_matches("metrics.>", "metrics.a.b"));
        assert!(!subject_matches("metrics.>", "metrics"));
        assert!(subject_matches("*.rack1", "m.rack1"));
        assert!(!subject_matches("*.rack1", "m.rack2"));
        assert!(subject_matches(">", "a.b"));
    }

    fn none() -> Arc<cc_common::nats::Credentials> {
        Arc::new(cc_common::nats::Credentials::new(&cc_common::nats::Auth::default()).unwrap())
    }

    #[test]
    fn only_sources_that_are_down_count_for_readiness() {
        let links = NatsLinks::default();
        let counters = Arc::new(SourceCounters::default());
        counters.taking.store(true, Ordering::Relaxed);
        links.add(NatsLink {
            status: Arc::new(Status::new("ingress:bus")),
            source: Some(("bus".into(), Arc::clone(&counters))),
            credentials: none(),
        });
        links.add(NatsLink {
            status: Arc::new(Status::new("upstream:head")),
            source: None,
            credentials: none(),
        });
        assert_eq!(links.sources_down(), ["ingress:bus"]);
        assert_eq!(links.all().len(), 2);
    }
}
