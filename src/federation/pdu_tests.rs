//! Tests of the PDU library against the spec's signing examples (appendix "Signing JSON",
//! "Signing events": key seed `YJDBA9…XA1`, key id `ed25519:1`, server `domain`).
use std::collections::BTreeMap;

use ruma::serde::Base64;
use ruma::signatures::Verified;
use serde_json::json;

use super::*;
use crate::federation::signing_key::parse_key_line;

fn spec_key() -> Ed25519KeyPair {
    parse_key_line("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
}

fn keys_of(server: &str, key: &Ed25519KeyPair) -> PublicKeyMap {
    let set = BTreeMap::from([(format!("ed25519:{}", key.version()), Base64::new(key.public_key().to_vec()))]);
    BTreeMap::from([(server.to_owned(), set)])
}

fn obj(v: Value) -> CanonicalJsonObject {
    to_canonical(v).unwrap()
}

fn sig_of(o: &CanonicalJsonObject) -> String {
    let v = serde_json::to_value(o).unwrap();
    v["signatures"]["domain"]["ed25519:1"].as_str().unwrap().to_owned()
}

#[test]
fn spec_signing_json_examples() {
    let key = spec_key();
    let mut empty = obj(json!({}));
    ruma::signatures::sign_json("domain", &key, &mut empty).unwrap();
    assert_eq!(
        sig_of(&empty),
        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    );
    let mut two = obj(json!({"one": 1, "two": "Two"}));
    ruma::signatures::sign_json("domain", &key, &mut two).unwrap();
    assert_eq!(sig_of(&two), "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw");
}

#[test]
fn spec_minimal_event_hash_and_signature() {
    let mut ev = obj(json!({
        "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
        "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
        "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
        "unsigned": {"age_ts": 1000000}
    }));
    hash_and_sign(&mut ev, "domain", &spec_key(), &RoomVersionId::V10).unwrap();
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["hashes"]["sha256"], "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    assert_eq!(sig_of(&ev), "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
}

fn sample_pdu(kind: &str, content: Value) -> Pdu {
    Pdu {
        event_id: String::new(),
        room_id: "!r:domain".into(),
        sender: "@u:domain".into(),
        kind: kind.into(),
        state_key: None,
        content,
        origin_server_ts: 1_700_000_000_000,
        depth: 7,
        prev_events: vec!["$prev".into()],
        ..Default::default()
    }
}

#[test]
fn sign_verify_round_trip_in_both_versions() {
    let key = spec_key();
    for version in [RoomVersionId::V10, RoomVersionId::V11] {
        let pdu = sample_pdu("m.room.message", json!({"msgtype": "m.text", "body": "hi"}));
        let mut ev = to_federation(&pdu, &["$create".into(), "$pl".into()], &version).unwrap();
        hash_and_sign(&mut ev, "domain", &key, &version).unwrap();
        let keys = keys_of("domain", &key);
        assert!(matches!(verify(&ev, &keys, &version).unwrap(), Verified::All));

        let id = event_id(&ev, &version).unwrap();
        assert!(id.starts_with('$') && id.len() == 44, "{id}");
        assert!(!id.contains('+') && !id.contains('/'), "url-safe base64: {id}");
        // The id ignores `unsigned` and `signatures`.
        let mut with_unsigned = ev.clone();
        with_unsigned.insert("unsigned".into(), CanonicalJsonValue::Object(obj(json!({"age": 5}))));
        assert_eq!(event_id(&with_unsigned, &version).unwrap(), id);

        let (back, auth) = from_federation(&ev, &version).unwrap();
        assert_eq!(back.event_id, id);
        assert_eq!(auth, vec!["$create".to_owned(), "$pl".to_owned()]);
        assert_eq!((back.depth, back.prev_events.clone(), back.content.clone()), (7, pdu.prev_events, pdu.content));
        // What is stored gives back exactly what was signed, keys we do not model included.
        assert_eq!(signed_json(&back, &version).unwrap(), ev);
        let mut with_origin = ev.clone();
        with_origin.insert("origin".into(), "domain".into());
        let (back, _) = from_federation(&with_origin, &version).unwrap();
        assert_eq!(signed_json(&back, &version).unwrap(), with_origin);

        // Changed content: signatures still hold over the redacted form, the hash does not.
        let mut tampered = ev.clone();
        tampered.insert("content".into(), CanonicalJsonValue::Object(obj(json!({"body": "changed"}))));
        assert!(matches!(verify(&tampered, &keys, &version).unwrap(), Verified::Signatures));
        // A changed protected field breaks the signature.
        let mut forged = ev.clone();
        forged.insert("sender".into(), "@mallory:domain".into());
        assert!(verify(&forged, &keys, &version).is_err());
        // Redaction keeps the signature valid and the event id the same.
        let red = redacted(ev.clone(), &version).unwrap();
        assert!(serde_json::to_value(&red).unwrap()["content"].as_object().unwrap().is_empty());
        assert!(verify(&red, &keys, &version).is_ok());
        assert_eq!(event_id(&red, &version).unwrap(), id);
    }
}

#[test]
fn redaction_target_moves_with_the_version() {
    let pdu = sample_pdu("m.room.redaction", json!({"redacts": "$target"}));
    let v10 = serde_json::to_value(to_federation(&pdu, &[], &RoomVersionId::V10).unwrap()).unwrap();
    assert_eq!(v10["redacts"], "$target");
    let v11 = serde_json::to_value(to_federation(&pdu, &[], &RoomVersionId::V11).unwrap()).unwrap();
    assert!(v11.get("redacts").is_none());
    assert_eq!(v11["content"]["redacts"], "$target");
    // v11 keeps `content.redacts` through redaction, v10 does not.
    let red11 = serde_json::to_value(redacted(obj(v11), &RoomVersionId::V11).unwrap()).unwrap();
    assert_eq!(red11["content"]["redacts"], "$target");
}

#[test]
fn other_versions_and_malformed_pdus_are_refused() {
    let pdu = sample_pdu("m.room.message", json!({}));
    assert!(matches!(to_federation(&pdu, &[], &RoomVersionId::V9), Err(PduError::UnsupportedVersion(_))));
    let mut ev = to_federation(&pdu, &[], &RoomVersionId::V11).unwrap();
    ev.remove("depth");
    assert!(from_federation(&ev, &RoomVersionId::V11).is_err());
    let many: Vec<String> = (0..21).map(|i| format!("$e{i}")).collect();
    let mut ev = to_federation(&pdu, &[], &RoomVersionId::V11).unwrap();
    ev.insert("prev_events".into(), serde_json::from_value(json!(many)).unwrap());
    assert!(from_federation(&ev, &RoomVersionId::V11).is_err());
}
