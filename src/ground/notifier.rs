//! Per-user wake-ups for long-polling `/sync` (and legacy `/events`). A change wakes only the
//! users who may see it: no thundering herd over every waiting connection.
//!
//! A waiter subscribes *before* it reads state and then awaits the subscription, so a change
//! that lands between the read and the wait is never missed (the classic lost-wakeup race).
//!
//! Wake-ups come in two kinds (README "Presence delivery window"): [`Notifier::wake`] for
//! changes a client must get at once (messages, state, to-device, typing, …) and
//! [`Notifier::wake_presence`] for presence-only changes, which a long-poll may hold for
//! `presence_delivery_window_ms` to answer several of them in one response.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

/// The newest positions a user was woken for: any change, and the newest change that is
/// not presence-only. Two words per waiting user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks {
    any: i64,
    urgent: i64,
}

type Users = Arc<DashMap<Box<str>, watch::Sender<Marks>>>;

#[derive(Default)]
pub struct Notifier {
    users: Users,
    /// Set when the server stops: every long-poll answers at once with what it has.
    closing: watch::Sender<bool>,
    /// Waiting subscriptions woken so far (the `seed_sync_wakeups_total` metric).
    woken: AtomicU64,
    /// Long-polls parked right now, waiting for a wake-up (see [`Notifier::park`]).
    parked: Arc<AtomicU64>,
}

/// Counts one parked long-poll while it lives.
pub struct Parked(Arc<AtomicU64>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What woke a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeKind {
    /// Only presence changed (legacy `presence`, profile-room `m.presence`/`m.status`): the
    /// long-poll may wait a little for more.
    Presence,
    /// Anything else: answer now.
    Urgent,
}

/// One wake-up: the stream position of the newest change and whether any change since the
/// previous wake-up was urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub pos: i64,
    pub kind: WakeKind,
}

/// A subscription to one user's changes. Dropping the last subscription of a user frees the
/// user's channel, also when the request holding it is cancelled (client gone mid long-poll).
pub struct Subscription {
    rx: Option<watch::Receiver<Marks>>,
    users: Users,
    user: Box<str>,
    /// The newest urgent position this subscription has reported.
    seen_urgent: i64,
}

impl Notifier {
    pub fn subscribe(&self, user_id: &str) -> Subscription {
        let tx = self.users.entry(user_id.into()).or_insert_with(|| watch::channel(Marks::default()).0);
        let mut rx = tx.subscribe();
        let seen_urgent = rx.borrow_and_update().urgent;
        Subscription { rx: Some(rx), users: self.users.clone(), user: user_id.into(), seen_urgent }
    }

    /// Tell `user_ids` that a change at stream position `pos` concerns them and must be
    /// delivered at once.
    pub fn wake<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64) {
        self.send(user_ids, pos, true);
    }

    /// Tell `user_ids` that a presence-only change at `pos` concerns them (a long-poll may
    /// batch it with others for up to the delivery window).
    pub fn wake_presence<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64) {
        self.send(user_ids, pos, false);
    }

    fn send<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64, urgent: bool) {
        let mut woken = 0;
        for user in user_ids {
            let Some(tx) = self.users.get(user) else { continue };
            if tx.receiver_count() == 0 {
                continue;
            }
            let woke = tx.send_if_modified(|cur| {
                let mut modified = false;
                if pos > cur.any {
                    cur.any = pos;
                    modified = true;
                }
                // Positions complete out of order: an urgent change below `any` still counts.
                if urgent && pos > cur.urgent {
                    cur.urgent = pos;
                    modified = true;
                }
                modified
            });
            woken += u64::from(woke);
        }
        if woken > 0 {
            self.woken.fetch_add(woken, Ordering::Relaxed);
        }
    }

    /// The server is stopping: end every long-poll now and any that starts later at once.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Notifier::close`] was called (at once if it was already).
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn wakeups(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }

    pub fn waiting_users(&self) -> usize {
        self.users.len()
    }

    /// Mark a long-poll as parked (it has read everything and now only waits) while the
    /// guard lives: the `seed_sync_parked_long_polls` gauge.
    pub fn park(&self) -> Parked {
        self.parked.fetch_add(1, Ordering::Relaxed);
        Parked(self.parked.clone())
    }

    pub fn parked_polls(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }
}

