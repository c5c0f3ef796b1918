//! MSC2753 peeking as the proposal says: expiry and renewal, the errors it names, joining a
//! peeked room, no peeking into encrypted rooms, and the rate limit on `/peek`.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, TestApp, User};
use serde_json::{json, Value};

const PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A public room alice made world-readable, so anyone may peek it.
async fn world_readable_room(app: &TestApp, alice: &User) -> String {
    let room = app
        .create_room(
            alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    room
}

async fn peek(app: &TestApp, user: &User, room: &str) -> (reqwest::StatusCode, Value) {
    app.post(&format!("{PEEK}/peek/{}", enc(room)), Some(&user.token), json!({})).await
}

fn next(s: &Value) -> String {
    s["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn peeks_carry_an_expiry_are_renewed_by_peeking_again_and_expire_like_an_unpeek() {
    // Lifetimes short enough for a test, long enough that a loaded machine renews in time.
    let app = TestApp::spawn_with(|c| c.peek_expiry_ms = 1000).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = world_readable_room(&app, &alice).await;
    let before = now_ms();
    let (code, v) = peek(&app, &bob, &room).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["room_id"], room.as_str());
    let first_expiry = v["peek_expiry_ts"].as_i64().expect("peek_expiry_ts");
    assert!(first_expiry >= before + 1000 && first_expiry <= now_ms() + 1000, "{v}");
    let s = app.sync(&bob, "").await;
    let block = &s["rooms"]["peek"][&room];
    let n = |part: &str| block[part]["events"].as_array().map_or(0, Vec::len);
    assert!(n("state") + n("timeline") >= 5, "the room's state on the first sync: {s}");
    let mut since = next(&s);
    // Renew every 150 ms for well over one lifetime: the peek stays, and a renewal does not
    // send the room's state again.
    let started = Instant::now();
    let mut last_expiry = first_expiry;
    while started.elapsed() < Duration::from_millis(1300) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (code, v) = peek(&app, &bob, &room).await;
        assert_eq!(code, 200, "{v}");
        let e = v["peek_expiry_ts"].as_i64().unwrap();
        assert!(e >= last_expiry, "a renewal moves the expiry on: {e} < {last_expiry}");
        last_expiry = e;
        let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
        assert!(s["rooms"]["peek"].get(&room).is_none(), "a renewal resends nothing: {s}");
        assert!(s["rooms"]["leave"].get(&room).is_none(), "renewed peeks do not expire: {s}");
        since = next(&s);
    }
    assert!(last_expiry > first_expiry);
    // New events still arrive under rooms.peek.
    app.send_text(&alice, &room, "still here").await;
    let s = app.sync(&bob, &format!("since={since}&timeout=2000")).await;
    assert!(s.to_string().contains("still here"), "{s}");
    since = next(&s);
    // Stop renewing: the peek expires and is reported once under rooms.leave, waking the poll.
    let waited = Instant::now();
    let s = loop {
        let s = app.sync(&bob, &format!("since={since}&timeout=3000")).await;
        since = next(&s);
        if s["rooms"]["leave"].get(&room).is_some() {
            break s;
        }
        assert!(waited.elapsed() < Duration::from_secs(5), "the peek never expired: {s}");
    };
    assert!(s["rooms"]["peek"].get(&room).is_none(), "{s}");
    assert!(now_ms() >= last_expiry, "expired before its peek_expiry_ts");
    let s = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert!(s["rooms"]["leave"].get(&room).is_none(), "reported once: {s}");
    assert!(app.sync(&bob, "").await["rooms"]["peek"].get(&room).is_none());
    // Expired means gone: unpeeking it now is a bad state; peeking again starts afresh.
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!({})).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    assert_eq!(peek(&app, &bob, &room).await.0, 200);
    assert!(app.sync(&bob, &format!("since={since}&timeout=2000")).await["rooms"]["peek"][&room].is_object());
}

