//! Storage: sqlx queries over one dialect-neutral `AnyPool` (`$N` placeholders, times as i64
//! milliseconds). SQLite and PostgreSQL keep their own migration folders; the backend is
//! picked by the URL scheme.
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

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
    /// persistence (issue #13). See [`Writer`].
    writer: Writer,
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
            let conn =
                connect_writer(&opts).await.with_context(|| format!("connecting the writer to {}", redact(url)))?;
            Writer::Held(Arc::new(HeldWriter { conn: Arc::new(tokio::sync::Mutex::new(conn)), opts }))
        } else {
            Writer::Pool(pool.clone())
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
        .execute(&mut *self.writer().await?)
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

    /// The writer connection, for one statement or (with [`WriterConn::begin`]) a transaction;
    /// writes wait here for each other, in order.
    pub(crate) async fn writer(&self) -> sqlx::Result<WriterConn> {
        let lease = match &self.writer {
            Writer::Pool(pool) => Lease::Pooled(pool.acquire().await?),
            Writer::Held(held) => {
                let mut conn = held.conn.clone().lock_owned().await;
                // Settled when the last lease ended, unless that failed.
                settle_writer(&mut conn, &held.opts).await?;
                Lease::Held(Some(conn), held.clone())
            }
        };
        Ok(WriterConn { lease, backend: self.backend })
    }
}

/// The SQLite writer connection, set up (see [`Writer`]).
async fn connect_writer(opts: &AnyConnectOptions) -> sqlx::Result<AnyConnection> {
    let mut conn = AnyConnection::connect_with(opts).await?;
    sqlite_pragmas(&mut conn, None).await?;
    // A statement inside a transaction keeps an undo log of the pages it changes (its
    // statement journal). On disk, each write transaction opened a temporary file and
    // wrote those pages to it (issue #13: ~11 % of SQLite's thread at 166 status writes
    // a second); in memory it is the few pages one statement changes. Only the writer:
    // the pool's connections run the rare big reads, whose sorts may spill.
    conn.execute("PRAGMA temp_store = MEMORY").await?;
    Ok(conn)
}

/// Leave the writer connection out of any transaction: one left inside a transaction that
/// nothing will end ([`out_of_transaction`]) is closed, which rolls it back, and opened again.
async fn settle_writer(conn: &mut AnyConnection, opts: &AnyConnectOptions) -> sqlx::Result<()> {
    if out_of_transaction(conn).await? {
        return Ok(());
    }
    tracing::warn!("the writer connection was left in a transaction; it is closed and opened again");
    let fresh = connect_writer(opts).await?;
    let _ = std::mem::replace(conn, fresh).close().await;
    Ok(())
}

/// Whether a connection coming back from a use is out of any transaction, so the next use
/// starts clean; false: it is inside one that nothing will end, and must be closed (which
/// rolls it back).
///
/// A `Transaction` dropped without commit or rollback queues its rollback on the
/// connection: the ping waits for it. What no rollback is queued for is a `BEGIN IMMEDIATE`
/// cancelled half-way: sqlx's SQLite driver checks a custom `BEGIN` with one more round trip
/// to the connection's thread after the thread has begun, and a future dropped in between
/// (a client that hangs up, a peer whose server restarts) leaves the connection in a
/// transaction with no `Transaction` to end it. Left alone, it holds SQLite's write lock:
/// every other write waits the whole busy timeout and fails, anything later run on the
/// connection joins the transaction and is never committed, and its next `BEGIN` is refused
/// (a federation test's invite failed so in CI: `database is locked`, then `attempted to
/// call begin_with at non-zero transaction depth`).
async fn out_of_transaction(conn: &mut AnyConnection) -> sqlx::Result<bool> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

async fn begin_on(pool: &AnyPool, backend: Backend) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    pool.begin_with(begin_statement(backend)).await
}

/// How every transaction begins (see [`Store::begin`]): on SQLite with the write lock.
fn begin_statement(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    }
}

