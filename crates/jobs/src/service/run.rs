//! One run of a job ([`Jobs::run_job`]): the command resolved again, its directories
//! prepared and snapshotted, the run recorded, ffmpeg run with its progress published and
//! saved, its files listed or removed, and its outcome saved ([`Jobs::finish`]); the
//! [`Registration`] guard keeps it registered as running here for as long as it lasts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::{ResolvedCommand, Sandbox};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::places::{WrittenPlaces, argument_writing, directory_output};
use super::workers::Turn;
use super::{Jobs, METRIC_FINISHED, METRIC_RUN_SECONDS, RunningJob, SubmitError, blocking};
use crate::concat_lists;
use crate::encoded;
use crate::globs;
use crate::model::{Job, JobId, Phase, Progress};
use crate::output_meta;
use crate::outputs::{self, Snapshot};
use crate::runner::{RunError, RunSpec};
use crate::staging::{self, Deadline, Stage, StagingError};
use crate::storage::check_writable_in;
use crate::store::{Outcome, RunRecord, StoreError};

/// First wait before saving a job's outcome again after the store failed.
const FINISH_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between attempts to save a job's outcome.
const FINISH_RETRY_MAX: Duration = Duration::from_secs(5);
/// Shortest time between two progress writes of one job to the store. Subscribers of the
/// event bus get every progress block; the store only needs the latest for `GET /jobs/{id}`.
pub const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_secs(1);

