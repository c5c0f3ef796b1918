//! Presence lists across servers (issue #15, presence-list grants): two Seed instances, alice
//! on A and bob on B, sharing NO room, so the list is the only grant in play. The request goes
//! to B as `m.presence_invite`, bob's answer comes back as `m.presence_accept` /
//! `m.presence_deny`, a drop goes as `org.matrix.msc3032.presence_drop`; with the grant on both
//! sides B sends bob's presence to A and A keeps it. List EDUs from a server that may not speak
//! for the user are ignored.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use std::time::{Duration, Instant};

use common::{enc, presence_status, set_status, TestApp, User};
use federation_common::{send_edus, sync_until, FedApp, Host};
use reqwest::StatusCode;
use serde_json::{json, Value};

const UNSTABLE: &str = "/_matrix/client/unstable/org.matrix.msc3032";

fn tweak() -> impl Fn(&mut seed::config::Config) + Clone {
    move |c: &mut seed::config::Config| {
        c.federation.send_backoff_base_ms = 50;
        c.federation.send_backoff_max_ms = 300;
        c.federation.presence_flush_ms = 100;
        c.federation.presence_reannounce_ms = 60_000;
        c.federation.presence_remote_timeout_ms = 60_000;
        c.presence_device_timeout_ms = 120_000;
        c.presence_idle_after_ms = 120_000;
        c.presence_currently_active_ms = 120_000;
    }
}

async fn pair() -> (FedApp, FedApp) {
    (FedApp::spawn(Host::Localhost, tweak()).await, FedApp::spawn(Host::Ip, tweak()).await)
}

fn state(a: &FedApp) -> &seed::app::Services {
    &a.app.running.as_ref().unwrap().state
}

async fn change_list(app: &TestApp, owner: &User, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/_matrix/client/v3/presence/list/{}", enc(&owner.user_id)), Some(&owner.token), body).await
}

async fn invite(app: &TestApp, owner: &User, target: &str) {
    let (c, v) = change_list(app, owner, json!({"invite": [target]})).await;
    assert_eq!(c, 200, "invite: {v}");
}

async fn answer(app: &TestApp, target: &User, owner: &str, how: &str) {
    let path = format!("{UNSTABLE}/presence/list/{}/{how}", enc(&target.user_id));
    let (c, v) = app.post(&path, Some(&target.token), json!({"user_id": owner})).await;
    assert_eq!(c, 200, "{how}: {v}");
}

async fn requests(app: &TestApp, user: &User) -> Vec<String> {
    let (c, v) = app.get(&format!("{UNSTABLE}/presence/requests/{}", enc(&user.user_id)), Some(&user.token)).await;
    assert_eq!(c, 200, "requests: {v}");
    v["requests"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
}

async fn list(app: &TestApp, owner: &User) -> Vec<Value> {
    let (c, v) =
        app.get(&format!("/_matrix/client/v3/presence/list/{}", enc(&owner.user_id)), Some(&owner.token)).await;
    assert_eq!(c, 200, "list: {v}");
    v.as_array().unwrap().clone()
}

async fn status_code(app: &TestApp, viewer: &User, of: &User) -> StatusCode {
    app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&of.user_id)), Some(&viewer.token)).await.0
}

/// Poll until `check` holds (at most 10 s).
async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `GET /presence/{of}/status` until it answers 200 with `pred` holding (a grant that
/// has not arrived yet answers 403).
async fn wait_status(app: &TestApp, viewer: &User, of: &User, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (c, v) =
            app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&of.user_id)), Some(&viewer.token)).await;
        if c == 200 && pred(&v) {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting for {what}; last: {c} {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The newest `m.presence` event about `user` in a sync response.
fn presence_of<'a>(v: &'a Value, user: &str) -> Option<&'a Value> {
    v["presence"]["events"].as_array()?.iter().rev().find(|e| e["sender"] == user)
}

/// The owners listed in the `org.matrix.msc3032.presence_requests` account data of a sync.
fn requests_in_sync(v: &Value) -> Option<Vec<String>> {
    let e = v["account_data"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["type"] == "org.matrix.msc3032.presence_requests")?;
    Some(e["content"]["requests"].as_array()?.iter().filter_map(|r| r["user_id"].as_str().map(str::to_owned)).collect())
}

