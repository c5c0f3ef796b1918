//! Presence lists (seeds 001/004), mapped onto the one permission model of `access`.
//!
//! An owner invites a target onto their list; the entry is `pending` until the target
//! accepts (seed 001: "the user being added must be invited by the list owner who must accept
//! the invitation"). An accepted entry lets the owner see the target's presence everywhere
//! `PresenceAccess` decides (it reads the grants here). Seed 004 lets the server accept on its own
//! "when a reverse subscription already exists": a request is accepted automatically whenever
//! the target already follows the owner, either when it is made or when that reverse entry
//! is accepted later.
//!
//! The whole table is held in memory (entries are few and read on every presence decision);
//! changes are written through to the database before the index changes, one at a time.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{MatrixError, Result};
use crate::ground::{Notifier, StreamHub};
use crate::rooms::now_ms;
use crate::store::{PresenceListRow, Store};

const PENDING: &str = "pending";
const ACCEPTED: &str = "accepted";

/// Where one (owner, target) entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListEntry {
    /// Invited; the target has not answered yet. Grants nothing.
    Pending,
    /// The target agreed: the owner sees their presence.
    Accepted,
}

#[derive(Default)]
struct Index {
    /// owner -> accepted targets, each with the stream position it was granted at (0 for
    /// grants older than this process: every sync token of this process is past them).
    following: HashMap<String, HashMap<String, i64>>,
    /// target -> owners who follow them (accepted).
    followers: HashMap<String, HashSet<String>>,
    /// target -> owners waiting for the target's answer, with when they asked.
    requests: HashMap<String, BTreeMap<String, i64>>,
}

impl Index {
    fn entry(&self, owner: &str, target: &str) -> Option<ListEntry> {
        if self.following.get(owner).is_some_and(|t| t.contains_key(target)) {
            Some(ListEntry::Accepted)
        } else if self.requests.get(target).is_some_and(|o| o.contains_key(owner)) {
            Some(ListEntry::Pending)
        } else {
            None
        }
    }

    fn request_ts(&self, owner: &str, target: &str) -> Option<i64> {
        self.requests.get(target).and_then(|o| o.get(owner)).copied()
    }

    fn add_request(&mut self, owner: &str, target: &str, ts: i64) {
        self.requests.entry(target.to_owned()).or_default().insert(owner.to_owned(), ts);
    }

    fn accept(&mut self, owner: &str, target: &str, pos: i64) {
        self.remove(owner, target);
        self.following.entry(owner.to_owned()).or_default().insert(target.to_owned(), pos);
        self.followers.entry(target.to_owned()).or_default().insert(owner.to_owned());
    }

    fn remove(&mut self, owner: &str, target: &str) {
        if let Some(t) = self.following.get_mut(owner) {
            t.remove(target);
            if t.is_empty() {
                self.following.remove(owner);
            }
        }
        if let Some(o) = self.followers.get_mut(target) {
            o.remove(owner);
            if o.is_empty() {
                self.followers.remove(target);
            }
        }
        if let Some(o) = self.requests.get_mut(target) {
            o.remove(owner);
            if o.is_empty() {
                self.requests.remove(target);
            }
        }
    }
}

pub struct PresenceLists {
    store: Store,
    /// This server's name: only its own users' answers are decided here (a remote target
    /// answers on its server, which tells us with `m.presence_accept`; see `list_federation`).
    server_name: String,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    index: RwLock<Index>,
    /// One change at a time, so the database and the index never disagree.
    writes: tokio::sync::Mutex<()>,
}

impl PresenceLists {
    pub async fn load(
        store: Store,
        server_name: &str,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut index = Index::default();
        for row in store.load_presence_lists().await? {
            match row.state.as_str() {
                ACCEPTED => index.accept(&row.owner, &row.target, 0),
                _ => index.add_request(&row.owner, &row.target, row.created_ts),
            }
        }
        Ok(Arc::new(Self {
            store,
            server_name: server_name.to_owned(),
            stream,
            notifier,
            index: RwLock::new(index),
            writes: Default::default(),
        }))
    }

    /// Whether `user_id` is a user of this server.
    pub fn is_local(&self, user_id: &str) -> bool {
        user_id.split_once(':').map(|(_, s)| s) == Some(self.server_name.as_str())
    }

    pub fn entry(&self, owner: &str, target: &str) -> Option<ListEntry> {
        self.index.read().entry(owner, target)
    }

    /// The targets `owner` follows (accepted), sorted.
    pub fn accepted_targets(&self, owner: &str) -> Vec<String> {
        let index = self.index.read();
        let set: BTreeSet<&String> = index.following.get(owner).map(|t| t.keys().collect()).unwrap_or_default();
        set.into_iter().cloned().collect()
    }

    /// The owners waiting for `target` to answer, oldest request first.
    pub fn pending_requests(&self, target: &str) -> Vec<String> {
        let index = self.index.read();
        let mut reqs: Vec<(i64, &String)> =
            index.requests.get(target).map(|o| o.iter().map(|(u, ts)| (*ts, u)).collect()).unwrap_or_default();
        reqs.sort();
        reqs.into_iter().map(|(_, u)| u.clone()).collect()
    }

