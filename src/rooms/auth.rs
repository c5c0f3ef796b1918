//! Room authorization rules (a single-server subset of the spec's auth rules): membership
//! transitions, join rules and power levels. Pure functions over the current room state.
use serde_json::Value;

use super::state::RoomState;

/// Why an event is refused; becomes `403 M_FORBIDDEN`.
pub type Denied = String;

#[derive(Debug, Clone)]
pub struct PowerLevels(Value);

impl PowerLevels {
    pub fn of(state: &RoomState) -> Self {
        Self(state.get("m.room.power_levels", "").map(|e| e.content.clone()).unwrap_or(Value::Null))
    }

    fn level(&self, key: &str, default: i64) -> i64 {
        self.0.get(key).and_then(as_int).unwrap_or(default)
    }

    pub fn user(&self, user_id: &str, state: &RoomState) -> i64 {
        if self.0.is_null() {
            // Before power levels exist the creator has full power (spec auth rules).
            let creator = state.get("m.room.create", "").map(|e| e.sender.as_str());
            return if creator == Some(user_id) { 100 } else { 0 };
        }
        self.0
            .get("users")
            .and_then(|u| u.get(user_id))
            .and_then(as_int)
            .unwrap_or_else(|| self.level("users_default", 0))
    }

    pub fn for_event(&self, kind: &str, is_state: bool) -> i64 {
        if let Some(l) = self.0.get("events").and_then(|e| e.get(kind)).and_then(as_int) {
            return l;
        }
        if is_state {
            self.level("state_default", if self.0.is_null() { 0 } else { 50 })
        } else {
            self.level("events_default", 0)
        }
    }

    pub fn invite(&self) -> i64 {
        self.level("invite", 0)
    }
    pub fn kick(&self) -> i64 {
        self.level("kick", 50)
    }
    pub fn ban(&self) -> i64 {
        self.level("ban", 50)
    }
    pub fn redact(&self) -> i64 {
        self.level("redact", 50)
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// May `sender` send an event of `kind` (with `state_key`) and `content` into a room whose
/// current state is `state`?
pub fn check(
    state: &RoomState,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: &Value,
) -> Result<(), Denied> {
    if kind == "m.room.create" {
        return Err("the room already exists".into());
    }
    if kind == "m.room.member" {
        let target = state_key.ok_or("membership events need a state_key")?;
        let membership = content.get("membership").and_then(Value::as_str).ok_or("membership is missing")?;
        return check_membership(state, sender, target, membership);
    }
    if state.membership(sender) != Some("join") {
        return Err(format!("{sender} is not in the room"));
    }
    let pl = PowerLevels::of(state);
    let have = pl.user(sender, state);
    let need = pl.for_event(kind, state_key.is_some());
    if have < need {
        return Err(format!("{kind} needs power level {need}, {sender} has {have}"));
    }
    if let Some(sk) = state_key {
        // State keys that look like user ids belong to that user (spec rule 8).
        if sk.starts_with('@') && sk != sender {
            return Err("you may not set state keyed to another user".into());
        }
    }
    if kind == "m.room.power_levels" {
        check_power_levels_change(&pl, have, content)?;
    }
    Ok(())
}

fn check_power_levels_change(old: &PowerLevels, have: i64, new: &Value) -> Result<(), Denied> {
    // A user may not grant a level above their own, nor change a user at or above it.
    let new = PowerLevels(new.clone());
    for key in ["ban", "kick", "invite", "redact", "state_default", "events_default", "users_default"] {
        let (o, n) = (old.0.get(key).and_then(as_int), new.0.get(key).and_then(as_int));
        if o != n && (o.unwrap_or(0) > have || n.unwrap_or(0) > have) {
            return Err(format!("cannot change {key} beyond your own power level"));
        }
    }
    let users = |pl: &PowerLevels| pl.0.get("users").and_then(Value::as_object).cloned().unwrap_or_default();
    let (ou, nu) = (users(old), users(&new));
    for uid in ou.keys().chain(nu.keys()) {
        let (o, n) = (ou.get(uid).and_then(as_int), nu.get(uid).and_then(as_int));
        if o != n && (n.unwrap_or(0) > have || o.unwrap_or(0) >= have && o.is_some() && o != Some(have)) {
            return Err(format!("cannot change the power level of {uid}"));
        }
    }
    Ok(())
}

fn check_membership(state: &RoomState, sender: &str, target: &str, membership: &str) -> Result<(), Denied> {
    let sender_m = state.membership(sender);
    let target_m = state.membership(target);
    let pl = PowerLevels::of(state);
    let sender_pl = pl.user(sender, state);
    let target_pl = pl.user(target, state);
    match membership {
        "join" => {
            if sender != target {
                return Err("you can only join as yourself".into());
            }
            if target_m == Some("ban") {
                return Err("you are banned from this room".into());
            }
            if target_m == Some("join") {
                return Ok(());
            }
            match state.join_rule() {
                "public" => Ok(()),
                _ if target_m == Some("invite") => Ok(()),
                _ => Err("you are not invited to this room".into()),
            }
        }
        "invite" => {
            if sender_m != Some("join") {
                return Err("you must be in the room to invite".into());
            }
            if matches!(target_m, Some("join") | Some("ban")) {
                return Err(format!("{target} is already in the room or banned"));
            }
            if sender_pl < pl.invite() {
                return Err("insufficient power level to invite".into());
            }
            Ok(())
        }
        "leave" if sender == target => match sender_m {
            Some("join") | Some("invite") | Some("knock") => Ok(()),
            _ => Err("you are not in this room".into()),
        },
        "leave" => {
            if sender_m != Some("join") {
                return Err("you must be in the room to kick".into());
            }
            if target_m == Some("ban") {
                if sender_pl < pl.ban() {
                    return Err("insufficient power level to unban".into());
                }
                return Ok(());
            }
            if !matches!(target_m, Some("join") | Some("invite") | Some("knock")) {
                return Err(format!("{target} is not in the room"));
            }
            if sender_pl < pl.kick() || sender_pl <= target_pl {
                return Err("insufficient power level to kick".into());
            }
            Ok(())
        }
        "ban" => {
            if sender_m != Some("join") {
                return Err("you must be in the room to ban".into());
            }
            if sender_pl < pl.ban() || sender_pl <= target_pl {
                return Err("insufficient power level to ban".into());
            }
            Ok(())
        }
        other => Err(format!("unsupported membership '{other}'")),
    }
}
