//! A staged run's bucket failures and leftovers: a failure that may pass (the storage
//! unavailable) re-queues the job while it has attempts left, the attempt not counted when
//! the storage is known not to answer ([`Jobs::staging_failed`]); the
//! temporary names of runs that ended without publishing are deleted
//! ([`Jobs::discard_run_temps`], [`Jobs::sweep_temp_area`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ffmpeg_core::footprint::Footprint;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use crate::model::{Job, JobId, JobStatus};
use crate::outputs::Snapshot;
use crate::publish::{PUBLISH_TEMP, PublishError, RunTemp, abort_open_uploads, restore_or_discard};
use crate::staging::StagingError;
use crate::storage::{Storage, StorageError, TEMP_AREA};
use crate::store::{Attempt, Outcome, RunRecord};

/// Counter of staged runs re-queued because the storage was unavailable (Prometheus name).
pub const METRIC_STAGING_RETRIES: &str = "ffmpeg_worker_staging_retries_total";

/// How long a job whose staged run failed on an unavailable storage waits in the queue after
/// its first attempt before a claim may take it again (`retry_at`); each later attempt waits
/// twice as long as the one before, up to [`STAGING_RETRY_MAX_DELAY`]
/// ([`staging_retry_delay`]).
pub const STAGING_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest wait in the queue before a job may start again after a failure of the storage.
pub const STAGING_RETRY_MAX_DELAY: Duration = Duration::from_secs(60);

/// The wait before a job whose attempt `attempt` (1-based) failed on an unavailable storage
/// may start again: `first` ([`crate::JobsConfig::retry_delay`], by default
/// [`STAGING_RETRY_DELAY`]) doubled for each attempt before, capped at
/// [`STAGING_RETRY_MAX_DELAY`] (or `first` when longer), less up to half of it at random (so
/// that the jobs of one outage do not all come back at once).
pub fn staging_retry_delay(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let full = first.saturating_mul(1 << doublings).min(STAGING_RETRY_MAX_DELAY.max(first));
    let mut random = [0u8; 4];
    // Without randomness the wait is the full one.
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    full.mul_f64(0.5 + fraction / 2.0)
}

/// A create-only upload's temporary object (`uploads/…` in the temporary area) lives for
/// the seconds between its last part and its copy into place; one older than this was left
/// by a crash.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// A multipart upload that no run owns (the files API's upload of a large body, a create-only
/// one, an output over 5 GiB) lives while its body arrives; one started longer ago than this
/// was left by a crash (a lifecycle rule of the bucket would remove it after a day as well).
pub const STALE_MULTIPART_AGE: Duration = Duration::from_secs(24 * 3600);

/// What [`Jobs::sweep_temp_area`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TempSweep {
    /// Files put back from the backups of a run that published part-way and is over, its job
    /// queued again.
    pub restored: usize,
    /// Temporary names (outputs, backups) of runs that are over, deleted.
    pub outputs: usize,
    /// Create-only uploads' temporary objects older than [`STALE_UPLOAD_AGE`].
    pub uploads: usize,
    /// Multipart uploads left open, aborted: those of runs whose job is not running that
    /// attempt, and any other started longer than [`STALE_MULTIPART_AGE`] ago.
    pub multipart: usize,
}

