//! Registration (UIA `m.login.dummy`), login, logout, whoami and devices.
use axum::extract::{Query, State};
use axum::{Json, Router};
use ruma::api::client::account::{get_username_availability, register, whoami};
use ruma::api::client::device::{get_devices, Device};
use ruma::api::client::session::{get_login_types, login, logout, logout_all};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::extract::{Auth, ClientIp, MatrixJson, Ruma};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::rooms::event::{now_ms, random_string};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    // Register, availability and login read their request themselves: ruma's parsing would
    // change the errors clients get (UIA's 401 body, `M_MISSING_PARAM`, unknown login types).
    let r = ruma_route::<register::v3::Request, _, _>(r, register);
    let r = ruma_route::<get_username_availability::v3::Request, _, _>(r, available);
    let r = ruma_route::<get_login_types::v3::Request, _, _>(r, login_flows);
    let r = ruma_route::<login::v3::Request, _, _>(r, login);
    // Logout takes no body; any body is ignored, as before.
    let r = ruma_route::<logout::v3::Request, _, _>(r, logout);
    let r = ruma_route::<logout_all::v3::Request, _, _>(r, logout_all);
    let r = ruma_route::<get_devices::v3::Request, _, _>(r, devices);
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

async fn login_flows() -> RumaResponse<get_login_types::v3::Response> {
    use get_login_types::v3::{LoginType, PasswordLoginType};
    get_login_types::v3::Response::new(vec![LoginType::Password(PasswordLoginType::new())]).into()
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

async fn logout(State(s): State<AppState>, Auth(session): Auth) -> Result<RumaResponse<logout::v3::Response>> {
    s.accounts.end_session(&session).await?;
    Ok(logout::v3::Response::new().into())
}

async fn logout_all(State(s): State<AppState>, Auth(session): Auth) -> Result<RumaResponse<logout_all::v3::Response>> {
    s.accounts.end_all_sessions(&session).await?;
    Ok(logout_all::v3::Response::new().into())
}

async fn devices(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(_): Ruma<get_devices::v3::Request>,
) -> Result<RumaResponse<get_devices::v3::Response>> {
    let devices = s
        .accounts
        .devices(&session.user_id)
        .await?
        .into_iter()
        .map(|d| {
            let mut device = Device::new(OwnedDeviceId::from(d.device_id));
            device.display_name = d.display_name;
            device.last_seen_ts = UInt::try_from(d.last_seen_ts).ok().map(MilliSecondsSinceUnixEpoch);
            device
        })
        .collect();
    Ok(get_devices::v3::Response::new(devices).into())
}

async fn whoami(Auth(session): Auth, Ruma(_): Ruma<whoami::v3::Request>) -> Result<RumaResponse<whoami::v3::Response>> {
    let user_id = ruma::UserId::parse(&session.user_id).map_err(|e| MatrixError::Internal(e.into()))?;
    let mut resp = whoami::v3::Response::new(user_id, false);
    resp.device_id = Some(OwnedDeviceId::from(session.device_id));
    Ok(resp.into())
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
