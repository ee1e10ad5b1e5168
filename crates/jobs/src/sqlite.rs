//! [`SqliteStore`]: the durable [`JobStore`], one SQLite file in WAL mode.
//!
//! Schema (`crates/jobs/migrations/`, embedded and applied at open): table `jobs`, one row per
//! job, `seq INTEGER PRIMARY KEY AUTOINCREMENT` as submission order and paging cursor; times
//! are INTEGER unix microseconds (UTC), `metadata`, `progress` and `output_files` are JSON text.
//! The queue is the partial index `jobs_queue (priority DESC, seq) WHERE status = 'queued'`;
//! `jobs_status (status, seq)` serves listing, counting and recovery. ffmpeg's log lives in
//! `job_logs` (keyed by `seq`, deleted with its job) so that job rows stay small.
//!
//! Every transition is one conditional statement (`UPDATE ... WHERE id = ? AND status = ?`),
//! so it is atomic across connections and processes; when no row matches, a second look at the
//! job tells [`StoreError::NotFound`] from [`StoreError::Conflict`]. `claim_next` is a single
//! `UPDATE ... WHERE seq = (SELECT ... LIMIT 1) RETURNING ...`: SQLite takes the write lock
//! before the sub-select runs, so two claimers (tasks, or processes sharing the file) never get
//! the same job.
//!
//! Connections: one writer (SQLite admits one writer at a time; queueing writers in the pool is
//! cheaper than letting them spin on `SQLITE_BUSY`) and a few readers, which WAL lets run beside
//! the writer. sqlx runs each SQLite connection on a thread of its own, so every statement is
//! a round trip between threads, which costs more than SQLite's own work for a small row. The
//! two hot paths are therefore batched: a group-commit task stores every insert waiting in its
//! channel with one `INSERT ... SELECT FROM json_each(?)`, and two read tasks answer every
//! waiting [`JobStore::get`] with one `SELECT ... WHERE id IN (SELECT value FROM json_each(?))`.
//! Under light load a batch holds one job and nothing waits for a batch to fill.
//!
//! Durability: `journal_mode=WAL` with `synchronous=NORMAL`. A transaction, once `insert` (or
//! any transition) has returned, survives a crash or kill of the process: it is in the WAL
//! file, in the OS page cache. It is not yet fsynced: a power loss or kernel crash can lose
//! the transactions committed since the last checkpoint (at most a fraction of a second's,
//! a checkpoint runs every 200 ms) but never corrupts the database. `synchronous=FULL` would fsync
//! every commit, dividing the insert rate several times over, for records of jobs that a
//! client can resubmit. A checkpoint task copies the WAL into the database file in the
//! background, so that no request waits for an fsync.
//!
//! Several processes may open one file (each its own `SqliteStore`): claims and transitions stay
//! exclusive, and a worker learns of a cancel made through another process at its next
//! progress update. [`JobStore::recover`] requeues every `running` job, so it belongs to the
//! start of the only process running workers; machines sharing work need leases
//! (`worker_id`, `lease_expires_at`, unused here), which is the PostgreSQL store's business.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Row};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::store::{CancelOutcome, JobStore, ListQuery, Outcome, Recovery, StatusCounts, StoreError};

/// The migrations in `crates/jobs/migrations/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for SQLite's write lock (held by another connection or process).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections (each is a thread in sqlx's SQLite driver).
const READERS: u32 = 4;
/// Tasks that answer [`JobStore::get`] in batches, each with a reader connection.
const GET_TASKS: usize = 2;
/// Most inserts committed in one statement.
const MAX_INSERT_BATCH: usize = 256;
/// Most jobs read by one batched `get` statement.
const MAX_GET_BATCH: usize = 128;
/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// WAL frames (pages, 4 KiB) past which the checkpoint task empties the WAL, briefly holding
/// off the writer.
const WAL_RESET_FRAMES: i64 = 8192;
/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// SQLite's primary result code `SQLITE_NOTADB`.
const SQLITE_NOTADB: &str = "26";

