//! What an admin may see of the engine (the experiment console): every user's inputs, each
//! device's contribution and deadlines, and the explanation of the merge result. A child of
//! `engine` so the engine's state stays private to the presence service.
use serde::Serialize;

use super::{manual_str, PresenceEngine, UserEntry, HISTORY_DEVICE};
use crate::presence::explain::{explain, Explanation};
use crate::presence::observe::ChangeCause;
use crate::presence::{DeviceKind, DeviceState, Presence};

/// One device as the merge sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInspection {
    pub device_id: String,
    pub kind: DeviceKind,
    /// The device's last `set_presence` report.
    pub reported: Presence,
    /// Its contribution to the merge now (rules 1 and 2).
    pub presence: Presence,
    pub live: bool,
    /// Activity since its last report counts it as online (§2 rule 10).
    pub lifted: bool,
    pub syncing: bool,
    pub last_sync_ts: i64,
    pub last_active_ts: i64,
    /// When it stops being live unless it syncs again (none while a `/sync` is in flight).
    pub offline_at: Option<i64>,
    /// When it turns idle (`unavailable`) unless it acts again (online reports only).
    pub idle_at: Option<i64>,
}

/// One user as the console shows them.
#[derive(Debug, Clone, Serialize)]
pub struct UserInspection {
    pub user_id: String,
    /// What others see.
    pub presence: Presence,
    /// What the user's own devices see (differs when hidden).
    pub own_presence: Presence,
    pub manual: &'static str,
    pub hidden: bool,
    pub status_msg: Option<String>,
    pub last_active_ts: Option<i64>,
    pub currently_active: bool,
    pub devices: Vec<DeviceInspection>,
    pub explain: Explanation,
    /// The deadline the engine's timer holds for this user (equals `explain.next_change_at`
    /// unless an input is being applied right now).
    pub scheduled_deadline: Option<i64>,
}

/// The user's real devices (not the history placeholder), sorted by id.
pub(super) fn device_list(entry: &UserEntry) -> Vec<(String, DeviceState)> {
    let mut list: Vec<(String, DeviceState)> = entry
        .devices
        .iter()
        .filter(|(id, _)| id.as_str() != HISTORY_DEVICE)
        .map(|(id, d)| (id.clone(), d.state))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

impl PresenceEngine {
    /// Every user the engine holds, sorted.
    pub fn user_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.users.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    pub fn inspect(&self, user_id: &str) -> Option<UserInspection> {
        let now = self.clock.now_ms();
        let scheduled_deadline = self.deadlines.deadline(&user_id.to_owned());
        let entry = self.users.get(user_id)?;
        let rules = &self.rules;
        let list = device_list(&entry);
        let devices = list
            .iter()
            .map(|(id, d)| DeviceInspection {
                device_id: id.clone(),
                kind: d.kind,
                reported: d.reported,
                presence: d.presence_at(now, rules),
                live: d.is_live(now, rules),
                lifted: d.lifted,
                syncing: d.syncing,
                last_sync_ts: d.last_sync_ts,
                last_active_ts: d.last_active_ts,
                offline_at: (!d.syncing).then(|| d.last_sync_ts.saturating_add(rules.device_timeout_ms)),
                idle_at: (d.effective_report() == Presence::Online)
                    .then(|| d.last_active_ts.saturating_add(rules.idle_after_ms)),
            })
            .collect();
        // The history placeholder counts for last_active, as in the merge.
        let all: Vec<(String, DeviceState)> = entry.devices.iter().map(|(id, d)| (id.clone(), d.state)).collect();
        let mut explanation = explain(entry.manual, &all, now, rules);
        explanation.deciding_devices.retain(|d| d != HISTORY_DEVICE);
        Some(UserInspection {
            user_id: user_id.to_owned(),
            presence: entry.view.public.presence,
            own_presence: entry.view.own.presence,
            manual: manual_str(entry.manual),
            hidden: entry.manual.is_hidden(),
            status_msg: entry.status_msg.clone(),
            last_active_ts: entry.view.own.last_active_ts,
            currently_active: entry.view.own.currently_active,
            devices,
            explain: explanation,
            scheduled_deadline,
        })
    }

    /// Treat the device as silent from now on: it is offline until it syncs again (an admin
    /// action in the experiment console). Returns false if the user has no such device.
    pub async fn force_device_offline(&self, user_id: &str, device_id: &str) -> bool {
        let known =
            self.users.get(user_id).is_some_and(|e| device_id != HISTORY_DEVICE && e.devices.contains_key(device_id));
        if !known {
            return false;
        }
        let now = self.clock.now_ms();
        let timeout = self.rules.device_timeout_ms;
        self.update_caused(user_id, now, Some(ChangeCause::Admin), |e| {
            if let Some(dev) = e.devices.get_mut(device_id) {
                dev.in_flight = 0;
                dev.state.syncing = false;
                dev.state.last_sync_ts = now.saturating_sub(timeout).saturating_sub(1);
            }
        })
        .await;
        true
    }
}
