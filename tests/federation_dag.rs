//! The room DAG across servers (issue #14): the state at each event after forks (state
//! groups), a gap that `get_missing_events` cannot close filled with `/state_ids`, fetched
//! auth chains checked before use, soft failure, and a joiner's `/sync` showing the room's
//! state as state. Two Seed instances, or Seed and a stand-in peer (`common/peer.rs`) that
//! signs its own events and serves what the test tells it to.
mod common;
#[path = "common/federation.rs"]
mod federation_common;
#[path = "common/peer.rs"]
mod peer;

use common::{enc, TestApp, User};
use federation_common::{signed_get, sync_until, tls_client, FedApp, Host, Signer};
use peer::{FakePeer, Mode};
use reqwest::Method;
use ruma::RoomVersionId;
use serde_json::{json, Value};

fn timeline_has(v: &Value, room: &str, pred: impl Fn(&Value) -> bool) -> bool {
    v["rooms"]["join"][room]["timeline"]["events"].as_array().is_some_and(|evs| evs.iter().any(pred))
}

fn is_text(body: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["type"] == "m.room.message" && e["content"]["body"] == body
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Sign an event as `signer` (room version 10); returns it with its event id.
fn sign(signer: &Signer, ev: Value) -> (String, Value) {
    let mut obj = seed::federation::pdu::to_canonical(ev).unwrap();
    seed::federation::pdu::hash_and_sign(&mut obj, signer.origin.as_str(), &signer.key, &RoomVersionId::V10).unwrap();
    let id = seed::federation::pdu::event_id(&obj, &RoomVersionId::V10).unwrap();
    (id, serde_json::to_value(obj).unwrap())
}

/// An event of `sender` in `room` (`state_key` for a state event), signed by `signer`.
#[allow(clippy::too_many_arguments)]
fn event(
    signer: &Signer,
    room: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &[&str],
    auth: &[&str],
    depth: i64,
) -> (String, Value) {
    let mut ev = json!({
        "room_id": room, "sender": sender, "type": kind, "content": content, "origin": signer.origin,
        "origin_server_ts": now(), "depth": depth, "prev_events": prev, "auth_events": auth,
    });
    if let Some(sk) = state_key {
        ev["state_key"] = json!(sk);
    }
    sign(signer, ev)
}

fn message(
    signer: &Signer,
    room: &str,
    sender: &str,
    prev: &str,
    auth: &[&str],
    depth: i64,
    body: &str,
) -> (String, Value) {
    event(
        signer,
        room,
        sender,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": body}),
        &[prev],
        auth,
        depth,
    )
}

/// A signed federation request from `from` to `to`.
async fn signed(from: &Signer, to: &FedApp, method: Method, path: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let auth = from.header(&to.server_name, &method, path, &bytes);
    let resp = tls_client()
        .request(method, format!("{}{path}", to.fed_base()))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `PUT /send/{txnId}` to `to` from `from`: the per-PDU answers.
async fn send_txn(from: &Signer, to: &FedApp, pdus: Vec<Value>) -> Value {
    let path = format!("/_matrix/federation/v1/send/{}", uuid::Uuid::new_v4().simple());
    let body = json!({"origin": from.origin, "origin_server_ts": now(), "pdus": pdus, "edus": []});
    let (status, v) = signed(from, to, Method::PUT, &path, &body).await;
    assert_eq!(status, 200, "{v}");
    v["pdus"].clone()
}

fn accepted(answers: &Value, id: &str) -> bool {
    answers[id].is_object() && answers[id].get("error").is_none()
}

/// (type, state key) -> event id of the room's current state, read through `app`'s client API.
async fn state_ids(app: &TestApp, user: &User, room: &str) -> std::collections::HashMap<(String, String), String> {
    let (status, state) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room)), Some(&user.token)).await;
    assert_eq!(status, 200, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned());
            (key, e["event_id"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The newest timeline event of a room: (event id, depth), the depth read over federation.
async fn newest(app: &FedApp, user: &User, reader: &Signer, room: &str) -> (String, i64) {
    let (_, page) =
        app.app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1", enc(room)), Some(&user.token)).await;
    let id = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    (id.clone(), depth_of(app, reader, &id).await)
}

async fn depth_of(app: &FedApp, reader: &Signer, id: &str) -> i64 {
    let (status, v) = signed_get(reader, app, &format!("/_matrix/federation/v1/event/{}", enc(id))).await;
    assert_eq!(status, 200, "{v}");
    v["pdus"][0]["depth"].as_i64().unwrap()
}

async fn event_over_federation(app: &FedApp, reader: &Signer, id: &str) -> Value {
    let (status, v) = signed_get(reader, app, &format!("/_matrix/federation/v1/event/{}", enc(id))).await;
    assert_eq!(status, 200, "{v}");
    v["pdus"][0].clone()
}

/// `/state_ids` at an event: (state ids, auth chain ids).
async fn state_ids_at(app: &FedApp, reader: &Signer, room: &str, id: &str) -> Vec<String> {
    let path = format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(room), enc(id));
    let (status, v) = signed_get(reader, app, &path).await;
    assert_eq!(status, 200, "{v}");
    v["pdu_ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()).collect()
}

async fn two_servers() -> (FedApp, FedApp) {
    (FedApp::spawn(Host::Localhost, |_| {}).await, FedApp::spawn(Host::Ip, |_| {}).await)
}

/// Two servers, Alice on the first, Bob on the second, and a room of Alice's (created with
/// `create`) that Bob has joined, his join seen on Alice's server.
async fn alice_and_bob_in_a_room(create: Value) -> (FedApp, FedApp, User, User, String) {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, create).await;
    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join", |v| timeline_has(v, &room, is_join_of(&bob.user_id))).await;
    (a, b, alice, bob, room)
}

fn is_join_of<'a>(user: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| e["type"] == "m.room.member" && e["state_key"] == user && e["content"]["membership"] == "join"
}

