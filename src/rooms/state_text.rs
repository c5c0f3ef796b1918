//! The JSON text of the state events a room's cached state keeps ([`super::state`]),
//! compressed (issue #13): a profile room's nine non-member state events are ~6 KB of text, so
//! 10,000 users' profile rooms held ~60 MB of it. Each text is compressed alone (LZ4 block
//! format, `lz4_flex`), against a fixed dictionary of what every event's text shares: the field
//! names in the order events are written, the event types and their usual contents. What stays
//! is mostly what is unique to the event: its ids, hashes and signature (base64, which LZ4 does
//! not shrink), its room, sender and times. A profile room's nine texts: 5,955 → 4,027 bytes.
//!
//! The dictionary is part of this process only (nothing compressed is stored or sent), so it
//! may change between versions freely.
use std::sync::Arc;

/// What event texts share, in the order `Pdu` writes its fields.
const DICTIONARY: &[u8] = concat!(
    r#"{"type":"m.room.guest_access","content":{"guest_access":"forbidden"}}"#,
    r#"{"type":"m.room.history_visibility","content":{"history_visibility":"shared"}}"#,
    r#"{"type":"m.room.join_rules","content":{"join_rule":"invite"}}{"join_rule":"public"}"#,
    r#"{"type":"m.room.name","content":{"name":""}}{"type":"m.room.topic","content":{"topic":""}}"#,
    r##"{"type":"m.room.canonical_alias","content":{"alias":"#"}}"##,
    r#"{"type":"m.room.encryption","content":{"algorithm":"m.megolm.v1.aes-sha2"}}"#,
    r#"{"type":"m.profile","content":{"m.profile":{"fn":""}}}"#,
    r#"{"type":"m.status","content":{}}{"type":"m.status","content":{"status":""}}"#,
    r#"{"type":"m.presence","content":{"currently_active":false,"presence":"offline"}}"#,
    r#"{"currently_active":true,"presence":"online"}{"presence":"unavailable"}"#,
    r#"{"type":"m.room.power_levels","state_key":"","content":{"ban":100,"events":{},"events_default":100,"#,
    r#""invite":100,"kick":100,"redact":100,"state_default":100,"users":{"@":100},"users_default":0},"#,
    r#""events":{"m.room.name":50,"m.room.power_levels":100,"m.room.history_visibility":100,"#,
    r#""events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"notifications":{"room":50}"#,
    r#"{"type":"m.room.member","state_key":"@","content":{"displayname":"","membership":"join"}}"#,
    r#"{"avatar_url":"mxc://","membership":"leave"}{"membership":"invite"}"#,
    r#"{"type":"m.room.create","state_key":"","content":{"creator":"@","room_version":"10","type":"org.matrix.msc1769.profile"},"#,
    r#""origin_server_ts":1,"depth":1,"prev_events":[],"hashes":{"sha256":""},"#,
    r#""unsigned":{"age_ts":1,"replaces_state":"$","prev_content":{}},"redacts":"$","#,
    r#"{"event_id":"$","room_id":"!","sender":"@","type":"m.room.","state_key":"","content":{},"#,
    r#""origin_server_ts":17,"depth":1,"prev_events":["$"],"auth_events":["$","$","$"],"#,
    r#""hashes":{"sha256":""},"signatures":{"":{"ed25519:":""}}}"#,
)
.as_bytes();

/// One event's text, compressed; cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct StateText {
    packed: Arc<[u8]>,
    /// The text's length in bytes.
    len: u32,
}

impl StateText {
    /// `None` for a text over 4 GiB (an event is at most 64 KiB: never).
    pub(crate) fn new(json: &str) -> Option<Self> {
        let len = u32::try_from(json.len()).ok()?;
        let packed = lz4_flex::block::compress_with_dict(json.as_bytes(), DICTIONARY);
        Some(Self { packed: Arc::from(packed), len })
    }

    /// The text back. `None` only if the bytes were damaged in memory.
    pub(crate) fn text(&self) -> Option<String> {
        let bytes = lz4_flex::block::decompress_with_dict(&self.packed, self.len as usize, DICTIONARY).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// Bytes held for the text.
    pub(crate) fn packed_len(&self) -> usize {
        self.packed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile room's `m.presence` event as this server writes it.
    const PRESENCE: &str = r#"{"event_id":"$xQEFXc1nse03rxBglmGpDyjundKicDwcDUkvXuRqI60","room_id":"!03tYNjSDdf6We53JEw:localhost","sender":"@c803:localhost","type":"m.presence","state_key":"","content":{"currently_active":false,"presence":"offline"},"origin_server_ts":1795731407211,"depth":9,"prev_events":["$dR2uVchvHMMAme1iLIEwWZ9BEkKG0aye7NauH6m51Mc"],"auth_events":["$oQgSNYJylGv41YV7tTQRrFxO-AFOe7PvlBVpygjj7Hs","$tTAcHvxcd38E2pV7RY3nbtW5XBqxwGhm_BNg0Fjkx-k","$jUP0doQLo5bYWhhQyRpfGrWrwtFgLqjLndbFibncX5A"],"hashes":{"sha256":"j1K7t+CDmq9k0/VQFY36vFQTPZHGKX9YAjzHyhxjMxw"},"signatures":{"localhost":{"ed25519:a_o71E":"a09rNVmfy4qxKwr85hRVtXMTZSfCMHFnanuLoh3Hopk2i9HEKHAzCrfuMyrpDuGPVorUaMckjw/b6Wzc2rxNDQ"}}}"#;

    #[test]
    fn texts_come_back_unchanged_and_smaller() {
        let kept = StateText::new(PRESENCE).unwrap();
        assert_eq!(kept.text().as_deref(), Some(PRESENCE));
        assert!(
            kept.packed_len() * 100 < PRESENCE.len() * 75,
            "{} of {} bytes: the shared frame should compress",
            kept.packed_len(),
            PRESENCE.len()
        );
    }

    #[test]
    fn any_text_round_trips() {
        for text in ["", "{}", "ü", &"x".repeat(70_000), r#"{"a":"\u0000\n"}"#] {
            assert_eq!(StateText::new(text).unwrap().text().as_deref(), Some(text));
        }
    }
}
