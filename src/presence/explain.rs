//! Which rule of the merge (`msc/README.md` §2) decided a user's presence, and when time alone
//! will change it. Pure like the merge: no I/O, no clock reads.
use serde::Serialize;

use super::{effective, next_change_at, DeviceState, ManualStatus, Presence, PresenceRules};

/// The answer of `GET /_seed/admin/v1/users/{userId}/explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// What others see.
    pub presence: Presence,
    /// The number of the §2 rule that decided it.
    pub rule: u8,
    /// The rule applied to this user, in words.
    pub reason: String,
    /// The devices whose contribution decided the value (none when the manual status did).
    pub deciding_devices: Vec<String>,
    /// The next instant the merge changes by time alone (`next_change_at`), and to what.
    pub next_change_at: Option<i64>,
    pub next_presence: Option<Presence>,
}

pub fn explain(
    manual: ManualStatus,
    devices: &[(String, DeviceState)],
    now_ms: i64,
    rules: &PresenceRules,
) -> Explanation {
    let states: Vec<DeviceState> = devices.iter().map(|(_, d)| *d).collect();
    let view = effective(manual, &states, now_ms, rules);
    let truth = devices.iter().map(|(_, d)| d.presence_at(now_ms, rules)).max().unwrap_or(Presence::Offline);
    let with = |p: Presence| -> Vec<String> {
        devices.iter().filter(|(_, d)| d.presence_at(now_ms, rules) == p).map(|(id, _)| id.clone()).collect()
    };
    let (rule, reason, deciding) = if truth == Presence::Offline {
        if devices.iter().any(|(_, d)| d.is_live(now_ms, rules)) {
            (1, "every live device reports offline".to_owned(), vec![])
        } else {
            (1, "no device is live: none has synced within presence_device_timeout_ms".to_owned(), vec![])
        }
    } else if manual.is_hidden() {
        (5, format!("hidden (manual offline): others see offline, the user's own devices see {truth}"), vec![])
    } else if manual == ManualStatus::Busy {
        (4, "manual status busy, and a device is reachable".to_owned(), vec![])
    } else if manual == ManualStatus::Unavailable && truth == Presence::Online {
        (4, "manual status unavailable caps the devices' online".to_owned(), vec![])
    } else if manual == ManualStatus::Unavailable && truth == Presence::Busy {
        (3, "a device reports busy, which wins over manual unavailable".to_owned(), with(truth))
    } else {
        let deciding = with(truth);
        let deciders = || devices.iter().filter(|(id, _)| deciding.contains(id)).map(|(_, d)| d);
        let in_grace = truth == Presence::Unavailable && deciders().all(|d| !d.is_live(now_ms, rules));
        let idle = truth == Presence::Unavailable && deciders().all(|d| d.effective_report() == Presence::Online);
        let lifted = truth == Presence::Online && deciders().all(|d| d.reported < Presence::Online && d.lifted);
        if in_grace {
            (1, "a silent phone counts as unavailable during presence_mobile_grace_ms".to_owned(), deciding)
        } else if idle {
            (2, "idle: no pro-active event within presence_idle_after_ms".to_owned(), deciding)
        } else if lifted {
            (10, "activity since the device's last report lifts it to online".to_owned(), deciding)
        } else {
            (3, format!("devices combine by priority busy > online > unavailable; the highest is {truth}"), deciding)
        }
    };
    let next = next_change_at(manual, &states, now_ms, rules);
    Explanation {
        presence: view.public.presence,
        rule,
        reason,
        deciding_devices: deciding,
        next_change_at: next,
        next_presence: next.map(|t| effective(manual, &states, t, rules).public.presence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::DeviceKind;

    const NOW: i64 = 1_700_000_000_000;

    fn dev(id: &str, reported: Presence, synced_ago: i64, active_ago: i64) -> (String, DeviceState) {
        let state = DeviceState {
            reported,
            kind: DeviceKind::Desktop,
            last_sync_ts: NOW - synced_ago,
            syncing: false,
            last_active_ts: NOW - active_ago,
            lifted: false,
        };
        (id.to_owned(), state)
    }

    #[test]
    fn each_rule_is_named() {
        let r = PresenceRules::default();
        let e = explain(ManualStatus::Online, &[], NOW, &r);
        assert_eq!((e.presence, e.rule, e.next_change_at), (Presence::Offline, 1, None));

        let e = explain(ManualStatus::Online, &[dev("A", Presence::Online, 0, 0)], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Online, 3));
        assert_eq!(e.deciding_devices, vec!["A"]);
        // Not syncing: it times out (30 s) before currently_active (60 s) or idleness (5 min).
        assert_eq!(e.next_change_at, Some(NOW + r.device_timeout_ms));
        assert_eq!(e.next_presence, Some(Presence::Offline));

        let e = explain(ManualStatus::Online, &[dev("A", Presence::Online, 0, r.idle_after_ms)], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Unavailable, 2));
        assert_eq!(e.next_change_at, Some(NOW + r.device_timeout_ms));
        assert_eq!(e.next_presence, Some(Presence::Offline));

        let both = [dev("A", Presence::Online, 0, 0), dev("B", Presence::Busy, 0, 0)];
        let e = explain(ManualStatus::Unavailable, &both, NOW, &r);
        assert_eq!((e.presence, e.rule, e.deciding_devices.clone()), (Presence::Busy, 3, vec!["B".to_owned()]));
        let e = explain(ManualStatus::Unavailable, &both[..1], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Unavailable, 4));
        let e = explain(ManualStatus::Busy, &both[..1], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Busy, 4));
        let e = explain(ManualStatus::Offline, &both[..1], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Offline, 5));
        let e = explain(ManualStatus::Busy, &[dev("A", Presence::Online, r.device_timeout_ms, 0)], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Offline, 1));

        let mut lifted = dev("A", Presence::Unavailable, 0, 0);
        lifted.1.lifted = true;
        let e = explain(ManualStatus::Online, &[lifted], NOW, &r);
        assert_eq!((e.presence, e.rule), (Presence::Online, 10));

        let mut phone = dev("P", Presence::Online, r.device_timeout_ms, 0);
        phone.1.kind = DeviceKind::Mobile;
        let e = explain(ManualStatus::Online, &[phone], NOW, &r);
        assert_eq!((e.presence, e.rule, e.deciding_devices), (Presence::Unavailable, 1, vec!["P".to_owned()]));
    }
}
