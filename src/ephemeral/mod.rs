//! Ephemeral room events (spec: `rooms.join.{roomId}.ephemeral`): typing notifications and
//! read receipts, delivered to the room's members through one sync source.
pub mod receipts;
pub mod typing;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use receipts::{Receipt, Receipts};
pub use typing::Typing;

use crate::accounts::Session;
use crate::error::Result;
use crate::rooms::Rooms;
use crate::store::Store;
use crate::sync::joined::{joined_entry, push_events, synced_joined_rooms};
use crate::sync::service::SyncSource;
use crate::sync::{Notifier, StreamHub, SyncFilter};

pub struct Ephemeral {
    pub typing: Arc<Typing>,
    pub receipts: Receipts,
    rooms: Arc<Rooms>,
    /// Room types `/sync` leaves out of `rooms.join` (kept in step with `SyncService`).
    hidden_room_types: Vec<String>,
}

impl Ephemeral {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        hidden_room_types: Vec<String>,
    ) -> anyhow::Result<Arc<Self>> {
        let typing = Typing::new(rooms.clone(), stream.clone(), notifier.clone());
        let receipts = Receipts::new(store, rooms.clone(), stream, notifier).await?;
        Ok(Arc::new(Self { typing, receipts, rooms, hidden_room_types }))
    }

    /// Run the typing expiry timer until `shutdown` fires.
    pub fn start(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        self.typing.start(shutdown);
    }
}

#[async_trait::async_trait]
impl SyncSource for Ephemeral {
    async fn contribute(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        filter: &SyncFilter,
        out: &mut Map<String, Value>,
    ) -> Result<bool> {
        let eph = &filter.room.ephemeral;
        let (want_typing, want_receipts) = (!eph.excludes_type("m.typing"), !eph.excludes_type("m.receipt"));
        if !want_typing && !want_receipts {
            return Ok(false);
        }
        let user = session.user_id.as_str();
        let mut has = false;
        for room in synced_joined_rooms(&self.rooms, user, since, upto, filter, &self.hidden_room_types).await? {
            let mut events = Vec::new();
            if want_typing {
                events.extend(self.typing.event(&room.room_id, room.since, upto).await?);
            }
            if want_receipts {
                events.extend(self.receipts.event(&room.room_id, user, room.since, upto).await?);
            }
            if !events.is_empty() {
                has = true;
                push_events(joined_entry(out, &room.room_id, upto), "ephemeral", events);
            }
        }
        Ok(has)
    }
}
