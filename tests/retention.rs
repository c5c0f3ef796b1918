//! Bounded presence history (msc/README.md "Retention of presence history"): superseded `m.presence` and
//! `m.status` events of profile rooms are pruned, and `/sync`, peeks, `/messages`, `/context`,
//! redactions, relations and the experiment change log still answer sensibly over the gap.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, TestApp, User};
use seed::profile::retention::{PresenceHistoryRetention, RetentionPolicy};
use seed::rooms::now_ms;
use serde_json::{json, Value};

const V3: &str = "/_matrix/client/v3";
const PEEK: &str = "/_matrix/client/unstable/org.matrix.msc2753";
/// Changes made per test; the policy keeps `KEEP_LAST` of each type.
const CHURN: usize = 12;
const KEEP_LAST: u32 = 3;

/// A server whose background pruning is off: the tests prune with [`prune`] at a known moment.
async fn spawn_manual() -> TestApp {
    TestApp::spawn_with(|c| {
        c.presence_history_prune_interval_ms = 0;
        c.presence_history_keep_last = KEEP_LAST;
        c.presence_history_keep_ms = 0;
        c.admins = vec!["@alice:localhost".into()];
    })
    .await
}

fn store(app: &TestApp) -> seed::store::Store {
    app.running.as_ref().expect("running").state.store.clone()
}

/// One pruning run over the server's database, with the test server's policy.
async fn prune(app: &TestApp) -> seed::profile::retention::PruneReport {
    let state = &app.running.as_ref().expect("running").state;
    let policy = RetentionPolicy { batch: 4, ..RetentionPolicy::from_config(&state.config) };
    PresenceHistoryRetention::new(state.store.clone(), policy).run_once(now_ms() + 1).await.expect("pruning runs")
}

/// Stored events of one type in one room.
async fn stored(app: &TestApp, room: &str, kind: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE room_id = $1 AND event_type = $2")
        .bind(room)
        .bind(kind)
        .fetch_one(&store(app).pool)
        .await
        .unwrap();
    n
}

