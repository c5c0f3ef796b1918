//! The sections of a `/sync` response, each built by one function from a [`SyncContext`]
//! into its own typed piece; `super::assemble` puts them together. No section reads or edits
//! another's output.
pub mod account_data;
pub mod e2ee;
pub mod ephemeral;
pub mod peek;
pub mod presence;
pub mod rooms;

use crate::accounts::Session;
use crate::error::Result;
use crate::rooms::Rooms;

use super::filter::SyncFilter;

/// What every section is asked: what changed for this device in `(since, upto]`.
pub struct SyncContext<'a> {
    pub session: &'a Session,
    /// `None`: an initial sync.
    pub since: Option<i64>,
    /// The stream watermark the response is built up to (its `next_batch`).
    pub upto: i64,
    pub full_state: bool,
    pub filter: &'a SyncFilter,
    /// Room types left out of `rooms.join` unless the filter names the room (a user's own
    /// profile room: legacy clients would show it as a chat).
    pub hidden_room_types: &'a [String],
}

impl SyncContext<'_> {
    pub fn user_id(&self) -> &str {
        &self.session.user_id
    }

    /// Whether `rooms.join` leaves this joined room out (a hidden room type the filter does
    /// not name).
    pub async fn hides_joined_room(&self, rooms: &Rooms, room_id: &str) -> Result<bool> {
        if self.hidden_room_types.is_empty() {
            return Ok(false);
        }
        let named = self.filter.room.rooms.as_ref().is_some_and(|r| r.iter().any(|n| n == room_id));
        let state = rooms.state(room_id).await?;
        Ok(!named && state.room_type().is_some_and(|t| self.hidden_room_types.iter().any(|h| h == t)))
    }
}

/// A joined room a sync response covers. `since` is where its changes start: `None` when
/// the room is new to this sync (initial sync, or joined since the token), so its current
/// ephemeral state and account data are sent in full.
#[derive(Debug, Clone)]
pub struct SyncedRoom {
    pub room_id: String,
    pub since: Option<i64>,
}

/// The rooms the user is joined to at `upto` that the filter lets through, leaving out the
/// hidden room types as `rooms.join` does.
pub async fn synced_joined_rooms(rooms: &Rooms, ctx: &SyncContext<'_>) -> Result<Vec<SyncedRoom>> {
    let mut out = Vec::new();
    for (room_id, membership, mpos) in rooms.memberships(ctx.user_id()).await?.iter() {
        if membership != "join" || *mpos > ctx.upto || !ctx.filter.room.allows_room(room_id) {
            continue;
        }
        if ctx.hides_joined_room(rooms, room_id).await? {
            continue;
        }
        out.push(SyncedRoom { room_id: room_id.clone(), since: ctx.since.filter(|s| *mpos <= *s) });
    }
    Ok(out)
}

/// The slice of a room's timeline a section sends: after `since` (from the start when `full`)
/// up to `upto`, with the position it starts after; `None` when an incremental sync has
/// nothing new for the room. Shared by `rooms.join` and `rooms.peek`.
pub(super) async fn timeline_window(
    rooms: &Rooms,
    room_id: &str,
    full: bool,
    since: Option<i64>,
    upto: i64,
    limit: i64,
) -> Result<Option<(i64, crate::rooms::service::Timeline)>> {
    let after = if full { 0 } else { since.unwrap_or(0) };
    if !full && rooms.last_position(room_id) <= after {
        return Ok(None);
    }
    let window = rooms.timeline(room_id, after, upto, limit).await?;
    if window.events.is_empty() && !full {
        return Ok(None);
    }
    Ok(Some((after, window)))
}
