//! Durable manual status: a `200` to `PUT /presence/{userId}/status` (and to the owner's own
//! `m.status` in the profile room) means the database has it.
//!
//! Group commit: requests queue in arrival order; one task writes everything queued in one
//! transaction and answers the whole group when it committed. While a transaction commits, the
//! next group queues up, so N concurrent PUTs cost about one commit, not N.
//!
//! On PostgreSQL, where a commit waits for the WAL flush, users are spread over a few queues by
//! a hash of their id, each with its own committer, so several groups commit at once (the
//! server merges their flushes); one user's writes always go through the same queue. SQLite has
//! one writer at a time, so one queue.
//!
//! Every write gets a sequence number when it is queued, under its queue's lock, so for each
//! user the order of the queue, of the database writes and of the sequence numbers is one
//! order. The engine applies a write in memory only after it committed, and skips a write
//! older than the one it already applied: memory and database end on the same value, and the
//! profile room (which follows memory) is never ahead of the database.
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{MatrixError, Result};
use crate::metrics::Metrics;
use crate::store::{Backend, StatusWrite, Store};

/// Most writes in one transaction; more queued requests wait for the next one.
const MAX_GROUP: usize = 512;
/// Committers running at once on PostgreSQL.
const POSTGRES_QUEUES: usize = 4;

struct Request {
    write: StatusWrite,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

pub struct StatusLog {
    queues: Vec<Mutex<mpsc::UnboundedSender<Request>>>,
    receivers: Mutex<Vec<mpsc::UnboundedReceiver<Request>>>,
    seq: AtomicU64,
    store: Store,
    metrics: Arc<Metrics>,
}

impl StatusLog {
    /// A log whose lags are counted in a registry of its own (tests of the log alone).
    pub fn new(store: Store) -> Arc<Self> {
        Self::with_metrics(store, Arc::new(Metrics::default()))
    }

    /// A log that reports its queue + commit lag and group sizes to the server's `metrics`.
    pub fn with_metrics(store: Store, metrics: Arc<Metrics>) -> Arc<Self> {
        let n = if store.backend == Backend::Postgres { POSTGRES_QUEUES } else { 1 };
        let (queues, receivers) = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                (Mutex::new(tx), rx)
            })
            .unzip();
        Arc::new(Self { queues, receivers: Mutex::new(receivers), seq: AtomicU64::new(0), store, metrics })
    }

    /// Run the committers until `shutdown` fires; what is queued by then is still written.
    /// The committer tasks are returned so the caller can wait for them at shutdown.
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *self.receivers.lock())
            .into_iter()
            .map(|rx| tokio::spawn(run_committer(self.store.clone(), self.metrics.clone(), rx, shutdown.clone())))
            .collect()
    }

    /// Queue `write` and wait until it is committed. Returns the write's sequence number.
    pub async fn write(&self, write: StatusWrite) -> Result<u64> {
        let (done, committed) = oneshot::channel();
        let queued = std::time::Instant::now();
        let user = match &write {
            StatusWrite::Manual { user_id, .. } | StatusWrite::StatusMsg { user_id, .. } => user_id,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut hasher);
        let queue = &self.queues[hasher.finish() as usize % self.queues.len()];
        let seq = {
            let tx = queue.lock();
            let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
            tx.send(Request { write, done })
                .map_err(|_| MatrixError::Unknown("The server is shutting down; try again".into()))?;
            seq
        };
        match committed.await {
            Ok(Ok(())) => {
                self.metrics.presence_status_commit_seconds.observe(queued.elapsed().as_secs_f64());
                Ok(seq)
            }
            Ok(Err(e)) => Err(MatrixError::Internal(anyhow::anyhow!("could not store the presence status: {e}"))),
            Err(_) => Err(MatrixError::Unknown("The server is shutting down; try again".into())),
        }
    }
}

/// One queue's committer: everything queued while the previous group committed is the next
/// group.
async fn run_committer(
    store: Store,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => break },
            _ = shutdown.changed() => {
                rx.close();
                let mut rest = Vec::new();
                while let Some(r) = rx.recv().await {
                    rest.push(r);
                }
                if !rest.is_empty() {
                    metrics.presence_status_group_writes.observe(rest.len() as f64);
                    commit_group(&store, rest).await;
                }
                break;
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        metrics.presence_status_group_writes.observe(group.len() as f64);
        commit_group(&store, group).await;
    }
}

/// One transaction for the group. If it fails, each write is retried alone, so one bad row
/// fails only its own request, never the others queued with it.
async fn commit_group(store: &Store, group: Vec<Request>) {
    let writes: Vec<&StatusWrite> = group.iter().map(|r| &r.write).collect();
    match store.save_status_batch(&writes).await {
        Ok(()) => {
            for r in group {
                let _ = r.done.send(Ok(()));
            }
        }
        Err(e) if group.len() == 1 => {
            tracing::error!(error = %e, "could not store a presence status");
            for r in group {
                let _ = r.done.send(Err(e.to_string()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, n = group.len(), "presence status group failed; writing one by one");
            for r in group {
                let res = store.save_status_batch(&[&r.write]).await.map_err(|e| e.to_string());
                if let Err(e) = &res {
                    tracing::error!(error = %e, "could not store a presence status");
                }
                let _ = r.done.send(res);
            }
        }
    }
}
