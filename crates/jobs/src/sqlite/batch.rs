//! Background tasks. sqlx runs each SQLite connection on a thread of its own, and every
//! statement is a round trip to that thread: batching many inserts (or gets) into one statement
//! pays that price once per batch instead of once per job. Also the WAL checkpoint task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::rows::{self, JobRow, db, json, micros_floor};
use super::sql::{GET, GET_BY_IDEMPOTENCY_KEY, GET_MANY, INSERT_MANY};
use super::write::WriteHealth;
use crate::model::{Job, JobId};
use crate::store::StoreError;
use crate::store::plan::NewRow;

/// Tasks that answer [`JobStore::get`](crate::JobStore::get) in batches, each with a reader connection.
pub(super) const GET_TASKS: usize = 2;
/// Most inserts committed in one statement, by default ([`SqliteOptions::max_insert_batch`](super::SqliteOptions::max_insert_batch)).
pub(super) const MAX_INSERT_BATCH: usize = 256;
/// Most jobs read by one batched `get` statement.
pub(super) const MAX_GET_BATCH: usize = 128;
/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// WAL frames (pages, 4 KiB) past which the checkpoint task empties the WAL, briefly holding
/// off the writer.
const WAL_RESET_FRAMES: i64 = 8192;

/// One `get` waiting for a batched read.
#[derive(Debug)]
pub(super) struct PendingGet {
    pub(super) id: JobId,
    pub(super) reply: oneshot::Sender<Result<Option<Job>, StoreError>>,
}

/// One insert handed to the group-commit task: the row (its job's `seq` still 0), and where the
/// stored job (with its `seq`) goes.
#[derive(Debug)]
pub(super) struct PendingInsert {
    pub(super) row: NewRow,
    pub(super) reply: oneshot::Sender<Result<Job, StoreError>>,
}

/// Copies the WAL back into the database file every [`CHECKPOINT_INTERVAL`], until `stop`.
///
/// SQLite's automatic checkpoint (off on the writer) would run on the writer's connection,
/// making the insert that crosses the threshold wait for two fsyncs. Here a `PASSIVE`
/// checkpoint, which blocks nobody, copies what it can; but under a steady stream of inserts
/// the WAL is never entirely copied, and SQLite only starts it over when it is, so once it
/// passes [`WAL_RESET_FRAMES`] a `TRUNCATE` checkpoint waits for the writer, copies the rest
/// and empties the file. Only then does the writer wait: for tens to a few hundred
/// milliseconds, once every few seconds of sustained inserts (measured: 13 ms-220 ms per 32 MiB).
pub(super) async fn checkpoint_wal(mut conn: sqlx::SqliteConnection, stop: CancellationToken) {
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
pub(super) async fn answer_gets(pool: SqlitePool, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<PendingGet>>>) {
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
                let error = shared(e);
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(error()));
                }
            }
        }
    }
}

/// The jobs among `batch`'s ids that exist, in no particular order.
async fn get_jobs(pool: &SqlitePool, batch: &[PendingGet]) -> Result<Vec<Job>, StoreError> {
    let rows = match batch {
        [one] => sqlx::query_as::<_, JobRow>(GET).bind(one.id.as_str()).fetch_optional(pool).await.map(Vec::from_iter),
        _ => {
            let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
            sqlx::query_as::<_, JobRow>(GET_MANY).bind(json(&ids)?).fetch_all(pool).await
        }
    };
    rows::jobs(rows.map_err(db)?)
}

/// The group-commit task: stores every insert waiting in `rx` (up to `max_batch`) with one
/// statement, replies with each stored job, and repeats until the store is dropped. A reply is
/// sent only once the batch has committed; a failed batch stored nothing. An insert whose
/// idempotency key is taken (by an earlier job, or an earlier insert of the same batch) stores
/// nothing and gets [`StoreError::IdempotencyKeyTaken`].
pub(super) async fn commit_inserts(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<PendingInsert>,
    health: Arc<WriteHealth>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let result = insert_jobs(&pool, &batch).await;
        health.record(&result);
        match result {
            Ok(seqs) => {
                for pending in batch.drain(..) {
                    let reply = stored(&pool, pending.row, &seqs).await;
                    let _ = pending.reply.send(reply);
                }
            }
            // One bad row fails the whole statement: store each alone to tell which. (Not
            // when the store cannot write: each would fail the same way.)
            Err(e) if batch.len() > 1 && !e.is_transient() => {
                tracing::debug!(error = %e, jobs = batch.len(), "a batched insert failed; inserting one by one");
                for pending in batch.drain(..) {
                    let result = insert_jobs(&pool, std::slice::from_ref(&pending)).await;
                    health.record(&result);
                    let reply = match result {
                        Ok(seqs) => stored(&pool, pending.row, &seqs).await,
                        Err(e) => Err(e),
                    };
                    let _ = pending.reply.send(reply);
                }
            }
            Err(e) => {
                let error = shared(e);
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(error()));
                }
            }
        }
    }
}

