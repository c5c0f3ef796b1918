//! Cross-signing (spec "Cross-signing"): a user's master, self-signing and user-signing keys
//! (`/keys/device_signing/upload`) and signatures made with them (`/keys/signatures/upload`).
//! The server checks the shape of what it stores; it does not verify the ed25519 signatures
//! (clients do, and a wrong signature only hurts its uploader).
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::limits::*;
use super::E2ee;
use crate::error::{MatrixError, Result};

pub const KEY_TYPES: [&str; 3] = ["master", "self_signing", "user_signing"];

/// The public key of a cross-signing key object: its one `ed25519:<key>` entry.
pub fn public_key(obj: &Value) -> Option<String> {
    let keys = obj.get("keys")?.as_object()?;
    let (id, _) = keys.iter().next()?;
    id.strip_prefix("ed25519:").map(str::to_owned)
}

/// Check a cross-signing key of `key_type` for `user_id`; returns its JSON.
fn check_key(user_id: &str, key_type: &str, key: &Value) -> Result<String> {
    let field = format!("{key_type}_key");
    let obj = key.as_object().ok_or_else(|| MatrixError::bad_json(format!("{field} must be an object")))?;
    if obj.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(MatrixError::invalid_param(format!("{field}.user_id must be the uploading user")));
    }
    let usage_ok = obj
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().all(Value::is_string) && u.iter().any(|x| x == key_type));
    if !usage_ok {
        return Err(MatrixError::invalid_param(format!("{field}.usage must contain \"{key_type}\"")));
    }
    let keys = obj.get("keys").and_then(Value::as_object);
    let one_ed25519 = keys.is_some_and(|k| {
        k.len() == 1
            && k.iter().all(|(id, v)| {
                id.strip_prefix("ed25519:").is_some_and(|p| !p.is_empty()) && v.as_str().is_some_and(|v| !v.is_empty())
            })
    });
    if !one_ed25519 {
        return Err(MatrixError::invalid_param(format!("{field}.keys must hold exactly one ed25519 key")));
    }
    if let Some(sigs) = obj.get("signatures") {
        let ok = sigs
            .as_object()
            .is_some_and(|m| m.values().all(|s| s.as_object().is_some_and(|k| k.values().all(Value::is_string))));
        if !ok {
            return Err(MatrixError::bad_json(format!("{field}.signatures must map user ids to key ids to strings")));
        }
    }
    let s = serde_json::to_string(key).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if s.len() > MAX_KEY_OBJECT_BYTES {
        return Err(MatrixError::TooLarge(format!("{field} is larger than {MAX_KEY_OBJECT_BYTES} bytes")));
    }
    Ok(s)
}

/// What a `/keys/device_signing/upload` would store, checked.
pub struct SigningKeysUpload {
    keys: Vec<(&'static str, String)>,
}

impl E2ee {
    /// Check an upload (`keys` maps "master"/"self_signing"/"user_signing" to key objects)
    /// and tell whether it needs user-interactive auth: replacing existing keys does; the
    /// first upload, and re-uploading the same keys, do not (as Synapse does, since clients
    /// such as matrix-js-sdk bootstrap cross-signing right after login without a password).
    pub async fn check_signing_keys(
        &self,
        user_id: &str,
        keys: &HashMap<&'static str, Value>,
    ) -> Result<(SigningKeysUpload, bool)> {
        let mut checked = Vec::new();
        for key_type in KEY_TYPES {
            if let Some(k) = keys.get(key_type) {
                checked.push((key_type, check_key(user_id, key_type, k)?));
            }
        }
        let existing: HashMap<String, String> = self.store.e2e_cross_signing_keys(user_id).await?.into_iter().collect();
        let has_master = checked.iter().any(|(t, _)| *t == "master") || existing.contains_key("master");
        if !checked.is_empty() && !has_master {
            return Err(MatrixError::MissingParam("upload a master key before the other cross-signing keys".into()));
        }
        let needs_auth = !existing.is_empty()
            && checked.iter().any(|(t, json)| existing.get(*t).is_none_or(|old| !same_json(old, json)));
        Ok((SigningKeysUpload { keys: checked }, needs_auth))
    }

