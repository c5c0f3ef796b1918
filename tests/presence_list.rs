//! Presence lists over HTTP (seeds 001/004): an accepted entry is one more way to be allowed
//! to see someone's presence, through every route that asks `PresenceAccess`.
//! The users here share no room, so the list is the only grant in play.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, set_status, RawBody, TestApp, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const UNSTABLE: &str = "/_matrix/client/unstable/org.matrix.msc3032";

/// Long presence timers, so nobody's presence changes on its own while a test runs (a
/// deadline-driven change would wake a long-poll for the wrong reason).
async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.presence_device_timeout_ms = 60_000;
        c.presence_idle_after_ms = 120_000;
        c.presence_currently_active_ms = 60_000;
    })
    .await
}

fn list_path(user: &User) -> String {
    format!("/_matrix/client/v3/presence/list/{}", enc(&user.user_id))
}

async fn change_list(app: &TestApp, owner: &User, body: Value) -> (StatusCode, Value) {
    app.post(&list_path(owner), Some(&owner.token), body).await
}

async fn invite(app: &TestApp, owner: &User, target: &User) {
    let (c, v) = change_list(app, owner, json!({"invite": [target.user_id]})).await;
    assert_eq!(c, 200, "invite: {v}");
}

async fn answer(app: &TestApp, target: &User, owner: &User, how: &str) -> (StatusCode, Value) {
    let path = format!("{UNSTABLE}/presence/list/{}/{how}", enc(&target.user_id));
    app.post(&path, Some(&target.token), json!({"user_id": owner.user_id})).await
}

async fn accept(app: &TestApp, target: &User, owner: &User) {
    let (c, v) = answer(app, target, owner, "accept").await;
    assert_eq!(c, 200, "accept: {v}");
}

async fn requests(app: &TestApp, user: &User) -> Vec<String> {
    let (c, v) = app.get(&format!("{UNSTABLE}/presence/requests/{}", enc(&user.user_id)), Some(&user.token)).await;
    assert_eq!(c, 200, "requests: {v}");
    v["requests"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
}

async fn list(app: &TestApp, owner: &User) -> Vec<Value> {
    let (c, v) = app.get(&list_path(owner), Some(&owner.token)).await;
    assert_eq!(c, 200, "list: {v}");
    v.as_array().unwrap_or_else(|| panic!("the list is a JSON array: {v}")).clone()
}

fn status_path(of: &User) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(&of.user_id))
}

async fn status(app: &TestApp, viewer: &User, of: &User) -> (StatusCode, Value) {
    app.get(&status_path(of), Some(&viewer.token)).await
}

/// The `m.presence` event about `of` in a sync response, if any.
fn presence_of<'a>(sync: &'a Value, of: &User) -> Option<&'a Value> {
    sync["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == of.user_id.as_str())
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn presence_is_shared_only_after_the_target_accepts() {
    let app = app().await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    set_status(&app, &alice, json!({"presence": "busy", "status_msg": "writing"})).await;

    // No shared room, no list: nothing.
    let (c, v) = status(&app, &bob, &alice).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let s = app.sync(&bob, "").await;
    assert!(presence_of(&s, &alice).is_none(), "{s}");

    // Invited but not accepted: still nothing (seed 001: the target must accept).
    invite(&app, &bob, &alice).await;
    let (c, v) = status(&app, &bob, &alice).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let s = app.sync(&bob, &format!("since={}&timeout=0", next_batch(&s))).await;
    assert!(presence_of(&s, &alice).is_none(), "{s}");
    assert!(list(&app, &bob).await.is_empty(), "pending entries are not listed");
    assert_eq!(requests(&app, &alice).await, vec![bob.user_id.clone()]);

    // Acceptance wakes the owner's long-poll, which carries the target's current presence.
    let since = next_batch(&s);
    let query = format!("since={since}&timeout=20000");
    let started = Instant::now();
    let (s, _) = tokio::join!(app.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        accept(&app, &alice, &bob).await
    });
    assert!(started.elapsed() < Duration::from_secs(10), "acceptance must wake the owner");
    let ev = presence_of(&s, &alice).unwrap_or_else(|| panic!("no presence for alice after acceptance: {s}"));
    assert_eq!(ev["type"], "m.presence");
    assert_eq!(ev["content"]["presence"], "org.matrix.msc3026.busy");
    assert_eq!(ev["content"]["status_msg"], "writing");
    // A later incremental sync from before the acceptance carries it too.
    let again = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert!(presence_of(&again, &alice).is_some(), "{again}");
    let (c, v) = status(&app, &bob, &alice).await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["presence"], "org.matrix.msc3026.busy");
    assert!(requests(&app, &alice).await.is_empty());

    // Later changes wake the owner's long-poll like a room peer's would.
    let query = format!("since={}&timeout=20000", next_batch(&s));
    let started = Instant::now();
    let (s, _) = tokio::join!(app.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        set_status(&app, &alice, json!({"presence": "unavailable"})).await
    });
    assert!(started.elapsed() < Duration::from_secs(10), "the change must wake the owner");
    let ev = presence_of(&s, &alice).unwrap_or_else(|| panic!("no presence change for alice: {s}"));
    assert_eq!(ev["content"]["presence"], "unavailable");

    // The list is one-way: alice did not get to see bob.
    let (c, v) = status(&app, &alice, &bob).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn reverse_subscription_is_accepted_automatically() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    invite(&app, &alice, &bob).await;
    accept(&app, &bob, &alice).await;
    // Bob asks to follow alice, who already follows bob (seed 004): no answer needed.
    let next = next_batch(&app.sync(&bob, "").await);
    invite(&app, &bob, &alice).await;
    assert!(requests(&app, &alice).await.is_empty());
    let (c, v) = status(&app, &bob, &alice).await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(list(&app, &bob).await[0]["sender"], alice.user_id.as_str());
    let s = app.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert!(presence_of(&s, &alice).is_some(), "the auto-accepted grant reaches /sync: {s}");
}

