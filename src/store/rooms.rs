//! Rooms, events, current state, memberships, aliases and transaction ids.
use super::state_groups::EventGroups;
use super::Store;
use crate::rooms::event::Pdu;

fn decode(json: &str) -> sqlx::Result<Pdu> {
    serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// One event row that cannot be decoded (written before a limit existed, or damaged) must
/// never fail a whole `/sync`, `/messages` or room-state load: it is logged and skipped.
fn decode_or_skip(pos: Option<i64>, json: &str) -> Option<Pdu> {
    match decode(json) {
        Ok(pdu) => Some(pdu),
        Err(e) => {
            tracing::error!(stream_ordering = ?pos, error = %e, "undecodable event row skipped");
            None
        }
    }
}

fn decode_rows(rows: Vec<(i64, String)>) -> Vec<(i64, Pdu)> {
    rows.into_iter().filter_map(|(p, j)| Some((p, decode_or_skip(Some(p), &j)?))).collect()
}

/// The `rooms` row of a new room and what it claims in the same transaction
/// (see [`Store::create_room`]).
pub struct NewRoom<'a> {
    pub room_id: &'a str,
    pub creator: &'a str,
    pub version: &'a str,
    pub room_type: Option<&'a str>,
    pub now: i64,
    pub aliases: Vec<String>,
    /// Profile rooms take their reserved aliases over from a squatter (issue 10, defect 4).
    pub reclaim_aliases: bool,
    /// Listed in the public room directory (`createRoom` with `visibility: public`).
    pub published: bool,
    /// The owner, for a profile room (MSC1769).
    pub profile_owner: Option<&'a str>,
}

