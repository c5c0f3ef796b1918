//! Account data (global and per room) and forgotten rooms.
use super::Store;

/// One stored piece of account data: (room id, '' for global; type; content JSON; stream position).
pub type AccountDataRow = (String, String, String, i64);

impl Store {
    pub(crate) async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        kind: &str,
        content: &str,
        pos: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(kind)
        .bind(content)
        .bind(pos)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn get_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        kind: &str,
    ) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3")
                .bind(user_id)
                .bind(room_id)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// A user's account data changed in `(after, upto]` (all of it for `after` = -1).
    pub(crate) async fn account_data_between(
        &self,
        user_id: &str,
        after: i64,
        upto: i64,
    ) -> sqlx::Result<Vec<AccountDataRow>> {
        sqlx::query_as(
            "SELECT room_id, data_type, content, stream_pos FROM account_data \
             WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
        )
        .bind(user_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await
    }

    /// A user's account data for one room up to `upto`.
    pub(crate) async fn room_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        upto: i64,
    ) -> sqlx::Result<Vec<AccountDataRow>> {
        sqlx::query_as(
            "SELECT room_id, data_type, content, stream_pos FROM account_data \
             WHERE user_id = $1 AND room_id = $2 AND stream_pos <= $3 ORDER BY stream_pos",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(upto)
        .fetch_all(&self.pool)
        .await
    }

    /// Newest account-data position of every user (loaded once at start-up).
    pub(crate) async fn account_data_last_positions(&self) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT user_id, MAX(stream_pos) FROM account_data GROUP BY user_id").fetch_all(&self.pool).await
    }

    pub(crate) async fn forget_room(&self, user_id: &str, room_id: &str, membership_pos: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO forgotten_rooms (user_id, room_id, membership_pos) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, room_id) DO UPDATE SET membership_pos = excluded.membership_pos",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(membership_pos)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (room id, membership position when forgotten) for every room the user forgot.
    pub(crate) async fn forgotten_rooms(&self, user_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT room_id, membership_pos FROM forgotten_rooms WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }
}
