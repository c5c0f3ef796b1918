//! The redaction algorithm (spec "Redactions", room versions 9 and 10): what of an event's
//! content survives a redaction. Pure; the room service stores the result.
use serde_json::{Map, Value};

use super::event::Pdu;

/// Content keys kept by a redaction, per event type (room version 10 rules).
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

/// The content of a `kind` event after redaction.
pub(crate) fn redact_content(kind: &str, content: &Value) -> Value {
    let keep = kept_keys(kind);
    let kept: Map<String, Value> = content
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Value::Object(kept)
}

/// `pdu` redacted by the redaction event `because` (client format, shown to clients in
/// `unsigned.redacted_because`).
pub(crate) fn redacted(pdu: &Pdu, because: Value) -> Pdu {
    let mut out = pdu.clone();
    out.content = redact_content(&pdu.kind, &pdu.content);
    out.unsigned.insert("redacted_because".into(), because);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_lose_all_content() {
        assert_eq!(redact_content("m.room.message", &json!({"body": "hi", "msgtype": "m.text"})), json!({}));
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
