//! Typing and receipts across servers (spec server-server "Typing Notifications",
//! "Receipts"): a local user's typing and public read receipts go as `m.typing` / `m.receipt`
//! EDUs to every other server in the room; EDUs from a server change typing and receipts only
//! for that server's own users who are joined to the room.
use serde_json::{json, Map, Value};

use super::receipts::READ;
use super::typing::DEFAULT_TYPING_TIMEOUT_MS;
use super::{Ephemeral, Receipt};
use crate::error::Result;

/// Bounds on one incoming `m.receipt` EDU: rooms, and users per room.
const MAX_RECEIPT_ROOMS: usize = 100;
const MAX_RECEIPT_USERS: usize = 100;

/// Why an incoming EDU changed nothing (logged at debug level by the caller).
pub type Ignored = String;

impl Ephemeral {
    /// A local user starts (`Some(timeout)`) or stops typing: record it, and tell the other
    /// servers in the room.
    pub async fn local_typing(&self, room_id: &str, user_id: &str, timeout_ms: Option<u64>) -> Result<()> {
        self.typing.set(room_id, user_id, timeout_ms).await?;
        let content = json!({"room_id": room_id, "user_id": user_id, "typing": timeout_ms.is_some()});
        for server in self.rooms.servers_in_room(room_id).await {
            self.federation.send_edu(&server, "m.typing", content.clone());
        }
        Ok(())
    }

    /// A local user's receipt: record it and, when it is a public `m.read` that moved
    /// forward, tell the other servers in the room.
    pub async fn local_receipt(&self, r: &Receipt<'_>) -> Result<()> {
        if !self.receipts.set(r).await? || r.receipt_type != READ {
            return Ok(());
        }
        let mut data = json!({"ts": crate::rooms::now_ms()});
        if let Some(t) = r.thread_id {
            data["thread_id"] = json!(t);
        }
        let content = json!({r.room_id: {READ: {r.user_id: {"event_ids": [r.event_id], "data": data}}}});
        for server in self.rooms.servers_in_room(r.room_id).await {
            self.federation.send_edu(&server, "m.receipt", content.clone());
        }
        Ok(())
    }

    /// An `m.typing` EDU from `origin`.
    pub async fn remote_typing(&self, origin: &str, content: &Value) -> std::result::Result<(), Ignored> {
        let field = |k: &str| content.get(k).and_then(Value::as_str).ok_or_else(|| format!("no {k}"));
        let (room_id, user_id) = (field("room_id")?, field("user_id")?);
        let typing = content.get("typing").and_then(Value::as_bool).ok_or("no typing")?;
        self.check_remote_member(origin, room_id, user_id).await?;
        let timeout = typing.then_some(DEFAULT_TYPING_TIMEOUT_MS);
        self.typing.set(room_id, user_id, timeout).await.map_err(|e| e.to_string())
    }

    /// An `m.receipt` EDU from `origin`: `{room_id: {"m.read": {user_id: {event_ids, data}}}}`.
    /// Only `m.read` is federated; each user's first event id is used.
    pub async fn remote_receipts(&self, origin: &str, content: &Value) -> std::result::Result<(), Ignored> {
        let rooms = content.as_object().ok_or("content is not an object")?;
        let empty = Map::new();
        for (room_id, by_type) in rooms.iter().take(MAX_RECEIPT_ROOMS) {
            let users = by_type.get(READ).and_then(Value::as_object).unwrap_or(&empty);
            for (user_id, receipt) in users.iter().take(MAX_RECEIPT_USERS) {
                if let Err(why) = self.remote_receipt(origin, room_id, user_id, receipt).await {
                    tracing::debug!(origin, room_id, user_id, %why, "receipt EDU entry ignored");
                }
            }
        }
        Ok(())
    }

    async fn remote_receipt(
        &self,
        origin: &str,
        room_id: &str,
        user_id: &str,
        receipt: &Value,
    ) -> std::result::Result<(), Ignored> {
        self.check_remote_member(origin, room_id, user_id).await?;
        let event_id = receipt
            .get("event_ids")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or("no event_ids")?;
        let thread_id = receipt.pointer("/data/thread_id").and_then(Value::as_str).filter(|t| t.len() <= 255);
        let event_pos = self.rooms.joined_event(user_id, room_id, event_id).await.map_err(|e| e.to_string())?;
        let r = Receipt { room_id, user_id, receipt_type: READ, thread_id, event_id, event_pos };
        self.receipts.set(&r).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// `user_id` is a user of `origin` and joined to `room_id`.
    async fn check_remote_member(
        &self,
        origin: &str,
        room_id: &str,
        user_id: &str,
    ) -> std::result::Result<(), Ignored> {
        let user = ruma::UserId::parse(user_id).map_err(|e| format!("bad user id: {e}"))?;
        if user.server_name().as_str() != origin {
            return Err(format!("{origin} may not speak for {user_id}"));
        }
        let state = self.rooms.state(room_id).await.map_err(|e| e.to_string())?;
        if state.membership(user_id) != Some("join") {
            return Err(format!("{user_id} is not joined to {room_id}"));
        }
        Ok(())
    }
}
