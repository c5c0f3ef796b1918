//! Key endpoints (spec "Retrieving server keys"): our own key, and the notary
//! `/_matrix/key/v2/query` for other servers' keys. These need no request signature.
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use ruma::ServerName;
use serde_json::{json, Value};

use super::auth::fed_error;
use crate::api::extract::MatrixJson;
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::federation::keys::MAX_QUERY_SERVERS;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = seed_route(r, SeedPath::Exact("/_matrix/key/v2/server"), get(own_keys));
    let r = seed_route(r, SeedPath::Exact("/_matrix/key/v2/server/{key_id}"), get(own_keys));
    let r = seed_route(r, SeedPath::Exact("/_matrix/key/v2/query"), post(query_keys));
    seed_route(r, SeedPath::Exact("/_matrix/key/v2/query/{server_name}"), get(query_server_keys))
}

async fn own_keys(State(s): State<AppState>) -> Response {
    match s.federation.own_key_response() {
        Ok(v) => Json(v).into_response(),
        Err(e) => fed_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", e),
    }
}

/// `POST /_matrix/key/v2/query`: `{"server_keys": {server: {key_id: {...}}}}`, answered with
/// every server's latest verified response we can get, counter-signed by us.
async fn query_keys(State(s): State<AppState>, MatrixJson(body): MatrixJson<Value>) -> Response {
    let Some(wanted) = body.get("server_keys").and_then(Value::as_object) else {
        return fed_error(StatusCode::BAD_REQUEST, "M_BAD_JSON", "`server_keys` must be an object");
    };
    if wanted.len() > MAX_QUERY_SERVERS {
        return fed_error(StatusCode::BAD_REQUEST, "M_TOO_LARGE", format!("at most {MAX_QUERY_SERVERS} servers"));
    }
    let mut out = Vec::new();
    for name in wanted.keys() {
        let Ok(server) = <&ServerName>::try_from(name.as_str()) else { continue };
        if let Some(doc) = s.federation.notary_response(server).await {
            out.push(doc);
        }
    }
    Json(json!({"server_keys": out})).into_response()
}

async fn query_server_keys(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let Ok(server) = <&ServerName>::try_from(name.as_str()) else {
        return fed_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "not a server name");
    };
    let docs: Vec<Value> = s.federation.notary_response(server).await.into_iter().collect();
    Json(json!({"server_keys": docs})).into_response()
}
