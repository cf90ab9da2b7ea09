//! Ed25519 (EdDSA) JWT verification shared by `cc-store` and `cc-relay`,
//! and the signing behind `cc-relay token` ([`sign_token`]).
//!
//! Rules (`spec/store.md` §4, `spec/relay.md` §4.3):
//!
//! - keys are raw 32-byte Ed25519 public keys, given as standard base64 (the
//!   `jwt-public-key` format of cc-metric-store) or as SPKI PEM; several keys
//!   may be configured for rotation, and a token verifies if any key accepts it;
//! - only header `alg` `EdDSA` is accepted (`none`, HMAC, RSA and ECDSA are
//!   refused whatever the key);
//! - the time claims are checked only when present: `exp` must be strictly in
//!   the future (`exp = 0` counts as absent), `nbf` and `iat` must not be in
//!   the future, each with a configurable leeway (the store uses none, the
//!   relay 60 s). Tokens without `exp` never expire;
//! - verified tokens are cached by their raw text in a bounded map; a cache
//!   hit re-checks the time claims, so expiry still applies.
//!
//! Tokens are credentials: no error message, log line or `Debug` output of
//! this module contains token text or claim values taken from a token.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Length of a raw Ed25519 public key.
const ED25519_KEY_LEN: usize = 32;

/// Default number of verified tokens kept in the cache (as upstream).
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Failure to load a JWT public key. Returned at start-up, never per request.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The base64 text does not decode (standard alphabet, with padding).
    #[error("JWT public key is not valid base64")]
    Base64(#[source] base64::DecodeError),
    /// The decoded key does not have the length of an Ed25519 key.
    #[error("JWT public key must be 32 bytes, got {0}")]
    Length(usize),
    /// The 32 bytes are not a point on the Ed25519 curve.
    #[error("JWT public key is not a valid Ed25519 public key")]
    NotOnCurve,
    /// The PEM text is not an Ed25519 `PUBLIC KEY` (SPKI).
    #[error("JWT public key PEM is not an Ed25519 SPKI \"PUBLIC KEY\"")]
    Pem(#[source] jsonwebtoken::errors::Error),
    /// The PEM holds a private key; only the public key must be configured.
    #[error(
        "JWT public key PEM holds a private key; configure the public key (openssl pkey -pubout)"
    )]
    PrivateKeyGiven,
    /// A key file could not be read.
    #[error("cannot read JWT public key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A key file's content was rejected.
    #[error("JWT public key file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why its content was rejected.
        #[source]
        source: Box<KeyError>,
    },
    /// [`JwtVerifier::new`] was given no key.
    #[error("no JWT public key configured")]
    NoKeys,
}

/// Why a token was refused. The messages are short and safe to send back in
/// a 401 body: they never contain token text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `exp` is not in the future (beyond the leeway).
    #[error("token is expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotValidYet,
    /// `iat` is in the future (beyond the leeway).
    #[error("token used before issued")]
    UsedBeforeIssued,
    /// No configured key accepts the signature.
    #[error("signature is invalid")]
    InvalidSignature,
    /// The header names another algorithm than `EdDSA`.
    #[error("only EdDSA (Ed25519) tokens are accepted")]
    UnsupportedAlgorithm,
    /// The token is not a well-formed compact JWS with JSON header and claims.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong, in general terms (no token content).
        reason: &'static str,
    },
    /// The verification library failed for another reason (not expected with
    /// keys loaded by this module).
    #[error("token could not be verified")]
    Verification,
}

/// Failure to sign a token ([`sign_token`]).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The private key file cannot be read.
    #[error("cannot read the private key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 private key in PEM (PKCS#8), as
    /// `openssl genpkey -algorithm ed25519` writes it.
    #[error(
        "{path} is not an Ed25519 private key in PEM (make one with `openssl genpkey -algorithm ed25519 -out {path}`)"
    )]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// The claims could not be signed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs `claims` (a JSON object: `sub`, `roles`, `exp`, …) with the Ed25519
/// private key in `private_key_file` (PEM, PKCS#8) and returns the compact
/// token, header `{"alg":"EdDSA","typ":"JWT"}`, as cc-backend issues them.
///
/// # Errors
///
/// [`SignError`] naming the file when it cannot be read or is not an
/// Ed25519 private key.
pub fn sign_token(
    private_key_file: &Path,
    claims: &serde_json::Value,
) -> Result<String, SignError> {
    let pem = std::fs::read(private_key_file).map_err(|source| SignError::Read {
        path: private_key_file.to_path_buf(),
        source,
    })?;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).map_err(|_| SignError::NotAKey {
        path: private_key_file.to_path_buf(),
    })?;
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| SignError::Sign(e.to_string()))
}

