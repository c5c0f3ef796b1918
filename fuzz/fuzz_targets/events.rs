//! Event and filter decoding: request bodies, stored events (`Pdu`), sync filters and stream
//! tokens from arbitrary bytes. Invariants: nothing panics; a body the server accepts
//! (`json_object_body`, within the depth limit) stored as event content always decodes again
//! (issue 10, defect 1); filter matching terminates on anything `validate` lets through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seed::api::extract::json_object_body;
use seed::rooms::Pdu;
use seed::sync::{token, SyncFilter};

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = json_object_body(data) {
        let pdu = Pdu {
            event_id: "$e".into(),
            room_id: "!r:x".into(),
            sender: "@a:x".into(),
            kind: "m.room.message".into(),
            state_key: Some(String::new()),
            content: content.clone(),
            origin_server_ts: 0,
            depth: 1,
            prev_events: vec![],
            unsigned: [("prev_content".to_owned(), content)].into_iter().collect(),
            txn: None,
        };
        let stored = serde_json::to_string(&pdu).expect("events serialize");
        let back: Pdu = serde_json::from_str(&stored).expect("an accepted event must decode from storage");
        let _ = back.to_client(1, Some(("@a:x", "D")));
    }
    if let Ok(pdu) = serde_json::from_slice::<Pdu>(data) {
        let _ = pdu.to_client(0, Some(("@a:x", "D")));
        let _ = pdu.to_stripped();
        let _ = pdu.membership();
    }
    if let Ok(filter) = serde_json::from_slice::<SyncFilter>(data) {
        if filter.validate().is_ok() {
            let kind = "m.room.message".repeat(16);
            let _ = filter.room.timeline.allows(&kind, "@a:x");
            let _ = filter.room.timeline.excludes_type(&kind);
            let _ = filter.room.allows_room("!r:x");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(pos) = token::parse(s) {
            assert!((0..=token::MAX_POSITION).contains(&pos));
        }
    }
});
