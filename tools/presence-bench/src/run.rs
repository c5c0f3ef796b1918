//! The measured run: one /sync long-poll loop per user (watchers) and `--concurrency`
//! presence drivers. All timestamps are microseconds since `t0` (monotonic clock).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::cli::{Args, Mode, PathKind};
use crate::hs::{enc, Hs};
use crate::setup::Setup;

const CS: &str = "/_matrix/client/v3";

/// Sync filters. Each carries a `not_senders` entry naming a non-existent per-run user: a no-op
/// for filtering, but it makes the filter (part of Synapse's /sync response-cache key) unique
/// per run. Without it Synapse replays a previous run's cached /sync responses (cached for
/// 2 minutes per user+since+filter) to the next run's watchers.
pub struct Filters {
    /// legacy watchers: no room data at all, only top-level m.presence
    pub legacy: String,
    /// peek watchers: only m.presence and m.status in room state/timeline (peeked rooms
    /// included); top-level presence is excluded, since the watchers also share rooms
    pub peek: String,
    /// sync-report drivers: the response content is not needed at all
    pub nothing: String,
}

impl Filters {
    pub fn new(run_tag: &str) -> Filters {
        let ns = format!(r#""not_senders":["@presence-bench-run-{run_tag}:invalid.example"]"#);
        Filters {
            legacy: format!(
                r#"{{"room":{{"rooms":[]}},"presence":{{"types":["m.presence"],{ns}}},"account_data":{{"types":[]}}}}"#
            ),
            peek: format!(
                r#"{{"room":{{"timeline":{{"types":["m.presence","m.status"],"limit":100,{ns}}},"state":{{"types":["m.presence","m.status"]}},"ephemeral":{{"types":[]}},"account_data":{{"types":[]}}}},"presence":{{"types":[],{ns}}},"account_data":{{"types":[]}}}}"#
            ),
            nothing: format!(
                r#"{{"room":{{"rooms":[]}},"presence":{{"types":[],{ns}}},"account_data":{{"types":[]}}}}"#
            ),
        }
    }
}

pub const STATES: [&str; 2] = ["online", "unavailable"];

pub fn state_code(s: &str) -> u64 {
    match s {
        "online" => 0,
        "unavailable" => 1,
        "offline" => 2,
        _ => 3,
    }
}

/// One presence change sent by a driver.
#[derive(Clone, Debug)]
pub struct Change {
    pub user: u32,
    pub seq: u64,
    pub state: u8,
    pub sent_us: u64,
    pub done_us: u64,
    pub err: Option<String>,
}

/// One m.presence event seen by a watcher. `key` is the sequence id (mode put) or the
/// state code (mode sync-report).
#[derive(Clone, Copy, Debug)]
pub struct Receipt {
    pub sender: u32,
    pub key: u64,
    pub recv_us: u64,
    /// 0 = top-level `presence.events`, 1 = m.presence in `rooms.peek.*` state/timeline,
    /// 2 = m.status in `rooms.peek.*` (MSC3032 keeps the status text there)
    pub src: u8,
}

#[derive(Default)]
pub struct WatchOut {
    pub receipts: Vec<Receipt>,
    pub requests: u64,
    pub errors: BTreeMap<String, u64>,
    pub events: u64,
    /// m.presence events not from this run (other senders or other run ids).
    pub foreign: u64,
    /// The first few such events, for diagnosis.
    pub foreign_samples: Vec<Value>,
    /// Peek path, mode put: m.presence events in profile rooms without any status_msg (MSC3032
    /// moves the status text to m.status); counted, not matched.
    pub untagged_peek_presence: u64,
}

pub struct RunData {
    pub run_tag: String,
    pub started_wall: SystemTime,
    pub t0_setup_secs: f64,
    pub changes: Vec<Change>,
    pub watch: Vec<WatchOut>,
    pub ticks_issued: u64,
    pub ticks_dropped: u64,
    pub send_end_us: u64,
    pub stop_us: u64,
    pub finished_wall: SystemTime,
    /// `/proc/loadavg` at run start and end (empty where unavailable): a busy machine skews figures.
    pub loadavg_start: String,
    pub loadavg_end: String,
    /// Server CPU seconds over the measured window (warmup end .. sending end) and over the
    /// whole run (t0 .. stop), with --server-pid.
    pub server_cpu_measured_s: Option<f64>,
    pub server_cpu_run_s: Option<f64>,
}

/// CPU seconds (user+system) used so far by process `pid`, from /proc/PID/stat (Linux;
/// assumes the usual 100 clock ticks per second).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / 100.0)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default()
}

