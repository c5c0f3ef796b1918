//! Admin API: users with their effective presence, explain, force a device offline, end a peek.
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{query, Admin, PREFIX};
use crate::accounts::Session;
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::presence::engine::UserInspection;
use crate::presence::explain::Explanation;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let admin = |r, path: &str, m| seed_route(r, SeedPath::Exact(&format!("{PREFIX}{path}")), m);
    let r = admin(r, "/users", get(list));
    let r = admin(r, "/users/{user_id}", get(one));
    let r = admin(r, "/users/{user_id}/explain", get(explain));
    let r = admin(r, "/users/{user_id}/devices/{device_id}/offline", post(force_offline));
    admin(r, "/users/{user_id}/devices/{device_id}/peeks/{room_id}/end", post(end_peek))
}

/// `GET /users?limit=&from=`: users sorted by id, after `from`, at most `limit` (1..=1000).
async fn list(State(s): State<AppState>, _admin: Admin, RawQuery(raw): RawQuery) -> Result<Json<Value>> {
    let params = query::params(raw.as_deref())?;
    let limit = query::int(&params, "limit", 1000, 1, 1000)? as usize;
    let from = params.get("from").map(|f| query::user_id(f)).transpose()?;
    let ids = s.presence.user_ids();
    let start = from.map_or(0, |f| ids.partition_point(|id| id.as_str() <= f));
    let page: Vec<UserInspection> = ids[start..].iter().take(limit).filter_map(|id| s.presence.inspect(id)).collect();
    let next = (start + limit < ids.len()).then(|| page.last().map(|u| u.user_id.clone())).flatten();
    Ok(Json(json!({"users": page, "next_from": next})))
}

fn inspect(s: &AppState, user_id: &str) -> Result<UserInspection> {
    query::user_id(user_id)?;
    s.presence.inspect(user_id).ok_or_else(|| MatrixError::not_found("The server holds no presence for this user"))
}

async fn one(State(s): State<AppState>, _admin: Admin, Path(user_id): Path<String>) -> Result<Json<UserInspection>> {
    Ok(Json(inspect(&s, &user_id)?))
}

async fn explain(State(s): State<AppState>, _admin: Admin, Path(user_id): Path<String>) -> Result<Json<Explanation>> {
    Ok(Json(inspect(&s, &user_id)?.explain))
}

/// The device counts as silent from now on: offline until it syncs again.
async fn force_offline(
    State(s): State<AppState>,
    _admin: Admin,
    Path((user_id, device_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    query::user_id(&user_id)?;
    query::id(&device_id, "device id")?;
    if !s.presence.force_device_offline(&user_id, &device_id).await {
        return Err(MatrixError::not_found("The user has no such device"));
    }
    Ok(Json(json!({})))
}

/// End the device's MSC2753 peek as if it had unpeeked (`400 M_BAD_STATE` if it was not peeking).
async fn end_peek(
    State(s): State<AppState>,
    _admin: Admin,
    Path((user_id, device_id, room_id)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    query::user_id(&user_id)?;
    query::id(&device_id, "device id")?;
    query::id(&room_id, "room id")?;
    s.peeks.unpeek(&Session { user_id, device_id }, &room_id).await?;
    Ok(Json(json!({})))
}
