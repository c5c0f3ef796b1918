//! The effective-presence merge (MSC3032 "Effective presence"): a pure function of the manual
//! status, the device reports and `now`. No I/O and no clock reads, so every rule is testable
//! at any instant and the caller owns time (see `deadline.rs` for when to look again).

use super::types::{DeviceKind, DeviceState, EffectivePresence, EffectiveView, ManualStatus, Presence, PresenceRules};

impl DeviceState {
    /// A device is live if a `/sync` is in flight or its last one ended less than
    /// `device_timeout_ms` ago. Seed 000: `offline` is "not connected to an event stream", so a
    /// device that is not live counts as offline whatever it last reported.
    pub fn is_live(&self, now_ms: i64, rules: &PresenceRules) -> bool {
        self.syncing || now_ms.saturating_sub(self.last_sync_ts) < rules.device_timeout_ms
    }

    /// A silent `mobile` device that last reported something other than `offline` stays
    /// reachable for `mobile_grace_ms` after it stopped being live (MSC3032: `unavailable`
    /// means messages still reach the user, as they do a phone in a pocket; `offline` that
    /// they won't).
    pub fn in_mobile_grace(&self, now_ms: i64, rules: &PresenceRules) -> bool {
        self.kind == DeviceKind::Mobile
            && !self.syncing
            && self.effective_report() != Presence::Offline
            && now_ms.saturating_sub(self.last_sync_ts) < rules.device_timeout_ms.saturating_add(rules.mobile_grace_ms)
    }

    /// This device's own contribution to the merge at `now_ms`.
    ///
    /// - Not live: offline (seed 000), except a phone in its grace, which is `unavailable`.
    ///   A live device that reported offline is offline too.
    /// - Seed 001 "any activity sets the user back to online": activity after the device's
    ///   last report lifts an `unavailable` or `offline` report to `online`
    ///   ([`DeviceState::effective_report`]) until the device reports something new.
    /// - Seed 001 "Idle timeout": a live device counting as online whose last pro-active
    ///   event is `idle_after_ms` (5 min) or more ago is idle, i.e. unavailable.
    /// - Busy is not decayed by idleness: MSC3032 "a client supplies `busy` if the user is on a
    ///   call", and a call is a call however still the mouse is.
    pub fn presence_at(&self, now_ms: i64, rules: &PresenceRules) -> Presence {
        if !self.is_live(now_ms, rules) {
            return if self.in_mobile_grace(now_ms, rules) { Presence::Unavailable } else { Presence::Offline };
        }
        match self.effective_report() {
            Presence::Online if now_ms.saturating_sub(self.last_active_ts) >= rules.idle_after_ms => {
                Presence::Unavailable
            }
            reported => reported,
        }
    }
}

/// Seed 000 "Last active ago": "changing presence state to a higher level of availability" is a
/// pro-active event, with levels `offline < unavailable < online` and MSC3026 `busy` on top
/// (the `Ord` of [`Presence`]). So `unavailable -> online` is pro-active, `online ->
/// unavailable` is not.
pub fn is_proactive(old: Presence, new: Presence) -> bool {
    new > old
}

/// The device-derived truth: MSC3032 "if any status is busy, the user is busy", generalised to
/// "devices combine by max priority: busy > online > unavailable > offline". Also returns the
/// kinds (seed 004 "Device Type") of the devices that are live and not offline, sorted and
/// deduplicated.
fn device_truth(devices: &[DeviceState], now_ms: i64, rules: &PresenceRules) -> (Presence, Vec<DeviceKind>) {
    let mut presence = Presence::Offline;
    let mut kinds = Vec::new();
    for device in devices {
        let p = device.presence_at(now_ms, rules);
        if p != Presence::Offline {
            kinds.push(device.kind);
        }
        presence = presence.max(p);
    }
    kinds.sort_unstable();
    kinds.dedup();
    (presence, kinds)
}

/// The manual status (MSC3032 `PUT /presence/{userId}/status`) applied to the device truth.
///
/// - With no live, non-offline device the user is offline, whatever the manual status: seed
///   000 "`offline`: the user is not connected to an event stream", and MSC3032 "`offline`: it
///   should be assumed that messages won't reach the user".
/// - `Busy`: busy while any device is live and not offline.
/// - `Unavailable`: caps `online` at `unavailable`; a device reporting busy still wins (MSC3032
///   "if any status is busy, the user is busy").
/// - `Online`: no override, the devices decide.
/// - `Offline` (hidden) is not applied here: see [`effective`].
fn apply_manual(manual: ManualStatus, truth: Presence) -> Presence {
    if truth == Presence::Offline {
        return Presence::Offline;
    }
    match manual {
        ManualStatus::Busy => Presence::Busy,
        ManualStatus::Unavailable if truth == Presence::Busy => Presence::Busy,
        ManualStatus::Unavailable => truth.min(Presence::Unavailable),
        ManualStatus::Online | ManualStatus::Offline => truth,
    }
}