#[tokio::test]
async fn accepting_a_request_also_accepts_the_pending_reverse_one() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    invite(&app, &alice, &bob).await;
    invite(&app, &bob, &alice).await;
    assert_eq!(requests(&app, &alice).await, vec![bob.user_id.clone()]);
    assert_eq!(requests(&app, &bob).await, vec![alice.user_id.clone()]);
    // Bob lets alice follow him; alice then follows bob, so bob's request to her is a request
    // with a reverse subscription: accepted too.
    accept(&app, &bob, &alice).await;
    assert!(requests(&app, &alice).await.is_empty());
    assert!(requests(&app, &bob).await.is_empty());
    assert_eq!(status(&app, &alice, &bob).await.0, 200);
    assert_eq!(status(&app, &bob, &alice).await.0, 200);
}

#[tokio::test]
async fn drop_and_reject_remove_access() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    invite(&app, &bob, &alice).await;
    accept(&app, &alice, &bob).await;
    assert_eq!(status(&app, &bob, &alice).await.0, 200);
    // The owner drops the target.
    let (c, v) = change_list(&app, &bob, json!({"drop": [alice.user_id]})).await;
    assert_eq!(c, 200, "{v}");
    let (c, v) = status(&app, &bob, &alice).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    assert!(list(&app, &bob).await.is_empty());
    // Dropping a pending entry withdraws the request; dropping what is not there is fine.
    invite(&app, &carol, &alice).await;
    assert_eq!(requests(&app, &alice).await, vec![carol.user_id.clone()]);
    let (c, _) = change_list(&app, &carol, json!({"drop": [alice.user_id, bob.user_id]})).await;
    assert_eq!(c, 200);
    assert!(requests(&app, &alice).await.is_empty());
    let (c, v) = answer(&app, &alice, &carol, "accept").await;
    assert_err(c, &v, 404, "M_NOT_FOUND");
    // The target refuses a request ...
    invite(&app, &carol, &alice).await;
    let (c, v) = answer(&app, &alice, &carol, "reject").await;
    assert_eq!(c, 200, "{v}");
    assert!(requests(&app, &alice).await.is_empty());
    assert_eq!(status(&app, &carol, &alice).await.0, 403);
    // ... and can take back what it granted.
    invite(&app, &carol, &alice).await;
    accept(&app, &alice, &carol).await;
    assert_eq!(status(&app, &carol, &alice).await.0, 200);
    let (c, _) = answer(&app, &alice, &carol, "reject").await;
    assert_eq!(c, 200);
    assert_eq!(status(&app, &carol, &alice).await.0, 403);
    assert!(list(&app, &carol).await.is_empty());
}

