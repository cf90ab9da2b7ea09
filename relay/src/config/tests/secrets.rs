//! Credentials: JWT keys, basic-auth users, upstream tokens and passwords, secret-file
//! permissions, SIGHUP re-reads, and redaction of everything secret.

use super::*;

#[test]
fn jwt_mode_needs_a_key() {
    let fx = Fixture::new();
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "jwt" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key",
        "neither jwt_public_key nor jwt_public_key_file",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] =
        json!({ "mode": "jwt_or_basic", "jwt_public_key": TEST_PUBLIC_B64 });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.basic_users_file",
        "basic_users_file is not set",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "jwt", "jwt_public_key": "AAAA" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key",
        "32 bytes",
    );
}

#[test]
fn jwt_keys_come_from_strings_lists_and_files() {
    let fx = Fixture::new();
    let pem = fx.file("key.pem", TEST_PUBLIC_PEM);
    fx.file("other.b64", &format!("{OTHER_PUBLIC_B64}\n"));
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({
        "mode": "jwt",
        "jwt_public_key": [TEST_PUBLIC_B64, OTHER_PUBLIC_B64],
        "jwt_public_key_file": [pem, "other.b64"]
    });
    let config = fx.load(&doc).unwrap();
    let keys: Vec<String> = config.ingress.http[0]
        .auth
        .public_keys
        .iter()
        .map(|k| k.to_base64())
        .collect();
    assert_eq!(
        keys,
        [
            TEST_PUBLIC_B64,
            OTHER_PUBLIC_B64,
            TEST_PUBLIC_B64,
            OTHER_PUBLIC_B64
        ]
    );
    assert_eq!(
        config.ingress.http[0].auth.jwt_public_key_file[1],
        fx.path().join("other.b64"),
        "relative paths start at the config's directory"
    );

    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] =
        json!({ "mode": "jwt", "jwt_public_key_file": "missing.pub" });
    assert_invalid(
        &fx.error(&doc),
        "ingress.http[0].auth.jwt_public_key_file",
        "cannot read JWT public key file",
    );
}

#[test]
fn basic_users_are_loaded_and_hashes_refused() {
    let fx = Fixture::new();
    fx.file(
        "users",
        "# collectors\nnode01:s3cret:with:colons\n\nnode02:other\r\n",
    );
    let mut doc = minimal();
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "basic", "basic_users_file": "users" });
    let config = fx.load(&doc).unwrap();
    let users = config.ingress.http[0].auth.basic_users.as_ref().unwrap();
    assert_eq!(users.users().collect::<Vec<_>>(), ["node01", "node02"]);
    assert!(users.verify("node01", "s3cret:with:colons"));
    assert!(users.verify("node02", "other"));
    assert!(!users.verify("node02", "othe"));
    assert!(!users.verify("node03", "other"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");

    fx.file("hashed", "node01:$argon2id$v=19$m=65536,t=3,p=4$abc$def\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("hashed");
    let err = fx.error(&doc);
    assert_invalid(
        &err,
        "ingress.http[0].auth.basic_users_file",
        "line 1: hashed passwords are not supported yet",
    );
    assert!(!err.contains("argon2id$"), "{err}");

    fx.file("bcrypt", "node01:$2b$12$abcdefghijklmnopqrstuv\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("bcrypt");
    assert!(
        fx.error(&doc)
            .contains("hashed passwords are not supported yet")
    );

    fx.file("broken", "node01\n");
    doc["ingress"]["http"][0]["auth"]["basic_users_file"] = json!("broken");
    assert!(fx.error(&doc).contains("line 1: expected user:password"));
}

#[test]
fn upstream_auth_rules() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", &format!("{TOKEN}\n"));
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt": TOKEN, "jwt_file": token });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].auth.jwt_file",
        "mutually exclusive",
    );
    doc["upstreams"][0]["auth"] = json!({ "username": "relay" });
    assert_invalid(
        &fx.error(&doc),
        "upstreams[0].auth.password_file",
        "needs auth.password_file",
    );
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "missing.jwt" });
    let err = fx.error(&doc);
    assert_invalid(
        &err,
        "upstreams[0].auth.jwt_file",
        "cannot read secret file",
    );
    assert!(err.contains("No such file"), "{err}");

    fx.file("empty.jwt", "\n");
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "empty.jwt" });
    assert_invalid(&fx.error(&doc), "upstreams[0].auth.jwt_file", "is empty");

    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );

    fx.file("password", "pa55word\n");
    doc["upstreams"][0]["auth"] = json!({ "username": "relay", "password_file": "password" });
    let config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Basic {
            username: "relay".to_owned(),
            password: Secret::new("pa55word")
        }
    );

    doc["upstreams"][0]["auth"] = json!({ "jwt": TOKEN });
    let config = fx.load(&doc).unwrap();
    assert!(has_warning(&config, "upstreams[0].auth.jwt"));
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new(TOKEN))
    );
}

