//! [`StoreError`], what every [`JobStore`](super::JobStore) method fails with.

use crate::model::{Job, JobId, JobStatus};

/// A boxed error: the cause kept as [`StoreError`]'s source, whatever the store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from a [`JobStore`](super::JobStore). A write that returns an error changed nothing; a
/// write that returns `Ok` is durable (see docs/deployment.md for what "durable" means per store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The transition is not allowed from the job's current status. Nothing was changed.
    #[error("job {id} is {status}: {action} is not possible")]
    Conflict {
        /// The job.
        id: JobId,
        /// Its current status.
        status: JobStatus,
        /// What was attempted, e.g. "cancel".
        action: &'static str,
    },
    /// [`JobStore::insert`](super::JobStore::insert) of a submission whose idempotency key
    /// is already another job's: nothing was inserted; holds that job as it is now (its
    /// [`Job::idempotency`] has the fingerprint to compare).
    #[error("idempotency key `{}` is already job {}'s", key_of(.0), .0.id)]
    IdempotencyKeyTaken(Box<Job>),
    /// The store cannot record changes now: its disk is full, its file is read-only, an I/O
    /// error, or another process has held the write lock past the busy timeout. Nothing was
    /// written; the same call may succeed later, with no restart (HTTP: 503 + `Retry-After`).
    #[error("the job store cannot write now: {0}")]
    Unavailable(#[source] BoxError),
    /// The store cannot record changes because the disk holding its database is full
    /// (SQLite's `SQLITE_FULL`, PostgreSQL's SQLSTATE 53100 `disk_full`). Nothing was written;
    /// reads still answer, and the same call succeeds once space is freed, with no restart
    /// (HTTP: 507 `insufficient-storage`; `/ready` 503 naming the full disk).
    #[error("the job store cannot write: the disk holding its database is full ({0})")]
    DiskFull(#[source] BoxError),
    /// The database failed otherwise (closed, a statement failed, a stored row cannot be
    /// decoded).
    #[error("database error: {0}")]
    Database(#[source] BoxError),
}

fn key_of(job: &Job) -> &str {
    job.idempotency.as_ref().map_or("", |i| i.key.as_str())
}

impl StoreError {
    /// Whether the same call may succeed later without anything else changing (the store
    /// was [`StoreError::Unavailable`], or its disk was full: [`StoreError::DiskFull`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::DiskFull(_))
    }

    /// Whether the store's disk was full ([`StoreError::DiskFull`]).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull(_))
    }
}