#[tokio::test]
async fn the_state_at_a_forked_event_is_the_state_before_it_not_the_current_state() {
    let (a, b, alice, bob, room) = alice_and_bob_in_a_room(json!({"preset": "public_chat", "name": "one"})).await;
    let signer = b.signer();
    let (fork_point, depth) = newest(&a, &alice, &signer, &room).await;
    let ids = state_ids(&a.app, &alice, &room).await;
    let id = |t: &str, sk: &str| ids[&(t.to_owned(), sk.to_owned())].clone();
    let name_one = id("m.room.name", "");

    let (status, v) = a
        .app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
            Some(&alice.token),
            json!({"name": "two"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let name_two = v["event_id"].as_str().unwrap().to_owned();

    // Bob's message on a fork from before the rename.
    let auth = [id("m.room.create", ""), id("m.room.power_levels", ""), id("m.room.member", &bob.user_id)];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (x, pdu) = message(&signer, &room, &bob.user_id, &fork_point, &auth, depth + 1, "from the fork");
    let answers = send_txn(&signer, &a, vec![pdu]).await;
    assert!(accepted(&answers, &x), "{answers}");
    sync_until(&a.app, &alice, "the forked message", |v| timeline_has(v, &room, is_text("from the fork"))).await;

    // The state at it is the state after its prev event: the old name.
    let at_x = state_ids_at(&a, &signer, &room, &x).await;
    assert!(at_x.contains(&name_one) && !at_x.contains(&name_two), "{at_x:?}");
    let path = format!("/_matrix/federation/v1/state/{}?event_id={}", enc(&room), enc(&x));
    let (status, whole) = signed_get(&signer, &a, &path).await;
    assert_eq!(status, 200, "{whole}");
    let names: Vec<&Value> = whole["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .map(|e| &e["content"]["name"])
        .collect();
    assert_eq!(names, [&json!("one")], "{whole}");

    // Alice's next event merges the fork; the state at it is the resolved one.
    let m = a.app.send_text(&alice, &room, "after the fork").await;
    let ev = event_over_federation(&a, &signer, &m).await;
    let prevs: Vec<&str> = ev["prev_events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(prevs.contains(&x.as_str()) && prevs.contains(&name_two.as_str()), "{ev}");
    let at_m = state_ids_at(&a, &signer, &room, &m).await;
    assert!(at_m.contains(&name_two) && !at_m.contains(&name_one), "{at_m:?}");
    // And the state at an event before the fork did not move.
    let at_fork = state_ids_at(&a, &signer, &room, &name_two).await;
    assert!(at_fork.contains(&name_one), "{at_fork:?}");
}

#[tokio::test]
async fn a_gap_get_missing_events_cannot_close_is_filled_with_state_ids() {
    let (a, b, alice, bob, room) = alice_and_bob_in_a_room(json!({"preset": "public_chat", "name": "Lounge"})).await;
    let (start, depth) = newest(&a, &alice, &b.signer(), &room).await;
    let ids = state_ids(&a.app, &alice, &room).await;
    let id = |t: &str, sk: &str| ids[&(t.to_owned(), sk.to_owned())].clone();
    let auth = [id("m.room.create", ""), id("m.room.power_levels", ""), id("m.room.member", &alice.user_id)];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();

    // Fifteen events of alice's that only B has (signed with A's key, given to B): the
    // second renames the room.
    let a_signer = a.signer();
    let mut chain = Vec::new();
    let mut prev = start.clone();
    let mut rename = String::new();
    for i in 1..=15i64 {
        let (eid, pdu) = if i == 2 {
            let content = json!({"name": "renamed in the gap"});
            let (eid, pdu) =
                event(&a_signer, &room, &alice.user_id, "m.room.name", Some(""), content, &[&prev], &auth, depth + i);
            rename = eid.clone();
            (eid, pdu)
        } else {
            message(&a_signer, &room, &alice.user_id, &prev, &auth, depth + i, &format!("gap {i}"))
        };
        chain.push((eid.clone(), pdu));
        prev = eid;
    }
    let answers = send_txn(&a_signer, &b, chain.iter().map(|(_, p)| p.clone()).collect()).await;
    assert!(chain.iter().all(|(eid, _)| accepted(&answers, eid)), "B takes the chain: {answers}");

    // Bob's next message points past the gap; A fetches the last ten with
    // get_missing_events and the state before them with /state_ids.
    b.app.send_text(&bob, &room, "after the gap").await;
    sync_until(&a.app, &alice, "the message after the gap", |v| timeline_has(v, &room, is_text("after the gap"))).await;
    let (status, v) =
        a.app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), &v["name"]), (200, &json!("renamed in the gap")), "{v}");
    let sixth = &chain[5].0;
    let at_sixth = state_ids_at(&a, &b.signer(), &room, sixth).await;
    assert!(at_sixth.contains(&rename), "the state at the first fetched event has the rename: {at_sixth:?}");
    // The events before the fetched ten never reached the timeline.
    let (_, page) = a
        .app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&alice.token))
        .await;
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.contains(&"gap 6") && !bodies.contains(&"gap 5"), "{bodies:?}");
}

