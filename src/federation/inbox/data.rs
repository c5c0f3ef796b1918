//! Answers to incoming transactions (migration 0110), private to the inbox.
use sqlx::Row;

use crate::store::Store;

impl Store {
    pub(super) async fn fed_txn_answer(&self, origin: &str, txn_id: &str) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT answer FROM federation_txn_answers WHERE origin = $1 AND txn_id = $2")
            .bind(origin)
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub(super) async fn fed_put_txn_answer(
        &self,
        origin: &str,
        txn_id: &str,
        answer: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO federation_txn_answers (origin, txn_id, answer, ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (origin, txn_id) DO NOTHING",
        )
        .bind(origin)
        .bind(txn_id)
        .bind(answer)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn fed_prune_txn_answers(&self, before: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM federation_txn_answers WHERE ts < $1").bind(before).execute(&self.pool).await?;
        Ok(())
    }
}
