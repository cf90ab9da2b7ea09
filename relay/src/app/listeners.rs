//! The HTTP listeners of the configuration as sources: settings and
//! credentials (the latter also re-read on SIGHUP).

use std::sync::Arc;

use axum::http::StatusCode;
use cc_common::auth::JwtVerifier;
use parking_lot::RwLock;

use super::StartError;
use crate::config::{self, HttpIngress, InputPrecision};
use crate::ingress::{self, Auth, ListenerSettings};
use crate::runtime::RuleGroup;

/// The keys and users of a listener, from its (re-)loaded configuration.
pub(crate) fn listener_credentials(l: &HttpIngress) -> Result<ingress::Credentials, StartError> {
    let verifier = if l.auth.public_keys.is_empty() {
        None
    } else {
        Some(
            JwtVerifier::new(l.auth.public_keys.clone())
                .map_err(|e| StartError::Jwt(l.name.clone(), Box::new(e)))?
                .with_leeway(l.auth.leeway),
        )
    };
    Ok(ingress::Credentials {
        verifier,
        basic_users: l.auth.basic_users.clone(),
    })
}

pub(super) fn listener_settings(
    l: &HttpIngress,
    rule_groups: Arc<[RuleGroup]>,
) -> Result<ListenerSettings, StartError> {
    Ok(ListenerSettings {
        name: l.name.as_str().into(),
        paths: l.paths.clone(),
        auth: Arc::new(Auth {
            mode: l.auth.mode,
            credentials: RwLock::new(listener_credentials(l)?),
            accept_x_auth_token: l.auth.accept_x_auth_token,
            required_roles: l.auth.required_roles.clone(),
            require_sub: l.auth.require_sub,
        }),
        max_body_bytes: usize::try_from(l.max_body_bytes.as_u64()).unwrap_or(usize::MAX),
        max_decompressed_bytes: usize::try_from(l.max_decompressed_bytes.as_u64())
            .unwrap_or(usize::MAX),
        accept_encodings: l.accept_encodings.clone(),
        ack_timeout: l.ack_timeout,
        body_read_timeout: l.body_read_timeout,
        max_concurrent_requests: l.max_concurrent_requests,
        success_status: l
            .success_status
            .and_then(|status| StatusCode::from_u16(status).ok()),
        reject_invalid: l.invalid_lines == config::InvalidLines::Reject,
        trust_query_cluster: l.trust_query_cluster,
        default_cluster: l.default_cluster.clone(),
        input_precision: match &l.input_precision {
            Some(InputPrecision::Fixed(p)) => Some(*p),
            _ => None,
        },
        max_hops: l.max_hops,
        rule_groups,
    })
}
