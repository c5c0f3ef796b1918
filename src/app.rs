//! Wiring: build every service from the config, assemble the router, serve.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::account_data::AccountData;
use crate::accounts::{Accounts, SessionLinks};
use crate::config::Config;
use crate::directory::Directory;
use crate::e2ee::E2ee;
use crate::ephemeral::Ephemeral;
use crate::ground::{Clock, Notifier, StreamHub};
use crate::media::MediaRepo;
use crate::metrics::Metrics;
use crate::peek::{PeekConfig, Peeks};
use crate::presence::access::PresenceAccess;
use crate::presence::lists::PresenceLists;
use crate::presence::outbox::PublicChanges;
use crate::presence::{PresenceEngine, PresenceRules};
use crate::profile::ProfileRooms;
use crate::push::PushRules;
use crate::relations::Relations;
use crate::rooms::{RoomLinks, Rooms};
use crate::store::Store;
use crate::sync::filters::Filters;
use crate::sync::forgotten::ForgottenRooms;
use crate::sync::{LegacyPresenceConfig, SyncService};

/// Everything a request handler may use; passed as axum `State`, never global.
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub stream: Arc<StreamHub>,
    pub notifier: Arc<Notifier>,
    pub accounts: Arc<Accounts>,
    pub rooms: Arc<Rooms>,
    pub sync: Arc<SyncService>,
    pub presence: Arc<PresenceEngine>,
    pub profiles: Arc<ProfileRooms>,
    pub peeks: Arc<Peeks>,
    pub account_data: Arc<AccountData>,
    pub ephemeral: Arc<Ephemeral>,
    pub forgotten: Arc<ForgottenRooms>,
    pub lists: Arc<PresenceLists>,
    pub metrics: Arc<Metrics>,
    pub media: Arc<MediaRepo>,
    pub push: Arc<PushRules>,
    pub directory: Arc<Directory>,
    pub relations: Arc<Relations>,
    pub e2ee: Arc<E2ee>,
    pub federation: Arc<crate::federation::Federation>,
    /// Incoming federation transactions (`PUT /send/{txnId}`).
    pub inbox: Arc<crate::federation::inbox::Inbox>,
    /// Presence across servers (`m.presence` EDUs out and in, watchdogs).
    pub presence_federation: Arc<crate::presence::federated::PresenceFederation>,
    /// Presence lists across servers (the list EDUs out and in).
    pub list_federation: Arc<crate::presence::list_federation::ListFederation>,
    pub change_log: Arc<crate::experiment::ChangeLog>,
    pub limiter: crate::api::ratelimit::AuthLimiter,
    pub uia_sessions: dashmap::DashMap<String, i64>,
    /// Every background task, stopped (and waited for) once by [`Services::stop`].
    workers: crate::ground::Workers,
}

pub type AppState = Arc<Services>;

