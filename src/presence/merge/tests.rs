//! Tests of the pure merge: every rule of `effective` and `next_change_at`.
use super::*;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;

fn rules() -> PresenceRules {
    PresenceRules::default()
}

/// Silent for longer than the device timeout plus the default mobile grace.
const PHONE_GONE: i64 = 30_000 + 3_600_000;

/// A desktop that is syncing right now and was active right now.
fn dev(reported: Presence) -> DeviceState {
    DeviceState {
        reported,
        kind: DeviceKind::Desktop,
        last_sync_ts: NOW,
        syncing: true,
        last_active_ts: NOW,
        lifted: false,
    }
}

trait DeviceExt {
    fn mobile(self) -> Self;
    fn synced_ago(self, ms: i64) -> Self;
    fn active_ago(self, ms: i64) -> Self;
}

impl DeviceExt for DeviceState {
    fn mobile(mut self) -> Self {
        self.kind = DeviceKind::Mobile;
        self
    }
    fn synced_ago(mut self, ms: i64) -> Self {
        self.syncing = false;
        self.last_sync_ts = NOW - ms;
        self
    }
    fn active_ago(mut self, ms: i64) -> Self {
        self.last_active_ts = NOW - ms;
        self
    }
}

fn public(manual: ManualStatus, devices: &[DeviceState]) -> EffectivePresence {
    effective(manual, devices, NOW, &rules()).public
}

fn presence_of(manual: ManualStatus, devices: &[DeviceState]) -> Presence {
    public(manual, devices).presence
}

use DeviceKind::{Desktop, Mobile};
use ManualStatus as M;
use Presence::{Busy, Offline, Online, Unavailable};

// --- device rules ---

#[test]
fn silent_device_times_out_to_offline() {
    assert_eq!(presence_of(M::Online, &[dev(Online).synced_ago(29_999)]), Online);
    assert_eq!(presence_of(M::Online, &[dev(Online).synced_ago(30_000)]), Offline);
    assert_eq!(presence_of(M::Online, &[dev(Busy).synced_ago(45_000)]), Offline);
}

#[test]
fn syncing_device_never_times_out() {
    let mut d = dev(Online).synced_ago(3_600_000);
    d.syncing = true;
    assert_eq!(presence_of(M::Online, &[d]), Online);
    let mut d = d.active_ago(3_600_000);
    assert_eq!(presence_of(M::Online, &[d]), Unavailable, "live but idle");
    d.reported = Busy;
    assert_eq!(presence_of(M::Online, &[d]), Busy);
}

#[test]
fn live_device_reporting_offline_is_offline() {
    let view = public(M::Online, &[dev(Offline)]);
    assert_eq!(view.presence, Offline);
    assert!(view.active_kinds.is_empty());
}

#[test]
fn idle_online_device_decays_to_unavailable() {
    assert_eq!(presence_of(M::Online, &[dev(Online).active_ago(299_999)]), Online);
    assert_eq!(presence_of(M::Online, &[dev(Online).active_ago(300_000)]), Unavailable);
}

#[test]
fn idleness_does_not_decay_busy() {
    assert_eq!(presence_of(M::Online, &[dev(Busy).active_ago(3_600_000)]), Busy);
}

#[test]
fn busy_device_wins() {
    let devices = [dev(Online), dev(Busy).mobile(), dev(Unavailable), dev(Offline)];
    assert_eq!(presence_of(M::Online, &devices), Busy);
}

#[test]
fn devices_combine_by_max_priority() {
    assert_eq!(presence_of(M::Online, &[dev(Unavailable), dev(Online)]), Online);
    assert_eq!(presence_of(M::Online, &[dev(Offline), dev(Unavailable)]), Unavailable);
    assert_eq!(presence_of(M::Online, &[dev(Offline), dev(Offline)]), Offline);
    // A timed-out busy device no longer outranks a live online one.
    let devices = [dev(Busy).synced_ago(30_000), dev(Online)];
    assert_eq!(presence_of(M::Online, &devices), Online);
}

#[test]
fn active_kinds_are_live_non_offline_devices_sorted_and_deduplicated() {
    let devices = [
        dev(Online).mobile(),
        dev(Unavailable),
        dev(Online),
        dev(Offline).mobile(),
        dev(Busy).mobile().synced_ago(PHONE_GONE),
    ];
    assert_eq!(public(M::Online, &devices).active_kinds, vec![Desktop, Mobile]);
    let devices = [dev(Online), dev(Offline).mobile(), dev(Busy).mobile().synced_ago(PHONE_GONE)];
    assert_eq!(public(M::Online, &devices).active_kinds, vec![Desktop]);
    assert!(public(M::Online, &[]).active_kinds.is_empty());
}

