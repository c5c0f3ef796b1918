//! `GET /sync`: long-poll with `since`, `timeout`, `filter`, `full_state`, `set_presence`.
use std::time::Duration;

use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v3 as sync_v3;
use serde_json::Value;

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::sync::{token, SyncFilter, SyncRequest};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<sync_v3::Request, _, _>(r, sync)
}

async fn sync(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<sync_v3::Request>,
) -> Result<Json<Value>> {
    let set_presence = parse_set_presence(req.set_presence.as_str()).ok_or_else(|| {
        MatrixError::invalid_param(format!(
            "invalid set_presence '{}'",
            req.set_presence.as_str()
        ))
    })?;
    let filter = match req.filter {
        None => SyncFilter::default(),
        Some(sync_v3::Filter::FilterDefinition(def)) => serde_json::to_value(&def)
            .and_then(serde_json::from_value)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?,
        Some(sync_v3::Filter::FilterId(id)) => s.load_filter(&session.user_id, &id).await?,
        Some(_) => SyncFilter::default(),
    };
    let since = req.since.as_deref().map(token::parse).transpose()?;
    let max = Duration::from_millis(s.config.max_sync_timeout_ms);
    let request = SyncRequest {
        since,
        timeout: req.timeout.unwrap_or_default().min(max),
        full_state: req.full_state,
        filter,
    };
    let body = s
        .sync_with_presence(&session, set_presence, request)
        .await?;
    Ok(Json(body))
}

/// The `set_presence` values we accept (MSC3026 adds `busy`, also under its unstable name).
fn parse_set_presence(v: &str) -> Option<String> {
    match v {
        "online" | "unavailable" | "offline" | "busy" => Some(v.to_owned()),
        "org.matrix.msc3026.busy" => Some("busy".to_owned()),
        _ => None,
    }
}
