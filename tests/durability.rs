//! Durability and restarts, against the real binary run as a child process (built by cargo):
//! what a `200` promises must survive `kill -9`, the profile room must agree with the presence
//! engine after a crash, and SIGTERM must answer long-polls at once and exit within seconds.
//! `SEED_TEST_DATABASE_URL=postgres://…` runs them on PostgreSQL, as the rest of the suite.
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{enc, TestApp, User};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A database for one test: a fresh SQLite file, or a fresh PostgreSQL database.
struct Database {
    url: String,
    dir: std::path::PathBuf,
}

impl Database {
    async fn fresh() -> Self {
        let dir = std::env::temp_dir().join(format!("seed-durability-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = match std::env::var("SEED_TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => {
                use sqlx::Connection;
                let name = format!("seed_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                let mut u = url::Url::parse(&url).expect("database url");
                u.set_path(&format!("/{name}"));
                u.to_string()
            }
            _ => format!("sqlite://{}/seed.db?mode=rwc", dir.display()),
        };
        Self { url, dir }
    }
}

impl Database {
    /// Drop a PostgreSQL test database once its server is gone (SQLite files go with `Drop`).
    async fn remove(&self) {
        if let (Ok(admin), Ok(url)) = (std::env::var("SEED_TEST_DATABASE_URL"), url::Url::parse(&self.url)) {
            if url.scheme().starts_with("postgres") {
                use sqlx::Connection;
                let name = url.path().trim_start_matches('/').to_owned();
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn).await;
                }
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server binary as a child process, on a random port.
struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    /// `presence_flush_interval_ms` is a minute: nothing acknowledged may depend on the
    /// write-behind flush having run before a crash.
    async fn start(db: &Database) -> Self {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_seed-homeserver"));
        cmd.args(["--bind", "127.0.0.1:0", "--database-url", &db.url])
            .args(["--argon2-memory-kib", "8", "--argon2-iterations", "1", "--auth-rate-per-second", "0"])
            .args(["--presence-publish-window-ms", "20", "--presence-flush-interval-ms", "60000"])
            // The writers put statuses as fast as the server acknowledges them: on a fast
            // machine that passes the per-user presence limit (200 at once, then 20/s) within a
            // round, and a `429` is not what this test is about.
            .args(["--presence-rate-per-second", "0"])
            .args(["--log", "info,sqlx=warn"])
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn seed-homeserver");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = strip_ansi(&line);
                if std::env::var("TEST_LOG").is_ok() {
                    eprintln!("[server] {line}");
                }
                if let Some(addr) = line.contains("listening").then(|| listen_addr(&line)).flatten() {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the server listens within 30 s")
            .expect("the server started (see its stderr above)");
        Self { child, base: format!("http://{addr}") }
    }

    /// `kill -9`: no shutdown code runs.
    async fn crash(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn listen_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("addr=")? + 5..];
    let addr: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ':').collect();
    (!addr.is_empty()).then_some(addr)
}

/// Non-panicking request for writers racing a crash: `None` if no answer came.
async fn try_put(http: &reqwest::Client, url: String, token: &str, body: Value) -> Option<(StatusCode, Value)> {
    let resp = http.put(url).bearer_auth(token).json(&body).send().await.ok()?;
    let status = resp.status();
    let body = resp.json::<Value>().await.ok()?;
    Some((status, body))
}

fn status_presence(i: u64) -> &'static str {
    ["online", "busy", "unavailable"][(i % 3) as usize]
}

/// What the writers of one user got acknowledged (`*_sent`: the last one attempted).
#[derive(Default, Clone)]
struct Acked {
    status: u64,
    status_sent: u64,
    state: u64,
    state_sent: u64,
    messages: Vec<String>,
}

async fn profile_room(app: &TestApp, user: &User) -> String {
    let (status, v) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&user.user_id)), Some(&user.token)).await;
    assert_eq!(status, 200, "profile: {v}");
    v["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room id").to_owned()
}

