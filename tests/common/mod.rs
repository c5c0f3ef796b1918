//! Test harness: each test spawns the real server on port 0 with a fresh database and drives
//! it over HTTP. Set `SEED_TEST_DATABASE_URL=postgres://…` to run against PostgreSQL (each
//! test gets its own database); the default is a fresh SQLite file per test.
#![allow(dead_code)]
use std::time::Duration;

use reqwest::{Method, StatusCode};
use seed::app::{spawn, Running};
use seed::config::Config;
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub running: Option<Running>,
    _dir: Option<tempdir::TempDir>,
    _pg: Option<pgdrop::PgDatabase>,
}

mod pgdrop {
    /// A per-test PostgreSQL database, dropped (connections forced closed) when the test ends,
    /// so repeated runs do not fill the disk.
    pub struct PgDatabase {
        pub admin_url: String,
        pub name: String,
    }
    impl Drop for PgDatabase {
        fn drop(&mut self) {
            let (url, name) = (self.admin_url.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
                })
            });
            let _ = dropped.join();
        }
    }
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("seed-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).expect("temp dir");
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Fast settings for tests: cheap password hashing, no rate limit, sub-second presence timers.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        auth_rate_per_second: 0,
        // Per-user limits are tested on their own (tests/hardening.rs); other tests run flat out.
        login_rate_per_user_per_minute: 0,
        presence_rate_per_second: 0,
        presence_device_timeout_ms: 600,
        presence_idle_after_ms: 800,
        presence_currently_active_ms: 400,
        presence_publish_window_ms: 30,
        presence_flush_interval_ms: 50,
        log: "warn".into(),
        ..Config::default()
    }
}

