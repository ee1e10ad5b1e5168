//! A node's writes about the runs it holds, sent in rounds: one statement, one commit, for every
//! write of a kind that came while the previous round was under way ([`Rounds::send`]). The
//! ends of runs ([`Ending`]) go this way. Run records (written before ffmpeg starts) do not:
//! they notify nothing, so PostgreSQL already writes concurrent ones to disk together, and a
//! record waiting for the round in flight only delayed the start of its job (one worker
//! process did 17 % fewer jobs a second with them in rounds, see docs/benchmarks.md).
//!
//! **Why.** With durable commits (`synchronous_commit = on`, as a user runs PostgreSQL) every
//! commit waits for the disk (an `fsync`, a few milliseconds on a virtual disk); a commit that
//! notifies, as the end of a job does (the trigger of migration 0008), also holds PostgreSQL's
//! notification queue lock, one for the whole database server, from before its commit record
//! is written until it is on disk (`PreCommit_Notify`: notifications are queued in commit
//! order), so ends sent one a commit are written one `fsync` at a time across the whole
//! cluster. A round carries every write of its kind that came while the one before it waited
//! for its commit: the busier the node, the more each commit carries; a write that finds no
//! round under way goes out at once.
//!
//! **What a round promises.** Its statement is atomic for every write in it, and each write is
//! fenced as a single one would be (this node, this attempt, an unexpired lease): one that is
//! refused (the job is no longer held) does not hold back the others, and is told so. When the
//! round fails, the write that led it gets the error and the others try again, each leading a
//! round of its own or joining the next. A write is acknowledged only once its round's commit
//! was.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::announce::{Unannounced, release_after};
use super::sql::FINISH_BATCH;
use super::{PgStore, db};
use crate::model::{Job, JobId};
use crate::sqlite::rows::JobRow;
use crate::store::StoreError;
use crate::store::plan::FinishRow;

/// Most writes one round sends.
const ROUND_MAX: usize = 64;

/// A kind of write sent in rounds.
pub(super) trait Round: Send + Sync + Sized + 'static {
    /// What the round's statement returns for each write it made (those refused return none).
    type Done: Send + 'static;

    /// The job the write is about.
    fn job(&self) -> &JobId;

    /// The job a returned value is about.
    fn done_job(done: &Self::Done) -> &JobId;

    /// Sends `batch` (at least one) in one statement on `store`'s connections.
    fn send<'a>(store: &'a PgStore, batch: &'a [&'a Self]) -> BoxFuture<'a, Result<Vec<Self::Done>, StoreError>>;
}

/// What the turn of a write waiting for a round brings.
enum Turn<W: Round> {
    /// A round made it (`Some`), or refused it.
    Made(Option<W::Done>),
    /// It leads the next round.
    Lead(Box<W>),
    /// The round failed: try again.
    Again(Box<W>),
}

/// The rounds of one kind of write of one node: whether one is under way, and the writes
/// waiting for the next.
pub(super) struct Rounds<W: Round> {
    state: Mutex<State<W>>,
}

struct State<W: Round> {
    serving: bool,
    /// Carriers open for boarding ([`Rounds::board`]).
    boarding: usize,
    waiting: VecDeque<(Box<W>, oneshot::Sender<Turn<W>>)>,
}

impl<W: Round> Default for Rounds<W> {
    fn default() -> Self {
        Rounds { state: Mutex::new(State { serving: false, boarding: 0, waiting: VecDeque::new() }) }
    }
}

impl<W: Round> std::fmt::Debug for Rounds<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Rounds")
            .field("serving", &state.serving)
            .field("boarding", &state.boarding)
            .field("waiting", &state.waiting.len())
            .finish()
    }
}

/// The lead of a round: dropped, it passes to the first write still waiting, or no round is
/// under way any more.
struct Leading<'a, W: Round> {
    rounds: &'a Rounds<W>,
}

impl<W: Round> Drop for Leading<'_, W> {
    fn drop(&mut self) {
        let mut state = self.rounds.lock();
        // A write whose caller stopped waiting is passed over: nobody asks for it any more.
        while let Some((write, next)) = state.waiting.pop_front() {
            if next.send(Turn::Lead(write)).is_ok() {
                return;
            }
        }
        state.serving = false;
    }
}

