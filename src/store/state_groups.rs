//! State groups (migration 0160): the room state at each event, kept as snapshots and
//! deltas against a parent group, and per event the group before and after it.
use std::collections::BTreeMap;

use super::Store;
use crate::rooms::event::Pdu;

/// A room state as ids: (type, state key) -> event id.
pub type StateIds = BTreeMap<(String, String), String>;

/// The group id of the empty state (never stored).
pub const EMPTY_GROUP: i64 = 0;

/// A group to write: a snapshot (`parent` `None`) or a delta against `parent`.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: i64,
    pub room_id: String,
    pub parent: Option<i64>,
    pub chain_len: i64,
    /// (type, state key, event id); an empty event id removes the key.
    pub entries: Vec<(String, String, String)>,
}

/// The state groups of one event, written in the same transaction as the event.
#[derive(Debug, Clone, Default)]
pub struct EventGroups {
    pub before: i64,
    pub after: i64,
    /// Groups first used by this event.
    pub new: Vec<NewGroup>,
}

pub(super) async fn write_groups(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event_id: &str,
    groups: &EventGroups,
) -> sqlx::Result<()> {
    for g in &groups.new {
        sqlx::query("INSERT INTO state_groups (group_id, room_id, parent, chain_len) VALUES ($1, $2, $3, $4)")
            .bind(g.id)
            .bind(&g.room_id)
            .bind(g.parent)
            .bind(g.chain_len)
            .execute(&mut **tx)
            .await?;
        for (kind, sk, id) in &g.entries {
            sqlx::query(
                "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(g.id)
            .bind(kind)
            .bind(sk)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO event_state_groups (event_id, before_group, after_group) VALUES ($1, $2, $3) \
         ON CONFLICT (event_id) DO UPDATE SET before_group = excluded.before_group, after_group = excluded.after_group",
    )
    .bind(event_id)
    .bind(groups.before)
    .bind(groups.after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// The highest group id in use (0: none).
    pub(crate) async fn max_state_group(&self) -> sqlx::Result<i64> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT MAX(group_id) FROM state_groups").fetch_one(&self.pool).await?;
        Ok(row.0.unwrap_or(0))
    }

    /// The lowest stream position of any event (0: none below 1).
    pub(crate) async fn min_stream_ordering(&self) -> sqlx::Result<i64> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT MIN(stream_ordering) FROM events").fetch_one(&self.pool).await?;
        Ok(row.0.unwrap_or(0))
    }

    /// (before, after) groups of an event, if its state is known.
    pub(crate) async fn event_groups(&self, event_id: &str) -> sqlx::Result<Option<(i64, i64)>> {
        sqlx::query_as("SELECT before_group, after_group FROM event_state_groups WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The length of a group's delta chain (0 for a snapshot or the empty group).
    pub(crate) async fn state_group_chain_len(&self, group: i64) -> sqlx::Result<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT chain_len FROM state_groups WHERE group_id = $1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |r| r.0))
    }

    /// The state a group stands for: its snapshot with the deltas down to it applied.
    pub(crate) async fn load_state_group(&self, group: i64) -> sqlx::Result<StateIds> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "WITH RECURSIVE chain(g, n) AS ( \
               SELECT CAST($1 AS BIGINT), CAST(0 AS BIGINT) \
               UNION ALL SELECT s.parent, chain.n + 1 FROM state_groups s JOIN chain ON s.group_id = chain.g \
               WHERE s.parent IS NOT NULL AND chain.n < 1000) \
             SELECT chain.n, e.event_type, e.state_key, e.event_id \
             FROM chain JOIN state_group_entries e ON e.group_id = chain.g",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        let mut rows = rows;
        // Farthest first: a nearer delta overrides.
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut out = StateIds::new();
        for (_, kind, sk, id) in rows {
            if id.is_empty() {
                out.remove(&(kind, sk));
            } else {
                out.insert((kind, sk), id);
            }
        }
        Ok(out)
    }

    /// An event kept outside the timeline (a soft-failed one) with its state groups, in
    /// one transaction.
    pub(crate) async fn put_outlier_with_groups(&self, pdu: &Pdu, groups: &EventGroups) -> sqlx::Result<()> {
        let json = serde_json::to_string(pdu).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO room_outliers (event_id, room_id, json, rejected) VALUES ($1, $2, $3, NULL) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&pdu.event_id)
        .bind(&pdu.room_id)
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        write_groups(&mut tx, &pdu.event_id, groups).await?;
        tx.commit().await
    }

    /// Outliers by id (not rejected ones); unknown ids are left out.
    pub(crate) async fn outlier_events(&self, event_ids: &[String]) -> sqlx::Result<Vec<Pdu>> {
        let mut out = Vec::new();
        for chunk in event_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT json FROM room_outliers WHERE rejected IS NULL AND event_id IN ({})", marks.join(", "));
            let mut q = sqlx::query_as::<_, (String,)>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?.into_iter().filter_map(|(j,)| serde_json::from_str(&j).ok()));
        }
        Ok(out)
    }
}
