//! Presence of users on other servers (`remote_presence`), written behind by the engine.
use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePresenceRow {
    pub user_id: String,
    pub presence: String,
    pub last_active_ts: Option<i64>,
    pub currently_active: bool,
    pub status_msg: Option<String>,
    /// Comma-separated device kinds.
    pub device_kinds: String,
}

impl Store {
    pub async fn load_remote_presence(&self) -> sqlx::Result<Vec<RemotePresenceRow>> {
        type Row = (String, String, Option<i64>, i64, Option<String>, String);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT user_id, presence, last_active_ts, currently_active, status_msg, device_kinds FROM remote_presence",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, presence, last_active_ts, active, status_msg, device_kinds)| RemotePresenceRow {
                user_id,
                presence,
                last_active_ts,
                currently_active: active != 0,
                status_msg,
                device_kinds,
            })
            .collect())
    }

    /// Upsert a batch of remote users in one transaction.
    pub async fn save_remote_presence(&self, rows: &[RemotePresenceRow]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO remote_presence (user_id, presence, last_active_ts, currently_active, status_msg, device_kinds) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, \
                 last_active_ts = excluded.last_active_ts, currently_active = excluded.currently_active, \
                 status_msg = excluded.status_msg, device_kinds = excluded.device_kinds",
            )
            .bind(&r.user_id)
            .bind(&r.presence)
            .bind(r.last_active_ts)
            .bind(i64::from(r.currently_active))
            .bind(&r.status_msg)
            .bind(&r.device_kinds)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
