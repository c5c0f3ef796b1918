//! Bounded presence history (msc/README.md "Retention of presence history").
//!
//! Every presence change the publisher writes is an `m.presence` (and for the status text an
//! `m.status`) state event in the owner's profile room; kept forever, that grows the database
//! by one event per change. A superseded version is deleted once it is both
//!
//! - older than `presence_history_keep_ms` (by its `origin_server_ts`), and
//! - not one of the newest `presence_history_keep_last` versions of its type in its room
//!   (the current state counts as one of them and is never deleted).
//!
//! The current state of a profile room is never touched, so `/sync` (initial, incremental, and
//! the peeks of MSC2753) always finds the newest `m.presence` and `m.status`; a deleted event
//! is simply absent from `/messages`, `/context` and the timelines of later syncs (see the MSC
//! section for why that is safe).
//!
//! Cost: the database notes each superseded version in `presence_history` when it is
//! superseded (a trigger, migration 0080). A run reads that table from its oldest due row, in
//! batches of `presence_history_prune_batch` rows, one transaction per batch; each row is
//! looked at once when it falls due (kept rows again only when a newer version of the same
//! room falls due). So a run costs O(rows it prunes), never a scan of the events.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::rooms::now_ms;
use crate::store::Store;

/// Most batches one run works through; the rest waits for the next run (a backlog after a
/// long stop is worked off over several runs instead of holding the database for one long one).
const MAX_BATCHES_PER_RUN: usize = 20;

/// What is kept, and how the work is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Newest versions of each of `m.presence` and `m.status` kept per profile room, counting
    /// the current state (0 and 1 both mean: only the current state).
    pub keep_last: u32,
    /// Versions sent less than this long ago are kept whatever their number.
    pub keep_ms: i64,
    /// Time between runs; zero turns pruning off.
    pub interval: Duration,
    /// Rows deleted per transaction.
    pub batch: usize,
    /// PostgreSQL: `VACUUM` the pruned tables after this many pruned events (0 = never).
    pub vacuum_after: u64,
}

impl RetentionPolicy {
    pub fn from_config(c: &Config) -> Self {
        Self {
            keep_last: c.presence_history_keep_last,
            keep_ms: c.presence_history_keep_ms.max(0),
            interval: Duration::from_millis(c.presence_history_prune_interval_ms),
            batch: c.presence_history_prune_batch.clamp(1, 1000),
            vacuum_after: c.presence_history_vacuum_after,
        }
    }

    /// Superseded versions protected by `keep_last` (the current state is the other one).
    fn keep_superseded(&self) -> usize {
        self.keep_last.saturating_sub(1) as usize
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Due rows looked at.
    pub examined: usize,
    /// Events deleted.
    pub pruned: u64,
    /// Due rows kept for `keep_last`.
    pub kept: usize,
    /// Whether the run ended with a `VACUUM` of the pruned tables (PostgreSQL).
    pub vacuumed: bool,
}

/// Which of one room's candidate versions (stream positions, newest first, all superseded and
/// old enough) to keep, when `newer` superseded versions newer than all of them exist: the
/// newest `keep_superseded` superseded versions overall are kept, the rest deleted. Pure.
pub fn plan_room(newer: usize, candidates_desc: &[i64], keep_superseded: usize) -> (Vec<i64>, Vec<i64>) {
    let protected = keep_superseded.saturating_sub(newer).min(candidates_desc.len());
    (candidates_desc[..protected].to_vec(), candidates_desc[protected..].to_vec())
}

/// The retention task over every profile room's presence history.
pub struct PresenceHistoryRetention {
    store: Store,
    policy: RetentionPolicy,
    /// Events pruned since the last `VACUUM` (see [`RetentionPolicy::vacuum_after`]).
    since_vacuum: std::sync::atomic::AtomicU64,
}

impl PresenceHistoryRetention {
    pub fn new(store: Store, policy: RetentionPolicy) -> Arc<Self> {
        Arc::new(Self { store, policy, since_vacuum: Default::default() })
    }

