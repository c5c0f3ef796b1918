//! More room endpoints: redact, forget, context around an event, one event.
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::context::get_context;
use ruma::api::client::membership::forget_room;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::get_room_event;
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::response::{owned_event_id, RumaResponse};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::rooms::{now_ms, EventContext, Pdu};
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

/// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` (rules in `Rooms::redact`).
async fn redact(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<redact_event::v3::Request>,
) -> Result<RumaResponse<redact_event::v3::Response>> {
    let pdu =
        s.rooms.redact(&session, req.room_id.as_str(), req.event_id.as_str(), req.reason, req.txn_id.as_str()).await?;
    Ok(redact_event::v3::Response::new(owned_event_id(&pdu.event_id)?).into())
}

async fn forget(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<forget_room::v3::Request>,
) -> Result<RumaResponse<forget_room::v3::Response>> {
    s.forgotten.forget(&session.user_id, req.room_id.as_str()).await?;
    Ok(forget_room::v3::Response::new().into())
}

/// `GET /rooms/{roomId}/event/{eventId}`.
async fn event(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_room_event::v3::Request>,
) -> Result<Json<Value>> {
    let (_, pdu, _) = s.rooms.readable_event(&session.user_id, req.room_id.as_str(), req.event_id.as_str()).await?;
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
    let filter: EventFilter =
        serde_json::to_value(&req.filter).ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let limit = u64::from(req.limit).min(MAX_CONTEXT_LIMIT) as i64;
    let EventContext { event: pdu, before, after, start, end, state } =
        s.rooms.context(room_id, &session.user_id, req.event_id.as_str(), limit).await?;
    let mask = s.profiles.mask_for(room_id, &session.user_id).await?;
    let now = now_ms();
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let event = mask.apply(pdu.to_client(now, viewer)).ok_or_else(|| MatrixError::not_found("Event not found"))?;
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
