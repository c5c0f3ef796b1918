//! The engine's inputs (MSC3032): a device's `/sync` starting and ending, activity, the
//! manual status and status text, logout. Each is applied through `update`.
use std::sync::Arc;

use super::*;

impl PresenceEngine {
    /// A `/sync` from this device started, reporting `report` (MSC3032 automatic presence).
    pub async fn sync_started(&self, session: &Session, report: Presence, kind: Option<DeviceKind>) {
        let now = self.clock.now_ms();
        self.update(&session.user_id, now, |e| {
            let fresh = !e.devices.contains_key(&session.device_id);
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            // Seed 000: raising one's availability is a pro-active event.
            let was_live = !fresh && dev.state.is_live(now, &self.rules);
            let old = if was_live { dev.state.effective_report() } else { Presence::Offline };
            // A lift by activity (seed 001) lasts until the device reports something new;
            // repeating the same report is not news (msc/README.md §7).
            if !was_live || report != dev.state.reported {
                dev.state.lifted = false;
            }
            dev.in_flight += 1;
            dev.state.syncing = true;
            dev.state.last_sync_ts = now;
            if let Some(k) = kind {
                dev.state.kind = k;
            }
            if is_proactive(old, report) || dev.state.last_active_ts == 0 {
                dev.state.last_active_ts = now;
            }
            dev.state.reported = report;
        })
        .await;
    }

    /// The `/sync` returned; the device stays live for `device_timeout_ms`.
    pub async fn sync_finished(&self, session: &Session) {
        let now = self.clock.now_ms();
        self.update(&session.user_id, now, |e| {
            if let Some(dev) = e.devices.get_mut(&session.device_id) {
                dev.in_flight = dev.in_flight.saturating_sub(1);
                dev.state.syncing = dev.in_flight > 0;
                dev.state.last_sync_ts = now;
            }
        })
        .await;
    }

    /// A pro-active event from this device: sending an event, a typing notification, a read
    /// receipt or read marker. It resets the device's idle timer and lifts an `unavailable` or
    /// `offline` report to `online` until the device's next different report (seed 001 "any
    /// activity sets the user back to online").
    pub async fn activity(&self, session: &Session) {
        let now = self.clock.now_ms();
        self.update(&session.user_id, now, |e| {
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            dev.state.last_active_ts = now;
            // Acting through the API is a sign of life, like a sync.
            dev.state.last_sync_ts = now;
            dev.state.lifted = true;
        })
        .await;
    }

    /// `PUT /presence/{userId}/status`: the manual status and the status message, durable when
    /// this returns `Ok`. Setting it is also a sign of life from the device that set it (it is
    /// in use right now).
    ///
    /// Runs in its own task: once queued, the write is committed and applied even if the client
    /// goes away, so memory never falls behind the database.
    pub async fn set_manual(
        self: &Arc<Self>,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        let this = self.clone();
        let session = session.clone();
        spawn_to_completion(async move { this.set_manual_durably(&session, presence, status_msg).await }).await
    }

    async fn set_manual_durably(
        &self,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        let manual = ManualStatus::from(presence);
        let write = StatusWrite::Manual {
            user_id: session.user_id.clone(),
            manual: manual_str(manual).into(),
            status_msg: status_msg.clone(),
        };
        let seq = self.status_log.write(write).await?;
        let now = self.clock.now_ms();
        self.update(&session.user_id, now, |e| {
            let raises = manual_rank(manual) > manual_rank(e.manual);
            if seq > e.manual_seq {
                e.manual_seq = seq;
                e.manual = manual;
            }
            if seq > e.status_seq {
                e.status_seq = seq;
                e.status_msg = status_msg;
            }
            let fresh = !e.devices.contains_key(&session.device_id);
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            dev.state.last_sync_ts = now;
            if raises || fresh {
                dev.state.last_active_ts = now;
            }
        })
        .await;
        Ok(())
    }

