//! Reads for the legacy peeking API (`/rooms/{roomId}/initialSync`, `/events`), which old
//! clients use to follow a room they are not joined to. Permission is the caller's check
//! ([`Peeks::can_peek`]).
use super::Peeks;
use crate::error::Result;
use crate::rooms::Pdu;

impl Peeks {
    /// The newest `limit` events of `room_id` up to stream position `upto`, oldest first.
    pub async fn latest_events(&self, room_id: &str, upto: i64, limit: i64) -> Result<Vec<(i64, Pdu)>> {
        let mut events = self.store.room_events_desc(room_id, 0, upto, limit).await?;
        events.reverse();
        Ok(events)
    }

    /// Up to `limit` events of `room_id` in `(from, upto]`, oldest first.
    pub async fn events_after(&self, room_id: &str, from: i64, upto: i64, limit: i64) -> Result<Vec<(i64, Pdu)>> {
        Ok(self.store.room_events_asc(room_id, from + 1, upto + 1, limit).await?)
    }
}
