//! End-to-end encryption key server over HTTP: device keys, one-time and fallback keys,
//! key queries and claims, device-list tracking in `/sync` and `/keys/changes`,
//! cross-signing and signatures, dehydrated devices (unsupported).
mod common;

use common::{assert_err, enc, TestApp, User};
use serde_json::{json, Value};

fn device_keys(u: &User) -> Value {
    json!({
        "user_id": u.user_id,
        "device_id": u.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", u.device_id): format!("curve-{}", u.device_id),
            format!("ed25519:{}", u.device_id): format!("ed-{}", u.device_id),
        },
        "signatures": {u.user_id.clone(): {format!("ed25519:{}", u.device_id): "sig"}},
    })
}

fn otk(n: usize) -> Value {
    let mut m = serde_json::Map::new();
    for i in 0..n {
        m.insert(format!("signed_curve25519:AAAA{i:03}"), json!({"key": format!("otk{i}"), "signatures": {}}));
    }
    Value::Object(m)
}

async fn upload(app: &TestApp, u: &User, body: Value) -> (reqwest::StatusCode, Value) {
    app.post("/_matrix/client/v3/keys/upload", Some(&u.token), body).await
}

async fn query(app: &TestApp, u: &User, users: &[&User]) -> Value {
    let wanted: serde_json::Map<String, Value> = users.iter().map(|x| (x.user_id.clone(), json!([]))).collect();
    let (status, v) = app.post("/_matrix/client/v3/keys/query", Some(&u.token), json!({"device_keys": wanted})).await;
    assert_eq!(status, 200, "query: {v}");
    v
}