    /// The owner set `m.status` in their profile room directly: the status message follows,
    /// the manual presence is left alone (one truth for both routes). Durable when `Ok`.
    pub async fn set_status_msg(self: &Arc<Self>, session: &Session, status_msg: Option<String>) -> Result<()> {
        let this = self.clone();
        let user_id = session.user_id.clone();
        spawn_to_completion(async move {
            let write = StatusWrite::StatusMsg { user_id: user_id.clone(), status_msg: status_msg.clone() };
            let seq = this.status_log.write(write).await?;
            this.update(&user_id, this.clock.now_ms(), |e| {
                if seq > e.status_seq {
                    e.status_seq = seq;
                    e.status_msg = status_msg;
                }
            })
            .await;
            Ok(())
        })
        .await
    }

    /// Startup reconciliation (after a crash the profile room may hold a newer last-active
    /// time than the write-behind flush saved): the later of the two wins.
    pub fn adopt_last_active(&self, user_id: &str, ts: i64) {
        let mut entry = self.users.entry(user_id.to_owned()).or_default();
        let known = entry.devices.values().map(|d| d.state.last_active_ts).max().unwrap_or(0);
        if ts > known {
            entry.devices.insert(HISTORY_DEVICE.into(), history_device(ts));
            let view = effective(entry.manual, &entry.device_states(), self.clock.now_ms(), &self.rules);
            entry.published = view.public.clone();
            entry.view = view;
            self.dirty.lock().insert(user_id.to_owned());
        }
    }

    /// Announce the user's presence again although it did not change (their display name or
    /// avatar did, which legacy `m.presence` events carry, seed 000).
    pub async fn republish(&self, user_id: &str) {
        let pos = self.stream.allocate();
        let snapshot = {
            let mut entry = self.users.entry(user_id.to_owned()).or_default();
            let mut changes = self.changes.lock();
            if entry.public_pos > 0 {
                changes.remove(&entry.public_pos);
            }
            changes.insert(pos.pos, user_id.to_owned());
            self.inboxes.begin(pos.pos, user_id, self.clock.now_ms());
            entry.public_pos = pos.pos;
            entry.own_pos = pos.pos;
            PresenceSnapshot {
                user_id: user_id.to_owned(),
                presence: entry.view.public.clone(),
                status_msg: entry.public_status_msg().map(str::to_owned),
                pos: pos.pos,
            }
        };
        let p = pos.pos;
        pos.complete();
        self.notifier.wake_presence([user_id], p);
        match self.access.viewers_of(user_id).await {
            Ok(viewers) => {
                self.inboxes.deliver(p, viewers.ixs());
                self.notifier.wake_presence_ixs(viewers.ixs(), p);
            }
            Err(_) => self.inboxes.abandon(p),
        }
        let _ = snapshot;
    }

    /// Logout: the device is no longer a presence source; its last activity is kept.
    pub async fn remove_device(&self, session: &Session) {
        let now = self.clock.now_ms();
        self.update(&session.user_id, now, |e| {
            if let Some(dev) = e.devices.remove(&session.device_id) {
                let ts = dev
                    .state
                    .last_active_ts
                    .max(e.devices.get(HISTORY_DEVICE).map(|h| h.state.last_active_ts).unwrap_or(0));
                e.devices.insert(HISTORY_DEVICE.into(), history_device(ts));
            }
        })
        .await;
    }
}

/// A `/sync` of one device in flight. Finishing it, or dropping it when the request is
/// cancelled (hyper drops the handler when the client disconnects), ends the sync; without
/// this a cancelled long-poll would leave its device syncing, hence live, forever.
pub struct SyncInFlight {
    engine: Arc<PresenceEngine>,
    session: Option<Session>,
}

impl PresenceEngine {
    /// Take before [`PresenceEngine::sync_started`] (which may itself be cancelled once it
    /// has counted the sync); the guard calls `sync_finished`.
    pub fn sync_in_flight(self: &Arc<Self>, session: &Session) -> SyncInFlight {
        SyncInFlight { engine: self.clone(), session: Some(session.clone()) }
    }
}

impl SyncInFlight {
    pub async fn finish(mut self) {
        if let Some(session) = self.session.take() {
            self.engine.sync_finished(&session).await;
        }
    }
}

impl Drop for SyncInFlight {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let engine = self.engine.clone();
            tokio::spawn(async move { engine.sync_finished(&session).await });
        }
    }
}
