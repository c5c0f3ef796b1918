//! Receipts and read markers: `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` and
//! `POST /rooms/{roomId}/read_markers` (spec "Receipts", "Fully read markers").
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt;
use ruma::events::receipt::ReceiptThread;
use serde_json::{json, Value};

use crate::account_data::{Scope, FULLY_READ};
use crate::accounts::Session;
use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::ephemeral::receipts::{READ, READ_PRIVATE};
use crate::ephemeral::Receipt;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<create_receipt::v3::Request, _, _>(r, receipt);
    ruma_route::<set_read_marker::v3::Request, _, _>(r, read_markers)
}

async fn set_fully_read(s: &AppState, session: &Session, room_id: &str, event_id: &str) -> Result<()> {
    s.account_data.set(&session.user_id, Scope::Room(room_id), FULLY_READ, &json!({"event_id": event_id})).await
}

async fn receipt(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<create_receipt::v3::Request>,
) -> Result<Json<Value>> {
    use create_receipt::v3::ReceiptType;
    let room_id = req.room_id.as_str();
    let event_id = req.event_id.as_str();
    let thread_id = match &req.thread {
        ReceiptThread::Unthreaded => None,
        ReceiptThread::Main => Some("main"),
        ReceiptThread::Thread(root) => Some(root.as_str()),
        other => return Err(MatrixError::invalid_param(format!("invalid thread_id {:?}", other.as_str()))),
    };
    let receipt_type = match req.receipt_type {
        ReceiptType::Read => READ,
        ReceiptType::ReadPrivate => READ_PRIVATE,
        ReceiptType::FullyRead if thread_id.is_some() => {
            return Err(MatrixError::invalid_param("m.fully_read does not take a thread_id"));
        }
        ReceiptType::FullyRead => FULLY_READ,
        other => return Err(MatrixError::invalid_param(format!("unknown receipt type {}", other.as_str()))),
    };
    let event_pos = s.rooms.joined_event(&session.user_id, room_id, event_id).await?;
    if receipt_type == FULLY_READ {
        set_fully_read(&s, &session, room_id, event_id).await?;
    } else {
        let r = Receipt { room_id, user_id: &session.user_id, receipt_type, thread_id, event_id, event_pos };
        s.ephemeral.local_receipt(&r).await?;
    }
    // Reading is activity of this device (seed 001).
    s.presence.activity(&session).await;
    Ok(Json(json!({})))
}

async fn read_markers(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_read_marker::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    let user_id = session.user_id.as_str();
    // Check every event before changing anything.
    let fully_read = match &req.fully_read {
        Some(e) => Some((e.as_str(), s.rooms.joined_event(&session.user_id, room_id, e.as_str()).await?)),
        None => None,
    };
    let mut receipts = Vec::new();
    for (receipt_type, event) in [(READ, &req.read_receipt), (READ_PRIVATE, &req.private_read_receipt)] {
        if let Some(e) = event {
            receipts.push((
                receipt_type,
                e.as_str(),
                s.rooms.joined_event(&session.user_id, room_id, e.as_str()).await?,
            ));
        }
    }
    if fully_read.is_none() && receipts.is_empty() {
        // Still only for members of existing rooms.
        let state = s.rooms.state(room_id).await?;
        if state.membership(user_id) != Some("join") {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
    }
    if let Some((event_id, _)) = fully_read {
        set_fully_read(&s, &session, room_id, event_id).await?;
    }
    for (receipt_type, event_id, event_pos) in receipts {
        let r = Receipt { room_id, user_id, receipt_type, thread_id: None, event_id, event_pos };
        s.ephemeral.local_receipt(&r).await?;
    }
    s.presence.activity(&session).await;
    Ok(Json(json!({})))
}