/// Why [`SqliteStore::open`] failed. The file is never replaced or repaired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The location is not `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:` or a plain path.
    #[error("`{url}` is not a SQLite location: {reason}")]
    InvalidUrl {
        /// The location as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory meant to hold the database does not exist (it is not created).
    #[error("cannot create database {}: directory {} does not exist", path.display(), dir.display())]
    MissingDirectory {
        /// The database file.
        path: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// The path exists but is not an SQLite database, or is another program's database. It is
    /// left untouched.
    #[error("{} is not an ffmpeg-worker database: {reason}", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// The database was migrated by a newer ffmpeg-worker: this build does not know its schema.
    #[error(
        "{} has schema migration {version}, unknown to this build (written by a newer ffmpeg-worker?)",
        path.display()
    )]
    UnknownMigration {
        /// The database file.
        path: PathBuf,
        /// The applied migration this build does not have.
        version: i64,
    },
    /// Reading the file or its directory failed.
    #[error("cannot open {}: {source}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bringing the schema up to date failed.
    #[error("cannot migrate {}: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// SQLite could not open or configure the database.
    #[error("cannot open {}: {source}", path.display())]
    Database {
        /// The database file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
}

/// A [`JobStore`] in an SQLite file: durable across restarts and crashes, safe to share between
/// processes on one machine (see the [module docs](self) for schema and durability).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobs::{JobStore, SqliteStore, SubmitOptions};
///
/// let store = SqliteStore::open("sqlite://data/jobs.db").await?;
/// let job = store.insert("-i in.mp4 out.webm".to_owned(), SubmitOptions::default()).await?;
/// assert_eq!(store.get(&job.id).await?, Some(job));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    /// The single connection that writes (in memory: the only connection).
    writer: SqlitePool,
    /// Connections that only read (in memory: the writer).
    reader: SqlitePool,
    /// Inserts waiting to be committed by the group-commit task.
    inserts: mpsc::Sender<PendingInsert>,
    /// Gets waiting to be answered by a batched read.
    gets: mpsc::Sender<PendingGet>,
    notify: Notify,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// The checkpoint task (files only), stopped when the store is closed or dropped.
    checkpointer: Option<Checkpointer>,
}

/// The running [`checkpoint_wal`] task; dropping this stops it.
#[derive(Debug)]
struct Checkpointer {
    stop: CancellationToken,
    /// Taken by [`SqliteStore::close`] to wait for the task's end.
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One `get` waiting for a batched read.
#[derive(Debug)]
struct PendingGet {
    id: JobId,
    reply: oneshot::Sender<Result<Option<Job>, StoreError>>,
}

/// One insert handed to the group-commit task: the job (its `seq` still 0), its metadata as
/// JSON, and where the stored job (with its `seq`) goes.
#[derive(Debug)]
struct PendingInsert {
    job: Job,
    metadata: String,
    reply: oneshot::Sender<Result<Job, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url_or_path`: `sqlite://PATH`,
    /// `sqlite:PATH` or a plain path; `sqlite::memory:` is [`SqliteStore::open_in_memory`].
    /// URL query parameters are not accepted: the store sets its own options. Migrations run
    /// at open.
    ///
    /// # Errors
    /// [`OpenError::InvalidUrl`] for a malformed location, and the errors of
    /// [`SqliteStore::open_path`].
    pub async fn open(url_or_path: &str) -> Result<SqliteStore, OpenError> {
        match parse_location(url_or_path)? {
            None => SqliteStore::open_in_memory().await,
            Some(path) => SqliteStore::open_path(&path).await,
        }
    }

