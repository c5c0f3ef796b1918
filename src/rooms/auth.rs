//! Room authorization rules (a single-server subset of the spec's auth rules): membership
//! transitions, join rules and power levels. Pure functions over the current room state.
use serde_json::Value;

use super::state::RoomState;

/// Why an event is refused; becomes `403 M_FORBIDDEN`.
pub type Denied = String;

#[derive(Debug, Clone)]
pub struct PowerLevels(Value);

impl PowerLevels {
    pub(crate) fn of(state: &RoomState) -> Self {
        Self(state.get("m.room.power_levels", "").map(|e| e.content.clone()).unwrap_or(Value::Null))
    }

    fn level(&self, key: &str, default: i64) -> i64 {
        self.0.get(key).and_then(as_int).unwrap_or(default)
    }

    pub(crate) fn user(&self, user_id: &str, state: &RoomState) -> i64 {
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

    pub(crate) fn for_event(&self, kind: &str, is_state: bool) -> i64 {
        if let Some(l) = self.0.get("events").and_then(|e| e.get(kind)).and_then(as_int) {
            return l;
        }
        if is_state {
            self.level("state_default", if self.0.is_null() { 0 } else { 50 })
        } else {
            self.level("events_default", 0)
        }
    }

    pub(crate) fn invite(&self) -> i64 {
        self.level("invite", 0)
    }
    pub(crate) fn kick(&self) -> i64 {
        self.level("kick", 50)
    }
    pub(crate) fn ban(&self) -> i64 {
        self.level("ban", 50)
    }
    pub(crate) fn redact(&self) -> i64 {
        self.level("redact", 50)
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// May `sender` send an event of `kind` (with `state_key`) and `content` into a room whose
/// current state is `state`?
pub(crate) fn check(
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
        check_power_levels_change(&pl, sender, have, content)?;
    }
    Ok(())
}

/// The spec's power-level change rules (auth rules, rule "If type is m.room.power_levels",
/// room versions 1–11; this server creates version 10, where every level is an integer).
fn check_power_levels_change(old: &PowerLevels, sender: &str, have: i64, new: &Value) -> Result<(), Denied> {
    let new_obj = new.as_object().ok_or("power levels content must be an object")?;
    // Rule a: `users` maps valid user ids to integers; v10 also requires integers for every
    // level the rules read.
    if let Some(users) = new_obj.get("users") {
        let users = users.as_object().ok_or("users must be an object")?;
        for (uid, level) in users {
            if ruma::UserId::parse(uid).is_err() {
                return Err(format!("'{uid}' in users is not a valid user id"));
            }
            if !level.is_i64() {
                return Err(format!("the level of {uid} must be an integer"));
            }
        }
    }
    for key in TOP_LEVEL_KEYS {
        if new_obj.get(key).is_some_and(|v| !v.is_i64()) {
            return Err(format!("{key} must be an integer"));
        }
    }
    for key in ["events", "notifications"] {
        if let Some(map) = new_obj.get(key) {
            let map = map.as_object().ok_or_else(|| format!("{key} must be an object"))?;
            if map.values().any(|v| !v.is_i64()) {
                return Err(format!("every level in {key} must be an integer"));
            }
        }
    }
    // Rule b: the first power levels event is allowed.
    if old.0.is_null() {
        return Ok(());
    }
    let new = PowerLevels(new.clone());
    // Rule c: top-level levels added, changed or removed.
    for key in TOP_LEVEL_KEYS {
        let (o, n) = (old.0.get(key).and_then(as_int), new.0.get(key).and_then(as_int));
        if o != n && (o.is_some_and(|o| o > have) || n.is_some_and(|n| n > have)) {
            return Err(format!("cannot change {key} beyond your own power level ({have})"));
        }
    }
    // Rule d: entries of `events`, `users` and `notifications` added, changed or removed.
    let entries = |pl: &PowerLevels, key: &str| pl.0.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
    for key in ["events", "users", "notifications"] {
        let (om, nm) = (entries(old, key), entries(&new, key));
        for name in om.keys().chain(nm.keys()) {
            let (o, n) = (om.get(name).and_then(as_int), nm.get(name).and_then(as_int));
            if o == n {
                continue;
            }
            if o.is_some_and(|o| o > have) || n.is_some_and(|n| n > have) {
                return Err(format!("cannot change {key}.{name} beyond your own power level ({have})"));
            }
            // Rule e: another user's entry at or above the sender's level is untouchable.
            if key == "users" && o.is_some_and(|o| o >= have) && name != sender {
                return Err(format!("cannot change the power level of {name}"));
            }
        }
    }
    Ok(())
}

/// The top-level levels rule c covers.
const TOP_LEVEL_KEYS: [&str; 7] =
    ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn old() -> PowerLevels {
        PowerLevels(json!({
            "users": {"@admin:x": 100, "@mod:x": 50, "@peer:x": 50, "@user:x": 0},
            "events": {"m.room.name": 50, "m.room.power_levels": 100},
            "notifications": {"room": 50},
            "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "state_default": 50, "events_default": 0, "users_default": 0
        }))
    }

    fn change(sender: &str, have: i64, edit: impl FnOnce(&mut Value)) -> Result<(), Denied> {
        let mut new = old().0;
        edit(&mut new);
        check_power_levels_change(&old(), sender, have, &new)
    }

    #[test]
    fn events_and_notifications_cannot_exceed_the_sender() {
        assert!(change("@mod:x", 50, |c| c["events"]["m.room.topic"] = json!(100)).is_err());
        assert!(change("@mod:x", 50, |c| c["events"]["m.room.name"] = json!(100)).is_err());
        assert!(change("@mod:x", 50, |c| c["events"]["m.room.power_levels"] = json!(50)).is_err());
        assert!(change("@mod:x", 50, |c| c["notifications"]["room"] = json!(100)).is_err());
        assert!(change("@mod:x", 50, |c| c["events"]["m.room.topic"] = json!(50)).is_ok());
        assert!(change("@mod:x", 50, |c| c["events"]["m.room.name"] = json!(10)).is_ok());
        assert!(change("@mod:x", 50, |c| c["notifications"]["room"] = json!(0)).is_ok());
        assert!(change("@admin:x", 100, |c| c["events"]["m.room.power_levels"] = json!(90)).is_ok());
    }

    #[test]
    fn top_level_keys_follow_rule_c() {
        assert!(change("@mod:x", 50, |c| c["ban"] = json!(51)).is_err());
        assert!(change("@mod:x", 50, |c| c["invite"] = json!(50)).is_ok());
        // Removing a key whose current value is above the sender is a change too.
        let mut high = old();
        high.0["kick"] = json!(100);
        let mut new = high.0.clone();
        new.as_object_mut().unwrap().remove("kick");
        assert!(check_power_levels_change(&high, "@mod:x", 50, &new).is_err());
        assert!(change("@mod:x", 50, |c| c["state_default"] = json!("50")).is_err(), "strings are not integers in v10");
    }

    #[test]
    fn users_follow_rules_d_and_e() {
        assert!(change("@mod:x", 50, |c| c["users"]["@user:x"] = json!(50)).is_ok());
        assert!(change("@mod:x", 50, |c| c["users"]["@user:x"] = json!(51)).is_err());
        assert!(change("@mod:x", 50, |c| c["users"]["@peer:x"] = json!(0)).is_err(), "a peer at your level");
        assert!(change("@mod:x", 50, |c| c["users"]["@mod:x"] = json!(0)).is_ok(), "demoting yourself");
        assert!(change("@mod:x", 50, |c| c["users"]["@admin:x"] = json!(0)).is_err());
        assert!(change("@mod:x", 50, |c| c["users"]["not-a-user"] = json!(0)).is_err());
        assert!(change("@mod:x", 50, |c| c["users"] = json!([])).is_err());
        assert!(change("@admin:x", 100, |c| c["users"]["@peer:x"] = json!(0)).is_ok());
    }
}
