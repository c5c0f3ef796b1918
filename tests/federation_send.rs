//! Federation transport (issue #14): the outgoing queue against a stand-in peer
//! (`common/peer.rs`: batching, backoff and catch-up, persistence across a restart, a stalled
//! peer not holding up another) and `PUT /_matrix/federation/v1/send/{txnId}` between two
//! Seed instances (authentication, limits, idempotency, EDUs only for the origin's users).
mod common;
#[path = "common/federation.rs"]
mod federation_common;
#[path = "common/peer.rs"]
mod peer;

use std::sync::Arc;

use common::{assert_err, enc, TestApp};
use federation_common::{tls_client, FedApp, Host, Signer};
use peer::{wait_until, FakePeer, Mode};
use reqwest::Method;
use serde_json::{json, Value};

/// A sender with fast retries, and requests that outlast any stall in these tests.
async fn sender() -> FedApp {
    FedApp::spawn(Host::Localhost, |c| {
        c.federation.send_backoff_base_ms = 20;
        c.federation.send_backoff_max_ms = 200;
        c.federation.request_timeout_ms = 30_000;
    })
    .await
}

fn fed(app: &TestApp) -> Arc<seed::federation::Federation> {
    app.running.as_ref().expect("running").state.federation.clone()
}

fn metric(app: &TestApp, kind: &str) -> u64 {
    app.running.as_ref().unwrap().state.metrics.federation.queued.with_label_values(&[kind]).get()
}

/// A test PDU; the queue does not look inside, the peer reads `event_id` back.
fn pdu(i: usize) -> (String, Value) {
    let id = format!("$test{i}");
    (id.clone(), json!({"event_id": id, "room_id": "!r:test", "type": "m.room.message", "content": {"n": i}}))
}

fn queue(app: &TestApp, to: &[&FakePeer], range: std::ops::Range<usize>) {
    let fed = fed(app);
    for i in range {
        let (id, p) = pdu(i);
        fed.send_pdu(to.iter().map(|p| p.server_name.clone()), &id, &p);
    }
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("$test{i}")).collect()
}

#[tokio::test]
async fn events_queued_while_a_transaction_is_in_flight_go_in_few_batched_transactions() {
    let a = sender().await;
    let peer = FakePeer::start(Mode::Stall).await;
    queue(&a.app, &[&peer], 0..1);
    wait_until(10, "the first transaction", || peer.attempts() == 1).await;
    queue(&a.app, &[&peer], 1..121);
    let f = fed(&a.app);
    for i in 0..150 {
        f.send_edu(&peer.server_name, "m.test", json!({"i": i}));
    }
    wait_until(10, "everything journaled", || metric(&a.app, "pdu") == 121).await;
    assert_eq!(peer.attempts(), 1, "a second transaction went out while the first was in flight");
    peer.release();
    wait_until(10, "every PDU delivered", || peer.delivered_ids().len() >= 121).await;
    wait_until(10, "every EDU delivered", || peer.delivered_edus().len() >= 150).await;
    assert_eq!(peer.delivered_ids(), ids(0..121), "in order, each once");
    let txns = peer.accepted();
    // 1 in flight, then 120 PDUs / 150 EDUs in batches of at most 50 / 100.
    assert!(txns.len() <= 4, "{} transactions for 121 PDUs", txns.len());
    for t in &txns {
        assert!(t.body["pdus"].as_array().unwrap().len() <= 50);
        assert!(t.body["edus"].as_array().unwrap().len() <= 100);
        assert!(t.authorization.starts_with("X-Matrix "), "signed: {}", t.authorization);
        assert!(t.authorization.contains(&a.server_name), "origin named: {}", t.authorization);
        assert_eq!(t.body["origin"], a.server_name);
    }
    let mut txn_ids: Vec<_> = txns.iter().map(|t| t.txn_id.clone()).collect();
    txn_ids.dedup();
    assert_eq!(txn_ids.len(), txns.len(), "a new transaction id for each transaction");
}

#[tokio::test]
async fn a_failing_peer_is_retried_with_backoff_and_gets_what_it_missed() {
    let a = sender().await;
    let peer = FakePeer::start(Mode::Fail(502)).await;
    queue(&a.app, &[&peer], 0..3);
    wait_until(10, "three failed attempts", || peer.attempts() >= 3).await;
    // Queued while the peer is down.
    queue(&a.app, &[&peer], 3..80);
    wait_until(10, "everything journaled", || metric(&a.app, "pdu") == 80).await;
    let retried = peer.seen();
    assert!(retried.iter().all(|s| s.txn_id == retried[0].txn_id), "a failed transaction is retried as it was");
    peer.set_mode(Mode::Accept);
    wait_until(10, "catch-up", || peer.delivered_ids().len() >= 80).await;
    assert_eq!(peer.delivered_ids(), ids(0..80));
    let state = &a.app.running.as_ref().unwrap().state;
    assert!(state.metrics.federation.transactions.with_label_values(&["retry"]).get() >= 3);
    let sent = || state.metrics.federation.sent.with_label_values(&["pdu"]).get();
    wait_until(10, "the sender to count the answers", || sent() == 80).await;
    let metrics = state.scrape_metrics();
    assert!(metrics.contains("seed_federation_destinations_backing_off 0"), "{metrics}");
}