    /// Opens (creating if missing) the database file at `path` and applies migrations.
    ///
    /// # Errors
    /// - [`OpenError::MissingDirectory`]: `path`'s directory does not exist.
    /// - [`OpenError::NotADatabase`]: `path` is a directory, a file that is not SQLite, or an
    ///   SQLite database with tables but no ffmpeg-worker migration history. Never modified.
    /// - [`OpenError::UnknownMigration`]: a newer ffmpeg-worker migrated the file.
    /// - [`OpenError::Io`], [`OpenError::Database`], [`OpenError::Migrate`]: anything else.
    pub async fn open_path(path: &Path) -> Result<SqliteStore, OpenError> {
        check_file(path).await?;
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .disable_statement_logging();
        let sql_err = |source: sqlx::Error| classify_open_error(path, source);

        // No `journal_mode` option: switching to WAL writes the file, which must wait until
        // `refuse_foreign` has seen that it is ours. Checkpoints are left to a task of their
        // own, so that no insert waits for the fsync at the end of one.
        let writer = pool_options(1)
            .connect_with(base.clone().create_if_missing(true).pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(sql_err)?;
        refuse_foreign(&writer, path).await?;
        // WAL is recorded in the file: every later connection uses it.
        sqlx::query("PRAGMA journal_mode = WAL").execute(&writer).await.map_err(sql_err)?;
        migrate(&writer, path).await?;
        let reader = pool_options(READERS).connect_with(base.clone().read_only(true)).await.map_err(sql_err)?;
        let checkpoint_conn = base.connect().await.map_err(sql_err)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(checkpoint_wal(checkpoint_conn, stop.clone()));
        let checkpointer = Checkpointer { stop, task: std::sync::Mutex::new(Some(task)) };
        Ok(SqliteStore::start(writer, reader, Some(path.to_owned()), Some(checkpointer)))
    }

    /// A private database in memory, gone when the store is dropped: for tests. It has one
    /// connection, shared by readers and the writer.
    ///
    /// # Errors
    /// [`OpenError::Database`] or [`OpenError::Migrate`] if SQLite fails (it should not).
    pub async fn open_in_memory() -> Result<SqliteStore, OpenError> {
        let path = Path::new(":memory:");
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true).disable_statement_logging();
        let pool = pool_options(1)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Database { path: path.to_owned(), source })?;
        migrate(&pool, path).await?;
        Ok(SqliteStore::start(pool.clone(), pool, None, None))
    }

    /// Starts the group-commit and batched-read tasks; they end when the store is dropped.
    fn start(
        writer: SqlitePool,
        reader: SqlitePool,
        path: Option<PathBuf>,
        checkpointer: Option<Checkpointer>,
    ) -> SqliteStore {
        let (inserts, rx) = mpsc::channel(MAX_INSERT_BATCH * 4);
        tokio::spawn(commit_inserts(writer.clone(), rx));
        let (gets, rx) = mpsc::channel(MAX_GET_BATCH * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..GET_TASKS {
            tokio::spawn(answer_gets(reader.clone(), Arc::clone(&rx)));
        }
        SqliteStore { writer, reader, inserts, gets, notify: Notify::new(), path, checkpointer }
    }

    /// The database file; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes every connection, checkpointing the WAL into the database file. Later calls fail
    /// with [`StoreError::Database`]. Dropping the store also closes it, in the background.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop.cancel();
            let task = checkpointer.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Like [`MemoryStore`](crate::MemoryStore)'s: wakes every waiting worker and leaves a
    /// permit for the next one.
    fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Why a conditional transition on `id` matched no row: the job is missing, or in `status`.
    async fn refusal(&self, id: &JobId, action: &'static str) -> StoreError {
        let status: Result<Option<String>, _> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?1")
            .bind(id.as_str())
            .fetch_optional(&self.writer)
            .await;
        match status {
            Err(e) => db(e),
            Ok(None) => StoreError::NotFound(id.clone()),
            Ok(Some(status)) => match status.parse::<JobStatus>() {
                Ok(status) => StoreError::Conflict { id: id.clone(), status, action },
                Err(e) => StoreError::Database(e.to_string()),
            },
        }
    }
}

/// Pool settings shared by every pool: connections live as long as the store (so their
/// prepared statements stay cached), and are not pinged before each use.
fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

/// `Some(path)` for a file, `None` for `sqlite::memory:`.
fn parse_location(url: &str) -> Result<Option<PathBuf>, OpenError> {
    let invalid = |reason| Err(OpenError::InvalidUrl { url: url.to_owned(), reason });
    let rest = match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        Some(rest) => rest,
        None if url.is_empty() => return invalid("it is empty"),
        None if url.contains("://") => return invalid("only sqlite:// is supported"),
        None => return Ok(Some(PathBuf::from(url))),
    };
    if rest.contains('?') {
        return invalid("URL parameters are not supported (the store sets its own options)");
    }
    match rest {
        "" => invalid("no path after `sqlite:`"),
        ":memory:" => Ok(None),
        path => Ok(Some(PathBuf::from(path))),
    }
}

