//! The effective-presence engine (MSC3032): per-device reports and the manual status of every
//! user, merged with [`effective`] whenever an input changes or a deadline passes.
//!
//! - In memory per user. The manual status and status message are written to the database
//!   before they are acknowledged (group commit, [`StatusLog`]) and applied in memory after;
//!   the last-active time is flushed in batches (write-behind). A restart keeps all three.
//! - Timers live in one [`Timer`] (a deadline queue): a tick costs O(users whose deadline
//!   passed). Time is read from the injected [`Clock`], so tests move it by hand.
//! - A change is emitted only when the presence as others see it really changed; it gets a
//!   stream position and wakes exactly the users who may see it.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::access::PresenceAccess;
use super::outbox::PublicChanges;
use super::policy::PresenceMode;
use super::status_log::StatusLog;
use super::{
    effective, is_proactive, next_change_at, DeviceKind, DeviceState, EffectivePresence, EffectiveView, ManualStatus,
    Presence, PresenceRules,
};
use crate::accounts::Session;
use crate::error::Result;
use crate::ground::user_ids::{intern_ix, UserIx};
use crate::ground::{Clock, Notifier, StreamHub, Timer};
use crate::metrics::Metrics;
use crate::store::{StatusWrite, Store};

/// Device id of the synthetic, never-live device that keeps a user's last-active time across
/// restarts and logouts (so the merge stays the single source of truth).
const HISTORY_DEVICE: &str = "\u{0}history";

#[derive(Debug, Clone)]
struct DeviceEntry {
    state: DeviceState,
    in_flight: u32,
}

#[derive(Debug, Clone)]
struct UserEntry {
    manual: ManualStatus,
    status_msg: Option<String>,
    /// [`StatusLog`] sequence numbers of the manual status and status text applied last: an
    /// older write that commits first is never applied over a newer one.
    manual_seq: u64,
    status_seq: u64,
    devices: HashMap<String, DeviceEntry>,
    /// The latest merge result.
    view: EffectiveView,
    /// What others were last told; a new change is announced only if it differs from this.
    published: EffectivePresence,
    /// Stream position of the last change others can see / the user can see.
    public_pos: i64,
    own_pos: i64,
}

impl Default for UserEntry {
    fn default() -> Self {
        Self {
            manual: ManualStatus::Online,
            status_msg: None,
            manual_seq: 0,
            status_seq: 0,
            devices: HashMap::new(),
            view: EffectiveView { public: EffectivePresence::offline(), own: EffectivePresence::offline() },
            published: EffectivePresence::offline(),
            public_pos: 0,
            own_pos: 0,
        }
    }
}

impl UserEntry {
    fn device_states(&self) -> Vec<DeviceState> {
        self.devices.values().map(|d| d.state).collect()
    }

    fn public_status_msg(&self) -> Option<&str> {
        if self.manual.is_hidden() {
            None
        } else {
            self.status_msg.as_deref()
        }
    }
}

/// A user's presence as one viewer may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceSnapshot {
    pub user_id: String,
    pub presence: EffectivePresence,
    pub status_msg: Option<String>,
    /// Stream position of the change this snapshot reflects.
    pub pos: i64,
}

