//! Event relations (`m.relates_to`), indexed by the parent event.
use super::Store;

pub struct NewRelation<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub parent_id: &'a str,
    pub rel_type: &'a str,
    pub event_type: &'a str,
    pub pos: i64,
}

impl Store {
    pub(crate) async fn insert_relation(&self, r: &NewRelation<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO event_relations (event_id, room_id, parent_id, rel_type, event_type, stream_ordering) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(r.event_id)
        .bind(r.room_id)
        .bind(r.parent_id)
        .bind(r.rel_type)
        .bind(r.event_type)
        .bind(r.pos)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Children of `parent_id` in `room_id` with a stream position in `(after, before)`,
    /// optionally of one relation type and event type, newest first unless `forward`:
    /// (event id, stream position).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn relations(
        &self,
        room_id: &str,
        parent_id: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        after: i64,
        before: i64,
        forward: bool,
        limit: i64,
    ) -> sqlx::Result<Vec<(String, i64)>> {
        let order = if forward { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT event_id, stream_ordering FROM event_relations \
             WHERE room_id = $1 AND parent_id = $2 AND ($3 = '' OR rel_type = $3) AND ($4 = '' OR event_type = $4) \
             AND stream_ordering > $5 AND stream_ordering < $6 ORDER BY stream_ordering {order} LIMIT $7"
        );
        sqlx::query_as(&sql)
            .bind(room_id)
            .bind(parent_id)
            .bind(rel_type.unwrap_or(""))
            .bind(event_type.unwrap_or(""))
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }
}