async fn profile_room(app: &TestApp, of: &User) -> String {
    let (code, v) = app.get(&format!("{V3}/profile/{}", enc(&of.user_id)), None).await;
    assert_eq!(code, 200, "{v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

async fn current_status(app: &TestApp, user: &User, room: &str) -> Value {
    let (code, v) = app.get(&format!("{V3}/rooms/{}/state/m.status/", enc(room)), Some(&user.token)).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Change presence and status text `n` times, each one published as its own events.
async fn churn(app: &TestApp, user: &User, room: &str, n: usize, tag: &str) {
    for i in 0..n {
        let presence = if i % 2 == 0 { "unavailable" } else { "online" };
        let msg = format!("{tag}-{i}");
        let (code, v) = app
            .put(
                &format!("{V3}/presence/{}/status", enc(&user.user_id)),
                Some(&user.token),
                json!({"presence": presence, "status_msg": msg}),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while current_status(app, user, room).await["status"] != json!(msg) {
            assert!(Instant::now() < deadline, "status {msg} was never published");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Every event of a room through `/messages`, newest first, paging to the end.
async fn all_messages(app: &TestApp, user: &User, room: &str, page: u32) -> Vec<Value> {
    let mut out = vec![];
    let mut from: Option<String> = None;
    for _ in 0..200 {
        let mut path = format!("{V3}/rooms/{}/messages?dir=b&limit={page}", enc(room));
        if let Some(f) = &from {
            path.push_str(&format!("&from={f}"));
        }
        let (code, v) = app.get(&path, Some(&user.token)).await;
        assert_eq!(code, 200, "{v}");
        out.extend(v["chunk"].as_array().unwrap().iter().cloned());
        match v["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return out,
        }
    }
    panic!("/messages never reached the start of the room");
}

fn of_type<'a>(events: impl IntoIterator<Item = &'a Value>, kind: &str) -> Vec<&'a Value> {
    events.into_iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn churn_is_pruned_to_the_newest_versions() {
    let app = spawn_manual().await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    churn(&app, &alice, &room, CHURN, "s").await;
    // The initial state plus one new version per change.
    assert_eq!(stored(&app, &room, "m.status").await, CHURN as i64 + 1);
    // m.presence follows the engine (a device timing out adds a version), so it is counted.
    let presence_versions = stored(&app, &room, "m.presence").await;
    assert!(presence_versions > CHURN as i64, "{presence_versions}");
    let superseded = (CHURN as i64 + 1 - KEEP_LAST as i64) + (presence_versions - KEEP_LAST as i64);
    let before = all_messages(&app, &alice, &room, 7).await;

    let report = prune(&app).await;
    assert_eq!(report.pruned as i64, superseded, "{report:?}");
    assert_eq!(stored(&app, &room, "m.status").await, KEEP_LAST as i64);
    assert_eq!(stored(&app, &room, "m.presence").await, KEEP_LAST as i64);
    assert_eq!(store(&app).presence_history_len().await.unwrap(), 2 * (KEEP_LAST as i64 - 1));
    // Nothing else in the room is touched, and a second run has nothing to do.
    assert_eq!(stored(&app, &room, "m.room.create").await, 1);
    assert_eq!(prune(&app).await.pruned, 0);

    // /messages pages over the gap: only the newest versions are left, newest first, and
    // every other event is still there.
    let after = all_messages(&app, &alice, &room, 2).await;
    let statuses: Vec<Value> = of_type(&after, "m.status").iter().map(|e| e["content"]["status"].clone()).collect();
    let want: Vec<Value> = (0..KEEP_LAST as usize).map(|i| json!(format!("s-{}", CHURN - 1 - i))).collect();
    assert_eq!(statuses, want);
    assert_eq!(after.len() as i64, before.len() as i64 - superseded);
    assert_eq!(current_status(&app, &alice, &room).await["status"], json!(format!("s-{}", CHURN - 1)));

    // A later change prunes exactly one more version of each type.
    churn(&app, &alice, &room, 1, "t").await;
    assert!(prune(&app).await.pruned >= 2);
    assert_eq!(stored(&app, &room, "m.status").await, KEEP_LAST as i64);
    assert_eq!(stored(&app, &room, "m.presence").await, KEEP_LAST as i64);
}

#[tokio::test]
async fn context_redaction_and_relations_on_pruned_events_are_not_found() {
    let app = spawn_manual().await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    churn(&app, &alice, &room, 2, "a").await;
    let first = all_messages(&app, &alice, &room, 50).await;
    let oldest_status = of_type(&first, "m.status").last().unwrap()["event_id"].as_str().unwrap().to_owned();
    // A reaction and a redaction pointing at the version about to be pruned.
    let (code, v) = app
        .put(
            &format!("{V3}/rooms/{}/send/m.reaction/r1", enc(&room)),
            Some(&alice.token),
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": oldest_status, "key": "👍"}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = app
        .put(&format!("{V3}/rooms/{}/redact/{}/x1", enc(&room), enc(&oldest_status)), Some(&alice.token), json!({}))
        .await;
    assert_eq!(code, 200, "{v}");
    churn(&app, &alice, &room, CHURN, "b").await;
    assert!(prune(&app).await.pruned > 0);

    let (code, v) =
        app.get(&format!("{V3}/rooms/{}/context/{}", enc(&room), enc(&oldest_status)), Some(&alice.token)).await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) =
        app.get(&format!("{V3}/rooms/{}/event/{}", enc(&room), enc(&oldest_status)), Some(&alice.token)).await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) = app
        .put(&format!("{V3}/rooms/{}/redact/{}/x2", enc(&room), enc(&oldest_status)), Some(&alice.token), json!({}))
        .await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    let (code, v) = app
        .get(&format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(&oldest_status)), Some(&alice.token))
        .await;
    assert_err(code, &v, 404, "M_NOT_FOUND");
    // The reaction and the redaction themselves are ordinary events and stay; /context around
    // the redaction answers over the gap.
    let after = all_messages(&app, &alice, &room, 5).await;
    let redaction = of_type(&after, "m.room.redaction");
    assert_eq!(redaction.len(), 1);
    assert_eq!(of_type(&after, "m.reaction").len(), 1);
    let rid = redaction[0]["event_id"].as_str().unwrap();
    let (code, v) =
        app.get(&format!("{V3}/rooms/{}/context/{}?limit=20", enc(&room), enc(rid)), Some(&alice.token)).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["events_after"].as_array().unwrap().iter().all(|e| e["event_id"] != json!(oldest_status)));
    // The experiment change log keeps its own records: pruning the room does not touch them.
    let (code, log) = app.get("/_seed/admin/v1/changes?format=jsonl", Some(&alice.token)).await;
    assert_eq!(code, 200, "{log}");
    let lines = log.as_str().map(|s| s.lines().count()).unwrap_or(1);
    assert!(lines >= CHURN, "change log has {lines} records: {log}");
}

/// The sync timeline of `room` under `rooms.peek` (peekers) or `rooms.join` (joined).
fn timeline<'a>(sync: &'a Value, section: &str, room: &str) -> &'a Value {
    &sync["rooms"][section][room]["timeline"]
}

#[tokio::test]
async fn incremental_sync_and_catching_up_peeks_see_the_current_state() {
    let app = spawn_manual().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = profile_room(&app, &alice).await;
    let shared = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(app.join(&bob, &shared).await.0, 200);
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&bob.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let filter = enc(&json!({"room": {"timeline": {"limit": 50}}}).to_string());
    let first = app.sync(&bob, &format!("filter={filter}")).await;
    assert!(first["rooms"]["peek"][&room].is_object(), "{first}");
    let since = first["next_batch"].as_str().unwrap().to_owned();
    // Alice's own incremental sync names her profile room in the filter (it is hidden otherwise).
    let own = enc(&json!({"room": {"rooms": [room], "timeline": {"limit": 50}}}).to_string());
    let alice_since = app.sync(&alice, &format!("filter={own}")).await["next_batch"].as_str().unwrap().to_owned();

    churn(&app, &alice, &room, CHURN, "p").await;
    prune(&app).await;
    let newest = json!(format!("p-{}", CHURN - 1));

    // The peek catching up over the pruned range: the kept versions, the newest last, and not
    // limited (nothing that can still be fetched was left out).
    let s = app.sync(&bob, &format!("since={since}&timeout=0&filter={filter}")).await;
    let t = timeline(&s, "peek", &room);
    assert_eq!(t["limited"], false, "{s}");
    let statuses = of_type(t["events"].as_array().unwrap(), "m.status");
    assert_eq!(statuses.len(), KEEP_LAST as usize, "{t}");
    assert_eq!(statuses.last().unwrap()["content"]["status"], newest);
    let owner = app.sync(&alice, &format!("since={alice_since}&timeout=0&filter={own}")).await;
    let t = timeline(&owner, "join", &room);
    assert_eq!(t["limited"], false, "{owner}");
    assert_eq!(of_type(t["events"].as_array().unwrap(), "m.status").last().unwrap()["content"]["status"], newest);

    // With a small timeline the answer is limited and the state that changed in the gap is the
    // kept versions; the newest m.presence and m.status are in the timeline or that state.
    let small = enc(&json!({"room": {"timeline": {"limit": 1}}}).to_string());
    let s = app.sync(&bob, &format!("since={since}&timeout=0&filter={small}")).await;
    let block = &s["rooms"]["peek"][&room];
    assert_eq!(block["timeline"]["limited"], true, "{s}");
    let mut seen: Vec<&Value> = block["state"]["events"].as_array().unwrap().iter().collect();
    seen.extend(block["timeline"]["events"].as_array().unwrap());
    assert_eq!(of_type(seen.clone(), "m.status").last().unwrap()["content"]["status"], newest, "{block}");
    assert!(!of_type(seen, "m.presence").is_empty(), "{block}");

    // A new peeker gets the current state in full.
    let carol = app.register("carol").await;
    assert_eq!(app.join(&carol, &shared).await.0, 200);
    let (code, v) = app.post(&format!("{PEEK}/peek/{}", enc(&room)), Some(&carol.token), json!({})).await;
    assert_eq!(code, 200, "{v}");
    let s = app.sync(&carol, &format!("filter={filter}")).await;
    let block = &s["rooms"]["peek"][&room];
    let mut all: Vec<&Value> = block["state"]["events"].as_array().unwrap().iter().collect();
    all.extend(block["timeline"]["events"].as_array().unwrap());
    assert_eq!(of_type(all, "m.status").last().unwrap()["content"]["status"], newest, "{block}");
}

#[tokio::test]
async fn the_background_task_keeps_the_history_flat() {
    let app = TestApp::spawn_with(|c| {
        c.presence_history_prune_interval_ms = 50;
        c.presence_history_keep_last = 1;
        c.presence_history_keep_ms = 0;
    })
    .await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    churn(&app, &alice, &room, CHURN, "bg").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&app, &room, "m.status").await > 1 || stored(&app, &room, "m.presence").await > 1 {
        assert!(Instant::now() < deadline, "the background task did not prune");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store(&app).presence_history_len().await.unwrap(), 0);
    assert_eq!(current_status(&app, &alice, &room).await["status"], json!(format!("bg-{}", CHURN - 1)));
}

