//! Read receipts (spec "Receipts"): stored, one per (room, user, type, thread), and sent as
//! `m.receipt` ephemeral events. `m.read` goes to every member, `m.read.private` only to its
//! owner (spec "Private read receipts").
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::ground::{Notifier, StreamHub};
use crate::rooms::{now_ms, Rooms};
use crate::store::{NewReceipt, Store};

pub const READ: &str = "m.read";
pub const READ_PRIVATE: &str = "m.read.private";

pub struct Receipts {
    store: Store,
    rooms: Arc<Rooms>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    /// Newest receipt position per room, so a sync skips rooms with nothing new.
    last_pos: DashMap<String, i64>,
}

/// A receipt a user sends: `thread_id` is `None` for an unthreaded receipt.
pub struct Receipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub receipt_type: &'a str,
    pub thread_id: Option<&'a str>,
    pub event_id: &'a str,
    /// Stream position of the receipted event: receipts only move forward.
    pub event_pos: i64,
}

impl Receipts {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
    ) -> anyhow::Result<Self> {
        let last_pos = DashMap::new();
        for (room, pos) in store.receipt_last_positions().await? {
            last_pos.insert(room, pos);
        }
        Ok(Self { store, rooms, stream, notifier, last_pos })
    }

    /// Record a receipt and wake who may see it; `false` when it changed nothing (a receipt
    /// for an event before the user's current one of the same type and thread).
    pub async fn set(&self, r: &Receipt<'_>) -> Result<bool> {
        let pos = self.stream.allocate();
        let row = NewReceipt {
            room_id: r.room_id,
            user_id: r.user_id,
            receipt_type: r.receipt_type,
            thread_id: r.thread_id.unwrap_or(""),
            event_id: r.event_id,
            event_pos: r.event_pos,
            ts: now_ms(),
        };
        if !self.store.put_receipt(&row, pos.pos).await? {
            return Ok(false);
        }
        let p = pos.pos;
        self.last_pos.entry(r.room_id.to_owned()).and_modify(|v| *v = (*v).max(p)).or_insert(p);
        pos.complete();
        if r.receipt_type == READ_PRIVATE {
            self.notifier.wake([r.user_id], p);
        } else {
            let state = self.rooms.state(r.room_id).await?;
            self.notifier.wake(state.members_with(&["join"]), p);
        }
        Ok(true)
    }

    /// The `m.receipt` event of a room for `viewer`: receipts written in `(since, upto]`, or
    /// all of them with no `since`.
    pub async fn event(&self, room_id: &str, viewer: &str, since: Option<i64>, upto: i64) -> Result<Option<Value>> {
        if let Some(s) = since {
            if self.last_pos.get(room_id).is_none_or(|p| *p <= s) {
                return Ok(None);
            }
        }
        let rows = self.store.receipts_between(room_id, since.unwrap_or(-1), upto).await?;
        let mut content = Map::new();
        for r in rows {
            if r.receipt_type == READ_PRIVATE && r.user_id != viewer {
                continue;
            }
            let mut receipt = json!({"ts": r.ts});
            if !r.thread_id.is_empty() {
                receipt["thread_id"] = json!(r.thread_id);
            }
            let by_type = content.entry(r.event_id).or_insert_with(|| json!({}));
            let by_user = by_type.as_object_mut().map(|m| m.entry(r.receipt_type).or_insert_with(|| json!({})));
            if let Some(Value::Object(users)) = by_user {
                users.insert(r.user_id, receipt);
            }
        }
        if content.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({"type": "m.receipt", "content": content})))
    }
}
