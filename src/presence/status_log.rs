//! Durable manual status: a `200` to `PUT /presence/{userId}/status` (and to the owner's own
//! `m.status` in the profile room) means the database has it.
//!
//! Group commit: requests queue in arrival order; one task writes everything queued in one
//! transaction and answers the whole group when it committed. While a transaction commits, the
//! next group queues up, so N concurrent PUTs cost about one commit, not N.
//!
//! Every write gets a sequence number when it is queued, under the same lock, so the order of
//! the queue, of the database writes and of the sequence numbers is one order. The engine
//! applies a write in memory only after it committed, and skips a write older than the one it
//! already applied: memory and database end on the same value, and the profile room (which
//! follows memory) is never ahead of the database.
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{MatrixError, Result};
use crate::store::{StatusWrite, Store};

/// Most writes in one transaction; more queued requests wait for the next one.
const MAX_GROUP: usize = 512;

struct Request {
    write: StatusWrite,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

struct Queue {
    seq: u64,
    tx: mpsc::UnboundedSender<Request>,
}

pub struct StatusLog {
    queue: Mutex<Queue>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
    store: Store,
}

impl StatusLog {
    pub fn new(store: Store) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self { queue: Mutex::new(Queue { seq: 0, tx }), rx: Mutex::new(Some(rx)), store })
    }

    /// Run the committer until `shutdown` fires; what is queued by then is still written.
    pub fn start(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(mut rx) = self.rx.lock().take() else { return };
        let store = self.store.clone();
        tokio::spawn(async move {
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
                commit_group(&store, group).await;
            }
        });
    }

    /// Queue `write` and wait until it is committed. Returns the write's sequence number.
    pub async fn write(&self, write: StatusWrite) -> Result<u64> {
        let (done, committed) = oneshot::channel();
        let seq = {
            let mut q = self.queue.lock();
            q.seq += 1;
            q.tx.send(Request { write, done })
                .map_err(|_| MatrixError::Unknown("The server is shutting down; try again".into()))?;
            q.seq
        };
        match committed.await {
            Ok(Ok(())) => Ok(seq),
            Ok(Err(e)) => Err(MatrixError::Internal(anyhow::anyhow!("could not store the presence status: {e}"))),
            Err(_) => Err(MatrixError::Unknown("The server is shutting down; try again".into())),
        }
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
