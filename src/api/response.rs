//! Typed answers: a ruma response type serialized by ruma's `OutgoingResponse`, the response
//! half of [`Ruma`](super::extract::Ruma).
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use ruma::api::{OutgoingResponse, OutgoingResponseExt};

use crate::error::MatrixError;

/// A ruma response (`Req::OutgoingResponse`) as an axum response. Handlers return
/// `Result<RumaResponse<Resp>>` and write `Ok(resp.into())`.
pub struct RumaResponse<T>(pub T);

impl<T> From<T> for RumaResponse<T> {
    fn from(t: T) -> Self {
        Self(t)
    }
}

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(resp) => resp.map(|b| Body::from(b.freeze())).into_response(),
            Err(e) => MatrixError::Internal(anyhow::anyhow!("cannot serialize a response: {e}")).into_response(),
        }
    }
}

/// A JSON value as ruma's `Raw<T>` (event contents and keys we keep as sent).
pub fn raw<T>(v: &serde_json::Value) -> Result<ruma::serde::Raw<T>, MatrixError> {
    let json = serde_json::value::to_raw_value(v).map_err(|e| MatrixError::Internal(e.into()))?;
    Ok(ruma::serde::Raw::from_json(json))
}

/// Ids this server made (events, rooms) as ruma's types; a failure is our bug, not the client's.
pub fn owned_event_id(id: &str) -> Result<ruma::OwnedEventId, MatrixError> {
    ruma::EventId::parse(id).map_err(|e| MatrixError::Internal(anyhow::anyhow!("event id {id}: {e}")))
}

pub fn owned_room_id(id: &str) -> Result<ruma::OwnedRoomId, MatrixError> {
    ruma::RoomId::parse(id).map_err(|e| MatrixError::Internal(anyhow::anyhow!("room id {id}: {e}")))
}