/// What an insert of `row` answers once its statement committed (`seqs`: each stored job's
/// `seq` by id): the job with its `seq`; or, when no row was stored for it because its
/// idempotency key was taken, [`StoreError::IdempotencyKeyTaken`] with the job that has it.
async fn stored(pool: &SqlitePool, row: NewRow, seqs: &HashMap<String, i64>) -> Result<Job, StoreError> {
    if let Some(&seq) = seqs.get(row.job.id.as_str()) {
        return Ok(Job { seq, ..row.job });
    }
    let no_row = || StoreError::Database("the insert returned no row for this job".into());
    let key = row.job.idempotency.as_ref().map(|i| i.key.as_str()).ok_or_else(no_row)?;
    let taken = sqlx::query_as::<_, JobRow>(GET_BY_IDEMPOTENCY_KEY).bind(key).fetch_optional(pool).await.map_err(db)?;
    match taken {
        Some(taken) => Err(StoreError::IdempotencyKeyTaken(Box::new(Job::try_from(taken)?))),
        None => Err(no_row()),
    }
}

/// Inserts `jobs` in one statement (so one transaction, and one round trip to SQLite's
/// thread), run to its end so that a failed commit is its error; each stored job's `seq` by id
/// (none for a job whose idempotency key was taken).
async fn insert_jobs(pool: &SqlitePool, jobs: &[PendingInsert]) -> Result<HashMap<String, i64>, StoreError> {
    type Encoded<'a> = (
        &'a str,
        &'a str,
        i32,
        Option<i64>,
        &'a str,
        i64,
        &'a str,
        &'a str,
        &'a [String],
        Option<&'a str>,
        Option<&'a str>,
    );
    let encoded: Vec<Encoded<'_>> = jobs
        .iter()
        .map(|PendingInsert { row, .. }| {
            let job = &row.job;
            (
                job.id.as_str(),
                job.command.as_str(),
                job.priority,
                row.timeout(),
                row.metadata.as_str(),
                micros_floor(job.created_at),
                row.footprint.as_str(),
                row.webhooks.as_str(),
                job.requires.as_slice(),
                job.idempotency.as_ref().map(|i| i.key.as_str()),
                job.idempotency.as_ref().map(|i| i.fingerprint.as_str()),
            )
        })
        .collect();
    let stored: Vec<(String, i64)> =
        sqlx::query_as(INSERT_MANY).bind(json(&encoded)?).fetch_all(pool).await.map_err(db)?;
    Ok(stored.into_iter().collect())
}

/// The same error for every request of a failed batch: a [`StoreError`] of the batch error's
/// kind, each with the batch error as its source.
fn shared(e: StoreError) -> impl Fn() -> StoreError {
    /// The source shared by the requests of one batch.
    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Shared(Arc<dyn std::error::Error + Send + Sync>);

    /// The kind of [`StoreError`] each request gets.
    #[derive(Clone, Copy)]
    enum Kind {
        Unavailable,
        DiskFull,
        Database,
    }

    let (kind, source): (Kind, Arc<dyn std::error::Error + Send + Sync>) = match e {
        StoreError::Unavailable(source) => (Kind::Unavailable, Arc::from(source)),
        StoreError::DiskFull(source) => (Kind::DiskFull, Arc::from(source)),
        StoreError::Database(source) => (Kind::Database, Arc::from(source)),
        other => (Kind::Database, Arc::new(other)),
    };
    move || {
        let source = Box::new(Shared(Arc::clone(&source)));
        match kind {
            Kind::Unavailable => StoreError::Unavailable(source),
            Kind::DiskFull => StoreError::DiskFull(source),
            Kind::Database => StoreError::Database(source),
        }
    }
}
