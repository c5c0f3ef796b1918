//! The room DAG beside the timeline (migration 0100): forward extremities of forked rooms,
//! and events known but not in the timeline (outliers, rejected events).
use super::Store;
use crate::rooms::event::Pdu;

impl Store {
    /// The forward extremities kept for a forked room, with their depths (empty: not forked).
    pub(crate) async fn forward_extremities(&self, room_id: &str) -> sqlx::Result<Vec<(String, i64)>> {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM room_forward_extremities WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let depth: Option<(i64,)> = sqlx::query_as("SELECT depth FROM events WHERE event_id = $1")
                .bind(&id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some((d,)) = depth {
                out.push((id, d));
            }
        }
        Ok(out)
    }

    /// Replace the kept extremities of a room (none: the room is linear again).
    pub(crate) async fn set_forward_extremities(&self, room_id: &str, ids: &[&str]) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM room_forward_extremities WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
        for id in ids {
            sqlx::query("INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($1, $2)")
                .bind(room_id)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Keep an event outside the timeline (an outlier, or a rejected event with the reason).
    /// Known events are left as they are.
    pub(crate) async fn put_outlier(&self, pdu: &Pdu, rejected: Option<&str>) -> sqlx::Result<()> {
        let json = serde_json::to_string(pdu).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO room_outliers (event_id, room_id, json, rejected) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&pdu.event_id)
        .bind(&pdu.room_id)
        .bind(&json)
        .bind(rejected)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An event known to this server, in the timeline or not: (stream position if in the
    /// timeline, the event, why it was rejected if it was).
    pub(crate) async fn any_event(&self, event_id: &str) -> sqlx::Result<Option<(Option<i64>, Pdu, Option<String>)>> {
        if let Some((pos, pdu)) = self.get_event(event_id).await? {
            return Ok(Some((Some(pos), pdu, None)));
        }
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT json, rejected FROM room_outliers WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(j, r)| Some((None, serde_json::from_str(&j).ok()?, r))))
    }
}

impl Store {
    /// Point the current state of a room at the given events (the outcome of state
    /// resolution, or the state received with a join), memberships included; `pos` is the
    /// stream position the change is recorded at.
    pub(crate) async fn overwrite_current_state(&self, room_id: &str, events: &[&Pdu], pos: i64) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for pdu in events {
            let Some(sk) = &pdu.state_key else { continue };
            sqlx::query(
                "INSERT INTO current_state (room_id, event_type, state_key, event_id, stream_ordering) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
            )
            .bind(room_id)
            .bind(&pdu.kind)
            .bind(sk)
            .bind(&pdu.event_id)
            .bind(pos)
            .execute(&mut *tx)
            .await?;
            if let Some(m) = pdu.membership() {
                sqlx::query(
                    "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
                )
                .bind(room_id)
                .bind(sk)
                .bind(m)
                .bind(&pdu.event_id)
                .bind(pos)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }

    /// Remove state keys a state resolution dropped from the room's current state (and, for
    /// `m.room.member`, the user's membership row), in one transaction.
    pub(crate) async fn drop_current_state(&self, room_id: &str, keys: &[(String, String)]) -> sqlx::Result<()> {
        let mut tx = self.begin().await?;
        for (kind, state_key) in keys {
            sqlx::query("DELETE FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3")
                .bind(room_id)
                .bind(kind)
                .bind(state_key)
                .execute(&mut *tx)
                .await?;
            if kind == "m.room.member" {
                sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(state_key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// A room this server learnt of over federation (a join or an invite), unless known.
    pub(crate) async fn ensure_room(&self, room_id: &str, creator: &str, version: &str, now: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO rooms (room_id, creator, room_version, room_type, created_ts) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room_id)
        .bind(creator)
        .bind(version)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
