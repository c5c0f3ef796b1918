//! `GET /capabilities` (spec "Capabilities negotiation").
use axum::{Json, Router};
use ruma::api::client::discovery::get_capabilities;
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::Result;
use crate::rooms::ROOM_VERSION;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<get_capabilities::v3::Request, _, _>(r, capabilities)
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
