//! Key management (spec "End-to-End Encryption"): `/keys/upload`, `/keys/query`,
//! `/keys/claim`, `/keys/changes`, cross-signing (`/keys/device_signing/upload`,
//! `/keys/signatures/upload`), and MSC3814 dehydrated devices (not supported: 404).
//!
//! Request bodies are read as JSON and checked by the e2ee service (bounds, key ids, the
//! errcodes clients get today). `/keys/query`, `/keys/claim` and `/keys/signatures/upload`
//! answer the e2ee service's JSON, which keeps `failures` and empty maps that ruma's response
//! types leave out (clients such as matrix-nio read them).
use std::collections::{BTreeMap, HashMap};

use ruma::api::client::uiaa::{AuthFlow, AuthType, UiaaInfo};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use ruma::{OneTimeKeyAlgorithm, OwnedUserId, UInt};

use axum::extract::{RawQuery, State};
use axum::routing::post;
use axum::{Json, Router};
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::response::RumaResponse;
use crate::api::{ruma_route, seed_route, SeedPath};
use crate::app::AppState;
use crate::e2ee::keys::UploadKeys;
use crate::error::{MatrixError, Result};
use crate::rooms::event::{now_ms, random_string};
use crate::sync::token;

/// MSC3814 (dehydrated devices), unstable prefix.
const MSC3814: &str = "org.matrix.msc3814.v1";
/// MSC2697, its predecessor, still asked by Hydrogen at login.
const MSC2697: &str = "org.matrix.msc2697.v2";

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<upload_keys::v3::Request, _, _>(r, upload);
    let r = ruma_route::<get_keys::v3::Request, _, _>(r, query);
    let r = ruma_route::<claim_keys::v3::Request, _, _>(r, claim);
    let r = ruma_route::<get_key_changes::v3::Request, _, _>(r, changes);
    let r = ruma_route::<upload_signing_keys::v3::Request, _, _>(r, upload_signing);
    let r = ruma_route::<upload_signatures::v3::Request, _, _>(r, signatures);
    let r = seed_route(r, SeedPath::Unstable(MSC3814, "/dehydrated_device"), dehydrated_methods());
    let r =
        seed_route(r, SeedPath::Unstable(MSC3814, "/dehydrated_device/{device_id}/events"), post(no_dehydrated_device));
    let r = seed_route(r, SeedPath::Unstable(MSC2697, "/dehydrated_device"), dehydrated_methods());
    seed_route(r, SeedPath::Unstable(MSC2697, "/dehydrated_device/claim"), post(no_dehydrated_device))
}

/// `GET`, `PUT` and `DELETE` of a dehydrated device, all answered 404.
fn dehydrated_methods() -> axum::routing::MethodRouter<AppState> {
    use axum::routing::{delete, get, put};
    get(no_dehydrated_device).merge(put(no_dehydrated_device)).merge(delete(no_dehydrated_device))
}

async fn upload(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<UploadKeys>,
) -> Result<RumaResponse<upload_keys::v3::Response>> {
    let counts = s.e2ee.upload_keys(&session, body).await?;
    let mut counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = counts
        .into_iter()
        .map(|(k, v)| (OneTimeKeyAlgorithm::from(k.as_str()), UInt::try_from(v.max(0)).unwrap_or_default()))
        .collect();
    counts.entry(OneTimeKeyAlgorithm::from(crate::e2ee::SIGNED_CURVE25519)).or_default();
    Ok(upload_keys::v3::Response::new(counts).into())
}

#[derive(Deserialize)]
struct QueryBody {
    device_keys: BTreeMap<String, Vec<String>>,
}

async fn query(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<QueryBody>,
) -> Result<Json<Value>> {
    for user in body.device_keys.keys() {
        parse_user(user)?;
    }
    Ok(Json(s.e2ee.query_keys(&session.user_id, &body.device_keys).await?))
}

#[derive(Deserialize)]
struct ClaimBody {
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
}

async fn claim(
    State(s): State<AppState>,
    Auth(_): Auth,
    MatrixJson(body): MatrixJson<ClaimBody>,
) -> Result<Json<Value>> {
    for user in body.one_time_keys.keys() {
        parse_user(user)?;
    }
    Ok(Json(s.e2ee.claim_keys(&body.one_time_keys).await?))
}