/// Refuses, before SQLite touches anything, a path that is a directory, a file that is not an
/// SQLite database, or a new file in a directory that does not exist.
async fn check_file(path: &Path) -> Result<(), OpenError> {
    let io = |source| OpenError::Io { path: path.to_owned(), source };
    let not_a_db = |reason: &str| OpenError::NotADatabase { path: path.to_owned(), reason: reason.to_owned() };
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_dir() => Err(not_a_db("it is a directory")),
        Ok(_) => {
            use tokio::io::AsyncReadExt as _;
            let mut header = Vec::with_capacity(SQLITE_HEADER.len());
            tokio::fs::File::open(path)
                .await
                .map_err(io)?
                .take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
                .await
                .map_err(io)?;
            // SQLite treats an empty file as an empty database.
            if header.is_empty() || header == SQLITE_HEADER {
                Ok(())
            } else {
                Err(not_a_db("it does not start with the SQLite 3 header"))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            match tokio::fs::metadata(dir).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(OpenError::MissingDirectory { path: path.to_owned(), dir: dir.to_owned() }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(OpenError::MissingDirectory { path: path.to_owned(), dir: dir.to_owned() })
                }
                Err(source) => Err(OpenError::Io { path: dir.to_owned(), source }),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn classify_open_error(path: &Path, source: sqlx::Error) -> OpenError {
    match &source {
        sqlx::Error::Database(e) if e.code().as_deref() == Some(SQLITE_NOTADB) => {
            OpenError::NotADatabase { path: path.to_owned(), reason: e.message().to_owned() }
        }
        _ => OpenError::Database { path: path.to_owned(), source },
    }
}

/// Refuses another program's database (before anything writes to it).
async fn refuse_foreign(pool: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    let foreign: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'), \
                (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await
    .map_err(|source| classify_open_error(path, source))?;
    if foreign.0 > 0 && foreign.1 == 0 {
        return Err(OpenError::NotADatabase {
            path: path.to_owned(),
            reason: "it is an SQLite database of another program (tables, but no ffmpeg-worker migrations)".to_owned(),
        });
    }
    Ok(())
}

/// Applies the migrations this build has; refuses a schema from a newer build.
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    MIGRATOR.run(pool).await.map_err(|source| match source {
        sqlx::migrate::MigrateError::VersionMissing(version) => {
            OpenError::UnknownMigration { path: path.to_owned(), version }
        }
        source => OpenError::Migrate { path: path.to_owned(), source },
    })
}

// ---------------------------------------------------------------------------------------------
// Statements. Every statement that returns jobs selects JOB_COLUMNS, decoded by `job_from_row`.

/// The columns of a [`Job`], in the order `job_from_row` reads them.
macro_rules! job_columns {
    () => {
        "seq, id, status, command, priority, timeout_seconds, metadata, created_at, started_at, \
         completed_at, progress, output_files, error, attempts"
    };
}

/// ?1: a JSON array of `[id, command, priority, timeout_seconds, metadata, created_at]`, one
/// per job. SQLite inserts the rows in `ORDER BY` order and, under the write lock it holds for
/// the statement, gives each `seq` = previous + 1: the batch gets consecutive `seq`s ending at
/// the last inserted rowid. (`RETURNING` would also tell, but as one message per row from
/// sqlx's SQLite thread.)
const INSERT_MANY: &str = "INSERT INTO jobs (id, status, command, priority, timeout_seconds, metadata, created_at) \
                           SELECT value ->> 0, 'queued', value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                                  value ->> 5 \
                           FROM json_each(?1) ORDER BY key";
const GET: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");
/// ?1: a JSON array of ids.
const GET_MANY: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id IN (SELECT value FROM json_each(?1))");
const LIST: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE seq > ?1 ORDER BY seq LIMIT ?2");
const LIST_STATUS: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE status = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
/// `INDEXED BY`: without statistics SQLite's planner prefers `jobs_status` and sorts every
/// queued job on each claim; the queue index reads the next one directly (and the statement
/// fails to prepare, rather than slowing down, should the index ever be unusable).
const CLAIM: &str = concat!(
    "UPDATE jobs SET status = 'running', started_at = ?1, attempts = attempts + 1, progress = NULL \
     WHERE seq = (SELECT seq FROM jobs INDEXED BY jobs_queue WHERE status = 'queued' \
                  ORDER BY priority DESC, seq LIMIT 1) \
       AND status = 'queued' \
     RETURNING ",
    job_columns!()
);
const UPDATE_PROGRESS: &str =
    "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND status = 'running' RETURNING cancel_requested";
/// ?2 status, ?3 completed_at, ?4 output files (NULL: keep), ?5 error (NULL: keep).
const FINISH: &str = concat!(
    "UPDATE jobs SET status = ?2, completed_at = ?3, output_files = COALESCE(?4, output_files), \
       error = COALESCE(?5, error), cancel_requested = 0, \
       progress = CASE WHEN ?2 = 'completed' AND progress IS NOT NULL \
                  THEN json_set(progress, '$.percent', 100.0, '$.eta_seconds', 0.0) ELSE progress END \
     WHERE id = ?1 AND status = 'running' \
     RETURNING ",
    job_columns!()
);
const SET_LOG: &str =
    "INSERT INTO job_logs (job_seq, log) VALUES (?1, ?2) ON CONFLICT (job_seq) DO UPDATE SET log = excluded.log";
const LOG: &str = "SELECT l.log FROM jobs j LEFT JOIN job_logs l ON l.job_seq = j.seq WHERE j.id = ?1";
/// Queued: cancelled now. Running: flagged for its worker. (SQLite evaluates every `SET`
/// expression on the old row and `RETURNING` on the new one.)
const CANCEL: &str = concat!(
    "UPDATE jobs SET \
       status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END, \
       completed_at = CASE status WHEN 'queued' THEN ?2 ELSE completed_at END, \
       cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END \
     WHERE id = ?1 AND status IN ('queued', 'running') \
     RETURNING ",
    job_columns!()
);
/// A graceful stop is not a failed attempt: the interrupted start is not counted.
const REQUEUE: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, \
                       attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'running'";
const DELETE: &str = "DELETE FROM jobs WHERE id = ?1 AND status IN ('completed', 'failed', 'cancelled')";
const RECOVER_FAIL: &str = "UPDATE jobs SET status = 'failed', error = 'interrupted', completed_at = ?2, \
                            cancel_requested = 0 \
                            WHERE status = 'running' AND attempts >= ?1 RETURNING seq, id";
const RECOVER_REQUEUE: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL \
                               WHERE status = 'running' RETURNING seq, id";
const PURGE: &str = "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < ?1";
const COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

// ---------------------------------------------------------------------------------------------
// Encoding.

#[expect(clippy::needless_pass_by_value, reason = "written `.map_err(db)`")]
fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt job row: {what}: {e}"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("cannot encode JSON: {e}")))
}

/// Now, truncated to the microsecond the database keeps, and its encoding.
fn now() -> (OffsetDateTime, i64) {
    let now = OffsetDateTime::now_utc();
    let micros = micros_floor(now);
    (from_micros(micros).unwrap_or(now), micros)
}

fn micros_floor(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The smallest microsecond count not earlier than `t`: `stored < micros_ceil(t)` exactly when
/// the stored time is before `t`.
fn micros_ceil(t: OffsetDateTime) -> i64 {
    let micros = -(-t.unix_timestamp_nanos()).div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

fn from_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|e| corrupt("time", e))
}

fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let get_time = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get::<Option<i64>, _>(i).map_err(db)?.map(from_micros).transpose()
    };
    let id: String = row.try_get(1).map_err(db)?;
    let status: &str = row.try_get(2).map_err(db)?;
    let timeout: Option<i64> = row.try_get(5).map_err(db)?;
    let metadata: &str = row.try_get(6).map_err(db)?;
    let progress: Option<&str> = row.try_get(10).map_err(db)?;
    let output_files: &str = row.try_get(11).map_err(db)?;
    let attempts: i64 = row.try_get(13).map_err(db)?;
    Ok(Job {
        seq: row.try_get(0).map_err(db)?,
        id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
        status: status.parse().map_err(|e| corrupt("status", e))?,
        command: row.try_get(3).map_err(db)?,
        priority: row.try_get(4).map_err(db)?,
        timeout_seconds: timeout.map(|t| u64::try_from(t).unwrap_or(0)),
        metadata: if metadata == "{}" {
            Default::default()
        } else {
            serde_json::from_str(metadata).map_err(|e| corrupt("metadata", e))?
        },
        created_at: get_time(7)?.ok_or_else(|| corrupt("created_at", "NULL"))?,
        started_at: get_time(8)?,
        completed_at: get_time(9)?,
        progress: progress.map(serde_json::from_str::<Progress>).transpose().map_err(|e| corrupt("progress", e))?,
        output_files: if output_files == "[]" {
            Vec::new()
        } else {
            serde_json::from_str(output_files).map_err(|e| corrupt("output_files", e))?
        },
        error: row.try_get(12).map_err(db)?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
    })
}

