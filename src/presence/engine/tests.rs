//! The engine's timers on a manual clock: deadlines fire when the clock passes them, not
//! before, and no test sleeps through a presence window.
use std::time::Duration;

use super::*;
use crate::ground::Clock;
use crate::presence::lists::PresenceLists;
use crate::rooms::Rooms;

const START: i64 = 1_700_000_000_000;

struct Harness {
    engine: Arc<PresenceEngine>,
    notifier: Arc<Notifier>,
    clock: Clock,
    _workers: crate::ground::Workers,
    dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness() -> Harness {
    let dir = std::env::temp_dir().join(format!("seed-engine-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}/seed.db?mode=rwc", dir.display()), 2).await.unwrap();
    let stream = StreamHub::new(store.clone()).await.unwrap();
    let notifier = Arc::new(Notifier::default());
    let accounts = Arc::new(crate::accounts::Accounts::new(store.clone(), "x".into(), 8, 1).unwrap());
    let rooms = Arc::new(
        Rooms::new(
            crate::federation::Federation::new(&crate::config::Config::default(), store.clone(), Default::default())
                .await
                .unwrap(),
            store.clone(),
            stream.clone(),
            notifier.clone(),
            accounts,
            "x".into(),
            65_536,
        )
        .await
        .unwrap(),
    );
    let lists = PresenceLists::load(store.clone(), "x", stream.clone(), notifier.clone()).await.unwrap();
    let access = Arc::new(PresenceAccess::new(rooms, lists, None, 1000));
    let clock = Clock::manual(START);
    let engine = PresenceEngine::new(
        Arc::new(Metrics::default()),
        PresenceRules::default(),
        PresenceMode::Enabled,
        stream,
        notifier.clone(),
        access,
        store,
        Arc::new(PublicChanges::default()),
        clock.clone(),
    )
    .await
    .unwrap();
    let workers = crate::ground::Workers::default();
    engine.start(Duration::from_secs(3600), &workers);
    Harness { engine, notifier, clock, _workers: workers, dir }
}

fn alice() -> Session {
    Session { user_id: "@alice:x".into(), device_id: "PHONE".into() }
}

fn presence_of(h: &Harness, user: &str) -> Presence {
    h.engine.snapshot(user, user).presence.presence
}

/// A device that stops syncing goes offline when the device timeout passes on the clock.
#[tokio::test]
async fn a_silent_device_goes_offline_when_the_clock_passes_its_timeout() {
    let h = harness().await;
    let s = alice();
    h.engine.sync_started(&s, Presence::Online, None).await;
    h.engine.sync_finished(&s).await;
    assert_eq!(presence_of(&h, &s.user_id), Presence::Online);
    assert_eq!(h.engine.pending_deadlines(), 1);

    let mut woken = h.notifier.subscribe(&s.user_id);
    h.clock.advance(PresenceRules::default().device_timeout_ms - 1);
    tokio::task::yield_now().await;
    assert_eq!(presence_of(&h, &s.user_id), Presence::Online, "changed before the deadline");

    h.clock.advance(1);
    tokio::time::timeout(Duration::from_secs(5), woken.changed()).await.expect("the timer fired");
    assert_eq!(presence_of(&h, &s.user_id), Presence::Offline);
}

/// A device that keeps a `/sync` open but does nothing turns `unavailable` after the idle
/// timeout (seed 001), at that clock reading.
#[tokio::test]
async fn an_idle_device_becomes_unavailable_at_the_idle_timeout() {
    let h = harness().await;
    let s = alice();
    h.engine.sync_started(&s, Presence::Online, None).await;
    let mut woken = h.notifier.subscribe(&s.user_id);
    let idle = PresenceRules::default().idle_after_ms;
    h.clock.advance(idle - 1);
    tokio::task::yield_now().await;
    assert_eq!(presence_of(&h, &s.user_id), Presence::Online);
    h.clock.advance(1);
    loop {
        tokio::time::timeout(Duration::from_secs(5), woken.changed()).await.expect("the timer fired");
        if presence_of(&h, &s.user_id) == Presence::Unavailable {
            break;
        }
    }
    assert_eq!(h.engine.snapshot(&s.user_id, &s.user_id).presence.last_active_ts, Some(START));
}

fn remote_update(presence: Presence, last_active_ts: i64, status: &str) -> RemotePresenceUpdate {
    RemotePresenceUpdate {
        user_id: "@bob:y".into(),
        presence,
        last_active_ts: Some(last_active_ts),
        currently_active: false,
        status_msg: Some(status.into()),
        active_kinds: vec![],
    }
}

/// Presence announced by another server (issue #15): a change takes a stream position and wakes
/// the viewers given; a re-announcement that moves nothing visible (last-active by less than a
/// minute) takes none; and without a refresh the user decays to offline when the watchdog's
/// deadline passes on the clock, not before.
#[tokio::test]
async fn remote_presence_changes_refreshes_and_the_watchdog() {
    let h = harness().await;
    h.engine.set_remote_timeout_ms(10_000);
    let bob = "@bob:y";
    let viewers = HashSet::from(["@alice:x".to_owned()]);
    let mut woken = h.notifier.subscribe("@alice:x");

    assert!(h.engine.apply_remote(remote_update(Presence::Online, START - 1_000, "hi"), &viewers));
    tokio::time::timeout(Duration::from_secs(5), woken.changed()).await.expect("viewer woken");
    let first = h.engine.snapshot(bob, "@alice:x");
    assert_eq!(first.presence.presence, Presence::Online);
    assert_eq!(first.status_msg.as_deref(), Some("hi"));
    assert_eq!(h.engine.changed_between(first.pos - 1, first.pos), vec![bob.to_owned()]);
    assert!(h.engine.publicly_present(bob) && h.engine.knows(bob));

    // A refresh 5 s later whose last-active moved by transit time only: no change.
    h.clock.advance(5_000);
    assert!(!h.engine.apply_remote(remote_update(Presence::Online, START - 990, "hi"), &viewers));
    assert_eq!(h.engine.snapshot(bob, "@alice:x").pos, first.pos);
    // A new status text is a change.
    assert!(h.engine.apply_remote(remote_update(Presence::Online, START - 990, "back soon"), &viewers));

    // The refresh moved the deadline to START + 15 s.
    h.clock.advance(9_999);
    tokio::task::yield_now().await;
    assert_eq!(h.engine.snapshot(bob, "@alice:x").presence.presence, Presence::Online, "decayed early");
    h.clock.advance(1);
    let started = std::time::Instant::now();
    while h.engine.snapshot(bob, "@alice:x").presence.presence != Presence::Offline {
        assert!(started.elapsed() < Duration::from_secs(5), "the watchdog never fired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let decayed = h.engine.snapshot(bob, "@alice:x");
    assert!(decayed.pos > first.pos);
    assert!(!decayed.presence.currently_active);
}
