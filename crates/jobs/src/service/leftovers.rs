//! What runs leave behind, removed by the rule a failure uses ([`crate::outputs`]): the
//! files and scratch directories of attempts a crash interrupted ([`Jobs::recover`]) or whose
//! node died ([`Jobs::clear_previous_attempt`]), and the empty directories a failed,
//! cancelled or interrupted run created ([`Jobs::remove_created_dirs`]); and the stages that
//! no live run uses ([`Jobs::sweep_stages_every`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::footprint::Footprint;
use tokio_util::sync::CancellationToken;

use super::{Jobs, blocking};
use crate::model::JobId;
use crate::outputs;
use crate::store::{Recovery, RunRecord, StoreError};

impl Jobs {
    /// At start-up, before any worker runs: removes what attempts interrupted by a crash left
    /// (the files they wrote in the data directory, by the rule a failure uses, from the
    /// [`RunRecord`] each stored before ffmpeg started; and their scratch directories), then
    /// puts their jobs back in the queue or fails them ([`JobStore::recover`]). Nothing else is
    /// removed: an attempt that recorded no run never started ffmpeg. Stop orphaned ffmpeg
    /// processes first ([`crate::orphans::stop_orphans`]), or they keep writing.
    ///
    /// # Errors
    /// [`StoreError`] from the store; nothing is removed unless the store could be read.
    pub async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let interrupted = self.store.interrupted_runs().await?;
        if !interrupted.is_empty() {
            let ids: Vec<JobId> = interrupted.iter().map(|run| run.id.clone()).collect();
            let runs: Vec<Option<RunRecord>> = interrupted.iter().map(|run| run.run.clone()).collect();
            let created: Vec<PathBuf> = interrupted
                .iter()
                .filter_map(|run| run.run.as_ref())
                .flat_map(|r| r.snapshot.created_dirs.clone())
                .collect();
            let root = self.sandbox.root().to_owned();
            let runner = Arc::clone(&self.runner);
            blocking(move || {
                for run in &interrupted {
                    let files = run
                        .run
                        .as_ref()
                        .map(|r| outputs::remove_run_files(&root, &r.footprint, &r.snapshot))
                        .unwrap_or_default();
                    let scratch = runner.remove_leftovers(&run.id);
                    let stages = crate::staging::remove_stages_of(&root, &run.id);
                    tracing::info!(
                        job = %run.id,
                        files = files.len(),
                        scratch_dirs = scratch.len(),
                        stages,
                        "removed what an interrupted run left"
                    );
                }
            })
            .await;
            let mut created = created;
            created.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
            created.dedup();
            self.remove_created_dirs(&ids, created).await;
            // Staged runs: what a part-way publish replaced goes back, temporary names go;
            // only for runs whose record says they may have written there (the others would
            // each cost a listing, one request timeout in an outage, before the node serves).
            // A storage known not to answer (the start found it so): left to the jobs' next
            // attempts (their run records say so) and to the sweep, not waited for here.
            for (id, run) in ids.iter().zip(&runs) {
                if !self.earlier_runs_may_have_left_temps(id, run.as_ref()).await {
                    continue;
                }
                if self.availability.is_down() {
                    tracing::warn!(job = %id, "the storage does not answer: what the run may have left in its \
                                   temporary area is undone by the job's next attempt, or the sweep");
                } else {
                    self.discard_run_temps(id).await;
                }
            }
        }
        let recovery = self.store.recover(max_attempts).await?;
        for id in recovery.requeued.iter().chain(&recovery.failed).chain(&recovery.cancelled) {
            self.status_changed_of(id).await;
        }
        Ok(recovery)
    }

    /// With the files in a bucket: removes the stages under the data directory that no live
    /// run of any process uses ([`crate::staging::sweep_stages`]) now, then every `every`
    /// (`None`: only now) until `stop`. At start-up this removes what a crash of this node
    /// left, whoever ran those jobs since (the store no longer shows them as this node's once
    /// another node took them over); while the node runs, what other processes sharing the data
    /// directory left when they died. Does nothing without a bucket (no stages).
    pub async fn sweep_stages_every(&self, every: Option<Duration>, stop: CancellationToken) {
        if self.config.remote_storage.is_none() {
            return;
        }
        loop {
            let root = self.sandbox.root().to_owned();
            let removed = blocking(move || crate::staging::sweep_stages(&root)).await;
            if !removed.is_empty() {
                tracing::warn!(stages = ?removed, "removed staging directories that processes now gone left");
            }
            let Some(every) = every else { return };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Removes the directories that failed, cancelled or interrupted runs of the jobs `ids`
    /// created and that are empty now ([`outputs::remove_created_dirs`]), except those another
    /// queued or running job may write into. Nothing is removed when the store cannot say
    /// which jobs are active.
    pub(super) async fn remove_created_dirs(&self, ids: &[JobId], created: Vec<PathBuf>) {
        if created.is_empty() {
            return;
        }
        let active = match self.store.active_footprints().await {
            Ok(active) => active,
            Err(e) => {
                tracing::warn!(error = %e, "listing active jobs failed; the run's empty directories stay");
                return;
            }
        };
        let others: Vec<Option<Footprint>> =
            active.into_iter().filter(|job| !ids.contains(&job.id)).map(|job| job.footprint).collect();
        let root = self.sandbox.root().to_owned();
        let removed = blocking(move || {
            outputs::remove_created_dirs(&root, &created, |dir| {
                others.iter().any(|footprint| outputs::writes_into(footprint.as_ref(), dir))
            })
        })
        .await;
        if !removed.is_empty() {
            tracing::info!(dirs = removed.len(), "removed the empty directories the run created");
        }
    }

    /// Before a job runs again: removes what an earlier attempt that did not end by itself
    /// left ([`JobStore::previous_run`]: its node died mid-run, and the reaper or recovery put
    /// the job back in the queue), by the rule a failure uses, after stopping that attempt's
    /// ffmpeg if it still runs on this host and removing its scratch directories
    /// ([`Runner::remove_leftovers`]). Otherwise this run would take the dead attempt's partial
    /// outputs for files that existed before it: `-n` would refuse to overwrite them, and a
    /// failure of this run would leave them behind. An attempt that ended by itself (a failure,
    /// a requeue at shutdown) removed its own files; removing them again finds nothing.
    pub(super) async fn clear_previous_attempt(&self, id: &JobId) {
        let previous = match self.store.previous_run(id).await {
            Ok(previous) => previous,
            Err(e) => {
                tracing::warn!(error = %e, "reading the previous attempt's run record failed; its files stay");
                None
            }
        };
        let created = previous.as_ref().map(|run| run.snapshot.created_dirs.clone()).unwrap_or_default();
        let (root, runner, job) = (self.sandbox.root().to_owned(), Arc::clone(&self.runner), id.clone());
        blocking(move || {
            let scratch = runner.remove_leftovers(&job);
            let files =
                previous.map(|run| outputs::remove_run_files(&root, &run.footprint, &run.snapshot)).unwrap_or_default();
            if !files.is_empty() || !scratch.is_empty() {
                tracing::info!(
                    files = files.len(),
                    scratch_dirs = scratch.len(),
                    "removed what an earlier attempt of the job left"
                );
            }
        })
        .await;
        self.remove_created_dirs(std::slice::from_ref(id), created).await;
    }
}
