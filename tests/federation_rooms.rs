//! Rooms shared by two Seed instances on loopback (issue #14): invites across servers,
//! joins (by room id and by alias), messages both ways with `/sync` wake-ups, state that
//! agrees on both sides, leaving and rejoining; and PDUs a peer must not get in (bad
//! signature, failing auth, malformed), which leave the room as it was.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use std::time::{Duration, Instant};

use common::{enc, TestApp, User};
use federation_common::{sync_until, FedApp, Host, Signer};
use ruma::RoomVersionId;
use serde_json::{json, Value};

/// Does a sync response carry a timeline event of `room` matching `pred`?
fn timeline_has(v: &Value, room: &str, pred: impl Fn(&Value) -> bool) -> bool {
    v["rooms"]["join"][room]["timeline"]["events"].as_array().is_some_and(|evs| evs.iter().any(pred))
}

fn is_text(body: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["type"] == "m.room.message" && e["content"]["body"] == body
}

fn is_membership<'a>(user: &'a str, membership: &'static str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| e["type"] == "m.room.member" && e["state_key"] == user && e["content"]["membership"] == membership
}

async fn state_event(app: &TestApp, user: &User, room: &str, kind: &str) -> Value {
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room)), Some(&user.token)).await;
    assert_eq!(status, 200, "{kind}: {v}");
    v
}

/// Poll a state event until `pred` holds (the change travels between servers).
async fn await_state(app: &TestApp, user: &User, room: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) =
            app.get(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room)), Some(&user.token)).await;
        if status == 200 && pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {kind}: {v}");
        // Wait for the next room event instead of sleeping.
        sync_until(app, user, kind, |_| true).await;
        let _ = app.sync(user, "timeout=1000").await;
    }
}

async fn two_servers() -> (FedApp, FedApp) {
    (FedApp::spawn(Host::Localhost, |_| {}).await, FedApp::spawn(Host::Ip, |_| {}).await)
}

#[tokio::test]
async fn invite_join_talk_and_agree_on_state_across_servers() {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "private_chat", "name": "Lounge"})).await;

    let (status, v) = a
        .app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice.token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, 200, "invite: {v}");
    let v = sync_until(&b.app, &bob, "the invite", |v| v["rooms"]["invite"][&room].is_object()).await;
    let invite_state = v["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap().clone();
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Lounge"), "{v}");

    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join on A", |v| timeline_has(v, &room, is_membership(&bob.user_id, "join")))
        .await;

    a.app.send_text(&alice, &room, "hello from A").await;
    sync_until(&b.app, &bob, "A's message on B", |v| timeline_has(v, &room, is_text("hello from A"))).await;
    b.app.send_text(&bob, &room, "hello from B").await;
    sync_until(&a.app, &alice, "B's message on A", |v| timeline_has(v, &room, is_text("hello from B"))).await;

    // State agrees: the name, and a power-level change made on A.
    assert_eq!(state_event(&b.app, &bob, &room, "m.room.name").await["name"], "Lounge");
    let mut pl = state_event(&a.app, &alice, &room, "m.room.power_levels").await;
    pl["users"][&bob.user_id] = json!(50);
    let (status, v) = a
        .app
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room)), Some(&alice.token), pl)
        .await;
    assert_eq!(status, 200, "{v}");
    let on_b = await_state(&b.app, &bob, &room, "m.room.power_levels", |v| v["users"][&bob.user_id] == 50).await;
    assert_eq!(on_b, state_event(&a.app, &alice, &room, "m.room.power_levels").await);
    // Bob (50) renames the room from B; A follows.
    let (status, v) = b
        .app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
            Some(&bob.token),
            json!({"name": "Salon"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    await_state(&a.app, &alice, &room, "m.room.name", |v| v["name"] == "Salon").await;
    let members = |v: &Value| v["joined"].as_object().map(|m| m.len()).unwrap_or(0);
    let (_, on_a) =
        a.app.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&alice.token)).await;
    let (_, on_b) =
        b.app.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&bob.token)).await;
    assert_eq!((members(&on_a), members(&on_b)), (2, 2), "{on_a} {on_b}");
}

