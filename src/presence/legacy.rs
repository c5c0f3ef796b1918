//! Legacy `m.presence` events in `/sync` (the compatibility shim's read side): built from the
//! same effective presence the profile rooms publish, never from a second truth.
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::engine::{PresenceEngine, PresenceSnapshot};
use super::Presence;
use crate::accounts::{Accounts, Session};
use crate::error::Result;
use crate::rooms::now_ms;
use crate::sync::service::SyncSource;
use crate::sync::SyncFilter;

/// The `m.presence` event content for a snapshot (spec: `m.presence`), with `busy` passed
/// through (MSC3026) and `last_active_ago` computed at delivery.
pub fn presence_content(s: &PresenceSnapshot, now: i64) -> Value {
    let mut c = Map::new();
    c.insert("presence".into(), json!(s.presence.presence.as_str()));
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

pub fn presence_event(s: &PresenceSnapshot, now: i64) -> Value {
    json!({"type": "m.presence", "sender": s.user_id, "content": presence_content(s, now)})
}

pub struct LegacyPresenceSync {
    pub engine: Arc<PresenceEngine>,
    pub accounts: Arc<Accounts>,
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
        match since {
            None => {
                for u in self.engine.access.visible_to(viewer).await? {
                    if self.engine.knows(&u) {
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
                let own = self.engine.own_position(viewer);
                if own > since && own <= upto {
                    users.insert(viewer.to_owned());
                }
            }
        }
        let now = now_ms();
        let limit = pf.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        let mut events: Vec<Value> = Vec::new();
        for u in users.iter().filter(|u| pf.allows("m.presence", u)).take(limit) {
            let mut ev = presence_event(&self.engine.snapshot(u, viewer), now);
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
