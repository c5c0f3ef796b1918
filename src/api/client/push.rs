//! Push rules, pushers and notifications (spec "Push Notifications"). The whole ruleset and
//! single rules are answered as JSON with every kind present even when empty (ruma's
//! `Ruleset` leaves empty kinds out, which some clients do not expect); pushers are read back
//! as the client sent them.
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::extract::{Auth, MatrixJson, Ruma};
use crate::api::response::RumaResponse;
use crate::api::{ruma_route, seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};

/// `GET /pushrules/`: the `global` scope (see [`global_rules`]).
#[derive(Serialize)]
struct AllRules {
    global: Value,
}

/// `GET /pushers`: as the client sent them.
#[derive(Serialize)]
struct Pushers {
    pushers: Vec<Value>,
}

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_pushrules_all::v3::Request, _, _>(r, all_rules);
    // Some clients leave out the trailing slash.
    let r = seed_route(r, SeedPath::Client("/pushrules"), get(all_rules));
    let r = ruma_route::<get_pushrules_global_scope::v3::Request, _, _>(r, global_rules);
    let r = seed_route(r, SeedPath::Client("/pushrules/global"), get(global_rules));
    let r = ruma_route::<get_pushrule::v3::Request, _, _>(r, get_rule);
    let r = ruma_route::<set_pushrule::v3::Request, _, _>(r, set_rule);
    let r = ruma_route::<delete_pushrule::v3::Request, _, _>(r, delete_rule);
    let r = ruma_route::<get_pushrule_enabled::v3::Request, _, _>(r, get_enabled);
    let r = ruma_route::<set_pushrule_enabled::v3::Request, _, _>(r, set_enabled);
    let r = ruma_route::<get_pushrule_actions::v3::Request, _, _>(r, get_actions);
    let r = ruma_route::<set_pushrule_actions::v3::Request, _, _>(r, set_actions);
    let r = ruma_route::<get_pushers::v3::Request, _, _>(r, pushers);
    let r = ruma_route::<set_pusher::v3::Request, _, _>(r, set_pusher_handler);
    ruma_route::<get_notifications::v3::Request, _, _>(r, notifications)
}

async fn all_rules(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(_): Ruma<get_pushrules_all::v3::Request>,
) -> Result<Json<AllRules>> {
    Ok(Json(AllRules { global: s.push.ruleset_json(&session.user_id).await? }))
}

async fn global_rules(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(_): Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<Json<Value>> {
    Ok(Json(s.push.ruleset_json(&session.user_id).await?))
}

async fn get_rule(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_pushrule::v3::Request>,
) -> Result<Json<Value>> {
    Ok(Json(s.push.rule_json(&session.user_id, &req.kind, &req.rule_id).await?))
}

async fn set_rule(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_pushrule::v3::Request>,
) -> Result<RumaResponse<set_pushrule::v3::Response>> {
    s.push.insert(&session.user_id, req.rule, req.after.as_deref(), req.before.as_deref()).await?;
    Ok(set_pushrule::v3::Response::new().into())
}

async fn delete_rule(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<delete_pushrule::v3::Request>,
) -> Result<RumaResponse<delete_pushrule::v3::Response>> {
    s.push.remove(&session.user_id, req.kind, &req.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new().into())
}

async fn get_enabled(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<get_pushrule_enabled::v3::Response>> {
    let rule = s.push.rule_json(&session.user_id, &req.kind, &req.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule["enabled"].as_bool().unwrap_or(true)).into())
}

async fn set_enabled(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<set_pushrule_enabled::v3::Response>> {
    s.push.set_enabled(&session.user_id, req.kind, &req.rule_id, req.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

async fn get_actions(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<get_pushrule_actions::v3::Response>> {
    let rule = s.push.rule_json(&session.user_id, &req.kind, &req.rule_id).await?;
    let actions = serde_json::from_value(rule["actions"].clone()).map_err(|e| MatrixError::Internal(e.into()))?;
    Ok(get_pushrule_actions::v3::Response::new(actions).into())
}

async fn set_actions(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<set_pushrule_actions::v3::Response>> {
    s.push.set_actions(&session.user_id, req.kind, &req.rule_id, req.actions).await?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}

async fn pushers(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(_): Ruma<get_pushers::v3::Request>,
) -> Result<Json<Pushers>> {
    Ok(Json(Pushers { pushers: s.push.pushers(&session.user_id).await? }))
}

#[derive(Deserialize)]
struct SetPusherBody {
    #[serde(default)]
    append: bool,
    #[serde(flatten)]
    pusher: serde_json::Map<String, Value>,
}

/// `POST /pushers/set`: kept as sent (clients read their pushers back verbatim).
async fn set_pusher_handler(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<SetPusherBody>,
) -> Result<RumaResponse<set_pusher::v3::Response>> {
    s.push.set_pusher(&session.user_id, &Value::Object(body.pusher), body.append).await?;
    Ok(set_pusher::v3::Response::new().into())
}

/// No push gateway and no notification log yet: an empty list (the spec allows a server to
/// keep none).
async fn notifications(
    Auth(_): Auth,
    Ruma(req): Ruma<get_notifications::v3::Request>,
) -> Result<RumaResponse<get_notifications::v3::Response>> {
    if req.only.as_ref().is_some_and(|o| o.len() > 64) {
        return Err(MatrixError::invalid_param("'only' is too long"));
    }
    Ok(get_notifications::v3::Response::new(vec![]).into())
}