#[tokio::test]
async fn join_by_alias_leave_and_rejoin() {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a
        .app
        .create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "lounge", "name": "Lounge"}))
        .await;
    let alias = format!("#lounge:{}", a.server_name);

    let (status, v) = b.app.join(&bob, &alias).await;
    assert_eq!(status, 200, "join by alias: {v}");
    assert_eq!(v["room_id"], room);
    sync_until(&b.app, &bob, "the room on B", |v| v["rooms"]["join"][&room].is_object()).await;
    a.app.send_text(&alice, &room, "welcome").await;
    sync_until(&b.app, &bob, "A's message", |v| timeline_has(v, &room, is_text("welcome"))).await;

    let (status, v) =
        b.app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "leave: {v}");
    sync_until(&a.app, &alice, "bob's leave on A", |v| timeline_has(v, &room, is_membership(&bob.user_id, "leave")))
        .await;
    a.app.send_text(&alice, &room, "while bob is away").await;

    let (status, v) = b.app.join(&bob, &alias).await;
    assert_eq!(status, 200, "rejoin: {v}");
    sync_until(&a.app, &alice, "bob back on A", |v| timeline_has(v, &room, is_membership(&bob.user_id, "join"))).await;
    a.app.send_text(&alice, &room, "welcome back").await;
    sync_until(&b.app, &bob, "the message after the rejoin", |v| timeline_has(v, &room, is_text("welcome back"))).await;
    b.app.send_text(&bob, &room, "glad to be back").await;
    sync_until(&a.app, &alice, "B's message after the rejoin", |v| timeline_has(v, &room, is_text("glad to be back")))
        .await;
}

/// `PUT /send/{txnId}` to `to`, signed by `from`.
async fn send_txn(from: &Signer, to: &FedApp, pdus: Vec<Value>) -> Value {
    federation_common::send_transaction(from, to, pdus, vec![]).await
}

/// A message PDU of `sender` on top of the room's newest event, signed by `signer`.
fn message_pdu(
    signer: &Signer,
    room: &str,
    sender: &str,
    prev: &str,
    depth: i64,
    auth: &[String],
    body: &str,
) -> Value {
    let ev = json!({
        "room_id": room, "sender": sender, "type": "m.room.message", "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body}, "depth": depth,
        "prev_events": [prev], "auth_events": auth,
    });
    let mut obj = seed::federation::pdu::to_canonical(ev).unwrap();
    seed::federation::pdu::hash_and_sign(&mut obj, signer.origin.as_str(), &signer.key, &RoomVersionId::V10).unwrap();
    serde_json::to_value(obj).unwrap()
}

