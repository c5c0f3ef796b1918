//! Presence lists across servers (issue #15, "presence-list grants"; seed 004's "request
//! permission to add a user to presence list" and "allow/deny a request to add to a presence
//! list"), with the EDUs of the old r0 server-server spec, content
//! `{"observer_user": "@o:A", "observed_user": "@t:B"}`:
//!
//! - `m.presence_invite`, observer's server -> observed's server: the observer asks.
//! - `m.presence_accept`, observed's server -> observer's server: the observed user agreed (or
//!   their server accepted on its own, reverse subscription).
//! - `m.presence_deny`, observed's server -> observer's server: refused, or an accepted entry
//!   revoked.
//! - `org.matrix.msc3032.presence_drop`, observer's server -> observed's server: the observer
//!   took the user off their list (the r0 spec had no EDU for it; `m.presence_deny` is the
//!   observed side's word, so ours is a separate unstable type).
//!
//! Both servers keep the (observer, observed) entry in their `presence_list`; each decides only
//! for its own users (the observed user's server accepts, auto-accepts and revokes; the
//! observer's server drops). With the entry accepted on both sides, `PresenceAccess` counts the
//! grant on both: the observed side sends the observed user's `m.presence` EDUs to the
//! observer's server, and the observer's server keeps them.
//!
//! Incoming EDUs are taken only from the server of the user they speak for and about a user of
//! this server; anything else is ignored (debug log), as are ids over 255 bytes.
use std::sync::Arc;

use serde_json::{json, Value};

use super::federated::PresenceFederation;
use super::lists::{ListEntry, PresenceLists};
use crate::account_data::{AccountData, Scope};
use crate::accounts::Accounts;
use crate::error::{MatrixError, Result};
use crate::federation::Federation;

pub const PRESENCE_INVITE: &str = "m.presence_invite";
pub const PRESENCE_ACCEPT: &str = "m.presence_accept";
pub const PRESENCE_DENY: &str = "m.presence_deny";
pub const PRESENCE_DROP: &str = "org.matrix.msc3032.presence_drop";

/// Global account data through which a target learns of pending requests in `/sync`.
pub const PRESENCE_REQUESTS_ACCOUNT_DATA: &str = "org.matrix.msc3032.presence_requests";

/// At most this many requests are listed in the account data (oldest first); `count` says how
/// many are pending in all, and `…/presence/requests/{userId}` lists every one.
pub const MAX_LISTED_REQUESTS: usize = 100;

/// Pending requests a user may hold; a remote invite past it is ignored (a server cannot fill
/// a user's request list without end).
pub const MAX_PENDING_REQUESTS: usize = 1000;

/// Longest user id taken from an EDU (the spec's limit).
const MAX_USER_ID_BYTES: usize = 255;

pub struct ListFederation {
    lists: Arc<PresenceLists>,
    account_data: Arc<AccountData>,
    accounts: Arc<Accounts>,
    federation: Arc<Federation>,
    presence: Arc<PresenceFederation>,
}

impl ListFederation {
    pub fn new(
        lists: Arc<PresenceLists>,
        account_data: Arc<AccountData>,
        accounts: Arc<Accounts>,
        federation: Arc<Federation>,
        presence: Arc<PresenceFederation>,
    ) -> Arc<Self> {
        let this = Arc::new(Self { lists, account_data, accounts, federation, presence });
        // List EDUs wait in the outgoing queue's memory: a restart of either side can lose
        // them. When a server is back or speaks after a silence, what it should know is sent again.
        let weak = Arc::downgrade(&this);
        let hook: super::federated::PeerHook = Arc::new(move |server: &str| {
            if let Some(this) = weak.upgrade() {
                this.resend_to(server);
            }
        });
        this.federation.on_peer_back(hook.clone());
        this.presence.on_silence_ended(hook);
        this
    }

    /// Send `server` again what it should know of our side: our users' pending requests to its
    /// users (`m.presence_invite`) and the grants our users gave its users (`m.presence_accept`).
    /// Both are idempotent at the other end.
    pub fn resend_to(&self, server: &str) {
        for (owner, target, entry) in self.lists.entries_with_server(server) {
            match (self.is_local(&owner), entry) {
                (true, ListEntry::Pending) => self.send(&target, PRESENCE_INVITE, &owner, &target),
                (false, ListEntry::Accepted) => self.send(&owner, PRESENCE_ACCEPT, &owner, &target),
                _ => {}
            }
        }
    }

    /// Whether users of other servers can be put on a list (federation on).
    pub fn remote_enabled(&self) -> bool {
        self.federation.enabled()
    }

    pub fn is_local(&self, user_id: &str) -> bool {
        self.lists.is_local(user_id)
    }

    /// Keep a local target's `org.matrix.msc3032.presence_requests` account data equal to their
    /// pending requests, so a request (and its end) reaches the target's `/sync` and wakes its
    /// long-poll. Written only when it changes; nothing for a remote user.
    pub async fn announce_requests(&self, target: &str) -> Result<()> {
        if !self.is_local(target) {
            return Ok(());
        }
        let pending = self.lists.pending_requests(target);
        let listed: Vec<Value> = pending.iter().take(MAX_LISTED_REQUESTS).map(|u| json!({"user_id": u})).collect();
        let content = json!({"requests": listed, "count": pending.len()});
        let current = self.account_data.get(target, Scope::Global, PRESENCE_REQUESTS_ACCOUNT_DATA).await?;
        let unchanged = match &current {
            Some(c) => *c == content,
            None => pending.is_empty(),
        };
        if !unchanged {
            self.account_data.set(target, Scope::Global, PRESENCE_REQUESTS_ACCOUNT_DATA, &content).await?;
        }
        Ok(())
    }

