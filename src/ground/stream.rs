//! The one stream that orders every change the server makes (room events, presence,
//! peeks, ...). A change takes a position with [`StreamHub::allocate`] and publishes it by
//! dropping/completing the guard; readers only ever see positions below which every change
//! is complete (the watermark), so a `/sync` never skips a change that commits late.
use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::store::Store;

/// Positions are reserved in the database in blocks, so tokens handed out before a restart
/// are never reused after it, even for changes that are never written (presence).
const RESERVATION_BLOCK: i64 = 10_000;

struct Inner {
    next: i64,
    in_flight: BTreeSet<i64>,
    reserved_up_to: i64,
}

pub struct StreamHub {
    inner: Mutex<Inner>,
    watermark: watch::Sender<i64>,
    store: Store,
}

/// A position being written. Completing (or dropping) it lets the watermark pass it.
pub struct StreamPos {
    hub: Arc<StreamHub>,
    pub pos: i64,
    done: bool,
}

impl StreamHub {
    pub async fn new(store: Store) -> anyhow::Result<Arc<Self>> {
        let start = store.max_stream_position().await?;
        let reserved_up_to = start + RESERVATION_BLOCK;
        store.reserve_stream_positions(reserved_up_to).await?;
        let (watermark, _) = watch::channel(start);
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner { next: start + 1, in_flight: BTreeSet::new(), reserved_up_to }),
            watermark,
            store,
        }))
    }

    /// The highest position below which every change is complete.
    pub fn current(&self) -> i64 {
        *self.watermark.borrow()
    }

    /// Take the next position. Cheap and synchronous (callable under a lock): the database
    /// reservation of the next block is written in the background, half a block ahead.
    pub fn allocate(self: &Arc<Self>) -> StreamPos {
        let (pos, reserve) = {
            let mut inner = self.inner.lock();
            let pos = inner.next;
            inner.next += 1;
            inner.in_flight.insert(pos);
            let reserve = if pos > inner.reserved_up_to - RESERVATION_BLOCK / 2 {
                inner.reserved_up_to += RESERVATION_BLOCK;
                Some(inner.reserved_up_to)
            } else {
                None
            };
            (pos, reserve)
        };
        if let Some(up_to) = reserve {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.reserve_stream_positions(up_to).await {
                    tracing::error!(error = %e, "could not reserve stream positions");
                }
            });
        }
        StreamPos { hub: self.clone(), pos, done: false }
    }

    fn finish(&self, pos: i64) {
        let new_mark = {
            let mut inner = self.inner.lock();
            inner.in_flight.remove(&pos);
            match inner.in_flight.first() {
                Some(first) => first - 1,
                None => inner.next - 1,
            }
        };
        self.watermark.send_if_modified(|mark| {
            if new_mark > *mark {
                *mark = new_mark;
                true
            } else {
                false
            }
        });
    }

    /// The highest position handed out so far (complete or not).
    pub fn allocated(&self) -> i64 {
        self.inner.lock().next - 1
    }

    /// Wait until every change up to `pos` is complete (normally immediate).
    pub async fn wait_for(&self, pos: i64) {
        let mut rx = self.watermark.subscribe();
        let _ = rx.wait_for(|mark| *mark >= pos).await;
    }
}

impl StreamPos {
    pub fn complete(mut self) {
        self.done = true;
        self.hub.finish(self.pos);
    }
}

impl Drop for StreamPos {
    fn drop(&mut self) {
        if !self.done {
            self.hub.finish(self.pos);
        }
    }
}