fn jobs_from_rows(rows: &[SqliteRow]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(job_from_row).collect()
}

// ---------------------------------------------------------------------------------------------
// Background tasks. sqlx runs each SQLite connection on a thread of its own, and every
// statement is a round trip to that thread: batching many inserts (or gets) into one statement
// pays that price once per batch instead of once per job.

/// Copies the WAL back into the database file every [`CHECKPOINT_INTERVAL`], until `stop`.
///
/// SQLite's automatic checkpoint (off on the writer) would run on the writer's connection,
/// making the insert that crosses the threshold wait for two fsyncs. Here a `PASSIVE`
/// checkpoint, which blocks nobody, copies what it can; but under a steady stream of inserts
/// the WAL is never entirely copied, and SQLite only starts it over when it is, so once it
/// passes [`WAL_RESET_FRAMES`] a `TRUNCATE` checkpoint waits for the writer, copies the rest
/// and empties the file. Only then does the writer wait: for tens to a few hundred
/// milliseconds, once every few seconds of sustained inserts (measured: 13 ms-220 ms per 32 MiB).
async fn checkpoint_wal(mut conn: sqlx::SqliteConnection, stop: CancellationToken) {
    const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    const TRUNCATE: &str = "PRAGMA wal_checkpoint(TRUNCATE)";
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        // (busy, frames in the WAL, frames copied); busy when another process checkpoints.
        let result = match sqlx::query_as::<_, (i64, i64, i64)>(PASSIVE).fetch_one(&mut conn).await {
            Ok((_, frames, _)) if frames > WAL_RESET_FRAMES => {
                sqlx::query_as::<_, (i64, i64, i64)>(TRUNCATE).fetch_one(&mut conn).await
            }
            result => result,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "SQLite WAL checkpoint failed; retrying later");
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// A batched-read task: takes every `get` waiting (up to [`MAX_GET_BATCH`]), reads those jobs
/// with one statement, answers each; until the store is dropped. Several such tasks share `rx`
/// so that one collects the next batch while another reads.
async fn answer_gets(pool: SqlitePool, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingGet>>>) {
    let mut batch = Vec::with_capacity(MAX_GET_BATCH);
    loop {
        if rx.lock().await.recv_many(&mut batch, MAX_GET_BATCH).await == 0 {
            return;
        }
        match get_jobs(&pool, &batch).await {
            Ok(mut found) => {
                // A batch may ask for one id several times (many clients polling one job): one
                // row answers them all, so rows are cloned unless the batch is a single request.
                if let [_] = batch.as_slice() {
                    let pending = batch.remove(0);
                    let job = found.pop().filter(|j| j.id == pending.id);
                    let _ = pending.reply.send(Ok(job));
                }
                for pending in batch.drain(..) {
                    let job = found.iter().find(|j| j.id == pending.id).cloned();
                    let _ = pending.reply.send(Ok(job));
                }
            }
            Err(e) => {
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(StoreError::Database(e.to_string())));
                }
            }
        }
    }
}