/// `from` and `to` are read from the query here: missing ones are `M_MISSING_PARAM`.
async fn changes(
    State(s): State<AppState>,
    Auth(session): Auth,
    RawQuery(q): RawQuery,
) -> Result<RumaResponse<get_key_changes::v3::Response>> {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    let from = params.get("from").ok_or_else(|| MatrixError::MissingParam("from is required".into()))?;
    let to = params.get("to").ok_or_else(|| MatrixError::MissingParam("to is required".into()))?;
    let (from, to) = (token::parse(from)?, token::parse(to)?.min(s.stream.current()));
    let (changed, left) =
        if to > from { s.e2ee.device_list_delta(&session.user_id, from, to).await? } else { (vec![], vec![]) };
    let users = |ids: Vec<String>| ids.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
    Ok(get_key_changes::v3::Response::new(users(changed), users(left)).into())
}

fn parse_user(user_id: &str) -> Result<()> {
    ruma::UserId::parse(user_id).map(|_| ()).map_err(|e| MatrixError::invalid_param(format!("invalid user id: {e}")))
}

#[derive(Deserialize)]
struct SigningKeysBody {
    master_key: Option<Value>,
    self_signing_key: Option<Value>,
    user_signing_key: Option<Value>,
    auth: Option<Value>,
}

/// Replacing cross-signing keys needs the account password (spec: user-interactive auth);
/// the first upload does not (see `E2ee::check_signing_keys`).
async fn upload_signing(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<SigningKeysBody>,
) -> Result<RumaResponse<upload_signing_keys::v3::Response>> {
    let mut keys = HashMap::new();
    for (t, k) in
        [("master", body.master_key), ("self_signing", body.self_signing_key), ("user_signing", body.user_signing_key)]
    {
        if let Some(k) = k.filter(|k| !k.is_null()) {
            keys.insert(t, k);
        }
    }
    let (upload, needs_auth) = s.e2ee.check_signing_keys(&session.user_id, &keys).await?;
    if needs_auth {
        password_uia(&s, &session.user_id, body.auth.as_ref()).await?;
    }
    s.e2ee.store_signing_keys(&session.user_id, upload).await?;
    Ok(upload_signing_keys::v3::Response::new().into())
}

/// One-stage user-interactive auth with `m.login.password` (spec "User-interactive
/// authentication API"), sessions kept with registration's.
async fn password_uia(s: &AppState, user_id: &str, auth: Option<&Value>) -> Result<()> {
    let challenge = |session: String, error: Option<&str>| {
        let mut info = UiaaInfo::new(vec![AuthFlow::new(vec![AuthType::Password])]);
        info.session = Some(session);
        info.params = serde_json::value::to_raw_value(&Map::new()).ok();
        info.auth_error = error.map(|e| Box::new(StandardErrorBody::new(ErrorKind::Forbidden, e.to_owned())));
        MatrixError::uia_required(&info)
    };
    let new_session = || {
        let id = random_string(24);
        s.uia_sessions.retain(|_, created| now_ms() - *created < 3_600_000);
        s.uia_sessions.insert(id.clone(), now_ms());
        id
    };
    let Some(auth) = auth.filter(|a| a.get("type").and_then(Value::as_str) == Some("m.login.password")) else {
        return Err(challenge(new_session(), None));
    };
    let session = auth.get("session").and_then(Value::as_str).map(str::to_owned);
    if session.as_ref().is_some_and(|id| !s.uia_sessions.contains_key(id)) {
        return Err(challenge(new_session(), Some("Unknown session")));
    }
    let session = session.unwrap_or_else(new_session);
    let user = auth
        .get("identifier")
        .and_then(|i| i.get("user"))
        .or_else(|| auth.get("user"))
        .and_then(Value::as_str)
        .unwrap_or(user_id);
    let localpart = user.strip_prefix('@').and_then(|u| u.split(':').next()).unwrap_or(user);
    let password = auth.get("password").and_then(Value::as_str).unwrap_or_default();
    if s.accounts.user_id(&localpart.to_lowercase()) != user_id
        || password.len() > 512
        || s.accounts.check_password(user_id, password).await.is_err()
    {
        return Err(challenge(session, Some("Invalid password")));
    }
    s.uia_sessions.remove(&session);
    Ok(())
}

async fn signatures(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>> {
    for user in body.keys() {
        parse_user(user)?;
    }
    Ok(Json(s.e2ee.upload_signatures(&session.user_id, &body).await?))
}

async fn no_dehydrated_device(Auth(_): Auth) -> MatrixError {
    MatrixError::not_found("Dehydrated devices are not supported")
}
