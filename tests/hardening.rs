//! Regression tests for issue 10 (a hostile user and an unlucky operator): every error is
//! Matrix JSON, NUL never reaches the database, tokens and filters are bounded, poison events
//! cannot break a room, aliases in the server's namespaces cannot be squatted, power levels
//! follow the spec's change rules, and per-user limits answer the spec's errors.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, RawBody, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};

const PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";

async fn profile_room(app: &TestApp, of: &User) -> String {
    let (code, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&of.user_id)), None).await;
    assert_eq!(code, 200, "{v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

async fn set_presence(app: &TestApp, user: &User, body: Value) -> (reqwest::StatusCode, Value) {
    app.put(&format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id)), Some(&user.token), body).await
}

/// Defect 7: axum's `Path`/`Query` rejections used to answer plain text.
#[tokio::test]
async fn bad_path_and_query_parameters_answer_matrix_json() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    let cases = [
        "/_matrix/client/v3/presence/%FF%FE/status".to_owned(),
        "/_matrix/client/v3/profile/%FF%FE".to_owned(),
        "/_matrix/client/v3/rooms/%C3%28/initialSync".to_owned(),
        format!("/_matrix/client/v3/events?room_id={}&timeout=-1", enc(&room)),
        format!("/_matrix/client/v3/events?room_id={}&timeout=1e99", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/initialSync?limit=abc", enc(&room)),
        format!("/_matrix/client/v3/rooms/{}/messages?limit=abc", enc(&room)),
        "/_matrix/client/v3/sync?timeout=-1".to_owned(),
    ];
    for path in cases {
        let (code, v) = app.get(&path, Some(&alice.token)).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert!(v["errcode"].as_str().is_some_and(|e| e.starts_with("M_")), "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

/// Defect 3: NUL in identifiers reached PostgreSQL (500s, and a presence flush poisoned for
/// everyone).
#[tokio::test]
async fn nul_in_identifiers_is_refused_and_in_content_is_kept() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    let r = enc(&room);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/txn%00"), Some(json!({"body": "x"}))),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/state/m.topic/key%00"), Some(json!({"topic": "x"}))),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{r}/send/m.ty%00pe/t1"), Some(json!({}))),
        (Method::PUT, format!("/_matrix/client/v3/user/{}/account_data/a%00b", enc(&alice.user_id)), Some(json!({}))),
        (Method::GET, "/_matrix/client/v3/directory/room/%23a%00b%3Alocalhost".to_owned(), None),
        (
            Method::PUT,
            "/_matrix/client/v3/directory/room/%23a%00b%3Alocalhost".to_owned(),
            Some(json!({"room_id": room})),
        ),
        (Method::POST, format!("{PEEK}/rooms/!a%00b:localhost/unpeek"), Some(json!({}))),
        (Method::GET, "/_matrix/client/v3/rooms/!a%00b:localhost/initialSync".to_owned(), None),
        (Method::GET, "/_matrix/client/v3/events?room_id=!a%00b:localhost&timeout=0".to_owned(), None),
    ];
    for (method, path, body) in cases {
        let (code, v) = app.raw(method.clone(), &path, Some(&alice.token), body.map(RawBody::Json)).await;
        assert_err(code, &v, 400, "M_INVALID_PARAM");
    }
    for (path, body) in [
        (format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)), json!({"displayname": "a\u{0}b"})),
        (
            format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&alice.user_id)),
            json!({"avatar_url": "mxc://a\u{0}"}),
        ),
        ("/_matrix/client/v3/directory/room/%23ok%3Alocalhost".to_owned(), json!({"room_id": "!a\u{0}b:localhost"})),
    ] {
        let (code, v) = app.put(&path, Some(&alice.token), body).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert!(v["errcode"].is_string(), "{v}");
    }
    // Event content is JSON: NUL inside it is stored (escaped) and read back intact.
    let (code, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/nul1"),
            Some(&alice.token),
            json!({"msgtype": "m.text", "body": "poison\u{0}"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app.get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=1"), Some(&alice.token)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["chunk"][0]["content"]["body"], "poison\u{0}", "{v}");
}

/// Defect 3: a status message with NUL was acknowledged, then failed every presence flush of
/// *all* users on PostgreSQL; acknowledged statuses reverted on restart.
#[tokio::test]
async fn a_nul_status_message_never_blocks_other_users_presence() {
    let mut app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (code, v) = set_presence(&app, &alice, json!({"presence": "online", "status_msg": "poison\u{0}"})).await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) = set_presence(&app, &bob, json!({"presence": "busy", "status_msg": "fine"})).await;
    assert_eq!(code, 200, "{v}");
    app.restart().await;
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&bob.user_id)), Some(&bob.token)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status_msg"], "fine", "{v}");
}

