//! Persisted presence: manual status, status message, last active.
use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub user_id: String,
    pub manual: String,
    pub status_msg: Option<String>,
    pub last_active_ts: Option<i64>,
}

/// One acknowledged change of a user's persisted presence inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusWrite {
    /// `PUT /presence/{userId}/status`: the manual status and the status text.
    Manual { user_id: String, manual: String, status_msg: Option<String> },
    /// The owner set `m.status` in their profile room: the status text only.
    StatusMsg { user_id: String, status_msg: Option<String> },
}

impl Store {
    pub async fn load_presence(&self) -> sqlx::Result<Vec<PresenceRow>> {
        let rows: Vec<(String, String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT user_id, manual, status_msg, last_active_ts FROM presence_state")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, manual, status_msg, last_active_ts)| PresenceRow {
                user_id,
                manual,
                status_msg,
                last_active_ts,
            })
            .collect())
    }

    /// Write the last-active times of a batch of users (each once) in one transaction
    /// (write-behind: the engine flushes them every `presence_flush_interval_ms`), as
    /// multi-row upserts. Only `last_active_ts` is written: the manual status and status text
    /// are written durably by [`Store::save_status_batch`] before they are acknowledged, and a
    /// flush of an older in-memory copy must never overwrite them.
    pub async fn save_last_active(&self, rows: &[(String, i64)]) -> sqlx::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await?;
        super::batch::insert_rows(
            &mut tx,
            "INSERT INTO presence_state (user_id, manual, status_msg, last_active_ts) VALUES ",
            " ON CONFLICT (user_id) DO UPDATE SET last_active_ts = excluded.last_active_ts",
            4,
            rows,
            |q, (user_id, ts)| q.bind(user_id).bind("online").bind(None::<&str>).bind(*ts),
        )
        .await?;
        tx.commit().await
    }

    /// Write a group of acknowledged status writes in one transaction, in order (a later write
    /// of the same user wins). The caller answers the requests only once this returned `Ok`.
    ///
    /// The group is first folded to one row per user, then written with one multi-row upsert
    /// per kind: a group of hundreds of PUTs costs a handful of round trips, not hundreds.
    pub async fn save_status_batch(&self, writes: &[&StatusWrite]) -> sqlx::Result<()> {
        let (full, status_only) = fold_status_writes(writes);
        // A text-only write of a user without a row gives them the default manual status.
        let status_only: Vec<FullRow<'_>> = status_only.into_iter().map(|(u, msg)| (u, "online", msg)).collect();
        let statements =
            full.len().div_ceil(STATUS_ROWS_PER_STATEMENT) + status_only.len().div_ceil(STATUS_ROWS_PER_STATEMENT);
        if statements == 0 {
            return Ok(());
        }
        // One statement is atomic on its own: it runs without BEGIN and COMMIT, which on
        // SQLite are two more hand-offs to the connection's thread and on PostgreSQL two more
        // round trips (issue #13: most groups are one PUT, so this is the common case).
        let mut conn = self.writer().await?;
        if statements == 1 {
            return if full.is_empty() {
                upsert_status(&mut conn, &status_only, SET_STATUS_ONLY).await
            } else {
                upsert_status(&mut conn, &full, SET_FULL).await
            };
        }
        let mut tx = conn.begin().await?;
        for chunk in full.chunks(STATUS_ROWS_PER_STATEMENT) {
            upsert_status(&mut tx, chunk, SET_FULL).await?;
        }
        for chunk in status_only.chunks(STATUS_ROWS_PER_STATEMENT) {
            upsert_status(&mut tx, chunk, SET_STATUS_ONLY).await?;
        }
        tx.commit().await
    }

    /// The current `m.presence` and `m.status` state of every profile room:
    /// (owner, event type, event JSON). Read once at startup to reconcile the rooms with the
    /// presence engine.
    pub async fn profile_presence_state(&self) -> sqlx::Result<Vec<(String, String, String)>> {
        sqlx::query_as(
            "SELECT p.user_id, c.event_type, e.json FROM profile_rooms p \
             JOIN current_state c ON c.room_id = p.room_id \
             JOIN events e ON e.event_id = c.event_id \
             WHERE c.state_key = '' AND c.event_type IN ('m.presence', 'm.status')",
        )
        .fetch_all(&self.pool)
        .await
    }
}

