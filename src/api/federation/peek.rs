//! Peeking over federation (MSC2444), the peeked side: `PUT` starts or renews a peek, `DELETE`
//! ends it. Served under the unstable prefix and under the `v1` path MSC2444's text (and
//! Dendrite) use. Thin handlers over `Peeks` (`src/peek/served.rs`).
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};

use super::auth::{fed_error, Signed};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::peek::served::valid_peek_id;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let unstable = SeedPath::Exact("/_matrix/federation/unstable/org.matrix.msc2444/peek/{room_id}/{peek_id}");
    let r = seed_route(r, unstable, put(start).delete(stop));
    seed_route(r, SeedPath::Exact("/_matrix/federation/v1/peek/{room_id}/{peek_id}"), put(start).delete(stop))
}

/// The refusal of a malformed request: a peek id that is not 1 to 8 bytes of printable ASCII,
/// or a body that is not a JSON object (MSC2444: `{}`, a placeholder for future filters).
fn malformed(peek_id: &str, signed: &Signed) -> Option<Response> {
    if !valid_peek_id(peek_id) {
        let msg = "a peek id is 1 to 8 bytes of printable ASCII";
        return Some(fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", msg));
    }
    if signed.body.is_empty() {
        return None;
    }
    match serde_json::from_slice::<Value>(&signed.body) {
        Ok(Value::Object(_)) => None,
        Ok(_) => Some(fed_error(StatusCode::BAD_REQUEST, "M_BAD_JSON", "the body must be a JSON object")),
        Err(_) => Some(fed_error(StatusCode::BAD_REQUEST, "M_NOT_JSON", "the body is not JSON")),
    }
}

async fn start(
    State(s): State<AppState>,
    Path((room_id, peek_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    signed: Signed,
) -> Response {
    if let Some(r) = malformed(&peek_id, &signed) {
        return r;
    }
    // As `make_join`: the room versions the peeking server supports, `ver` repeated.
    let offered: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "ver")
        .map(|(_, v)| v.into_owned())
        .take(50)
        .collect();
    match s.rooms.is_resident(&room_id).await {
        Ok(true) => {}
        Ok(false) => return fed_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "This server is not in that room"),
        Err(e) => return e.into_response(),
    }
    let version = match s.rooms.joined_room_version(&room_id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if !offered.iter().any(|v| v == version.as_str()) {
        let msg = format!("The room is version {version}, which your server does not support");
        return fed_error(StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION", msg);
    }
    match s.peeks.serve_peek(signed.origin.as_str(), &room_id, &peek_id).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stop(State(s): State<AppState>, Path((room_id, peek_id)): Path<(String, String)>, signed: Signed) -> Response {
    if let Some(r) = malformed(&peek_id, &signed) {
        return r;
    }
    match s.peeks.serve_unpeek(signed.origin.as_str(), &room_id, &peek_id).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => e.into_response(),
    }
}
