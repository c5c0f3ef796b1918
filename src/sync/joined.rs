//! Helpers for sync sources that add to `rooms.join` (ephemeral events, room account data):
//! which joined rooms a response covers, and the room entry to add to.
use serde_json::{json, Map, Value};

use super::filter::SyncFilter;
use super::token;
use crate::error::Result;
use crate::rooms::Rooms;

/// A joined room a sync response covers. `since` is where its changes start: `None` when
/// the room is new to this sync (initial sync, or joined since the token), so its current
/// ephemeral state and account data are sent in full.
#[derive(Debug, Clone)]
pub struct SyncedRoom {
    pub room_id: String,
    pub since: Option<i64>,
}

/// The rooms the user is joined to at `upto` that the filter lets through, leaving out the
/// `hidden` room types unless the filter names the room (as `SyncService::build` does).
pub async fn synced_joined_rooms(
    rooms: &Rooms,
    user_id: &str,
    since: Option<i64>,
    upto: i64,
    filter: &SyncFilter,
    hidden: &[String],
) -> Result<Vec<SyncedRoom>> {
    let mut out = Vec::new();
    for (room_id, membership, mpos) in rooms.memberships(user_id).await?.iter() {
        if membership != "join" || *mpos > upto || !filter.room.allows_room(room_id) {
            continue;
        }
        if !hidden.is_empty() {
            let named = filter.room.rooms.as_ref().is_some_and(|r| r.contains(room_id));
            let state = rooms.state(room_id).await?;
            if !named && state.room_type().is_some_and(|t| hidden.iter().any(|h| h == t)) {
                continue;
            }
        }
        out.push(SyncedRoom { room_id: room_id.clone(), since: since.filter(|s| *mpos <= *s) });
    }
    Ok(out)
}

/// The `rooms.join.{room_id}` entry of a response, created empty if the room had nothing
/// else new in it.
pub fn joined_entry<'a>(out: &'a mut Map<String, Value>, room_id: &str, upto: i64) -> &'a mut Map<String, Value> {
    let rooms = as_object(out.entry("rooms").or_insert(Value::Null));
    let join = as_object(rooms.entry("join").or_insert(Value::Null));
    as_object(join.entry(room_id).or_insert_with(|| {
        json!({
            "timeline": {"events": [], "limited": false, "prev_batch": token::pagination_token(upto)},
            "state": {"events": []},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
            "unread_notifications": {"highlight_count": 0, "notification_count": 0},
            "summary": {},
        })
    }))
}

/// Append `events` to the `section` (`ephemeral`, `account_data`) of an entry.
pub fn push_events(entry: &mut Map<String, Value>, section: &str, events: Vec<Value>) {
    let sec = as_object(entry.entry(section).or_insert(Value::Null));
    let list = sec.entry("events").or_insert(Value::Null);
    if !list.is_array() {
        *list = Value::Array(vec![]);
    }
    if let Value::Array(list) = list {
        list.extend(events);
    }
}

fn as_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("made an object above")
}
