//! Account data (spec "Client Config"): `PUT/GET /user/{userId}/account_data/{type}` and
//! `PUT/GET /user/{userId}/rooms/{roomId}/account_data/{type}`.
use axum::extract::State;
use axum::Router;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use serde_json::Value;

use crate::account_data::{Scope, SERVER_CONTROLLED};
use crate::accounts::Session;
use crate::api::extract::{Auth, Ruma};
use crate::api::response::{raw, RumaResponse};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<set_global_account_data::v3::Request, _, _>(r, set_global);
    let r = ruma_route::<get_global_account_data::v3::Request, _, _>(r, get_global);
    let r = ruma_route::<set_room_account_data::v3::Request, _, _>(r, set_room);
    ruma_route::<get_room_account_data::v3::Request, _, _>(r, get_room)
}

fn check_owner(session: &Session, user_id: &ruma::UserId) -> Result<()> {
    if session.user_id != user_id.as_str() {
        return Err(MatrixError::forbidden("Cannot access account data of other users"));
    }
    Ok(())
}

fn check_client_settable(kind: &str) -> Result<()> {
    if SERVER_CONTROLLED.contains(&kind) {
        return Err(MatrixError::ServerControlled(format!("Cannot set {kind} through this API")));
    }
    Ok(())
}

/// Room account data needs the room to exist (404) and the user to have been in it (403).
async fn check_room(s: &AppState, session: &Session, room_id: &str) -> Result<()> {
    let state = s.rooms.state(room_id).await?;
    if state.membership(&session.user_id).is_none() {
        return Err(MatrixError::forbidden("You are not a member of this room"));
    }
    Ok(())
}

fn content(raw: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(raw).map_err(|e| MatrixError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(MatrixError::NotJson("Content must be a JSON object".into()));
    }
    Ok(v)
}

async fn set_global(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_global_account_data::v3::Request>,
) -> Result<RumaResponse<set_global_account_data::v3::Response>> {
    check_owner(&session, &req.user_id)?;
    let kind = req.event_type.to_string();
    check_client_settable(&kind)?;
    s.account_data.set(&session.user_id, Scope::Global, &kind, &content(req.data.json().get())?).await?;
    Ok(set_global_account_data::v3::Response::new().into())
}

async fn get_global(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_global_account_data::v3::Request>,
) -> Result<RumaResponse<get_global_account_data::v3::Response>> {
    check_owner(&session, &req.user_id)?;
    let data = s.account_data.get(&session.user_id, Scope::Global, &req.event_type.to_string()).await?;
    let data = data.ok_or_else(|| MatrixError::not_found("Account data not found"))?;
    Ok(get_global_account_data::v3::Response::new(raw(&data)?).into())
}

async fn set_room(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_room_account_data::v3::Request>,
) -> Result<RumaResponse<set_room_account_data::v3::Response>> {
    check_owner(&session, &req.user_id)?;
    let kind = req.event_type.to_string();
    check_client_settable(&kind)?;
    check_room(&s, &session, req.room_id.as_str()).await?;
    let scope = Scope::Room(req.room_id.as_str());
    s.account_data.set(&session.user_id, scope, &kind, &content(req.data.json().get())?).await?;
    Ok(set_room_account_data::v3::Response::new().into())
}

async fn get_room(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_room_account_data::v3::Request>,
) -> Result<RumaResponse<get_room_account_data::v3::Response>> {
    check_owner(&session, &req.user_id)?;
    check_room(&s, &session, req.room_id.as_str()).await?;
    let scope = Scope::Room(req.room_id.as_str());
    let data = s.account_data.get(&session.user_id, scope, &req.event_type.to_string()).await?;
    let data = data.ok_or_else(|| MatrixError::not_found("Room account data not found"))?;
    Ok(get_room_account_data::v3::Response::new(raw(&data)?).into())
}
