//! The `presence_history` table (migration 0080): superseded `m.presence`/`m.status` events of
//! profile rooms, noted by a trigger when they are superseded, and deleted with their events
//! by the retention task (`profile::retention`). Every query here is an index range read
//! bounded by its `LIMIT`, so a pruning run costs O(rows it prunes), never a scan.
use super::batch::placeholders;
use super::Store;

/// One superseded event the pruner may look at: (stream position, room id, event type).
pub type HistoryRow = (i64, String, String);

impl Store {
    /// The oldest superseded events not yet looked at, sent before `cutoff_ts`, oldest first.
    pub async fn presence_history_due(&self, cutoff_ts: i64, limit: i64) -> sqlx::Result<Vec<HistoryRow>> {
        sqlx::query_as(
            "SELECT stream_ordering, room_id, event_type FROM presence_history \
             WHERE kept = 0 AND origin_server_ts < $1 ORDER BY origin_server_ts, stream_ordering LIMIT $2",
        )
        .bind(cutoff_ts)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// How many superseded versions of (`room_id`, `kind`) are newer than `pos`, counted up to `cap`.
    pub async fn presence_history_newer(&self, room_id: &str, kind: &str, pos: i64, cap: i64) -> sqlx::Result<i64> {
        if cap <= 0 {
            return Ok(0);
        }
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM presence_history \
             WHERE room_id = $1 AND event_type = $2 AND stream_ordering > $3 LIMIT $4) newer",
        )
        .bind(room_id)
        .bind(kind)
        .bind(pos)
        .bind(cap)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Versions of (`room_id`, `kind`) kept earlier for `keep_last` and older than `pos`,
    /// newest first, at most `limit`.
    pub async fn presence_history_kept_before(
        &self,
        room_id: &str,
        kind: &str,
        pos: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT stream_ordering FROM presence_history \
             WHERE room_id = $1 AND event_type = $2 AND stream_ordering < $3 AND kept = 1 \
             ORDER BY stream_ordering DESC LIMIT $4",
        )
        .bind(room_id)
        .bind(kind)
        .bind(pos)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// In one transaction: delete the events at `prune` (with their relation rows and history
    /// rows) and mark `keep` as looked at. Returns how many events were deleted.
    pub async fn apply_presence_pruning(&self, prune: &[i64], keep: &[i64]) -> sqlx::Result<u64> {
        let mut tx = self.begin().await?;
        let mut deleted = 0;
        if !prune.is_empty() {
            let list = placeholders(1, prune.len());
            // A relation row is keyed by the child's event id; the child goes, so does its row.
            let statements = [
                format!(
                    "DELETE FROM event_relations WHERE event_id IN \
                     (SELECT event_id FROM events WHERE stream_ordering IN ({list}))"
                ),
                format!("DELETE FROM events WHERE stream_ordering IN ({list})"),
                format!("DELETE FROM presence_history WHERE stream_ordering IN ({list})"),
            ];
            for (i, sql) in statements.iter().enumerate() {
                let mut q = sqlx::query(sql);
                for p in prune {
                    q = q.bind(*p);
                }
                let done = q.execute(&mut *tx).await?;
                if i == 1 {
                    deleted = done.rows_affected();
                }
            }
        }
        if !keep.is_empty() {
            let sql = format!(
                "UPDATE presence_history SET kept = 1 WHERE stream_ordering IN ({})",
                placeholders(1, keep.len())
            );
            let mut q = sqlx::query(&sql);
            for p in keep {
                q = q.bind(*p);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// PostgreSQL: `VACUUM` the tables pruning deletes from and presence churn updates, so the
    /// space of their dead tuples is reused (migration 0130 sets autovacuum thresholds for the
    /// same tables; this bounds the dead tuples also where autovacuum is off or behind). Not in
    /// a transaction: PostgreSQL refuses `VACUUM` inside one. Returns false on SQLite, whose
    /// free pages are reused without it.
    pub async fn vacuum_presence_tables(&self) -> sqlx::Result<bool> {
        if self.backend != super::Backend::Postgres {
            return Ok(false);
        }
        sqlx::raw_sql(
            "VACUUM events, event_relations, presence_history, current_state, presence_state, presence_changes",
        )
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Rows in `presence_history` (superseded events still stored), for metrics and tests.
    pub async fn presence_history_len(&self) -> sqlx::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM presence_history").fetch_one(&self.pool).await?;
        Ok(n)
    }
}
