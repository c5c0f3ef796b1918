//! Ephemeral room events (spec: `rooms.join.{roomId}.ephemeral`): typing notifications and
//! read receipts, delivered to the room's members by `sync::sections::ephemeral`.
pub mod receipts;
pub mod typing;

use std::sync::Arc;

pub use receipts::{Receipt, Receipts};
pub use typing::Typing;

use crate::ground::{Clock, Notifier, StreamHub};
use crate::rooms::Rooms;
use crate::store::Store;

pub struct Ephemeral {
    pub typing: Arc<Typing>,
    pub receipts: Receipts,
}

impl Ephemeral {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        clock: Clock,
    ) -> anyhow::Result<Arc<Self>> {
        let typing = Typing::new(rooms.clone(), stream.clone(), notifier.clone(), clock);
        let receipts = Receipts::new(store, rooms, stream, notifier).await?;
        Ok(Arc::new(Self { typing, receipts }))
    }

    /// Run the typing expiry timer until `shutdown` fires.
    pub fn start(&self, workers: &crate::ground::Workers) {
        self.typing.start(workers);
    }
}