/// The profile room's `m.presence`/`m.status` say what the engine says (right after a restart:
/// the server reconciles before it serves).
async fn assert_profile_room_agrees(app: &TestApp, user: &User, room: &str) -> Value {
    let (status, engine) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id)), Some(&user.token)).await;
    assert_eq!(status, 200, "presence: {engine}");
    let now = seed::rooms::now_ms();
    let (status, m_status) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(room)), Some(&user.token)).await;
    assert_eq!(status, 200, "m.status: {m_status}");
    let (status, m_presence) =
        app.get(&format!("/_matrix/client/v3/rooms/{}/state/m.presence/", enc(room)), Some(&user.token)).await;
    assert_eq!(status, 200, "m.presence: {m_presence}");
    assert_eq!(m_status.get("status"), engine.get("status_msg"), "m.status {m_status} vs engine {engine}");
    // The legacy route spells busy as MSC3026 does; the profile room's own m.presence says `busy`.
    assert_eq!(
        m_presence["presence"].as_str(),
        engine["presence"].as_str().map(unwire),
        "m.presence {m_presence} vs engine {engine}"
    );
    if let Some(ago) = engine["last_active_ago"].as_i64() {
        let ts = m_presence["last_active_ts"].as_i64().expect("last_active_ts in m.presence");
        assert!((now - ago - ts).abs() < 2_000, "last active: m.presence {m_presence} vs engine {engine}");
    }
    engine
}

/// The legacy wire spelling of busy (`legacy_busy_as` default) read back as the model's `busy`.
fn unwire(p: &str) -> &str {
    if p == "org.matrix.msc3026.busy" {
        "busy"
    } else {
        p
    }
}

/// The index `i` of the status text `u{k}-{i}` (0: no text).
fn status_index(engine: &Value) -> u64 {
    engine["status_msg"].as_str().map(|s| s.rsplit('-').next().unwrap().parse().unwrap()).unwrap_or(0)
}