impl Jobs {
    /// Runs claimed `job` to its saved outcome. `freed` fires once a run in place has no more
    /// use for its worker's slot: its ffmpeg reported the end of its work
    /// ([`RunSpec::ended`]) or exited; what is left (ffmpeg's exit, its files listed or
    /// removed, its outcome saved) may go on beside the next job's start, the store holding
    /// this job `running`, and so its footprint, until then. A staged run keeps its slot until
    /// it ends (its uploads follow ffmpeg).
    pub(super) async fn run_job(&self, job: Job, abort: &CancellationToken, freed: &CancellationToken, mut turn: Turn) {
        let id = job.id.clone();
        let started = SystemTime::now();
        // Files in a bucket: the run works in its own stage, which is its sandbox's root.
        let stage = match &self.config.remote_storage {
            Some(_) => {
                let (sandbox, job_id, attempt) = (Arc::clone(&self.sandbox), id.clone(), job.attempts);
                match blocking(move || Stage::create(&sandbox, &job_id, attempt)).await {
                    Ok(stage) => Some(stage),
                    Err(e) => {
                        return self.finish(&id, Outcome::Failed { error: e.to_string() }, "", started, abort).await;
                    }
                }
            }
            None => None,
        };
        let run_sandbox = stage.as_ref().map_or_else(|| Arc::clone(&self.sandbox), |s| Arc::new(s.sandbox().clone()));
        let timeout = job.timeout_seconds.map(Duration::from_secs).or(self.config.max_timeout);
        // A staged run's time limit covers its downloads and uploads too: one deadline over
        // the whole attempt.
        let deadline = stage.as_ref().and_then(|_| Deadline::start(timeout));
        let running = RunningJob { cancel: CancellationToken::new(), done: CancellationToken::new() };
        let _registered = Registration::new(self, &id, &running);
        let mut publisher = self.events.publisher(&job);
        let root = run_sandbox.root().to_owned();
        // The command is resolved again right before it runs: the filesystem may have changed
        // since submission (a planted symlink). The installed ffmpeg's names, checked at
        // submission, have not. Resolving canonicalises paths: blocking work.
        let resolve = {
            let (sandbox, command, in_place) = (Arc::clone(&run_sandbox), job.command.clone(), stage.is_none());
            move || -> Result<(ResolvedCommand, Footprint), String> {
                let resolved = Command::parse(&command)
                    .map_err(SubmitError::from)
                    .and_then(|command| match sandbox.resolve_command(&command) {
                        Ok(resolved) => Ok(resolved),
                        // In place, an output onto a directory is the storage's conflict, as at
                        // submit (a directory made there since).
                        Err(e) if in_place => Err(directory_output(&sandbox, &command, e)),
                        Err(e) => Err(e.into()),
                    })
                    .map_err(|e| match e {
                        e @ SubmitError::OutputConflict { .. } => not_stored(&e),
                        e => e.to_string(),
                    })?;
                let footprint = Footprint::of(&resolved);
                Ok((resolved, footprint))
            }
        };
        // `-n` (and no `-y`): the outputs named on the command line never replace a file.
        let mut kept = Vec::new();
        // Staged in first when they exist, as they are in place in a data directory.
        let mut staged_back = Vec::new();
        // An earlier attempt's names in the temporary area that could not be undone.
        let mut left_over = false;
        let prepared = if let (Some(stage), Some(remote)) = (&stage, &self.config.remote_storage) {
            let (resolved, footprint) = match blocking(resolve).await {
                Ok(r) => r,
                Err(error) => return self.finish(&id, Outcome::Failed { error }, "", started, abort).await,
            };
            kept = never_overwritten(&resolved);
            // An earlier attempt that did not end by itself may have published part of its
            // outputs: the files they replaced go back first. Only if one may have written into
            // the temporary area (its run record says so): an attempt that failed before that
            // (downloading) left nothing to list (tester finding I2). A storage that does not
            // answer ends this attempt at once (it goes back in the queue). A job sent back to
            // the queue by `JobStore::retry` (it has a retry reason) may have had an attempt
            // not counted (the storage was known down): this attempt has its number, so no
            // record tells what it left, and it is undone whatever it did (two listings, once
            // per retry, while the storage answers: workers claim nothing while it does not).
            let retried =
                job.retry_reason.is_some() && self.config.remote_storage.as_ref().is_some_and(|s| s.has_temp_area());
            if retried || (job.attempts > 1 && self.earlier_runs_may_have_left_temps(&id, None).await) {
                match self.undo_earlier_runs(&id).await {
                    // Recorded: a later attempt need not undo them again.
                    Ok(()) => self.record_staged_run(&id, job.attempts, false).await,
                    Err(e) if e.is_transient() => {
                        let error = StagingError::Undo(e);
                        return self.staging_failed(&job, error, "", started, &running.cancel, abort).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listing an earlier run's temporary names failed; the sweep removes them");
                        left_over = true;
                    }
                }
            }
            let cancelled = || running.cancel.is_cancelled();
            let what = (&run_sandbox, &resolved, &footprint);
            let read_back = staging::read_before_written(&resolved);
            let outputs = (kept.as_slice(), read_back.as_slice());
            let staged = self
                .stage_inputs(&id, stage, remote.as_ref(), what, outputs, deadline, &mut publisher, &running, abort)
                .await;
            match staged {
                Ok(back) => staged_back = back,
                Err(Some(error)) => {
                    return self.staging_failed(&job, error, "", started, &running.cancel, abort).await;
                }
                Err(None) if cancelled() => return self.finish(&id, Outcome::Cancelled, "", started, abort).await,
                Err(None) => return self.requeue_stopped(&id).await,
            }
            // The store claimed this job only because no running job's footprint conflicts
            // with its own (`JobStore::claim_next`).
            if job.attempts > 1 {
                self.clear_previous_attempt(&id).await;
            }
            let (sandbox, job_id, root, kept) = (Arc::clone(&run_sandbox), id.clone(), root.clone(), kept.clone());
            blocking(move || {
                // The outputs that exist in the bucket are held in the stage (`hold_existing`).
                refuse_existing_outputs(&root, &kept).map_err(|e| (e, Vec::new()))?;
                prepare(&sandbox, &root, &job_id, resolved, footprint)
            })
            .await
        } else {
            // In place, everything before the run record is one trip to a blocking thread:
            // resolving, the concat lists (what they name is checked as the command's own
            // inputs are), and preparing the output directories.
            if job.attempts > 1 {
                self.clear_previous_attempt(&id).await;
            }
            let (sandbox, job_id, root) = (Arc::clone(&run_sandbox), id.clone(), root.clone());
            blocking(move || {
                let (resolved, footprint) = resolve().map_err(|e| (e, Vec::new()))?;
                concat_lists::check_in_place(&sandbox, &resolved).map_err(|e| (e.to_string(), Vec::new()))?;
                check_places(&root, &resolved).map_err(|e| (e, Vec::new()))?;
                refuse_existing_outputs(&root, &never_overwritten(&resolved)).map_err(|e| (e, Vec::new()))?;
                prepare(&sandbox, &root, &job_id, resolved, footprint)
            })
            .await
        };
        let Prepared { resolved, footprint, before, globs: _globs } = match prepared {
            Ok(prepared) => prepared,
            Err((error, created_dirs)) => {
                self.remove_created_dirs(std::slice::from_ref(&id), created_dirs).await;
                return self.finish(&id, Outcome::Failed { error }, "", started, abort).await;
            }
        };
        let created_dirs = before.created_dirs.clone();
        // Durably, before ffmpeg can write anything: recovery after a crash removes what this
        // attempt wrote by the same rule as a failure. A staged run writes nothing in the data
        // directory (recovery removes its stage).
        let record = match &stage {
            None => RunRecord {
                attempt: job.attempts,
                footprint: footprint.clone(),
                snapshot: before.clone(),
                temp_area: false,
            },
            // A command that writes files uploads them through the temporary area.
            Some(_) => RunRecord {
                attempt: job.attempts,
                footprint: Footprint::default(),
                snapshot: Snapshot::default(),
                temp_area: left_over || !footprint.writes().is_empty(),
            },
        };
        if let Err(e) = self.store.record_run(&id, &record).await {
            tracing::error!(error = %e, "recording the run before it starts failed");
            let error = "the job store could not record the run; it was not started".to_owned();
            return self.finish(&id, Outcome::Failed { error }, "", started, abort).await;
        }
        tracing::info!(command = %job.command, "job started");
        turn.started();

        // ffmpeg gets what is left of a staged run's limit.
        let run_timeout = deadline.map_or(timeout, |deadline| Some(deadline.remaining()));
        let (tx, mut rx) = watch::channel(None);
        let (lengths_tx, lengths_rx) = watch::channel(Vec::new());
        let stop = CancellationToken::new();
        let run_ended = CancellationToken::new();
        // Cluster mode: once this node's lease on the job is lost, the job may be another
        // node's; its ffmpeg is stopped at once and nothing more is written for it here.
        let lease_lost = self.store.lease_lost(&id).unwrap_or_default();
        // A staged run says which step it is at; a run in place says nothing.
        let phase = stage.as_ref().map(|_| Phase::Running);
        let with_phase = |progress: Progress| Progress { phase, ..progress };
        // Progress goes to the bus as soon as the runner reports it; the store gets at most one
        // write per `PROGRESS_SAVE_INTERVAL` (`save_progress`, beside the run, never cut short
        // in the middle of a write), then the last snapshot once the run ended.
        let run = async {
            // In place, the slot is free once ffmpeg reports its end (its trailers written):
            // the next job may start while this ffmpeg exits. A staged run keeps it.
            let ended = if stage.is_none() { Some(freed) } else { None };
            let spec =
                RunSpec { job: &id, command: &resolved, timeout: run_timeout, input_lengths: Some(&lengths_rx), ended };
            let run = self.runner.run(spec, &tx, &stop);
            tokio::pin!(run);
            let report = loop {
                tokio::select! {
                    report = &mut run => break report,
                    Ok(()) = rx.changed() => {
                        if let Some(progress) = rx.borrow_and_update().clone() {
                            self.store.announce_progress(&publisher.publish(with_phase(progress)));
                        }
                    }
                    () = running.cancel.cancelled(), if !stop.is_cancelled() => stop.cancel(),
                    () = abort.cancelled(), if !stop.is_cancelled() => stop.cancel(),
                    () = lease_lost.cancelled(), if !stop.is_cancelled() => stop.cancel(),
                }
            };
            if rx.has_changed().unwrap_or(false)
                && let Some(progress) = rx.borrow_and_update().clone()
            {
                self.store.announce_progress(&publisher.publish(with_phase(progress)));
            }
            run_ended.cancel();
            report
        };
        // Concat lists: their entries' lengths, probed beside the run (the banner says `N/A`).
        let lengths = async {
            tokio::select! {
                () = self.concat_lengths(&resolved, &run_sandbox, lengths_tx) => {}
                () = run_ended.cancelled() => {}
            }
        };
        // Some muxers drop their write errors on a full disk: the free space of the output
        // directories' file systems is watched beside the run (`encoded::filled_disk`).
        let output_dirs = footprint.written_dirs().into_iter().map(|dir| root.join(dir)).collect();
        let (report, saved, (), lowest_free) = tokio::join!(
            run,
            self.save_progress(&id, tx.subscribe(), phase, &running.cancel, &run_ended),
            lengths,
            encoded::lowest_free_space(output_dirs, &run_ended)
        );
        if stage.is_none() {
            freed.cancel();
            // The next job's start goes first (`Turn`); this run's end goes on beside its ffmpeg.
            turn.next_started().await;
        }
        if lease_lost.is_cancelled() {
            // Its files are left alone: the node that runs it now may be writing them.
            tracing::warn!("lost the lease of the job: its ffmpeg was stopped; another node takes it over");
            return;
        }
        let last = tx.borrow().clone();
        let final_progress = last.clone();
        // The last progress not yet saved. In place, it is saved with the outcome, one write
        // (the next job's claim waits for the store's writer meanwhile). A staged run saves it
        // now, while the outputs are scanned, before its uploads.
        let unsaved = last.clone().map(with_phase).filter(|progress| saved.as_ref() != Some(progress));
        let (save_now, with_outcome) = if stage.is_some() { (unsaved, None) } else { (None, unsaved) };
        let save_last = async {
            if let Some(progress) = save_now
                && let Err(e) = self.store.update_progress(&id, &progress).await
            {
                tracing::warn!(error = %e, "recording the last progress failed");
            }
        };
        let with_outcome = with_outcome.as_ref();

        // ffmpeg may exit 0 having encoded nothing (`-ss` past the end): that is a failure too.
        let scan = {
            let (footprint, resolved, log) = (footprint.clone(), resolved.clone(), report.log_tail.clone());
            let (result, banner) = (report.result, report.outputs);
            blocking(move || {
                if result.is_ok() {
                    let written = outputs::run_files(&root, &footprint, &before);
                    if let Some(message) = encoded::filled_disk(&root, lowest_free.as_ref()) {
                        let result = Err(RunError::Unfinished { message });
                        return (outputs::remove_run_files(&root, &footprint, &before), Vec::new(), result);
                    }
                    match encoded::nothing_encoded(&root, &resolved, &written, last.as_ref(), &log) {
                        None => {
                            let described = output_meta::describe(&root, &resolved, &written, &banner, last.as_ref());
                            return (written, described, result);
                        }
                        Some(message) => {
                            let result = Err(RunError::NothingEncoded { message });
                            return (outputs::remove_run_files(&root, &footprint, &before), Vec::new(), result);
                        }
                    }
                }
                // What a failed or stopped run wrote is unusable (truncated at a timeout
                // or a size limit, or a playlist naming missing segments).
                (outputs::remove_run_files(&root, &footprint, &before), Vec::new(), result)
            })
        };
        let ((), (files, described, result)) = tokio::join!(save_last, scan);
        if result.is_err() {
            self.remove_created_dirs(std::slice::from_ref(&id), created_dirs).await;
        }
        // A staged run's messages name files as the client does, without the stage.
        let log_tail = stage.as_ref().map_or_else(|| report.log_tail.clone(), |s| s.unstaged(&report.log_tail));
        match result {
            Ok(()) => {
                if let (Some(stage), Some(remote)) = (&stage, &self.config.remote_storage)
                    && let Err(error) = self
                        .upload_outputs(
                            &job,
                            stage,
                            remote.as_ref(),
                            &with_changed(&files, stage.changed(&staged_back).await),
                            &kept,
                            final_progress,
                            deadline,
                            &mut publisher,
                            (&running.cancel, abort),
                        )
                        .await
                {
                    // An output in the way is named by the argument that writes it, as at submit.
                    let error = match error {
                        StagingError::Conflict(e) => {
                            StagingError::Conflict(e.naming(|path| argument_writing(&resolved, path)))
                        }
                        e => e,
                    };
                    return self.staging_failed(&job, error, &log_tail, started, &running.cancel, abort).await;
                }
                tracing::info!(outputs = files.len(), "job completed");
                let output_files = outputs::to_strings(&files);
                let outcome = Outcome::Completed { output_files, outputs: described };
                self.finish_with(&id, with_outcome, outcome, &log_tail, started, abort).await;
            }
            Err(RunError::Cancelled) => {
                if running.cancel.is_cancelled() {
                    tracing::info!(removed = files.len(), "job cancelled");
                    self.finish_with(&id, with_outcome, Outcome::Cancelled, &log_tail, started, abort).await;
                } else {
                    tracing::info!(removed = files.len(), "job stopped by shutdown; back in the queue");
                    self.requeue_stopped(&id).await;
                }
            }
            Err(e) => {
                tracing::info!(error = %e, removed = files.len(), "job failed");
                // A staged run's ffmpeg had what was left of the limit: the limit is the job's.
                let e = match (e, deadline) {
                    (RunError::TimedOut(_), Some(deadline)) => RunError::TimedOut(deadline.limit()),
                    (e, _) => e,
                };
                let error = stage.as_ref().map_or_else(|| e.to_string(), |s| s.unstaged(&e.to_string()));
                self.finish_with(&id, with_outcome, Outcome::Failed { error }, &log_tail, started, abort).await;
            }
        }
    }