    /// `owner` asks to follow `target`. Accepted at once if `target` already follows `owner`
    /// (seed 004 reverse subscription) and `target` is a user of this server (a remote target's
    /// server decides that and answers); otherwise pending until `target` answers.
    pub async fn invite(&self, owner: &str, target: &str) -> Result<ListEntry> {
        if owner == target {
            return Err(MatrixError::invalid_param("You cannot add yourself to your presence list"));
        }
        let _w = self.writes.lock().await;
        let (current, reverse) = {
            let index = self.index.read();
            (index.entry(owner, target), index.entry(target, owner))
        };
        if let Some(e) = current {
            return Ok(e);
        }
        let now = now_ms();
        if reverse == Some(ListEntry::Accepted) && self.is_local(target) {
            self.store.put_presence_list_entries(&[row(owner, target, ACCEPTED, now)]).await?;
            self.grant(&[(owner, target)]);
            return Ok(ListEntry::Accepted);
        }
        self.store.put_presence_list_entries(&[row(owner, target, PENDING, now)]).await?;
        self.index.write().add_request(owner, target, now);
        Ok(ListEntry::Pending)
    }

    /// `target` accepts `owner`'s request (said by `target` here, or by `target`'s server in an
    /// `m.presence_accept`). A pending request of `target` to follow `owner` is accepted with
    /// it (the reverse subscription now exists) when `owner` is a user of this server.
    /// Idempotent once accepted. Returns the (owner, target) entries this call accepted.
    pub async fn accept(&self, target: &str, owner: &str) -> Result<Vec<(String, String)>> {
        let _w = self.writes.lock().await;
        let (current, reverse, ts, reverse_ts) = {
            let index = self.index.read();
            (
                index.entry(owner, target),
                index.entry(target, owner),
                index.request_ts(owner, target),
                index.request_ts(target, owner),
            )
        };
        match current {
            None => return Err(MatrixError::not_found("No presence list request from this user")),
            Some(ListEntry::Accepted) => return Ok(Vec::new()),
            Some(ListEntry::Pending) => {}
        }
        let now = now_ms();
        let mut rows = vec![row(owner, target, ACCEPTED, ts.unwrap_or(now))];
        let mut grants = vec![(owner, target)];
        if reverse == Some(ListEntry::Pending) && self.is_local(owner) {
            rows.push(row(target, owner, ACCEPTED, reverse_ts.unwrap_or(now)));
            grants.push((target, owner));
        }
        self.store.put_presence_list_entries(&rows).await?;
        self.grant(&grants);
        Ok(grants.iter().map(|(o, t)| (o.to_string(), t.to_string())).collect())
    }

    /// `target` turns down `owner`: a pending request is refused, an accepted entry revoked
    /// (the target can always take back what they granted).
    pub async fn reject(&self, target: &str, owner: &str) -> Result<()> {
        let _w = self.writes.lock().await;
        if self.entry(owner, target).is_none() {
            return Err(MatrixError::not_found("No presence list entry from this user"));
        }
        self.store.delete_presence_list_entries(&[(owner.to_owned(), target.to_owned())]).await?;
        self.index.write().remove(owner, target);
        Ok(())
    }

    /// `owner` removes `target` from their list (pending or accepted); absent is fine.
    /// Returns whether there was an entry.
    pub async fn drop_entry(&self, owner: &str, target: &str) -> Result<bool> {
        let _w = self.writes.lock().await;
        if self.entry(owner, target).is_none() {
            return Ok(false);
        }
        self.store.delete_presence_list_entries(&[(owner.to_owned(), target.to_owned())]).await?;
        self.index.write().remove(owner, target);
        Ok(true)
    }

    /// Record accepted (owner, target) pairs at a fresh stream position and wake the owners,
    /// so their next `/sync` carries the target's current presence (`granted_between`).
    fn grant(&self, pairs: &[(&str, &str)]) {
        let pos = self.stream.allocate();
        {
            let mut index = self.index.write();
            for (owner, target) in pairs {
                index.accept(owner, target, pos.pos);
            }
        }
        let at = pos.pos;
        pos.complete();
        self.notifier.wake(pairs.iter().map(|(owner, _)| *owner).filter(|o| self.is_local(o)), at);
    }
}

impl PresenceLists {
    /// Every entry between a user of this server and a user of `server`, as (owner, target,
    /// state). Read when that server comes back (a pass over the in-memory entries, once per
    /// such event, never per tick).
    pub fn entries_with_server(&self, server: &str) -> Vec<(String, String, ListEntry)> {
        let of = |u: &str| u.split_once(':').map(|(_, s)| s) == Some(server);
        let index = self.index.read();
        let mut out = Vec::new();
        for (owner, targets) in &index.following {
            for target in targets.keys() {
                if of(owner) != of(target) {
                    out.push((owner.clone(), target.clone(), ListEntry::Accepted));
                }
            }
        }
        for (target, owners) in &index.requests {
            for owner in owners.keys() {
                if of(owner) != of(target) {
                    out.push((owner.clone(), target.clone(), ListEntry::Pending));
                }
            }
        }
        out.retain(|(o, t, _)| (of(o) || of(t)) && (self.is_local(o) || self.is_local(t)));
        out
    }
}