#[tokio::test]
async fn a_peer_that_refuses_a_transaction_is_not_sent_it_again() {
    let a = sender().await;
    let peer = FakePeer::start(Mode::Fail(400)).await;
    queue(&a.app, &[&peer], 0..2);
    wait_until(10, "the refusal", || peer.attempts() == 1).await;
    peer.set_mode(Mode::Accept);
    queue(&a.app, &[&peer], 2..3);
    wait_until(10, "the next transaction", || peer.delivered_ids() == ids(2..3)).await;
    assert_eq!(peer.attempts(), 2, "the refused transaction was sent again");
}

#[tokio::test]
async fn queued_pdus_survive_a_restart_of_the_sender() {
    let mut a = sender().await;
    let peer = FakePeer::start(Mode::Fail(503)).await;
    queue(&a.app, &[&peer], 0..5);
    wait_until(10, "an attempt", || peer.attempts() >= 1).await;
    wait_until(10, "everything journaled", || metric(&a.app, "pdu") == 5).await;
    a.app.restart().await;
    let attempts_before = peer.attempts();
    peer.set_mode(Mode::Accept);
    wait_until(10, "delivery after the restart", || peer.delivered_ids().len() >= 5).await;
    assert_eq!(peer.delivered_ids(), ids(0..5));
    assert!(peer.attempts() > attempts_before);
    // Delivered once: nothing is left to send again.
    queue(&a.app, &[&peer], 5..6);
    wait_until(10, "the next PDU", || peer.delivered_ids().len() >= 6).await;
    assert_eq!(peer.delivered_ids(), ids(0..6));
}

#[tokio::test]
async fn a_stalled_peer_does_not_delay_another() {
    let a = sender().await;
    let stalled = FakePeer::start(Mode::Stall).await;
    let fast = FakePeer::start(Mode::Accept).await;
    queue(&a.app, &[&stalled, &fast], 0..1);
    wait_until(10, "the stalled peer's request", || stalled.attempts() == 1).await;
    queue(&a.app, &[&stalled, &fast], 1..20);
    wait_until(10, "the fast peer's delivery", || fast.delivered_ids().len() >= 20).await;
    assert_eq!(fast.delivered_ids(), ids(0..20));
    assert!(stalled.accepted().is_empty(), "the stalled peer answered meanwhile; the test proves nothing");
    stalled.release();
    wait_until(10, "the stalled peer's catch-up", || stalled.delivered_ids().len() >= 20).await;
}

#[tokio::test]
async fn denied_peers_and_this_server_are_never_sent_to() {
    let denied = FakePeer::start(Mode::Accept).await;
    let name = denied.server_name.clone();
    let a = FedApp::spawn(Host::Localhost, |c| c.federation.deny = vec![name]).await;
    let other = FakePeer::start(Mode::Accept).await;
    let f = fed(&a.app);
    let (id, p) = pdu(0);
    f.send_pdu([denied.server_name.clone(), a.server_name.clone(), other.server_name.clone()], &id, &p);
    f.send_edu(&denied.server_name, "m.test", json!({}));
    wait_until(10, "the allowed peer", || other.delivered_ids().len() == 1).await;
    assert_eq!(metric(&a.app, "pdu"), 1, "queued for the allowed peer only");
    assert_eq!(metric(&a.app, "edu"), 0);
    assert_eq!(denied.attempts(), 0);
}

// ---- PUT /send/{txnId} ----