impl Services {
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let store = Store::connect(&config.database_url, config.database_max_connections).await?;
        let stream = StreamHub::new(store.clone()).await?;
        let notifier = Arc::new(Notifier::default());
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            config.server_name.clone(),
            config.argon2_memory_kib,
            config.argon2_iterations,
        )?);
        let metrics = Arc::new(Metrics::default());
        let federation = crate::federation::Federation::new(&config, store.clone(), metrics.clone()).await?;
        let rooms = Arc::new(
            Rooms::new(
                federation.clone(),
                store.clone(),
                stream.clone(),
                notifier.clone(),
                accounts.clone(),
                config.server_name.clone(),
                config.max_event_bytes,
            )
            .await?
            .with_event_cache(config.event_cache_capacity),
        );
        let account_data = AccountData::new(store.clone(), stream.clone(), notifier.clone()).await?;
        let ephemeral = Ephemeral::new(
            store.clone(),
            rooms.clone(),
            stream.clone(),
            notifier.clone(),
            Clock::system(),
            federation.clone(),
        )
        .await?;
        let inbox = crate::federation::inbox::Inbox::new(store.clone(), rooms.clone(), ephemeral.clone());
        let forgotten = Arc::new(ForgottenRooms::new(store.clone(), rooms.clone()));
        let lists = PresenceLists::load(store.clone(), &config.server_name, stream.clone(), notifier.clone()).await?;
        let access = Arc::new(PresenceAccess::new(
            rooms.clone(),
            lists.clone(),
            usize::try_from(config.presence_max_room_members).ok(),
            usize::try_from(config.presence_visibility_cache_users).unwrap_or(usize::MAX),
        ));
        let public_changes = Arc::new(PublicChanges::default());
        let profiles = ProfileRooms::new(
            rooms.clone(),
            accounts.clone(),
            store.clone(),
            std::time::Duration::from_millis(config.presence_publish_window_ms),
            metrics.clone(),
            access.clone(),
            public_changes.clone(),
        )
        .await?;
        let peeks = Peeks::new(
            store.clone(),
            rooms.clone(),
            stream.clone(),
            notifier.clone(),
            profiles.clone(),
            access.clone(),
            PeekConfig {
                expiry_ms: config.peek_expiry_ms,
                rate_per_second: config.peek_rate_per_second,
                rate_burst: config.peek_rate_burst,
                served_renewal_interval_ms: config.federation.peek_renewal_interval_ms,
                max_peeks_per_server: config.federation.max_peeks_per_server,
            },
        )
        .await?;
        let rules = PresenceRules {
            device_timeout_ms: config.presence_device_timeout_ms,
            idle_after_ms: config.presence_idle_after_ms,
            currently_active_ms: config.presence_currently_active_ms,
            mobile_grace_ms: config.presence_mobile_grace_ms,
        };
        let presence = PresenceEngine::new(
            metrics.clone(),
            rules,
            config.presence_mode,
            stream.clone(),
            notifier.clone(),
            access,
            store.clone(),
            public_changes,
            Clock::system(),
        )
        .await?;
        let change_log = crate::experiment::ChangeLog::load(
            store.clone(),
            config.experiment_log_retention_ms,
            config.experiment_log_max_records,
            metrics.clone(),
        )
        .await?;
        presence.add_observer(change_log.clone());
        profiles.attach_presence(presence.clone());
        // After a crash the rooms may lag the engine: they agree before we serve.
        profiles.reconcile(&presence).await?;
        let workers = crate::ground::Workers::default();
        profiles.start(&workers);
        peeks.start(&workers);
        ephemeral.start(&workers);
        let retention = crate::profile::retention::PresenceHistoryRetention::new(
            store.clone(),
            crate::profile::retention::RetentionPolicy::from_config(&config),
        );
        retention.start(&workers);
        change_log.start(std::time::Duration::from_millis(config.presence_flush_interval_ms.max(1)), &workers);
        // Before the engine starts: it sets the remote timeout the engine's watchdog arms.
        let presence_federation = crate::presence::federated::PresenceFederation::new(
            presence.clone(),
            rooms.clone(),
            federation.clone(),
            metrics.clone(),
        );
        inbox.attach_presence(presence_federation.clone());
        let list_federation = crate::presence::list_federation::ListFederation::new(
            lists.clone(),
            account_data.clone(),
            accounts.clone(),
            federation.clone(),
            presence_federation.clone(),
        );
        inbox.attach_lists(list_federation.clone());
        // Servers peeking a user's profile room (MSC2444) also get the user's presence EDUs.
        {
            let (profiles, peeks) = (profiles.clone(), peeks.clone());
            presence_federation.set_extra_destinations(std::sync::Arc::new(move |user: &str| {
                profiles.room_of(user).map(|room| peeks.peeking_servers(&room)).unwrap_or_default()
            }));
        }
        presence.start(std::time::Duration::from_millis(config.presence_flush_interval_ms.max(1)), &workers);
        presence_federation.start(&workers);
        let e2ee = E2ee::new(
            store.clone(),
            rooms.clone(),
            accounts.clone(),
            stream.clone(),
            notifier.clone(),
            config.max_event_bytes,
        )
        .await?;
        let sync = Arc::new(SyncService {
            rooms: rooms.clone(),
            stream: stream.clone(),
            notifier: notifier.clone(),
            filters: Filters::new(store.clone(), config.max_filter_bytes, config.max_filters_per_user),
            account_data: account_data.clone(),
            ephemeral: ephemeral.clone(),
            forgotten: forgotten.clone(),
            peeks: peeks.clone(),
            profiles: profiles.clone(),
            presence: presence.clone(),
            accounts: accounts.clone(),
            e2ee: e2ee.clone(),
            metrics: metrics.clone(),
            legacy_presence: LegacyPresenceConfig {
                busy_as: config.legacy_busy_as,
                initial_sync_offline: config.presence_initial_sync_offline,
            },
            hidden_room_types: vec![crate::profile::PROFILE_ROOM_TYPE.to_owned()],
            presence_delivery_window: std::time::Duration::from_millis(config.presence_delivery_window_ms),
            initial_syncs: tokio::sync::Semaphore::new(config.initial_sync_permits()),
        });
        let limiter = crate::api::ratelimit::AuthLimiter::from_config(&config);
        let media = Arc::new(MediaRepo::new(
            store.clone(),
            config.media_path.clone(),
            config.server_name.clone(),
            config.max_upload_bytes,
        )?);
        let push = PushRules::new(store.clone(), account_data.clone());
        let directory = Directory::new(store.clone(), rooms.clone(), config.server_name.clone());
        let relations = Arc::new(Relations::new(store.clone()));
        // The services built on rooms and accounts, wired back by name (no registries).
        rooms.link(RoomLinks {
            profiles: profiles.clone(),
            presence: presence.clone(),
            relations: relations.clone(),
            peeks: peeks.clone(),
            e2ee: e2ee.clone(),
        });
        accounts.link(SessionLinks { presence: presence.clone(), peeks: peeks.clone(), e2ee: e2ee.clone() });
        federation.start_sender(&workers).await?;
        Ok(Arc::new(Self {
            config,
            store,
            stream,
            notifier,
            accounts,
            rooms,
            sync,
            presence,
            profiles,
            peeks,
            account_data,
            ephemeral,
            forgotten,
            lists,
            metrics,
            media,
            push,
            directory,
            relations,
            e2ee,
            federation,
            inbox,
            presence_federation,
            list_federation,
            change_log,
            limiter,
            uia_sessions: Default::default(),
            workers,
        }))
    }
}

