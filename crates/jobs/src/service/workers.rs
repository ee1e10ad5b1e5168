//! The worker pool: workers claim jobs from the store and run them ([`Jobs::spawn_workers`]),
//! until [`Shutdown`] tells them to stop.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Jobs;
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

    async fn worker(&self, n: usize, shutdown: Shutdown) {
        tracing::debug!(worker = n, "worker started");
        while !shutdown.stop_claiming.is_cancelled() {
            match self.store.claim_next(self.labels()).await {
                Ok(Some(mut job)) => {
                    self.status_changed(&mut job).await;
                    let span = tracing::info_span!("job", id = %job.id, attempt = job.attempts);
                    let id = job.id.clone();
                    // A bug that panics while running one job must not take the worker (and so
                    // the whole queue) down with it: the job fails, the worker goes on.
                    let outcome = std::panic::AssertUnwindSafe(self.run_job(job, &shutdown.abort_running))
                        .catch_unwind()
                        .instrument(span)
                        .await;
                    if outcome.is_err() {
                        // The run's `Registration` was dropped while unwinding: the job is no
                        // longer registered as running here; only its outcome is left to record.
                        tracing::error!(job = %id, "internal error while running the job");
                        let error = "internal error in the worker (the server log has the details)".to_owned();
                        self.finish(&id, Outcome::Failed { error }, "", SystemTime::now(), &shutdown.abort_running)
                            .await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = self.store.wait_for_work(self.config.idle_wait) => {}
                        () = shutdown.stop_claiming.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(worker = n, error = %e, "claiming a job failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.stop_claiming.cancelled() => {}
                    }
                }
            }
        }
        tracing::debug!(worker = n, "worker stopped");
    }
}