    /// Store checked cross-signing keys; a device-list change for the user.
    pub async fn store_signing_keys(&self, user_id: &str, upload: SigningKeysUpload) -> Result<()> {
        if upload.keys.is_empty() {
            return Ok(());
        }
        let existing: HashMap<String, String> = self.store.e2e_cross_signing_keys(user_id).await?.into_iter().collect();
        let master_changed = upload
            .keys
            .iter()
            .any(|(t, json)| *t == "master" && existing.get("master").is_none_or(|old| !same_json(old, json)));
        let unchanged = upload.keys.iter().all(|(t, json)| existing.get(*t).is_some_and(|old| same_json(old, json)));
        self.store.e2e_put_cross_signing_keys(user_id, &upload.keys, master_changed).await?;
        if !unchanged {
            self.device_list_changed(user_id).await?;
        }
        Ok(())
    }

    /// `POST /keys/signatures/upload`: `signed` maps user ids to key ids (device ids, or a
    /// master key's public key) to the signed object carrying the new signatures. Returns
    /// the per-key failures.
    pub async fn upload_signatures(&self, signer: &str, signed: &Map<String, Value>) -> Result<Value> {
        let total: usize = signed.values().map(|v| v.as_object().map_or(1, Map::len)).sum();
        if total > MAX_SIGNED_OBJECTS {
            return Err(MatrixError::TooLarge(format!("at most {MAX_SIGNED_OBJECTS} signed objects per upload")));
        }
        let mut rows = Vec::new();
        let mut failures = Map::new();
        let mut changed_users = std::collections::BTreeSet::new();
        for (target_user, objects) in signed {
            let objects =
                objects.as_object().ok_or_else(|| MatrixError::bad_json("each user must map to an object"))?;
            let master = self.store.e2e_cross_signing_keys(target_user).await?.into_iter().find(|(t, _)| t == "master");
            let master_pub =
                master.and_then(|(_, j)| serde_json::from_str::<Value>(&j).ok()).and_then(|v| public_key(&v));
            for (key_id, obj) in objects {
                let fail = |errcode: &str, error: &str| json!({"errcode": errcode, "error": error});
                let is_master = master_pub.as_deref() == Some(key_id.as_str());
                let is_own_device = target_user == signer
                    && !is_master
                    && self.store.e2e_device_key(target_user, key_id).await?.is_some();
                if !is_master && !is_own_device {
                    let f = fail("M_NOT_FOUND", "no such key (a device of yours, or a user's master key)");
                    failures.entry(target_user.clone()).or_insert_with(|| json!({}))[key_id] = f;
                    continue;
                }
                let sigs = obj.get("signatures").and_then(|s| s.get(signer)).and_then(Value::as_object);
                let Some(sigs) = sigs.filter(|s| !s.is_empty() && s.len() <= 16) else {
                    let f = fail("M_INVALID_SIGNATURE", "the object carries no signature of yours");
                    failures.entry(target_user.clone()).or_insert_with(|| json!({}))[key_id] = f;
                    continue;
                };
                for (signing_key, sig) in sigs {
                    let Some(sig) = sig.as_str().filter(|s| s.len() <= 1024 && signing_key.len() <= MAX_ID_BYTES)
                    else {
                        return Err(MatrixError::bad_json("signatures must be strings"));
                    };
                    rows.push((
                        signer.to_owned(),
                        signing_key.clone(),
                        target_user.clone(),
                        key_id.clone(),
                        sig.to_owned(),
                    ));
                }
                changed_users.insert(if target_user == signer { target_user.clone() } else { signer.to_owned() });
            }
        }
        self.store.e2e_put_signatures(&rows).await?;
        for user in changed_users {
            self.device_list_changed(&user).await?;
        }
        Ok(json!({ "failures": failures }))
    }
}

/// Same key object, whatever the key order.
fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
