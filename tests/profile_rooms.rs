//! Profile rooms (MSC1769) carrying presence (MSC3032), and subscribing by peeking (MSC2753).
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_err, enc, TestApp, User};
use serde_json::{json, Value};

const PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";

async fn profile_room(app: &TestApp, of: &User) -> String {
    let (code, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&of.user_id)), None).await;
    assert_eq!(code, 200, "{v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

async fn set_presence(app: &TestApp, user: &User, presence: &str, msg: Option<&str>) {
    let mut body = json!({"presence": presence});
    if let Some(m) = msg {
        body["status_msg"] = json!(m);
    }
    let (code, v) =
        app.put(&format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id)), Some(&user.token), body).await;
    assert_eq!(code, 200, "{v}");
}

fn peek_block<'a>(sync: &'a Value, room: &str) -> &'a Value {
    &sync["rooms"]["peek"][room]
}

/// All `m.presence` state events in a peek block (state + timeline), oldest first.
fn presence_events(block: &Value) -> Vec<Value> {
    let mut out = vec![];
    for part in ["state", "timeline"] {
        if let Some(evs) = block[part]["events"].as_array() {
            out.extend(evs.iter().filter(|e| e["type"] == "m.presence").cloned());
        }
    }
    out
}

async fn shared_room(app: &TestApp, a: &User, b: &User) -> String {
    let room = app.create_room(a, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(b, &room).await.0, 200);
    room
}

#[tokio::test]
async fn registration_creates_the_profile_room() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    let (code, state) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
    assert_eq!(code, 200, "{state}");
    let get = |t: &str| {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} in {state}"))
    };
    assert_eq!(get("m.room.create")["content"]["type"], "org.matrix.msc1769.profile");
    assert_eq!(get("m.room.power_levels")["content"]["users"][&alice.user_id], 100);
    assert_eq!(get("m.room.power_levels")["content"]["users_default"], 0);
    assert_eq!(get("m.presence")["state_key"], "");
    assert_eq!(get("m.presence")["content"]["presence"], "offline");
    assert_eq!(get("m.presence")["sender"], alice.user_id.as_str());
    assert!(get("m.status")["content"].is_object());
    assert_eq!(get("m.room.name")["content"]["name"], "alice");
    assert_eq!(get("m.profile")["content"]["m.profile"]["fn"], "alice");
    // MSC1769's alias finds it too.
    let (code, v) = app.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#@alice:localhost")), None).await;
    assert_eq!(code, 200);
    assert_eq!(v["room_id"], room.as_str());
    // Display name changes reach the profile room.
    app.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"displayname": "Alice"}),
    )
    .await;
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), Some(&alice.token)).await;
    assert_eq!(v["name"], "Alice");
}

#[tokio::test]
async fn presence_reaches_a_peeker_through_sync_quickly() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["room_id"], room.as_str());
    let first = app.sync(&bob, "").await;
    let block = peek_block(&first, &room);
    assert_eq!(presence_events(block).last().expect("state on first sync")["content"]["presence"], "offline");
    let mut next = first["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let changer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        set_presence(&app, &alice, "busy", Some("on a call")).await
    };
    let watcher = async {
        // Long-poll until the new m.presence state arrives in the peeked profile room (the
        // legacy m.presence event may come first, in an earlier response).
        loop {
            let s = app.sync(&bob, &format!("since={next}&timeout=20000")).await;
            next = s["next_batch"].as_str().unwrap().to_owned();
            if let Some(latest) = presence_events(peek_block(&s, &room)).last() {
                if latest["content"]["presence"] == "busy" {
                    return latest.clone();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no busy m.presence in the peek: {s}");
        }
    };
    let (latest, _) = tokio::join!(watcher, changer);
    let took = started.elapsed();
    assert!(latest["content"]["last_active_ts"].as_i64().unwrap() > 0);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // m.status followed the status message.
    let (_, st) = app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)), Some(&bob.token)).await;
    assert_eq!(st["status"], "on a call");
}

