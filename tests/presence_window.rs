//! The presence delivery window (`presence_delivery_window_ms`, README "Presence delivery
//! window"): a long-poll woken only by presence holds its answer for the window to collect
//! more changes; anything else ends the wait at once; a window of 0 answers at once.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{enc, metric, set_status, TestApp, User};
use serde_json::{json, Value};

/// Watchers never change their own presence, so their own wake-ups stay out of the way.
const QUIET: &str = "set_presence=offline";

struct Trio {
    app: Arc<TestApp>,
    alice: User,
    bob: User,
    carol: User,
    room: String,
}

/// alice, bob and carol share one room; bob has synced once (quietly) and caught up.
async fn trio(window_ms: u64) -> (Trio, String) {
    let app = Arc::new(TestApp::spawn_with(|c| c.presence_delivery_window_ms = window_ms).await);
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    app.join(&carol, &room).await;
    // Let the setup's profile-room writes land first: a stray wake-up would open a window.
    let start = Instant::now();
    while metric(&app, "seed_profile_publish_pending").await > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "profile-room writes never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = app.sync(&bob, QUIET).await;
    let since = v["next_batch"].as_str().unwrap().to_owned();
    (Trio { app, alice, bob, carol, room }, since)
}

/// The `seed_sync_parked_long_polls` gauge: long-polls that read everything and now wait.
async fn parked_polls(app: &TestApp) -> u64 {
    metric(app, "seed_sync_parked_long_polls").await
}

/// Start bob's long-poll from `since` and return once it is parked (nothing new to read).
/// A poll that answers at once (news still trickling in from the setup) is caught up from.
async fn park_poll(t: &Trio, since: &str, query: &str) -> tokio::task::JoinHandle<Value> {
    park_poll_with(t, since, query, 60_000).await
}

async fn park_poll_with(t: &Trio, since: &str, query: &str, timeout_ms: u64) -> tokio::task::JoinHandle<Value> {
    let start = Instant::now();
    let mut since = since.to_owned();
    loop {
        let (app, bob) = (t.app.clone(), t.bob.clone());
        let q = format!("since={since}&timeout={timeout_ms}&{QUIET}{query}");
        let poll = tokio::spawn(async move { app.sync(&bob, &q).await });
        let this_poll = Instant::now();
        while parked_polls(&t.app).await == 0 && !poll.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(30), "the long-poll never parked");
            if this_poll.elapsed() > Duration::from_secs(2) {
                // A stray presence change from the setup (on a loaded machine it can land
                // after the poll started) holds the poll in its window instead of parking it:
                // hang up and poll again, which answers that change at once.
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if parked_polls(&t.app).await > 0 && !poll.is_finished() {
            return poll;
        }
        if !poll.is_finished() {
            poll.abort();
            continue;
        }
        since = poll.await.unwrap()["next_batch"].as_str().unwrap().to_owned();
    }
}

