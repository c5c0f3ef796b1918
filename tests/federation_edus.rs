//! Two Seed instances sharing a room (issue #14, transport side): typing and read receipts
//! travel as EDUs both ways, and a server that was down gets the events it missed from the
//! sender's persisted queue once it is back.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use std::time::{Duration, Instant};

use common::{enc, TestApp, User};
use federation_common::{sync_until, FedApp, Host};
use serde_json::{json, Value};

fn ephemeral<'a>(v: &'a Value, room: &str, kind: &str) -> Option<&'a Value> {
    v["rooms"]["join"][room]["ephemeral"]["events"].as_array()?.iter().find(|e| e["type"] == kind)
}

fn typing_users(v: &Value, room: &str) -> Vec<String> {
    ephemeral(v, room, "m.typing")
        .and_then(|e| e["content"]["user_ids"].as_array())
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn has_text(v: &Value, room: &str, body: &str) -> bool {
    v["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|evs| evs.iter().any(|e| e["content"]["body"] == body))
}

async fn fast_retries() -> (FedApp, FedApp) {
    let tweak = |c: &mut seed::config::Config| {
        c.federation.send_backoff_base_ms = 50;
        c.federation.send_backoff_max_ms = 500;
    };
    (FedApp::spawn(Host::Localhost, tweak).await, FedApp::spawn(Host::Ip, tweak).await)
}

/// alice on A creates a public room, bob on B joins it; both see the join.
async fn shared_room(a: &FedApp, b: &FedApp) -> (User, User, String) {
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, v) = b
        .app
        .post(
            &format!("/_matrix/client/v3/join/{}?server_name={}", enc(&room), enc(&a.server_name)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "join: {v}");
    let joined = |v: &Value| {
        v["rooms"]["join"][&room]["timeline"]["events"].as_array().is_some_and(|evs| {
            evs.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        })
    };
    sync_until(&a.app, &alice, "bob's join on A", joined).await;
    (alice, bob, room)
}

async fn set_typing(app: &TestApp, user: &User, room: &str, typing: bool) {
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(room), enc(&user.user_id)),
            Some(&user.token),
            json!({"typing": typing, "timeout": 20_000}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn typing_and_receipts_travel_both_ways() {
    let (a, b) = fast_retries().await;
    let (alice, bob, room) = shared_room(&a, &b).await;

    set_typing(&a.app, &alice, &room, true).await;
    sync_until(&b.app, &bob, "alice typing on B", |v| typing_users(v, &room) == [alice.user_id.clone()]).await;
    set_typing(&b.app, &bob, &room, true).await;
    sync_until(&a.app, &alice, "bob typing on A", |v| typing_users(v, &room).contains(&bob.user_id)).await;
    set_typing(&b.app, &bob, &room, false).await;
    sync_until(&a.app, &alice, "bob stopped typing on A", |v| {
        ephemeral(v, &room, "m.typing").is_some() && !typing_users(v, &room).contains(&bob.user_id)
    })
    .await;

    let event = a.app.send_text(&alice, &room, "read me").await;
    sync_until(&b.app, &bob, "the message on B", |v| has_text(v, &room, "read me")).await;
    let (status, v) = b
        .app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(&event)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    sync_until(&a.app, &alice, "bob's receipt on A", |v| {
        ephemeral(v, &room, "m.receipt").is_some_and(|e| e["content"][&event]["m.read"][&bob.user_id].is_object())
    })
    .await;
}

#[tokio::test]
async fn a_server_that_was_down_gets_what_it_missed() {
    let (a, mut b) = fast_retries().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    // B goes down; A keeps talking.
    let running = b.app.running.take().expect("running");
    let config = running.state.config.clone();
    running.stop().await;
    for i in 0..5 {
        a.app.send_text(&alice, &room, &format!("while you were away {i}")).await;
    }
    let metrics = &a.app.running.as_ref().unwrap().state.metrics.federation;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.transactions.with_label_values(&["retry"]).get() == 0 {
        assert!(Instant::now() < deadline, "A never tried to reach B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B is back (same database, same federation port): A's queue catches it up.
    let running = seed::app::spawn(config).await.expect("B restarts");
    b.app.base = format!("http://{}", running.addr);
    b.app.running = Some(running);
    let seen = std::sync::Mutex::new(Vec::new());
    sync_until(&b.app, &bob, "everything sent while B was down", |v| {
        let mut seen = seen.lock().unwrap();
        seen.extend((0..5).filter(|i| has_text(v, &room, &format!("while you were away {i}"))));
        seen.sort_unstable();
        seen.dedup();
        seen.len() == 5
    })
    .await;
}
