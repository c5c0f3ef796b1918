//! The outbox (migration 0110), private to the sender.
use sqlx::Row;

use crate::store::Store;

pub(super) struct OutboxRow<'a> {
    pub seq: i64,
    pub destination: &'a str,
    pub event_id: &'a str,
    pub pdu: &'a str,
    pub queued_ts: i64,
}

impl Store {
    pub(super) async fn fed_outbox_max_seq(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT MAX(seq) FROM federation_outbox").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// Queue rows in one transaction; a PDU already queued for a destination stays queued once.
    pub(super) async fn fed_outbox_insert(&self, rows: &[OutboxRow<'_>]) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO federation_outbox (seq, destination, event_id, pdu, queued_ts) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (destination, event_id) DO NOTHING",
            )
            .bind(r.seq)
            .bind(r.destination)
            .bind(r.event_id)
            .bind(r.pdu)
            .bind(r.queued_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Drop all but the newest `keep` rows of a destination; returns how many were dropped.
    pub(super) async fn fed_outbox_trim(&self, destination: &str, keep: u64) -> sqlx::Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "DELETE FROM federation_outbox WHERE destination = $1 AND seq <= \
             (SELECT seq FROM federation_outbox WHERE destination = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
        )
        .bind(destination)
        .bind(keep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The oldest queued PDUs of a destination: (seq, PDU JSON).
    pub(super) async fn fed_outbox_batch(&self, destination: &str, limit: i64) -> sqlx::Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT seq, pdu FROM federation_outbox WHERE destination = $1 ORDER BY seq LIMIT $2")
            .bind(destination)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Dequeue a destination's PDUs up to and including `seq` (its last transaction).
    pub(super) async fn fed_outbox_delete(&self, destination: &str, seq: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM federation_outbox WHERE destination = $1 AND seq <= $2")
            .bind(destination)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn fed_outbox_destinations(&self) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT destination FROM federation_outbox").fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| r.try_get(0)).collect()
    }
}
