//! Effective-presence changes as the experiment sees them: what changed, and why.
//!
//! The engine tells every [`ChangeObserver`] about each change of a user's public presence
//! state (`msc/README.md` §8 "Experiment data"). The cause is read off the inputs the change
//! touched, so no caller has to name it.
use serde::Serialize;

use super::{DeviceKind, ManualStatus, Presence};

/// Why the effective presence changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    /// A device's `/sync` report, activity, sync end or logout.
    DeviceReport,
    /// The user's manual status (`PUT /presence/{userId}/status`).
    Manual,
    /// The manual status entered or left hidden (seed 004).
    Hidden,
    /// A deadline passed: a device timed out or turned idle.
    Timer,
    /// An admin forced a device offline.
    Admin,
}

impl ChangeCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeCause::DeviceReport => "device_report",
            ChangeCause::Manual => "manual",
            ChangeCause::Hidden => "hidden",
            ChangeCause::Timer => "timer",
            ChangeCause::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::DeviceReport, Self::Manual, Self::Hidden, Self::Timer, Self::Admin].into_iter().find(|c| c.as_str() == s)
    }

    /// The cause of a change whose inputs went from `manual_before` to `manual_after`, with
    /// `devices_changed` telling whether any device state moved. No input moved: time did.
    pub fn infer(manual_before: ManualStatus, manual_after: ManualStatus, devices_changed: bool) -> Self {
        if manual_before != manual_after {
            if manual_before.is_hidden() || manual_after.is_hidden() {
                ChangeCause::Hidden
            } else {
                ChangeCause::Manual
            }
        } else if devices_changed {
            ChangeCause::DeviceReport
        } else {
            ChangeCause::Timer
        }
    }
}

/// One change of a user's public presence state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveChange {
    pub ts: i64,
    pub user_id: String,
    pub old: Presence,
    pub new: Presence,
    pub cause: ChangeCause,
    /// Kinds of the live, non-offline devices after the change (own view, so also when hidden).
    pub device_kinds: Vec<DeviceKind>,
    pub hidden: bool,
}

/// Told about every [`EffectiveChange`], after the user's entry is unlocked.
pub trait ChangeObserver: Send + Sync {
    fn on_effective_change(&self, change: &EffectiveChange);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_follows_the_input_that_moved() {
        use ManualStatus::*;
        assert_eq!(ChangeCause::infer(Online, Busy, false), ChangeCause::Manual);
        assert_eq!(ChangeCause::infer(Online, Busy, true), ChangeCause::Manual);
        assert_eq!(ChangeCause::infer(Online, Offline, false), ChangeCause::Hidden);
        assert_eq!(ChangeCause::infer(Offline, Busy, false), ChangeCause::Hidden);
        assert_eq!(ChangeCause::infer(Busy, Busy, true), ChangeCause::DeviceReport);
        assert_eq!(ChangeCause::infer(Busy, Busy, false), ChangeCause::Timer);
    }
}
