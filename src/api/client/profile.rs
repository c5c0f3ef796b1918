//! Profiles: `GET /profile/{userId}`, display name and avatar URL.
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::client_route;
use crate::api::extract::{Auth, MatrixJson};
use crate::api::guard::no_nul;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::hooks::ProfileField;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = client_route(r, "/profile/{user_id}", get(profile));
    let r = client_route(r, "/profile/{user_id}/displayname", get(get_displayname).put(put_displayname));
    client_route(r, "/profile/{user_id}/avatar_url", get(get_avatar).put(put_avatar))
}

async fn profile(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, None).await? {
        return Ok(Json(remote));
    }
    let user = s.store.get_user(&user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    let mut body = json!({});
    if let Some(n) = user.displayname {
        body["displayname"] = json!(n);
    }
    if let Some(a) = user.avatar_url {
        body["avatar_url"] = json!(a);
    }
    s.decorate_profile(&user_id, &mut body).await?;
    Ok(Json(body))
}

async fn get_displayname(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, Some("displayname")).await? {
        return Ok(Json(remote));
    }
    let user = s.store.get_user(&user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    Ok(Json(match user.displayname {
        Some(n) => json!({"displayname": n}),
        None => json!({}),
    }))
}

async fn get_avatar(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, Some("avatar_url")).await? {
        return Ok(Json(remote));
    }
    let user = s.store.get_user(&user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    Ok(Json(match user.avatar_url {
        Some(a) => json!({"avatar_url": a}),
        None => json!({}),
    }))
}

#[derive(Deserialize)]
struct DisplayName {
    displayname: Option<String>,
}

#[derive(Deserialize)]
struct AvatarUrl {
    avatar_url: Option<String>,
}

async fn put_displayname(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<DisplayName>,
) -> Result<Json<Value>> {
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("Cannot set another user's display name"));
    }
    if body.displayname.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(MatrixError::invalid_param("displayname is too long"));
    }
    no_nul("displayname", body.displayname.as_deref().unwrap_or_default())?;
    s.store.set_displayname(&user_id, body.displayname.as_deref()).await?;
    s.on_profile_changed(&user_id, ProfileField::DisplayName).await?;
    Ok(Json(json!({})))
}

async fn put_avatar(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(user_id): Path<String>,
    MatrixJson(body): MatrixJson<AvatarUrl>,
) -> Result<Json<Value>> {
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("Cannot set another user's avatar"));
    }
    if body.avatar_url.as_ref().is_some_and(|a| a.len() > 1024) {
        return Err(MatrixError::invalid_param("avatar_url is too long"));
    }
    no_nul("avatar_url", body.avatar_url.as_deref().unwrap_or_default())?;
    s.store.set_avatar_url(&user_id, body.avatar_url.as_deref()).await?;
    s.on_profile_changed(&user_id, ProfileField::AvatarUrl).await?;
    Ok(Json(json!({})))
}
