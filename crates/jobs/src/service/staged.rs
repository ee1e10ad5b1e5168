//! A staged run's phases (files in a bucket, [`crate::staging`]): `downloading` its inputs
//! into its stage before ffmpeg runs, `uploading` its outputs after it succeeded.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::{ResolvedCommand, Sandbox};
use tokio_util::sync::CancellationToken;

use super::{Jobs, RunningJob};
use crate::concat_lists::{self, ConcatListError};
use crate::events::ProgressPublisher;
use crate::model::{Job, JobId, Phase, Progress};
use crate::publish::{PublishError, RunTemp};
use crate::staging::{self, Deadline, Stage, StagedBack, StagingError, Transfer};
use crate::storage::Storage;

impl Jobs {
    /// Records and publishes `progress` of a staged job (a phase change).
    async fn save_phase(&self, id: &JobId, progress: Progress, publisher: &mut ProgressPublisher) {
        publisher.publish(progress.clone());
        match self.store.update_progress(id, &progress).await {
            Ok(true) => {
                if let Some(running) = self.lock_running().get(id) {
                    running.cancel.cancel();
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "recording progress failed"),
        }
    }

    /// Phase `downloading` of a staged job: for a command that must not overwrite (`-n`), an
    /// empty file in place of each output `kept` that exists in the storage, checked first:
    /// when one does, nothing else is downloaded (the run then fails before ffmpeg starts, as
    /// it does locally); else its inputs into `stage`, and each output of `read_back`
    /// that exists in the storage ([`staging::read_before_written`]; returned, to upload those
    /// the run changed). `Err(Some(error))`: staging
    /// failed ([`Jobs::staging_failed`]; [`StagingError::TimedOut`] once `deadline` passed);
    /// `Err(None)`: cancelled or shut down meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stage_inputs(
        &self,
        id: &JobId,
        stage: &Stage,
        remote: &dyn Storage,
        (sandbox, resolved, footprint): (&Arc<Sandbox>, &ResolvedCommand, &Footprint),
        (kept, read_back): (&[String], &[String]),
        deadline: Option<Deadline>,
        publisher: &mut ProgressPublisher,
        running: &RunningJob,
        abort: &CancellationToken,
    ) -> Result<Vec<StagedBack>, Option<StagingError>> {
        let downloading = Progress { phase: Some(Phase::Downloading), ..Progress::default() };
        self.save_phase(id, downloading, publisher).await;
        let download = async {
            let started = std::time::Instant::now();
            // `-n` first: an output that exists in the storage fails the run before ffmpeg
            // starts (`refuse_existing_outputs` finds it held in the stage), so nothing is
            // downloaded for it (tester finding L7: every input was, first).
            let held = stage.hold_existing(remote, kept).await?;
            if !held.is_empty() {
                tracing::info!(outputs = ?held, "-n: outputs exist in the storage; the run fails, nothing is downloaded");
                return Ok((Transfer::default(), Vec::new()));
            }
            let inputs = stage.download(remote, footprint).await?;
            // Outputs ffmpeg reads before it writes them (an HLS playlist appended to).
            let (staged_back, back) = stage.download_existing(remote, read_back).await?;
            if !staged_back.is_empty() {
                tracing::info!(files = ?staged_back.iter().map(|f| &f.path).collect::<Vec<_>>(),
                               "outputs ffmpeg reads back were staged from the storage");
            }
            let listed = concat_lists::check(sandbox, resolved, Some((stage, remote))).await;
            staging::count_download(listed.as_ref().map_err(|e| matches!(e, ConcatListError::Staging(_))));
            let listed = listed.map_err(|e| StagingError::Concat(Box::new(e)))?;
            let done = Transfer {
                files: inputs.files + back.files + listed.files,
                bytes: inputs.bytes + back.bytes + listed.bytes,
                elapsed: started.elapsed(),
            };
            Ok((done, staged_back))
        };
        let download = tokio::select! {
            result = download => result,
            () = running.cancel.cancelled() => return Err(None),
            () = abort.cancelled() => return Err(None),
            () = Deadline::reached(deadline) => Err(StagingError::TimedOut {
                phase: Phase::Downloading,
                limit: deadline.map(|d| d.limit()).unwrap_or_default(),
            }),
        };
        match download {
            Ok((done, staged_back)) => {
                tracing::info!(
                    files = done.files,
                    bytes = done.bytes,
                    seconds = done.elapsed.as_secs_f64(),
                    "inputs staged"
                );
                Ok(staged_back)
            }
            Err(e) => {
                tracing::warn!(error = %e, "staging the inputs failed");
                Err(Some(e))
            }
        }
    }

