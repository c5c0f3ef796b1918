//! Command-line flags. Every flag is documented here; `--help` prints these docs.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Presence load generator that speaks only the public Matrix client-server API,
/// so the same command can target Seed or Synapse.
///
/// Phases: (1) obtain N accounts (register or --reuse cached tokens/login),
/// (2) build the room shape, (3) every user long-polls /sync as a watcher while
/// drivers change presence for `--warmup + --duration` seconds, (4) watchers keep
/// polling for `--grace` seconds, (5) delivery is matched and results are written.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "presence-bench", version, about, long_about)]
pub struct Args {
    /// Base URL of the target homeserver's client-server API (plain http; loopback targets only).
    #[arg(long, env = "PB_BASE_URL", default_value = "http://127.0.0.1:8008")]
    pub base_url: String,

    /// Free-form server label written into the results and the summary line (e.g. seed, synapse).
    #[arg(long, default_value = "unlabelled")]
    pub label: String,

    /// Number of users (each one both drives presence changes and watches via /sync).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub users: usize,

    /// Localpart prefix of the bench users: users are `<prefix>0` .. `<prefix>{N-1}`.
    #[arg(long, default_value = "pbench")]
    pub user_prefix: String,

    /// Password used for registration and login of every bench user.
    #[arg(long, default_value = "presence-bench-password")]
    pub password: String,

    /// Reuse existing accounts: take cached tokens from --accounts-file (checked with
    /// /account/whoami), else log in with m.login.password (registering only users that do not
    /// exist). Also reuses the cached rooms of the same shape if no user had to be registered.
    /// Without --reuse, users are registered (falling back to login if taken) and rooms are
    /// created anew.
    #[arg(long)]
    pub reuse: bool,

    /// JSON file caching access tokens and room ids per (base URL, prefix); always written after setup.
    #[arg(long, default_value = "presence-bench-accounts.json")]
    pub accounts_file: PathBuf,

    /// Concurrent requests during setup (register/login/createRoom/join/peek).
    #[arg(long, default_value_t = 4)]
    pub register_concurrency: usize,

    /// Room shape: one-room (all users in one room), small-rooms (rooms of --room-size
    /// consecutive users), watchers (one room per user with that user + the next --watchers users).
    #[arg(long, value_enum, default_value_t = Shape::OneRoom)]
    pub shape: Shape,

    /// Room size K for --shape small-rooms.
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,

    /// Watchers per user W for --shape watchers (capped at N-1). Presence visibility is symmetric
    /// among room members, so watchers of the same user also see each other.
    #[arg(long, default_value_t = 5)]
    pub watchers: usize,

    /// Delivery path: legacy (top-level `presence.events` of /sync) or peek (MSC2753 peek of each
    /// watched user's MSC1769 profile room; m.presence/m.status state events read from
    /// `rooms.peek.{roomId}.state|timeline`, top-level presence filtered out). Both create the
    /// shape's shared rooms (they grant visibility). peek exits 2 if the target lacks
    /// `org.matrix.msc1769.profile_room_id` in GET /profile.
    #[arg(long, value_enum, default_value_t = PathKind::Legacy)]
    pub path: PathKind,

    /// Prefix of the MSC2753 endpoints used by --path peek (`{prefix}/peek/{roomId}`,
    /// `{prefix}/rooms/{roomId}/unpeek`).
    #[arg(long, default_value = "/_matrix/client/unstable/org.matrix.msc2753")]
    pub peek_prefix: String,

    /// How presence is changed: put (PUT /presence/{userId}/status, alternating
    /// online/unavailable with status_msg `pb:<run>:<seq>`, exact matching) or sync-report
    /// (GET /sync?set_presence=online|unavailable&timeout=0, matched by sender+state+time).
    #[arg(long, value_enum, default_value_t = Mode::Put)]
    pub mode: Mode,

