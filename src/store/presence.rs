//! Persisted presence: manual status, status message, last active.
use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub user_id: String,
    pub manual: String,
    pub status_msg: Option<String>,
    pub last_active_ts: Option<i64>,
}

impl Store {
    pub async fn load_presence(&self) -> sqlx::Result<Vec<PresenceRow>> {
        let rows: Vec<(String, String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT user_id, manual, status_msg, last_active_ts FROM presence_state")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, manual, status_msg, last_active_ts)| PresenceRow {
                user_id,
                manual,
                status_msg,
                last_active_ts,
            })
            .collect())
    }

    /// Write a batch of rows in one transaction (the engine flushes dirty users together).
    pub async fn save_presence(&self, rows: &[PresenceRow]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO presence_state (user_id, manual, status_msg, last_active_ts) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id) DO UPDATE SET manual = excluded.manual, status_msg = excluded.status_msg, \
                 last_active_ts = excluded.last_active_ts",
            )
            .bind(&r.user_id)
            .bind(&r.manual)
            .bind(r.status_msg.as_deref())
            .bind(r.last_active_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
