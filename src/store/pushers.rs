//! Pushers (spec "Push Notifications"): stored as the client sent them, keyed by
//! (user, app_id, pushkey).
use super::Store;

impl Store {
    /// Add or replace a pusher. Unless `append`, the same (app_id, pushkey) of other users is
    /// removed (spec `POST /pushers/set`).
    pub async fn put_pusher(
        &self,
        user_id: &str,
        app_id: &str,
        pushkey: &str,
        json: &str,
        append: bool,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        if !append {
            sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                .bind(app_id)
                .bind(pushkey)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, json, created_ts) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET json = excluded.json",
        )
        .bind(user_id)
        .bind(app_id)
        .bind(pushkey)
        .bind(json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
            .bind(user_id)
            .bind(app_id)
            .bind(pushkey)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn pushers(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT json FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    pub async fn count_pushers(&self, user_id: &str) -> sqlx::Result<i64> {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pushers WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.0)
    }
}
