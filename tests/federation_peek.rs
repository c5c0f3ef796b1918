//! Peeking over federation (MSC2444) between two Seed instances on loopback: alice@A peeks
//! bob@B's profile room and gets bob's new `m.presence`/`m.status` in `/sync` `rooms.peek`;
//! the peek is renewed past its interval, ends with a `DELETE` when alice unpeeks, and expires
//! at B when nobody renews it; B refuses what its permission model forbids, unknown rooms and
//! malformed requests; a server without MSC2444 gets a clear error to the client.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, set_status, TestApp, User};
use federation_common::{signed_get, sync_until, tls_client, FedApp, Host, Signer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CLIENT_PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";
const FED_PEEK: &str = "/_matrix/federation/unstable/org.matrix.msc2444/peek";

/// A (peeker) with defaults; B (peeked) with a short renewal interval so tests can pass it.
async fn two_servers(renewal_ms: i64) -> (FedApp, FedApp) {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |c| {
        c.federation.peek_renewal_interval_ms = renewal_ms;
        c.federation.max_peeks_per_server = 3;
    })
    .await;
    (a, b)
}

/// alice@A makes a room and bob@B joins it: they share a room, so alice may see bob.
async fn share_a_room(a: &FedApp, alice: &User, b: &FedApp, bob: &User) -> String {
    let room = a.app.create_room(alice, json!({"preset": "private_chat"})).await;
    let (status, v) = a
        .app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice.token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, 200, "invite: {v}");
    sync_until(&b.app, bob, "the invite at B", |v| v["rooms"]["invite"][&room].is_object()).await;
    let (status, v) = b.app.join(bob, &room).await;
    assert_eq!(status, 200, "join: {v}");
    room
}

