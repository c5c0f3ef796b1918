//! The experiment change log's table (`presence_changes`, msc/README.md §8).
use super::Store;

/// One stored change; the experiment module maps it to and from its record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub seq: i64,
    pub ts: i64,
    pub user_id: String,
    pub old_presence: String,
    pub new_presence: String,
    pub cause: String,
    /// Kinds joined by `;`.
    pub device_kinds: String,
    pub hidden: bool,
}

type Tuple = (i64, i64, String, String, String, String, String, i64);

impl Store {
    /// The newest `limit` rows with `ts >= since`, oldest first.
    pub async fn load_changes(&self, since: i64, limit: i64) -> sqlx::Result<Vec<ChangeRow>> {
        let rows: Vec<Tuple> = sqlx::query_as(
            "SELECT seq, ts, user_id, old_presence, new_presence, cause, device_kinds, hidden \
             FROM presence_changes WHERE ts >= $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .rev()
            .map(|(seq, ts, user_id, old_presence, new_presence, cause, device_kinds, hidden)| ChangeRow {
                seq,
                ts,
                user_id,
                old_presence,
                new_presence,
                cause,
                device_kinds,
                hidden: hidden != 0,
            })
            .collect())
    }

    /// Append a batch, then drop rows older than `before_ts` or more than `keep` behind the
    /// newest sequence number; one transaction.
    pub async fn save_changes(&self, rows: &[ChangeRow], before_ts: i64, keep: i64) -> sqlx::Result<()> {
        let Some(newest) = rows.last().map(|r| r.seq) else { return Ok(()) };
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO presence_changes (seq, ts, user_id, old_presence, new_presence, cause, device_kinds, hidden) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.seq)
            .bind(r.ts)
            .bind(&r.user_id)
            .bind(&r.old_presence)
            .bind(&r.new_presence)
            .bind(&r.cause)
            .bind(&r.device_kinds)
            .bind(i64::from(r.hidden))
            .execute(&mut *tx)
            .await?;
        }
        // Two statements so each can use its index (ts, primary key).
        sqlx::query("DELETE FROM presence_changes WHERE ts < $1").bind(before_ts).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM presence_changes WHERE seq <= $1")
            .bind(newest.saturating_sub(keep))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}
