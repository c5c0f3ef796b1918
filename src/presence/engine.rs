//! The effective-presence engine (MSC3032): per-device reports and the manual status of every
//! user, merged with [`effective`] whenever an input changes or a deadline passes.
//!
//! - In memory per user. The manual status and status message are written to the database
//!   before they are acknowledged (group commit, [`StatusLog`]) and applied in memory after;
//!   the last-active time is flushed in batches (write-behind). A restart keeps all three.
//! - Timers live in one [`DeadlineQueue`]: a tick costs O(users whose deadline passed).
//! - A change is emitted only when the presence as others see it really changed; it gets a
//!   stream position and wakes exactly the users who may see it.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::access::PresenceAccess;
use super::policy::PresenceMode;
use super::status_log::StatusLog;
use super::{
    effective, is_proactive, next_change_at, DeadlineQueue, DeviceKind, DeviceState, EffectivePresence, EffectiveView,
    ManualStatus, Presence, PresenceRules,
};
use crate::accounts::Session;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::rooms::now_ms;
use crate::store::{StatusWrite, Store};
use crate::sync::{Notifier, StreamHub};

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
pub trait PresenceListener: Send + Sync {
    fn on_public_change(&self, snapshot: &PresenceSnapshot);
}

pub struct PresenceEngine {
    rules: PresenceRules,
    mode: PresenceMode,
    users: DashMap<String, UserEntry>,
    deadlines: Mutex<DeadlineQueue<String>>,
    timer: Notify,
    /// The newest public change per user, keyed by stream position (one entry per user).
    changes: Mutex<BTreeMap<i64, String>>,
    dirty: Mutex<HashSet<String>>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    pub access: Arc<PresenceAccess>,
    store: Store,
    status_log: Arc<StatusLog>,
    listeners: parking_lot::RwLock<Vec<Arc<dyn PresenceListener>>>,
    pub metrics: Arc<Metrics>,
    /// Told about every change of a public presence state (experiment log, console).
    observers: parking_lot::RwLock<Vec<Arc<dyn super::observe::ChangeObserver>>>,
}

/// What a change touched, to be announced after the user's entry is unlocked.
struct Emitted {
    public: Option<PresenceSnapshot>,
    own_pos: Option<i64>,
    change: Option<super::observe::EffectiveChange>,
}