/// An Ed25519 public key accepted for JWT verification.
///
/// Created by the loaders below, which check the length (32 bytes) and that
/// the bytes are a valid curve point. `Debug` shows the key in standard base64
/// (public keys are not secret).
#[derive(Clone)]
pub struct PublicKey {
    raw: [u8; ED25519_KEY_LEN],
    decoding: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_base64()).finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// A key from its raw 32 bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::Length`] unless `raw` is exactly 32 bytes,
    /// [`KeyError::NotOnCurve`] if the bytes are not an Ed25519 point.
    pub fn from_raw(raw: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; ED25519_KEY_LEN] = raw.try_into().map_err(|_| KeyError::Length(raw.len()))?;
        let decoding = DecodingKey::from_ed_der(&raw);
        // Build the verifier once with a dummy signature: this is where the
        // library decompresses the point, so an invalid key fails here, at
        // load time, instead of on every request.
        let dummy_signature = URL_SAFE_NO_PAD.encode([0u8; 64]);
        match jsonwebtoken::crypto::verify(&dummy_signature, b"", &decoding, Algorithm::EdDSA) {
            Ok(_) => Ok(Self { raw, decoding }),
            Err(_) => Err(KeyError::NotOnCurve),
        }
    }

    /// A key from the standard base64 (with padding) of its raw 32 bytes,
    /// the format of cc-metric-store's `jwt-public-key`. Surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::Base64`] for invalid base64, otherwise as [`Self::from_raw`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::from_base64_bytes(text.trim().as_bytes())
    }

    fn from_base64_bytes(text: &[u8]) -> Result<Self, KeyError> {
        let raw = STANDARD.decode(text).map_err(KeyError::Base64)?;
        Self::from_raw(&raw)
    }

    /// A key from an SPKI PEM document (`-----BEGIN PUBLIC KEY-----`, as
    /// written by `openssl pkey -pubout`).
    ///
    /// # Errors
    ///
    /// [`KeyError::PrivateKeyGiven`] for a private-key PEM, [`KeyError::Pem`]
    /// if the PEM is not an Ed25519 public key, otherwise as [`Self::from_raw`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|err| {
            if contains(pem, b"PRIVATE KEY-----") {
                KeyError::PrivateKeyGiven
            } else {
                KeyError::Pem(err)
            }
        })?;
        let raw = key.try_get_as_bytes().map_err(KeyError::Pem)?;
        Self::from_raw(raw)
    }

    /// A key from a file holding an SPKI PEM document.
    ///
    /// # Errors
    ///
    /// [`KeyError::Read`] if the file cannot be read, [`KeyError::File`]
    /// wrapping the reason of [`Self::from_pem`] otherwise.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let content = read_key_file(path)?;
        Self::from_pem(&content).map_err(|err| in_file(path, err))
    }

    /// A key from a file holding either an SPKI PEM document or the standard
    /// base64 of the raw key. The content is trimmed; it is taken as PEM if it
    /// starts with `-----BEGIN`, as base64 otherwise.
    ///
    /// # Errors
    ///
    /// [`KeyError::Read`] if the file cannot be read, [`KeyError::File`]
    /// wrapping the reason of [`Self::from_pem`] or [`Self::from_base64`].
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let content = read_key_file(path)?;
        let text = content.trim_ascii();
        let parsed = if text.starts_with(b"-----BEGIN") {
            Self::from_pem(text)
        } else {
            Self::from_base64_bytes(text)
        };
        parsed.map_err(|err| in_file(path, err))
    }

    /// The raw 32 key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ED25519_KEY_LEN] {
        &self.raw
    }

    /// The standard base64 of the raw key (the `jwt-public-key` format).
    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.raw)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;

    /// Same as [`PublicKey::from_base64`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_base64(text)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn in_file(path: &Path, err: KeyError) -> KeyError {
    KeyError::File {
        path: path.to_path_buf(),
        source: Box::new(err),
    }
}