impl Jobs {
    /// Ends a staged run of `job` that failed with `error`: nothing when the job is no longer
    /// this node's; a failure that may pass ([`StagingError::is_transient`]) puts the job back
    /// in the queue at once, the worker's slot free meanwhile, the job `queued` with the reason
    /// and the time of its next attempt as its `waiting_reason` (its `error` stays empty):
    /// - when a check confirms that the storage does not answer
    ///   ([`Availability::confirm`](crate::storage::Availability::confirm), which records it
    ///   for `/ready` and the files API), the attempt is not counted ([`Attempt::NotCounted`],
    ///   tester finding K11: an outage longer than the attempts' waits failed jobs that never
    ///   ran) and the job may start again after the first wait
    ///   ([`crate::JobsConfig::retry_delay`]); the workers claim nothing until the storage
    ///   answers again ([`Availability::answers_again`](crate::storage::Availability::answers_again)),
    ///   so it starts once it does;
    /// - otherwise (the storage answers: the failure was the job's own) the attempt counts,
    ///   while the job has attempts left ([`crate::JobsConfig::max_attempts`]), with a wait
    ///   that grows with each attempt ([`staging_retry_delay`],
    ///   [`JobStore::retry`](crate::JobStore::retry)).
    ///
    /// Otherwise the job fails, saying how many attempts it had.
    pub(super) async fn staging_failed(
        &self,
        job: &Job,
        error: StagingError,
        log: &str,
        started: SystemTime,
        cancel: &CancellationToken,
        abort: &CancellationToken,
    ) {
        let id = &job.id;
        if matches!(error, StagingError::Publish(PublishError::Cancelled)) {
            tracing::info!("job cancelled while its outputs were uploaded; nothing was kept");
            return self.finish(id, Outcome::Cancelled, log, started, abort).await;
        }
        if matches!(error, StagingError::Publish(PublishError::Stopped)) {
            tracing::info!(
                "shut down while the job's outputs were uploaded; nothing was kept, the job goes back to the queue"
            );
            return self.requeue_stopped(id).await;
        }
        if matches!(error, StagingError::Publish(PublishError::NotOurs)) {
            tracing::warn!("lost the lease of the job while uploading its outputs; nothing was published");
            return;
        }
        let max = self.config.max_attempts;
        if !error.is_transient() {
            tracing::warn!(error = %error, "staging failed");
            return self.finish(id, Outcome::Failed { error: error.to_string() }, log, started, abort).await;
        }
        let outage = if self.availability.confirm().await { self.availability.outage() } else { None };
        if outage.is_none() && job.attempts >= max {
            tracing::warn!(error = %error, attempts = job.attempts, "staging failed; no attempt left");
            // Undoing an earlier attempt's leftovers is not what the job was doing: the
            // failure that sent it back to the queue is said too (tester finding I2).
            let before = match (&error, &job.retry_reason) {
                (StagingError::Undo(_), Some(reason)) => format!("; before it, {reason}"),
                _ => String::new(),
            };
            let error = format!("{error} (attempt {} of {max}, none left{before})", job.attempts);
            return self.finish(id, Outcome::Failed { error }, log, started, abort).await;
        }
        // Asked to stop meanwhile: a cancel ends the job, a shutdown puts it back uncounted.
        if cancel.is_cancelled() {
            return self.finish(id, Outcome::Cancelled, log, started, abort).await;
        }
        if abort.is_cancelled() {
            return self.requeue_stopped(id).await;
        }
        let storage =
            self.config.remote_storage.as_ref().map_or_else(|| "the storage".to_owned(), |s| s.display_name());
        let (delay, reason, attempt) = match &outage {
            Some(outage) => (
                self.config.retry_delay,
                format!(
                    "the storage `{storage}` has not answered since {}; the job starts again once it \
                     answers, this attempt not counted ({error})",
                    outage.since_utc()
                ),
                Attempt::NotCounted,
            ),
            None => (
                staging_retry_delay(self.config.retry_delay, job.attempts),
                format!("the storage `{storage}` is unavailable (attempt {} of {max} failed: {error})", job.attempts),
                Attempt::Counted,
            ),
        };
        tracing::warn!(error = %error, attempts = job.attempts, delay_seconds = delay.as_secs_f64(), ?attempt,
                       "staging failed; the job goes back in the queue, to start again after a wait");
        match self.store.retry(id, &reason, delay, attempt).await {
            Ok(()) => {
                metrics::counter!(METRIC_STAGING_RETRIES).increment(1);
                self.status_changed_of(id).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "re-queueing the job failed; it fails instead");
                self.finish(id, Outcome::Failed { error: reason }, log, started, abort).await;
            }
        }
    }

    /// Whether an earlier attempt of job `id` may have left names in the storage's temporary
    /// area that were not undone: the latest run record says so ([`RunRecord::temp_area`];
    /// `current`, when the caller has it, else [`JobStore::previous_run`](crate::JobStore::previous_run)). No record: no
    /// earlier attempt got past downloading its inputs, so none wrote there. A store that
    /// cannot say counts as yes. Always `false` without a temporary area.
    pub(super) async fn earlier_runs_may_have_left_temps(&self, id: &JobId, current: Option<&RunRecord>) -> bool {
        if !self.config.remote_storage.as_ref().is_some_and(|s| s.has_temp_area()) {
            return false;
        }
        if let Some(run) = current {
            return run.temp_area;
        }
        match self.store.previous_run(id).await {
            Ok(run) => run.is_some_and(|run| run.temp_area),
            Err(e) => {
                tracing::warn!(error = %e, "reading the earlier attempt's run record failed; undoing what it may have left");
                true
            }
        }
    }

    /// Records that attempt `attempt` of the staged job `id`, running, has (`temp_area`) or has
    /// not left names in the temporary area so far ([`RunRecord::temp_area`]; a staged run
    /// has no footprint or snapshot to record). A failure is logged: a later attempt then undoes
    /// what the earlier record says, which may be nothing.
    pub(super) async fn record_staged_run(&self, id: &JobId, attempt: u32, temp_area: bool) {
        let run = RunRecord { attempt, footprint: Footprint::default(), snapshot: Snapshot::default(), temp_area };
        if let Err(e) = self.store.record_run(id, &run).await {
            tracing::warn!(error = %e, "recording the run's use of the temporary area failed");
        }
    }

    /// What earlier runs of job `id` that did not end by themselves left in the storage's
    /// temporary area: their multipart uploads still open are aborted
    /// ([`crate::publish::abort_open_uploads`]), the files a part-way publish replaced are put
    /// back from their backups, and every name is deleted
    /// ([`crate::publish::restore_or_discard`]). Called only while
    /// the job is active (it runs again, or recovery found it interrupted), so no one else
    /// writes its paths meanwhile. Failures are logged: the sweep removes what is left.
    pub(super) async fn discard_run_temps(&self, id: &JobId) {
        if let Err(e) = self.undo_earlier_runs(id).await {
            tracing::warn!(error = %e, "listing an earlier run's temporary names failed; the sweep removes them");
        }
    }

    /// [`Jobs::discard_run_temps`], the listing of the earlier runs' temporary names first: when
    /// that fails, nothing else is tried and its error is returned. Before a job's next attempt
    /// ([`StagingError::Undo`]), a storage that does not answer so ends the attempt after one
    /// call instead of one wait for each (tester finding H9: 20 s more in the worker's slot).
    pub(super) async fn undo_earlier_runs(&self, id: &JobId) -> Result<(), StorageError> {
        let Some(remote) = self.config.remote_storage.as_ref().filter(|s| s.has_temp_area()) else { return Ok(()) };
        let temps: Vec<String> =
            remote.list_temps(&RunTemp::prefix_of(id)).await?.into_iter().map(|temp| temp.path).collect();
        // Uploads a stopped run left open (a cancel or the time limit dropped them mid-way).
        let aborted = abort_open_uploads(remote.as_ref(), &RunTemp::prefix_of(id)).await;
        if aborted > 0 {
            tracing::info!(aborted, "aborted the multipart uploads an earlier run of the job left open");
        }
        if temps.is_empty() {
            return Ok(());
        }
        let (restored, deleted) = restore_or_discard(remote.as_ref(), &temps, true).await;
        tracing::info!(restored, deleted, "undid what an earlier run of the job left in the storage");
        Ok(())
    }

    /// [`Jobs::sweep_temp_area`] now, then every `every` (`None`: only now) until `stop`: what a
    /// run that is over left in the storage's temporary area is removed while the node runs,
    /// not only at its next start (runs still active keep their names). Does nothing for a
    /// storage without a temporary area.
    pub async fn sweep_temp_area_every(&self, every: Option<Duration>, stop: CancellationToken) {
        if !self.config.remote_storage.as_ref().is_some_and(|s| s.has_temp_area()) {
            return;
        }
        loop {
            tokio::select! {
                result = self.sweep_temp_area() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "sweeping the storage's temporary area failed; the next sweep tries again");
                    }
                }
                () = stop.cancelled() => return,
            }
            let Some(every) = every else { return };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Deletes from the storage's temporary area ([`TEMP_AREA`]) what runs and uploads that
    /// are over left there (a crash, a lost node, a failed clean-up): the temporary outputs of
    /// every run whose job is not running that attempt now (finished, queued again, running a
    /// later attempt, or gone), and create-only uploads' objects older than
    /// [`STALE_UPLOAD_AGE`]; and aborts the multipart uploads left open by the same rule
    /// (a run's unless it is running; any other after [`STALE_MULTIPART_AGE`]). Safe while other nodes run jobs: the names are listed first and
    /// only the listed ones are deleted, so a run that starts meanwhile keeps its own; a run
    /// still going is never touched. Does nothing for a storage without a temporary area.
    ///
    /// # Errors
    /// [`StorageError`] when the area cannot be listed; a job the store cannot read keeps its
    /// names.
    pub async fn sweep_temp_area(&self) -> Result<TempSweep, StorageError> {
        let mut sweep = TempSweep::default();
        let Some(remote) = self.config.remote_storage.as_ref().filter(|s| s.has_temp_area()) else {
            return Ok(sweep);
        };
        let mut runs: BTreeMap<(JobId, u32), Vec<String>> = BTreeMap::new();
        let now = SystemTime::now();
        for temp in remote.list_temps("").await? {
            match RunTemp::owner(&temp.path) {
                Some(owner) => runs.entry(owner).or_default().push(temp.path),
                None if !temp.path.starts_with(&format!("{PUBLISH_TEMP}/")) => {
                    let age = now.duration_since(temp.modified).unwrap_or_default();
                    if age > STALE_UPLOAD_AGE && remote.delete_temp(&temp.path).await.is_ok() {
                        sweep.uploads += 1;
                    }
                }
                None => {}
            }
        }
        for ((id, attempt), temps) in runs {
            let status = match self.store.get(&id).await {
                Ok(job) => job.map(|job| (job.status, job.attempts)),
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "reading a job for the temporary area's sweep failed");
                    continue;
                }
            };
            // The attempt still runs: its own. A later attempt runs (it undid this one before
            // it started) or the job completed (a later attempt published): names only.
            // Otherwise (queued again, failed, cancelled, or its record deleted) the run did not
            // complete, and nothing may write its paths meanwhile: the files a part-way publish
            // replaced go back (a job ended by a lost node's reaper keeps no one's output in
            // place of the user's file).
            let restore = match status {
                Some((JobStatus::Running, attempts)) if attempts == attempt => continue,
                Some((JobStatus::Running | JobStatus::Completed, _)) => false,
                _ => true,
            };
            let (restored, deleted) = restore_or_discard(remote.as_ref(), &temps, restore).await;
            sweep.restored += restored;
            sweep.outputs += deleted;
        }
        sweep.multipart = self.sweep_open_uploads(remote.as_ref()).await;
        if sweep != TempSweep::default() {
            tracing::info!(
                restored = sweep.restored,
                outputs = sweep.outputs,
                uploads = sweep.uploads,
                multipart = sweep.multipart,
                area = TEMP_AREA,
                "removed what runs and uploads that are over left in the storage's temporary area"
            );
        }
        Ok(sweep)
    }
}