fn presence_senders(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["presence"]["events"]
        .as_array()
        .map(|a| a.iter().map(|e| e["sender"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default();
    s.sort();
    s
}

#[tokio::test]
async fn presence_alone_waits_for_the_window_and_two_changes_come_in_one_response() {
    let window = Duration::from_millis(700);
    let (t, since) = trio(window.as_millis() as u64).await;
    let poll = park_poll(&t, &since, "").await;
    let changed_at = Instant::now();
    set_status(&t.app, &t.alice, json!({"presence": "online", "status_msg": "one"})).await;
    set_status(&t.app, &t.carol, json!({"presence": "unavailable", "status_msg": "two"})).await;
    let v = poll.await.unwrap();
    assert!(changed_at.elapsed() >= window, "answered before the window ended: {v}");
    assert_eq!(presence_senders(&v), vec![t.alice.user_id.clone(), t.carol.user_id.clone()], "{v}");
    // The next poll starts from there: nothing is delivered twice.
    let next = v["next_batch"].as_str().unwrap();
    let again = t.app.sync(&t.bob, &format!("since={next}&timeout=0&{QUIET}")).await;
    assert!(presence_senders(&again).is_empty(), "{again}");
}

#[tokio::test]
async fn a_message_during_the_window_ends_it_at_once() {
    // A window far longer than the test may take: only the message can end the wait early.
    let window = Duration::from_secs(30);
    let (t, since) = trio(window.as_millis() as u64).await;
    let poll = park_poll(&t, &since, "").await;
    let started = Instant::now();
    set_status(&t.app, &t.alice, json!({"presence": "online", "status_msg": "here"})).await;
    t.app.send_text(&t.carol, &t.room, "hello").await;
    let v = poll.await.unwrap();
    assert!(started.elapsed() < window, "the message did not end the window");
    let timeline = &v["rooms"]["join"][&t.room]["timeline"]["events"];
    assert!(timeline.as_array().unwrap().iter().any(|e| e["content"]["body"] == "hello"), "{v}");
    // Sending is pro-active (carol is online now): her presence may come along with alice's.
    assert!(presence_senders(&v).contains(&t.alice.user_id), "the presence collected so far comes too: {v}");
}

#[tokio::test]
async fn typing_is_not_held_by_the_window() {
    let window = Duration::from_secs(30);
    let (t, since) = trio(window.as_millis() as u64).await;
    let poll = park_poll(&t, &since, "").await;
    let started = Instant::now();
    set_status(&t.app, &t.alice, json!({"presence": "online"})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&t.room), enc(&t.carol.user_id));
    let (code, body) = t.app.put(&path, Some(&t.carol.token), json!({"typing": true, "timeout": 10000})).await;
    assert_eq!(code, 200, "{body}");
    let v = poll.await.unwrap();
    assert!(started.elapsed() < window, "typing did not end the window");
    let ephemeral = &v["rooms"]["join"][&t.room]["ephemeral"]["events"];
    assert!(ephemeral.as_array().unwrap().iter().any(|e| e["type"] == "m.typing"), "{v}");
}

#[tokio::test]
async fn window_zero_answers_the_first_presence_change() {
    let (t, since) = trio(0).await;
    let poll = park_poll(&t, &since, "").await;
    set_status(&t.app, &t.alice, json!({"presence": "online", "status_msg": "now"})).await;
    let v = poll.await.unwrap();
    // Answered by the wake-up (a timed-out poll would come back empty after 60 s).
    assert_eq!(presence_senders(&v), vec![t.alice.user_id.clone()], "{v}");
}

#[tokio::test]
async fn peeked_presence_and_status_are_batched_like_legacy_presence() {
    let window = Duration::from_millis(700);
    let (t, _) = trio(window.as_millis() as u64).await;
    let (code, profile) =
        t.app.get(&format!("/_matrix/client/v3/profile/{}", enc(&t.alice.user_id)), Some(&t.bob.token)).await;
    assert_eq!(code, 200, "{profile}");
    let profile_room = profile["org.matrix.msc1769.profile_room_id"].as_str().unwrap().to_owned();
    let peek = format!("/_matrix/client/unstable/org.matrix.msc2753/peek/{}", enc(&profile_room));
    let (code, body) = t.app.post(&peek, Some(&t.bob.token), json!({})).await;
    assert_eq!(code, 200, "{body}");
    // Only the peek path: the legacy section is filtered out.
    let filter = enc(r#"{"presence":{"types":[]}}"#);
    let v = t.app.sync(&t.bob, &format!("filter={filter}&{QUIET}")).await;
    let since = v["next_batch"].as_str().unwrap().to_owned();
    let poll = park_poll(&t, &since, &format!("&filter={filter}")).await;
    let changed_at = Instant::now();
    set_status(&t.app, &t.alice, json!({"presence": "unavailable", "status_msg": "lunch"})).await;
    let v = poll.await.unwrap();
    assert!(changed_at.elapsed() >= window, "answered before the window ended: {v}");
    let events = v["rooms"]["peek"][&profile_room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"m.status") && kinds.contains(&"m.presence"), "both in one response: {v}");
}

#[tokio::test]
async fn the_window_never_outlasts_the_long_poll() {
    let (t, since) = trio(30_000).await;
    let start = Instant::now();
    let poll = park_poll_with(&t, &since, "", 3_000).await;
    set_status(&t.app, &t.alice, json!({"presence": "online"})).await;
    poll.await.unwrap();
    // The window (30 s) would end long after the long-poll's own timeout (3 s).
    assert!(start.elapsed() < Duration::from_secs(30), "held past the long-poll timeout");
}

/// What a parked `/sync` holds in its task besides the connection: the future's own size
/// (every await point's state laid out at once). Large section futures are boxed so they
/// cost memory only while a response is built, not while the poll waits.
#[tokio::test]
async fn a_waiting_sync_future_stays_small() {
    let app = TestApp::spawn().await;
    let state = app.running.as_ref().unwrap().state.clone();
    let session = seed::accounts::Session { user_id: "@a:localhost".into(), device_id: "D".into() };
    let req = seed::sync::SyncRequest {
        since: Some(1),
        timeout: Duration::from_secs(30),
        full_state: false,
        filter: Arc::default(),
    };
    let fut = state.sync.sync_with_presence(&session, seed::presence::Presence::Offline, None, req);
    let size = std::mem::size_of_val(&fut);
    eprintln!("sync_with_presence future: {size} bytes");
    assert!(size <= 2048, "the /sync future takes {size} bytes");
}

/// Issue #13: a long-poll whose token is current (nothing concerned the user since) waits at
/// once, without building a first, empty answer (`seed_sync_quiet_starts_total`). A change
/// that comes between two long-polls, while nobody waits, is still counted for the user: the
/// next poll answers it at once instead of waiting for its timeout.
#[tokio::test]
async fn a_poll_from_a_current_token_waits_at_once_and_a_change_between_polls_is_not_missed() {
    let (t, mut since) = trio(700).await;
    let quiet_starts = || metric(&t.app, "seed_sync_quiet_starts_total");
    // Polls that wait out their 300 ms with nothing new; once the setup's last changes are
    // answered, such a poll starts quiet.
    let mut quiet_seen = false;
    for _ in 0..10 {
        let before = quiet_starts().await;
        let started = Instant::now();
        let v = t.app.sync(&t.bob, &format!("since={since}&timeout=300&{QUIET}")).await;
        since = v["next_batch"].as_str().unwrap().to_owned();
        if started.elapsed() >= Duration::from_millis(300) && quiet_starts().await == before + 1 {
            quiet_seen = true;
            break;
        }
    }
    assert!(quiet_seen, "no long-poll from a current token started quiet");

    // alice changes while bob is not polling; bob's next poll from the same token answers at
    // once with it.
    let before = quiet_starts().await;
    set_status(&t.app, &t.alice, json!({"presence": "online", "status_msg": "between polls"})).await;
    let started = Instant::now();
    let v = t.app.sync(&t.bob, &format!("since={since}&timeout=20000&{QUIET}")).await;
    assert!(started.elapsed() < Duration::from_secs(10), "the change between polls was missed: {v}");
    assert_eq!(presence_senders(&v), vec![t.alice.user_id.clone()], "{v}");
    assert_eq!(quiet_starts().await, before, "a poll with news did not start quiet");

    // From that answer's token the next poll is quiet again, and a change while it waits
    // wakes it. (A later change of alice's own may still come first: that poll answers it,
    // and the next one starts from there.)
    let mut since = v["next_batch"].as_str().unwrap().to_owned();
    let mut attempts = 0;
    let poll = loop {
        attempts += 1;
        assert!(attempts <= 5, "no long-poll parked");
        let before = quiet_starts().await;
        let (app, bob) = (t.app.clone(), t.bob.clone());
        let q = format!("since={since}&timeout=20000&{QUIET}");
        let poll = tokio::spawn(async move { app.sync(&bob, &q).await });
        let start = Instant::now();
        while parked_polls(&t.app).await == 0 && !poll.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(10), "the long-poll neither parked nor answered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !poll.is_finished() {
            assert_eq!(quiet_starts().await, before + 1, "the parked poll did not start quiet");
            break poll;
        }
        since = poll.await.unwrap()["next_batch"].as_str().unwrap().to_owned();
    };
    set_status(&t.app, &t.carol, json!({"presence": "unavailable", "status_msg": "while waiting"})).await;
    let v = poll.await.unwrap();
    // (alice may be there too, with a later change of her own that woke the poll first.)
    assert!(presence_senders(&v).contains(&t.carol.user_id), "{v}");
}