/// What the presence list grants beyond shared rooms (read by [`super::access::PresenceAccess`]).
impl PresenceLists {
    /// Users allowed to see `target` although they share no room with them.
    pub fn granted_viewers(&self, target: &str) -> Vec<String> {
        self.index.read().followers.get(target).map(|o| o.iter().cloned().collect()).unwrap_or_default()
    }

    /// Users `viewer` may see although they share no room with them.
    pub fn granted_targets(&self, viewer: &str) -> Vec<String> {
        self.index.read().following.get(viewer).map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    /// Users `viewer` was newly allowed to see at a stream position in `(since, upto]`, so an
    /// incremental `/sync` sends their current presence once, not only their next change.
    pub fn granted_between(&self, viewer: &str, since: i64, upto: i64) -> Vec<String> {
        let index = self.index.read();
        let Some(targets) = index.following.get(viewer) else { return vec![] };
        targets.iter().filter(|(_, pos)| **pos > since && **pos <= upto).map(|(t, _)| t.clone()).collect()
    }
}

fn row(owner: &str, target: &str, state: &str, created_ts: i64) -> PresenceListRow {
    PresenceListRow { owner: owner.into(), target: target.into(), state: state.into(), created_ts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_moves_an_entry_from_pending_to_accepted_and_out() {
        let mut i = Index::default();
        i.add_request("@o:x", "@t:x", 5);
        assert_eq!(i.entry("@o:x", "@t:x"), Some(ListEntry::Pending));
        assert_eq!(i.entry("@t:x", "@o:x"), None);
        assert!(!i.followers.contains_key("@t:x"));
        i.accept("@o:x", "@t:x", 7);
        assert_eq!(i.entry("@o:x", "@t:x"), Some(ListEntry::Accepted));
        assert!(i.requests.is_empty());
        assert!(i.followers["@t:x"].contains("@o:x"));
        i.remove("@o:x", "@t:x");
        assert_eq!(i.entry("@o:x", "@t:x"), None);
        assert!(i.following.is_empty() && i.followers.is_empty() && i.requests.is_empty());
    }

    /// A server decides only for its own users: it auto-accepts a request to a local target that
    /// already follows the owner, never one to a remote target (that target's server answers).
    #[tokio::test]
    async fn only_local_users_are_accepted_on_their_behalf() {
        let dir = std::env::temp_dir().join(format!("seed-lists-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}/seed.db?mode=rwc", dir.display()), 2).await.unwrap();
        let stream = StreamHub::new(store.clone()).await.unwrap();
        let lists = PresenceLists::load(store, "a", stream, Arc::new(Notifier::default())).await.unwrap();
        let (alice, bob, carol) = ("@alice:a", "@bob:b", "@carol:a");

        // bob (remote) follows alice: alice accepts here.
        lists.invite(bob, alice).await.unwrap();
        assert_eq!(lists.accept(alice, bob).await.unwrap(), vec![(bob.to_owned(), alice.to_owned())]);
        // alice asks for bob: pending here although bob follows her; b decides.
        assert_eq!(lists.invite(alice, bob).await.unwrap(), ListEntry::Pending);
        // b's accept (as `m.presence_accept` would apply it) grants it.
        assert_eq!(lists.accept(bob, alice).await.unwrap(), vec![(alice.to_owned(), bob.to_owned())]);

        // carol (local) asks for bob, bob asks for carol: carol accepting bob does not accept
        // "carol follows bob" on bob's behalf.
        lists.invite(carol, bob).await.unwrap();
        lists.invite(bob, carol).await.unwrap();
        assert_eq!(lists.accept(carol, bob).await.unwrap(), vec![(bob.to_owned(), carol.to_owned())]);
        assert_eq!(lists.entry(carol, bob), Some(ListEntry::Pending));
        // Between local users the reverse subscription is still accepted at once (seed 004).
        assert_eq!(lists.invite(alice, carol).await.unwrap(), ListEntry::Pending);
        assert_eq!(lists.accept(carol, alice).await.unwrap(), vec![(alice.to_owned(), carol.to_owned())]);
        assert_eq!(lists.invite(carol, alice).await.unwrap(), ListEntry::Accepted);

        let mut with_b = lists.entries_with_server("b");
        with_b.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        assert_eq!(
            with_b,
            vec![
                (alice.to_owned(), bob.to_owned(), ListEntry::Accepted),
                (bob.to_owned(), alice.to_owned(), ListEntry::Accepted),
                (bob.to_owned(), carol.to_owned(), ListEntry::Accepted),
                (carol.to_owned(), bob.to_owned(), ListEntry::Pending),
            ]
        );
        assert!(lists.entries_with_server("c").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
