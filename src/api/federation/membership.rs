//! Membership handshakes with other servers (spec "Joining Rooms" v2, "Leaving Rooms" v2,
//! "Inviting to a room" v2): thin handlers over `Rooms` (`src/rooms/handshake.rs`).
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::Value;

use super::auth::{fed_error, Signed};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let p = |s: &'static str| SeedPath::Exact(s);
    let r = seed_route(r, p("/_matrix/federation/v1/make_join/{room_id}/{user_id}"), get(make_join));
    let r = seed_route(r, p("/_matrix/federation/v1/make_leave/{room_id}/{user_id}"), get(make_leave));
    let r = seed_route(r, p("/_matrix/federation/v2/send_join/{room_id}/{event_id}"), put(send_join));
    let r = seed_route(r, p("/_matrix/federation/v2/send_leave/{room_id}/{event_id}"), put(send_leave));
    seed_route(r, p("/_matrix/federation/v2/invite/{room_id}/{event_id}"), put(invite))
}

fn answer(r: crate::error::Result<Value>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn body_json(signed: &Signed) -> Result<Value, MatrixError> {
    serde_json::from_slice(&signed.body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| MatrixError::NotJson("the body must be a JSON object".into()))
}

async fn make_join(
    State(s): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    signed: Signed,
) -> Response {
    let version = match s.rooms.joined_room_version(&room_id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // `ver` may repeat; without it only version 1 is supported by the requester (spec).
    let offered: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "ver")
        .map(|(_, v)| v.into_owned())
        .take(50)
        .collect();
    if !offered.iter().any(|v| v == version.as_str()) {
        let msg = format!("The room is version {version}, which your server does not support");
        return fed_error(StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION", msg);
    }
    answer(s.rooms.make_membership(signed.origin.as_str(), &room_id, &user_id, "join").await)
}

async fn make_leave(
    State(s): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    answer(s.rooms.make_membership(signed.origin.as_str(), &room_id, &user_id, "leave").await)
}

async fn send_join(state: State<AppState>, path: Path<(String, String)>, signed: Signed) -> Response {
    send_membership(state, path, signed, "join").await
}

async fn send_leave(state: State<AppState>, path: Path<(String, String)>, signed: Signed) -> Response {
    send_membership(state, path, signed, "leave").await
}

/// `send_join` / `send_leave` (v2): the signed membership event of `kind` in the body.
async fn send_membership(
    State(s): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
    kind: &str,
) -> Response {
    let body = match body_json(&signed) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    answer(s.rooms.send_membership(signed.origin.as_str(), &room_id, &event_id, body, kind).await)
}

async fn invite(
    State(s): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    let mut body = match body_json(&signed) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let version = body.get("room_version").and_then(Value::as_str).unwrap_or_default();
    let Some(version) =
        ruma::RoomVersionId::try_from(version).ok().filter(|v| crate::federation::pdu::rules(v).is_ok())
    else {
        return fed_error(
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
            "Seed supports room versions 10 and 11",
        );
    };
    let event = body["event"].take();
    let stripped = match body["invite_room_state"].take() {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    let r = s.rooms.receive_invite(signed.origin.as_str(), &room_id, &event_id, &version, event, stripped).await;
    answer(r.map(|event| serde_json::json!({ "event": event })))
}
