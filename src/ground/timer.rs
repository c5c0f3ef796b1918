//! [`Timer`]: a [`DeadlineQueue`] with its wake-up and its task, shared by every timer of the
//! server (presence deadlines, typing expiry, peek expiry). "Schedule, and wake the task if
//! the new deadline is the earliest" is written here once (the mini-redis `db.rs` idea: the
//! expiry set, its `Notify` and the purge task kept together). The queue stays pure; the
//! clock is read here, through the injected [`Clock`].
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::{Clock, DeadlineQueue};

pub struct Timer<K> {
    queue: Mutex<DeadlineQueue<K>>,
    /// Told when a deadline earlier than every other one was added.
    rescheduled: Notify,
    clock: Clock,
}

impl<K: Eq + Hash + Clone + Send + 'static> Timer<K> {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Self { queue: Mutex::new(DeadlineQueue::new()), rescheduled: Notify::new(), clock })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Set `key`'s deadline to `at_ms` (replacing any it had), waking the task if it is now
    /// the earliest.
    pub fn schedule(&self, key: K, at_ms: i64) {
        let mut q = self.queue.lock();
        let earlier = q.next_deadline().is_none_or(|n| at_ms < n);
        q.schedule(key, at_ms);
        if earlier {
            self.rescheduled.notify_one();
        }
    }

    pub fn cancel(&self, key: &K) -> Option<i64> {
        self.queue.lock().cancel(key)
    }

    /// The deadline `key` has, if any.
    pub fn deadline(&self, key: &K) -> Option<i64> {
        self.queue.lock().deadline(key)
    }

    /// Keys with a deadline.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }

    /// Run the timer until `shutdown` fires: `on_due(keys, now)` gets the keys whose deadline
    /// passed, with the clock reading they were popped at. Costs nothing while no deadline is near.
    pub fn spawn<F, Fut>(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
        mut on_due: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(Vec<K>, i64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.spawn_measured(shutdown, move |due, now, _late_ms| on_due(due, now))
    }

    /// [`Timer::spawn`], also telling `on_due` how late it fired: `now` minus the earliest
    /// deadline among the due keys (the presence timer-lag metric).
    pub fn spawn_measured<F, Fut>(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        mut on_due: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(Vec<K>, i64, i64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some((due, now, earliest)) = this.next_due(&mut shutdown).await {
                on_due(due, now, (now - earliest).max(0)).await;
            }
        })
    }

    /// Sleep until the next deadline (or until an earlier one is scheduled), then pop what is
    /// due; `None` once `shutdown` fires.
    async fn next_due(&self, shutdown: &mut watch::Receiver<bool>) -> Option<(Vec<K>, i64, i64)> {
        loop {
            // Registered before the queue is read, so a schedule in between is not missed.
            let rescheduled = self.rescheduled.notified();
            let next = self.queue.lock().next_deadline();
            let sleep = async {
                match next {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = rescheduled => continue,
                _ = shutdown.changed() => return None,
            }
            let now = self.clock.now_ms();
            let mut q = self.queue.lock();
            let earliest = q.next_deadline().unwrap_or(now);
            let due = q.pop_due(now);
            drop(q);
            if !due.is_empty() {
                return Some((due, now, earliest));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    type Fired = mpsc::UnboundedReceiver<(Vec<&'static str>, i64)>;

    async fn recv(rx: &mut Fired) -> (Vec<&'static str>, i64) {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("fired in time").expect("open")
    }

    fn started(clock: &Clock) -> (Arc<Timer<&'static str>>, Fired, watch::Sender<bool>) {
        let timer = Timer::new(clock.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        timer.spawn(stop_rx, move |due, now| {
            let _ = tx.send((due, now));
            async {}
        });
        (timer, rx, stop)
    }

    #[tokio::test]
    async fn fires_when_the_clock_passes_the_deadline_and_not_before() {
        let clock = Clock::manual(0);
        let (timer, mut rx, _stop) = started(&clock);
        timer.schedule("a", 100);
        clock.advance(99);
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "fired early");
        clock.advance(1);
        assert_eq!(recv(&mut rx).await, (vec!["a"], 100));
        assert!(timer.is_empty());
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_a_task_sleeping_on_a_later_one() {
        let clock = Clock::manual(0);
        let (timer, mut rx, _stop) = started(&clock);
        timer.schedule("late", 1_000);
        tokio::task::yield_now().await;
        timer.schedule("early", 10);
        clock.advance(10);
        assert_eq!(recv(&mut rx).await, (vec!["early"], 10));
        clock.advance(990);
        assert_eq!(recv(&mut rx).await, (vec!["late"], 1_000));
    }

    #[tokio::test]
    async fn a_cancelled_deadline_never_fires() {
        let clock = Clock::manual(0);
        let (timer, mut rx, _stop) = started(&clock);
        timer.schedule("gone", 5);
        timer.schedule("kept", 6);
        timer.cancel(&"gone");
        clock.advance(10);
        assert_eq!(recv(&mut rx).await, (vec!["kept"], 10));
    }

    #[tokio::test]
    async fn shutdown_ends_the_task() {
        let clock = Clock::manual(0);
        let timer: Arc<Timer<&'static str>> = Timer::new(clock.clone());
        let (stop, stop_rx) = watch::channel(false);
        let task = timer.spawn(stop_rx, |_, _| async {});
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("stopped").expect("joined");
    }
}
