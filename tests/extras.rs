//! The endpoints real clients call beyond the core: account data, typing, receipts and read
//! markers, redaction, forget, context, single events, capabilities and push rules.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, RawBody, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};

const V3: &str = "/_matrix/client/v3";

/// Long-poll `/sync` from `since` until `found` picks something out of a response (other
/// changes, such as presence, may wake the poll first). Returns it, the last `next_batch` and
/// how long it took.
async fn sync_until(
    app: &TestApp,
    user: &User,
    since: &str,
    found: impl Fn(&Value) -> Option<Value>,
) -> (Value, String, Duration) {
    let started = Instant::now();
    let mut since = since.to_owned();
    while started.elapsed() < Duration::from_secs(15) {
        let s = app.sync(user, &format!("since={since}&timeout=10000&set_presence=offline")).await;
        since = s["next_batch"].as_str().unwrap().to_owned();
        if let Some(v) = found(&s) {
            return (v, since, started.elapsed());
        }
    }
    panic!("nothing found in /sync within 15s");
}

async fn next_batch(app: &TestApp, user: &User) -> String {
    app.sync(user, "timeout=0&set_presence=offline").await["next_batch"].as_str().unwrap().to_owned()
}

fn ephemeral(s: &Value, room: &str, kind: &str) -> Option<Value> {
    s["rooms"]["join"][room]["ephemeral"]["events"].as_array()?.iter().find(|e| e["type"] == kind).cloned()
}

fn account_data_event(events: &Value, kind: &str) -> Option<Value> {
    events["events"].as_array()?.iter().find(|e| e["type"] == kind).cloned()
}

/// Alice's public room with bob in it.
async fn room_with_two(app: &TestApp) -> (User, User, String) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &room).await.0, 200);
    (alice, bob, room)
}

