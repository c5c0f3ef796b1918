//! Profile rooms (MSC1769) and peeks (MSC2753).
use super::Store;

impl Store {
    pub async fn profile_room(&self, user_id: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT room_id FROM profile_rooms WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn profile_room_owner(&self, room_id: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM profile_rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn all_profile_rooms(&self) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT user_id, room_id FROM profile_rooms").fetch_all(&self.pool).await
    }

    pub async fn insert_profile_room(&self, user_id: &str, room_id: &str) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO profile_rooms (user_id, room_id) VALUES ($1, $2)")
            .bind(user_id)
            .bind(room_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every stored peek: (user, device, room, stream position it started at, expiry ts).
    pub async fn all_peeks(&self) -> sqlx::Result<Vec<(String, String, String, i64, i64)>> {
        sqlx::query_as("SELECT user_id, device_id, room_id, stream_pos, expires_ts FROM peeks")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn insert_peek(
        &self,
        user_id: &str,
        device_id: &str,
        room_id: &str,
        pos: i64,
        expires_ts: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO peeks (user_id, device_id, room_id, stream_pos, expires_ts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, device_id, room_id) DO UPDATE SET stream_pos = excluded.stream_pos, \
             expires_ts = excluded.expires_ts",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(room_id)
        .bind(pos)
        .bind(expires_ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renew a peek (MSC2753: peeking again pushes the expiry back).
    pub async fn renew_peek(&self, user_id: &str, device_id: &str, room_id: &str, expires_ts: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE peeks SET expires_ts = $1 WHERE user_id = $2 AND device_id = $3 AND room_id = $4")
            .bind(expires_ts)
            .bind(user_id)
            .bind(device_id)
            .bind(room_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_peek(&self, user_id: &str, device_id: &str, room_id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM peeks WHERE user_id = $1 AND device_id = $2 AND room_id = $3")
            .bind(user_id)
            .bind(device_id)
            .bind(room_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_device_peeks(&self, user_id: &str, device_id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM peeks WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
