//! Stored `/sync` filters (spec "Filtering": `POST/GET /user/{userId}/filter`): the one
//! owner of the `filters` table. Parsed filters are cached per (user, filter id); a stored
//! filter never changes, so the cache needs no invalidation, only a bound.
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use super::SyncFilter;
use crate::error::{MatrixError, Result};
use crate::store::Store;

/// Parsed filters kept in memory; past this the cache starts over (filters are cheap to
/// re-read, and most clients use one or two).
const MAX_CACHED_FILTERS: usize = 10_000;

pub struct Filters {
    store: Store,
    max_bytes: usize,
    max_per_user: usize,
    parsed: DashMap<(String, i64), Arc<SyncFilter>>,
    /// Inline filters (`/sync?filter={...}`) by their text: a client sends the same one on
    /// every long-poll, so it is checked and parsed once.
    inline: DashMap<Box<str>, Arc<SyncFilter>>,
}

impl Filters {
    pub fn new(store: Store, max_bytes: usize, max_per_user: usize) -> Self {
        Self { store, max_bytes, max_per_user, parsed: DashMap::new(), inline: DashMap::new() }
    }

    /// The inline filter whose query-string text is `raw`, parsed (by `parse`, from the
    /// request's own reading of it) only the first time that text is seen.
    pub fn inline(&self, raw: &str, parse: impl FnOnce() -> Result<Value>) -> Result<Arc<SyncFilter>> {
        if let Some(f) = self.inline.get(raw) {
            return Ok(f.clone());
        }
        let filter = Arc::new(self.parse_inline(parse()?)?);
        if raw.len() <= self.max_bytes {
            if self.inline.len() >= MAX_CACHED_FILTERS {
                self.inline.clear();
            }
            self.inline.insert(raw.into(), filter.clone());
        }
        Ok(filter)
    }

    /// The inline filter whose text is `raw` if it was parsed before (`None`: not seen, or
    /// the cache started over).
    pub fn cached_inline(&self, raw: &str) -> Option<Arc<SyncFilter>> {
        self.inline.get(raw).map(|f| f.clone())
    }

    /// Parse and check a filter given inline in `/sync?filter={...}`.
    pub fn parse_inline(&self, body: Value) -> Result<SyncFilter> {
        if body.to_string().len() > self.max_bytes {
            return Err(MatrixError::TooLarge(format!("filters are limited to {} bytes", self.max_bytes)));
        }
        let filter: SyncFilter = serde_json::from_value(body).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        filter.validate().map_err(MatrixError::bad_json)?;
        Ok(filter)
    }

    /// Store a filter for `user_id`; returns its id.
    pub async fn create(&self, user_id: &str, body: &Value) -> Result<i64> {
        let json = body.to_string();
        if json.len() > self.max_bytes {
            return Err(MatrixError::TooLarge(format!("filters are limited to {} bytes", self.max_bytes)));
        }
        if self.store.count_filters(user_id).await? >= self.max_per_user as i64 {
            return Err(MatrixError::ResourceLimitExceeded(format!(
                "a user may store at most {} filters",
                self.max_per_user
            )));
        }
        serde_json::from_value::<SyncFilter>(body.clone())
            .map_err(|e| MatrixError::bad_json(format!("invalid filter: {e}")))?
            .validate()
            .map_err(MatrixError::bad_json)?;
        Ok(self.store.insert_filter(user_id, &json).await?)
    }

    /// The stored JSON of a filter, as the client uploaded it; `None` if there is none.
    pub async fn get(&self, user_id: &str, filter_id: &str) -> Result<Option<Value>> {
        let Ok(id) = filter_id.parse::<i64>() else { return Ok(None) };
        match self.store.get_filter(user_id, id).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(|e| MatrixError::Internal(e.into()))?)),
            None => Ok(None),
        }
    }

    /// The parsed filter `/sync?filter=<id>` names (400 `M_INVALID_PARAM` if unknown).
    pub async fn load(&self, user_id: &str, filter_id: &str) -> Result<Arc<SyncFilter>> {
        let id: i64 = filter_id.parse().map_err(|_| MatrixError::invalid_param("unknown filter id"))?;
        let key = (user_id.to_owned(), id);
        if let Some(f) = self.parsed.get(&key) {
            return Ok(f.clone());
        }
        let json =
            self.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::invalid_param("unknown filter id"))?;
        let filter: Arc<SyncFilter> =
            Arc::new(serde_json::from_str(&json).map_err(|e| MatrixError::bad_json(e.to_string()))?);
        if self.parsed.len() >= MAX_CACHED_FILTERS {
            self.parsed.clear();
        }
        self.parsed.insert(key, filter.clone());
        Ok(filter)
    }
}