// --- activity lifts a device (seed 001) ---

trait Lift {
    fn lifted(self) -> Self;
}

impl Lift for DeviceState {
    fn lifted(mut self) -> Self {
        self.lifted = true;
        self
    }
}

#[test]
fn activity_lifts_unavailable_and_offline_reports_to_online() {
    assert_eq!(presence_of(M::Online, &[dev(Unavailable)]), Unavailable);
    assert_eq!(presence_of(M::Online, &[dev(Unavailable).lifted()]), Online);
    assert_eq!(presence_of(M::Online, &[dev(Offline).lifted()]), Online);
    assert!(public(M::Online, &[dev(Unavailable).lifted()]).currently_active);
    // A lifted device still counts only while it is live.
    assert_eq!(presence_of(M::Online, &[dev(Unavailable).lifted().synced_ago(30_000)]), Offline);
}

#[test]
fn a_lifted_device_idles_like_an_online_one() {
    assert_eq!(presence_of(M::Online, &[dev(Unavailable).lifted().active_ago(299_999)]), Online);
    assert_eq!(presence_of(M::Online, &[dev(Unavailable).lifted().active_ago(300_000)]), Unavailable);
    let d = dev(Unavailable).lifted().active_ago(1_000);
    assert_eq!(next_change_at(M::Online, &[d], NOW, &rules()), Some(NOW - 1_000 + 60_000), "currently_active ends");
    let d = dev(Unavailable).lifted().active_ago(100_000);
    assert_eq!(next_change_at(M::Online, &[d], NOW, &rules()), Some(NOW + 200_000), "idle");
}

#[test]
fn lifting_never_lowers_busy_and_manual_rules_still_apply() {
    assert_eq!(presence_of(M::Online, &[dev(Busy).lifted()]), Busy);
    assert_eq!(presence_of(M::Unavailable, &[dev(Unavailable).lifted()]), Unavailable, "manual cap");
    let view = effective(M::Offline, &[dev(Unavailable).lifted()], NOW, &rules());
    assert_eq!((view.public.presence, view.own.presence), (Offline, Online), "hidden");
}

// --- smartphones (MSC3032: a phone in a pocket is reachable) ---

#[test]
fn a_silent_phone_stays_unavailable_for_its_grace_then_is_offline() {
    let grace = rules().mobile_grace_ms;
    for reported in [Online, Busy, Unavailable] {
        assert_eq!(presence_of(M::Online, &[dev(reported).mobile().synced_ago(29_999)]), reported);
        assert_eq!(presence_of(M::Online, &[dev(reported).mobile().synced_ago(30_000)]), Unavailable);
        assert_eq!(presence_of(M::Online, &[dev(reported).mobile().synced_ago(30_000 + grace - 1)]), Unavailable);
        assert_eq!(presence_of(M::Online, &[dev(reported).mobile().synced_ago(30_000 + grace)]), Offline);
    }
    assert_eq!(public(M::Online, &[dev(Online).mobile().synced_ago(40_000)]).active_kinds, vec![Mobile]);
    // Desktops get no grace; a phone that said offline is offline.
    assert_eq!(presence_of(M::Online, &[dev(Online).synced_ago(30_000)]), Offline);
    assert_eq!(presence_of(M::Online, &[dev(Offline).mobile().synced_ago(30_000)]), Offline);
    // A manual busy needs a reachable device, and a phone in its grace is one.
    assert_eq!(presence_of(M::Busy, &[dev(Online).mobile().synced_ago(40_000)]), Busy);
    let no_grace = PresenceRules { mobile_grace_ms: 0, ..rules() };
    assert_eq!(
        effective(M::Online, &[dev(Online).mobile().synced_ago(30_000)], NOW, &no_grace).public.presence,
        Offline
    );
}

#[test]
fn next_change_at_the_end_of_a_phone_grace() {
    let grace = rules().mobile_grace_ms;
    let phone = [dev(Unavailable).mobile().synced_ago(40_000).active_ago(120_000)];
    assert_eq!(next_change_at(M::Online, &phone, NOW, &rules()), Some(NOW - 40_000 + 30_000 + grace));
}

// --- manual status ---

#[test]
fn manual_busy_needs_a_live_device() {
    assert_eq!(presence_of(M::Busy, &[]), Offline);
    assert_eq!(presence_of(M::Busy, &[dev(Online).synced_ago(30_000)]), Offline);
    assert_eq!(presence_of(M::Busy, &[dev(Offline)]), Offline);
    assert_eq!(presence_of(M::Busy, &[dev(Unavailable)]), Busy);
    assert_eq!(presence_of(M::Busy, &[dev(Online).active_ago(600_000)]), Busy);
}

