//! The connections of a [`PgStore`](super::PgStore)'s calls: each call takes one connection
//! ([`Connections::get`]), runs its statements on it, and gives it back
//! ([`Conn::release`]), all within a deadline ([`Connections::call`]).
//!
//! - **Reuse without a round trip.** sqlx's pool checks every connection it takes back with a
//!   round trip to the server (a `Sync`, answered by `ReadyForQuery`), one more round trip for
//!   each statement a call sends on the pool. A connection given back here after a complete
//!   call goes to a short list of spare connections instead, and the next call takes it from
//!   there without that check; like the pool's own check on taking
//!   ([`CHECK_IDLE_AFTER`](super::CHECK_IDLE_AFTER)), a spare one idle for a second or more is
//!   pinged first, so a connection broken meanwhile (the database restarted) is replaced.
//! - **A deadline on every call.** A connection used a moment ago is not checked: if the
//!   network to the database is cut (a partition: the connection stays open, nothing passes)
//!   its statement would wait for as long as TCP retransmits (many minutes). Every call ends
//!   within three times `DATABASE_TIMEOUT`
//!   ([`PgSettings::acquire_timeout`](super::PgSettings::acquire_timeout), which alone bounds
//!   the wait for a connection; the rest leaves room for statements on a loaded machine):
//!   past it the call fails [`StoreError::Unavailable`] (an API call answers 503
//!   `store-unavailable`, as when no connection could be had), and its connection is closed,
//!   never reused: it may be in the middle of a statement.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection as _, Postgres};

use super::{CHECK_IDLE_AFTER, db};
use crate::store::StoreError;

/// The connections of one store's calls: its pool, the spare connections, and the deadline.
#[derive(Debug)]
pub(super) struct Connections {
    pool: PgPool,
    /// Connections given back after a complete call, with when, the latest last.
    spare: Mutex<Spare>,
    /// Most spare connections kept (the others go back to the pool, which checks them).
    keep: usize,
    /// The deadline of a call.
    deadline: Duration,
}

impl Connections {
    /// The calls of a store on `pool`, each within `deadline`, keeping at most `keep` spare
    /// connections (the rest of the pool stays for the store's background tasks).
    pub(super) fn new(pool: PgPool, keep: usize, deadline: Duration) -> Connections {
        Connections { pool, spare: Mutex::default(), keep, deadline }
    }

    /// Runs `call` (which takes its connections from [`Self::get`]) within the deadline;
    /// past it, fails [`StoreError::Unavailable`], and the connection of the call is closed
    /// (dropped unreleased: see [`Conn`]).
    pub(super) async fn call<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                format!("PostgreSQL did not answer within {:?} (three times DATABASE_TIMEOUT)", self.deadline).into(),
            )),
        }
    }

    /// A connection: a spare one (pinged first when it sat idle for a second or more), or one
    /// of the pool (which waits at most `DATABASE_TIMEOUT` for one).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection could be had.
    pub(super) async fn get(&self) -> Result<Conn<'_>, StoreError> {
        loop {
            let spare = self.spare().conns.pop();
            let Some((conn, since)) = spare else { break };
            let mut conn = Conn { from: self, conn: Some(conn) };
            if since.elapsed() < CHECK_IDLE_AFTER || conn.ping().await.is_ok() {
                return Ok(conn);
            }
            // Broken: closed when dropped; try the next one.
        }
        let conn = self.pool.acquire().await.map_err(db)?;
        Ok(Conn { from: self, conn: Some(conn) })
    }

    /// Gives the spare connections back to the pool, and keeps none from now on (the store is
    /// closing: the pool's close waits for every connection taken from it).
    pub(super) fn close(&self) {
        let mut spare = self.spare();
        spare.closed = true;
        let conns = std::mem::take(&mut spare.conns);
        drop(spare);
        drop(conns);
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Spare> {
        self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Connections {
    /// The spare connections go back to the pool, which does that in a task of the runtime;
    /// without one (the store dropped outside any runtime) they are closed where they are.
    fn drop(&mut self) {
        let spare = std::mem::take(&mut self.spare.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).conns);
        if tokio::runtime::Handle::try_current().is_err() {
            for (conn, _) in spare {
                drop(conn.detach());
            }
        }
    }
}

/// The spare connections, and whether the store closed (then none is kept).
#[derive(Debug, Default)]
struct Spare {
    conns: Vec<(PoolConnection<Postgres>, Instant)>,
    closed: bool,
}

/// One call's connection. Given back with [`Conn::release`] once the call is complete;
/// dropped otherwise (the call's future was dropped mid-statement, e.g. at its deadline), it
/// is closed, never reused.
#[derive(Debug)]
pub(super) struct Conn<'a> {
    from: &'a Connections,
    conn: Option<PoolConnection<Postgres>>,
}

impl Conn<'_> {
    /// Gives the connection back after a call that ended with `result`: closed when the error
    /// says the connection itself failed; back to the pool (which sends what is pending, e.g.
    /// the rollback of a transaction dropped on an error, and checks the connection) when it
    /// has something pending or enough are spare; else kept as a spare.
    pub(super) fn release<T>(mut self, result: &Result<T, StoreError>) {
        let Some(mut conn) = self.conn.take() else { return };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            conn.close_on_drop();
            return;
        }
        if conn.should_flush() {
            return;
        }
        let mut spare = self.from.spare();
        if !spare.closed && spare.conns.len() < self.from.keep {
            spare.conns.push((conn, Instant::now()));
        }
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().unwrap_or_else(|| unreachable!("a Conn holds its connection until released"))
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().unwrap_or_else(|| unreachable!("a Conn holds its connection until released"))
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}
