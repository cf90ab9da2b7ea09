//! HTTP upstreams: `ccms-http` (a cc-metric-store `/api/write`) and
//! `relay-http` (the next relay's ingress).
//!
//! A request is `POST <url>[?|&]cluster=<default>` with the batch's lines as
//! body, `Authorization` when configured and `Content-Type: text/plain`.
//! Towards a store the body is never compressed (stores ignore
//! `Content-Encoding`). Towards a relay it may be gzip- or zstd-compressed,
//! and it carries `X-CC-Relay-Hops` (the lines' hop count plus one, for loop
//! protection), `X-CC-Relay-Id` and `X-CC-Relay-Batch`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};

use super::retry::Outcome;
use super::sink::Attempt;

/// A slice of a queue record on its way upstream: the whole record, or a
/// part of it after bisection (whole lines, same record id).
#[derive(Debug, Clone)]
pub struct Piece {
    /// Record id.
    pub id: u64,
    /// Default cluster of the record ("" for none).
    pub cluster: String,
    /// Hop count of the request the lines came in with.
    pub hops: u8,
    /// When the relay accepted the lines (Unix ms).
    pub ingest_ms: u64,
    /// Number of lines in `body`.
    pub lines: u32,
    /// `\n`-terminated lines.
    pub body: Vec<u8>,
    /// For a part of a record after bisection: the record's line (counted
    /// from 0) it starts at; `None` for the whole record.
    pub part: Option<u32>,
}

impl Piece {
    /// Splits a piece of at least two lines into two halves at a line boundary.
    #[must_use]
    pub fn halves(self) -> (Piece, Piece) {
        let half = (self.lines / 2).max(1);
        let cut = self
            .body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(usize::try_from(half - 1).unwrap_or(0))
            .map_or(self.body.len(), |(i, _)| i + 1);
        let mut left = self;
        let right_body = left.body.split_off(cut);
        let start = left.part.unwrap_or(0);
        let right = Piece {
            id: left.id,
            cluster: left.cluster.clone(),
            hops: left.hops,
            ingest_ms: left.ingest_ms,
            lines: left.lines - half,
            body: right_body,
            part: Some(start + half),
        };
        left.lines = half;
        left.part = Some(start);
        (left, right)
    }
}

/// Kind of HTTP upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cc-metric-store (or cc-store) write endpoint.
    Ccms,
    /// Another cc-relay.
    Relay,
}

/// Request body compression (relay upstreams only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Plain.
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

/// The value of the `Authorization` header; re-read on SIGHUP.
pub type AuthHeader = Arc<RwLock<Option<String>>>;

/// One HTTP upstream.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    /// Shared client (keep-alive pool, TLS, timeouts); replaced when SIGHUP
    /// re-reads the TLS files.
    pub client: Arc<RwLock<reqwest::Client>>,
    /// Full write URL.
    pub url: reqwest::Url,
    /// Store or relay.
    pub kind: Kind,
    /// Cluster used when a record has none (`upstreams[].cluster`).
    pub default_cluster: Option<String>,
    /// `Authorization` header value.
    pub auth: AuthHeader,
    /// This relay's `instance_id`.
    pub instance_id: String,
    /// Body compression (relay upstreams).
    pub compress: Compress,
    /// Extra static headers.
    pub headers: Vec<(String, String)>,
}

