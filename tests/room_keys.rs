//! Server-side key backup over HTTP: versions and backed-up room keys, etag/count, the
//! replacement rule, and errors.
mod common;

use common::{assert_err, enc, TestApp, User};
use serde_json::{json, Value};

const V: &str = "/_matrix/client/v3/room_keys/version";
const K: &str = "/_matrix/client/v3/room_keys/keys";

fn session(first: i64, forwarded: i64, verified: bool, tag: &str) -> Value {
    json!({"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
           "session_data": {"ciphertext": tag, "ephemeral": "e", "mac": "m"}})
}

async fn create(app: &TestApp, u: &User) -> String {
    let (s, v) = app
        .post(
            V,
            Some(&u.token),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "pk"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn backup_versions_lifecycle() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (s, v) = app.get(V, Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let v1 = create(&app, &alice).await;
    let v2 = create(&app, &alice).await;
    assert_ne!(v1, v2);
    let (s, latest) = app.get(V, Some(&alice.token)).await;
    assert_eq!(s, 200);
    assert_eq!(latest["version"], v2);
    assert_eq!(latest["count"], 0);
    assert!(latest["etag"].is_string());
    assert_eq!(latest["auth_data"]["public_key"], "pk");

    let (s, _) = app
        .put(&format!("{V}/{v2}"), Some(&alice.token), json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "pk", "signatures": {}}, "version": v2}))
        .await;
    assert_eq!(s, 200);
    let (_, got) = app.get(&format!("{V}/{v2}"), Some(&alice.token)).await;
    assert!(got["auth_data"]["signatures"].is_object(), "{got}");
    // The algorithm may not change; the body version must match the path.
    let (s, v) =
        app.put(&format!("{V}/{v2}"), Some(&alice.token), json!({"algorithm": "other", "auth_data": {}})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = app
        .put(
            &format!("{V}/{v2}"),
            Some(&alice.token),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {}, "version": v1}),
        )
        .await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");

    let (s, _) = app.raw(reqwest::Method::DELETE, &format!("{V}/{v2}"), Some(&alice.token), None).await;
    assert_eq!(s, 200);
    let (_, latest) = app.get(V, Some(&alice.token)).await;
    assert_eq!(latest["version"], v1, "the previous version is current again");
    let (s, v) = app.get(&format!("{V}/{v2}"), Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.raw(reqwest::Method::DELETE, &format!("{V}/{v2}"), Some(&alice.token), None).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.get(&format!("{V}/notanumber"), Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    // Another user sees none of it.
    let bob = app.register("bob").await;
    let (s, v) = app.get(&format!("{V}/{v1}"), Some(&bob.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    // Bad bodies.
    let (s, v) = app.post(V, Some(&alice.token), json!({"auth_data": {}})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    let (s, v) = app.post(V, Some(&alice.token), json!({"algorithm": "a", "auth_data": "x"})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn backup_keys_put_get_delete_with_etag_and_count() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let v = create(&app, &alice).await;
    let room = "!room:localhost";
    let body =
        json!({"rooms": {room: {"sessions": {"s1": session(5, 1, false, "a"), "s2": session(0, 0, true, "b")}}}});
    let (s, r) = app.put(&format!("{K}?version={v}"), Some(&alice.token), body).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["count"], 2);
    let etag1 = r["etag"].as_str().unwrap().to_owned();

    // A worse copy does not replace a better one; a better one does.
    let (_, r) =
        app.put(&format!("{K}/{}/s1?version={v}", enc(room)), Some(&alice.token), session(9, 0, false, "worse")).await;
    assert_eq!(r["count"], 2);
    let (_, got) = app.get(&format!("{K}/{}/s1?version={v}", enc(room)), Some(&alice.token)).await;
    assert_eq!(got["session_data"]["ciphertext"], "a");
    let (_, r) = app
        .put(
            &format!("{K}/{}?version={v}", enc(room)),
            Some(&alice.token),
            json!({"sessions": {"s1": session(5, 1, true, "verified")}}),
        )
        .await;
    assert_ne!(r["etag"], json!(etag1), "etag moves on change");
    let (_, got) = app.get(&format!("{K}/{}/s1?version={v}", enc(room)), Some(&alice.token)).await;
    assert_eq!(got["session_data"]["ciphertext"], "verified");
    assert_eq!(got["is_verified"], true);

    let (s, all) = app.get(&format!("{K}?version={v}"), Some(&alice.token)).await;
    assert_eq!(s, 200);
    assert_eq!(all["rooms"][room]["sessions"].as_object().unwrap().len(), 2);
    let (_, one_room) = app.get(&format!("{K}/{}?version={v}", enc(room)), Some(&alice.token)).await;
    assert_eq!(one_room["sessions"]["s2"]["first_message_index"], 0);
    let (s, e) = app.get(&format!("{K}/{}/nosuch?version={v}", enc(room)), Some(&alice.token)).await;
    assert_err(s, &e, 404, "M_NOT_FOUND");

    let (s, r) =
        app.raw(reqwest::Method::DELETE, &format!("{K}/{}/s1?version={v}", enc(room)), Some(&alice.token), None).await;
    assert_eq!(s, 200);
    assert_eq!(r["count"], 1);
    let (_, info) = app.get(V, Some(&alice.token)).await;
    assert_eq!(info["count"], 1);
    assert_eq!(info["etag"], r["etag"]);
    let (_, r) = app.raw(reqwest::Method::DELETE, &format!("{K}?version={v}"), Some(&alice.token), None).await;
    assert_eq!(r["count"], 0);
}

#[tokio::test]
async fn backup_keys_errors() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = "!room:localhost";
    let body = json!({"rooms": {room: {"sessions": {"s1": session(0, 0, false, "a")}}}});
    // No backup at all.
    let (s, v) = app.put(&format!("{K}?version=1"), Some(&alice.token), body.clone()).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let v1 = create(&app, &alice).await;
    let v2 = create(&app, &alice).await;
    // Only the current version takes uploads.
    let (s, v) = app.put(&format!("{K}?version={v1}"), Some(&alice.token), body.clone()).await;
    assert_err(s, &v, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(v["current_version"], v2);
    // Missing version parameter, malformed session data.
    let (s, v) = app.put(K, Some(&alice.token), body).await;
    assert_err(s, &v, 400, "M_MISSING_PARAM");
    let bad = json!({"rooms": {room: {"sessions": {"s1": {"first_message_index": -1}}}}});
    let (s, v) = app.put(&format!("{K}?version={v2}"), Some(&alice.token), bad).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    let big = json!({"rooms": {room: {"sessions": {"s1": session(0, 0, false, &"x".repeat(20_000))}}}});
    let (s, v) = app.put(&format!("{K}?version={v2}"), Some(&alice.token), big).await;
    assert_err(s, &v, 413, "M_TOO_LARGE");
    let (s, v) = app.get(&format!("{K}?version=99"), Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.get(V, None).await;
    assert_err(s, &v, 401, "M_MISSING_TOKEN");
    // Nothing was stored by the failed uploads.
    let (_, info) = app.get(V, Some(&alice.token)).await;
    assert_eq!(info["count"], 0);
}
