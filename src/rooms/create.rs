//! `POST /createRoom`: the events a new room starts with (spec "Creation" and presets).
use serde_json::{json, Map, Value};

use super::membership::member_join_content;
use super::send::RoomClaims;
use super::service::{NewEvent, Rooms};
use crate::error::{MatrixError, Result};

#[derive(Debug, Default, Clone)]
pub struct CreateRoomSpec {
    pub preset: Option<String>,
    pub visibility_public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<String>,
    pub initial_state: Vec<NewEvent>,
    pub creation_content: Map<String, Value>,
    /// The full alias (`#name:server`), already checked by the aliases service.
    pub alias: Option<String>,
    pub power_level_content_override: Option<Map<String, Value>>,
    pub is_direct: bool,
}

impl CreateRoomSpec {
    pub(crate) fn room_type(&self) -> Option<&str> {
        self.creation_content.get("type").and_then(Value::as_str)
    }
}

/// The ordered events of a new room, as the spec lists them for `createRoom`.
pub(crate) fn initial_events(creator: &str, spec: &CreateRoomSpec, room_version: &str) -> Result<Vec<NewEvent>> {
    let preset = spec
        .preset
        .clone()
        .unwrap_or_else(|| if spec.visibility_public { "public_chat" } else { "private_chat" }.to_owned());
    let (join_rule, history, guest) = match preset.as_str() {
        "public_chat" => ("public", "shared", "forbidden"),
        "private_chat" | "trusted_private_chat" => ("invite", "shared", "can_join"),
        other => return Err(MatrixError::invalid_param(format!("unknown preset '{other}'"))),
    };

    let mut create = spec.creation_content.clone();
    create.insert("creator".into(), json!(creator));
    create.insert("room_version".into(), json!(room_version));
    let mut events = vec![
        NewEvent::state("m.room.create", "", Value::Object(create)),
        NewEvent::state("m.room.member", creator, json!({"membership": "join"})),
    ];

    let mut users = Map::new();
    users.insert(creator.into(), json!(100));
    if preset == "trusted_private_chat" {
        for u in &spec.invite {
            users.insert(u.clone(), json!(100));
        }
    }
    let mut pl = json!({
        "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100
        },
        "notifications": {"room": 50}
    });
    if let Some(over) = &spec.power_level_content_override {
        for (k, v) in over {
            pl[k] = v.clone();
        }
    }
    events.push(NewEvent::state("m.room.power_levels", "", pl));
    if let Some(alias) = &spec.alias {
        events.push(NewEvent::state("m.room.canonical_alias", "", json!({"alias": alias})));
    }
    events.push(NewEvent::state("m.room.join_rules", "", json!({"join_rule": join_rule})));
    events.push(NewEvent::state("m.room.history_visibility", "", json!({"history_visibility": history})));
    events.push(NewEvent::state("m.room.guest_access", "", json!({"guest_access": guest})));
    for ev in &spec.initial_state {
        if matches!(ev.kind.as_str(), "m.room.create" | "m.room.member") {
            return Err(MatrixError::invalid_param(format!("{} is not allowed in initial_state", ev.kind)));
        }
        events.push(ev.clone());
    }
    if let Some(name) = &spec.name {
        events.push(NewEvent::state("m.room.name", "", json!({"name": name})));
    }
    if let Some(topic) = &spec.topic {
        events.push(NewEvent::state("m.room.topic", "", json!({"topic": topic})));
    }
    Ok(events)
}

impl Rooms {
    /// `POST /createRoom`: the room with its initial events, alias and directory entry in
    /// one transaction (`M_ROOM_IN_USE`, and no room, if the alias is taken), then the
    /// invites. The creator's join carries their display name and avatar like every join.
    pub(crate) async fn create_room(&self, creator: &str, spec: &CreateRoomSpec) -> Result<String> {
        let mut events = initial_events(creator, spec, super::ROOM_VERSION)?;
        let (displayname, avatar_url) = self.accounts.profile(creator).await?;
        for ev in events.iter_mut().filter(|e| e.kind == "m.room.member" && e.state_key.as_deref() == Some(creator)) {
            ev.content = member_join_content(&displayname, &avatar_url);
        }
        let claims = RoomClaims {
            aliases: spec.alias.iter().cloned().collect(),
            published: spec.visibility_public,
            ..Default::default()
        };
        let room_id = self.create_with_events(creator, spec.room_type(), events, claims).await?;
        for target in &spec.invite {
            let mut content = json!({"membership": "invite"});
            if spec.is_direct {
                content["is_direct"] = json!(true);
            }
            self.send(&room_id, creator, NewEvent::state("m.room.member", target, content)).await?;
        }
        Ok(room_id)
    }
}