impl HttpUpstream {
    /// The URL without userinfo and query, for logs.
    #[must_use]
    pub fn display_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }

    /// `host:port` of the upstream, for reachability probes.
    #[must_use]
    pub fn socket_target(&self) -> Option<String> {
        let host = self.url.host_str()?;
        let port = self.url.port_or_known_default()?;
        Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// The URL of a request for `cluster`: `cluster=` is added unless the
    /// configured URL has one already.
    #[must_use]
    pub fn url_for(&self, cluster: &str) -> reqwest::Url {
        let mut url = self.url.clone();
        let cluster = if cluster.is_empty() {
            self.default_cluster.as_deref().unwrap_or("")
        } else {
            cluster
        };
        let has_cluster = url.query_pairs().any(|(k, _)| k == "cluster");
        if !cluster.is_empty() && !has_cluster {
            url.query_pairs_mut().append_pair("cluster", cluster);
        }
        url
    }

    /// Sends the pieces as one request.
    pub async fn send(&self, pieces: &[Piece]) -> Attempt {
        let cluster = pieces.first().map_or("", |p| p.cluster.as_str());
        let mut body = Vec::with_capacity(pieces.iter().map(|p| p.body.len()).sum());
        for p in pieces {
            body.extend_from_slice(&p.body);
        }
        let client = self.client.read().clone();
        let mut req = client
            .post(self.url_for(cluster))
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(USER_AGENT, concat!("cc-relay/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = self.auth.read().as_ref() {
            req = req.header(AUTHORIZATION, auth.as_str());
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if self.kind == Kind::Relay {
            let hops = pieces
                .iter()
                .map(|p| p.hops)
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            let first = pieces.first().map_or(0, |p| p.id);
            let last = pieces.last().map_or(0, |p| p.id);
            req = req
                .header("X-CC-Relay-Hops", hops.to_string())
                .header("X-CC-Relay-Id", self.instance_id.as_str())
                .header("X-CC-Relay-Batch", format!("{first}-{last}"));
            match self.compress {
                Compress::None => {}
                Compress::Gzip => {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    if enc.write_all(&body).is_ok()
                        && let Ok(gz) = enc.finish()
                    {
                        body = gz;
                        req = req.header(CONTENT_ENCODING, "gzip");
                    }
                }
                Compress::Zstd => {
                    if let Ok(z) = zstd::bulk::compress(&body, 3) {
                        body = z;
                        req = req.header(CONTENT_ENCODING, "zstd");
                    }
                }
            }
        }
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| super::retry::parse_retry_after(v, SystemTime::now()));
                let outcome = super::retry::classify(status);
                let body = if outcome == Outcome::Delivered {
                    Vec::new()
                } else {
                    resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default()
                };
                let failure = match outcome {
                    Outcome::Delivered => None,
                    Outcome::Auth(_) => Some("auth"),
                    _ if status >= 500 => Some("http_5xx"),
                    _ => Some("http_4xx"),
                };
                let detail = format!("HTTP {status}: {}", super::excerpt(&body));
                Attempt::Answered {
                    outcome,
                    failure,
                    retry_after,
                    detail,
                    body,
                }
            }
            Err(e) => {
                let message = cc_common::error_chain(&e);
                let reason = if e.is_timeout() {
                    "timeout"
                } else if message.contains("certificate")
                    || message.contains("TLS")
                    || message.contains("tls")
                {
                    "tls"
                } else {
                    "connect"
                };
                Attempt::Failed { reason, message }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(lines: &[&str]) -> Piece {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        Piece {
            id: 7,
            cluster: "c".into(),
            hops: 0,
            ingest_ms: 0,
            lines: u32::try_from(lines.len()).unwrap(),
            body: body.into_bytes(),
            part: None,
        }
    }

    #[test]
    fn halves_split_at_line_boundaries() {
        let (l, r) = piece(&["a v=1", "b v=2", "c v=3"]).halves();
        assert_eq!((l.lines, l.body.as_slice()), (1, &b"a v=1\n"[..]));
        assert_eq!((r.lines, r.body.as_slice()), (2, &b"b v=2\nc v=3\n"[..]));
        assert_eq!(r.id, 7);
    }

    fn upstream(url: &str) -> HttpUpstream {
        HttpUpstream {
            client: Arc::new(RwLock::new(reqwest::Client::new())),
            url: reqwest::Url::parse(url).unwrap(),
            kind: Kind::Ccms,
            default_cluster: Some("dflt".into()),
            auth: Arc::new(RwLock::new(None)),
            instance_id: "r1".into(),
            compress: Compress::None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn cluster_query_parameter() {
        cc_common::tls::install_crypto_provider();
        let u = upstream("http://store:8082/api/write");
        assert_eq!(
            u.url_for("fritz").as_str(),
            "http://store:8082/api/write?cluster=fritz"
        );
        assert_eq!(
            u.url_for("").as_str(),
            "http://store:8082/api/write?cluster=dflt"
        );
        let fixed = upstream("http://store:8082/api/write?cluster=alex");
        assert_eq!(
            fixed.url_for("fritz").as_str(),
            "http://store:8082/api/write?cluster=alex"
        );
        let secret = upstream("http://u:p@store:8082/api/write?token=x");
        assert_eq!(secret.display_url(), "http://store:8082/api/write");
    }
}
