//! The two route styles at the HTTP edge (`src/api/mod.rs`): endpoints registered from their
//! ruma request types and Seed's own (`seed_route`) answer unknown paths, wrong methods and
//! bad bodies with Matrix errors, are served under both `/r0` and `/v3`, and error bodies keep
//! their wire shape now that error codes come from ruma's `ErrorKind`.
mod common;

use common::{assert_err, enc, RawBody, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// The keys of an error body, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn unknown_endpoints_are_404_unrecognized() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for path in [
        "/_matrix/client/v3/no_such_thing",
        "/_matrix/client/r0/presence/list",
        "/_matrix/client/unstable/org.matrix.msc3032/presence/nothing",
        "/_matrix/media/v3/nothing",
        "/nothing",
    ] {
        let (status, v) = app.get(path, Some(&alice.token)).await;
        assert_err(status, &v, 404, "M_UNRECOGNIZED");
        assert_eq!(keys(&v), ["errcode", "error"], "{path}: {v}");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_unrecognized() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let u = enc(&alice.user_id);
    let cases = [
        // Registered from ruma request types.
        (Method::DELETE, "/_matrix/client/v3/capabilities".to_owned()),
        (Method::POST, "/_matrix/client/r0/capabilities".to_owned()),
        (Method::POST, format!("/_matrix/client/v3/presence/{u}/status")),
        (Method::DELETE, format!("/_matrix/client/v3/user/{u}/account_data/m.x")),
        (Method::GET, "/_matrix/client/v3/keys/upload".to_owned()),
        (Method::PUT, "/_matrix/client/versions".to_owned()),
        (Method::DELETE, "/_matrix/client/v3/room_keys/version".to_owned()),
        (Method::PUT, "/_matrix/media/v3/config".to_owned()),
        // Registered with seed_route.
        (Method::DELETE, format!("/_matrix/client/r0/presence/list/{u}")),
        (Method::GET, format!("/_matrix/client/unstable/org.matrix.msc3032/presence/list/{u}/accept")),
        (Method::PUT, "/_matrix/client/v3/pushrules".to_owned()),
    ];
    for (method, path) in cases {
        let (status, v) = app.raw(method.clone(), &path, Some(&alice.token), None).await;
        assert_err(status, &v, 405, "M_UNRECOGNIZED");
        assert_eq!(keys(&v), ["errcode", "error"], "{method} {path}: {v}");
    }
}

#[tokio::test]
async fn bad_json_bodies_get_not_json_or_bad_json() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let u = enc(&alice.user_id);
    let not_json = [
        format!("/_matrix/client/v3/user/{u}/account_data/org.example.x"),
        format!("/_matrix/client/r0/presence/{u}/status"),
        "/_matrix/client/v3/sendToDevice/m.x/t1".to_owned(),
        "/_matrix/client/v3/pushrules/global/override/my.rule/enabled".to_owned(),
    ];
    for path in &not_json {
        let body = Some(RawBody::Text("{not json".into()));
        let (status, v) = app.raw(Method::PUT, path, Some(&alice.token), body).await;
        assert_err(status, &v, 400, "M_NOT_JSON");
    }
    for path in ["/_matrix/client/v3/keys/upload", "/_matrix/client/v3/room_keys/version"] {
        let (status, v) = app.raw(Method::POST, path, Some(&alice.token), Some(RawBody::Text("[1, 2".into()))).await;
        assert_err(status, &v, 400, "M_NOT_JSON");
        let (status, v) = app.raw(Method::POST, path, Some(&alice.token), Some(RawBody::Text("[]".into()))).await;
        assert_err(status, &v, 400, "M_NOT_JSON");
    }
    let wrong_shape: [(Method, String, Value); 4] = [
        (Method::PUT, format!("/_matrix/client/v3/presence/{u}/status"), json!({"presence": 5})),
        (
            Method::PUT,
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled".into(),
            json!({"enabled": "yes"}),
        ),
        (Method::POST, format!("/_matrix/client/r0/presence/list/{u}"), json!({"invite": "not a list"})),
        (Method::PUT, "/_matrix/client/v3/sendToDevice/m.x/t2".into(), json!({"messages": []})),
    ];
    for (method, path, body) in wrong_shape {
        let (status, v) = app.raw(method, &path, Some(&alice.token), Some(RawBody::Json(body))).await;
        assert_err(status, &v, 400, "M_BAD_JSON");
    }
}

