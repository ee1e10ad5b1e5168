//! The worker pool: workers claim jobs from the store and run them ([`Jobs::spawn_workers`]),
//! until [`Shutdown`] tells them to stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Jobs;
use crate::model::Job;
use crate::store::Outcome;

/// Signals that stop the worker pool.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Fired first: workers claim no new job. Running jobs continue.
    pub stop_claiming: CancellationToken,
    /// Fired after the grace period: running jobs are stopped and put back in the queue.
    pub abort_running: CancellationToken,
}

impl Jobs {
    /// Starts `config.concurrency` workers. They stop claiming when `shutdown.stop_claiming`
    /// fires; running jobs are stopped and re-queued when `shutdown.abort_running` fires. The
    /// returned set completes when every worker has stopped.
    pub fn spawn_workers(self: &Arc<Self>, shutdown: &Shutdown) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for n in 0..self.config.concurrency {
            let jobs = Arc::clone(self);
            let shutdown = shutdown.clone();
            set.spawn(async move { jobs.worker(n, shutdown).await });
        }
        // In a cluster, the jobs of lost nodes that must end are cleaned up by a node that
        // runs jobs (it has the data directory and may find the lost attempt's ffmpeg).
        if self.cluster && self.config.concurrency > 0 {
            let (jobs, stop) = (Arc::clone(self), shutdown.stop_claiming.clone());
            set.spawn(async move { jobs.end_lost_runs(stop).await });
        }
        set
    }

    /// One worker: claims a job, runs it, and claims the next as soon as the run's ffmpeg has
    /// reported the end of its work or exited. The rest of a run in place (listing or removing its files, saving its outcome)
    /// goes on beside the next claim and the next run's start ([`beside`]); at most one run is
    /// ending so at any time, and the worker waits for it before it claims again. The store
    /// holds the ending job `running` until its outcome is saved, so no job whose footprint
    /// conflicts with it starts before then. With a remote storage known not to answer
    /// ([`crate::storage::Availability`]), the worker claims nothing until it answers again.
    async fn worker(&self, n: usize, shutdown: Shutdown) {
        tracing::debug!(worker = n, "worker started");
        let mut ending: Option<Run<'_>> = None;
        // What the latest run waits for before it saves its outcome ([`Turn`]).
        let mut next_started: Option<CancellationToken> = None;
        while !shutdown.stop_claiming.is_cancelled() {
            // A bucket known not to answer: no job is claimed that would only wait on it (each
            // attempt went back to the queue, tester finding K11); the worker waits until a
            // check finds it answering, an ending run going on beside.
            if self.config.remote_storage.is_some() && self.availability.outage().is_some() {
                if let Some(token) = next_started.take() {
                    token.cancel();
                }
                tracing::debug!(worker = n, "the storage does not answer; claiming once it does");
                beside(&mut ending, self.availability.answers_again(&shutdown.stop_claiming)).await;
                continue;
            }
            let claimed = beside(&mut ending, self.store.claim_next(self.labels())).await;
            if !matches!(claimed, Ok(Some(_)))
                && let Some(token) = next_started.take()
            {
                // No next run: the ending one goes on.
                token.cancel();
            }
            match claimed {
                Ok(Some(mut job)) => {
                    beside(&mut ending, self.status_changed(&mut job)).await;
                    let freed = CancellationToken::new();
                    let turn = Turn::after(next_started.take(), self.store.serializes_writes());
                    next_started = turn.wait.clone();
                    let mut run: Run<'_> =
                        Box::pin(self.run_claimed(job, &shutdown.abort_running, freed.clone(), turn));
                    let ended = beside(&mut ending, async {
                        tokio::select! {
                            biased;
                            () = &mut run => true,
                            () = freed.cancelled() => false,
                        }
                    })
                    .await;
                    if !ended {
                        // Its ffmpeg has ended. An earlier run still ending ends first, this
                        // one going on beside it.
                        let mut newer = Some(run);
                        if let Some(older) = ending.take() {
                            beside(&mut newer, older).await;
                        }
                        ending = newer;
                    }
                }
                Ok(None) => {
                    let idle = async {
                        tokio::select! {
                            () = self.store.wait_for_work(self.config.idle_wait) => {}
                            () = shutdown.stop_claiming.cancelled() => {}
                        }
                    };
                    match ending.take() {
                        None => idle.await,
                        // The job the queue waits for may be the one ending: claim again as
                        // soon as it ended.
                        Some(mut older) => {
                            let ended = tokio::select! {
                                biased;
                                () = older.as_mut() => true,
                                () = idle => false,
                            };
                            if !ended {
                                ending = Some(older);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(worker = n, error = %e, "claiming a job failed; retrying");
                    let pause = async {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.stop_claiming.cancelled() => {}
                        }
                    };
                    beside(&mut ending, pause).await;
                }
            }
        }
        if let Some(token) = next_started.take() {
            token.cancel();
        }
        if let Some(older) = ending.take() {
            older.await;
        }
        tracing::debug!(worker = n, "worker stopped");
    }

    /// Runs claimed `job` ([`Jobs::run_job`]); fires `freed` once its ffmpeg has reported its
    /// end or exited (a run in place) or the run has ended. A bug that panics while running one job must not take the
    /// worker (and so the whole queue) down with it: the job fails, the worker goes on.
    async fn run_claimed(&self, job: Job, abort: &CancellationToken, freed: CancellationToken, turn: Turn) {
        let span = tracing::info_span!("job", id = %job.id, attempt = job.attempts);
        let id = job.id.clone();
        let outcome =
            std::panic::AssertUnwindSafe(self.run_job(job, abort, &freed, turn)).catch_unwind().instrument(span).await;
        if outcome.is_err() {
            // The run's `Registration` was dropped while unwinding: the job is no longer
            // registered as running here; only its outcome is left to record.
            tracing::error!(job = %id, "internal error while running the job");
            let error = "internal error in the worker (the server log has the details)".to_owned();
            self.finish(&id, Outcome::Failed { error }, "", SystemTime::now(), abort).await;
        }
        freed.cancel();
    }
}

/// A run of a job, as a worker drives it.
type Run<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The longest a run whose ffmpeg has ended waits for the next run's start before it saves its
/// outcome anyway ([`Turn`]).
const TURN_WAIT_MAX: Duration = Duration::from_millis(100);

/// How two runs of one worker take turns at a store whose writes take turns at one connection
/// ([`JobStore::serializes_writes`](crate::JobStore::serializes_writes): SQLite). Once a run's
/// ffmpeg has ended, the worker claims the next job at once, and the next run's claim and run
/// record would queue at the store's writer behind the ended run's outcome (and its files'
/// listing would take a CPU from them): the next ffmpeg would start later. So the ended run
/// waits (at most [`TURN_WAIT_MAX`]) until the next run has recorded its run, ended early, or
/// the worker found nothing to start, then lists its files and saves its outcome while the
/// next ffmpeg runs. Its job stays `running` meanwhile (it holds its footprint), as before.
/// With a store of many connections (PostgreSQL) the two go on side by side, nothing waits.
pub(super) struct Turn {
    /// Fired when this run has recorded its run or ended (dropped): the run before it may end.
    started: Option<tokio_util::sync::DropGuard>,
    /// Fired when the run after this one started, or there is none; `None`: nothing to wait for.
    pub(super) wait: Option<CancellationToken>,
}

impl Turn {
    /// The turn of a run claimed after the run that waits for `previous` (if any); `serialize`:
    /// whether this run's end waits for the next run's start in turn.
    fn after(previous: Option<CancellationToken>, serialize: bool) -> Turn {
        Turn { started: previous.map(CancellationToken::drop_guard), wait: serialize.then(CancellationToken::new) }
    }

    /// This run has recorded its run (its ffmpeg starts next): the run before it may end.
    pub(super) fn started(&mut self) {
        self.started.take();
    }

    /// Waits until the next run has started, or there is none (at most [`TURN_WAIT_MAX`]).
    pub(super) async fn next_started(&mut self) {
        self.started();
        if let Some(wait) = &self.wait {
            let _ = tokio::time::timeout(TURN_WAIT_MAX, wait.cancelled()).await;
        }
    }
}

/// Awaits `f` while driving `ending` (the end of an earlier run) beside it, on the same task;
/// `ending` becomes `None` once that run has ended.
async fn beside<T>(ending: &mut Option<Run<'_>>, f: impl Future<Output = T>) -> T {
    tokio::pin!(f);
    loop {
        let Some(run) = ending.as_mut() else { return f.await };
        tokio::select! {
            biased;
            value = &mut f => return value,
            () = run.as_mut() => *ending = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `f` once: whether it is ready now.
    fn ready_now(f: impl Future<Output = ()>) -> bool {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_run_waits_for_the_next_runs_start_or_its_end() {
        // The next run records its run: the ended one goes on.
        let mut ended = Turn::after(None, true);
        let mut next = Turn::after(ended.wait.clone(), true);
        assert!(!ready_now(ended.next_started()), "waits while the next run prepares");
        next.started();
        assert!(ready_now(ended.next_started()));
        // The next run ends before it recorded a run (its turn dropped): the same.
        let mut ended = Turn::after(None, true);
        let next = Turn::after(ended.wait.clone(), true);
        drop(next);
        assert!(ready_now(ended.next_started()));
        // A store whose writes go on side by side: nothing to wait for.
        let mut alone = Turn::after(None, false);
        assert!(ready_now(alone.next_started()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_run_waits_no_longer_than_the_bound() {
        let mut ended = Turn::after(None, true);
        let start = tokio::time::Instant::now();
        ended.next_started().await;
        assert_eq!(start.elapsed(), TURN_WAIT_MAX);
    }
}
