//! The outgoing queue (spec "Transactions"): one queue per destination server, one
//! transaction in flight per destination, everything queued meanwhile batched into the next
//! (at most 50 PDUs and 100 EDUs), exponential backoff after a failure.
//!
//! What is durable: a PDU is written to `federation_outbox` by the journal task (one
//! transaction per batch of `send_pdu` calls, within milliseconds of the call) before any
//! destination sees it, and deleted only when the destination answered 200. A PDU queued
//! less than one journal write before a crash is lost from the queue (the event itself is in
//! the room; the peer can fetch it with `get_missing_events`/backfill); a clean shutdown
//! writes everything first. EDUs are ephemeral and kept in memory only: typing notifications
//! older than [`TYPING_EDU_TTL`] are dropped instead of sent, a newer typing EDU for the same
//! (room, user) replaces a queued one, and a full EDU queue drops its oldest entry.
mod data;
mod destination;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use super::Federation;

/// Spec limits of one transaction.
pub const MAX_PDUS_PER_TXN: usize = 50;
pub const MAX_EDUS_PER_TXN: usize = 100;
/// A queued `m.typing` EDU older than this is stale (receivers time typing out after about
/// 30 s anyway) and is dropped instead of sent.
pub const TYPING_EDU_TTL: Duration = Duration::from_secs(30);
/// Largest number of `send_pdu` calls written to the outbox in one database transaction.
const JOURNAL_BATCH: usize = 512;

/// A PDU on its way to the journal.
struct JournalEntry {
    destinations: Vec<String>,
    event_id: String,
    pdu: String,
}

/// An EDU waiting for its destination's next transaction.
struct QueuedEdu {
    edu: Value,
    queued: Instant,
    /// (room, user) of a typing EDU: a newer one replaces it.
    typing_key: Option<(String, String)>,
}

#[derive(Default)]
struct DestState {
    /// A worker task is running for this destination.
    running: bool,
    /// Something was queued since the worker last looked.
    dirty: bool,
    edus: VecDeque<QueuedEdu>,
    /// Consecutive failed attempts, and when the next attempt is due.
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// One destination's queue state.
struct Destination {
    name: String,
    state: Mutex<DestState>,
    /// Wakes a worker waiting out its backoff when the peer was heard from.
    peer_up: Notify,
}

/// The queue; owned by [`Federation`], started by [`Federation::start_sender`].
pub struct Sender {
    journal_tx: mpsc::UnboundedSender<JournalEntry>,
    journal_rx: Mutex<Option<mpsc::UnboundedReceiver<JournalEntry>>>,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
    /// Next `federation_outbox.seq` (set from the table at start).
    next_seq: AtomicI64,
    /// Destination workers, aborted at shutdown (what they were sending stays queued).
    tasks: Mutex<JoinSet<()>>,
    /// Distinguishes our transaction ids across restarts.
    txn_prefix: String,
    txn_counter: AtomicI64,
}

impl Default for Sender {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            journal_tx: tx,
            journal_rx: Mutex::new(Some(rx)),
            destinations: Mutex::default(),
            next_seq: AtomicI64::new(1),
            tasks: Mutex::new(JoinSet::new()),
            txn_prefix: crate::rooms::now_ms().to_string(),
            txn_counter: AtomicI64::new(0),
        }
    }
}

impl Sender {
    fn destination(&self, name: &str) -> Arc<Destination> {
        self.destinations
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Destination { name: name.to_owned(), state: Mutex::default(), peer_up: Notify::new() })
            })
            .clone()
    }

    fn next_txn_id(&self) -> String {
        format!("{}.{}", self.txn_prefix, self.txn_counter.fetch_add(1, Ordering::Relaxed))
    }
}

impl Federation {
    /// Queue a PDU (`event_id` is its id, `pdu` its federation JSON) for every server in
    /// `destinations`; this server, peers the allow/deny lists refuse and invalid names are
    /// skipped. Returns at once: the journal task writes it to the outbox, then the
    /// destinations' workers send it (see the module docs for what is durable when).
    pub fn send_pdu(&self, destinations: impl IntoIterator<Item = String>, event_id: &str, pdu: &Value) {
        let mut destinations: Vec<String> = destinations.into_iter().filter(|d| self.may_send_to(d)).collect();
        destinations.sort();
        destinations.dedup();
        if destinations.is_empty() {
            return;
        }
        let entry = JournalEntry { destinations, event_id: event_id.to_owned(), pdu: pdu.to_string() };
        if self.sender.journal_tx.send(entry).is_err() {
            tracing::warn!(event_id, "federation journal stopped; PDU not queued");
        }
    }