/// The stand-in peer as a room member: its user joins `room` on `a` through
/// make_join/send_join signed with the peer's key. Returns (signer, user id, join id).
async fn peer_joins(a: &FedApp, peer: &FakePeer, room: &str) -> (Signer, String, String) {
    let signer = Signer {
        origin: peer.server_name.parse().unwrap(),
        key: seed::federation::signing_key::parse_key_line(&peer.key_line()).unwrap(),
    };
    let user = format!("@mallory:{}", peer.server_name);
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", enc(room), enc(&user));
    let (status, v) = signed_get(&signer, a, &path).await;
    assert_eq!(status, 200, "make_join: {v}");
    let mut template = v["event"].clone();
    template["origin_server_ts"] = json!(now());
    let (join_id, join) = sign(&signer, template);
    let path = format!("/_matrix/federation/v2/send_join/{}/{}", enc(room), enc(&join_id));
    let (status, v) = signed(&signer, a, Method::PUT, &path, &join).await;
    assert_eq!(status, 200, "send_join: {v}");
    (signer, user, join_id)
}

#[tokio::test]
async fn a_pdu_that_fails_only_against_the_current_state_is_soft_failed() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let peer = FakePeer::start(Mode::Accept).await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (signer, mallory, join) = peer_joins(&a, &peer, &room).await;
    let depth = depth_of(&a, &signer, &join).await;
    let ids = state_ids(&a.app, &alice, &room).await;
    let create = ids[&("m.room.create".to_owned(), String::new())].clone();
    let old_pl = ids[&("m.room.power_levels".to_owned(), String::new())].clone();

    // Alice takes messages away from users at level 0, mallory included.
    let (_, mut pl) = a
        .app
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room)), Some(&alice.token))
        .await;
    pl["events"]["m.room.message"] = json!(50);
    let (status, v) = a
        .app
        .put(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room)), Some(&alice.token), pl)
        .await;
    assert_eq!(status, 200, "{v}");
    let new_pl = v["event_id"].as_str().unwrap().to_owned();

    // On a fork from before that change: allowed by the state before it, not by the current
    // state. Soft-failed: answered like an accepted event.
    let (soft, soft_pdu) = message(&signer, &room, &mallory, &join, &[&create, &old_pl, &join], depth + 1, "soft");
    let answers = send_txn(&signer, &a, vec![soft_pdu.clone()]).await;
    assert_eq!(answers[&soft], json!({}), "{answers}");
    // On top of the change: refused.
    let (refused, pdu) = message(&signer, &room, &mallory, &new_pl, &[&create, &new_pl, &join], depth + 2, "refused");
    let answers = send_txn(&signer, &a, vec![pdu]).await;
    assert!(answers[&refused]["error"].is_string(), "{answers}");

    // Neither reaches alice, and her next event does not build on the soft-failed one.
    let m = a.app.send_text(&alice, &room, "still mine").await;
    let v = sync_until(&a.app, &alice, "alice's message", |v| timeline_has(v, &room, is_text("still mine"))).await;
    assert!(!timeline_has(&v, &room, is_text("soft")) && !timeline_has(&v, &room, is_text("refused")), "{v}");
    let (_, page) = a
        .app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&alice.token))
        .await;
    assert!(!page.to_string().contains("\"soft\""), "{page}");
    let ev = event_over_federation(&a, &signer, &m).await;
    assert_eq!(ev["prev_events"], json!([new_pl]), "{ev}");
    // A repeat of the soft-failed event is answered the same way.
    let again = send_txn(&signer, &a, vec![soft_pdu]).await;
    assert_eq!(again[&soft], json!({}), "{again}");
}

