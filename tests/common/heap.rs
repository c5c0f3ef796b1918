//! A counting global allocator over mimalloc (the server's allocator): live heap bytes and,
//! per allocation size, how many blocks are live. A test or bench binary installs it with
//! `#[global_allocator] static A: heap::Counting = heap::Counting;` and compares snapshots
//! taken before and after opening long-polls to see what each one holds.
#![allow(dead_code)]
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Sizes up to this are counted one by one; larger ones share the last slot.
const EXACT: usize = 64 * 1024;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicI64 = AtomicI64::new(0);
static BY_SIZE: [AtomicI64; EXACT + 1] = [ZERO; EXACT + 1];

pub struct Counting;

/// While set, allocations of the sizes in `HEAP_TRACE_SIZES` (comma-separated) print a
/// backtrace, the first few of each: where does a block of that size come from?
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static TRACED: AtomicI64 = AtomicI64::new(0);
static TRACE_SIZES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

thread_local! {
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Start (or stop) printing backtraces of allocations of the sizes in `HEAP_TRACE_SIZES`.
pub fn trace_sizes(on: bool) {
    TRACE_SIZES.get_or_init(|| {
        std::env::var("HEAP_TRACE_SIZES").unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect()
    });
    TRACING.store(on, Relaxed);
}

fn maybe_trace(size: usize) {
    if !TRACING.load(Relaxed) {
        return;
    }
    let Some(i) = TRACE_SIZES.get().and_then(|sizes| sizes.iter().position(|s| *s == size)) else { return };
    // Up to 15 backtraces per size (four bits of the counter per size, up to 15 sizes).
    if i >= 15 || TRACED.load(Relaxed) >> (4 * i) & 15 == 15 || IN_TRACE.with(|t| t.replace(true)) {
        return;
    }
    TRACED.fetch_add(1 << (4 * i), Relaxed);
    eprintln!("=== allocation of {size} bytes:\n{}", std::backtrace::Backtrace::force_capture());
    IN_TRACE.with(|t| t.set(false));
}

fn note(size: usize, sign: i64) {
    if sign > 0 {
        maybe_trace(size);
    }
    LIVE_BYTES.fetch_add(sign * size as i64, Relaxed);
    LIVE_BLOCKS.fetch_add(sign, Relaxed);
    BY_SIZE[size.min(EXACT)].fetch_add(sign, Relaxed);
}

// SAFETY: every call is forwarded unchanged to mimalloc; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = mimalloc::MiMalloc.alloc(layout);
        if !p.is_null() {
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = mimalloc::MiMalloc.alloc_zeroed(layout);
        if !p.is_null() {
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        mimalloc::MiMalloc.dealloc(ptr, layout);
        note(layout.size(), -1);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = mimalloc::MiMalloc.realloc(ptr, layout, new_size);
        if !p.is_null() {
            note(layout.size(), -1);
            note(new_size, 1);
        }
        p
    }
}

/// The allocator's counters at one moment.
#[derive(Clone)]
pub struct Snapshot {
    pub live_bytes: i64,
    pub live_blocks: i64,
    by_size: Vec<i64>,
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        live_bytes: LIVE_BYTES.load(Relaxed),
        live_blocks: LIVE_BLOCKS.load(Relaxed),
        by_size: BY_SIZE.iter().map(|c| c.load(Relaxed)).collect(),
    }
}

impl Snapshot {
    /// The sizes whose live block count grew most in bytes since `before`:
    /// (size, blocks added), largest byte total first (sizes above 64 KiB share one row).
    pub fn growth_by_size(&self, before: &Snapshot, top: usize) -> Vec<(usize, i64)> {
        let mut rows: Vec<(usize, i64)> = self
            .by_size
            .iter()
            .zip(&before.by_size)
            .enumerate()
            .map(|(size, (a, b))| (size, a - b))
            .filter(|(_, d)| *d != 0)
            .collect();
        rows.sort_by_key(|(size, d)| -(*size as i64 * d));
        rows.truncate(top);
        rows
    }
}

/// Resident set size of this process, from `/proc/self/status` (Linux), in KiB.
pub fn rss_kib() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
