//! Presence across servers (issue #15 part A): two Seed instances on loopback, alice on A and
//! bob on B in one room. Legacy `m.presence` EDUs carry changes both ways (busy, status text,
//! device kinds, hidden as offline), batched into one EDU per destination per flush window;
//! a server that stops refreshing its users makes them decay to offline at the other end
//! (watchdog), and a server that comes back gets a full refresh. Bad EDUs are ignored.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use std::time::{Duration, Instant};

use common::{enc, presence_status, set_status, wait_presence_status, TestApp, User};
use federation_common::{send_edus, sync_until, FedApp, Host};
use serde_json::{json, Value};

/// Short watchdog timings, fast retries, and devices that stay live for the whole test.
fn tweak(flush_ms: u64, reannounce_ms: i64, timeout_ms: i64) -> impl Fn(&mut seed::config::Config) + Clone {
    move |c: &mut seed::config::Config| {
        c.federation.send_backoff_base_ms = 50;
        c.federation.send_backoff_max_ms = 300;
        c.federation.presence_flush_ms = flush_ms;
        c.federation.presence_reannounce_ms = reannounce_ms;
        c.federation.presence_remote_timeout_ms = timeout_ms;
        c.presence_device_timeout_ms = 120_000;
        c.presence_idle_after_ms = 120_000;
        c.presence_currently_active_ms = 120_000;
    }
}

async fn pair(flush_ms: u64, reannounce_ms: i64, timeout_ms: i64) -> (FedApp, FedApp) {
    let t = tweak(flush_ms, reannounce_ms, timeout_ms);
    (FedApp::spawn(Host::Localhost, t.clone()).await, FedApp::spawn(Host::Ip, t).await)
}

/// alice on A creates a public room, bob on B joins it; A has seen the join.
async fn shared_room(a: &FedApp, b: &FedApp) -> (User, User, String) {
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    join(b, &bob, a, &room).await;
    (alice, bob, room)
}

async fn join(b: &FedApp, user: &User, a: &FedApp, room: &str) {
    let (status, v) = b
        .app
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(&a.server_name)),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "join: {v}");
}

/// The newest `m.presence` event about `user` in a sync response.
fn presence_of<'a>(v: &'a Value, user: &str) -> Option<&'a Value> {
    v["presence"]["events"].as_array()?.iter().rev().find(|e| e["sender"] == user)
}

/// One `/sync` with a presence report (the device is then live for the test's device timeout).
async fn report(app: &TestApp, user: &User, query: &str) {
    app.sync(user, &format!("timeout=0&{query}")).await;
}

async fn remote_status(app: &TestApp, viewer: &User, of: &User, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_presence_status(app, viewer, of, what, pred).await
}

fn metric(a: &FedApp, f: impl Fn(&seed::metrics::FederationMetrics) -> u64) -> u64 {
    f(&a.app.running.as_ref().unwrap().state.metrics.federation)
}

