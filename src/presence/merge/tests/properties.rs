//! Properties of the merge over arbitrary inputs (proptest).
use super::*;

fn arb_presence() -> impl Strategy<Value = Presence> {
    prop::sample::select(Presence::ALL.to_vec())
}

fn arb_manual() -> impl Strategy<Value = ManualStatus> {
    prop::sample::select(vec![M::Online, M::Unavailable, M::Busy, M::Offline])
}

fn arb_rules() -> impl Strategy<Value = PresenceRules> {
    prop_oneof![
        Just(PresenceRules::default()),
        (1i64..100_000, 1i64..600_000, 1i64..120_000, 0i64..200_000).prop_map(|(t, i, c, g)| PresenceRules {
            device_timeout_ms: t,
            idle_after_ms: i,
            currently_active_ms: c,
            mobile_grace_ms: g,
        }),
    ]
}

fn arb_device() -> impl Strategy<Value = DeviceState> {
    (
        arb_presence(),
        prop::sample::select(vec![Desktop, Mobile]),
        -200_000i64..=1_000,
        any::<bool>(),
        -1_000_000i64..=1_000,
        any::<bool>(),
    )
        .prop_map(|(reported, kind, sync, syncing, active, lifted)| DeviceState {
            reported,
            kind,
            last_sync_ts: NOW + sync,
            syncing,
            last_active_ts: NOW + active,
            lifted,
        })
}

fn arb_devices() -> impl Strategy<Value = Vec<DeviceState>> {
    prop::collection::vec(arb_device(), 0..6)
}

proptest! {
    #[test]
    fn prop_independent_of_device_order(
        (devices, shuffled) in arb_devices()
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        manual in arb_manual(),
        rules in arb_rules(),
        dt in 0i64..1_000_000,
    ) {
        let now = NOW + dt;
        prop_assert_eq!(
            effective(manual, &devices, now, &rules),
            effective(manual, &shuffled, now, &rules)
        );
        prop_assert_eq!(
            next_change_at(manual, &devices, now, &rules),
            next_change_at(manual, &shuffled, now, &rules)
        );
    }

    #[test]
    fn prop_busy_dominates(
        devices in arb_devices(),
        busy in arb_device(),
        syncing in any::<bool>(),
        at in any::<prop::sample::Index>(),
        manual in arb_manual(),
        rules in arb_rules(),
    ) {
        // Make `busy` a live busy device, one way or the other.
        let mut busy = busy;
        busy.reported = Busy;
        busy.syncing = syncing;
        if !syncing {
            busy.last_sync_ts = NOW;
        }
        let mut devices = devices;
        devices.insert(at.index(devices.len() + 1), busy);
        let view = effective(manual, &devices, NOW, &rules);
        prop_assert_eq!(view.own.presence, Busy);
        if manual.is_hidden() {
            prop_assert_eq!(view.public.presence, Offline);
        } else {
            prop_assert_eq!(view.public.presence, Busy);
        }
    }

    #[test]
    fn prop_busy_comes_from_a_live_device_or_the_manual_status(
        devices in arb_devices(),
        manual in arb_manual(),
        rules in arb_rules(),
    ) {
        let any_live_busy = devices
            .iter()
            .any(|d| d.reported == Busy && d.is_live(NOW, &rules));
        let view = effective(manual, &devices, NOW, &rules);
        if !any_live_busy && manual != M::Busy {
            prop_assert_ne!(view.own.presence, Busy);
            prop_assert_ne!(view.public.presence, Busy);
        }
    }

    #[test]
    fn prop_hidden_is_offline_to_others_not_to_self(
        devices in arb_devices(),
        rules in arb_rules(),
    ) {
        let hidden = effective(M::Offline, &devices, NOW, &rules);
        let open = effective(M::Online, &devices, NOW, &rules);
        prop_assert_eq!(
            hidden.public,
            EffectivePresence { hidden: true, ..EffectivePresence::offline() }
        );
        prop_assert_eq!(hidden.own, EffectivePresence { hidden: true, ..open.own });
    }

    #[test]
    fn prop_removing_a_silent_device_changes_no_presence(
        devices in arb_devices(),
        extra in arb_device(),
        make_offline in any::<bool>(),
        gone_for in 0i64..100_000,
        at in any::<prop::sample::Index>(),
        manual in arb_manual(),
        rules in arb_rules(),
    ) {
        let mut extra = extra;
        if make_offline {
            extra.reported = Offline;
            extra.lifted = false;
        } else {
            extra.syncing = false;
            extra.last_sync_ts = NOW - rules.device_timeout_ms - rules.mobile_grace_ms - gone_for;
        }
        let mut with = devices.clone();
        with.insert(at.index(devices.len() + 1), extra);
        let a = effective(manual, &devices, NOW, &rules);
        let b = effective(manual, &with, NOW, &rules);
        for (x, y) in [(&a.public, &b.public), (&a.own, &b.own)] {
            prop_assert_eq!(x.presence, y.presence);
            prop_assert_eq!(&x.active_kinds, &y.active_kinds);
            prop_assert_eq!(x.hidden, y.hidden);
        }
        // Its pro-active events are the user's: they matter only if they are the latest.
        let latest = devices.iter().map(|d| d.last_active_ts).max();
        if latest.is_some_and(|t| t >= extra.last_active_ts) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn prop_time_only_moves_presence_down(
        devices in arb_devices(),
        manual in arb_manual(),
        rules in arb_rules(),
        t1 in 0i64..2_000_000,
        dt in 0i64..2_000_000,
    ) {
        let early = effective(manual, &devices, NOW + t1, &rules);
        let late = effective(manual, &devices, NOW + t1 + dt, &rules);
        prop_assert!(late.public.presence <= early.public.presence);
        prop_assert!(late.own.presence <= early.own.presence);
    }

    #[test]
    fn prop_next_change_at_is_exact(
        devices in arb_devices(),
        manual in arb_manual(),
        rules in arb_rules(),
        fractions in prop::collection::vec(0.0f64..1.0, 3),
    ) {
        let now_view = effective(manual, &devices, NOW, &rules);
        match next_change_at(manual, &devices, NOW, &rules) {
            Some(at) => {
                prop_assert!(at > NOW);
                let span = (at - NOW) as f64;
                let mut samples = vec![NOW, at - 1];
                samples.extend(fractions.iter().map(|f| NOW + (span * f) as i64));
                for t in samples {
                    prop_assert_eq!(&effective(manual, &devices, t, &rules), &now_view, "t={}", t);
                }
                prop_assert_ne!(&effective(manual, &devices, at, &rules), &now_view);
            }
            None => {
                prop_assert_eq!(
                    &effective(manual, &devices, NOW + 1_000_000_000, &rules),
                    &now_view
                );
            }
        }
    }
}
