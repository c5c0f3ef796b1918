//! `PUT /rooms/{roomId}/typing/{userId}` (spec "Typing Notifications").
use axum::extract::{Path, State};
use axum::Router;
use ruma::api::client::typing::create_typing_event;
use serde::Deserialize;

use crate::api::extract::{Auth, MatrixJson};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::ephemeral::typing::DEFAULT_TYPING_TIMEOUT_MS;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<create_typing_event::v3::Request, _, _>(r, set_typing)
}

/// The request body. Our own type: ruma requires `timeout` with `typing: true`, the spec
/// does not.
#[derive(Deserialize)]
struct TypingBody {
    typing: bool,
    timeout: Option<u64>,
}

async fn set_typing(
    State(s): State<AppState>,
    Auth(session): Auth,
    Path((room_id, user_id)): Path<(String, String)>,
    MatrixJson(body): MatrixJson<TypingBody>,
) -> Result<RumaResponse<create_typing_event::v3::Response>> {
    ruma::RoomId::parse(&room_id).map_err(|e| MatrixError::invalid_param(format!("invalid room id: {e}")))?;
    ruma::UserId::parse(&user_id).map_err(|e| MatrixError::invalid_param(format!("invalid user id: {e}")))?;
    if user_id != session.user_id {
        return Err(MatrixError::forbidden("You may only set your own typing state"));
    }
    let state = s.rooms.state(&room_id).await?;
    if state.membership(&session.user_id) != Some("join") {
        return Err(MatrixError::forbidden("You are not in this room"));
    }
    let timeout = body.typing.then(|| body.timeout.unwrap_or(DEFAULT_TYPING_TIMEOUT_MS));
    s.ephemeral.local_typing(&room_id, &session.user_id, timeout).await?;
    // Typing (started or stopped) is activity of this device (seed 001).
    s.presence.activity(&session).await;
    Ok(create_typing_event::v3::Response::new().into())
}
