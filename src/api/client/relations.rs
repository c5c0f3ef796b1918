//! `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! (spec "Relationships").
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::Direction;
use serde_json::{json, Value};

use crate::accounts::Session;
use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::Result;
use crate::rooms::now_ms;
use crate::sync::token;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_relating_events::v1::Request, _, _>(r, relations);
    let r = ruma_route::<get_relating_events_with_rel_type::v1::Request, _, _>(r, relations_of_type);
    ruma_route::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(r, relations_of_type_and_event)
}

/// What one `/relations` call asks for, whichever of the three paths it came by.
struct Query<'a> {
    room_id: &'a str,
    event_id: &'a str,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: Direction,
    limit: Option<u64>,
    recurse: bool,
}

/// Default page size when the client names none.
const DEFAULT_LIMIT: u64 = 50;

async fn answer(s: &AppState, session: &Session, q: Query<'_>) -> Result<Json<Value>> {
    let (_, _, upto) = s.rooms.readable_event(&session.user_id, q.room_id, q.event_id).await?;
    let from = q.from.map(token::parse).transpose()?;
    let to = q.to.map(token::parse).transpose()?;
    let forward = matches!(q.dir, Direction::Forward);
    // Tokens name "after position N": going backwards from N includes N itself.
    let (from, to) = if forward { (from, to.map(|t| t + 1)) } else { (from.map(|f| f + 1), to) };
    let (events, next) = s
        .relations
        .page(
            q.room_id,
            q.event_id,
            q.rel_type.as_deref(),
            q.event_type.as_deref(),
            from,
            to,
            forward,
            q.limit.unwrap_or(DEFAULT_LIMIT),
            upto,
        )
        .await?;
    let now = now_ms();
    let viewer = Some((session.user_id.as_str(), session.device_id.as_str()));
    let chunk: Vec<Value> = events.iter().map(|e| e.to_client(now, viewer)).collect();
    let mut body = json!({"chunk": chunk});
    if let Some(n) = next {
        // Backwards, the next page starts below the last event; forwards, after it.
        let n = if forward { n } else { n - 1 };
        body["next_batch"] = json!(token::pagination_token(n));
    }
    if q.recurse {
        body["recursion_depth"] = json!(1);
    }
    Ok(Json(body))
}

async fn relations(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_relating_events::v1::Request>,
) -> Result<Json<Value>> {
    let q = Query {
        room_id: req.room_id.as_str(),
        event_id: req.event_id.as_str(),
        rel_type: None,
        event_type: None,
        from: req.from.as_deref(),
        to: req.to.as_deref(),
        dir: req.dir,
        limit: req.limit.map(u64::from),
        recurse: req.recurse,
    };
    answer(&s, &session, q).await
}

async fn relations_of_type(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<Json<Value>> {
    let q = Query {
        room_id: req.room_id.as_str(),
        event_id: req.event_id.as_str(),
        rel_type: Some(req.rel_type.to_string()),
        event_type: None,
        from: req.from.as_deref(),
        to: req.to.as_deref(),
        dir: req.dir,
        limit: req.limit.map(u64::from),
        recurse: req.recurse,
    };
    answer(&s, &session, q).await
}

async fn relations_of_type_and_event(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<Json<Value>> {
    let q = Query {
        room_id: req.room_id.as_str(),
        event_id: req.event_id.as_str(),
        rel_type: Some(req.rel_type.to_string()),
        event_type: Some(req.event_type.to_string()),
        from: req.from.as_deref(),
        to: req.to.as_deref(),
        dir: req.dir,
        limit: req.limit.map(u64::from),
        recurse: req.recurse,
    };
    answer(&s, &session, q).await
}
