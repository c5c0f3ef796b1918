//! Accounts: user ids, passwords, devices and access tokens. Every login is a device, and the
//! device is what presence is tracked per.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use dashmap::DashMap;

use crate::e2ee::E2ee;
use crate::error::{MatrixError, Result};
use crate::peek::Peeks;
use crate::presence::PresenceEngine;
use crate::rooms::event::{now_ms, random_string};
use crate::store::{Store, UserRow};

/// Who made an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Session {
    pub user_id: String,
    pub device_id: String,
}

pub struct Accounts {
    store: Store,
    pub server_name: String,
    argon2: Argon2<'static>,
    /// Access token -> session: the tokens used or issued since start (each checked against
    /// the database once). An ended session's tokens are removed by name, as the database
    /// returns them: nothing here walks every token (a login costs the same with 50,000
    /// sessions as with one).
    tokens: DashMap<String, Session>,
    /// Counts every ending of tokens. A request that looked its token up in the database
    /// while a logout ended it must not leave it cached: see [`Accounts::authenticate`].
    token_endings: AtomicU64,
    /// Display name and avatar per user, for events that carry them (legacy `m.presence`).
    profiles: DashMap<String, (Option<String>, Option<String>)>,
    /// Users known to exist. Accounts are never removed (there is no deactivation), so a
    /// positive answer stays true; at most one entry per registered user.
    known: dashmap::DashSet<String>,
    /// What else ends with a session, attached once built (they are built on accounts).
    session_links: OnceLock<SessionLinks>,
}

/// The per-device state other services keep, which a logout ends.
pub struct SessionLinks {
    pub presence: Arc<PresenceEngine>,
    pub peeks: Arc<Peeks>,
    pub e2ee: Arc<E2ee>,
}

/// Which profile field a request changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    DisplayName,
    AvatarUrl,
}

/// Localpart grammar of user ids (spec: "User Identifiers").
pub(crate) fn valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
}

impl Accounts {
    pub(crate) fn new(store: Store, server_name: String, memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib.max(8), iterations.max(1), 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        Ok(Self {
            store,
            server_name,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            tokens: DashMap::new(),
            token_endings: AtomicU64::new(0),
            profiles: DashMap::new(),
            known: dashmap::DashSet::new(),
            session_links: OnceLock::new(),
        })
    }

    pub(crate) fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Check a requested username and build the user id (`M_INVALID_USERNAME` otherwise).
    pub(crate) fn user_id_for_registration(&self, username: &str) -> Result<String> {
        let localpart = username.strip_prefix('@').map(|u| u.split(':').next().unwrap_or_default()).unwrap_or(username);
        if !valid_localpart(localpart) {
            return Err(MatrixError::InvalidUsername("User ID may only contain a-z, 0-9, and . _ = - / +".into()));
        }
        let uid = self.user_id(localpart);
        if uid.len() > 255 {
            return Err(MatrixError::InvalidUsername("User ID is too long".into()));
        }
        Ok(uid)
    }

    pub(crate) fn is_local(&self, user_id: &str) -> bool {
        user_id.rsplit_once(':').map(|(_, s)| s == self.server_name).unwrap_or(false)
    }