#[tokio::test]
async fn fetched_auth_events_are_checked_before_they_are_used() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let peer = FakePeer::start(Mode::Accept).await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (signer, mallory, join) = peer_joins(&a, &peer, &room).await;
    let depth = depth_of(&a, &signer, &join).await;
    let ids = state_ids(&a.app, &alice, &room).await;
    let key = |t: &str| (t.to_owned(), String::new());
    let (create, pl, rules) = (
        ids[&key("m.room.create")].clone(),
        ids[&key("m.room.power_levels")].clone(),
        ids[&key("m.room.join_rules")].clone(),
    );

    // A power-levels event of mallory's (level 0) raising herself: fails its own auth.
    let (_, mut pl_content) = a
        .app
        .get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room)), Some(&alice.token))
        .await;
    pl_content["users"][&mallory] = json!(100);
    let (forged_pl, forged) = event(
        &signer,
        &room,
        &mallory,
        "m.room.power_levels",
        Some(""),
        pl_content,
        &[&join],
        &[&create, &pl, &join],
        depth + 1,
    );
    // A topic change authorised by it, on top of the room.
    let (newest_id, newest_depth) = newest(&a, &alice, &signer, &room).await;
    let (topic, topic_pdu) = event(
        &signer,
        &room,
        &mallory,
        "m.room.topic",
        Some(""),
        json!({"topic": "mine"}),
        &[&newest_id],
        &[&create, &forged_pl, &join],
        newest_depth + 1,
    );
    peer.serve(&format!("/_matrix/federation/v1/event_auth/{room}/{topic}"), json!({"auth_chain": [forged]}));
    let answers = send_txn(&signer, &a, vec![topic_pdu]).await;
    let error = answers[&topic]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(&forged_pl), "refused because of the forged auth event: {answers}");

    // A valid auth event fetched the same way is used: a profile change of mallory's.
    let (renamed, renamed_pdu) = event(
        &signer,
        &room,
        &mallory,
        "m.room.member",
        Some(&mallory),
        json!({"membership": "join", "displayname": "M"}),
        &[&join],
        &[&create, &pl, &join, &rules],
        depth + 1,
    );
    let (msg, msg_pdu) = message(
        &signer,
        &room,
        &mallory,
        &newest_id,
        &[&create, &pl, &renamed],
        newest_depth + 1,
        "via a fetched auth event",
    );
    peer.serve(&format!("/_matrix/federation/v1/event_auth/{room}/{msg}"), json!({"auth_chain": [renamed_pdu]}));
    let answers = send_txn(&signer, &a, vec![msg_pdu]).await;
    assert!(accepted(&answers, &msg), "{answers}");
    sync_until(&a.app, &alice, "the message", |v| timeline_has(v, &room, is_text("via a fetched auth event"))).await;

    // An auth chain over the limit is not fetched at all.
    let (big, big_pdu) = message(
        &signer,
        &room,
        &mallory,
        &newest_id,
        &[&create, &pl, "$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        newest_depth + 1,
        "big",
    );
    let chain: Vec<Value> = (0..201).map(|_| json!({})).collect();
    peer.serve(&format!("/_matrix/federation/v1/event_auth/{room}/{big}"), json!({"auth_chain": chain}));
    let answers = send_txn(&signer, &a, vec![big_pdu]).await;
    assert!(answers[&big]["error"].as_str().is_some_and(|e| e.contains("limit")), "{answers}");
}

