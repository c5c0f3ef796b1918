//! `/sync` over HTTP: initial and incremental syncs, the long-poll, invites, leaves, filters.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, TestApp};
use serde_json::json;

#[tokio::test]
async fn initial_then_incremental() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({"name": "R"})).await;
    app.send_text(&alice, &room, "hello").await;
    let s = app.sync(&alice, "").await;
    let joined = &s["rooms"]["join"][&room];
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["content"]["body"], "hello");
    let all_types: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(timeline.iter())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(all_types.contains(&"m.room.create") && all_types.contains(&"m.room.name"), "{all_types:?}");
    // The sender's device sees its transaction id.
    assert!(timeline.last().unwrap()["unsigned"]["transaction_id"].is_string());
    assert!(s["presence"]["events"].is_array());
    let next = s["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: an incremental sync with timeout=0 is empty.
    let s2 = app.sync(&alice, &format!("since={next}&timeout=0")).await;
    assert!(s2["rooms"]["join"].as_object().unwrap().is_empty(), "{s2}");
    app.send_text(&alice, &room, "second").await;
    let s3 = app.sync(&alice, &format!("since={next}&timeout=0")).await;
    let tl = s3["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(tl.len(), 1);
    assert_eq!(tl[0]["content"]["body"], "second");
    assert_eq!(s3["rooms"]["join"][&room]["timeline"]["limited"], false);
}

#[tokio::test]
async fn long_poll_wakes_when_a_message_arrives() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    let next = app.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let query = format!("since={next}&timeout=20000");
    let (s, _) = tokio::join!(app.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.send_text(&alice, &room, "wake up").await
    });
    let waited = started.elapsed();
    let tl = s["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(tl[0]["content"]["body"], "wake up");
    assert!(waited < Duration::from_secs(10), "the long-poll must return on the message, not the timeout ({waited:?})");
}

#[tokio::test]
async fn long_poll_times_out_empty() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let next = app.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let s = app.sync(&alice, &format!("since={next}&timeout=300")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(s["rooms"]["join"].as_object().unwrap().is_empty(), "{s}");
    let pos = |t: &str| t[1..].parse::<i64>().unwrap();
    assert!(pos(s["next_batch"].as_str().unwrap()) >= pos(&next));
}

#[tokio::test]
async fn invites_and_leaves_show_up() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let next = app.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let room = app.create_room(&alice, json!({"name": "Secret", "invite": [bob.user_id]})).await;
    let s = app.sync(&bob, &format!("since={next}&timeout=5000")).await;
    let invite = &s["rooms"]["invite"][&room]["invite_state"]["events"];
    let types: Vec<&str> = invite.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"m.room.name") && types.contains(&"m.room.member"), "{s}");
    app.join(&bob, &room).await;
    let next = s["next_batch"].as_str().unwrap().to_owned();
    let s = app.sync(&bob, &format!("since={next}&timeout=5000")).await;
    assert!(s["rooms"]["join"][&room].is_object(), "{s}");
    let next = s["next_batch"].as_str().unwrap().to_owned();
    app.post(
        &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
        Some(&alice.token),
        json!({"user_id": bob.user_id}),
    )
    .await;
    let s = app.sync(&bob, &format!("since={next}&timeout=5000")).await;
    let tl = s["rooms"]["leave"][&room]["timeline"]["events"].as_array().unwrap();
    assert_eq!(tl.last().unwrap()["content"]["membership"], "leave", "{s}");
    // After leaving, messages are no longer delivered.
    let next = s["next_batch"].as_str().unwrap().to_owned();
    app.send_text(&alice, &room, "after").await;
    let s = app.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert!(
        s["rooms"]["join"].as_object().unwrap().is_empty() && s["rooms"]["leave"].as_object().unwrap().is_empty(),
        "{s}"
    );
}

