//! Accounts over HTTP: versions, registration (UIA dummy), login, logout, whoami, devices,
//! and the error JSON for bad input.
mod common;

use common::{assert_err, RawBody, TestApp};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn versions_and_well_known() {
    let app = TestApp::spawn().await;
    let (status, v) = app.get("/_matrix/client/versions", None).await;
    assert_eq!(status, 200);
    assert!(v["versions"].as_array().unwrap().iter().any(|x| x == "v1.11"));
    assert_eq!(v["unstable_features"]["org.matrix.msc3026.busy_presence"], true);
    let (status, v) = app.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, 200);
    assert!(v["m.homeserver"]["base_url"].as_str().unwrap().starts_with("http://"));
}

#[tokio::test]
async fn register_requires_dummy_auth_then_succeeds() {
    let app = TestApp::spawn().await;
    let (status, v) =
        app.post("/_matrix/client/v3/register", None, json!({"username": "alice", "password": "secret-pw"})).await;
    assert_eq!(status, 401);
    assert_eq!(v["flows"][0]["stages"][0], "m.login.dummy");
    let session = v["session"].as_str().unwrap();
    let (status, v) = app
        .post("/_matrix/client/v3/register", None, json!({"username": "alice", "password": "secret-pw", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user_id"], "@alice:localhost");
    assert!(v["access_token"].as_str().unwrap().len() >= 20);
    assert!(!v["device_id"].as_str().unwrap().is_empty());
    // A UIA session can be used once.
    let (status, _) = app
        .post("/_matrix/client/v3/register", None, json!({"username": "alice2", "password": "secret-pw", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn register_rejects_taken_and_invalid_usernames() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    let (status, v) =
        app.post("/_matrix/client/v3/register", None, json!({"username": "bob", "password": "x-pw"})).await;
    assert_err(status, &v, 400, "M_USER_IN_USE");
    let (status, v) =
        app.post("/_matrix/client/v3/register", None, json!({"username": "Bad Name!", "password": "x-pw"})).await;
    assert_err(status, &v, 400, "M_INVALID_USERNAME");
    let (status, v) = app.get("/_matrix/client/v3/register/available?username=bob", None).await;
    assert_err(status, &v, 400, "M_USER_IN_USE");
    let (status, v) = app.get("/_matrix/client/v3/register/available?username=carol", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["available"], true);
    let (status, v) = app.get("/_matrix/client/v3/register/available?username=NO%20WAY", None).await;
    assert_err(status, &v, 400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn register_with_bad_bodies() {
    let app = TestApp::spawn().await;
    let (status, v) =
        app.raw(Method::POST, "/_matrix/client/v3/register", None, Some(RawBody::Text("{not json".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let (status, v) =
        app.raw(Method::POST, "/_matrix/client/v3/register", None, Some(RawBody::Text("[1,2]".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let (status, v) = app.post("/_matrix/client/v3/register", None, json!({"username": 42})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, first) = app.post("/_matrix/client/v3/register", None, json!({"username": "dave"})).await;
    assert_eq!(status, 401);
    let (status, v) = app
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "dave", "auth": {"type": "m.login.dummy", "session": first["session"]}}),
        )
        .await;
    assert_err(status, &v, 400, "M_MISSING_PARAM");
    let (status, v) = app.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_whoami_devices_logout() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["flows"][0]["type"], "m.login.password");

    let phone = app.login("alice", "PHONE").await;
    assert_eq!(phone.device_id, "PHONE");
    assert_ne!(phone.token, alice.token);
    let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(&phone.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["user_id"], "@alice:localhost");
    assert_eq!(v["device_id"], "PHONE");
    // Old clients use r0 and the access_token query parameter.
    let (status, v) = app.get(&format!("/_matrix/client/r0/account/whoami?access_token={}", alice.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["device_id"], alice.device_id.as_str());

    let (status, v) = app.get("/_matrix/client/v3/devices", Some(&alice.token)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"PHONE") && ids.contains(&alice.device_id.as_str()), "{v}");

    let (status, _) = app.post("/_matrix/client/v3/logout", Some(&phone.token), json!({})).await;
    assert_eq!(status, 200);
    let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(&phone.token)).await;
    assert_err(status, &v, 401, "M_UNKNOWN_TOKEN");
    let (status, _) = app.get("/_matrix/client/v3/account/whoami", Some(&alice.token)).await;
    assert_eq!(status, 200);

    let tablet = app.login("@alice:localhost", "TABLET").await;
    let (status, _) = app.post("/_matrix/client/v3/logout/all", Some(&tablet.token), json!({})).await;
    assert_eq!(status, 200);
    for t in [&alice.token, &tablet.token] {
        let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(t)).await;
        assert_err(status, &v, 401, "M_UNKNOWN_TOKEN");
    }
}

/// Logging in again with a device id ends that device's earlier token (spec: `/login`
/// `device_id`), whether the server had it in memory (used just before) or not (never used
/// since it was issued to another login); the user's other devices keep theirs.
#[tokio::test]
async fn logging_in_again_with_a_device_id_ends_only_that_devices_old_token() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let phone = app.login("alice", "PHONE").await;
    let (status, _) = app.get("/_matrix/client/v3/account/whoami", Some(&phone.token)).await;
    assert_eq!(status, 200, "the old token is in use, so cached");
    let tablet = app.login("alice", "TABLET").await;
    let phone_again = app.login("alice", "PHONE").await;
    let tablet_again = app.login("alice", "TABLET").await;
    for ended in [&phone.token, &tablet.token] {
        let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(ended)).await;
        assert_err(status, &v, 401, "M_UNKNOWN_TOKEN");
    }
    for (token, device) in
        [(&phone_again.token, "PHONE"), (&tablet_again.token, "TABLET"), (&alice.token, alice.device_id.as_str())]
    {
        let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(token)).await;
        assert_eq!((status.as_u16(), v["device_id"].as_str()), (200, Some(device)), "{v}");
    }
}

#[tokio::test]
async fn login_failures() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let (status, v) = app
        .post("/_matrix/client/v3/login", None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wrong"}))
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "x"}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.post("/_matrix/client/v3/login", None, json!({"type": "m.login.magic"})).await;
    assert_err(status, &v, 400, "M_UNKNOWN");
    let (status, v) = app.post("/_matrix/client/v3/login", None, json!({"password": "x"})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn token_errors_and_unknown_endpoints() {
    let app = TestApp::spawn().await;
    let (status, v) = app.get("/_matrix/client/v3/account/whoami", None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some("syt_bogus")).await;
    assert_err(status, &v, 401, "M_UNKNOWN_TOKEN");
    let (status, v) = app.get("/_matrix/client/v3/no/such/endpoint", None).await;
    assert_err(status, &v, 404, "M_UNRECOGNIZED");
    let (status, v) = app.raw(Method::DELETE, "/_matrix/client/v3/account/whoami", None, None).await;
    assert_err(status, &v, 405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn login_is_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.auth_rate_per_second = 1;
        c.auth_rate_burst = 3;
    })
    .await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, v) = app
            .post("/_matrix/client/v3/login", None, json!({"type": "m.login.password", "user": "x", "password": "y"}))
            .await;
        if status == 429 {
            limited = Some(v);
            break;
        }
    }
    let v = limited.expect("the limit must kick in within 10 attempts");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn data_survives_restart() {
    let mut app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({"name": "kept"})).await;
    app.send_text(&alice, &room, "before restart").await;
    app.restart().await;
    let (status, v) = app.get("/_matrix/client/v3/account/whoami", Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", common::enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "kept");
    let bob = app.register("bob").await;
    let room2 = app.create_room(&bob, json!({})).await;
    assert_ne!(room, room2);
    // Stream positions keep growing across the restart.
    let s = app.sync(&alice, "").await;
    let pos: i64 = s["next_batch"].as_str().unwrap()[1..].parse().unwrap();
    assert!(pos > 10, "{pos}");
}
