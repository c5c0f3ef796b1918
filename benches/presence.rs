//! In-process benchmarks of the presence core: the pure merge (`effective`, `next_change_at`),
//! one tick of the `DeadlineQueue`, and the memory each tracked entry costs.
//!
//! The tick benchmarks hold the queue in a steady state: every iteration advances a simulated
//! clock by one tick, pops what is due and schedules those keys again further out, so the queue
//! keeps its size and each tick meets the same number of due keys. What they show: a tick costs
//! O(due · log n), so users whose deadlines are in the future cost nothing per tick.
//!
//! Run with `cargo bench --bench presence`; `docs/bench-presence.md` records the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use seed::ground::{DeadlineQueue, Notifier};
use seed::presence::{
    effective, next_change_at, DeviceKind, DeviceState, EffectivePresence, ManualStatus, Presence, PresenceRules,
};

// --- a global allocator that counts live heap bytes, for the memory report ---

/// Bytes currently allocated through the global allocator. The counting costs one relaxed atomic
/// add per allocation, which the timed benchmarks pay too (the only one that allocates per
/// iteration is `pop_due`'s result vector when something is due).
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// is only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// --- fixtures ---

const NOW: i64 = 1_700_000_000_000;

/// A mix of the devices a user really has: kinds alternate, every third device has a `/sync` in
/// flight, the others synced a few seconds ago; most report online (one busy, not syncing, from
/// the fifth on), with pro-active events spread over the last minutes, so the view has a change
/// ahead for `next_change_at` to find.
fn devices(n: usize) -> Vec<DeviceState> {
    (0..n as i64)
        .map(|i| DeviceState {
            reported: match i {
                4 => Presence::Busy,
                _ if i % 4 == 3 => Presence::Unavailable,
                _ => Presence::Online,
            },
            kind: if i % 2 == 0 { DeviceKind::Desktop } else { DeviceKind::Mobile },
            last_sync_ts: NOW - 1_000 * (i + 1),
            syncing: i % 3 == 0,
            last_active_ts: NOW - 20_000 * i,
            lifted: false,
        })
        .collect()
}

fn short_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    group
}

// --- 1. the merge ---

const DEVICE_COUNTS: [usize; 3] = [1, 3, 10];

fn bench_merge(c: &mut Criterion) {
    let rules = PresenceRules::default();

    let mut group = short_group(c, "merge/effective");
    for n in DEVICE_COUNTS {
        let devs = devices(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &devs, |b, devs| {
            b.iter(|| effective(black_box(ManualStatus::Online), black_box(devs), black_box(NOW), &rules))
        });
    }
    group.finish();

    let mut group = short_group(c, "merge/next_change_at");
    for n in DEVICE_COUNTS {
        let devs = devices(n);
        assert!(next_change_at(ManualStatus::Online, &devs, NOW, &rules).is_some());
        group.bench_with_input(BenchmarkId::from_parameter(n), &devs, |b, devs| {
            b.iter(|| next_change_at(black_box(ManualStatus::Online), black_box(devs), black_box(NOW), &rules))
        });
    }
    group.finish();
}

// --- 2. one deadline tick ---

const QUEUE_SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];

/// Simulated tick length: the queue is polled once a second.
const TICK_MS: i64 = 1_000;

/// A queue of `n` keys whose deadlines fall `per_tick` to a tick over the ticks `1..=horizon`
/// (`horizon = n / per_tick`), each at a key-specific millisecond within its tick. Keys are
/// spread over the ticks by a fixed permutation so the heap is not built in deadline order.
struct TickedQueue {
    queue: DeadlineQueue<u64>,
    horizon: i64,
    tick: i64,
}

impl TickedQueue {
    fn new(n: u64, per_tick: u64) -> Self {
        assert_eq!(n % per_tick, 0);
        // 7_919 is prime and coprime with the sizes (products of 2 and 5), so this permutes 0..n.
        let perm = |k: u64| (k * 7_919) % n;
        let mut queue = DeadlineQueue::new();
        for k in 0..n {
            let slot = (perm(k) / per_tick) as i64;
            queue.schedule(k, (slot + 1) * TICK_MS - Self::offset(k));
        }
        assert_eq!(queue.len() as u64, n);
        TickedQueue { queue, horizon: (n / per_tick) as i64, tick: 0 }
    }

    /// Where in its tick key `k`'s deadline falls, in `[0, TICK_MS)`.
    fn offset(k: u64) -> i64 {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as i64 % TICK_MS
    }

    /// Advances one tick, pops what is due and schedules it `horizon` ticks on: the engine's
    /// loop, with `next_change_at` replaced by a fixed step so the state repeats.
    fn tick(&mut self) -> usize {
        self.tick += 1;
        let now = self.tick * TICK_MS;
        let due = self.queue.pop_due(now);
        let later = (self.tick + self.horizon) * TICK_MS;
        for &k in &due {
            self.queue.schedule(k, later - Self::offset(k));
        }
        due.len()
    }
}

