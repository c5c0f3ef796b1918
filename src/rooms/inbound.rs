//! Receiving PDUs from other servers. STUB on h/fed-send so the transport compiles: the room
//! side (h/fed-rooms, F1) replaces this file with the real `receive_pdu`.
use super::Rooms;

impl Rooms {
    /// Process one PDU a peer sent in a transaction; `Ok(event_id)` or `Err(reason)`.
    pub async fn receive_pdu(&self, origin: &str, pdu: serde_json::Value) -> std::result::Result<String, String> {
        let _ = (origin, pdu);
        Err("rooms over federation are not available yet".into())
    }
}
