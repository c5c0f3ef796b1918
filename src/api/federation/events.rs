//! Reading the room DAG (spec "Retrieving events", "Backfilling", `get_missing_events`):
//! thin handlers over `Rooms` (`src/rooms/dag_reads.rs`).
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::auth::Signed;
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let p = |s: &'static str| SeedPath::Exact(s);
    let r = seed_route(r, p("/_matrix/federation/v1/event/{event_id}"), get(event));
    let r = seed_route(r, p("/_matrix/federation/v1/state/{room_id}"), get(state));
    let r = seed_route(r, p("/_matrix/federation/v1/state_ids/{room_id}"), get(state_ids));
    let r = seed_route(r, p("/_matrix/federation/v1/event_auth/{room_id}/{event_id}"), get(event_auth));
    let r = seed_route(r, p("/_matrix/federation/v1/backfill/{room_id}"), get(backfill));
    seed_route(r, p("/_matrix/federation/v1/get_missing_events/{room_id}"), post(missing_events))
}

fn answer(r: crate::error::Result<Value>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every value of query parameter `key` (bounded).
fn params(query: &Option<String>, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .take(50)
        .collect()
}

async fn event(State(s): State<AppState>, Path(event_id): Path<String>, signed: Signed) -> Response {
    answer(s.rooms.fed_event(signed.origin.as_str(), &event_id).await)
}

async fn state_of(s: AppState, room_id: String, query: Option<String>, signed: Signed, ids_only: bool) -> Response {
    let Some(event_id) = params(&query, "event_id").pop() else {
        return MatrixError::MissingParam("`event_id` is required".into()).into_response();
    };
    answer(s.rooms.fed_state(signed.origin.as_str(), &room_id, &event_id, ids_only).await)
}

async fn state(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    RawQuery(q): RawQuery,
    signed: Signed,
) -> Response {
    state_of(s, room_id, q, signed, false).await
}

async fn state_ids(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    RawQuery(q): RawQuery,
    signed: Signed,
) -> Response {
    state_of(s, room_id, q, signed, true).await
}

async fn event_auth(
    State(s): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> Response {
    answer(s.rooms.fed_event_auth(signed.origin.as_str(), &room_id, &event_id).await)
}

async fn backfill(
    State(s): State<AppState>,
    Path(room_id): Path<String>,
    RawQuery(q): RawQuery,
    signed: Signed,
) -> Response {
    let from = params(&q, "v");
    let Some(limit) = params(&q, "limit").pop().and_then(|l| l.parse::<usize>().ok()) else {
        return MatrixError::MissingParam("`limit` is required".into()).into_response();
    };
    if from.is_empty() {
        return MatrixError::MissingParam("`v` is required".into()).into_response();
    }
    answer(s.rooms.fed_backfill(signed.origin.as_str(), &room_id, &from, limit).await)
}

async fn missing_events(State(s): State<AppState>, Path(room_id): Path<String>, signed: Signed) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&signed.body) else {
        return MatrixError::NotJson("the body must be JSON".into()).into_response();
    };
    let ids = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .take(20)
            .map(str::to_owned)
            .collect()
    };
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    let min_depth = body.get("min_depth").and_then(Value::as_i64).unwrap_or(0);
    let (earliest, latest) = (ids("earliest_events"), ids("latest_events"));
    answer(s.rooms.fed_missing_events(signed.origin.as_str(), &room_id, &earliest, &latest, limit, min_depth).await)
}