#[test]
fn manual_online_clears_override() {
    for reported in Presence::ALL {
        let devices = [dev(reported)];
        assert_eq!(presence_of(M::Online, &devices), reported);
    }
    assert_eq!(presence_of(M::Online, &[dev(Online).active_ago(400_000)]), Unavailable);
}

#[test]
fn manual_unavailable_caps_online() {
    let view = public(M::Unavailable, &[dev(Online)]);
    assert_eq!(view.presence, Unavailable);
    assert!(!view.currently_active, "currently_active is for online only");
    assert_eq!(presence_of(M::Unavailable, &[dev(Unavailable)]), Unavailable);
    assert_eq!(presence_of(M::Unavailable, &[dev(Offline)]), Offline);
}

#[test]
fn manual_unavailable_lets_device_busy_win() {
    assert_eq!(presence_of(M::Unavailable, &[dev(Online), dev(Busy)]), Busy);
}

#[test]
fn no_live_device_is_offline_whatever_the_manual_status() {
    let gone = [dev(Busy).synced_ago(60_000), dev(Online).synced_ago(31_000)];
    for manual in [M::Online, M::Unavailable, M::Busy, M::Offline] {
        for devices in [&gone[..], &[][..]] {
            let view = effective(manual, devices, NOW, &rules());
            assert_eq!(view.public.presence, Offline, "{manual:?}");
            assert_eq!(view.own.presence, Offline, "{manual:?}");
            assert!(!view.own.currently_active);
        }
    }
}

#[test]
fn hidden_user_is_offline_to_others_not_self() {
    let devices = [dev(Online).mobile(), dev(Unavailable)];
    let view = effective(M::Offline, &devices, NOW, &rules());
    assert_eq!(
        view.public,
        EffectivePresence {
            presence: Offline,
            last_active_ts: None,
            currently_active: false,
            active_kinds: vec![],
            hidden: true,
        }
    );
    assert_eq!(
        view.own,
        EffectivePresence {
            presence: Online,
            last_active_ts: Some(NOW),
            currently_active: true,
            active_kinds: vec![Desktop, Mobile],
            hidden: true,
        }
    );
    assert_eq!(view.for_viewer(false), &view.public);
    assert_eq!(view.for_viewer(true), &view.own);
}

#[test]
fn unhidden_views_are_the_same() {
    for manual in [M::Online, M::Unavailable, M::Busy] {
        let view = effective(manual, &[dev(Online)], NOW, &rules());
        assert_eq!(view.public, view.own);
        assert!(!view.public.hidden);
    }
}

// --- last_active_ts and currently_active ---

#[test]
fn last_active_is_the_max_over_all_devices() {
    assert_eq!(public(M::Online, &[]).last_active_ts, None);
    let devices = [dev(Online).active_ago(90_000), dev(Offline).synced_ago(100_000).active_ago(10_000)];
    let view = public(M::Online, &devices);
    assert_eq!(view.last_active_ts, Some(NOW - 10_000), "gone devices count too");
    assert!(view.currently_active);
    // Offline users still show when they were last active (seed 004).
    let gone = [dev(Online).synced_ago(40_000).active_ago(40_000)];
    assert_eq!(public(M::Online, &gone).last_active_ts, Some(NOW - 40_000));
}

#[test]
fn currently_active_only_within_a_minute() {
    assert!(public(M::Online, &[dev(Online).active_ago(59_999)]).currently_active);
    assert!(!public(M::Online, &[dev(Online).active_ago(60_000)]).currently_active);
    assert!(!public(M::Online, &[dev(Busy)]).currently_active, "online only");
    assert!(!public(M::Online, &[dev(Unavailable)]).currently_active);
    assert!(!public(M::Online, &[]).currently_active);
}

#[test]
fn proactive_means_raising_availability() {
    assert!(is_proactive(Offline, Unavailable));
    assert!(is_proactive(Unavailable, Online));
    assert!(is_proactive(Online, Busy));
    assert!(is_proactive(Offline, Busy));
    assert!(!is_proactive(Online, Unavailable));
    assert!(!is_proactive(Online, Online));
    assert!(!is_proactive(Busy, Offline));
}

#[test]
fn differs_for_others_ignores_last_active_moves_while_currently_active() {
    let a = public(M::Online, &[dev(Online).active_ago(10_000)]);
    let b = public(M::Online, &[dev(Online).active_ago(5_000)]);
    assert!(a.currently_active && b.currently_active);
    assert!(!a.differs_for_others(&b));
    assert_ne!(a, b);
}

