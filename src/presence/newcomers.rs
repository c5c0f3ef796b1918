//! Presence reaches people when they become able to see it: users who started sharing a joined
//! room with a viewer in a stream window `(since, upto]` (the viewer joined a room, or someone
//! joined one of the viewer's rooms, e.g. by accepting an invite). An incremental `/sync`
//! sends these users' current presence once, as Synapse does, instead of waiting for their
//! next change.
use std::collections::HashSet;

use crate::error::Result;
use crate::rooms::Rooms;

/// Users who joined a room together with `viewer` in `(since, upto]`, other than the viewer.
/// Costs one query per joined room with a membership event in the window (rooms without one
/// are skipped from memory: `Rooms::members_changed_since`), and none for rooms the viewer
/// joined in the window (their members are read from the cached state).
pub async fn new_room_mates(rooms: &Rooms, viewer: &str, since: i64, upto: i64) -> Result<HashSet<String>> {
    let mut mates = HashSet::new();
    if since >= upto {
        return Ok(mates);
    }
    for (room_id, membership, mpos) in rooms.memberships(viewer).await?.iter() {
        if membership != "join" || *mpos > upto {
            continue;
        }
        if *mpos > since {
            // The viewer joined in the window: everyone in the room is new to them.
            let state = rooms.state(room_id).await?;
            mates.extend(state.members_with(&["join"]).map(str::to_owned));
        } else if rooms.members_changed_since(room_id, since) {
            for (_, ev) in rooms.state_changes_between(room_id, since, upto).await? {
                // A join that follows a join is a profile change, not a newcomer.
                let was_joined =
                    ev.unsigned.get("prev_content").and_then(|c| c.get("membership")).and_then(|m| m.as_str())
                        == Some("join");
                if ev.kind == "m.room.member" && ev.membership() == Some("join") && !was_joined {
                    if let Some(user) = &ev.state_key {
                        mates.insert(user.clone());
                    }
                }
            }
        }
    }
    mates.remove(viewer);
    Ok(mates)
}