/// The claims of a verified token that the binaries use. Other claims are
/// tolerated and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Subject (user name in cc-backend tokens); `None` unless a string.
    #[serde(default, deserialize_with = "string_or_none")]
    pub sub: Option<String>,
    /// Roles (cc-backend: `ROLE_ADMIN`, `ROLE_API`, …): the strings of the
    /// `roles` array. Anything else (missing, `null`, a string, a number)
    /// gives no roles; it never makes the token invalid.
    #[serde(default, deserialize_with = "strings_of_array")]
    pub roles: Vec<String>,
    /// Expiry, Unix seconds (fractions truncated); `0` counts as absent.
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    /// Not-before, Unix seconds (fractions truncated).
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    /// Issued-at, Unix seconds (fractions truncated).
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
}

impl Claims {
    /// Applies the time-claim policy at `now` (Unix seconds) with `leeway`
    /// (whole seconds; fractions ignored): `exp`, if present and not `0`,
    /// must satisfy `now < exp + leeway`; `nbf` and `iat`, if present, must
    /// satisfy `value <= now + leeway`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Expired`], [`AuthError::NotValidYet`] or
    /// [`AuthError::UsedBeforeIssued`], checked in that order.
    pub fn check_time(&self, now: i64, leeway: Duration) -> Result<(), AuthError> {
        let leeway = leeway_secs(leeway);
        if self.is_expired(now, leeway) {
            return Err(AuthError::Expired);
        }
        let latest_allowed = now.saturating_add(leeway);
        if self.nbf.is_some_and(|nbf| nbf > latest_allowed) {
            return Err(AuthError::NotValidYet);
        }
        if self.iat.is_some_and(|iat| iat > latest_allowed) {
            return Err(AuthError::UsedBeforeIssued);
        }
        Ok(())
    }

    /// True if the required-roles rule passes: `required` is empty, or
    /// `roles` contains at least one of its entries.
    #[must_use]
    pub fn has_any_role<S: AsRef<str>>(&self, required: &[S]) -> bool {
        required.is_empty()
            || required
                .iter()
                .any(|want| self.roles.iter().any(|have| have == want.as_ref()))
    }

    fn is_expired(&self, now: i64, leeway_secs: i64) -> bool {
        match self.exp {
            None | Some(0) => false,
            Some(exp) => now >= exp.saturating_add(leeway_secs),
        }
    }
}

fn leeway_secs(leeway: Duration) -> i64 {
    i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX)
}

fn string_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

fn strings_of_array<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// A JWT NumericDate: integer or float seconds (float truncated toward zero,
/// saturating at the `i64` range); `null` counts as absent.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct NumericDate;

    impl Visitor<'_> for NumericDate {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds since the Unix epoch")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() {
                // Fractions are dropped; `as` saturates out-of-range values.
                Ok(Some(v.trunc() as i64))
            } else {
                Err(E::custom("time claim is not a finite number"))
            }
        }
    }

    deserializer.deserialize_any(NumericDate)
}

/// Only what is needed to check the algorithm before anything else.
#[derive(Deserialize)]
struct AlgHeader {
    alg: String,
}

/// Returns the token of an `Authorization` header value: the text after an
/// exact, case-sensitive `Bearer ` prefix, if it is not empty.
#[must_use]
pub fn bearer_token(header_value: &str) -> Option<&str> {
    header_value
        .strip_prefix("Bearer ")
        .filter(|token| !token.is_empty())
}