#[tokio::test]
async fn r0_and_v3_are_both_served() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let u = enc(&alice.user_id);
    let paths = [
        "/capabilities".to_owned(),
        format!("/presence/{u}/status"),
        format!("/presence/list/{u}"),
        "/pushrules/".to_owned(),
        "/pushrules".to_owned(),
        "/pushrules/global".to_owned(),
        "/pushers".to_owned(),
        "/notifications".to_owned(),
        "/voip/turnServer".to_owned(),
        "/account/3pid".to_owned(),
        "/keys/changes?from=s0&to=s0".to_owned(),
    ];
    for path in &paths {
        let (v3, body3) = app.get(&format!("/_matrix/client/v3{path}"), Some(&alice.token)).await;
        let (r0, body0) = app.get(&format!("/_matrix/client/r0{path}"), Some(&alice.token)).await;
        assert_eq!((v3.as_u16(), r0.as_u16()), (200, 200), "{path}: {body3} / {body0}");
    }
    for prefix in ["/_matrix/client/v3", "/_matrix/client/r0"] {
        let path = format!("{prefix}/user/{u}/account_data/org.example.both");
        let (status, _) = app.put(&path, Some(&alice.token), json!({"via": prefix})).await;
        assert_eq!(status, 200);
        let (status, v) = app.get(&path, Some(&alice.token)).await;
        assert_eq!((status.as_u16(), v), (200, json!({"via": prefix})));
    }
}

#[tokio::test]
async fn typed_responses_keep_their_wire_shape() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let u = enc(&alice.user_id);
    let v3 = "/_matrix/client/v3";
    let (status, v) =
        app.put(&format!("{v3}/presence/{u}/status"), Some(&alice.token), json!({"presence": "online"})).await;
    assert_eq!((status.as_u16(), v), (200, json!({})));
    let (status, v) =
        app.get(&format!("{v3}/pushrules/global/override/.m.rule.master/enabled"), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"enabled": false})));
    let (status, v) =
        app.get(&format!("{v3}/pushrules/global/override/.m.rule.master/actions"), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"actions": []})));
    let (status, v) = app.get(&format!("{v3}/notifications"), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"notifications": []})));
    let (status, v) = app.get(&format!("{v3}/keys/changes?from=s0&to=s0"), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"changed": [], "left": []})));
    let (status, v) = app.post(&format!("{v3}/keys/upload"), Some(&alice.token), json!({})).await;
    assert_eq!((status.as_u16(), v), (200, json!({"one_time_key_counts": {"signed_curve25519": 0}})));
    let (status, v) = app.get("/_matrix/media/v3/config", None).await;
    assert_eq!(status, 200);
    assert!(v["m.upload.size"].as_u64().is_some_and(|n| n > 0), "{v}");
    let (status, v) = app.get("/_matrix/client/v3/capabilities", Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["capabilities"]["m.3pid_changes"]["enabled"], false, "{v}");
    let (status, v) = app
        .post(
            &format!("{v3}/room_keys/version"),
            Some(&alice.token),
            json!({
                "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}
            }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["version"].is_string() && keys(&v) == ["version"], "{v}");
}

#[tokio::test]
async fn error_bodies_keep_their_fields() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    // M_MISSING_TOKEN / M_UNKNOWN_TOKEN: errcode and error, no soft_logout.
    let (status, v) = app.get("/_matrix/client/v3/capabilities", None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    assert_eq!(keys(&v), ["errcode", "error"]);
    let (status, v) = app.get("/_matrix/client/v3/capabilities", Some("nonsense")).await;
    assert_err(status, &v, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(keys(&v), ["errcode", "error"]);
    // M_WRONG_ROOM_KEYS_VERSION carries current_version.
    let v3 = "/_matrix/client/v3";
    let algo = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "k"}});
    let (_, first) = app.post(&format!("{v3}/room_keys/version"), Some(&alice.token), algo.clone()).await;
    let (_, second) = app.post(&format!("{v3}/room_keys/version"), Some(&alice.token), algo).await;
    let path = format!("{v3}/room_keys/keys?version={}", first["version"].as_str().unwrap());
    let (status, v) = app.put(&path, Some(&alice.token), json!({"rooms": {}})).await;
    assert_err(status, &v, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(v["current_version"], second["version"]);
    assert_eq!(keys(&v), ["current_version", "errcode", "error"]);
    // Unsupported unstable endpoints (seed_route) answer 404 M_NOT_FOUND.
    let (status, v) =
        app.get("/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device", Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn rate_limits_answer_retry_after_in_body_and_header() {
    let app = TestApp::spawn_with(|c| {
        c.presence_rate_per_second = 1;
        c.presence_rate_burst = 1;
    })
    .await;
    let alice = app.register("alice").await;
    let url = format!("{}/_matrix/client/v3/presence/{}/status", app.base, enc(&alice.user_id));
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..5 {
        let resp = http.put(&url).bearer_auth(&alice.token).json(&json!({"presence": "online"})).send().await.unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("the fifth change within a second is limited");
    let header: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(header >= 1, "Retry-After rounds up to whole seconds");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "{v}");
    assert_eq!(keys(&v), ["errcode", "error", "retry_after_ms"]);
}
