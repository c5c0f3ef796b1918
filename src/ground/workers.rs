//! [`Workers`]: the one lifecycle of the server's background work (presence timer and
//! write-behind flush, status committers, profile-room publisher, peek and typing expiry,
//! change log, history retention). Each service starts its tasks through it; shutdown signals
//! them all once and then waits for each to finish its last flush, so a stopping server
//! neither flushes twice nor exits while a write is still in flight (tuwunel's service
//! manager idea).
use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Workers {
    signal: watch::Sender<bool>,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Workers {
    fn default() -> Self {
        Self { signal: watch::channel(false).0, tasks: Mutex::new(Vec::new()) }
    }
}

impl Workers {
    /// The shutdown signal a task selects on: it changes once, to `true`.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.subscribe()
    }

    /// Run `task` (which must return soon after [`Workers::signal`] fires) as a tracked worker.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.track(name, tokio::spawn(task));
    }

    /// Track a task started elsewhere (e.g. by a [`super::Timer`]).
    pub fn track(&self, name: &'static str, handle: JoinHandle<()>) {
        self.tasks.lock().push((name, handle));
    }

    /// Workers still tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tasks.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.lock().is_empty()
    }

    /// Signal shutdown and wait up to `grace` in all for every worker to finish; a worker
    /// still running then is aborted (and logged). Calling it again does nothing.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.signal.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut handle) in tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(worker = name, error = %e, "background worker failed"),
                Err(_) => {
                    tracing::warn!(worker = name, "background worker still running at shutdown; aborted");
                    handle.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn stop_signals_every_worker_once_and_waits_for_its_last_flush() {
        let workers = Workers::default();
        let flushed = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let mut signal = workers.signal();
            let flushed = flushed.clone();
            workers.spawn("test", async move {
                let _ = signal.changed().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                flushed.fetch_add(1, Ordering::SeqCst);
            });
        }
        workers.stop(Duration::from_secs(5)).await;
        assert_eq!(flushed.load(Ordering::SeqCst), 3, "stop returned before every worker flushed");
        assert!(workers.is_empty());
        workers.stop(Duration::from_secs(5)).await;
        assert_eq!(flushed.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_worker_that_ignores_the_signal_is_aborted_after_the_grace() {
        let workers = Workers::default();
        workers.spawn("stuck", std::future::pending());
        let started = tokio::time::Instant::now();
        workers.stop(Duration::from_millis(50)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
