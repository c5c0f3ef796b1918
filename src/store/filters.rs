//! Stored `/sync` filters.
use super::Store;

impl Store {
    /// Store a filter under the user's next filter id. One statement, so it never upgrades a
    /// read to a write; a concurrent insert that took the same id is retried.
    pub async fn insert_filter(&self, user_id: &str, json: &str) -> sqlx::Result<i64> {
        let mut attempt = 0;
        loop {
            let res: sqlx::Result<(i64,)> = sqlx::query_as(
                "INSERT INTO filters (user_id, filter_id, filter_json) \
                 SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $1 RETURNING filter_id",
            )
            .bind(user_id)
            .bind(json)
            .fetch_one(&self.pool)
            .await;
            match res {
                Err(e) if attempt < 5 && crate::error::is_unique_violation(&e) => attempt += 1,
                other => return other.map(|r| r.0),
            }
        }
    }

    pub async fn count_filters(&self, user_id: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM filters WHERE user_id = $1").bind(user_id).fetch_one(&self.pool).await
    }

    pub async fn get_filter(&self, user_id: &str, filter_id: i64) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2")
                .bind(user_id)
                .bind(filter_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }
}
