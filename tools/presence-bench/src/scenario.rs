//! The scenarios beside the delivery run (`--scenario idle|churn|burst`), each bounded by its
//! flags: idle long-polls (memory per poll, CPU while idle), constant churn (database growth)
//! and the start-up burst (every client's first `/sync` at once).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::cli::Args;
use crate::hs::{enc, Hs};
use crate::run::{loadavg, STATES};
use crate::sample::{growth_per_s, Sample, Sampler};
use crate::setup::Setup;

const CS: &str = "/_matrix/client/v3";
/// Idle polls carry no room data: what is measured is the poll itself.
const IDLE_FILTER: &str = r#"{"room":{"rooms":[]},"presence":{"types":[]},"account_data":{"types":[]}}"#;

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

fn hist_json(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 10.0).round() / 10.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// The result of a scenario: JSON for `--out` and one summary line.
pub struct Outcome {
    pub json: Value,
    pub summary: String,
}

fn header(a: &Args, s: &Setup) -> Value {
    json!({
        "tool": "presence-bench",
        "scenario": a.scenario.name(),
        "label": a.label,
        "target": a.base_url,
        "users": a.users,
        "topology": s.topology_key,
        "rooms": s.rooms.len(),
        "params": a,
        "loadavg": loadavg(),
    })
}

