//! Privacy: a user with neither a shared room nor presence-list permission never receives
//! another user's presence, by any route. Each route is checked; then sharing a room opens
//! them and leaving it closes them again.
mod common;

use common::{enc, set_status, TestApp, User};
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

/// Whether `v` holds, anywhere, an `m.presence` or `m.status` event sent by `user`.
fn has_presence_of(v: &Value, user: &str) -> bool {
    match v {
        Value::Object(m) => {
            let kind = m.get("type").and_then(Value::as_str);
            (matches!(kind, Some("m.presence" | "m.status")) && m.get("sender").and_then(Value::as_str) == Some(user))
                || m.values().any(|x| has_presence_of(x, user))
        }
        Value::Array(a) => a.iter().any(|x| has_presence_of(x, user)),
        _ => false,
    }
}

/// Poll `path` as `user` until `ok` holds (the profile-room publisher writes within its window).
async fn wait_for(app: &TestApp, user: &User, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = app.get(path, Some(&user.token)).await;
        if ok(&v) {
            return v;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{path}: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every route by which `viewer` could read events of `room` (a profile room), each answer
/// as text: GET state (one event, content and event format), all state, members, messages
/// both ways, `/context` and `/event` of `event_id`, `initialSync`, `/events`, and `/sync`
/// (initial and incremental; with `filter` naming the room, for a joined member).
async fn room_routes(app: &TestApp, viewer: &User, room: &str, event_id: &str, since: &str) -> Vec<(String, String)> {
    let r = enc(room);
    let filter = enc(&json!({"room": {"rooms": [room]}}).to_string());
    let paths = [
        format!("/_matrix/client/v3/rooms/{r}/state/m.status/"),
        format!("/_matrix/client/v3/rooms/{r}/state/m.status/?format=event"),
        format!("/_matrix/client/v3/rooms/{r}/state"),
        format!("/_matrix/client/v3/rooms/{r}/members"),
        format!("/_matrix/client/v3/rooms/{r}/joined_members"),
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=100"),
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=f&limit=100"),
        format!("/_matrix/client/v3/rooms/{r}/context/{}?limit=20", enc(event_id)),
        format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(event_id)),
        format!("/_matrix/client/v3/rooms/{r}/initialSync"),
        format!("/_matrix/client/v3/events?room_id={r}&from=s0&timeout=0"),
        format!("/_matrix/client/v3/presence/{}/status", "@alice%3Alocalhost"),
        "/_matrix/client/v3/sync?timeout=0".to_owned(),
        format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
        format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
        format!("/_matrix/client/v3/sync?timeout=0&filter={filter}&since={since}"),
    ];
    let mut out = vec![];
    for p in paths {
        let (code, v) = app.get(&p, Some(&viewer.token)).await;
        assert!(code != 500, "{p}: {v}");
        out.push((p, v.to_string()));
    }
    out
}

#[tokio::test]
async fn a_hidden_users_status_text_reaches_nobody_by_any_route() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let dave = app.register("dave").await;
    let room = profile_room(&app, &alice).await;
    let shared = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &shared).await.0, 200);
    // dave is a member of the profile room itself (the owner invited him).
    let (code, v) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice.token),
            json!({"user_id": dave.user_id}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(app.join(&dave, &room).await.0, 200);
    // bob peeks the profile room, so its events come down his /sync too.
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let since_bob = next(&app.sync(&bob, "").await);
    let since_dave = next(&app.sync(&dave, "").await);

    // A status shown before hiding, then hidden with a new text, then one written straight
    // into the profile room while hidden.
    let status_path = format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room));
    set_status(&app, &alice, json!({"presence": "online", "status_msg": "secret-before"})).await;
    wait_for(&app, &bob, &status_path, |v| v["status"] == "secret-before").await;
    set_status(&app, &alice, json!({"presence": "offline", "status_msg": "secret-hidden"})).await;
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)),
            Some(&alice.token),
            json!({"status": "secret-direct"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let direct_event = v["event_id"].as_str().unwrap().to_owned();
    // Give the publisher its window, so whatever it writes is in the room too.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    for (viewer, since) in [(&bob, &since_bob), (&dave, &since_dave)] {
        let answers = room_routes(&app, viewer, &room, &direct_event, since).await;
        let leaked: Vec<_> = answers.iter().filter(|(_, v)| v.contains("secret-")).collect();
        assert!(leaked.is_empty(), "{} read a hidden user's status text:\n{leaked:#?}", viewer.user_id);
    }
    // The routes answered (the test is not passing on 403s): the event is there, textless.
    let (code, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&direct_event)), Some(&bob.token))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!((v["type"].as_str(), &v["content"]), (Some("m.status"), &json!({})), "{v}");
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", enc(&room)), Some(&dave.token)).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.status").count() >= 2, "{v}");
    // The m.status event is still there (the status was cleared), just without its text.
    let (code, v) = app.get(&status_path, Some(&bob.token)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, json!({}), "{v}");
    // The owner reads her own text (the room holds the public view, the presence API hers).
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&alice.token)).await;
    assert_eq!(v["status_msg"], "secret-direct", "{v}");

    // Unhiding shows the status again, by the same routes; what was written while hidden was
    // never stored in the room, so it does not surface in its history either.
    set_status(&app, &alice, json!({"presence": "online", "status_msg": "visible-again"})).await;
    wait_for(&app, &bob, &status_path, |v| v["status"] == "visible-again").await;
    let (_, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&direct_event)), Some(&alice.token))
        .await;
    assert_eq!(v["content"], json!({}), "text written while hidden stays out of the room: {v}");
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", enc(&room)), Some(&bob.token)).await;
    let text = v.to_string();
    assert!(
        text.contains("secret-before") && !text.contains("secret-direct") && !text.contains("secret-hidden"),
        "{v}"
    );
}

