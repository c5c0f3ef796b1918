//! Legacy `m.presence` events (spec `presence` section; the compatibility shim's read side),
//! built from the engine's effective presence.
use super::SyncContext;
use crate::accounts::Accounts;
use crate::error::Result;
use crate::ground::user_ids::{intern_ix, user_at, UserIx};
use crate::presence::legacy::PresenceEvent;
use crate::presence::newcomers::new_room_mates;
use crate::presence::policy::{LegacyBusy, PresenceMode};
use crate::presence::PresenceEngine;
use crate::rooms::{now_ms, Rooms};

/// What the `presence` section reads and how the operator configured it.
pub struct PresenceSource<'a> {
    pub engine: &'a PresenceEngine,
    pub accounts: &'a Accounts,
    pub rooms: &'a Rooms,
    pub busy_as: LegacyBusy,
    /// Whether an initial sync lists users who are offline (Synapse: no).
    pub initial_sync_offline: bool,
}

/// The `m.presence` events the viewer gets in `(since, upto]`: every visible user on an
/// initial sync, else those whose presence changed, who became visible, or who are new
/// room-mates.
pub async fn presence_section(src: &PresenceSource<'_>, ctx: &SyncContext<'_>) -> Result<Vec<PresenceEvent>> {
    let pf = &ctx.filter.presence;
    if pf.excludes_type("m.presence") {
        return Ok(vec![]);
    }
    let viewer = ctx.user_id();
    let (since, upto) = (ctx.since, ctx.upto);
    // By number (`ground::user_ids`) until the names are needed: a poll at 10,000 × 100 reads
    // some fifty changes (issue #13), and numbers are checked, deduplicated and sorted without
    // hashing or copying a name.
    let mut users: Vec<UserIx> = Vec::new();
    match src.engine.mode() {
        PresenceMode::Disabled => return Ok(vec![]),
        // Untracked: one's own presence only (see `PresenceMode`).
        PresenceMode::Untracked => {
            let own = src.engine.own_position(viewer);
            if src.engine.knows(viewer) && since.is_none_or(|s| own > s && own <= upto) {
                users.push(intern_ix(viewer).1);
            }
        }
        PresenceMode::Enabled => match since {
            None => {
                for ix in src.engine.access.visible_to(viewer).await?.ixs() {
                    let u = user_at(ix);
                    // Synapse leaves offline users out of an initial sync; so do we unless
                    // the operator asks otherwise (`presence_initial_sync_offline`).
                    if u == viewer || src.initial_sync_offline {
                        if src.engine.knows(u) {
                            users.push(ix);
                        }
                    } else if src.engine.publicly_present(u) {
                        users.push(ix);
                    }
                }
            }
            Some(since) => {
                // The changes delivered to the viewer's inbox (`PresenceEngine::changed_for`),
                // each checked against the viewer's visible set, which is cached between polls
                // (`PresenceAccess`): k lookups, not a walk of the viewer's rooms.
                let visible = src.engine.access.visible_to(viewer).await?;
                users.extend(
                    src.engine.changed_for(viewer, since, upto).into_iter().filter(|&u| visible.contains_ix(u)),
                );
                users.extend(src.engine.access.newly_visible(viewer, since, upto).iter().map(|u| intern_ix(u).1));
                // New room-mates: their current presence, once (see `newcomers`).
                for u in new_room_mates(src.rooms, viewer, since, upto).await? {
                    if src.engine.knows(&u) && visible.contains(&u) {
                        users.push(intern_ix(&u).1);
                    }
                }
                let own = src.engine.own_position(viewer);
                if own > since && own <= upto {
                    users.push(intern_ix(viewer).1);
                }
            }
        },
    }
    users.sort_unstable();
    users.dedup();
    // In the order of their names, as before: a filter's `limit` keeps the same users.
    let mut names: Vec<&'static str> = users.into_iter().map(user_at).collect();
    names.sort_unstable();
    let now = now_ms();
    let limit = pf.limit.map(|l| l as usize).unwrap_or(usize::MAX);
    let shown: Vec<&str> = names.into_iter().filter(|u| pf.allows("m.presence", u)).take(limit).collect();
    // Seed 000: presence events carry the display name and avatar; asked for all at once (an
    // initial sync after a restart would otherwise query them one by one).
    let profiles = src.accounts.profiles(&shown).await?;
    let mut events = Vec::with_capacity(shown.len());
    for (u, (displayname, avatar_url)) in shown.into_iter().zip(profiles) {
        let mut ev = PresenceEvent::of(src.engine.legacy_snapshot(u, viewer), now, src.busy_as);
        (ev.content.displayname, ev.content.avatar_url) = (displayname, avatar_url);
        events.push(ev);
    }
    Ok(events)
}
