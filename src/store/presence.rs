//! Persisted presence: manual status, status message, last active.
use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub user_id: String,
    pub manual: String,
    pub status_msg: Option<String>,
    pub last_active_ts: Option<i64>,
}

/// One acknowledged change of a user's persisted presence inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusWrite {
    /// `PUT /presence/{userId}/status`: the manual status and the status text.
    Manual { user_id: String, manual: String, status_msg: Option<String> },
    /// The owner set `m.status` in their profile room: the status text only.
    StatusMsg { user_id: String, status_msg: Option<String> },
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

    /// Write the last-active times of a batch of users in one transaction (write-behind: the
    /// engine flushes them every `presence_flush_interval_ms`). Only `last_active_ts` is
    /// written: the manual status and status text are written durably by
    /// [`Store::save_status_batch`] before they are acknowledged, and a flush of an older
    /// in-memory copy must never overwrite them.
    pub async fn save_last_active(&self, rows: &[(String, i64)]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (user_id, ts) in rows {
            sqlx::query(
                "INSERT INTO presence_state (user_id, manual, status_msg, last_active_ts) VALUES ($1, 'online', NULL, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET last_active_ts = excluded.last_active_ts",
            )
            .bind(user_id)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Write a group of acknowledged status writes in one transaction, in order (a later write
    /// of the same user wins). The caller answers the requests only once this returned `Ok`.
    pub async fn save_status_batch(&self, writes: &[&StatusWrite]) -> sqlx::Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for w in writes {
            match w {
                StatusWrite::Manual { user_id, manual, status_msg } => {
                    sqlx::query(
                        "INSERT INTO presence_state (user_id, manual, status_msg, last_active_ts) VALUES ($1, $2, $3, NULL) \
                         ON CONFLICT (user_id) DO UPDATE SET manual = excluded.manual, status_msg = excluded.status_msg",
                    )
                    .bind(user_id)
                    .bind(manual)
                    .bind(status_msg.as_deref())
                    .execute(&mut *tx)
                    .await?;
                }
                StatusWrite::StatusMsg { user_id, status_msg } => {
                    sqlx::query(
                        "INSERT INTO presence_state (user_id, manual, status_msg, last_active_ts) VALUES ($1, 'online', $2, NULL) \
                         ON CONFLICT (user_id) DO UPDATE SET status_msg = excluded.status_msg",
                    )
                    .bind(user_id)
                    .bind(status_msg.as_deref())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await
    }

    /// The current `m.presence` and `m.status` state of every profile room:
    /// (owner, event type, event JSON). Read once at startup to reconcile the rooms with the
    /// presence engine.
    pub async fn profile_presence_state(&self) -> sqlx::Result<Vec<(String, String, String)>> {
        sqlx::query_as(
            "SELECT p.user_id, c.event_type, e.json FROM profile_rooms p \
             JOIN current_state c ON c.room_id = p.room_id \
             JOIN events e ON e.event_id = c.event_id \
             WHERE c.state_key = '' AND c.event_type IN ('m.presence', 'm.status')",
        )
        .fetch_all(&self.pool)
        .await
    }
}
