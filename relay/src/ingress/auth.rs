//! Who may write to an HTTP listener: Ed25519 JWTs and basic authentication
//! (spec `relay.md` §4.3, §4.10), in the forms collectors and InfluxDB
//! clients send them.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use cc_common::auth::{JwtVerifier, bearer_token};

use super::text;
pub use crate::config::AuthMode;

/// Authentication of one listener.
#[derive(Debug)]
pub struct Auth {
    /// Mode.
    pub mode: AuthMode,
    /// Keys and users; replaced when SIGHUP re-reads the secret files.
    pub credentials: parking_lot::RwLock<Credentials>,
    /// Also read the token from `X-Auth-Token`.
    pub accept_x_auth_token: bool,
    /// A token needs one of these roles (empty: no check).
    pub required_roles: Vec<String>,
    /// A token needs a `sub` claim.
    pub require_sub: bool,
}

/// What a listener checks credentials against.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Token verification (jwt modes).
    pub verifier: Option<JwtVerifier>,
    /// Users for basic authentication.
    pub basic_users: Option<crate::config::BasicUsers>,
}

/// A refused request: the answer, and the reason counted in `/metrics`.
pub(crate) struct AuthFailure {
    pub(crate) response: Box<Response>,
    pub(crate) reason: &'static str,
}

fn refuse(response: Response, reason: &'static str) -> AuthFailure {
    AuthFailure {
        response: Box::new(response),
        reason,
    }
}

/// Checks the request's credentials: a JWT as `Authorization: Bearer`,
/// InfluxDB 2's `Authorization: Token`, or `X-Auth-Token`; basic credentials
/// as `Authorization: Basic` or InfluxDB 1's `u`/`p` query parameters.
pub(crate) fn authenticate(
    auth: &Auth,
    headers: &HeaderMap,
    query_user: Option<&(String, String)>,
) -> Result<(), AuthFailure> {
    if auth.mode == AuthMode::None {
        return Ok(());
    }
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header(header::AUTHORIZATION);
    let token = authorization
        .and_then(|v| bearer_token(v).or_else(|| influx_token(v)))
        .or_else(|| {
            auth.accept_x_auth_token
                .then(|| headers.get("x-auth-token").and_then(|v| v.to_str().ok()))
                .flatten()
        });
    let jwt_allowed = matches!(auth.mode, AuthMode::Jwt | AuthMode::JwtOrBasic);
    let basic_allowed = matches!(auth.mode, AuthMode::Basic | AuthMode::JwtOrBasic);
    let credentials = auth.credentials.read();
    if jwt_allowed && let (Some(token), Some(verifier)) = (token, &credentials.verifier) {
        return match verifier.verify(token) {
            Ok(claims) => {
                if auth.require_sub && claims.sub.as_deref().is_none_or(str::is_empty) {
                    return Err(refuse(
                        unauthorized(auth, "token has no sub claim"),
                        "claims",
                    ));
                }
                if !claims.has_any_role(&auth.required_roles) {
                    return Err(refuse(
                        text(StatusCode::FORBIDDEN, "token lacks a required role\n"),
                        "claims",
                    ));
                }
                Ok(())
            }
            Err(e) => Err(refuse(unauthorized(auth, &e.to_string()), "jwt")),
        };
    }
    let from_header = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .map(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        });
    let basic = match from_header {
        Some(decoded) => Some(decoded),
        None => query_user.map(|up| Some(up.clone())),
    };
    if basic_allowed && let Some(basic) = basic {
        if let Some((user, password)) = &basic
            && credentials
                .basic_users
                .as_ref()
                .is_some_and(|users| users.verify(user, password))
        {
            return Ok(());
        }
        return Err(refuse(
            unauthorized(auth, "wrong user or password"),
            "basic",
        ));
    }
    Err(refuse(
        unauthorized(auth, "credentials required"),
        "missing",
    ))
}

/// InfluxDB 2's `Authorization: Token <token>`.
fn influx_token(header_value: &str) -> Option<&str> {
    header_value
        .strip_prefix("Token ")
        .filter(|token| !token.is_empty())
}

fn unauthorized(auth: &Auth, why: &str) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    let challenge = match auth.mode {
        AuthMode::Basic | AuthMode::JwtOrBasic => "Basic realm=\"cc-relay\"",
        _ => "Bearer realm=\"cc-relay\"",
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> crate::config::BasicUsers {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "collector:s3cret\n").unwrap();
        crate::config::BasicUsers::from_file(&path).unwrap()
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let auth = Auth {
            mode: AuthMode::Basic,
            credentials: parking_lot::RwLock::new(Credentials {
                verifier: None,
                basic_users: Some(users()),
            }),
            accept_x_auth_token: true,
            required_roles: Vec::new(),
            require_sub: false,
        };
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        let good = base64::engine::general_purpose::STANDARD.encode("collector:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("collector:nope");
        assert!(authenticate(&auth, &with(&format!("Basic {good}")), None).is_ok());
        let refused = authenticate(&auth, &with(&format!("Basic {bad}")), None).unwrap_err();
        assert_eq!(refused.response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.reason, "basic");
        let missing = authenticate(&auth, &HeaderMap::new(), None).unwrap_err();
        assert_eq!(missing.reason, "missing");
        // InfluxDB 1 clients send u/p as query parameters.
        let query = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert!(
            authenticate(
                &auth,
                &HeaderMap::new(),
                query("collector", "s3cret").as_ref()
            )
            .is_ok()
        );
        let refused = authenticate(
            &auth,
            &HeaderMap::new(),
            query("collector", "nope").as_ref(),
        )
        .unwrap_err();
        assert_eq!(refused.reason, "basic");
    }
}
