//! `/sync` assembly and the long-poll. A request subscribes to its user's wake-ups *before*
//! reading, builds the response up to the stream watermark, and if nothing is new waits for
//! a wake-up or its timeout; while it waits it costs one parked task and no CPU.
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::filter::SyncFilter;
use super::{token, Notifier, StreamHub};
use crate::accounts::Session;
use crate::error::Result;
use crate::rooms::{now_ms, Rooms};

/// Extra sections of a sync response contributed by other domains (presence, peeks).
/// Each is asked for what changed for `viewer` in `(since, upto]`.
#[async_trait::async_trait]
pub trait SyncSource: Send + Sync {
    async fn contribute(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        filter: &SyncFilter,
        out: &mut Map<String, Value>,
    ) -> Result<bool>;
}

pub struct SyncRequest {
    pub since: Option<i64>,
    pub timeout: Duration,
    pub full_state: bool,
    pub filter: SyncFilter,
}

pub struct SyncService {
    pub rooms: Arc<Rooms>,
    pub stream: Arc<StreamHub>,
    pub notifier: Arc<Notifier>,
    sources: parking_lot::RwLock<Vec<Arc<dyn SyncSource>>>,
    /// Room types left out of `rooms.join` unless a filter names the room (a user's own
    /// profile room: legacy clients would show it as a chat).
    pub hidden_room_types: Vec<String>,
}

impl SyncService {
    pub fn new(rooms: Arc<Rooms>, stream: Arc<StreamHub>, notifier: Arc<Notifier>) -> Self {
        Self { rooms, stream, notifier, sources: Default::default(), hidden_room_types: vec![] }
    }

    pub fn add_source(&self, s: Arc<dyn SyncSource>) {
        self.sources.write().push(s);
    }

    pub async fn sync(&self, session: &Session, req: SyncRequest) -> Result<Value> {
        let mut sub = self.notifier.subscribe(&session.user_id);
        let deadline = tokio::time::Instant::now() + req.timeout;
        // Read your writes: a change the client already saw acknowledged (e.g. a peek) may
        // still be completing; wait for everything handed out so far (normally immediate).
        self.stream.wait_for(self.stream.allocated()).await;
        let result = loop {
            let upto = self.stream.current();
            let since = req.since.map(|s| s.min(upto));
            let (body, has_content) = self.build(session, since, upto, &req).await?;
            if has_content || since.is_none() || req.full_state || req.timeout.is_zero() {
                break body;
            }
            tokio::select! {
                pos = sub.changed() => self.stream.wait_for(pos).await,
                _ = tokio::time::sleep_until(deadline) => break body,
                _ = self.notifier.closed() => break body,
            }
        };
        drop(sub);
        Ok(result)
    }

    async fn build(
        &self,
        session: &Session,
        since: Option<i64>,
        upto: i64,
        req: &SyncRequest,
    ) -> Result<(Value, bool)> {
        let user = session.user_id.as_str();
        let now = now_ms();
        let viewer = Some((user, session.device_id.as_str()));
        let limit = req.filter.timeline_limit();
        let (mut join, mut invite, mut leave) = (Map::new(), Map::new(), Map::new());

        for (room_id, membership, mpos) in self.rooms.memberships(user).await?.iter().cloned() {
            if mpos > upto || !req.filter.room.allows_room(&room_id) {
                continue;
            }
            let changed_since = |s: i64| mpos > s;
            match membership.as_str() {
                "join" => {
                    if !self.hidden_room_types.is_empty() {
                        let named = req.filter.room.rooms.as_ref().is_some_and(|r| r.contains(&room_id));
                        let state = self.rooms.state(&room_id).await?;
                        if !named && state.room_type().is_some_and(|t| self.hidden_room_types.iter().any(|h| h == t)) {
                            continue;
                        }
                    }
                    let full = req.full_state || since.is_none_or(changed_since);
                    let after = if full { 0 } else { since.unwrap_or(0) };
                    if !full && self.rooms.last_position(&room_id) <= after {
                        continue;
                    }
                    let crate::rooms::service::Timeline { events, limited, first_pos } =
                        self.rooms.timeline(&room_id, after, upto, limit).await?;
                    if events.is_empty() && !full {
                        continue;
                    }
                    let in_timeline: std::collections::HashSet<&str> =
                        events.iter().map(|(_, e)| e.event_id.as_str()).collect();
                    let state_events: Vec<Value> = if full {
                        let state = self.rooms.state(&room_id).await?;
                        state
                            .iter()
                            .filter(|e| !in_timeline.contains(e.event_id.as_str()))
                            .map(|e| e.to_client(now, viewer))
                            .collect()
                    } else if limited {
                        // A gap: send the state that changed in it.
                        self.rooms
                            .store()
                            .room_state_events_between(&room_id, after, first_pos - 1)
                            .await?
                            .iter()
                            .map(|(_, e)| e.to_client(now, viewer))
                            .collect()
                    } else {
                        vec![]
                    };
                    let timeline: Vec<Value> = events
                        .iter()
                        .filter(|(_, e)| req.filter.room.timeline.allows(&e.kind, &e.sender))
                        .map(|(_, e)| e.to_client(now, viewer))
                        .collect();
                    join.insert(room_id, json!({
                        "timeline": {"events": timeline, "limited": limited, "prev_batch": token::pagination_token(first_pos - 1)},
                        "state": {"events": state_events},
                        "ephemeral": {"events": []},
                        "account_data": {"events": []},
                        "unread_notifications": {"highlight_count": 0, "notification_count": 0},
                        "summary": {},
                    }));
                }
                "invite" if since.is_none_or(changed_since) => {
                    let state = self.rooms.state(&room_id).await?;
                    let mut stripped = state.stripped();
                    if let Some(ev) = state.get("m.room.member", user) {
                        stripped.push(ev.to_stripped());
                    }
                    invite.insert(room_id, json!({"invite_state": {"events": stripped}}));
                }
                "leave" | "ban"
                    if since.is_some_and(changed_since) || (since.is_none() && req.filter.room.include_leave) =>
                {
                    let after = since.unwrap_or(0);
                    let mut events = self.rooms.store().room_events_desc(&room_id, after, mpos, limit).await?;
                    events.reverse();
                    let first_pos = events.first().map(|(p, _)| *p).unwrap_or(mpos);
                    let timeline: Vec<Value> = events.iter().map(|(_, e)| e.to_client(now, viewer)).collect();
                    leave.insert(room_id, json!({
                        "timeline": {"events": timeline, "limited": false, "prev_batch": token::pagination_token(first_pos - 1)},
                        "state": {"events": []},
                        "account_data": {"events": []},
                    }));
                }
                _ => {}
            }
        }

        let mut has_content = !(join.is_empty() && invite.is_empty() && leave.is_empty());
        let mut body = Map::new();
        body.insert("next_batch".into(), json!(token::sync_token(upto)));
        body.insert("rooms".into(), json!({"join": join, "invite": invite, "leave": leave, "knock": {}}));
        body.insert("presence".into(), json!({"events": []}));
        body.insert("account_data".into(), json!({"events": []}));
        body.insert("to_device".into(), json!({"events": []}));
        body.insert("device_lists".into(), json!({"changed": [], "left": []}));
        body.insert("device_one_time_keys_count".into(), json!({}));
        let sources = self.sources.read().clone();
        for s in sources {
            has_content |= s.contribute(session, since, upto, &req.filter, &mut body).await?;
        }
        Ok((Value::Object(body), has_content))
    }
}