struct Ctx {
    a: Args,
    hs: Hs,
    tokens: Vec<String>,
    user_ids: Vec<String>,
    by_id: HashMap<String, u32>,
    run_tag: String,
    filters: Filters,
    t0: Instant,
    ok: AtomicU64,
    err: AtomicU64,
    events: AtomicU64,
}

impl Ctx {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
    fn watch_filter(&self) -> &str {
        match self.a.path {
            PathKind::Legacy => &self.filters.legacy,
            PathKind::Peek => &self.filters.peek,
        }
    }
    fn sync_timeout(&self) -> Duration {
        Duration::from_millis(self.a.sync_timeout_ms) + self.hs.req_timeout
    }
}

fn status_prefix(run_tag: &str) -> String {
    format!("pb:{run_tag}:")
}

/// Initial /sync (timeout=0) for every user to get a `since` token.
async fn initial_since(ctx: &Ctx, filter: &str) -> anyhow::Result<Vec<String>> {
    stream::iter(0..ctx.tokens.len())
        .map(|i| async move {
            let q = [("timeout", "0"), ("filter", filter), ("set_presence", ctx.a.watch_presence.as_str())];
            let r = ctx
                .hs
                .call(Method::GET, &format!("{CS}/sync"), Some(&ctx.tokens[i]), &q, None, Some(ctx.sync_timeout()))
                .await
                .map_err(|e| anyhow!("initial sync of {}: {e}", ctx.user_ids[i]))?;
            if !r.ok() {
                bail!("initial sync of {}: {}", ctx.user_ids[i], r.describe());
            }
            r.body
                .get("next_batch")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("initial sync of {}: no next_batch", ctx.user_ids[i]))
        })
        .buffered(ctx.a.register_concurrency)
        .try_collect()
        .await
}

fn bump(m: &mut BTreeMap<String, u64>, k: String) {
    *m.entry(k).or_default() += 1;
}

/// Extract m.presence events from a /sync body into receipts.
pub fn collect(
    body: &Value,
    by_id: &HashMap<String, u32>,
    mode: Mode,
    path: PathKind,
    run_tag: &str,
    recv_us: u64,
    out: &mut WatchOut,
) {
    let prefix = status_prefix(run_tag);
    let mut take = |ev: &Value, in_peek: bool| {
        let kind = ev.get("type").and_then(Value::as_str);
        let is_status = in_peek && kind == Some("m.status");
        if kind != Some("m.presence") && !is_status {
            return;
        }
        if is_status && mode == Mode::SyncReport {
            return; // the status text does not change in this mode
        }
        out.events += 1;
        let foreign = |out: &mut WatchOut| {
            out.foreign += 1;
            if out.foreign_samples.len() < 3 {
                out.foreign_samples.push(ev.clone());
            }
        };
        let Some(sender) = ev.get("sender").and_then(Value::as_str).and_then(|s| by_id.get(s)) else {
            foreign(out);
            return;
        };
        let content = ev.get("content").unwrap_or(&Value::Null);
        let src = match (in_peek, is_status) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        let key = match mode {
            Mode::Put => {
                let text = if is_status {
                    content.get("status").or_else(|| content.get("status_msg"))
                } else {
                    content.get("status_msg")
                };
                let Some(text) = text.and_then(Value::as_str) else {
                    if src == 1 {
                        out.untagged_peek_presence += 1;
                    } else {
                        foreign(out);
                    }
                    return;
                };
                match text.strip_prefix(prefix.as_str()).and_then(|s| s.parse::<u64>().ok()) {
                    Some(s) => s,
                    None => {
                        foreign(out);
                        return;
                    }
                }
            }
            Mode::SyncReport => state_code(content.get("presence").and_then(Value::as_str).unwrap_or("")),
        };
        out.receipts.push(Receipt { sender: *sender, key, recv_us, src });
    };
    if let Some(evs) = body.pointer("/presence/events").and_then(Value::as_array) {
        for ev in evs {
            take(ev, false);
        }
    }
    if path == PathKind::Peek {
        if let Some(rooms) = body.pointer("/rooms/peek").and_then(Value::as_object) {
            for room in rooms.values() {
                for part in ["/state/events", "/timeline/events"] {
                    if let Some(evs) = room.pointer(part).and_then(Value::as_array) {
                        for ev in evs {
                            take(ev, true);
                        }
                    }
                }
            }
        }
    }
}