async fn put_txn(from: &Signer, to: &FedApp, txn_id: &str, body: &Value, signed: bool) -> (u16, Value) {
    let path = format!("/_matrix/federation/v1/send/{}", enc(txn_id));
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = tls_client()
        .put(format!("{}{path}", to.fed_base()))
        .header("content-type", "application/json")
        .body(bytes.clone());
    if signed {
        req = req.header("authorization", from.header(&to.server_name, &Method::PUT, &path, &bytes));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn txn(pdus: Vec<Value>, edus: Vec<Value>) -> Value {
    json!({"origin": "x", "origin_server_ts": 1, "pdus": pdus, "edus": edus})
}

#[tokio::test]
async fn send_checks_signature_and_limits() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let from = b.signer();
    let (status, body) = put_txn(&from, &a, "t1", &txn(vec![], vec![]), false).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 401, "M_UNAUTHORIZED");
    let (status, body) = put_txn(&from, &a, "t1", &txn(vec![], vec![]), true).await;
    assert_eq!((status, body), (200, json!({"pdus": {}})));
    let too_many_pdus = txn((0..51).map(|i| json!({"room_id": "!r:x", "i": i})).collect(), vec![]);
    let (status, body) = put_txn(&from, &a, "t2", &too_many_pdus, true).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 400, "M_BAD_JSON");
    let too_many_edus = txn(vec![], (0..101).map(|_| json!({"edu_type": "m.x", "content": {}})).collect());
    let (status, body) = put_txn(&from, &a, "t3", &too_many_edus, true).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 400, "M_BAD_JSON");
    let (status, body) = put_txn(&from, &a, "t4", &json!({"edus": []}), true).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 400, "M_BAD_JSON");
    let (status, body) = put_txn(&from, &a, &"x".repeat(300), &txn(vec![], vec![]), true).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 400, "M_INVALID_PARAM");
    let huge = txn(vec![json!({"room_id": "!r:x", "pad": "x".repeat(2 * 1024 * 1024)})], vec![]);
    let (status, body) = put_txn(&from, &a, "t5", &huge, true).await;
    assert_err(reqwest::StatusCode::from_u16(status).unwrap(), &body, 413, "M_TOO_LARGE");
}

/// A PDU in a room `a` knows, that the room service refuses (it is not validly signed).
fn refused_pdu(room_id: &str, sender: &str) -> Value {
    json!({
        "room_id": room_id, "type": "m.room.message", "sender": sender, "content": {"body": "hi"},
        "origin_server_ts": 1, "depth": 5, "prev_events": [], "auth_events": [],
        "hashes": {"sha256": "x"}, "signatures": {},
    })
}

#[tokio::test]
async fn a_repeated_transaction_gets_the_first_answer_without_being_processed_again() {
    let mut a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({})).await;
    let from = b.signer();
    let bob = format!("@bob:{}", b.server_name);
    let empty = txn(vec![], vec![]);
    let with_pdu = txn(vec![refused_pdu(&room, &bob)], vec![]);
    // A new transaction id: the PDU is processed and refused under its event id.
    let (status, fresh) = put_txn(&from, &a, "other", &with_pdu, true).await;
    assert_eq!(status, 200, "{fresh}");
    let answers = fresh["pdus"].as_object().unwrap();
    assert_eq!(answers.len(), 1, "{fresh}");
    let (event_id, answer) = answers.iter().next().unwrap();
    assert!(event_id.starts_with('$') && answer["error"].is_string(), "{fresh}");
    // The same id again, now with a PDU: the first (empty) answer, nothing processed.
    assert_eq!(put_txn(&from, &a, "once", &empty, true).await, (200, json!({"pdus": {}})));
    assert_eq!(put_txn(&from, &a, "once", &with_pdu, true).await, (200, json!({"pdus": {}})));
    // Kept across a restart; and per origin (the same id from another server is new).
    a.app.restart().await;
    assert_eq!(put_txn(&from, &a, "other", &empty, true).await, (200, fresh.clone()));
    let c = FedApp::spawn(Host::Localhost, |_| {}).await;
    let (status, from_c) = put_txn(&c.signer(), &a, "once", &with_pdu, true).await;
    assert_eq!(status, 200);
    assert_eq!(from_c["pdus"].as_object().unwrap().len(), 1, "{from_c}");
}

fn ephemeral_types(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn edus_about_users_of_another_server_or_not_joined_are_ignored() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let alice = a.app.register("alice").await;
    let room = a.app.create_room(&alice, json!({})).await;
    let event = a.app.send_text(&alice, &room, "hello").await;
    let bob = format!("@bob:{}", b.server_name);
    let mut edus = Vec::new();
    for user in [&alice.user_id, &bob] {
        edus.push(json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": user, "typing": true}}));
        edus.push(json!({"edu_type": "m.receipt", "content": {room.as_str(): {"m.read": {user.as_str():
            {"event_ids": [event], "data": {"ts": 1}}}}}}));
    }
    edus.push(json!({"edu_type": "m.typing", "content": "not an object"}));
    edus.push(json!({"edu_type": "m.receipt", "content": [1, 2]}));
    let (status, body) = put_txn(&b.signer(), &a, "edus", &txn(vec![], edus), true).await;
    assert_eq!((status, body), (200, json!({"pdus": {}})));
    let sync = a.app.sync(&alice, "timeout=0").await;
    assert!(ephemeral_types(&sync, &room).is_empty(), "B spoke for alice or for a non-member: {sync}");
    // The same room's own typing still works (the EDUs broke nothing).
    let (status, _) = a
        .app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(&room), enc(&alice.user_id)),
            Some(&alice.token),
            json!({"typing": true, "timeout": 10_000}),
        )
        .await;
    assert_eq!(status, 200);
    let sync = a.app.sync(&alice, "timeout=0").await;
    assert_eq!(ephemeral_types(&sync, &room), vec!["m.typing"]);
}