    /// Run every `interval` until shutdown (not at all when the interval is zero).
    pub fn start(self: &Arc<Self>, workers: &crate::ground::Workers) {
        if self.policy.interval.is_zero() {
            return;
        }
        let this = self.clone();
        let mut shutdown = workers.signal();
        workers.spawn("presence history retention", async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(this.policy.interval) => {}
                    _ = shutdown.changed() => break,
                }
                match this.run_once(now_ms()).await {
                    Ok(r) if r.pruned > 0 => {
                        tracing::debug!(
                            pruned = r.pruned,
                            kept = r.kept,
                            vacuumed = r.vacuumed,
                            "presence history pruned"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "presence history pruning failed; retrying next run"),
                }
            }
        });
    }

    /// One run at time `now` (ms): work through the due rows, a bounded batch at a time.
    pub async fn run_once(&self, now: i64) -> sqlx::Result<PruneReport> {
        let cutoff = now.saturating_sub(self.policy.keep_ms);
        let mut report = PruneReport::default();
        for _ in 0..MAX_BATCHES_PER_RUN {
            let due = self.store.presence_history_due(cutoff, self.policy.batch as i64).await?;
            let full = due.len() == self.policy.batch;
            report.examined += due.len();
            let (keep, prune) = self.plan_batch(due).await?;
            report.kept += keep.len();
            report.pruned += self.store.apply_presence_pruning(&prune, &keep).await?;
            if !full {
                break;
            }
        }
        report.vacuumed = self.vacuum_if_due(report.pruned).await?;
        Ok(report)
    }

    /// Count `pruned` towards the next `VACUUM` and run it once `vacuum_after` is reached, so
    /// the dead tuples the deletes leave on PostgreSQL stay bounded by about `vacuum_after`
    /// plus one run's deletes, whatever autovacuum does.
    async fn vacuum_if_due(&self, pruned: u64) -> sqlx::Result<bool> {
        use std::sync::atomic::Ordering;
        let after = self.policy.vacuum_after;
        let total = self.since_vacuum.fetch_add(pruned, Ordering::Relaxed) + pruned;
        if after == 0 || total < after {
            return Ok(false);
        }
        self.since_vacuum.store(0, Ordering::Relaxed);
        self.store.vacuum_presence_tables().await
    }

    /// Decide a batch room by room: two bounded index reads per (room, type) in it.
    async fn plan_batch(&self, due: Vec<crate::store::HistoryRow>) -> sqlx::Result<(Vec<i64>, Vec<i64>)> {
        let mut rooms: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for (pos, room, kind) in due {
            rooms.entry((room, kind)).or_default().push(pos);
        }
        let keep_superseded = self.policy.keep_superseded();
        let (mut keep, mut prune) = (Vec::new(), Vec::new());
        for ((room, kind), mut positions) in rooms {
            positions.sort_unstable_by(|a, b| b.cmp(a));
            let newest = positions[0];
            let newer = self.store.presence_history_newer(&room, &kind, newest, keep_superseded as i64).await? as usize;
            // Versions kept by an earlier run fall out of the window as newer ones fall due.
            let limit = (keep_superseded + self.policy.batch) as i64;
            positions.extend(self.store.presence_history_kept_before(&room, &kind, newest, limit).await?);
            positions.sort_unstable_by(|a, b| b.cmp(a));
            positions.dedup();
            let (k, p) = plan_room(newer, &positions, keep_superseded);
            keep.extend(k);
            prune.extend(p);
        }
        Ok((keep, prune))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_versions_overall() {
        // keep 3 superseded; none newer: the 3 newest candidates stay.
        assert_eq!(plan_room(0, &[9, 7, 5, 3, 1], 3), (vec![9, 7, 5], vec![3, 1]));
        // two newer versions exist: only one candidate is still among the newest three.
        assert_eq!(plan_room(2, &[9, 7, 5], 3), (vec![9], vec![7, 5]));
        // enough newer versions: everything goes.
        assert_eq!(plan_room(3, &[9, 7], 3), (vec![], vec![9, 7]));
        // keep_last 1 (only the current state): everything superseded goes.
        assert_eq!(plan_room(0, &[4, 2], 0), (vec![], vec![4, 2]));
        // fewer candidates than the window: all kept.
        assert_eq!(plan_room(0, &[4], 5), (vec![4], vec![]));
    }
}
