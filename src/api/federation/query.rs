//! Signed queries from other servers (spec "Querying for information", "Device
//! management"): profiles, room aliases and device lists of local users, through the same
//! services the client API uses.
use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{fed_error, Signed};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = seed_route(r, SeedPath::Exact("/_matrix/federation/v1/version"), get(version));
    let r = seed_route(r, SeedPath::Exact("/_matrix/federation/v1/query/profile"), get(query_profile));
    let r = seed_route(r, SeedPath::Exact("/_matrix/federation/v1/query/directory"), get(query_directory));
    seed_route(r, SeedPath::Exact("/_matrix/federation/v1/user/devices/{user_id}"), get(user_devices))
}

fn error(e: MatrixError) -> Response {
    e.into_response()
}

async fn version() -> Json<Value> {
    Json(json!({"server": {"name": "Seed", "version": env!("CARGO_PKG_VERSION")}}))
}

#[derive(Deserialize)]
struct ProfileQuery {
    user_id: String,
    field: Option<String>,
}

async fn query_profile(
    State(s): State<AppState>,
    q: Result<Query<ProfileQuery>, QueryRejection>,
    _: Signed,
) -> Response {
    let Ok(Query(q)) = q else {
        return fed_error(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", "`user_id` is required");
    };
    if !matches!(q.field.as_deref(), None | Some("displayname") | Some("avatar_url")) {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "`field` must be displayname or avatar_url");
    }
    if !local_user(&s, &q.user_id) {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "Not a user of this server");
    }
    match s.accounts.exists(&q.user_id).await {
        Ok(true) => {}
        Ok(false) => return fed_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Profile not found"),
        Err(e) => return error(e),
    }
    let (displayname, avatar_url) = match s.accounts.profile(&q.user_id).await {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let mut body = Map::new();
    if q.field.as_deref() != Some("avatar_url") {
        if let Some(n) = displayname {
            body.insert("displayname".into(), n.into());
        }
    }
    if q.field.as_deref() != Some("displayname") {
        if let Some(a) = avatar_url {
            body.insert("avatar_url".into(), a.into());
        }
    }
    Json(Value::Object(body)).into_response()
}

fn local_user(s: &AppState, user_id: &str) -> bool {
    <&ruma::UserId>::try_from(user_id).is_ok_and(|u| u.server_name() == s.federation.server_name)
}

#[derive(Deserialize)]
struct DirectoryQuery {
    room_alias: String,
}

async fn query_directory(
    State(s): State<AppState>,
    q: Result<Query<DirectoryQuery>, QueryRejection>,
    _: Signed,
) -> Response {
    let Ok(Query(q)) = q else {
        return fed_error(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", "`room_alias` is required");
    };
    let ours = <&ruma::RoomAliasId>::try_from(q.room_alias.as_str())
        .is_ok_and(|a| a.server_name() == s.federation.server_name);
    if !ours {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "Not an alias of this server");
    }
    match s.directory.aliases.resolve(&q.room_alias).await {
        Ok(room_id) => Json(json!({"room_id": room_id, "servers": [s.federation.server_name]})).into_response(),
        Err(e) => error(e),
    }
}

/// `GET /user/devices/{userId}`: the user's devices with their keys and cross-signing keys,
/// as `/keys/query` gives them (signatures of the user only: the requester is a server).
async fn user_devices(State(s): State<AppState>, Path(user_id): Path<String>, signed: Signed) -> Response {
    if !local_user(&s, &user_id) {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "Not a user of this server");
    }
    let devices = match s.accounts.devices(&user_id).await {
        Ok(d) => d,
        Err(e) => return error(e),
    };
    let wanted = BTreeMap::from([(user_id.clone(), Vec::new())]);
    let keys = match s.e2ee.query_keys(signed.origin.as_str(), &wanted).await {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let list: Vec<Value> = devices
        .into_iter()
        .map(|d| {
            let mut dev = json!({"device_id": d.device_id});
            if let Some(k) = keys["device_keys"][&user_id].get(&d.device_id) {
                let mut k = k.clone();
                if let Some(o) = k.as_object_mut() {
                    o.remove("unsigned");
                }
                dev["keys"] = k;
            }
            if let Some(n) = d.display_name {
                dev["device_display_name"] = json!(n);
            }
            dev
        })
        .collect();
    let mut body = json!({"user_id": user_id, "stream_id": 0, "devices": list});
    for (field, from) in [("master_key", "master_keys"), ("self_signing_key", "self_signing_keys")] {
        if let Some(k) = keys[from].get(&user_id) {
            body[field] = k.clone();
        }
    }
    Json(body).into_response()
}