    /// Records a run's outcome. While the store fails (disk full, ...), retries with backoff
    /// ([`FINISH_RETRY_FIRST`] doubling up to [`FINISH_RETRY_MAX`]) until the outcome is saved,
    /// so a finished job never stays `running` and its outputs (left in place meanwhile) are
    /// recorded. Stops early when the store refuses the transition (the job is no longer
    /// running, or is gone) or when `abort` fires (shutdown past its grace period): the job is
    /// then still `running` in the store and recovery at the next start takes it up.
    pub(super) async fn finish(
        &self,
        id: &JobId,
        outcome: Outcome,
        log: &str,
        started: SystemTime,
        abort: &CancellationToken,
    ) {
        self.finish_with(id, None, outcome, log, started, abort).await;
    }

    /// [`Jobs::finish`] with the run's last progress saved first, in the same write where the
    /// store can ([`JobStore::finish_with_progress`](crate::JobStore::finish_with_progress)).
    pub(super) async fn finish_with(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
        started: SystemTime,
        abort: &CancellationToken,
    ) {
        let mut wait = FINISH_RETRY_FIRST;
        loop {
            match self.store.finish_with_progress(id, progress, outcome.clone(), log).await {
                Ok(mut job) => {
                    self.status_changed(&mut job).await;
                    let status = job.status.as_str();
                    metrics::counter!(METRIC_FINISHED, "status" => status).increment(1);
                    let seconds = started.elapsed().unwrap_or_default().as_secs_f64();
                    metrics::histogram!(METRIC_RUN_SECONDS, "status" => status).record(seconds);
                    return;
                }
                Err(e @ (StoreError::NotFound(_) | StoreError::Conflict { .. })) => {
                    tracing::error!(job = %id, error = %e, "the store refused the job's outcome");
                    return;
                }
                Err(e) => {
                    tracing::error!(
                        job = %id, error = %e, retry_in_ms = wait.as_millis(),
                        "saving the job's outcome failed; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = abort.cancelled() => {
                            tracing::warn!(job = %id, "shutting down before the job's outcome was saved; \
                                                       it stays running and is recovered at the next start");
                            return;
                        }
                    }
                    wait = (wait * 2).min(FINISH_RETRY_MAX);
                }
            }
        }
    }

    /// Writes the run's latest progress to the store, at most once per
    /// [`PROGRESS_SAVE_INTERVAL`], until `run_ended` fires (a write under way is finished
    /// first). A store answer that a client asked to cancel the job (through another process)
    /// fires `cancel`. Returns the last snapshot written.
    async fn save_progress(
        &self,
        id: &JobId,
        mut rx: watch::Receiver<Option<Progress>>,
        phase: Option<Phase>,
        cancel: &CancellationToken,
        run_ended: &CancellationToken,
    ) -> Option<Progress> {
        let mut saved = None;
        loop {
            tokio::select! {
                biased;
                () = run_ended.cancelled() => return saved,
                changed = rx.changed() => if changed.is_err() { return saved },
            }
            let latest = rx.borrow_and_update().clone();
            if let Some(progress) = latest.map(|progress| Progress { phase, ..progress }) {
                match self.store.update_progress(id, &progress).await {
                    Ok(true) => cancel.cancel(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "recording progress failed"),
                }
                saved = Some(progress);
            }
            tokio::select! {
                () = run_ended.cancelled() => return saved,
                () = tokio::time::sleep(PROGRESS_SAVE_INTERVAL) => {}
            }
        }
    }

    /// Puts a job whose run was stopped by shutdown back in the queue.
    pub(super) async fn requeue_stopped(&self, id: &JobId) {
        match self.store.requeue(id).await {
            Ok(()) => self.status_changed_of(id).await,
            Err(e) => tracing::error!(error = %e, "re-queueing the job failed"),
        }
    }
}