#[tokio::test]
async fn bad_pdus_are_refused_and_leave_the_room_as_it_was() {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat", "name": "Lounge"})).await;
    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join", |v| timeline_has(v, &room, is_membership(&bob.user_id, "join"))).await;

    // What a good PDU of bob's would point to, read through A's client API.
    let (_, state) = a.app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
    let id_of = |kind: &str, sk: &str| {
        state.as_array().unwrap().iter().find(|e| e["type"] == kind && e["state_key"] == sk).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, page) =
        a.app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1", enc(&room)), Some(&alice.token)).await;
    let prev = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let create = id_of("m.room.create", "");
    let pl = id_of("m.room.power_levels", "");
    let signer = b.signer();
    let auth = vec![create.clone(), pl.clone(), id_of("m.room.member", &bob.user_id)];

    // A good one first, so we know the path works.
    let good = message_pdu(&signer, &room, &bob.user_id, &prev, 100, &auth, "signed right");
    let v = send_txn(&signer, &a, vec![good]).await;
    assert!(v["pdus"].as_object().unwrap().values().all(|r| r.get("error").is_none()), "{v}");
    sync_until(&a.app, &alice, "the good PDU", |v| timeline_has(v, &room, is_text("signed right"))).await;

    // Bad signature: B's key id, another key.
    let forger = Signer {
        origin: signer.origin.clone(),
        key: seed::federation::signing_key::parse_key_line(&format!(
            "ed25519 {} YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1",
            signer.key.version()
        ))
        .unwrap(),
    };
    let forged = message_pdu(&forger, &room, &bob.user_id, &prev, 101, &auth, "forged");
    // Fails auth: mallory of B is not in the room.
    let mallory = format!("@mallory:{}", b.server_name);
    let intruder = message_pdu(&signer, &room, &mallory, &prev, 101, &[create.clone(), pl.clone()], "intruder");
    // Malformed: no depth; and one over the size limit.
    let mut no_depth = message_pdu(&signer, &room, &bob.user_id, &prev, 101, &auth, "no depth");
    no_depth.as_object_mut().unwrap().remove("depth");
    let mut huge = message_pdu(&signer, &room, &bob.user_id, &prev, 101, &auth, "huge");
    huge["content"]["body"] = json!("x".repeat(70_000));
    // A state change by a user without the power to make it (bob has 0, names need 50).
    let rename = {
        let ev = json!({
            "room_id": room, "sender": bob.user_id, "type": "m.room.name", "state_key": "",
            "origin_server_ts": 1, "content": {"name": "Taken over"}, "depth": 101,
            "prev_events": [prev], "auth_events": auth,
        });
        let mut obj = seed::federation::pdu::to_canonical(ev).unwrap();
        seed::federation::pdu::hash_and_sign(&mut obj, signer.origin.as_str(), &signer.key, &RoomVersionId::V10)
            .unwrap();
        serde_json::to_value(obj).unwrap()
    };
    let v = send_txn(&signer, &a, vec![forged, intruder, no_depth, huge, rename]).await;
    let results = v["pdus"].as_object().unwrap();
    assert_eq!(results.len(), 5, "{v}");
    assert!(results.values().all(|r| r["error"].is_string()), "every bad PDU refused: {v}");

    // Nothing of them reached the room.
    assert_eq!(state_event(&a.app, &alice, &room, "m.room.name").await["name"], "Lounge");
    let (_, page) = a
        .app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20", enc(&room)), Some(&alice.token))
        .await;
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies.iter().filter(|b| **b != "signed right").count(), 0, "{bodies:?}");
    // The room still works both ways.
    b.app.send_text(&bob, &room, "still here").await;
    sync_until(&a.app, &alice, "a message after the bad ones", |v| timeline_has(v, &room, is_text("still here"))).await;
}

#[tokio::test]
async fn federation_endpoints_refuse_servers_outside_the_room() {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({"preset": "private_chat"})).await;
    let signer = b.signer();
    let bob = format!("@bob:{}", b.server_name);
    // An invite-only room: no join template for bob.
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", enc(&room), enc(&bob));
    let (status, v) = federation_common::signed_get(&signer, &a, &path).await;
    common::assert_err(status, &v, 403, "M_FORBIDDEN");
    // A room version bob's server does not claim to support.
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=9", enc(&room), enc(&bob));
    let (status, v) = federation_common::signed_get(&signer, &a, &path).await;
    common::assert_err(status, &v, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    // B has nobody in the room: no state, no events.
    let (_, state) = a.app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
    let create = state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(&room), enc(&create)),
        format!("/_matrix/federation/v1/event/{}", enc(&create)),
        format!("/_matrix/federation/v1/backfill/{}?v={}&limit=10", enc(&room), enc(&create)),
    ] {
        let (status, v) = federation_common::signed_get(&signer, &a, &path).await;
        common::assert_err(status, &v, 403, "M_FORBIDDEN");
    }
    // An unknown room.
    let path = format!("/_matrix/federation/v1/state_ids/{}?event_id=%24x", enc(&format!("!nope:{}", a.server_name)));
    let (status, v) = federation_common::signed_get(&signer, &a, &path).await;
    common::assert_err(status, &v, 404, "M_NOT_FOUND");
}
