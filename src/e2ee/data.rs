//! The encryption service's tables (migration 0050): device keys, one-time and fallback
//! keys, cross-signing keys and signatures, device-list changes, to-device messages.
use crate::store::Store;

/// A to-device message as stored: (stream position, sender, event type, content JSON).
pub type ToDeviceRow = (i64, String, String, String);

/// A signature row: (signer, signing key id, target user, target key id, signature).
pub type SignatureRow = (String, String, String, String, String);

impl Store {
    pub async fn e2e_device_keys(&self, user_id: &str) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn e2e_device_key(&self, user_id: &str, device_id: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Store a device's keys, one-time keys and fallback keys in one transaction. One-time
    /// keys already stored under the same id are left alone (the caller checked they match).
    pub async fn e2e_upload_keys(
        &self,
        user_id: &str,
        device_id: &str,
        device_keys: Option<&str>,
        one_time_keys: &[(String, String, String)],
        fallback_keys: &[(String, String, String)],
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        if let Some(json) = device_keys {
            sqlx::query(
                "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        for (algorithm, key_id, json) in one_time_keys {
            sqlx::query(
                "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(key_id)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        for (algorithm, key_id, json) in fallback_keys {
            // Re-uploading the same fallback key keeps its used flag; a new key is unused.
            sqlx::query(
                "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
                 VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET \
                 used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id AND e2e_fallback_keys.key_json = excluded.key_json \
                 THEN e2e_fallback_keys.used ELSE 0 END, key_id = excluded.key_id, key_json = excluded.key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(key_id)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The stored one-time keys among `key_ids` of a device: (algorithm, key id, JSON).
    pub async fn e2e_one_time_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
        key_id: &str,
    ) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Unclaimed one-time keys per algorithm of a device.
    pub async fn e2e_one_time_key_counts(&self, user_id: &str, device_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Algorithms of a device's fallback keys that nobody claimed yet.
    pub async fn e2e_unused_fallback_algorithms(&self, user_id: &str, device_id: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0 ORDER BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Take one one-time key of `algorithm` (deleted: each is handed out once), else the
    /// fallback key (marked used). Returns (algorithm:key id, key JSON).
    pub async fn e2e_claim_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> sqlx::Result<Option<(String, String)>> {
        // A concurrent claim may take the key we picked: try a few picks before the fallback.
        for _ in 0..3 {
            let pick: Option<(String, String)> = sqlx::query_as(
                "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
                 ORDER BY key_id LIMIT 1",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(&self.pool)
            .await?;
            let Some((key_id, json)) = pick else { break };
            let deleted = sqlx::query(
                "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(&key_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if deleted == 1 {
                return Ok(Some((format!("{algorithm}:{key_id}"), json)));
            }
        }
        let fallback: Option<(String, String)> = sqlx::query_as(
            "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(&self.pool)
        .await?;
        let Some((key_id, json)) = fallback else { return Ok(None) };
        sqlx::query("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3")
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .execute(&self.pool)
            .await?;
        Ok(Some((format!("{algorithm}:{key_id}"), json)))
    }

    /// A device is gone: its keys and its waiting to-device messages go with it.
    pub async fn e2e_delete_device(&self, user_id: &str, device_id: &str) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for table in ["e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_to_device"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"))
                .bind(user_id)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2")
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    pub async fn e2e_cross_signing_keys(&self, user_id: &str) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    /// Replace some of a user's cross-signing keys in one transaction. A new master key
    /// invalidates every signature made by or on the old identity.
    pub async fn e2e_put_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(&str, String)],
        master_changed: bool,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        if master_changed {
            sqlx::query("DELETE FROM e2e_signatures WHERE signer_user_id = $1 OR target_user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        for (key_type, json) in keys {
            sqlx::query(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
            )
            .bind(user_id)
            .bind(*key_type)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub async fn e2e_put_signatures(&self, rows: &[SignatureRow]) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for (signer, signing_key, target_user, target_key, signature) in rows {
            sqlx::query(
                "INSERT INTO e2e_signatures (signer_user_id, signing_key_id, target_user_id, target_key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signer_user_id, signing_key_id, target_user_id, target_key_id) \
                 DO UPDATE SET signature = excluded.signature",
            )
            .bind(signer)
            .bind(signing_key)
            .bind(target_user)
            .bind(target_key)
            .bind(signature)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Signatures on `target_user_id`'s keys.
    pub async fn e2e_signatures_on(&self, target_user_id: &str) -> sqlx::Result<Vec<SignatureRow>> {
        sqlx::query_as(
            "SELECT signer_user_id, signing_key_id, target_user_id, target_key_id, signature FROM e2e_signatures \
             WHERE target_user_id = $1",
        )
        .bind(target_user_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn e2e_set_device_list_change(&self, user_id: &str, pos: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO e2e_device_list_changes (user_id, stream_pos) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET stream_pos = excluded.stream_pos",
        )
        .bind(user_id)
        .bind(pos)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn e2e_device_list_changes(&self) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT user_id, stream_pos FROM e2e_device_list_changes").fetch_all(&self.pool).await
    }

    /// Queue to-device messages under one stream position and record the transaction id, in
    /// one transaction. Returns false (and writes nothing) if the transaction id was used.
    pub async fn e2e_enqueue_to_device(
        &self,
        sender: (&str, &str),
        txn_id: &str,
        now: i64,
        pos: i64,
        event_type: &str,
        messages: &[(String, String, String)],
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO e2e_to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
        )
        .bind(sender.0)
        .bind(sender.1)
        .bind(txn_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        for (user_id, device_id, content) in messages {
            sqlx::query(
                "INSERT INTO e2e_to_device (user_id, device_id, stream_pos, sender, event_type, content) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(pos)
            .bind(sender.0)
            .bind(event_type)
            .bind(content)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Waiting messages per device of a user (for the queue bound).
    pub async fn e2e_to_device_queue_lengths(&self, user_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT device_id, COUNT(*) FROM e2e_to_device WHERE user_id = $1 GROUP BY device_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    /// Delete the messages a device acknowledged (delivered in a response whose token is at
    /// or below `since`), then hand out up to `limit` of the rest up to `upto`, marking them
    /// delivered in `upto`.
    pub async fn e2e_take_to_device(
        &self,
        user_id: &str,
        device_id: &str,
        since: Option<i64>,
        upto: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<ToDeviceRow>> {
        if let Some(since) = since {
            sqlx::query(
                "DELETE FROM e2e_to_device WHERE user_id = $1 AND device_id = $2 AND delivered_in IS NOT NULL \
                 AND delivered_in <= $3",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(since)
            .execute(&self.pool)
            .await?;
        }
        let rows: Vec<ToDeviceRow> = sqlx::query_as(
            "SELECT stream_pos, sender, event_type, content FROM e2e_to_device WHERE user_id = $1 AND device_id = $2 \
             AND stream_pos <= $3 ORDER BY stream_pos LIMIT $4",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        if let Some(last) = rows.last() {
            sqlx::query(
                "UPDATE e2e_to_device SET delivered_in = $1 WHERE user_id = $2 AND device_id = $3 AND stream_pos <= $4",
            )
            .bind(upto)
            .bind(user_id)
            .bind(device_id)
            .bind(last.0)
            .execute(&self.pool)
            .await?;
        }
        Ok(rows)
    }

    /// Forget transaction ids older than `before` (a retry comes within minutes, not days).
    pub async fn e2e_prune_to_device_txns(&self, before: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM e2e_to_device_txns WHERE created_ts < $1").bind(before).execute(&self.pool).await?;
        Ok(())
    }
}
