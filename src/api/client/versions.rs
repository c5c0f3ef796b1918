//! `GET /_matrix/client/versions` and `/.well-known/matrix/client`.
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_matrix/client/versions", get(versions)).route("/.well-known/matrix/client", get(well_known))
}

async fn versions() -> Json<Value> {
    Json(json!({
        "versions": ["r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"],
        "unstable_features": {
            "org.matrix.msc3026.busy_presence": true,
            "org.matrix.msc2753.peeking": true,
            "org.matrix.msc1769.profile_rooms": true,
            "org.matrix.msc3032.effective_presence": true,
            "org.matrix.msc3032.presence_lists": true,
        }
    }))
}

async fn well_known(State(s): State<AppState>) -> Json<Value> {
    let base = format!("http://{}", s.config.bind);
    Json(json!({"m.homeserver": {"base_url": base}}))
}