/// Rows per multi-row upsert (3 parameters each: far below SQLite's and PostgreSQL's limits).
const STATUS_ROWS_PER_STATEMENT: usize = 500;

/// What a conflicting row takes from the new one: both columns for a full write, the status
/// text alone for a text-only write.
const SET_FULL: &str = "manual = excluded.manual, status_msg = excluded.status_msg";
const SET_STATUS_ONLY: &str = "status_msg = excluded.status_msg";

/// One multi-row upsert of (user, manual status, status text); `set` names what an existing
/// row takes ([`SET_FULL`], [`SET_STATUS_ONLY`]).
async fn upsert_status(conn: &mut sqlx::AnyConnection, rows: &[FullRow<'_>], set: &str) -> sqlx::Result<()> {
    let sql = format!(
        "INSERT INTO presence_state (user_id, manual, status_msg) VALUES {} ON CONFLICT (user_id) DO UPDATE SET {set}",
        super::batch::value_rows(rows.len(), 3)
    );
    let mut q = sqlx::query(&sql);
    for (user_id, manual, status_msg) in rows {
        q = q.bind(*user_id).bind(*manual).bind(*status_msg);
    }
    q.execute(conn).await.map(drop)
}

/// A user's full row (manual status and text) or their status text alone.
type FullRow<'a> = (&'a str, &'a str, Option<&'a str>);
type StatusOnlyRow<'a> = (&'a str, Option<&'a str>);

/// Fold writes, in order, to one row per user (an upsert may not touch a row twice): a
/// `Manual` write sets both columns, a `StatusMsg` write the text only, the later one wins.
fn fold_status_writes<'a>(writes: &[&'a StatusWrite]) -> (Vec<FullRow<'a>>, Vec<StatusOnlyRow<'a>>) {
    let mut order: Vec<&'a str> = Vec::new();
    let mut rows: std::collections::HashMap<&'a str, (Option<&'a str>, Option<&'a str>)> = Default::default();
    for w in writes {
        let (user, manual, status) = match w {
            StatusWrite::Manual { user_id, manual, status_msg } => (user_id, Some(manual.as_str()), status_msg),
            StatusWrite::StatusMsg { user_id, status_msg } => (user_id, None, status_msg),
        };
        let row = rows.entry(user.as_str()).or_insert_with(|| {
            order.push(user.as_str());
            (None, None)
        });
        if manual.is_some() {
            row.0 = manual;
        }
        row.1 = status.as_deref();
    }
    let (mut full, mut status_only) = (Vec::new(), Vec::new());
    for user in order {
        match rows[user] {
            (Some(manual), status) => full.push((user, manual, status)),
            (None, status) => status_only.push((user, status)),
        }
    }
    (full, status_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(u: &str, m: &str, s: Option<&str>) -> StatusWrite {
        StatusWrite::Manual { user_id: u.into(), manual: m.into(), status_msg: s.map(Into::into) }
    }

    fn text(u: &str, s: Option<&str>) -> StatusWrite {
        StatusWrite::StatusMsg { user_id: u.into(), status_msg: s.map(Into::into) }
    }

    #[test]
    fn folding_keeps_the_last_write_per_user_in_first_seen_order() {
        let writes = [
            manual("@a:x", "busy", Some("one")),
            text("@b:x", Some("b1")),
            manual("@a:x", "online", None),
            text("@a:x", Some("two")),
            text("@b:x", None),
            text("@c:x", Some("c")),
            manual("@c:x", "offline", Some("hidden")),
        ];
        let refs: Vec<&StatusWrite> = writes.iter().collect();
        let (full, status_only) = fold_status_writes(&refs);
        assert_eq!(full, vec![("@a:x", "online", Some("two")), ("@c:x", "offline", Some("hidden"))]);
        assert_eq!(status_only, vec![("@b:x", None)]);
    }
}
