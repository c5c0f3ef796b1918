//! Device keys, one-time keys and fallback keys (spec "Key management API"):
//! `/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`.
use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::limits::*;
use super::E2ee;
use crate::accounts::Session;
use crate::error::{MatrixError, Result};

/// The body of `POST /keys/upload`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UploadKeys {
    pub device_keys: Option<Map<String, Value>>,
    #[serde(default)]
    pub one_time_keys: Map<String, Value>,
    #[serde(default)]
    pub fallback_keys: Map<String, Value>,
    #[serde(default, rename = "org.matrix.msc2732.fallback_keys")]
    pub unstable_fallback_keys: Map<String, Value>,
}

/// `algorithm:key_id` split, both parts non-empty and bounded.
fn split_key_id(id: &str) -> Result<(&str, &str)> {
    match id.split_once(':') {
        Some((alg, key)) if !alg.is_empty() && !key.is_empty() && id.len() <= MAX_ID_BYTES => Ok((alg, key)),
        _ => Err(MatrixError::invalid_param(format!("invalid key id '{id}' (want <algorithm>:<key id>)"))),
    }
}

fn to_json(v: &Value, max: usize, what: &str) -> Result<String> {
    let s = serde_json::to_string(v).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    if s.len() > max {
        return Err(MatrixError::TooLarge(format!("{what} is larger than {max} bytes")));
    }
    Ok(s)
}

/// A signed object's `signatures` must be `{user: {key id: signature}}` when present.
fn check_signatures(obj: &Map<String, Value>, what: &str) -> Result<()> {
    match obj.get("signatures") {
        None => Ok(()),
        Some(Value::Object(by_user))
            if by_user.values().all(|s| s.as_object().is_some_and(|m| m.values().all(Value::is_string))) =>
        {
            Ok(())
        }
        Some(_) => Err(MatrixError::bad_json(format!("{what}.signatures must map user ids to key ids to strings"))),
    }
}

/// Check a one-time or fallback key map and flatten it to (algorithm, key id, JSON).
fn parse_key_map(keys: &Map<String, Value>, what: &str) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::with_capacity(keys.len());
    for (id, key) in keys {
        let (alg, key_id) = split_key_id(id)?;
        match key {
            Value::String(s) if !s.is_empty() => {}
            Value::Object(o) if o.get("key").is_some_and(Value::is_string) => check_signatures(o, what)?,
            _ => {
                return Err(MatrixError::bad_json(format!("{what} '{id}' must be a key string or a signed key object")))
            }
        }
        out.push((alg.to_owned(), key_id.to_owned(), to_json(key, MAX_ONE_TIME_KEY_BYTES, what)?));
    }
    Ok(out)
}

/// Check uploaded device keys: they must name the uploading user and device, list their
/// algorithms and carry at least one key.
fn check_device_keys(session: &Session, keys: &Map<String, Value>) -> Result<String> {
    if keys.get("user_id").and_then(Value::as_str) != Some(session.user_id.as_str()) {
        return Err(MatrixError::invalid_param("device_keys.user_id must be the user uploading them"));
    }
    if keys.get("device_id").and_then(Value::as_str) != Some(session.device_id.as_str()) {
        return Err(MatrixError::invalid_param("device_keys.device_id must be the device uploading them"));
    }
    let algorithms_ok =
        keys.get("algorithms").and_then(Value::as_array).is_some_and(|a| a.iter().all(Value::is_string));
    if !algorithms_ok {
        return Err(MatrixError::bad_json("device_keys.algorithms must be a list of strings"));
    }
    let Some(key_map) = keys.get("keys").and_then(Value::as_object).filter(|k| !k.is_empty()) else {
        return Err(MatrixError::bad_json("device_keys.keys must be a non-empty object"));
    };
    for (id, k) in key_map {
        split_key_id(id)?;
        if !k.is_string() {
            return Err(MatrixError::bad_json(format!("device_keys.keys.{id} must be a string")));
        }
    }
    check_signatures(keys, "device_keys")?;
    let mut stored = keys.clone();
    // `unsigned` is the server's to fill (display name), never part of the signed object.
    stored.remove("unsigned");
    to_json(&Value::Object(stored), MAX_KEY_OBJECT_BYTES, "device_keys")
}

impl E2ee {
    /// `POST /keys/upload`: returns the device's unclaimed one-time-key counts.
    pub async fn upload_keys(&self, session: &Session, body: UploadKeys) -> Result<BTreeMap<String, i64>> {
        let (user, device) = (session.user_id.as_str(), session.device_id.as_str());
        let device_keys = body.device_keys.as_ref().map(|k| check_device_keys(session, k)).transpose()?;
        if body.one_time_keys.len() > MAX_ONE_TIME_KEYS_PER_UPLOAD {
            return Err(MatrixError::TooLarge(format!(
                "at most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys per upload"
            )));
        }
        let one_time = parse_key_map(&body.one_time_keys, "one_time_keys")?;
        let mut fallback_map = body.unstable_fallback_keys;
        fallback_map.extend(body.fallback_keys);
        if fallback_map.len() > MAX_FALLBACK_KEYS_PER_UPLOAD {
            return Err(MatrixError::TooLarge(format!("at most {MAX_FALLBACK_KEYS_PER_UPLOAD} fallback keys")));
        }
        let fallback = parse_key_map(&fallback_map, "fallback_keys")?;

        // A one-time key id is used once: re-uploading it is fine, changing it is not.
        let mut new_keys = Vec::with_capacity(one_time.len());
        for (alg, id, json) in one_time {
            match self.store.e2e_one_time_key(user, device, &alg, &id).await? {
                Some(old) if old == json => {}
                Some(_) => {
                    return Err(MatrixError::invalid_param(format!(
                        "one-time key {alg}:{id} already exists with a different value"
                    )))
                }
                None => new_keys.push((alg, id, json)),
            }
        }
        let stored: i64 = self.key_counts(user, device).await?.one_time.values().sum();
        if stored + new_keys.len() as i64 > MAX_ONE_TIME_KEYS_PER_DEVICE {
            return Err(MatrixError::invalid_param(format!(
                "a device may keep at most {MAX_ONE_TIME_KEYS_PER_DEVICE} unclaimed one-time keys"
            )));
        }
        let keys_changed = match &device_keys {
            Some(new) => self.store.e2e_device_key(user, device).await?.as_deref() != Some(new.as_str()),
            None => false,
        };
        self.store.e2e_upload_keys(user, device, device_keys.as_deref(), &new_keys, &fallback).await?;
        self.forget_key_counts(user, device);
        if keys_changed {
            self.device_list_changed(user).await?;
        }
        Ok(self.key_counts(user, device).await?.one_time.clone())
    }