#[test]
fn differs_for_others_reports_last_active_moves_while_not_currently_active() {
    let a = public(M::Online, &[dev(Unavailable).active_ago(100_000)]);
    let b = public(M::Online, &[dev(Unavailable).active_ago(90_000)]);
    assert!(a.differs_for_others(&b));
    assert!(!a.differs_for_others(&a.clone()));
}

#[test]
fn differs_for_others_reports_presence_flag_and_kind_changes() {
    let base = public(M::Online, &[dev(Online)]);
    let busy = public(M::Online, &[dev(Busy)]);
    let mobile = public(M::Online, &[dev(Online).mobile()]);
    let stale = public(M::Online, &[dev(Online).active_ago(60_000)]);
    let hidden = public(M::Offline, &[dev(Online)]);
    assert!(base.differs_for_others(&busy));
    assert!(base.differs_for_others(&mobile));
    assert!(base.differs_for_others(&stale));
    assert!(hidden.differs_for_others(&EffectivePresence::offline()));
}

// --- next_change_at ---

fn next(manual: ManualStatus, devices: &[DeviceState]) -> Option<i64> {
    next_change_at(manual, devices, NOW, &rules())
}

#[test]
fn next_change_at_device_timeout() {
    let devices = [dev(Busy).synced_ago(10_000)];
    assert_eq!(next(M::Online, &devices), Some(NOW + 20_000));
}

#[test]
fn next_change_at_idle() {
    let devices = [dev(Online).active_ago(200_000)];
    assert_eq!(next(M::Online, &devices), Some(NOW + 100_000));
}

#[test]
fn next_change_at_currently_active_runs_out() {
    let devices = [dev(Online).active_ago(15_000)];
    assert_eq!(next(M::Online, &devices), Some(NOW + 45_000));
}

#[test]
fn next_change_at_none_when_nothing_can_change() {
    assert_eq!(next(M::Online, &[]), None);
    assert_eq!(next(M::Online, &[dev(Busy).active_ago(100_000)]), None);
    assert_eq!(next(M::Busy, &[dev(Unavailable)]), None);
    assert_eq!(next(M::Online, &[dev(Online).synced_ago(50_000)]), None, "already gone");
}

#[test]
fn next_change_at_skips_changes_nobody_sees() {
    // One of two idle desktops going away changes nothing; the other one does.
    let devices = [
        dev(Unavailable).synced_ago(25_000).active_ago(100_000),
        dev(Unavailable).synced_ago(10_000).active_ago(100_000),
    ];
    assert_eq!(next(M::Online, &devices), Some(NOW + 20_000));
    // Manual busy hides the online device's idleness, not its timeout.
    let devices = [dev(Online).synced_ago(1_000).active_ago(290_000)];
    assert_eq!(next(M::Busy, &devices), Some(NOW + 29_000));
}

#[test]
fn next_change_at_hidden_user_follows_own_view() {
    let devices = [dev(Online).active_ago(30_000)];
    assert_eq!(next(M::Offline, &devices), Some(NOW + 30_000));
}

// --- wire names ---

#[test]
fn presence_parses_stable_and_msc3026_names() {
    for p in Presence::ALL {
        assert_eq!(p.as_str().parse::<Presence>(), Ok(p));
    }
    assert_eq!("org.matrix.msc3026.busy".parse::<Presence>(), Ok(Busy));
    assert!("free_for_chat".parse::<Presence>().is_err());
    assert!("Online".parse::<Presence>().is_err());
}

#[test]
fn presence_serde_uses_lowercase_names() {
    assert_eq!(serde_json::to_string(&Busy).unwrap(), r#""busy""#);
    assert_eq!(serde_json::to_string(&Unavailable).unwrap(), r#""unavailable""#);
    let busy: Presence = serde_json::from_str(r#""org.matrix.msc3026.busy""#).unwrap();
    assert_eq!(busy, Busy);
    assert!(serde_json::from_str::<Presence>(r#""away""#).is_err());
    assert_eq!(serde_json::to_string(&Mobile).unwrap(), r#""mobile""#);
    assert_eq!(DeviceKind::default(), Desktop);
    assert_eq!(serde_json::to_string(&M::Offline).unwrap(), r#""offline""#);
    assert_eq!(ManualStatus::default(), M::Online);
}

#[test]
fn presence_priority_order() {
    assert!(Busy > Online && Online > Unavailable && Unavailable > Offline);
    for p in Presence::ALL {
        assert_eq!(ManualStatus::from(p).is_hidden(), p == Offline);
    }
}

mod properties;