impl Jobs {
    /// The sweep's part for multipart uploads left open in the storage
    /// ([`Storage::open_uploads`], listed first, so an upload started meanwhile is not seen):
    /// a run's (its name in the temporary area carries its job and attempt) is aborted unless
    /// its job is running that attempt; any other once started longer than
    /// [`STALE_MULTIPART_AGE`] ago. Returns how many were aborted; failures are logged (the
    /// next sweep tries again).
    async fn sweep_open_uploads(&self, remote: &dyn Storage) -> usize {
        let uploads = match remote.open_uploads("").await {
            Ok(uploads) => uploads,
            Err(e) => {
                tracing::warn!(error = %e, "listing the storage's open multipart uploads failed; the next sweep tries again");
                return 0;
            }
        };
        let now = SystemTime::now();
        let area = format!("{TEMP_AREA}/");
        let mut running: BTreeMap<JobId, Option<u32>> = BTreeMap::new();
        let mut aborted = 0;
        for upload in uploads {
            let owner = upload.path.strip_prefix(&area).and_then(RunTemp::owner);
            let run = match owner {
                Some((id, attempt)) => {
                    let attempt_running = match running.get(&id) {
                        Some(known) => *known,
                        None => match self.store.get(&id).await {
                            Ok(job) => {
                                let known = job.filter(|job| job.status == JobStatus::Running).map(|job| job.attempts);
                                running.insert(id.clone(), known);
                                known
                            }
                            Err(e) => {
                                tracing::warn!(job = %id, error = %e, "reading a job for the sweep of open uploads failed");
                                continue;
                            }
                        },
                    };
                    Some((attempt, attempt_running))
                }
                None => None,
            };
            if !sweeps_upload(run, now.duration_since(upload.initiated).unwrap_or_default()) {
                continue;
            }
            match remote.abort_upload(&upload).await {
                Ok(()) => aborted += 1,
                Err(e) => tracing::warn!(path = upload.path, error = %e, "aborting an open multipart upload failed"),
            }
        }
        aborted
    }
}

