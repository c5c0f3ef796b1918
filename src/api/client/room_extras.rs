//! More room endpoints: redact, forget, context around an event, one event.
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::context::get_context;
use ruma::api::client::membership::forget_room;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::get_room_event;
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::rooms::auth::PowerLevels;
use crate::rooms::redaction::redacted;
use crate::rooms::{now_ms, NewEvent, Pdu, RoomState};
use crate::sync::filter::EventFilter;
use crate::sync::token;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<redact_event::v3::Request, _, _>(r, redact);
    let r = ruma_route::<forget_room::v3::Request, _, _>(r, forget);
    let r = ruma_route::<get_context::v3::Request, _, _>(r, context);
    ruma_route::<get_room_event::v3::Request, _, _>(r, event)
}

/// Most events `/context` returns around the event (before and after together).
const MAX_CONTEXT_LIMIT: u64 = 100;

/// An event of `room_id` the caller may read: 404 if unknown, in another room, or after the
/// point up to which the caller may read. Returns its stream position too.
async fn readable_event(s: &AppState, user_id: &str, room_id: &str, event_id: &str) -> Result<(i64, Pdu, i64)> {
    let upto = s.readable_upto(room_id, user_id).await?.min(s.stream.current());
    match s.store.get_event(event_id).await? {
        Some((pos, pdu)) if pdu.room_id == room_id && pos <= upto => Ok((pos, pdu, upto)),
        _ => Err(MatrixError::not_found("Event not found")),
    }
}

/// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: anyone may redact their own events; other
/// users' events need the `redact` power level (spec "Redactions").
async fn redact(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<redact_event::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    let user_id = session.user_id.as_str();
    let state = s.rooms.state(room_id).await?;
    if state.membership(user_id) != Some("join") {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    let target = match s.store.get_event(req.event_id.as_str()).await? {
        Some((_, pdu)) if pdu.room_id == room_id => pdu,
        _ => return Err(MatrixError::not_found("Event not found")),
    };
    if target.sender != user_id {
        let pl = PowerLevels::of(&state);
        if pl.user(user_id, &state) < pl.redact() {
            return Err(MatrixError::forbidden("You may not redact other users' events"));
        }
    }
    let mut content = json!({"redacts": target.event_id});
    if let Some(reason) = req.reason {
        content["reason"] = json!(reason);
    }
    let mut ev = NewEvent::message("m.room.redaction", content);
    ev.txn = Some((session.device_id.clone(), req.txn_id.to_string()));
    let pdu = s.send_event(&session, room_id, ev).await?;
    let mut because = pdu.to_client(now_ms(), None);
    if let Some(u) = because.get_mut("unsigned").and_then(Value::as_object_mut) {
        u.remove("age");
    }
    s.rooms.rewrite_event(redacted(&target, because)).await?;
    Ok(Json(json!({"event_id": pdu.event_id})))
}

async fn forget(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<forget_room::v3::Request>,
) -> Result<Json<Value>> {
    s.forgotten.forget(&session.user_id, req.room_id.as_str()).await?;
    Ok(Json(json!({})))
}

/// `GET /rooms/{roomId}/event/{eventId}`.
async fn event(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_room_event::v3::Request>,
) -> Result<Json<Value>> {
    let (_, pdu, _) = readable_event(&s, &session.user_id, req.room_id.as_str(), req.event_id.as_str()).await?;
    let mask = s.profiles.mask_for(req.room_id.as_str(), &session.user_id).await?;
    let ev = mask
        .apply(pdu.to_client(now_ms(), Some((&session.user_id, &session.device_id))))
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    Ok(Json(ev))
}

/// `GET /rooms/{roomId}/context/{eventId}`: up to `limit` events around the event (half
/// before, half after) and the room state at the last event returned.
async fn context(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_context::v3::Request>,
) -> Result<Json<Value>> {
    let room_id = req.room_id.as_str();
    let (pos, pdu, upto) = readable_event(&s, &session.user_id, room_id, req.event_id.as_str()).await?;
    let mask = s.profiles.mask_for(room_id, &session.user_id).await?;
    let now = now_ms();
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let event = mask.apply(pdu.to_client(now, viewer)).ok_or_else(|| MatrixError::not_found("Event not found"))?;
    let filter: EventFilter =
        serde_json::to_value(&req.filter).ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let limit = u64::from(req.limit).min(MAX_CONTEXT_LIMIT) as i64;
    let (n_before, n_after) = (limit / 2, limit - limit / 2);
    let before = s.store.room_events_desc(room_id, 0, pos - 1, n_before).await?;
    let after = s.store.room_events_asc(room_id, pos + 1, upto + 1, n_after).await?;
    let start = before.last().map(|(p, _)| *p).unwrap_or(pos) - 1;
    let end = after.last().map(|(p, _)| *p).unwrap_or(pos);
    let state = if end >= s.rooms.last_position(room_id) {
        s.rooms.state(room_id).await?
    } else {
        let events = s.store.room_state_events_between(room_id, 0, end).await?;
        std::sync::Arc::new(RoomState::from_events(events.into_iter().map(|(_, e)| e)))
    };
    let client = |events: &[(i64, Pdu)]| -> Vec<Value> {
        let mut out: Vec<Value> = events
            .iter()
            .filter(|(_, e)| filter.allows(&e.kind, &e.sender))
            .map(|(_, e)| e.to_client(now, viewer))
            .collect();
        mask.apply_all(&mut out);
        out
    };
    let mut state_events: Vec<Value> = state.iter().map(|e| e.to_client(now, viewer)).collect();
    mask.apply_all(&mut state_events);
    Ok(Json(json!({
        "event": event,
        "events_before": client(&before),
        "events_after": client(&after),
        "start": token::pagination_token(start),
        "end": token::pagination_token(end),
        "state": state_events,
    })))
}