/// bob's profile room id, as B tells bob.
async fn profile_room(app: &TestApp, user: &User) -> String {
    let (status, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&user.user_id)), Some(&user.token)).await;
    assert_eq!(status, 200, "{v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

/// Two servers (B serving peeks with `renewal_ms`), alice@A and bob@B sharing a room, and
/// alice peeking bob's profile room by its id until her sync shows it.
struct Peeking {
    a: FedApp,
    b: FedApp,
    alice: User,
    bob: User,
    room: String,
    /// The sync that first showed the peeked room.
    first: Value,
}

async fn alice_peeks_bobs_profile_room(renewal_ms: i64) -> Peeking {
    let (a, b) = two_servers(renewal_ms).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    share_a_room(&a, &alice, &b, &bob).await;
    let room = profile_room(&b.app, &bob).await;
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_eq!(status, 200, "peek: {v}");
    let first = sync_until(&a.app, &alice, "the peeked state", |v| v["rooms"]["peek"][&room].is_object()).await;
    Peeking { a, b, alice, bob, room, first }
}

async fn client_peek(app: &TestApp, user: &User, target: &str) -> (StatusCode, Value) {
    app.post(&format!("{CLIENT_PEEK}/peek/{}", enc(target)), Some(&user.token), json!({})).await
}

/// Events of `room` under `rooms.peek` in a sync response (state and timeline).
fn peeked_events(v: &Value, room: &str) -> Vec<Value> {
    let block = &v["rooms"]["peek"][room];
    let mut out = block["state"]["events"].as_array().cloned().unwrap_or_default();
    out.extend(block["timeline"]["events"].as_array().cloned().unwrap_or_default());
    out
}

fn has_presence(v: &Value, room: &str, presence: &str) -> bool {
    peeked_events(v, room).iter().any(|e| e["type"] == "m.presence" && e["content"]["presence"] == presence)
}

fn has_status(v: &Value, room: &str, text: &str) -> bool {
    peeked_events(v, room).iter().any(|e| e["type"] == "m.status" && e["content"]["status"] == text)
}

/// A signed request with a body from `from` to `to`'s federation listener.
async fn signed_send(from: &Signer, to: &FedApp, method: Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let auth = from.header(&to.server_name, &method, path, body);
    let resp = tls_client()
        .request(method, format!("{}{path}", to.fed_base()))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("federation request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn fed_peek(from: &Signer, to: &FedApp, room: &str, peek_id: &str, query: &str) -> (StatusCode, Value) {
    let path = format!("{FED_PEEK}/{}/{}{query}", enc(room), enc(peek_id));
    signed_send(from, to, Method::PUT, &path, b"{}").await
}

/// May `from` read `event_id` at `to` (`GET /event`: a peeking server may, MSC2444)?
async fn may_read(from: &Signer, to: &FedApp, event_id: &str) -> StatusCode {
    signed_get(from, to, &format!("/_matrix/federation/v1/event/{}", enc(event_id))).await.0
}

async fn wait_for(what: &str, secs: u64, mut cond: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PDUs B queued for other servers so far (`seed_federation_queued_total{kind="pdu"}`).
async fn pdus_queued(app: &TestApp) -> u64 {
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("seed_federation_queued_total") && l.contains("kind=\"pdu\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test]
async fn a_remote_profile_room_peek_delivers_presence_and_lives_past_its_renewal_interval() {
    let (a, b) = two_servers(3_000).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    share_a_room(&a, &alice, &b, &bob).await;
    let room = profile_room(&b.app, &bob).await;

    // alice peeks bob's profile room by MSC1769's alias, resolved at B.
    let alias = format!("#@bob:{}", b.server_name);
    let (status, v) = client_peek(&a.app, &alice, &alias).await;
    assert_eq!(status, 200, "peek: {v}");
    assert_eq!(v["room_id"], room.as_str());
    let first = sync_until(&a.app, &alice, "the peeked state", |v| v["rooms"]["peek"][&room].is_object()).await;
    let events = peeked_events(&first, &room);
    assert!(events.iter().any(|e| e["type"] == "m.room.create" && e["sender"] == bob.user_id.as_str()), "{first}");
    assert!(events.iter().any(|e| e["type"] == "m.presence"), "bob's m.presence is in the state: {first}");

    // bob's presence and status change at B; alice's /sync shows them under rooms.peek.
    set_status(&b.app, &bob, json!({"presence": "busy", "status_msg": "on a call"})).await;
    sync_until(&a.app, &alice, "bob's busy over federation", |v| has_presence(v, &room, "busy")).await;
    sync_until(&a.app, &alice, "bob's status text", |v| has_status(v, &room, "on a call")).await;

    // Past two renewal intervals (A renews at half of one), the peek still delivers: without
    // renewals B would have dropped it and sent nothing more.
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "back"})).await;
    sync_until(&a.app, &alice, "bob's status after renewals", |v| has_status(v, &room, "back")).await;
    // B counts A as a peeker: A may read the room's events. (Polled: on a loaded machine a
    // renewal may come late, and the peek is then started again.)
    let presence_id =
        events.iter().find(|e| e["type"] == "m.presence").unwrap()["event_id"].as_str().unwrap().to_owned();
    let signer = a.signer();
    wait_for("A to read the room at B", 20, async || may_read(&signer, &b, &presence_id).await == 200).await;
}

#[tokio::test]
async fn unpeeking_sends_delete_and_the_peeked_server_stops_sending() {
    let Peeking { a, b, alice, bob, room, first } = alice_peeks_bobs_profile_room(60_000).await;
    let create = peeked_events(&first, &room).into_iter().find(|e| e["type"] == "m.room.create").unwrap();
    let create_id = create["event_id"].as_str().unwrap().to_owned();
    assert_eq!(may_read(&a.signer(), &b, &create_id).await, 200, "A peeks, so it may read the room");

    // While the peek lasts, bob's changes are queued for A.
    let before = pdus_queued(&b.app).await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "one"})).await;
    sync_until(&a.app, &alice, "bob's status", |v| has_status(v, &room, "one")).await;
    assert!(pdus_queued(&b.app).await > before, "B sent bob's change to the peeking server");

    // alice unpeeks: A's last local peeker is gone, A sends DELETE, B drops the peek.
    let (status, v) =
        a.app.post(&format!("{CLIENT_PEEK}/rooms/{}/unpeek", enc(&room)), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "unpeek: {v}");
    let signer = a.signer();
    wait_for("B to drop A's peek", 10, async || may_read(&signer, &b, &create_id).await == 403).await;
    let after = pdus_queued(&b.app).await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "two"})).await;
    // Wait for B to write the change (its own view of the profile room), then look again.
    wait_for("bob's new status at B", 10, async || {
        let (_, v) =
            b.app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)), Some(&bob.token)).await;
        v["status"] == "two"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pdus_queued(&b.app).await, after, "nothing more is sent to A after its DELETE");

    // Peeking again starts a new federation peek and delivers the current state.
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_eq!(status, 200, "peek again: {v}");
    sync_until(&a.app, &alice, "the state again", |v| has_status(v, &room, "two")).await;
}