#[tokio::test]
async fn a_remote_grant_carries_presence_without_a_shared_room_until_revoked() {
    let (a, b) = pair().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    b.app.sync(&bob, "timeout=0&set_presence=online").await;
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "hello"})).await;

    // No grant yet: A refuses bob's status to alice.
    assert_eq!(status_code(&a.app, &alice, &bob).await, 403);

    // alice asks; bob sees the request in his account data and through the requests endpoint.
    invite(&a.app, &alice, &bob.user_id).await;
    sync_until(&b.app, &bob, "the request on B", |v| {
        requests_in_sync(v).is_some_and(|r| r == vec![alice.user_id.clone()])
    })
    .await;
    assert_eq!(requests(&b.app, &bob).await, vec![alice.user_id.clone()]);
    // Pending grants nothing.
    assert_eq!(status_code(&a.app, &alice, &bob).await, 403);
    assert!(list(&a.app, &alice).await.is_empty());

    // bob accepts: alice's legacy /sync and status on A carry bob's presence, no room shared.
    answer(&b.app, &bob, &alice.user_id, "accept").await;
    let v = sync_until(&a.app, &alice, "bob's presence on A", |v| {
        presence_of(v, &bob.user_id).is_some_and(|e| e["content"]["status_msg"] == "hello")
    })
    .await;
    assert_eq!(presence_of(&v, &bob.user_id).unwrap()["content"]["presence"], "online");
    let s = presence_status(&a.app, &alice, &bob).await;
    assert_eq!(s["presence"], "online", "{s}");
    let l = list(&a.app, &alice).await;
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["sender"], bob.user_id.as_str());
    assert!(requests(&b.app, &bob).await.is_empty());
    let (_, rooms) = a.app.get("/_matrix/client/v3/joined_rooms", Some(&alice.token)).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "alice is in no room");

    // bob's changes reach alice.
    set_status(&b.app, &bob, json!({"presence": "unavailable", "status_msg": "away"})).await;
    wait_status(&a.app, &alice, &bob, "bob away on A", |s| s["status_msg"] == "away").await;

    // bob revokes: A drops the grant (403 as locally) and B sends his changes to A no more.
    answer(&b.app, &bob, &alice.user_id, "reject").await;
    wait_for("A dropped the grant", || async { status_code(&a.app, &alice, &bob).await == 403 }).await;
    assert!(list(&a.app, &alice).await.is_empty());
    let sent0 = state(&b).metrics.federation.presence_updates_sent.get();
    set_status(&b.app, &bob, json!({"presence": "online", "status_msg": "back"})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&b).metrics.federation.presence_updates_sent.get(), sent0, "bob's change was sent to A");
    assert_eq!(status_code(&a.app, &alice, &bob).await, 403);
}

#[tokio::test]
async fn a_reverse_subscription_is_accepted_by_the_target_server_and_a_drop_reaches_it() {
    let (a, b) = pair().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    a.app.sync(&alice, "timeout=0&set_presence=online").await;
    b.app.sync(&bob, "timeout=0&set_presence=online").await;

    // bob follows alice (she accepts on A).
    invite(&b.app, &bob, &alice.user_id).await;
    wait_for("bob's request on A", || async { requests(&a.app, &alice).await == vec![bob.user_id.clone()] }).await;
    answer(&a.app, &alice, &bob.user_id, "accept").await;
    wait_status(&b.app, &bob, &alice, "alice online on B", |s| s["presence"] == "online").await;

    // alice asks to follow bob: B accepts on its own (bob already follows alice); bob is
    // never asked, and A's pending entry is not accepted before B says so.
    invite(&a.app, &alice, &bob.user_id).await;
    wait_status(&a.app, &alice, &bob, "bob online on A", |s| s["presence"] == "online").await;
    assert!(requests(&b.app, &bob).await.is_empty());
    assert_eq!(list(&a.app, &alice).await.len(), 1);

    // alice drops bob: B forgets the grant (only bob's own one stays).
    let (c, v) = change_list(&a.app, &alice, json!({"drop": [bob.user_id]})).await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(status_code(&a.app, &alice, &bob).await, 403);
    wait_for("B dropped the entry", || async { state(&b).lists.entry(&alice.user_id, &bob.user_id).is_none() }).await;
    assert!(state(&b).lists.entry(&bob.user_id, &alice.user_id).is_some(), "bob's own entry went too");
    assert_eq!(presence_status(&b.app, &bob, &alice).await["presence"], "online");

    // A request to a user B does not have is refused by B: A does not keep it.
    let ghost = format!("@ghost:{}", b.server_name);
    invite(&a.app, &alice, &ghost).await;
    wait_for("A dropped the request to an unknown user", || async {
        state(&a).lists.entry(&alice.user_id, &ghost).is_none()
    })
    .await;
}

