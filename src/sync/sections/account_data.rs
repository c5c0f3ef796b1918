//! Account data (spec "Client Config"): the global `account_data` section and each joined
//! room's `account_data`.
use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::{SyncContext, SyncedRoom};
use crate::account_data::AccountData;
use crate::error::Result;

#[derive(Debug, Default)]
pub struct AccountDataSection {
    pub global: Vec<Value>,
    /// Joined room -> its account-data events.
    pub rooms: BTreeMap<String, Vec<Value>>,
}

impl AccountDataSection {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.rooms.is_empty()
    }
}

pub async fn account_data_section(
    data: &AccountData,
    ctx: &SyncContext<'_>,
    joined: &[SyncedRoom],
) -> Result<AccountDataSection> {
    let (user, since, upto, filter) = (ctx.user_id(), ctx.since, ctx.upto, ctx.filter);
    let changed = data.changed_between(user, since, upto).await?;
    let global: Vec<Value> = changed
        .iter()
        .filter(|(room, kind, _, _)| room.is_empty() && filter.account_data.allows(kind, user))
        .map(|(_, kind, content, _)| AccountData::event(kind, content))
        .collect();

    // Rooms new to this sync get their room account data in full; the others what changed.
    let mut rooms: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let full: HashSet<&str> = joined.iter().filter(|r| r.since.is_none()).map(|r| r.room_id.as_str()).collect();
    let covered: HashSet<&str> = joined.iter().map(|r| r.room_id.as_str()).collect();
    let room_allows = |kind: &str| filter.room.account_data.allows(kind, user);
    if since.is_some() {
        for room in &full {
            for (_, kind, content, _) in data.room_data(user, room, upto).await? {
                if room_allows(&kind) {
                    rooms.entry((*room).to_owned()).or_default().push(AccountData::event(&kind, &content));
                }
            }
        }
    }
    for (room, kind, content, _) in &changed {
        let in_full_pass = since.is_some() && full.contains(room.as_str());
        if room.is_empty() || in_full_pass || !covered.contains(room.as_str()) || !room_allows(kind) {
            continue;
        }
        rooms.entry(room.clone()).or_default().push(AccountData::event(kind, content));
    }
    Ok(AccountDataSection { global, rooms })
}
