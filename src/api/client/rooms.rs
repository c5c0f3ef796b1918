//! Rooms: create, membership, send, state, members, messages.
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ruma::api::client::membership::{
    ban_user, get_member_events, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms,
    kick_user, leave_room, unban_user,
};
use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::client::room::create_room;
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use ruma::api::Direction;
use ruma::OwnedRoomId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::extract::{Auth, MatrixJson, Ruma};
use crate::api::response::{owned_event_id, owned_room_id, RumaResponse};
use crate::api::{ruma_route, seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::rooms::create::CreateRoomSpec;
use crate::rooms::{now_ms, MessagesPage, NewEvent, ROOM_VERSION};
use crate::sync::filter::EventFilter;
use crate::sync::token;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    // createRoom reads its body field by field: ruma would answer `M_BAD_JSON` where clients
    // get `M_INVALID_PARAM` today (a bad user id in `invite`, an unknown visibility).
    let r = ruma_route::<create_room::v3::Request, _, _>(r, create_room_handler);
    let r = ruma_route::<join_room_by_id_or_alias::v3::Request, _, _>(r, join_by_id_or_alias);
    let r = ruma_route::<join_room_by_id::v3::Request, _, _>(r, join_by_id);
    let r = ruma_route::<invite_user::v3::Request, _, _>(r, invite);
    let r = ruma_route::<leave_room::v3::Request, _, _>(r, leave);
    let r = ruma_route::<kick_user::v3::Request, _, _>(r, kick);
    let r = ruma_route::<ban_user::v3::Request, _, _>(r, ban);
    let r = ruma_route::<unban_user::v3::Request, _, _>(r, unban);
    let r = ruma_route::<send_message_event::v3::Request, _, _>(r, send_message);
    let r = ruma_route::<send_state_event::v3::Request, _, _>(r, put_state);
    let r = ruma_route::<get_state_event_for_key::v3::Request, _, _>(r, get_state_key);
    // Empty state keys, `/state/{type}` and `/state/{type}/`: axum cannot match ruma's
    // `{state_key}` segment when it is empty, so these two paths are named here.
    let r = seed_route(r, SeedPath::Client("/rooms/{room_id}/state/{event_type}"), get(get_state_key).put(put_state));
    let r = seed_route(r, SeedPath::Client("/rooms/{room_id}/state/{event_type}/"), get(get_state_key).put(put_state));
    let r = ruma_route::<get_state_events::v3::Request, _, _>(r, get_state_all);
    let r = ruma_route::<get_member_events::v3::Request, _, _>(r, members);
    let r = ruma_route::<joined_members::v3::Request, _, _>(r, joined_members_handler);
    let r = ruma_route::<joined_rooms::v3::Request, _, _>(r, joined_rooms_handler);
    ruma_route::<get_message_events::v3::Request, _, _>(r, messages)
}

#[derive(Deserialize)]
struct StateEventBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    content: Map<String, Value>,
}

#[derive(Deserialize)]
struct CreateRoomBody {
    visibility: Option<String>,
    room_alias_name: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    invite: Vec<String>,
    preset: Option<String>,
    #[serde(default)]
    initial_state: Vec<StateEventBody>,
    creation_content: Option<Map<String, Value>>,
    power_level_content_override: Option<Map<String, Value>>,
    #[serde(default)]
    is_direct: bool,
    room_version: Option<String>,
}

fn parse_user_id(s: &str) -> Result<String> {
    ruma::UserId::parse(s)
        .map(|u| u.to_string())
        .map_err(|e| MatrixError::invalid_param(format!("invalid user id '{s}': {e}")))
}

async fn create_room_handler(
    State(s): State<AppState>,
    Auth(session): Auth,
    MatrixJson(body): MatrixJson<CreateRoomBody>,
) -> Result<RumaResponse<create_room::v3::Response>> {
    if let Some(v) = &body.room_version {
        if v != ROOM_VERSION {
            return Err(MatrixError::invalid_param(format!(
                "unsupported room version {v}; this server creates version {ROOM_VERSION}"
            )));
        }
    }
    if let Some(v) = &body.visibility {
        if v != "public" && v != "private" {
            return Err(MatrixError::invalid_param("visibility must be public or private"));
        }
    }
    let invite = body.invite.iter().map(|u| parse_user_id(u)).collect::<Result<Vec<_>>>()?;
    let alias = body.room_alias_name.as_deref().map(|name| s.directory.aliases.for_new_room(name)).transpose()?;
    let spec = CreateRoomSpec {
        preset: body.preset,
        visibility_public: body.visibility.as_deref() == Some("public"),
        name: body.name,
        topic: body.topic,
        invite,
        initial_state: body
            .initial_state
            .into_iter()
            .map(|e| NewEvent::state(&e.kind, &e.state_key, Value::Object(e.content)))
            .collect(),
        creation_content: body.creation_content.unwrap_or_default(),
        alias,
        power_level_content_override: body.power_level_content_override,
        is_direct: body.is_direct,
    };
    let room_id = s.rooms.create_room(&session.user_id, &spec).await?;
    Ok(create_room::v3::Response::new(owned_room_id(&room_id)?).into())
}