impl Store {
    /// Write a new room with its initial events and what it claims beside them (aliases,
    /// directory entry, profile-room row) in one transaction, so a crash or a race never
    /// leaves half a room. `Ok(false)`: an alias was taken (nothing is written).
    /// `pub` for `benches/retention.rs`, which builds profile-room history directly.
    pub async fn create_room(
        &self,
        room: &NewRoom<'_>,
        events: &[(&Pdu, i64, Option<&EventGroups>)],
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, creator, room_version, room_type, created_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(room.room_id)
        .bind(room.creator)
        .bind(room.version)
        .bind(room.room_type)
        .bind(room.now)
        .execute(&mut *tx)
        .await?;
        for (pdu, pos, groups) in events {
            write_event(&mut tx, pdu, *pos, None, *groups).await?;
        }
        for alias in &room.aliases {
            if room.reclaim_aliases {
                sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(&mut *tx).await?;
            }
            let res = sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
                .bind(alias)
                .bind(room.room_id)
                .bind(room.creator)
                .execute(&mut *tx)
                .await;
            match res {
                Ok(_) => {}
                Err(e) if crate::error::is_unique_violation(&e) => {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        if room.published {
            sqlx::query("INSERT INTO room_directory (room_id, published_ts) VALUES ($1, $2)")
                .bind(room.room_id)
                .bind(room.now)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(owner) = room.profile_owner {
            sqlx::query("INSERT INTO profile_rooms (user_id, room_id) VALUES ($1, $2)")
                .bind(owner)
                .bind(room.room_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn room_exists(&self, room_id: &str) -> sqlx::Result<bool> {
        let row: Option<(String,)> = sqlx::query_as("SELECT room_id FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Write one event and everything derived from it (current state, membership, txn id)
    /// in one transaction: either all of it is stored or none.
    pub(crate) async fn persist_event(&self, pdu: &Pdu, pos: i64, txn_owner: Option<&str>) -> sqlx::Result<()> {
        self.persist_event_with_groups(pdu, pos, txn_owner, None).await
    }

    /// [`Store::persist_event`] with the groups of the state before and after the event
    /// (`state_groups.rs`), written in the same transaction.
    pub(crate) async fn persist_event_with_groups(
        &self,
        pdu: &Pdu,
        pos: i64,
        txn_owner: Option<&str>,
        groups: Option<&EventGroups>,
    ) -> sqlx::Result<()> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        write_event(&mut tx, pdu, pos, txn_owner, groups).await?;
        tx.commit().await
    }

    /// Write several events in one transaction (server-authored: no transaction ids).
    pub async fn persist_events(&self, events: &[(&Pdu, i64)]) -> sqlx::Result<()> {
        let rows: Vec<(&Pdu, i64, Option<&EventGroups>)> = events.iter().map(|(p, pos)| (*p, *pos, None)).collect();
        self.persist_events_grouped(&rows).await
    }

    /// [`Store::persist_events`] with each event's state groups.
    pub(crate) async fn persist_events_grouped(
        &self,
        events: &[(&Pdu, i64, Option<&EventGroups>)],
    ) -> sqlx::Result<()> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        if events.len() > 1 && batchable(events) {
            write_events_batched(&mut tx, events).await?;
        } else {
            for (pdu, pos, groups) in events {
                write_event(&mut tx, pdu, *pos, None, *groups).await?;
            }
        }
        tx.commit().await
    }

    /// A room's current state as the in-memory cache keeps it (`rooms/state.rs`): every
    /// state event but memberships whole, and per member only (user id, event id,
    /// membership), without decoding the member events.
    pub(crate) async fn load_room_state_compact(
        &self,
        room_id: &str,
    ) -> sqlx::Result<(Vec<(Pdu, String)>, Vec<(String, String, Option<String>)>)> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT e.json FROM current_state c JOIN events e ON e.event_id = c.event_id \
             WHERE c.room_id = $1 AND c.event_type <> 'm.room.member'",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        // The text is what the room state keeps; the decoded event only builds it.
        let events = rows.into_iter().filter_map(|(json,)| Some((decode_or_skip(None, &json)?, json))).collect();
        // `memberships` is written with `current_state` in the same transaction
        // (`write_event`); a member event without a valid membership has no row there.
        let members = sqlx::query_as(
            "SELECT c.state_key, c.event_id, m.membership FROM current_state c \
             LEFT JOIN memberships m ON m.room_id = c.room_id AND m.user_id = c.state_key AND m.event_id = c.event_id \
             WHERE c.room_id = $1 AND c.event_type = 'm.room.member'",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        Ok((events, members))
    }

    /// The newest event of a room: (event id, depth).
    pub(crate) async fn latest_event(&self, room_id: &str) -> sqlx::Result<Option<(String, i64)>> {
        sqlx::query_as("SELECT event_id, depth FROM events WHERE room_id = $1 ORDER BY stream_ordering DESC LIMIT 1")
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Every room the user has a membership in: (room id, membership, stream position).
    pub(crate) async fn rooms_for_user(&self, user_id: &str) -> sqlx::Result<Vec<(String, String, i64)>> {
        sqlx::query_as("SELECT room_id, membership, stream_ordering FROM memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
    }

    /// Events of a room with `after < position <= upto`, newest first, at most `limit`.
    pub(crate) async fn room_events_desc(
        &self,
        room_id: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, Pdu)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT stream_ordering, json FROM events WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering DESC LIMIT $4",
        )
        .bind(room_id)
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_rows(rows))
    }

    /// Events of a room with `from <= position < before`, oldest first, at most `limit`.
    pub(crate) async fn room_events_asc(
        &self,
        room_id: &str,
        from: i64,
        before: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, Pdu)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT stream_ordering, json FROM events WHERE room_id = $1 AND stream_ordering >= $2 AND stream_ordering < $3 \
             ORDER BY stream_ordering ASC LIMIT $4",
        )
        .bind(room_id)
        .bind(from)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_rows(rows))
    }

    /// State events of a room with `after < position <= upto`, oldest first.
    pub(crate) async fn room_state_events_between(
        &self,
        room_id: &str,
        after: i64,
        upto: i64,
    ) -> sqlx::Result<Vec<(i64, Pdu)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT stream_ordering, json FROM events WHERE room_id = $1 AND state_key IS NOT NULL \
             AND stream_ordering > $2 AND stream_ordering <= $3 ORDER BY stream_ordering ASC",
        )
        .bind(room_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_rows(rows))
    }

    pub(crate) async fn get_event(&self, event_id: &str) -> sqlx::Result<Option<(i64, Pdu)>> {
        let row: Option<(i64, String)> = sqlx::query_as("SELECT stream_ordering, json FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(p, j)| Some((p, decode_or_skip(Some(p), &j)?))))
    }

    /// Events by id, in no particular order; unknown ids are left out. Asked in chunks so
    /// a big room's member events stay under every database's bind-parameter limit.
    pub(crate) async fn get_events(&self, event_ids: &[String]) -> sqlx::Result<Vec<Pdu>> {
        const CHUNK: usize = 500;
        let mut out = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT stream_ordering, json FROM events WHERE event_id IN ({})", marks.join(", "));
            let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(decode_rows(q.fetch_all(&self.pool).await?).into_iter().map(|(_, e)| e));
        }
        Ok(out)
    }

    pub(crate) async fn txn_event(&self, user_id: &str, device_id: &str, txn_id: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3")
                .bind(user_id)
                .bind(device_id)
                .bind(txn_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Newest stream position of every room (loaded once at start-up).
    pub(crate) async fn room_last_positions(&self) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT room_id, MAX(stream_ordering) FROM events GROUP BY room_id").fetch_all(&self.pool).await
    }

    /// Returns `Ok(false)` when the alias is taken.
    pub(crate) async fn insert_alias(&self, alias: &str, room_id: &str, creator: &str) -> sqlx::Result<bool> {
        let res = sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
            .bind(alias)
            .bind(room_id)
            .bind(creator)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if crate::error::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn resolve_alias(&self, alias: &str) -> sqlx::Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT room_id FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    pub(crate) async fn delete_alias(&self, alias: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(&self.pool).await?;
        Ok(())
    }
}

/// Whether [`write_events_batched`] writes these exactly as [`write_event`] would one by one:
/// no membership (its own table, rare in a batch) and no state key set twice (a multi-row
/// upsert may not touch one row twice, and each superseded version must reach the
/// `presence_history` trigger).
fn batchable(events: &[(&Pdu, i64, Option<&EventGroups>)]) -> bool {
    let mut keys = std::collections::HashSet::new();
    events.iter().all(|(pdu, _, _)| {
        pdu.membership().is_none()
            && pdu.state_key.as_deref().is_none_or(|sk| keys.insert((&pdu.room_id, &pdu.kind, sk)))
    })
}

/// A batch of events (the profile-room publisher's) in one multi-row statement per table,
/// in the order [`write_event`] writes each event's rows (issue #13: one statement per row
/// cost ten hand-offs to the database per presence change).
async fn write_events_batched(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[(&Pdu, i64, Option<&EventGroups>)],
) -> sqlx::Result<()> {
    use super::batch::insert_rows;
    let new_groups: Vec<&super::state_groups::NewGroup> =
        events.iter().filter_map(|(_, _, g)| *g).flat_map(|g| &g.new).collect();
    insert_rows(
        tx,
        "INSERT INTO state_groups (group_id, room_id, parent, chain_len) VALUES ",
        "",
        4,
        &new_groups,
        |q, g| q.bind(g.id).bind(g.room_id.as_str()).bind(g.parent).bind(g.chain_len),
    )
    .await?;
    let entries: Vec<(i64, &(String, String, String))> =
        new_groups.iter().flat_map(|g| g.entries.iter().map(move |e| (g.id, e))).collect();
    insert_rows(
        tx,
        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES ",
        "",
        4,
        &entries,
        |q, (id, (kind, sk, event))| q.bind(*id).bind(kind.as_str()).bind(sk.as_str()).bind(event.as_str()),
    )
    .await?;
    let grouped: Vec<(&str, &EventGroups)> =
        events.iter().filter_map(|(pdu, _, g)| Some((pdu.event_id.as_str(), (*g)?))).collect();
    insert_rows(
        tx,
        "INSERT INTO event_state_groups (event_id, before_group, after_group) VALUES ",
        " ON CONFLICT (event_id) DO UPDATE SET before_group = excluded.before_group, after_group = excluded.after_group",
        3,
        &grouped,
        |q, (event_id, g)| q.bind(*event_id).bind(g.before).bind(g.after),
    )
    .await?;
    let rows = events
        .iter()
        .map(|(pdu, pos, _)| {
            Ok((*pdu, *pos, serde_json::to_string(pdu).map_err(|e| sqlx::Error::Encode(Box::new(e)))?))
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    insert_rows(
        tx,
        "INSERT INTO events (stream_ordering, event_id, room_id, sender, event_type, state_key, depth, origin_server_ts, json) VALUES ",
        "",
        9,
        &rows,
        |q, (pdu, pos, json)| {
            q.bind(*pos)
                .bind(pdu.event_id.as_str())
                .bind(pdu.room_id.as_str())
                .bind(pdu.sender.as_str())
                .bind(pdu.kind.as_str())
                .bind(pdu.state_key.as_deref())
                .bind(pdu.depth)
                .bind(pdu.origin_server_ts)
                .bind(json.as_str())
        },
    )
    .await?;
    let state: Vec<(&Pdu, i64)> =
        events.iter().filter(|(pdu, _, _)| pdu.state_key.is_some()).map(|(p, pos, _)| (*p, *pos)).collect();
    insert_rows(
        tx,
        "INSERT INTO current_state (room_id, event_type, state_key, event_id, stream_ordering) VALUES ",
        " ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
        5,
        &state,
        |q, (pdu, pos)| {
            q.bind(pdu.room_id.as_str())
                .bind(pdu.kind.as_str())
                .bind(pdu.state_key.as_deref())
                .bind(pdu.event_id.as_str())
                .bind(*pos)
        },
    )
    .await
}

async fn write_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    pdu: &Pdu,
    pos: i64,
    txn_owner: Option<&str>,
    groups: Option<&EventGroups>,
) -> sqlx::Result<()> {
    if let Some(g) = groups {
        super::state_groups::write_groups(tx, &pdu.event_id, g).await?;
    }
    let json = serde_json::to_string(pdu).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO events (stream_ordering, event_id, room_id, sender, event_type, state_key, depth, origin_server_ts, json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(pos)
    .bind(&pdu.event_id)
    .bind(&pdu.room_id)
    .bind(&pdu.sender)
    .bind(&pdu.kind)
    .bind(pdu.state_key.as_deref())
    .bind(pdu.depth)
    .bind(pdu.origin_server_ts)
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    if let Some(sk) = &pdu.state_key {
        sqlx::query(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id, stream_ordering) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
        )
        .bind(&pdu.room_id)
        .bind(&pdu.kind)
        .bind(sk)
        .bind(&pdu.event_id)
        .bind(pos)
        .execute(&mut **tx)
        .await?;
        if let Some(m) = pdu.membership() {
            sqlx::query(
                "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
            )
            .bind(&pdu.room_id)
            .bind(sk)
            .bind(m)
            .bind(&pdu.event_id)
            .bind(pos)
            .execute(&mut **tx)
            .await?;
        }
    }
    if let (Some((device, txn)), Some(user)) = (&pdu.txn, txn_owner) {
        sqlx::query(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user)
        .bind(device)
        .bind(txn)
        .bind(&pdu.event_id)
        .bind(pdu.origin_server_ts)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
