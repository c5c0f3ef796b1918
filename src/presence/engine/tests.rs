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
    let lists = PresenceLists::load(store.clone(), stream.clone(), notifier.clone()).await.unwrap();
    let access = Arc::new(PresenceAccess::new(rooms, lists, None));
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
