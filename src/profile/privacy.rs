//! What a viewer may read of someone's profile room (MSC3032 privacy).
//!
//! Two rules, for every viewer but the owner, on every route that returns the room's events
//! (state, `/messages`, `/context`, `/event`, `initialSync`, `/events`, and the `join`,
//! `leave` and `peek` sections of `/sync`):
//!
//! - **Hidden** (manual `offline`): nobody else reads the status text. `m.status` events are
//!   shown with empty content and without `prev_content`, including one the owner wrote
//!   straight into the room while hidden and those from before hiding.
//! - **Presence visibility** (`org.matrix.msc3032.presence_visibility`, MSC3032's open question
//!   "presence visible to fewer people than the profile"): with `{"visibility": "restricted"}`
//!   the `m.presence` and `m.status` events are withheld from viewers the presence permission
//!   model does not admit (no shared room, no accepted presence-list entry), even when the
//!   profile room is `world_readable`. The default, `"profile"`, shows presence to whoever may
//!   read the profile.
use serde_json::{json, Value};

use super::{ProfileRooms, PRESENCE_EVENT, STATUS_EVENT};
use crate::error::{MatrixError, Result};
use crate::rooms::RoomState;

/// State event (key `""`) of a profile room choosing who sees presence in it.
pub const PRESENCE_VISIBILITY_EVENT: &str = "org.matrix.msc3032.presence_visibility";
/// Presence is shown to whoever may read the profile room (the default).
pub const VISIBILITY_PROFILE: &str = "profile";
/// Presence is shown only to viewers the presence permission model admits.
pub const VISIBILITY_RESTRICTED: &str = "restricted";

/// The presence visibility a profile room's state chose.
pub fn presence_visibility(state: &RoomState) -> &str {
    state
        .get(PRESENCE_VISIBILITY_EVENT, "")
        .and_then(|e| e.content.get("visibility")?.as_str())
        .unwrap_or(VISIBILITY_PROFILE)
}

/// Checks an `org.matrix.msc3032.presence_visibility` event the owner sends.
pub fn validate_presence_visibility(state_key: Option<&str>, content: &Value) -> Result<()> {
    if state_key != Some("") {
        return Err(MatrixError::invalid_param(format!("{PRESENCE_VISIBILITY_EVENT} is a state event with key \"\"")));
    }
    match content.get("visibility").and_then(Value::as_str) {
        Some(VISIBILITY_PROFILE | VISIBILITY_RESTRICTED) => Ok(()),
        _ => Err(MatrixError::invalid_param(format!(
            "visibility must be \"{VISIBILITY_PROFILE}\" or \"{VISIBILITY_RESTRICTED}\""
        ))),
    }
}

/// What one viewer may not see of one profile room's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileMask {
    /// Everything (not a profile room, the owner, or nothing to hide).
    #[default]
    Nothing,
    /// The owner is hidden: `m.status` without its text.
    StatusText,
    /// Presence is restricted and the viewer is not admitted: no `m.presence`, no `m.status`.
    Presence,
}

impl ProfileMask {
    /// One event in client format as the viewer may see it; `None`: withheld.
    pub fn apply(self, mut ev: Value) -> Option<Value> {
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or_default();
        match self {
            ProfileMask::Nothing => Some(ev),
            ProfileMask::Presence if kind == PRESENCE_EVENT || kind == STATUS_EVENT => None,
            ProfileMask::Presence => Some(ev),
            ProfileMask::StatusText => {
                if kind == STATUS_EVENT {
                    ev["content"] = json!({});
                    if let Some(u) = ev.get_mut("unsigned").and_then(Value::as_object_mut) {
                        u.remove("prev_content");
                    }
                }
                Some(ev)
            }
        }
    }

    /// A list of client-format events, masked in place.
    pub fn apply_all(self, events: &mut Vec<Value>) {
        if self != ProfileMask::Nothing {
            *events = std::mem::take(events).into_iter().filter_map(|e| self.apply(e)).collect();
        }
    }
}

impl ProfileRooms {
    /// The mask for `viewer` reading `room_id` (nothing to mask outside profile rooms).
    pub async fn mask_for(&self, room_id: &str, viewer: &str) -> Result<ProfileMask> {
        let (owner, state) = match self.owner_of(room_id) {
            Some(owner) => (owner, None),
            // A profile room of another server, peeked over federation (MSC2444): the same
            // presence-visibility rule, with the owner read from the room's state.
            None => match self.rooms.state(room_id).await {
                Ok(state) => match super::owner_in_state(&state) {
                    Some(owner) => (owner.to_owned(), Some(state)),
                    None => return Ok(ProfileMask::Nothing),
                },
                Err(_) => return Ok(ProfileMask::Nothing),
            },
        };
        if owner == viewer {
            return Ok(ProfileMask::Nothing);
        }
        let state = match state {
            Some(s) => s,
            None => self.rooms.state(room_id).await?,
        };
        if presence_visibility(&state) == VISIBILITY_RESTRICTED && !self.access.can_see(viewer, &owner).await? {
            return Ok(ProfileMask::Presence);
        }
        let hidden = self.presence.get().is_some_and(|p| p.snapshot(&owner, "").presence.hidden);
        Ok(if hidden { ProfileMask::StatusText } else { ProfileMask::Nothing })
    }
}
