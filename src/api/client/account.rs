//! Registration (UIA `m.login.dummy`), login, logout, whoami and devices.
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use ruma::api::client::account::whoami;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::extract::{Auth, ClientIp, MatrixJson, Ruma};
use crate::api::{client_route, ruma_route};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::rooms::event::{now_ms, random_string};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = client_route(r, "/register", post(register));
    let r = client_route(r, "/register/available", get(available));
    let r = client_route(r, "/login", get(login_flows).post(login));
    let r = client_route(r, "/logout", post(logout));
    let r = client_route(r, "/logout/all", post(logout_all));
    let r = client_route(r, "/devices", get(devices));
    ruma_route::<whoami::v3::Request, _, _>(r, whoami)
}

#[derive(Deserialize)]
struct RegisterQuery {
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<serde_json::Value>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    auth: Option<Value>,
    #[serde(default)]
    inhibit_login: bool,
}

async fn register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<RegisterQuery>,
    MatrixJson(body): MatrixJson<RegisterBody>,
) -> Result<Json<Value>> {
    s.limiter.check(ip)?;
    if q.kind.as_deref() == Some("guest") {
        return Err(MatrixError::forbidden("Guest access is disabled"));
    }
    if !s.config.registration_enabled {
        return Err(MatrixError::forbidden("Registration has been disabled"));
    }
    let username = body.username.clone().unwrap_or_else(|| random_string(12).to_lowercase());
    let user_id = s.accounts.user_id_for_registration(&username)?;
    if s.accounts.exists(&user_id).await? {
        return Err(MatrixError::UserInUse);
    }
    // User-interactive auth: the only stage is m.login.dummy (spec: "Dummy Auth").
    let completed = match &body.auth {
        Some(auth) if auth.get("type").and_then(Value::as_str) == Some("m.login.dummy") => {
            match auth.get("session").and_then(Value::as_str) {
                Some(session) => s.uia_sessions.remove(session).is_some(),
                None => true,
            }
        }
        _ => false,
    };
    if !completed {
        let session = random_string(24);
        s.uia_sessions.retain(|_, created| now_ms() - *created < 3_600_000);
        s.uia_sessions.insert(session.clone(), now_ms());
        return Err(MatrixError::UiaRequired(json!({
            "session": session,
            "flows": [{"stages": ["m.login.dummy"]}],
            "params": {},
        })));
    }
    let password = match body.password {
        Some(Value::String(p)) if !p.is_empty() => p,
        Some(Value::String(_)) | None => return Err(MatrixError::MissingParam("password is required".into())),
        Some(_) => return Err(MatrixError::bad_json("password must be a string")),
    };
    if password.len() > 512 {
        return Err(MatrixError::invalid_param("password is too long"));
    }
    s.accounts.register(&user_id, &password).await?;
    // A new account gets its profile room at once (MSC1769).
    s.profiles.ensure_for(&user_id).await?;
    if body.inhibit_login {
        return Ok(Json(json!({"user_id": user_id})));
    }
    start_session(&s, &user_id, body.device_id, body.initial_device_display_name.as_deref()).await
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: Option<String>,
}

async fn available(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<AvailableQuery>,
) -> Result<Json<Value>> {
    s.limiter.check(ip)?;
    let username = q.username.ok_or_else(|| MatrixError::MissingParam("username is required".into()))?;
    let user_id = s.accounts.user_id_for_registration(&username)?;
    if s.accounts.exists(&user_id).await? {
        return Err(MatrixError::UserInUse);
    }
    Ok(Json(json!({"available": true})))
}

async fn login_flows() -> Json<Value> {
    Json(json!({"flows": [{"type": "m.login.password"}]}))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    MatrixJson(body): MatrixJson<LoginBody>,
) -> Result<Json<Value>> {
    s.limiter.check(ip)?;
    if body.kind != "m.login.password" {
        return Err(MatrixError::Unknown(format!("Unknown login type {}", body.kind)));
    }
    let user = match &body.identifier {
        Some(id) => {
            if id.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(MatrixError::Unknown("Only m.id.user identifiers are supported".into()));
            }
            id.get("user").and_then(Value::as_str).map(str::to_owned)
        }
        None => body.user.clone(),
    }
    .ok_or_else(|| MatrixError::MissingParam("identifier.user is required".into()))?;
    let password = body.password.ok_or_else(|| MatrixError::MissingParam("password is required".into()))?;
    let localpart = user.strip_prefix('@').map(|u| u.split(':').next().unwrap_or_default()).unwrap_or(&user);
    if user.starts_with('@') && !s.accounts.is_local(&user) {
        return Err(MatrixError::forbidden("Invalid username or password"));
    }
    let user_id = s.accounts.user_id(&localpart.to_lowercase());
    s.limiter.check_login(&user_id)?;
    s.accounts.check_password(&user_id, &password).await?;
    start_session(&s, &user_id, body.device_id, body.initial_device_display_name.as_deref()).await
}

async fn logout(State(s): State<AppState>, Auth(session): Auth) -> Result<Json<Value>> {
    s.accounts.end_session(&session).await?;
    Ok(Json(json!({})))
}

async fn logout_all(State(s): State<AppState>, Auth(session): Auth) -> Result<Json<Value>> {
    s.accounts.end_all_sessions(&session).await?;
    Ok(Json(json!({})))
}

async fn devices(State(s): State<AppState>, Auth(session): Auth) -> Result<Json<Value>> {
    let devices: Vec<Value> = s
        .accounts
        .devices(&session.user_id)
        .await?
        .into_iter()
        .map(|d| {
            json!({"device_id": d.device_id, "display_name": d.display_name, "last_seen_ip": null, "last_seen_ts": d.last_seen_ts})
        })
        .collect();
    Ok(Json(json!({"devices": devices})))
}

async fn whoami(Auth(session): Auth, Ruma(_): Ruma<whoami::v3::Request>) -> Result<Json<Value>> {
    Ok(Json(json!({"user_id": session.user_id, "device_id": session.device_id, "is_guest": false})))
}

/// A new device for `user_id` with its access token: the body of a successful register/login.
async fn start_session(
    s: &AppState,
    user_id: &str,
    device_id: Option<String>,
    display_name: Option<&str>,
) -> Result<Json<Value>> {
    let session = s.accounts.open_session(user_id, device_id).await?;
    // Bounded devices per user: each is tracked (and merged) by the presence engine.
    let devices = s.accounts.devices(user_id).await?;
    if devices.len() >= s.config.max_devices_per_user && !devices.iter().any(|d| d.device_id == session.device_id) {
        return Err(MatrixError::ResourceLimitExceeded(format!(
            "a user may have at most {} devices; log some out first",
            s.config.max_devices_per_user
        )));
    }
    let token = s.accounts.issue_token(&session, display_name).await?;
    s.e2ee.device_added(&session).await?;
    Ok(Json(json!({
        "user_id": user_id,
        "access_token": token,
        "device_id": session.device_id,
        "home_server": s.config.server_name,
    })))
}
