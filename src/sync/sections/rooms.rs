//! `rooms.join`, `rooms.invite` and `rooms.leave` from the user's memberships and the rooms'
//! timelines (spec "Syncing").
use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::SyncContext;
use crate::error::Result;
use crate::rooms::{now_ms, Rooms};
use crate::sync::response::{Events, InvitedRoom, JoinedRoom, LeftRoom, Timeline};

/// The membership sections, before forgotten rooms and ended peeks are accounted for.
#[derive(Debug, Default)]
pub struct MembershipRooms {
    pub join: BTreeMap<String, JoinedRoom>,
    pub invite: BTreeMap<String, InvitedRoom>,
    pub leave: BTreeMap<String, LeftRoom>,
}

impl MembershipRooms {
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.invite.is_empty() && self.leave.is_empty()
    }
}

pub async fn membership_rooms(rooms: &Rooms, ctx: &SyncContext<'_>) -> Result<MembershipRooms> {
    let user = ctx.user_id();
    let (since, upto, filter) = (ctx.since, ctx.upto, ctx.filter);
    let now = now_ms();
    let viewer = Some((user, ctx.session.device_id.as_str()));
    let limit = filter.timeline_limit();
    let mut out = MembershipRooms::default();

    for (room_id, membership, mpos) in rooms.memberships(user).await?.iter().cloned() {
        if mpos > upto || !filter.room.allows_room(&room_id) {
            continue;
        }
        let changed_since = |s: i64| mpos > s;
        match membership.as_str() {
            "join" => {
                if ctx.hides_joined_room(rooms, &room_id).await? {
                    continue;
                }
                let full = ctx.full_state || since.is_none_or(changed_since);
                let Some((after, crate::rooms::service::Timeline { events, limited, first_pos })) =
                    super::timeline_window(rooms, &room_id, full, since, upto, limit).await?
                else {
                    continue;
                };
                let in_timeline: HashSet<&str> = events.iter().map(|(_, e)| e.event_id.as_str()).collect();
                let state_events: Vec<Value> = if full {
                    let state = rooms.state(&room_id).await?;
                    state
                        .iter()
                        .filter(|e| !in_timeline.contains(e.event_id.as_str()))
                        .map(|e| e.to_client(now, viewer))
                        .collect()
                } else if limited {
                    // A gap: send the state that changed in it.
                    rooms
                        .state_changes_between(&room_id, after, first_pos - 1)
                        .await?
                        .iter()
                        .map(|(_, e)| e.to_client(now, viewer))
                        .collect()
                } else {
                    vec![]
                };
                let timeline: Vec<Value> = events
                    .iter()
                    .filter(|(_, e)| filter.room.timeline.allows(&e.kind, &e.sender))
                    .map(|(_, e)| e.to_client(now, viewer))
                    .collect();
                out.join.insert(
                    room_id,
                    JoinedRoom {
                        timeline: Timeline::new(timeline, limited, first_pos),
                        state: state_events.into(),
                        ..Default::default()
                    },
                );
            }
            "invite" if since.is_none_or(changed_since) => {
                let state = rooms.state(&room_id).await?;
                let mut stripped = state.stripped();
                if let Some(ev) = state.get("m.room.member", user) {
                    // An invite from another server carries the room's state as its server
                    // described it (we are not in that room).
                    if let Some(Value::Array(remote)) = ev.unsigned.get("invite_room_state") {
                        stripped.extend(remote.iter().cloned());
                    }
                    stripped.push(ev.to_stripped());
                }
                out.invite.insert(room_id, InvitedRoom { invite_state: stripped.into() });
            }
            "leave" | "ban" if since.is_some_and(changed_since) || (since.is_none() && filter.room.include_leave) => {
                let after = since.unwrap_or(0);
                let mut events = rooms.events_desc(&room_id, after, mpos, limit).await?;
                events.reverse();
                let first_pos = events.first().map(|(p, _)| *p).unwrap_or(mpos);
                let timeline: Vec<Value> = events.iter().map(|(_, e)| e.to_client(now, viewer)).collect();
                out.leave.insert(
                    room_id,
                    LeftRoom {
                        timeline: Timeline::new(timeline, false, first_pos),
                        state: Events::default(),
                        account_data: Events::default(),
                    },
                );
            }
            _ => {}
        }
    }
    Ok(out)
}