#[tokio::test]
async fn a_joiner_sees_the_room_state_as_state_and_only_later_events_as_timeline() {
    let (a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat", "name": "Lounge", "topic": "t"})).await;
    for i in 0..3 {
        a.app.send_text(&alice, &room, &format!("before bob {i}")).await;
    }
    let before = b.app.sync(&bob, "timeout=0").await;
    let since = before["next_batch"].as_str().unwrap().to_owned();
    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");

    for query in [format!("since={since}&timeout=0"), "timeout=0".to_owned()] {
        let v = b.app.sync(&bob, &query).await;
        let joined = &v["rooms"]["join"][&room];
        let types = |section: &str| -> Vec<String> {
            joined[section]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["state_key"].as_str().unwrap_or("-")))
                .collect()
        };
        let (state, timeline) = (types("state"), types("timeline"));
        assert_eq!(timeline, [format!("m.room.member {}", bob.user_id)], "{query}: {joined}");
        for t in ["m.room.create ", "m.room.name ", "m.room.topic ", "m.room.power_levels "] {
            assert!(state.iter().any(|s| s.starts_with(t)), "{query}: {t} in state: {joined}");
        }
        assert!(state.contains(&format!("m.room.member {}", alice.user_id)), "{joined}");
    }
    // Later events are timeline.
    a.app.send_text(&alice, &room, "hello bob").await;
    sync_until(&b.app, &bob, "alice's message", |v| timeline_has(v, &room, is_text("hello bob"))).await;
    // History before the join is not paged into either.
    let (_, page) =
        b.app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&bob.token)).await;
    let kinds: Vec<&str> = page["chunk"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(!kinds.contains(&"m.room.create"), "{page}");
}

