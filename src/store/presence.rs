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
    /// If the batch fails, each row is retried on its own so one bad row (e.g. text PostgreSQL
    /// refuses) never blocks everyone else's; rows the database refuses as data are logged
    /// and dropped, other errors still fail the flush (to be retried).
    pub async fn save_presence(&self, rows: &[PresenceRow]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.save_presence_batch(rows).await {
            Err(sqlx::Error::Database(_)) if rows.len() > 1 => {
                for row in rows {
                    match self.save_presence_batch(std::slice::from_ref(row)).await {
                        Err(e) if is_data_exception(&e) => {
                            tracing::error!(user_id = %row.user_id, error = %e, "presence row refused by the database; dropped")
                        }
                        other => other?,
                    }
                }
                Ok(())
            }
            Err(e) if is_data_exception(&e) => {
                tracing::error!(user_id = %rows[0].user_id, error = %e, "presence row refused by the database; dropped");
                Ok(())
            }
            other => other,
        }
    }

    async fn save_presence_batch(&self, rows: &[PresenceRow]) -> sqlx::Result<()> {
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

/// SQLSTATE class 22 (data exception: NUL in text, bad encoding, value out of range): the row
/// itself is bad, retrying cannot help.
fn is_data_exception(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}
