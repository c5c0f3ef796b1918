//! Configuration: built-in defaults, then an optional TOML file, then CLI flags / env vars.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::presence::policy::{LegacyBusy, PresenceMode};

/// Every knob of the server. Defaults start a usable homeserver on 127.0.0.1:8008 with SQLite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The Matrix server name (the part after ':' in user ids).
    pub server_name: String,
    /// Address the client-server API listens on.
    pub bind: SocketAddr,
    /// `sqlite://path?mode=rwc` (default, embedded) or `postgres://user@host/db`.
    pub database_url: String,
    /// Maximum database connections in the pool.
    pub database_max_connections: u32,
    /// Whether `POST /register` is open to anyone.
    pub registration_enabled: bool,
    /// Argon2id memory cost in KiB (lower it in tests; OWASP minimum is 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Login/registration requests allowed per second per client IP (0 = unlimited).
    pub auth_rate_per_second: u32,
    /// Burst size for the login/registration rate limit.
    pub auth_rate_burst: u32,
    /// Logins allowed per minute per user (any IP; 0 = unlimited), against password guessing.
    pub login_rate_per_user_per_minute: u32,
    /// Burst for the per-user login limit.
    pub login_rate_per_user_burst: u32,
    /// `PUT /presence/{userId}/status` allowed per second per user (0 = unlimited).
    pub presence_rate_per_second: u32,
    /// Burst for the per-user presence limit.
    pub presence_rate_burst: u32,
    /// Most devices (sessions) one user may have; a login beyond gets `M_RESOURCE_LIMIT_EXCEEDED`.
    pub max_devices_per_user: usize,
    /// Most stored `/sync` filters per user.
    pub max_filters_per_user: usize,
    /// Largest accepted filter (stored or inline), in bytes of JSON.
    pub max_filter_bytes: usize,
    /// Largest accepted event, in bytes (the spec's limit is 65536).
    pub max_event_bytes: usize,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Longest `/sync` long-poll a client may ask for, in milliseconds.
    pub max_sync_timeout_ms: u64,
    /// A device that has not synced for this long is offline (MSC3032 effective presence).
    pub presence_device_timeout_ms: i64,
    /// A device with no pro-active event for this long is idle (`unavailable`).
    pub presence_idle_after_ms: i64,
    /// `currently_active` stays true this long after the last pro-active event.
    pub presence_currently_active_ms: i64,
    /// Profile-room `m.presence`/`m.status` writes are coalesced within this window.
    pub presence_publish_window_ms: u64,
    /// How often dirty presence rows (manual status, last active) are flushed to the database.
    pub presence_flush_interval_ms: u64,
    /// Lifetime of an MSC2753 peek; the client renews it by peeking again before it ends.
    pub peek_expiry_ms: i64,
    /// Writes a client (an access token, else an address) may leave running after hanging
    /// up; its next write is refused `429` while it has this many (0 = unlimited).
    pub max_detached_writes_per_client: u32,
    /// `/peek` requests allowed per second per user (0 = unlimited).
    pub peek_rate_per_second: u32,
    /// Burst size for the `/peek` rate limit.
    pub peek_rate_burst: u32,
    /// A `mobile` device that stops syncing stays `unavailable` this long before it is offline.
    pub presence_mobile_grace_ms: i64,
    /// `enabled`, `disabled` (no presence at all) or `untracked` (own presence only).
    pub presence_mode: PresenceMode,
    /// Wire spelling of `busy` on the legacy presence paths.
    pub legacy_busy_as: LegacyBusy,
    /// Whether an initial `/sync` includes users who are offline (Synapse: no).
    pub presence_initial_sync_offline: bool,
    /// A shared room with more joined members than this grants no presence visibility (0 = no limit).
    pub presence_max_room_members: u64,
    /// How many users' room peers (who shares a joined room with them) are kept between
    /// requests for presence visibility checks, least recently used dropped first (0 = none).
    pub presence_visibility_cache_users: u64,
    /// Presence history retention (msc/README.md "Retention of presence history"): newest versions of
    /// `m.presence` and of `m.status` kept per profile room, the current state included.
    pub presence_history_keep_last: u32,
    /// Superseded presence/status versions younger than this (ms) are kept whatever their number.
    pub presence_history_keep_ms: i64,
    /// PostgreSQL: the pruner runs `VACUUM` on the tables it deletes from once this many events
    /// were pruned since the last one, so dead tuples stay bounded even with autovacuum off or
    /// behind (msc/README.md "Retention of presence history"). 0 = leave it to autovacuum.
    pub presence_history_vacuum_after: u64,
    /// Time between pruning runs, ms; 0 keeps every version forever.
    pub presence_history_prune_interval_ms: u64,
    /// Events deleted per pruning transaction (1..=1000).
    pub presence_history_prune_batch: usize,
    /// A long-poll woken only by presence waits this long (ms) for more before answering;
    /// anything else ends the wait at once (README "Presence delivery window"). 0 = off.
    pub presence_delivery_window_ms: u64,
    /// Log filter in `tracing_subscriber::EnvFilter` syntax.
    pub log: String,
    /// Directory uploaded media and thumbnails are stored in.
    pub media_path: PathBuf,
    /// Largest accepted upload, in bytes (`413 M_TOO_LARGE` above it).
    pub max_upload_bytes: usize,
    /// Users (full Matrix ids) allowed to use the admin API and the live console.
    pub admins: Vec<String>,
    /// Serve Prometheus metrics at `GET /metrics` on the main listener.
    pub metrics_enabled: bool,
    /// Serve `GET /metrics` on this separate address instead of the main listener (none: the
    /// main listener). Ignored when `metrics_enabled` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
    /// How long the experiment change log keeps a record, in milliseconds.
    pub experiment_log_retention_ms: i64,
    /// Most records the experiment change log holds (older ones are dropped first).
    pub experiment_log_max_records: usize,
    /// Initial `/sync`s built at the same time; more wait their turn (0 = twice the cores).
    pub initial_sync_concurrency: usize,
    /// Whole events (member events for `/sync` `state`) kept in memory, least recently used
    /// dropped first; the room-state caches keep memberships as ids only.
    pub event_cache_capacity: usize,
    /// Who speaks HTTP/1 on the client listener: `seed` (our own driver, `src/api/http1.rs`,
    /// which holds no buffer while a long-poll waits) or `hyper` (hyper's connection, the
    /// fallback). HTTP/2 is always hyper's.
    pub http1_driver: Http1Driver,
    /// `seed` driver: a request head must be complete this long after its first byte, ms.
    pub http1_head_timeout_ms: u64,
    /// `seed` driver: a keep-alive connection with no new request for this long is closed, ms.
    pub http1_keep_alive_timeout_ms: u64,
    /// Let the kernel back the heap with transparent huge pages (off: the process turns them
    /// off for itself, which keeps the RSS near the heap; `ground/memory.rs`).
    pub transparent_huge_pages: bool,
    /// Threads that run the server's tasks (0 = tokio's choice: one per core, or the
    /// `TOKIO_WORKER_THREADS` environment variable); see [`Config::runtime_workers`].
    pub worker_threads: usize,
    /// How long the allocator (mimalloc) keeps memory the server freed before giving it back
    /// to the kernel, ms (at most an hour; mimalloc's own default is 1,000). 0, the default,
    /// gives it back at once: see `ground/memory.rs`.
    pub allocator_purge_delay_ms: u64,
    /// Server-server API (`[federation]` in the TOML file); off by default.
    pub federation: FederationConfig,
}

