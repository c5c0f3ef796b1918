//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.
use axum::extract::State;
use axum::Router;
use ruma::api::client::filter::{create_filter, get_filter, FilterDefinition};

use crate::api::extract::{Auth, Ruma};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<create_filter::v3::Request, _, _>(r, create);
    ruma_route::<get_filter::v3::Request, _, _>(r, fetch)
}

async fn create(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<create_filter::v3::Request>,
) -> Result<RumaResponse<create_filter::v3::Response>> {
    if req.user_id.as_str() != session.user_id {
        return Err(MatrixError::forbidden("Cannot create filters for other users"));
    }
    let body = serde_json::to_value(&req.filter).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let id = s.sync.filters.create(&session.user_id, &body).await?;
    Ok(create_filter::v3::Response::new(id.to_string()).into())
}

async fn fetch(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_filter::v3::Request>,
) -> Result<RumaResponse<get_filter::v3::Response>> {
    if req.user_id.as_str() != session.user_id {
        return Err(MatrixError::forbidden("Cannot read filters of other users"));
    }
    let stored = s
        .sync
        .filters
        .get(&session.user_id, &req.filter_id)
        .await?
        .ok_or_else(|| MatrixError::not_found("No such filter"))?;
    let filter: FilterDefinition = serde_json::from_value(stored).map_err(|e| MatrixError::Internal(e.into()))?;
    Ok(get_filter::v3::Response::new(filter).into())
}