/// A job registered as running in this process ([`Jobs::running_here`], [`Jobs::cancel`]) for
/// as long as this lives. Dropping it, whichever way the run ends (its normal end, a panic, or
/// the future being dropped), unregisters the job and wakes whoever waits for it to stop: the
/// one clean-up path of a run.
struct Registration<'a> {
    jobs: &'a Jobs,
    id: JobId,
    done: CancellationToken,
}

impl<'a> Registration<'a> {
    fn new(jobs: &'a Jobs, id: &JobId, running: &RunningJob) -> Registration<'a> {
        jobs.lock_running().insert(id.clone(), running.clone());
        jobs.running_changed();
        Registration { jobs, id: id.clone(), done: running.done.clone() }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.jobs.lock_running().remove(&self.id);
        self.jobs.running_changed();
        self.done.cancel();
    }
}

/// A run ready to start: its command, what it may write, the files its footprint covers as
/// they were before it ([`Snapshot`], with the directories made for it) and the private copy of
/// its glob inputs' lists (kept until the run ends).
struct Prepared {
    resolved: ResolvedCommand,
    footprint: Footprint,
    before: Snapshot,
    globs: Option<crate::orphans::ScratchDir>,
}

/// Prepares a resolved run in `root` (its sandbox's data directory): refuses links where it
/// may write, creates its output directories, snapshots what its footprint covers and expands
/// its glob inputs. Blocking. On error, the message and the directories it created.
fn prepare(
    sandbox: &Sandbox,
    root: &Path,
    job: &JobId,
    mut resolved: ResolvedCommand,
    footprint: Footprint,
) -> Result<Prepared, (String, Vec<PathBuf>)> {
    // ffmpeg opens the names it makes up itself (segments, numbered images) without the
    // sandbox: none may be a link leading elsewhere.
    outputs::refuse_links(root, &footprint).map_err(|e| {
        tracing::warn!(link = %e.path.display(), target = %e.target.display(), "a link where the job may write");
        (e.to_string(), Vec::new())
    })?;
    let created_dirs = outputs::missing_dirs(root, &footprint);
    let failed = |error: String| (error, created_dirs.clone());
    outputs::create_output_dirs(&resolved).map_err(|e| failed(format!("cannot create an output directory: {e}")))?;
    let mut before = Snapshot::take(root, &footprint);
    before.created_dirs.clone_from(&created_dirs);
    // Glob inputs: listed and checked now, read by ffmpeg from a private copy of the list (kept
    // until the run ends).
    let globs = globs::expand(sandbox, &mut resolved, job, &std::env::temp_dir()).map_err(|e| failed(e.to_string()))?;
    Ok(Prepared { resolved, footprint, before, globs })
}

/// A run in place, right before its directories are made and ffmpeg starts: no file it would
/// write may be a directory now, nor lie below a file (another job may have put one there
/// since the submission; jobs whose outputs could be so placed never run together, so this is
/// the later one). The message is a staged run's when its publish finds the same
/// ([`StagingError::Conflict`]), naming the argument. Blocking.
fn check_places(root: &Path, resolved: &ResolvedCommand) -> Result<(), String> {
    let places = WrittenPlaces::of(resolved);
    match check_writable_in(root, &places.files, &places.dirs) {
        Ok(()) => Ok(()),
        Err(problem) => Err(not_stored(&places.conflict(problem))),
    }
}

/// A run's error for a refused place ([`SubmitError::OutputConflict`]), worded as
/// [`StagingError::Conflict`]'s.
fn not_stored(conflict: &SubmitError) -> String {
    format!("the job's outputs cannot be stored; no file in the storage was changed: {conflict}")
}

/// The outputs named on the command line (relative paths) when it must not overwrite them:
/// `-n` without `-y` (ffmpeg overwrites when given both). Empty otherwise.
fn never_overwritten(resolved: &ResolvedCommand) -> Vec<String> {
    let globals = resolved.command().global_options();
    let has = |name: &str| globals.iter().any(|o| o.name() == name);
    if !has("n") || has("y") {
        return Vec::new();
    }
    resolved
        .outputs()
        .iter()
        .filter_map(|output| match output {
            ffmpeg_core::sandbox::OutputTarget::File(path) => Some(path.relative().to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// `-n`: fails the run before ffmpeg starts when one of the outputs named on the command line
/// (`never`, relative to `root`: the data directory, or the stage, where the outputs that exist
/// in the bucket are held) exists, with ffmpeg's own message (`File 'out/a.mp4' already
/// exists. Exiting.`, `assert_file_overwrite()` in `fftools/ffmpeg_opt.c`). ffmpeg 5.1 checks
/// only the outputs it opens itself: a muxer that opens its files on its own (`AVFMT_NOFILE`:
/// `hls`, `dash`) replaced an existing playlist or manifest despite `-n` (tester finding L7),
/// and a bucket then refused it only when the whole encode was uploaded. Blocking.
fn refuse_existing_outputs(root: &Path, never: &[String]) -> Result<(), String> {
    match never.iter().find(|path| std::fs::symlink_metadata(root.join(path)).is_ok()) {
        Some(path) => Err(format!("File '{path}' already exists. Exiting.")),
        None => Ok(()),
    }
}

/// `files` and those of `changed` not among them: a staged run uploads its outputs and the
/// files it appended to (which are not its outputs: they existed before it).
fn with_changed(files: &[PathBuf], changed: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut all = files.to_vec();
    all.extend(changed.into_iter().filter(|path| !files.contains(path)));
    all
}
