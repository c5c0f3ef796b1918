//! Transparent huge pages (THP) for this process: off unless the operator turns them on
//! (`transparent_huge_pages`, README "Configuration").
//!
//! mimalloc asks the kernel for huge pages on the memory it reserves (`madvise(MADV_HUGEPAGE)`),
//! so on a kernel whose THP mode is `madvise` (or `always`) every touched 2 MiB stretch of the
//! heap is backed whole. The server's heap is many small, long-lived objects spread over that
//! memory (room states, parked polls, inboxes), so most of each huge page is not in use: at
//! 10,000 users × 100 watchers, 164–215 MB of the RSS were huge pages, and with them off the
//! same binary held ~40 MB less, for ~10 % more CPU (issue #13; README "Transparent huge
//! pages").
//!
//! `prctl(PR_SET_THP_DISABLE)` turns THP off for the whole process whatever the system's mode;
//! the kernel checks it on every page fault, so memory touched after the call (all but the
//! start-up's first few allocations) gets 4 KiB pages.

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
