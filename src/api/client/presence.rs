//! `GET/PUT /presence/{userId}/status`: the manual status (MSC3032) and the effective
//! presence, with the spec's fields. The body of `PUT` is checked field by field (for the
//! errcodes clients get today), and `GET` adds MSC3032's `org.matrix.msc3032.device_kinds`,
//! which ruma's response type has no field for.
use axum::extract::{Path, State};
use axum::{Json, Router};
use ruma::api::client::presence::{get_presence, set_presence};
use serde_json::Value;

use crate::api::extract::{Auth, MatrixJson};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::presence::legacy::presence_content;
use crate::presence::Presence;
use crate::rooms::now_ms;

/// Longest accepted `status_msg`, in bytes.
pub const MAX_STATUS_MSG_BYTES: usize = 2048;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_presence::v3::Request, _, _>(r, get_status);
    ruma_route::<set_presence::v3::Request, _, _>(r, put_status)
}

fn parse_user(user_id: &str) -> Result<()> {
    ruma::UserId::parse(user_id).map(|_| ()).map_err(|e| MatrixError::invalid_param(format!("invalid user id: {e}")))
}

async fn get_status(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
) -> Result<Json<Value>> {
    parse_user(&user_id)?;
    if !s.presence.access.can_see(&session.user_id, &user_id).await? {
        return Err(MatrixError::forbidden("You are not allowed to see their presence"));
    }
    // Users of other servers are known by what their servers told us (offline if nothing).
    let local = user_id.split_once(':').is_some_and(|(_, server)| server == s.config.server_name);
    if local && !s.accounts.exists(&user_id).await? {
        return Err(MatrixError::not_found("Unknown user"));
    }
    let snapshot = s.presence.legacy_snapshot(&user_id, &session.user_id);
    Ok(Json(presence_content(&snapshot, now_ms(), s.config.legacy_busy_as)))
}

async fn put_status(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<RumaResponse<set_presence::v3::Response>> {
    parse_user(&user_id)?;
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("You cannot set the presence of another user"));
    }
    s.limiter.check_presence(&session.user_id)?;
    let presence = match body.get("presence") {
        None | Some(Value::Null) => return Err(MatrixError::MissingParam("presence is required".into())),
        Some(Value::String(p)) => p.parse::<Presence>().map_err(|_| {
            MatrixError::invalid_param(format!("invalid presence '{p}'; expected online, unavailable, offline or busy"))
        })?,
        Some(_) => return Err(MatrixError::bad_json("presence must be a string")),
    };
    let status_msg = match body.get("status_msg") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m.len() > MAX_STATUS_MSG_BYTES => {
            return Err(MatrixError::invalid_param(format!("status_msg is longer than {MAX_STATUS_MSG_BYTES} bytes")))
        }
        Some(Value::String(m)) => {
            crate::api::guard::no_nul("status_msg", m)?;
            Some(m.clone())
        }
        Some(_) => return Err(MatrixError::bad_json("status_msg must be a string")),
    };
    s.presence.set_manual(&session, presence, status_msg).await?;
    Ok(set_presence::v3::Response::new().into())
}
