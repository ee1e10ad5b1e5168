//! [`SqliteStore`]: the durable [`JobStore`](crate::JobStore), one SQLite file in WAL mode.
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
//! job tells [`StoreError::NotFound`](crate::StoreError::NotFound) from
//! [`StoreError::Conflict`](crate::StoreError::Conflict). `claim_next` is a single
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
//! waiting [`JobStore::get`](crate::JobStore::get) with one `SELECT ... WHERE id IN (SELECT value FROM json_each(?))`.
//! Under light load a batch holds one job and nothing waits for a batch to fill. `cargo xtask
//! bench store` measures what group commit pays (docs/benchmarks.md: 8x the inserts per second
//! with 64 concurrent submitters, the same with one).
//!
//! A write that returns `Ok` has committed; one that cannot commit (disk full, read-only file)
//! returns [`StoreError::Unavailable`](crate::StoreError::Unavailable) and changed nothing; see
//! `write.rs` for how (never acknowledging a commit sqlx did not report).
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
//! progress update. Event streams see what the other processes change: while they watch
//! something, the store reads it every quarter of a second and signals the changes
//! ([`JobStore::cluster_signals`](crate::JobStore::cluster_signals), `follow`).
//! [`JobStore::recover`](crate::JobStore::recover) requeues every `running` job, so it belongs
//! to the start of the only process running workers; machines sharing work need leases
//! (`worker_id`, `lease_expires_at`, unused here), which is the PostgreSQL store's business.
//!
//! Layout: `open` (locations, checks, pools, migrations), `batch` (group commit, batched
//! gets, WAL checkpoints), `follow` (the other processes' changes, for event streams), `sql`
//! (the statements), `rows` (row mapping and encoding), `transitions` (the
//! [`JobStore`](crate::JobStore) implementation), `write` (how a write commits or fails whole;
//! write health).

mod batch;
mod follow;
mod open;
pub(crate) mod rows;
mod sql;
mod transitions;
pub(crate) mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use batch::{GET_TASKS, MAX_GET_BATCH, MAX_INSERT_BATCH, PendingGet, PendingInsert, answer_gets, commit_inserts};
use write::WriteHealth;

pub use follow::FOLLOW_INTERVAL;
pub use open::OpenError;

/// A [`JobStore`](crate::JobStore) in an SQLite file: durable across restarts and crashes, safe to share between
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
    /// When the soonest job a claim passed over for its `retry_at` may start.
    due: crate::store::Due,
    /// What this store's claims remember of the jobs they read (`store/memo.rs`).
    pub(crate) memo: crate::store::ClaimMemo,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// The checkpoint task (files only), stopped when the store is closed or dropped.
    checkpointer: Option<Checkpointer>,
    /// Whether the latest writes succeeded (readiness).
    health: Arc<WriteHealth>,
    /// What the other processes on the file change, while this one's streams watch it
    /// (files only: nobody else can open an in-memory database).
    follower: Option<follow::Follower>,
}

/// Tuning of a [`SqliteStore`]; [`Default`] is what the server uses.
///
/// ```
/// let options = jobs::SqliteOptions::default().max_insert_batch(1); // no group commit
/// assert_eq!(options.insert_batch_limit(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    max_insert_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { max_insert_batch: MAX_INSERT_BATCH }
    }
}

impl SqliteOptions {
    /// The most concurrent inserts committed by one statement (group commit), default 256.
    /// `1` stores every insert with a statement of its own, which is what `cargo xtask bench
    /// store` compares the default with (docs/benchmarks.md). `0` counts as `1`.
    #[must_use]
    pub fn max_insert_batch(mut self, jobs: usize) -> Self {
        self.max_insert_batch = jobs.max(1);
        self
    }

    /// The limit set by [`max_insert_batch`](Self::max_insert_batch), in jobs.
    pub fn insert_batch_limit(&self) -> usize {
        self.max_insert_batch
    }
}

/// The running [`batch::checkpoint_wal`] task; dropping this stops it.
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

impl SqliteStore {
    /// Starts the group-commit and batched-read tasks; they end when the store is dropped.
    fn start(
        writer: SqlitePool,
        reader: SqlitePool,
        path: Option<PathBuf>,
        checkpointer: Option<Checkpointer>,
        options: SqliteOptions,
    ) -> SqliteStore {
        let (inserts, rx) = mpsc::channel(MAX_INSERT_BATCH * 4);
        let health = Arc::new(WriteHealth::default());
        tokio::spawn(commit_inserts(writer.clone(), rx, Arc::clone(&health), options.max_insert_batch));
        let (gets, rx) = mpsc::channel(MAX_GET_BATCH * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..GET_TASKS {
            tokio::spawn(answer_gets(reader.clone(), Arc::clone(&rx)));
        }
        let follower = path.is_some().then(|| follow::Follower::start(reader.clone()));
        SqliteStore {
            writer,
            reader,
            inserts,
            gets,
            notify: Notify::new(),
            due: Default::default(),
            memo: Default::default(),
            path,
            checkpointer,
            health,
            follower,
        }
    }

    /// The database file; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes every connection, checkpointing the WAL into the database file. Later calls fail
    /// with [`StoreError::Database`](crate::StoreError::Database). Dropping the store also
    /// closes it, in the background.
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
}
