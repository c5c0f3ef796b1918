//! Key-backup tables (migration 0050): versions and backed-up sessions.
use crate::store::Store;

/// A backup version: (version, algorithm, auth_data JSON, etag).
pub type BackupVersionRow = (i64, String, String, i64);

/// A backed-up session: (room id, session id, first_message_index, forwarded_count,
/// is_verified as 0/1, session_data JSON).
pub type BackupSessionRow = (String, String, i64, i64, i64, String);

impl Store {
    pub async fn e2e_create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &str,
    ) -> sqlx::Result<i64> {
        let mut tx = self.begin().await?;
        let (max,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        let version = max.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data, etag, deleted) \
             VALUES ($1, $2, $3, $4, 0, 0)",
        )
        .bind(user_id)
        .bind(version)
        .bind(algorithm)
        .bind(auth_data)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A live version, or the newest live one for `None`.
    pub async fn e2e_backup_version(
        &self,
        user_id: &str,
        version: Option<i64>,
    ) -> sqlx::Result<Option<BackupVersionRow>> {
        match version {
            Some(v) => {
                sqlx::query_as(
                    "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions \
                     WHERE user_id = $1 AND version = $2 AND deleted = 0",
                )
                .bind(user_id)
                .bind(v)
                .fetch_optional(&self.pool)
                .await
            }
            None => {
                sqlx::query_as(
                    "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions \
                     WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
            }
        }
    }

    pub async fn e2e_update_backup_version(&self, user_id: &str, version: i64, auth_data: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE e2e_room_keys_versions SET auth_data = $1 WHERE user_id = $2 AND version = $3 AND deleted = 0",
        )
        .bind(auth_data)
        .bind(user_id)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Delete a version and its keys; false if there was no such live version.
    pub async fn e2e_delete_backup_version(&self, user_id: &str, version: i64) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE e2e_room_keys_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn e2e_backup_count(&self, user_id: &str, version: i64) -> sqlx::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Backed-up sessions of a version, optionally of one room and one session.
    pub async fn e2e_backup_sessions(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> sqlx::Result<Vec<BackupSessionRow>> {
        sqlx::query_as(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
             FROM e2e_room_keys WHERE user_id = $1 AND version = $2 AND ($3 = '' OR room_id = $3) \
             AND ($4 = '' OR session_id = $4) ORDER BY room_id, session_id",
        )
        .bind(user_id)
        .bind(version)
        .bind(room_id.unwrap_or(""))
        .bind(session_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
    }

    /// Write sessions (already chosen over what was stored) and bump the version's etag.
    pub async fn e2e_put_backup_sessions(
        &self,
        user_id: &str,
        version: i64,
        rows: &[BackupSessionRow],
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for (room, session, first, forwarded, verified, data) in rows {
            sqlx::query(
                "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, \
                 is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
                 first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
                 is_verified = excluded.is_verified, session_data = excluded.session_data",
            )
            .bind(user_id)
            .bind(version)
            .bind(room)
            .bind(session)
            .bind(*first)
            .bind(*forwarded)
            .bind(*verified)
            .bind(data)
            .execute(&mut *tx)
            .await?;
        }
        if !rows.is_empty() {
            sqlx::query("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Delete backed-up sessions (all, one room's, or one) and bump the etag.
    pub async fn e2e_delete_backup_sessions(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2 AND ($3 = '' OR room_id = $3) \
             AND ($4 = '' OR session_id = $4)",
        )
        .bind(user_id)
        .bind(version)
        .bind(room_id.unwrap_or(""))
        .bind(session_id.unwrap_or(""))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}