#[tokio::test]
async fn redactions_from_another_server_apply_only_where_the_spec_lets_them() {
    let (a, b, alice, bob, room) = alice_and_bob_in_a_room(json!({"preset": "public_chat"})).await;
    let bobs = b.app.send_text(&bob, &room, "regret").await;
    let alices = a.app.send_text(&alice, &room, "keep me").await;
    sync_until(&a.app, &alice, "bob's message", |v| timeline_has(v, &room, is_text("regret"))).await;
    sync_until(&b.app, &bob, "alice's message", |v| timeline_has(v, &room, is_text("keep me"))).await;

    // Bob redacts his own message on B: A applies it.
    let (status, v) = b
        .app
        .put(&format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", enc(&room), enc(&bobs)), Some(&bob.token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let redaction = v["event_id"].as_str().unwrap().to_owned();
    let event_on_a = |id: String| {
        let app = &a.app;
        let (room, token) = (room.clone(), alice.token.clone());
        async move {
            let (status, v) =
                app.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&id)), Some(&token)).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = event_on_a(bobs.clone()).await;
        if v["content"] == json!({}) {
            assert_eq!(v["unsigned"]["redacted_because"]["event_id"], json!(redaction), "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob's redaction never applied on A: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A redaction of alice's message by bob (level 0, another server): part of the DAG,
    // not applied.
    let signer = b.signer();
    let ids = state_ids(&a.app, &alice, &room).await;
    let id = |t: &str, sk: &str| ids[&(t.to_owned(), sk.to_owned())].clone();
    let auth = [id("m.room.create", ""), id("m.room.power_levels", ""), id("m.room.member", &bob.user_id)];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (prev, depth) = newest(&a, &alice, &signer, &room).await;
    let (foreign, pdu) = event(
        &signer,
        &room,
        &bob.user_id,
        "m.room.redaction",
        None,
        json!({"redacts": alices}),
        &[&prev],
        &auth,
        depth + 1,
    );
    let mut pdu = pdu;
    // Room version 10 carries `redacts` at the top level too (re-signed with it).
    pdu.as_object_mut().unwrap().remove("signatures");
    pdu.as_object_mut().unwrap().remove("hashes");
    pdu["redacts"] = json!(alices);
    let (foreign2, pdu) = sign(&signer, pdu);
    let _ = foreign;
    let answers = send_txn(&signer, &a, vec![pdu]).await;
    assert!(accepted(&answers, &foreign2), "{answers}");
    assert_eq!(event_on_a(alices.clone()).await["content"]["body"], "keep me");
}

/// (state groups, group entries) `app` stores for `room`.
async fn group_rows(app: &TestApp, room: &str) -> (i64, i64) {
    let pool = &app.running.as_ref().unwrap().state.store.pool;
    let groups: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM state_groups WHERE room_id = $1")
        .bind(room)
        .fetch_one(pool)
        .await
        .unwrap();
    let entries: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM state_group_entries e JOIN state_groups g ON g.group_id = e.group_id WHERE g.room_id = $1",
    )
    .bind(room)
    .fetch_one(pool)
    .await
    .unwrap();
    (groups.0, entries.0)
}

async fn rename(app: &TestApp, user: &User, room: &str, name: &str) -> String {
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(room)),
            Some(&user.token),
            json!({"name": name}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn messages_add_no_state_group_a_state_event_adds_one_delta_and_groups_survive_a_restart() {
    let (mut a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join", |v| timeline_has(v, &room, is_join_of(&bob.user_id))).await;
    let start = group_rows(&a.app, &room).await;
    for i in 0..20 {
        a.app.send_text(&alice, &room, &format!("m{i}")).await;
    }
    assert_eq!(group_rows(&a.app, &room).await, start, "messages write no group");
    let first = rename(&a.app, &alice, &room, "first").await;
    assert_eq!(group_rows(&a.app, &room).await, (start.0 + 1, start.1 + 1), "one delta of one entry");

    a.app.restart().await;
    let second = rename(&a.app, &alice, &room, "second").await;
    assert_eq!(group_rows(&a.app, &room).await, (start.0 + 2, start.1 + 2), "still a delta after the restart");
    let at_second = state_ids_at(&a, &b.signer(), &room, &second).await;
    assert!(at_second.contains(&first) && !at_second.contains(&second), "{at_second:?}");
    let m = a.app.send_text(&alice, &room, "after").await;
    assert!(state_ids_at(&a, &b.signer(), &room, &m).await.contains(&second));

    // A room of this server's users only keeps no groups; once another server's user is
    // invited, it has them from a snapshot on.
    let local = a.app.create_room(&alice, json!({"preset": "public_chat", "name": "local"})).await;
    let local_name = rename(&a.app, &alice, &local, "still local").await;
    a.app.send_text(&alice, &local, "hi").await;
    assert_eq!(group_rows(&a.app, &local).await, (0, 0));
    let (status, v) = a
        .app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&local)),
            Some(&alice.token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (groups, entries) = group_rows(&a.app, &local).await;
    assert!(groups == 2 && entries > 5, "a snapshot and the invite's delta: {groups} {entries}");
    let (status, v) = b.app.join(&bob, &local).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join", |v| timeline_has(v, &local, is_join_of(&bob.user_id))).await;
    let bobs_join = state_ids(&a.app, &alice, &local).await[&("m.room.member".to_owned(), bob.user_id.clone())].clone();
    let renamed = rename(&a.app, &alice, &local, "shared").await;
    let at = state_ids_at(&a, &b.signer(), &local, &renamed).await;
    assert!(at.contains(&local_name) && at.contains(&bobs_join) && !at.contains(&renamed), "{at:?}");
}

#[tokio::test]
async fn send_join_answers_the_state_before_the_join_not_the_current_state() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let peer = FakePeer::start(Mode::Accept).await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat", "name": "one"})).await;
    let signer = Signer {
        origin: peer.server_name.parse().unwrap(),
        key: seed::federation::signing_key::parse_key_line(&peer.key_line()).unwrap(),
    };
    let user = format!("@mallory:{}", peer.server_name);
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", enc(&room), enc(&user));
    let (status, v) = signed_get(&signer, &a, &path).await;
    assert_eq!(status, 200, "make_join: {v}");
    // The room moves on between make_join and send_join: the join is built on the old state.
    let renamed = rename(&a.app, &alice, &room, "two").await;
    let mut template = v["event"].clone();
    template["origin_server_ts"] = json!(now());
    let (join_id, join) = sign(&signer, template);
    let path = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room), enc(&join_id));
    let (status, answer) = signed(&signer, &a, Method::PUT, &path, &join).await;
    assert_eq!(status, 200, "send_join: {answer}");
    let state = answer["state"].as_array().unwrap();
    let name: Vec<&Value> =
        state.iter().filter(|e| e["type"] == "m.room.name").map(|e| &e["content"]["name"]).collect();
    assert_eq!(name, [&json!("one")], "{answer}");
    let ids_in_answer: Vec<String> = state
        .iter()
        .map(|e| {
            let obj = seed::federation::pdu::to_canonical(e.clone()).unwrap();
            seed::federation::pdu::event_id(&obj, &RoomVersionId::V10).unwrap()
        })
        .collect();
    assert!(!ids_in_answer.contains(&join_id) && !ids_in_answer.contains(&renamed), "{ids_in_answer:?}");
    assert!(ids_in_answer.len() >= 5, "{ids_in_answer:?}");
    // The room itself has both: the rename stays (resolution), mallory is in.
    let ids = state_ids(&a.app, &alice, &room).await;
    assert_eq!(ids[&("m.room.name".to_owned(), String::new())], renamed);
    assert_eq!(ids[&("m.room.member".to_owned(), user.clone())], join_id);
}

