//! Send-to-device messaging over HTTP: delivery in `/sync`, deletion after acknowledgement,
//! idempotent transaction ids, the `*` wildcard, long-poll wake-up and bounds.
mod common;

use common::{assert_err, TestApp, User};
use serde_json::{json, Value};

async fn send(app: &TestApp, from: &User, txn: &str, messages: Value) -> (reqwest::StatusCode, Value) {
    app.put(&format!("/_matrix/client/v3/sendToDevice/m.test/{txn}"), Some(&from.token), json!({"messages": messages}))
        .await
}

fn events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn to_device_messages_are_delivered_once_acknowledged_and_deleted() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let s0 = app.sync(&bob, "timeout=0").await;
    assert!(events(&s0).is_empty());
    let (st, v) = send(&app, &alice, "t1", json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}})).await;
    assert_eq!(st, 200, "{v}");
    let since = s0["next_batch"].as_str().unwrap();
    let s1 = app.sync(&bob, &format!("timeout=0&since={since}")).await;
    let ev = events(&s1);
    assert_eq!(ev.len(), 1, "{s1}");
    assert_eq!(ev[0], json!({"sender": alice.user_id, "type": "m.test", "content": {"n": 1}}));
    // Retrying the same `since` (the response was lost) delivers it again.
    let again = app.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert_eq!(events(&again).len(), 1);
    // A later `since` acknowledges it: gone for good.
    let next = again["next_batch"].as_str().unwrap();
    let s2 = app.sync(&bob, &format!("timeout=0&since={next}")).await;
    assert!(events(&s2).is_empty());
    let s3 = app.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert!(events(&s3).is_empty(), "deleted, not only hidden");
}

#[tokio::test]
async fn replayed_transaction_ids_are_not_delivered_twice() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let msg = json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}});
    for _ in 0..3 {
        let (st, v) = send(&app, &alice, "same", msg.clone()).await;
        assert_eq!(st, 200, "{v}");
    }
    let s = app.sync(&bob, "timeout=0").await;
    assert_eq!(events(&s).len(), 1, "{s}");
    // Another device of alice may use the same txn id.
    let alice2 = app.login("alice", "OTHER").await;
    let (st, _) = send(&app, &alice2, "same", msg).await;
    assert_eq!(st, 200);
    let s = app.sync(&bob, "timeout=0").await;
    assert_eq!(events(&s).len(), 2, "{s}");
}

#[tokio::test]
async fn wildcard_reaches_every_device_and_a_message_wakes_the_long_poll() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob1 = app.register_device("bob", Some("ONE")).await;
    let bob2 = app.login("bob", "TWO").await;
    let since = app.sync(&bob2, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let base = app.base.clone();
    let token = bob2.token.clone();
    // Other changes (presence) may answer a poll first: poll on until the message comes; a
    // message that failed to wake the poll would cost 20 s.
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut since = since;
        loop {
            let v: Value = reqwest::Client::new()
                .get(format!("{base}/_matrix/client/v3/sync?timeout=20000&since={since}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !events(&v).is_empty() || started.elapsed() > std::time::Duration::from_secs(30) {
                return (v, started.elapsed());
            }
            since = v["next_batch"].as_str().unwrap().to_owned();
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (st, _) = send(&app, &alice, "w", json!({bob1.user_id.clone(): {"*": {"hello": "all"}}})).await;
    assert_eq!(st, 200);
    let (v, took) = poll.await.unwrap();
    assert!(took < std::time::Duration::from_secs(10), "woken by the message");
    assert_eq!(events(&v).len(), 1, "{v}");
    let s1 = app.sync(&bob1, "timeout=0").await;
    assert_eq!(events(&s1)[0]["content"]["hello"], "all");
}

#[tokio::test]
async fn more_messages_than_one_sync_carries_come_in_the_next() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for i in 0..150 {
        let (st, _) =
            send(&app, &alice, &format!("t{i}"), json!({bob.user_id.clone(): {bob.device_id.clone(): {"i": i}}})).await;
        assert_eq!(st, 200);
    }
    let first = app.sync(&bob, "timeout=0").await;
    assert_eq!(events(&first).len(), 100);
    let next = first["next_batch"].as_str().unwrap();
    let second = app.sync(&bob, &format!("timeout=30000&since={next}")).await;
    let ev = events(&second);
    assert_eq!(ev.len(), 50, "the rest at once, without waiting");
    assert_eq!(ev[0]["content"]["i"], 100);
    assert_eq!(ev[49]["content"]["i"], 149);
}

#[tokio::test]
async fn bad_to_device_requests_are_rejected() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    // Oversized payload (the event size limit applies to each message).
    let big = "x".repeat(70_000);
    let (st, v) = send(&app, &alice, "big", json!({bob.user_id.clone(): {bob.device_id.clone(): {"b": big}}})).await;
    assert_err(st, &v, 413, "M_TOO_LARGE");
    // Wrong shapes.
    let (st, v) = send(&app, &alice, "s1", json!({bob.user_id.clone(): "nope"})).await;
    assert_err(st, &v, 400, "M_BAD_JSON");
    let (st, v) = send(&app, &alice, "s2", json!({bob.user_id.clone(): {bob.device_id.clone(): 5}})).await;
    assert_err(st, &v, 400, "M_BAD_JSON");
    let (st, v) = app.put("/_matrix/client/v3/sendToDevice/m.test/s3", Some(&alice.token), json!({})).await;
    assert_err(st, &v, 400, "M_BAD_JSON");
    let long_txn = "t".repeat(300);
    let (st, v) = send(&app, &alice, &long_txn, json!({})).await;
    assert_err(st, &v, 400, "M_INVALID_PARAM");
    let (st, v) = app.put("/_matrix/client/v3/sendToDevice/m.test/s4", None, json!({"messages": {}})).await;
    assert_err(st, &v, 401, "M_MISSING_TOKEN");
    // Unknown users and devices are skipped quietly.
    let (st, _) =
        send(&app, &alice, "s5", json!({"@nobody:localhost": {"X": {}}, bob.user_id.clone(): {"NODEVICE": {}}})).await;
    assert_eq!(st, 200);
    // A rejected request did not use up its transaction id, nor deliver anything.
    let (st, _) = send(&app, &alice, "big", json!({bob.user_id.clone(): {bob.device_id.clone(): {"ok": true}}})).await;
    assert_eq!(st, 200);
    let s = app.sync(&bob, "timeout=0").await;
    assert_eq!(events(&s).len(), 1, "{s}");
    assert_eq!(events(&s)[0]["content"]["ok"], true);
}