#[tokio::test]
async fn strangers_cannot_peek_or_initial_sync() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let room = profile_room(&app, &alice).await;
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&carol.token), json!({})).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    let (code, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)), Some(&carol.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    let (code, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&carol.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/events?room_id={}&timeout=0", enc(&room)), Some(&carol.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    // Unknown room, and unpeeking what one does not peek.
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc("!nope:localhost")), Some(&carol.token), json!({})).await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&carol.token), json!({})).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    // The owner makes the profile public: now anyone may peek.
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/", enc(&room)),
            Some(&alice.token),
            json!({"history_visibility": "world_readable"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&carol.token), json!({})).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn leaving_the_last_shared_room_stops_the_updates() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let shared = shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    let next = app.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&shared)), Some(&bob.token), json!({})).await;
    let s = app.sync(&bob, &format!("since={next}&timeout=5000")).await;
    assert!(s["rooms"]["leave"][&room].is_object(), "the client is told the peek ended: {s}");
    let next = s["next_batch"].as_str().unwrap().to_owned();
    set_presence(&app, &alice, "busy", Some("secret")).await;
    let s = app.sync(&bob, &format!("since={next}&timeout=500")).await;
    assert!(s["rooms"]["peek"].get(&room).is_none(), "no more updates: {s}");
    assert!(s.to_string().find("secret").is_none(), "{s}");
    let (code, _) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn hidden_user_shows_offline_in_the_profile_room() {
    let app = Arc::new(TestApp::spawn().await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    set_presence(&app, &alice, "online", None).await;
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(&room));
    let start = Instant::now();
    loop {
        let (_, v) = app.get(&path, Some(&bob.token)).await;
        if v["presence"] == "online" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set_presence(&app, &alice, "offline", Some("hiding")).await;
    let start = Instant::now();
    loop {
        let (_, v) = app.get(&path, Some(&bob.token)).await;
        if v["presence"] == "offline" {
            assert!(v.get("last_active_ts").is_none(), "hidden leaks activity: {v}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, st) = app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)), Some(&bob.token)).await;
    assert!(st.get("status").is_none(), "hidden users show no status: {st}");
    // The owner still sees the truth through the presence API.
    let (_, own) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&alice.token)).await;
    assert_eq!(own["presence"], "online");
}

#[tokio::test]
async fn users_cannot_send_m_presence_but_may_set_m_status() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(&room)),
            Some(&alice.token),
            json!({"presence": "online"}),
        )
        .await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)),
            Some(&alice.token),
            json!({"status": "gardening"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&bob.token)).await;
    assert_eq!(v["status_msg"], "gardening", "the presence API follows m.status: {v}");
    // Others have no power in the profile room.
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)),
            Some(&bob.token),
            json!({"status": "x"}),
        )
        .await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn rapid_changes_are_coalesced_but_the_last_one_is_published() {
    let app = TestApp::spawn_with(|c| c.presence_publish_window_ms = 100).await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    for i in 0..100 {
        let p = if i % 2 == 0 { "busy" } else { "unavailable" };
        set_presence(&app, &alice, p, Some(&format!("n{i}"))).await;
    }
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room));
    let start = Instant::now();
    loop {
        let (_, v) = app.get(&path, Some(&alice.token)).await;
        if v["status"] == "n99" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "last change never published: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // m.status is written just before m.presence: wait for the presence too.
    let presence_path = format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(&room));
    loop {
        let (_, v) = app.get(&presence_path, Some(&alice.token)).await;
        if v["presence"] == "unavailable" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "last presence never published: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, msgs) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", enc(&room)), Some(&alice.token))
        .await;
    let written = msgs["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.presence").count();
    assert!(written < 50, "{written} m.presence events for 100 changes");
}

