//! Presence of users on other servers (spec server-server "Presence"): what their servers
//! announced in `m.presence` EDUs, kept in memory beside the local users' merged presence, so
//! every legacy route (`/sync`'s `presence`, `GET …/status`) reads local and remote users the
//! same way: a change takes a stream position and wakes the local users allowed to see it.
//!
//! Seed 004's watchdog: a remote user announced as anything but offline must be announced
//! again within `presence_remote_timeout_ms`, or they decay to `offline` — a deadline on the
//! engine's remote timer, never a scan.
use std::sync::atomic::Ordering;

use super::*;
use crate::ground::user_ids::{intern_ix, UserIx};

/// Two last-active times closer than this are the same for others (Synapse's
/// `LAST_ACTIVE_GRANULARITY`): a re-announcement moves `last_active_ago` by transit time only.
const LAST_ACTIVE_GRANULARITY_MS: i64 = 60_000;

/// What we hold of one remote user.
#[derive(Debug, Clone)]
pub(super) struct RemoteEntry {
    pub presence: EffectivePresence,
    pub status_msg: Option<String>,
    /// Stream position of the last change local viewers saw.
    pub pos: i64,
}

impl RemoteEntry {
    pub(super) fn snapshot(&self, user_id: &str) -> PresenceSnapshot {
        PresenceSnapshot {
            user_id: user_id.to_owned(),
            presence: self.presence.clone(),
            status_msg: self.status_msg.clone(),
            pos: self.pos,
        }
    }

    /// Whether `new` is worth telling local viewers about (the local rule of
    /// [`EffectivePresence::differs_for_others`], with last-active moves below the
    /// granularity ignored).
    fn differs(&self, new: &EffectivePresence, status_msg: &Option<String>) -> bool {
        let (old, new_p) = (&self.presence, new);
        let moved = match (old.last_active_ts, new_p.last_active_ts) {
            (Some(a), Some(b)) => (a - b).abs() > LAST_ACTIVE_GRANULARITY_MS,
            (a, b) => a != b,
        };
        old.presence != new_p.presence
            || old.currently_active != new_p.currently_active
            || old.active_kinds != new_p.active_kinds
            || &self.status_msg != status_msg
            || (!new_p.currently_active && moved)
    }
}

/// One user's presence as their server announced it (one `push` entry of an `m.presence` EDU,
/// checked by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePresenceUpdate {
    pub user_id: String,
    pub presence: Presence,
    pub last_active_ts: Option<i64>,
    pub currently_active: bool,
    pub status_msg: Option<String>,
    pub active_kinds: Vec<DeviceKind>,
}

impl PresenceEngine {
    /// `federation.presence_remote_timeout_ms`: how long a remote user's announcement holds.
    pub fn set_remote_timeout_ms(&self, ms: i64) {
        self.remote_timeout_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Where local public changes are handed to the federation sender (once, at start).
    pub fn attach_federation_outbox(&self, outbox: Arc<super::super::federated::FederationOutbox>) {
        let _ = self.federation_outbox.set(outbox);
    }

    /// `user_id` joined `room_id` (a membership event was persisted): presence may now be
    /// owed to new servers (see `federated`).
    pub fn note_join(&self, room_id: &str, user_id: &str) {
        if let Some(outbox) = self.federation_outbox.get() {
            outbox.joined(room_id, user_id);
        }
    }

    /// The current time on the engine's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Apply a remote user's announced presence; `viewers` are the local users allowed to see
    /// them (woken when it changed). Returns whether local viewers see a change. An unchanged
    /// announcement only re-arms the watchdog: no stream position, no wake-up.
    pub fn apply_remote(&self, u: RemotePresenceUpdate, viewers: &HashSet<String>) -> bool {
        if self.mode == PresenceMode::Disabled {
            return false;
        }
        let now = self.clock.now_ms();
        if u.presence == Presence::Offline {
            self.remote_deadlines.cancel(&u.user_id);
        } else {
            let timeout = self.remote_timeout_ms.load(Ordering::Relaxed);
            self.remote_deadlines.schedule(u.user_id.clone(), now.saturating_add(timeout));
        }
        let online = u.presence == Presence::Online;
        let presence = EffectivePresence {
            presence: u.presence,
            last_active_ts: u.last_active_ts,
            currently_active: u.currently_active && online,
            active_kinds: if u.presence == Presence::Offline { Vec::new() } else { u.active_kinds },
            hidden: false,
        };
        self.set_remote(&u.user_id, presence, u.status_msg, viewers)
    }

    /// The watchdog fired for these remote users: nobody refreshed them in time.
    pub(super) async fn remote_timed_out(&self, users: Vec<String>) {
        for user in users {
            let Some(mut presence) = self.remote.get(&user).map(|e| e.presence.clone()) else { continue };
            if presence.presence == Presence::Offline {
                continue;
            }
            presence.presence = Presence::Offline;
            presence.currently_active = false;
            presence.active_kinds.clear();
            let status_msg = self.remote.get(&user).and_then(|e| e.status_msg.clone());
            let viewers = match self.access.viewers_of(&user).await {
                Ok(v) => v.iter().map(str::to_owned).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not find who sees {user}");
                    HashSet::new()
                }
            };
            tracing::debug!(user, "remote presence not refreshed in time; now offline");
            self.set_remote(&user, presence, status_msg, &viewers);
        }
    }

