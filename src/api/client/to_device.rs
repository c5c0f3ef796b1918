//! `PUT /sendToDevice/{eventType}/{txnId}` (spec "Send-to-Device messaging").
use axum::extract::{Path, State};
use axum::{Json, Router};
use ruma::api::client::to_device::send_event_to_device;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::Result;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<send_event_to_device::v3::Request, _, _>(r, send)
}

#[derive(Deserialize)]
struct SendBody {
    messages: Map<String, Value>,
}

async fn send(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    MatrixJson(body): MatrixJson<SendBody>,
) -> Result<Json<Value>> {
    s.e2ee.send_to_device(&session, &event_type, &txn_id, &body.messages).await?;
    Ok(Json(json!({})))
}
