//! Issue #13 at the HTTP level: the room-state cache keeps memberships as ids, so whole
//! member events are read back from the store (through a bounded event cache) wherever they
//! are sent; and a burst of initial syncs queues behind `initial_sync_concurrency` instead
//! of failing.
mod common;

use std::time::Duration;

use common::{assert_err, enc, set_status, TestApp, User};
use serde_json::{json, Value};

const V3: &str = "/_matrix/client/v3";

fn member_events(events: &Value) -> Vec<&Value> {
    events.as_array().unwrap().iter().filter(|e| e["type"] == "m.room.member").collect()
}

fn member_of<'a>(events: &'a Value, user: &User) -> &'a Value {
    member_events(events).into_iter().find(|e| e["state_key"] == user.user_id.as_str()).expect("member event")
}

async fn set_displayname(app: &TestApp, user: &User, name: &str) {
    let path = format!("{V3}/profile/{}/displayname", enc(&user.user_id));
    let (status, v) = app.put(&path, Some(&user.token), json!({"displayname": name})).await;
    assert_eq!(status, 200, "{v}");
}

/// Every route that sends member events sends them whole, with `prev_content`, whether they
/// come from the event cache or (cache of one event, and after a restart) from the store.
#[tokio::test]
async fn member_events_are_sent_whole_from_the_store() {
    let mut app = TestApp::spawn_with(|c| c.event_cache_capacity = 1).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &room).await.0, 200);
    set_displayname(&app, &bob, "Bob B.").await;
    let (status, v) = app
        .post(&format!("{V3}/rooms/{}/invite", enc(&room)), Some(&alice.token), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, 200, "{v}");

    for round in ["warm", "after restart"] {
        // /members: every membership, whole.
        let (status, v) = app.get(&format!("{V3}/rooms/{}/members", enc(&room)), Some(&alice.token)).await;
        assert_eq!(status, 200, "{round}: {v}");
        assert_eq!(member_events(&v["chunk"]).len(), 3, "{round}: {v}");
        let bob_ev = member_of(&v["chunk"], &bob);
        assert_eq!(bob_ev["content"]["displayname"], "Bob B.", "{round}");
        assert_eq!(bob_ev["unsigned"]["prev_content"]["membership"], "join", "{round}: {bob_ev}");
        assert!(bob_ev["event_id"].as_str().unwrap().starts_with('$'));
        let (_, v) = app.get(&format!("{V3}/rooms/{}/members?membership=invite", enc(&room)), Some(&alice.token)).await;
        assert_eq!(member_events(&v["chunk"]).len(), 1, "{round}: {v}");

        // /joined_members: names from the member events.
        let (_, v) = app.get(&format!("{V3}/rooms/{}/joined_members", enc(&room)), Some(&alice.token)).await;
        assert_eq!(v["joined"][&bob.user_id]["display_name"], "Bob B.", "{round}: {v}");
        assert_eq!(v["joined"].as_object().unwrap().len(), 2, "{round}: {v}");

        // /state and /state/m.room.member/{user}.
        let (_, v) = app.get(&format!("{V3}/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
        assert_eq!(member_events(&v).len(), 3, "{round}: {v}");
        assert!(v.as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"), "{round}");
        let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id));
        let (status, v) = app.get(&path, Some(&alice.token)).await;
        assert_eq!(status, 200, "{round}: {v}");
        assert_eq!(v, json!({"membership": "join", "displayname": "Bob B."}), "{round}");
        let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(&room), enc("@nobody:localhost"));
        let (status, v) = app.get(&path, Some(&alice.token)).await;
        assert_err(status, &v, 404, "M_NOT_FOUND");

        // An initial sync: the room's state carries every member event, once.
        let v = app.sync(&alice, "timeout=0").await;
        let state = &v["rooms"]["join"][&room]["state"]["events"];
        let timeline = &v["rooms"]["join"][&room]["timeline"]["events"];
        let all_members: Vec<&Value> = member_events(state).into_iter().chain(member_events(timeline)).collect();
        let mut keys: Vec<&str> = all_members.iter().map(|e| e["state_key"].as_str().unwrap()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 3, "{round}: {v}");

        // The invitee sees her own member event with the stripped state.
        let v = app.sync(&carol, "timeout=0").await;
        let invite = &v["rooms"]["invite"][&room]["invite_state"]["events"];
        let own = member_of(invite, &carol);
        assert_eq!(own["content"]["membership"], "invite", "{round}: {v}");
        assert_eq!(own["sender"], alice.user_id.as_str());

        app.restart().await;
    }

    // Reading someone else's state without being allowed: refused, nothing leaks.
    let private = app.create_room(&alice, json!({"preset": "private_chat"})).await;
    let dave = app.register("dave").await;
    let (status, v) = app.get(&format!("{V3}/rooms/{}/members", enc(&private)), Some(&dave.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
}

/// A member who left reads history up to the leave (the leave event is found by id); after
/// a redaction the member event is served redacted, from the cache as from the store.
#[tokio::test]
async fn leaves_and_redacted_member_events() {
    let app = TestApp::spawn_with(|c| c.event_cache_capacity = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &room).await.0, 200);
    app.send_text(&alice, &room, "before").await;
    let (status, _) = app.post(&format!("{V3}/rooms/{}/leave", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    app.send_text(&alice, &room, "after").await;
    let (status, v) = app.get(&format!("{V3}/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&bob.token)).await;
    assert_eq!(status, 200, "{v}");
    let bodies: Vec<&str> =
        v["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, ["before"], "{v}");

    // Alice (power 100) redacts bob's leave; the state keeps it, content stripped to the membership.
    let path = format!("{V3}/rooms/{}/state/m.room.member/{}", enc(&room), enc(&bob.user_id));
    let (_, before) = app.get(&format!("{path}?format=event"), Some(&alice.token)).await;
    let leave_id = before["event_id"].as_str().expect("event id").to_owned();
    let (status, v) = app
        .put(
            &format!("{V3}/rooms/{}/redact/{}/{}", enc(&room), enc(&leave_id), uuid::Uuid::new_v4().simple()),
            Some(&alice.token),
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"membership": "leave"}));
    let (_, v) = app.get(&format!("{V3}/rooms/{}/members", enc(&room)), Some(&alice.token)).await;
    let bob_ev = member_of(&v["chunk"], &bob);
    assert_eq!(bob_ev["content"], json!({"membership": "leave"}), "{v}");
}

/// Issue #13, start-up burst: with one initial sync built at a time, many clients asking at
/// once all get a complete answer (they queue, none fails), and a long-poll that is waiting
/// holds no place in that queue.
#[tokio::test]
async fn a_burst_of_initial_syncs_queues_and_all_succeed() {
    let app = TestApp::spawn_with(|c| {
        c.initial_sync_concurrency = 1;
        // Nobody goes idle or times out while the test runs.
        c.presence_idle_after_ms = 600_000;
        c.presence_device_timeout_ms = 600_000;
    })
    .await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(app.register(&format!("u{i}")).await);
    }
    let room = app.create_room(&users[0], json!({"preset": "public_chat"})).await;
    for u in &users[1..] {
        assert_eq!(app.join(u, &room).await.0, 200);
    }
    for u in &users {
        set_status(&app, u, json!({"presence": "online", "status_msg": format!("hi from {}", u.user_id)})).await;
        app.sync(u, "timeout=0&set_presence=online").await;
    }

    // A long-poll (incremental, 30 s) waits while the burst runs: a user in no room whose
    // syncs report nothing (`offline`), so nothing but the invite below wakes it.
    let poller = app.register("poller").await;
    let first = app.sync(&poller, "timeout=0&set_presence=offline").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let (http, base, token) = (app.http.clone(), app.base.clone(), poller.token.clone());
        tokio::spawn(async move {
            let url = format!("{base}{V3}/sync?timeout=30000&set_presence=offline&since={since}");
            http.get(url).bearer_auth(token).send().await.expect("long-poll").json::<Value>().await.expect("json")
        })
    };

    let mut burst = Vec::new();
    for round in 0..8 {
        for u in &users {
            let (http, base, token) = (app.http.clone(), app.base.clone(), u.token.clone());
            let query = if round % 2 == 0 { "timeout=0" } else { "timeout=0&set_presence=online" };
            burst.push(tokio::spawn(async move {
                let r = http.get(format!("{base}{V3}/sync?{query}")).bearer_auth(token).send().await.expect("request");
                (r.status(), r.json::<Value>().await.expect("json"))
            }));
        }
    }
    assert_eq!(burst.len(), 48);
    for (i, task) in burst.into_iter().enumerate() {
        let (status, v) = task.await.unwrap();
        assert_eq!(status, 200, "sync {i}: {v}");
        assert!(v["next_batch"].is_string(), "{v}");
        let joined = &v["rooms"]["join"][&room];
        let members =
            member_events(&joined["state"]["events"]).len() + member_events(&joined["timeline"]["events"]).len();
        assert!(members >= 6, "sync {i}: {v}");
        // Everyone (the viewer included) is online and shares the room: six presence events.
        let presence = v["presence"]["events"].as_array().unwrap();
        assert_eq!(presence.len(), 6, "sync {i}: {v}");
        for p in presence {
            assert_eq!(p["content"]["presence"], "online", "{p}");
            assert!(p["content"]["status_msg"].as_str().unwrap().starts_with("hi from"), "{p}");
            assert!(p["content"]["displayname"].is_string(), "{p}");
        }
    }
    // The long-poll is still waiting: it never took a place in the initial-sync queue (had it
    // held the only place, the burst would have waited the poll's 30 s out and found it done).
    assert!(!poll.is_finished());
    let (status, v) = app
        .post(&format!("{V3}/rooms/{}/invite", enc(&room)), Some(&users[0].token), json!({"user_id": poller.user_id}))
        .await;
    assert_eq!(status, 200, "{v}");
    let woken = tokio::time::timeout(Duration::from_secs(20), poll).await.expect("long-poll answers").unwrap();
    assert!(woken["rooms"]["invite"][&room].is_object(), "{woken}");
}
