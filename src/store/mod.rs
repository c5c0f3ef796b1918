//! Storage: sqlx queries over one dialect-neutral `AnyPool` (`$N` placeholders, times as i64
//! milliseconds). SQLite and PostgreSQL keep their own migration folders; the backend is
//! picked by the URL scheme.
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

mod account_data;
mod accounts;
mod batch;
mod dag;
mod directory;
mod experiment;
mod federation_peeks;
mod filters;
mod media;
mod presence;
mod presence_lists;
mod profile;
mod pushers;
mod receipts;
mod redaction;
mod relations;
mod remote_presence;
mod retention;
mod rooms;
pub mod state_groups;

pub use account_data::*;
pub use accounts::*;
pub use experiment::*;
pub use media::*;
pub use presence::*;
pub use presence_lists::*;
pub use receipts::*;
pub use relations::*;
pub use remote_presence::RemotePresenceRow;
pub use retention::HistoryRow;
pub use rooms::NewRoom;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    /// Where the steady write paths run: status writes, last-active flushes and event
    /// persistence (issue #13). On SQLite it is one connection of its own: SQLite has one
    /// writer at a time anyway, and a connection drops its page cache whenever another one
    /// has written, so writes spread over the pool's connections read their pages back from
    /// the file each time, and wait for each other in SQLite's sleeping busy handler instead of
    /// in the pool's queue. On PostgreSQL (and an in-memory SQLite database, which is per
    /// connection) it is the pool.
    writer: AnyPool,
    pub backend: Backend,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!("unsupported database URL (want sqlite:// or postgres://): {url}");
        };
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url)?;
        }
        let opts = AnyConnectOptions::from_str(url).context("parsing database URL")?;
        let pool = pool_options(backend, max_connections.max(1), Some(SQLITE_READER_CACHE_KIB))
            .connect_with(opts.clone())
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("running migrations")?;
        let writer = if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
            pool_options(backend, 1, None)
                .connect_with(opts)
                .await
                .with_context(|| format!("connecting the writer to {}", redact(url)))?
        } else {
            pool.clone()
        };
        Ok(Self { pool, writer, backend })
    }

    /// Highest stream position already written by any table, used to seed the stream.
    pub async fn max_stream_position(&self) -> sqlx::Result<i64> {
        let (events,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(stream_ordering) FROM events").fetch_one(&self.pool).await?;
        let (reserved,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(reserved_up_to) FROM stream_reservation").fetch_one(&self.pool).await?;
        Ok(events.unwrap_or(0).max(reserved.unwrap_or(0)))
    }

    /// Persist that positions up to `up_to` may have been handed out.
    pub async fn reserve_stream_positions(&self, up_to: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO stream_reservation (id, reserved_up_to) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET reserved_up_to = CASE \
             WHEN excluded.reserved_up_to > stream_reservation.reserved_up_to THEN excluded.reserved_up_to \
             ELSE stream_reservation.reserved_up_to END",
        )
        .bind(up_to)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

impl Store {
    /// A transaction on the main pool. On SQLite it takes the write lock at its start (`BEGIN
    /// IMMEDIATE`): a transaction that reads and then writes would otherwise fail at its first
    /// write with `SQLITE_BUSY` (no waiting: its snapshot is stale) whenever another connection,
    /// such as the writer, wrote in between, which on this server is every few milliseconds.
    pub(crate) async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        begin_on(&self.pool, self.backend).await
    }

    /// A transaction on the writer connection (see [`Store::begin`]).
    pub(crate) async fn begin_writer(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        begin_on(&self.writer, self.backend).await
    }
}

async fn begin_on(pool: &AnyPool, backend: Backend) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
}

/// SQLite's page cache of each connection of the main pool, in KiB (SQLite's default: 2,000).
///
/// Under WAL a connection's cache is emptied whenever another connection has written, which on
/// this server is every few milliseconds (the writer connection), so what a reader caches is
/// rarely read again; the file's pages stay in the operating system's cache. But each cache
/// keeps its memory once filled: 16 connections held ~2 MB each (issue #13, 10,000 users × 100
/// watchers: 238 MB of RSS with 16 connections, 213 MB with 4). The writer keeps the default:
/// it is the one connection whose cache survives.
const SQLITE_READER_CACHE_KIB: i64 = 256;

/// The pool settings both pools share (`max`: most connections; `cache_kib`: SQLite's page
/// cache per connection, `None` for SQLite's default).
fn pool_options(backend: Backend, max: u32, cache_kib: Option<i64>) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // No `ping` before each acquire (sqlx's default): on SQLite it is a round trip to
        // the connection's worker thread, on PostgreSQL one over the network, for every
        // query (issue #13: a status `PUT` was acquire + ping + BEGIN + INSERT + COMMIT). A
        // broken connection is still found: sqlx pings each connection when it goes back
        // to the pool (after the query, off the request's path) and closes it if that fails.
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the single writer; NORMAL sync is
                    // durable across application crashes, which is what we promise.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    if let Some(kib) = cache_kib {
                        // Negative: a size in KiB rather than a number of pages.
                        conn.execute(format!("PRAGMA cache_size = -{kib}").as_str()).await?;
                    }
                }
                Ok(())
            })
        })
}

fn create_sqlite_parent_dir(url: &str) -> anyhow::Result<()> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    Ok(())
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main pool's connections keep a small SQLite page cache; the writer keeps SQLite's
    /// default (see [`SQLITE_READER_CACHE_KIB`]).
    #[tokio::test]
    async fn sqlite_readers_keep_a_small_page_cache_and_the_writer_the_default() {
        let dir = std::env::temp_dir().join(format!("seed-cache-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/seed.db?mode=rwc", dir.display());
        let store = Store::connect(&url, 2).await.expect("connect");
        let cache = |pool: &AnyPool| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>("PRAGMA cache_size").fetch_one(&pool).await.expect("pragma") }
        };
        assert_eq!(cache(&store.pool).await, -SQLITE_READER_CACHE_KIB);
        assert_eq!(cache(&store.writer).await, -2000, "SQLite's default");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A transaction that reads, then writes, while the writer connection writes in between:
    /// the writer waits for it, and both succeed. With a plain (deferred) `BEGIN` the
    /// transaction's write fails with `SQLITE_BUSY`: its read snapshot is stale.
    #[tokio::test]
    async fn a_read_then_write_transaction_survives_the_writer_writing_meanwhile() {
        let dir = std::env::temp_dir().join(format!("seed-tx-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/seed.db?mode=rwc", dir.display());
        let store = Store::connect(&url, 2).await.expect("connect");
        store.reserve_stream_positions(1).await.expect("first reservation");
        let mut tx = store.begin().await.expect("begin");
        let (seen,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(reserved_up_to) FROM stream_reservation").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(seen, Some(1));
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { store.reserve_stream_positions(5).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query("UPDATE stream_reservation SET reserved_up_to = $1 WHERE id = 1")
            .bind(seen.unwrap() + 1)
            .execute(&mut *tx)
            .await
            .expect("the transaction's write, after the writer tried to write");
        tx.commit().await.expect("commit");
        writer.await.unwrap().expect("the writer's write, once the transaction committed");
        let (now,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(reserved_up_to) FROM stream_reservation").fetch_one(&store.pool).await.unwrap();
        assert_eq!(now, Some(5), "the writer's reservation came after the transaction's");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