#[tokio::test]
async fn a_peek_nobody_renews_expires_at_the_peeked_server() {
    let (a, b) = two_servers(3_000).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    share_a_room(&a, &alice, &b, &bob).await;
    let room = profile_room(&b.app, &bob).await;
    // A peek made as A by hand: A itself knows nothing of it and never renews it.
    let signer = a.signer();
    let (status, v) = fed_peek(&signer, &b, &room, "hand1", "?ver=10&ver=11").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["renewal_interval"], 3_000);
    assert_eq!(v["room_version"], "10");
    let state = v["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{v}");
    assert!(state.iter().any(|e| e["type"] == "m.presence"), "{v}");
    assert!(v["auth_chain"].is_array(), "{v}");
    let latest = v["latest_event_id"].as_str().expect("latest_event_id").to_owned();
    assert!(v["latest_event"]["room_id"] == room.as_str(), "{v}");
    assert_eq!(may_read(&signer, &b, &latest).await, 200);

    // Renewing a live peek answers {} (MSC2444).
    let (status, v) = fed_peek(&signer, &b, &room, "hand1", "?ver=10").await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));

    // Not renewed: it ends after the interval; B no longer lets A read the room.
    let started = Instant::now();
    wait_for("the peek to expire at B", 20, async || may_read(&signer, &b, &latest).await == 403).await;
    assert!(started.elapsed() >= Duration::from_millis(2_000), "expired before its renewal interval");
    // A new PUT after the lapse is a new peek: the state again.
    let (status, v) = fed_peek(&signer, &b, &room, "hand1", "?ver=10").await;
    assert_eq!(status, 200, "{v}");
    assert!(v["state"].is_array(), "a lapsed peek starts over with the state: {v}");
}

