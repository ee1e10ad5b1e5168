//! How a write commits, or fails without leaving anything behind.
//!
//! SQLite commits a statement outside a transaction when the statement *finishes*: when it
//! is stepped to its end, or when it is reset. sqlx's `fetch_optional` and `fetch_one` stop
//! after the first row and reset the statement, dropping whatever the reset reports: an
//! `UPDATE ... RETURNING` read that way returns its row even when the commit that follows
//! fails (disk full), and the caller acknowledges a change that is not in the database.
//! So here every statement that writes runs to its end (`execute`, or `fetch_all` for one
//! that returns rows), where a failed commit is an error of the statement itself.
//!
//! Several statements that must commit together run in a [`WriteTx`]: `BEGIN IMMEDIATE`,
//! the statements, `COMMIT`; on any error `ROLLBACK`. sqlx's own `Transaction` is not used:
//! it counts nesting depth itself and, when a `COMMIT` fails after SQLite has already rolled
//! back, keeps counting one open transaction, so that every later `begin` becomes a
//! `SAVEPOINT` and a later rollback a `ROLLBACK TO`, which leaves SQLite's transaction open:
//! from then on nothing written on that connection ever commits. A [`WriteTx`] whose
//! rollback fails, or that is dropped unfinished (its future cancelled), closes its
//! connection instead of returning it to the pool: SQLite rolls back whatever a closed
//! connection left open, and the pool opens a fresh one. (For a store in memory that loses
//! the database: it lives in its only connection. That store is for tests.)
//!
//! [`WriteHealth`] remembers whether the latest writes succeeded, for readiness.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

use super::rows::db;
use crate::store::StoreError;

/// An open write transaction on the writer connection (see the [module docs](self)).
#[derive(Debug)]
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    /// A transaction may be open on `conn`: when dropped so, the connection is closed.
    open: bool,
}

impl WriteTx {
    /// Takes the writer connection and starts a transaction holding SQLite's write lock.
    pub(super) async fn begin(pool: &SqlitePool) -> Result<WriteTx, StoreError> {
        let conn = pool.acquire().await.map_err(db)?;
        // Marked open before `BEGIN` is sent: if this future is dropped while it runs, the
        // connection is closed rather than reused in an unknown state.
        let mut tx = WriteTx { conn, open: true };
        match sqlx::query("BEGIN IMMEDIATE").execute(&mut *tx.conn).await {
            Ok(_) => Ok(tx),
            Err(e) => {
                tx.rollback().await;
                Err(db(e))
            }
        }
    }

    /// The connection, for the transaction's statements (each run to its end).
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Commits. On error the transaction is rolled back: nothing it wrote remains.
    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        match sqlx::query("COMMIT").execute(&mut *self.conn).await {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(e) => {
                self.rollback().await;
                Err(db(e))
            }
        }
    }

    /// Ends the transaction as the work done in it says: commits when it changed something
    /// (`Ok(Some)`), otherwise (refused, `Ok(None)`, or failed) rolls back, so that nothing it
    /// wrote remains. A refusal is rolled back before the caller looks at the job again (in
    /// memory, the writer is the only connection).
    pub(super) async fn end<T>(self, done: Result<Option<T>, StoreError>) -> Result<Option<T>, StoreError> {
        match done {
            Ok(Some(value)) => {
                self.commit().await?;
                Ok(Some(value))
            }
            Ok(None) => {
                self.rollback().await;
                Ok(None)
            }
            Err(e) => {
                self.rollback().await;
                Err(e)
            }
        }
    }

    /// Rolls back. If SQLite refuses (it may have rolled back on its own, after a failed
    /// statement or commit, or not), the connection is closed on drop: either way nothing
    /// stays open.
    pub(super) async fn rollback(mut self) {
        if sqlx::query("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
            self.open = false;
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            tracing::debug!("closing the SQLite writer connection: a transaction may be open on it");
            self.conn.close_on_drop();
        }
    }
}

/// How long a successful write vouches for the store's ability to write, before
/// [`WriteHealth`] asks for a probe.
const TRUSTED_FOR: Duration = Duration::from_secs(2);
/// How long after a write failed for lack of capacity the store still counts as unable to
/// write, whatever smaller writes do meanwhile (a full disk can take a progress update in the
/// WAL's spare pages and refuse every new job).
const FAILURE_WINDOW: Duration = Duration::from_secs(3);

/// Whether the store could write lately: fed by every write's outcome, read by readiness.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    state: std::sync::Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// When a write last committed.
    last_ok: Option<Instant>,
    /// When a write last failed with [`StoreError::Unavailable`] or
    /// [`StoreError::DiskFull`], and why.
    last_failure: Option<Failure>,
}

/// A write's failure for lack of capacity, as [`WriteHealth`] keeps it.
#[derive(Debug)]
struct Failure {
    at: Instant,
    /// The error's text.
    reason: String,
    /// It was [`StoreError::DiskFull`].
    disk_full: bool,
}

/// Why [`WriteHealth::verdict`] says the store cannot write.
#[derive(Debug, thiserror::Error)]
#[error("a write failed {:.1} s ago: {reason}", ago.as_secs_f64())]
struct RecentFailure {
    ago: Duration,
    reason: String,
}

/// What [`WriteHealth::verdict`] concludes.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A write committed lately and none failed since the failure window.
    Writable,
    /// A write failed for lack of capacity within the failure window.
    Failing(StoreError),
    /// Not known lately: a probe write must tell.
    Probe,
}

impl WriteHealth {
    /// Records a write's outcome. Errors other than [`StoreError::Unavailable`] and
    /// [`StoreError::DiskFull`] say nothing about the store's ability to write.
    pub(crate) fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(_) => state.last_ok = Some(Instant::now()),
            Err(e @ (StoreError::Unavailable(source) | StoreError::DiskFull(source))) => {
                let disk_full = e.is_disk_full();
                state.last_failure = Some(Failure { at: Instant::now(), reason: source.to_string(), disk_full });
            }
            Err(_) => {}
        }
    }

    /// Whether the store can write, from its latest writes.
    pub(crate) fn verdict(&self) -> Verdict {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&state.last_failure, state.last_ok) {
            (Some(failure), _) if failure.at.elapsed() < FAILURE_WINDOW => {
                let recent = Box::new(RecentFailure { ago: failure.at.elapsed(), reason: failure.reason.clone() });
                Verdict::Failing(if failure.disk_full {
                    StoreError::DiskFull(recent)
                } else {
                    StoreError::Unavailable(recent)
                })
            }
            (_, Some(ok)) if ok.elapsed() < TRUSTED_FOR => Verdict::Writable,
            _ => Verdict::Probe,
        }
    }
}