/// Defect 8: tokens near i64::MAX wrapped around and returned the room from its start.
#[tokio::test]
async fn out_of_range_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    for path in [
        format!("/_matrix/client/v3/rooms/{r}/messages?from=t9223372036854775807&dir=f"),
        format!("/_matrix/client/v3/rooms/{r}/messages?from=t9223372036854775806&dir=b"),
        format!("/_matrix/client/v3/rooms/{r}/messages?from=t99999999999999999999&dir=f"),
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=f&to=t9223372036854775807"),
        format!("/_matrix/client/v3/events?room_id={r}&from=s9223372036854775807&timeout=0"),
        format!("/_matrix/client/v3/events?room_id={r}&from=s-1&timeout=0"),
        "/_matrix/client/v3/sync?since=s9223372036854775807&timeout=0".to_owned(),
    ] {
        let (code, v) = app.get(&path, Some(&alice.token)).await;
        assert_err(code, &v, 400, "M_INVALID_PARAM");
    }
}

/// Defect 6: an in-flight `/events` long-poll delivered a change made after the peeker lost
/// permission.
#[tokio::test]
async fn events_long_poll_checks_permission_at_delivery() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let shared = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &shared).await.0, 200);
    let room = profile_room(&app, &alice).await;
    let (code, init) = app.get(&format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room)), Some(&bob.token)).await;
    assert_eq!(code, 200, "{init}");
    let from = init["messages"]["end"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/events?room_id={}&from={from}&timeout=10000", enc(&room));
    let started = Instant::now();
    let ((code, v), _) = tokio::join!(app.get(&path, Some(&bob.token)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, v) =
            app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&shared)), Some(&bob.token), json!({})).await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = set_presence(&app, &alice, json!({"presence": "busy", "status_msg": "secret"})).await;
        assert_eq!(code, 200, "{v}");
    });
    assert!(started.elapsed() < Duration::from_secs(8), "the change must end the long-poll");
    assert!(!v.to_string().contains("secret"), "a lost permission must stop delivery: {v}");
    assert_err(code, &v, 403, "M_FORBIDDEN");
}

