use std::io::Write as _;

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

/// The public upstream sample pair (`spec/store.md` §4).
const UPSTREAM_KEY: &str = "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=";
const UPSTREAM_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9.eyJ1c2VyIjoiYWRtaW4iLCJyb2xlcyI6WyJST0xFX0FETUlOIiwiUk9MRV9BTkFMWVNUIiwiUk9MRV9VU0VSIl19.d-3_3FZTsadPjDEdsWrrQ7nS0edMAR4zjl-eK7rJU3HziNBfI9PDHDIpJVHTNN5E5SlLGLFXctWyKAkwhXL-Dw";

/// Test-only key pair, generated once with `openssl genpkey -algorithm ed25519`.
const TEST_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINJ60nA8e97Gk46MdU4I7T72wg+j5EdAJxRmfBpffe6G
-----END PRIVATE KEY-----
";
/// SPKI PEM of the test public key (`openssl pkey -pubout`).
const TEST_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzIOPoLVxvAImqqKIuqF52thz1Z0J1P8WspgwRYePnWI=
-----END PUBLIC KEY-----
";
/// Raw test public key, standard base64.
const TEST_PUBLIC_B64: &str = "zIOPoLVxvAImqqKIuqF52thz1Z0J1P8WspgwRYePnWI=";

/// A second, unrelated test key pair.
const OTHER_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAgkGMMO7jFfkqJISw9aMiGpmcYJPv9eoQNN42yN5LtQ
-----END PRIVATE KEY-----
";
const OTHER_PUBLIC_B64: &str = "VKDImqR9UjKyEBTkMN665JLNafIuZn5kpT4Z6tlzH+o=";

/// 32 bytes (y = 2) that do not decode to an Ed25519 point.
const NOT_ON_CURVE_B64: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

const NOW: i64 = 1_700_000_000;

fn sign_with(pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(TEST_PRIVATE_PEM, claims)
}

