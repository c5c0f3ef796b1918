//! Profiles: `GET /profile/{userId}`, display name and avatar URL.
use axum::extract::{Path, State};
use axum::{Json, Router};
use ruma::api::client::profile::{get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::ProfileField;
use crate::api::extract::{Auth, MatrixJson};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::profile::PROFILE_ROOM_ID_FIELD;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    // Registered from ruma's types, read by hand: a remote profile is passed on as the other
    // server sent it, and the MSC1769 profile-room field is not in ruma's response.
    let r = ruma_route::<get_profile::v3::Request, _, _>(r, profile);
    let r = ruma_route::<get_display_name::v3::Request, _, _>(r, get_displayname);
    let r = ruma_route::<set_display_name::v3::Request, _, _>(r, put_displayname);
    let r = ruma_route::<get_avatar_url::v3::Request, _, _>(r, get_avatar);
    ruma_route::<set_avatar_url::v3::Request, _, _>(r, put_avatar)
}

async fn profile(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, None).await? {
        return Ok(Json(remote));
    }
    let profile = s.profiles.profile(&user_id).await?;
    let mut body = json!({});
    if let Some(n) = profile.displayname {
        body["displayname"] = json!(n);
    }
    if let Some(a) = profile.avatar_url {
        body["avatar_url"] = json!(a);
    }
    // MSC1769 names the profile room in an unstable field.
    body[PROFILE_ROOM_ID_FIELD] = json!(profile.profile_room);
    Ok(Json(body))
}

async fn get_displayname(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, Some("displayname")).await? {
        return Ok(Json(remote));
    }
    let user = s.accounts.user(&user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
    Ok(Json(match user.displayname {
        Some(n) => json!({"displayname": n}),
        None => json!({}),
    }))
}

async fn get_avatar(State(s): State<AppState>, Path(user_id): Path<String>) -> Result<Json<Value>> {
    if let Some(remote) = s.federation.remote_profile(&user_id, Some("avatar_url")).await? {
        return Ok(Json(remote));
    }
    let user = s.accounts.user(&user_id).await?.ok_or_else(|| MatrixError::not_found("Profile not found"))?;
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
    s.profiles.set_profile(&user_id, ProfileField::DisplayName, body.displayname.as_deref()).await?;
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
    s.profiles.set_profile(&user_id, ProfileField::AvatarUrl, body.avatar_url.as_deref()).await?;
    Ok(Json(json!({})))
}