#[tokio::test]
async fn the_peeked_server_refuses_what_its_permission_model_forbids_and_malformed_peeks() {
    let (a, b) = two_servers(60_000).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    let room = profile_room(&b.app, &bob).await;
    let signer = a.signer();
    let ok_query = "?ver=10&ver=11";

    // No user of A shares a room with bob or follows him: 403, and alice's peek fails too.
    let (status, v) = fed_peek(&signer, &b, &room, "p1", ok_query).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Unknown room; a room of A's that B is not in.
    let (status, v) = fed_peek(&signer, &b, &format!("!nope:{}", b.server_name), "p1", ok_query).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    // Malformed: peek id longer than 8 bytes, a body that is not an object, no shared
    // room version, no signature; DELETE of a peek A does not hold.
    let (status, v) = fed_peek(&signer, &b, &room, "123456789", ok_query).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let path = format!("{FED_PEEK}/{}/p1{ok_query}", enc(&room));
    let (status, v) = signed_send(&signer, &b, Method::PUT, &path, b"[]").await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = fed_peek(&signer, &b, &room, "p1", "?ver=9").await;
    assert_err(status, &v, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    let resp = tls_client().put(format!("{}{path}", b.fed_base())).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401, "unsigned peeks are refused");
    let delete = format!("{FED_PEEK}/{}/p1", enc(&room));
    let (status, v) = signed_send(&signer, &b, Method::DELETE, &delete, b"{}").await;
    assert_err(status, &v, 404, "M_NOT_FOUND");

    // Sharing a room opens bob's profile room to A; at most max_peeks_per_server (3) peeks.
    share_a_room(&a, &alice, &b, &bob).await;
    for id in ["p1", "p2", "p3"] {
        let (status, v) = fed_peek(&signer, &b, &room, id, ok_query).await;
        assert_eq!(status, 200, "{id}: {v}");
    }
    let (status, v) = fed_peek(&signer, &b, &room, "p4", ok_query).await;
    assert_err(status, &v, 429, "M_LIMIT_EXCEEDED");
    let (status, v) = signed_send(&signer, &b, Method::DELETE, &delete, b"{}").await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));
    let (status, v) = fed_peek(&signer, &b, &room, "p4", ok_query).await;
    assert_eq!(status, 200, "a freed slot: {v}");
    for id in ["p2", "p3"] {
        let path = format!("{FED_PEEK}/{}/{id}", enc(&room));
        let (status, v) = signed_send(&signer, &b, Method::DELETE, &path, b"{}").await;
        assert_eq!(status, 200, "{v}");
    }

    // A world-readable room of B with no member of A: any server may peek it; encrypted: no.
    let carol = b.app.register("carol").await;
    let public = b
        .app
        .create_room(
            &carol,
            json!({"preset": "public_chat", "initial_state": [
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}}
            ]}),
        )
        .await;
    let (status, v) = fed_peek(&signer, &b, &public, "w1", ok_query).await;
    assert_eq!(status, 200, "world-readable: {v}");
    let (status, v) = b
        .app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.encryption/", enc(&public)),
            Some(&carol.token),
            json!({"algorithm": "m.megolm.v1.aes-sha2"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = fed_peek(&signer, &b, &public, "w2", ok_query).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_public_profile_with_restricted_presence_needs_the_permission_model() {
    let (a, b) = two_servers(60_000).await;
    let bob = b.app.register("bob").await;
    let room = profile_room(&b.app, &bob).await;
    let signer = a.signer();
    let put_state = |kind: &'static str, content: Value| {
        let (app, token, room) = (&b.app, bob.token.clone(), room.clone());
        async move {
            let (status, v) =
                app.put(&format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(&room)), Some(&token), content).await;
            assert_eq!(status, 200, "{kind}: {v}");
        }
    };
    put_state("m.room.history_visibility", json!({"history_visibility": "world_readable"})).await;
    let (status, v) = fed_peek(&signer, &b, &room, "w1", "?ver=10").await;
    assert_eq!(status, 200, "a public profile may be peeked by any server: {v}");
    put_state("org.matrix.msc3032.presence_visibility", json!({"visibility": "restricted"})).await;
    let (status, v) = fed_peek(&signer, &b, &room, "w2", "?ver=10").await;
    assert_err(status, &v, 403, "M_FORBIDDEN");

    // Once alice@A shares a room with bob, A may peek; A then applies the same rule per
    // viewer: carol@A, who shares nothing with bob, reads the public profile without presence.
    let alice = a.app.register("alice").await;
    let carol = a.app.register("carol").await;
    share_a_room(&a, &alice, &b, &bob).await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "for friends"})).await;
    let (status, v) = client_peek(&a.app, &carol, &room).await;
    assert_eq!(status, 200, "carol may read the public profile: {v}");
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_eq!(status, 200, "{v}");
    sync_until(&a.app, &alice, "bob's status for alice", |v| has_status(v, &room, "for friends")).await;
    // A fresh sync of each: alice's state has bob's presence, carol's has none of it.
    let mine = a.app.sync(&alice, "timeout=0").await;
    assert!(peeked_events(&mine, &room).iter().any(|e| e["type"] == "m.presence"), "{mine}");
    let theirs = a.app.sync(&carol, "timeout=0").await;
    let events = peeked_events(&theirs, &room);
    assert!(events.iter().any(|e| e["type"] == "m.room.create"), "{theirs}");
    assert!(!events.iter().any(|e| e["type"] == "m.presence" || e["type"] == "m.status"), "withheld: {theirs}");
}