async fn claim(app: &TestApp, u: &User, target: &User) -> Value {
    let (status, v) = app
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&u.token),
            json!({"one_time_keys": {target.user_id.clone(): {target.device_id.clone(): "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(status, 200, "claim: {v}");
    v
}

/// Long-poll `/sync` from `since` (20 s per poll) until `done` holds for a response; returns
/// it and the time taken. A change that failed to wake the poll shows up as 20 s or more.
async fn poll_until(
    base: String,
    token: String,
    mut since: String,
    done: impl Fn(&Value) -> bool,
) -> (Value, std::time::Duration) {
    let started = std::time::Instant::now();
    let http = reqwest::Client::new();
    loop {
        let v: Value = http
            .get(format!("{base}/_matrix/client/v3/sync?timeout=20000&since={since}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&v) || started.elapsed() > std::time::Duration::from_secs(30) {
            return (v, started.elapsed());
        }
        since = v["next_batch"].as_str().unwrap().to_owned();
    }
}

/// Two users in one room.
async fn pair(app: &TestApp) -> (User, User, String) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, v) = app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    (alice, bob, room)
}

#[tokio::test]
async fn upload_query_and_claim_keys() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    let (status, v) = upload(&app, &alice, json!({"device_keys": device_keys(&alice), "one_time_keys": otk(2)})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 2);

    let q = query(&app, &bob, &[&alice]).await;
    let dk = &q["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(dk["keys"][format!("ed25519:{}", alice.device_id)], format!("ed-{}", alice.device_id));
    assert!(dk["unsigned"].is_object(), "{dk}");

    // Two claims take the two one-time keys; each is handed out once.
    let c1 = claim(&app, &bob, &alice).await;
    let c2 = claim(&app, &bob, &alice).await;
    let k1 = c1["one_time_keys"][&alice.user_id][&alice.device_id].as_object().unwrap().clone();
    let k2 = c2["one_time_keys"][&alice.user_id][&alice.device_id].as_object().unwrap().clone();
    assert_ne!(k1.keys().next(), k2.keys().next());
    // None left and no fallback key: nothing to hand out.
    let c3 = claim(&app, &bob, &alice).await;
    assert_eq!(c3["one_time_keys"], json!({}), "{c3}");
    let sync = app.sync(&alice, "timeout=0").await;
    assert_eq!(sync["device_one_time_keys_count"]["signed_curve25519"], 0);
}

#[tokio::test]
async fn fallback_key_is_claimed_when_one_time_keys_run_out_and_marked_used() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    let fallback = json!({"signed_curve25519:FB1": {"key": "fallback", "fallback": true, "signatures": {}}});
    let (status, v) = upload(&app, &alice, json!({"one_time_keys": otk(1), "fallback_keys": fallback})).await;
    assert_eq!(status, 200, "{v}");
    let s = app.sync(&alice, "timeout=0").await;
    assert_eq!(s["device_unused_fallback_key_types"], json!(["signed_curve25519"]));
    assert_eq!(s["org.matrix.msc2732.device_unused_fallback_key_types"], json!(["signed_curve25519"]));
    assert_eq!(s["device_one_time_keys_count"]["signed_curve25519"], 1);

    let first = claim(&app, &bob, &alice).await;
    assert!(first["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:AAAA000"].is_object());
    // The fallback key is handed out (as often as needed) and reported used.
    for _ in 0..2 {
        let c = claim(&app, &bob, &alice).await;
        assert_eq!(c["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:FB1"]["key"], "fallback");
    }
    let s = app.sync(&alice, "timeout=0").await;
    assert_eq!(s["device_unused_fallback_key_types"], json!([]));
    // A new fallback key (unstable MSC2732 name) is unused again.
    let fb2 = json!({"signed_curve25519:FB2": {"key": "fallback2", "fallback": true}});
    let (status, _) = upload(&app, &alice, json!({"org.matrix.msc2732.fallback_keys": fb2})).await;
    assert_eq!(status, 200);
    let s = app.sync(&alice, "timeout=0").await;
    assert_eq!(s["device_unused_fallback_key_types"], json!(["signed_curve25519"]));
}

#[tokio::test]
async fn claiming_from_a_user_without_keys_returns_nothing() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    let c = claim(&app, &bob, &alice).await;
    assert_eq!(c["one_time_keys"], json!({}));
    assert_eq!(c["failures"], json!({}));
    // Unknown users and devices too.
    let (status, c) = app
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&bob.token),
            json!({"one_time_keys": {"@nobody:localhost": {"X": "signed_curve25519"}, alice.user_id.clone(): {"NODEVICE": "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c["one_time_keys"], json!({}));
    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["device_keys"][&alice.user_id], json!({}));
}

#[tokio::test]
async fn bad_key_uploads_are_rejected() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    // Device keys naming someone else, or another device.
    let mut other = device_keys(&alice);
    other["user_id"] = json!(bob.user_id);
    let (s, v) = upload(&app, &alice, json!({"device_keys": other})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let mut other = device_keys(&alice);
    other["device_id"] = json!("SOMEONEELSE");
    let (s, v) = upload(&app, &alice, json!({"device_keys": other})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    // Missing keys, wrong types.
    let mut missing = device_keys(&alice);
    missing.as_object_mut().unwrap().remove("keys");
    let (s, v) = upload(&app, &alice, json!({"device_keys": missing})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    let (s, v) = upload(&app, &alice, json!({"device_keys": "nope"})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    // One-time keys: id without algorithm, non-key value.
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": {"noalgorithm": "k"}})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": {"signed_curve25519:A": 5}})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    // Re-uploading a one-time key id with another value.
    let (s, _) = upload(&app, &alice, json!({"one_time_keys": {"signed_curve25519:A": {"key": "1"}}})).await;
    assert_eq!(s, 200);
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": {"signed_curve25519:A": {"key": "1"}}})).await;
    assert_eq!(s, 200, "same key again is fine: {v}");
    assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 1);
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": {"signed_curve25519:A": {"key": "2"}}})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    // Too many at once, too large.
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": otk(1001)})).await;
    assert_err(s, &v, 413, "M_TOO_LARGE");
    let big = "x".repeat(5000);
    let (s, v) = upload(&app, &alice, json!({"one_time_keys": {"signed_curve25519:B": {"key": big}}})).await;
    assert_err(s, &v, 413, "M_TOO_LARGE");
    // Not JSON, no token.
    let (s, v) = app
        .raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/upload",
            Some(&alice.token),
            Some(common::RawBody::Text("{".into())),
        )
        .await;
    assert_err(s, &v, 400, "M_NOT_JSON");
    let (s, v) = app.post("/_matrix/client/v3/keys/upload", None, json!({})).await;
    assert_err(s, &v, 401, "M_MISSING_TOKEN");
    // Query and claim with bad input.
    let (s, v) =
        app.post("/_matrix/client/v3/keys/query", Some(&alice.token), json!({"device_keys": {"notauser": []}})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = app.post("/_matrix/client/v3/keys/query", Some(&alice.token), json!({})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    let (s, v) = app
        .post("/_matrix/client/v3/keys/claim", Some(&alice.token), json!({"one_time_keys": {"@a:localhost": "x"}}))
        .await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    // Nothing stored by the failed uploads.
    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["device_keys"][&alice.user_id], json!({}));
}

#[tokio::test]
async fn device_list_changes_reach_room_members_and_wake_the_long_poll() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    let since = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let alice_id = alice.user_id.clone();
    let poll = tokio::spawn(poll_until(app.base.clone(), bob.token.clone(), since, move |v| {
        v["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice_id))
    }));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, _) = upload(&app, &alice, json!({"device_keys": device_keys(&alice)})).await;
    assert_eq!(s, 200);
    let (v, took) = poll.await.unwrap();
    assert!(took < std::time::Duration::from_secs(10), "woken, not timed out");
    assert!(v["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)), "{v}");

    // /keys/changes between the two tokens says the same.
    let from = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    app.login("alice", "PHONE").await;
    let to = app.sync(&bob, &format!("timeout=0&since={from}")).await;
    assert!(to["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)), "new login: {to}");
    let to = to["next_batch"].as_str().unwrap();
    let (s, c) = app.get(&format!("/_matrix/client/v3/keys/changes?from={from}&to={to}"), Some(&bob.token)).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["changed"], json!([alice.user_id]));
    // Nothing changed after `to`.
    let (_, c) = app.get(&format!("/_matrix/client/v3/keys/changes?from={to}&to={to}"), Some(&bob.token)).await;
    assert_eq!(c["changed"], json!([]));
    let (s, v) = app.get("/_matrix/client/v3/keys/changes?from=bogus&to=s1", Some(&bob.token)).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = app.get("/_matrix/client/v3/keys/changes?from=s1", Some(&bob.token)).await;
    assert_err(s, &v, 400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn users_without_a_shared_room_do_not_see_changes_and_leaving_is_reported() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = pair(&app).await;
    let carol = app.register("carol").await;
    let since = app.sync(&carol, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let bob_since = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    upload(&app, &alice, json!({"device_keys": device_keys(&alice)})).await;
    let c = app.sync(&carol, &format!("timeout=0&since={since}")).await;
    assert_eq!(c["device_lists"]["changed"], json!([]), "carol shares no room with alice: {c}");

    // Carol joins: she now shares a room with alice and bob, so their lists are "changed".
    let since = c["next_batch"].as_str().unwrap().to_owned();
    app.join(&carol, &room).await;
    let c = app.sync(&carol, &format!("timeout=0&since={since}")).await;
    let changed = c["device_lists"]["changed"].as_array().unwrap();
    assert!(changed.contains(&json!(alice.user_id)) && changed.contains(&json!(bob.user_id)), "{c}");
    let b = app.sync(&bob, &format!("timeout=0&since={bob_since}")).await;
    assert!(b["device_lists"]["changed"].as_array().unwrap().contains(&json!(carol.user_id)), "{b}");

    // Bob leaves the only shared room: alice hears "left".
    let a_since = app.sync(&alice, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let (s, _) = app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(s, 200);
    let a = app.sync(&alice, &format!("timeout=0&since={a_since}")).await;
    assert!(a["device_lists"]["left"].as_array().unwrap().contains(&json!(bob.user_id)), "{a}");
}

#[tokio::test]
async fn logout_removes_the_device_keys_and_counts_as_a_change() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    upload(&app, &alice, json!({"device_keys": device_keys(&alice), "one_time_keys": otk(3)})).await;
    let since = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let (s, _) = app.post("/_matrix/client/v3/logout", Some(&alice.token), json!({})).await;
    assert_eq!(s, 200);
    let b = app.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert!(b["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)), "{b}");
    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["device_keys"][&alice.user_id], json!({}));
    assert_eq!(claim(&app, &bob, &alice).await["one_time_keys"], json!({}));
}

fn cross_key(u: &User, usage: &str, pubkey: &str) -> Value {
    json!({"user_id": u.user_id, "usage": [usage], "keys": {format!("ed25519:{pubkey}"): pubkey}})
}

#[tokio::test]
async fn cross_signing_first_upload_without_auth_then_password_uia_to_replace() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let keys = json!({
        "master_key": cross_key(&alice, "master", "MASTER1"),
        "self_signing_key": cross_key(&alice, "self_signing", "SELF1"),
        "user_signing_key": cross_key(&alice, "user_signing", "USER1"),
    });
    let (s, v) = app.post(path, Some(&alice.token), keys.clone()).await;
    assert_eq!(s, 200, "first upload needs no auth: {v}");
    // The same keys again: idempotent, still no auth.
    let (s, _) = app.post(path, Some(&alice.token), keys).await;
    assert_eq!(s, 200);

    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["master_keys"][&alice.user_id]["keys"]["ed25519:MASTER1"], "MASTER1");
    assert_eq!(q["self_signing_keys"][&alice.user_id]["keys"]["ed25519:SELF1"], "SELF1");
    assert!(q["user_signing_keys"].get(&alice.user_id).is_none(), "user-signing key is private: {q}");
    let own = query(&app, &alice, &[&alice]).await;
    assert_eq!(own["user_signing_keys"][&alice.user_id]["keys"]["ed25519:USER1"], "USER1");

    // Replacing needs the password.
    let new = json!({"master_key": cross_key(&alice, "master", "MASTER2")});
    let (s, v) = app.post(path, Some(&alice.token), new.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    let mut wrong = new.clone();
    wrong["auth"] = json!({"type": "m.login.password", "session": session, "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wrong"});
    let (s, v) = app.post(path, Some(&alice.token), wrong).await;
    assert_eq!(s, 401);
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    let mut right = new.clone();
    right["auth"] = json!({"type": "m.login.password", "session": session, "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw-123456"});
    let (s, v) = app.post(path, Some(&alice.token), right).await;
    assert_eq!(s, 200, "{v}");
    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["master_keys"][&alice.user_id]["keys"]["ed25519:MASTER2"], "MASTER2");
    // Another user's password does not do.
    let mut bobs = json!({"master_key": cross_key(&alice, "master", "MASTER3")});
    bobs["auth"] = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw-123456"});
    let (s, _) = app.post(path, Some(&alice.token), bobs).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn bad_cross_signing_keys_are_rejected() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let (s, v) =
        app.post(path, Some(&alice.token), json!({"self_signing_key": cross_key(&alice, "self_signing", "S")})).await;
    assert_err(s, &v, 400, "M_MISSING_PARAM");
    let (s, v) = app.post(path, Some(&alice.token), json!({"master_key": cross_key(&bob, "master", "M")})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) =
        app.post(path, Some(&alice.token), json!({"master_key": cross_key(&alice, "self_signing", "M")})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = app
        .post(
            path,
            Some(&alice.token),
            json!({"master_key": {"user_id": alice.user_id, "usage": ["master"], "keys": {}}}),
        )
        .await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
    let (s, v) = app.post(path, Some(&alice.token), json!({"master_key": 7})).await;
    assert_err(s, &v, 400, "M_BAD_JSON");
    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(q["master_keys"], json!({}));
}

#[tokio::test]
async fn signatures_upload_reaches_queries() {
    let app = TestApp::spawn().await;
    let (alice, bob, _) = pair(&app).await;
    upload(&app, &alice, json!({"device_keys": device_keys(&alice)})).await;
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let (s, _) = app
        .post(path, Some(&alice.token), json!({"master_key": cross_key(&alice, "master", "AM"), "self_signing_key": cross_key(&alice, "self_signing", "AS")}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .post(path, Some(&bob.token), json!({"master_key": cross_key(&bob, "master", "BM"), "user_signing_key": cross_key(&bob, "user_signing", "BU")}))
        .await;
    assert_eq!(s, 200);

    // Alice's self-signing key signs her device; bob's user-signing key signs alice's master key.
    let mut signed_device = device_keys(&alice);
    signed_device["signatures"][&alice.user_id]["ed25519:AS"] = json!("self-sig");
    let (s, v) = app
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice.token),
            json!({alice.user_id.clone(): {alice.device_id.clone(): signed_device}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["failures"], json!({}));
    let mut signed_master = cross_key(&alice, "master", "AM");
    signed_master["signatures"] = json!({bob.user_id.clone(): {"ed25519:BU": "bob-sig"}});
    let (s, v) = app
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&bob.token),
            json!({alice.user_id.clone(): {"AM": signed_master}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["failures"], json!({}));

    let q = query(&app, &bob, &[&alice]).await;
    assert_eq!(
        q["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id]["ed25519:AS"],
        "self-sig"
    );
    assert_eq!(q["master_keys"][&alice.user_id]["signatures"][&bob.user_id]["ed25519:BU"], "bob-sig");
    // Bob's signature on alice's master key is for bob only.
    let own = query(&app, &alice, &[&alice]).await;
    assert!(own["master_keys"][&alice.user_id]["signatures"].get(&bob.user_id).is_none(), "{own}");

    // Unknown keys are failures, not errors.
    let (s, v) = app
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&bob.token),
            json!({alice.user_id.clone(): {"NOSUCHKEY": {"signatures": {bob.user_id.clone(): {"ed25519:BU": "x"}}}}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["failures"][&alice.user_id]["NOSUCHKEY"]["errcode"], "M_NOT_FOUND");
    let (s, v) = app.post("/_matrix/client/v3/keys/signatures/upload", Some(&bob.token), json!({"bad user": {}})).await;
    assert_err(s, &v, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn dehydrated_devices_are_not_supported() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let p = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    let (s, v) = app.get(p, Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.put(p, Some(&alice.token), json!({})).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.post(&format!("{p}/DEV/events"), Some(&alice.token), json!({})).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    // MSC2697 (Hydrogen asks at login).
    let v2 = "/_matrix/client/unstable/org.matrix.msc2697.v2/dehydrated_device";
    let (s, v) = app.get(v2, Some(&alice.token)).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.post(&format!("{v2}/claim"), Some(&alice.token), json!({"device_id": "X"})).await;
    assert_err(s, &v, 404, "M_NOT_FOUND");
    let (s, v) = app.get(p, None).await;
    assert_err(s, &v, 401, "M_MISSING_TOKEN");
}