/// One `/sync` per user with `timeout=0`, `concurrency` at a time: the `since` tokens, or the
/// error of the first that failed.
async fn first_syncs(hs: &Hs, s: &Setup, filter: &str, concurrency: usize) -> anyhow::Result<Vec<String>> {
    let res: Vec<Result<String, String>> = stream::iter(s.accounts.iter())
        .map(|acc| async move {
            let q = [("timeout", "0"), ("filter", filter), ("set_presence", "offline")];
            match hs.call(Method::GET, &format!("{CS}/sync"), Some(&acc.access_token), &q, None, None).await {
                Ok(r) if r.ok() => {
                    r.body.get("next_batch").and_then(Value::as_str).map(str::to_string).ok_or("no next_batch".into())
                }
                Ok(r) => Err(r.describe()),
                Err(k) => Err(k),
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    res.into_iter().collect::<Result<_, _>>().map_err(|e| anyhow::anyhow!("initial sync: {e}"))
}

/// (a) Every user holds one long-poll open; RSS before and with them gives KB per poll.
pub async fn idle(hs: &Hs, a: &Args, s: &Setup) -> anyhow::Result<Outcome> {
    let sampler = Sampler::new(a);
    eprintln!("idle: initial /sync for {} users", a.users);
    let since = first_syncs(hs, s, IDLE_FILTER, a.register_concurrency.max(8)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sampler.take();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened, returned) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let timeout = a.sync_timeout_ms.to_string();
    let client_timeout = Duration::from_millis(a.sync_timeout_ms) + hs.req_timeout;
    let set_presence = a.idle_set_presence.map(|p| p.as_str());
    // HTTP/1.1: one connection per poll. HTTP/2: the polls as streams over a few connections.
    let carriers: Vec<Hs> = (0..a.idle_http2_connections).map(|_| hs.http2()).collect::<anyhow::Result<_>>()?;
    let mut tasks = Vec::with_capacity(a.users);
    for (i, (acc, mut since)) in s.accounts.iter().zip(since).enumerate() {
        let hs = if carriers.is_empty() { hs.clone() } else { carriers[i % carriers.len()].clone() };
        let (token, timeout) = (acc.access_token.clone(), timeout.clone());
        let (opened, returned, errors, mut stop) = (opened.clone(), returned.clone(), errors.clone(), stop_rx.clone());
        // Connections open at 5,000 a second: all at once would overflow the server's accept
        // queue (somaxconn) and the SYN retries would outlast the connect timeout.
        let start_after = Duration::from_micros(200 * i as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            loop {
                opened.fetch_add(1, Ordering::Relaxed);
                let mut q = vec![("since", since.as_str()), ("timeout", timeout.as_str()), ("filter", IDLE_FILTER)];
                if let Some(p) = set_presence {
                    q.push(("set_presence", p));
                }
                let path = format!("{CS}/sync");
                let call = hs.call(Method::GET, &path, Some(&token), &q, None, Some(client_timeout));
                let r = tokio::select! { r = call => r, _ = stop.wait_for(|s| *s) => break };
                returned.fetch_add(1, Ordering::Relaxed);
                let failed = match r {
                    Ok(r) if r.ok() => {
                        if let Some(nb) = r.body.get("next_batch").and_then(Value::as_str) {
                            since = nb.to_string();
                        }
                        None
                    }
                    Ok(r) => Some(r.err_key()),
                    Err(k) => Some(k),
                };
                if let Some(k) = failed {
                    *errors.lock().unwrap_or_else(|e| e.into_inner()).entry(k).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }));
    }
    eprintln!("idle: {} polls opening; settling {}s", a.users, a.warmup);
    tokio::time::sleep(Duration::from_secs_f64(a.warmup.max(1.0))).await;
    let start = sampler.take();
    let returned_start = returned.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let end = sampler.take();
    let wakeups = returned.load(Ordering::Relaxed) - returned_start;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let error_count: u64 = errors.values().sum();
    let polls = a.users as f64;
    let kb_per_poll = start.rss_kb.zip(before.rss_kb).map(|(w, b)| (w as f64 - b as f64) / polls);
    let cores = end.cpu_secs.zip(start.cpu_secs).map(|(e, b)| (e - b) / a.duration);
    let json = json!({
        "header": header(a, s),
        "polls": a.users,
        "http2_connections": a.idle_http2_connections,
        "set_presence": set_presence,
        "rss_kb_before_polls": before.rss_kb,
        "rss_kb_with_polls": start.rss_kb,
        "rss_kb_end": end.rss_kb,
        "kb_per_poll": kb_per_poll,
        "idle_secs": a.duration,
        "server_cores_while_idle": cores,
        "polls_returned_while_idle": wakeups,
        "polls_opened": opened.load(Ordering::Relaxed),
        "errors": errors,
    });
    let summary = format!(
        "scenario=idle label={} polls={} http2_connections={} rss_before={}KB rss_with_polls={}KB kb_per_poll={} idle_cpu={} returned_while_idle={} errors={} {:?}",
        a.label,
        a.users,
        a.idle_http2_connections,
        before.rss_kb.map_or("na".into(), |v| v.to_string()),
        start.rss_kb.map_or("na".into(), |v| v.to_string()),
        kb_per_poll.map_or("na".into(), |v| format!("{v:.1}")),
        cores.map_or("na".into(), |v| format!("{:.2}%", v * 100.0)),
        wakeups,
        error_count,
        errors,
    );
    Ok(Outcome { json, summary })
}

/// (b) PUT presence at `--rate` changes/s for `--duration`, round-robin over the users, and
/// sample database size, RSS and CPU every `--sample-secs`.
pub async fn churn(hs: &Hs, a: &Args, s: &Setup) -> anyhow::Result<Outcome> {
    let sampler = Arc::new(Sampler::new(a));
    let mut samples = vec![sampler.take()];
    let (ok, err) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sem = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let mut lat = hist();
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let t0 = tokio::time::Instant::now();
    let end = t0 + Duration::from_secs_f64(a.duration);
    let mut next_sample = t0 + Duration::from_secs_f64(a.sample_secs);
    let (mut issued, mut dropped) = (0u64, 0u64);
    let mut iv = tokio::time::interval(Duration::from_millis(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    eprintln!("churn {run_tag}: {} changes/s for {}s over {} users", a.rate, a.duration, a.users);
    loop {
        iv.tick().await;
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        if now >= next_sample {
            let sm = sampler.clone();
            samples.push(tokio::task::spawn_blocking(move || sm.take()).await?);
            next_sample += Duration::from_secs_f64(a.sample_secs);
            let last = samples.last().expect("just pushed");
            eprintln!(
                "  t={:>6.1}s ok={} err={} db={} rss={}KB",
                last.t_secs,
                ok.load(Ordering::Relaxed),
                err.load(Ordering::Relaxed),
                last.db_bytes.map_or("na".into(), |b| format!("{:.1}MB", b as f64 / 1e6)),
                last.rss_kb.unwrap_or(0)
            );
        }
        while let Ok(us) = lat_rx.try_recv() {
            lat.saturating_record(us.max(1));
        }
        let due = ((now - t0).as_secs_f64() * a.rate) as u64;
        while issued < due {
            let seq = issued;
            issued += 1;
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                dropped += 1;
                continue;
            };
            let acc = &s.accounts[seq as usize % s.accounts.len()];
            let (hs, token, user) = (hs.clone(), acc.access_token.clone(), acc.user_id.clone());
            let (ok, err, lat_tx) = (ok.clone(), err.clone(), lat_tx.clone());
            let body = json!({"presence": STATES[(seq / s.accounts.len() as u64 % 2) as usize], "status_msg": format!("pb:{run_tag}:{seq}")});
            tokio::spawn(async move {
                let sent = Instant::now();
                let path = format!("{CS}/presence/{}/status", enc(&user));
                match hs.call(Method::PUT, &path, Some(&token), &[], Some(&body), None).await {
                    Ok(r) if r.ok() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => err.fetch_add(1, Ordering::Relaxed),
                };
                let _ = lat_tx.send(sent.elapsed().as_micros() as u64);
                drop(permit);
            });
        }
    }
    // Let in-flight requests and the server's coalescing window finish, then the last sample.
    let _ = sem.acquire_many(a.concurrency.max(1) as u32).await;
    tokio::time::sleep(Duration::from_secs_f64(a.grace)).await;
    let sm = sampler.clone();
    samples.push(tokio::task::spawn_blocking(move || sm.take()).await?);
    drop(lat_tx);
    while let Some(us) = lat_rx.recv().await {
        lat.saturating_record(us.max(1));
    }
    let (first, last) = (samples[0], *samples.last().expect("at least two samples"));
    let mid = samples[samples.len() / 2];
    let growth_first_half = growth_per_s(&first, &mid);
    let growth_second_half = growth_per_s(&mid, &last);
    let cores = last.cpu_secs.zip(first.cpu_secs).map(|(e, b)| (e - b) / last.t_secs.max(0.1));
    let json = json!({
        "header": header(a, s),
        "rate": a.rate,
        "duration_secs": a.duration,
        "changes_ok": ok.load(Ordering::Relaxed),
        "changes_err": err.load(Ordering::Relaxed),
        "ticks_dropped": dropped,
        "put_latency": hist_json(&lat),
        "server_cores": cores,
        "db_growth_bytes_per_s_first_half": growth_first_half,
        "db_growth_bytes_per_s_second_half": growth_second_half,
        "samples": samples,
    });
    let mb = |x: Option<u64>| x.map_or("na".into(), |b| format!("{:.1}MB", b as f64 / 1e6));
    let rate = |x: Option<f64>| x.map_or("na".into(), |b| format!("{:.1}KB/s", b / 1e3));
    let summary = format!(
        "scenario=churn label={} rate={}/s duration={}s ok={} err={} dropped={} db_start={} db_end={} growth_1st_half={} growth_2nd_half={} rss_end={}KB srv_cpu={}",
        a.label,
        a.rate,
        a.duration,
        ok.load(Ordering::Relaxed),
        err.load(Ordering::Relaxed),
        dropped,
        mb(first.db_bytes),
        mb(last.db_bytes),
        rate(growth_first_half),
        rate(growth_second_half),
        last.rss_kb.unwrap_or(0),
        cores.map_or("na".into(), |c| format!("{c:.2}cores")),
    );
    Ok(Outcome { json, summary })
}

/// (c) Every user's first `/sync` (no `since`, no filter: what a client sends after a
/// restart) at the same moment; errors, client timeouts and latency.
pub async fn burst(hs: &Hs, a: &Args, s: &Setup) -> anyhow::Result<Outcome> {
    let sampler = Sampler::new(a);
    let before: Sample = sampler.take();
    let go = Arc::new(tokio::sync::Barrier::new(a.users + 1));
    let mut tasks = Vec::with_capacity(a.users);
    for acc in &s.accounts {
        let (hs, token, go) = (hs.clone(), acc.access_token.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            let sent = Instant::now();
            let r = hs.call(Method::GET, &format!("{CS}/sync"), Some(&token), &[("timeout", "0")], None, None).await;
            let us = sent.elapsed().as_micros() as u64;
            let err = match r {
                Ok(r) if r.ok() && r.body.get("next_batch").is_some() => None,
                Ok(r) => Some(r.err_key()),
                Err(k) => Some(k),
            };
            (us, err)
        }));
    }
    eprintln!("burst: {} first /sync requests at once (client timeout {:?})", a.users, hs.req_timeout);
    go.wait().await;
    let started = Instant::now();
    let mut lat = hist();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (us, err) = t.await.unwrap_or((0, Some("panic".into())));
        match err {
            None => lat.saturating_record(us.max(1)),
            Some(k) => *errors.entry(k).or_default() += 1,
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let after = sampler.take();
    let timeouts = errors.get("timeout").copied().unwrap_or(0);
    let failed: u64 = errors.values().sum();
    let cpu = after.cpu_secs.zip(before.cpu_secs).map(|(e, b)| e - b);
    let json = json!({
        "header": header(a, s),
        "clients": a.users,
        "ok": lat.len(),
        "errors": errors,
        "timeouts": timeouts,
        "latency": hist_json(&lat),
        "wall_secs": wall,
        "server_cpu_secs": cpu,
        "rss_kb_before": before.rss_kb,
        "rss_kb_after": after.rss_kb,
    });
    let q = |x: f64| {
        if lat.is_empty() {
            "na".into()
        } else {
            format!("{:.0}ms", lat.value_at_quantile(x) as f64 / 1000.0)
        }
    };
    let summary = format!(
        "scenario=burst label={} clients={} ok={} failed={} timeouts={} p50={} p99={} max={} wall={:.1}s srv_cpu={} rss_after={}KB",
        a.label,
        a.users,
        lat.len(),
        failed,
        timeouts,
        q(0.5),
        q(0.99),
        q(1.0),
        wall,
        cpu.map_or("na".into(), |c| format!("{c:.1}s")),
        after.rss_kb.unwrap_or(0),
    );
    Ok(Outcome { json, summary })
}
