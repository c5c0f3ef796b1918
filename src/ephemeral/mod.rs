//! Ephemeral room events (spec: `rooms.join.{roomId}.ephemeral`): typing notifications and
//! read receipts, delivered to the room's members by `sync::sections::ephemeral`.
pub mod receipts;
mod remote;
pub mod typing;

use std::sync::Arc;

pub use receipts::{Receipt, Receipts};
pub use typing::Typing;

use crate::federation::Federation;
use crate::ground::{Clock, Notifier, StreamHub};
use crate::rooms::Rooms;
use crate::store::Store;

pub struct Ephemeral {
    pub typing: Arc<Typing>,
    pub receipts: Receipts,
    /// Typing and receipts of local users go to the other servers in the room (`remote.rs`).
    rooms: Arc<Rooms>,
    federation: Arc<Federation>,
}

impl Ephemeral {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        clock: Clock,
        federation: Arc<Federation>,
    ) -> anyhow::Result<Arc<Self>> {
        let typing = Typing::new(rooms.clone(), stream.clone(), notifier.clone(), clock);
        let receipts = Receipts::new(store, rooms.clone(), stream, notifier).await?;
        Ok(Arc::new(Self { typing, receipts, rooms, federation }))
    }

    /// Run the typing expiry timer until `shutdown` fires.
    pub fn start(&self, workers: &crate::ground::Workers) {
        self.typing.start(workers);
    }
}