impl<W: Round> Rounds<W> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `write` on `store`, in a round with the other writes of its kind waiting: what the
    /// statement returned for it, or `None` when it was refused.
    ///
    /// # Errors
    /// The failure of the round this write led (the others of that round try again): the
    /// database unreachable ([`StoreError::Unavailable`]), or another database error. When the
    /// commit's answer was lost, the round's writes may have been made.
    pub(super) async fn send(&self, store: &PgStore, write: W) -> Result<Option<W::Done>, StoreError> {
        let mut asking = Box::new(write);
        loop {
            // This write leads a round now (`Ok`), or waits for its turn.
            let turn = {
                let mut state = self.lock();
                // A carrier open for boarding takes it along: it waits for that too.
                if state.serving || state.boarding > 0 {
                    let (turn, waiting) = oneshot::channel();
                    state.waiting.push_back((asking, turn));
                    Err(waiting)
                } else {
                    state.serving = true;
                    Ok(asking)
                }
            };
            let write = match turn {
                Ok(write) => write,
                Err(waiting) => match waiting.await {
                    Ok(Turn::Made(done)) => return Ok(done),
                    Ok(Turn::Lead(write)) => write,
                    Ok(Turn::Again(write)) => {
                        asking = write;
                        continue;
                    }
                    // The leader's future was dropped with this write taken: it may have been
                    // sent. Asking again is safe (a write made is then refused).
                    Err(_) => return Err(StoreError::Unavailable("a round of writes was interrupted".into())),
                },
            };
            let lead = Leading { rounds: self };
            let others: Vec<(Box<W>, oneshot::Sender<Turn<W>>)> = {
                let mut state = self.lock();
                let n = state.waiting.len().min(ROUND_MAX - 1);
                state.waiting.drain(..n).collect()
            };
            let batch: Vec<&W> = std::iter::once(&*write).chain(others.iter().map(|(w, _)| &**w)).collect();
            let sent = W::send(store, &batch).await;
            drop(batch);
            let mut done = match sent {
                Ok(done) => done,
                Err(e) => {
                    for (other, turn) in others {
                        let _ = turn.send(Turn::Again(other));
                    }
                    return Err(e);
                }
            };
            let mut take = |job: &JobId| done.iter().position(|d| W::done_job(d) == job).map(|i| done.swap_remove(i));
            let mine = take(write.job());
            for (other, turn) in others {
                let _ = turn.send(Turn::Made(take(other.job())));
            }
            drop(lead);
            return Ok(mine);
        }
    }
}

impl<W: Round> Rounds<W> {
    /// Opens boarding for a carrier: another statement of this node about to be sent, which
    /// can make the writes of this kind along with its own in one statement (a claim,
    /// [`CLAIM_CARRYING_ENDS`](super::sql::CLAIM_CARRYING_ENDS)). Until the carrier takes
    /// them ([`Boarding::take`]) or closes ([`Boarding`] dropped), a write that finds no round
    /// under way waits for it instead of leading a round; once it closes without them, the
    /// first of them leads one.
    pub(super) fn board(&self) -> Boarding<'_, W> {
        self.lock().boarding += 1;
        Boarding { rounds: self, open: true }
    }
}

/// A carrier's boarding ([`Rounds::board`]); dropped, it closes.
pub(super) struct Boarding<'a, W: Round> {
    rounds: &'a Rounds<W>,
    open: bool,
}

impl<W: Round> Boarding<'_, W> {
    /// Closes boarding and takes the writes waiting (at most a round's), which the carrier
    /// then makes and answers ([`Riders::made`]).
    pub(super) fn take(&mut self) -> Riders<W> {
        let rounds = self.rounds;
        let mut state = rounds.lock();
        let n = state.waiting.len().min(ROUND_MAX);
        let writes = state.waiting.drain(..n).collect();
        self.close(&mut state);
        Riders { writes }
    }

    /// Closes boarding: when no carrier is open and no round under way any more, the first
    /// write still waiting leads a round.
    fn close(&mut self, state: &mut State<W>) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        state.boarding -= 1;
        if state.boarding > 0 || state.serving {
            return;
        }
        while let Some((write, next)) = state.waiting.pop_front() {
            if next.send(Turn::Lead(write)).is_ok() {
                state.serving = true;
                return;
            }
        }
    }
}

impl<W: Round> Drop for Boarding<'_, W> {
    fn drop(&mut self) {
        let rounds = self.rounds;
        let mut state = rounds.lock();
        self.close(&mut state);
    }
}

/// The writes a carrier took along ([`Boarding::take`]). Dropped before they were answered
/// (the carrier's statement failed, or was never sent), each tries again: it leads a round,
/// or waits for the next.
pub(super) struct Riders<W: Round> {
    writes: Vec<(Box<W>, oneshot::Sender<Turn<W>>)>,
}