/// The room a room id or alias names. An alias of another server is resolved there
/// (`query/directory`), and the servers it names join `via` (at most 10); a local alias or a
/// room id is resolved here. Used by joins and by peeks (MSC2753/MSC2444).
pub(super) async fn resolve_room_or_alias(s: &AppState, target: &str, via: &mut Vec<String>) -> Result<String> {
    let remote = match target.starts_with('#') {
        true => s.federation.remote_alias(target).await?,
        false => None,
    };
    Ok(match remote {
        Some(answer) => {
            let servers = answer["servers"].as_array().into_iter().flatten().filter_map(Value::as_str);
            via.extend(servers.take(10).map(str::to_owned));
            answer["room_id"].as_str().ok_or_else(|| MatrixError::not_found("Room alias not found"))?.to_owned()
        }
        None => s.directory.aliases.resolve_room(target).await?,
    })
}

async fn join_by_id_or_alias(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<RumaResponse<join_room_by_id_or_alias::v3::Response>> {
    let mut via: Vec<String> = req.via.iter().map(|s| s.to_string()).collect();
    let room_id = resolve_room_or_alias(&s, req.room_id_or_alias.as_str(), &mut via).await?;
    s.rooms.join(&room_id, &session.user_id, &via, req.reason).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(owned_room_id(&room_id)?).into())
}

async fn join_by_id(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<join_room_by_id::v3::Request>,
) -> Result<RumaResponse<join_room_by_id::v3::Response>> {
    s.rooms.join(req.room_id.as_str(), &session.user_id, &[], req.reason).await?;
    Ok(join_room_by_id::v3::Response::new(req.room_id).into())
}

async fn invite(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<invite_user::v3::Request>,
) -> Result<RumaResponse<invite_user::v3::Response>> {
    let target = match req.recipient {
        invite_user::v3::InvitationRecipient::UserId(i) => i.user_id,
        _ => return Err(MatrixError::invalid_param("third-party invites are not supported")),
    };
    s.rooms.set_membership(req.room_id.as_str(), &session.user_id, target.as_str(), "invite", None).await?;
    Ok(invite_user::v3::Response::new().into())
}

async fn leave(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<leave_room::v3::Request>,
) -> Result<RumaResponse<leave_room::v3::Response>> {
    s.rooms.set_membership(req.room_id.as_str(), &session.user_id, &session.user_id, "leave", req.reason).await?;
    Ok(leave_room::v3::Response::new().into())
}

async fn kick(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<kick_user::v3::Request>,
) -> Result<RumaResponse<kick_user::v3::Response>> {
    s.rooms.set_membership(req.room_id.as_str(), &session.user_id, req.user_id.as_str(), "leave", req.reason).await?;
    Ok(kick_user::v3::Response::new().into())
}

async fn ban(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<ban_user::v3::Request>,
) -> Result<RumaResponse<ban_user::v3::Response>> {
    s.rooms.set_membership(req.room_id.as_str(), &session.user_id, req.user_id.as_str(), "ban", req.reason).await?;
    Ok(ban_user::v3::Response::new().into())
}

async fn unban(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<unban_user::v3::Request>,
) -> Result<RumaResponse<unban_user::v3::Response>> {
    s.rooms.unban(req.room_id.as_str(), &session.user_id, req.user_id.as_str(), req.reason).await?;
    Ok(unban_user::v3::Response::new().into())
}

fn content_object(raw: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(raw).map_err(|e| MatrixError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(MatrixError::NotJson("event content must be a JSON object".into()));
    }
    Ok(v)
}

async fn send_message(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<send_message_event::v3::Request>,
) -> Result<RumaResponse<send_message_event::v3::Response>> {
    let content = content_object(req.body.json().get())?;
    let mut ev = NewEvent::message(&req.event_type.to_string(), content);
    ev.txn = Some((session.device_id.clone(), req.txn_id.to_string()));
    let pdu = s.rooms.send_user_event(&session, req.room_id.as_str(), ev).await?;
    Ok(send_message_event::v3::Response::new(owned_event_id(&pdu.event_id)?).into())
}

