//! Unit tests of the pure parts: topology, filters, event extraction, delivery matching.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Value};

use crate::cli::{Args, Mode, PathKind};
use crate::hs::enc;
use crate::report::{analyze, iso};
use crate::run::{collect, Change, Filters, Receipt, RunData, WatchOut};
use crate::setup::{Account, Setup, Topology};

fn args(extra: &[&str]) -> Args {
    let mut v = vec!["presence-bench"];
    v.extend_from_slice(extra);
    Args::parse_from(v)
}

#[test]
fn topology_shapes() {
    let t = Topology::build(&args(&["--users", "5"]));
    assert_eq!(t.rooms.len(), 1);
    assert!(t.watchers_of(5).iter().all(|w| w.len() == 4));

    let t = Topology::build(&args(&["--users", "7", "--shape", "small-rooms", "--room-size", "3"]));
    assert_eq!(t.rooms, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(t.watchers_of(7)[4], vec![3, 5]);
    assert!(t.watchers_of(7)[6].is_empty());

    let t = Topology::build(&args(&["--users", "10", "--shape", "watchers", "--watchers", "2"]));
    assert_eq!(t.rooms.len(), 10);
    assert_eq!(t.rooms[9], vec![9, 0, 1]);
    assert_eq!(t.watchers_of(10)[0], vec![1, 2, 8, 9]);
}

#[test]
fn filters_are_json_and_unique_per_run() {
    let a = Filters::new("aaaa");
    let b = Filters::new("bbbb");
    for f in [&a.legacy, &a.peek, &a.nothing] {
        serde_json::from_str::<Value>(f).unwrap();
    }
    assert_ne!(a.legacy, b.legacy);
}

#[test]
fn encoding_and_time() {
    assert_eq!(enc("@u1:localhost"), "%40u1%3Alocalhost");
    assert_eq!(enc("!r:x.y"), "%21r%3Ax.y");
    assert_eq!(iso(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
    assert_eq!(iso(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
}

fn ids() -> HashMap<String, u32> {
    (0..3).map(|i| (format!("@p{i}:hs"), i)).collect()
}

fn pev(sender: &str, presence: &str, msg: &str) -> Value {
    json!({"type": "m.presence", "sender": sender, "content": {"presence": presence, "status_msg": msg}})
}

#[test]
fn collect_legacy_and_peek() {
    let body = json!({
        "next_batch": "x",
        "presence": {"events": [
            pev("@p1:hs", "online", "pb:tag:7"),
            pev("@p1:hs", "online", "pb:old:8"),
            pev("@stranger:hs", "online", "pb:tag:9"),
        ]},
        "rooms": {"peek": {"!r:hs": {
            "state": {"events": [pev("@p2:hs", "unavailable", "pb:tag:11")]},
            "timeline": {"events": [pev("@p2:hs", "online", "pb:tag:12"),
                                     {"type": "m.room.message", "sender": "@p2:hs", "content": {}},
                                     {"type": "m.status", "sender": "@p2:hs", "content": {"status": "pb:tag:13"}},
                                     {"type": "m.presence", "sender": "@p2:hs", "content": {"presence": "online"}}]}
        }}}
    });
    let mut out = WatchOut::default();
    collect(&body, &ids(), Mode::Put, PathKind::Legacy, "tag", 5, &mut out);
    assert_eq!(out.events, 3);
    assert_eq!(out.foreign, 2);
    assert_eq!(out.receipts.len(), 1);
    assert_eq!((out.receipts[0].sender, out.receipts[0].key, out.receipts[0].src), (1, 7, 0));

    let mut out = WatchOut::default();
    collect(&body, &ids(), Mode::Put, PathKind::Peek, "tag", 5, &mut out);
    let keys: Vec<(u32, u64, u8)> = out.receipts.iter().map(|r| (r.sender, r.key, r.src)).collect();
    assert_eq!(keys, vec![(1, 7, 0), (2, 11, 1), (2, 12, 1), (2, 13, 2)]);
    assert_eq!(out.untagged_peek_presence, 1);

    let mut out = WatchOut::default();
    collect(&body, &ids(), Mode::SyncReport, PathKind::Legacy, "tag", 5, &mut out);
    assert_eq!(out.receipts.len(), 2); // state-matched: status_msg ignored, stranger foreign
    assert_eq!(out.receipts[0].key, 0);
}

fn setup3() -> Setup {
    let accounts = (0..3)
        .map(|i| Account {
            username: format!("p{i}"),
            user_id: format!("@p{i}:hs"),
            access_token: String::new(),
            device_id: String::new(),
        })
        .collect();
    Setup {
        accounts,
        rooms: vec!["!r:hs".into()],
        // user 0 is watched by 1 and 2; 1 by 0 only; 2 by nobody
        watchers_of: vec![vec![1, 2], vec![0], vec![]],
        topology_key: "test".into(),
        profile_rooms: vec![],
    }
}

fn ch(user: u32, seq: u64, state: u8, sent_ms: u64, err: Option<&str>) -> Change {
    Change { user, seq, state, sent_us: sent_ms * 1000, done_us: sent_ms * 1000 + 10_000, err: err.map(Into::into) }
}

fn rc(sender: u32, key: u64, recv_ms: u64) -> Receipt {
    Receipt { sender, key, recv_us: recv_ms * 1000, src: 0 }
}

fn rundata(changes: Vec<Change>, watch: Vec<Vec<Receipt>>) -> RunData {
    RunData {
        run_tag: "t".into(),
        started_wall: UNIX_EPOCH,
        t0_setup_secs: 0.0,
        changes,
        watch: watch.into_iter().map(|receipts| WatchOut { receipts, ..Default::default() }).collect(),
        ticks_issued: 0,
        ticks_dropped: 0,
        send_end_us: 3_000_000,
        stop_us: 4_000_000,
        finished_wall: UNIX_EPOCH,
        loadavg_start: String::new(),
        loadavg_end: String::new(),
        server_cpu_measured_s: None,
        server_cpu_run_s: None,
    }
}

#[test]
fn delivery_matching_put() {
    let a = args(&["--users", "3", "--warmup", "1", "--duration", "2"]);
    let changes = vec![
        ch(0, 1, 0, 500, None),         // warmup: not measured
        ch(0, 2, 1, 1100, None),        // measured
        ch(0, 3, 0, 1200, None),        // measured
        ch(0, 4, 1, 1300, Some("500")), // failed: not expected, but can cover
        ch(0, 5, 0, 1400, None),        // measured
        ch(1, 6, 0, 1500, None),        // measured
    ];
    let watch = vec![
        vec![rc(1, 6, 1600), rc(0, 5, 1450)], // watcher 0: user 1's change exact; its own event counted apart
        vec![rc(0, 2, 1150), rc(0, 5, 1500), rc(0, 3, 1600)], // exact 2, coalesced 3 (via 5), stale 3
        vec![rc(0, 3, 1250)],                 // watcher 2 got 2 (coalesced) and 3, missed 5
    ];
    let r = analyze(&a, &setup3(), &rundata(changes, watch));
    let d = &r.json["delivery"];
    // expected: user0 has 3 measured ok changes x 2 watchers + user1 1 change x 1 watcher = 7
    assert_eq!(d["expected"], 7);
    assert_eq!(d["delivered"], 6);
    assert_eq!(d["delivered_exact"], 4);
    assert_eq!(d["events_stale_or_duplicate"], 1);
    assert_eq!(d["events_own"], 1);
    // worst: seq 3 (sent 1200) first covered by seq 5 arriving at 1500
    assert_eq!(d["latency"]["max_ms"].as_f64().unwrap().round(), 300.0);
    assert_eq!(r.json["changes"]["ok_measured"], 4);
    assert_eq!(r.json["changes"]["errors"]["500"], 1);
    assert!(r.summary.contains("delivered=85.7%"), "{}", r.summary);
}

#[test]
fn delivery_matching_sync_report() {
    let a = args(&["--users", "3", "--warmup", "0", "--duration", "2", "--mode", "sync-report"]);
    let changes = vec![ch(0, 1, 0, 100, None), ch(0, 2, 1, 200, None), ch(0, 3, 0, 300, None)];
    let watch = vec![
        vec![],
        vec![rc(0, 1, 250), rc(0, 0, 350)], // unavailable@250 -> seq2 (covers 1); online@350 -> seq3
        vec![rc(0, 0, 150), rc(0, 2, 400)], // online@150 -> seq1; offline -> unmatched
    ];
    let r = analyze(&a, &setup3(), &rundata(changes, watch));
    let d = &r.json["delivery"];
    assert_eq!(d["expected"], 6);
    assert_eq!(d["delivered"], 4);
    assert_eq!(d["events_unmatched"], 1);
}

#[test]
fn proc_cpu_of_self() {
    let c = crate::run::proc_cpu_secs(std::process::id()).expect("/proc/self/stat");
    assert!(c >= 0.0);
}

#[test]
fn samples_of_rss_and_database_size() {
    use crate::sample::{growth_per_s, proc_rss_kb, rss_from_status, sqlite_bytes, Sample};
    assert_eq!(rss_from_status("Name:\tx\nVmRSS:\t  12345 kB\nVmSwap: 0 kB\n"), Some(12345));
    assert_eq!(rss_from_status("Name:\tx\n"), None);
    assert!(proc_rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
    let dir = std::env::temp_dir().join(format!("pb-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("x.db");
    std::fs::write(&db, [0u8; 100]).unwrap();
    std::fs::write(dir.join("x.db-wal"), [0u8; 20]).unwrap();
    assert_eq!(sqlite_bytes(&db), Some(120));
    assert_eq!(sqlite_bytes(&dir.join("missing.db")), None);
    std::fs::remove_dir_all(&dir).unwrap();
    let s = |t: f64, b: u64| Sample { t_secs: t, db_bytes: Some(b), rss_kb: None, cpu_secs: None };
    assert_eq!(growth_per_s(&s(0.0, 1000), &s(10.0, 3000)), Some(200.0));
    assert_eq!(growth_per_s(&s(5.0, 1000), &s(5.0, 3000)), None);
}

#[test]
fn churn_needs_a_rate() {
    assert!(args(&["--scenario", "churn"]).validate().is_err());
    assert!(args(&["--scenario", "churn", "--rate", "100"]).validate().is_ok());
    assert!(args(&["--scenario", "idle"]).validate().is_ok());
}

#[test]
fn http2_carriers_are_for_idle_polls_only() {
    assert!(args(&["--scenario", "idle", "--idle-http2-connections", "500"]).validate().is_ok());
    assert!(args(&["--idle-http2-connections", "500"]).validate().is_err(), "not for the delivery run");
    assert!(args(&["--scenario", "idle", "--idle-http2-connections", "10001"]).validate().is_err());
}

#[test]
fn the_idle_polls_presence_is_for_idle_polls_only() {
    let idle = args(&["--scenario", "idle", "--idle-set-presence", "offline"]);
    assert!(idle.validate().is_ok());
    assert_eq!(idle.idle_set_presence.map(|p| p.as_str()), Some("offline"));
    assert!(args(&["--scenario", "idle"]).idle_set_presence.is_none(), "unset: the polls send none");
    assert!(args(&["--idle-set-presence", "offline"]).validate().is_err(), "not for the delivery run");
}

/// The generator's connections carry no TCP keep-alive timer (see `hs::client_builder`): with reqwest's
/// default, an idle pooled connection shows timer 2 ("keepalive") in `/proc/net/tcp`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_have_no_keepalive_timer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = sock.read(&mut buf).await.unwrap();
        let body = "{}";
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n", body.len());
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(body.as_bytes()).await.unwrap();
        // Keep the connection open (idle in the client's pool) while the test looks.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(sock);
    });
    let hs = crate::hs::Hs::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5), 4).unwrap();
    let r = hs.call(reqwest::Method::GET, "/x", None, &[], None, None).await.unwrap();
    assert_eq!(r.status, 200);
    // The client's socket: local port unknown to us, remote port `port`. Field 5 of a line is
    // `tr:tm->when`; `tr` 2 is the keep-alive timer.
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    let timers: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some(remote.as_str()))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert_eq!(timers.len(), 1, "one client connection to the test server: {timers:?}");
    assert!(!timers[0].starts_with("02:"), "keep-alive timer running on the generator's connection: {}", timers[0]);
    server.abort();
}

#[test]
fn watch_presence_online_is_only_for_put() {
    assert!(args(&["--watch-presence", "online"]).validate().is_ok());
    let err = args(&["--watch-presence", "online", "--mode", "sync-report"]).validate().unwrap_err();
    assert!(err.to_string().contains("--watch-presence online is for --mode put"), "{err}");
    assert_eq!(args(&[]).watch_presence.as_str(), "offline");
}

#[test]
fn the_shuffled_change_order_is_a_fixed_permutation_that_mixes_rooms() {
    use crate::cli::ChangeOrder;
    assert_eq!(args(&[]).change_order, ChangeOrder::UserIndex);
    assert_eq!(ChangeOrder::UserIndex.users(5), vec![0, 1, 2, 3, 4]);
    let a = args(&["--change-order", "shuffled"]).change_order.users(10_000);
    assert_eq!(a, ChangeOrder::Shuffled.users(10_000), "the same permutation in every run");
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10_000).collect::<Vec<_>>(), "every user once");
    // Rooms of 101 consecutive users: the first 101 turns of a round touch many rooms, not
    // one or two as in index order.
    let rooms: std::collections::HashSet<usize> = a[..101].iter().map(|u| u / 101).collect();
    assert!(rooms.len() > 50, "the first 101 turns touch {} rooms", rooms.len());
}
