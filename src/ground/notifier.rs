//! Per-user wake-ups for long-polling `/sync` (and legacy `/events`). A change wakes only the
//! users who may see it: no thundering herd over every waiting connection.
//!
//! A waiter subscribes *before* it reads state and then awaits the subscription, so a change
//! that lands between the read and the wait is never missed (the classic lost-wakeup race).
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

#[derive(Default)]
pub struct Notifier {
    users: Arc<DashMap<String, watch::Sender<i64>>>,
    /// Set when the server stops: every long-poll answers at once with what it has.
    closing: watch::Sender<bool>,
    /// Waiting subscriptions woken so far (the `seed_sync_wakeups_total` metric).
    woken: std::sync::atomic::AtomicU64,
}

/// A subscription to one user's changes; `changed()` resolves with the newest position.
/// Dropping the last subscription of a user frees the user's channel, also when the request
/// holding it is cancelled (client gone mid long-poll).
pub struct Subscription {
    rx: Option<watch::Receiver<i64>>,
    users: Arc<DashMap<String, watch::Sender<i64>>>,
    user: String,
}

impl Notifier {
    pub fn subscribe(&self, user_id: &str) -> Subscription {
        let tx = self.users.entry(user_id.to_owned()).or_insert_with(|| watch::channel(0).0);
        let mut rx = tx.subscribe();
        rx.mark_unchanged();
        Subscription { rx: Some(rx), users: self.users.clone(), user: user_id.to_owned() }
    }

    /// Tell `user_ids` that a change at stream position `pos` concerns them.
    pub fn wake<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>, pos: i64) {
        for user in user_ids {
            if let Some(tx) = self.users.get(user) {
                if tx.receiver_count() == 0 {
                    continue;
                }
                let woke = tx.send_if_modified(|cur| {
                    if pos > *cur {
                        *cur = pos;
                        true
                    } else {
                        false
                    }
                });
                if woke {
                    self.woken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
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
        self.woken.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn waiting_users(&self) -> usize {
        self.users.len()
    }
}

impl Subscription {
    /// Resolves with the stream position of the change that woke us.
    pub async fn changed(&mut self) -> i64 {
        let Some(rx) = self.rx.as_mut() else { return std::future::pending().await };
        if rx.changed().await.is_err() {
            // The sender was released; nothing will ever wake us, so wait for the timeout.
            std::future::pending::<()>().await;
        }
        *rx.borrow_and_update()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.users.remove_if(&self.user, |_, tx| tx.receiver_count() == 0);
    }
}
