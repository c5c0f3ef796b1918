//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::client_route;
use crate::api::extract::{Auth, MatrixJson};
use crate::app::AppState;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = client_route(r, "/user/{user_id}/filter", post(create));
    client_route(r, "/user/{user_id}/filter/{filter_id}", get(fetch))
}

async fn create(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>> {
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("Cannot create filters for other users"));
    }
    let id = s.sync.filters.create(&user_id, &body).await?;
    Ok(Json(json!({"filter_id": id.to_string()})))
}

async fn fetch(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("Cannot read filters of other users"));
    }
    let filter = s.sync.filters.get(&user_id, &filter_id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))?;
    Ok(Json(filter))
}