impl Subscription {
    /// Resolves with the stream position of the change that woke us.
    pub async fn changed(&mut self) -> i64 {
        self.next().await.pos
    }

    /// Resolves with the next wake-up and its kind: `Urgent` if any change since the previous
    /// wake-up (or the subscription) was not presence-only.
    pub async fn next(&mut self) -> Wake {
        let Some(rx) = self.rx.as_mut() else { return std::future::pending().await };
        if rx.changed().await.is_err() {
            // The sender was released; nothing will ever wake us, so wait for the timeout.
            std::future::pending::<()>().await;
        }
        let marks = *rx.borrow_and_update();
        let kind = if marks.urgent > self.seen_urgent { WakeKind::Urgent } else { WakeKind::Presence };
        self.seen_urgent = self.seen_urgent.max(marks.urgent);
        Wake { pos: marks.any.max(marks.urgent), kind }
    }

    /// The delivery window: after the presence-only wake-up `first`, keep taking wake-ups
    /// until `end` or an urgent one (which ends it at once); returns the newest position seen.
    pub async fn collect_presence(&mut self, first: Wake, end: tokio::time::Instant) -> i64 {
        let mut pos = first.pos;
        if first.kind == WakeKind::Urgent {
            return pos;
        }
        loop {
            tokio::select! {
                next = self.next() => {
                    pos = pos.max(next.pos);
                    if next.kind == WakeKind::Urgent {
                        return pos;
                    }
                }
                _ = tokio::time::sleep_until(end) => return pos,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.users.remove_if(&self.user, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presence_and_urgent_wakes_are_told_apart() {
        let n = Notifier::default();
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 5);
        assert_eq!(sub.next().await, Wake { pos: 5, kind: WakeKind::Presence });
        n.wake(["@a:x"], 7);
        n.wake_presence(["@a:x"], 8);
        assert_eq!(sub.next().await, Wake { pos: 8, kind: WakeKind::Urgent });
        // An urgent change completing below the newest position is still urgent.
        n.wake_presence(["@a:x"], 10);
        n.wake(["@a:x"], 9);
        assert_eq!(sub.next().await, Wake { pos: 10, kind: WakeKind::Urgent });
        assert_eq!(n.wakeups(), 5);
    }

    #[tokio::test]
    async fn a_new_subscription_ignores_earlier_wakes_and_frees_the_channel() {
        let n = Notifier::default();
        let first = n.subscribe("@a:x");
        n.wake(["@a:x"], 3);
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 4);
        assert_eq!(sub.next().await.kind, WakeKind::Presence);
        drop(first);
        drop(sub);
        assert_eq!(n.waiting_users(), 0);
        // Nobody waits: waking costs nothing and counts nothing.
        n.wake(["@a:x"], 9);
        assert_eq!(n.wakeups(), 2);
    }

    #[tokio::test]
    async fn the_window_collects_presence_until_its_end_or_an_urgent_wake() {
        use std::time::Duration;
        let n = Notifier::default();
        let mut sub = n.subscribe("@a:x");
        n.wake_presence(["@a:x"], 1);
        let first = sub.next().await;
        n.wake_presence(["@a:x"], 2);
        let end = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(sub.collect_presence(first, end).await, 2);
        assert!(tokio::time::Instant::now() >= end, "the window ran to its end");

        n.wake_presence(["@a:x"], 3);
        let first = sub.next().await;
        n.wake_presence(["@a:x"], 4);
        n.wake(["@a:x"], 5);
        let far = tokio::time::Instant::now() + Duration::from_secs(600);
        let got = tokio::time::timeout(Duration::from_secs(60), sub.collect_presence(first, far)).await;
        assert_eq!(got, Ok(5), "an urgent wake-up ends the window at once");
    }
}