    /// Phase `uploading` of a staged job that succeeded: `files` (relative) from `stage` into
    /// the storage as one set ([`crate::publish`]; `kept`: outputs that must not replace a
    /// file, `-n`), published only while this node still holds the job and before `deadline`
    /// (past it, what was done is undone: [`StagingError::TimedOut`]); then the last progress
    /// again without a phase. A cancel (`cancel`) or the node's shutdown (`abort`, once its
    /// `SHUTDOWN_GRACE` is over) stops the upload wherever it is and undoes it
    /// ([`PublishError::Cancelled`], [`PublishError::Stopped`]: no object published, the
    /// multipart uploads left open aborted). `Err(error)`: see [`Jobs::staging_failed`]; with no upload
    /// request sent while the storage is known not to answer and a check (unless one ran
    /// within the last second) confirms it ([`crate::storage::Availability`]:
    /// [`StorageError::Unreachable`](crate::storage::StorageError::Unreachable), which re-queues
    /// the job).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_outputs(
        &self,
        job: &Job,
        stage: &Stage,
        remote: &dyn Storage,
        files: &[PathBuf],
        kept: &[String],
        last: Option<Progress>,
        deadline: Option<Deadline>,
        publisher: &mut ProgressPublisher,
        (cancel, abort): (&CancellationToken, &CancellationToken),
    ) -> Result<(), StagingError> {
        let id = &job.id;
        // A storage this node knows does not answer (a check found it so: `/ready`, a files
        // call, the start) is not waited for request by request (each a request timeout in
        // this worker's slot): one check unless one ran within the last second (at most
        // `READY_TIMEOUT`), and if it still does not answer the job goes back to the queue at
        // once, as after a failed request ([`Jobs::staging_failed`]), with nothing sent.
        if let Some(first) = files.first()
            && self.availability.is_down()
        {
            let _ = self.availability.check().await;
            if let Err(e) = self.availability.gate(&first.to_string_lossy()) {
                tracing::warn!(error = %e, "the storage is known not to answer; the outputs are not uploaded now");
                return Err(StagingError::Upload(e));
            }
        }
        let last = last.unwrap_or_default();
        self.save_phase(id, Progress { phase: Some(Phase::Uploading), ..last.clone() }, publisher).await;
        let run = RunTemp::new(id, job.attempts);
        let create_only: BTreeSet<PathBuf> = kept.iter().map(PathBuf::from).collect();
        let lease_lost = self.store.lease_lost(id);
        let still_ours = move || lease_lost.as_ref().is_none_or(|lost| !lost.is_cancelled());
        // A cancel stops the upload wherever it is; what it did is undone as after a crash
        // (the files it replaced are put back, its temporary names deleted).
        let upload = tokio::select! {
            result = stage.upload(remote, &run, files, &create_only, &still_ours) => result,
            () = cancel.cancelled() => {
                self.discard_run_temps(id).await;
                Err(StagingError::Publish(PublishError::Cancelled))
            }
            // A draining node waits for no upload past its grace (tester finding L11).
            () = abort.cancelled() => {
                tracing::info!("shutting down: the upload of the job's outputs is stopped and undone");
                self.discard_run_temps(id).await;
                Err(StagingError::Publish(PublishError::Stopped))
            }
            // The job's time limit covers its upload too: stopped and undone the same way.
            () = Deadline::reached(deadline) => {
                self.discard_run_temps(id).await;
                Err(StagingError::TimedOut { phase: Phase::Uploading, limit: deadline.map(|d| d.limit()).unwrap_or_default() })
            }
        };
        match upload {
            Ok(done) => {
                tracing::info!(
                    files = done.files,
                    bytes = done.bytes,
                    seconds = done.elapsed.as_secs_f64(),
                    "outputs uploaded"
                );
                if let Err(e) = self.store.update_progress(id, &Progress { phase: None, ..last }).await {
                    tracing::warn!(error = %e, "recording the last progress failed");
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "uploading the outputs failed");
                Err(e)
            }
        }
    }
}