fn bench_deadline_tick(c: &mut Criterion) {
    let mut group = short_group(c, "deadline_tick");

    // (a) Nobody due: the queue holds n idle users and the tick only peeks.
    for n in QUEUE_SIZES {
        let mut q = TickedQueue::new(n, n / 100).queue;
        assert!(q.next_deadline().is_some_and(|at| at > 0));
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("none_due", n), |b| b.iter(|| q.pop_due(black_box(0))));
        assert_eq!(q.len() as u64, n);
    }

    // (b) 1 % of the users due every tick (pop + reschedule). Throughput is per due key.
    for n in QUEUE_SIZES {
        let mut tq = TickedQueue::new(n, n / 100);
        assert_eq!(tq.tick() as u64, n / 100);
        group.throughput(Throughput::Elements(n / 100));
        group.bench_function(BenchmarkId::new("1pct_due", n), |b| b.iter(|| tq.tick()));
        assert_eq!(tq.tick() as u64, n / 100, "state is not steady");
        assert_eq!(tq.queue.len() as u64, n);
    }

    // (c) A fixed 100 users due every tick, however many are idle: the direct form of the claim.
    for n in QUEUE_SIZES {
        let mut tq = TickedQueue::new(n, 100);
        assert_eq!(tq.tick(), 100);
        group.throughput(Throughput::Elements(100));
        group.bench_function(BenchmarkId::new("100_due", n), |b| b.iter(|| tq.tick()));
        assert_eq!(tq.tick(), 100, "state is not steady");
        assert_eq!(tq.queue.len() as u64, n);
    }

    group.finish();
}

// --- 3. memory per tracked entry ---

/// Live heap bytes added by `build`, with the value kept alive while counting.
fn heap_bytes_of<T>(build: impl FnOnce() -> T) -> (usize, T) {
    let before = live_bytes();
    let value = build();
    (live_bytes().saturating_sub(before), value)
}

fn report_memory() {
    const QUEUE_KEYS: u64 = 1_000_000;
    const USERS: usize = 100_000;
    let rules = PresenceRules::default();

    let (bytes, q) = heap_bytes_of(|| TickedQueue::new(QUEUE_KEYS, QUEUE_KEYS / 100).queue);
    println!(
        "memory: deadline_queue<u64> keys={} bytes={} bytes/key={:.1}",
        q.len(),
        bytes,
        bytes as f64 / q.len() as f64
    );
    drop(q);

    // The engine is likely to key by user ID, which the queue stores twice (heap + map).
    let user_id = |k: u64| format!("@user{k}:example.org");
    let id_len = (0..QUEUE_KEYS).map(|k| user_id(k).len()).sum::<usize>() as f64;
    let (bytes, q) = heap_bytes_of(|| {
        let mut q = DeadlineQueue::new();
        for k in 0..QUEUE_KEYS {
            q.schedule(user_id(k), NOW + k as i64);
        }
        q
    });
    println!(
        "memory: deadline_queue<String> keys={} bytes={} bytes/key={:.1} (mean ID length {:.1})",
        q.len(),
        bytes,
        bytes as f64 / q.len() as f64,
        id_len / q.len() as f64
    );
    drop(q);

    for n_devices in [1, 2] {
        let devs = devices(n_devices);
        let (bytes, users) = heap_bytes_of(|| {
            let mut users: HashMap<String, (ManualStatus, Vec<DeviceState>, EffectivePresence)> = HashMap::new();
            for u in 0..USERS {
                let view = effective(ManualStatus::Online, &devs, NOW, &rules);
                users.insert(format!("@user{u}:example.org"), (ManualStatus::Online, devs.clone(), view.public));
            }
            users
        });
        println!(
            "memory: user_map users={} devices/user={} bytes={} bytes/user={:.1}",
            users.len(),
            n_devices,
            bytes,
            bytes as f64 / users.len() as f64
        );
    }
}

// --- fan-out: one change waking W watchers that wait in a long-poll ---

/// `Notifier::wake` for a change seen by W users, each with a `/sync` waiting on its
/// subscription (the per-user wake-up the engine does after a public change).
fn bench_fanout(c: &mut Criterion) {
    let mut group = short_group(c, "fanout/wake");
    for w in [1usize, 100, 10_000] {
        let notifier = Notifier::default();
        let users: Vec<String> = (0..w).map(|i| format!("@u{i}:bench")).collect();
        let subs: Vec<_> = users.iter().map(|u| notifier.subscribe(u)).collect();
        let mut pos = 0i64;
        group.throughput(Throughput::Elements(w as u64));
        group.bench_with_input(BenchmarkId::from_parameter(w), &w, |b, _| {
            b.iter(|| {
                pos += 1;
                notifier.wake(users.iter().map(String::as_str), black_box(pos));
            })
        });
        drop(subs);
    }
    group.finish();
}

/// Heap bytes of one idle long-poll's wake-up subscription (the server-side state a waiting
/// `/sync` holds besides its socket and task; RSS per connection is measured by the load
/// generator).
fn report_subscription_memory() {
    let notifier = Notifier::default();
    let n = 100_000;
    let users: Vec<String> = (0..n).map(|i| format!("@user{i}:example.org")).collect();
    let (bytes, subs) = heap_bytes_of(|| users.iter().map(|u| notifier.subscribe(u)).collect::<Vec<_>>());
    println!("memory: idle long-poll subscription bytes/poll={:.1} (n={n})", bytes as f64 / n as f64);
    drop(subs);
}

fn main() {
    // `--list` (and test discovery) wants only the benchmark names on stdout.
    if !std::env::args().any(|a| a == "--list") {
        report_memory();
        report_subscription_memory();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_merge(&mut c);
    bench_deadline_tick(&mut c);
    bench_fanout(&mut c);
    c.final_summary();
}
