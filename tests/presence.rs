//! The effective-presence engine over HTTP (MSC3032): per-device reports, the manual status,
//! idle and timeout decay, hidden, device kind, and the legacy views of it.
//! Test timings (see `common::test_config`): device timeout 600 ms, idle after 800 ms,
//! currently_active for 400 ms.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_err, enc, presence_status as status, wait_presence_status as wait_status, RawBody, TestApp, User};
use reqwest::Method;
use serde_json::json;

/// Keep a device live by syncing every 100 ms with `set_presence` (and extra query).
fn keep_syncing(app: &Arc<TestApp>, user: &User, query: &str) -> tokio::task::JoinHandle<()> {
    let (app, user, query) = (app.clone(), user.clone(), query.to_owned());
    tokio::spawn(async move {
        loop {
            app.sync(&user, &format!("timeout=0&{query}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn pair() -> (Arc<TestApp>, User, User) {
    pair_with(|_| {}).await
}

async fn pair_with(tweak: impl FnOnce(&mut seed::config::Config)) -> (Arc<TestApp>, User, User) {
    let app = Arc::new(TestApp::spawn_with(tweak).await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    (app, alice, bob)
}

#[tokio::test]
async fn busy_device_wins_then_online_device_decides() {
    // Idleness is not under test here: keep the online device from going idle.
    let (app, alice, bob) = pair_with(|c| c.presence_idle_after_ms = 60_000).await;
    let phone = app.login("alice", "PHONE").await;
    let laptop = keep_syncing(&app, &alice, "set_presence=online");
    let call = keep_syncing(&app, &phone, "set_presence=busy");
    wait_status(&app, &bob, &alice, "busy", |v| v["presence"] == "org.matrix.msc3026.busy").await;
    // The device on a call stops syncing: after the device timeout the laptop decides.
    call.abort();
    wait_status(&app, &bob, &alice, "online again", |v| v["presence"] == "online").await;
    laptop.abort();
    wait_status(&app, &bob, &alice, "offline when every device is silent", |v| v["presence"] == "offline").await;
}

#[tokio::test]
async fn unstable_busy_spelling_is_accepted() {
    let (app, alice, bob) = pair().await;
    let d = keep_syncing(&app, &alice, "set_presence=org.matrix.msc3026.busy");
    wait_status(&app, &bob, &alice, "busy", |v| v["presence"] == "org.matrix.msc3026.busy").await;
    d.abort();
}

#[tokio::test]
async fn idle_device_decays_to_unavailable_and_activity_restores_it() {
    // Wider windows than the defaults so a loaded CI machine still sees each phase.
    let (app, alice, bob) = pair_with(|c| {
        c.presence_currently_active_ms = 1_000;
        c.presence_idle_after_ms = 2_000;
    })
    .await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    let v = wait_status(&app, &bob, &alice, "online", |v| v["presence"] == "online").await;
    assert_eq!(v["currently_active"], true, "{v}");
    // No pro-active event for idle_after (800 ms): unavailable, while still syncing.
    let v = wait_status(&app, &bob, &alice, "idle", |v| v["presence"] == "unavailable").await;
    assert_eq!(v["currently_active"], false);
    assert!(v["last_active_ago"].as_i64().unwrap() >= 1_900, "{v}");
    // Sending a message is pro-active.
    let room = app.create_room(&alice, json!({})).await;
    app.send_text(&alice, &room, "back").await;
    let v = wait_status(&app, &bob, &alice, "online after activity", |v| v["presence"] == "online").await;
    assert!(v["last_active_ago"].as_i64().unwrap() < 1_900, "{v}");
    d.abort();
}

#[tokio::test]
async fn last_active_ago_grows_and_currently_active_flips() {
    let (app, alice, bob) = pair_with(|c| {
        c.presence_currently_active_ms = 1_000;
        c.presence_idle_after_ms = 2_000;
    })
    .await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    let first = wait_status(&app, &bob, &alice, "currently active", |v| v["currently_active"] == true).await;
    let later = wait_status(&app, &bob, &alice, "no longer currently active", |v| v["currently_active"] == false).await;
    assert!(later["last_active_ago"].as_i64().unwrap() > first["last_active_ago"].as_i64().unwrap());
    d.abort();
}

#[tokio::test]
async fn manual_busy_then_manual_online_returns_to_devices() {
    let (app, alice, bob) = pair().await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    wait_status(&app, &bob, &alice, "online", |v| v["presence"] == "online").await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    let (code, _) = app.put(&path, Some(&alice.token), json!({"presence": "busy", "status_msg": "in a meeting"})).await;
    assert_eq!(code, 200);
    let v = wait_status(&app, &bob, &alice, "busy", |v| v["presence"] == "org.matrix.msc3026.busy").await;
    assert_eq!(v["status_msg"], "in a meeting");
    let (code, _) = app.put(&path, Some(&alice.token), json!({"presence": "online"})).await;
    assert_eq!(code, 200);
    let v = wait_status(&app, &bob, &alice, "device-derived again", |v| v["presence"] == "online").await;
    assert!(v.get("status_msg").is_none(), "{v}");
    // Manual unavailable caps online.
    app.put(&path, Some(&alice.token), json!({"presence": "unavailable"})).await;
    wait_status(&app, &bob, &alice, "capped", |v| v["presence"] == "unavailable").await;
    d.abort();
}

#[tokio::test]
async fn manual_busy_needs_a_live_device() {
    let (app, alice, bob) = pair().await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    app.put(&path, Some(&alice.token), json!({"presence": "busy"})).await;
    // The PUT itself is a sign of life from that device (it acted through the API).
    wait_status(&app, &bob, &alice, "busy", |v| v["presence"] == "org.matrix.msc3026.busy").await;
    wait_status(&app, &bob, &alice, "offline without a live device", |v| v["presence"] == "offline").await;
}

#[tokio::test]
async fn hidden_user_is_offline_to_others_not_to_themselves() {
    let (app, alice, bob) = pair().await;
    let d = keep_syncing(&app, &alice, "set_presence=online");
    wait_status(&app, &bob, &alice, "online", |v| v["presence"] == "online").await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    app.put(&path, Some(&alice.token), json!({"presence": "offline", "status_msg": "secret"})).await;
    let v = wait_status(&app, &bob, &alice, "hidden", |v| v["presence"] == "offline").await;
    assert!(v.get("status_msg").is_none() && v.get("last_active_ago").is_none(), "hidden leaks: {v}");
    let own = status(&app, &alice, &alice).await;
    assert_eq!(own["presence"], "online", "the user sees the truth: {own}");
    assert_eq!(own["status_msg"], "secret");
    d.abort();
}

#[tokio::test]
async fn mobile_devices_are_announced() {
    let (app, alice, bob) = pair().await;
    let d = keep_syncing(&app, &alice, "set_presence=online&org.matrix.msc3032.device_kind=mobile");
    let v =
        wait_status(&app, &bob, &alice, "mobile", |v| v["org.matrix.msc3032.device_kinds"] == json!(["mobile"])).await;
    assert_eq!(v["presence"], "online");
    let (code, v) =
        app.get("/_matrix/client/v3/sync?timeout=0&org.matrix.msc3032.device_kind=tablet", Some(&alice.token)).await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
    d.abort();
}

#[tokio::test]
async fn presence_put_validation() {
    let (app, alice, bob) = pair().await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    let (c, v) = app.put(&path, Some(&alice.token), json!({"presence": "dancing"})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = app.put(&path, Some(&alice.token), json!({"status_msg": "no presence"})).await;
    assert_err(c, &v, 400, "M_MISSING_PARAM");
    let (c, v) = app.put(&path, Some(&alice.token), json!({"presence": 3})).await;
    assert_err(c, &v, 400, "M_BAD_JSON");
    let (c, v) = app.put(&path, Some(&alice.token), json!({"presence": "online", "status_msg": {"a": 1}})).await;
    assert_err(c, &v, 400, "M_BAD_JSON");
    let (c, v) =
        app.put(&path, Some(&alice.token), json!({"presence": "online", "status_msg": "x".repeat(3000)})).await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
    let (c, v) = app.raw(Method::PUT, &path, Some(&alice.token), Some(RawBody::Text("presence=online".into()))).await;
    assert_err(c, &v, 400, "M_NOT_JSON");
    let (c, v) = app.put(&path, Some(&bob.token), json!({"presence": "online"})).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let (c, v) = app.put(&path, None, json!({"presence": "online"})).await;
    assert_err(c, &v, 401, "M_MISSING_TOKEN");
    let (c, v) = app
        .put("/_matrix/client/v3/presence/not-a-user/status", Some(&alice.token), json!({"presence": "online"}))
        .await;
    assert_err(c, &v, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn legacy_sync_delivers_presence_changes_and_wakes_the_long_poll() {
    let (app, alice, bob) = pair().await;
    let next = app.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    let query = format!("since={next}&timeout=20000");
    let started = Instant::now();
    let (s, _) = tokio::join!(app.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        app.put(&path, Some(&alice.token), json!({"presence": "busy", "status_msg": "call"})).await
    });
    assert!(started.elapsed() < Duration::from_secs(10), "the change must wake the long-poll");
    let events = s["presence"]["events"].as_array().unwrap();
    let ev = events
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .unwrap_or_else(|| panic!("no presence for alice: {s}"));
    assert_eq!(ev["type"], "m.presence");
    assert_eq!(ev["content"]["presence"], "org.matrix.msc3026.busy", "legacy busy spelling (MSC3026)");
    assert_eq!(ev["content"]["status_msg"], "call");
    // A filter with presence.types [] turns presence off.
    let next = s["next_batch"].as_str().unwrap();
    app.put(&path, Some(&alice.token), json!({"presence": "unavailable"})).await;
    let f = enc(r#"{"presence":{"types":[]}}"#);
    let s2 = app.sync(&bob, &format!("since={next}&timeout=0&filter={f}")).await;
    assert!(s2["presence"]["events"].as_array().is_none_or(|e| e.is_empty()), "{s2}");
    let s3 = app.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert_eq!(s3["presence"]["events"][0]["content"]["presence"], "unavailable", "{s3}");
}

#[tokio::test]
async fn strangers_see_no_presence() {
    let (app, alice, _bob) = pair().await;
    let eve = app.register("eve").await;
    let (c, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&eve.token)).await;
    assert_err(c, &v, 403, "M_FORBIDDEN");
    let next = app.sync(&eve, "").await["next_batch"].as_str().unwrap().to_owned();
    app.put(
        &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"presence": "busy"}),
    )
    .await;
    let s = app.sync(&eve, &format!("since={next}&timeout=300")).await;
    assert!(s["presence"]["events"].as_array().unwrap().iter().all(|e| e["sender"] != alice.user_id.as_str()), "{s}");
}

#[tokio::test]
async fn manual_status_and_last_active_survive_restart() {
    let mut app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    app.send_text(&alice, &room, "activity").await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    app.put(&path, Some(&alice.token), json!({"presence": "busy", "status_msg": "kept"})).await;
    app.restart().await;
    // No device is live after a restart, so others see offline; the status message and the
    // last activity are kept, and come back with the first live device.
    let (_, v) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(v["status_msg"], "kept", "{v}");
    assert!(v["last_active_ago"].as_i64().is_some(), "{v}");
    app.sync(&alice, "timeout=0").await;
    let (_, v) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(v["presence"], "org.matrix.msc3026.busy", "manual busy survives: {v}");
}

#[tokio::test]
async fn profile_changes_reannounce_presence_with_name_and_avatar() {
    let (app, alice, bob) = pair().await;
    let path = format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id));
    app.put(&path, Some(&alice.token), json!({"presence": "online"})).await;
    let next = app.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    app.put(
        &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"displayname": "Alice"}),
    )
    .await;
    app.put(
        &format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&alice.user_id)),
        Some(&alice.token),
        json!({"avatar_url": "mxc://x/a"}),
    )
    .await;
    let s = app.sync(&bob, &format!("since={next}&timeout=5000")).await;
    let ev = s["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no presence event after a profile change: {s}"));
    assert_eq!(ev["content"]["displayname"], "Alice");
    assert_eq!(ev["content"]["presence"], "online");
    let s2 = app.sync(&bob, "").await;
    let ev = s2["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(ev["content"]["avatar_url"], "mxc://x/a");
}