impl<W: Round> Riders<W> {
    /// The writes, in the order they came.
    pub(super) fn writes(&self) -> Vec<&W> {
        self.writes.iter().map(|(w, _)| &**w).collect()
    }

    /// Whether the carrier took none.
    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The carrier's statement committed, returning `done` for the writes it made: each is
    /// told what was returned for it, or that it was refused.
    pub(super) fn made(mut self, mut done: Vec<W::Done>) {
        for (write, turn) in self.writes.drain(..) {
            let mine = done.iter().position(|d| W::done_job(d) == write.job()).map(|i| done.swap_remove(i));
            let _ = turn.send(Turn::Made(mine));
        }
    }
}

impl<W: Round> Drop for Riders<W> {
    fn drop(&mut self) {
        for (write, turn) in self.writes.drain(..) {
            let _ = turn.send(Turn::Again(write));
        }
    }
}

/// The end of a run, saved in a round ([`FINISH_BATCH`]): the job as it ended.
#[derive(Debug)]
pub(super) struct Ending {
    pub id: JobId,
    /// The attempt this node holds the job for (the fencing token).
    pub attempt: i64,
    pub row: FinishRow,
    /// Completion time, unix microseconds.
    pub completed: i64,
    /// ffmpeg's log (empty: none is stored).
    pub log: String,
    /// The run's last progress (JSON) not stored yet, stored with the end.
    pub progress: Option<String>,
}

/// The values of ends as [`FINISH_BATCH`] and [`CLAIM_CARRYING_ENDS`](super::sql::CLAIM_CARRYING_ENDS)
/// take them (`$1`-`$9`, element by element; `$10` is the node).
pub(super) struct EndValues<'a> {
    ids: Vec<&'a str>,
    statuses: Vec<&'a str>,
    completed: Vec<i64>,
    output_files: Vec<Option<&'a str>>,
    errors: Vec<Option<String>>,
    attempts: Vec<i64>,
    outputs: Vec<Option<&'a str>>,
    logs: Vec<&'a [u8]>,
    progress: Vec<Option<&'a str>>,
}

impl<'a> EndValues<'a> {
    /// The values of `batch`.
    pub(super) fn of(batch: &[&'a Ending]) -> EndValues<'a> {
        EndValues {
            ids: batch.iter().map(|e| e.id.as_str()).collect(),
            statuses: batch.iter().map(|e| e.row.status.as_str()).collect(),
            completed: batch.iter().map(|e| e.completed).collect(),
            output_files: batch.iter().map(|e| e.row.output_files.as_deref()).collect(),
            errors: batch
                .iter()
                .map(|e| e.row.error.as_deref().map(|error| super::transitions::text(error).into_owned()))
                .collect(),
            attempts: batch.iter().map(|e| e.attempt).collect(),
            outputs: batch.iter().map(|e| e.row.outputs.as_deref()).collect(),
            logs: batch.iter().map(|e| e.log.as_bytes()).collect(),
            progress: batch.iter().map(|e| e.progress.as_deref()).collect(),
        }
    }

    /// `query` with these values bound as `$1`-`$9`, and `node` as `$10`.
    pub(super) fn bind<'q, R>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>,
        node: &'q str,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.statuses)
            .bind(&self.completed)
            .bind(&self.output_files)
            .bind(&self.errors)
            .bind(&self.attempts)
            .bind(&self.outputs)
            .bind(&self.logs)
            .bind(&self.progress)
            .bind(node)
    }
}

impl Round for Ending {
    type Done = Job;

    fn job(&self) -> &JobId {
        &self.id
    }

    fn done_job(done: &Job) -> &JobId {
        &done.id
    }

    fn send<'a>(store: &'a PgStore, batch: &'a [&'a Self]) -> BoxFuture<'a, Result<Vec<Job>, StoreError>> {
        Box::pin(async move {
            let values = EndValues::of(batch);
            let node = &store.settings.node_id;
            store
                .db
                .call(async {
                    let mut conn = store.db.get().await?;
                    let rows: Result<Vec<JobRow>, StoreError> =
                        values.bind(sqlx::query_as(FINISH_BATCH), node).fetch_all(&mut *conn).await.map_err(db);
                    let ended: Result<Vec<Job>, StoreError> =
                        rows.and_then(|rows| rows.into_iter().map(Job::try_from).collect());
                    // Committed: the other nodes hear of the ends now (migration 0015).
                    let told = match &ended {
                        Ok(jobs) => store.announce_ends(&mut conn, &Unannounced::of(jobs)).await,
                        Err(_) => Ok(()),
                    };
                    release_after(conn, &ended, &told);
                    ended
                })
                .await
        })
    }
}
