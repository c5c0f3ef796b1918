//! Storage of other servers' keys (migration 0090) and of our signing key when it lives in
//! the database (0100), private to the federation service.
use sqlx::Row;

use crate::store::Store;

/// One stored key of a server.
pub struct StoredKey {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
}

impl Store {
    /// The latest verified key response of `server`, with its `valid_until_ts`.
    pub(crate) async fn fed_key_response(&self, server: &str) -> sqlx::Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT response, valid_until_ts FROM federation_key_responses WHERE server_name = $1")
            .bind(server)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(crate) async fn fed_keys(&self, server: &str) -> sqlx::Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, valid_until_ts, expired_ts FROM federation_server_keys WHERE server_name = $1",
        )
        .bind(server)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredKey {
                key_id: r.get(0),
                public_key: r.get(1),
                valid_until_ts: r.get(2),
                expired_ts: r.get(3),
            })
            .collect())
    }

    /// Keep a verified key response and every key in it, in one transaction.
    pub(crate) async fn fed_put_keys(
        &self,
        server: &str,
        response: &str,
        valid_until_ts: i64,
        now: i64,
        keys: &[StoredKey],
    ) -> sqlx::Result<()> {
        // Same SQL on both backends (SQLite and PostgreSQL share `ON CONFLICT … excluded`).
        let upsert_response = "INSERT INTO federation_key_responses (server_name, response, valid_until_ts, fetched_ts) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (server_name) DO UPDATE SET \
                 response = excluded.response, valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts";
        let mut tx = self.begin().await?;
        sqlx::query(upsert_response)
            .bind(server)
            .bind(response)
            .bind(valid_until_ts)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO federation_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server_name, key_id) DO UPDATE SET \
                 public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts",
            )
            .bind(server)
            .bind(&k.key_id)
            .bind(&k.public_key)
            .bind(k.valid_until_ts)
            .bind(k.expired_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The signing key kept in the database (federation off, no key file), if any.
    pub(crate) async fn server_signing_key(&self) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT key_line FROM server_signing_key WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Keep a new signing key unless one is there already.
    pub(crate) async fn put_server_signing_key(&self, key_line: &str) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO server_signing_key (id, key_line) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(key_line)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
