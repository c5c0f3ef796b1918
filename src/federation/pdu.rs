//! The federation event format (spec "Room Versions" 10 and 11, "PDUs"), as a library for
//! exchanging room events with other servers: Seed's stored [`Pdu`] to and from the signed
//! PDU JSON, content hashes, reference-hash event ids, signing, verification and redaction,
//! all through ruma's `signatures` crate. Local events are sealed here as they are built
//! (`Rooms::build_pdu`); remote ones are read with [`from_federation`].
use ruma::canonical_json::redact;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::{Map, Value};

use crate::rooms::event::Pdu;

/// Most `prev_events` / `auth_events` a PDU may name (spec: 20 and 10).
pub const MAX_PREV_EVENTS: usize = 20;
pub const MAX_AUTH_EVENTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("room version {0} is not supported (10 and 11 are)")]
    UnsupportedVersion(String),
    #[error("malformed PDU: {0}")]
    Malformed(String),
    #[error("bad signature: {0}")]
    Signature(String),
}

fn malformed(e: impl std::fmt::Display) -> PduError {
    PduError::Malformed(e.to_string())
}

/// The rules of a room version this module handles (10 or 11).
pub fn rules(version: &RoomVersionId) -> Result<RoomVersionRules, PduError> {
    match version {
        RoomVersionId::V10 | RoomVersionId::V11 => {
            version.rules().ok_or_else(|| PduError::UnsupportedVersion(version.to_string()))
        }
        other => Err(PduError::UnsupportedVersion(other.to_string())),
    }
}

pub fn to_canonical(v: Value) -> Result<CanonicalJsonObject, PduError> {
    match serde_json::from_value::<CanonicalJsonValue>(v).map_err(malformed)? {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => Err(malformed("not a JSON object")),
    }
}