#[tokio::test]
async fn presence_changes_travel_both_ways_and_hidden_is_offline() {
    let (a, b) = pair(100, 60_000, 60_000).await;
    let (alice, bob, _room) = shared_room(&a, &b).await;

    // bob comes online on his phone: alice's legacy /sync on A gets it.
    report(&b.app, &bob, "set_presence=online&org.matrix.msc3032.device_kind=mobile").await;
    let v = sync_until(&a.app, &alice, "bob online on A", |v| {
        presence_of(v, &bob.user_id).is_some_and(|e| e["content"]["presence"] == "online")
    })
    .await;
    let content = &presence_of(&v, &bob.user_id).unwrap()["content"];
    assert_eq!(content["org.matrix.msc3032.device_kinds"], json!(["mobile"]), "{content}");
    assert!(content["last_active_ago"].as_i64().is_some_and(|a| a >= 0), "{content}");

    // busy with a status text: MSC3026's value on the legacy paths of A too.
    set_status(&b.app, &bob, json!({"presence": "busy", "status_msg": "in a call"})).await;
    let since = v["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let got = loop {
        let v = a.app.sync(&alice, &format!("since={since}&timeout=10000")).await;
        if let Some(e) = presence_of(&v, &bob.user_id) {
            if e["content"]["presence"] == "org.matrix.msc3026.busy" {
                break e.clone();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "bob's busy never reached A");
    };
    assert_eq!(got["content"]["status_msg"], "in a call");
    let s = presence_status(&a.app, &alice, &bob).await;
    assert_eq!(s["presence"], "org.matrix.msc3026.busy", "{s}");
    assert_eq!(s["status_msg"], "in a call", "{s}");

    // The other way: alice (online on A since her syncs) as B sees her.
    report(&a.app, &alice, "set_presence=online").await;
    remote_status(&b.app, &bob, &alice, "alice online on B", |s| s["presence"] == "online").await;

    // bob hides: A sees plain offline, no status text, no last-active time, no device kinds.
    set_status(&b.app, &bob, json!({"presence": "offline", "status_msg": "secret"})).await;
    let s = remote_status(&a.app, &alice, &bob, "bob hidden reads offline on A", |s| s["presence"] == "offline").await;
    assert!(s.get("status_msg").is_none_or(Value::is_null), "hidden text leaked: {s}");
    assert!(s.get("last_active_ago").is_none(), "hidden last-active leaked: {s}");
    assert!(s.get("org.matrix.msc3032.device_kinds").is_none(), "{s}");

    // A stranger on B (no shared room) is not visible on A by any route.
    let carol = b.app.register("carol").await;
    report(&b.app, &carol, "set_presence=online").await;
    let (code, _) =
        a.app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&carol.user_id)), Some(&alice.token)).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn a_silent_server_decays_to_offline_and_a_returning_one_is_refreshed() {
    let (a, mut b) = pair(50, 400, 1_500).await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    report(&a.app, &alice, "set_presence=online").await;
    report(&b.app, &bob, "set_presence=online").await;
    remote_status(&a.app, &alice, &bob, "bob online on A", |s| s["presence"] == "online").await;
    remote_status(&b.app, &bob, &alice, "alice online on B", |s| s["presence"] == "online").await;

    // Re-announcement keeps bob online at A past the remote timeout (1.5 s) without changes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(presence_status(&a.app, &alice, &bob).await["presence"], "online", "re-announcement failed");

    // B stops: after the watchdog timeout A shows bob offline (and wakes alice's long-poll).
    let running = b.app.running.take().expect("running");
    let config = running.state.config.clone();
    running.stop().await;
    let stopped = Instant::now();
    sync_until(&a.app, &alice, "bob decayed to offline on A", |v| {
        presence_of(v, &bob.user_id).is_some_and(|e| e["content"]["presence"] == "offline")
    })
    .await;
    assert!(stopped.elapsed() >= Duration::from_millis(700), "decayed before the timeout could pass");
    assert_eq!(presence_status(&a.app, &alice, &bob).await["presence"], "offline");

    // B is back (same database and port): bob syncs again and is online at A, and A, whose
    // re-announcements to B failed meanwhile, sends B a full refresh.
    let refreshes0 = metric(&a, |m| m.presence_refreshes.get());
    let running = seed::app::spawn(config).await.expect("B restarts");
    b.app.base = format!("http://{}", running.addr);
    b.app.running = Some(running);
    report(&b.app, &bob, "set_presence=online").await;
    remote_status(&a.app, &alice, &bob, "bob online on A again", |s| s["presence"] == "online").await;
    remote_status(&b.app, &bob, &alice, "alice online on B after the restart", |s| s["presence"] == "online").await;
    let started = Instant::now();
    while metric(&a, |m| m.presence_refreshes.get()) == refreshes0 {
        assert!(started.elapsed() < Duration::from_secs(10), "A never refreshed B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn remote_presence_survives_a_restart_of_the_viewing_server() {
    // Re-announcements far apart: after B restarts, only what B stored tells it about alice.
    let (a, mut b) = pair(50, 60_000, 3_000).await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    report(&a.app, &alice, "set_presence=online").await;
    set_status(&a.app, &alice, json!({"presence": "busy", "status_msg": "deep work"})).await;
    remote_status(&b.app, &bob, &alice, "alice busy on B", |s| s["presence"] == "org.matrix.msc3026.busy").await;
    b.app.restart().await;
    let s = presence_status(&b.app, &bob, &alice).await;
    assert_eq!(s["presence"], "org.matrix.msc3026.busy", "{s}");
    assert_eq!(s["status_msg"], "deep work", "{s}");
    // Nobody refreshes her within the remote timeout (3 s) after the restart: offline.
    remote_status(&b.app, &bob, &alice, "alice decays on B", |s| s["presence"] == "offline").await;
}

#[tokio::test]
async fn changes_in_one_window_go_as_one_edu_with_one_entry_per_user() {
    // A window long enough for ten PUTs on a loaded machine.
    let (a, b) = pair(2_000, 60_000, 60_000).await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut users = vec![alice];
    for i in 0..4 {
        let u = a.app.register(&format!("u{i}")).await;
        assert_eq!(a.app.join(&u, &room).await.0, 200);
        users.push(u);
    }
    for u in &users {
        report(&a.app, u, "set_presence=online").await;
    }
    // Let the joins' and first reports' EDUs go out, then measure one window.
    for u in &users {
        remote_status(&b.app, &bob, u, "everyone online on B", |s| s["presence"] == "online").await;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let edus0 = metric(&a, |m| m.presence_edus.get());
    let updates0 = metric(&a, |m| m.presence_updates_sent.get());
    let txns0 = metric(&a, |m| m.transactions.with_label_values(&["sent"]).get());

    // Every user changes twice within the window: one EDU, one entry per user, last value.
    for u in &users {
        set_status(&a.app, u, json!({"presence": "busy"})).await;
    }
    for u in &users {
        set_status(&a.app, u, json!({"presence": "unavailable", "status_msg": "brb"})).await;
    }
    for u in &users {
        remote_status(&b.app, &bob, u, "the last change on B", |s| s["presence"] == "unavailable").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&a, |m| m.presence_edus.get()) - edus0, 1, "one EDU for the window");
    assert_eq!(metric(&a, |m| m.presence_updates_sent.get()) - updates0, users.len() as u64, "one entry per user");
    assert_eq!(
        metric(&a, |m| m.transactions.with_label_values(&["sent"]).get()) - txns0,
        1,
        "one transaction for the window"
    );
}

#[tokio::test]
async fn bad_presence_edus_are_ignored() {
    let (a, b) = pair(100, 60_000, 60_000).await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    report(&a.app, &alice, "set_presence=online").await;
    let state = &a.app.running.as_ref().unwrap().state;
    // B announces its new member when the join lands; let that genuine (offline) update
    // arrive first so it cannot overwrite what this test sends.
    let started = Instant::now();
    while !state.presence.knows(&bob.user_id) {
        assert!(started.elapsed() < Duration::from_secs(10), "B never announced bob");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ignored0 = metric(&a, |m| m.presence_updates_ignored.get());
    let signer = b.signer();
    let stranger = format!("@stranger:{}", b.server_name);

    // One EDU: B speaking for A's alice (dropped), for a user sharing no room with anyone on
    // A (dropped), a bad value (dropped), and for its own bob (applied).
    let push = json!({"push": [
        {"user_id": alice.user_id, "presence": "offline"},
        {"user_id": stranger, "presence": "online"},
        {"user_id": bob.user_id, "presence": "dancing"},
        {"user_id": bob.user_id, "presence": "unavailable", "status_msg": "genuine", "last_active_ago": 1000},
    ]});
    send_edus(&signer, &a, vec![json!({"edu_type": "m.presence", "content": push})]).await;
    let s = presence_status(&a.app, &alice, &bob).await;
    assert_eq!(s["presence"], "unavailable", "{s}");
    assert_eq!(s["status_msg"], "genuine", "{s}");
    assert_eq!(presence_status(&a.app, &alice, &alice).await["presence"], "online", "B spoke for alice");
    assert!(!state.presence.knows(&stranger), "a user nobody on A may see was kept");
    assert_eq!(metric(&a, |m| m.presence_updates_ignored.get()) - ignored0, 3);

    // An oversized EDU: only the first 1000 entries are read.
    let many: Vec<Value> = (0..1500)
        .map(|i| json!({"user_id": bob.user_id, "presence": if i < 1000 { "online" } else { "offline" }}))
        .collect();
    send_edus(&signer, &a, vec![json!({"edu_type": "m.presence", "content": {"push": many}})]).await;
    assert_eq!(presence_status(&a.app, &alice, &bob).await["presence"], "online", "entries past the bound were read");
    assert_eq!(metric(&a, |m| m.presence_updates_ignored.get()) - ignored0, 3 + 500);

    // Not an object / no push list: ignored as a whole, the transaction still answers 200.
    send_edus(&signer, &a, vec![json!({"edu_type": "m.presence", "content": "nonsense"})]).await;
    assert_eq!(presence_status(&a.app, &alice, &bob).await["presence"], "online");
}
