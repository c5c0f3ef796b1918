//! The Prometheus scrape (`/metrics`): it parses with a Prometheus text-format parser and its
//! counts match scripted scenarios, on the main listener or on a separate `metrics_bind`.
mod common;

use std::time::{Duration, Instant};

use common::{assert_err, enc, quiet_app, set_status, TestApp, User};
use serde_json::json;

async fn set_presence(app: &TestApp, user: &User, presence: &str) {
    set_status(app, user, json!({"presence": presence})).await;
}

/// Parse the main listener's scrape with a Prometheus text-format parser.
async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    scrape_at(app, &app.base).await
}

/// Parse the scrape served at `base`.
async fn scrape_at(app: &TestApp, base: &str) -> prometheus_parse::Scrape {
    let resp = app.http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"));
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
        other => panic!("unexpected {other:?}"),
    }
}

/// The cumulative count of histogram `name`'s bucket `le`.
fn bucket(scrape: &prometheus_parse::Scrape, name: &str, le: f64) -> f64 {
    let sample = scrape.samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("{name} missing"));
    let prometheus_parse::Value::Histogram(buckets) = &sample.value else { panic!("{name} is not a histogram") };
    buckets.iter().find(|b| b.less_than == le).unwrap_or_else(|| panic!("{name} has no bucket {le}")).count
}

#[tokio::test]
async fn metrics_scrape_parses_and_counts_match_a_scripted_scenario() {
    let app = quiet_app(|_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, _) = app.join(&bob, &room).await;
    assert_eq!(status, 200);
    let before = scrape(&app).await;
    let sync_count = |s: &prometheus_parse::Scrape| {
        value(s, "seed_http_request_duration_seconds_count", &[("route", "/_matrix/client/v3/sync"), ("method", "GET")])
    };
    assert!(before.samples.iter().all(|s| s.metric != "seed_presence_effective_changes_total"), "no change yet");

    // bob long-polls; alice's first report wakes him once.
    let since = app.sync(&bob, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let long_poll = format!("since={since}&timeout=20000");
    let waiting = app.sync(&bob, &long_poll);
    let report = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.sync(&alice, "set_presence=online&timeout=0").await
    };
    let (woken, _) = tokio::join!(waiting, report);
    assert!(woken["presence"]["events"].as_array().is_some_and(|e| !e.is_empty()), "{woken}");
    set_presence(&app, &alice, "busy").await;
    set_presence(&app, &alice, "online").await;

    let after = scrape(&app).await;
    // alice's one device report and two manual changes; bob's device report.
    assert_eq!(value(&after, "seed_presence_effective_changes_total", &[("cause", "device_report")]), 2.0);
    assert_eq!(value(&after, "seed_presence_effective_changes_total", &[("cause", "manual")]), 2.0);
    assert_eq!(value(&after, "seed_sync_requests_total", &[]), 3.0);
    assert_eq!(sync_count(&after), 3.0, "one latency observation per /sync");
    assert!(value(&after, "seed_sync_wakeups_total", &[]) >= 1.0, "bob's long-poll was woken");
    assert!(value(&after, "seed_presence_deliveries_total", &[("route", "legacy")]) >= 1.0, "bob got alice's presence");
    assert!(value(&after, "seed_db_pool_connections", &[]) >= 1.0);
    assert_eq!(value(&after, "seed_presence_tracked_users", &[]), 2.0);
    // The two manual changes were two status writes, each committed (queue + flush lag).
    assert_eq!(value(&after, "seed_presence_status_commit_seconds_count", &[]), 2.0);
    assert_eq!(value(&after, "seed_presence_status_group_writes_sum", &[]), 2.0, "every write in some group");
    assert!(value(&after, "seed_presence_status_group_writes_count", &[]) >= 1.0);

    // bob peeks alice's profile room (MSC2753): her m.presence reaches him by the peek route.
    let (_, profile) = app.get(&format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)), None).await;
    let profile_room = profile["org.matrix.msc1769.profile_room_id"].as_str().expect("profile room").to_owned();
    let peek = format!("/_matrix/client/unstable/org.matrix.msc2753/peek/{}", enc(&profile_room));
    let (status, v) = app.post(&peek, Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let since = woken["next_batch"].as_str().unwrap();
    let peeked = app.sync(&bob, &format!("since={since}&timeout=0")).await;
    assert!(peeked["rooms"]["peek"][&profile_room].is_object(), "{peeked}");
    let scraped = scrape(&app).await;
    assert!(value(&scraped, "seed_presence_deliveries_total", &[("route", "peek")]) >= 1.0, "{peeked}");

    let off = TestApp::spawn_with(|c| c.metrics_enabled = false).await;
    let (status, v) = off.get("/metrics", None).await;
    assert_err(status, &v, 404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn the_timer_lag_is_observed_once_per_firing() {
    let app = quiet_app(|c| c.presence_device_timeout_ms = 300).await;
    let alice = app.register("alice").await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "seed_presence_timer_lag_seconds_count", &[]), 0.0, "no timer fired yet");
    app.sync(&alice, "set_presence=online&timeout=0").await;
    // Her device times out 300 ms after the sync: the one deadline that fires in this test.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = scrape(&app).await;
        if value(&s, "seed_presence_deadlines_fired_total", &[]) >= 1.0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&after, "seed_presence_deadlines_fired_total", &[]), 1.0);
    assert_eq!(value(&after, "seed_presence_timer_lag_seconds_count", &[]), 1.0, "one wake-up, one observation");
    assert_eq!(value(&after, "seed_presence_effective_changes_total", &[("cause", "timer")]), 1.0);
    let lag = value(&after, "seed_presence_timer_lag_seconds_sum", &[]);
    assert!((0.0..0.25).contains(&lag), "the timer fired {lag} s late");
    assert_eq!(bucket(&after, "seed_presence_timer_lag_seconds", 0.25), 1.0, "in the le=0.25 bucket");
    assert_eq!(bucket(&after, "seed_presence_timer_lag_seconds", f64::INFINITY), 1.0);
}

#[tokio::test]
async fn metrics_can_be_served_on_a_separate_address_only() {
    let app = quiet_app(|c| c.metrics_bind = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_addr = app.running.as_ref().unwrap().metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, app.running.as_ref().unwrap().addr);
    let separate = format!("http://{metrics_addr}");
    // Not on the main listener, and nothing but /metrics on the separate one.
    let (status, v) = app.get("/metrics", None).await;
    assert_err(status, &v, 404, "M_UNRECOGNIZED");
    let resp = app.http.get(format!("{separate}/_matrix/client/versions")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    let alice = app.register("alice").await;
    app.sync(&alice, "set_presence=online&timeout=0").await;
    set_presence(&app, &alice, "busy").await;
    let s = scrape_at(&app, &separate).await;
    assert_eq!(value(&s, "seed_presence_effective_changes_total", &[("cause", "device_report")]), 1.0);
    assert_eq!(value(&s, "seed_presence_effective_changes_total", &[("cause", "manual")]), 1.0);
    assert_eq!(value(&s, "seed_sync_requests_total", &[]), 1.0);
    assert_eq!(value(&s, "seed_presence_status_commit_seconds_count", &[]), 1.0);
    assert_eq!(value(&s, "seed_presence_tracked_users", &[]), 1.0);

    // metrics_enabled = false wins over an address: no listener at all.
    let off = TestApp::spawn_with(|c| {
        c.metrics_enabled = false;
        c.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    assert_eq!(off.running.as_ref().unwrap().metrics_addr, None);
}