#[tokio::test]
async fn young_versions_are_kept_until_they_age() {
    let app = TestApp::spawn_with(|c| {
        c.presence_history_prune_interval_ms = 0;
        c.presence_history_keep_last = 1;
        c.presence_history_keep_ms = 3_600_000;
    })
    .await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    churn(&app, &alice, &room, 4, "y").await;
    let state = &app.running.as_ref().unwrap().state;
    let retention = PresenceHistoryRetention::new(state.store.clone(), RetentionPolicy::from_config(&state.config));
    assert_eq!(retention.run_once(now_ms()).await.unwrap().pruned, 0);
    assert_eq!(stored(&app, &room, "m.status").await, 5);
    // An hour later every superseded version is due.
    let presence_versions = stored(&app, &room, "m.presence").await;
    assert_eq!(retention.run_once(now_ms() + 3_600_001).await.unwrap().pruned as i64, 4 + presence_versions - 1);
    assert_eq!(stored(&app, &room, "m.status").await, 1);
    assert_eq!(stored(&app, &room, "m.presence").await, 1);
}

/// `presence_history_vacuum_after` (migration 0130's companion): on PostgreSQL the pruner
/// vacuums the pruned tables once enough events were deleted since the last vacuum, so their
/// dead tuples are reclaimed even with autovacuum off; on SQLite (free pages reused) it never does.
#[tokio::test]
async fn pruning_vacuums_postgres_once_enough_events_were_deleted() {
    let app = TestApp::spawn_with(|c| {
        c.presence_history_prune_interval_ms = 0;
        c.presence_history_keep_last = 1;
        c.presence_history_keep_ms = 0;
        c.presence_history_vacuum_after = 8;
    })
    .await;
    let alice = app.register("alice").await;
    let room = profile_room(&app, &alice).await;
    let state = &app.running.as_ref().unwrap().state;
    let postgres = state.store.backend == seed::store::Backend::Postgres;
    let retention = PresenceHistoryRetention::new(state.store.clone(), RetentionPolicy::from_config(&state.config));
    // Two changes: fewer pruned events than the threshold, no vacuum yet.
    churn(&app, &alice, &room, 2, "a").await;
    let first = retention.run_once(now_ms() + 1).await.unwrap();
    assert!(first.pruned > 0 && first.pruned < 8, "{first:?}");
    assert!(!first.vacuumed, "{first:?}");
    // Enough further changes to pass it: a vacuum on PostgreSQL, none on SQLite.
    churn(&app, &alice, &room, 8, "b").await;
    let second = retention.run_once(now_ms() + 1).await.unwrap();
    assert!(first.pruned + second.pruned >= 8, "{second:?}");
    assert_eq!(second.vacuumed, postgres, "{second:?}");
    assert_eq!(stored(&app, &room, "m.status").await, 1);
    assert_eq!(current_status(&app, &alice, &room).await["status"], json!("b-7"));
    if postgres {
        // The vacuum is visible in the statistics (reported asynchronously: poll).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(vacuum_count), 0) FROM pg_stat_user_tables WHERE relname = 'presence_history'",
            )
            .fetch_one(&store(&app).pool)
            .await
            .unwrap();
            if n > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no VACUUM of presence_history recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Below the threshold again: no vacuum.
    churn(&app, &alice, &room, 1, "c").await;
    assert!(!retention.run_once(now_ms() + 1).await.unwrap().vacuumed);
}