/// The jobs among `batch`'s ids that exist, in no particular order.
async fn get_jobs(pool: &SqlitePool, batch: &[PendingGet]) -> Result<Vec<Job>, StoreError> {
    let rows = match batch {
        [one] => sqlx::query(GET).bind(one.id.as_str()).fetch_optional(pool).await.map(Vec::from_iter),
        _ => {
            let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
            sqlx::query(GET_MANY).bind(json(&ids)?).fetch_all(pool).await
        }
    };
    jobs_from_rows(&rows.map_err(db)?)
}

/// The group-commit task: stores every insert waiting in `rx` (up to [`MAX_INSERT_BATCH`]) with
/// one statement, replies with each stored job, and repeats until the store is dropped.
async fn commit_inserts(pool: SqlitePool, mut rx: mpsc::Receiver<PendingInsert>) {
    let mut batch = Vec::with_capacity(MAX_INSERT_BATCH);
    while rx.recv_many(&mut batch, MAX_INSERT_BATCH).await > 0 {
        match insert_jobs(&pool, &batch).await {
            Ok(seqs) => {
                for (mut pending, seq) in batch.drain(..).zip(seqs) {
                    pending.job.seq = seq;
                    let _ = pending.reply.send(Ok(pending.job));
                }
            }
            // One bad row fails the whole transaction: store each alone to tell which.
            Err(_) if batch.len() > 1 => {
                for mut pending in batch.drain(..) {
                    let result = insert_jobs(&pool, std::slice::from_ref(&pending)).await;
                    let _ = pending.reply.send(result.map(|seqs| {
                        pending.job.seq = seqs.first().copied().unwrap_or_default();
                        pending.job
                    }));
                }
            }
            Err(e) => {
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(StoreError::Database(e.to_string())));
                }
            }
        }
    }
}