#[test]
fn readable_secret_files_are_warned_about() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", TOKEN);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": token });
    let config = fx.load(&doc).unwrap();
    let warning = config
        .warnings
        .iter()
        .find(|w| w.key == "upstreams[0].auth.jwt_file")
        .unwrap();
    assert!(warning.message.contains("mode 0644"), "{warning}");
    assert!(!warning.message.contains(TOKEN));
}

#[test]
fn redacted_output_and_debug_hold_no_secret() {
    let fx = Fixture::new();
    fx.file("admin.token", "admin-token-value");
    fx.file("users", "node01:basic-password-value\n");
    fx.file("store.jwt", "file-token-value");
    fx.file("password", "upstream-password-value");
    let mut doc = minimal();
    doc["admin"]["auth_token_file"] = json!("admin.token");
    doc["ingress"]["http"][0]["auth"] = json!({ "mode": "basic", "basic_users_file": "users" });
    doc["upstreams"][0]["auth"] = json!({ "jwt": "inline-token-value" });
    doc["upstreams"][0]["url"] = json!(
        "https://user:url-password-value@store:8082/api/write?cluster=fritz&key=query-secret-value"
    );
    doc["upstreams"][0]["headers"] = json!({ "X-Api-Key": "header-secret-value" });
    doc["upstreams"].as_array_mut().unwrap().push(json!({
        "name": "a",
        "type": "relay-http",
        "url": "https://site:8443/api/write",
        "auth": { "jwt_file": "store.jwt" }
    }));
    doc["upstreams"].as_array_mut().unwrap().push(json!({
        "name": "b",
        "type": "relay-http",
        "url": "https://site:8443/api/write",
        "auth": { "username": "relay", "password_file": "password" }
    }));
    let config = fx.load(&doc).unwrap();

    let redacted = serde_json::to_string_pretty(&config.redacted()).unwrap();
    let debug = format!("{config:?} {:?}", config.warnings);
    for secret in [
        "admin-token-value",
        "basic-password-value",
        "file-token-value",
        "upstream-password-value",
        "inline-token-value",
        "url-password-value",
        "query-secret-value",
        "header-secret-value",
    ] {
        assert!(!redacted.contains(secret), "{secret} in {redacted}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    let value = config.redacted();
    assert_eq!(value["upstreams"][0]["auth"]["jwt"], REDACTED);
    assert_eq!(
        value["upstreams"][0]["url"],
        "https://user:***@store:8082/api/write?cluster=fritz&key=***"
    );
    assert_eq!(value["upstreams"][0]["headers"]["X-Api-Key"], REDACTED);
    assert!(redacted.contains("admin.token"), "file names are shown");
    assert!(has_warning(&config, "upstreams[0].url"));
}

#[test]
fn reload_secrets_rereads_files_all_or_nothing() {
    let fx = Fixture::new();
    let token = fx.file("store.jwt", "first-token");
    let mut doc = minimal();
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let mut config = fx.load(&doc).unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("first-token"))
    );

    fx.file("store.jwt", "second-token\n");
    config.reload_secrets().unwrap();
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("second-token"))
    );
    assert_eq!(
        config.upstreams[0].read_credentials().unwrap(),
        UpstreamCredentials::Bearer(Secret::new("second-token"))
    );

    std::fs::remove_file(&token).unwrap();
    let err = config.reload_secrets().unwrap_err().to_string();
    assert_invalid(
        &err,
        "upstreams[0].auth.jwt_file",
        "cannot read secret file",
    );
    assert_eq!(
        config.upstreams[0].credentials,
        UpstreamCredentials::Bearer(Secret::new("second-token")),
        "a failed reload keeps the old credentials"
    );
}

#[test]
fn secret_prints_stars() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
    assert_eq!(secret.expose(), "hunter2");
}

#[test]
fn load_reads_the_file_and_resolves_relative_paths() {
    let fx = Fixture::new();
    fx.file("store.jwt", TOKEN);
    let mut doc = minimal();
    doc["data_dir"] = json!("state");
    doc["upstreams"][0]["auth"] = json!({ "jwt_file": "store.jwt" });
    let path = fx.file("relay.json", &doc.to_string());
    let config = Config::load(&path).unwrap();
    assert_eq!(config.source, path.display().to_string());
    assert_eq!(config.data_dir, fx.path().join("state"));
    assert_eq!(
        config.upstreams[0].auth.jwt_file.as_deref(),
        Some(fx.path().join("store.jwt").as_path())
    );

    let err = Config::load(&fx.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}