/// `http1_driver`: which implementation serves HTTP/1 connections on the client listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Http1Driver {
    /// Our own: request heads parsed with `httparse`, no per-connection buffers while a
    /// request is being handled (docs/performance-history.md "Idle long-poll memory").
    #[default]
    Seed,
    /// hyper's `http1` connection (8 KB read and 8 KB write buffer per connection).
    Hyper,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            bind: "127.0.0.1:8008".parse().expect("valid default address"),
            database_url: "sqlite://data/seed.db?mode=rwc".into(),
            database_max_connections: 16,
            registration_enabled: true,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            auth_rate_per_second: 5,
            auth_rate_burst: 20,
            login_rate_per_user_per_minute: 12,
            login_rate_per_user_burst: 10,
            presence_rate_per_second: 20,
            presence_rate_burst: 200,
            max_devices_per_user: 100,
            max_filters_per_user: 200,
            max_filter_bytes: 32768,
            max_event_bytes: 65536,
            max_request_bytes: 1024 * 1024,
            max_sync_timeout_ms: 300_000,
            presence_device_timeout_ms: 30_000,
            presence_idle_after_ms: 300_000,
            presence_currently_active_ms: 60_000,
            presence_publish_window_ms: 200,
            presence_flush_interval_ms: 1_000,
            peek_expiry_ms: 3_600_000,
            max_detached_writes_per_client: 32,
            peek_rate_per_second: 2,
            peek_rate_burst: 20,
            presence_mobile_grace_ms: 3_600_000,
            presence_mode: PresenceMode::Enabled,
            legacy_busy_as: LegacyBusy::Msc3026,
            presence_initial_sync_offline: false,
            presence_max_room_members: 0,
            presence_visibility_cache_users: 20_000,
            presence_history_keep_last: 10,
            presence_history_keep_ms: 3_600_000,
            presence_history_vacuum_after: 20_000,
            presence_history_prune_interval_ms: 10_000,
            presence_history_prune_batch: 500,
            presence_delivery_window_ms: 250,
            log: "info,sqlx=warn".into(),
            media_path: PathBuf::from("data/media"),
            max_upload_bytes: 50 * 1024 * 1024,
            admins: Vec::new(),
            metrics_enabled: true,
            metrics_bind: None,
            experiment_log_retention_ms: 7 * 24 * 3_600_000,
            experiment_log_max_records: 1_000_000,
            initial_sync_concurrency: 0,
            event_cache_capacity: 10_000,
            http1_driver: Http1Driver::Seed,
            http1_head_timeout_ms: 30_000,
            http1_keep_alive_timeout_ms: 120_000,
            transparent_huge_pages: false,
            worker_threads: 0,
            allocator_purge_delay_ms: 0,
            federation: FederationConfig::default(),
        }
    }
}