/// Where the steady writes run.
///
/// On SQLite it is one connection the store holds, not a pool. SQLite has one writer at a
/// time anyway, and a connection drops its page cache whenever another one has written, so
/// writes spread over the pool's connections would read their pages back from the file each
/// time, and wait for each other in SQLite's sleeping busy handler instead of in a queue. And
/// a pool (sqlx) pings every connection it gets back, which on SQLite is one more hand-off to
/// the connection's thread and back for every write, off the request's path but not free
/// (issue #13: returning the writer to its pool was 3 % of the server's CPU in a profile at
/// 166 status writes a second). A transaction dropped half-way leaves nothing behind: it
/// queues its rollback on the connection's thread, ahead of the next command (test
/// `a_dropped_writer_transaction_is_rolled_back_before_the_next_write`); a `BEGIN` cancelled
/// half-way, which queues none, is found as its lease ends (or, should ending it fail, when
/// the writer is next taken), and the connection replaced ([`settle_writer`]).
///
/// On PostgreSQL (and an in-memory SQLite database, which is per connection) it is the pool.
#[derive(Clone)]
enum Writer {
    Pool(AnyPool),
    Held(Arc<HeldWriter>),
}

/// The one SQLite writer connection, and how to open it again when it must be replaced
/// (see [`out_of_transaction`]).
struct HeldWriter {
    conn: Arc<tokio::sync::Mutex<AnyConnection>>,
    opts: AnyConnectOptions,
}

/// The writer connection while one write path has it (see [`Writer`]).
pub(crate) struct WriterConn {
    lease: Lease,
    backend: Backend,
}

enum Lease {
    Pooled(PoolConnection<sqlx::Any>),
    /// `None` only once dropped (see [`WriterConn`]'s `Drop`).
    Held(Option<tokio::sync::OwnedMutexGuard<AnyConnection>>, Arc<HeldWriter>),
}

const TAKEN: &str = "the writer connection is taken only when its lease ends";

/// A lease that ends with the writer inside a transaction keeps the writer until that is
/// settled ([`settle_writer`]): the next write must not wait behind it, nor join it. Nothing
/// is done for a lease that ends cleanly (the common case: one atomic load).
impl Drop for WriterConn {
    fn drop(&mut self) {
        let Lease::Held(slot, held) = &mut self.lease else { return };
        if !slot.as_deref().is_some_and(Connection::is_in_transaction) {
            return;
        }
        let (Some(mut conn), Ok(rt)) = (slot.take(), tokio::runtime::Handle::try_current()) else { return };
        let held = held.clone();
        rt.spawn(async move {
            if let Err(e) = settle_writer(&mut conn, &held.opts).await {
                tracing::warn!(error = %e, "could not end the writer connection's transaction; retried on its next use");
            }
        });
    }
}

impl WriterConn {
    /// A transaction on this connection (see [`Store::begin`]).
    pub(crate) async fn begin(&mut self) -> sqlx::Result<sqlx::Transaction<'_, sqlx::Any>> {
        let statement = begin_statement(self.backend);
        self.begin_with(statement).await
    }
}

impl std::ops::Deref for WriterConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.lease {
            Lease::Pooled(c) => c,
            Lease::Held(c, _) => c.as_deref().expect(TAKEN),
        }
    }
}

impl std::ops::DerefMut for WriterConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.lease {
            Lease::Pooled(c) => c,
            Lease::Held(c, _) => c.as_deref_mut().expect(TAKEN),
        }
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
        // A connection left in a transaction is closed, not handed out again.
        .after_release(|conn, _| Box::pin(out_of_transaction(conn)))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    sqlite_pragmas(conn, cache_kib).await?;
                }
                Ok(())
            })
        })
}

