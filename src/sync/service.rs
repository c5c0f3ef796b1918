//! `/sync`: the long-poll around [`SyncService::assemble`]. A request subscribes to its user's
//! wake-ups *before* reading, builds the response up to the stream watermark, and if nothing
//! is new waits for a wake-up or its timeout; while it waits it costs one parked task and no
//! CPU.
//!
//! A wake-up that is presence-only (see [`WakeKind`]) opens the delivery window: the poll
//! keeps collecting changes for `presence_delivery_window` before it builds its answer, so a
//! burst of presence changes costs one response instead of one each. An urgent wake-up
//! (message, state, to-device, typing, …) during the window ends it at once. A poll that
//! finds news when it starts answers at once: it was not woken, the client is catching up.
use std::sync::Arc;
use std::time::Duration;

use super::filter::SyncFilter;
use super::filters::Filters;
use super::forgotten::ForgottenRooms;
use super::response::SyncResponse;
use super::sections::SyncContext;
use crate::account_data::AccountData;
use crate::accounts::{Accounts, Session};
use crate::e2ee::E2ee;
use crate::ephemeral::Ephemeral;
use crate::error::Result;
use crate::ground::{Notifier, StreamHub, Subscription, Wake, WakeKind};
use crate::metrics::Metrics;
use crate::peek::Peeks;
use crate::presence::policy::LegacyBusy;
use crate::presence::{DeviceKind, Presence, PresenceEngine};
use crate::profile::ProfileRooms;
use crate::rooms::Rooms;

pub struct SyncRequest {
    pub since: Option<i64>,
    pub timeout: Duration,
    pub full_state: bool,
    pub filter: Arc<SyncFilter>,
}

/// How the legacy `presence` section is shown (operator config).
#[derive(Debug, Clone, Copy)]
pub struct LegacyPresenceConfig {
    pub busy_as: LegacyBusy,
    /// Whether an initial sync lists users who are offline (Synapse: no).
    pub initial_sync_offline: bool,
}

/// Everything `/sync` reads, one field per section source.
pub struct SyncService {
    pub rooms: Arc<Rooms>,
    pub stream: Arc<StreamHub>,
    pub notifier: Arc<Notifier>,
    pub filters: Filters,
    pub account_data: Arc<AccountData>,
    pub ephemeral: Arc<Ephemeral>,
    pub forgotten: Arc<ForgottenRooms>,
    pub peeks: Arc<Peeks>,
    pub profiles: Arc<ProfileRooms>,
    pub presence: Arc<PresenceEngine>,
    pub accounts: Arc<Accounts>,
    pub e2ee: Arc<E2ee>,
    pub metrics: Arc<Metrics>,
    pub legacy_presence: LegacyPresenceConfig,
    /// Room types left out of `rooms.join` unless a filter names the room (a user's own
    /// profile room: legacy clients would show it as a chat).
    pub hidden_room_types: Vec<String>,
    /// How long a presence-only wake-up waits for more (`presence_delivery_window_ms`; zero:
    /// answer at once).
    pub presence_delivery_window: Duration,
    /// Initial syncs built at once (`initial_sync_concurrency`); see `assemble`.
    pub initial_syncs: tokio::sync::Semaphore,
}

impl SyncService {
    /// `/sync` with the device's automatic presence report around it (`set_presence`, and
    /// the sync counting as the device being online while it lasts).
    pub async fn sync_with_presence(
        &self,
        session: &Session,
        report: Presence,
        kind: Option<DeviceKind>,
        req: SyncRequest,
    ) -> Result<SyncResponse> {
        let in_flight = self.presence.sync_in_flight(session);
        // The presence updates are boxed for the same reason as the assembly (see `sync`).
        Box::pin(self.presence.sync_started(session, report, kind)).await;
        // The answer is boxed while `finish` runs: a value kept across an `.await` gets a slot
        // of its own beside the future it came from, and this future is what a parked poll
        // holds (issue #13: 336 bytes per parked poll).
        let result = self.sync(session, req).await.map(Box::new);
        Box::pin(in_flight.finish()).await;
        Metrics::inc(&self.metrics.sync_requests);
        if let Ok(r) = &result {
            let (legacy, peek) = r.presence_deliveries();
            if legacy > 0 {
                self.metrics.deliveries.with_label_values(&["legacy"]).inc_by(legacy as u64);
            }
            if peek > 0 {
                self.metrics.deliveries.with_label_values(&["peek"]).inc_by(peek as u64);
            }
        }
        result.map(|r| *r)
    }

    pub async fn sync(&self, session: &Session, req: SyncRequest) -> Result<SyncResponse> {
        let mut sub = self.notifier.subscribe_from(&session.user_id, self.stream.allocated());
        let deadline = tokio::time::Instant::now() + req.timeout;
        // Read your writes: a change the client already saw acknowledged (e.g. a peek) may
        // still be completing; wait for everything handed out so far (normally immediate).
        self.stream.wait_for(self.stream.allocated()).await;
        // A long-poll from a token after which nothing concerned the user (the notifier
        // counted every change for them since before it) waits at once: the first pass would
        // build an empty answer (issue #13: most polls start so, right after their previous
        // answer, and that pass walks all the user's rooms).
        let mut quiet = !req.full_state
            && !req.timeout.is_zero()
            && req.since.is_some_and(|s| s <= self.stream.current() && sub.quiet_since(s));
        if quiet {
            Metrics::inc(&self.metrics.sync_quiet_starts);
        }
        // Set once the poll has waited its time (or the server is stopping): the next pass
        // answers whatever it finds.
        let mut last_pass = false;
        let result = loop {
            if !quiet {
                let upto = self.stream.current();
                let since = req.since.map(|s| s.min(upto));
                let ctx = SyncContext {
                    session,
                    since,
                    upto,
                    full_state: req.full_state,
                    filter: &req.filter,
                    hidden_room_types: &self.hidden_room_types,
                };
                // Boxed: the assembly's state lives on the heap only while a response is built,
                // so a parked long-poll's future stays small (README "Performance", idle
                // long-polls).
                let (body, has_content) = Box::pin(self.assemble(&ctx)).await?;
                if has_content || last_pass || since.is_none() || req.full_state || req.timeout.is_zero() {
                    break body;
                }
                // Nothing new: the empty answer is not kept while the poll waits (issue #13: a
                // few hundred bytes per parked poll); one that times out is built again, at the
                // position of that moment.
                drop(body);
            }
            quiet = false;
            let parked = self.notifier.park();
            let wake = tokio::select! {
                wake = sub.next() => Some(wake),
                _ = tokio::time::sleep_until(deadline) => None,
                _ = self.notifier.closed() => None,
            };
            drop(parked);
            match wake {
                Some(wake) => {
                    let pos = self.collect_presence(&mut sub, wake, deadline).await;
                    self.stream.wait_for(pos).await;
                }
                None => last_pass = true,
            }
        };
        drop(sub);
        Ok(result)
    }

    /// The delivery window (see the module doc): the newest position to read up to.
    async fn collect_presence(&self, sub: &mut Subscription, wake: Wake, deadline: tokio::time::Instant) -> i64 {
        if wake.kind == WakeKind::Urgent || self.presence_delivery_window.is_zero() {
            return wake.pos;
        }
        let end = deadline.min(tokio::time::Instant::now() + self.presence_delivery_window);
        tokio::select! {
            pos = sub.collect_presence(wake, end) => pos,
            _ = self.notifier.closed() => wake.pos,
        }
    }
}
