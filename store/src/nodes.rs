//! The node provider: asks cc-backend which nodes run jobs, so that the
//! retention task keeps their data (`main.backend-url`).
//!
//! `GET <backend-url>/api/jobs/used_nodes?ts=<t>` with the configured
//! `backend-token` as bearer token, 10 s timeout. The answer is an object
//! `{cluster: [hostname, …]}` or the same inside `{"usedNodes": …}` (what
//! cc-backend 1.5 sends); both are accepted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::config::Secret;

/// Nodes with running jobs, per cluster.
pub type UsedNodes = HashMap<String, HashSet<String>>;

/// A cc-backend client for the used-nodes endpoint.
#[derive(Debug, Clone)]
pub struct NodeProvider {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

/// Why the used nodes could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The HTTP client could not be set up.
    #[error("HTTP client set-up: {0}")]
    Setup(String),
    /// The request failed.
    #[error("request to {url} failed: {message}")]
    Request {
        /// What was requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer: {0}")]
    Body(String),
}

impl NodeProvider {
    /// A client for cc-backend at `base` (e.g. `https://backend:8080`).
    ///
    /// # Errors
    ///
    /// TLS set-up fails (no system root certificates).
    pub fn new(base: &str, token: Option<Secret>) -> Result<NodeProvider, NodesError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if base.starts_with("https:") {
            let tls = cc_common::tls::client_config(None, None)
                .map_err(|e| NodesError::Setup(cc_common::error_chain(&e)))?;
            builder = builder.tls_backend_preconfigured((*tls).clone());
        }
        let client = builder
            .build()
            .map_err(|e| NodesError::Setup(cc_common::error_chain(&e)))?;
        Ok(NodeProvider {
            client,
            url: format!("{}/api/jobs/used_nodes", base.trim_end_matches('/')),
            token,
        })
    }

    /// The nodes that run jobs at or after `ts`.
    ///
    /// # Errors
    ///
    /// The request fails, answers other than 200, or with other JSON.
    pub async fn used_nodes(&self, ts: i64) -> Result<UsedNodes, NodesError> {
        let url = format!("{}?ts={ts}", self.url);
        let failed = |message: String| NodesError::Request {
            url: url.clone(),
            message,
        };
        let mut request = self.client.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| failed(cc_common::error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(cc_common::error_chain(&e)))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(failed(format!("status {status}: {text}")));
        }
        parse_used_nodes(&body)
    }
}

/// Reads `{cluster: [host, …]}` or `{"usedNodes": {cluster: [host, …]}}`;
/// `null` lists are empty.
///
/// # Errors
///
/// Any other shape.
pub fn parse_used_nodes(body: &[u8]) -> Result<UsedNodes, NodesError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| NodesError::Body(e.to_string()))?;
    let map = match value.get("usedNodes") {
        Some(inner) if inner.is_object() => inner,
        _ => &value,
    };
    let Some(map) = map.as_object() else {
        return Err(NodesError::Body("expected a JSON object".to_owned()));
    };
    let mut out = UsedNodes::new();
    for (cluster, hosts) in map {
        let set = out.entry(cluster.clone()).or_default();
        match hosts {
            serde_json::Value::Null => {}
            serde_json::Value::Array(hosts) => {
                for host in hosts {
                    let Some(host) = host.as_str() else {
                        return Err(NodesError::Body(format!(
                            "cluster {cluster:?}: host names must be strings"
                        )));
                    };
                    set.insert(host.to_owned());
                }
            }
            _ => {
                return Err(NodesError::Body(format!(
                    "cluster {cluster:?}: expected a list of host names"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_answer_shapes_are_read() {
        let bare = parse_used_nodes(br#"{"fritz":["f1","f2"],"alex":null}"#).unwrap();
        assert!(bare["fritz"].contains("f2"));
        assert!(bare["alex"].is_empty());
        let wrapped = parse_used_nodes(br#"{"usedNodes":{"fritz":["f1"]}}"#).unwrap();
        assert_eq!(wrapped.len(), 1);
        assert!(wrapped["fritz"].contains("f1"));
        assert!(parse_used_nodes(b"{}").unwrap().is_empty());
    }

    #[test]
    fn other_shapes_are_errors() {
        for body in [
            &b"[]"[..],
            b"{\"fritz\":\"f1\"}",
            b"{\"fritz\":[1]}",
            b"nope",
        ] {
            assert!(
                parse_used_nodes(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