#[tokio::test]
async fn peek_and_unpeek_answer_the_errors_msc2753_names() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = world_readable_room(&app, &alice).await;
    // Peeking a room one has joined: 400 M_BAD_STATE.
    let (code, v) = peek(&app, &alice, &room).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    // Unknown rooms: 404 to peek, 400 M_BAD_STATE to unpeek; not peeking: 400 M_BAD_STATE.
    let (code, v) = peek(&app, &bob, "!nope:localhost").await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) = peek(&app, &bob, "#nope:localhost").await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) = peek(&app, &bob, "nonsense").await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) =
        app.post(&format!("{PEEK}/rooms/{}/unpeek", enc("!nope:localhost")), Some(&bob.token), json!({})).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!({})).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    // Bodies: a JSON object, `servers` a list of strings.
    for body in [json!([]), json!("x")] {
        let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), body.clone()).await;
        assert_err(code, &v, 400, "M_NOT_JSON");
    }
    for body in [json!({"servers": "localhost"}), json!({"servers": [1]})] {
        let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), body.clone()).await;
        assert_err(code, &v, 400, "M_BAD_JSON");
    }
    let (code, v) =
        app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({"servers": ["localhost"]})).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!([])).await;
    assert_err(code, &v, 400, "M_NOT_JSON");
    let since = next(&app.sync(&bob, "").await);
    app.send_text(&alice, &room, "just one more thing").await;
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, json!({}));
    // The unpeeked room is in rooms.leave with the events since the previous sync (MSC2753).
    let s = app.sync(&bob, &format!("since={since}&timeout=2000")).await;
    let events = s["rooms"]["leave"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(events.iter().any(|e| e["content"]["body"] == "just one more thing"), "{s}");
    assert!(s["rooms"]["peek"].get(&room).is_none(), "{s}");
    // Without a token: 401.
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), None, json!({})).await;
    assert_err(code, &v, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn joining_a_peeked_room_moves_it_from_peek_to_join() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = world_readable_room(&app, &alice).await;
    assert_eq!(peek(&app, &bob, &room).await.0, 200);
    let s = app.sync(&bob, "").await;
    assert!(s["rooms"]["peek"][&room].is_object(), "{s}");
    let since = next(&s);
    assert_eq!(app.join(&bob, &room).await.0, 200);
    app.send_text(&alice, &room, "welcome").await;
    let s = app.sync(&bob, &format!("since={since}&timeout=2000")).await;
    assert!(s["rooms"]["join"][&room].is_object(), "the room is now joined: {s}");
    assert!(s["rooms"]["peek"].get(&room).is_none(), "never in both: {s}");
    assert!(s["rooms"]["leave"].get(&room).is_none(), "joining is not an unpeek: {s}");
    // The device already holds the room from its peek: the join continues from there rather
    // than sending the whole room again (MSC2753).
    let joined = &s["rooms"]["join"][&room];
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    assert!(timeline.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()), "{s}");
    assert!(timeline.iter().any(|e| e["content"]["body"] == "welcome"), "{s}");
    assert!(!joined.to_string().contains("m.room.create"), "no full state again: {s}");
    assert_eq!(joined["timeline"]["limited"], false, "{s}");
    let since = next(&s);
    app.send_text(&alice, &room, "second").await;
    let s = app.sync(&bob, &format!("since={since}&timeout=2000")).await;
    assert!(s["rooms"]["join"][&room].is_object(), "{s}");
    assert!(s["rooms"]["peek"].get(&room).is_none(), "{s}");
    let s = app.sync(&bob, "").await;
    assert!(s["rooms"]["join"][&room].is_object() && s["rooms"]["peek"].get(&room).is_none(), "{s}");
    // The peek is gone: unpeeking it is a bad state, peeking a joined room too.
    let (code, v) = app.post(&format!("{PEEK}/rooms/{}/unpeek", enc(&room)), Some(&bob.token), json!({})).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
    let (code, v) = peek(&app, &bob, &room).await;
    assert_err(code, &v, 400, "M_BAD_STATE");
}

#[tokio::test]
async fn encrypted_rooms_cannot_be_peeked() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let encrypted = app
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}},
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            ]}),
        )
        .await;
    let (code, v) = peek(&app, &bob, &encrypted).await;
    assert_err(code, &v, 403, "M_FORBIDDEN");
    // A peeked room that turns encrypted ends the peek, reported under rooms.leave.
    let room = world_readable_room(&app, &alice).await;
    assert_eq!(peek(&app, &bob, &room).await.0, 200);
    let since = next(&app.sync(&bob, "").await);
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.encryption/", enc(&room)),
            Some(&alice.token),
            json!({"algorithm": "m.megolm.v1.aes-sha2"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let s = app.sync(&bob, &format!("since={since}&timeout=2000")).await;
    assert!(s["rooms"]["leave"][&room].is_object(), "{s}");
    assert!(s["rooms"]["peek"].get(&room).is_none(), "{s}");
}

#[tokio::test]
async fn peek_is_rate_limited_per_user() {
    let app = TestApp::spawn_with(|c| {
        c.peek_rate_per_second = 1;
        c.peek_rate_burst = 3;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = world_readable_room(&app, &alice).await;
    for _ in 0..3 {
        assert_eq!(peek(&app, &bob, &room).await.0, 200);
    }
    let (code, v) = peek(&app, &bob, &room).await;
    assert_err(code, &v, 429, "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "{v}");
    // Per user: carol is not held up by bob.
    assert_eq!(peek(&app, &carol, &room).await.0, 200);
}

#[tokio::test]
async fn a_peeks_expiry_is_stored_and_kept_across_a_restart() {
    let mut app = TestApp::spawn_with(|c| c.peek_expiry_ms = 1500).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = world_readable_room(&app, &alice).await;
    let (code, v) = peek(&app, &bob, &room).await;
    assert_eq!(code, 200, "{v}");
    let expiry = v["peek_expiry_ts"].as_i64().unwrap();
    let since = next(&app.sync(&bob, "").await);
    // Restart with a long lifetime for new peeks: the stored peek keeps its own expiry.
    let running = app.running.take().unwrap();
    let mut config = running.state.config.clone();
    running.stop().await;
    config.peek_expiry_ms = 3_600_000;
    let running = seed::app::spawn(config).await.expect("server restarts");
    app.base = format!("http://{}", running.addr);
    app.running = Some(running);
    let s = app.sync(&bob, "").await;
    assert!(s["rooms"]["peek"][&room].is_object(), "the peek survived the restart: {s}");
    let mut since = since;
    let started = Instant::now();
    loop {
        let s = app.sync(&bob, &format!("since={since}&timeout=3000")).await;
        since = next(&s);
        if s["rooms"]["leave"].get(&room).is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the stored expiry was not kept: {s}");
    }
    assert!(now_ms() >= expiry);
    assert!(app.sync(&bob, "").await["rooms"]["peek"].get(&room).is_none());
}
