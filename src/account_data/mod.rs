//! Account data (spec "Client Config"): per-user JSON blobs by type, global or scoped to a
//! room, delivered in `/sync` (`account_data` and `rooms.join.{roomId}.account_data`).
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Map, Value};

use crate::accounts::Session;
use crate::error::{MatrixError, Result};
use crate::rooms::Rooms;
use crate::store::{AccountDataRow, Store};
use crate::sync::joined::{joined_entry, push_events, synced_joined_rooms};
use crate::sync::service::SyncSource;
use crate::sync::{Notifier, StreamHub, SyncFilter};

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
    rooms: Arc<Rooms>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    /// Room types `/sync` leaves out of `rooms.join` (kept in step with `SyncService`).
    hidden_room_types: Vec<String>,
    /// Newest account-data position per user, so a sync with nothing new costs no query.
    last_pos: DashMap<String, i64>,
}

impl AccountData {
    pub(crate) async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        hidden_room_types: Vec<String>,
    ) -> anyhow::Result<Arc<Self>> {
        let last_pos = DashMap::new();
        for (user, pos) in store.account_data_last_positions().await? {
            last_pos.insert(user, pos);
        }
        Ok(Arc::new(Self { store, rooms, stream, notifier, hidden_room_types, last_pos }))
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

    fn event(kind: &str, content: &str) -> Value {
        json!({"type": kind, "content": serde_json::from_str::<Value>(content).unwrap_or_else(|_| json!({}))})
    }
}

#[async_trait::async_trait]
impl SyncSource for AccountData {
    async fn contribute(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        filter: &SyncFilter,
        out: &mut Map<String, Value>,
    ) -> Result<bool> {
        let user = session.user_id.as_str();
        let joined = synced_joined_rooms(&self.rooms, user, since, upto, filter, &self.hidden_room_types).await?;
        let changed: Vec<AccountDataRow> = match since {
            None => self.store.account_data_between(user, -1, upto).await?,
            Some(s) if self.last_pos.get(user).is_some_and(|p| *p > s) => {
                self.store.account_data_between(user, s, upto).await?
            }
            Some(_) => vec![],
        };
        let mut has = false;

        let global: Vec<Value> = changed
            .iter()
            .filter(|(room, kind, _, _)| room.is_empty() && filter.account_data.allows(kind, user))
            .map(|(_, kind, content, _)| Self::event(kind, content))
            .collect();
        if !global.is_empty() {
            has = true;
            push_events(out, "account_data", global);
        }

        // Rooms new to this sync get their room account data in full; the others what changed.
        let mut per_room: HashMap<String, Vec<Value>> = HashMap::new();
        let full: HashSet<&str> = joined.iter().filter(|r| r.since.is_none()).map(|r| r.room_id.as_str()).collect();
        let covered: HashSet<&str> = joined.iter().map(|r| r.room_id.as_str()).collect();
        let room_allows = |kind: &str| filter.room.account_data.allows(kind, user);
        if since.is_some() {
            for room in &full {
                for (_, kind, content, _) in self.store.room_account_data(user, room, upto).await? {
                    if room_allows(&kind) {
                        per_room.entry((*room).to_owned()).or_default().push(Self::event(&kind, &content));
                    }
                }
            }
        }
        for (room, kind, content, _) in &changed {
            let in_full_pass = since.is_some() && full.contains(room.as_str());
            if room.is_empty() || in_full_pass || !covered.contains(room.as_str()) || !room_allows(kind) {
                continue;
            }
            per_room.entry(room.clone()).or_default().push(Self::event(kind, content));
        }
        for (room, events) in per_room {
            has = true;
            push_events(joined_entry(out, &room, upto), "account_data", events);
        }
        Ok(has)
    }
}
