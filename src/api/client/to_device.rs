//! `PUT /sendToDevice/{eventType}/{txnId}` (spec "Send-to-Device messaging"). The body is
//! read as JSON maps, not ruma's typed one: the e2ee service bounds and checks it with the
//! errcodes clients get today (`M_BAD_JSON`, `M_TOO_LARGE` per recipient count and size).
use axum::extract::{Path, State};
use axum::Router;
use ruma::api::client::to_device::send_event_to_device;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::response::RumaResponse;
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
) -> Result<RumaResponse<send_event_to_device::v3::Response>> {
    s.e2ee.send_to_device(&session, &event_type, &txn_id, &body.messages).await?;
    Ok(send_event_to_device::v3::Response::new().into())
}