#[tokio::test]
async fn legacy_events_long_poll_gets_the_change() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    let (code, init) = app.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)), Some(&bob.token)).await;
    assert_eq!(code, 200, "{init}");
    assert!(init["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.presence"));
    let from = init["messages"]["end"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/events?room_id={}&from={from}&timeout=20000", enc(&room));
    let started = Instant::now();
    let ((code, v), _) = tokio::join!(app.get(&path, Some(&bob.token)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        set_presence(&app, &alice, "busy", None).await
    });
    assert_eq!(code, 200, "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let chunk = v["chunk"].as_array().unwrap();
    assert!(chunk.iter().any(|e| e["type"] == "m.presence" && e["content"]["presence"] == "busy"), "{v}");
}

#[tokio::test]
async fn peeks_survive_sync_restarts_and_end_on_unpeek_and_logout() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    shared_room(&app, &alice, &bob).await;
    let room = profile_room(&app, &alice).await;
    app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    let s1 = app.sync(&bob, "").await;
    assert!(peek_block(&s1, &room).is_object());
    // A fresh initial sync (client restarted) still shows the peek.
    let s2 = app.sync(&bob, "").await;
    assert!(peek_block(&s2, &room).is_object());
    // Only the device that peeked sees it.
    let bob2 = app.login("bob", "OTHER").await;
    assert!(app.sync(&bob2, "").await["rooms"]["peek"].get(&room).is_none());
    let next = s2["next_batch"].as_str().unwrap().to_owned();
    let (code, _) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 200);
    let s3 = app.sync(&bob, &format!("since={next}&timeout=2000")).await;
    assert!(s3["rooms"]["leave"][&room].is_object(), "{s3}");
    assert!(app.sync(&bob, "").await["rooms"]["peek"].get(&room).is_none());
    // Logout ends peeks.
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob2.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app.post("/_matrix/client/v3/logout", Some(&bob2.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let bob3 = app.login("bob", "OTHER").await;
    let s = app.sync(&bob3, "").await;
    assert!(s["rooms"]["peek"].get(&room).is_none(), "{s}");
}

async fn state_content(app: &TestApp, user: &User, room: &str, kind: &str, key: &str) -> Value {
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/{}", enc(room), enc(key)), Some(&user.token)).await;
    assert_eq!(code, 200, "{kind}: {v}");
    v
}

#[tokio::test]
async fn a_profile_change_updates_only_its_own_field_of_m_profile() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    // A client adds its own fields to m.profile (MSC1769's vCard), inside and beside "m.profile".
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.profile/", enc(&room)),
            Some(&alice.token),
            json!({"m.profile": {"fn": "alice", "org": "Acme", "title": "Shrimp Man"}, "org.example.extra": 1}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let put = |path: &'static str, body: Value| {
        let app = &app;
        let alice = &alice;
        async move {
            let (code, v) = app
                .put(&format!("/_matrix/client/v3/profile/{}/{path}", enc(&alice.user_id)), Some(&alice.token), body)
                .await;
            assert_eq!(code, 200, "{v}");
        }
    };
    put("displayname", json!({"displayname": "Alice A."})).await;
    let p = state_content(&app, &alice, &room, "m.profile", "").await;
    assert_eq!(p["m.profile"]["fn"], "Alice A.", "{p}");
    assert_eq!(p["m.profile"]["org"], "Acme", "client fields are kept: {p}");
    assert_eq!(p["m.profile"]["title"], "Shrimp Man", "{p}");
    assert_eq!(p["org.example.extra"], 1, "{p}");
    put("avatar_url", json!({"avatar_url": "mxc://localhost/abc"})).await;
    let p = state_content(&app, &alice, &room, "m.profile", "").await;
    assert_eq!(p["m.profile"]["photo"], "mxc://localhost/abc", "{p}");
    assert_eq!(p["m.profile"]["fn"], "Alice A.", "an avatar change leaves the name alone: {p}");
    assert_eq!(p["m.profile"]["org"], "Acme", "{p}");
    assert_eq!(state_content(&app, &alice, &room, "m.room.avatar", "").await["url"], "mxc://localhost/abc");
    put("avatar_url", json!({"avatar_url": null})).await;
    let p = state_content(&app, &alice, &room, "m.profile", "").await;
    assert!(p["m.profile"].get("photo").is_none(), "removing the avatar removes only photo: {p}");
    assert_eq!(p["m.profile"]["fn"], "Alice A.", "{p}");
    assert_eq!(p["org.example.extra"], 1, "{p}");
    assert_eq!(state_content(&app, &alice, &room, "m.room.name", "").await["name"], "Alice A.");
}