/// Read one counter from `GET /metrics`.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let resp = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
    let text = resp.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_report_that_changes_nothing_writes_nothing() {
    let (app, alice, _bob) = pair_with(|c| {
        c.presence_idle_after_ms = 60_000;
        c.presence_currently_active_ms = 60_000;
        c.presence_device_timeout_ms = 60_000;
    })
    .await;
    app.sync(&alice, "timeout=0&set_presence=online").await;
    // Let the profile-room publisher (30 ms window) and the write-behind flush (50 ms) run.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rows = metric(&app, "seed_presence_rows_written_total").await;
    let events = metric(&app, "seed_profile_events_written_total").await;
    let changes = metric(&app, "seed_presence_public_changes_total").await;
    let inputs = metric(&app, "seed_presence_inputs_total").await;
    assert!(events >= 1 && changes >= 1, "going online is a change: events={events} changes={changes}");
    for _ in 0..20 {
        app.sync(&alice, "timeout=0&set_presence=online").await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(metric(&app, "seed_presence_inputs_total").await >= inputs + 40, "the reports were processed");
    assert_eq!(metric(&app, "seed_presence_public_changes_total").await, changes, "no change announced");
    assert_eq!(metric(&app, "seed_profile_events_written_total").await, events, "no profile-room event");
    assert_eq!(metric(&app, "seed_presence_rows_written_total").await, rows, "no database write");
    // A real change still writes.
    app.sync(&alice, "timeout=0&set_presence=busy").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(metric(&app, "seed_profile_events_written_total").await > events);
}
