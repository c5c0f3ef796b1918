//! Matching of deliveries to changes, statistics, JSON results and the summary line.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::cli::{Args, Mode};
use crate::run::{Change, RunData};
use crate::setup::Setup;

fn hist() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

fn rec(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "min_ms": ms(h.min()),
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn q_ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "na".into()
    } else {
        format!("{:.1}ms", h.value_at_quantile(q) as f64 / 1000.0)
    }
}

fn max_ms(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        "na".into()
    } else {
        format!("{:.1}ms", h.max() as f64 / 1000.0)
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn iso(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

pub struct Report {
    pub json: Value,
    pub summary: String,
    pub warnings: Vec<String>,
}

pub fn analyze(a: &Args, s: &Setup, d: &RunData) -> Report {
    let n = a.users;
    let win_start_us = (a.warmup * 1e6) as u64;
    let measured = |c: &Change| c.err.is_none() && c.sent_us >= win_start_us;

    // ---- presence-change requests ----
    let mut put_h = hist();
    let (mut sent_w, mut ok_w) = (0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors_w: BTreeMap<String, u64> = BTreeMap::new();
    for c in &d.changes {
        let in_w = c.sent_us >= win_start_us;
        if in_w {
            sent_w += 1;
        }
        match &c.err {
            None if in_w => {
                ok_w += 1;
                rec(&mut put_h, c.done_us.saturating_sub(c.sent_us));
            }
            None => {}
            Some(k) => {
                *errors.entry(k.clone()).or_default() += 1;
                if in_w {
                    *errors_w.entry(k.clone()).or_default() += 1;
                }
            }
        }
    }
    let put_per_s = ok_w as f64 / a.duration;

    // ---- delivery ----
    let mut per_user: Vec<Vec<&Change>> = vec![Vec::new(); n];
    for c in &d.changes {
        per_user[c.user as usize].push(c); // already sorted by seq
    }
    let expected_per_user: Vec<u64> =
        per_user.iter().map(|v| v.iter().filter(|c| measured(c)).count() as u64).collect();
    let mut deliv_h = hist();
    let (mut expected, mut delivered, mut exact, mut after_send_end) = (0u64, 0u64, 0u64, 0u64);
    let (mut unmatched, mut stale, mut unexpected, mut own) = (0u64, 0u64, 0u64, 0u64);
    let (mut from_peek, mut from_status, mut from_legacy) = (0u64, 0u64, 0u64);
    let mut shares: Vec<f64> = Vec::new();
    let mut full_watchers = 0usize;
    for (w, out) in d.watch.iter().enumerate() {
        let mut by_sender: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
        for r in &out.receipts {
            by_sender[r.sender as usize].push((r.key, r.recv_us));
            match r.src {
                1 => from_peek += 1,
                2 => from_status += 1,
                _ => from_legacy += 1,
            }
        }
        let (mut exp_w, mut del_w) = (0u64, 0u64);
        for (u, recs) in by_sender.iter().enumerate() {
            if u == w {
                own += recs.len() as u64;
                continue;
            }
            let watched = s.watchers_of[u].binary_search(&w).is_ok();
            if !watched {
                unexpected += recs.len() as u64;
                continue;
            }
            exp_w += expected_per_user[u];
            let ch = &per_user[u];
            let mut covered = 0usize;
            for &(key, recv) in recs {
                let idx = match a.mode {
                    Mode::Put => ch.binary_search_by_key(&key, |c| c.seq).ok(),
                    Mode::SyncReport => {
                        // newest change of this user sent before the receipt with that state
                        let p = ch.partition_point(|c| c.sent_us <= recv);
                        (0..p).rev().take(4).find(|&j| u64::from(ch[j].state) == key)
                    }
                };
                let Some(idx) = idx else {
                    unmatched += 1;
                    continue;
                };
                if idx < covered {
                    stale += 1;
                    continue;
                }
                for (j, c) in ch.iter().enumerate().take(idx + 1).skip(covered) {
                    if measured(c) {
                        del_w += 1;
                        rec(&mut deliv_h, recv.saturating_sub(c.sent_us));
                        if j == idx {
                            exact += 1;
                        }
                        if recv > d.send_end_us {
                            after_send_end += 1;
                        }
                    }
                }
                covered = idx + 1;
            }
        }
        expected += exp_w;
        delivered += del_w;
        if exp_w > 0 {
            shares.push(del_w as f64 / exp_w as f64);
            if del_w == exp_w {
                full_watchers += 1;
            }
        }
    }
    shares.sort_by(f64::total_cmp);
    let pct = |x: u64, y: u64| if y == 0 { 0.0 } else { (x as f64 * 100.0 / y as f64 * 1000.0).round() / 1000.0 };
    let delivered_pct = pct(delivered, expected);

    // ---- sync loops ----
    let mut sync_errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut sync_req, mut sync_events, mut foreign) = (0u64, 0u64, 0u64);
    for out in &d.watch {
        sync_req += out.requests;
        sync_events += out.events;
        foreign += out.foreign;
        for (k, v) in &out.errors {
            *sync_errors.entry(k.clone()).or_default() += v;
        }
    }
    let err_total: u64 = errors.values().sum();
    let sync_err_total: u64 = sync_errors.values().sum();
    let pairs: usize = s.watchers_of.iter().map(Vec::len).sum();
    let mut warnings = Vec::new();
    if unexpected > 0 {
        warnings.push(format!(
            "{unexpected} presence events came from users outside the watcher's expected set: the bench users \
             share rooms from other shapes/runs, which adds load; use a fresh --user-prefix per shape"
        ));
    }
    if foreign > 0 {
        warnings.push(format!("{foreign} presence events did not belong to this run (other senders or run ids)"));
    }
    if d.ticks_dropped > 0 {
        warnings.push(format!(
            "{} rate ticks dropped: all {} drivers were busy; the target rate was not reached",
            d.ticks_dropped,
            a.concurrency.min(n)
        ));
    }
    if sync_err_total > 0 || err_total > 0 {
        warnings.push(format!("errors: changes {errors:?}, sync {sync_errors:?}"));
    }

    let json = json!({
        "tool": "presence-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "label": a.label,
        "target": a.base_url,
        "run_id": d.run_tag,
        "started_at": iso(d.started_wall),
        "finished_at": iso(d.finished_wall),
        "params": a,
        "host": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_start": d.loadavg_start,
            "loadavg_end": d.loadavg_end,
            "server_pid": a.server_pid,
            "server_cpu_measured_s": d.server_cpu_measured_s,
            "server_cpu_run_s": d.server_cpu_run_s,
            "server_cores_used_measured": d.server_cpu_measured_s.map(|c| c / a.duration),
            "server_cpu_ms_per_change": d.server_cpu_measured_s.filter(|_| ok_w > 0).map(|c| c * 1000.0 / ok_w as f64),
            "server_cpu_ms_per_delivery": d.server_cpu_measured_s.filter(|_| delivered > 0).map(|c| c * 1000.0 / delivered as f64),
        },
        "setup": {
            "users": n,
            "topology": s.topology_key,
            "rooms": s.rooms.len(),
            "watch_pairs": pairs,
            "avg_watchers_per_user": pairs as f64 / n as f64,
            "setup_secs": (d.t0_setup_secs * 1000.0).round() / 1000.0,
        },
        "timeline_secs": {
            "measure_start": a.warmup,
            "send_end": d.send_end_us as f64 / 1e6,
            "stop": d.stop_us as f64 / 1e6,
        },
        "changes": {
            "mode": a.mode.name(),
            "watch_presence": a.watch_presence.as_str(),
            "change_order": a.change_order.as_str(),
            "sent_total": d.changes.len(),
            "sent_measured": sent_w,
            "ok_measured": ok_w,
            "ok_per_s": (put_per_s * 100.0).round() / 100.0,
            "latency": hist_json(&put_h),
            "errors": errors,
            "errors_measured": errors_w,
            "rate_target": a.rate,
            "ticks_issued": d.ticks_issued,
            "ticks_dropped": d.ticks_dropped,
        },
        "delivery": {
            "path": a.path.name(),
            "latency_from": "change request send time",
            "latency_to": "watcher /sync response received containing that change or a later one of the same user",
            "expected": expected,
            "delivered": delivered,
            "delivered_pct": delivered_pct,
            "delivered_exact": exact,
            "delivered_coalesced": delivered - exact,
            "delivered_during_grace": after_send_end,
            "latency": hist_json(&deliv_h),
            "watchers_with_expectations": shares.len(),
            "watchers_full": full_watchers,
            "per_watcher_share_min": shares.first().copied(),
            "per_watcher_share_p50": shares.get(shares.len() / 2).copied(),
            "events_unmatched": unmatched,
            "events_stale_or_duplicate": stale,
            "events_own": own,
            "events_from_unexpected_sender": unexpected,
            "events_peek_presence": from_peek,
            "events_peek_status": from_status,
            "events_peek_presence_untagged": d.watch.iter().map(|w| w.untagged_peek_presence).sum::<u64>(),
            "events_top_level": from_legacy,
        },
        "warnings": warnings,
        "sync": {
            "requests": sync_req,
            "presence_events": sync_events,
            "foreign_presence_events": foreign,
            "foreign_samples": d.watch.iter().flat_map(|w| w.foreign_samples.iter()).take(5).collect::<Vec<_>>(),
            "errors": sync_errors,
        },
    });
    let cpu = match d.server_cpu_measured_s {
        Some(c) if ok_w > 0 => {
            let per_delivery = if delivered > 0 { c * 1e6 / delivered as f64 } else { 0.0 };
            format!(
                " srv_cpu={:.2}cores srv_cpu/change={:.2}ms srv_cpu/delivery={per_delivery:.1}us",
                c / a.duration,
                c * 1000.0 / ok_w as f64
            )
        }
        _ => String::new(),
    };
    // Named only when it is not the default, so earlier summary lines keep their shape.
    let watch = match a.watch_presence {
        crate::cli::WatchPresence::Offline => String::new(),
        w => format!(" watch_presence={}", w.as_str()),
    };
    let order = match a.change_order {
        crate::cli::ChangeOrder::UserIndex => String::new(),
        o => format!(" change_order={}", o.as_str()),
    };
    let summary = format!(
        "label={} users={} shape={} path={} mode={} put_ok={} put/s={:.1} put_p50={} put_p99={} put_max={} deliv_p50={} deliv_p99={} deliv_max={} delivered={:.1}% errors={} sync_errors={}{watch}{order}{cpu}",
        a.label,
        n,
        a.shape.name(),
        a.path.name(),
        a.mode.name(),
        ok_w,
        put_per_s,
        q_ms(&put_h, 0.5),
        q_ms(&put_h, 0.99),
        max_ms(&put_h),
        q_ms(&deliv_h, 0.5),
        q_ms(&deliv_h, 0.99),
        max_ms(&deliv_h),
        delivered_pct,
        err_total,
        sync_err_total,
    );
    Report { json, summary, warnings }
}
