//! Stored `/sync` filters.
use super::Store;

impl Store {
    pub async fn insert_filter(&self, user_id: &str, json: &str) -> sqlx::Result<i64> {
        let mut tx = self.pool.begin().await?;
        let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(filter_id) FROM filters WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let id = max.unwrap_or(-1) + 1;
        sqlx::query("INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(id)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
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
