//! The redaction algorithm (spec "Redactions"): what of an event's content survives a
//! redaction, by the rules of the room's version (ruma's, so version 11 keeps a create
//! event's whole content, `invite` of power levels, `redacts` of a redaction and a
//! third-party invite's `signed`). Pure; the room service stores the result.
use ruma::RoomVersionId;
use serde_json::{Map, Value};

use super::event::Pdu;

/// Content keys kept by a redaction, per event type (room version 10 rules), for content
/// that is not canonical JSON (the version rules need it).
fn kept_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "m.room.member" => &["membership", "join_authorised_via_users_server"],
        "m.room.create" => &["creator"],
        "m.room.join_rules" => &["join_rule", "allow"],
        "m.room.power_levels" => {
            &["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"]
        }
        "m.room.history_visibility" => &["history_visibility"],
        _ => &[],
    }
}

/// The content of a `kind` event of a room of `version` after redaction.
pub(crate) fn redact_content(kind: &str, content: &Value, version: &RoomVersionId) -> Value {
    let rules = crate::federation::pdu::rules(version).ok();
    let obj = crate::federation::pdu::to_canonical(content.clone()).ok();
    if let (Some(rules), Some(mut obj)) = (rules, obj) {
        ruma::canonical_json::redact_content_in_place(&mut obj, &rules.redaction, kind);
        if let Ok(v) = serde_json::to_value(obj) {
            return v;
        }
    }
    let keep = kept_keys(kind);
    let kept: Map<String, Value> = content
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Value::Object(kept)
}

/// `pdu` redacted by the redaction event `because` (client format, shown to clients in
/// `unsigned.redacted_because`).
pub(crate) fn redacted(pdu: &Pdu, because: Value, version: &RoomVersionId) -> Pdu {
    let mut out = pdu.clone();
    out.content = redact_content(&pdu.kind, &pdu.content, version);
    out.unsigned.insert("redacted_because".into(), because);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V10: RoomVersionId = RoomVersionId::V10;

    fn redact_content(kind: &str, content: &Value) -> Value {
        super::redact_content(kind, content, &V10)
    }

    #[test]
    fn messages_lose_all_content() {
        assert_eq!(redact_content("m.room.message", &json!({"body": "hi", "msgtype": "m.text"})), json!({}));
    }

    #[test]
    fn version_11_keeps_what_its_rules_keep() {
        let v11 = RoomVersionId::V11;
        let create = json!({"room_version": "11", "m.federate": false, "type": "x"});
        assert_eq!(super::redact_content("m.room.create", &create, &v11), create);
        assert_eq!(redact_content("m.room.create", &create), json!({}), "version 10 keeps only creator");
        let pl = json!({"invite": 50, "ban": 50, "notifications": {"room": 50}});
        assert_eq!(super::redact_content("m.room.power_levels", &pl, &v11), json!({"invite": 50, "ban": 50}));
        assert_eq!(redact_content("m.room.power_levels", &pl), json!({"ban": 50}));
        let redaction = json!({"redacts": "$x", "reason": "spam"});
        assert_eq!(super::redact_content("m.room.redaction", &redaction, &v11), json!({"redacts": "$x"}));
        assert_eq!(redact_content("m.room.redaction", &redaction), json!({}));
        // Content that is not canonical JSON falls back to the version 10 key lists.
        assert_eq!(
            redact_content("m.room.member", &json!({"membership": "join", "w": 1.5})),
            json!({"membership": "join"})
        );
    }

    #[test]
    fn auth_relevant_keys_survive() {
        let member = json!({"membership": "join", "displayname": "Al", "avatar_url": "mxc://a/b"});
        assert_eq!(redact_content("m.room.member", &member), json!({"membership": "join"}));
        let pl = json!({"users": {"@a:x": 100}, "ban": 50, "notifications": {"room": 50}});
        assert_eq!(redact_content("m.room.power_levels", &pl), json!({"users": {"@a:x": 100}, "ban": 50}));
        let jr = json!({"join_rule": "restricted", "allow": [], "extra": 1});
        assert_eq!(redact_content("m.room.join_rules", &jr), json!({"join_rule": "restricted", "allow": []}));
        assert_eq!(
            redact_content("m.room.create", &json!({"creator": "@a:x", "room_version": "10"})),
            json!({"creator": "@a:x"})
        );
    }
}
