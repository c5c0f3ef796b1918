//! Room aliases (spec "Room aliases"): `#name:server` names for rooms on this server. The
//! namespaces MSC1769 gives profile rooms belong to the server (see
//! [`crate::profile::is_reserved_alias`]); profile rooms claim theirs when they are created.
use std::sync::Arc;

use crate::error::{MatrixError, Result};
use crate::profile::is_reserved_alias;
use crate::rooms::auth::PowerLevels;
use crate::rooms::Rooms;
use crate::store::Store;

pub struct Aliases {
    store: Store,
    rooms: Arc<Rooms>,
    server_name: String,
}

impl Aliases {
    pub(crate) fn new(store: Store, rooms: Arc<Rooms>, server_name: String) -> Self {
        Self { store, rooms, server_name }
    }

    /// The alias `createRoom`'s `room_alias_name` asks for, checked (`M_INVALID_PARAM`).
    /// Whether it is free is decided when the room is written (`M_ROOM_IN_USE`).
    pub(crate) fn for_new_room(&self, name: &str) -> Result<String> {
        let alias = format!("#{name}:{}", self.server_name);
        ruma::RoomAliasId::parse(&alias).map_err(|e| MatrixError::invalid_param(format!("invalid alias: {e}")))?;
        refuse_reserved(&alias)?;
        Ok(alias)
    }

    /// The room an alias names (404 if none).
    pub(crate) async fn resolve(&self, alias: &str) -> Result<String> {
        self.store.resolve_alias(alias).await?.ok_or_else(|| MatrixError::not_found("Room alias not found"))
    }

    /// A room id as given, or the room an alias names (`join`, `peek`).
    pub(crate) async fn resolve_room(&self, room_id_or_alias: &str) -> Result<String> {
        if room_id_or_alias.starts_with('#') {
            self.resolve(room_id_or_alias).await
        } else if room_id_or_alias.starts_with('!') && room_id_or_alias.contains(':') {
            Ok(room_id_or_alias.to_owned())
        } else {
            Err(MatrixError::invalid_param("Not a room id or alias"))
        }
    }

    /// `PUT /directory/room/{roomAlias}`: a member of the room may add an alias on this
    /// server outside the reserved namespaces.
    pub(crate) async fn put(&self, user_id: &str, alias: &str, room_id: &str) -> Result<()> {
        let parsed = ruma::RoomAliasId::parse(alias).map_err(|e| MatrixError::invalid_param(e.to_string()))?;
        crate::api::guard::no_nul("room_id", room_id)?;
        refuse_reserved(alias)?;
        if parsed.server_name().as_str() != self.server_name {
            return Err(MatrixError::invalid_param("alias must be on this server"));
        }
        let state = self.rooms.state(room_id).await?;
        if state.membership(user_id) != Some("join") {
            return Err(MatrixError::forbidden("You are not in this room"));
        }
        if !self.store.insert_alias(alias, room_id, user_id).await? {
            return Err(MatrixError::RoomInUse("Room alias already exists".into()));
        }
        Ok(())
    }

    /// `DELETE /directory/room/{roomAlias}`: who may set the canonical alias may remove one;
    /// profile-room aliases are the server's.
    pub(crate) async fn delete(&self, user_id: &str, alias: &str) -> Result<()> {
        let room_id = self.resolve(alias).await?;
        if is_reserved_alias(alias) {
            return Err(MatrixError::forbidden("profile-room aliases are managed by the server"));
        }
        let state = self.rooms.state(&room_id).await?;
        let pl = PowerLevels::of(&state);
        if pl.user(user_id, &state) < pl.for_event("m.room.canonical_alias", true) {
            return Err(MatrixError::forbidden("insufficient power level to remove the alias"));
        }
        Ok(self.store.delete_alias(alias).await?)
    }
}

fn refuse_reserved(alias: &str) -> Result<()> {
    if is_reserved_alias(alias) {
        return Err(MatrixError::invalid_param(
            "aliases starting with '@' or '_profile_' are reserved for profile rooms",
        ));
    }
    Ok(())
}