    /// Local `owner` invites `target` (the caller checked a local target exists). A remote
    /// target's server is asked with `m.presence_invite` while the entry is pending (again on
    /// a repeated invite, so a lost request can be renewed).
    pub async fn invite(&self, owner: &str, target: &str) -> Result<()> {
        if !self.is_local(target) && !self.remote_enabled() {
            return Err(MatrixError::not_found(format!("Unknown user {target}")));
        }
        let entry = self.lists.invite(owner, target).await?;
        if self.is_local(target) {
            self.announce_requests(target).await?;
        } else if entry == ListEntry::Pending {
            self.send(target, PRESENCE_INVITE, owner, target);
        }
        Ok(())
    }

    /// Local `owner` drops `target`; a remote target's server is told.
    pub async fn drop_entry(&self, owner: &str, target: &str) -> Result<()> {
        let existed = self.lists.drop_entry(owner, target).await?;
        if self.is_local(target) {
            self.announce_requests(target).await?;
        } else if existed {
            self.send(target, PRESENCE_DROP, owner, target);
        }
        Ok(())
    }

    /// Local `target` accepts `owner`'s request.
    pub async fn accept(&self, target: &str, owner: &str) -> Result<()> {
        let granted = self.lists.accept(target, owner).await?;
        self.announce_requests(target).await?;
        // Accepting may also accept the owner's pending reverse request (seed 004).
        self.announce_requests(owner).await?;
        self.granted(&granted);
        Ok(())
    }

    /// Local `target` refuses `owner`'s request or revokes the entry; a remote owner's server
    /// is told.
    pub async fn reject(&self, target: &str, owner: &str) -> Result<()> {
        self.lists.reject(target, owner).await?;
        self.announce_requests(target).await?;
        if !self.is_local(owner) {
            self.send(owner, PRESENCE_DENY, owner, target);
        }
        Ok(())
    }

    /// Entries accepted here: a remote observer's server learns it (`m.presence_accept`) and
    /// gets the observed user's current presence with the next flush, not only their next change.
    fn granted(&self, pairs: &[(String, String)]) {
        for (observer, observed) in pairs {
            if !self.is_local(observer) {
                self.send(observer, PRESENCE_ACCEPT, observer, observed);
                self.presence.grant_added(observed);
            }
        }
    }

    /// Send `edu_type` about (observer, observed) to the server of `to_user`.
    fn send(&self, to_user: &str, edu_type: &str, observer: &str, observed: &str) {
        let Some(server) = server_of(to_user) else { return };
        let content = json!({"observer_user": observer, "observed_user": observed});
        self.federation.send_edu(server, edu_type, content);
    }

    /// One of the four EDUs from `origin`. Returns why it was ignored, if it was.
    pub async fn receive(&self, origin: &str, edu_type: &str, content: &Value) -> std::result::Result<(), String> {
        let user = |key: &str| -> std::result::Result<String, String> {
            let u = content.get(key).and_then(Value::as_str).ok_or(format!("no {key}"))?;
            if u.len() > MAX_USER_ID_BYTES {
                return Err(format!("{key} too long"));
            }
            ruma::UserId::parse(u).map_err(|e| format!("bad {key}: {e}"))?;
            Ok(u.to_owned())
        };
        let (observer, observed) = (user("observer_user")?, user("observed_user")?);
        if observer == observed {
            return Err("observer and observed are one user".into());
        }
        // Who speaks (whose server must be the origin) and who must be ours.
        let (speaker, local) = match edu_type {
            PRESENCE_INVITE | PRESENCE_DROP => (&observer, &observed),
            _ => (&observed, &observer),
        };
        if server_of(speaker) != Some(origin) {
            return Err(format!("{origin} may not speak for {speaker}"));
        }
        if !self.is_local(local) {
            return Err(format!("{local} is not a user of this server"));
        }
        let failed = |e: MatrixError| format!("{e}");
        match edu_type {
            PRESENCE_INVITE => {
                if !self.accounts.exists(&observed).await.map_err(failed)? {
                    // Refused, so the observer's server does not keep the request forever.
                    self.send(&observer, PRESENCE_DENY, &observer, &observed);
                    return Err(format!("unknown user {observed}"));
                }
                if self.lists.entry(&observer, &observed).is_none()
                    && self.lists.pending_requests(&observed).len() >= MAX_PENDING_REQUESTS
                {
                    return Err(format!("{observed} has {MAX_PENDING_REQUESTS} pending requests"));
                }
                let entry = self.lists.invite(&observer, &observed).await.map_err(failed)?;
                self.announce_requests(&observed).await.map_err(failed)?;
                if entry == ListEntry::Accepted {
                    // Reverse subscription, or an entry the observer's server asks about again.
                    self.granted(&[(observer, observed)]);
                }
            }
            PRESENCE_ACCEPT => {
                let granted = self.lists.accept(&observed, &observer).await.map_err(failed)?;
                // A reverse request of the remote user may have been accepted with it.
                self.announce_requests(&observer).await.map_err(failed)?;
                self.granted(&granted);
            }
            PRESENCE_DENY => {
                self.lists.drop_entry(&observer, &observed).await.map_err(failed)?;
            }
            PRESENCE_DROP => {
                self.lists.drop_entry(&observer, &observed).await.map_err(failed)?;
                self.announce_requests(&observed).await.map_err(failed)?;
            }
            other => return Err(format!("not a presence-list EDU: {other}")),
        }
        Ok(())
    }
}

fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}
