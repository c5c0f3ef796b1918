//! Wiring: build every service from the config, assemble the router, serve.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::account_data::AccountData;
use crate::accounts::Accounts;
use crate::config::Config;
use crate::directory::Directory;
use crate::e2ee::E2ee;
use crate::ephemeral::Ephemeral;
use crate::media::MediaRepo;
use crate::metrics::Metrics;
use crate::peek::{PeekConfig, Peeks};
use crate::presence::access::PresenceAccess;
use crate::presence::legacy::LegacyPresenceSync;
use crate::presence::lists::PresenceLists;
use crate::presence::{PresenceEngine, PresenceRules};
use crate::profile::privacy::ProfilePrivacySync;
use crate::profile::ProfileRooms;
use crate::push::PushRules;
use crate::relations::Relations;
use crate::rooms::Rooms;
use crate::store::Store;
use crate::sync::forgotten::ForgottenRooms;
use crate::sync::{Notifier, StreamHub, SyncService};

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
    pub change_log: Arc<crate::experiment::ChangeLog>,
    pub limiter: crate::api::ratelimit::AuthLimiter,
    pub uia_sessions: dashmap::DashMap<String, i64>,
    shutdown: tokio::sync::watch::Sender<bool>,
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
        let rooms = Arc::new(
            Rooms::new(
                store.clone(),
                stream.clone(),
                notifier.clone(),
                config.server_name.clone(),
                config.max_event_bytes,
            )
            .await?,
        );
        let mut sync = SyncService::new(rooms.clone(), stream.clone(), notifier.clone());
        sync.hidden_room_types.push(crate::profile::PROFILE_ROOM_TYPE.to_owned());
        let hidden = sync.hidden_room_types.clone();
        let sync = Arc::new(sync);
        let account_data =
            AccountData::new(store.clone(), rooms.clone(), stream.clone(), notifier.clone(), hidden.clone()).await?;
        let ephemeral = Ephemeral::new(store.clone(), rooms.clone(), stream.clone(), notifier.clone(), hidden).await?;
        let forgotten = Arc::new(ForgottenRooms::new(store.clone(), rooms.clone()));
        sync.add_source(account_data.clone());
        sync.add_source(ephemeral.clone());
        sync.add_source(forgotten.clone());
        let metrics = Arc::new(Metrics::default());
        let access = Arc::new(PresenceAccess::with_max_room_members(
            rooms.clone(),
            usize::try_from(config.presence_max_room_members).ok(),
        ));
        let profiles = ProfileRooms::new(
            rooms.clone(),
            store.clone(),
            std::time::Duration::from_millis(config.presence_publish_window_ms),
            metrics.clone(),
            access.clone(),
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
            },
        )
        .await?;
        rooms.add_observer(peeks.clone());
        sync.add_source(peeks.clone());
        // After every source that writes rooms.join/leave/peek: masks what viewers may not see.
        sync.add_source(Arc::new(ProfilePrivacySync { profiles: profiles.clone() }));
        let lists = PresenceLists::load(store.clone(), stream.clone(), notifier.clone()).await?;
        access.add_grants(lists.clone());
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
        )
        .await?;
        presence.add_listener(profiles.clone());
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
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        profiles.start(shutdown_rx.clone());
        peeks.start(shutdown_rx.clone());
        ephemeral.start(shutdown_rx.clone());
        let retention = crate::profile::retention::PresenceHistoryRetention::new(
            store.clone(),
            crate::profile::retention::RetentionPolicy::from_config(&config),
        );
        retention.start(shutdown_rx.clone());
        change_log
            .start(std::time::Duration::from_millis(config.presence_flush_interval_ms.max(1)), shutdown_rx.clone());
        presence.start(std::time::Duration::from_millis(config.presence_flush_interval_ms.max(1)), shutdown_rx);
        sync.add_source(Arc::new(LegacyPresenceSync {
            engine: presence.clone(),
            accounts: accounts.clone(),
            rooms: rooms.clone(),
            busy_as: config.legacy_busy_as,
            initial_sync_offline: config.presence_initial_sync_offline,
        }));
        let e2ee = E2ee::new(
            store.clone(),
            rooms.clone(),
            accounts.clone(),
            stream.clone(),
            notifier.clone(),
            config.max_event_bytes,
        )
        .await?;
        sync.add_source(e2ee.clone());
        rooms.add_observer(e2ee.clone());
        let limiter = crate::api::ratelimit::AuthLimiter::from_config(&config);
        let media = Arc::new(MediaRepo::new(
            store.clone(),
            config.media_path.clone(),
            config.server_name.clone(),
            config.max_upload_bytes,
        )?);
        let push = PushRules::new(store.clone(), account_data.clone());
        let directory = Directory::new(store.clone(), rooms.clone());
        let relations = Arc::new(Relations::new(store.clone()));
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
            change_log,
            limiter,
            uia_sessions: Default::default(),
            shutdown,
        }))
    }
}

impl Services {
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.presence.flush().await;
        self.profiles.publish_pending().await;
        self.change_log.flush().await;
    }
}

/// How long a stopping server waits for requests still running after long-polls were told
/// to answer; whatever is still running then is cut off.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running server: its address and a handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop serving: long-polls answer at once with what they have, the listener closes and
    /// running requests finish (within [`SHUTDOWN_GRACE`]); then background work stops and
    /// flushes what is only in memory.
    pub async fn stop(self) {
        self.state.notifier.close();
        let _ = self.shutdown.send(());
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
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let state = Services::build(config).await?;
    let app = crate::api::router(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running { addr, state, shutdown: tx, task })
}

/// Serve until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = spawn(config).await?;
    tracing::info!(addr = %running.addr, server_name = %running.state.config.server_name, "listening");
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
