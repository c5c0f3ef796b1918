//! Ephemeral room events (spec: `rooms.join.{roomId}.ephemeral`): typing and read receipts.
use std::collections::BTreeMap;

use serde_json::Value;

use super::{SyncContext, SyncedRoom};
use crate::ephemeral::Ephemeral;
use crate::error::Result;

/// Joined room -> its new ephemeral events (rooms with none are left out).
pub async fn ephemeral_section(
    eph: &Ephemeral,
    ctx: &SyncContext<'_>,
    joined: &[SyncedRoom],
) -> Result<BTreeMap<String, Vec<Value>>> {
    let filter = &ctx.filter.room.ephemeral;
    let (want_typing, want_receipts) = (!filter.excludes_type("m.typing"), !filter.excludes_type("m.receipt"));
    let mut out = BTreeMap::new();
    if !want_typing && !want_receipts {
        return Ok(out);
    }
    for room in joined {
        let mut events = Vec::new();
        if want_typing {
            events.extend(eph.typing.event(&room.room_id, room.since, ctx.upto).await?);
        }
        if want_receipts {
            events.extend(eph.receipts.event(&room.room_id, ctx.user_id(), room.since, ctx.upto).await?);
        }
        if !events.is_empty() {
            out.insert(room.room_id.clone(), events);
        }
    }
    Ok(out)
}
