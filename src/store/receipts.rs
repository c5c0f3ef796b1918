//! Read receipts: the latest per (room, user, receipt type, thread).
use super::Store;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReceiptRow {
    pub user_id: String,
    pub receipt_type: String,
    /// '' for an unthreaded receipt.
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
    pub stream_pos: i64,
}

/// A receipt to record: the receipted event and its stream position.
pub struct NewReceipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub receipt_type: &'a str,
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub event_pos: i64,
    pub ts: i64,
}

impl Store {
    /// Record a receipt at stream position `pos`. A receipt only moves forward: returns
    /// `false` (nothing written) if the user already has one at this event or a later one.
    pub async fn put_receipt(&self, r: &NewReceipt<'_>, pos: i64) -> sqlx::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id, \
             event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos \
             WHERE receipts.event_pos < excluded.event_pos",
        )
        .bind(r.room_id)
        .bind(r.user_id)
        .bind(r.receipt_type)
        .bind(r.thread_id)
        .bind(r.event_id)
        .bind(r.event_pos)
        .bind(r.ts)
        .bind(pos)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Receipts of a room written in `(after, upto]`.
    pub async fn receipts_between(&self, room_id: &str, after: i64, upto: i64) -> sqlx::Result<Vec<ReceiptRow>> {
        sqlx::query_as(
            "SELECT user_id, receipt_type, thread_id, event_id, ts, stream_pos FROM receipts \
             WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
        )
        .bind(room_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await
    }

    /// Newest receipt position of every room (loaded once at start-up).
    pub async fn receipt_last_positions(&self) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT room_id, MAX(stream_pos) FROM receipts GROUP BY room_id").fetch_all(&self.pool).await
    }
}
