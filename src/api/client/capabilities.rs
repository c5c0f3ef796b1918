//! `GET /capabilities` and `GET /pushrules/` (spec "Capabilities negotiation", "Push Rules").
use axum::routing::get;
use axum::{Json, Router};
use ruma::api::client::discovery::get_capabilities;
use ruma::api::client::push::{get_pushrules_all, get_pushrules_global_scope};
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::{client_route, ruma_route};
use crate::app::AppState;
use crate::error::Result;
use crate::rooms::ROOM_VERSION;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_capabilities::v3::Request, _, _>(r, capabilities);
    let r = ruma_route::<get_pushrules_all::v3::Request, _, _>(r, pushrules);
    // Some clients leave out the trailing slash.
    let r = client_route(r, "/pushrules", get(pushrules));
    ruma_route::<get_pushrules_global_scope::v3::Request, _, _>(r, pushrules_global)
}

async fn capabilities(Auth(_): Auth, Ruma(_): Ruma<get_capabilities::v3::Request>) -> Result<Json<Value>> {
    Ok(Json(json!({
        "capabilities": {
            "m.change_password": {"enabled": false},
            "m.room_versions": {"default": ROOM_VERSION, "available": {ROOM_VERSION: "stable"}},
            "m.set_displayname": {"enabled": true},
            "m.set_avatar_url": {"enabled": true},
            "m.3pid_changes": {"enabled": false},
            "m.get_login_token": {"enabled": false},
        }
    })))
}

/// The server keeps no push rules yet: an empty ruleset, so clients fall back to their own
/// defaults.
fn empty_ruleset() -> Value {
    json!({"override": [], "content": [], "room": [], "sender": [], "underride": []})
}

async fn pushrules(Auth(_): Auth) -> Result<Json<Value>> {
    Ok(Json(json!({"global": empty_ruleset()})))
}

async fn pushrules_global(Auth(_): Auth) -> Result<Json<Value>> {
    Ok(Json(empty_ruleset()))
}