impl Services {
    /// The text of a `/metrics` scrape: the gauges sampled from the services (and the
    /// database pool, which only this composition root sees), then every metric rendered.
    pub fn scrape_metrics(&self) -> String {
        let g = &self.metrics.gauges;
        g.tracked_users.set(self.presence.tracked_users() as i64);
        g.pending_deadlines.set(self.presence.pending_deadlines() as i64);
        g.open_long_polls.set(self.notifier.waiting_users() as i64);
        g.stream_position.set(self.stream.current().max(0));
        g.db_pool_size.set(i64::from(self.store.pool.size()));
        g.db_pool_idle.set(self.store.pool.num_idle() as i64);
        g.change_log_records.set(self.change_log.len() as i64);
        g.publish_queue.set(self.profiles.pending_len() as i64);
        self.metrics.federation.backing_off.set(self.federation.destinations_backing_off() as i64);
        g.parked_long_polls.set(self.notifier.parked_polls() as i64);
        let woken = self.notifier.wakeups();
        self.metrics.wakeups.inc_by(woken.saturating_sub(self.metrics.wakeups.get()));
        self.metrics.render()
    }

    /// Signal every background worker once and wait for each to finish its last flush
    /// (presence last-active times, profile-room publication, change log, status committers).
    pub async fn stop(&self) {
        self.workers.stop(SHUTDOWN_GRACE).await;
    }
}

/// How long a stopping server waits for requests still running after long-polls were told
/// to answer; whatever is still running then is cut off.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running server: its address and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub state: AppState,
    shutdown: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The federation (TLS) listener, when `federation.enabled`.
    pub federation: Option<crate::api::federation::FederationListener>,
}

impl Running {
    /// Stop serving: long-polls answer at once with what they have, the listener closes and
    /// running requests finish (within [`SHUTDOWN_GRACE`]); then background work stops and
    /// flushes what is only in memory.
    pub async fn stop(self) {
        self.state.notifier.close();
        if let Some(f) = self.federation {
            f.stop(SHUTDOWN_GRACE).await;
        }
        let _ = self.shutdown.send(());
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
            tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; cutting them off");
            task.abort();
        }
        self.state.stop().await;
    }
}

/// Bind and serve in the background (tests use port 0). Stops on `Running::stop`.
pub async fn spawn(config: Config) -> anyhow::Result<Running> {
    let listener = crate::api::serve::bind(config.bind)?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_bind.filter(|_| config.metrics_enabled) {
        Some(a) => Some(crate::api::serve::bind(a)?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let http1 = crate::api::serve::Http1Options::from_config(&config);
    // Both listeners count the writes a client left running against one limit.
    let detached = crate::api::completion::Detached::new(config.max_detached_writes_per_client);
    let state = Services::build(config).await?;
    let metrics_task = metrics_listener.map(|l| {
        let app = crate::api::metrics::router(state.clone());
        tokio::spawn(crate::api::serve::serve(l, app, http1, std::future::pending()))
    });
    let app = crate::api::router(state.clone()).merge(crate::api::federation::well_known_routes(state.clone()));
    let federation = crate::api::federation::serve(state.clone(), detached.clone()).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::api::serve::serve(
        listener,
        crate::api::serve::edge_service(app, detached),
        http1,
        async move {
            let _ = rx.await;
        },
    ));
    Ok(Running { addr, metrics_addr, metrics_task, state, shutdown: tx, task, federation })
}

/// Serve until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = spawn(config).await?;
    tracing::info!(addr = %running.addr, server_name = %running.state.config.server_name, "listening");
    if let Some(addr) = running.metrics_addr {
        tracing::info!(%addr, "serving /metrics");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