    /// `POST /keys/query`: device keys and cross-signing keys of the requested users (all
    /// devices for an empty list). Users of other servers are not reachable (no federation).
    pub async fn query_keys(&self, requester: &str, wanted: &BTreeMap<String, Vec<String>>) -> Result<Value> {
        if wanted.len() > MAX_QUERY_USERS {
            return Err(MatrixError::TooLarge(format!("at most {MAX_QUERY_USERS} users per query")));
        }
        let (mut device_keys, mut master, mut self_signing, mut user_signing) =
            (Map::new(), Map::new(), Map::new(), Map::new());
        for (user, devices) in wanted {
            if !self.accounts.is_local(user) {
                continue;
            }
            let signatures = self.store.e2e_signatures_on(user).await?;
            // The user's own signatures (self-signing key, devices on the master key) are for
            // everyone; another user's (user-signing key) only for that user.
            let visible_sigs = |target_key: &str| -> Vec<(String, String, String)> {
                signatures
                    .iter()
                    .filter(|(signer, _, _, tk, _)| tk == target_key && (signer == user || signer == requester))
                    .map(|(signer, key, _, _, sig)| (signer.clone(), key.clone(), sig.clone()))
                    .collect()
            };
            let names: HashMap<String, Option<String>> =
                self.accounts.devices(user).await?.into_iter().map(|d| (d.device_id, d.display_name)).collect();
            let mut per_device = Map::new();
            for (device_id, json) in self.store.e2e_device_keys(user).await? {
                if !devices.is_empty() && !devices.contains(&device_id) {
                    continue;
                }
                let Some(name) = names.get(&device_id) else { continue };
                let mut obj: Value = serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?;
                add_signatures(&mut obj, visible_sigs(&device_id));
                obj["unsigned"] = json!({});
                if let Some(n) = name {
                    obj["unsigned"]["device_display_name"] = json!(n);
                }
                per_device.insert(device_id, obj);
            }
            device_keys.insert(user.clone(), Value::Object(per_device));
            for (key_type, json) in self.store.e2e_cross_signing_keys(user).await? {
                let mut obj: Value = serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?;
                match key_type.as_str() {
                    "master" => {
                        if let Some(pubkey) = super::cross_signing::public_key(&obj) {
                            add_signatures(&mut obj, visible_sigs(&pubkey));
                        }
                        master.insert(user.clone(), obj);
                    }
                    "self_signing" => {
                        self_signing.insert(user.clone(), obj);
                    }
                    "user_signing" if user == requester => {
                        user_signing.insert(user.clone(), obj);
                    }
                    _ => {}
                }
            }
        }
        Ok(json!({
            "device_keys": device_keys,
            "master_keys": master,
            "self_signing_keys": self_signing,
            "user_signing_keys": user_signing,
            "failures": {},
        }))
    }

    /// `POST /keys/claim`: one one-time key per requested device, else its fallback key.
    /// Devices with neither are left out (the spec's answer for "no key").
    pub async fn claim_keys(&self, wanted: &BTreeMap<String, BTreeMap<String, String>>) -> Result<Value> {
        let total: usize = wanted.values().map(BTreeMap::len).sum();
        if total > MAX_CLAIM_DEVICES {
            return Err(MatrixError::TooLarge(format!("at most {MAX_CLAIM_DEVICES} devices per claim")));
        }
        let mut out = Map::new();
        for (user, devices) in wanted {
            if !self.accounts.is_local(user) {
                continue;
            }
            let mut per_device = Map::new();
            for (device, algorithm) in devices {
                if algorithm.is_empty() || algorithm.len() > MAX_ID_BYTES {
                    return Err(MatrixError::invalid_param("invalid key algorithm"));
                }
                if let Some((key_id, json)) = self.store.e2e_claim_key(user, device, algorithm).await? {
                    self.forget_key_counts(user, device);
                    let key: Value = serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?;
                    per_device.insert(device.clone(), json!({ key_id: key }));
                }
            }
            if !per_device.is_empty() {
                out.insert(user.clone(), Value::Object(per_device));
            }
        }
        Ok(json!({"one_time_keys": out, "failures": {}}))
    }
}

/// Merge stored signatures into a signed object's `signatures`.
fn add_signatures(obj: &mut Value, sigs: Vec<(String, String, String)>) {
    if sigs.is_empty() {
        return;
    }
    if !obj.get("signatures").is_some_and(Value::is_object) {
        obj["signatures"] = json!({});
    }
    for (signer, key, sig) in sigs {
        if !obj["signatures"].get(&signer).is_some_and(Value::is_object) {
            obj["signatures"][&signer] = json!({});
        }
        obj["signatures"][&signer][&key] = Value::String(sig);
    }
}