/// Defect 2: `*a*a*a…b` over a long event type took seconds of CPU per request (ReDoS).
#[tokio::test]
async fn glob_filters_are_linear_and_bounded() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    let r = enc(&room);
    let kind = "a".repeat(200);
    let (code, v) =
        app.put(&format!("/_matrix/client/v3/rooms/{r}/send/{kind}/t1"), Some(&alice.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let pattern = format!("{}b", "*a".repeat(60));
    let filter = json!({"types": [pattern]}).to_string();
    let started = Instant::now();
    let (code, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&filter={}", enc(&filter)), Some(&alice.token))
        .await;
    assert_eq!(code, 200, "{v}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(v["chunk"].as_array().unwrap().is_empty(), "{v}");
    // Bounded: a pattern longer than an identifier, or too many of them, is refused.
    let long = json!({"types": ["*".repeat(300)]}).to_string();
    let (code, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&filter={}", enc(&long)), Some(&alice.token))
        .await;
    assert_err(code, &v, 400, "M_BAD_JSON");
    let many: Vec<String> = (0..501).map(|i| format!("t{i}")).collect();
    let (code, v) = app
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"room": {"timeline": {"not_types": many}}}),
        )
        .await;
    assert_err(code, &v, 400, "M_BAD_JSON");
    let inline = json!({"room": {"timeline": {"types": ["*".repeat(300)]}}}).to_string();
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/sync?timeout=0&filter={}", enc(&inline)), Some(&alice.token)).await;
    assert_err(code, &v, 400, "M_BAD_JSON");
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

/// Defect 1: content nested 126 levels was accepted, then every member's `/sync` and
/// `/messages` answered 500 (serde_json's recursion limit when decoding the stored event).
#[tokio::test]
async fn deeply_nested_content_is_refused_on_write() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    let r = enc(&room);
    let deep = nested(126);
    for path in [
        format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/deep1"),
        format!("/_matrix/client/v3/rooms/{r}/state/m.deep/"),
        format!("/_matrix/client/v3/user/{}/account_data/m.deep", enc(&alice.user_id)),
    ] {
        let (code, v) = app.raw(Method::PUT, &path, Some(&alice.token), Some(RawBody::Text(deep.clone()))).await;
        assert_err(code, &v, 400, "M_BAD_JSON");
    }
    // At the limit it is accepted and reads back.
    let (code, v) = app
        .raw(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/ok1"),
            Some(&alice.token),
            Some(RawBody::Text(nested(64))),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    app.sync(&alice, "timeout=0").await;
    let (code, v) = app.get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"), Some(&alice.token)).await;
    assert_eq!(code, 200, "{v}");
}

/// Defect 1, read side: one undecodable stored event must never fail a whole `/sync`,
/// `/messages` or the room state.
#[tokio::test]
async fn one_undecodable_event_row_is_skipped_not_fatal() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({"name": "poisoned"})).await;
    let bad = app.send_text(&alice, &room, "to be damaged").await;
    app.send_text(&alice, &room, "still readable").await;
    let pool = &app.running.as_ref().unwrap().state.store.pool;
    let poison = format!("{{\"content\":{}}}", nested(126));
    sqlx::query("UPDATE events SET json = $1 WHERE event_id = $2")
        .bind(&poison)
        .bind(&bad)
        .execute(pool)
        .await
        .unwrap();
    let v = app.sync(&alice, "timeout=0").await;
    let timeline = v["rooms"]["join"][&room]["timeline"]["events"].to_string();
    assert!(timeline.contains("still readable") && !timeline.contains("to be damaged"), "{v}");
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)), Some(&alice.token)).await;
    assert_eq!(code, 200, "{v}");
    assert!(v.to_string().contains("still readable"), "{v}");
    // A damaged state event does not stop the room from loading after a restart either.
    let (_, name) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), Some(&alice.token)).await;
    let name_id: String =
        sqlx::query_scalar("SELECT event_id FROM current_state WHERE room_id = $1 AND event_type = 'm.room.name'")
            .bind(&room)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(name["name"], "poisoned");
    sqlx::query("UPDATE events SET json = $1 WHERE event_id = $2")
        .bind(&poison)
        .bind(&name_id)
        .execute(pool)
        .await
        .unwrap();
    let mut app = app;
    app.restart().await;
    let (code, v) =
        app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(&alice.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
}

/// Defect 4: before `victim` registered, anyone could create `#@victim:server` or
/// `#_profile_victim:server` and serve forged presence from their own room.
#[tokio::test]
async fn profile_alias_namespaces_are_reserved_for_the_server() {
    let app = TestApp::spawn().await;
    let mallory = app.register("mallory").await;
    let (code, v) =
        app.post("/_matrix/client/v3/createRoom", Some(&mallory.token), json!({"room_alias_name": "@victim"})).await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
    let (code, v) = app
        .post("/_matrix/client/v3/createRoom", Some(&mallory.token), json!({"room_alias_name": "_profile_victim"}))
        .await;
    assert_err(code, &v, 400, "M_INVALID_PARAM");
    let squat = app.create_room(&mallory, json!({})).await;
    for alias in ["#@victim:localhost", "#_profile_victim:localhost"] {
        let (code, v) = app
            .put(
                &format!("/_matrix/client/v3/directory/room/{}", enc(alias)),
                Some(&mallory.token),
                json!({"room_id": squat}),
            )
            .await;
        assert_err(code, &v, 400, "M_INVALID_PARAM");
    }
    // An alias squatted before the namespace was reserved is reclaimed at registration.
    let pool = &app.running.as_ref().unwrap().state.store.pool;
    sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
        .bind("#@victim:localhost")
        .bind(&squat)
        .bind(&mallory.user_id)
        .execute(pool)
        .await
        .unwrap();
    let victim = app.register("victim").await;
    let room = profile_room(&app, &victim).await;
    for alias in ["#@victim:localhost", "#_profile_victim:localhost"] {
        let (code, v) = app.get(&format!("/_matrix/client/v3/directory/room/{}", enc(alias)), None).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["room_id"], room.as_str(), "{alias} must name the victim's profile room");
        let (code, v) = app
            .raw(
                Method::DELETE,
                &format!("/_matrix/client/v3/directory/room/{}", enc(alias)),
                Some(&victim.token),
                None,
            )
            .await;
        assert_err(code, &v, 403, "M_FORBIDDEN");
    }
}

