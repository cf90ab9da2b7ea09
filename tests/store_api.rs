//! cc-store's HTTP API driven like cc-backend and the collectors drive it,
//! against the real binary on a free port.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod common;

use common::{
    Process, files_below, mint_token, now, start_store, start_store_with_main, store_config,
    test_public_key,
};
use serde_json::{Value, json};

fn write(store: &Process, cluster: &str, body: &str) -> common::Response {
    store.request(
        "POST",
        &format!("/api/write?cluster={cluster}"),
        &[],
        body.as_bytes(),
    )
}

fn query(store: &Process, body: &Value) -> common::Response {
    store.request(
        "GET",
        "/api/query?version=v2",
        &[],
        body.to_string().as_bytes(),
    )
}

/// The worked example of the spec: three samples a minute apart.
fn with_worked_example() -> Process {
    let store = start_store(store_config());
    let r = write(
        &store,
        "c",
        "cpu_load,hostname=h value=1 1000\ncpu_load,hostname=h value=2 1060\ncpu_load,hostname=h value=3 1120\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    store
}

#[test]
fn query_answers_get_with_body_on_both_path_forms() {
    let store = with_worked_example();
    let body =
        json!({"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]});
    let expected = "{\"results\":[[{\"data\":[null,1.000,2.000,3.000],\"from\":1000,\"to\":1180,\"resolution\":60,\"avg\":2.00,\"min\":1.00,\"max\":3.00}]]}\n";
    for path in [
        "/api/query",
        "/api/query/",
        "/api/query?version=v2",
        "/api/query/?version=v2",
    ] {
        let r = store.request("GET", path, &[], body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), expected, "{path}");
    }
    let head = store.request("HEAD", "/api/query", &[], body.to_string().as_bytes());
    assert_eq!(head.status, 200);
}

#[test]
fn wrong_method_is_405_with_allow_and_unknown_path_404() {
    let store = start_store(store_config());
    let r = store.request("PUT", "/api/write", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.text(), "Method Not Allowed\n");
    let r = store.request("POST", "/api/healthcheck", &[], b"{}");
    assert_eq!(r.status, 405);
    let r = store.request("GET", "/api/nothing", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found\n"));
}

#[test]
fn write_reports_bad_lines_and_keeps_the_good_ones() {
    let store = start_store(store_config());
    let r = write(
        &store,
        "c",
        "cpu_load,hostname=h value=1 1000\nunknown_metric,hostname=h value=1 1000\ncpu_load,hostname=h value=\"x\" 1060\ncpu_load,hostname=h foo=1 1060\ncpu_load,hostname=h value=3 1120\n",
    );
    assert_eq!(r.status, 400);
    let err = r.json();
    assert_eq!(err["status"], "Bad Request");
    assert_eq!(
        err["error"],
        "at line 3: host h: unsupported value type in message: string (and 1 more invalid lines)"
    );
    let q = query(
        &store,
        &json!({"cluster":"c","from":1000,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]}),
    );
    assert_eq!(q.json()["results"][0][0]["data"], json!([1.0, null, 3.0]));
}

#[test]
fn malformed_known_metric_line_is_400_with_position() {
    let store = start_store(store_config());
    let r = write(&store, "c", "cpu_load,hostname h value=1 1000\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        "at line 1:18: expected '=' after tag key (near \" h value=1\")"
    );
}

#[test]
fn integer_values_missing_timestamps_and_empty_bodies() {
    let store = start_store(store_config());
    let r = write(&store, "c", "");
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "an empty body that says it is JSON, as upstream's"
    );
    let t = now() / 60 * 60;
    let body = format!("mem_used,hostname=a value=5i {t}\nmem_used,hostname=b value=7u\n");
    assert_eq!(write(&store, "c", &body).status, 200);
    for (host, value) in [("a", 5.0), ("b", 7.0)] {
        let q = query(
            &store,
            &json!({"cluster":"c","from":t - 60,"to":t + 60,"queries":[{"metric":"mem_used","host":host}]}),
        );
        assert_eq!(q.json()["results"][0][0]["max"], json!(value), "{host}");
    }
}

#[test]
fn millisecond_timestamps_are_converted() {
    let store = start_store(store_config());
    assert_eq!(
        write(&store, "c", "cpu_load,hostname=h value=4 1700000000123\n").status,
        200
    );
    let q = query(
        &store,
        &json!({"cluster":"c","from":1699999990,"to":1700000100,"queries":[{"metric":"cpu_load","host":"h"}]}),
    );
    assert_eq!(q.json()["results"][0][0]["from"], json!(1700000000));
}

#[test]
fn scope_tags_map_to_levels() {
    let store = start_store(store_config());
    let body = "flops_any,hostname=h,type=hwthread,type-id=0 value=1 1000
flops_any,hostname=h,type-id=1,type=hwthread value=2 1000
mem_bw,hostname=h,type=socket,type-id=0,stype=memctrl,stype-id=1 value=3 1000
acc_utilization,hostname=h,type=accelerator,type-id=00000000:49:00.0 value=40 1000
cpu_load,hostname=h,type=node,type-id=0 value=5 1000
";
    assert_eq!(write(&store, "c", body).status, 200);
    let dump = store
        .request("GET", "/api/debug?selector=c:h", &[], b"")
        .json();
    let data = &dump["data"];
    assert!(data["hwthread0"]["flops_any"].is_array());
    assert!(data["hwthread1"]["flops_any"].is_array());
    assert!(data["socket0"]["memctrl1"]["mem_bw"].is_array());
    assert!(data["accelerator00000000:49:00.0"]["acc_utilization"].is_array());
    assert!(
        data["0"]["cpu_load"].is_array(),
        "type=node,type-id=0 lands in level \"0\""
    );
    let q = query(
        &store,
        &json!({"cluster":"c","from":1000,"to":1060,"queries":[
            {"metric":"acc_utilization","host":"h","type":"accelerator","type-ids":["00000000:49:00.0"]},
            {"metric":"cpu_load","host":"h"}
        ]}),
    );
    let results = &q.json()["results"];
    assert_eq!(results[0][0]["data"], json!([40.0]));
    assert_eq!(
        results[1][0]["data"],
        json!([5.0]),
        "node query descends into level 0"
    );
}

/// Spec store.md §2.3 step 4: a line whose cluster or host would leave the
/// checkpoint directory is skipped (and counted); the rest of the batch is
/// stored and the request answers 200.
#[test]
fn path_traversal_lines_are_skipped_and_the_rest_stored() {
    let store = start_store(store_config());
    let t = now();
    let body = format!(
        "cpu_load,hostname=good1 value=1 {t}\n\
         cpu_load,hostname=../../etc value=2 {t}\n\
         cpu_load,cluster=..,hostname=x value=3 {t}\n\
         cpu_load,cluster=c/../..,hostname=y value=4 {t}\n\
         cpu_load,hostname=good2 value=5 {t}\n"
    );
    let r = write(&store, "c", &body);
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    for (host, value) in [("good1", 1.0), ("good2", 5.0)] {
        let q = query(
            &store,
            &json!({"cluster":"c","from":t - 60,"to":t + 60,"queries":[{"metric":"cpu_load","host":host}]}),
        );
        assert_eq!(q.json()["results"][0][0]["max"], json!(value), "{host}");
    }
    let dump = store.request("GET", "/api/debug", &[], b"").json();
    let clusters: Vec<&String> = dump["data"].as_object().unwrap().keys().collect();
    assert_eq!(clusters, ["c"]);
    let hosts: Vec<&String> = dump["data"]["c"].as_object().unwrap().keys().collect();
    assert_eq!(hosts, ["good1", "good2"]);
    let metrics = store.request("GET", "/metrics", &[], b"").text();
    assert_eq!(
        common::sample(
            &metrics,
            "ccstore_ingest_rejected_lines_total{source=\"http\",reason=\"unsafe_name\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        store
            .log_text()
            .contains("skipping lines whose cluster or host name"),
        "{}",
        store.log_text()
    );

    // The shutdown checkpoint writes the good hosts, and nothing else.
    let (status, dir) = store.stop();
    assert!(status.success());
    let files = files_below(dir.path());
    let mut outside: Vec<&String> = files
        .iter()
        .filter(|f| {
            !f.starts_with("checkpoints/c/good1/") && !f.starts_with("checkpoints/c/good2/")
        })
        .collect();
    outside.sort();
    assert_eq!(outside, ["config.json", "store.log"], "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("checkpoints/c/good1/")));
    assert!(files.iter().any(|f| f.starts_with("checkpoints/c/good2/")));
    // Where the skipped lines would have gone: `<dir>/checkpoints/c/../../etc`,
    // `<dir>/checkpoints/../x` and `<dir>/checkpoints/c/../../y`.
    for escaped in ["etc", "x", "y"] {
        assert!(!dir.path().join(escaped).exists(), "{escaped}");
    }
}

#[test]
fn hwthread_rows_aggregation_and_missing_ids() {
    let store = start_store(store_config());
    let mut body = String::new();
    for t in 0..4 {
        for (i, ts) in [1000, 1060, 1120].iter().enumerate() {
            body.push_str(&format!(
                "flops_any,hostname=h,type=hwthread,type-id={t} value={} {ts}\n",
                t * 10 + i
            ));
            body.push_str(&format!(
                "clock,hostname=h,type=hwthread,type-id={t} value={} {ts}\n",
                1000 * (t + 1)
            ));
            body.push_str(&format!(
                "cpu_load,hostname=h,type=hwthread,type-id={t} value=1 {ts}\n"
            ));
        }
    }
    assert_eq!(write(&store, "c", &body).status, 200);
    let q = query(
        &store,
        &json!({"cluster":"c","from":1000,"to":1200,"with-stats":true,"with-data":true,"for-all-nodes":null,"queries":[
            {"metric":"flops_any","host":"h","type":"hwthread","type-ids":["0","1","9"],"aggreg":false},
            {"metric":"flops_any","host":"h","type":"hwthread","type-ids":["0","1"],"aggreg":true},
            {"metric":"flops_any","host":"h"},
            {"metric":"clock","host":"h"},
            {"metric":"cpu_load","host":"h"}
        ]}),
    );
    let r = &q.json()["results"];
    assert_eq!(r[0].as_array().unwrap().len(), 2, "id 9 is omitted");
    assert_eq!(r[0][1]["data"], json!([10.0, 11.0, 12.0]));
    assert_eq!(r[1][0]["data"], json!([10.0, 12.0, 14.0]));
    assert_eq!(r[2][0]["data"], json!([60.0, 64.0, 68.0]));
    assert_eq!(r[3][0]["data"], json!([2500.0, 2500.0, 2500.0]));
    assert_eq!(r[4][0]["error"], "[METRICSTORE]> invalid aggregation");
}

#[test]
fn query_options_and_errors() {
    let store = with_worked_example();
    let base = |extra: Value, q: Value| {
        let mut body = json!({"cluster":"c","from":900,"to":1200,"queries":[q]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        query(&store, &body).text()
    };
    let q = json!({"metric":"cpu_load","host":"h"});
    assert!(
        base(json!({"with-stats":false}), q.clone())
            .contains("\"avg\":0.00,\"min\":0.00,\"max\":0.00")
    );
    assert!(!base(json!({"with-data":false}), q.clone()).contains("\"data\""));
    assert!(
        base(json!({"with-padding":false}), q.clone()).contains("\"data\":[1.000,2.000,3.000]")
    );
    assert!(
        base(
            json!({}),
            json!({"metric":"cpu_load","host":"h","scale-by":0.5})
        )
        .contains("[null,0.500,1.000,1.500]")
    );
    assert!(
        base(
            json!({}),
            json!({"metric":"cpu_load","host":"h","resolution":90})
        )
        .contains("new sampling frequency (90) must be a multiple of old frequency (60)")
    );
    assert!(
        base(
            json!({}),
            json!({"metric":"cpu_load","host":"h","resolution":120})
        )
        .contains("\"resolution\":60")
    );
    assert!(
        base(json!({}), json!({"metric":"nope","host":"h"}))
            .contains("[METRICSTORE]> unknown metric: nope")
    );
    assert_eq!(
        base(json!({}), json!({"metric":"cpu_load","host":"nobody"})),
        "{\"results\":[[]]}\n"
    );
}

#[test]
fn bad_query_bodies_are_400_json() {
    let store = start_store(store_config());
    for (body, needle) in [
        ("", "EOF"),
        ("{\"from\":1.5}", "invalid type"),
        ("{nope", "key must be a string"),
    ] {
        let r = store.request("GET", "/api/query", &[], body.as_bytes());
        assert_eq!(r.status, 400, "{body}");
        let err = r.json();
        assert_eq!(err["status"], "Bad Request");
        assert!(
            err["error"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
}

#[test]
fn for_all_nodes_lists_every_host() {
    let store = with_worked_example();
    write(&store, "c", "cpu_load,hostname=a value=5 1000\n");
    let q = query(
        &store,
        &json!({"cluster":"c","from":1000,"to":1100,"for-all-nodes":["cpu_load"],"queries":null,"with-stats":true,"with-data":true}),
    );
    let v = q.json();
    let hosts: Vec<&str> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["a", "h"]);
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}

#[test]
fn long_ranges_are_downsampled() {
    let store = start_store(store_config());
    let mut body = String::new();
    for i in 0..2000i64 {
        body.push_str(&format!(
            "cpu_load,hostname=h value={} {}\n",
            i % 13,
            1_000_000 + i * 60
        ));
    }
    assert_eq!(write(&store, "c", &body).status, 200);
    let q = query(
        &store,
        &json!({"cluster":"c","from":1000000,"to":1120000,"queries":[{"metric":"cpu_load","host":"h","resolution":600}]}),
    );
    let entry = &q.json()["results"][0][0];
    assert_eq!(entry["resolution"], 600);
    assert_eq!(entry["data"].as_array().unwrap().len(), 200);
}

#[test]
fn free_endpoint() {
    let store = with_worked_example();
    let r = store.request("POST", "/api/free", &[], b"[]");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "'to' is a required query parameter");
    // Upstream answers a `to` that is not an integer with 500.
    let r = store.request("POST", "/api/free?to=abc", &[], b"[]");
    assert_eq!(r.status, 500);
    assert!(r.json()["error"].as_str().unwrap().contains("abc"));
    // Only the first JSON value of the body is read, as upstream's decoder does.
    let r = store.request("POST", "/api/free?to=2000", &[], b"[] and then some");
    assert_eq!((r.status, r.text().as_str()), (200, "buffers freed: 0\n"));
    let r = store.request("POST", "/api/free?to=2000", &[], b"not json");
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = store.request("POST", "/api/free/?to=2000", &[], br#"[["c","nobody"]]"#);
    assert_eq!(r.text(), "buffers freed: 0\n");
    let dump = store.request("GET", "/api/debug", &[], b"").json();
    assert!(
        dump["data"]["c"].get("nobody").is_none(),
        "free creates no levels"
    );
    let r = store.request("POST", "/api/free/?to=2000", &[], br#"[["c","h"]]"#);
    assert_eq!((r.status, r.text().as_str()), (200, "buffers freed: 1\n"));
    let q = query(
        &store,
        &json!({"cluster":"c","from":900,"to":1200,"queries":[{"metric":"cpu_load","host":"h"}]}),
    );
    assert_eq!(q.text(), "{\"results\":[[]]}\n");
}

#[test]
fn debug_dump_is_valid_json() {
    let store = with_worked_example();
    let r = store.request("GET", "/api/debug/", &[], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["data"]["c"]["h"]["cpu_load"],
        json!([{"start":970,"len":3,"end":1150}])
    );
    let r = store.request("GET", "/api/debug?selector=c:nobody", &[], b"");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("c:nobody"));
}

#[test]
fn healthcheck_states() {
    let store = start_store(store_config());
    let t = now();
    let body = format!(
        "cpu_load,hostname=full value=1 {t}\nmem_used,hostname=full value=1 {t}\ncpu_load,hostname=partial value=1 {t}\nmem_used,hostname=partial value=1 {}\ncpu_load,hostname=stale value=1 {}\n",
        t - 3600,
        t - 3600
    );
    assert_eq!(write(&store, "c", &body).status, 200);
    let req = json!({"cluster":"c","nodes":["full","partial","stale","absent","full"],"metric-names":["cpu_load","mem_used"]});
    let r = store.request("GET", "/api/healthcheck", &[], req.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 4, "duplicates collapse");
    let text = r.text();
    let at = |host: &str| text.find(&format!("\"{host}\":")).unwrap();
    assert!(
        at("absent") < at("full") && at("full") < at("partial") && at("partial") < at("stale"),
        "hosts in name order, as upstream's map is written: {text}"
    );
    assert_eq!(
        v["full"],
        json!({"State":"full","HealthMetrics":"{\"degraded\":[],\"missing\":[]}"})
    );
    assert_eq!(v["partial"]["State"], "partial");
    assert_eq!(
        v["partial"]["HealthMetrics"],
        "{\"degraded\":[\"mem_used\"],\"missing\":[]}"
    );
    assert_eq!(v["stale"]["State"], "failed");
    assert_eq!(
        v["stale"]["HealthMetrics"],
        "{\"degraded\":[\"cpu_load\"],\"missing\":[\"mem_used\"]}"
    );
    assert_eq!(v["absent"], json!({"State":"failed","HealthMetrics":""}));
    let r = store.request(
        "GET",
        "/api/healthcheck",
        &[],
        br#"{"cluster":"c","bogus":1}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("parsing request body failed")
    );
    let r = store.request(
        "GET",
        "/api/healthcheck",
        &[],
        br#"{"cluster":"c","nodes":["full"],"metric-names":["cpu_load"]} {"trailing":1}"#,
    );
    assert_eq!(r.status, 200, "what follows the first value is not read");
    assert_eq!(r.json()["full"]["State"], "full");
}

#[test]
fn jwt_authentication() {
    let store = start_store_with_main(json!({"jwt-public-key": test_public_key()}));
    let body = json!({"cluster":"c","from":0,"to":10,"queries":[]}).to_string();
    let ask =
        |headers: &[(&str, &str)]| store.request("GET", "/api/query", headers, body.as_bytes());
    let r = ask(&[]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Use JWT Authentication\n")
    );
    assert_eq!(ask(&[("Authorization", "Basic dXNlcjpwdw==")]).status, 401);
    let good = mint_token(&json!({"sub":"admin","roles":["ROLE_API"]}));
    let auth = format!("Bearer {good}");
    assert_eq!(
        ask(&[("Authorization", &auth)]).status,
        200,
        "token without exp never expires"
    );
    let fresh = mint_token(&json!({"sub":"admin","exp": now() + 600}));
    assert_eq!(
        ask(&[("Authorization", &format!("Bearer {fresh}"))]).status,
        200
    );
    let expired = mint_token(&json!({"sub":"admin","exp": now() - 10}));
    let r = ask(&[("Authorization", &format!("Bearer {expired}"))]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("expired"), "{}", r.text());
    let mut tampered = good.clone();
    tampered.insert(tampered.len() - 3, 'A');
    assert_eq!(
        ask(&[("Authorization", &format!("Bearer {tampered}"))]).status,
        401
    );
    // HS256 "signed" with the public key bytes: algorithm confusion.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"admin"}),
        &jsonwebtoken::EncodingKey::from_secret(test_public_key().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ask(&[("Authorization", &format!("Bearer {hs}"))]).status,
        401
    );
    // Every endpoint is protected; 404s are not.
    assert_eq!(
        store
            .request(
                "POST",
                "/api/write?cluster=c",
                &[],
                b"cpu_load,hostname=h value=1 1"
            )
            .status,
        401
    );
    assert_eq!(store.request("GET", "/api/debug", &[], b"").status, 401);
    assert_eq!(store.request("GET", "/api/nothing", &[], b"").status, 404);
    // A wrong method is 405 before any token check.
    for (method, path, allow) in [
        ("PUT", "/api/write", "POST"),
        ("GET", "/api/free?to=1", "POST"),
        ("DELETE", "/api/healthcheck/", "GET, HEAD"),
        ("POST", "/api/debug", "GET, HEAD"),
    ] {
        let r = store.request(method, path, &[], b"");
        assert_eq!(
            (r.status, r.header("allow"), r.text().as_str()),
            (405, Some(allow), "Method Not Allowed\n"),
            "{method} {path}"
        );
    }
    // Claims other than the time claims are not checked, whatever their type.
    let odd = mint_token(&json!({"sub": 7, "roles": "ROLE_ADMIN"}));
    assert_eq!(
        ask(&[("Authorization", &format!("Bearer {odd}"))]).status,
        200
    );
}

#[test]
fn upstream_sample_token_verifies() {
    let store = start_store_with_main(
        json!({"jwt-public-key": "kzfYrYy+TzpanWZHJ5qSdMj5uKUWgq74BWhQG6copP0="}),
    );
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9.eyJ1c2VyIjoiYWRtaW4iLCJyb2xlcyI6WyJST0xFX0FETUlOIiwiUk9MRV9BTkFMWVNUIiwiUk9MRV9VU0VSIl19.d-3_3FZTsadPjDEdsWrrQ7nS0edMAR4zjl-eK7rJU3HziNBfI9PDHDIpJVHTNN5E5SlLGLFXctWyKAkwhXL-Dw";
    let r = store.request(
        "POST",
        "/api/write?cluster=c",
        &[("Authorization", &format!("Bearer {token}"))],
        b"cpu_load,hostname=h value=1 1000\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn admin_roles_guard_free_and_debug_when_configured() {
    let store = start_store_with_main(
        json!({"jwt-public-key": test_public_key(), "admin-roles": ["admin"]}),
    );
    let user = format!(
        "Bearer {}",
        mint_token(&json!({"sub":"u","roles":["user"]}))
    );
    let admin = format!(
        "Bearer {}",
        mint_token(&json!({"sub":"a","roles":["admin"]}))
    );
    assert_eq!(
        store
            .request("GET", "/api/debug", &[("Authorization", &user)], b"")
            .status,
        403
    );
    assert_eq!(
        store
            .request("POST", "/api/free?to=1", &[("Authorization", &user)], b"[]")
            .status,
        403
    );
    assert_eq!(
        store
            .request("GET", "/api/debug", &[("Authorization", &admin)], b"")
            .status,
        200
    );
    let q = json!({"cluster":"c","from":0,"to":10,"queries":[]}).to_string();
    assert_eq!(
        store
            .request(
                "GET",
                "/api/query",
                &[("Authorization", &user)],
                q.as_bytes()
            )
            .status,
        200
    );
}

#[test]
fn oversized_bodies_are_413() {
    let mut config = store_config();
    config["main"] = json!({"max-body-size": "1KiB"});
    let store = start_store(config);
    let body = "cpu_load,hostname=h value=1 1000\n".repeat(100);
    assert_eq!(write(&store, "c", &body).status, 413);
    assert_eq!(
        write(&store, "c", "cpu_load,hostname=h value=1 1000\n").status,
        200
    );
}

#[test]
fn sigterm_stops_the_store_cleanly() {
    let store = with_worked_example();
    let status = store.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_config_exits_non_zero_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut config = store_config();
    config["metric-store"]["checkpoints"]["file-fromat"] = json!("wal");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("file-fromat") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn https_when_certificate_and_key_are_configured() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("common/testdata/tls");
    let mut config = store_config();
    config["main"] = json!({
        "https-cert-file": tls.join("server.pem"),
        "https-key-file": tls.join("server-key.pem"),
    });
    let port = common::free_port();
    config["main"]["addr"] = json!(format!("127.0.0.1:{port}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A plain-HTTP request to a TLS port gets no HTTP answer; a TLS client
    // that trusts the test CA does (`-f`: the 503 of a store still loading
    // its checkpoints counts as not yet).
    let curl = || {
        std::process::Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(tls.join("ca.pem"))
            .args(["-X", "GET", "--data", "{}"])
            .arg(format!("https://localhost:{port}/api/query"))
            .output()
            .unwrap()
    };
    let mut out = None;
    common::wait_for(std::time::Duration::from_secs(10), || {
        out.insert(curl()).status.success()
    });
    let out = out.unwrap();
    let plain = common::http(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/api/query",
        &[],
        b"{}",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "curl over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"results\":[]}\n");
    assert!(
        plain.is_err(),
        "plain HTTP must not be answered on the HTTPS port"
    );
}

#[test]
fn drops_privileges_after_binding() {
    // Only root can switch users; CI runs as root.
    assert!(
        running_as_root(),
        "this test switches users and needs root (CI runs as root)"
    );
    let mut config = store_config();
    config["main"] = json!({"user": "nobody", "group": "nogroup"});
    // A checkpoint directory the service user may write.
    let base = tempfile::tempdir().unwrap();
    let checkpoints = base.path().join("checkpoints");
    std::fs::create_dir(&checkpoints).unwrap();
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    };
    mode(base.path(), 0o755);
    mode(&checkpoints, 0o777);
    config["metric-store"]["checkpoints"]["directory"] = json!(checkpoints.display().to_string());
    let store = start_store(config);
    // Every thread (the runtime's were started before the switch), with its
    // real, effective, saved and file-system ids, no supplementary group
    // and no capability left.
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", store.pid()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() > 1, "a multi-threaded process");
    for task in tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(field("Uid:"), ["65534"; 4], "{}", task.display());
        assert_eq!(field("Gid:"), ["65534"; 4], "{}", task.display());
        assert!(
            field("Groups:").iter().all(|g| g == "65534"),
            "supplementary groups of {}: {:?}",
            task.display(),
            field("Groups:")
        );
        assert_eq!(field("CapEff:"), ["0000000000000000"], "{}", task.display());
    }
    // Still serving after the switch.
    let r = store.request(
        "POST",
        "/api/write?cluster=c",
        &[],
        b"cpu_load,hostname=h value=1 1000\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let wal = std::fs::metadata(checkpoints.join("c/h/current.wal")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&wal),
        65534,
        "WAL written as nobody"
    );
}

#[test]
fn a_checkpoint_directory_the_service_user_cannot_write_stops_the_start() {
    assert!(
        running_as_root(),
        "this test switches users and needs root (CI runs as root)"
    );
    let base = tempfile::tempdir().unwrap();
    let mut config = store_config();
    config["main"] = json!({"user": "nobody", "group": "nogroup", "addr": "127.0.0.1:0"});
    config["metric-store"]["checkpoints"]["directory"] =
        json!(base.path().join("checkpoints").display().to_string());
    let path = base.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = std::process::Command::new(common::binary("cc-store"))
        .args(["-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checkpoint directory"), "{stderr}");
    assert!(stderr.contains("writable by the user"), "{stderr}");
}

#[test]
fn unknown_user_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut config = store_config();
    config["main"] =
        json!({"addr": format!("127.0.0.1:{}", common::free_port()), "user": "no-such-user-here"});
    config["metric-store"]["checkpoints"]["directory"] = json!(dir.path().join("cp"));
    std::fs::write(&path, config.to_string()).unwrap();
    let out = std::process::Command::new(common::binary("cc-store"))
        .arg("-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-here"));
}

/// Whether the tests run as root (needed to switch users); says so if not.
fn running_as_root() -> bool {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
        })
        .unwrap();
    if uid != "0" {
        eprintln!("not root: privilege drop cannot be exercised here");
    }
    uid == "0"
}

#[test]
fn sighup_is_logged_and_the_store_keeps_serving() {
    let store = start_store(store_config());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(store.pid()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let logged = common::wait_for(std::time::Duration::from_secs(10), || {
        store
            .log_text()
            .contains("SIGHUP: cc-store re-reads nothing")
    });
    assert!(logged, "{}", store.log_text());
    let r = store.request(
        "GET",
        "/api/healthcheck",
        &[],
        br#"{"cluster":"c","nodes":[]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
