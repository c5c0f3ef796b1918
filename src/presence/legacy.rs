//! Legacy `m.presence` events in `/sync` (the compatibility shim's read side): built from the
//! same effective presence the profile rooms publish, never from a second truth.
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::engine::{PresenceEngine, PresenceSnapshot};
use super::newcomers::new_room_mates;
use super::policy::{LegacyBusy, PresenceMode};
use super::Presence;
use crate::accounts::{Accounts, Session};
use crate::error::Result;
use crate::rooms::{now_ms, Rooms};
use crate::sync::service::SyncSource;
use crate::sync::SyncFilter;

/// The `m.presence` event content for a snapshot (spec: `m.presence`), with `busy` spelled
/// as the operator chose for legacy clients (MSC3026, `legacy_busy_as`) and `last_active_ago`
/// computed at delivery.
pub fn presence_content(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    let mut c = Map::new();
    c.insert("presence".into(), json!(busy_as.spell(s.presence.presence)));
    if let Some(ts) = s.presence.last_active_ts {
        c.insert("last_active_ago".into(), json!((now - ts).max(0)));
    }
    if s.presence.presence != Presence::Offline || s.presence.currently_active {
        c.insert("currently_active".into(), json!(s.presence.currently_active));
    }
    if let Some(m) = &s.status_msg {
        c.insert("status_msg".into(), json!(m));
    }
    if !s.presence.active_kinds.is_empty() {
        c.insert(
            "org.matrix.msc3032.device_kinds".into(),
            json!(s.presence.active_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        );
    }
    Value::Object(c)
}

pub fn presence_event(s: &PresenceSnapshot, now: i64, busy_as: LegacyBusy) -> Value {
    json!({"type": "m.presence", "sender": s.user_id, "content": presence_content(s, now, busy_as)})
}

pub struct LegacyPresenceSync {
    pub engine: Arc<PresenceEngine>,
    pub accounts: Arc<Accounts>,
    pub rooms: Arc<Rooms>,
    pub busy_as: LegacyBusy,
    /// Whether an initial sync lists users who are offline (Synapse: no).
    pub initial_sync_offline: bool,
}

#[async_trait::async_trait]
impl SyncSource for LegacyPresenceSync {
    async fn contribute(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        filter: &SyncFilter,
        out: &mut Map<String, Value>,
    ) -> Result<bool> {
        let pf = &filter.presence;
        if pf.excludes_type("m.presence") {
            return Ok(false);
        }
        let viewer = session.user_id.as_str();
        let mut users: BTreeSet<String> = BTreeSet::new();
        match self.engine.mode() {
            PresenceMode::Disabled => return Ok(false),
            // Untracked: one's own presence only (see `PresenceMode`).
            PresenceMode::Untracked => {
                let own = self.engine.own_position(viewer);
                if self.engine.knows(viewer) && since.is_none_or(|s| own > s && own <= upto) {
                    users.insert(viewer.to_owned());
                }
            }
            PresenceMode::Enabled => match since {
                None => {
                    for u in self.engine.access.visible_to(viewer).await? {
                        // Synapse leaves offline users out of an initial sync; so do we unless
                        // the operator asks otherwise (`presence_initial_sync_offline`).
                        let offline = self.engine.snapshot(&u, viewer).presence.presence == Presence::Offline;
                        if self.engine.knows(&u) && (u == viewer || self.initial_sync_offline || !offline) {
                            users.insert(u);
                        }
                    }
                }
                Some(since) => {
                    let changed = self.engine.changed_between(since, upto);
                    if changed.len() > 32 {
                        let visible = self.engine.access.visible_to(viewer).await?;
                        users.extend(changed.into_iter().filter(|u| visible.contains(u)));
                    } else {
                        for u in changed {
                            if self.engine.access.can_see(viewer, &u).await? {
                                users.insert(u);
                            }
                        }
                    }
                    users.extend(self.engine.access.newly_visible(viewer, since, upto));
                    // New room-mates: their current presence, once (see `newcomers`).
                    for u in new_room_mates(&self.rooms, viewer, since, upto).await? {
                        if self.engine.knows(&u) && self.engine.access.can_see(viewer, &u).await? {
                            users.insert(u);
                        }
                    }
                    let own = self.engine.own_position(viewer);
                    if own > since && own <= upto {
                        users.insert(viewer.to_owned());
                    }
                }
            },
        }
        let now = now_ms();
        let limit = pf.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        let mut events: Vec<Value> = Vec::new();
        for u in users.iter().filter(|u| pf.allows("m.presence", u)).take(limit) {
            let mut ev = presence_event(&self.engine.legacy_snapshot(u, viewer), now, self.busy_as);
            // Seed 000: presence events carry the display name and avatar.
            let (displayname, avatar_url) = self.accounts.profile(u).await?;
            if let Some(n) = displayname {
                ev["content"]["displayname"] = json!(n);
            }
            if let Some(a) = avatar_url {
                ev["content"]["avatar_url"] = json!(a);
            }
            events.push(ev);
        }
        let has = !events.is_empty();
        out.insert("presence".into(), json!({"events": events}));
        Ok(has)
    }
}