    /// Queue an EDU (`{"edu_type", "content"}`) for `destination`'s next transaction (in
    /// memory only; see the module docs for what may be dropped).
    pub fn send_edu(&self, destination: &str, edu_type: &str, content: Value) {
        if !self.may_send_to(destination) {
            return;
        }
        let typing_key = (edu_type == "m.typing").then(|| {
            let s = |k: &str| content.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            (s("room_id"), s("user_id"))
        });
        let edu = serde_json::json!({"edu_type": edu_type, "content": content});
        let dest = self.sender.destination(destination);
        let kind = &["edu"];
        {
            let mut st = dest.state.lock();
            if let Some(key) = &typing_key {
                st.edus.retain(|e| e.typing_key.as_ref() != Some(key));
            }
            while st.edus.len() >= self.config.send_max_queued_edus.max(1) {
                st.edus.pop_front();
                self.metrics.federation.failed.with_label_values(kind).inc();
            }
            st.edus.push_back(QueuedEdu { edu, queued: Instant::now(), typing_key });
        }
        self.metrics.federation.queued.with_label_values(kind).inc();
        self.kick(&dest);
    }

    /// The peer sent us a signed request, so it is up: a destination waiting out a backoff
    /// is retried now.
    pub fn peer_is_up(&self, server: &str) {
        let Some(dest) = self.sender.destinations.lock().get(server).cloned() else { return };
        let was_failing = {
            let mut st = dest.state.lock();
            let was = st.retry_at.is_some();
            if was {
                st.retry_at = None;
                st.failures = 0;
                dest.peer_up.notify_one();
            }
            was
        };
        if was_failing {
            self.peer_came_back(server);
        }
    }

    /// Destinations waiting to retry after a failure.
    pub fn destinations_backing_off(&self) -> usize {
        let dests: Vec<_> = self.sender.destinations.lock().values().cloned().collect();
        dests.iter().filter(|d| d.state.lock().retry_at.is_some()).count()
    }

    fn may_send_to(&self, destination: &str) -> bool {
        self.enabled()
            && destination != self.server_name.as_str()
            && <&ruma::ServerName>::try_from(destination).is_ok()
            && self.peer_allowed(destination)
    }

    /// Make sure `dest` has a worker that will look at its queue again.
    fn kick(&self, dest: &Arc<Destination>) {
        {
            let mut st = dest.state.lock();
            if st.running {
                st.dirty = true;
                return;
            }
            st.running = true;
        }
        let Some(fed) = self.me.upgrade() else { return };
        let mut tasks = self.sender.tasks.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(destination::run(fed, dest.clone()));
    }

    /// Start the journal and resume every destination with PDUs left in the outbox (from
    /// before a restart). The journal writes what is still in its channel at shutdown, then
    /// stops the destination workers.
    pub async fn start_sender(self: &Arc<Self>, workers: &crate::ground::Workers) -> anyhow::Result<()> {
        let Some(rx) = self.sender.journal_rx.lock().take() else { return Ok(()) };
        if !self.enabled() {
            return Ok(());
        }
        self.sender.next_seq.store(self.store.fed_outbox_max_seq().await? + 1, Ordering::SeqCst);
        let pending = self.store.fed_outbox_destinations().await?;
        for d in &pending {
            self.kick(&self.sender.destination(d));
        }
        if !pending.is_empty() {
            tracing::info!(destinations = pending.len(), "resuming queued federation transactions");
        }
        workers.spawn("federation journal", journal(self.clone(), rx, workers.signal()));
        Ok(())
    }
}

/// Write queued PDUs to the outbox in batches, then wake their destinations.
async fn journal(
    fed: Arc<Federation>,
    mut rx: mpsc::UnboundedReceiver<JournalEntry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, JOURNAL_BATCH) => n == 0,
            _ = shutdown.changed() => {
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                }
                true
            }
        };
        if !batch.is_empty() {
            write_batch(&fed, std::mem::take(&mut batch)).await;
        }
        if stopping {
            break;
        }
    }
    fed.sender.tasks.lock().abort_all();
}

async fn write_batch(fed: &Federation, batch: Vec<JournalEntry>) {
    let now = crate::rooms::now_ms();
    let mut rows = Vec::new();
    for e in &batch {
        for d in &e.destinations {
            let seq = fed.sender.next_seq.fetch_add(1, Ordering::SeqCst);
            rows.push(data::OutboxRow { seq, destination: d, event_id: &e.event_id, pdu: &e.pdu, queued_ts: now });
        }
    }
    let mut result = fed.store.fed_outbox_insert(&rows).await;
    for _ in 0..3 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = fed.store.fed_outbox_insert(&rows).await;
    }
    let m = &fed.metrics.federation;
    if let Err(e) = result {
        tracing::error!(error = %e, pdus = rows.len(), "could not queue PDUs for federation; dropped");
        m.failed.with_label_values(&["pdu"]).inc_by(rows.len() as u64);
        return;
    }
    m.queued.with_label_values(&["pdu"]).inc_by(rows.len() as u64);
    let mut dests: Vec<&str> = rows.iter().map(|r| r.destination).collect();
    dests.sort_unstable();
    dests.dedup();
    for d in dests {
        match fed.store.fed_outbox_trim(d, fed.config.send_max_queued_pdus).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(destination = d, dropped = n, "federation queue full; oldest PDUs dropped");
                m.failed.with_label_values(&["pdu"]).inc_by(n);
            }
            Err(e) => tracing::warn!(destination = d, error = %e, "could not trim the federation queue"),
        }
        fed.kick(&fed.sender.destination(d));
    }
}