#[tokio::test]
async fn presence_can_be_restricted_while_the_profile_is_world_readable() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = profile_room(&app, &alice).await;
    let shared = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &shared).await.0, 200);
    let put_state = |kind: &'static str, key: &'static str, body: Value, who: &User| {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/{key}", enc(&room));
        let token = who.token.clone();
        let app = &app;
        async move { app.put(&path, Some(&token), body).await }
    };
    // Validation: only the owner, only the two values, only state key "".
    let vis = "org.matrix.msc3032.presence_visibility";
    let (code, v) = put_state(vis, "", json!({"visibility": "everyone"}), &alice).await;
    common::assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) = put_state(vis, "", json!({}), &alice).await;
    common::assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) = put_state(vis, "x", json!({"visibility": "restricted"}), &alice).await;
    common::assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) = put_state(vis, "", json!({"visibility": "restricted"}), &bob).await;
    common::assert_err(code, &v, 403, "M_FORBIDDEN");
    // A public profile, restricted presence.
    let (code, v) =
        put_state("m.room.history_visibility", "", json!({"history_visibility": "world_readable"}), &alice).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = put_state(vis, "", json!({"visibility": "restricted"}), &alice).await;
    assert_eq!(code, 200, "{v}");
    set_status(&app, &alice, json!({"presence": "busy", "status_msg": "secret-status"})).await;
    let presence_path = format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(&room));
    wait_for(&app, &bob, &presence_path, |v| v["presence"] == "busy").await;

    // carol, a stranger, may read the profile ...
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&carol.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let s = app.sync(&carol, "").await;
    let block = s["rooms"]["peek"][&room].to_string();
    assert!(block.contains("m.profile"), "the profile is public: {s}");
    assert!(!block.contains("\"m.presence\"") && !block.contains("\"m.status\""), "but not presence: {s}");
    let since = next(&s);
    let (code, v) = app.get(&presence_path, Some(&carol.token)).await;
    common::assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.profile/", enc(&room)), Some(&carol.token)).await;
    assert_eq!(code, 200, "{v}");
    // ... by no route does she get presence.
    let (_, presence_event) = app.get(&format!("{presence_path}?format=event"), Some(&bob.token)).await;
    let event_id = presence_event["event_id"].as_str().unwrap().to_owned();
    set_status(&app, &alice, json!({"presence": "unavailable", "status_msg": "secret-later"})).await;
    wait_for(&app, &bob, &presence_path, |v| v["presence"] == "unavailable").await;
    let answers = room_routes(&app, &carol, &room, &event_id, &since).await;
    let leaked: Vec<_> = answers
        .iter()
        .filter(|(_, v)| {
            let v: Value = serde_json::from_str(v).unwrap_or_default();
            v.to_string().contains("secret-") || has_presence_of(&v, &alice.user_id)
        })
        .collect();
    assert!(leaked.is_empty(), "restricted presence reached a stranger:\n{leaked:#?}");
    // bob, who shares a room with alice, still sees it.
    let (_, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&bob.token)).await;
    assert!(v.to_string().contains("\"m.presence\""), "{v}");

    // Back to the default: presence is as visible as the profile.
    let (code, v) = put_state(vis, "", json!({"visibility": "profile"}), &alice).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app.get(&presence_path, Some(&carol.token)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["presence"], "unavailable");
}
