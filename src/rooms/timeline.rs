//! Reading a room's events: sync timelines, `/messages` pages, `/context` and single events,
//! each bounded by what the reader may see (`readable_upto`).
use std::sync::Arc;

use super::event::Pdu;
use super::service::Rooms;
use super::state::latest_per_key;
use crate::error::{MatrixError, Result};

/// A room's events for one sync response (see [`Rooms::timeline`]).
pub struct Timeline {
    pub events: Vec<(i64, Pdu)>,
    pub limited: bool,
    pub first_pos: i64,
}

/// One `/messages` page: events in the order asked for, and the positions its `start` and
/// `end` tokens name (`end` is `None` when nothing more can be read that way).
pub struct MessagesPage {
    pub events: Vec<(i64, Pdu)>,
    pub start: i64,
    pub end: Option<i64>,
}

/// `/context` around an event: up to `limit` events (half before, half after) and the room
/// state at the last event returned.
pub struct EventContext {
    pub event: Pdu,
    pub before: Vec<(i64, Pdu)>,
    pub after: Vec<(i64, Pdu)>,
    pub start: i64,
    pub end: i64,
    /// Whole state events.
    pub state: Vec<Arc<Pdu>>,
}

impl Rooms {
    /// The timeline slice of a room for a sync: the newest `limit` events in `(after, upto]`,
    /// oldest first, whether more were left out (`limited`), and the position of the first.
    pub(crate) async fn timeline(&self, room_id: &str, after: i64, upto: i64, limit: i64) -> Result<Timeline> {
        let mut events = self.store.room_events_desc(room_id, after, upto, limit + 1).await?;
        let limited = events.len() as i64 > limit;
        events.truncate(limit as usize);
        events.reverse();
        let first_pos = events.first().map(|(p, _)| *p).unwrap_or(upto + 1);
        Ok(Timeline { events, limited, first_pos })
    }

    /// The state events of `room_id` written in `(after, upto]`, oldest first: the state a
    /// sync gap carries, and the memberships newcomers and device lists are derived from.
    pub(crate) async fn state_changes_between(&self, room_id: &str, after: i64, upto: i64) -> Result<Vec<(i64, Pdu)>> {
        Ok(self.store.room_state_events_between(room_id, after, upto).await?)
    }

    /// The newest `limit` events of `room_id` in `(after, upto]`, newest first.
    pub(crate) async fn events_desc(
        &self,
        room_id: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Pdu)>> {
        Ok(self.store.room_events_desc(room_id, after, upto, limit).await?)
    }

    /// An event of `room_id` that `user_id` may read: 404 if unknown, in another room, or
    /// after the point up to which the user may read. Returns its stream position and that
    /// point.
    pub(crate) async fn readable_event(&self, user_id: &str, room_id: &str, event_id: &str) -> Result<(i64, Pdu, i64)> {
        let upto = self.readable_upto(room_id, user_id).await?.min(self.stream.current());
        match self.store.get_event(event_id).await? {
            Some((pos, pdu)) if pdu.room_id == room_id && pos <= upto => Ok((pos, pdu, upto)),
            _ => Err(MatrixError::not_found("Event not found")),
        }
    }

    /// An event of a room the user is joined to (403 otherwise; 404 for an unknown room or
    /// an event of another room). Returns its stream position.
    pub(crate) async fn joined_event(&self, user_id: &str, room_id: &str, event_id: &str) -> Result<i64> {
        let state = self.state(room_id).await?;
        if state.membership(user_id) != Some("join") {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        match self.store.get_event(event_id).await? {
            Some((pos, pdu)) if pdu.room_id == room_id => Ok(pos),
            _ => Err(MatrixError::not_found("Event not found")),
        }
    }

    /// `/messages`: up to `limit` events from position `from` (exclusive going forward,
    /// inclusive going back) towards `to`, never past what `user_id` may read.
    pub(crate) async fn messages(
        &self,
        room_id: &str,
        user_id: &str,
        from: Option<i64>,
        to: Option<i64>,
        backward: bool,
        limit: i64,
    ) -> Result<MessagesPage> {
        let visible_upto = self.readable_upto(room_id, user_id).await?;
        let current = self.stream.current();
        if backward {
            let from = from.unwrap_or(current).min(visible_upto);
            let events = self.store.room_events_desc(room_id, to.unwrap_or(0), from, limit).await?;
            let end = events.last().map(|(p, _)| p - 1);
            let end = if (events.len() as i64) < limit { None } else { end };
            Ok(MessagesPage { events, start: from, end })
        } else {
            let from = from.unwrap_or(0);
            let upper = to.unwrap_or(current).min(visible_upto.min(current));
            let events = self.store.room_events_asc(room_id, from + 1, upper + 1, limit).await?;
            let end = events.last().map(|(p, _)| *p);
            Ok(MessagesPage { events, start: from, end })
        }
    }

    /// `/context/{eventId}` for `user_id` (see [`EventContext`]).
    pub(crate) async fn context(
        &self,
        room_id: &str,
        user_id: &str,
        event_id: &str,
        limit: i64,
    ) -> Result<EventContext> {
        let (pos, event, upto) = self.readable_event(user_id, room_id, event_id).await?;
        let (n_before, n_after) = (limit / 2, limit - limit / 2);
        let before = self.store.room_events_desc(room_id, 0, pos - 1, n_before).await?;
        let after = self.store.room_events_asc(room_id, pos + 1, upto + 1, n_after).await?;
        let start = before.last().map(|(p, _)| *p).unwrap_or(pos) - 1;
        let end = after.last().map(|(p, _)| *p).unwrap_or(pos);
        let state = if end >= self.last_position(room_id) {
            self.state_events(room_id).await?
        } else {
            let events = self.store.room_state_events_between(room_id, 0, end).await?;
            latest_per_key(events.into_iter().map(|(_, e)| e))
        };
        Ok(EventContext { event, before, after, start, end, state })
    }
}