fn edu(kind: &str, observer: &str, observed: &str) -> Value {
    json!({"edu_type": kind, "content": {"observer_user": observer, "observed_user": observed}})
}

#[tokio::test]
async fn list_edus_from_a_server_that_may_not_speak_for_the_user_are_ignored() {
    let (a, b) = pair().await;
    let alice = a.app.register("alice").await;
    let carol = a.app.register("carol").await;
    let dave = a.app.register("dave").await;
    let bob_id = format!("@bob:{}", b.server_name);
    let signer = b.signer();

    // Local entries on A: carol follows alice (accepted), dave's request to alice pending.
    invite(&a.app, &carol, &alice.user_id).await;
    answer(&a.app, &alice, &carol.user_id, "accept").await;
    invite(&a.app, &dave, &alice.user_id).await;

    // B speaks for A's users: an accept of dave's request, a drop and a deny of carol's
    // entry, an invite by carol; and for a third server's user; and ids over 255 bytes.
    let long = format!("@{}:{}", "x".repeat(260), b.server_name);
    send_edus(
        &signer,
        &a,
        vec![
            edu("m.presence_accept", &dave.user_id, &alice.user_id),
            edu("org.matrix.msc3032.presence_drop", &carol.user_id, &alice.user_id),
            edu("m.presence_deny", &carol.user_id, &alice.user_id),
            edu("m.presence_invite", &carol.user_id, &dave.user_id),
            edu("m.presence_invite", "@mallory:elsewhere.example", &alice.user_id),
            edu("m.presence_invite", &long, &alice.user_id),
            edu("m.presence_invite", &bob_id, "@nobody:nowhere.example"),
            json!({"edu_type": "m.presence_invite", "content": "nonsense"}),
        ],
    )
    .await;
    assert_eq!(requests(&a.app, &alice).await, vec![dave.user_id.clone()], "dave's request changed");
    assert!(requests(&a.app, &dave).await.is_empty(), "B invited for carol");
    assert_eq!(list(&a.app, &carol).await.len(), 1, "B dropped carol's entry");
    assert!(list(&a.app, &dave).await.is_empty(), "B accepted for alice");

    // The same transport with genuine speakers works: B's bob asks to follow alice.
    send_edus(&signer, &a, vec![edu("m.presence_invite", &bob_id, &alice.user_id)]).await;
    assert_eq!(requests(&a.app, &alice).await, vec![dave.user_id.clone(), bob_id.clone()]);
    // An accept for an entry that does not exist grants nothing.
    send_edus(&signer, &a, vec![edu("m.presence_accept", &alice.user_id, &bob_id)]).await;
    assert!(list(&a.app, &alice).await.is_empty());
}

#[tokio::test]
async fn a_request_lost_with_the_senders_queue_is_sent_again_when_the_peer_speaks() {
    let (mut a, mut b) = pair().await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;

    // B is down: the invite waits in A's (in-memory) EDU queue, and A restarts, losing it.
    let running = b.app.running.take().expect("running");
    let config = running.state.config.clone();
    running.stop().await;
    invite(&a.app, &alice, &bob.user_id).await;
    a.app.restart().await;
    let running = seed::app::spawn(config).await.expect("B restarts");
    b.app.base = format!("http://{}", running.addr);
    b.app.running = Some(running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(requests(&b.app, &bob).await.is_empty(), "nothing should have carried the request yet");

    // B speaks to A (any transaction): A sends what B should know again.
    send_edus(&b.signer(), &a, vec![]).await;
    wait_for("the request on B", || async { requests(&b.app, &bob).await == vec![alice.user_id.clone()] }).await;

    // bob's answer then reaches A as usual.
    answer(&b.app, &bob, &alice.user_id, "accept").await;
    wait_status(&a.app, &alice, &bob, "bob visible on A", |_| true).await;
}