/// Verifies Ed25519 JWTs against one or more public keys, with a bounded
/// cache of verified tokens.
///
/// Share one verifier (e.g. in an `Arc`) between requests; it is `Send + Sync`.
/// The default leeway is 0 (cc-metric-store behaviour) and the default cache
/// capacity [`DEFAULT_CACHE_CAPACITY`].
pub struct JwtVerifier {
    keys: Vec<PublicKey>,
    validation: Validation,
    leeway: Duration,
    cache_capacity: usize,
    cache: Mutex<HashMap<String, Claims>>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cache holds tokens: show its size only.
        let cached = self.lock_cache().len();
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys)
            .field("leeway", &self.leeway)
            .field("cache_capacity", &self.cache_capacity)
            .field("cached_tokens", &cached)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier accepting tokens signed by any of `keys`.
    ///
    /// # Errors
    ///
    /// [`KeyError::NoKeys`] if `keys` is empty.
    pub fn new(keys: Vec<PublicKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Self {
            keys,
            validation,
            leeway: Duration::ZERO,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A verifier for one key given as standard base64 of its raw 32 bytes.
    ///
    /// # Errors
    ///
    /// As [`PublicKey::from_base64`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::new(vec![PublicKey::from_base64(text)?])
    }

    /// A verifier for one key given as SPKI PEM.
    ///
    /// # Errors
    ///
    /// As [`PublicKey::from_pem`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Self::new(vec![PublicKey::from_pem(pem)?])
    }

    /// A verifier for one key read from an SPKI PEM file.
    ///
    /// # Errors
    ///
    /// As [`PublicKey::from_pem_file`].
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        Self::new(vec![PublicKey::from_pem_file(path)?])
    }

    /// A verifier for one key read from a file holding PEM or base64.
    ///
    /// # Errors
    ///
    /// As [`PublicKey::from_file`].
    pub fn from_key_file(path: &Path) -> Result<Self, KeyError> {
        Self::new(vec![PublicKey::from_file(path)?])
    }

    /// Sets the clock-skew allowance for `exp`, `nbf` and `iat` (whole
    /// seconds; 0 = cc-metric-store behaviour, the relay uses 60 s).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets how many verified tokens are cached (0 disables the cache).
    #[must_use]
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The configured keys.
    #[must_use]
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The configured leeway.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` (the compact JWS, without `Bearer `) at the current time.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] saying why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// Verifies `token` as if the time were `now_unix_secs`.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] saying why the token is refused.
    pub fn verify_at(&self, token: &str, now_unix_secs: i64) -> Result<Claims, AuthError> {
        if self.cache_capacity > 0 {
            let mut cache = self.lock_cache();
            if let Some(claims) = cache.get(token) {
                return match claims.check_time(now_unix_secs, self.leeway) {
                    Ok(()) => Ok(claims.clone()),
                    Err(err) => {
                        if err == AuthError::Expired {
                            cache.remove(token);
                        }
                        Err(err)
                    }
                };
            }
        }

        let claims = self.verify_uncached(token)?;
        claims.check_time(now_unix_secs, self.leeway)?;

        if self.cache_capacity > 0 {
            let leeway = leeway_secs(self.leeway);
            let mut cache = self.lock_cache();
            if cache.len() >= self.cache_capacity && !cache.contains_key(token) {
                cache.retain(|_, cached| !cached.is_expired(now_unix_secs, leeway));
                if cache.len() >= self.cache_capacity {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    /// Number of tokens currently cached.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.lock_cache().len()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        // The map stays consistent even if a holder panicked: recover it.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shape, algorithm and signature checks; no time claims.
    fn verify_uncached(&self, token: &str) -> Result<Claims, AuthError> {
        let mut parts = token.split('.');
        let header = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(_), Some(_), None) => header,
            _ => {
                return Err(AuthError::Malformed {
                    reason: "expected three dot-separated parts",
                });
            }
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed {
                reason: "header is not base64url",
            })?;
        let header: AlgHeader =
            serde_json::from_slice(&header).map_err(|_| AuthError::Malformed {
                reason: "header is not a JSON object with \"alg\"",
            })?;
        if header.alg != "EdDSA" {
            return Err(AuthError::UnsupportedAlgorithm);
        }

        let mut result = Err(AuthError::InvalidSignature);
        for key in &self.keys {
            result = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
                .map(|data| data.claims)
                .map_err(|err| map_jwt_error(err.kind()));
            if !matches!(result, Err(AuthError::InvalidSignature)) {
                break;
            }
        }
        result
    }
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::UnsupportedAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotValidYet,
        ErrorKind::InvalidToken => AuthError::Malformed {
            reason: "not a compact JWS",
        },
        ErrorKind::Base64(_) => AuthError::Malformed {
            reason: "a part is not base64url",
        },
        ErrorKind::Utf8(_) => AuthError::Malformed {
            reason: "a part is not UTF-8",
        },
        ErrorKind::Json(err) => AuthError::Malformed {
            reason: if err.is_data() {
                "a header field or claim has the wrong type"
            } else {
                "header or claims are not valid JSON"
            },
        },
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            AuthError::Malformed {
                reason: "a claim has the wrong type",
            }
        }
        _ => AuthError::Verification,
    }
}

fn unix_now() -> i64 {
    crate::time::now_secs()
}

#[cfg(test)]
mod tests;
