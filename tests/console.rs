//! The experiment console: admin API (list, explain, force offline, end a peek) and the change
//! log export, all over HTTP on the configured database. The Prometheus scrape is tested in
//! `tests/console_metrics.rs`.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, set_status, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "/_seed/admin/v1";

/// A server where `@admin:localhost` is an admin, with presence timers long enough that only
/// the scripted inputs change anything.
async fn console_app(tweak: impl FnOnce(&mut seed::config::Config)) -> (TestApp, User) {
    let app = TestApp::spawn_with(|c| {
        c.admins = vec!["@admin:localhost".into()];
        c.presence_device_timeout_ms = 60_000;
        c.presence_idle_after_ms = 60_000;
        c.presence_currently_active_ms = 60_000;
        tweak(c);
    })
    .await;
    let admin = app.register("admin").await;
    (app, admin)
}

async fn set_presence(app: &TestApp, user: &User, presence: &str) {
    set_status(app, user, json!({"presence": presence})).await;
}

/// The export body as text.
async fn export(app: &TestApp, admin: &User, query: &str) -> (u16, String, String) {
    let resp =
        app.http.get(format!("{}{ADMIN}/changes?{query}", app.base)).bearer_auth(&admin.token).send().await.unwrap();
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

/// (old, new, cause, device_kinds, hidden) of each JSON Lines record, checking the fields.
fn summary(jsonl: &str) -> Vec<(String, String, String, Vec<String>, bool)> {
    jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            assert!(v["ts"].as_i64().is_some() && v["seq"].as_u64().is_some(), "{v}");
            (
                v["old"].as_str().unwrap().to_owned(),
                v["new"].as_str().unwrap().to_owned(),
                v["cause"].as_str().unwrap().to_owned(),
                v["device_kinds"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect(),
                v["hidden"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn row(old: &str, new: &str, cause: &str, kinds: &[&str], hidden: bool) -> (String, String, String, Vec<String>, bool) {
    (old.into(), new.into(), cause.into(), kinds.iter().map(|k| k.to_string()).collect(), hidden)
}

#[tokio::test]
async fn scripted_scenario_produces_exactly_the_expected_change_log() {
    let (app, admin) = console_app(|_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let start = common_now();
    app.sync(&alice, "set_presence=online&timeout=0").await;
    app.sync(&bob, "set_presence=online&timeout=0&org.matrix.msc3032.device_kind=mobile").await;
    set_presence(&app, &alice, "busy").await;
    set_presence(&app, &alice, "unavailable").await;
    set_presence(&app, &alice, "offline").await;
    set_presence(&app, &alice, "online").await;
    let path = format!("{ADMIN}/users/{}/devices/{}/offline", enc(&alice.user_id), enc(&alice.device_id));
    let (status, v) = app.post(&path, Some(&admin.token), json!({})).await;
    assert_eq!(status, 200, "{v}");

    let query = format!("user={}&from={start}", enc(&alice.user_id));
    let (status, kind, body) = export(&app, &admin, &query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(kind, "application/x-ndjson");
    assert_eq!(
        summary(&body),
        vec![
            row("offline", "online", "device_report", &["desktop"], false),
            row("online", "busy", "manual", &["desktop"], false),
            row("busy", "unavailable", "manual", &["desktop"], false),
            row("unavailable", "offline", "hidden", &["desktop"], true),
            row("offline", "online", "hidden", &["desktop"], false),
            row("online", "offline", "admin", &[], false),
        ]
    );
    for l in body.lines() {
        assert_eq!(serde_json::from_str::<Value>(l).unwrap()["user_id"], alice.user_id.as_str());
    }

    // Unfiltered: bob's mobile device is there too; a window that ends before the first
    // change is empty.
    let (_, _, all) = export(&app, &admin, &format!("from={start}")).await;
    assert!(summary(&all).contains(&row("offline", "online", "device_report", &["mobile"], false)), "{all}");
    assert_eq!(summary(&all).len(), 7, "{all}");
    let (_, _, none) = export(&app, &admin, &format!("from=0&to={start}")).await;
    assert_eq!(none, "");

    // The same as CSV, with a header; limit keeps the oldest.
    let (status, kind, csv) = export(&app, &admin, &format!("{query}&format=csv&limit=2")).await;
    assert_eq!((status, kind.as_str()), (200, "text/csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "seq,ts,user_id,old,new,cause,device_kinds,hidden");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].ends_with(&format!(",\"{}\",offline,online,device_report,desktop,false", alice.user_id)), "{csv}");
    assert!(lines[2].ends_with(",online,busy,manual,desktop,false"), "{csv}");
}

fn common_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn a_device_timing_out_is_logged_as_timer() {
    let (app, admin) = console_app(|c| c.presence_device_timeout_ms = 300).await;
    let alice = app.register("alice").await;
    app.sync(&alice, "set_presence=online&timeout=0").await;
    let query = format!("user={}", enc(&alice.user_id));
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (_, _, body) = export(&app, &admin, &query).await;
        if body.lines().count() >= 2 || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        summary(&body),
        vec![
            row("offline", "online", "device_report", &["desktop"], false),
            row("online", "offline", "timer", &[], false)
        ]
    );
}

#[tokio::test]
async fn admin_api_lists_users_and_explains_the_deciding_rule() {
    let (app, admin) = console_app(|_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.sync(&alice, "set_presence=online&timeout=0").await;
    app.sync(&bob, "set_presence=online&timeout=0").await;

    let (status, v) = app.get(&format!("{ADMIN}/users"), Some(&admin.token)).await;
    assert_eq!(status, 200, "{v}");
    let users = v["users"].as_array().unwrap();
    let a = users.iter().find(|u| u["user_id"] == alice.user_id.as_str()).expect("alice listed");
    assert_eq!(a["presence"], "online");
    assert_eq!(a["manual"], "online");
    let dev = &a["devices"][0];
    assert_eq!(dev["device_id"], alice.device_id.as_str());
    assert_eq!(
        (dev["kind"].as_str(), dev["reported"].as_str(), dev["live"].as_bool()),
        (Some("desktop"), Some("online"), Some(true))
    );
    let last_active = dev["last_active_ts"].as_i64().unwrap();
    assert_eq!(dev["idle_at"].as_i64(), Some(last_active + 60_000));
    assert_eq!(a["explain"]["rule"], 3);
    assert_eq!(a["explain"]["deciding_devices"], json!([alice.device_id]));
    let next = a["explain"]["next_change_at"].as_i64().expect("a deadline");
    assert_eq!(a["scheduled_deadline"].as_i64(), Some(next), "the engine's timer holds the same instant");

    // Paging: one at a time, in user-id order.
    let (_, p1) = app.get(&format!("{ADMIN}/users?limit=1"), Some(&admin.token)).await;
    assert_eq!(p1["users"].as_array().unwrap().len(), 1);
    let next = p1["next_from"].as_str().expect("next_from").to_owned();
    let (_, p2) = app.get(&format!("{ADMIN}/users?limit=1&from={}", enc(&next)), Some(&admin.token)).await;
    assert!(p2["users"][0]["user_id"].as_str().unwrap() > next.as_str(), "{p2}");
    let listed: Vec<&str> = users.iter().map(|u| u["user_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [alice.user_id.as_str(), bob.user_id.as_str()], "users the engine holds, sorted");

    set_presence(&app, &alice, "busy").await;
    let explain = format!("{ADMIN}/users/{}/explain", enc(&alice.user_id));
    let (_, e) = app.get(&explain, Some(&admin.token)).await;
    assert_eq!((e["presence"].as_str(), e["rule"].as_i64()), (Some("busy"), Some(4)), "{e}");
    assert_eq!(e["next_presence"], "offline", "a silent device times out: {e}");

    set_presence(&app, &alice, "offline").await;
    let (_, e) = app.get(&explain, Some(&admin.token)).await;
    assert_eq!((e["presence"].as_str(), e["rule"].as_i64()), (Some("offline"), Some(5)), "{e}");

    let force = format!("{ADMIN}/users/{}/devices/{}/offline", enc(&alice.user_id), enc(&alice.device_id));
    let (status, _) = app.post(&force, Some(&admin.token), json!({})).await;
    assert_eq!(status, 200);
    let (_, u) = app.get(&format!("{ADMIN}/users/{}", enc(&alice.user_id)), Some(&admin.token)).await;
    assert_eq!(u["devices"][0]["live"], false, "{u}");
    assert_eq!(u["explain"]["rule"], 1, "{u}");
    // The device comes back with its next sync.
    app.sync(&alice, "set_presence=online&timeout=0").await;
    let (_, u) = app.get(&format!("{ADMIN}/users/{}", enc(&alice.user_id)), Some(&admin.token)).await;
    assert_eq!(u["devices"][0]["live"], true, "{u}");
}

#[tokio::test]
async fn admin_ends_a_peek() {
    let (app, admin) = console_app(|_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    let peek_path = format!("/_matrix/client/unstable/org.matrix.msc2753/peek/{}", enc(&room));
    let (status, v) = app.post(&peek_path, Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let end = format!("{ADMIN}/users/{}/devices/{}/peeks/{}/end", enc(&bob.user_id), enc(&bob.device_id), enc(&room));
    let (status, v) = app.post(&end, Some(&admin.token), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app.post(&end, Some(&admin.token), json!({})).await;
    assert_err(status, &v, 400, "M_BAD_STATE");
}

#[tokio::test]
async fn non_admins_and_bad_input_get_matrix_errors() {
    let (app, admin) = console_app(|_| {}).await;
    let alice = app.register("alice").await;
    app.sync(&alice, "timeout=0").await;
    let alice_path = format!("{ADMIN}/users/{}", enc(&alice.user_id));

    for path in [
        format!("{ADMIN}/users"),
        alice_path.clone(),
        format!("{alice_path}/explain"),
        format!("{ADMIN}/changes"),
        format!("{ADMIN}/stream"),
    ] {
        let (status, v) = app.get(&path, Some(&alice.token)).await;
        assert_err(status, &v, 403, "M_FORBIDDEN");
        let (status, v) = app.get(&path, None).await;
        assert_err(status, &v, 401, "M_MISSING_TOKEN");
    }
    let (status, v) =
        app.post(&format!("{alice_path}/devices/{}/offline", alice.device_id), Some(&alice.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");

    let t = Some(admin.token.as_str());
    for query in [
        "limit=0",
        "limit=100001",
        "from=abc",
        "from=-1",
        "from=10&to=5",
        "format=xml",
        "user=bob",
        "user=%40bob%3Alocalhost&user=%40bob%3Alocalhost",
    ] {
        let (status, v) = app.get(&format!("{ADMIN}/changes?{query}"), t).await;
        assert_err(status, &v, 400, "M_INVALID_PARAM");
    }
    let long = "x".repeat(5000);
    let (status, v) = app.get(&format!("{ADMIN}/changes?user={long}"), t).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    for query in ["limit=0", "limit=1001", "from=nobody"] {
        let (status, v) = app.get(&format!("{ADMIN}/users?{query}"), t).await;
        assert_err(status, &v, 400, "M_INVALID_PARAM");
    }
    let (status, v) = app.get(&format!("{ADMIN}/users/not-a-user"), t).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get(&format!("{ADMIN}/users/{}", enc("@nobody:localhost")), t).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.post(&format!("{alice_path}/devices/NOSUCH/offline"), t, json!({})).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.raw(Method::DELETE, &format!("{ADMIN}/users"), t, None).await;
    assert_err(status, &v, 405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn console_page_and_event_stream_are_served() {
    let (app, admin) = console_app(|_| {}).await;
    let resp = app.http.get(format!("{}/_seed/console", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("<title>Seed presence console</title>"));

    // The feed, authenticated by query parameter as EventSource does it.
    let mut resp =
        app.http.get(format!("{}{ADMIN}/stream?access_token={}", app.base, admin.token)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let alice = app.register("alice").await;
    let mut synced = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("\"new\":\"online\"") && Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await;
        if let Ok(Ok(Some(bytes))) = chunk {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        if seen.contains("event: ready") && !synced {
            app.sync(&alice, "set_presence=online&timeout=0").await;
            synced = true;
        }
    }
    assert!(seen.contains("event: change"), "{seen}");
    assert!(seen.contains(&format!("\"user_id\":\"{}\"", alice.user_id)), "{seen}");
    assert!(seen.contains("\"new\":\"online\""), "{seen}");
}

#[tokio::test]
async fn the_change_log_survives_a_restart_and_keeps_numbering() {
    let (mut app, admin) = console_app(|_| {}).await;
    let alice = app.register("alice").await;
    app.sync(&alice, "set_presence=online&timeout=0").await;
    set_presence(&app, &alice, "busy").await;
    let (_, _, before) = export(&app, &admin, "").await;
    assert_eq!(before.lines().count(), 2, "{before}");
    app.restart().await;
    let (status, _, after) = export(&app, &admin, "").await;
    assert_eq!(status, 200);
    assert_eq!(after, before, "the same records, byte for byte");
    // After a restart no device is live until it syncs: alice comes back online... as busy.
    app.sync(&alice, "set_presence=online&timeout=0").await;
    let (_, _, more) = export(&app, &admin, "").await;
    let last: Value = serde_json::from_str(more.lines().last().unwrap()).unwrap();
    let prev: Value = serde_json::from_str(before.lines().last().unwrap()).unwrap();
    assert_eq!(last["seq"].as_u64(), prev["seq"].as_u64().map(|s| s + 1), "{more}");
    assert_eq!((last["old"].as_str(), last["new"].as_str()), (Some("offline"), Some("busy")), "{more}");
}

#[tokio::test]
async fn the_stored_log_keeps_only_the_newest_records() {
    let (mut app, admin) = console_app(|c| c.experiment_log_max_records = 2).await;
    let alice = app.register("alice").await;
    app.sync(&alice, "set_presence=online&timeout=0").await;
    for p in ["busy", "unavailable", "online"] {
        set_presence(&app, &alice, p).await;
    }
    app.restart().await;
    let (_, _, body) = export(&app, &admin, "").await;
    assert_eq!(
        summary(&body),
        vec![
            row("busy", "unavailable", "manual", &["desktop"], false),
            row("unavailable", "online", "manual", &["desktop"], false),
        ]
    );
}
