//! Device-list tracking (spec "Tracking the device list for a user"): a user's device list
//! changes when a device logs in or out, uploads new device keys, or the cross-signing keys
//! or signatures change. Everyone who shares a joined room with the user hears of it through
//! `device_lists.changed`; starting to share a room also counts as a change, and sharing no
//! room any more is reported in `device_lists.left`. Visibility is the presence one: shared
//! joined rooms (`Rooms::room_peers`).
use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;

use super::E2ee;
use crate::error::Result;

/// Past this many device-list changes in one window, a delta reads the viewer's peers once
/// instead of asking about each changed user.
const PER_USER_CHECKS: usize = 32;

/// Each user's newest device-list change, indexed both ways so a `/sync` finds the changes
/// in its window without walking every user (O(changes), not O(users or peers)).
#[derive(Default)]
pub(crate) struct DeviceListLog(Mutex<DeviceListIndex>);

#[derive(Default)]
struct DeviceListIndex {
    by_user: HashMap<String, i64>,
    by_pos: BTreeMap<i64, String>,
}

impl DeviceListLog {
    pub(crate) fn note(&self, user_id: &str, pos: i64) {
        let mut ix = self.0.lock();
        let old = ix.by_user.get(user_id).copied();
        if old.is_some_and(|o| o >= pos) {
            return;
        }
        if let Some(o) = old {
            ix.by_pos.remove(&o);
        }
        ix.by_user.insert(user_id.to_owned(), pos);
        ix.by_pos.insert(pos, user_id.to_owned());
    }

    /// Users whose newest change is in `(since, upto]`.
    fn changed_between(&self, since: i64, upto: i64) -> Vec<String> {
        if since >= upto {
            return vec![];
        }
        self.0.lock().by_pos.range(since + 1..=upto).map(|(_, u)| u.clone()).collect()
    }
}

impl E2ee {
    /// Record a change of `user_id`'s device list and wake everyone who shares a room with
    /// them (the user's own other devices included).
    pub async fn device_list_changed(&self, user_id: &str) -> Result<()> {
        let pos = self.stream.allocate();
        self.store.e2e_set_device_list_change(user_id, pos.pos).await?;
        let p = pos.pos;
        self.device_list_pos.note(user_id, p);
        pos.complete();
        let peers = self.rooms.room_peers(user_id).await?;
        self.notifier.wake(peers.iter().map(String::as_str), p);
        Ok(())
    }

    /// Users whose device lists `viewer` must re-fetch (`changed`) or may stop tracking
    /// (`left`) for the changes in `(since, upto]`.
    pub async fn device_list_delta(&self, viewer: &str, since: i64, upto: i64) -> Result<(Vec<String>, Vec<String>)> {
        let mut changed = BTreeSet::new();
        let changed_lists = self.device_list_pos.changed_between(since, upto);
        if changed_lists.len() > PER_USER_CHECKS {
            let peers = self.rooms.room_peers(viewer).await?;
            changed.extend(changed_lists.into_iter().filter(|u| peers.contains(u)));
        } else {
            for user in changed_lists {
                if self.rooms.share_a_room(viewer, &user).await? {
                    changed.insert(user);
                }
            }
        }
        // Membership changes in the window: users who may have started or stopped sharing a
        // room with the viewer. Over-reporting `changed` only costs the client a key query.
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for (room_id, _membership, mpos) in self.rooms.memberships(viewer).await?.iter() {
            if *mpos > since && *mpos <= upto {
                // The viewer's own membership changed: everyone in the room is a candidate.
                let state = self.rooms.state(room_id).await?;
                candidates.extend(state.members_with(&["join"]).map(str::to_owned));
            } else if *mpos <= since && self.rooms.members_changed_since(room_id, since) {
                for (_, ev) in self.rooms.state_changes_between(room_id, since, upto).await? {
                    if ev.kind == "m.room.member" && matches!(ev.membership(), Some("join" | "leave" | "ban")) {
                        if let Some(target) = ev.state_key {
                            candidates.insert(target);
                        }
                    }
                }
            }
        }
        candidates.remove(viewer);
        let mut left = Vec::new();
        let peers = if candidates.len() > PER_USER_CHECKS { Some(self.rooms.room_peers(viewer).await?) } else { None };
        for user in candidates {
            let shares = match &peers {
                Some(p) => p.contains(&user),
                None => self.rooms.share_a_room(viewer, &user).await?,
            };
            if shares {
                changed.insert(user);
            } else {
                left.push(user);
            }
        }
        Ok((changed.into_iter().collect(), left))
    }
}
