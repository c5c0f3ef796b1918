//! Presence across servers under load (issue #15 "Prove it"): 1,000 users on A change presence
//! at 10 changes/s in total, watched by users on B (10 rooms, each with 100 users of A and one
//! watcher of B). Reports what A sends (m.presence EDUs, transactions, push entries and bytes,
//! per second and per change) and the delivery delay from the `PUT /presence/…/status` on A to
//! the watcher's `/sync` on B (B answers presence at once: `presence_delivery_window_ms = 0`).
//!
//! Run: `cargo bench --bench federation_presence` (SQLite in a temp dir, removed afterwards).
//! Knobs (env): BENCH_USERS (1000), BENCH_RATE (10 changes/s), BENCH_SECS (60),
//! BENCH_FLUSH_MS (250, A's `federation.presence_flush_ms`).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn config(dir: &std::path::Path, flush_ms: u64) -> seed::config::Config {
    let mut c = seed::config::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/seed.db?mode=rwc", dir.display()),
        media_path: dir.join("media"),
        log: "warn".into(),
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        auth_rate_per_second: 0,
        login_rate_per_user_per_minute: 0,
        presence_rate_per_second: 0,
        presence_device_timeout_ms: 3_600_000,
        presence_idle_after_ms: 3_600_000,
        // Otherwise `currently_active` of every user flips a minute after their last change, a
        // real change sent like the others, which would double the run's traffic.
        presence_currently_active_ms: 3_600_000,
        presence_delivery_window_ms: 0,
        ..Default::default()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    c.server_name = format!("localhost:{port}");
    c.federation.enabled = true;
    c.federation.bind = format!("127.0.0.1:{port}").parse().unwrap();
    c.federation.data_dir = dir.join("federation");
    c.federation.accept_invalid_certs = true;
    c.federation.presence_flush_ms = flush_ms;
    c
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn register(&self, name: &str) -> (String, String) {
        let body = json!({"username": name, "password": "pw-123456"});
        let v = self.call(reqwest::Method::POST, "/_matrix/client/v3/register", None, Some(body)).await;
        let session = v["session"].as_str().unwrap_or_default().to_owned();
        let body = json!({"username": name, "password": "pw-123456",
            "auth": {"type": "m.login.dummy", "session": session}});
        let v = self.call(reqwest::Method::POST, "/_matrix/client/v3/register", None, Some(body)).await;
        (v["user_id"].as_str().expect("registered").to_owned(), v["access_token"].as_str().unwrap().to_owned())
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn fed_counts(s: &seed::app::AppState) -> [u64; 4] {
    let m = &s.metrics.federation;
    [
        m.presence_edus.get(),
        m.transactions.with_label_values(&["sent"]).get(),
        m.presence_updates_sent.get(),
        m.presence_bytes_sent.get(),
    ]
}

#[tokio::main]
async fn main() {
    let users: usize = env("BENCH_USERS", 1000);
    let rate: f64 = env("BENCH_RATE", 10.0);
    let secs: u64 = env("BENCH_SECS", 60);
    let flush_ms: u64 = env("BENCH_FLUSH_MS", 250);
    let rooms = users.div_ceil(100);
    let root = std::env::temp_dir().join(format!("seed-bench-fedpres-{}", std::process::id()));
    let (da, db) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let a = seed::app::spawn(config(&da, flush_ms)).await.expect("A starts");
    let b = seed::app::spawn(config(&db, flush_ms)).await.expect("B starts");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let ca = Arc::new(Client { http: http.clone(), base: format!("http://{}", a.addr) });
    let cb = Arc::new(Client { http, base: format!("http://{}", b.addr) });
    let a_name = a.state.config.server_name.clone();
    let post = reqwest::Method::POST;

    // Users on A (16 registrations at a time), rooms, joins.
    let t0 = Instant::now();
    let mut accounts: Vec<(String, String)> = Vec::new();
    for chunk in (0..users).collect::<Vec<_>>().chunks(16) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (ca, name) = (ca.clone(), format!("u{i}"));
                tokio::spawn(async move { ca.register(&name).await })
            })
            .collect();
        for h in handles {
            accounts.push(h.await.unwrap());
        }
    }
    let mut room_ids = Vec::new();
    for r in 0..rooms {
        let owner = &accounts[r * 100];
        let v = ca
            .call(post.clone(), "/_matrix/client/v3/createRoom", Some(&owner.1), Some(json!({"preset": "public_chat"})))
            .await;
        room_ids.push(v["room_id"].as_str().expect("room").to_owned());
    }
    for (i, (_, token)) in accounts.iter().enumerate() {
        if i % 100 != 0 {
            let room = &room_ids[i / 100];
            ca.call(post.clone(), &format!("/_matrix/client/v3/join/{}", enc(room)), Some(token), Some(json!({})))
                .await;
        }
    }
    let mut watchers = Vec::new();
    for (r, room) in room_ids.iter().enumerate() {
        let (uid, token) = cb.register(&format!("w{r}")).await;
        let path = format!("/_matrix/client/v3/join/{}?server_name={}", enc(room), enc(&a_name));
        let v = cb.call(post.clone(), &path, Some(&token), Some(json!({}))).await;
        assert!(v["room_id"].is_string(), "watcher join: {v}");
        watchers.push((uid, token));
    }
    println!(
        "set-up: {users} users on A in {rooms} rooms, one watcher of B in each: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Sent changes (status text "c<seq>") and when; watchers record when each arrives.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (_, token) in &watchers {
        let (cb, token, sent, delays, stop) = (cb.clone(), token.clone(), sent.clone(), delays.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut since: Option<String> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let q = match &since {
                    Some(s) => format!("since={s}&timeout=2000&set_presence=offline"),
                    None => "timeout=0&set_presence=offline".into(),
                };
                let v =
                    cb.call(reqwest::Method::GET, &format!("/_matrix/client/v3/sync?{q}"), Some(&token), None).await;
                let now = Instant::now();
                for e in v["presence"]["events"].as_array().into_iter().flatten() {
                    if let Some(tag) = e["content"]["status_msg"].as_str() {
                        // The first arrival of a change counts; a later event carrying the same
                        // text (a re-announcement, a refresh) is not a delivery.
                        if let Some(at) = sent.lock().remove(tag) {
                            delays.lock().push(now.duration_since(at).as_secs_f64() * 1000.0);
                        }
                    }
                }
                since = v["next_batch"].as_str().map(str::to_owned).or(since);
            }
        }));
    }

    // Everyone online once (warm-up), then let it settle.
    for chunk in accounts.chunks(32) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|(uid, token)| {
                let ca = ca.clone();
                let path = format!("/_matrix/client/v3/presence/{}/status", enc(uid));
                let token = token.clone();
                tokio::spawn(async move {
                    ca.call(reqwest::Method::PUT, &path, Some(&token), Some(json!({"presence": "online"}))).await
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The measured run: `rate` changes per second, users in turn, online <-> unavailable.
    let before = fed_counts(&a.state);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * secs as f64) as usize;
    let mut tick = tokio::time::interval(interval);
    for seq in 0..total {
        tick.tick().await;
        let (uid, token) = &accounts[(seq * 7919) % users];
        let tag = format!("c{seq}");
        let presence = if seq % 2 == 0 { "unavailable" } else { "online" };
        sent.lock().insert(tag.clone(), Instant::now());
        let (ca, path, token) = (ca.clone(), format!("/_matrix/client/v3/presence/{}/status", enc(uid)), token.clone());
        tokio::spawn(async move {
            ca.call(reqwest::Method::PUT, &path, Some(&token), Some(json!({"presence": presence, "status_msg": tag})))
                .await
        });
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = fed_counts(&a.state);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    let [edus, txns, updates, bytes] = [0, 1, 2, 3].map(|i| after[i] - before[i]);
    let mut d = delays.lock().clone();
    d.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let pct = |p: f64| if d.is_empty() { f64::NAN } else { d[((d.len() as f64 * p) as usize).min(d.len() - 1)] };
    println!(
        "{total} changes in {elapsed:.1} s ({:.1}/s), flush window {flush_ms} ms, one destination (B)",
        total as f64 / elapsed
    );
    println!(
        "A sent: {edus} m.presence EDUs ({:.2}/s), {txns} transactions ({:.2}/s; at most {:.1}/s = one per window), \
         {updates} push entries ({:.2} per change), {bytes} bytes of EDU content ({:.0} bytes per change)",
        edus as f64 / elapsed,
        txns as f64 / elapsed,
        1000.0 / flush_ms as f64,
        updates as f64 / total as f64,
        bytes as f64 / total as f64
    );
    println!(
        "delivered to B's watchers: {} of {total}; delay PUT on A -> /sync on B: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        d.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    a.stop().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
