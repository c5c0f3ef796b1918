//! `PUT /_matrix/federation/v1/send/{txnId}` (spec "Transactions"): a peer pushes PDUs and
//! EDUs. Bounds: the request body (`max_request_bytes`, 413 `M_TOO_LARGE`), at most 50 PDUs
//! and 100 EDUs (400 `M_BAD_JSON`, as Synapse answers), a transaction id of at most 255
//! bytes. Processing and idempotency live in `federation::inbox`.
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use http::StatusCode;

use super::auth::{fed_error, Signed};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::federation::inbox::Transaction;
use crate::federation::sender::{MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN};

const MAX_TXN_ID_BYTES: usize = 255;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    seed_route(r, SeedPath::Exact("/_matrix/federation/v1/send/{txn_id}"), put(send_transaction))
}

async fn send_transaction(State(s): State<AppState>, Path(txn_id): Path<String>, signed: Signed) -> Response {
    if txn_id.is_empty() || txn_id.len() > MAX_TXN_ID_BYTES {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "transaction id must be 1 to 255 bytes");
    }
    let txn: Transaction = match serde_json::from_slice(&signed.body) {
        Ok(t) => t,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return fed_error(StatusCode::BAD_REQUEST, "M_NOT_JSON", "the body is not JSON");
        }
        Err(e) => return fed_error(StatusCode::BAD_REQUEST, "M_BAD_JSON", format!("not a transaction: {e}")),
    };
    if txn.pdus.len() > MAX_PDUS_PER_TXN || txn.edus.len() > MAX_EDUS_PER_TXN {
        tracing::info!(origin = %signed.origin, pdus = txn.pdus.len(), edus = txn.edus.len(), "transaction over the spec limits");
        return fed_error(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            format!("a transaction holds at most {MAX_PDUS_PER_TXN} PDUs and {MAX_EDUS_PER_TXN} EDUs"),
        );
    }
    match s.inbox.transaction(signed.origin.as_str(), &txn_id, txn).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}