/// Told about every change others can see (the profile-room publisher listens here).
pub struct PresenceEngine {
    rules: PresenceRules,
    mode: PresenceMode,
    users: DashMap<String, UserEntry>,
    /// User -> when their effective presence next changes by itself.
    deadlines: Arc<Timer<String>>,
    clock: Clock,
    /// The newest public change per user, keyed by stream position (one entry per user).
    changes: Mutex<BTreeMap<i64, String>>,
    /// The same changes per viewer, for incremental syncs (`inbox.rs`).
    inboxes: inbox::Inboxes,
    dirty: Mutex<HashSet<String>>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    pub access: Arc<PresenceAccess>,
    store: Store,
    status_log: Arc<StatusLog>,
    /// Where public changes go to be written into profile rooms.
    public_changes: Arc<PublicChanges>,
    pub metrics: Arc<Metrics>,
    /// Told about every change of a public presence state (experiment log, console).
    observers: parking_lot::RwLock<Vec<Arc<dyn super::observe::ChangeObserver>>>,
    /// Users of other servers, as their servers announced them (`remote.rs`).
    remote: DashMap<String, remote::RemoteEntry>,
    /// Remote user -> when their presence decays to offline unless refreshed (seed 004 watchdog).
    remote_deadlines: Arc<Timer<String>>,
    remote_timeout_ms: std::sync::atomic::AtomicI64,
    /// Remote users changed since the last write-behind flush.
    remote_dirty: Mutex<HashSet<String>>,
    /// Where local public changes go to be sent to other servers (set when federation is on).
    federation_outbox: std::sync::OnceLock<Arc<super::federated::FederationOutbox>>,
}

