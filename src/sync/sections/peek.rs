//! Peeked rooms (MSC2753): `rooms.peek`, the `rooms.leave` entry of a peek that ended, and
//! the `rooms.join` timeline of a room the device joined while peeking it.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::SyncContext;
use crate::error::Result;
use crate::peek::Peeks;
use crate::rooms::state::latest_per_key;
use crate::rooms::{now_ms, Pdu, Rooms};
use crate::sync::response::{Events, LeftRoom, PeekedRoom, Timeline};

#[derive(Debug, Default)]
pub struct PeekSection {
    pub peek: BTreeMap<String, PeekedRoom>,
    /// Peeks that ended in `(since, upto]`, reported once.
    pub left: BTreeMap<String, LeftRoom>,
    /// Rooms joined since `since` that the device was peeking: their `rooms.join` entry
    /// continues from `since` (timeline and gap state) rather than starting over.
    pub continued_joins: BTreeMap<String, (Timeline, Events)>,
}

impl PeekSection {
    pub fn has_news(&self) -> bool {
        !self.peek.is_empty() || !self.left.is_empty()
    }
}

pub async fn peek_section(peeks: &Peeks, rooms: &Rooms, ctx: &SyncContext<'_>) -> Result<PeekSection> {
    let (session, since, upto, filter) = (ctx.session, ctx.since, ctx.upto, ctx.filter);
    let memberships = rooms.memberships(&session.user_id).await?;
    let now = now_ms();
    let viewer = (session.user_id.as_str(), session.device_id.as_str());
    let limit = filter.timeline_limit();
    let mut out = PeekSection::default();
    for (room_id, started) in peeks.device_peeks(session) {
        if started > upto {
            continue;
        }
        // Joined since: the room moves to `rooms.join` (built from the same memberships up
        // to `upto`), so the peek ends without a `leave` (MSC2753); never in both.
        if let Some((_, _, joined_at)) = memberships.iter().find(|(r, m, p)| r == &room_id && m == "join" && *p <= upto)
        {
            // A device that was peeking already holds the room's state and history: its
            // `join` entry continues from `since` rather than starting over (MSC2753).
            if let Some(s) = since.filter(|s| started <= *s && *joined_at > *s) {
                let crate::rooms::service::Timeline { events, limited, first_pos } =
                    rooms.timeline(&room_id, s, upto, limit).await?;
                let gap = if limited { rooms.state_changes_between(&room_id, s, first_pos - 1).await? } else { vec![] };
                let timeline: Vec<Value> = events
                    .iter()
                    .filter(|(_, e)| filter.room.timeline.allows(&e.kind, &e.sender))
                    .map(|(_, e)| e.to_client(now, Some(viewer)))
                    .collect();
                let state: Vec<Value> = gap.iter().map(|(_, e)| e.to_client(now, Some(viewer))).collect();
                out.continued_joins
                    .insert(room_id.clone(), (Timeline::new(timeline, limited, first_pos), state.into()));
            }
            peeks.end_at_delivery(session, &room_id, None).await?;
            continue;
        }
        // Permission is checked at delivery: losing it (e.g. leaving the last shared room,
        // or the room turning encrypted) ends the peek before anything else is sent.
        if !peeks.may_sync_peek(&session.user_id, &room_id).await? {
            // Reported in this very response, as ending at `upto`.
            peeks.end_at_delivery(session, &room_id, Some(upto)).await?;
            continue;
        }
        let full = since.is_none_or(|s| started > s);
        let Some((after, crate::rooms::service::Timeline { events, limited, first_pos })) =
            super::timeline_window(rooms, &room_id, full, since, upto, limit).await?
        else {
            continue;
        };
        // A limited catch-up carries the state that changed in the gap, as `rooms.join` does.
        let state = if full {
            rooms.state_events(&room_id).await?
        } else if limited {
            let changed = rooms.state_changes_between(&room_id, after, first_pos - 1).await?;
            latest_per_key(changed.into_iter().map(|(_, e)| e))
        } else {
            vec![]
        };
        out.peek.insert(room_id.clone(), peeked_room(&events, &state, limited, first_pos, now, viewer));
    }
    // After the loop above, which may have ended peeks at `upto`.
    for (room, pos) in peeks.ended_peeks(session) {
        let Some(s) = since.filter(|s| pos > *s && pos <= upto) else { continue };
        if peeks.is_peeking(session, &room) {
            continue;
        }
        // MSC2753: the entry carries the events between the previous sync and the end of
        // the peek, unless the peek ended because the viewer may no longer read the room.
        let (events, limited) = if peeks.may_sync_peek(&session.user_id, &room).await? {
            let t = rooms.timeline(&room, s, pos, limit).await?;
            (t.events, t.limited)
        } else {
            (vec![], false)
        };
        let timeline: Vec<Value> = events.iter().map(|(_, e)| e.to_client(now, Some(viewer))).collect();
        out.left.insert(
            room,
            LeftRoom {
                timeline: Timeline { events: timeline, limited, prev_batch: None },
                state: Events::default(),
                account_data: Events::default(),
            },
        );
    }
    Ok(out)
}

fn peeked_room(
    events: &[(i64, Pdu)],
    state: &[Arc<Pdu>],
    limited: bool,
    first_pos: i64,
    now: i64,
    viewer: (&str, &str),
) -> PeekedRoom {
    let in_timeline: HashSet<&str> = events.iter().map(|(_, e)| e.event_id.as_str()).collect();
    let state_events: Vec<Value> = state
        .iter()
        .filter(|e| !in_timeline.contains(e.event_id.as_str()))
        .map(|e| e.to_client(now, Some(viewer)))
        .collect();
    PeekedRoom {
        timeline: Timeline::new(
            events.iter().map(|(_, e)| e.to_client(now, Some(viewer))).collect(),
            limited,
            first_pos,
        ),
        state: state_events.into(),
        ..Default::default()
    }
}
