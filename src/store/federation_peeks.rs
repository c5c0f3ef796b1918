//! Peeks over federation (MSC2444): the peeks other servers hold on our rooms, and ours on
//! theirs (`migrations/*/0150_federation_peeks.sql`).
use super::Store;

impl Store {
    /// Every served peek: (room, server, peek id, expiry ts).
    pub async fn all_served_peeks(&self) -> sqlx::Result<Vec<(String, String, String, i64)>> {
        sqlx::query_as("SELECT room_id, server, peek_id, expires_ts FROM federation_peeks_served")
            .fetch_all(&self.pool)
            .await
    }

    /// Start or renew a served peek.
    pub async fn put_served_peek(
        &self,
        room_id: &str,
        server: &str,
        peek_id: &str,
        expires_ts: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO federation_peeks_served (room_id, server, peek_id, expires_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, server, peek_id) DO UPDATE SET expires_ts = excluded.expires_ts",
        )
        .bind(room_id)
        .bind(server)
        .bind(peek_id)
        .bind(expires_ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_served_peek(&self, room_id: &str, server: &str, peek_id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM federation_peeks_served WHERE room_id = $1 AND server = $2 AND peek_id = $3")
            .bind(room_id)
            .bind(server)
            .bind(peek_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every peek of ours: (room, server, peek id, renewal interval ms, active).
    pub async fn all_peeks_out(&self) -> sqlx::Result<Vec<(String, String, String, i64, i64)>> {
        sqlx::query_as("SELECT room_id, server, peek_id, renewal_interval_ms, active FROM federation_peeks_out")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn put_peek_out(
        &self,
        room_id: &str,
        server: &str,
        peek_id: &str,
        renewal_interval_ms: i64,
        active: bool,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO federation_peeks_out (room_id, server, peek_id, renewal_interval_ms, active) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) DO UPDATE SET server = excluded.server, \
             peek_id = excluded.peek_id, renewal_interval_ms = excluded.renewal_interval_ms, active = excluded.active",
        )
        .bind(room_id)
        .bind(server)
        .bind(peek_id)
        .bind(renewal_interval_ms)
        .bind(i64::from(active))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