/// A stand-in server that answers every request as Synapse answers an endpoint it lacks.
async fn server_without_msc2444() -> (String, axum_server::Handle) {
    use axum::http::StatusCode as S;
    seed::federation::tls::install_crypto_provider();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert.pem().into_bytes(),
        cert.key_pair.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async {
        (S::NOT_FOUND, axum::Json(json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})))
    });
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls).handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    (format!("127.0.0.1:{port}"), handle)
}

#[tokio::test]
async fn a_server_without_msc2444_gives_the_client_a_clear_error() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let alice = a.app.register("alice").await;
    let (name, handle) = server_without_msc2444().await;
    let (status, v) = client_peek(&a.app, &alice, &format!("!room:{name}")).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    assert!(v["error"].as_str().unwrap().contains("MSC2444"), "the reason is named: {v}");
    handle.shutdown();
}

#[tokio::test]
async fn peeks_survive_restarts_of_both_servers() {
    // A long interval: nothing is renewed during the test, so what works after a restart
    // works because the peek was stored, not because a renewal started it again.
    let Peeking { mut a, mut b, alice, bob, room, first } = alice_peeks_bobs_profile_room(60_000).await;
    let create = peeked_events(&first, &room).into_iter().find(|e| e["type"] == "m.room.create").unwrap();
    let create_id = create["event_id"].as_str().unwrap().to_owned();
    let signer = a.signer();

    // B restarts: its served peek is loaded again; bob's next change still reaches A.
    b.app.restart().await;
    assert_eq!(may_read(&signer, &b, &create_id).await, 200, "B still counts A as a peeker");
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "after B restarted"})).await;
    sync_until(&a.app, &alice, "a change after B's restart", |v| has_status(v, &room, "after B restarted")).await;

    // A restarts: alice's peek and A's federation peek are loaded; changes keep arriving, and
    // when alice unpeeks, A still knows to send DELETE.
    a.app.restart().await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "after A restarted"})).await;
    sync_until(&a.app, &alice, "a change after A's restart", |v| has_status(v, &room, "after A restarted")).await;
    let (status, v) =
        a.app.post(&format!("{CLIENT_PEEK}/rooms/{}/unpeek", enc(&room)), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{v}");
    wait_for("A's DELETE after its restart", 10, async || may_read(&signer, &b, &create_id).await == 403).await;
}

/// A `PUT /send` of one PDU from `from` to `to`: the answer for that PDU.
async fn send_pdu(from: &Signer, to: &FedApp, pdu: &Value) -> Value {
    let txn = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({"origin": from.origin.as_str(), "origin_server_ts": 1, "pdus": [pdu], "edus": []});
    let path = format!("/_matrix/federation/v1/send/{txn}");
    let (status, v) = signed_send(from, to, Method::PUT, &path, &serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, 200, "{v}");
    v["pdus"].as_object().and_then(|m| m.values().next().cloned()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn events_of_a_room_whose_peek_ended_are_refused() {
    let Peeking { a, b, alice, bob, room, .. } = alice_peeks_bobs_profile_room(60_000).await;
    let (status, v) =
        a.app.post(&format!("{CLIENT_PEEK}/rooms/{}/unpeek", enc(&room)), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let a_signer = a.signer();
    let create_id = {
        let (_, v) = b.app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&bob.token)).await;
        v.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    wait_for("A's DELETE at B", 10, async || may_read(&a_signer, &b, &create_id).await == 403).await;

    // bob changes his status while A does not peek; fetch that event's PDU from B (a peek made
    // by hand for the fetch, then deleted) and push it to A as B would.
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "unseen"})).await;
    let status_id = {
        let mut id = None;
        wait_for("bob's new m.status at B", 10, async || {
            let (_, v) = b.app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&bob.token)).await;
            id = v
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["type"] == "m.status" && e["content"]["status"] == "unseen")
                .and_then(|e| e["event_id"].as_str().map(str::to_owned));
            id.is_some()
        })
        .await;
        id.unwrap()
    };
    let (status, v) = fed_peek(&a_signer, &b, &room, "fetch", "?ver=10").await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = signed_get(&a_signer, &b, &format!("/_matrix/federation/v1/event/{}", enc(&status_id))).await;
    assert_eq!(status, 200, "{v}");
    let pdu = v["pdus"][0].clone();
    let path = format!("{FED_PEEK}/{}/fetch", enc(&room));
    let (status, v) = signed_send(&a_signer, &b, Method::DELETE, &path, b"{}").await;
    assert_eq!(status, 200, "{v}");

    let answer = send_pdu(&b.signer(), &a, &pdu).await;
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("does not peek")), "refused: {answer}");

    // alice peeks again: A peeks the room again, and the same PDU is now taken.
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_eq!(status, 200, "{v}");
    let answer = send_pdu(&b.signer(), &a, &pdu).await;
    assert_eq!(answer, json!({}), "accepted while peeking");
}

