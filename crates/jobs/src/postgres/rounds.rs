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
    waiting: VecDeque<(Box<W>, oneshot::Sender<Turn<W>>)>,
}

impl<W: Round> Default for Rounds<W> {
    fn default() -> Self {
        Rounds { state: Mutex::new(State { serving: false, waiting: VecDeque::new() }) }
    }
}

impl<W: Round> std::fmt::Debug for Rounds<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Rounds").field("serving", &state.serving).field("waiting", &state.waiting.len()).finish()
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
                if state.serving {
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
            let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
            let statuses: Vec<&str> = batch.iter().map(|e| e.row.status.as_str()).collect();
            let completed: Vec<i64> = batch.iter().map(|e| e.completed).collect();
            let output_files: Vec<Option<&str>> = batch.iter().map(|e| e.row.output_files.as_deref()).collect();
            let errors: Vec<Option<String>> = batch
                .iter()
                .map(|e| e.row.error.as_deref().map(|error| super::transitions::text(error).into_owned()))
                .collect();
            let attempts: Vec<i64> = batch.iter().map(|e| e.attempt).collect();
            let outputs: Vec<Option<&str>> = batch.iter().map(|e| e.row.outputs.as_deref()).collect();
            let logs: Vec<&[u8]> = batch.iter().map(|e| e.log.as_bytes()).collect();
            let progress: Vec<Option<&str>> = batch.iter().map(|e| e.progress.as_deref()).collect();
            let rows: Result<Vec<JobRow>, StoreError> = super::transitions::on_conn!(store, |conn| {
                sqlx::query_as(FINISH_BATCH)
                    .bind(&ids)
                    .bind(&statuses)
                    .bind(&completed)
                    .bind(&output_files)
                    .bind(&errors)
                    .bind(&store.settings.node_id)
                    .bind(&attempts)
                    .bind(&outputs)
                    .bind(&logs)
                    .bind(&progress)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db)
            })
            .await;
            rows?.into_iter().map(Job::try_from).collect()
        })
    }
}