async fn database_url(dir: &tempdir::TempDir) -> (String, Option<pgdrop::PgDatabase>) {
    match std::env::var("SEED_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            use sqlx::Connection;
            let name = format!("seed_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
            let mut u = url::Url::parse(&url).expect("database url");
            u.set_path(&format!("/{name}"));
            (u.to_string(), Some(pgdrop::PgDatabase { admin_url: url, name }))
        }
        _ => (format!("sqlite://{}/seed.db?mode=rwc", dir.0.display()), None),
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug,sqlx=warn").try_init();
        }
        let dir = tempdir::TempDir::new();
        let mut config = test_config();
        let (database_url, pg) = database_url(&dir).await;
        config.database_url = database_url;
        config.media_path = dir.0.join("media");
        tweak(&mut config);
        let running = spawn(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Self { base, http, running: Some(running), _dir: Some(dir), _pg: pg }
    }

    /// Restart the server on the same database (new port).
    pub async fn restart(&mut self) {
        let running = self.running.take().expect("running");
        let config = running.state.config.clone();
        running.stop().await;
        let running = spawn(config).await.expect("server restarts");
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<RawBody>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match body {
            Some(RawBody::Json(v)) => req = req.json(&v),
            Some(RawBody::Text(t)) => req = req.header("content-type", "application/json").body(t),
            None => {}
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.raw(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.raw(Method::POST, path, token, Some(RawBody::Json(body))).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.raw(Method::PUT, path, token, Some(RawBody::Json(body))).await
    }

    /// Register through the UIA dummy flow and return the logged-in user.
    pub async fn register(&self, name: &str) -> User {
        self.register_device(name, None).await
    }

    pub async fn register_device(&self, name: &str, device_id: Option<&str>) -> User {
        let (status, first) =
            self.post("/_matrix/client/v3/register", None, json!({"username": name, "password": "pw-123456"})).await;
        assert_eq!(status, 401, "register without auth must ask for UIA: {first}");
        let session = first["session"].as_str().expect("UIA session").to_owned();
        let mut body =
            json!({"username": name, "password": "pw-123456", "auth": {"type": "m.login.dummy", "session": session}});
        if let Some(d) = device_id {
            body["device_id"] = json!(d);
        }
        let (status, v) = self.post("/_matrix/client/v3/register", None, body).await;
        assert_eq!(status, 200, "register: {v}");
        User {
            user_id: v["user_id"].as_str().unwrap().to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Log in an existing user as another device.
    pub async fn login(&self, name: &str, device_id: &str) -> User {
        let (status, v) = self
            .post(
                "/_matrix/client/v3/login",
                None,
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": "pw-123456", "device_id": device_id}),
            )
            .await;
        assert_eq!(status, 200, "login: {v}");
        User {
            user_id: v["user_id"].as_str().unwrap().to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            device_id: v["device_id"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_room(&self, user: &User, body: Value) -> String {
        let (status, v) = self.post("/_matrix/client/v3/createRoom", Some(&user.token), body).await;
        assert_eq!(status, 200, "createRoom: {v}");
        v["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn join(&self, user: &User, room: &str) -> (StatusCode, Value) {
        self.post(&format!("/_matrix/client/v3/join/{}", enc(room)), Some(&user.token), json!({})).await
    }

    pub async fn send_text(&self, user: &User, room: &str, body: &str) -> String {
        let txn = uuid::Uuid::new_v4().simple().to_string();
        let (status, v) = self
            .put(
                &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
                Some(&user.token),
                json!({"msgtype": "m.text", "body": body}),
            )
            .await;
        assert_eq!(status, 200, "send: {v}");
        v["event_id"].as_str().unwrap().to_owned()
    }

    /// `GET /sync` with the given query string (without `?`).
    pub async fn sync(&self, user: &User, query: &str) -> Value {
        let (status, v) = self.get(&format!("/_matrix/client/v3/sync?{query}"), Some(&user.token)).await;
        assert_eq!(status, 200, "sync: {v}");
        v
    }
}

pub enum RawBody {
    Json(Value),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub token: String,
    pub device_id: String,
}

/// Percent-encode a path segment.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

pub fn assert_err(status: StatusCode, body: &Value, want_status: u16, errcode: &str) {
    assert_eq!(status.as_u16(), want_status, "status for {body}");
    assert_eq!(body["errcode"], errcode, "errcode in {body}");
    assert!(body["error"].is_string(), "error message in {body}");
}

impl TestApp {
    /// Drive a server that runs elsewhere (e.g. the real binary as a child process, see
    /// `tests/durability.rs`) with the same helpers; point `base` at it after a restart.
    pub fn remote(base: String) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Self { base, http, running: None, _dir: None, _pg: None }
    }
}

/// A server whose presence timers are long enough that only the scripted inputs (and the
/// timers a test shortens in `tweak`) change anyone's presence while a test runs.
pub async fn quiet_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.presence_device_timeout_ms = 60_000;
        c.presence_idle_after_ms = 120_000;
        c.presence_currently_active_ms = 60_000;
        tweak(c);
    })
    .await
}

/// The value of an unlabelled counter or gauge in the server's `/metrics` scrape.
pub async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// `PUT /presence/{user}/status` with `body` as that user, asserting a `200`.
pub async fn set_status(app: &TestApp, user: &User, body: Value) {
    let (code, v) =
        app.put(&format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id)), Some(&user.token), body).await;
    assert_eq!(code, 200, "{v}");
}

/// `GET /presence/{of}/status` as `viewer`, asserting a `200`.
pub async fn presence_status(app: &TestApp, viewer: &User, of: &User) -> Value {
    let (code, v) =
        app.get(&format!("/_matrix/client/v3/presence/{}/status", enc(&of.user_id)), Some(&viewer.token)).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Poll `GET /presence/{of}/status` until `pred` holds (at most 5 s).
pub async fn wait_presence_status(
    app: &TestApp,
    viewer: &User,
    of: &User,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = std::time::Instant::now();
    loop {
        let v = presence_status(app, viewer, of).await;
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}; last: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