#[tokio::test]
async fn list_get_returns_presence_events_of_accepted_targets() {
    let app = app().await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    set_status(&app, &alice, json!({"presence": "busy", "status_msg": "on a call"})).await;
    let (c, v) = change_list(&app, &bob, json!({"invite": [alice.user_id, carol.user_id]})).await;
    assert_eq!(c, 200, "{v}");
    accept(&app, &alice, &bob).await;
    let events = list(&app, &bob).await;
    assert_eq!(events.len(), 1, "only accepted targets: {events:?}");
    let ev = &events[0];
    assert_eq!(ev["type"], "m.presence");
    assert_eq!(ev["sender"], alice.user_id.as_str());
    assert_eq!(ev["content"]["presence"], "org.matrix.msc3026.busy");
    assert_eq!(ev["content"]["status_msg"], "on a call");
    assert!(ev["content"]["last_active_ago"].is_i64(), "{ev}");
    // Hidden targets look offline to their followers, as to everyone else.
    set_status(&app, &alice, json!({"presence": "offline", "status_msg": "secret"})).await;
    let ev = &list(&app, &bob).await[0];
    assert_eq!(ev["content"]["presence"], "offline");
    assert!(ev["content"].get("status_msg").is_none(), "{ev}");
    // The r0 path answers the same.
    let (c, v) = app.get(&format!("/_matrix/client/r0/presence/list/{}", enc(&bob.user_id)), Some(&bob.token)).await;
    assert_eq!(c, 200);
    assert_eq!(v[0]["sender"], alice.user_id.as_str());
}

#[tokio::test]
async fn lists_survive_restart() {
    let mut app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    invite(&app, &bob, &alice).await;
    accept(&app, &alice, &bob).await;
    invite(&app, &carol, &alice).await;
    app.restart().await;
    assert_eq!(status(&app, &bob, &alice).await.0, 200);
    assert_eq!(list(&app, &bob).await.len(), 1);
    assert_eq!(requests(&app, &alice).await, vec![carol.user_id.clone()]);
    assert_eq!(status(&app, &carol, &alice).await.0, 403);
}

#[tokio::test]
async fn list_errors() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    // Only the owner reads or changes a list.
    let (c, v) = app.get(&list_path(&alice), Some(&bob.token)).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let (c, v) = app.post(&list_path(&alice), Some(&bob.token), json!({"invite": [bob.user_id]})).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let (c, v) = app.get(&list_path(&alice), None).await;
    assert_err(c, &v, 401, "M_MISSING_TOKEN");
    let (c, v) = app.get("/_matrix/client/v3/presence/list/not-a-user", Some(&alice.token)).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");

    // Bodies.
    let (c, v) = change_list(&app, &alice, json!({"invite": ["not-a-user"]})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = change_list(&app, &alice, json!({"drop": ["@no-server"]})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = change_list(&app, &alice, json!({"invite": ["@nobody:localhost"]})).await;
    assert_err(c, &v, 404, "M_NOT_FOUND");
    let (c, v) = change_list(&app, &alice, json!({"invite": [alice.user_id]})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = change_list(&app, &alice, json!({"invite": bob.user_id})).await;
    assert_err(c, &v, 400, "M_BAD_JSON");
    let (c, v) = change_list(&app, &alice, json!({"drop": [1]})).await;
    assert_err(c, &v, 400, "M_BAD_JSON");
    let (c, v) =
        app.raw(Method::POST, &list_path(&alice), Some(&alice.token), Some(RawBody::Text("invite=bob".into()))).await;
    assert_err(c, &v, 400, "M_NOT_JSON");
    // A rejected body changes nothing, not even its valid part.
    let (c, _) = change_list(&app, &alice, json!({"invite": [bob.user_id, "@nobody:localhost"]})).await;
    assert_eq!(c, 404);
    assert!(requests(&app, &bob).await.is_empty());

    // Answers: only for oneself, only to requests that exist.
    let (c, v) = answer(&app, &bob, &alice, "accept").await;
    assert_err(c, &v, 404, "M_NOT_FOUND");
    let (c, v) = answer(&app, &bob, &alice, "reject").await;
    assert_err(c, &v, 404, "M_NOT_FOUND");
    invite(&app, &alice, &bob).await;
    let path = format!("{UNSTABLE}/presence/list/{}/accept", enc(&bob.user_id));
    let (c, v) = app.post(&path, Some(&alice.token), json!({"user_id": alice.user_id})).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let (c, v) = app.post(&path, Some(&bob.token), json!({})).await;
    assert_err(c, &v, 400, "M_MISSING_PARAM");
    let (c, v) = app.post(&path, Some(&bob.token), json!({"user_id": 7})).await;
    assert_err(c, &v, 400, "M_BAD_JSON");
    let (c, v) = app.post(&path, Some(&bob.token), json!({"user_id": "alice"})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = app.raw(Method::POST, &path, Some(&bob.token), Some(RawBody::Text("{".into()))).await;
    assert_err(c, &v, 400, "M_NOT_JSON");
    let (c, v) = app.get(&format!("{UNSTABLE}/presence/requests/{}", enc(&bob.user_id)), Some(&alice.token)).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    // Accepting twice is harmless.
    accept(&app, &bob, &alice).await;
    accept(&app, &bob, &alice).await;
    assert_eq!(list(&app, &alice).await.len(), 1);
}
