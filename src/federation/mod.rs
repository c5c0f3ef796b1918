//! Federation foundation (spec "Server-Server API"): the server's signing key, its TLS
//! listener, X-Matrix signed requests out and in, other servers' keys, and the first uses of
//! the transport (remote profiles and room aliases), the outgoing queue (`sender`) and the
//! processing of incoming transactions (`inbox`). `pdu` is the event format of rooms, local
//! and shared (used by `crate::rooms` for local and remote events).
use std::sync::{Arc, Weak};
use std::time::Instant;

use dashmap::DashMap;
use ruma::signatures::Ed25519KeyPair;
use ruma::OwnedServerName;

use crate::config::FederationConfig;
use crate::store::Store;

pub mod client;
mod data;
pub mod inbox;
pub mod keys;
pub mod pdu;
pub mod remote;
pub mod sender;
pub mod signing_key;
pub mod tls;

/// The federation service. Built also when federation is off (then it does nothing and
/// every remote lookup answers "not here"), so call sites need no `Option`.
pub struct Federation {
    pub config: FederationConfig,
    pub server_name: OwnedServerName,
    /// The server's signing key: it signs every room event, so it is loaded (or generated)
    /// also when federation is off (see [`signing_key::load_event_key`]).
    key: Ed25519KeyPair,
    enabled: bool,
    http: reqwest::Client,
    store: Store,
    /// Server name -> (`https://host:port`, until).
    discovery: DashMap<String, (String, Instant)>,
    key_cache: DashMap<String, keys::ServerKeys>,
    /// When each server was last refetched for an unknown key id.
    refetched: DashMap<String, Instant>,
    /// Remote profile answers for local clients: (user, field) -> (body, until).
    profiles: DashMap<(String, String), (serde_json::Value, Instant)>,
    /// The outgoing queue per destination.
    sender: sender::Sender,
    metrics: Arc<crate::metrics::Metrics>,
    /// Ourselves, for the destination workers the queue spawns.
    me: Weak<Self>,
    /// Told when a destination that was failing is reachable again (presence sends it a full
    /// refresh, `presence::federated`).
    peer_back: parking_lot::RwLock<Vec<PeerBackHook>>,
}

/// See [`Federation::on_peer_back`].
pub type PeerBackHook = Arc<dyn Fn(&str) + Send + Sync>;

impl Federation {
    pub async fn new(
        config: &crate::config::Config,
        store: Store,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let cfg = config.federation.clone();
        let server_name = match OwnedServerName::try_from(config.server_name.as_str()) {
            Ok(n) => n,
            Err(e) if cfg.enabled => {
                anyhow::bail!("server_name {:?} is not a valid server name: {e}", config.server_name)
            }
            // Federation off: the name is never used here, and a server that starts today must
            // keep starting.
            Err(_) => OwnedServerName::try_from("invalid.localhost").expect("valid placeholder"),
        };
        tls::install_crypto_provider();
        let key = signing_key::load_event_key(&cfg, &store).await?;
        let enabled = cfg.enabled;
        let http = client::http_client(&cfg)?;
        Ok(Arc::new_cyclic(|me| Self {
            config: cfg,
            server_name,
            key,
            enabled,
            http,
            store,
            discovery: DashMap::new(),
            key_cache: DashMap::new(),
            refetched: DashMap::new(),
            profiles: DashMap::new(),
            sender: sender::Sender::default(),
            metrics,
            me: me.clone(),
            peer_back: Default::default(),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `ed25519:<version>` of our signing key, when federation is on.
    pub fn key_id(&self) -> Option<String> {
        self.enabled.then(|| format!("ed25519:{}", self.key.version()))
    }

    /// Call `hook(server)` whenever a destination whose transactions were failing answers again
    /// (a transaction got through, or a signed request came from it while we waited to retry).
    pub fn on_peer_back(&self, hook: PeerBackHook) {
        self.peer_back.write().push(hook);
    }

    pub(crate) fn peer_came_back(&self, server: &str) {
        tracing::debug!(server, "destination reachable again");
        for hook in self.peer_back.read().iter() {
            hook(server);
        }
    }

    /// The key room events are signed with (federation on or off).
    pub fn event_key(&self) -> &Ed25519KeyPair {
        &self.key
    }
}