/// `[federation]`: the server-server API on its own TLS listener (see README "Federation").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationConfig {
    /// Serve the federation API and talk to other servers. Off: nothing is listened on.
    pub enabled: bool,
    /// Address of the federation (TLS) listener.
    pub bind: SocketAddr,
    /// Directory for the generated signing key and self-signed certificate.
    pub data_dir: PathBuf,
    /// The server's ed25519 signing key (Synapse's format); generated here on first start.
    /// Default: `<data_dir>/signing.key`.
    pub signing_key_path: Option<PathBuf>,
    /// PEM certificate chain and key of the listener; both unset = a self-signed pair
    /// generated on first start in `data_dir`.
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
    /// Answer of `GET /.well-known/matrix/server` (`m.server`), e.g. `fed.example.org:443`.
    pub well_known_server: Option<String>,
    /// Accept peers with self-signed or otherwise invalid certificates (loopback tests only).
    pub accept_invalid_certs: bool,
    /// Only these servers may federate with us (empty = any server not denied).
    pub allow: Vec<String>,
    /// These servers get `403 M_FORBIDDEN` and are never contacted.
    pub deny: Vec<String>,
    /// How long our published key response is valid (`valid_until_ts` = now + this), ms.
    pub key_validity_ms: i64,
    /// Notary servers asked (`POST /_matrix/key/v2/query`) when a direct key fetch fails.
    pub trusted_key_servers: Vec<String>,
    /// Fetch a server's keys from the server itself first (off = notaries only).
    pub key_fetch_direct: bool,
    /// Timeout of one outgoing federation request, ms.
    pub request_timeout_ms: u64,
    /// How long a remote profile fetched for a local client is reused, ms.
    pub profile_cache_ms: u64,
    /// Outgoing queue (README "Federation"): first retry delay after a failed transaction, ms;
    /// doubled per further failure up to `send_backoff_max_ms`.
    pub send_backoff_base_ms: u64,
    pub send_backoff_max_ms: u64,
    /// PDUs kept queued per destination while it is unreachable; older ones are dropped
    /// (the peer fetches them with backfill / get_missing_events).
    pub send_max_queued_pdus: u64,
    /// EDUs kept queued per destination (in memory); older ones are dropped.
    pub send_max_queued_edus: usize,
    /// Presence across servers (README "Presence across servers"): local changes are gathered
    /// for this long and sent as one `m.presence` EDU per destination, ms.
    pub presence_flush_ms: u64,
    /// A remote user whose server has not refreshed their presence for this long reads as
    /// `offline` (seed 004 watchdog), ms.
    pub presence_remote_timeout_ms: i64,
    /// Local users who are not offline are announced again this often to the servers that may
    /// see them, so the peers' watchdogs hold (keep below `presence_remote_timeout_ms`), ms.
    pub presence_reannounce_ms: i64,
    /// Peeking over federation (MSC2444): the `renewal_interval` we answer other servers'
    /// peeks with, ms; a peek not renewed within it ends.
    pub peek_renewal_interval_ms: i64,
    /// Most peeks one other server may hold on our rooms at once (more: 429).
    pub max_peeks_per_server: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: "127.0.0.1:8448".parse().expect("valid default address"),
            data_dir: PathBuf::from("data/federation"),
            signing_key_path: None,
            tls_cert_path: None,
            tls_key_path: None,
            well_known_server: None,
            accept_invalid_certs: false,
            allow: Vec::new(),
            deny: Vec::new(),
            key_validity_ms: 24 * 3_600_000,
            trusted_key_servers: Vec::new(),
            key_fetch_direct: true,
            request_timeout_ms: 10_000,
            profile_cache_ms: 60_000,
            send_backoff_base_ms: 2_000,
            send_backoff_max_ms: 3_600_000,
            send_max_queued_pdus: 10_000,
            send_max_queued_edus: 1_000,
            presence_flush_ms: 250,
            // Synapse: remote presence times out after 30 min, local users are pinged every 25.
            presence_remote_timeout_ms: 30 * 60_000,
            presence_reannounce_ms: 25 * 60_000,
            peek_renewal_interval_ms: 3_600_000,
            max_peeks_per_server: 1_000,
        }
    }
}

