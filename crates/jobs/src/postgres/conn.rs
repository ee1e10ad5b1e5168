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
//! - **Calls take turns, first come first served.** A call first takes a turn (a permit of a
//!   FIFO semaphore), then a spare connection, or else one of the pool. So a call given its
//!   connection back and asking again queues behind the calls already waiting: it cannot take
//!   back the connection it just gave back while another call waits out `DATABASE_TIMEOUT`
//!   in the pool's queue (a spurious 503 under load). There are fewer turns than connections
//!   in the pool: the calls never hold every connection (the spare ones included), so the
//!   store's background tasks (lease renewals, the reaper, notifications), which use the pool
//!   directly, always find one within the pool's own fair queue.
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
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{CHECK_IDLE_AFTER, db};
use crate::store::StoreError;

/// The connections of one store's calls: its pool, the turns, the spare connections, and the
/// deadlines.
#[derive(Debug)]
pub(super) struct Connections {
    pool: PgPool,
    /// One permit per call holding a connection, given in the order asked (tokio's semaphore
    /// is fair).
    turns: Semaphore,
    /// Connections given back after a complete call, with when, the latest last.
    spare: Mutex<Spare>,
    /// Most spare connections kept (the others go back to the pool, which checks them).
    keep: usize,
    /// Longest wait for a connection, the turn included (`DATABASE_TIMEOUT`).
    wait: Duration,
    /// The deadline of a call.
    deadline: Duration,
}

/// How [`Connections`] shares a pool: how many calls may hold a connection at once (fewer than
/// the pool's connections: the rest stays for the store's background tasks), how many spare
/// connections it keeps, how long a call waits for a connection, and how long a call may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub calls: usize,
    pub keep: usize,
    pub wait: Duration,
    pub deadline: Duration,
}

impl Connections {
    /// The calls of a store on `pool`, within `limits`.
    pub(super) fn new(pool: PgPool, limits: Limits) -> Connections {
        let Limits { calls, keep, wait, deadline } = limits;
        Connections {
            pool,
            turns: Semaphore::new(calls.max(1)),
            spare: Mutex::default(),
            keep: keep.min(calls),
            wait,
            deadline,
        }
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

    /// A connection, once it is this call's turn (calls asking earlier go first): a spare one
    /// (pinged first when it sat idle for a second or more), or one of the pool. Waits at most
    /// `DATABASE_TIMEOUT` in all for it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection could be had within `DATABASE_TIMEOUT`;
    /// [`StoreError::Database`] once the store is closed.
    pub(super) async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let until = tokio::time::Instant::now() + self.wait;
        let turn = match tokio::time::timeout_at(until, self.turns.acquire()).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(db(sqlx::Error::PoolClosed)),
            Err(_) => return Err(db(sqlx::Error::PoolTimedOut)),
        };
        let mut turn = Some(turn);
        loop {
            let spare = self.spare().conns.pop();
            let Some((conn, since)) = spare else { break };
            let mut conn = Conn { from: self, conn: Some(conn), turn: turn.take() };
            if since.elapsed() < CHECK_IDLE_AFTER || conn.ping().await.is_ok() {
                return Ok(conn);
            }
            // Broken: closed when dropped; try the next one, still in turn.
            turn = conn.turn.take();
        }
        let conn = match tokio::time::timeout_at(until, self.pool.acquire()).await {
            Ok(conn) => conn.map_err(db)?,
            Err(_) => return Err(db(sqlx::Error::PoolTimedOut)),
        };
        Ok(Conn { from: self, conn: Some(conn), turn })
    }

    /// Gives the spare connections back to the pool, and keeps none from now on (the store is
    /// closing: the pool's close waits for every connection taken from it). Calls waiting for
    /// their turn fail, as do later ones.
    pub(super) fn close(&self) {
        self.turns.close();
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
    /// The call's turn, given to the next call once the connection is given back (or closed).
    turn: Option<SemaphorePermit<'a>>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    use sqlx::postgres::PgPoolOptions;

    use super::*;

    /// A call that gives its connection back and asks again at once queues behind the call
    /// already waiting. One connection, a caller looping on it, and a call waiting for it: the
    /// waiting call gets its turn. (Before, the looping caller took the connection back as a
    /// spare every time, and the waiting call ran out `DATABASE_TIMEOUT` in the pool's queue:
    /// a spurious 503 under load.) The waits are generous: only a call never served fails it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_waiting_for_a_connection_gets_its_turn_from_a_caller_looping_on_it() {
        let url = tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap();
        let wait = Duration::from_secs(20);
        let pool = PgPoolOptions::new().max_connections(1).acquire_timeout(wait).connect(&url).await.unwrap();
        let connections = Connections::new(pool, Limits { calls: 1, keep: 1, wait, deadline: wait * 3 });

        let held = connections.get().await.unwrap();
        let waiting = connections.get();
        tokio::pin!(waiting);
        let queued = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx).is_pending())).await;
        assert!(queued, "the only connection is held: the second call waits");

        let served = AtomicBool::new(false);
        let looping = async {
            let mut conn = held;
            let mut calls = 0_u32;
            loop {
                let result = sqlx::query("SELECT 1").execute(&mut *conn).await.map(drop).map_err(db);
                conn.release(&result);
                result.unwrap();
                calls += 1;
                if served.load(Ordering::SeqCst) {
                    return calls;
                }
                conn = connections.get().await.unwrap();
            }
        };
        let waited = async {
            let conn = waiting.await;
            served.store(true, Ordering::SeqCst);
            conn.map(|conn| conn.release(&Ok::<(), StoreError>(())))
        };
        let (calls, waited) = tokio::join!(looping, waited);
        waited.expect("the waiting call got its turn");
        assert!(calls <= 2, "the waiting call was served after {calls} calls of the looping one");
    }
}