    /// What the watchers' long-polls report as their device's presence (`set_presence`).
    /// `offline` (the default, as in every figure before 2026-11-27): a user's only device
    /// reports offline, so their effective presence stays offline and a `PUT` changes only
    /// the status text (one `m.status` event in the profile room). `online`: the device is
    /// online, so from each user's second `PUT` on, every `PUT` also flips the effective
    /// presence between online and unavailable (`m.status` and `m.presence`); measure with a
    /// warm-up past the first minute. Only with `--mode put`.
    #[arg(long, value_enum, default_value_t = WatchPresence::Offline)]
    pub watch_presence: WatchPresence,

    /// The order in which users take turns to change presence. `user-index` (the default, and
    /// the order of every figure before 2026-11-28): users 0, 1, 2, … round-robin. With
    /// `--shape small-rooms` or `watchers`, whose rooms are runs of consecutive users, all of a
    /// room's members then change within a fraction of a second once a round, so one delivery
    /// window catches them all and a watcher is answered about once a round. `shuffled`: one
    /// fixed random permutation of the users (the same in every run), round-robin over it, so
    /// the changes a watcher sees are spread over the round as independent users' would be.
    #[arg(long, value_enum, default_value_t = ChangeOrder::UserIndex)]
    pub change_order: ChangeOrder,

    /// Target presence changes per second in total; 0 = flat out with --concurrency in flight.
    /// When all workers are busy a tick is dropped and counted (`ticks_dropped`).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Maximum presence-change requests in flight (capped at N: one in flight per user).
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,

    /// Measured window in seconds (changes sent during it are measured).
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,

    /// Seconds of changes sent before the measured window; not measured.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Seconds watchers keep polling after the last change is sent; deliveries arriving then
    /// still count.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,

    /// Long-poll timeout passed to /sync as `timeout` (milliseconds).
    #[arg(long, default_value_t = 30000)]
    pub sync_timeout_ms: u64,

    /// Client-side timeout of every non-/sync request, seconds (/sync gets its long-poll
    /// timeout + this).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,

    /// Hard bound on the whole program run time, seconds (setup included); exits 1 when hit.
    #[arg(long, default_value_t = 900.0)]
    pub max_total: f64,

    /// Write results (all parameters, target, label, timestamps, figures) as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Only obtain accounts and rooms (and the accounts file), then exit.
    #[arg(long)]
    pub setup_only: bool,

    /// PID of the server process on this machine (optional). Its CPU time (utime+stime from
    /// /proc/PID/stat) is sampled so results include server CPU seconds per change, a figure that
    /// is less sensitive to other load on the machine than throughput.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Tokio worker threads of the generator (keep low: it shares the cores with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// What to measure: delivery (watchers long-poll while drivers change presence; the
    /// default), idle (every user holds one long-poll open for --duration; with --server-pid:
    /// server RSS before/with the polls = KB per poll, and CPU while idle), churn (PUT presence
    /// at --rate for --duration with no watchers; database size, RSS and CPU sampled every
    /// --sample-secs), burst (every user's first /sync, all at once: errors, timeouts, latency).
    #[arg(long, value_enum, default_value_t = Scenario::Delivery)]
    pub scenario: Scenario,

    /// --scenario idle: carry the long-polls as HTTP/2 streams (prior knowledge) over this
    /// many connections, users spread evenly, instead of one HTTP/1.1 connection per poll. More
    /// polls can then wait at once than either process may open sockets (a file-descriptor
    /// limit). Keep each connection under the server's stream limit (hyper's default: 200).
    /// 0: HTTP/1.1.
    #[arg(long, default_value_t = 0)]
    pub idle_http2_connections: usize,

    /// --scenario idle: each poll reports this presence (`set_presence`). Unset, the polls
    /// send none, so the server takes each device as online and keeps its last-active time;
    /// `offline` measures the polls alone, as the delivery run's watchers poll.
    #[arg(long, value_enum)]
    pub idle_set_presence: Option<WatchPresence>,

    /// Seconds between samples of database size, RSS and CPU (--scenario churn).
    #[arg(long, default_value_t = 10.0)]
    pub sample_secs: f64,

    /// SQLite database file of the target (its -wal and -shm files are added) for database-size
    /// samples.
    #[arg(long)]
    pub sqlite_path: Option<PathBuf>,