    async fn hash(&self, password: &str) -> Result<String> {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2.hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| MatrixError::Internal(e.into()))?
        .map_err(|e| MatrixError::Internal(anyhow::anyhow!("hashing: {e}")))
    }

    async fn verify(&self, password: &str, hash: &str) -> bool {
        let argon2 = self.argon2.clone();
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).map(|h| argon2.verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// Create the account. Returns `M_USER_IN_USE` if it exists.
    pub(crate) async fn register(&self, user_id: &str, password: &str) -> Result<()> {
        let hash = self.hash(password).await?;
        if !self.store.insert_user(user_id, &hash, now_ms()).await? {
            return Err(MatrixError::UserInUse);
        }
        Ok(())
    }

    /// Whether `user_id` is a local account. Answered from memory after the first positive
    /// lookup, so `GET /presence/{userId}/status` reads no database per request (issue #13).
    pub(crate) async fn exists(&self, user_id: &str) -> Result<bool> {
        if self.known.contains(user_id) || self.profiles.contains_key(user_id) {
            return Ok(true);
        }
        let found = self.store.get_user(user_id).await?.is_some();
        if found {
            self.known.insert(user_id.to_owned());
        }
        Ok(found)
    }

    /// Start a session (a device) for a user: returns (device id, access token).
    pub(crate) async fn open_session(&self, user_id: &str, device_id: Option<String>) -> Result<Session> {
        let device_id = device_id.filter(|d| !d.is_empty()).unwrap_or_else(|| random_string(10).to_uppercase());
        if device_id.len() > 255 {
            return Err(MatrixError::invalid_param("device_id is too long"));
        }
        Ok(Session { user_id: user_id.to_owned(), device_id })
    }

    pub(crate) async fn issue_token(&self, session: &Session, display_name: Option<&str>) -> Result<String> {
        let token = format!("syt_{}", random_string(40));
        // Re-using a device id ends that device's previous sessions.
        let ended = self
            .store
            .create_device_with_token(&session.user_id, &session.device_id, display_name, &token, now_ms())
            .await?;
        self.forget_tokens(ended);
        self.tokens.insert(token.clone(), session.clone());
        Ok(token)
    }

    /// Tokens the database no longer has leave the cache (after they left the database).
    fn forget_tokens(&self, ended: Vec<String>) {
        if ended.is_empty() {
            // Nothing ended (a new device): lookups running now may keep what they cache.
            return;
        }
        self.token_endings.fetch_add(1, Ordering::SeqCst);
        for t in ended {
            self.tokens.remove(&t);
        }
    }

    /// Check a password login; `M_FORBIDDEN` for unknown users and wrong passwords alike.
    pub(crate) async fn check_password(&self, user_id: &str, password: &str) -> Result<()> {
        let user = self.store.get_user(user_id).await?;
        match user {
            Some(u) if self.verify(password, &u.password_hash).await => Ok(()),
            _ => Err(MatrixError::forbidden("Invalid username or password")),
        }
    }

    /// Resolve an access token (memory first, then the database).
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Session> {
        if let Some(s) = self.tokens.get(token) {
            return Ok(s.clone());
        }
        // Boxed: the query's future is large, and every request's handler future (which a
        // parked long-poll holds for its whole wait) would be sized by it (issue #13).
        let endings = self.token_endings.load(Ordering::SeqCst);
        match Box::pin(self.store.token_owner(token)).await? {
            Some((user_id, device_id)) => {
                let s = Session { user_id, device_id };
                self.tokens.insert(token.to_owned(), s.clone());
                // A logout may have ended this token after the lookup above read it, and
                // removed it from the cache before it was put there. Then the count moved:
                // take it out again (this request counts as made before the logout). If the
                // count had not moved yet, that logout's own removal comes after this insert.
                if self.token_endings.load(Ordering::SeqCst) != endings {
                    self.tokens.remove(token);
                }
                Ok(s)
            }
            None => Err(MatrixError::UnknownToken),
        }
    }

    /// Attach the services whose per-device state a logout ends (once, at start-up).
    pub(crate) fn link(&self, links: SessionLinks) {
        if self.session_links.set(links).is_err() {
            tracing::warn!("session links attached twice; keeping the first");
        }
    }

    /// Logout of one device: its tokens go, and so do its presence, peeks and device keys.
    pub(crate) async fn end_session(&self, session: &Session) -> Result<()> {
        self.delete_device(session).await?;
        let links = self
            .session_links
            .get()
            .ok_or_else(|| MatrixError::Internal(anyhow::anyhow!("accounts used before start-up finished")))?;
        links.presence.remove_device(session).await;
        links.peeks.end_device(session).await?;
        links.e2ee.device_removed(session).await?;
        Ok(())
    }

    /// `/logout/all`: every device of the user, then the calling one.
    pub(crate) async fn end_all_sessions(&self, session: &Session) -> Result<()> {
        for d in self.devices(&session.user_id).await? {
            self.end_session(&Session { user_id: session.user_id.clone(), device_id: d.device_id }).await?;
        }
        self.end_session(session).await
    }

    /// Remove a device and all its tokens.
    async fn delete_device(&self, session: &Session) -> Result<()> {
        let ended = self.store.delete_device(&session.user_id, &session.device_id).await?;
        self.forget_tokens(ended);
        Ok(())
    }

    /// Every device of the user (for `/logout/all` and `/devices`).
    pub(crate) async fn devices(&self, user_id: &str) -> Result<Vec<crate::store::DeviceRow>> {
        Ok(self.store.list_devices(user_id).await?)
    }

    /// (display name, avatar URL) of a user, cached.
    pub(crate) async fn profile(&self, user_id: &str) -> Result<(Option<String>, Option<String>)> {
        if let Some(p) = self.profiles.get(user_id) {
            return Ok(p.clone());
        }
        let p = self.store.get_user(user_id).await?.map(|u| (u.displayname, u.avatar_url)).unwrap_or_default();
        self.profiles.insert(user_id.to_owned(), p.clone());
        Ok(p)
    }

    /// The display names and avatars of many users, with one query for those not cached
    /// yet (an initial sync's `presence` section), in the order asked (no map built per
    /// `/sync`). Users without an account get `(None, None)`.
    pub(crate) async fn profiles(&self, user_ids: &[&str]) -> Result<Vec<(Option<String>, Option<String>)>> {
        let mut out: Vec<(Option<String>, Option<String>)> = Vec::with_capacity(user_ids.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, u) in user_ids.iter().enumerate() {
            match self.profiles.get(*u) {
                Some(p) => out.push(p.clone()),
                None => {
                    out.push((None, None));
                    missing.push(i);
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let names: Vec<String> = missing.iter().map(|&i| user_ids[i].to_owned()).collect();
        let found: HashMap<String, (Option<String>, Option<String>)> =
            self.store.get_profiles(&names).await?.into_iter().map(|(u, d, a)| (u, (d, a))).collect();
        for (i, name) in missing.into_iter().zip(names) {
            // As `profile` does: a user without an account is remembered as having none.
            let p = found.get(&name).cloned().unwrap_or_default();
            self.profiles.insert(name, p.clone());
            out[i] = p;
        }
        Ok(out)
    }

    /// A user's row (uncached), `None` if there is no such user.
    pub(crate) async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        Ok(self.store.get_user(user_id).await?)
    }

    /// Store one profile field and return the user as it is now (404 if there is no user).
    pub(crate) async fn set_profile_field(
        &self,
        user_id: &str,
        field: ProfileField,
        value: Option<&str>,
    ) -> Result<UserRow> {
        match field {
            ProfileField::DisplayName => self.store.set_displayname(user_id, value).await?,
            ProfileField::AvatarUrl => self.store.set_avatar_url(user_id, value).await?,
        }
        self.profiles.remove(user_id);
        self.user(user_id).await?.ok_or_else(|| MatrixError::not_found("no such user"))
    }
}
