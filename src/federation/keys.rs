//! Server keys (spec "Retrieving server keys"): our own signed key response, and other
//! servers' keys fetched directly or through a notary, verified, and cached (memory and
//! database) until their `valid_until_ts`.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use http::Method;
use ruma::api::federation::discovery::ServerSigningKeys;
use ruma::serde::Base64;
use ruma::signatures::PublicKeySet;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName};
use serde_json::{json, Value};

use super::data::StoredKey;
use super::Federation;
use crate::rooms::event::now_ms;

/// A server asked for keys it does not have is not asked again for this long.
const REFETCH_BACKOFF: Duration = Duration::from_secs(30);
/// Most servers in one `POST /_matrix/key/v2/query`.
pub const MAX_QUERY_SERVERS: usize = 100;

/// Verified keys of one server: key id -> public key, valid until `valid_until_ts`.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    pub keys: PublicKeySet,
    pub valid_until_ts: i64,
}

fn to_canonical(v: &Value) -> anyhow::Result<CanonicalJsonObject> {
    match serde_json::from_value::<CanonicalJsonValue>(v.clone())? {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => anyhow::bail!("not a JSON object"),
    }
}

/// Check that `obj` carries a valid signature of `entity` made with one of `keys` (other
/// entities' signatures are ignored).
pub fn verify_signed_by(obj: &CanonicalJsonObject, entity: &str, keys: &PublicKeySet) -> anyhow::Result<()> {
    let mut obj = obj.clone();
    let Some(CanonicalJsonValue::Object(sigs)) = obj.get_mut("signatures") else {
        anyhow::bail!("no signatures");
    };
    sigs.retain(|k, _| k == entity);
    let map = BTreeMap::from([(entity.to_owned(), keys.clone())]);
    ruma::signatures::verify_json(&map, &obj).map_err(|e| anyhow::anyhow!("signature of {entity}: {e}"))
}

/// Parse a key response for `server` and check its self-signature. Returns the parsed keys
/// (current and old) and the canonical object.
pub fn verify_key_response(server: &ServerName, v: &Value) -> anyhow::Result<(ServerSigningKeys, CanonicalJsonObject)> {
    let parsed: ServerSigningKeys = serde_json::from_value(v.clone()).context("malformed key response")?;
    anyhow::ensure!(parsed.server_name == server, "key response names {} not {server}", parsed.server_name);
    let current: PublicKeySet =
        parsed.verify_keys.iter().map(|(id, k)| (id.to_string(), Base64::new(k.key.as_bytes().to_vec()))).collect();
    anyhow::ensure!(!current.is_empty(), "no verify_keys");
    let obj = to_canonical(v)?;
    verify_signed_by(&obj, server.as_str(), &current)?;
    Ok((parsed, obj))
}

