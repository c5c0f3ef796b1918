//! Endpoints for features this server does not offer, answered the way the spec describes an
//! empty configuration: no third-party protocols, no TURN server, no third-party identifiers.
use axum::{Json, Router};
use ruma::api::client::account::get_3pids;
use ruma::api::client::thirdparty::get_protocols;
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_protocols::v3::Request, _, _>(r, protocols);
    let r = ruma_route::<get_turn_server_info::v3::Request, _, _>(r, turn_server);
    ruma_route::<get_3pids::v3::Request, _, _>(r, threepids)
}

async fn protocols(Auth(_): Auth, Ruma(_): Ruma<get_protocols::v3::Request>) -> Json<Value> {
    Json(json!({}))
}

/// No TURN server is configured: no URIs (clients then use STUN/host candidates only).
async fn turn_server(Auth(_): Auth, Ruma(_): Ruma<get_turn_server_info::v3::Request>) -> Json<Value> {
    Json(json!({"username": "", "password": "", "uris": [], "ttl": 86400}))
}

async fn threepids(Auth(_): Auth, Ruma(_): Ruma<get_3pids::v3::Request>) -> Json<Value> {
    Json(json!({"threepids": []}))
}