async fn put_state(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<send_state_event::v3::Request>,
) -> Result<RumaResponse<send_state_event::v3::Response>> {
    let content = content_object(req.body.json().get())?;
    let ev = NewEvent::state(&req.event_type.to_string(), &req.state_key, content);
    let pdu = s.rooms.send_user_event(&session, req.room_id.as_str(), ev).await?;
    Ok(send_state_event::v3::Response::new(owned_event_id(&pdu.event_id)?).into())
}

async fn get_state_key(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_state_event_for_key::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    s.rooms.check_can_read_state(room_id, &session.user_id).await?;
    let mask = s.profiles.mask_for(room_id, &session.user_id).await?;
    let ev = s
        .rooms
        .state_event(room_id, &req.event_type.to_string(), &req.state_key)
        .await?
        .and_then(|ev| mask.apply(ev.to_client(now_ms(), None)))
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    if matches!(req.format, get_state_event_for_key::v3::StateEventFormat::Event) {
        return Ok(Json(ev));
    }
    Ok(Json(ev["content"].clone()))
}

async fn get_state_all(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_state_events::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    s.rooms.check_can_read_state(room_id, &session.user_id).await?;
    let now = now_ms();
    let mut events: Vec<Value> = s.rooms.state_events(room_id).await?.iter().map(|e| e.to_client(now, None)).collect();
    s.profiles.mask_for(room_id, &session.user_id).await?.apply_all(&mut events);
    Ok(Json(Value::Array(events)))
}

async fn members(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_member_events::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    s.rooms.check_can_read_state(room_id, &session.user_id).await?;
    let now = now_ms();
    let want = req.membership.as_ref().map(|m| m.as_str().to_owned());
    let not = req.not_membership.as_ref().map(|m| m.as_str().to_owned());
    let chunk: Vec<Value> = s
        .rooms
        .state_events(room_id)
        .await?
        .iter()
        .filter(|e| e.kind == "m.room.member")
        .filter(|e| want.as_deref().is_none_or(|w| e.membership() == Some(w)))
        .filter(|e| not.as_deref().is_none_or(|n| e.membership() != Some(n)))
        .map(|e| e.to_client(now, None))
        .collect();
    Ok(Json(json!({"chunk": chunk})))
}

async fn joined_members_handler(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<joined_members::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    s.rooms.check_can_read_state(room_id, &session.user_id).await?;
    let mut joined = Map::new();
    for e in s.rooms.state_events(room_id).await?.iter().filter(|e| e.membership() == Some("join")) {
        let (Some(uid), c) = (&e.state_key, &e.content) else { continue };
        joined.insert(uid.clone(), json!({"display_name": c.get("displayname"), "avatar_url": c.get("avatar_url")}));
    }
    Ok(Json(json!({"joined": joined})))
}

async fn joined_rooms_handler(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(_): Ruma<joined_rooms::v3::Request>,
) -> Result<RumaResponse<joined_rooms::v3::Response>> {
    // The user's own profile room is left out, as in `/sync` (legacy clients would show it).
    let own_profile = s.profiles.room_of(&session.user_id);
    let rooms: Vec<OwnedRoomId> = s
        .rooms
        .joined_rooms(&session.user_id)
        .await?
        .iter()
        .filter(|r| Some(*r) != own_profile.as_ref())
        .map(|r| owned_room_id(r))
        .collect::<Result<_>>()?;
    Ok(joined_rooms::v3::Response::new(rooms).into())
}

async fn messages(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_message_events::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    let filter: EventFilter =
        serde_json::to_value(&req.filter).ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    filter.validate().map_err(MatrixError::bad_json)?;
    let limit = u64::from(req.limit).clamp(1, 1000) as i64;
    let current = s.stream.current();
    let at_most = |t: &str| token::parse_at_most(t, current);
    let from = req.from.as_deref().map(at_most).transpose()?;
    let to = req.to.as_deref().map(at_most).transpose()?;
    let backward = matches!(req.dir, Direction::Backward);
    let MessagesPage { events, start, end } =
        s.rooms.messages(room_id, &session.user_id, from, to, backward, limit).await?;
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let now = now_ms();
    let mut chunk: Vec<Value> = events
        .iter()
        .filter(|(_, e)| filter.allows(&e.kind, &e.sender))
        .map(|(_, e)| e.to_client(now, viewer))
        .collect();
    s.profiles.mask_for(room_id, &session.user_id).await?.apply_all(&mut chunk);
    let mut body = json!({"chunk": chunk, "start": token::pagination_token(start), "state": []});
    if let Some(end) = end {
        body["end"] = json!(token::pagination_token(end));
    }
    Ok(Json(body))
}