#[tokio::test]
async fn a_peek_that_lapsed_while_the_peeked_server_was_down_is_taken_up_again() {
    let Peeking { a, mut b, alice, bob, room, .. } = alice_peeks_bobs_profile_room(2_000).await;

    // B is down for longer than the renewal interval: A's renewals fail and are retried; at
    // B the stored peek has expired when it comes back, so A's next renewal is a new peek
    // whose answer (the state, with what changed meanwhile) A takes in.
    let running = b.app.running.take().expect("running");
    let config = running.state.config.clone();
    running.stop().await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let running = seed::app::spawn(config).await.expect("B restarts");
    b.app.base = format!("http://{}", running.addr);
    b.app.running = Some(running);
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "during the lapse"})).await;
    sync_until(&a.app, &alice, "the change made during the lapse", |v| has_status(v, &room, "during the lapse")).await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "after the lapse"})).await;
    sync_until(&a.app, &alice, "a change after the lapse", |v| has_status(v, &room, "after the lapse")).await;
}

/// A measurement, not a check: how long a presence change of bob@B takes to reach alice@A's
/// `/sync` through the federation peek (B's publish window, the `/send`, A's checks, and A's
/// delivery window included). `cargo test --test federation_peek -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_remote_peek_delivery_latency() {
    for window_ms in [250, 0] {
        measure_with_delivery_window(window_ms).await;
    }
}

async fn measure_with_delivery_window(window_ms: u64) {
    let a = FedApp::spawn(Host::Localhost, |c| c.presence_delivery_window_ms = window_ms).await;
    let b = FedApp::spawn(Host::Ip, |c| c.federation.peek_renewal_interval_ms = 60_000).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    share_a_room(&a, &alice, &b, &bob).await;
    let room = profile_room(&b.app, &bob).await;
    let (status, v) = client_peek(&a.app, &alice, &room).await;
    assert_eq!(status, 200, "{v}");
    let mut v = sync_until(&a.app, &alice, "the peeked state", |v| v["rooms"]["peek"][&room].is_object()).await;
    let mut samples = Vec::new();
    for i in 0..20 {
        let text = format!("change {i}");
        let started = Instant::now();
        set_status(&b.app, &bob, json!({"presence": "online", "status_msg": text})).await;
        loop {
            let since = v["next_batch"].as_str().unwrap().to_owned();
            v = a.app.sync(&alice, &format!("since={since}&timeout=10000")).await;
            if has_status(&v, &room, &text) {
                break;
            }
        }
        samples.push(started.elapsed().as_millis());
    }
    samples.sort_unstable();
    eprintln!(
        "remote peek delivery (A's presence_delivery_window_ms {window_ms}, B's publish window 30 ms) over {} changes: \
         min {} ms, median {} ms, max {} ms",
        samples.len(),
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
