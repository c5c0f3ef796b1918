//! Rooms over HTTP: creation, membership rules, state, power levels, messages, aliases.
mod common;

use common::{assert_err, enc, RawBody, TestApp};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_room_with_everything() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app
        .create_room(
            &alice,
            json!({
                "preset": "private_chat", "name": "Lounge", "topic": "chat", "room_alias_name": "lounge",
                "invite": [bob.user_id], "initial_state": [{"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://x/y"}}],
                "creation_content": {"type": "org.example.kind"}
            }),
        )
        .await;
    assert!(room.starts_with('!') && room.ends_with(":localhost"));
    let (status, state) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&alice.token)).await;
    assert_eq!(status, 200);
    let find = |t: &str| {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("{t} missing in {state}"))
    };
    assert_eq!(find("m.room.create")["content"]["type"], "org.example.kind");
    assert_eq!(find("m.room.create")["content"]["room_version"], "10");
    assert_eq!(find("m.room.name")["content"]["name"], "Lounge");
    assert_eq!(find("m.room.topic")["content"]["topic"], "chat");
    assert_eq!(find("m.room.avatar")["content"]["url"], "mxc://x/y");
    assert_eq!(find("m.room.join_rules")["content"]["join_rule"], "invite");
    assert_eq!(find("m.room.canonical_alias")["content"]["alias"], "#lounge:localhost");
    let ev = find("m.room.create");
    assert!(ev["event_id"].as_str().unwrap().starts_with('$'));
    assert!(ev["origin_server_ts"].as_i64().unwrap() > 0);
    assert!(ev["unsigned"]["age"].as_i64().is_some());
    // The invite is in place: bob may join.
    let (status, v) = app.join(&bob, &room).await;
    assert_eq!(status, 200, "{v}");
    // Alias resolves.
    let (status, v) = app.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#lounge:localhost")), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["room_id"], room.as_str());
    // Taken alias.
    let (status, v) =
        app.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({"room_alias_name": "lounge"})).await;
    assert_err(status, &v, 400, "M_ROOM_IN_USE");
    let (status, v) = app.get(&format!("/_matrix/client/v3/directory/room/{}", enc("#nope:localhost")), None).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn create_room_bad_input() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({"preset": "weird"})).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) =
        app.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({"invite": ["not-a-user"]})).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.post("/_matrix/client/v3/createRoom", Some(&alice.token), json!({"name": 5})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = app
        .raw(Method::POST, "/_matrix/client/v3/createRoom", Some(&alice.token), Some(RawBody::Text("nope".into())))
        .await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    let (status, v) = app.post("/_matrix/client/v3/createRoom", None, json!({})).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn join_rules_and_membership_transitions() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let private = app.create_room(&alice, json!({"preset": "private_chat"})).await;
    let (status, v) = app.join(&bob, &private).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Only members invite.
    let (status, v) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&private)),
            Some(&carol.token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, _) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&private)),
            Some(&alice.token),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) =
        app.post(&format!("/_matrix/client/v3/rooms/{}/join", enc(&private)), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200);
    // Bob (power 0) cannot kick alice (100); alice can kick bob.
    let (status, v) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&private)),
            Some(&bob.token),
            json!({"user_id": alice.user_id}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, _) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&private)),
            Some(&alice.token),
            json!({"user_id": bob.user_id, "reason": "bye"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = app
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&private), enc(&bob.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["membership"], "leave");
    assert_eq!(v["reason"], "bye");
    // Kicked bob is no longer invited: cannot join an invite-only room.
    let (status, v) = app.join(&bob, &private).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Leaving a room one is not in.
    let (status, v) =
        app.post(&format!("/_matrix/client/v3/rooms/{}/leave", enc(&private)), Some(&carol.token), json!({})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Ban and unban.
    let public = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&carol, &public).await.0, 200);
    let (status, _) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&public)),
            Some(&alice.token),
            json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = app.join(&carol, &public).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, _) = app
        .post(
            &format!("/_matrix/client/v3/rooms/{}/unban", enc(&public)),
            Some(&alice.token),
            json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.join(&carol, &public).await.0, 200);
    // Unknown room.
    let (status, v) = app.join(&carol, "!nope:localhost").await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn state_needs_power_and_membership() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat", "name": "one"})).await;
    app.join(&bob, &room).await;
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room));
    let (status, v) = app.put(&path, Some(&bob.token), json!({"name": "two"})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&path, Some(&alice.token), json!({"name": "two"})).await;
    assert_eq!(status, 200);
    assert!(v["event_id"].as_str().unwrap().starts_with('$'));
    let (status, v) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "two");
    // Without the trailing slash too.
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)), Some(&bob.token)).await;
    assert_eq!(status, 200, "{v}");
    // Non-members cannot read state, members, or messages.
    let (status, v) = app.get(&path, Some(&eve.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)), Some(&eve.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", enc(&room)), Some(&eve.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/members", enc(&room)), Some(&eve.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Missing state.
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic/", enc(&room)), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    // State keyed to another user.
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/org.example/{}", enc(&room), enc(&alice.user_id)),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/org.example/{}", enc(&room), enc(&bob.user_id)),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Unknown room.
    let (status, v) = app.get("/_matrix/client/v3/rooms/!nope:localhost/state", Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn send_is_idempotent_and_bounded() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let room = app.create_room(&alice, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/txn1", enc(&room));
    let (s1, v1) = app.put(&path, Some(&alice.token), json!({"msgtype": "m.text", "body": "hi"})).await;
    let (s2, v2) = app.put(&path, Some(&alice.token), json!({"msgtype": "m.text", "body": "hi"})).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200));
    assert_eq!(v1["event_id"], v2["event_id"], "replayed txn id must give the same event");
    let (_, msgs) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", enc(&room)), Some(&alice.token)).await;
    let count = msgs["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.message").count();
    assert_eq!(count, 1, "{msgs}");
    // Oversized event.
    let big = "x".repeat(70_000);
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/big", enc(&room)),
            Some(&alice.token),
            json!({"body": big}),
        )
        .await;
    assert_err(status, &v, 413, "M_TOO_LARGE");
    // Non-member.
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t", enc(&room)),
            Some(&eve.token),
            json!({"body": "x"}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    // Bad JSON body.
    let (status, v) = app
        .raw(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t2", enc(&room)),
            Some(&alice.token),
            Some(RawBody::Text("{oops".into())),
        )
        .await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    // Unknown room.
    let (status, v) = app
        .put(
            "/_matrix/client/v3/rooms/!nope:localhost/send/m.room.message/t3",
            Some(&alice.token),
            json!({"body": "x"}),
        )
        .await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn members_rooms_and_pagination() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    app.join(&bob, &room).await;
    for i in 0..25 {
        app.send_text(&alice, &room, &format!("m{i}")).await;
    }
    let (_, v) = app.get("/_matrix/client/v3/joined_rooms", Some(&bob.token)).await;
    assert_eq!(v["joined_rooms"], json!([room]));
    let (_, v) = app.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), Some(&bob.token)).await;
    assert_eq!(v["joined"].as_object().unwrap().len(), 2);
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/members?membership=join", enc(&room)), Some(&bob.token)).await;
    assert_eq!(v["chunk"].as_array().unwrap().len(), 2);

    // Walk backwards 10 at a time and collect every message exactly once, newest first.
    let mut from: Option<String> = None;
    let mut bodies = vec![];
    loop {
        let q = match &from {
            Some(f) => format!("dir=b&limit=10&from={f}"),
            None => "dir=b&limit=10".into(),
        };
        let (status, v) =
            app.get(&format!("/_matrix/client/v3/rooms/{}/messages?{q}", enc(&room)), Some(&bob.token)).await;
        assert_eq!(status, 200, "{v}");
        for e in v["chunk"].as_array().unwrap() {
            if e["type"] == "m.room.message" {
                bodies.push(e["content"]["body"].as_str().unwrap().to_owned());
            }
        }
        match v["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
    // Forwards from the start.
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=3", enc(&room)), Some(&bob.token)).await;
    assert_eq!(v["chunk"][0]["type"], "m.room.create");
    let (status, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&from=garbage", enc(&room)), Some(&bob.token))
        .await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn profile_changes_update_member_events() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, json!({})).await;
    let (status, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["displayname"], "alice");
    let (status, _) = app
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"displayname": "Alice A."}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"avatar_url": "mxc://a/b"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = app.get(&format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)), None).await;
    assert_eq!(v["displayname"], "Alice A.");
    let (_, v) = app
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", enc(&room), enc(&alice.user_id)),
            Some(&alice.token),
        )
        .await;
    assert_eq!(v["displayname"], "Alice A.");
    assert_eq!(v["avatar_url"], "mxc://a/b");
    let bob = app.register("bob").await;
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice.user_id)),
            Some(&bob.token),
            json!({"displayname": "x"}),
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.get("/_matrix/client/v3/profile/@ghost:localhost", None).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