impl Federation {
    /// `GET /_matrix/key/v2/server`: our key, self-signed, valid for `key_validity_ms`.
    pub fn own_key_response(&self) -> anyhow::Result<Value> {
        anyhow::ensure!(self.enabled, "federation is disabled");
        let key = &self.key;
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.public_key());
        let body = json!({
            "server_name": self.server_name,
            "verify_keys": { format!("ed25519:{}", key.version()): { "key": public } },
            // No key rotation yet: one key for the server's lifetime.
            "old_verify_keys": {},
            "valid_until_ts": now_ms() + self.config.key_validity_ms.max(1_000),
        });
        self.sign_json(&body)
    }

    /// Add our signature to a JSON object (spec "Signing JSON").
    pub fn sign_json(&self, v: &Value) -> anyhow::Result<Value> {
        anyhow::ensure!(self.enabled, "federation is disabled");
        let key = &self.key;
        let mut obj = to_canonical(v)?;
        ruma::signatures::sign_json(self.server_name.as_str(), key, &mut obj)?;
        Ok(serde_json::to_value(obj)?)
    }

    /// Our own keys as a key set (for verifying what we signed).
    fn own_keys(&self) -> anyhow::Result<ServerKeys> {
        anyhow::ensure!(self.enabled, "federation is disabled");
        let key = &self.key;
        let keys = BTreeMap::from([(format!("ed25519:{}", key.version()), Base64::new(key.public_key().to_vec()))]);
        Ok(ServerKeys { keys, valid_until_ts: i64::MAX })
    }

    /// The verified keys of `server` valid now: from memory, the database, or fetched again
    /// when expired (directly, then through the trusted notaries).
    pub async fn server_keys(&self, server: &ServerName) -> anyhow::Result<ServerKeys> {
        if server == self.server_name {
            return self.own_keys();
        }
        let now = now_ms();
        if let Some(k) = self.key_cache.get(server.as_str()).filter(|k| k.valid_until_ts > now) {
            return Ok(k.clone());
        }
        if let Some(k) = self.stored_keys(server.as_str()).await?.filter(|k| k.valid_until_ts > now) {
            self.key_cache.insert(server.as_str().to_owned(), k.clone());
            return Ok(k);
        }
        self.fetch_keys(server).await
    }

    /// The public key `key_id` of `server`, refetching once when an unknown key is named
    /// (the server may have rotated its key).
    pub async fn server_key(&self, server: &ServerName, key_id: &str) -> anyhow::Result<PublicKeySet> {
        let keys = self.server_keys(server).await?;
        if keys.keys.contains_key(key_id) {
            return Ok(keys.keys);
        }
        let recently = self.refetched.get(server.as_str()).is_some_and(|t| t.elapsed() < REFETCH_BACKOFF);
        anyhow::ensure!(!recently, "unknown key {key_id} of {server}");
        self.refetched.insert(server.as_str().to_owned(), Instant::now());
        let keys = self.fetch_keys(server).await?;
        anyhow::ensure!(keys.keys.contains_key(key_id), "unknown key {key_id} of {server}");
        Ok(keys.keys)
    }

    async fn stored_keys(&self, server: &str) -> anyhow::Result<Option<ServerKeys>> {
        let Some((_, valid_until_ts)) = self.store.fed_key_response(server).await? else { return Ok(None) };
        let mut keys = PublicKeySet::new();
        for k in self.store.fed_keys(server).await? {
            if k.expired_ts.is_none() {
                let bytes =
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(k.public_key.trim_end_matches('='))?;
                keys.insert(k.key_id, Base64::new(bytes));
            }
        }
        Ok(Some(ServerKeys { keys, valid_until_ts }))
    }

    /// Fetch, verify and store `server`'s keys now.
    pub async fn fetch_keys(&self, server: &ServerName) -> anyhow::Result<ServerKeys> {
        anyhow::ensure!(self.peer_allowed(server.as_str()), "{server} is not an allowed peer");
        let mut errors = Vec::new();
        if self.config.key_fetch_direct {
            match self.fetch_direct(server).await {
                Ok(v) => return self.keep(server, &v).await,
                Err(e) => errors.push(format!("direct: {e:#}")),
            }
        }
        for notary in &self.config.trusted_key_servers {
            match self.fetch_via_notary(notary, server).await {
                Ok(v) => return self.keep(server, &v).await,
                Err(e) => errors.push(format!("notary {notary}: {e:#}")),
            }
        }
        anyhow::bail!("no valid keys for {server} ({})", errors.join("; "))
    }

    async fn fetch_direct(&self, server: &ServerName) -> anyhow::Result<Value> {
        let resp = self.send(server, Method::GET, "/_matrix/key/v2/server", None, false).await?;
        anyhow::ensure!(resp.status.is_success(), "HTTP {}", resp.status);
        verify_key_response(server, &resp.body)?;
        Ok(resp.body)
    }

    /// `POST /_matrix/key/v2/query` on `notary`: the response must be signed by `server`
    /// itself and, unless the notary is `server`, by the notary.
    async fn fetch_via_notary(&self, notary: &str, server: &ServerName) -> anyhow::Result<Value> {
        let notary = <&ServerName>::try_from(notary).context("bad notary name")?;
        let body = json!({"server_keys": {server.as_str(): {}}});
        let resp = self.send(notary, Method::POST, "/_matrix/key/v2/query", Some(&body), true).await?;
        anyhow::ensure!(resp.status.is_success(), "HTTP {}", resp.status);
        let list = resp.body.get("server_keys").and_then(Value::as_array).context("no server_keys")?;
        let now = now_ms();
        for doc in list {
            if doc.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
                continue;
            }
            let (parsed, obj) = verify_key_response(server, doc)?;
            if notary != server {
                let notary_keys = Box::pin(self.server_keys(notary)).await?;
                verify_signed_by(&obj, notary.as_str(), &notary_keys.keys)?;
            }
            if u64::from(parsed.valid_until_ts.get()) > now as u64 {
                let mut doc = doc.clone();
                // Keep only the origin's own signature: what we serve again is what it signed.
                if let Some(sigs) = doc.get_mut("signatures").and_then(Value::as_object_mut) {
                    sigs.retain(|k, _| k == server.as_str());
                }
                return Ok(doc);
            }
        }
        anyhow::bail!("the notary has no current keys of {server}")
    }

    async fn keep(&self, server: &ServerName, v: &Value) -> anyhow::Result<ServerKeys> {
        let (parsed, _) = verify_key_response(server, v)?;
        let valid_until_ts = i64::try_from(u64::from(parsed.valid_until_ts.get())).unwrap_or(i64::MAX);
        let now = now_ms();
        anyhow::ensure!(valid_until_ts > now, "{server} answered keys that expired already");
        let b64 = |b: &Base64| base64::engine::general_purpose::STANDARD_NO_PAD.encode(b.as_bytes());
        let mut rows: Vec<StoredKey> = parsed
            .verify_keys
            .iter()
            .map(|(id, k)| StoredKey {
                key_id: id.to_string(),
                public_key: b64(&k.key),
                valid_until_ts,
                expired_ts: None,
            })
            .collect();
        rows.extend(parsed.old_verify_keys.iter().map(|(id, k)| {
            let expired = i64::try_from(u64::from(k.expired_ts.get())).unwrap_or(0);
            StoredKey {
                key_id: id.to_string(),
                public_key: b64(&k.key),
                valid_until_ts: expired,
                expired_ts: Some(expired),
            }
        }));
        self.store.fed_put_keys(server.as_str(), &v.to_string(), valid_until_ts, now, &rows).await?;
        let keys: PublicKeySet =
            parsed.verify_keys.iter().map(|(id, k)| (id.to_string(), Base64::new(k.key.as_bytes().to_vec()))).collect();
        let keys = ServerKeys { keys, valid_until_ts };
        self.key_cache.insert(server.as_str().to_owned(), keys.clone());
        Ok(keys)
    }

    /// Notary answer for one server: its latest verified key response, counter-signed by us
    /// (`None` when it cannot be had). Our own response is answered fresh.
    pub async fn notary_response(&self, server: &ServerName) -> Option<Value> {
        if server == self.server_name {
            return self.own_key_response().ok();
        }
        if let Err(e) = self.server_keys(server).await {
            tracing::debug!(%server, error = %e, "notary: no keys");
            return None;
        }
        let (doc, _) = self.store.fed_key_response(server.as_str()).await.ok()??;
        let doc: Value = serde_json::from_str(&doc).ok()?;
        self.sign_json(&doc).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_self_signature_is_refused() {
        let key = super::super::signing_key::parse_key_line("ed25519 a_1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .unwrap();
        let other =
            super::super::signing_key::parse_key_line("ed25519 a_1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .unwrap();
        let pk = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.public_key());
        let body = json!({
            "server_name": "a.test", "verify_keys": {"ed25519:a_1": {"key": pk}},
            "old_verify_keys": {}, "valid_until_ts": 4_000_000_000_000u64,
        });
        let sign = |k: &ruma::signatures::Ed25519KeyPair| {
            let mut obj = to_canonical(&body).unwrap();
            ruma::signatures::sign_json("a.test", k, &mut obj).unwrap();
            serde_json::to_value(obj).unwrap()
        };
        let name = <&ServerName>::try_from("a.test").unwrap();
        assert!(verify_key_response(name, &sign(&key)).is_ok());
        assert!(verify_key_response(name, &sign(&other)).is_err(), "signed by another key");
        let mut tampered = sign(&key);
        tampered["valid_until_ts"] = json!(4_000_000_000_001u64);
        assert!(verify_key_response(name, &tampered).is_err(), "changed after signing");
        let other_name = <&ServerName>::try_from("b.test").unwrap();
        assert!(verify_key_response(other_name, &sign(&key)).is_err(), "names another server");
    }
}
