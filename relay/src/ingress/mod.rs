//! The sources: HTTP listeners collectors and InfluxDB clients post line
//! protocol to (spec `relay.md` §4.3), and NATS inputs ([`nats`], §4.4).
//!
//! A listener is one [source](crate::runtime#the-source-seam): it
//! authenticates the sender, reads and decodes the body within its limits,
//! and hands the lines to [`crate::runtime::Runtime::accept`]; it answers
//! 2xx only once that returned, that is once the lines are on disk.
//!
//! Layout: [`http`] (routes, limits, decoding, status codes), [`auth`]
//! (JWT and basic authentication), [`nats`] (core subscriptions and
//! JetStream consumers).

pub mod auth;
pub mod http;
pub mod nats;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use self::auth::{Auth, AuthMode, Credentials};
pub use self::http::{ListenerSettings, default_success, router};

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}
