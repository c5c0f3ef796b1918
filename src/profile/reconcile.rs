//! Startup reconciliation of profile rooms with the presence engine (msc/README.md §2,
//! "After a crash").
//!
//! The engine's manual status and status text are written before they are acknowledged and
//! before the room hears of them, so the room can only be behind the engine, never ahead: the
//! engine wins. A `m.status` the owner sent directly whose engine write did not commit before a
//! crash was never acknowledged, and is set back. The one input that is written behind is the
//! last-active time, which the room may hold newer than the database: the later one wins.
//! Whatever then differs from the engine's public view is published before the server serves.
use serde_json::Value;

use super::{presence_state_content, status_state_content, ProfileRooms, PRESENCE_EVENT, STATUS_EVENT};
use crate::presence::PresenceEngine;
use crate::rooms::Pdu;

impl ProfileRooms {
    /// Make every profile room agree with `engine`. Returns how many rooms were rewritten.
    pub(crate) async fn reconcile(&self, engine: &PresenceEngine) -> anyhow::Result<usize> {
        let mut rooms: std::collections::HashMap<String, (Option<Value>, Option<Value>)> = Default::default();
        for (user, kind, json) in self.store.profile_presence_state().await? {
            // A row that does not decode is left to the publisher, which rewrites it.
            let Ok(pdu) = serde_json::from_str::<Pdu>(&json) else { continue };
            let slot = rooms.entry(user).or_default();
            match kind.as_str() {
                PRESENCE_EVENT => slot.0 = Some(pdu.content),
                STATUS_EVENT => slot.1 = Some(pdu.content),
                _ => {}
            }
        }
        let mut stale = 0;
        for entry in self.by_user.iter() {
            let user = entry.key();
            let (presence, status) = rooms.remove(user).unwrap_or_default();
            if let Some(ts) = presence.as_ref().and_then(|p| p.get("last_active_ts")).and_then(Value::as_i64) {
                engine.adopt_last_active(user, ts);
            }
            let snapshot = engine.snapshot(user, "");
            let agrees = presence.as_ref() == Some(&presence_state_content(&snapshot))
                && status.as_ref() == Some(&status_state_content(snapshot.status_msg.as_deref()));
            if !agrees {
                stale += 1;
                self.changes.push(&snapshot);
            }
        }
        if stale > 0 {
            tracing::info!(rooms = stale, "profile rooms behind the presence engine; publishing");
            self.publish_pending().await;
        }
        Ok(stale)
    }
}