#[tokio::test]
async fn global_account_data_round_trips_and_syncs() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let path = format!("{V3}/user/{}/account_data/org.example.settings", enc(&alice.user_id));
    let (status, v) = app.get(&path, Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, _) = app.put(&path, Some(&alice.token), json!({"theme": "dark"})).await;
    assert_eq!(status, 200);
    let (status, v) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"theme": "dark"}));

    // Initial sync carries it; a change wakes an incremental long-poll.
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    let ev = account_data_event(&s["account_data"], "org.example.settings").expect("in initial sync");
    assert_eq!(ev["content"]["theme"], "dark");
    let since = s["next_batch"].as_str().unwrap().to_owned();
    let ((found, _, waited), _) = tokio::join!(
        sync_until(&app, &alice, &since, |s| account_data_event(&s["account_data"], "org.example.settings")),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.put(&path, Some(&alice.token), json!({"theme": "light"})).await
        }
    );
    assert_eq!(found["content"]["theme"], "light");
    assert!(waited < Duration::from_secs(8), "woken by the change, not the timeout ({waited:?})");
    // Unchanged data is not sent again.
    let s = app.sync(&alice, &format!("since={}&timeout=0&set_presence=offline", next_batch(&app, &alice).await)).await;
    assert!(account_data_event(&s["account_data"], "org.example.settings").is_none(), "{s}");
    // A filter can leave it out.
    let s = app
        .sync(&alice, &format!("timeout=0&filter={}", enc(r#"{"account_data": {"not_types": ["org.example.*"]}}"#)))
        .await;
    assert!(account_data_event(&s["account_data"], "org.example.settings").is_none(), "{s}");
}

#[tokio::test]
async fn global_account_data_bad_input() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = format!("{V3}/user/{}/account_data/org.example.settings", enc(&alice.user_id));
    let (status, v) = app.put(&path, Some(&bob.token), json!({"a": 1})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.get(&path, Some(&bob.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.raw(Method::PUT, &path, Some(&alice.token), Some(RawBody::Text("{nope".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let (status, v) = app.raw(Method::PUT, &path, Some(&alice.token), Some(RawBody::Text("[1, 2]".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    // Server-controlled types (spec: 405 M_BAD_JSON).
    let path = format!("{V3}/user/{}/account_data/m.fully_read", enc(&alice.user_id));
    let (status, v) = app.put(&path, Some(&alice.token), json!({"event_id": "$x"})).await;
    assert_err(status, &v, 405, "M_BAD_JSON");
    let (status, v) = app.put(&path, None, json!({})).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn room_account_data_round_trips_and_syncs() {
    let app = TestApp::spawn().await;
    let (alice, _bob, room) = room_with_two(&app).await;
    let path = format!("{V3}/user/{}/rooms/{}/account_data/m.tag", enc(&alice.user_id), enc(&room));
    let (status, v) = app.get(&path, Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let since = next_batch(&app, &alice).await;
    let tags = json!({"tags": {"m.favourite": {"order": 0.5}}});
    let (status, _) = app.put(&path, Some(&alice.token), tags.clone()).await;
    assert_eq!(status, 200);
    let (status, v) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v, tags);
    let (ev, _, _) =
        sync_until(&app, &alice, &since, |s| account_data_event(&s["rooms"]["join"][&room]["account_data"], "m.tag"))
            .await;
    assert_eq!(ev["content"], tags);
    // Room data stays out of the global section, and the initial sync has it too.
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    assert!(account_data_event(&s["account_data"], "m.tag").is_none(), "{s}");
    assert!(account_data_event(&s["rooms"]["join"][&room]["account_data"], "m.tag").is_some(), "{s}");
}

#[tokio::test]
async fn room_account_data_bad_input() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let path = |u: &User, r: &str| format!("{V3}/user/{}/rooms/{}/account_data/m.tag", enc(&u.user_id), enc(r));
    let (status, v) = app.put(&path(&alice, &room), Some(&bob.token), json!({"tags": {}})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.get(&path(&alice, &room), Some(&bob.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&path(&eve, &room), Some(&eve.token), json!({"tags": {}})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&path(&alice, "!unknown:localhost"), Some(&alice.token), json!({"tags": {}})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.put(&path(&alice, "@notaroom:localhost"), Some(&alice.token), json!({"tags": {}})).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) =
        app.raw(Method::PUT, &path(&alice, &room), Some(&alice.token), Some(RawBody::Text("nope".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let fully_read = format!("{V3}/user/{}/rooms/{}/account_data/m.fully_read", enc(&alice.user_id), enc(&room));
    let (status, v) = app.put(&fully_read, Some(&alice.token), json!({"event_id": "$x"})).await;
    assert_err(status, &v, 405, "M_BAD_JSON");
}

fn typing_path(room: &str, user: &User) -> String {
    format!("{V3}/rooms/{}/typing/{}", enc(room), enc(&user.user_id))
}

fn typers(ev: &Value) -> Vec<String> {
    ev["content"]["user_ids"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn typing_reaches_members_and_expires() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let since = next_batch(&app, &bob).await;
    let ((ev, since, waited), _) =
        tokio::join!(sync_until(&app, &bob, &since, |s| ephemeral(s, &room, "m.typing")), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, v) =
                app.put(&typing_path(&room, &alice), Some(&alice.token), json!({"typing": true, "timeout": 600})).await;
            assert_eq!(status, 200, "{v}");
        });
    assert_eq!(typers(&ev), vec![alice.user_id.clone()]);
    assert!(waited < Duration::from_secs(8), "woken by typing ({waited:?})");
    // The typing user's own sync shows it too, and so does an initial sync.
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    assert_eq!(typers(&ephemeral(&s, &room, "m.typing").expect("initial sync")), vec![alice.user_id.clone()]);
    // The timeout passes: members are told the user stopped.
    let (ev, since, _) = sync_until(&app, &bob, &since, |s| ephemeral(s, &room, "m.typing")).await;
    assert!(typers(&ev).is_empty(), "{ev}");
    // Explicit stop: without a timeout typing lasts until stopped.
    app.put(&typing_path(&room, &bob), Some(&bob.token), json!({"typing": true})).await;
    let (ev, since, _) = sync_until(&app, &alice, &since, |s| ephemeral(s, &room, "m.typing")).await;
    assert!(typers(&ev).contains(&bob.user_id), "{ev}");
    let (status, _) = app.put(&typing_path(&room, &bob), Some(&bob.token), json!({"typing": false})).await;
    assert_eq!(status, 200);
    let (ev, _, _) = sync_until(&app, &alice, &since, |s| {
        ephemeral(s, &room, "m.typing").filter(|e| !typers(e).contains(&bob.user_id))
    })
    .await;
    assert!(typers(&ev).is_empty(), "{ev}");
}

#[tokio::test]
async fn typing_bad_input() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let body = json!({"typing": true, "timeout": 1000});
    let (status, v) = app.put(&typing_path(&room, &alice), Some(&bob.token), body.clone()).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&typing_path(&room, &eve), Some(&eve.token), body.clone()).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&typing_path("!unknown:localhost", &alice), Some(&alice.token), body.clone()).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.put(&typing_path(&room, &alice), Some(&alice.token), json!({"timeout": 5})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = app.put(&typing_path(&room, &alice), Some(&alice.token), json!({"typing": "yes"})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = app
        .raw(Method::PUT, &typing_path(&room, &alice), Some(&alice.token), Some(RawBody::Text("typing".into())))
        .await;
    assert_err(status, &v, 400, "M_NOT_JSON");
}

fn receipt_path(room: &str, kind: &str, event: &str) -> String {
    format!("{V3}/rooms/{}/receipt/{kind}/{}", enc(room), enc(event))
}

#[tokio::test]
async fn receipts_reach_members_private_ones_only_their_owner() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let first = app.send_text(&alice, &room, "one").await;
    let second = app.send_text(&alice, &room, "two").await;
    let since = next_batch(&app, &alice).await;
    let ((ev, _, waited), _) =
        tokio::join!(sync_until(&app, &alice, &since, |s| ephemeral(s, &room, "m.receipt")), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, v) = app.post(&receipt_path(&room, "m.read", &second), Some(&bob.token), json!({})).await;
            assert_eq!(status, 200, "{v}");
        });
    assert!(waited < Duration::from_secs(8), "woken by the receipt ({waited:?})");
    assert!(ev["content"][&second]["m.read"][&bob.user_id]["ts"].as_i64().unwrap() > 0, "{ev}");
    // A receipt never moves backwards.
    let (status, _) = app.post(&receipt_path(&room, "m.read", &first), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    let ev = ephemeral(&s, &room, "m.receipt").expect("receipts in the initial sync");
    assert!(ev["content"][&second]["m.read"][&bob.user_id].is_object(), "{ev}");
    assert!(ev["content"][&first].is_null(), "{ev}");
    // Threaded receipts carry their thread.
    let since = next_batch(&app, &bob).await;
    let (status, _) =
        app.post(&receipt_path(&room, "m.read", &second), Some(&alice.token), json!({"thread_id": "main"})).await;
    assert_eq!(status, 200);
    let (ev, _, _) = sync_until(&app, &bob, &since, |s| ephemeral(s, &room, "m.receipt")).await;
    assert_eq!(ev["content"][&second]["m.read"][&alice.user_id]["thread_id"], "main", "{ev}");
    assert!(ev["content"][&second]["m.read"][&bob.user_id].is_null(), "only what changed: {ev}");
    // Private receipts: bob sees his own, alice never does.
    let (status, _) = app.post(&receipt_path(&room, "m.read.private", &second), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    let s = app.sync(&bob, "timeout=0&set_presence=offline").await;
    let ev = ephemeral(&s, &room, "m.receipt").unwrap();
    assert!(ev["content"][&second]["m.read.private"][&bob.user_id].is_object(), "{ev}");
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    let ev = ephemeral(&s, &room, "m.receipt").unwrap();
    assert!(ev["content"][&second]["m.read.private"].is_null(), "{ev}");
}

#[tokio::test]
async fn receipts_bad_input() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let event = app.send_text(&alice, &room, "hi").await;
    let other_room = app.create_room(&alice, json!({})).await;
    let elsewhere = app.send_text(&alice, &other_room, "elsewhere").await;
    let (status, v) = app.post(&receipt_path(&room, "m.read", "$unknown"), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&receipt_path(&room, "m.read", &elsewhere), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&receipt_path(&room, "m.read", &event), Some(&eve.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.post(&receipt_path("!unknown:localhost", "m.read", &event), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&receipt_path(&room, "m.weird", &event), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) =
        app.post(&receipt_path(&room, "m.fully_read", &event), Some(&bob.token), json!({"thread_id": "main"})).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app
        .raw(Method::POST, &receipt_path(&room, "m.read", &event), Some(&bob.token), Some(RawBody::Text("{".into())))
        .await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let (status, v) = app.post(&receipt_path(&room, "m.read", &event), Some(&bob.token), json!({"thread_id": 5})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn read_markers_set_fully_read_and_receipts() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let event = app.send_text(&alice, &room, "read me").await;
    let path = format!("{V3}/rooms/{}/read_markers", enc(&room));
    let (status, v) = app.post(&path, Some(&bob.token), json!({"m.fully_read": event, "m.read": event})).await;
    assert_eq!(status, 200, "{v}");
    let ad = format!("{V3}/user/{}/rooms/{}/account_data/m.fully_read", enc(&bob.user_id), enc(&room));
    let (status, v) = app.get(&ad, Some(&bob.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["event_id"], event.as_str());
    let s = app.sync(&bob, "timeout=0&set_presence=offline").await;
    let fr = account_data_event(&s["rooms"]["join"][&room]["account_data"], "m.fully_read").expect("fully read");
    assert_eq!(fr["content"]["event_id"], event.as_str());
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    assert!(ephemeral(&s, &room, "m.receipt").unwrap()["content"][&event]["m.read"][&bob.user_id].is_object(), "{s}");
    // `/receipt/m.fully_read` is the same marker.
    let later = app.send_text(&alice, &room, "later").await;
    let (status, _) = app.post(&receipt_path(&room, "m.fully_read", &later), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(app.get(&ad, Some(&bob.token)).await.1["event_id"], later.as_str());
    // Bad input.
    let (status, v) = app.post(&path, Some(&bob.token), json!({"m.fully_read": "$unknown"})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&path, Some(&eve.token), json!({"m.read": event})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.post(&path, Some(&eve.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.post(&format!("{V3}/rooms/{}/read_markers", enc("!unknown:localhost")), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&path, Some(&bob.token), json!({"m.read": 7})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = app.raw(Method::POST, &path, Some(&bob.token), Some(RawBody::Text("x".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
}

fn redact_path(room: &str, event: &str) -> String {
    format!("{V3}/rooms/{}/redact/{}/{}", enc(room), enc(event), uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn redaction_needs_power_or_ownership_and_strips_content() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let alices = app.send_text(&alice, &room, "alice's").await;
    let bobs = app.send_text(&bob, &room, "bob's").await;
    // Bob (power 0) may not redact alice's event, but may redact his own.
    let (status, v) = app.put(&redact_path(&room, &alices), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&redact_path(&room, &bobs), Some(&bob.token), json!({"reason": "oops"})).await;
    assert_eq!(status, 200, "{v}");
    let redaction = v["event_id"].as_str().unwrap().to_owned();
    // Alice (power 100) may redact anyone's; the same transaction id gives the same event.
    let path = redact_path(&room, &alices);
    let (status, v) = app.put(&path, Some(&alice.token), json!({})).await;
    assert_eq!(status, 200);
    let (_, again) = app.put(&path, Some(&alice.token), json!({})).await;
    assert_eq!(v["event_id"], again["event_id"]);

    let (status, ev) =
        app.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&redaction)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(ev["type"], "m.room.redaction");
    assert_eq!(ev["redacts"], bobs.as_str());
    assert_eq!(ev["content"]["redacts"], bobs.as_str());
    assert_eq!(ev["content"]["reason"], "oops");
    let (status, ev) = app.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&bobs)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(ev["content"], json!({}), "the redacted event loses its content: {ev}");
    assert_eq!(ev["unsigned"]["redacted_because"]["event_id"], redaction.as_str());
    // Sync shows the redaction and the redacted event.
    let s = app.sync(&alice, "timeout=0&set_presence=offline").await;
    let tl = s["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert!(tl.iter().any(|e| e["type"] == "m.room.redaction" && e["redacts"] == bobs.as_str()), "{s}");
    let redacted = tl.iter().find(|e| e["event_id"] == bobs.as_str()).unwrap();
    assert!(redacted["content"].as_object().unwrap().is_empty(), "{redacted}");

    // Redacting state keeps what the auth rules need.
    let (_, v) = app
        .put(&format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room)), Some(&alice.token), json!({"topic": "t"}))
        .await;
    let topic = v["event_id"].as_str().unwrap().to_owned();
    let (status, _) = app.put(&redact_path(&room, &topic), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200);
    let (status, v) = app.get(&format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({}), "current state holds the redacted topic");

    // Bad input.
    let (status, v) = app.put(&redact_path(&room, "$unknown"), Some(&alice.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.put(&redact_path(&room, &alices), Some(&eve.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&redact_path("!unknown:localhost", &alices), Some(&alice.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.put(&redact_path(&room, &alices), Some(&alice.token), json!({"reason": 1})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) =
        app.raw(Method::PUT, &redact_path(&room, &alices), Some(&alice.token), Some(RawBody::Text("no".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
}

#[tokio::test]
async fn forget_only_after_leaving() {
    let app = TestApp::spawn().await;
    let (_alice, bob, room) = room_with_two(&app).await;
    let forget = format!("{V3}/rooms/{}/forget", enc(&room));
    let (status, v) = app.post(&forget, Some(&bob.token), json!({})).await;
    assert_err(status, &v, 400, "M_UNKNOWN");
    let (status, _) = app.post(&format!("{V3}/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    let include_leave =
        format!("timeout=0&set_presence=offline&filter={}", enc(r#"{"room": {"include_leave": true}}"#));
    let s = app.sync(&bob, &include_leave).await;
    assert!(s["rooms"]["leave"][&room].is_object(), "left room shown before forgetting: {s}");
    let (status, _) = app.post(&forget, Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    let s = app.sync(&bob, &include_leave).await;
    assert!(s["rooms"]["leave"][&room].is_null(), "forgotten room not shown: {s}");
    // Rejoining brings it back.
    assert_eq!(app.join(&bob, &room).await.0, 200);
    let s = app.sync(&bob, "timeout=0&set_presence=offline").await;
    assert!(s["rooms"]["join"][&room].is_object(), "{s}");
    // Bad input.
    let (status, v) =
        app.post(&format!("{V3}/rooms/{}/forget", enc("!unknown:localhost")), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.raw(Method::POST, &forget, Some(&bob.token), Some(RawBody::Text("[".into()))).await;
    assert_err(status, &v, 400, "M_NOT_JSON");
}

#[tokio::test]
async fn context_and_single_events() {
    let app = TestApp::spawn().await;
    let (alice, bob, room) = room_with_two(&app).await;
    let eve = app.register("eve").await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(app.send_text(&alice, &room, &format!("m{i}")).await);
    }
    let path = format!("{V3}/rooms/{}/context/{}?limit=4", enc(&room), enc(&ids[2]));
    let (status, v) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["event"]["content"]["body"], "m2");
    let bodies = |k: &str| -> Vec<String> {
        v[k].as_array().unwrap().iter().map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(bodies("events_before"), vec!["m1", "m0"], "newest first");
    assert_eq!(bodies("events_after"), vec!["m3", "m4"]);
    assert!(v["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    // The tokens page on from there.
    let (_, older) = app
        .get(
            &format!("{V3}/rooms/{}/messages?dir=b&limit=1&from={}", enc(&room), v["start"].as_str().unwrap()),
            Some(&bob.token),
        )
        .await;
    assert_eq!(older["chunk"][0]["type"], "m.room.member", "start is just before the events returned: {older}");
    let (_, newer) = app
        .get(&format!("{V3}/rooms/{}/messages?dir=f&from={}", enc(&room), v["end"].as_str().unwrap()), Some(&bob.token))
        .await;
    assert!(newer["chunk"].as_array().unwrap().is_empty(), "nothing after the last event: {newer}");
    // A filter applies to the surrounding events.
    let filtered = format!("{}&filter={}", path, enc(r#"{"types": ["m.room.topic"]}"#));
    let (_, v) = app.get(&filtered, Some(&bob.token)).await;
    assert!(v["events_before"].as_array().unwrap().is_empty(), "{v}");

    let (status, ev) = app.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&ids[4])), Some(&bob.token)).await;
    assert_eq!(status, 200);
    assert_eq!(ev["content"]["body"], "m4");
    assert_eq!(ev["room_id"], room.as_str());

    // Bad input.
    for p in [
        format!("{V3}/rooms/{}/context/{}", enc(&room), enc(&ids[0])),
        format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&ids[0])),
    ] {
        let (status, v) = app.get(&p, Some(&eve.token)).await;
        assert_err(status, &v, 403, "M_FORBIDDEN");
    }
    for p in [
        format!("{V3}/rooms/{}/context/{}", enc(&room), enc("$nope")),
        format!("{V3}/rooms/{}/event/{}", enc(&room), enc("$nope")),
    ] {
        let (status, v) = app.get(&p, Some(&bob.token)).await;
        assert_err(status, &v, 404, "M_NOT_FOUND");
    }
    let (status, v) =
        app.get(&format!("{V3}/rooms/{}/event/{}", enc("!unknown:localhost"), enc(&ids[0])), Some(&bob.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let other = app.create_room(&bob, json!({})).await;
    let (status, v) = app.get(&format!("{V3}/rooms/{}/event/{}", enc(&other), enc(&ids[0])), Some(&bob.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.get(&format!("{path}&limit=lots"), Some(&bob.token)).await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn capabilities_and_push_rules() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.get(&format!("{V3}/capabilities"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["capabilities"]["m.change_password"]["enabled"], false);
    assert_eq!(v["capabilities"]["m.room_versions"]["default"], "10");
    assert_eq!(v["capabilities"]["m.room_versions"]["available"]["10"], "stable");
    let (status, v) = app.get(&format!("{V3}/capabilities"), None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    // The server-default ruleset, every kind present (tests/clients.rs covers rule CRUD).
    let (status, v) = app.get(&format!("{V3}/pushrules/"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["global"]["override"][0]["rule_id"], ".m.rule.master", "{v}");
    assert_eq!(v["global"]["content"], json!([]));
    let (status, v2) = app.get("/_matrix/client/r0/pushrules/global/", Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v2, v["global"]);
    let (status, v) = app.get(&format!("{V3}/pushrules/"), None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
}