/// Defect 9: a user at level 50 could set `events` levels to 100, above their own.
#[tokio::test]
async fn power_level_changes_follow_the_spec_rules() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &room).await.0, 200);
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room));
    let (code, mut pl) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(code, 200, "{pl}");
    pl["users"][&bob.user_id] = json!(50);
    pl["events"]["m.room.power_levels"] = json!(50);
    let (code, v) = app.put(&path, Some(&alice.token), pl.clone()).await;
    assert_eq!(code, 200, "{v}");
    for edit in [
        json!({"events": {"m.room.topic": 100}}),
        json!({"notifications": {"room": 100}}),
        json!({"ban": 100}),
        json!({"users": {"@carol:localhost": 75}}),
    ] {
        let mut next = pl.clone();
        for (k, v) in edit.as_object().unwrap() {
            match v {
                Value::Object(m) => {
                    for (k2, v2) in m {
                        next[k][k2] = v2.clone();
                    }
                }
                v => next[k] = v.clone(),
            }
        }
        let (code, v) = app.put(&path, Some(&bob.token), next).await;
        assert_err(code, &v, 403, "M_FORBIDDEN");
    }
    let mut ok = pl.clone();
    ok["events"]["m.room.topic"] = json!(50);
    let (code, v) = app.put(&path, Some(&bob.token), ok).await;
    assert_eq!(code, 200, "{v}");
}

/// Defect 11: devices per user were unbounded (3,000 devices made that user's presence merge
/// 13× slower).
#[tokio::test]
async fn devices_per_user_are_limited() {
    let app = TestApp::spawn_with(|c| c.max_devices_per_user = 3).await;
    app.register("alice").await; // device 1
    app.login("alice", "D2").await;
    app.login("alice", "D3").await;
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw-123456", "device_id": "D4"});
    let (code, v) = app.post("/_matrix/client/v3/login", None, body).await;
    assert_err(code, &v, 403, "M_RESOURCE_LIMIT_EXCEEDED");
    // Logging in again as an existing device is not a new device.
    app.login("alice", "D3").await;
}

/// Defect 11: filters per user and filter size were unbounded (an 800 KB filter was stored).
#[tokio::test]
async fn filters_are_limited_in_number_and_size() {
    let app = TestApp::spawn_with(|c| {
        c.max_filters_per_user = 2;
        c.max_filter_bytes = 1024;
    })
    .await;
    let alice = app.register("alice").await;
    let path = format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id));
    let big: Vec<String> = (0..100).map(|i| format!("!room{i}:localhost")).collect();
    let (code, v) = app.post(&path, Some(&alice.token), json!({"room": {"rooms": big}})).await;
    assert_err(code, &v, 413, "M_TOO_LARGE");
    let inline =
        json!({"room": {"timeline": {"not_types": (0..100).map(|i| format!("m.type.{i}")).collect::<Vec<_>>()}}});
    let (code, v) = app
        .get(&format!("/_matrix/client/v3/sync?timeout=0&filter={}", enc(&inline.to_string())), Some(&alice.token))
        .await;
    assert_err(code, &v, 413, "M_TOO_LARGE");
    for _ in 0..2 {
        let (code, v) = app.post(&path, Some(&alice.token), json!({"room": {"timeline": {"limit": 5}}})).await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = app.post(&path, Some(&alice.token), json!({})).await;
    assert_err(code, &v, 403, "M_RESOURCE_LIMIT_EXCEEDED");
}

/// Defect 11: login was limited per IP only; password guessing from many IPs was not.
#[tokio::test]
async fn logins_are_limited_per_user() {
    let app = TestApp::spawn_with(|c| {
        c.login_rate_per_user_per_minute = 1;
        c.login_rate_per_user_burst = 2;
    })
    .await;
    app.register("alice").await;
    app.register("bob").await;
    let attempt = |user: &str, password: &str| json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
    for _ in 0..2 {
        let (code, v) = app.post("/_matrix/client/v3/login", None, attempt("alice", "wrong")).await;
        assert_err(code, &v, 403, "M_FORBIDDEN");
    }
    let (code, v) = app.post("/_matrix/client/v3/login", None, attempt("alice", "pw-123456")).await;
    assert_err(code, &v, 429, "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{v}");
    // Another user from the same IP is not affected.
    app.login("bob", "B2").await;
}