impl PresenceEngine {
    pub async fn new(
        metrics: Arc<Metrics>,
        rules: PresenceRules,
        mode: PresenceMode,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        access: Arc<PresenceAccess>,
        store: Store,
    ) -> anyhow::Result<Arc<Self>> {
        let engine = Self {
            rules,
            mode,
            users: DashMap::new(),
            deadlines: Mutex::new(DeadlineQueue::new()),
            timer: Notify::new(),
            changes: Mutex::new(BTreeMap::new()),
            dirty: Mutex::new(HashSet::new()),
            stream,
            notifier,
            access,
            status_log: StatusLog::with_metrics(store.clone(), metrics.clone()),
            store,
            listeners: Default::default(),
            metrics,
            observers: Default::default(),
        };
        let now = now_ms();
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

    pub fn add_listener(&self, l: Arc<dyn PresenceListener>) {
        self.listeners.write().push(l);
    }

    /// Told about every change of a public presence state (experiment log, console).
    pub fn add_observer(&self, o: Arc<dyn super::observe::ChangeObserver>) {
        self.observers.write().push(o);
    }

    /// Run the deadline queue, the status committer and the write-behind flush until
    /// `shutdown` fires; flush on exit.
    pub fn start(self: &Arc<Self>, flush_every: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        self.status_log.start(shutdown.clone());
        let engine = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            while let Some((due, now, at)) =
                super::timer::next_due_late(&engine.deadlines, &engine.timer, &mut stop).await
            {
                engine.metrics.presence_timer_lag_seconds.observe((now - at).max(0) as f64 / 1000.0);
                Metrics::add(&engine.metrics.presence_deadlines_fired, due.len() as u64);
                for user in due {
                    engine.update(&user, now, |_| {}).await;
                }
            }
        });
        let engine = self.clone();
        tokio::spawn(async move {
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

    /// A `/sync` from this device started, reporting `report` (MSC3032 automatic presence).
    pub async fn sync_started(&self, session: &Session, report: Presence, kind: Option<DeviceKind>) {
        let now = now_ms();
        self.update(&session.user_id, now, |e| {
            let fresh = !e.devices.contains_key(&session.device_id);
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            // Seed 000: raising one's availability is a pro-active event.
            let was_live = !fresh && dev.state.is_live(now, &self.rules);
            let old = if was_live { dev.state.effective_report() } else { Presence::Offline };
            // A lift by activity (seed 001) lasts until the device reports something new;
            // repeating the same report is not news (msc/README.md §7).
            if !was_live || report != dev.state.reported {
                dev.state.lifted = false;
            }
            dev.in_flight += 1;
            dev.state.syncing = true;
            dev.state.last_sync_ts = now;
            if let Some(k) = kind {
                dev.state.kind = k;
            }
            if is_proactive(old, report) || dev.state.last_active_ts == 0 {
                dev.state.last_active_ts = now;
            }
            dev.state.reported = report;
        })
        .await;
    }

    /// The `/sync` returned; the device stays live for `device_timeout_ms`.
    pub async fn sync_finished(&self, session: &Session) {
        let now = now_ms();
        self.update(&session.user_id, now, |e| {
            if let Some(dev) = e.devices.get_mut(&session.device_id) {
                dev.in_flight = dev.in_flight.saturating_sub(1);
                dev.state.syncing = dev.in_flight > 0;
                dev.state.last_sync_ts = now;
            }
        })
        .await;
    }

    /// A pro-active event from this device: sending an event, a typing notification, a read
    /// receipt or read marker. It resets the device's idle timer and lifts an `unavailable` or
    /// `offline` report to `online` until the device's next different report (seed 001 "any
    /// activity sets the user back to online").
    pub async fn activity(&self, session: &Session) {
        let now = now_ms();
        self.update(&session.user_id, now, |e| {
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            dev.state.last_active_ts = now;
            // Acting through the API is a sign of life, like a sync.
            dev.state.last_sync_ts = now;
            dev.state.lifted = true;
        })
        .await;
    }

    /// `PUT /presence/{userId}/status`: the manual status and the status message, durable when
    /// this returns `Ok`. Setting it is also a sign of life from the device that set it (it is
    /// in use right now).
    ///
    /// Runs in its own task: once queued, the write is committed and applied even if the client
    /// goes away, so memory never falls behind the database.
    pub async fn set_manual(
        self: &Arc<Self>,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        let this = self.clone();
        let session = session.clone();
        spawn_to_completion(async move { this.set_manual_durably(&session, presence, status_msg).await }).await
    }

    async fn set_manual_durably(
        &self,
        session: &Session,
        presence: Presence,
        status_msg: Option<String>,
    ) -> Result<()> {
        let manual = ManualStatus::from(presence);
        let write = StatusWrite::Manual {
            user_id: session.user_id.clone(),
            manual: manual_str(manual).into(),
            status_msg: status_msg.clone(),
        };
        let seq = self.status_log.write(write).await?;
        let now = now_ms();
        self.update(&session.user_id, now, |e| {
            let raises = manual_rank(manual) > manual_rank(e.manual);
            if seq > e.manual_seq {
                e.manual_seq = seq;
                e.manual = manual;
            }
            if seq > e.status_seq {
                e.status_seq = seq;
                e.status_msg = status_msg;
            }
            let fresh = !e.devices.contains_key(&session.device_id);
            let dev = e.devices.entry(session.device_id.clone()).or_insert_with(|| new_device(now));
            dev.state.last_sync_ts = now;
            if raises || fresh {
                dev.state.last_active_ts = now;
            }
        })
        .await;
        Ok(())
    }

    /// The owner set `m.status` in their profile room directly: the status message follows,
    /// the manual presence is left alone (one truth for both routes). Durable when `Ok`.
    pub async fn set_status_msg(self: &Arc<Self>, session: &Session, status_msg: Option<String>) -> Result<()> {
        let this = self.clone();
        let user_id = session.user_id.clone();
        spawn_to_completion(async move {
            let write = StatusWrite::StatusMsg { user_id: user_id.clone(), status_msg: status_msg.clone() };
            let seq = this.status_log.write(write).await?;
            this.update(&user_id, now_ms(), |e| {
                if seq > e.status_seq {
                    e.status_seq = seq;
                    e.status_msg = status_msg;
                }
            })
            .await;
            Ok(())
        })
        .await
    }

    /// Startup reconciliation (after a crash the profile room may hold a newer last-active
    /// time than the write-behind flush saved): the later of the two wins.
    pub fn adopt_last_active(&self, user_id: &str, ts: i64) {
        let mut entry = self.users.entry(user_id.to_owned()).or_default();
        let known = entry.devices.values().map(|d| d.state.last_active_ts).max().unwrap_or(0);
        if ts > known {
            entry.devices.insert(HISTORY_DEVICE.into(), history_device(ts));
            let view = effective(entry.manual, &entry.device_states(), now_ms(), &self.rules);
            entry.published = view.public.clone();
            entry.view = view;
            self.dirty.lock().insert(user_id.to_owned());
        }
    }

    /// Announce the user's presence again although it did not change (their display name or
    /// avatar did, which legacy `m.presence` events carry, seed 000).
    pub async fn republish(&self, user_id: &str) {
        let pos = self.stream.allocate();
        let snapshot = {
            let mut entry = self.users.entry(user_id.to_owned()).or_default();
            let mut changes = self.changes.lock();
            if entry.public_pos > 0 {
                changes.remove(&entry.public_pos);
            }
            changes.insert(pos.pos, user_id.to_owned());
            entry.public_pos = pos.pos;
            entry.own_pos = pos.pos;
            PresenceSnapshot {
                user_id: user_id.to_owned(),
                presence: entry.view.public.clone(),
                status_msg: entry.public_status_msg().map(str::to_owned),
                pos: pos.pos,
            }
        };
        let p = pos.pos;
        pos.complete();
        self.notifier.wake([user_id], p);
        if let Ok(viewers) = self.access.viewers_of(user_id).await {
            self.notifier.wake(viewers.iter().map(String::as_str), p);
        }
        let _ = snapshot;
    }

    /// Logout: the device is no longer a presence source; its last activity is kept.
    pub async fn remove_device(&self, session: &Session) {
        let now = now_ms();
        self.update(&session.user_id, now, |e| {
            if let Some(dev) = e.devices.remove(&session.device_id) {
                let ts = dev
                    .state
                    .last_active_ts
                    .max(e.devices.get(HISTORY_DEVICE).map(|h| h.state.last_active_ts).unwrap_or(0));
                e.devices.insert(HISTORY_DEVICE.into(), history_device(ts));
            }
        })
        .await;
    }

    /// The presence of `user_id` as `viewer` sees it (their own view for themselves).
    pub fn snapshot(&self, user_id: &str, viewer: &str) -> PresenceSnapshot {
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

    /// Whether we hold any presence data for the user.
    pub fn knows(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// Users with a public change in `(since, upto]`.
    pub fn changed_between(&self, since: i64, upto: i64) -> Vec<String> {
        if since >= upto {
            return vec![];
        }
        self.changes.lock().range(since + 1..=upto).map(|(_, u)| u.clone()).collect()
    }

    /// Position of the user's last change visible to themselves.
    pub fn own_position(&self, user_id: &str) -> i64 {
        self.users.get(user_id).map(|e| e.own_pos.max(e.public_pos)).unwrap_or(0)
    }

    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.lock().len()
    }

    /// Apply `change` to the user's inputs, re-run the merge, and announce what changed.
    async fn update(&self, user_id: &str, now: i64, change: impl FnOnce(&mut UserEntry)) {
        self.update_caused(user_id, now, None, change).await
    }

    /// [`Self::update`], with the cause named when it cannot be read off the inputs.
    async fn update_caused(
        &self,
        user_id: &str,
        now: i64,
        cause: Option<super::observe::ChangeCause>,
        change: impl FnOnce(&mut UserEntry),
    ) {
        if self.mode == PresenceMode::Disabled {
            // Reports and statuses are accepted and ignored (Synapse `presence.enabled: false`).
            return;
        }
        let emitted = {
            let mut entry = self.users.entry(user_id.to_owned()).or_default();
            let before_inputs = (entry.manual, admin_view::device_list(&entry));
            let before_last_active = entry.devices.values().map(|d| d.state.last_active_ts).max();
            let before_msg = (entry.public_status_msg().map(str::to_owned), entry.status_msg.clone());
            change(&mut entry);
            let devices = entry.device_states();
            let view = effective(entry.manual, &devices, now, &self.rules);
            let public_changed = view.public.differs_for_others(&entry.published)
                || entry.public_status_msg().map(str::to_owned) != before_msg.0;
            let own_changed = view.own != entry.view.own || entry.status_msg != before_msg.1;
            if entry.devices.values().map(|d| d.state.last_active_ts).max() != before_last_active {
                self.dirty.lock().insert(user_id.to_owned());
            }
            if public_changed {
                entry.published = view.public.clone();
            }
            let change = (view.public.presence != entry.view.public.presence).then(|| {
                let cause = cause.unwrap_or_else(|| {
                    let devices_changed = admin_view::device_list(&entry) != before_inputs.1;
                    super::observe::ChangeCause::infer(before_inputs.0, entry.manual, devices_changed)
                });
                super::observe::EffectiveChange {
                    ts: now,
                    user_id: user_id.to_owned(),
                    old: entry.view.public.presence,
                    new: view.public.presence,
                    cause,
                    device_kinds: view.own.active_kinds.clone(),
                    hidden: view.public.hidden,
                }
            });
            entry.view = view;
            let mut emitted = Emitted { public: None, own_pos: None, change };
            Metrics::inc(&self.metrics.presence_inputs);
            if public_changed {
                Metrics::inc(&self.metrics.presence_public_changes);
            } else if own_changed {
                Metrics::inc(&self.metrics.presence_own_changes);
            }
            if public_changed || own_changed {
                let pos = self.stream.allocate();
                if public_changed {
                    let mut changes = self.changes.lock();
                    if entry.public_pos > 0 {
                        changes.remove(&entry.public_pos);
                    }
                    changes.insert(pos.pos, user_id.to_owned());
                    entry.public_pos = pos.pos;
                    emitted.public = Some(PresenceSnapshot {
                        user_id: user_id.to_owned(),
                        presence: entry.view.public.clone(),
                        status_msg: entry.public_status_msg().map(str::to_owned),
                        pos: pos.pos,
                    });
                }
                entry.own_pos = pos.pos;
                emitted.own_pos = Some(pos.pos);
                pos.complete();
            }
            self.schedule(user_id, entry.manual, &entry.device_states(), now);
            emitted
        };
        if let Some(change) = &emitted.change {
            for o in self.observers.read().iter() {
                o.on_effective_change(change);
            }
        }
        if let Some(pos) = emitted.own_pos {
            self.notifier.wake([user_id], pos);
        }
        if let Some(snapshot) = emitted.public {
            match self.access.viewers_of(user_id).await {
                Ok(viewers) => self.notifier.wake(viewers.iter().map(String::as_str), snapshot.pos),
                Err(e) => tracing::warn!(error = %e, "could not find who sees {user_id}"),
            }
            for l in self.listeners.read().iter() {
                l.on_public_change(&snapshot);
            }
        }
    }

    fn schedule(&self, user_id: &str, manual: ManualStatus, devices: &[DeviceState], now: i64) {
        let mut q = self.deadlines.lock();
        match next_change_at(manual, devices, now, &self.rules) {
            Some(at) => {
                let earlier = q.next_deadline().is_none_or(|n| at < n);
                q.schedule(user_id.to_owned(), at);
                if earlier {
                    self.timer.notify_one();
                }
            }
            None => {
                q.cancel(&user_id.to_owned());
            }
        }
    }
}

// Admin introspection (console): a child module so it may read the engine's private state.
#[path = "admin_view.rs"]
mod admin_view;
pub use admin_view::{DeviceInspection, UserInspection};

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

/// A `/sync` of one device in flight. Finishing it, or dropping it when the request is
/// cancelled (hyper drops the handler when the client disconnects), ends the sync; without
/// this a cancelled long-poll would leave its device syncing, hence live, forever.
pub struct SyncInFlight {
    engine: Arc<PresenceEngine>,
    session: Option<Session>,
}

impl PresenceEngine {
    /// Take before [`PresenceEngine::sync_started`] (which may itself be cancelled once it
    /// has counted the sync); the guard calls `sync_finished`.
    pub fn sync_in_flight(self: &Arc<Self>, session: &Session) -> SyncInFlight {
        SyncInFlight { engine: self.clone(), session: Some(session.clone()) }
    }
}

impl SyncInFlight {
    pub async fn finish(mut self) {
        if let Some(session) = self.session.take() {
            self.engine.sync_finished(&session).await;
        }
    }
}

impl Drop for SyncInFlight {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let engine = self.engine.clone();
            tokio::spawn(async move { engine.sync_finished(&session).await });
        }
    }
}
