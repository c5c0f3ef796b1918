//! Server-side key backup (spec "Server-side key backups"): `/room_keys/version[/{version}]`
//! and `/room_keys/keys[/{roomId}[/{sessionId}]]?version=`.
use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::{Json, Router};
use ruma::api::client::backup::*;
use serde_json::{json, Map, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::e2ee::backup::SessionsByRoom;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<create_backup_version::v3::Request, _, _>(r, create_version);
    let r = ruma_route::<get_latest_backup_info::v3::Request, _, _>(r, latest_version);
    let r = ruma_route::<get_backup_info::v3::Request, _, _>(r, get_version);
    let r = ruma_route::<update_backup_version::v3::Request, _, _>(r, update_version);
    let r = ruma_route::<delete_backup_version::v3::Request, _, _>(r, delete_version);
    let r = ruma_route::<add_backup_keys::v3::Request, _, _>(r, put_all);
    let r = ruma_route::<add_backup_keys_for_room::v3::Request, _, _>(r, put_room);
    let r = ruma_route::<add_backup_keys_for_session::v3::Request, _, _>(r, put_session);
    let r = ruma_route::<get_backup_keys::v3::Request, _, _>(r, get_all);
    let r = ruma_route::<get_backup_keys_for_room::v3::Request, _, _>(r, get_room);
    let r = ruma_route::<get_backup_keys_for_session::v3::Request, _, _>(r, get_session);
    let r = ruma_route::<delete_backup_keys::v3::Request, _, _>(r, delete_all);
    let r = ruma_route::<delete_backup_keys_for_room::v3::Request, _, _>(r, delete_room);
    ruma_route::<delete_backup_keys_for_session::v3::Request, _, _>(r, delete_session)
}

/// The required `?version=` of the keys endpoints.
fn version_param(q: Option<String>) -> Result<String> {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    params.get("version").cloned().ok_or_else(|| MatrixError::MissingParam("version is required".into()))
}

async fn create_version(
    State(s): State<AppState>,
    Auth(u): Auth,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>> {
    Ok(Json(json!({"version": s.e2ee.create_backup(&u.user_id, &b).await?})))
}

async fn latest_version(State(s): State<AppState>, Auth(u): Auth) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.backup_info(&u.user_id, None).await?))
}

async fn get_version(State(s): State<AppState>, Auth(u): Auth, Path(v): Path<String>) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.backup_info(&u.user_id, Some(&v)).await?))
}

async fn update_version(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(v): Path<String>,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>> {
    s.e2ee.update_backup(&u.user_id, &v, &b).await?;
    Ok(Json(json!({})))
}

async fn delete_version(State(s): State<AppState>, Auth(u): Auth, Path(v): Path<String>) -> Result<Json<Value>> {
    s.e2ee.delete_backup(&u.user_id, &v).await?;
    Ok(Json(json!({})))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| MatrixError::bad_json(format!("{what} must be an object")))
}

async fn put_all(
    State(s): State<AppState>,
    Auth(u): Auth,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>> {
    let version = version_param(q)?;
    let rooms = object(b.get("rooms").ok_or_else(|| MatrixError::bad_json("rooms is required"))?, "rooms")?;
    let mut by_room: SessionsByRoom = Vec::with_capacity(rooms.len());
    for (room, r) in rooms {
        let sessions = object(object(r, "room")?.get("sessions").unwrap_or(&Value::Null), "sessions")?;
        by_room.push((room.clone(), sessions.clone()));
    }
    Ok(Json(s.e2ee.put_backup_keys(&u.user_id, &version, by_room).await?))
}

async fn put_room(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>> {
    let version = version_param(q)?;
    let sessions = object(b.get("sessions").unwrap_or(&Value::Null), "sessions")?;
    Ok(Json(s.e2ee.put_backup_keys(&u.user_id, &version, vec![(room, sessions.clone())]).await?))
}

async fn put_session(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path((room, session)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Value>,
) -> Result<Json<Value>> {
    let version = version_param(q)?;
    let sessions: Map<String, Value> = [(session, b)].into_iter().collect();
    Ok(Json(s.e2ee.put_backup_keys(&u.user_id, &version, vec![(room, sessions)]).await?))
}

async fn get_all(State(s): State<AppState>, Auth(u): Auth, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.get_backup_keys(&u.user_id, &version_param(q)?, None, None).await?))
}

async fn get_room(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.get_backup_keys(&u.user_id, &version_param(q)?, Some(&room), None).await?))
}

async fn get_session(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path((room, session)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.get_backup_keys(&u.user_id, &version_param(q)?, Some(&room), Some(&session)).await?))
}

async fn delete_all(State(s): State<AppState>, Auth(u): Auth, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, None, None).await?))
}

async fn delete_room(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, Some(&room), None).await?))
}

async fn delete_session(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path((room, session)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    Ok(Json(s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, Some(&room), Some(&session)).await?))
}
