//! How this process holds memory: transparent huge pages, and how soon the allocator gives
//! freed memory back.
//!
//! ## Transparent huge pages
//!
//! Off unless the operator turns them on (`transparent_huge_pages`, README "Configuration").
//!
//! mimalloc asks the kernel for huge pages on the memory it reserves (`madvise(MADV_HUGEPAGE)`),
//! so on a kernel whose THP mode is `madvise` (or `always`) every touched 2 MiB stretch of the
//! heap is backed whole. The server's heap is many small, long-lived objects spread over that
//! memory (room states, parked polls, inboxes), so most of each huge page is not in use: at
//! 10,000 users × 100 watchers, 164–215 MB of the RSS were huge pages, and with them off the
//! same binary held ~40 MB less, for ~10 % more CPU (issue #13; docs/performance-history.md "Transparent huge
//! pages").
//!
//! `prctl(PR_SET_THP_DISABLE)` turns THP off for the whole process whatever the system's mode;
//! the kernel checks it on every page fault, so memory touched after the call (all but the
//! start-up's first few allocations) gets 4 KiB pages.
//!
//! ## Purge delay
//!
//! mimalloc 3 keeps memory freed by the server for a second before it gives it back to the
//! kernel (`madvise`), and looks at it again only when the thread that freed it next allocates
//! enough. Under load the server frees all the time (a response built and written, a
//! connection's head buffer, a publish batch), so the RSS carries that not-yet-returned memory
//! on top of what is live: at 10,000 users × 100 watchers, ~45 MB of ~205 (issue #13; docs/performance-history.md
//! "Allocator purge delay"). `allocator_purge_delay_ms = 0` (the default) returns it at once;
//! the measured CPU cost was within the runs' noise.

/// Turn transparent huge pages off (`allow == false`) or leave them to the system's setting
/// (`true`). Returns whether the process runs with them off, or `None` where the platform has
/// no such switch (not Linux) or the kernel refused (logged).
pub fn set_transparent_huge_pages(allow: bool) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        match rustix::thread::disable_transparent_huge_pages(!allow)
            .and_then(|()| rustix::thread::transparent_huge_pages_are_disabled())
        {
            Ok(disabled) => Some(disabled),
            Err(e) => {
                tracing::warn!(error = %e, "could not set the transparent huge pages switch");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = allow;
        None
    }
}

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e`, the same in mimalloc 2 and 3
/// (`libmimalloc-sys` names no constant for it).
#[cfg(not(feature = "system-allocator"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Longest purge delay taken, ms (one hour).
pub const MAX_PURGE_DELAY_MS: u64 = 3_600_000;

/// Tell the allocator to give freed memory back to the kernel `ms` after it was freed (0: at
/// once; at most [`MAX_PURGE_DELAY_MS`]). Returns the delay the allocator now uses, or `None`
/// when the server runs on the system allocator (the `system-allocator` feature).
pub fn set_allocator_purge_delay(ms: u64) -> Option<i64> {
    #[cfg(not(feature = "system-allocator"))]
    {
        let ms = ms.min(MAX_PURGE_DELAY_MS) as std::ffi::c_long;
        // SAFETY: mimalloc's option calls take any option number and value and may be made at
        // any time from any thread; the value is read when memory is next purged.
        let now = unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms);
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
        };
        Some(now as i64)
    }
    #[cfg(feature = "system-allocator")]
    {
        let _ = ms;
        None
    }
}