#[tokio::test]
async fn the_creators_join_carries_displayname_and_avatar() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for (path, body) in [
        ("displayname", json!({"displayname": "Alice Liddell"})),
        ("avatar_url", json!({"avatar_url": "mxc://localhost/rabbit"})),
    ] {
        let (code, v) = app
            .put(&format!("/_matrix/client/v3/profile/{}/{path}", enc(&alice.user_id)), Some(&alice.token), body)
            .await;
        assert_eq!(code, 200, "{v}");
    }
    for preset in ["public_chat", "private_chat", "trusted_private_chat"] {
        let room = app.create_room(&alice, json!({"preset": preset})).await;
        let m = state_content(&app, &alice, &room, "m.room.member", &alice.user_id).await;
        assert_eq!(m["membership"], "join", "{m}");
        assert_eq!(m["displayname"], "Alice Liddell", "{preset}: {m}");
        assert_eq!(m["avatar_url"], "mxc://localhost/rabbit", "{preset}: {m}");
    }
    // The profile room, created at registration, does it too (and writes no null fields).
    let bob = app.register("bob").await;
    let room = profile_room(&app, &bob).await;
    let m = state_content(&app, &bob, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(m["displayname"], "bob", "{m}");
    assert!(m.get("avatar_url").is_none(), "no null avatar_url: {m}");
}

/// The publisher writes one window's changes of many users as one batch (multi-row statements,
/// issue #13): every room gets its own `m.status` then `m.presence`, in order, and all of it
/// is what a restarted server reads back and builds on.
#[tokio::test]
async fn a_window_of_changes_by_many_users_is_written_whole_and_survives_a_restart() {
    let mut app = TestApp::spawn_with(|c| c.presence_publish_window_ms = 400).await;
    let mut users = vec![];
    for i in 0..6 {
        let u = app.register(&format!("batch{i}")).await;
        let room = profile_room(&app, &u).await;
        users.push((u, room));
    }
    // Let the registrations' own presence writes pass, then change everyone inside one window.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for (i, (u, _)) in users.iter().enumerate() {
        let p = if i % 2 == 0 { "unavailable" } else { "online" };
        set_presence(&app, u, p, Some(&format!("batch message {i}"))).await;
    }
    let start = Instant::now();
    for (i, (u, room)) in users.iter().enumerate() {
        let want = if i % 2 == 0 { "unavailable" } else { "online" };
        loop {
            let presence = state_content(&app, u, room, "m.presence", "").await;
            if presence["presence"] == want {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{}: {presence}", u.user_id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    check_batch(&app, &users, "before").await;
    app.restart().await;
    check_batch(&app, &users, "before").await;
    // The restarted server continues each room's state from what the batch wrote.
    for (i, (u, _)) in users.iter().enumerate() {
        set_presence(&app, u, "busy", Some(&format!("after {i}"))).await;
    }
    let start = Instant::now();
    for (u, room) in &users {
        loop {
            let presence = state_content(&app, u, room, "m.presence", "").await;
            if presence["presence"] == "org.matrix.msc3026.busy" || presence["presence"] == "busy" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{}: {presence}", u.user_id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    check_batch(&app, &users, "after").await;
}

/// Each profile room's `m.status` says what `round` set, and the event written right after
/// that `m.status` is the same change's `m.presence` (the batch keeps each room's order).
async fn check_batch(app: &TestApp, users: &[(User, String)], round: &str) {
    for (i, (u, room)) in users.iter().enumerate() {
        let status = state_content(app, u, room, "m.status", "").await;
        let msg = if round == "after" { format!("after {i}") } else { format!("batch message {i}") };
        assert_eq!(status["status"], json!(msg), "{round} {}: {status}", u.user_id);
        let (code, msgs) =
            app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10", enc(room)), Some(&u.token)).await;
        assert_eq!(code, 200, "{msgs}");
        let chunk = msgs["chunk"].as_array().unwrap();
        let at = chunk.iter().position(|e| e["type"] == "m.status" && e["content"]["status"] == json!(msg));
        let at = at.unwrap_or_else(|| panic!("{round} {}: no m.status {msg:?} in {msgs}", u.user_id));
        assert!(at > 0 && chunk[at - 1]["type"] == "m.presence", "{round} {}: {msgs}", u.user_id);
    }
}
