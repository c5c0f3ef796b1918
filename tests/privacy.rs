//! Privacy: a user with neither a shared room nor presence-list permission never receives
//! another user's presence, by any route. Each route is checked; then sharing a room opens
//! them and leaving it closes them again.
mod common;

use common::{enc, TestApp, User};
use serde_json::{json, Value};

const PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";

/// Every way `eve` could learn `alice`'s presence; returns what each route leaked (if anything).
async fn leaks(app: &TestApp, eve: &User, alice: &User, profile_room: &str, since: &str) -> Vec<String> {
    let mut leaked = vec![];
    let secret = "s3cr3t-status";
    // 1. GET /presence/{userId}/status
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&eve.token)).await;
    if code == 200 || v.to_string().contains(secret) {
        leaked.push(format!("GET status: {code} {v}"));
    }
    // 2. legacy m.presence in /sync (incremental and initial)
    for q in [format!("since={since}&timeout=0"), "timeout=0".to_owned()] {
        let (_, s) = app.get(&format!("/_matrix/client/v3/sync?{q}"), Some(&eve.token)).await;
        let from_alice =
            s["presence"]["events"].as_array().is_some_and(|e| e.iter().any(|e| e["sender"] == alice.user_id.as_str()));
        if from_alice || s.to_string().contains(secret) {
            leaked.push(format!("/sync {q}: {s}"));
        }
    }
    // 3. peeking the profile room
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(profile_room)), Some(&eve.token), json!({})).await;
    if code == 200 {
        leaked.push(format!("peek: {v}"));
        app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(profile_room)), Some(&eve.token), json!({})).await;
    }
    // 4. legacy peeking: initialSync and /events
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(profile_room)), Some(&eve.token)).await;
    if code == 200 {
        leaked.push(format!("initialSync: {v}"));
    }
    let (code, v) = app
        .get(&format!("/_matrix/client/v3/events?room_id={}&from=s0&timeout=0", enc(profile_room)), Some(&eve.token))
        .await;
    if code == 200 {
        leaked.push(format!("/events: {v}"));
    }
    // 5. reading the profile room's state or history directly
    for path in [
        format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(profile_room)),
        format!("/_matrix/client/v3/rooms/{}/state", enc(profile_room)),
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(profile_room)),
        format!("/_matrix/client/v3/rooms/{}/members", enc(profile_room)),
    ] {
        let (code, v) = app.get(&path, Some(&eve.token)).await;
        if code == 200 {
            leaked.push(format!("{path}: {v}"));
        }
    }
    leaked
}

async fn profile_room(app: &TestApp, of: &User) -> String {
    let (_, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&of.user_id)), None).await;
    v["org.matrix.msc1769.profile_room_id"].as_str().unwrap().to_owned()
}

fn next(s: &Value) -> String {
    s["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn no_route_leaks_presence_to_strangers() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let room = profile_room(&app, &alice).await;
    let since = next(&app.sync(&eve, "").await);
    app.put(
        &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"presence": "busy", "status_msg": "s3cr3t-status"}),
    )
    .await;
    let leaked = leaks(&app, &eve, &alice, &room, &since).await;
    assert!(leaked.is_empty(), "presence leaked to a stranger:\n{}", leaked.join("\n"));

    // Sharing a room opens the routes ...
    let shared = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&eve, &shared).await;
    let opened = leaks(&app, &eve, &alice, &room, &since).await;
    assert!(opened.len() >= 5, "a room-mate should see presence by every route, saw only: {opened:?}");

    // ... and leaving it closes them again.
    app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&shared)), Some(&eve.token), json!({})).await;
    let since = next(&app.sync(&eve, "").await);
    app.put(
        &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"presence": "unavailable", "status_msg": "s3cr3t-status"}),
    )
    .await;
    let leaked = leaks(&app, &eve, &alice, &room, &since).await;
    assert!(leaked.is_empty(), "presence leaked after leaving the shared room:\n{}", leaked.join("\n"));
}

#[tokio::test]
async fn an_accepted_presence_list_entry_opens_the_routes_without_a_shared_room() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let room = profile_room(&app, &alice).await;
    let since = next(&app.sync(&eve, "").await);
    // eve asks to follow alice; nothing is shared until alice accepts.
    let (code, v) = app
        .post(
            &format!("/_matrix/client/r0/presence/list/{}", enc(&eve.user_id)),
            Some(&eve.token),
            json!({"invite": [alice.user_id]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    app.put(
        &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"presence": "busy", "status_msg": "s3cr3t-status"}),
    )
    .await;
    let leaked = leaks(&app, &eve, &alice, &room, &since).await;
    assert!(leaked.is_empty(), "a pending request must not share anything:\n{}", leaked.join("\n"));
    let (code, v) = app
        .post(
            &format!("/_matrix/client/unstable/org.matrix.msc3032/presence/list/{}/accept", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"user_id": eve.user_id}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    // Now eve may peek alice's profile room and gets her presence there.
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&eve.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let s = app.sync(&eve, "").await;
    assert!(s["rooms"]["peek"][&room].is_object(), "{s}");
    let opened = leaks(&app, &eve, &alice, &room, &since).await;
    assert!(opened.len() >= 5, "an accepted follower should see presence by every route, saw only: {opened:?}");
}