/// Regression (issue 10, defect 5): an acknowledged status, set by `PUT …/status` or by the
/// owner's own `m.status`, survives `kill -9` right after the `200`, and the profile room
/// agrees with the engine after the restart.
#[tokio::test]
async fn acknowledged_status_survives_kill_9() {
    let db = Database::fresh().await;
    let server = Server::start(&db).await;
    let mut app = TestApp::remote(server.base.clone());
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = profile_room(&app, &bob).await;

    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            Some(&alice.token),
            json!({"presence": "busy", "status_msg": "before the crash"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.status/", enc(&room)),
            Some(&bob.token),
            json!({"status": "set in the room"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    server.crash().await;

    let server = Server::start(&db).await;
    app.base = server.base.clone();
    let alice_room = profile_room(&app, &alice).await;
    let engine = assert_profile_room_agrees(&app, &alice, &alice_room).await;
    assert_eq!(engine["status_msg"], "before the crash");
    let engine = assert_profile_room_agrees(&app, &bob, &room).await;
    assert_eq!(engine["status_msg"], "set in the room");
    // The manual status came back too: a live device makes alice busy.
    app.sync(&alice, "timeout=0").await;
    let (_, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)), Some(&alice.token)).await;
    assert_eq!(v["presence"], "org.matrix.msc3026.busy", "{v}");
    server.crash().await;
    db.remove().await;
}

/// Issue 10's crash test: writers of statuses, messages and state events race a `kill -9` at
/// a random moment, a few rounds; after each restart every acknowledged write is there and
/// every profile room agrees with the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_at_random_points() {
    const USERS: usize = 4;
    const ROUNDS: usize = 4;
    let db = Database::fresh().await;
    let mut server = Server::start(&db).await;
    let mut app = TestApp::remote(server.base.clone());
    let mut users = Vec::new();
    for k in 0..USERS {
        users.push(app.register(&format!("writer{k}")).await);
    }
    let room = app
        .create_room(&users[0], json!({"preset": "public_chat", "power_level_content_override": {"state_default": 0}}))
        .await;
    for u in &users[1..] {
        let (status, v) = app.join(u, &room).await;
        assert_eq!(status, 200, "{v}");
    }
    let mut profile_rooms = Vec::new();
    for u in &users {
        profile_rooms.push(profile_room(&app, u).await);
    }
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(vec![Acked::default(); USERS]));
    let mut total_status_acks = 0;

    for round in 0..ROUNDS {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for (k, user) in users.iter().enumerate() {
            // Status writer: `u{k}-{i}`, cycling the manual status.
            {
                let (http, base, user, acked) = (http.clone(), server.base.clone(), user.clone(), acked.clone());
                writers.spawn(async move {
                    loop {
                        let i = {
                            let mut a = acked.lock();
                            a[k].status_sent = a[k].status.max(a[k].status_sent) + 1;
                            a[k].status_sent
                        };
                        let url = format!("{base}/_matrix/client/v3/presence/{}/status", enc(&user.user_id));
                        let body = json!({"presence": status_presence(i), "status_msg": format!("u{k}-{i}")});
                        match try_put(&http, url, &user.token, body).await {
                            Some((s, _)) if s == 200 => acked.lock()[k].status = i,
                            Some((s, v)) => panic!("status PUT answered {s}: {v}"),
                            None => return,
                        }
                    }
                });
            }
            // Message writer.
            {
                let (http, base, user, acked, room) =
                    (http.clone(), server.base.clone(), user.clone(), acked.clone(), room.clone());
                writers.spawn(async move {
                    loop {
                        let txn = uuid::Uuid::new_v4().simple().to_string();
                        let url = format!("{base}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(&room));
                        match try_put(&http, url, &user.token, json!({"msgtype": "m.text", "body": txn})).await {
                            Some((s, v)) if s == 200 => {
                                acked.lock()[k].messages.push(v["event_id"].as_str().unwrap().to_owned())
                            }
                            Some((s, v)) => panic!("send answered {s}: {v}"),
                            None => return,
                        }
                    }
                });
            }
            // State writer: `org.seed.crash` keyed by the user, `{"n": i}`.
            {
                let (http, base, user, acked, room) =
                    (http.clone(), server.base.clone(), user.clone(), acked.clone(), room.clone());
                writers.spawn(async move {
                    loop {
                        let i = {
                            let mut a = acked.lock();
                            a[k].state_sent = a[k].state.max(a[k].state_sent) + 1;
                            a[k].state_sent
                        };
                        let url = format!(
                            "{base}/_matrix/client/v3/rooms/{}/state/org.seed.crash/{}",
                            enc(&room),
                            enc(&user.user_id)
                        );
                        match try_put(&http, url, &user.token, json!({"n": i})).await {
                            Some((s, _)) if s == 200 => acked.lock()[k].state = i,
                            Some((s, v)) => panic!("state PUT answered {s}: {v}"),
                            None => return,
                        }
                    }
                });
            }
        }
        let delay = rand::thread_rng().gen_range(100..600);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.crash().await;
        while let Some(r) = writers.join_next().await {
            r.expect("writer");
        }

        server = Server::start(&db).await;
        app.base = server.base.clone();
        let snapshot = acked.lock().clone();
        eprintln!(
            "round {round}: kill -9 after {delay} ms; acknowledged so far: statuses up to {:?}, {} messages, state up to {:?}",
            snapshot.iter().map(|a| a.status).collect::<Vec<_>>(),
            snapshot.iter().map(|a| a.messages.len()).sum::<usize>(),
            snapshot.iter().map(|a| a.state).collect::<Vec<_>>(),
        );
        for (k, user) in users.iter().enumerate() {
            let a = &snapshot[k];
            total_status_acks += a.status;
            // The profile room agrees with the engine before anything else happens.
            let engine = assert_profile_room_agrees(&app, user, &profile_rooms[k]).await;
            // The acknowledged status, or a later one that was in flight when a server died
            // (an unanswered write may or may not have happened).
            let i = status_index(&engine);
            assert!(
                (a.status..=a.status_sent.max(a.status)).contains(&i),
                "round {round}, {}: status u{k}-{i} after the crash, acknowledged {} (sent {})",
                user.user_id,
                a.status,
                a.status_sent
            );
            if i > 0 {
                app.sync(user, "timeout=0").await;
                let (_, v) = app
                    .get(&format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id)), Some(&user.token))
                    .await;
                assert_eq!(
                    v["presence"].as_str().map(unwire),
                    Some(status_presence(i)),
                    "round {round}: the manual status of u{k}-{i}: {v}"
                );
            }
            // State: the acknowledged value, or a later one that was in flight.
            let (status, v) = app
                .get(
                    &format!("/_matrix/client/v3/rooms/{}/state/org.seed.crash/{}", enc(&room), enc(&user.user_id)),
                    Some(&user.token),
                )
                .await;
            if a.state > 0 {
                assert_eq!(status, 200, "round {round}: state of {}: {v}", user.user_id);
            }
            if status == 200 {
                let n = v["n"].as_u64().unwrap();
                assert!(
                    (a.state..=a.state_sent.max(a.state)).contains(&n),
                    "round {round}: state n={n}, acknowledged {} (sent {})",
                    a.state,
                    a.state_sent
                );
            }
        }
        // Every acknowledged message is in the room.
        let mut stored = std::collections::HashSet::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", enc(&room));
            if let Some(f) = &from {
                path.push_str(&format!("&from={f}"));
            }
            let (status, v) = app.get(&path, Some(&users[0].token)).await;
            assert_eq!(status, 200, "{v}");
            for e in v["chunk"].as_array().unwrap() {
                stored.insert(e["event_id"].as_str().unwrap().to_owned());
            }
            match v["end"].as_str() {
                Some(end) if !v["chunk"].as_array().unwrap().is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        let lost: HashMap<usize, usize> = snapshot
            .iter()
            .enumerate()
            .map(|(k, a)| (k, a.messages.iter().filter(|id| !stored.contains(*id)).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert!(lost.is_empty(), "round {round}: acknowledged messages lost per writer: {lost:?}");
    }
    assert!(total_status_acks > 0, "the writers got nothing acknowledged; the test tested nothing");
    server.crash().await;
    db.remove().await;
}

/// Regression (issue 10, defect 10): SIGTERM answers a long-poll at once (with what it has)
/// and the process exits within a few seconds, instead of waiting for every long-poll.
#[tokio::test]
async fn sigterm_answers_long_polls_and_exits_promptly() {
    let db = Database::fresh().await;
    let mut server = Server::start(&db).await;
    let app = TestApp::remote(server.base.clone());
    // One `/sync` long-poll and one legacy `/events` long-poll (over the peeker's own profile
    // room), each asking to wait two minutes.
    let syncer = app.register("syncer").await;
    let since = app.sync(&syncer, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let peeker = app.register("peeker").await;
    let room = profile_room(&app, &peeker).await;
    let long_poll = |path: String, token: String| {
        let (http, base) = (app.http.clone(), app.base.clone());
        tokio::spawn(async move {
            let resp = http.get(format!("{base}{path}")).bearer_auth(token).send().await.expect("answered");
            let status = resp.status();
            (status, resp.json::<Value>().await.expect("JSON"), Instant::now())
        })
    };
    let sync = long_poll(format!("/_matrix/client/v3/sync?since={since}&timeout=120000"), syncer.token.clone());
    let events = long_poll(format!("/_matrix/client/v3/events?room_id={}&timeout=120000", enc(&room)), peeker.token);
    // Wait until both are parked on their wake-ups.
    let parked = Instant::now();
    loop {
        let (_, metrics) = app.get("/metrics", None).await;
        let waiting = metrics
            .as_str()
            .and_then(|m| m.lines().find_map(|l| l.strip_prefix("seed_sync_waiting_users ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if waiting >= 2 {
            break;
        }
        assert!(parked.elapsed() < Duration::from_secs(10), "the long-polls never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let term = Instant::now();
    let ok = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(ok.success());
    for (poll, field) in [(sync, "next_batch"), (events, "end")] {
        let (status, body, answered) = tokio::time::timeout(Duration::from_secs(5), poll)
            .await
            .expect("long-poll answered after SIGTERM")
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body[field].is_string(), "{body}");
        assert!(answered - term < Duration::from_secs(2), "answered {:?} after SIGTERM", answered - term);
    }
    let exit = tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .expect("the server exits within 5 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    db.remove().await;
    eprintln!("exited {:?} after SIGTERM", term.elapsed());
}