/// Seed 001: `currently_active` may be true only "when the presence state is `online`"; we set
/// it while the last pro-active event is less than `currently_active_ms` (1 min) old.
fn is_currently_active(presence: Presence, last_active_ts: Option<i64>, now_ms: i64, rules: &PresenceRules) -> bool {
    presence == Presence::Online && last_active_ts.is_some_and(|t| now_ms.saturating_sub(t) < rules.currently_active_ms)
}

/// The effective presence of one user at `now_ms` (MSC3032 "Effective presence").
///
/// Rules, in order:
/// 1. Each device contributes [`DeviceState::presence_at`]: offline unless live, online decays
///    to unavailable after 5 min without a pro-active event, busy never decays.
/// 2. Devices combine by max priority, busy > online > unavailable > offline (MSC3032).
/// 3. The manual status is applied (see `apply_manual`); with no live device the user is offline
///    in both views, whatever the manual status.
/// 4. Manual `Offline` is seed 004's hidden: "behaves as offline, but allows the user to see the
///    client state anyway". `public` is offline with no `last_active_ts`, no `currently_active`
///    and no `active_kinds`; `own` is the device-derived truth (as with manual `Online`). Both
///    carry `hidden = true`; the API layer must not show that flag to others.
/// 5. `last_active_ts` is the max over all devices, live or not (seed 004: "when a user is
///    offline, the Home Server can still report when the user was last seen"); `None` with no
///    devices. `currently_active` is `presence == online && now - last_active_ts <
///    currently_active_ms` (seed 001).
pub fn effective(manual: ManualStatus, devices: &[DeviceState], now_ms: i64, rules: &PresenceRules) -> EffectiveView {
    let (truth, active_kinds) = device_truth(devices, now_ms, rules);
    let last_active_ts = devices.iter().map(|d| d.last_active_ts).max();
    let hidden = manual.is_hidden();
    let view = |presence: Presence| EffectivePresence {
        presence,
        last_active_ts,
        currently_active: is_currently_active(presence, last_active_ts, now_ms, rules),
        active_kinds: active_kinds.clone(),
        hidden,
    };

    if hidden {
        EffectiveView { public: EffectivePresence { hidden: true, ..EffectivePresence::offline() }, own: view(truth) }
    } else {
        let shown = view(apply_manual(manual, truth));
        EffectiveView { public: shown.clone(), own: shown }
    }
}

/// The earliest instant after `now_ms` at which [`effective`] changes by time passing alone
/// (a device timing out, a device turning idle, `currently_active` running out), or `None` if
/// nothing can change until a new report arrives. Always `> now_ms`.
///
/// `effective` is piecewise constant in time and can only step at a device's
/// `last_sync_ts + device_timeout_ms` (non-syncing devices; for phones also that plus
/// `mobile_grace_ms`), at an online (or lifted) device's
/// `last_active_ts + idle_after_ms`, or at `max(last_active_ts) + currently_active_ms`. We
/// evaluate those candidates in order and return the first one where the view really differs,
/// so the caller's timer never fires for a change nobody can see (e.g. one of two online
/// desktops going away). Cost: O(d² log d) for d devices, and d is a handful per user.
pub fn next_change_at(
    manual: ManualStatus,
    devices: &[DeviceState],
    now_ms: i64,
    rules: &PresenceRules,
) -> Option<i64> {
    let mut candidates = Vec::with_capacity(devices.len() * 2 + 1);
    for device in devices {
        if !device.syncing {
            candidates.push(device.last_sync_ts.saturating_add(rules.device_timeout_ms));
            if device.kind == DeviceKind::Mobile {
                candidates.push(
                    device.last_sync_ts.saturating_add(rules.device_timeout_ms).saturating_add(rules.mobile_grace_ms),
                );
            }
        }
        if device.effective_report() == Presence::Online {
            candidates.push(device.last_active_ts.saturating_add(rules.idle_after_ms));
        }
    }
    if let Some(last_active) = devices.iter().map(|d| d.last_active_ts).max() {
        candidates.push(last_active.saturating_add(rules.currently_active_ms));
    }
    candidates.retain(|&t| t > now_ms);
    candidates.sort_unstable();
    candidates.dedup();

    let current = effective(manual, devices, now_ms, rules);
    candidates.into_iter().find(|&t| effective(manual, devices, t, rules) != current)
}

#[cfg(test)]
mod tests;
