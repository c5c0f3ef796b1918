//! Peeking: MSC2753 (`/peek`, `/unpeek`, results in `/sync` under `rooms.peek`) and the
//! legacy peeking API for old clients (`/rooms/{roomId}/initialSync`, `/events`).
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::extract::{Auth, MatrixJson};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::ground::token;
use crate::presence::legacy::presence_event;
use crate::rooms::now_ms;

/// MSC2753 unstable prefix.
const MSC2753: &str = "org.matrix.msc2753";

/// ruma has no types for MSC2753 nor for the legacy `initialSync` / `/events` (removed from
/// the spec), so these are `seed_route`s.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = seed_route(r, SeedPath::Unstable(MSC2753, "/peek/{room_id_or_alias}"), post(peek));
    let r = seed_route(r, SeedPath::Unstable(MSC2753, "/rooms/{room_id}/unpeek"), post(unpeek));
    let r = seed_route(r, SeedPath::Client("/rooms/{room_id}/initialSync"), get(initial_sync));
    seed_route(r, SeedPath::Client("/events"), get(events))
}

async fn peek(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(target): Path<String>,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>> {
    // MSC2753: a JSON object (`MatrixJson` insists) with an optional `servers` list: the
    // servers to peek a room of another server through (MSC2444), tried first.
    let mut via: Vec<String> = Vec::new();
    if let Some(servers) = body.get("servers") {
        let ok = servers.as_array().is_some_and(|a| a.len() <= 100 && a.iter().all(Value::is_string));
        if !ok {
            return Err(MatrixError::bad_json("servers must be a list of server names"));
        }
        via.extend(servers.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned));
    }
    // An alias of another server is resolved there (`query/directory`), as for joins.
    let room_id = super::rooms::resolve_room_or_alias(&s, &target, &mut via).await?;
    let expires = s.peeks.peek_via(&session, &room_id, &via).await?;
    Ok(Json(json!({"room_id": room_id, "peek_expiry_ts": expires})))
}

async fn unpeek(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(room_id): Path<String>,
    MatrixJson(_): MatrixJson<Value>,
) -> Result<Json<Value>> {
    s.peeks.unpeek(&session, &room_id).await?;
    Ok(Json(json!({})))
}

/// For a profile room, the owner's legacy `m.presence` event as `viewer` may see it (old
/// clients read presence from `initialSync`'s `presence` and from `/events`), with `busy`
/// spelled for legacy clients (`legacy_busy_as`).
async fn owner_presence(s: &AppState, room_id: &str, viewer: &str) -> Result<Option<Value>> {
    let Some(owner) = s.profiles.owner_of(room_id) else { return Ok(None) };
    if !s.presence.access.can_see(viewer, &owner).await? {
        return Ok(None);
    }
    let snapshot = s.presence.legacy_snapshot(&owner, viewer);
    Ok(Some(presence_event(&snapshot, now_ms(), s.config.legacy_busy_as)))
}

#[derive(Deserialize)]
struct InitialSyncQuery {
    limit: Option<i64>,
}

/// Legacy room initial sync: state, recent messages and the caller's membership.
async fn initial_sync(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path(room_id): Path<String>,
    Query(q): Query<InitialSyncQuery>,
) -> Result<Json<Value>> {
    let state = s.rooms.state(&room_id).await?;
    if !s.peeks.can_peek(&session.user_id, &room_id).await? {
        return Err(MatrixError::forbidden("You may not peek this room"));
    }
    let upto = s.stream.current();
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let events = s.peeks.latest_events(&room_id, upto, limit).await?;
    let now = now_ms();
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let start = events.first().map(|(p, _)| p - 1).unwrap_or(upto);
    let mask = s.profiles.mask_for(&room_id, &session.user_id).await?;
    let mut chunk: Vec<Value> = events.iter().map(|(_, e)| e.to_client(now, viewer)).collect();
    mask.apply_all(&mut chunk);
    let mut state_events: Vec<Value> =
        s.rooms.state_events_of(&state).await?.iter().map(|e| e.to_client(now, viewer)).collect();
    mask.apply_all(&mut state_events);
    let mut body = json!({
        "room_id": room_id,
        "messages": {
            "chunk": chunk,
            "start": token::pagination_token(start),
            "end": token::sync_token(upto),
        },
        "state": state_events,
        "presence": owner_presence(&s, &room_id, &session.user_id).await?.into_iter().collect::<Vec<_>>(),
        "account_data": [],
        "visibility": if state.join_rule() == "public" { "public" } else { "private" },
    });
    if let Some(m) = state.membership(&session.user_id) {
        body["membership"] = json!(m);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct EventsQuery {
    room_id: Option<String>,
    from: Option<String>,
    timeout: Option<u64>,
}

/// Legacy `GET /events?room_id=…&from=…&timeout=…`: a long-poll over one peeked room.
async fn events(State(s): State<AppState>, Auth(session): Auth, Query(q): Query<EventsQuery>) -> Result<Json<Value>> {
    let room_id = q.room_id.ok_or_else(|| MatrixError::MissingParam("room_id is required".into()))?;
    s.rooms.state(&room_id).await?;
    if !s.peeks.can_peek(&session.user_id, &room_id).await? {
        return Err(MatrixError::forbidden("You may not peek this room"));
    }
    let from = match q.from.as_deref() {
        Some(t) => token::parse_at_most(t, s.stream.current())?,
        None => s.stream.current(),
    };
    let timeout = Duration::from_millis(q.timeout.unwrap_or(30_000).min(s.config.max_sync_timeout_ms));
    let _watch = s.peeks.watch_room(&session.user_id, &room_id);
    let mut sub = s.notifier.subscribe(&session.user_id);
    let deadline = tokio::time::Instant::now() + timeout;
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let result = loop {
        let upto = s.stream.current();
        let events = s.peeks.events_after(&room_id, from, upto, 100).await?;
        if !events.is_empty() || timeout.is_zero() {
            // Permission is checked again at delivery (as `/sync` peeks do): it may have been
            // lost while this long-poll waited.
            if !events.is_empty() && !s.peeks.can_peek(&session.user_id, &room_id).await? {
                return Err(MatrixError::forbidden("You may no longer peek this room"));
            }
            let end = events.last().map(|(p, _)| *p).unwrap_or(upto);
            let now = now_ms();
            let mut chunk: Vec<Value> = events.iter().map(|(_, e)| e.to_client(now, viewer)).collect();
            s.profiles.mask_for(&room_id, &session.user_id).await?.apply_all(&mut chunk);
            // A profile room's presence changed: old clients also get the legacy event.
            if events
                .iter()
                .any(|(_, e)| e.kind == crate::profile::PRESENCE_EVENT && e.state_key.as_deref() == Some(""))
            {
                chunk.extend(owner_presence(&s, &room_id, &session.user_id).await?);
            }
            break json!({
                "chunk": chunk,
                "start": token::sync_token(from),
                "end": token::sync_token(end),
            });
        }
        tokio::select! {
            pos = sub.changed() => s.stream.wait_for(pos).await,
            _ = tokio::time::sleep_until(deadline) => break json!({"chunk": [], "start": token::sync_token(from), "end": token::sync_token(from)}),
            _ = s.notifier.closed() => break json!({"chunk": [], "start": token::sync_token(from), "end": token::sync_token(from)}),
        }
    };
    drop(sub);
    Ok(Json(result))
}
