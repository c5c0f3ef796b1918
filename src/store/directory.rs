//! The public room directory (which rooms are published) and the user directory search.
use super::Store;

impl Store {
    pub(crate) async fn set_room_published(&self, room_id: &str, published: bool, now: i64) -> sqlx::Result<()> {
        if published {
            sqlx::query(
                "INSERT INTO room_directory (room_id, published_ts) VALUES ($1, $2) ON CONFLICT (room_id) DO NOTHING",
            )
            .bind(room_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM room_directory WHERE room_id = $1").bind(room_id).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub(crate) async fn is_room_published(&self, room_id: &str) -> sqlx::Result<bool> {
        let row: Option<(String,)> = sqlx::query_as("SELECT room_id FROM room_directory WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Every published room, oldest first.
    pub(crate) async fn published_rooms(&self) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT room_id FROM room_directory ORDER BY published_ts, room_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Users whose id or display name contains `term` (lower case), at most `limit`:
    /// (user id, display name, avatar url).
    pub(crate) async fn search_users(
        &self,
        term: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<(String, Option<String>, Option<String>)>> {
        let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        sqlx::query_as(
            "SELECT user_id, displayname, avatar_url FROM users \
             WHERE LOWER(user_id) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(displayname, '')) LIKE $1 ESCAPE '\\' \
             ORDER BY user_id LIMIT $2",
        )
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}
