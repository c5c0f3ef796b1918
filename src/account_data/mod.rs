//! Account data (spec "Client Config"): per-user JSON blobs by type, global or scoped to a
//! room, delivered in `/sync` (`account_data` and `rooms.join.{roomId}.account_data`).
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Value};

use crate::error::{MatrixError, Result};
use crate::ground::{Notifier, StreamHub};
use crate::store::{AccountDataRow, Store};

/// The fully-read marker (spec "Fully read markers"): room account data written through
/// `/read_markers` and `/receipt/m.fully_read`, never through the account-data API.
pub(crate) const FULLY_READ: &str = "m.fully_read";

/// Types the server controls: the account-data API refuses them (405 `M_BAD_JSON`).
pub(crate) const SERVER_CONTROLLED: &[&str] = &[FULLY_READ, "m.push_rules"];

/// Where a piece of account data lives: the `room_id` column is `''` for global data.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Global,
    Room(&'a str),
}

impl Scope<'_> {
    fn key(&self) -> &str {
        match self {
            Scope::Global => "",
            Scope::Room(r) => r,
        }
    }
}

pub struct AccountData {
    store: Store,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    /// Newest account-data position per user, so a sync with nothing new costs no query.
    last_pos: DashMap<String, i64>,
}

impl AccountData {
    pub(crate) async fn new(store: Store, stream: Arc<StreamHub>, notifier: Arc<Notifier>) -> anyhow::Result<Arc<Self>> {
        let last_pos = DashMap::new();
        for (user, pos) in store.account_data_last_positions().await? {
            last_pos.insert(user, pos);
        }
        Ok(Arc::new(Self { store, stream, notifier, last_pos }))
    }

    /// Store `content` as the user's `kind` account data and wake the user's `/sync`.
    pub(crate) async fn set(&self, user_id: &str, scope: Scope<'_>, kind: &str, content: &Value) -> Result<()> {
        let json = serde_json::to_string(content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let pos = self.stream.allocate();
        self.store.put_account_data(user_id, scope.key(), kind, &json, pos.pos).await?;
        let p = pos.pos;
        self.last_pos.entry(user_id.to_owned()).and_modify(|v| *v = (*v).max(p)).or_insert(p);
        pos.complete();
        self.notifier.wake([user_id], p);
        Ok(())
    }

    pub(crate) async fn get(&self, user_id: &str, scope: Scope<'_>, kind: &str) -> Result<Option<Value>> {
        match self.store.get_account_data(user_id, scope.key(), kind).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?)),
            None => Ok(None),
        }
    }

    /// What changed for `user_id` in `(since, upto]` (everything up to `upto` without
    /// `since`), as `(room or "", type, content, position)`; nothing new costs no query.
    pub async fn changed_between(&self, user_id: &str, since: Option<i64>, upto: i64) -> Result<Vec<AccountDataRow>> {
        Ok(match since {
            None => self.store.account_data_between(user_id, -1, upto).await?,
            Some(s) if self.last_pos.get(user_id).is_some_and(|p| *p > s) => {
                self.store.account_data_between(user_id, s, upto).await?
            }
            Some(_) => vec![],
        })
    }

    /// All of `user_id`'s account data for `room_id` up to `upto`.
    pub async fn room_data(&self, user_id: &str, room_id: &str, upto: i64) -> Result<Vec<AccountDataRow>> {
        Ok(self.store.room_account_data(user_id, room_id, upto).await?)
    }

    /// One piece of account data as a client-format event.
    pub fn event(kind: &str, content: &str) -> Value {
        json!({"type": kind, "content": serde_json::from_str::<Value>(content).unwrap_or_else(|_| json!({}))})
    }
}