#[tokio::test]
async fn a_full_device_queue_answers_limit_exceeded() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    // One request may address a device once; fill the queue over many requests.
    let mut last = None;
    for i in 0..1001 {
        let (st, v) =
            send(&app, &alice, &format!("q{i}"), json!({bob.user_id.clone(): {bob.device_id.clone(): {"i": i}}})).await;
        if st != 200 {
            last = Some((i, st, v));
            break;
        }
    }
    let (i, st, v) = last.expect("the queue is bounded");
    assert_eq!(i, 1000);
    assert_err(st, &v, 429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn logging_out_drops_the_device_inbox() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register_device("bob", Some("PHONE")).await;
    send(&app, &alice, "x", json!({bob.user_id.clone(): {"PHONE": {"n": 1}}})).await;
    let (st, _) = app.post("/_matrix/client/v3/logout", Some(&bob.token), json!({})).await;
    assert_eq!(st, 200);
    let bob_again = app.login("bob", "PHONE").await;
    let s = app.sync(&bob_again, "timeout=0").await;
    assert!(events(&s).is_empty(), "{s}");
}

#[tokio::test]
async fn queued_messages_keys_and_device_list_changes_survive_a_restart() {
    let mut app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    let since = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let (st, _) = send(&app, &alice, "r1", json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}})).await;
    assert_eq!(st, 200);
    let keys = json!({"device_keys": {"user_id": alice.user_id, "device_id": alice.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"], "keys": {format!("ed25519:{}", alice.device_id): "k"}},
        "one_time_keys": {"signed_curve25519:A1": {"key": "otk"}}});
    let (st, _) = app.post("/_matrix/client/v3/keys/upload", Some(&alice.token), keys).await;
    assert_eq!(st, 200);

    app.restart().await;
    let s = app.sync(&bob, &format!("timeout=0&since={since}")).await;
    assert_eq!(events(&s).len(), 1, "{s}");
    assert!(s["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)), "{s}");
    // The same transaction id after the restart is still a replay.
    let (st, _) = send(&app, &alice, "r1", json!({bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}})).await;
    assert_eq!(st, 200);
    let next = s["next_batch"].as_str().unwrap();
    assert!(events(&app.sync(&bob, &format!("timeout=0&since={next}")).await).is_empty());
    let a = app.sync(&alice, "timeout=0").await;
    assert_eq!(a["device_one_time_keys_count"]["signed_curve25519"], 1);
}
