//! In-process benchmarks of the `/sync` hot paths added for issue #13:
//!
//! - `window/*`: the presence delivery window: W long-polls parked on their subscriptions, K
//!   presence changes fanned out to all of them (`Notifier::wake_presence`), then every poll
//!   takes its wake-up and closes its window (`Subscription::collect_presence`). Per change
//!   and watcher this is what a batched delivery costs the notifier: compare K = 1 with K = 10.
//! - `filters/*`: `/sync?filter=<id>` answered from the parsed-filter cache (a hit), next to
//!   parsing the same filter JSON, which a miss (or an inline filter) costs.
//!
//! Run with `cargo bench --bench sync`; README "Performance" records the figures.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use seed::ground::Notifier;
use seed::store::Store;
use seed::sync::filters::Filters;
use seed::sync::SyncFilter;
use serde_json::json;

fn short_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    group
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn bench_window(c: &mut Criterion) {
    let rt = runtime();
    let mut group = short_group(c, "window/batch");
    for (watchers, changes) in [(100usize, 1usize), (100, 10), (1_000, 1), (1_000, 10)] {
        let notifier = Notifier::default();
        let users: Vec<String> = (0..watchers).map(|i| format!("@u{i}:bench")).collect();
        let mut subs: Vec<_> = users.iter().map(|u| notifier.subscribe(u)).collect();
        let mut pos = 0i64;
        group.throughput(Throughput::Elements((watchers * changes) as u64));
        let id = BenchmarkId::from_parameter(format!("{watchers}w_x{changes}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                for _ in 0..changes {
                    pos += 1;
                    notifier.wake_presence(users.iter().map(String::as_str), black_box(pos));
                }
                rt.block_on(async {
                    // The window has already ended: each poll collects what is there and answers.
                    let end = tokio::time::Instant::now();
                    for sub in subs.iter_mut() {
                        let first = sub.next().await;
                        black_box(sub.collect_presence(first, end).await);
                    }
                })
            })
        });
    }
    group.finish();
}

fn bench_filters(c: &mut Criterion) {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("seed-bench-filters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}/seed.db?mode=rwc", dir.display());
    let filter = json!({
        "room": {"rooms": [], "timeline": {"limit": 10}},
        "presence": {"types": ["m.presence"], "not_senders": ["@presence-bench-run-1:invalid.example"]},
        "account_data": {"types": []}
    });
    let (filters, id) = rt.block_on(async {
        let store = Store::connect(&url, 2).await.expect("database");
        let filters = Filters::new(store, 32_768, 200);
        let id = filters.create("@u:bench", &filter).await.expect("filter stored");
        filters.load("@u:bench", &id.to_string()).await.expect("first load");
        (filters, id.to_string())
    });
    let mut group = short_group(c, "filters");
    group.bench_function("load_cached", |b| {
        b.iter(|| rt.block_on(async { black_box(filters.load(black_box("@u:bench"), &id).await.expect("hit")) }))
    });
    let text = filter.to_string();
    group.bench_function("parse_json", |b| {
        b.iter(|| black_box(serde_json::from_str::<SyncFilter>(black_box(&text)).expect("parses")))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_window(&mut c);
    bench_filters(&mut c);
    c.final_summary();
}
