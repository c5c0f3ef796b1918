//! Presence as clients and the proposals expect it (issue 9, presence semantics): activity of
//! every kind lifts a device, phones stay reachable for a grace, `busy` on the legacy wire,
//! presence reaching new room-mates, presence-list requests in `/sync`, operator switches.
//! Test timings (see `common::test_config`): device timeout 600 ms, idle after 800 ms,
//! currently_active for 400 ms; tests widen them where a phase must be observed.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_err, enc, presence_status as status, wait_presence_status as wait_status, TestApp, User};
use serde_json::{json, Value};

const V3: &str = "/_matrix/client/v3";
const BUSY_3026: &str = "org.matrix.msc3026.busy";

/// Keep a device live by syncing every 100 ms with the given query.
fn keep_syncing(app: &Arc<TestApp>, user: &User, query: &str) -> tokio::task::JoinHandle<()> {
    let (app, user, query) = (app.clone(), user.clone(), query.to_owned());
    tokio::spawn(async move {
        loop {
            app.sync(&user, &format!("timeout=0&{query}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn status_path(of: &User) -> String {
    format!("{V3}/presence/{}/status", enc(&of.user_id))
}

/// alice and bob in one room.
async fn pair_with(tweak: impl FnOnce(&mut seed::config::Config)) -> (Arc<TestApp>, User, User, String) {
    let app = Arc::new(TestApp::spawn_with(tweak).await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (code, v) = app.join(&bob, &room).await;
    assert_eq!(code, 200, "{v}");
    (app, alice, bob, room)
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The legacy `m.presence` event for `of` in a sync response, if any.
fn presence_of<'a>(sync: &'a Value, of: &User) -> Option<&'a Value> {
    sync["presence"]["events"].as_array()?.iter().find(|e| e["sender"] == of.user_id.as_str())
}

// --- activity (seed 001) ---

#[tokio::test]
async fn typing_receipts_and_read_markers_are_activity() {
    let (app, alice, bob, room) = pair_with(|c| {
        c.presence_currently_active_ms = 300;
        c.presence_idle_after_ms = 1_000;
    })
    .await;
    let event = app.send_text(&bob, &room, "read me").await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    let typing = format!("{V3}/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id));
    let acts = [
        ("typing", typing.clone(), json!({"typing": true, "timeout": 5000})),
        ("receipt", format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event)), json!({})),
        ("read marker", format!("{V3}/rooms/{}/read_markers", enc(&room)), json!({"m.fully_read": event})),
        ("stopped typing", typing, json!({"typing": false})),
    ];
    for (what, path, body) in acts {
        wait_status(&app, &bob, &alice, "idle", |v| v["presence"] == "unavailable").await;
        let method = if path.contains("/typing/") { reqwest::Method::PUT } else { reqwest::Method::POST };
        let (code, v) = app.raw(method, &path, Some(&alice.token), Some(common::RawBody::Json(body))).await;
        assert_eq!(code, 200, "{what}: {v}");
        let v = status(&app, &bob, &alice).await;
        assert_eq!(v["presence"], "online", "{what} is activity: {v}");
        assert!(v["last_active_ago"].as_i64().unwrap() < 500, "{what} bumps last_active: {v}");
    }
    d.abort();
}

#[tokio::test]
async fn activity_lifts_a_device_that_reported_unavailable_until_it_reports_something_new() {
    // Idleness is not under test: a long idle timeout keeps it out of the way.
    let (app, alice, bob, room) = pair_with(|c| c.presence_idle_after_ms = 60_000).await;
    let d = keep_syncing(&app, &alice, "set_presence=unavailable");
    wait_status(&app, &bob, &alice, "unavailable as reported", |v| v["presence"] == "unavailable").await;
    app.send_text(&alice, &room, "here after all").await;
    assert_eq!(status(&app, &bob, &alice).await["presence"], "online", "activity lifts the device");
    // Repeating the same report is not news: still online after several more syncs.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(status(&app, &bob, &alice).await["presence"], "online", "repeat reports keep the lift");
    d.abort();
    // A different report ends the lift; the device is authoritative again.
    app.sync(&alice, "timeout=0&set_presence=online").await;
    app.sync(&alice, "timeout=0&set_presence=unavailable").await;
    assert_eq!(status(&app, &bob, &alice).await["presence"], "unavailable");
    // Bad input on the activity routes is a Matrix error, never a 500.
    let (code, v) = app
        .put(
            &format!("{V3}/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            Some(&alice.token),
            json!({"typing": "yes"}),
        )
        .await;
    assert_err(code, &v, 400, "M_BAD_JSON");
    let (code, v) =
        app.post(&format!("{V3}/rooms/{}/receipt/m.read/%24nope", enc(&room)), Some(&alice.token), json!({})).await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
}

// --- smartphones ---

#[tokio::test]
async fn a_silent_phone_stays_unavailable_for_its_grace_then_goes_offline() {
    let (app, alice, bob, _) = pair_with(|c| {
        c.presence_idle_after_ms = 60_000;
        c.presence_mobile_grace_ms = 1_000;
    })
    .await;
    let phone = app.login("alice", "PHONE").await;
    app.sync(&phone, "timeout=0&set_presence=busy&org.matrix.msc3032.device_kind=mobile").await;
    assert_eq!(status(&app, &bob, &alice).await["presence"], BUSY_3026);
    // Silent for the device timeout: reachable, not offline, and still "on a phone".
    let v = wait_status(&app, &bob, &alice, "unavailable phone", |v| v["presence"] == "unavailable").await;
    assert_eq!(v["org.matrix.msc3032.device_kinds"], json!(["mobile"]), "{v}");
    let started = Instant::now();
    wait_status(&app, &bob, &alice, "offline after the grace", |v| v["presence"] == "offline").await;
    assert!(started.elapsed() >= Duration::from_millis(700), "the grace was cut short");
    // A desktop gets no grace.
    app.sync(&alice, "timeout=0&set_presence=online").await;
    wait_status(&app, &bob, &alice, "online desktop", |v| v["presence"] == "online").await;
    wait_status(&app, &bob, &alice, "desktop straight to offline", |v| v["presence"] != "online").await;
    assert_eq!(status(&app, &bob, &alice).await["presence"], "offline");
}

// --- busy on the wire (MSC3026) ---

async fn profile_room(app: &TestApp, of: &User) -> String {
    let (code, v) = app.get(&format!("{V3}/profile/{}", enc(&of.user_id)), Some(&of.token)).await;
    assert_eq!(code, 200, "{v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

/// Poll the owner's profile room until its `m.presence` says `want` (at most 5 s).
async fn wait_profile_presence(app: &TestApp, owner: &User, room: &str, want: &str) {
    let start = Instant::now();
    loop {
        let (code, st) = app.get(&format!("{V3}/rooms/{}/state/m.presence/", enc(room)), Some(&owner.token)).await;
        if code == 200 && st["presence"] == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "profile room m.presence {want}: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn busy_is_spelled_org_matrix_msc3026_busy_on_legacy_paths_and_busy_in_the_profile_room() {
    let (app, alice, bob, _) = pair_with(|_| {}).await;
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    let d = keep_syncing(&app, &alice, "set_presence=busy");
    let v = wait_status(&app, &bob, &alice, "busy", |v| v["presence"] == BUSY_3026).await;
    assert_eq!(status(&app, &alice, &alice).await["presence"], BUSY_3026, "own view too: {v}");
    let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(presence_of(&s, &alice).expect("presence in /sync")["content"]["presence"], BUSY_3026, "{s}");
    // The presence list speaks the same.
    app.post(
        &format!("{V3}/presence/list/{}", enc(&bob.user_id)),
        Some(&bob.token),
        json!({"invite": [alice.user_id]}),
    )
    .await;
    app.post(
        &format!("/_matrix/client/unstable/org.matrix.msc3032/presence/list/{}/accept", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"user_id": bob.user_id}),
    )
    .await;
    let (_, list) = app.get(&format!("{V3}/presence/list/{}", enc(&bob.user_id)), Some(&bob.token)).await;
    assert_eq!(list[0]["content"]["presence"], BUSY_3026, "{list}");
    // The profile room's m.presence is MSC3032's own event: plain `busy`.
    let room = profile_room(&app, &alice).await;
    wait_profile_presence(&app, &alice, &room, "busy").await;
    d.abort();
}

#[tokio::test]
async fn legacy_busy_as_picks_the_spelling_for_old_clients() {
    for (choice, wire) in [
        (seed::presence::policy::LegacyBusy::Busy, "busy"),
        (seed::presence::policy::LegacyBusy::Unavailable, "unavailable"),
        (seed::presence::policy::LegacyBusy::Online, "online"),
    ] {
        let (app, alice, bob, _) = pair_with(|c| c.legacy_busy_as = choice).await;
        let since = next_batch(&app.sync(&bob, "timeout=0").await);
        app.sync(&alice, "timeout=0&set_presence=online").await;
        app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "busy"})).await;
        assert_eq!(status(&app, &bob, &alice).await["presence"], wire);
        let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
        assert_eq!(presence_of(&s, &alice).expect("presence")["content"]["presence"], wire, "{s}");
    }
}

// --- presence reaches people when they become able to see it ---

#[tokio::test]
async fn new_room_mates_get_each_others_presence_in_the_next_incremental_sync() {
    let app = Arc::new(TestApp::spawn_with(|c| c.presence_idle_after_ms = 60_000).await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    // Everyone is live with a distinctive status, and nobody shares a room yet.
    for (u, msg) in [(&alice, "alice here"), (&bob, "bob here"), (&carol, "carol here")] {
        app.sync(u, "timeout=0").await;
        app.put(&status_path(u), Some(&u.token), json!({"presence": "unavailable", "status_msg": msg})).await;
    }
    let keep = [
        keep_syncing(&app, &alice, "set_presence=unavailable"),
        keep_syncing(&app, &bob, "set_presence=unavailable"),
        keep_syncing(&app, &carol, "set_presence=unavailable"),
    ];
    let alice_since = next_batch(&app.sync(&alice, "timeout=0").await);
    let bob_since = next_batch(&app.sync(&bob, "timeout=0").await);
    assert!(presence_of(&app.sync(&bob, "timeout=0").await, &alice).is_none(), "strangers see nothing");

    // An invite accepted: alice invites bob, bob joins. Nobody's presence changes.
    let room = app.create_room(&alice, json!({"invite": [bob.user_id]})).await;
    let (code, v) = app.join(&bob, &room).await;
    assert_eq!(code, 200, "{v}");
    let s = app.sync(&bob, &format!("since={bob_since}&timeout=0")).await;
    let ev = presence_of(&s, &alice).unwrap_or_else(|| panic!("bob gets alice's presence: {s}"));
    assert_eq!(
        (ev["content"]["presence"].as_str(), ev["content"]["status_msg"].as_str()),
        (Some("unavailable"), Some("alice here"))
    );
    let s = app.sync(&alice, &format!("since={alice_since}&timeout=0")).await;
    let ev = presence_of(&s, &bob).unwrap_or_else(|| panic!("alice gets bob's presence: {s}"));
    assert_eq!(ev["content"]["status_msg"], "bob here");
    // The one after that does not repeat it.
    let s2 = app.sync(&alice, &format!("since={}&timeout=0", next_batch(&s))).await;
    assert!(presence_of(&s2, &bob).is_none(), "sent once: {s2}");

    // A join of a public room: carol comes in, the long-polling members learn of her at once.
    let (code, v) = app
        .put(
            &format!("{V3}/rooms/{}/state/m.room.join_rules/", enc(&room)),
            Some(&alice.token),
            json!({"join_rule": "public"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let since = next_batch(&app.sync(&alice, "timeout=0").await);
    let query = format!("since={since}&timeout=10000");
    let (s, _) = tokio::join!(app.sync(&alice, &query), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.join(&carol, &room).await
    });
    let s = if presence_of(&s, &carol).is_some() {
        s
    } else {
        // The join may have woken the poll before the presence position was visible.
        app.sync(&alice, &format!("since={since}&timeout=0")).await
    };
    let ev = presence_of(&s, &carol).unwrap_or_else(|| panic!("alice gets carol's presence: {s}"));
    assert_eq!(ev["content"]["status_msg"], "carol here");
    for k in keep {
        k.abort();
    }
}

// --- presence-list requests reach the target through /sync ---

fn presence_requests(sync: &Value) -> Option<&Value> {
    sync["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "org.matrix.msc3032.presence_requests")
        .map(|e| &e["content"])
}

#[tokio::test]
async fn a_presence_list_request_reaches_the_target_through_sync() {
    let app = Arc::new(TestApp::spawn().await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let since = next_batch(&app.sync(&alice, "timeout=0").await);
    let started = Instant::now();
    let query = format!("since={since}&timeout=10000");
    let (s, (code, v)) = tokio::join!(app.sync(&alice, &query), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.post(
            &format!("{V3}/presence/list/{}", enc(&bob.user_id)),
            Some(&bob.token),
            json!({"invite": [alice.user_id]}),
        )
        .await
    });
    assert_eq!(code, 200, "{v}");
    assert!(started.elapsed() < Duration::from_secs(5), "the request wakes the target's long-poll");
    let req = presence_requests(&s).unwrap_or_else(|| panic!("request in account data: {s}"));
    assert_eq!(req["requests"], json!([{"user_id": bob.user_id}]));
    assert_eq!(req["count"], 1);
    // An initial sync shows it too (it is ordinary global account data).
    assert!(presence_requests(&app.sync(&alice, "timeout=0").await).is_some());
    // Answering empties it, in the next incremental sync.
    let since = next_batch(&s);
    app.post(
        &format!("/_matrix/client/unstable/org.matrix.msc3032/presence/list/{}/accept", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"user_id": bob.user_id}),
    )
    .await;
    let s = app.sync(&alice, &format!("since={since}&timeout=0")).await;
    let req = presence_requests(&s).unwrap_or_else(|| panic!("answered: {s}"));
    assert_eq!(req["requests"], json!([]));
    assert_eq!(req["count"], 0);
    // Nothing new, nothing written: the next sync carries no presence_requests event.
    let s2 = app.sync(&alice, &format!("since={}&timeout=0", next_batch(&s))).await;
    assert!(presence_requests(&s2).is_none(), "{s2}");
}

// --- operator switches ---

#[tokio::test]
async fn presence_mode_disabled_tracks_and_sends_nothing() {
    let (app, alice, bob, _) = pair_with(|c| c.presence_mode = seed::presence::policy::PresenceMode::Disabled).await;
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    app.sync(&alice, "timeout=0&set_presence=online").await;
    let (code, v) =
        app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "busy", "status_msg": "x"})).await;
    assert_eq!(code, 200, "accepted and ignored: {v}");
    let v = status(&app, &bob, &alice).await;
    assert_eq!(v["presence"], "offline", "{v}");
    assert!(v.get("status_msg").is_none(), "{v}");
    assert_eq!(status(&app, &alice, &alice).await["presence"], "offline");
    let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert!(presence_of(&s, &alice).is_none(), "{s}");
    assert!(presence_of(&app.sync(&alice, "timeout=0").await, &alice).is_none());
    // Bad input is still refused.
    let (code, v) = app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "away"})).await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn presence_mode_untracked_keeps_own_presence_and_sends_none_of_others() {
    let (app, alice, bob, _) = pair_with(|c| c.presence_mode = seed::presence::policy::PresenceMode::Untracked).await;
    let since = next_batch(&app.sync(&bob, "timeout=0").await);
    let alice_since = next_batch(&app.sync(&alice, "timeout=0").await);
    app.sync(&alice, "timeout=0&set_presence=online").await;
    app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "busy", "status_msg": "call"})).await;
    let own = status(&app, &alice, &alice).await;
    assert_eq!((own["presence"].as_str(), own["status_msg"].as_str()), (Some(BUSY_3026), Some("call")));
    let s = app.sync(&alice, &format!("since={alice_since}&timeout=0")).await;
    assert_eq!(presence_of(&s, &alice).expect("own presence")["content"]["presence"], BUSY_3026, "{s}");
    // Others get nothing of it on the legacy paths.
    let v = status(&app, &bob, &alice).await;
    assert_eq!(v["presence"], "offline", "{v}");
    assert!(v.get("status_msg").is_none(), "{v}");
    let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert!(presence_of(&s, &alice).is_none(), "{s}");
    assert!(presence_of(&app.sync(&bob, "timeout=0").await, &alice).is_none());
    // It is still published: the profile room's m.presence follows.
    let room = profile_room(&app, &alice).await;
    wait_profile_presence(&app, &alice, &room, "busy").await;
}