/// Command line: each flag also reads an environment variable and overrides the TOML file.
#[derive(Debug, Parser, Serialize)]
#[command(name = "seed-homeserver", version, about = "A presence-first Matrix homeserver (MSC3032)")]
pub struct Cli {
    /// TOML config file (keys as in the flags below, with underscores).
    #[arg(long, env = "SEED_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Matrix server name [default: localhost]
    #[arg(long, env = "SEED_SERVER_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Listen address [default: 127.0.0.1:8008]
    #[arg(long, env = "SEED_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Database URL: sqlite://… or postgres://… [default: sqlite://data/seed.db?mode=rwc]
    #[arg(long, env = "SEED_DATABASE_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Maximum database connections [default: 16]
    #[arg(long, env = "SEED_DATABASE_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_max_connections: Option<u32>,
    /// Open registration [default: true]
    #[arg(long, env = "SEED_REGISTRATION_ENABLED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_enabled: Option<bool>,
    /// Argon2id memory cost in KiB [default: 19456]
    #[arg(long, env = "SEED_ARGON2_MEMORY_KIB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id iterations [default: 2]
    #[arg(long, env = "SEED_ARGON2_ITERATIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2_iterations: Option<u32>,
    /// Login/registration requests per second per IP, 0 = unlimited [default: 5]
    #[arg(long, env = "SEED_AUTH_RATE_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_rate_per_second: Option<u32>,
    /// Burst for the login/registration limit [default: 20]
    #[arg(long, env = "SEED_AUTH_RATE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_rate_burst: Option<u32>,
    /// Logins per minute per user, 0 = unlimited [default: 12]
    #[arg(long, env = "SEED_LOGIN_RATE_PER_USER_PER_MINUTE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_rate_per_user_per_minute: Option<u32>,
    /// Burst for the per-user login limit [default: 10]
    #[arg(long, env = "SEED_LOGIN_RATE_PER_USER_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_rate_per_user_burst: Option<u32>,
    /// Presence status PUTs per second per user, 0 = unlimited [default: 20]
    #[arg(long, env = "SEED_PRESENCE_RATE_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_rate_per_second: Option<u32>,
    /// Burst for the per-user presence limit [default: 200]
    #[arg(long, env = "SEED_PRESENCE_RATE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_rate_burst: Option<u32>,
    /// Most devices per user [default: 100]
    #[arg(long, env = "SEED_MAX_DEVICES_PER_USER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_devices_per_user: Option<usize>,
    /// Most stored filters per user [default: 200]
    #[arg(long, env = "SEED_MAX_FILTERS_PER_USER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_filters_per_user: Option<usize>,
    /// Largest filter in bytes [default: 32768]
    #[arg(long, env = "SEED_MAX_FILTER_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_filter_bytes: Option<usize>,
    /// Largest event in bytes [default: 65536]
    #[arg(long, env = "SEED_MAX_EVENT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<usize>,
    /// Largest request body in bytes [default: 1048576]
    #[arg(long, env = "SEED_MAX_REQUEST_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<usize>,
    /// Longest /sync long-poll in ms [default: 300000]
    #[arg(long, env = "SEED_MAX_SYNC_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sync_timeout_ms: Option<u64>,
    /// A device silent this long is offline, ms [default: 30000]
    #[arg(long, env = "SEED_PRESENCE_DEVICE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_device_timeout_ms: Option<i64>,
    /// A device with no activity this long is idle (unavailable), ms [default: 300000]
    #[arg(long, env = "SEED_PRESENCE_IDLE_AFTER_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_idle_after_ms: Option<i64>,
    /// currently_active window, ms [default: 60000]
    #[arg(long, env = "SEED_PRESENCE_CURRENTLY_ACTIVE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_currently_active_ms: Option<i64>,
    /// Coalescing window for profile-room presence writes, ms [default: 200]
    #[arg(long, env = "SEED_PRESENCE_PUBLISH_WINDOW_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_publish_window_ms: Option<u64>,
    /// Presence persistence flush interval, ms [default: 1000]
    #[arg(long, env = "SEED_PRESENCE_FLUSH_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_flush_interval_ms: Option<u64>,
    /// Lifetime of a peek unless renewed, ms [default: 3600000]
    #[arg(long, env = "SEED_PEEK_EXPIRY_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peek_expiry_ms: Option<i64>,
    /// Writes a client may leave running after hanging up, 0 = unlimited [default: 32]
    #[arg(long, env = "SEED_MAX_DETACHED_WRITES_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_detached_writes_per_client: Option<u32>,
    /// /peek requests per second per user, 0 = unlimited [default: 2]
    #[arg(long, env = "SEED_PEEK_RATE_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peek_rate_per_second: Option<u32>,
    /// Burst for the /peek limit [default: 20]
    #[arg(long, env = "SEED_PEEK_RATE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peek_rate_burst: Option<u32>,
    /// A silent mobile device stays unavailable this long before offline, ms [default: 3600000]
    #[arg(long, env = "SEED_PRESENCE_MOBILE_GRACE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_mobile_grace_ms: Option<i64>,
    /// Presence: enabled, disabled, or untracked (own presence only) [default: enabled]
    #[arg(long, env = "SEED_PRESENCE_MODE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_mode: Option<PresenceMode>,
    /// Spelling of busy on legacy presence paths [default: org.matrix.msc3026.busy]
    #[arg(long, env = "SEED_LEGACY_BUSY_AS", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_busy_as: Option<LegacyBusy>,
    /// Initial /sync includes offline users [default: false]
    #[arg(long, env = "SEED_PRESENCE_INITIAL_SYNC_OFFLINE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_initial_sync_offline: Option<bool>,
    /// Rooms with more joined members grant no presence visibility, 0 = no limit [default: 0]
    #[arg(long, env = "SEED_PRESENCE_MAX_ROOM_MEMBERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_max_room_members: Option<u64>,
    /// Users whose room peers are cached for presence visibility checks, 0 = none [default: 20000]
    #[arg(long, env = "SEED_PRESENCE_VISIBILITY_CACHE_USERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_visibility_cache_users: Option<u64>,
    /// Newest presence/status versions kept per profile room [default: 10]
    #[arg(long, env = "SEED_PRESENCE_HISTORY_KEEP_LAST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_history_keep_last: Option<u32>,
    /// Presence/status versions younger than this are kept, ms [default: 3600000]
    #[arg(long, env = "SEED_PRESENCE_HISTORY_KEEP_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_history_keep_ms: Option<i64>,
    /// PostgreSQL: VACUUM the pruned tables after this many pruned events, 0 = autovacuum only [default: 20000]
    #[arg(long, env = "SEED_PRESENCE_HISTORY_VACUUM_AFTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_history_vacuum_after: Option<u64>,
    /// Time between presence-history pruning runs, ms, 0 = never prune [default: 10000]
    #[arg(long, env = "SEED_PRESENCE_HISTORY_PRUNE_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_history_prune_interval_ms: Option<u64>,
    /// Events deleted per pruning transaction [default: 500]
    #[arg(long, env = "SEED_PRESENCE_HISTORY_PRUNE_BATCH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_history_prune_batch: Option<usize>,
    /// Presence-only wake-ups wait this long for more before answering, ms, 0 = off [default: 250]
    #[arg(long, env = "SEED_PRESENCE_DELIVERY_WINDOW_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_delivery_window_ms: Option<u64>,
    /// Log filter (tracing EnvFilter syntax) [default: info,sqlx=warn]
    #[arg(long, env = "SEED_LOG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Directory for uploaded media [default: data/media]
    #[arg(long, env = "SEED_MEDIA_PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_path: Option<PathBuf>,
    /// Largest upload in bytes [default: 52428800]
    #[arg(long, env = "SEED_MAX_UPLOAD_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_upload_bytes: Option<usize>,
    /// Admin user ids, comma-separated [default: none]
    #[arg(long, env = "SEED_ADMINS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admins: Option<Vec<String>>,
    /// Serve /metrics on the main listener [default: true]
    #[arg(long, env = "SEED_METRICS_ENABLED")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_enabled: Option<bool>,
    /// Serve /metrics on this address instead of the main listener [default: none]
    #[arg(long, env = "SEED_METRICS_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
    /// Change-log retention, ms [default: 604800000]
    #[arg(long, env = "SEED_EXPERIMENT_LOG_RETENTION_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_log_retention_ms: Option<i64>,
    /// Most records in the change log [default: 1000000]
    #[arg(long, env = "SEED_EXPERIMENT_LOG_MAX_RECORDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment_log_max_records: Option<usize>,
    /// Initial /sync requests built at once; others queue (0 = twice the cores) [default: 0]
    #[arg(long, env = "SEED_INITIAL_SYNC_CONCURRENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_sync_concurrency: Option<usize>,
    /// Whole events kept in memory (member events for /sync state) [default: 10000]
    #[arg(long, env = "SEED_EVENT_CACHE_CAPACITY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_cache_capacity: Option<usize>,
    /// HTTP/1 on the client listener: seed (own driver) or hyper [default: seed]
    #[arg(long, env = "SEED_HTTP1_DRIVER", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_driver: Option<Http1Driver>,
    /// A request head must arrive whole within this long of its first byte, ms [default: 30000]
    #[arg(long, env = "SEED_HTTP1_HEAD_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_head_timeout_ms: Option<u64>,
    /// An idle keep-alive connection is closed after this long, ms [default: 120000]
    #[arg(long, env = "SEED_HTTP1_KEEP_ALIVE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_keep_alive_timeout_ms: Option<u64>,
    /// Let the kernel back the heap with transparent huge pages [default: false]
    #[arg(long, env = "SEED_TRANSPARENT_HUGE_PAGES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_huge_pages: Option<bool>,
    /// Threads running the server's tasks (0 = one per core) [default: 0]
    #[arg(long, env = "SEED_WORKER_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    /// Freed memory goes back to the kernel after this long, ms (0 = at once) [default: 0]
    #[arg(long, env = "SEED_ALLOCATOR_PURGE_DELAY_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocator_purge_delay_ms: Option<u64>,
}

impl Config {
    /// The runtime's worker threads: `worker_threads`, at most 1,024; `None` when 0 (tokio
    /// decides: one per core unless `TOKIO_WORKER_THREADS` says otherwise).
    pub fn runtime_workers(&self) -> Option<usize> {
        (self.worker_threads > 0).then_some(self.worker_threads.min(1_024))
    }

    /// Initial syncs built at once: `initial_sync_concurrency`, or twice the cores when 0;
    /// at most 10,000.
    pub fn initial_sync_permits(&self) -> usize {
        match self.initial_sync_concurrency {
            0 => std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4),
            n => n.min(10_000),
        }
    }

    /// Layer defaults < TOML file < CLI/env.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &cli.config {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            fig = fig.merge(Toml::file(path));
        }
        Ok(fig.merge(Serialized::defaults(cli)).extract()?)
    }
}
