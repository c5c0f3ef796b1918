//! [`PublicChanges`]: where the engine puts every change of a user's presence as others see
//! it, and where the profile-room publisher (`profile::ProfileRooms::start`) takes it from to
//! write `m.presence`. The newest change per user wins, so a publisher that falls behind
//! writes each user once.
use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::PresenceSnapshot;

#[derive(Default)]
pub struct PublicChanges {
    pending: Mutex<HashMap<String, PresenceSnapshot>>,
    wake: Notify,
}

impl PublicChanges {
    /// A public change (called by the engine); replaces the user's pending one.
    pub fn push(&self, snapshot: &PresenceSnapshot) {
        self.pending.lock().insert(snapshot.user_id.clone(), snapshot.clone());
        self.wake.notify_one();
    }

    /// Everything pending, emptying the outbox.
    pub fn take(&self) -> Vec<PresenceSnapshot> {
        std::mem::take(&mut *self.pending.lock()).into_values().collect()
    }

    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().is_empty()
    }

    /// Resolves after the next [`PublicChanges::push`] (at once if one came since the last wait).
    pub async fn notified(&self) {
        self.wake.notified().await
    }
}
