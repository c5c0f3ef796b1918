//! Users, devices and access tokens.
use super::Store;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: i64,
}

impl Store {
    /// Insert a user; returns `Ok(false)` when the id is taken.
    pub(crate) async fn insert_user(&self, user_id: &str, password_hash: &str, now: i64) -> sqlx::Result<bool> {
        let res =
            sqlx::query("INSERT INTO users (user_id, password_hash, displayname, created_ts) VALUES ($1, $2, $3, $4)")
                .bind(user_id)
                .bind(password_hash)
                .bind(user_id.trim_start_matches('@').split(':').next().unwrap_or_default())
                .bind(now)
                .execute(&self.pool)
                .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if crate::error::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// (user id, display name, avatar url) of the users among `user_ids` that exist, in
    /// chunks under every database's bind-parameter limit.
    pub(crate) async fn get_profiles(
        &self,
        user_ids: &[String],
    ) -> sqlx::Result<Vec<(String, Option<String>, Option<String>)>> {
        const CHUNK: usize = 500;
        let mut out = Vec::with_capacity(user_ids.len());
        for chunk in user_ids.chunks(CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT user_id, displayname, avatar_url FROM users WHERE user_id IN ({})", marks.join(", "));
            let mut q = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    pub(crate) async fn get_user(&self, user_id: &str) -> sqlx::Result<Option<UserRow>> {
        let row: Option<(String, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT user_id, password_hash, displayname, avatar_url FROM users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(user_id, password_hash, displayname, avatar_url)| UserRow {
            user_id,
            password_hash,
            displayname,
            avatar_url,
        }))
    }

    pub(crate) async fn set_displayname(&self, user_id: &str, name: Option<&str>) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET displayname = $1 WHERE user_id = $2")
            .bind(name)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn set_avatar_url(&self, user_id: &str, url: Option<&str>) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET avatar_url = $1 WHERE user_id = $2")
            .bind(url)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Create (or refresh) a device and give it a new access token, in one transaction.
    /// Returns the device's earlier tokens, which this ended.
    pub(crate) async fn create_device_with_token(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
        now: i64,
    ) -> sqlx::Result<Vec<String>> {
        let mut tx = self.begin().await?;
        // Re-using a device id logs the old session of that device out (spec: login).
        let ended = delete_tokens(&mut tx, user_id, device_id).await?;
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts, \
             display_name = COALESCE(excluded.display_name, devices.display_name)",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(display_name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO access_tokens (token, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(token)
            .bind(user_id)
            .bind(device_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ended)
    }

    pub(crate) async fn token_owner(&self, token: &str) -> sqlx::Result<Option<(String, String)>> {
        sqlx::query_as("SELECT user_id, device_id FROM access_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await
    }

    /// Remove a device and every token of it; returns the tokens removed. The transaction
    /// writes first (`DELETE … RETURNING`), so on SQLite it takes the write lock up front
    /// instead of failing to upgrade a read.
    pub(crate) async fn delete_device(&self, user_id: &str, device_id: &str) -> sqlx::Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let tokens = delete_tokens(&mut tx, user_id, device_id).await?;
        sqlx::query("DELETE FROM devices WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(tokens)
    }

    pub(crate) async fn list_devices(&self, user_id: &str) -> sqlx::Result<Vec<DeviceRow>> {
        let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "SELECT device_id, display_name, last_seen_ts FROM devices WHERE user_id = $1 ORDER BY created_ts",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(device_id, display_name, last_seen_ts)| DeviceRow { device_id, display_name, last_seen_ts })
            .collect())
    }
}

/// Delete every access token of a device; returns them (the caller drops them from its cache).
async fn delete_tokens(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    device_id: &str,
) -> sqlx::Result<Vec<String>> {
    let tokens: Vec<(String,)> =
        sqlx::query_as("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 RETURNING token")
            .bind(user_id)
            .bind(device_id)
            .fetch_all(&mut **tx)
            .await?;
    Ok(tokens.into_iter().map(|t| t.0).collect())
}
