//! Server-side key backup (spec "Server-side key backups"): versions (`/room_keys/version`)
//! and the backed-up room keys (`/room_keys/keys`). The session data is opaque (encrypted by
//! the client); the server only chooses, per session, the better of two copies.
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::backup_data::BackupSessionRow;
use super::limits::*;
use super::E2ee;
use crate::error::{MatrixError, Result};

/// Backups by room then session, as the upload bodies nest them.
pub type SessionsByRoom = Vec<(String, Map<String, Value>)>;

fn no_backup() -> MatrixError {
    MatrixError::not_found("Unknown backup version")
}

/// Version strings are the numbers we handed out; anything else names no backup.
pub fn parse_version(v: &str) -> Result<i64> {
    v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(no_backup)
}

fn check_version_body(body: &Map<String, Value>) -> Result<(String, String)> {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty() && a.len() <= MAX_ID_BYTES)
        .ok_or_else(|| MatrixError::bad_json("algorithm must be a non-empty string"))?;
    let auth_data = body
        .get("auth_data")
        .filter(|a| a.is_object())
        .ok_or_else(|| MatrixError::bad_json("auth_data must be an object"))?;
    let json = serde_json::to_string(auth_data).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if json.len() > MAX_KEY_OBJECT_BYTES {
        return Err(MatrixError::TooLarge("auth_data is too large".into()));
    }
    Ok((algorithm.to_owned(), json))
}

/// A `KeyBackupData` object checked and flattened for storage.
fn check_session(room: &str, session: &str, data: &Value) -> Result<BackupSessionRow> {
    let bad = |what: &str| MatrixError::bad_json(format!("key backup data for {room}/{session}: {what}"));
    if room.is_empty() || room.len() > MAX_ID_BYTES || session.is_empty() || session.len() > MAX_ID_BYTES {
        return Err(MatrixError::invalid_param("room and session ids must be 1 to 255 bytes"));
    }
    let first = data
        .get("first_message_index")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad("first_message_index"))?;
    let forwarded = data
        .get("forwarded_count")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .ok_or_else(|| bad("forwarded_count"))?;
    let verified = data.get("is_verified").and_then(Value::as_bool).ok_or_else(|| bad("is_verified"))?;
    let session_data = data.get("session_data").filter(|d| d.is_object()).ok_or_else(|| bad("session_data"))?;
    let json = serde_json::to_string(session_data).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if json.len() > MAX_BACKUP_SESSION_BYTES {
        return Err(MatrixError::TooLarge(format!("session_data is larger than {MAX_BACKUP_SESSION_BYTES} bytes")));
    }
    Ok((room.to_owned(), session.to_owned(), first, forwarded, i64::from(verified), json))
}

/// Spec: keep the new copy if it is verified and the old is not; else if it decrypts more
/// (lower first_message_index); else if it went through fewer forwards.
fn better(new: &BackupSessionRow, old: &BackupSessionRow) -> bool {
    if new.4 != old.4 {
        return new.4 > old.4;
    }
    if new.2 != old.2 {
        return new.2 < old.2;
    }
    new.3 < old.3
}

fn session_json(row: &BackupSessionRow) -> Value {
    json!({
        "first_message_index": row.2,
        "forwarded_count": row.3,
        "is_verified": row.4 != 0,
        "session_data": serde_json::from_str::<Value>(&row.5).unwrap_or_else(|_| json!({})),
    })
}

impl E2ee {
    pub async fn create_backup(&self, user_id: &str, body: &Map<String, Value>) -> Result<String> {
        let (algorithm, auth_data) = check_version_body(body)?;
        Ok(self.store.e2e_create_backup_version(user_id, &algorithm, &auth_data).await?.to_string())
    }

    /// The backup version (the newest for `None`) with its key count and etag.
    pub async fn backup_info(&self, user_id: &str, version: Option<&str>) -> Result<Value> {
        let version = version.map(parse_version).transpose()?;
        let (v, algorithm, auth_data, etag) = self
            .store
            .e2e_backup_version(user_id, version)
            .await?
            .ok_or_else(|| MatrixError::not_found("No current backup version"))?;
        let count = self.store.e2e_backup_count(user_id, v).await?;
        Ok(json!({
            "algorithm": algorithm,
            "auth_data": serde_json::from_str::<Value>(&auth_data).unwrap_or_else(|_| json!({})),
            "count": count,
            "etag": etag.to_string(),
            "version": v.to_string(),
        }))
    }