fn verifier() -> JwtVerifier {
    JwtVerifier::from_base64(TEST_PUBLIC_B64).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with the given header JSON and claims, and a bogus signature.
fn unsigned_token(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

#[test]
fn upstream_sample_pair_verifies() {
    let v = JwtVerifier::from_base64(UPSTREAM_KEY).unwrap();
    let claims = v.verify(UPSTREAM_TOKEN).unwrap();
    assert_eq!(claims.roles, ["ROLE_ADMIN", "ROLE_ANALYST", "ROLE_USER"]);
    assert_eq!(claims.sub, None);
    assert_eq!((claims.exp, claims.nbf, claims.iat), (None, None, None));
    // And again, from the cache.
    assert_eq!(v.verify(UPSTREAM_TOKEN).unwrap(), claims);
    assert_eq!(v.cached_tokens(), 1);
}

#[test]
fn minted_token_verifies_with_claims() {
    let token = sign(&json!({
        "sub": "alice", "roles": ["ROLE_API"], "exp": NOW + 10,
        "nbf": NOW - 10, "iat": NOW - 10, "iss": "cc-backend", "aud": ["x"],
        "extra": {"nested": [1, 2]}
    }));
    let claims = verifier().verify_at(&token, NOW).unwrap();
    assert_eq!(
        claims,
        Claims {
            sub: Some("alice".into()),
            roles: vec!["ROLE_API".into()],
            exp: Some(NOW + 10),
            nbf: Some(NOW - 10),
            iat: Some(NOW - 10),
        }
    );
}

#[test]
fn float_time_claims_and_null_roles_are_accepted() {
    let token = sign(&json!({"exp": (NOW as f64) + 10.7, "iat": 1.5e9, "roles": null}));
    let claims = verifier().verify_at(&token, NOW).unwrap();
    assert_eq!(claims.exp, Some(NOW + 10));
    assert_eq!(claims.iat, Some(1_500_000_000));
    assert!(claims.roles.is_empty());
}

#[test]
fn rejections_table() {
    let hs256_with_public_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory"}),
        &EncodingKey::from_secret(PublicKey::from_base64(TEST_PUBLIC_B64).unwrap().as_bytes())
            .unwrap(),
    )
    .unwrap();
    let hs256_with_base64_text = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory"}),
        &EncodingKey::from_secret(TEST_PUBLIC_B64.as_bytes()).unwrap(),
    )
    .unwrap();
    let good = sign(&json!({"sub": "a"}));
    // 86 signature characters: cutting 2 leaves valid base64 of a 63-byte
    // signature, cutting 5 leaves an impossible base64 length.
    let truncated_2 = &good[..good.len() - 2];
    let truncated_5 = &good[..good.len() - 5];
    // Another payload under the original signature.
    let (signed_part, signature) = good.rsplit_once('.').unwrap();
    let (header, _) = signed_part.split_once('.').unwrap();
    let tampered_payload = format!("{header}.{}.{signature}", b64url(br#"{"sub":"b"}"#));

    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "alg none",
            unsigned_token(&json!({"alg": "none", "typ": "JWT"}), &json!({"sub": "a"})),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "alg none lower-case variant",
            unsigned_token(&json!({"alg": "None"}), &json!({})),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "HS256 keyed with the public key bytes",
            hs256_with_public_key,
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "HS256 keyed with the base64 text",
            hs256_with_base64_text,
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "RS256 header",
            unsigned_token(&json!({"alg": "RS256"}), &json!({})),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "ES256 header",
            unsigned_token(&json!({"alg": "ES256"}), &json!({})),
            AuthError::UnsupportedAlgorithm,
        ),
        (
            "signed by another key",
            sign_with(OTHER_PRIVATE_PEM, &json!({"sub": "a"})),
            AuthError::InvalidSignature,
        ),
        (
            "payload swapped",
            tampered_payload,
            AuthError::InvalidSignature,
        ),
        (
            "EdDSA header, empty signature",
            unsigned_token(&json!({"alg": "EdDSA"}), &json!({})),
            AuthError::InvalidSignature,
        ),
        (
            "expired",
            sign(&json!({"exp": NOW - 1})),
            AuthError::Expired,
        ),
        (
            "expires exactly now",
            sign(&json!({"exp": NOW})),
            AuthError::Expired,
        ),
        (
            "nbf in the future",
            sign(&json!({"nbf": NOW + 1})),
            AuthError::NotValidYet,
        ),
        (
            "iat in the future",
            sign(&json!({"iat": NOW + 1})),
            AuthError::UsedBeforeIssued,
        ),
        (
            "truncated signature",
            truncated_2.to_owned(),
            AuthError::InvalidSignature,
        ),
        (
            "truncated into bad base64",
            truncated_5.to_owned(),
            AuthError::Malformed {
                reason: "a part is not base64url",
            },
        ),
        (
            "two parts",
            good.rsplit_once('.').unwrap().0.to_owned(),
            AuthError::Malformed {
                reason: "expected three dot-separated parts",
            },
        ),
        (
            "garbage",
            "not a token".to_owned(),
            AuthError::Malformed {
                reason: "expected three dot-separated parts",
            },
        ),
        (
            "garbage with dots",
            "YQ.b.c".to_owned(),
            AuthError::Malformed {
                reason: "header is not a JSON object with \"alg\"",
            },
        ),
        (
            "header not base64",
            "!!!.e30.sig".to_owned(),
            AuthError::Malformed {
                reason: "header is not base64url",
            },
        ),
        (
            "empty",
            String::new(),
            AuthError::Malformed {
                reason: "expected three dot-separated parts",
            },
        ),
    ];
    let v = verifier();
    for (name, token, want) in cases {
        assert_eq!(v.verify_at(&token, NOW), Err(want), "{name}");
    }
    assert_eq!(v.cached_tokens(), 0, "rejected tokens are never cached");
}