/// Joined members of `room` as `user` on `app` sees them.
async fn joined_members(app: &TestApp, user: &User, room: &str) -> Value {
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)), Some(&user.token)).await;
    assert_eq!(status, 200, "{v}");
    v["joined"].clone()
}

#[tokio::test]
async fn a_state_key_the_resolution_of_a_fork_drops_leaves_the_current_state_also_after_a_restart() {
    let (mut a, b) = two_servers().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = a.app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, v) = b.app.join(&bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    sync_until(&a.app, &alice, "bob's join", |v| timeline_has(v, &room, is_join_of(&bob.user_id))).await;
    // Bob may change the join rules.
    let users = json!({alice.user_id.clone(): 100, bob.user_id.clone(): 100});
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&room));
    let (status, v) = a.app.put(&path, Some(&alice.token), json!({"users": users})).await;
    assert_eq!(status, 200, "{v}");
    let signer = b.signer();
    let (fork_point, depth) = newest(&a, &alice, &signer, &room).await;
    let ids = state_ids(&a.app, &alice, &room).await;
    let id = |t: &str, sk: &str| ids[&(t.to_owned(), sk.to_owned())].clone();

    // Branch 1: carol@B joins the public room.
    let carol = format!("@carol:{}", b.server_name);
    let auth = [id("m.room.create", ""), id("m.room.join_rules", ""), id("m.room.power_levels", "")];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (join, pdu) = event(
        &signer,
        &room,
        &carol,
        "m.room.member",
        Some(&carol),
        json!({"membership": "join"}),
        &[&fork_point],
        &auth,
        depth + 1,
    );
    assert!(accepted(&send_txn(&signer, &a, vec![pdu]).await, &join));
    assert!(joined_members(&a.app, &alice, &room).await.get(&carol).is_some(), "carol joined");

    // Branch 2, from before her join: bob makes the room invite-only. It passes against the
    // state before it and the current state; merging the branches (state resolution v2) puts
    // the join rules first, and carol's join then fails: her member key is dropped.
    let auth = [id("m.room.create", ""), id("m.room.power_levels", ""), id("m.room.member", &bob.user_id)];
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (rules, pdu) = event(
        &signer,
        &room,
        &bob.user_id,
        "m.room.join_rules",
        Some(""),
        json!({"join_rule": "invite"}),
        &[&fork_point],
        &auth,
        depth + 1,
    );
    assert!(accepted(&send_txn(&signer, &a, vec![pdu]).await, &rules));
    let members = joined_members(&a.app, &alice, &room).await;
    assert!(members.get(&carol).is_none() && members.get(&bob.user_id).is_some(), "{members}");
    let ids = state_ids(&a.app, &alice, &room).await;
    assert_eq!(ids.get(&("m.room.join_rules".to_owned(), String::new())), Some(&rules));
    assert!(!ids.contains_key(&("m.room.member".to_owned(), carol.clone())), "{ids:?}");

    // The stored current state agrees: after a restart carol is still not a member.
    let running = a.app.running.take().expect("running");
    let config = running.state.config.clone();
    running.stop().await;
    let running = seed::app::spawn(config).await.expect("A restarts");
    a.app.base = format!("http://{}", running.addr);
    a.app.running = Some(running);
    let members = joined_members(&a.app, &alice, &room).await;
    assert!(members.get(&carol).is_none() && members.get(&bob.user_id).is_some(), "after a restart: {members}");
    let ids = state_ids(&a.app, &alice, &room).await;
    assert!(!ids.contains_key(&("m.room.member".to_owned(), carol)), "after a restart: {ids:?}");
}