impl PresenceEngine {
    // Each argument is a distinct collaborator named at the one call site (`app.rs`).
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        metrics: Arc<Metrics>,
        rules: PresenceRules,
        mode: PresenceMode,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        access: Arc<PresenceAccess>,
        store: Store,
        public_changes: Arc<PublicChanges>,
        clock: Clock,
    ) -> anyhow::Result<Arc<Self>> {
        let engine = Self {
            rules,
            mode,
            users: DashMap::new(),
            deadlines: Timer::new(clock.clone()),
            remote: DashMap::new(),
            remote_deadlines: Timer::new(clock.clone()),
            remote_timeout_ms: std::sync::atomic::AtomicI64::new(30 * 60_000),
            remote_dirty: Mutex::new(HashSet::new()),
            federation_outbox: std::sync::OnceLock::new(),
            clock,
            changes: Mutex::new(BTreeMap::new()),
            inboxes: inbox::Inboxes::new(access.server_name(), stream.current()),
            dirty: Mutex::new(HashSet::new()),
            stream,
            notifier,
            access,
            status_log: StatusLog::with_metrics(store.clone(), metrics.clone()),
            store,
            public_changes,
            metrics,
            observers: Default::default(),
        };
        let now = engine.clock.now_ms();
        let rows = if mode == PresenceMode::Disabled { vec![] } else { engine.store.load_presence().await? };
        for row in rows {
            let mut entry =
                UserEntry { manual: parse_manual(&row.manual), status_msg: row.status_msg, ..Default::default() };
            if let Some(ts) = row.last_active_ts {
                entry.devices.insert(HISTORY_DEVICE.into(), history_device(ts));
            }
            entry.view = effective(entry.manual, &entry.device_states(), now, &engine.rules);
            entry.published = entry.view.public.clone();
            engine.users.insert(row.user_id, entry);
        }
        if mode != PresenceMode::Disabled {
            engine.load_remote().await?;
        }
        Ok(Arc::new(engine))
    }

    pub fn rules(&self) -> &PresenceRules {
        &self.rules
    }

    pub fn mode(&self) -> PresenceMode {
        self.mode
    }

    /// The presence of `user_id` as the legacy paths (`GET …/status`, `/sync`'s `presence`,
    /// the presence list) may show it to `viewer`: nothing but `offline` when presence is
    /// disabled, and when it is untracked for anyone but the user themself.
    pub fn legacy_snapshot(&self, user_id: &str, viewer: &str) -> PresenceSnapshot {
        match self.mode {
            PresenceMode::Enabled => self.snapshot(user_id, viewer),
            PresenceMode::Untracked if user_id == viewer => self.snapshot(user_id, viewer),
            _ => PresenceSnapshot {
                user_id: user_id.into(),
                presence: EffectivePresence::offline(),
                status_msg: None,
                pos: 0,
            },
        }
    }

    /// Told about every change of a public presence state (experiment log, console).
    pub fn add_observer(&self, o: Arc<dyn super::observe::ChangeObserver>) {
        self.observers.write().push(o);
    }

    /// Run the deadline queue, the status committer and the write-behind flush until
    /// `shutdown` fires; flush on exit.
    pub fn start(self: &Arc<Self>, flush_every: std::time::Duration, workers: &crate::ground::Workers) {
        for committer in self.status_log.start(workers.signal()) {
            workers.track("status committer", committer);
        }
        let engine = self.clone();
        let timer = self.deadlines.spawn_measured(workers.signal(), move |due, now, late_ms| {
            let engine = engine.clone();
            async move {
                engine.metrics.presence_timer_lag_seconds.observe(late_ms as f64 / 1000.0);
                Metrics::add(&engine.metrics.presence_deadlines_fired, due.len() as u64);
                for user in due {
                    engine.update(&user, now, |_| {}).await;
                }
            }
        });
        workers.track("presence timer", timer);
        let engine = self.clone();
        let watchdog = self.remote_deadlines.spawn(workers.signal(), move |due, _now| {
            let engine = engine.clone();
            async move { engine.remote_timed_out(due).await }
        });
        workers.track("remote presence watchdog", watchdog);
        self.arm_loaded_remote();
        let engine = self.clone();
        let mut shutdown = workers.signal();
        workers.spawn("presence last-active flush", async move {
            let mut tick = tokio::time::interval(flush_every);
            loop {
                tokio::select! {
                    _ = tick.tick() => engine.flush().await,
                    _ = shutdown.changed() => { engine.flush().await; break; }
                }
            }
        });
    }

    /// Write the dirty users' last-active times in one transaction (write-behind; the manual
    /// status and status text are already durable, see [`StatusLog`]).
    pub async fn flush(&self) {
        self.flush_remote().await;
        let users: Vec<String> = std::mem::take(&mut *self.dirty.lock()).into_iter().collect();
        if users.is_empty() {
            return;
        }
        let rows: Vec<(String, i64)> = users
            .iter()
            .filter_map(|u| {
                let e = self.users.get(u)?;
                Some((u.clone(), e.devices.values().map(|d| d.state.last_active_ts).max()?))
            })
            .collect();
        Metrics::add(&self.metrics.presence_rows_written, rows.len() as u64);
        let _timer = self.metrics.presence_flush_seconds.start_timer();
        if let Err(e) = self.store.save_last_active(&rows).await {
            tracing::error!(error = %e, "presence flush failed; will retry");
            self.dirty.lock().extend(users);
        }
    }

    /// The presence of `user_id` as `viewer` sees it (their own view for themselves).
    pub fn snapshot(&self, user_id: &str, viewer: &str) -> PresenceSnapshot {
        if let Some(r) = self.remote.get(user_id) {
            return r.snapshot(user_id);
        }
        match self.users.get(user_id) {
            Some(e) if viewer == user_id => PresenceSnapshot {
                user_id: user_id.into(),
                presence: e.view.own.clone(),
                status_msg: e.status_msg.clone(),
                pos: e.own_pos.max(e.public_pos),
            },
            Some(e) => PresenceSnapshot {
                user_id: user_id.into(),
                presence: e.view.public.clone(),
                status_msg: e.public_status_msg().map(str::to_owned),
                pos: e.public_pos,
            },
            None => PresenceSnapshot {
                user_id: user_id.into(),
                presence: EffectivePresence::offline(),
                status_msg: None,
                pos: 0,
            },
        }
    }

    /// Whether others see `user_id` as anything but offline (one lookup, nothing copied: an
    /// initial sync asks this of every visible user).
    pub fn publicly_present(&self, user_id: &str) -> bool {
        self.users.get(user_id).is_some_and(|e| e.view.public.presence != Presence::Offline)
            || self.remote.get(user_id).is_some_and(|r| r.presence.presence != Presence::Offline)
    }

    /// Whether we hold any presence data for the user.
    pub fn knows(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id) || self.remote.contains_key(user_id)
    }

    /// Users with a public change in `(since, upto]`.
    pub fn changed_between(&self, since: i64, upto: i64) -> Vec<String> {
        if since >= upto {
            return vec![];
        }
        self.changes.lock().range(since + 1..=upto).map(|(_, u)| u.clone()).collect()
    }

    /// Users with a public change in `(since, upto]` that may concern `viewer`: those whose
    /// change was delivered to the viewer's inbox, else (a token older than the inbox keeps)
    /// everyone who changed, as [`Self::changed_between`]. By number (`ground::user_ids`): a
    /// poll reads some fifty at 10,000 × 100 (issue #13), and numbers are deduplicated and
    /// checked against the viewer's set without hashing or copying a name. The caller still
    /// checks that the viewer may see each of them.
    pub fn changed_for(&self, viewer: &str, since: i64, upto: i64) -> Vec<UserIx> {
        if since >= upto {
            return vec![];
        }
        match self.inboxes.read(viewer, since, upto, self.clock.now_ms()) {
            Some(users) => {
                Metrics::inc(&self.metrics.presence_inbox_reads);
                users
            }
            None => {
                Metrics::inc(&self.metrics.presence_inbox_fallbacks);
                self.changed_between(since, upto).iter().map(|u| intern_ix(u).1).collect()
            }
        }
    }

    /// Position of the user's last change visible to themselves.
    pub fn own_position(&self, user_id: &str) -> i64 {
        self.users.get(user_id).map(|e| e.own_pos.max(e.public_pos)).unwrap_or(0)
    }

    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }
}

