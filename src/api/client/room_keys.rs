//! Server-side key backup (spec "Server-side key backups"): `/room_keys/version[/{version}]`
//! and `/room_keys/keys[/{roomId}[/{sessionId}]]?version=`. Bodies and the `version` query
//! are read here and checked by the e2ee service (its errcodes: `M_MISSING_PARAM`,
//! `M_BAD_JSON`); writes answer ruma's typed responses, and reads the stored JSON as kept.
use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::{Json, Router};
use ruma::api::client::backup::*;
use ruma::UInt;
use serde_json::{Map, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::response::RumaResponse;
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

/// The `{etag, count}` the e2ee service answers after a change to the keys.
fn etag_count(v: &Value) -> (String, UInt) {
    let etag = v["etag"].as_str().unwrap_or_default().to_owned();
    let count = v["count"].as_u64().and_then(|c| UInt::try_from(c).ok()).unwrap_or_default();
    (etag, count)
}

async fn create_version(
    State(s): State<AppState>,
    Auth(u): Auth,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<RumaResponse<create_backup_version::v3::Response>> {
    Ok(create_backup_version::v3::Response::new(s.e2ee.create_backup(&u.user_id, &b).await?).into())
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
) -> Result<RumaResponse<update_backup_version::v3::Response>> {
    s.e2ee.update_backup(&u.user_id, &v, &b).await?;
    Ok(update_backup_version::v3::Response::new().into())
}

async fn delete_version(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(v): Path<String>,
) -> Result<RumaResponse<delete_backup_version::v3::Response>> {
    s.e2ee.delete_backup(&u.user_id, &v).await?;
    Ok(delete_backup_version::v3::Response::new().into())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| MatrixError::bad_json(format!("{what} must be an object")))
}

async fn put_all(
    State(s): State<AppState>,
    Auth(u): Auth,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<RumaResponse<add_backup_keys::v3::Response>> {
    let version = version_param(q)?;
    let rooms = object(b.get("rooms").ok_or_else(|| MatrixError::bad_json("rooms is required"))?, "rooms")?;
    let mut by_room: SessionsByRoom = Vec::with_capacity(rooms.len());
    for (room, r) in rooms {
        let sessions = object(object(r, "room")?.get("sessions").unwrap_or(&Value::Null), "sessions")?;
        by_room.push((room.clone(), sessions.clone()));
    }
    let (etag, count) = etag_count(&s.e2ee.put_backup_keys(&u.user_id, &version, by_room).await?);
    Ok(add_backup_keys::v3::Response::new(etag, count).into())
}

async fn put_room(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Map<String, Value>>,
) -> Result<RumaResponse<add_backup_keys_for_room::v3::Response>> {
    let version = version_param(q)?;
    let sessions = object(b.get("sessions").unwrap_or(&Value::Null), "sessions")?;
    let (etag, count) =
        etag_count(&s.e2ee.put_backup_keys(&u.user_id, &version, vec![(room, sessions.clone())]).await?);
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count).into())
}

async fn put_session(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path((room, session)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    MatrixJson(b): MatrixJson<Value>,
) -> Result<RumaResponse<add_backup_keys_for_session::v3::Response>> {
    let version = version_param(q)?;
    let sessions: Map<String, Value> = [(session, b)].into_iter().collect();
    let (etag, count) = etag_count(&s.e2ee.put_backup_keys(&u.user_id, &version, vec![(room, sessions)]).await?);
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count).into())
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

async fn delete_all(
    State(s): State<AppState>,
    Auth(u): Auth,
    RawQuery(q): RawQuery,
) -> Result<RumaResponse<delete_backup_keys::v3::Response>> {
    let (etag, count) = etag_count(&s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, None, None).await?);
    Ok(delete_backup_keys::v3::Response::new(etag, count).into())
}

async fn delete_room(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path(room): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<RumaResponse<delete_backup_keys_for_room::v3::Response>> {
    let (etag, count) =
        etag_count(&s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, Some(&room), None).await?);
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count).into())
}

async fn delete_session(
    State(s): State<AppState>,
    Auth(u): Auth,
    Path((room, session)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<RumaResponse<delete_backup_keys_for_session::v3::Response>> {
    let (etag, count) =
        etag_count(&s.e2ee.delete_backup_keys(&u.user_id, &version_param(q)?, Some(&room), Some(&session)).await?);
    Ok(delete_backup_keys_for_session::v3::Response::new(etag, count).into())
}