async fn watcher(ctx: Arc<Ctx>, i: usize, mut since: String, mut stop: watch::Receiver<bool>) -> WatchOut {
    let mut out = WatchOut::default();
    let filter = ctx.watch_filter();
    let timeout = ctx.a.sync_timeout_ms.to_string();
    let mut backoff = Duration::from_millis(100);
    let path = format!("{CS}/sync");
    let report = ctx.a.watch_presence.as_str();
    // Long-polls open at 5,000 a second (inside the warm-up): all at once would overflow the
    // server's accept queue, and the SYN retries outlast the drivers' request timeout.
    tokio::time::sleep(Duration::from_micros(200 * i as u64)).await;
    loop {
        if *stop.borrow() {
            break;
        }
        let q =
            [("since", since.as_str()), ("timeout", timeout.as_str()), ("filter", filter), ("set_presence", report)];
        let fut = ctx.hs.call(Method::GET, &path, Some(&ctx.tokens[i]), &q, None, Some(ctx.sync_timeout()));
        let res = tokio::select! {
            r = fut => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let recv_us = ctx.now_us();
        out.requests += 1;
        let failed = match res {
            Ok(r) if r.ok() => match r.body.get("next_batch").and_then(Value::as_str) {
                Some(nb) => {
                    since = nb.to_string();
                    let before = out.events;
                    collect(&r.body, &ctx.by_id, ctx.a.mode, ctx.a.path, &ctx.run_tag, recv_us, &mut out);
                    ctx.events.fetch_add(out.events - before, Ordering::Relaxed);
                    None
                }
                None => Some("200 no next_batch".to_string()),
            },
            Ok(r) => Some(r.err_key()),
            Err(k) => Some(k),
        };
        match failed {
            None => backoff = Duration::from_millis(100),
            Some(k) => {
                bump(&mut out.errors, k);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    out
}

struct Slot {
    user: usize,
    next_state: u8,
    since: String,
}

async fn driver(
    ctx: Arc<Ctx>,
    queue: Arc<Mutex<VecDeque<Slot>>>,
    seq: Arc<AtomicU64>,
    sem: Option<Arc<Semaphore>>,
    send_end: tokio::time::Instant,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let prefix = status_prefix(&ctx.run_tag);
    loop {
        if tokio::time::Instant::now() >= send_end {
            break;
        }
        if let Some(sem) = &sem {
            tokio::select! {
                p = sem.acquire() => match p { Ok(p) => p.forget(), Err(_) => break },
                _ = tokio::time::sleep_until(send_end) => break,
            }
        }
        let slot = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let Some(mut slot) = slot else {
            // cannot happen with concurrency <= users, but never spin
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let u = slot.user;
        let state = STATES[slot.next_state as usize];
        let s = seq.fetch_add(1, Ordering::Relaxed);
        let sent_us = ctx.now_us();
        let res = match ctx.a.mode {
            Mode::Put => {
                let body = json!({"presence": state, "status_msg": format!("{prefix}{s}")});
                ctx.hs
                    .call(
                        Method::PUT,
                        &format!("{CS}/presence/{}/status", enc(&ctx.user_ids[u])),
                        Some(&ctx.tokens[u]),
                        &[],
                        Some(&body),
                        None,
                    )
                    .await
            }
            Mode::SyncReport => {
                let q = [
                    ("since", slot.since.as_str()),
                    ("timeout", "0"),
                    ("filter", ctx.filters.nothing.as_str()),
                    ("set_presence", state),
                ];
                ctx.hs.call(Method::GET, &format!("{CS}/sync"), Some(&ctx.tokens[u]), &q, None, None).await
            }
        };
        let done_us = ctx.now_us();
        let err = match res {
            Ok(r) if r.ok() => {
                if let Some(nb) = r.body.get("next_batch").and_then(Value::as_str) {
                    slot.since = nb.to_string();
                }
                None
            }
            Ok(r) => Some(r.err_key()),
            Err(k) => Some(k),
        };
        if err.is_none() {
            ctx.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            ctx.err.fetch_add(1, Ordering::Relaxed);
        }
        changes.push(Change { user: u as u32, seq: s, state: slot.next_state, sent_us, done_us, err });
        slot.next_state ^= 1;
        queue.lock().unwrap_or_else(|e| e.into_inner()).push_back(slot);
    }
    changes
}

/// Adds one semaphore permit per due tick; a tick is dropped when `cap` permits are
/// already waiting (every driver busy).
async fn dispatcher(sem: Arc<Semaphore>, rate: f64, cap: usize, send_end: tokio::time::Instant) -> (u64, u64) {
    let start = tokio::time::Instant::now();
    let mut iv = tokio::time::interval(Duration::from_millis(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut issued, mut dropped) = (0u64, 0u64);
    loop {
        iv.tick().await;
        let now = tokio::time::Instant::now();
        if now >= send_end {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate) as u64;
        while issued < due {
            if sem.available_permits() < cap {
                sem.add_permits(1);
            } else {
                dropped += 1;
            }
            issued += 1;
        }
    }
    sem.close();
    (issued, dropped)
}

pub async fn run(hs: &Hs, a: &Args, s: &Setup, setup_secs: f64) -> anyhow::Result<RunData> {
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let user_ids: Vec<String> = s.accounts.iter().map(|x| x.user_id.clone()).collect();
    let by_id = user_ids.iter().enumerate().map(|(i, u)| (u.clone(), i as u32)).collect();
    let mut ctx = Ctx {
        a: a.clone(),
        hs: hs.clone(),
        tokens: s.accounts.iter().map(|x| x.access_token.clone()).collect(),
        user_ids,
        by_id,
        run_tag: run_tag.clone(),
        filters: Filters::new(&run_tag),
        t0: Instant::now(),
        ok: AtomicU64::new(0),
        err: AtomicU64::new(0),
        events: AtomicU64::new(0),
    };
    eprintln!("sync: initial /sync for {} users", a.users);
    let since = initial_since(&ctx, ctx.watch_filter()).await?;
    let drive_since = if a.mode == Mode::SyncReport {
        initial_since(&ctx, &ctx.filters.nothing).await?
    } else {
        vec![String::new(); a.users]
    };

    let loadavg_start = loadavg();
    let cpu_t0 = a.server_pid.and_then(proc_cpu_secs);
    ctx.t0 = Instant::now();
    let started_wall = SystemTime::now();
    let ctx = Arc::new(ctx);
    let (stop_tx, stop_rx) = watch::channel(false);
    let watchers: Vec<_> = since
        .into_iter()
        .enumerate()
        .map(|(i, sb)| tokio::spawn(watcher(ctx.clone(), i, sb, stop_rx.clone())))
        .collect();

    let send_total = Duration::from_secs_f64(a.warmup + a.duration);
    let send_end = tokio::time::Instant::from_std(ctx.t0) + send_total;
    let conc = a.concurrency.min(a.users);
    let cpu_at_warmup = a.server_pid.map(|pid| {
        let at = tokio::time::Instant::from_std(ctx.t0) + Duration::from_secs_f64(a.warmup);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            proc_cpu_secs(pid)
        })
    });
    let mut drive_since: Vec<Option<String>> = drive_since.into_iter().map(Some).collect();
    let queue = Arc::new(Mutex::new(
        a.change_order
            .users(a.users)
            .into_iter()
            .map(|user| Slot { user, next_state: 0, since: drive_since[user].take().unwrap_or_default() })
            .collect::<VecDeque<_>>(),
    ));
    let seq = Arc::new(AtomicU64::new(1));
    let sem = (a.rate > 0.0).then(|| Arc::new(Semaphore::new(0)));
    let disp = sem.clone().map(|sem| tokio::spawn(dispatcher(sem, a.rate, conc, send_end)));
    let drivers: Vec<_> = (0..conc)
        .map(|_| tokio::spawn(driver(ctx.clone(), queue.clone(), seq.clone(), sem.clone(), send_end)))
        .collect();
    eprintln!(
        "run {run_tag}: warmup {}s + measure {}s, then grace {}s ({} watchers, {conc} drivers, rate {})",
        a.warmup,
        a.duration,
        a.grace,
        a.users,
        if a.rate > 0.0 { format!("{}/s", a.rate) } else { "flat out".into() }
    );

    // progress ticker
    let prog = {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(5));
            iv.tick().await;
            loop {
                tokio::select! {
                    _ = iv.tick() => eprintln!(
                        "  t={:>5.1}s changes ok={} err={} presence events seen={}",
                        ctx.t0.elapsed().as_secs_f64(),
                        ctx.ok.load(Ordering::Relaxed),
                        ctx.err.load(Ordering::Relaxed),
                        ctx.events.load(Ordering::Relaxed)
                    ),
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    };

    let mut changes = Vec::new();
    for d in drivers {
        changes.extend(d.await.unwrap_or_default());
    }
    let (ticks_issued, ticks_dropped) = match disp {
        Some(h) => h.await.unwrap_or_default(),
        None => (0, 0),
    };
    let send_end_us = ctx.now_us();
    let cpu_send_end = a.server_pid.and_then(proc_cpu_secs);
    let cpu_warm = match cpu_at_warmup {
        Some(h) => h.await.ok().flatten(),
        None => None,
    };
    eprintln!("run: sending done at t={:.1}s; grace {}s", send_end_us as f64 / 1e6, a.grace);
    tokio::time::sleep(Duration::from_secs_f64(a.grace)).await;
    let _ = stop_tx.send(true);
    let stop_us = ctx.now_us();
    let cpu_stop = a.server_pid.and_then(proc_cpu_secs);
    let mut watch = Vec::with_capacity(watchers.len());
    for w in watchers {
        watch.push(w.await.unwrap_or_default());
    }
    let _ = prog.await;
    changes.sort_by_key(|c| c.seq);
    Ok(RunData {
        run_tag,
        started_wall,
        t0_setup_secs: setup_secs,
        changes,
        watch,
        ticks_issued,
        ticks_dropped,
        send_end_us,
        stop_us,
        finished_wall: SystemTime::now(),
        loadavg_start,
        loadavg_end: loadavg(),
        server_cpu_measured_s: cpu_send_end.zip(cpu_warm).map(|(b, a)| b - a),
        server_cpu_run_s: cpu_stop.zip(cpu_t0).map(|(b, a)| b - a),
    })
}