/// Inserts `jobs` in one statement (so one transaction, and one round trip to SQLite's
/// thread); their `seq`s, in order.
async fn insert_jobs(pool: &SqlitePool, jobs: &[PendingInsert]) -> Result<Vec<i64>, StoreError> {
    type Encoded<'a> = (&'a str, &'a str, i32, Option<i64>, &'a str, i64);
    let encoded: Vec<Encoded<'_>> = jobs
        .iter()
        .map(|PendingInsert { job, metadata, .. }| {
            // Beyond i64::MAX seconds means "no limit" anyway.
            let timeout = job.timeout_seconds.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
            (
                job.id.as_str(),
                job.command.as_str(),
                job.priority,
                timeout,
                metadata.as_str(),
                micros_floor(job.created_at),
            )
        })
        .collect();
    let done = sqlx::query(INSERT_MANY).bind(json(&encoded)?).execute(pool).await.map_err(db)?;
    let n = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
    if done.rows_affected() != jobs.len() as u64 {
        return Err(StoreError::Database(format!("stored {} of {n} jobs", done.rows_affected())));
    }
    let first = done.last_insert_rowid() - n + 1;
    Ok((first..first + n).collect())
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let stopped = || StoreError::Database("the store's writer task has stopped".to_owned());
        let metadata = json(&options.metadata)?;
        // The timeout is stored as an SQLite INTEGER (i64); the seq is assigned when stored.
        let options =
            SubmitOptions { timeout_seconds: options.timeout_seconds.map(|t| t.min(i64::MAX as u64)), ..options };
        let job = Job::new_queued(command, options, 0, now().0);
        let (reply, stored) = oneshot::channel();
        self.inserts.send(PendingInsert { job, metadata, reply }).await.map_err(|_| stopped())?;
        let job = stored.await.map_err(|_| stopped())??;
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let stopped = || StoreError::Database("the store's read tasks have stopped".to_owned());
        let (reply, found) = oneshot::channel();
        self.gets.send(PendingGet { id: id.clone(), reply }).await.map_err(|_| stopped())?;
        found.await.map_err(|_| stopped())?
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let after = query.after_seq.unwrap_or(i64::MIN);
        let limit = i64::from(query.limit);
        let rows = match query.status {
            Some(status) => {
                sqlx::query(LIST_STATUS).bind(status.as_str()).bind(after).bind(limit).fetch_all(&self.reader).await
            }
            None => sqlx::query(LIST).bind(after).bind(limit).fetch_all(&self.reader).await,
        }
        .map_err(db)?;
        jobs_from_rows(&rows)
    }

    async fn claim_next(&self) -> Result<Option<Job>, StoreError> {
        let (_, started) = now();
        let row = sqlx::query(CLAIM).bind(started).fetch_optional(&self.writer).await.map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(UPDATE_PROGRESS)
            .bind(id.as_str())
            .bind(json(progress)?)
            .fetch_optional(&self.writer)
            .await
            .map_err(db)?;
        match cancel {
            Some(cancel) => Ok(cancel),
            None => Err(self.refusal(id, "update progress").await),
        }
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        let (status, output_files, error) = match outcome {
            Outcome::Completed { output_files } => (JobStatus::Completed, Some(json(&output_files)?), None),
            Outcome::Failed { error } => (JobStatus::Failed, None, Some(error)),
            Outcome::Cancelled => (JobStatus::Cancelled, None, None),
        };
        let (_, completed) = now();
        let job = {
            let mut tx = self.writer.begin().await.map_err(db)?;
            let row = sqlx::query(FINISH)
                .bind(id.as_str())
                .bind(status.as_str())
                .bind(completed)
                .bind(output_files)
                .bind(error)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            match row {
                Some(row) => {
                    let job = job_from_row(&row)?;
                    if !log.is_empty() {
                        sqlx::query(SET_LOG).bind(job.seq).bind(log).execute(&mut *tx).await.map_err(db)?;
                    }
                    tx.commit().await.map_err(db)?;
                    Some(job)
                }
                // Rolled back on drop, before `refusal` needs the (in memory: only) connection.
                None => None,
            }
        };
        match job {
            Some(job) => Ok(job),
            None => Err(self.refusal(id, "finish").await),
        }
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let log: Option<Option<String>> =
            sqlx::query_scalar(LOG).bind(id.as_str()).fetch_optional(&self.reader).await.map_err(db)?;
        Ok(log.map(Option::unwrap_or_default))
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let (_, completed) = now();
        let row =
            sqlx::query(CANCEL).bind(id.as_str()).bind(completed).fetch_optional(&self.writer).await.map_err(db)?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                Ok(if job.status == JobStatus::Cancelled {
                    CancelOutcome::Cancelled(job)
                } else {
                    CancelOutcome::Requested(job)
                })
            }
            None => Err(self.refusal(id, "cancel").await),
        }
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        let done = sqlx::query(REQUEUE).bind(id.as_str()).execute(&self.writer).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.refusal(id, "requeue").await);
        }
        self.wake();
        Ok(())
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let done = sqlx::query(DELETE).bind(id.as_str()).execute(&self.writer).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.refusal(id, "delete").await);
        }
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let (_, completed) = now();
        let mut tx = self.writer.begin().await.map_err(db)?;
        let mut failed: Vec<(i64, String)> = sqlx::query_as(RECOVER_FAIL)
            .bind(i64::from(max_attempts))
            .bind(completed)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut requeued: Vec<(i64, String)> = sqlx::query_as(RECOVER_REQUEUE).fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let ids = |rows: &mut Vec<(i64, String)>| -> Result<Vec<JobId>, StoreError> {
            rows.sort_unstable();
            rows.iter().map(|(_, id)| JobId::parse(id).map_err(|e| corrupt("id", e))).collect()
        };
        let recovery = Recovery { requeued: ids(&mut requeued)?, failed: ids(&mut failed)? };
        if !recovery.requeued.is_empty() {
            self.wake();
        }
        Ok(recovery)
    }

    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE).bind(micros_ceil(cutoff)).execute(&self.writer).await.map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&self.reader).await.map_err(db)?;
        rows.into_iter()
            .map(|(status, n)| {
                let status = status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(db)?;
        Ok(())
    }
}
