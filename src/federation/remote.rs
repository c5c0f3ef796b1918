//! The first client-facing uses of federation: another server's user profiles and room
//! aliases, fetched with signed requests (spec "Querying for information").
use std::time::{Duration, Instant};

use ruma::{RoomAliasId, UserId};
use serde_json::{json, Value};

use super::client::enc;
use super::Federation;
use crate::error::{MatrixError, Result};

impl Federation {
    fn is_remote(&self, server: &ruma::ServerName) -> bool {
        self.enabled() && server != self.server_name
    }

    /// `GET /profile/{userId}` (and `/displayname`, `/avatar_url` with `field`) for a user of
    /// another server, over `GET /_matrix/federation/v1/query/profile`, cached for
    /// `profile_cache_ms`. `Ok(None)`: a local user, or federation is off (answer locally).
    pub async fn remote_profile(&self, user_id: &str, field: Option<&str>) -> Result<Option<Value>> {
        let Ok(user) = <&UserId>::try_from(user_id) else { return Ok(None) };
        if !self.is_remote(user.server_name()) {
            return Ok(None);
        }
        let cache_key = (user_id.to_owned(), field.unwrap_or_default().to_owned());
        if let Some(hit) = self.profiles.get(&cache_key).filter(|h| h.1 > Instant::now()) {
            return Ok(Some(hit.0.clone()));
        }
        let mut path = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(user_id));
        if let Some(f) = field {
            path.push_str(&format!("&field={}", enc(f)));
        }
        let resp = self.get(user.server_name(), &path).await.map_err(|e| {
            tracing::info!(%user_id, error = %format!("{e:#}"), "remote profile query failed");
            MatrixError::not_found("Profile not found (the user's server could not be reached)")
        })?;
        if !resp.status.is_success() {
            return Err(MatrixError::not_found("Profile not found"));
        }
        let Value::Object(mut body) = resp.body else {
            return Err(MatrixError::not_found("Profile not found (bad answer from the user's server)"));
        };
        // Only the standard fields, only strings (the remote answer is not trusted further).
        body.retain(|k, v| v.is_string() && ["displayname", "avatar_url"].contains(&k.as_str()));
        if let Some(f) = field {
            body.retain(|k, _| k == f);
        }
        let body = Value::Object(body);
        if self.profiles.len() > 10_000 {
            self.profiles.clear();
        }
        let ttl = Duration::from_millis(self.config.profile_cache_ms);
        self.profiles.insert(cache_key, (body.clone(), Instant::now() + ttl));
        Ok(Some(body))
    }

    /// `GET /directory/room/{roomAlias}` for an alias of another server, over
    /// `GET /_matrix/federation/v1/query/directory`. `Ok(None)`: a local alias, or
    /// federation is off.
    pub async fn remote_alias(&self, alias: &str) -> Result<Option<Value>> {
        let Ok(alias) = <&RoomAliasId>::try_from(alias) else { return Ok(None) };
        if !self.is_remote(alias.server_name()) {
            return Ok(None);
        }
        let path = format!("/_matrix/federation/v1/query/directory?room_alias={}", enc(alias.as_str()));
        let resp = self.get(alias.server_name(), &path).await.map_err(|e| {
            tracing::info!(%alias, error = %format!("{e:#}"), "remote alias query failed");
            MatrixError::not_found("Room alias not found (its server could not be reached)")
        })?;
        if !resp.status.is_success() {
            return Err(MatrixError::not_found("Room alias not found"));
        }
        let room_id =
            resp.body.get("room_id").and_then(Value::as_str).filter(|r| <&ruma::RoomId>::try_from(*r).is_ok());
        let Some(room_id) = room_id else {
            return Err(MatrixError::not_found("Room alias not found (bad answer from its server)"));
        };
        let servers: Vec<&str> = resp
            .body
            .get("servers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| <&ruma::ServerName>::try_from(*s).is_ok())
                    .take(20)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(json!({"room_id": room_id, "servers": servers})))
    }
}
