//! Stored `/sync` filters (spec "Filtering": `POST/GET /user/{userId}/filter`): the one
//! owner of the `filters` table. Parsed filters are cached per (user, filter id); a stored
//! filter never changes, so the cache needs no invalidation, only a bound.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

use super::SyncFilter;
use crate::error::{MatrixError, Result};
use crate::store::Store;

/// Parsed filters kept in memory; past this the cache starts over (filters are cheap to
/// re-read, and most clients use one or two).
const MAX_CACHED_FILTERS: usize = 10_000;

/// The text the inline-filter caches may hold in all; past it they start over. Without it
/// 10,000 different inline filters of `max_filter_bytes` (32 KiB) would hold ~320 MB, each
/// one costing a client one request.
const MAX_INLINE_CACHE_BYTES: usize = 4 << 20;

pub struct Filters {
    store: Store,
    max_bytes: usize,
    max_per_user: usize,
    parsed: DashMap<(String, i64), Arc<SyncFilter>>,
    /// Inline filters (`/sync?filter={...}`) by their text: a client sends the same one on
    /// every long-poll, so it is checked and parsed once.
    inline: DashMap<Box<str>, Arc<SyncFilter>>,
    /// The same filters by their text as it stands in the query, still percent-encoded:
    /// found without decoding it (`cached_inline_encoded`).
    inline_encoded: DashMap<Box<str>, Arc<SyncFilter>>,
    /// The bytes of text both inline caches hold (keys), for their bound.
    inline_bytes: AtomicUsize,
}

impl Filters {
    pub fn new(store: Store, max_bytes: usize, max_per_user: usize) -> Self {
        Self {
            store,
            max_bytes,
            max_per_user,
            parsed: DashMap::new(),
            inline: DashMap::new(),
            inline_encoded: DashMap::new(),
            inline_bytes: AtomicUsize::new(0),
        }
    }

    /// The inline filter whose query-string text is `raw`, parsed (by `parse`, from the
    /// request's own reading of it) only the first time that text is seen.
    pub fn inline(&self, raw: &str, parse: impl FnOnce() -> Result<Value>) -> Result<Arc<SyncFilter>> {
        if let Some(f) = self.inline.get(raw) {
            return Ok(f.clone());
        }
        let filter = Arc::new(self.parse_inline(parse()?)?);
        if raw.len() <= self.max_bytes {
            self.make_room(&self.inline, raw.len());
            self.inline.insert(raw.into(), filter.clone());
        }
        Ok(filter)
    }

    /// The inline filter whose text is `raw` if it was parsed before (`None`: not seen, or
    /// the cache started over).
    pub fn cached_inline(&self, raw: &str) -> Option<Arc<SyncFilter>> {
        self.inline.get(raw).map(|f| f.clone())
    }

    /// [`Self::cached_inline`] for the text as the query carries it (`encoded`, which
    /// `decode` decodes): found by the encoded text when this spelling was seen before,
    /// else by the decoded one, and then remembered by this spelling too.
    pub fn cached_inline_encoded<'a>(
        &self,
        encoded: &'a str,
        decode: impl FnOnce(&'a str) -> std::borrow::Cow<'a, str>,
    ) -> Option<Arc<SyncFilter>> {
        if let Some(f) = self.inline_encoded.get(encoded) {
            return Some(f.clone());
        }
        let filter = self.cached_inline(&decode(encoded))?;
        // Percent-encoding at most triples a text that is itself within `max_bytes`.
        if encoded.len() <= 3 * self.max_bytes {
            self.make_room(&self.inline_encoded, encoded.len());
            self.inline_encoded.insert(encoded.into(), filter.clone());
        }
        Some(filter)
    }

    /// Before `len` more bytes of text go into `cache`: start it over if it is full, by
    /// count or by the bytes both caches hold.
    fn make_room(&self, cache: &DashMap<Box<str>, Arc<SyncFilter>>, len: usize) {
        let bytes = self.inline_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if cache.len() >= MAX_CACHED_FILTERS || bytes > MAX_INLINE_CACHE_BYTES {
            self.inline.clear();
            self.inline_encoded.clear();
            self.inline_bytes.store(len, Ordering::Relaxed);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline caches hold at most `MAX_INLINE_CACHE_BYTES` of text: many large filters
    /// make them start over instead of growing with each new text.
    #[tokio::test]
    async fn the_inline_caches_are_bounded_by_their_bytes() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        let filters = Filters::new(store, 32_768, 100);
        // Valid filters of ~24 KB each, all different (100 long `not_senders`).
        let text = |i: usize| {
            let pad = "x".repeat(220);
            let senders: Vec<String> = (0..100).map(|j| format!(r#""@{i}_{j}{pad}:example.org""#)).collect();
            format!(r#"{{"presence":{{"not_senders":[{}]}}}}"#, senders.join(","))
        };
        let add = |i: usize| filters.inline(&text(i), || Ok(serde_json::from_str(&text(i)).unwrap())).unwrap();
        let first = add(0);
        assert!(Arc::ptr_eq(&filters.cached_inline(&text(0)).unwrap(), &first));
        let (mut fits, mut bytes) = (1, text(0).len());
        while bytes + text(fits).len() <= MAX_INLINE_CACHE_BYTES {
            bytes += text(fits).len();
            add(fits);
            fits += 1;
        }
        assert!(filters.cached_inline(&text(0)).is_some(), "{fits} filters fit");
        add(fits);
        assert!(filters.cached_inline(&text(0)).is_none(), "one more starts the cache over");
        assert!(filters.cached_inline(&text(fits)).is_some(), "the newest stays");
        assert!(filters.inline_bytes.load(Ordering::Relaxed) <= MAX_INLINE_CACHE_BYTES);
    }
}