/// A stored event as an unsigned federation PDU (no `event_id`: ids are reference hashes).
/// Version 10 names a redaction's target at the top level too; 11 only in `content`.
pub fn to_federation(
    pdu: &Pdu,
    auth_events: &[String],
    version: &RoomVersionId,
) -> Result<CanonicalJsonObject, PduError> {
    rules(version)?;
    let mut m = Map::new();
    m.insert("auth_events".into(), auth_events.into());
    m.insert("content".into(), pdu.content.clone());
    m.insert("depth".into(), pdu.depth.into());
    m.insert("origin_server_ts".into(), pdu.origin_server_ts.into());
    m.insert("prev_events".into(), pdu.prev_events.clone().into());
    m.insert("room_id".into(), pdu.room_id.clone().into());
    m.insert("sender".into(), pdu.sender.clone().into());
    m.insert("type".into(), pdu.kind.clone().into());
    if let Some(sk) = &pdu.state_key {
        m.insert("state_key".into(), sk.clone().into());
    }
    for (k, v) in &pdu.extra {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if *version == RoomVersionId::V10 && pdu.kind == "m.room.redaction" && !m.contains_key("redacts") {
        if let Some(r) = pdu.content.get("redacts") {
            m.insert("redacts".into(), r.clone());
        }
    }
    to_canonical(Value::Object(m))
}

/// A stored event as the signed PDU its server sent (or we signed): the unsigned PDU with
/// its `hashes` and `signatures`.
pub fn signed_json(pdu: &Pdu, version: &RoomVersionId) -> Result<CanonicalJsonObject, PduError> {
    let mut obj = to_federation(pdu, &pdu.auth_events, version)?;
    for (k, v) in [("hashes", &pdu.hashes), ("signatures", &pdu.signatures)] {
        if let Some(v) = v {
            obj.insert(k.into(), serde_json::from_value(v.clone()).map_err(malformed)?);
        }
    }
    Ok(obj)
}

/// The top-level PDU keys `Pdu` has fields for; any other key goes to `Pdu::extra`.
const MODELLED_KEYS: &[&str] = &[
    "auth_events",
    "content",
    "depth",
    "origin_server_ts",
    "prev_events",
    "room_id",
    "sender",
    "type",
    "state_key",
    "hashes",
    "signatures",
    "unsigned",
    "event_id",
];

/// Add the content hash and our signature (`hashes.sha256`, `signatures.{origin}`).
pub fn hash_and_sign(
    obj: &mut CanonicalJsonObject,
    origin: &str,
    key: &Ed25519KeyPair,
    version: &RoomVersionId,
) -> Result<(), PduError> {
    add_content_hash(obj, version)?;
    sign(obj, origin, key, version)
}

/// Add the content hash (`hashes.sha256`): all the event id needs, since the reference hash
/// leaves `signatures` out. Refused for an event over the spec's 65,535 bytes.
pub fn add_content_hash(obj: &mut CanonicalJsonObject, version: &RoomVersionId) -> Result<(), PduError> {
    rules(version)?;
    ruma::signatures::add_content_hash_to_event(obj).map_err(malformed)
}

/// Add `origin`'s signature over the redacted event (`signatures.{origin}`), leaving `hashes`
/// as they are: a redacted copy is signed exactly as its original was. Ed25519 signatures are
/// deterministic, so signing one event twice gives the same bytes.
pub fn sign(
    obj: &mut CanonicalJsonObject,
    origin: &str,
    key: &Ed25519KeyPair,
    version: &RoomVersionId,
) -> Result<(), PduError> {
    let rules = rules(version)?;
    ruma::signatures::sign_event(origin, key, obj, &rules.redaction).map_err(malformed)
}

/// The event id: `$` + the reference hash (url-safe unpadded base64 of SHA-256 over the
/// redacted event without `signatures` and `unsigned`).
pub fn event_id(obj: &CanonicalJsonObject, version: &RoomVersionId) -> Result<String, PduError> {
    let rules = rules(version)?;
    Ok(format!("${}", ruma::signatures::reference_hash(obj, &rules).map_err(malformed)?))
}

/// Check the signatures the room version requires (sender's server, and for v10/11 invites
/// and joins the authorising servers) and the content hash. `Verified::Signatures` means the
/// content does not match its hash: the event must be stored redacted.
pub fn verify(obj: &CanonicalJsonObject, keys: &PublicKeyMap, version: &RoomVersionId) -> Result<Verified, PduError> {
    let rules = rules(version)?;
    ruma::signatures::verify_event(keys, obj, &rules).map_err(|e| PduError::Signature(e.to_string()))
}

/// The redacted form of a PDU (spec "Redactions", per room version).
pub fn redacted(obj: CanonicalJsonObject, version: &RoomVersionId) -> Result<CanonicalJsonObject, PduError> {
    let rules = rules(version)?;
    redact(obj, &rules.redaction, None).map_err(malformed)
}

/// A federation PDU as Seed's stored event, with its `auth_events`. The id is computed here,
/// never taken from the peer.
pub fn from_federation(obj: &CanonicalJsonObject, version: &RoomVersionId) -> Result<(Pdu, Vec<String>), PduError> {
    let event_id = event_id(obj, version)?;
    let v = serde_json::to_value(obj).map_err(malformed)?;
    let str_field = |k: &str| {
        v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| malformed(format!("`{k}` missing")))
    };
    let id_list = |k: &str, max: usize| -> Result<Vec<String>, PduError> {
        let a = v.get(k).and_then(Value::as_array).ok_or_else(|| malformed(format!("`{k}` missing")))?;
        if a.len() > max {
            return Err(malformed(format!("more than {max} {k}")));
        }
        a.iter()
            .map(|e| e.as_str().map(str::to_owned).ok_or_else(|| malformed(format!("`{k}` holds a non-string"))))
            .collect()
    };
    let content = v.get("content").filter(|c| c.is_object()).cloned().ok_or_else(|| malformed("`content` missing"))?;
    let kind = str_field("type")?;
    let state_key = match v.get("state_key") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("`state_key` is not a string")),
    };
    let extra = v
        .as_object()
        .map(|o| o.iter().filter(|(k, _)| !MODELLED_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())))
        .into_iter()
        .flatten()
        .collect();
    let pdu = Pdu {
        event_id,
        room_id: str_field("room_id")?,
        sender: str_field("sender")?,
        kind,
        state_key,
        content,
        origin_server_ts: v
            .get("origin_server_ts")
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed("`origin_server_ts` missing"))?,
        depth: v.get("depth").and_then(Value::as_i64).ok_or_else(|| malformed("`depth` missing"))?,
        prev_events: id_list("prev_events", MAX_PREV_EVENTS)?,
        auth_events: id_list("auth_events", MAX_AUTH_EVENTS)?,
        hashes: v.get("hashes").cloned(),
        signatures: v.get("signatures").cloned(),
        extra,
        unsigned: Map::new(),
        txn: None,
    };
    let auth = pdu.auth_events.clone();
    Ok((pdu, auth))
}

#[cfg(test)]
#[path = "pdu_tests.rs"]
mod tests;