    /// Update a version's `auth_data`; the algorithm may not change.
    pub async fn update_backup(&self, user_id: &str, version: &str, body: &Map<String, Value>) -> Result<()> {
        let v = parse_version(version)?;
        let (algorithm, auth_data) = check_version_body(body)?;
        if body.get("version").is_some_and(|b| b.as_str() != Some(version)) {
            return Err(MatrixError::invalid_param("version in the body does not match the path"));
        }
        let (_, old_algorithm, _, _) = self.store.e2e_backup_version(user_id, Some(v)).await?.ok_or_else(no_backup)?;
        if old_algorithm != algorithm {
            return Err(MatrixError::invalid_param("the algorithm of a backup version cannot change"));
        }
        Ok(self.store.e2e_update_backup_version(user_id, v, &auth_data).await?)
    }

    pub async fn delete_backup(&self, user_id: &str, version: &str) -> Result<()> {
        let v = parse_version(version)?;
        if !self.store.e2e_delete_backup_version(user_id, v).await? {
            return Err(no_backup());
        }
        Ok(())
    }

    /// Uploads go to the current (newest) version only (403 `M_WRONG_ROOM_KEYS_VERSION`).
    async fn current_backup(&self, user_id: &str, version: &str) -> Result<i64> {
        let current = self.store.e2e_backup_version(user_id, None).await?.ok_or_else(no_backup)?.0;
        if version.parse::<i64>().ok() != Some(current) {
            return Err(MatrixError::WrongRoomKeysVersion { current_version: current.to_string() });
        }
        Ok(current)
    }

    /// `PUT /room_keys/keys[/{roomId}[/{sessionId}]]`: returns `{etag, count}`.
    pub async fn put_backup_keys(&self, user_id: &str, version: &str, rooms: SessionsByRoom) -> Result<Value> {
        let v = self.current_backup(user_id, version).await?;
        let total: usize = rooms.iter().map(|(_, s)| s.len()).sum();
        if total > MAX_BACKUP_SESSIONS_PER_UPLOAD {
            return Err(MatrixError::TooLarge(format!("at most {MAX_BACKUP_SESSIONS_PER_UPLOAD} sessions per upload")));
        }
        let mut rows = Vec::with_capacity(total);
        for (room, sessions) in &rooms {
            for (session, data) in sessions {
                rows.push(check_session(room, session, data)?);
            }
        }
        let mut keep = Vec::with_capacity(rows.len());
        let mut stored: HashMap<String, HashMap<String, BackupSessionRow>> = HashMap::new();
        for row in rows {
            if !stored.contains_key(&row.0) {
                let existing = self.store.e2e_backup_sessions(user_id, v, Some(&row.0), None).await?;
                stored.insert(row.0.clone(), existing.into_iter().map(|r| (r.1.clone(), r)).collect());
            }
            let old = stored.get(&row.0).and_then(|m| m.get(&row.1));
            if old.is_none_or(|old| better(&row, old)) {
                keep.push(row);
            }
        }
        self.store.e2e_put_backup_sessions(user_id, v, &keep).await?;
        self.backup_etag_count(user_id, v).await
    }

    async fn backup_etag_count(&self, user_id: &str, v: i64) -> Result<Value> {
        let (_, _, _, etag) = self.store.e2e_backup_version(user_id, Some(v)).await?.ok_or_else(no_backup)?;
        let count = self.store.e2e_backup_count(user_id, v).await?;
        Ok(json!({"etag": etag.to_string(), "count": count}))
    }

    /// Backed-up keys of a version: all rooms, one room (`{sessions}`), or one session.
    pub async fn get_backup_keys(
        &self,
        user_id: &str,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Value> {
        let v = parse_version(version)?;
        self.store.e2e_backup_version(user_id, Some(v)).await?.ok_or_else(no_backup)?;
        let rows = self.store.e2e_backup_sessions(user_id, v, room, session).await?;
        match (room, session) {
            (Some(_), Some(_)) => {
                rows.first().map(session_json).ok_or_else(|| MatrixError::not_found("No backup of this session"))
            }
            (Some(_), None) => {
                let sessions: Map<String, Value> = rows.iter().map(|r| (r.1.clone(), session_json(r))).collect();
                Ok(json!({ "sessions": sessions }))
            }
            _ => {
                let mut by_room: Map<String, Value> = Map::new();
                for r in &rows {
                    let entry = by_room.entry(r.0.clone()).or_insert_with(|| json!({"sessions": {}}));
                    entry["sessions"][&r.1] = session_json(r);
                }
                Ok(json!({ "rooms": by_room }))
            }
        }
    }

    pub async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Value> {
        let v = parse_version(version)?;
        self.store.e2e_backup_version(user_id, Some(v)).await?.ok_or_else(no_backup)?;
        self.store.e2e_delete_backup_sessions(user_id, v, room, session).await?;
        self.backup_etag_count(user_id, v).await
    }
}