    fn set_remote(
        &self,
        user_id: &str,
        presence: EffectivePresence,
        status_msg: Option<String>,
        viewers: &HashSet<String>,
    ) -> bool {
        let (pos, viewer_ixs) = {
            let mut entry = self.remote.entry(user_id.to_owned()).or_insert_with(|| RemoteEntry {
                presence: EffectivePresence::offline(),
                status_msg: None,
                pos: 0,
            });
            let fresh = entry.pos == 0;
            if !fresh && !entry.differs(&presence, &status_msg) {
                // Keep the newer last-active time without announcing it.
                entry.presence.last_active_ts = presence.last_active_ts;
                return false;
            }
            let pos = self.stream.allocate();
            // By number once, for the inboxes and the wake-ups.
            let viewer_ixs: Vec<UserIx> = viewers.iter().map(|v| intern_ix(v).1).collect();
            {
                let mut changes = self.changes.lock();
                if entry.pos > 0 {
                    changes.remove(&entry.pos);
                }
                changes.insert(pos.pos, user_id.to_owned());
                self.inboxes.begin_and_deliver(pos.pos, user_id, self.clock.now_ms(), viewer_ixs.iter().copied());
            }
            entry.presence = presence;
            entry.status_msg = status_msg;
            entry.pos = pos.pos;
            self.remote_dirty.lock().insert(user_id.to_owned());
            let p = pos.pos;
            pos.complete();
            (p, viewer_ixs)
        };
        self.notifier.wake_presence_ixs(viewer_ixs, pos);
        true
    }

    /// Read what other servers last announced (before serving). Positions start at the
    /// current stream position, so no sync token of this process is older than them.
    pub(super) async fn load_remote(&self) -> anyhow::Result<()> {
        for row in self.store.load_remote_presence().await? {
            let Ok(presence) = row.presence.parse::<Presence>() else { continue };
            let active_kinds = row
                .device_kinds
                .split(',')
                .filter_map(|k| match k {
                    "desktop" => Some(DeviceKind::Desktop),
                    "mobile" => Some(DeviceKind::Mobile),
                    _ => None,
                })
                .collect();
            let presence = EffectivePresence {
                presence,
                last_active_ts: row.last_active_ts,
                currently_active: row.currently_active,
                active_kinds,
                hidden: false,
            };
            self.remote.insert(row.user_id, RemoteEntry { presence, status_msg: row.status_msg, pos: 1 });
        }
        Ok(())
    }

    /// After a restart every remote user who was not offline gets one full timeout to be
    /// announced again by their server (we do not know when they last were).
    pub(super) fn arm_loaded_remote(&self) {
        let at = self.clock.now_ms().saturating_add(self.remote_timeout_ms.load(Ordering::Relaxed));
        for e in self.remote.iter() {
            if e.presence.presence != Presence::Offline && self.remote_deadlines.deadline(e.key()).is_none() {
                self.remote_deadlines.schedule(e.key().clone(), at);
            }
        }
    }

    /// Write the remote users that changed since the last flush (write-behind).
    pub(super) async fn flush_remote(&self) {
        let users: Vec<String> = std::mem::take(&mut *self.remote_dirty.lock()).into_iter().collect();
        if users.is_empty() {
            return;
        }
        let rows: Vec<crate::store::RemotePresenceRow> = users
            .iter()
            .filter_map(|u| {
                let e = self.remote.get(u)?;
                Some(crate::store::RemotePresenceRow {
                    user_id: u.clone(),
                    presence: e.presence.presence.as_str().to_owned(),
                    last_active_ts: e.presence.last_active_ts,
                    currently_active: e.presence.currently_active,
                    status_msg: e.status_msg.clone(),
                    device_kinds: e.presence.active_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
                })
            })
            .collect();
        if let Err(e) = self.store.save_remote_presence(&rows).await {
            tracing::error!(error = %e, "remote presence flush failed; will retry");
            self.remote_dirty.lock().extend(users);
        }
    }

    /// Remote users we hold presence for (the console and tests).
    pub fn remote_users(&self) -> usize {
        self.remote.len()
    }
}