#[test]
fn wrong_claim_types_are_malformed_without_echoing_them() {
    let token = sign(&json!({"exp": "SECRET-VALUE"}));
    let err = verifier().verify_at(&token, NOW).unwrap_err();
    assert!(matches!(err, AuthError::Malformed { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRET"));
}

#[test]
fn claims_that_are_not_checked_may_have_any_type() {
    // Only the time claims are checked; a validly signed token with an odd
    // `sub` or `roles` is valid, it just names no user or roles.
    for payload in [
        json!({"roles": "ROLE_ADMIN"}),
        json!({"sub": 42, "roles": {"a": 1}}),
        json!({"sub": null, "roles": 7}),
    ] {
        let claims = verifier()
            .verify_at(&sign(&payload), NOW)
            .unwrap_or_else(|e| panic!("{payload}: {e:?}"));
        assert_eq!(claims.sub, None, "{payload}");
        assert!(claims.roles.is_empty(), "{payload}");
    }
    let claims = verifier()
        .verify_at(
            &sign(&json!({"sub": "a", "roles": ["ROLE_API", 3, null, "x"]})),
            NOW,
        )
        .unwrap();
    assert_eq!(claims.sub.as_deref(), Some("a"));
    assert_eq!(claims.roles, ["ROLE_API", "x"]);
}

#[test]
fn key_loading_rejections() {
    let cases: Vec<(&str, String)> = vec![
        ("31 bytes", STANDARD.encode([7u8; 31])),
        ("33 bytes", STANDARD.encode([7u8; 33])),
        ("empty", String::new()),
    ];
    for (name, text) in &cases {
        let err = PublicKey::from_base64(text).unwrap_err();
        assert!(matches!(err, KeyError::Length(_)), "{name}: {err:?}");
    }
    assert_eq!(
        PublicKey::from_base64(&STANDARD.encode([7u8; 31]))
            .unwrap_err()
            .to_string(),
        "JWT public key must be 32 bytes, got 31"
    );
    assert_eq!(
        JwtVerifier::from_base64(&STANDARD.encode([7u8; 33]))
            .unwrap_err()
            .to_string(),
        "JWT public key must be 32 bytes, got 33"
    );
    for bad in [
        "not base64!",
        "kzfYrYy-TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0=",
        "kzfY=",
    ] {
        assert!(
            matches!(PublicKey::from_base64(bad), Err(KeyError::Base64(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        PublicKey::from_base64(NOT_ON_CURVE_B64),
        Err(KeyError::NotOnCurve)
    ));
    assert!(matches!(JwtVerifier::new(vec![]), Err(KeyError::NoKeys)));
}

#[test]
fn pem_key_loading() {
    let from_pem = PublicKey::from_pem(TEST_PUBLIC_PEM.as_bytes()).unwrap();
    assert_eq!(from_pem.to_base64(), TEST_PUBLIC_B64);
    assert_eq!(from_pem, PublicKey::from_base64(TEST_PUBLIC_B64).unwrap());

    assert!(matches!(
        PublicKey::from_pem(TEST_PRIVATE_PEM.as_bytes()),
        Err(KeyError::PrivateKeyGiven)
    ));
    assert!(matches!(
        PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        Err(KeyError::Pem(_))
    ));

    let token = sign(&json!({"sub": "pem"}));
    let v = JwtVerifier::from_pem(TEST_PUBLIC_PEM.as_bytes()).unwrap();
    assert_eq!(
        v.verify_at(&token, NOW).unwrap().sub.as_deref(),
        Some("pem")
    );
}

#[test]
fn key_files_accept_pem_or_base64() {
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("key.pem");
    std::fs::write(&pem_path, format!("\n{TEST_PUBLIC_PEM}\n")).unwrap();
    let b64_path = dir.path().join("key.b64");
    let mut f = std::fs::File::create(&b64_path).unwrap();
    writeln!(f, "  {TEST_PUBLIC_B64}  ").unwrap();
    drop(f);

    let token = sign(&json!({}));
    for path in [&pem_path, &b64_path] {
        let v = JwtVerifier::from_key_file(path).unwrap();
        v.verify_at(&token, NOW).unwrap();
    }
    JwtVerifier::from_pem_file(&pem_path)
        .unwrap()
        .verify_at(&token, NOW)
        .unwrap();
    assert!(matches!(
        JwtVerifier::from_pem_file(&b64_path),
        Err(KeyError::File { .. })
    ));

    let missing = dir.path().join("missing.pem");
    let err = PublicKey::from_file(&missing).unwrap_err();
    assert!(matches!(err, KeyError::Read { .. }));
    assert!(err.to_string().contains("missing.pem"));

    let short_path = dir.path().join("short.b64");
    std::fs::write(&short_path, STANDARD.encode([1u8; 31])).unwrap();
    let err = PublicKey::from_file(&short_path).unwrap_err();
    assert!(err.to_string().contains("short.b64"), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(source, "JWT public key must be 32 bytes, got 31");
}

#[test]
fn any_configured_key_may_verify() {
    let other_public = PublicKey::from_base64(OTHER_PUBLIC_B64).unwrap();
    let ours = PublicKey::from_base64(TEST_PUBLIC_B64).unwrap();
    let v = JwtVerifier::new(vec![other_public, ours]).unwrap();
    let token = sign(&json!({"sub": "rotated"}));
    assert_eq!(
        v.verify_at(&token, NOW).unwrap().sub.as_deref(),
        Some("rotated")
    );
    let other_token = sign_with(OTHER_PRIVATE_PEM, &json!({"sub": "old"}));
    assert_eq!(
        v.verify_at(&other_token, NOW).unwrap().sub.as_deref(),
        Some("old")
    );
    assert_eq!(v.verify(UPSTREAM_TOKEN), Err(AuthError::InvalidSignature));
}

#[test]
fn time_policy_table() {
    let zero = Duration::ZERO;
    let minute = Duration::from_secs(60);
    let c = |exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>| Claims {
        exp,
        nbf,
        iat,
        ..Claims::default()
    };
    let cases: Vec<(&str, Claims, Duration, Result<(), AuthError>)> = vec![
        ("no time claims", c(None, None, None), zero, Ok(())),
        ("exp future", c(Some(NOW + 1), None, None), zero, Ok(())),
        (
            "exp now",
            c(Some(NOW), None, None),
            zero,
            Err(AuthError::Expired),
        ),
        (
            "exp past",
            c(Some(NOW - 1), None, None),
            zero,
            Err(AuthError::Expired),
        ),
        ("exp zero is absent", c(Some(0), None, None), zero, Ok(())),
        (
            "exp negative",
            c(Some(-5), None, None),
            zero,
            Err(AuthError::Expired),
        ),
        (
            "exp past within leeway",
            c(Some(NOW - 59), None, None),
            minute,
            Ok(()),
        ),
        (
            "exp past at leeway edge",
            c(Some(NOW - 60), None, None),
            minute,
            Err(AuthError::Expired),
        ),
        ("nbf now", c(None, Some(NOW), None), zero, Ok(())),
        (
            "nbf future",
            c(None, Some(NOW + 1), None),
            zero,
            Err(AuthError::NotValidYet),
        ),
        ("nbf zero", c(None, Some(0), None), zero, Ok(())),
        (
            "nbf future within leeway",
            c(None, Some(NOW + 60), None),
            minute,
            Ok(()),
        ),
        (
            "nbf future beyond leeway",
            c(None, Some(NOW + 61), None),
            minute,
            Err(AuthError::NotValidYet),
        ),
        ("iat now", c(None, None, Some(NOW)), zero, Ok(())),
        (
            "iat future",
            c(None, None, Some(NOW + 1)),
            zero,
            Err(AuthError::UsedBeforeIssued),
        ),
        (
            "iat future within leeway",
            c(None, None, Some(NOW + 60)),
            minute,
            Ok(()),
        ),
        (
            "iat future beyond leeway",
            c(None, None, Some(NOW + 61)),
            minute,
            Err(AuthError::UsedBeforeIssued),
        ),
        (
            "sub-second leeway is ignored",
            c(None, None, Some(NOW + 1)),
            Duration::from_millis(900),
            Err(AuthError::UsedBeforeIssued),
        ),
        (
            "expired wins over nbf",
            c(Some(NOW - 1), Some(NOW + 1), None),
            zero,
            Err(AuthError::Expired),
        ),
        (
            "extreme values saturate",
            c(Some(i64::MAX), Some(i64::MIN), Some(i64::MIN)),
            Duration::MAX,
            Ok(()),
        ),
    ];
    for (name, claims, leeway, want) in cases {
        assert_eq!(claims.check_time(NOW, leeway), want, "{name}");
    }
}

#[test]
fn leeway_applies_to_verification() {
    let token = sign(&json!({"exp": NOW - 30, "nbf": NOW - 100}));
    assert_eq!(verifier().verify_at(&token, NOW), Err(AuthError::Expired));
    let relaxed = verifier().with_leeway(Duration::from_secs(60));
    assert_eq!(relaxed.leeway(), Duration::from_secs(60));
    relaxed.verify_at(&token, NOW).unwrap();
    assert_eq!(relaxed.verify_at(&token, NOW + 30), Err(AuthError::Expired));
}

#[test]
fn cache_hit_still_applies_expiry() {
    let v = verifier();
    let token = sign(&json!({"exp": NOW + 10}));
    v.verify_at(&token, NOW).unwrap();
    assert_eq!(v.cached_tokens(), 1);
    v.verify_at(&token, NOW + 9).unwrap();
    assert_eq!(v.verify_at(&token, NOW + 10), Err(AuthError::Expired));
    assert_eq!(v.cached_tokens(), 0, "expired entry dropped");
    assert_eq!(v.verify_at(&token, NOW + 10), Err(AuthError::Expired));
}

#[test]
fn cache_is_bounded() {
    let v = verifier().with_cache_capacity(4);
    // Two soon-to-expire tokens, then enough long-lived ones to overflow.
    let short: Vec<String> = (0..2)
        .map(|i| sign(&json!({"exp": NOW + 5, "n": i})))
        .collect();
    for t in &short {
        v.verify_at(t, NOW).unwrap();
    }
    let long: Vec<String> = (0..10)
        .map(|i| sign(&json!({"exp": NOW + 1000, "n": i})))
        .collect();
    v.verify_at(&long[0], NOW + 10).unwrap();
    v.verify_at(&long[1], NOW + 10).unwrap();
    assert_eq!(v.cached_tokens(), 4);
    // Full: expired entries are evicted first.
    v.verify_at(&long[2], NOW + 10).unwrap();
    assert_eq!(v.cached_tokens(), 3);
    for t in &long[3..] {
        v.verify_at(t, NOW + 10).unwrap();
        assert!(v.cached_tokens() <= 4);
    }
    // Everything still verifies, cached or not.
    for t in &long {
        v.verify_at(t, NOW + 10).unwrap();
    }
    assert!(v.cached_tokens() <= 4);
}

#[test]
fn cache_can_be_disabled() {
    let v = verifier().with_cache_capacity(0);
    let token = sign(&json!({}));
    v.verify_at(&token, NOW).unwrap();
    v.verify_at(&token, NOW).unwrap();
    assert_eq!(v.cached_tokens(), 0);
}

#[test]
fn bearer_token_cases() {
    let cases = [
        ("Bearer abc.def.ghi", Some("abc.def.ghi")),
        ("Bearer  x", Some(" x")),
        ("Bearer ", None),
        ("Bearer", None),
        ("bearer abc", None),
        ("BEARER abc", None),
        ("Basic dXNlcjpwYXNz", None),
        ("", None),
        ("abc", None),
    ];
    for (header, want) in cases {
        assert_eq!(bearer_token(header), want, "{header:?}");
    }
}

#[test]
fn roles_rule() {
    let claims = Claims {
        roles: vec!["ROLE_API".into(), "ROLE_USER".into()],
        ..Claims::default()
    };
    assert!(claims.has_any_role::<&str>(&[]));
    assert!(claims.has_any_role(&["ROLE_ADMIN", "ROLE_API"]));
    assert!(!claims.has_any_role(&["ROLE_ADMIN"]));
    assert!(!Claims::default().has_any_role(&["ROLE_API".to_owned()]));
}

#[test]
fn debug_output_shows_no_tokens() {
    let v = verifier();
    let token = sign(&json!({"sub": "someone"}));
    v.verify_at(&token, NOW).unwrap();
    let debug = format!("{v:?}");
    assert!(!debug.contains(&token), "{debug}");
    assert!(debug.contains(TEST_PUBLIC_B64), "{debug}");
    assert!(debug.contains("cached_tokens: 1"), "{debug}");
}

#[test]
fn sign_token_makes_tokens_the_verifier_accepts_and_names_a_bad_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, TEST_PRIVATE_PEM).unwrap();
    let token = sign_token(
        &key,
        &json!({"sub": "node1", "roles": ["api"], "exp": NOW + 60}),
    )
    .unwrap();
    let verifier = JwtVerifier::from_base64(TEST_PUBLIC_B64).unwrap();
    let claims = verifier.verify_at(&token, NOW).unwrap();
    assert!(claims.has_any_role(&["api"]));
    assert_eq!(claims.sub.as_deref(), Some("node1"));
    assert_eq!(
        verifier.verify_at(&token, NOW + 61),
        Err(AuthError::Expired)
    );
    let other = JwtVerifier::from_base64(OTHER_PUBLIC_B64).unwrap();
    assert_eq!(
        other.verify_at(&token, NOW),
        Err(AuthError::InvalidSignature)
    );

    let missing = dir.path().join("missing.pem");
    let err = sign_token(&missing, &json!({})).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let public = dir.path().join("public.pem");
    std::fs::write(&public, TEST_PUBLIC_PEM).unwrap();
    let err = sign_token(&public, &json!({})).unwrap_err();
    assert!(matches!(err, SignError::NotAKey { .. }), "{err}");
}