// Admin introspection (console): a child module so it may read the engine's private state.
#[path = "admin_view.rs"]
mod admin_view;
mod inbox;
mod inputs;
mod remote;
mod update;
pub use admin_view::{DeviceInspection, UserInspection};
pub use inputs::SyncInFlight;
pub use remote::RemotePresenceUpdate;

fn new_device(now: i64) -> DeviceEntry {
    DeviceEntry {
        state: DeviceState {
            reported: Presence::Online,
            kind: DeviceKind::Desktop,
            last_sync_ts: now,
            syncing: false,
            last_active_ts: 0,
            lifted: false,
        },
        in_flight: 0,
    }
}

fn history_device(last_active_ts: i64) -> DeviceEntry {
    DeviceEntry {
        state: DeviceState {
            reported: Presence::Offline,
            kind: DeviceKind::Desktop,
            last_sync_ts: i64::MIN / 2,
            syncing: false,
            last_active_ts,
            lifted: false,
        },
        in_flight: 0,
    }
}

/// Run `fut` in its own task and wait for it: cancelling the caller (client gone) does not
/// cancel the work, which must finish what it started (commit, then apply in memory).
async fn spawn_to_completion<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(fut).await.map_err(|e| crate::error::MatrixError::Internal(e.into()))?
}

/// Availability order of manual statuses, for "raising one's availability" (seed 000).
fn manual_rank(m: ManualStatus) -> u8 {
    match m {
        ManualStatus::Offline => 0,
        ManualStatus::Unavailable => 1,
        ManualStatus::Online => 2,
        ManualStatus::Busy => 3,
    }
}

pub fn manual_str(m: ManualStatus) -> &'static str {
    match m {
        ManualStatus::Online => "online",
        ManualStatus::Unavailable => "unavailable",
        ManualStatus::Busy => "busy",
        ManualStatus::Offline => "offline",
    }
}

fn parse_manual(s: &str) -> ManualStatus {
    match s {
        "unavailable" => ManualStatus::Unavailable,
        "busy" => ManualStatus::Busy,
        "offline" => ManualStatus::Offline,
        _ => ManualStatus::Online,
    }
}

#[cfg(test)]
mod tests;
