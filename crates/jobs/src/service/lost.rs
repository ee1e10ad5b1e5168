//! Jobs whose node was lost and that must end rather than run again (a cancel was pending, or
//! they used their attempts): a node that runs jobs takes each over from the store
//! ([`JobStore::claim_lost_run`](crate::JobStore::claim_lost_run)), removes what the lost
//! attempt wrote by the rule a failure uses, then ends the job. Without this, a job ended by
//! the reaper would leave its dead attempt's partial outputs behind (a job that runs again
//! has them removed by its next attempt, `clear_previous_attempt`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Jobs, METRIC_FINISHED, blocking};
use crate::outputs;
use crate::store::LostRun;

/// How often a node looks for lost jobs to end (as often as the reaper looks for expired
/// leases).
const LOST_POLL: Duration = Duration::from_secs(1);

impl Jobs {
    /// Until `stop`: takes over and ends the lost jobs of the cluster ([`Jobs::end_lost_run`]),
    /// looking every [`LOST_POLL`].
    pub(super) async fn end_lost_runs(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.store.claim_lost_run().await {
                Ok(Some(lost)) => {
                    self.end_lost_run(lost).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "looking for lost jobs to end failed; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(LOST_POLL) => {}
            }
        }
    }

    /// Ends a lost job this node took over: stops the lost attempt's ffmpeg if it still runs on
    /// this host and removes its scratch directories ([`Runner::remove_leftovers`](crate::Runner)),
    /// removes the files it wrote in the data directory ([`outputs::remove_run_files`], only
    /// what the run's snapshot says it created or changed), its stage, and the directories it
    /// created once empty; in a bucket, puts back the files a part-way publish replaced
    /// ([`Jobs::discard_run_temps`]); then records the outcome. If recording fails, the lease this node
    /// holds runs out and another node takes the job over again (removing finds nothing more).
    async fn end_lost_run(&self, lost: LostRun) {
        let LostRun { id, run, outcome } = lost;
        let created = run.snapshot.created_dirs.clone();
        let temps = self.earlier_runs_may_have_left_temps(&id, Some(&run)).await;
        let (root, runner, job) = (self.sandbox.root().to_owned(), std::sync::Arc::clone(&self.runner), id.clone());
        blocking(move || {
            let scratch = runner.remove_leftovers(&job);
            let files = outputs::remove_run_files(&root, &run.footprint, &run.snapshot);
            let stages = crate::staging::remove_stages_of(&root, &job);
            tracing::info!(
                job = %job,
                files = files.len(),
                scratch_dirs = scratch.len(),
                stages,
                "removed what the run of a lost node left"
            );
        })
        .await;
        self.remove_created_dirs(std::slice::from_ref(&id), created).await;
        // A bucket: what a part-way publish replaced goes back, the run's temporary names go
        // (if its record says it may have written there).
        if temps {
            self.discard_run_temps(&id).await;
        }
        match self.store.finish(&id, outcome, "").await {
            Ok(mut job) => {
                tracing::warn!(job = %id, status = %job.status, error = ?job.error, "ended a job whose node was lost");
                metrics::counter!(METRIC_FINISHED, "status" => job.status.as_str()).increment(1);
                self.status_changed(&mut job).await;
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "ending a job whose node was lost failed"),
        }
    }
}