    /// PostgreSQL URL of the target's database for database-size samples
    /// (`pg_database_size(current_database())`, read with the `psql` client).
    #[arg(long)]
    pub pg_url: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Delivery,
    Idle,
    Churn,
    Burst,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Delivery => "delivery",
            Scenario::Idle => "idle",
            Scenario::Churn => "churn",
            Scenario::Burst => "burst",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    OneRoom,
    SmallRooms,
    Watchers,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    Legacy,
    Peek,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Put,
    SyncReport,
}

/// `--change-order`: the order in which users take turns to change presence.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeOrder {
    UserIndex,
    Shuffled,
}

impl ChangeOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOrder::UserIndex => "user-index",
            ChangeOrder::Shuffled => "shuffled",
        }
    }

    /// The users `0..n` in the order they take turns. `Shuffled` is the same permutation in
    /// every run (a fixed seed), so runs stay comparable.
    pub fn users(self, n: usize) -> Vec<usize> {
        let mut users: Vec<usize> = (0..n).collect();
        if self == ChangeOrder::Shuffled {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            users.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x5eed_c0de));
        }
        users
    }
}

/// `--watch-presence`: the `set_presence` of the watchers' long-polls (and of the idle polls,
/// `--idle-set-presence`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchPresence {
    Offline,
    Online,
}

impl WatchPresence {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchPresence::Offline => "offline",
            WatchPresence::Online => "online",
        }
    }
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::OneRoom => "one-room",
            Shape::SmallRooms => "small-rooms",
            Shape::Watchers => "watchers",
        }
    }
}

impl PathKind {
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Legacy => "legacy",
            PathKind::Peek => "peek",
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Put => "put",
            Mode::SyncReport => "sync-report",
        }
    }
}

impl Args {
    /// Checks that cannot be expressed in clap attributes.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users >= 2, "--users must be at least 2");
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(self.register_concurrency >= 1, "--register-concurrency must be at least 1");
        anyhow::ensure!(self.rate >= 0.0 && self.rate.is_finite(), "--rate must be >= 0");
        anyhow::ensure!(self.duration > 0.0 && self.duration <= 3600.0, "--duration must be in (0, 3600]");
        anyhow::ensure!(self.warmup >= 0.0 && self.warmup <= 600.0, "--warmup must be in [0, 600]");
        anyhow::ensure!(self.grace >= 0.0 && self.grace <= 600.0, "--grace must be in [0, 600]");
        anyhow::ensure!(self.request_timeout > 0.0, "--request-timeout must be > 0");
        anyhow::ensure!(self.sync_timeout_ms <= 300_000, "--sync-timeout-ms must be <= 300000");
        anyhow::ensure!(self.max_total > 0.0, "--max-total must be > 0");
        anyhow::ensure!(
            self.idle_http2_connections == 0 || self.scenario == Scenario::Idle,
            "--idle-http2-connections is for --scenario idle"
        );
        anyhow::ensure!(self.idle_http2_connections <= 10_000, "--idle-http2-connections must be <= 10000");
        anyhow::ensure!(
            self.idle_set_presence.is_none() || self.scenario == Scenario::Idle,
            "--idle-set-presence is for --scenario idle"
        );
        anyhow::ensure!(
            self.watch_presence == WatchPresence::Offline || self.mode == Mode::Put,
            "--watch-presence online is for --mode put"
        );
        anyhow::ensure!(self.sample_secs >= 0.1, "--sample-secs must be at least 0.1");
        anyhow::ensure!(
            self.scenario != Scenario::Churn || self.rate > 0.0,
            "--scenario churn needs --rate (changes per second)"
        );
        anyhow::ensure!(self.shape != Shape::SmallRooms || self.room_size >= 2, "--room-size must be at least 2");
        anyhow::ensure!(self.shape != Shape::Watchers || self.watchers >= 1, "--watchers must be at least 1");
        anyhow::ensure!(
            self.base_url.starts_with("http://"),
            "--base-url must be a plain http:// URL (this build has no TLS)"
        );
        anyhow::ensure!(
            !self.user_prefix.is_empty()
                && self
                    .user_prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/".contains(c)),
            "--user-prefix must be a non-empty lowercase Matrix localpart"
        );
        Ok(())
    }
}