/// Our events are stored without our signature and signed on the way out (issue #13): what
/// another server fetches carries a signature that verifies against our published key, the
/// same bytes on every fetch, and a redacted event is signed as its original was (the
/// signature covers the redacted form, the hash the original).
#[tokio::test]
async fn our_events_leave_the_server_signed_with_our_key() {
    let (a, b, alice, bob, room) = alice_and_bob_in_a_room(json!({"preset": "public_chat", "name": "signed"})).await;
    let kept = a.app.send_text(&alice, &room, "kept").await;
    let gone = a.app.send_text(&alice, &room, "redacted").await;
    let (status, v) = a
        .app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", enc(&room), enc(&gone)),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The message as Bob's server received it over `/send` (the fan-out) is signed too.
    sync_until(&b.app, &bob, "alice's message", |v| timeline_has(v, &room, is_text("kept"))).await;

    let (status, keys) = federation_common::fed_get(&a, "/_matrix/key/v2/server", None).await;
    assert_eq!(status, 200, "{keys}");
    // The key as another server takes it: parsed and its self-signature checked.
    let server: &ruma::ServerName = a.server_name.as_str().try_into().unwrap();
    let (parsed, _) = seed::federation::keys::verify_key_response(server, &keys).unwrap();
    let published: ruma::signatures::PublicKeySet = parsed
        .verify_keys
        .iter()
        .map(|(id, k)| (id.to_string(), ruma::serde::Base64::new(k.key.as_bytes().to_vec())))
        .collect();
    let key_map = std::collections::BTreeMap::from([(a.server_name.clone(), published)]);
    let signer = b.signer();
    for (id, redacted) in [(&kept, false), (&gone, true)] {
        let ev = event_over_federation(&a, &signer, id).await;
        assert!(ev["signatures"][&a.server_name].as_object().is_some_and(|s| !s.is_empty()), "{ev}");
        let again = event_over_federation(&a, &signer, id).await;
        assert_eq!(ev["signatures"], again["signatures"], "one signature per event");
        let obj = seed::federation::pdu::to_canonical(ev.clone()).unwrap();
        assert_eq!(&seed::federation::pdu::event_id(&obj, &RoomVersionId::V10).unwrap(), id, "{ev}");
        let verified = seed::federation::pdu::verify(&obj, &key_map, &RoomVersionId::V10).unwrap();
        // A redacted copy keeps the original's content hash, so only the signature matches.
        let want = if redacted { ruma::signatures::Verified::Signatures } else { ruma::signatures::Verified::All };
        assert!(std::mem::discriminant(&verified) == std::mem::discriminant(&want), "{verified:?}: {ev}");
    }
    // Bob's server checks signatures on what it is sent: it stored Alice's message.
    let (status, v) =
        b.app.get(&format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(&kept)), Some(&bob.token)).await;
    assert_eq!(status, 200, "{v}");
}