#[tokio::test]
async fn initial_sync_leaves_out_offline_users_unless_configured() {
    for include in [false, true] {
        let (app, alice, bob, _) = pair_with(|c| c.presence_initial_sync_offline = include).await;
        // alice has presence data (a status) but no live device: offline.
        app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "online", "status_msg": "gone"})).await;
        wait_status(&app, &bob, &alice, "offline", |v| v["presence"] == "offline").await;
        let s = app.sync(&bob, "timeout=0").await;
        assert_eq!(presence_of(&s, &alice).is_some(), include, "include offline = {include}: {s}");
        // An online user is always in it.
        app.sync(&alice, "timeout=0").await;
        let s = app.sync(&bob, "timeout=0").await;
        assert_eq!(presence_of(&s, &alice).expect("online user")["content"]["presence"], "online");
    }
}

#[tokio::test]
async fn rooms_over_the_member_limit_grant_no_presence() {
    let (app, alice, bob, room) = pair_with(|c| c.presence_max_room_members = 2).await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    wait_status(&app, &bob, &alice, "online", |v| v["presence"] == "online").await;
    let carol = app.register("carol").await;
    let (code, v) = app.join(&carol, &room).await;
    assert_eq!(code, 200, "{v}");
    // Three members: the room no longer grants visibility, by any legacy route.
    let (code, v) = app.get(&status_path(&alice), Some(&bob.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    assert!(presence_of(&app.sync(&bob, "timeout=0").await, &alice).is_none());
    // A small room still does.
    let small = app.create_room(&alice, json!({"invite": [carol.user_id]})).await;
    app.join(&carol, &small).await;
    assert_eq!(status(&app, &carol, &alice).await["presence"], "online");
    d.abort();
}

#[tokio::test]
async fn legacy_peek_routes_carry_the_owners_legacy_presence() {
    let (app, alice, bob, _) = pair_with(|_| {}).await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    wait_status(&app, &bob, &alice, "online", |v| v["presence"] == "online").await;
    let room = profile_room(&app, &alice).await;
    wait_profile_presence(&app, &alice, &room, "online").await;
    let (code, init) = app.get(&format!("{V3}/rooms/{}/initialSync", enc(&room)), Some(&bob.token)).await;
    assert_eq!(code, 200, "{init}");
    assert_eq!(init["presence"][0]["sender"], alice.user_id.as_str(), "{init}");
    assert_eq!(init["presence"][0]["type"], "m.presence");
    let from = init["messages"]["end"].as_str().unwrap().to_owned();
    let path = format!("{V3}/events?room_id={}&from={from}&timeout=10000", enc(&room));
    let ((code, v), _) = tokio::join!(app.get(&path, Some(&bob.token)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.put(&status_path(&alice), Some(&alice.token), json!({"presence": "busy"})).await
    });
    assert_eq!(code, 200, "{v}");
    let chunk = v["chunk"].as_array().unwrap();
    // The room's own state event says `busy`; the legacy presence event beside it MSC3026's.
    assert!(
        chunk.iter().any(|e| e["type"] == "m.presence" && e["state_key"] == "" && e["content"]["presence"] == "busy"),
        "{v}"
    );
    assert!(
        chunk.iter().any(|e| e["type"] == "m.presence"
            && e.get("state_key").is_none()
            && e["content"]["presence"] == BUSY_3026),
        "{v}"
    );
    // Strangers get neither.
    let eve = app.register("eve").await;
    let (code, v) = app.get(&format!("{V3}/rooms/{}/initialSync", enc(&room)), Some(&eve.token)).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    d.abort();
}
