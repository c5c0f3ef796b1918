//! The room directory (spec "Listing rooms": which rooms are published, `/publicRooms`) and the
//! user directory (spec "User directory": users who share a room with the searcher, and users
//! in public rooms).
use std::sync::Arc;

pub mod aliases;

pub use aliases::Aliases;

use serde_json::{json, Value};

use crate::error::{MatrixError, Result};
use crate::profile::PROFILE_ROOM_TYPE;
use crate::rooms::{now_ms, RoomState, Rooms};
use crate::store::Store;

/// Most rooms one `/publicRooms` page holds.
pub(crate) const MAX_PUBLIC_ROOMS_LIMIT: u64 = 100;
/// Longest search term (room or user directory), in bytes.
pub(crate) const MAX_SEARCH_TERM_BYTES: usize = 256;
/// Most results one user-directory search returns.
pub(crate) const MAX_USER_SEARCH_LIMIT: u64 = 50;
/// Users matched by name before the visibility check (bounds one search's work).
const USER_SEARCH_CANDIDATES: i64 = 500;

pub struct Directory {
    store: Store,
    rooms: Arc<Rooms>,
    pub aliases: Aliases,
}

/// One page of `/publicRooms`.
pub struct PublicRoomsPage {
    pub chunk: Vec<Value>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: usize,
}

impl Directory {
    pub(crate) fn new(store: Store, rooms: Arc<Rooms>, server_name: String) -> Arc<Self> {
        let aliases = Aliases::new(store.clone(), rooms.clone(), server_name);
        Arc::new(Self { store, rooms, aliases })
    }

    pub(crate) async fn is_published(&self, room_id: &str) -> Result<bool> {
        self.rooms.state(room_id).await?;
        Ok(self.store.is_room_published(room_id).await?)
    }

    /// Publish or unpublish a room: members who may set the canonical alias may (as Synapse).
    pub(crate) async fn set_published(&self, user_id: &str, room_id: &str, published: bool) -> Result<()> {
        let state = self.rooms.state(room_id).await?;
        if state.membership(user_id) != Some("join") {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        let pl = crate::rooms::auth::PowerLevels::of(&state);
        if pl.user(user_id, &state) < pl.for_event("m.room.canonical_alias", true) {
            return Err(MatrixError::forbidden("You may not change this room's directory visibility"));
        }
        if state.room_type() == Some(PROFILE_ROOM_TYPE) && published {
            return Err(MatrixError::forbidden("Profile rooms are not listed in the room directory"));
        }
        Ok(self.store.set_room_published(room_id, published, now_ms()).await?)
    }

    /// Published rooms whose join rule is `public`, biggest first, filtered by `term` (name,
    /// topic, alias, id), paged by offset tokens `p<N>`.
    pub(crate) async fn public_rooms(
        &self,
        term: Option<&str>,
        limit: Option<u64>,
        since: Option<&str>,
    ) -> Result<PublicRoomsPage> {
        if term.is_some_and(|t| t.len() > MAX_SEARCH_TERM_BYTES) {
            return Err(MatrixError::invalid_param("search term is too long"));
        }
        let offset = match since {
            None => 0,
            Some(t) => t
                .strip_prefix('p')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| MatrixError::invalid_param("invalid pagination token"))?,
        };
        let limit = limit.unwrap_or(MAX_PUBLIC_ROOMS_LIMIT).clamp(1, MAX_PUBLIC_ROOMS_LIMIT) as usize;
        let term = term.map(str::to_lowercase).filter(|t| !t.is_empty());
        let mut rooms = Vec::new();
        for room_id in self.store.published_rooms().await? {
            let Ok(state) = self.rooms.state(&room_id).await else { continue };
            if state.join_rule() != "public" {
                continue;
            }
            let entry = public_room_entry(&room_id, &state);
            if let Some(t) = &term {
                let hay = ["name", "topic", "canonical_alias", "room_id"]
                    .iter()
                    .filter_map(|k| entry.get(*k).and_then(Value::as_str))
                    .any(|v| v.to_lowercase().contains(t.as_str()));
                if !hay {
                    continue;
                }
            }
            rooms.push(entry);
        }
        rooms.sort_by(|a, b| {
            b["num_joined_members"]
                .as_u64()
                .cmp(&a["num_joined_members"].as_u64())
                .then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
        });
        let total = rooms.len();
        let chunk: Vec<Value> = rooms.into_iter().skip(offset).take(limit).collect();
        let next_batch = (offset + chunk.len() < total).then(|| format!("p{}", offset + chunk.len()));
        let prev_batch = (offset > 0).then(|| format!("p{}", offset.saturating_sub(limit)));
        Ok(PublicRoomsPage { chunk, next_batch, prev_batch, total })
    }

    /// Users whose id or display name contains `term` and whom `searcher` may find: they share
    /// a joined room, or the user is in a public room. Returns (results, limited).
    pub(crate) async fn search_users(&self, searcher: &str, term: &str, limit: u64) -> Result<(Vec<Value>, bool)> {
        if term.len() > MAX_SEARCH_TERM_BYTES {
            return Err(MatrixError::invalid_param("search term is too long"));
        }
        let limit = limit.clamp(1, MAX_USER_SEARCH_LIMIT) as usize;
        let term = term.trim().to_lowercase();
        if term.is_empty() {
            return Ok((vec![], false));
        }
        let candidates = self.store.search_users(&term, USER_SEARCH_CANDIDATES).await?;
        let hit_cap = candidates.len() as i64 >= USER_SEARCH_CANDIDATES;
        let mut results = Vec::new();
        for (user_id, displayname, avatar_url) in candidates {
            if !self.visible_to(searcher, &user_id).await? {
                continue;
            }
            if results.len() == limit {
                return Ok((results, true));
            }
            let mut r = json!({"user_id": user_id});
            if let Some(d) = displayname {
                r["display_name"] = json!(d);
            }
            if let Some(a) = avatar_url {
                r["avatar_url"] = json!(a);
            }
            results.push(r);
        }
        Ok((results, hit_cap))
    }

    async fn visible_to(&self, searcher: &str, user_id: &str) -> Result<bool> {
        if self.rooms.share_a_room(searcher, user_id).await? {
            return Ok(true);
        }
        for room in self.rooms.joined_rooms(user_id).await?.iter() {
            let state = self.rooms.state(room).await?;
            if state.join_rule() == "public" && state.room_type() != Some(PROFILE_ROOM_TYPE) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A `/publicRooms` chunk entry (spec `PublishedRoomsChunk`).
fn public_room_entry(room_id: &str, state: &RoomState) -> Value {
    let content_str = |kind: &str, field: &str| -> Option<String> {
        state.get(kind, "").and_then(|e| e.content.get(field)?.as_str().map(str::to_owned))
    };
    let mut entry = json!({
        "room_id": room_id,
        "num_joined_members": state.members_with(&["join"]).count(),
        "world_readable": state.history_visibility() == "world_readable",
        "guest_can_join": content_str("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
        "join_rule": state.join_rule(),
    });
    for (key, kind, field) in [
        ("name", "m.room.name", "name"),
        ("topic", "m.room.topic", "topic"),
        ("canonical_alias", "m.room.canonical_alias", "alias"),
        ("avatar_url", "m.room.avatar", "url"),
    ] {
        if let Some(v) = content_str(kind, field).filter(|v| !v.is_empty()) {
            entry[key] = json!(v);
        }
    }
    if let Some(t) = state.room_type() {
        entry["room_type"] = json!(t);
    }
    entry
}