/// Every SQLite connection's settings (`cache_kib`: its page cache, `None` for SQLite's
/// default).
async fn sqlite_pragmas(conn: &mut AnyConnection, cache_kib: Option<i64>) -> sqlx::Result<()> {
    // WAL lets readers run beside the single writer; NORMAL sync is durable across
    // application crashes, which is what we promise.
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    if let Some(kib) = cache_kib {
        // Negative: a size in KiB rather than a number of pages.
        conn.execute(format!("PRAGMA cache_size = -{kib}").as_str()).await?;
    }
    Ok(())
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

    /// A store on a new SQLite file of its own (a file: the writer is held only there).
    async fn sqlite_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("seed-store-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/seed.db?mode=rwc", dir.display());
        (Store::connect(&url, 2).await.expect("connect"), dir)
    }

    /// The committed `stream_reservation` row, as the pool reads it.
    async fn reserved(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT reserved_up_to FROM stream_reservation WHERE id = 1")
            .fetch_one(&store.pool)
            .await
            .expect("the reservation row")
    }

    fn remove(store: Store, dir: std::path::PathBuf) {
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The main pool's connections keep a small SQLite page cache; the writer keeps SQLite's
    /// default (see [`SQLITE_READER_CACHE_KIB`]), and its temporary data in memory.
    #[tokio::test]
    async fn sqlite_readers_keep_a_small_page_cache_and_the_writer_the_default() {
        let (store, dir) = sqlite_store().await;
        let cache = "PRAGMA cache_size";
        let reader: i64 = sqlx::query_scalar(cache).fetch_one(&store.pool).await.expect("pragma");
        assert_eq!(reader, -SQLITE_READER_CACHE_KIB);
        let writer: i64 = sqlx::query_scalar(cache).fetch_one(&mut *store.writer().await.unwrap()).await.unwrap();
        assert_eq!(writer, -2000, "SQLite's default");
        let temp = "PRAGMA temp_store";
        let reader: i64 = sqlx::query_scalar(temp).fetch_one(&store.pool).await.expect("pragma");
        assert_eq!(reader, 0, "SQLite's default: temporary files as compiled");
        let writer: i64 = sqlx::query_scalar(temp).fetch_one(&mut *store.writer().await.unwrap()).await.unwrap();
        assert_eq!(writer, 2, "the writer's statement journals stay in memory");
        remove(store, dir);
    }

    /// The held writer connection (SQLite) has no pool to clean it up when it comes back: a
    /// transaction dropped without commit or rollback must still be undone before the next
    /// write runs, or that write would join it and never be committed.
    #[tokio::test]
    async fn a_dropped_writer_transaction_is_rolled_back_before_the_next_write() {
        let (store, dir) = sqlite_store().await;
        {
            let mut conn = store.writer().await.expect("writer");
            let mut tx = conn.begin().await.expect("begin");
            sqlx::query("INSERT INTO stream_reservation (id, reserved_up_to) VALUES (1, 42)")
                .execute(&mut *tx)
                .await
                .expect("insert");
            // Dropped here: neither committed nor rolled back.
        }
        store.reserve_stream_positions(7).await.expect("the writer works again");
        assert_eq!(reserved(&store).await, 7, "the dropped transaction's row was rolled back");
        remove(store, dir);
    }

    /// A `BEGIN IMMEDIATE` cancelled half-way (a client that hangs up, a peer's request
    /// dropped when its server restarts) must not leave its connection in a transaction
    /// nobody can end: sqlx's SQLite driver checks a custom `BEGIN` with one more round trip
    /// after the worker has begun, and a future dropped there has no `Transaction` to roll
    /// back. Such a connection holds the write lock, so every other write waits the whole
    /// busy timeout and fails, and the next `begin` on it is refused.
    #[tokio::test]
    async fn a_begin_cancelled_half_way_leaves_no_transaction_open() {
        let (store, dir) = sqlite_store().await;
        for i in 0..400u64 {
            let wait = std::time::Duration::from_micros(i % 200);
            if i % 2 == 0 {
                let _ = tokio::time::timeout(wait, store.begin()).await;
            } else {
                let _ = tokio::time::timeout(wait, async {
                    let mut conn = store.writer().await?;
                    conn.begin().await.map(|_| ())
                })
                .await;
            }
            // Both write paths still begin and commit at once, every time.
            let write = async {
                let mut tx = store.begin().await?;
                sqlx::query(
                    "INSERT INTO stream_reservation (id, reserved_up_to) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET reserved_up_to = excluded.reserved_up_to",
                )
                .bind(i as i64)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut conn = store.writer().await?;
                let tx = conn.begin().await?;
                tx.commit().await
            };
            tokio::time::timeout(std::time::Duration::from_secs(2), write)
                .await
                .unwrap_or_else(|_| panic!("round {i}: a write waited on a transaction left open"))
                .unwrap_or_else(|e| panic!("round {i}: {e}"));
        }
        assert_eq!(reserved(&store).await, 399, "every round's write was committed");
        remove(store, dir);
    }

    /// A transaction that reads, then writes, while the writer connection writes in between:
    /// the writer waits for it, and both succeed. With a plain (deferred) `BEGIN` the
    /// transaction's write fails with `SQLITE_BUSY`: its read snapshot is stale.
    #[tokio::test]
    async fn a_read_then_write_transaction_survives_the_writer_writing_meanwhile() {
        let (store, dir) = sqlite_store().await;
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
        remove(store, dir);
    }
}