#[tokio::test]
async fn filters_limit_the_timeline() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    for i in 0..5 {
        app.send_text(&alice, &room, &format!("m{i}")).await;
    }
    let (status, v) = app
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"room": {"timeline": {"limit": 2}}}),
        )
        .await;
    assert_eq!(status, 200);
    let fid = v["filter_id"].as_str().unwrap().to_owned();
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/user/{}/filter/{fid}", enc(&alice.user_id)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["room"]["timeline"]["limit"], 2);
    let s = app.sync(&alice, &format!("filter={fid}")).await;
    let tl = &s["rooms"]["join"][&room]["timeline"];
    assert_eq!(tl["events"].as_array().unwrap().len(), 2);
    assert_eq!(tl["limited"], true);
    assert!(tl["prev_batch"].is_string());
    // Inline filter JSON.
    let inline = enc(r#"{"room":{"timeline":{"limit":1}}}"#);
    let s = app.sync(&alice, &format!("filter={inline}")).await;
    assert_eq!(s["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().len(), 1);
    // prev_batch continues with /messages.
    let prev = s["rooms"]["join"][&room]["timeline"]["prev_batch"].as_str().unwrap();
    let (_, m) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1&from={prev}", enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(m["chunk"][0]["content"]["body"], "m3");
    // Errors.
    let bob = app.register("bob").await;
    let (status, v) =
        app.post(&format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)), Some(&bob.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/user/{}/filter/999", enc(&alice.user_id)), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"room": {"timeline": {"limit": "many"}}}),
        )
        .await;
    assert_err(status, &v, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn bad_sync_parameters() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.get("/_matrix/client/v3/sync?set_presence=dancing", Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get("/_matrix/client/v3/sync?since=notatoken", Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get("/_matrix/client/v3/sync?timeout=soon", Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get("/_matrix/client/v3/sync", None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    for ok in ["online", "unavailable", "offline", "busy", "org.matrix.msc3026.busy"] {
        let (status, v) =
            app.get(&format!("/_matrix/client/v3/sync?timeout=0&set_presence={ok}"), Some(&alice.token)).await;
        assert_eq!(status, 200, "{ok}: {v}");
    }
    // With an inline filter the server already knows (the quick read of a long-poll's query,
    // `api::client::sync::quick_parse`), a bad value beside it is refused all the same.
    let filter = enc(r#"{"room":{"timeline":{"limit":1}}}"#);
    let (status, v) = app.get(&format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    for bad in [
        "set_presence=dancing",
        "since=notatoken",
        "timeout=soon",
        "timeout=-1",
        "org.matrix.msc3032.device_kind=tablet",
    ] {
        // Each parameter once (a repeated one takes the full read anyway); no timeout, so a
        // request that were wrongly accepted would answer at once, not wait.
        let (status, v) = app.get(&format!("/_matrix/client/v3/sync?filter={filter}&{bad}"), Some(&alice.token)).await;
        assert_err(status, &v, 400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn abandoned_long_polls_free_their_wake_up_channel() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let next = app.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let waiting = || async {
        let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix("seed_sync_waiting_users ")).unwrap().trim().parse::<u64>().unwrap()
    };
    // A client that gives up after 200 ms on a 20 s long-poll.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let r = impatient
        .get(format!("{}/_matrix/client/v3/sync?since={next}&timeout=20000", app.base))
        .bearer_auth(&alice.token)
        .send()
        .await;
    assert!(r.is_err(), "the long-poll should still be waiting");
    let start = Instant::now();
    while waiting().await != 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the abandoned long-poll still holds its channel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Inline filters are parsed once per distinct text (`Filters::inline`): the cached one keeps
/// filtering, and a bad one is rejected every time, never cached.
#[tokio::test]
async fn inline_filters_are_reused_and_bad_ones_always_rejected() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    for i in 0..3 {
        app.send_text(&alice, &room, &format!("m{i}")).await;
    }
    let inline = enc(r#"{"room":{"timeline":{"limit":1}}}"#);
    for _ in 0..2 {
        let s = app.sync(&alice, &format!("filter={inline}")).await;
        let events = s["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().len();
        assert_eq!(events, 1, "{s}");
    }
    let bad = enc(r#"{"room":{"timeline":{"limit":-5}}}"#);
    for _ in 0..2 {
        let (status, v) = app.get(&format!("/_matrix/client/v3/sync?filter={bad}"), Some(&alice.token)).await;
        assert_eq!(status.as_u16(), 400, "{v}");
        assert!(v["errcode"].is_string() && v["error"].is_string(), "{v}");
    }
}
