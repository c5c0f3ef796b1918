//! Running a [`DeadlineQueue`] on the clock: the one loop body every timer of the server shares
//! (presence deadlines, typing expiry). The queue stays pure; this is where the clock is read.
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::DeadlineQueue;
use crate::rooms::now_ms;

/// Sleep until the queue's next deadline (or until `rescheduled` says an earlier one was
/// added), then return the keys that are due with the time they were popped at; `None` once
/// `shutdown` fires. Costs nothing while no deadline is near.
pub async fn next_due<K: Eq + Hash + Clone>(
    queue: &Mutex<DeadlineQueue<K>>,
    rescheduled: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Vec<K>, i64)> {
    next_due_late(queue, rescheduled, shutdown).await.map(|(due, now, _)| (due, now))
}

/// [`next_due`], also returning the earliest deadline among the due keys, so the caller can
/// measure how late the timer fired (`now - earliest`).
pub async fn next_due_late<K: Eq + Hash + Clone>(
    queue: &Mutex<DeadlineQueue<K>>,
    rescheduled: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Vec<K>, i64, i64)> {
    loop {
        let next = queue.lock().next_deadline();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = rescheduled.notified() => continue,
            _ = shutdown.changed() => return None,
        }
        let now = now_ms();
        let mut q = queue.lock();
        let earliest = q.next_deadline().unwrap_or(now);
        let due = q.pop_due(now);
        if !due.is_empty() {
            return Some((due, now, earliest));
        }
    }
}
