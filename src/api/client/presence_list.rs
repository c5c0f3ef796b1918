//! Presence lists (seeds 001/004): the r0 `GET/POST /presence/list/{userId}` and our unstable
//! MSC3032 endpoints for the target's answer (`accept`, `reject`, pending `requests`). ruma
//! has no types for either (the r0 list left the spec in v1.1), so they are registered with
//! `seed_route` and answer our own JSON.
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::extract::{Auth, MatrixJson};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::presence::legacy::presence_event;
use crate::rooms::now_ms;

/// The unstable prefix of the endpoints the r0 API never had (the target's side), named once.
pub const MSC3032_UNSTABLE: &str = "org.matrix.msc3032";

/// One pending request: `{"user_id": owner}`.
#[derive(Serialize)]
struct PendingRequest<'a> {
    user_id: &'a str,
}

/// Pending requests: the body of `…/presence/requests/{userId}` (all of them; the account
/// data `org.matrix.msc3032.presence_requests` is written by `presence::list_federation`).
#[derive(Serialize)]
struct PresenceRequests<'a> {
    requests: Vec<PendingRequest<'a>>,
}

impl<'a> PresenceRequests<'a> {
    fn new(pending: &'a [String]) -> Self {
        Self { requests: pending.iter().map(|u| PendingRequest { user_id: u }).collect() }
    }
}

/// The empty object the write endpoints answer.
#[derive(Serialize)]
struct Empty {}

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = seed_route(r, SeedPath::Client("/presence/list/{user_id}"), get(get_list).post(change_list));
    let r = seed_route(r, SeedPath::Unstable(MSC3032_UNSTABLE, "/presence/list/{user_id}/accept"), post(accept));
    let r = seed_route(r, SeedPath::Unstable(MSC3032_UNSTABLE, "/presence/list/{user_id}/reject"), post(reject));
    seed_route(r, SeedPath::Unstable(MSC3032_UNSTABLE, "/presence/requests/{user_id}"), get(requests))
}

fn parse_user(user_id: &str) -> Result<()> {
    ruma::UserId::parse(user_id).map(|_| ()).map_err(|e| MatrixError::invalid_param(format!("invalid user id: {e}")))
}

/// Only the user named in the path may use their list or answer their requests.
fn own_path(path_user: &str, caller: &str) -> Result<()> {
    parse_user(path_user)?;
    if path_user != caller {
        return Err(MatrixError::forbidden("You cannot use another user's presence list"));
    }
    Ok(())
}

/// `GET /presence/list/{userId}`: the `m.presence` events of the accepted targets, as the
/// owner sees them (seed 001 format).
async fn get_list(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
) -> Result<Json<Vec<Value>>> {
    own_path(&user_id, &session.user_id)?;
    let now = now_ms();
    let events: Vec<Value> = s
        .lists
        .accepted_targets(&user_id)
        .iter()
        .map(|t| presence_event(&s.presence.legacy_snapshot(t, &user_id), now, s.config.legacy_busy_as))
        .collect();
    Ok(Json(events))
}

#[derive(Debug, Deserialize)]
struct ListChange {
    #[serde(default)]
    invite: Option<Vec<String>>,
    #[serde(default)]
    drop: Option<Vec<String>>,
}

/// `POST /presence/list/{userId}` `{"invite": [...], "drop": [...]}`. The whole body is
/// checked before anything changes; invites are applied before drops.
async fn change_list(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<ListChange>,
) -> Result<Json<Empty>> {
    own_path(&user_id, &session.user_id)?;
    let invite = body.invite.unwrap_or_default();
    let drop = body.drop.unwrap_or_default();
    for u in invite.iter().chain(&drop) {
        parse_user(u)?;
    }
    if invite.contains(&user_id) {
        return Err(MatrixError::invalid_param("You cannot add yourself to your presence list"));
    }
    let lf = &s.list_federation;
    for u in &invite {
        // A user of another server is asked through its server (`m.presence_invite`); with
        // federation off there is no such user.
        let known = if lf.is_local(u) { s.accounts.exists(u).await? } else { lf.remote_enabled() };
        if !known {
            return Err(MatrixError::not_found(format!("Unknown user {u}")));
        }
    }
    for u in &invite {
        lf.invite(&user_id, u).await?;
    }
    for u in &drop {
        lf.drop_entry(&user_id, u).await?;
    }
    Ok(Json(Empty {}))
}

/// The owner a target answers, from `{"user_id": ...}`.
fn answered_owner(body: &Value) -> Result<String> {
    match body.get("user_id") {
        None | Some(Value::Null) => Err(MatrixError::MissingParam("user_id is required".into())),
        Some(Value::String(u)) => {
            parse_user(u)?;
            Ok(u.clone())
        }
        Some(_) => Err(MatrixError::bad_json("user_id must be a string")),
    }
}

/// `POST .../presence/list/{targetUserId}/accept` `{"user_id": owner}`.
async fn accept(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Empty>> {
    own_path(&user_id, &session.user_id)?;
    let owner = answered_owner(&body)?;
    s.list_federation.accept(&user_id, &owner).await?;
    Ok(Json(Empty {}))
}

/// `POST .../presence/list/{targetUserId}/reject` `{"user_id": owner}`: refuse a request or
/// revoke an accepted entry.
async fn reject(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Empty>> {
    own_path(&user_id, &session.user_id)?;
    let owner = answered_owner(&body)?;
    s.list_federation.reject(&user_id, &owner).await?;
    Ok(Json(Empty {}))
}

/// `GET .../presence/requests/{userId}`: who is waiting for the user's answer.
async fn requests(State(s): State<AppState>, Auth(session): Auth, Path(user_id): Path<String>) -> Result<Json<Value>> {
    own_path(&user_id, &session.user_id)?;
    let pending = s.lists.pending_requests(&user_id);
    let body = serde_json::to_value(PresenceRequests::new(&pending)).map_err(|e| MatrixError::Internal(e.into()))?;
    Ok(Json(body))
}
