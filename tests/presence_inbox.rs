//! Per-viewer presence inboxes (`src/presence/engine/inbox.rs`, docs/performance-history.md "Presence inboxes"):
//! an incremental `/sync` reads the presence changes delivered to its viewer instead of every
//! change on the server, and a token older than the inbox keeps falls back to every change,
//! with the same answer either way.
mod common;

use std::time::{Duration, Instant};

use common::{metric, set_status, TestApp, User};
use serde_json::{json, Value};

/// Watchers never change their own presence, so their own changes stay out of the way.
const QUIET: &str = "set_presence=offline";

/// `m.presence` senders in a sync response, with their status text.
fn presence_of(v: &Value) -> Vec<(String, Option<String>)> {
    v["presence"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    (e["sender"].as_str().unwrap().to_owned(), e["content"]["status_msg"].as_str().map(str::to_owned))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sync `user` from `since` until the response carries `sender`'s presence (at most 10 s);
/// returns everything the syncs carried and the last `next_batch`.
async fn sync_until(app: &TestApp, user: &User, since: &str, sender: &str) -> (Vec<(String, Option<String>)>, String) {
    let start = Instant::now();
    let (mut seen, mut since) = (vec![], since.to_owned());
    loop {
        let v = app.sync(user, &format!("{QUIET}&timeout=2000&since={since}")).await;
        seen.extend(presence_of(&v));
        since = v["next_batch"].as_str().unwrap().to_owned();
        if seen.iter().any(|(s, _)| s == sender) {
            return (seen, since);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{sender}'s presence never arrived; saw {seen:?}");
    }
}

#[tokio::test]
async fn incremental_syncs_read_their_own_inbox_and_see_exactly_their_room_mates() {
    let app = TestApp::spawn_with(|c| c.presence_delivery_window_ms = 0).await;
    let amy = app.register("amy").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let dan = app.register("dan").await;
    let room = app.create_room(&amy, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    let other = app.create_room(&cat, json!({"preset": "public_chat"})).await;
    app.join(&dan, &other).await;
    let since = app.sync(&amy, QUIET).await["next_batch"].as_str().unwrap().to_owned();
    let fallbacks = metric(&app, "seed_presence_inbox_fallbacks_total").await;

    set_status(&app, &dan, json!({"presence": "online", "status_msg": "not for amy"})).await;
    set_status(&app, &bob, json!({"presence": "online", "status_msg": "for amy"})).await;
    let (seen, _) = sync_until(&app, &amy, &since, &bob.user_id).await;

    assert!(seen.contains(&(bob.user_id.clone(), Some("for amy".into()))), "{seen:?}");
    assert!(
        !seen.iter().any(|(s, _)| s == &dan.user_id || s == &cat.user_id),
        "amy shares no room with them: {seen:?}"
    );
    assert!(metric(&app, "seed_presence_inbox_reads_total").await > 0, "the syncs read amy's inbox");
    assert_eq!(
        metric(&app, "seed_presence_inbox_fallbacks_total").await,
        fallbacks,
        "a client syncing in a loop never reads every change"
    );
}

#[tokio::test]
async fn a_burst_of_one_users_changes_does_not_push_another_users_change_out() {
    let app = TestApp::spawn_with(|c| c.presence_delivery_window_ms = 0).await;
    let amy = app.register("amy").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let room = app.create_room(&amy, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    app.join(&cat, &room).await;
    let since = app.sync(&amy, QUIET).await["next_batch"].as_str().unwrap().to_owned();

    // bob changes once, then cat changes 300 times (more than an inbox holds entries): cat
    // keeps one entry, so bob's change is still in amy's inbox.
    set_status(&app, &bob, json!({"presence": "online", "status_msg": "bob, once"})).await;
    for i in 0..300 {
        let presence = if i % 2 == 0 { "unavailable" } else { "online" };
        set_status(&app, &cat, json!({"presence": presence, "status_msg": format!("cat {i}")})).await;
    }
    let fallbacks = metric(&app, "seed_presence_inbox_fallbacks_total").await;
    let (seen, _) = sync_until(&app, &amy, &since, &cat.user_id).await;

    assert!(seen.contains(&(bob.user_id.clone(), Some("bob, once".into()))), "bob's change is not lost: {seen:?}");
    assert!(seen.contains(&(cat.user_id.clone(), Some("cat 299".into()))), "cat's latest: {seen:?}");
    assert_eq!(metric(&app, "seed_presence_inbox_fallbacks_total").await, fallbacks, "read from the inbox");
}

#[tokio::test]
async fn a_token_from_before_a_restart_reads_every_change_and_misses_nothing() {
    let mut app = TestApp::spawn_with(|c| c.presence_delivery_window_ms = 0).await;
    let amy = app.register("amy").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&amy, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    let since = app.sync(&amy, QUIET).await["next_batch"].as_str().unwrap().to_owned();

    app.restart().await;
    set_status(&app, &bob, json!({"presence": "unavailable", "status_msg": "after the restart"})).await;
    let (seen, next) = sync_until(&app, &amy, &since, &bob.user_id).await;
    assert!(seen.contains(&(bob.user_id.clone(), Some("after the restart".into()))), "{seen:?}");
    assert!(metric(&app, "seed_presence_inbox_fallbacks_total").await > 0, "the old token read every change");

    // The token the fallback answered with is new: the next change comes from the inbox.
    let fallbacks = metric(&app, "seed_presence_inbox_fallbacks_total").await;
    set_status(&app, &bob, json!({"presence": "online", "status_msg": "and again"})).await;
    let (seen, _) = sync_until(&app, &amy, &next, &bob.user_id).await;
    assert!(seen.contains(&(bob.user_id.clone(), Some("and again".into()))), "{seen:?}");
    assert_eq!(metric(&app, "seed_presence_inbox_fallbacks_total").await, fallbacks);
}

/// A presence filter's `limit` keeps the users first by name, whatever order they registered
/// or changed in (the section works on user numbers, which follow first sight, not names).
#[tokio::test]
async fn a_presence_limit_keeps_the_users_first_by_name() {
    let app = TestApp::spawn_with(|c| c.presence_delivery_window_ms = 0).await;
    let amy = app.register("amy").await;
    let mates = [app.register("zed").await, app.register("cat").await, app.register("bob").await];
    let room = app.create_room(&amy, json!({"preset": "public_chat"})).await;
    for m in &mates {
        app.join(m, &room).await;
    }
    let since = app.sync(&amy, QUIET).await["next_batch"].as_str().unwrap().to_owned();
    for m in &mates {
        set_status(&app, m, json!({"presence": "online", "status_msg": "here"})).await;
    }
    let limit2 = common::enc(r#"{"presence":{"limit":2}}"#);
    let senders = |v: &Value| presence_of(v).into_iter().map(|(s, _)| s).collect::<Vec<_>>();

    let all = app.sync(&amy, &format!("{QUIET}&timeout=0&since={since}")).await;
    let mut want: Vec<String> = mates.iter().map(|m| m.user_id.clone()).collect();
    want.sort();
    assert_eq!(senders(&all), want, "all three changes, in the order of their names");
    let limited = app.sync(&amy, &format!("{QUIET}&timeout=0&since={since}&filter={limit2}")).await;
    assert_eq!(senders(&limited), want[..2], "bob and cat, not zed");

    let initial = senders(&app.sync(&amy, QUIET).await);
    let initial_limited = senders(&app.sync(&amy, &format!("{QUIET}&filter={limit2}")).await);
    assert!(initial.len() > 2, "{initial:?}");
    assert!(initial.is_sorted(), "{initial:?}");
    assert_eq!(initial_limited, initial[..2], "an initial sync keeps the same first two");
}