/// Whether the sweep aborts an open multipart upload: a run's (`run`: its attempt, and the
/// attempt its job runs now, `None` when it runs none) unless its job runs that attempt; any
/// other once it is `age` old past [`STALE_MULTIPART_AGE`].
fn sweeps_upload(run: Option<(u32, Option<u32>)>, age: Duration) -> bool {
    match run {
        Some((attempt, running)) => running != Some(attempt),
        None => age > STALE_MULTIPART_AGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_aborts_uploads_of_runs_that_are_over_and_other_uploads_once_stale() {
        let young = Duration::from_secs(60);
        let stale = STALE_MULTIPART_AGE + Duration::from_secs(1);
        // A run's: by its job alone, whatever its age.
        assert!(!sweeps_upload(Some((2, Some(2))), stale), "its attempt runs");
        assert!(sweeps_upload(Some((1, Some(2))), young), "a later attempt runs");
        assert!(sweeps_upload(Some((1, None)), young), "its job runs no attempt");
        // Any other (a files API upload under way): by its age.
        assert!(!sweeps_upload(None, young));
        assert!(sweeps_upload(None, stale));
    }

    #[test]
    fn the_retry_delay_doubles_with_jitter_up_to_its_cap() {
        for _ in 0..50 {
            for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (40, 60)] {
                let full = Duration::from_secs(full);
                let delay = staging_retry_delay(STAGING_RETRY_DELAY, attempt);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "attempt {attempt}: {delay:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        // Jitter: not always the same wait.
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| staging_retry_delay(STAGING_RETRY_DELAY, 3)).collect();
        assert!(waits.len() > 1, "{waits:?}");
    }
}
