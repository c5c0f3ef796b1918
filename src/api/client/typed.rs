//! Typed ruma responses for the handlers of this folder: `Typed(resp)` answers with what
//! ruma's `OutgoingResponse` serializes. (A stand-in until `api/extract.rs` has the shared
//! response wrapper; then this file goes and handlers use that one.)
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use ruma::api::{OutgoingResponse, OutgoingResponseExt};

use crate::error::MatrixError;

pub struct Typed<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for Typed<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(res) => res.map(|b| axum::body::Body::from(b.freeze())).into_response(),
            Err(e) => MatrixError::Internal(anyhow::anyhow!("serializing a response: {e}")).into_response(),
        }
    }
}

/// Ids this server made (events, rooms) as ruma's types; a failure is our bug, not the client's.
pub fn owned_event_id(id: &str) -> Result<ruma::OwnedEventId, MatrixError> {
    ruma::EventId::parse(id).map_err(|e| MatrixError::Internal(anyhow::anyhow!("event id {id}: {e}")))
}

pub fn owned_room_id(id: &str) -> Result<ruma::OwnedRoomId, MatrixError> {
    ruma::RoomId::parse(id).map_err(|e| MatrixError::Internal(anyhow::anyhow!("room id {id}: {e}")))
}
