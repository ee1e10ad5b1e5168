//! A staged run's phases (files in a bucket, [`crate::staging`]): `downloading` its inputs
//! into its stage before ffmpeg runs, `uploading` its outputs after it succeeded.

use ffmpeg_core::footprint::Footprint;
use tokio_util::sync::CancellationToken;

use super::{Jobs, RunningJob};
use crate::events::ProgressPublisher;
use crate::model::{JobId, Phase, Progress};
use crate::staging::Stage;
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

    /// Phase `downloading` of a staged job: its inputs into `stage`. `Err(Some(error))`:
    /// the job fails with `error`; `Err(None)`: cancelled or shut down meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stage_inputs(
        &self,
        id: &JobId,
        stage: &Stage,
        remote: &dyn Storage,
        footprint: &Footprint,
        publisher: &mut ProgressPublisher,
        running: &RunningJob,
        abort: &CancellationToken,
    ) -> Result<(), Option<String>> {
        let downloading = Progress { phase: Some(Phase::Downloading), ..Progress::default() };
        self.save_phase(id, downloading, publisher).await;
        let download = tokio::select! {
            result = stage.download(remote, footprint) => result,
            () = running.cancel.cancelled() => return Err(None),
            () = abort.cancelled() => return Err(None),
        };
        match download {
            Ok(done) => {
                tracing::info!(
                    files = done.files,
                    bytes = done.bytes,
                    seconds = done.elapsed.as_secs_f64(),
                    "inputs staged"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "staging the inputs failed");
                Err(Some(e.to_string()))
            }
        }
    }

    /// Phase `uploading` of a staged job that succeeded: `files` (relative) from `stage` into
    /// the storage; then the last progress again without a phase. `Err(error)`: the job
    /// fails with `error`, and nothing of it is left in the storage.
    pub(super) async fn upload_outputs(
        &self,
        id: &JobId,
        stage: &Stage,
        remote: &dyn Storage,
        files: &[std::path::PathBuf],
        last: Option<Progress>,
        publisher: &mut ProgressPublisher,
    ) -> Result<(), String> {
        let last = last.unwrap_or_default();
        self.save_phase(id, Progress { phase: Some(Phase::Uploading), ..last.clone() }, publisher).await;
        match stage.upload(remote, files, u64::MAX).await {
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
                Err(e.to_string())
            }
        }
    }
}
