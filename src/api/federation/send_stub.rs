//! A minimal `PUT /send/{txnId}` (PDUs only, no EDUs, not idempotent per transaction) so
//! rooms federate on this branch; the transport branch (h/fed-send) owns the real handler
//! and replaces this file at merge.
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::auth::Signed;
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    seed_route(r, SeedPath::Exact("/_matrix/federation/v1/send/{txn_id}"), put(send_transaction))
}

async fn send_transaction(State(s): State<AppState>, Path(_txn): Path<String>, signed: Signed) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&signed.body) else {
        return MatrixError::NotJson("the body must be JSON".into()).into_response();
    };
    let pdus = body.get("pdus").and_then(Value::as_array).cloned().unwrap_or_default();
    if pdus.len() > 50 {
        return MatrixError::TooLarge("at most 50 PDUs per transaction".into()).into_response();
    }
    let mut results = Map::new();
    for (i, pdu) in pdus.into_iter().enumerate() {
        // Results are keyed by event id; a PDU too broken to have one gets a placeholder.
        let id = crate::federation::pdu::to_canonical(pdu.clone())
            .ok()
            .and_then(|o| crate::federation::pdu::event_id(&o, &ruma::RoomVersionId::V10).ok())
            .unwrap_or_else(|| format!("invalid-{i}"));
        match s.rooms.receive_pdu(signed.origin.as_str(), pdu).await {
            Ok(event_id) => {
                results.insert(event_id, json!({}));
            }
            Err(e) => {
                results.insert(id, json!({ "error": e }));
            }
        }
    }
    Json(json!({ "pdus": results })).into_response()
}
