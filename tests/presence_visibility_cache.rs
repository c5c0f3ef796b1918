//! Presence visibility is cached per user between requests (issue #13, `PresenceAccess`):
//! every change that can alter who sees whom must show on the very next `GET
//! /presence/…/status` and `/sync`, and wake the long-polls of those who now see a change.
//! Each test first asks the question once, so the answer is cached, then changes the answer.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, presence_status, quiet_app, set_status, TestApp, User};
use serde_json::{json, Value};

const V3: &str = "/_matrix/client/v3";
const UNSTABLE: &str = "/_matrix/client/unstable/org.matrix.msc3032";

async fn forbidden(app: &TestApp, viewer: &User, of: &User) {
    let (code, v) = app.get(&format!("{V3}/presence/{}/status", enc(&of.user_id)), Some(&viewer.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
}

async fn say(app: &TestApp, user: &User, msg: &str) {
    set_status(app, user, json!({"presence": "online", "status_msg": msg})).await;
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The status message of `of`'s `m.presence` event in a sync response, if there is one.
fn status_msg_of<'a>(sync: &'a Value, of: &User) -> Option<&'a str> {
    let events = sync["presence"]["events"].as_array()?;
    let ev = events.iter().find(|e| e["sender"] == of.user_id.as_str())?;
    Some(ev["content"]["status_msg"].as_str().unwrap_or(""))
}

async fn sync_since(app: &TestApp, user: &User, since: &str) -> Value {
    app.sync(user, &format!("since={since}&timeout=0")).await
}

/// `viewer` long-polls from `since` while `of` says `msg`: the poll must return with it,
/// well before its timeout (the viewer was woken).
async fn woken_by(app: &TestApp, viewer: &User, since: &str, of: &User, msg: &str) -> Value {
    let start = Instant::now();
    let query = format!("since={since}&timeout=8000");
    let (sync, _) = tokio::join!(app.sync(viewer, &query), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        say(app, of, msg).await;
    });
    assert_eq!(status_msg_of(&sync, of), Some(msg), "{sync}");
    assert!(start.elapsed() < Duration::from_secs(5), "the long-poll was not woken: {:?}", start.elapsed());
    sync
}

async fn leave(app: &TestApp, user: &User, room: &str) {
    let (code, v) = app.post(&format!("{V3}/rooms/{}/leave", enc(room)), Some(&user.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test]
async fn joining_and_leaving_a_shared_room_is_seen_at_once() {
    let app = quiet_app(|_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    say(&app, &alice, "alone").await;
    // Cached: bob sees nobody; nobody but alice sees alice.
    forbidden(&app, &bob, &alice).await;
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    say(&app, &alice, "still alone").await;
    assert_eq!(status_msg_of(&sync_since(&app, &bob, &since).await, &alice), None);

    let (code, v) = app.join(&bob, &room).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(presence_status(&app, &bob, &alice).await["status_msg"], "still alone");
    // A new room-mate's presence comes once; her next change wakes bob.
    let s = sync_since(&app, &bob, &since).await;
    assert_eq!(status_msg_of(&s, &alice), Some("still alone"), "{s}");
    woken_by(&app, &bob, &next_batch(&s), &alice, "with bob").await;

    leave(&app, &bob, &room).await;
    forbidden(&app, &bob, &alice).await;
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    say(&app, &alice, "bob left").await;
    let s = sync_since(&app, &bob, &since).await;
    assert_eq!(status_msg_of(&s, &alice), None, "{s}");
}

#[tokio::test]
async fn a_list_grant_and_its_revocation_are_seen_at_once() {
    let app = quiet_app(|_| {}).await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    say(&app, &alice, "hello").await;
    forbidden(&app, &carol, &alice).await;
    let since = next_batch(&app.sync(&carol, "timeout=0").await);

    // carol asks to follow alice; alice accepts.
    let list = format!("{V3}/presence/list/{}", enc(&carol.user_id));
    let (code, v) = app.post(&list, Some(&carol.token), json!({"invite": [alice.user_id]})).await;
    assert_eq!(code, 200, "{v}");
    let accept = format!("{UNSTABLE}/presence/list/{}/accept", enc(&alice.user_id));
    let (code, v) = app.post(&accept, Some(&alice.token), json!({"user_id": carol.user_id})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(presence_status(&app, &carol, &alice).await["status_msg"], "hello");
    let s = sync_since(&app, &carol, &since).await;
    assert_eq!(status_msg_of(&s, &alice), Some("hello"), "{s}");
    woken_by(&app, &carol, &next_batch(&s), &alice, "carol follows").await;

    // alice takes it back.
    let reject = format!("{UNSTABLE}/presence/list/{}/reject", enc(&alice.user_id));
    let (code, v) = app.post(&reject, Some(&alice.token), json!({"user_id": carol.user_id})).await;
    assert_eq!(code, 200, "{v}");
    forbidden(&app, &carol, &alice).await;
    let since = next_batch(&app.sync(&carol, "timeout=0").await);
    say(&app, &alice, "revoked").await;
    assert_eq!(status_msg_of(&sync_since(&app, &carol, &since).await, &alice), None);
}

#[tokio::test]
async fn a_room_crossing_the_member_limit_is_seen_at_once() {
    let app = quiet_app(|c| c.presence_max_room_members = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (code, v) = app.join(&bob, &room).await;
    assert_eq!(code, 200, "{v}");
    say(&app, &alice, "two of us").await;
    assert_eq!(presence_status(&app, &bob, &alice).await["status_msg"], "two of us");
    let since = next_batch(&app.sync(&bob, "timeout=0").await);

    // A third member: over the limit, the room grants nothing.
    let (code, v) = app.join(&carol, &room).await;
    assert_eq!(code, 200, "{v}");
    forbidden(&app, &bob, &alice).await;
    say(&app, &alice, "three of us").await;
    let s = sync_since(&app, &bob, &since).await;
    assert_eq!(status_msg_of(&s, &alice), None, "{s}");

    // Back to two: visible again, and alice's changes wake bob.
    leave(&app, &carol, &room).await;
    assert_eq!(presence_status(&app, &bob, &alice).await["status_msg"], "three of us");
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    woken_by(&app, &bob, &since, &alice, "two again").await;
}
