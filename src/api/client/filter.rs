//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::client_route;
use crate::api::extract::{Auth, MatrixJson};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::sync::SyncFilter;

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
    let json = body.to_string();
    if json.len() > s.config.max_filter_bytes {
        return Err(MatrixError::TooLarge(format!("filters are limited to {} bytes", s.config.max_filter_bytes)));
    }
    if s.store.count_filters(&user_id).await? >= s.config.max_filters_per_user as i64 {
        return Err(MatrixError::ResourceLimitExceeded(format!(
            "a user may store at most {} filters",
            s.config.max_filters_per_user
        )));
    }
    serde_json::from_value::<SyncFilter>(body.clone())
        .map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}")))?
        .validate()
        .map_err(MatrixError::bad_json)?;
    let id = s.store.insert_filter(&user_id, &json).await?;
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
    let id: i64 = filter_id.parse().map_err(|_| MatrixError::not_found("No such filter"))?;
    let json = s.store.get_filter(&user_id, id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))?;
    Ok(Json(serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?))
}
