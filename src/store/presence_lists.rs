//! Persisted presence lists (seeds 001/004): one row per (owner, target), pending or accepted.
use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceListRow {
    pub owner: String,
    pub target: String,
    /// `pending` or `accepted`.
    pub state: String,
    pub created_ts: i64,
}

impl Store {
    pub async fn load_presence_lists(&self) -> sqlx::Result<Vec<PresenceListRow>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT owner, target, state, created_ts FROM presence_list").fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(owner, target, state, created_ts)| PresenceListRow { owner, target, state, created_ts })
            .collect())
    }

    /// Insert or overwrite the entries in one transaction (an accepted entry may accept its
    /// reverse request too, and both must land together).
    pub async fn put_presence_list_entries(&self, rows: &[PresenceListRow]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO presence_list (owner, target, state, created_ts) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (owner, target) DO UPDATE SET state = excluded.state",
            )
            .bind(&r.owner)
            .bind(&r.target)
            .bind(&r.state)
            .bind(r.created_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Remove the entries; returns how many existed.
    pub async fn delete_presence_list_entries(&self, pairs: &[(String, String)]) -> sqlx::Result<u64> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut n = 0;
        for (owner, target) in pairs {
            n += sqlx::query("DELETE FROM presence_list WHERE owner = $1 AND target = $2")
                .bind(owner)
                .bind(target)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}