/// Two `createRoom` calls racing for one `room_alias_name`: exactly one room is created and
/// the other call gets `M_ROOM_IN_USE` without leaving a room behind (the room and its alias
/// are written in one transaction).
#[tokio::test]
async fn create_room_alias_race_leaves_no_orphan() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mut created = Vec::new();
    for round in 0..5 {
        let body = json!({"room_alias_name": format!("race{round}"), "name": "race"});
        let (a, b) = tokio::join!(
            app.post("/_matrix/client/v3/createRoom", Some(&alice.token), body.clone()),
            app.post("/_matrix/client/v3/createRoom", Some(&alice.token), body),
        );
        let (won, lost) = if a.0 == 200 { (a, b) } else { (b, a) };
        assert_eq!(won.0, 200, "round {round}: {}", won.1);
        assert_err(lost.0, &lost.1, 400, "M_ROOM_IN_USE");
        let room = won.1["room_id"].as_str().unwrap().to_owned();
        let (status, v) = app
            .get(&format!("/_matrix/client/v3/directory/room/{}", enc(&format!("#race{round}:localhost"))), None)
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["room_id"], room.as_str());
        created.push(room);
    }
    let (status, v) = app.get("/_matrix/client/v3/joined_rooms", Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    let mut joined: Vec<String> =
        v["joined_rooms"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    joined.sort();
    created.sort();
    assert_eq!(joined, created, "joined_rooms holds only the winners");
    let sync = app.sync(&alice, "timeout=0").await;
    let mut synced: Vec<String> =
        sync["rooms"]["join"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    synced.sort();
    assert_eq!(synced, created, "/sync shows only the winners");
}