/// Defect 11: presence PUTs had no per-user limit.
#[tokio::test]
async fn presence_changes_are_limited_per_user() {
    let app = TestApp::spawn_with(|c| {
        c.presence_rate_per_second = 1;
        c.presence_rate_burst = 3;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for _ in 0..3 {
        let (code, v) = set_presence(&app, &alice, json!({"presence": "busy"})).await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = set_presence(&app, &alice, json!({"presence": "online"})).await;
    assert_err(code, &v, 429, "M_LIMIT_EXCEEDED");
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{v}");
    let (code, v) = set_presence(&app, &bob, json!({"presence": "online"})).await;
    assert_eq!(code, 200, "{v}");
}

/// Defect 3, storage side: one row PostgreSQL refuses (NUL in text) must not fail the flush of
/// everyone else's presence (the batch used to be retried whole, forever).
#[tokio::test]
async fn one_bad_presence_row_does_not_block_the_flush_batch() {
    // Status writes are group-committed (src/presence/status_log.rs): a group holding a row
    // the database refuses (NUL in text on PostgreSQL) is retried one write at a time, so only
    // the bad write fails and the others in its group are stored.
    let app = TestApp::spawn().await;
    let store = app.running.as_ref().unwrap().state.store.clone();
    let log = seed::presence::status_log::StatusLog::new(store.clone());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let write = |user: &str, msg: &str| seed::store::StatusWrite::Manual {
        user_id: user.into(),
        manual: "busy".into(),
        status_msg: Some(msg.into()),
    };
    log.start(stop_rx);
    let (poison, fine) =
        tokio::join!(log.write(write("@a:localhost", "poison\u{0}")), log.write(write("@b:localhost", "fine")));
    if std::env::var("SEED_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        assert!(poison.is_err(), "PostgreSQL refuses NUL in text: only that write fails");
    }
    fine.expect("the good write of the group is stored");
    let saved = store.load_presence().await.unwrap();
    assert!(saved.iter().any(|r| r.user_id == "@b:localhost" && r.status_msg.as_deref() == Some("fine")), "{saved:?}");
}

/// A status-log group is written as one upsert when it can be (no `BEGIN`/`COMMIT`) and as
/// several in one transaction when it mixes full writes and text-only writes; either way
/// every write lands, a text-only write keeps the user's manual status, and a failed
/// statement leaves nothing behind.
#[tokio::test]
async fn status_groups_of_one_and_of_several_statements_are_stored_whole() {
    use seed::store::StatusWrite;
    let app = TestApp::spawn().await;
    let store = app.running.as_ref().unwrap().state.store.clone();
    let manual = |user: &str, m: &str, msg: &str| StatusWrite::Manual {
        user_id: user.into(),
        manual: m.into(),
        status_msg: Some(msg.into()),
    };
    let text = |user: &str, msg: &str| StatusWrite::StatusMsg { user_id: user.into(), status_msg: Some(msg.into()) };
    let row = |rows: &[seed::store::PresenceRow], user: &str| {
        rows.iter().find(|r| r.user_id == user).map(|r| (r.manual.clone(), r.status_msg.clone()))
    };
    // One statement: a single full write, then a single text-only write of the same user.
    store.save_status_batch(&[&manual("@one:localhost", "busy", "first")]).await.unwrap();
    store.save_status_batch(&[&text("@one:localhost", "second")]).await.unwrap();
    // Two statements in one transaction: a full write and a text-only write of another user,
    // with a later full write of the first one (the later write of a user wins).
    let (a, b, c) = (
        manual("@two:localhost", "unavailable", "x"),
        text("@one:localhost", "third"),
        manual("@two:localhost", "busy", "y"),
    );
    store.save_status_batch(&[&a, &b, &c]).await.unwrap();
    let rows = store.load_presence().await.unwrap();
    assert_eq!(row(&rows, "@one:localhost"), Some(("busy".into(), Some("third".into()))), "{rows:?}");
    assert_eq!(row(&rows, "@two:localhost"), Some(("busy".into(), Some("y".into()))), "{rows:?}");
    // A statement the database refuses: PostgreSQL rejects NUL in text. Alone it fails and
    // stores nothing; in a transaction with a good statement, neither is stored.
    if std::env::var("SEED_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        assert!(store.save_status_batch(&[&manual("@three:localhost", "busy", "bad\u{0}")]).await.is_err());
        let (good, bad) = (text("@one:localhost", "fourth"), manual("@three:localhost", "busy", "bad\u{0}"));
        assert!(store.save_status_batch(&[&bad, &good]).await.is_err());
        let rows = store.load_presence().await.unwrap();
        assert_eq!(row(&rows, "@three:localhost"), None, "{rows:?}");
        assert_eq!(row(&rows, "@one:localhost"), Some(("busy".into(), Some("third".into()))), "{rows:?}");
    }
}
