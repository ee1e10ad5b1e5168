//! [`Jobs`]: the job service that the HTTP layer (or any other front end) calls, and the
//! worker pool that drains the queue.
//!
//! Submitting parses and sandboxes the command first, so a bad command is refused before it
//! is ever queued. Workers claim jobs from the store (an atomic `queued -> running`
//! transition), run them through a [`Runner`], stream progress into the store, and record the
//! outcome. The command is parsed and sandboxed again at run time: a symlink planted between
//! submit and run cannot redirect a job outside the data directory.

mod bridge;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ffmpeg_core::capabilities::{Capabilities, UnknownName};
use ffmpeg_core::command::{Command, CommandError};
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::{ResolvedCommand, ResolvedPath, Sandbox, SandboxError};
use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::encoded;
use crate::events::{AllEvents, AllFilter, EventBus, EventId, JobEvents, ProgressPublisher, Resume};
use crate::exec_limits::ExecLimitError;
use crate::globs;
use crate::media::{MediaInfo, MediaProbeConfig, MediaProbeError, MediaProber};
use crate::model::{InvalidRequest, Job, JobId, MAX_PAGE_SIZE, Phase, Progress, SubmitOptions};
use crate::nodes::{Node, NodeDirectory, NodeSettings};
use crate::output_meta;
use crate::outputs::{self, Snapshot};
use crate::runner::{RunError, RunSpec, Runner};
use crate::staging::{Stage, StagingError};
use crate::storage::StorageError;
use crate::storage::{LocalStorage, Storage};
use crate::store::{CancelOutcome, JobStore, ListQuery, Outcome, Recovery, RunRecord, StatusCounts, StoreError};
use crate::webhook::{Delivery, WebhookConfig, WebhookError};

/// Counter of accepted submissions (Prometheus name).
pub const METRIC_SUBMITTED: &str = "ffmpeg_worker_jobs_submitted_total";
/// Counter of finished jobs, labelled `status` (completed, failed, cancelled).
pub const METRIC_FINISHED: &str = "ffmpeg_worker_jobs_finished_total";
/// Histogram of job run time in seconds (claim to final status), labelled `status`.
pub const METRIC_RUN_SECONDS: &str = "ffmpeg_worker_job_run_seconds";

/// First wait before saving a job's outcome again after the store failed.
const FINISH_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between attempts to save a job's outcome.
const FINISH_RETRY_MAX: Duration = Duration::from_secs(5);
/// Shortest time between two progress writes of one job to the store. Subscribers of the
/// event bus get every progress block; the store only needs the latest for `GET /jobs/{id}`.
pub const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the job service and its worker pool.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once by this process; 0 runs none (an API-only node).
    pub concurrency: usize,
    /// Upper bound on any job's run time; a job's own `timeout_seconds` is capped by it.
    /// `None`: no limit.
    pub max_timeout: Option<Duration>,
    /// How long an idle worker waits for a wake-up before checking the store again (covers
    /// jobs queued by another process sharing the database).
    pub idle_wait: Duration,
    /// How long [`Jobs::cancel`] waits for a running job's process to stop.
    pub cancel_wait: Duration,
    /// What the installed ffmpeg knows (options, codecs, formats, filters). Submissions naming
    /// anything else are refused with a "did you mean" hint. `None`: no such check.
    pub capabilities: Option<Arc<Capabilities>>,
    /// Webhooks: `None` when the server cannot sign them (no secret), and then a job asking
    /// for one is refused.
    pub webhooks: Option<WebhookConfig>,
    /// ffprobe for [`Jobs::probe_media`]: binary, time limit, cache size.
    pub media_probe: MediaProbeConfig,
    /// This node in the registry ([`crate::nodes`]): its labels (its workers claim only jobs
    /// whose `requires` they cover), heartbeats, the other nodes' capabilities for submit
    /// checks and `waiting_reason`. `None`: no registry (a job's `requires` must then be
    /// empty to run here; nothing explains a waiting job).
    pub node: Option<NodeSettings>,
    /// Where the files live when not in the data directory (an S3-compatible bucket,
    /// [`crate::storage::S3Storage`]): the files API uses it, and workers stage each job's
    /// files between it and a scratch directory under the data directory ([`crate::staging`]).
    /// `None`: the data directory ([`LocalStorage`]), where ffmpeg works in place.
    pub remote_storage: Option<Arc<dyn Storage>>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            concurrency: 1,
            max_timeout: Some(Duration::from_secs(3600)),
            idle_wait: Duration::from_secs(2),
            cancel_wait: Duration::from_secs(2),
            capabilities: None,
            webhooks: None,
            media_probe: MediaProbeConfig::default(),
            node: None,
            remote_storage: None,
        }
    }
}

/// The largest concat list whose entries are summed for percent ([`Jobs`] reads it before
/// the run's progress can use it), in bytes.
pub const CONCAT_LIST_MAX_BYTES: u64 = 1 << 20;

/// The most entries of one concat list probed with ffprobe for their durations; a list with
/// more entries lacking a `duration` line leaves percent unknown.
pub const CONCAT_LIST_MAX_PROBES: usize = 64;

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// An option is outside the service's limits (metadata, timeout).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The command line does not parse.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A path escapes the data directory or names a protocol.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// An option, codec, format or filter the installed ffmpeg does not know.
    #[error(transparent)]
    UnknownName(#[from] UnknownName),
    /// The operating system would refuse to start ffmpeg with this command: its arguments
    /// together, one argument, a file name or a path is too long.
    #[error(transparent)]
    ExecLimit(#[from] ExecLimitError),
    /// The job's webhook is refused (no secret to sign with, a URL the rules refuse, ...).
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a listing was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The page size is outside the service's limits.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of [`Jobs::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The jobs, in submission order.
    pub jobs: Vec<Job>,
    /// When more jobs follow: the `after_seq` of the next page's [`ListQuery`].
    pub next_after_seq: Option<i64>,
}

/// Signals that stop the worker pool.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Fired first: workers claim no new job. Running jobs continue.
    pub stop_claiming: CancellationToken,
    /// Fired after the grace period: running jobs are stopped and put back in the queue.
    pub abort_running: CancellationToken,
}

#[derive(Debug, Clone)]
struct RunningJob {
    cancel: CancellationToken,
    done: CancellationToken,
}

/// The job service: submit, inspect, cancel, delete; and the workers that run jobs.
pub struct Jobs {
    store: Arc<dyn JobStore>,
    runner: Arc<dyn Runner>,
    sandbox: Arc<Sandbox>,
    config: JobsConfig,
    running: Mutex<HashMap<JobId, RunningJob>>,
    events: EventBus,
    media: MediaProber,
    directory: Option<Arc<NodeDirectory>>,
    storage: Arc<dyn Storage>,
    /// Whether the store is shared with other nodes ([`JobStore::cluster_signals`]).
    cluster: bool,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("sandbox", &self.sandbox).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Jobs {
    /// A service over `store`, running jobs with `runner` inside `sandbox`.
    pub fn new(store: Arc<dyn JobStore>, runner: Arc<dyn Runner>, sandbox: Sandbox, config: JobsConfig) -> Arc<Jobs> {
        let media = MediaProber::new(config.media_probe.clone());
        let directory = config.node.clone().map(|node| Arc::new(NodeDirectory::new(Arc::clone(&store), node)));
        let sandbox = Arc::new(sandbox);
        let storage = match &config.remote_storage {
            Some(remote) => Arc::clone(remote),
            None => Arc::new(LocalStorage::new(Arc::clone(&sandbox))) as Arc<dyn Storage>,
        };
        let store_is_shared = store.cluster_signals().is_some();
        let jobs = Arc::new(Jobs {
            directory,
            store,
            runner,
            storage,
            sandbox,
            media,
            config,
            running: Mutex::new(HashMap::new()),
            events: EventBus::new(),
            cluster: store_is_shared,
        });
        // A store shared with other nodes: their changes reach this service too.
        bridge::start(&jobs);
        jobs
    }

    /// Describes the media file at `path` (relative to the data directory) with ffprobe, run
    /// under the rules ffmpeg runs under; answers from the cache while the file's size and
    /// modification time are unchanged. See [`crate::media`].
    ///
    /// # Errors
    /// [`MediaProbeError`]: the sandbox refuses the path, no such file, not media (with
    /// ffprobe's reason), ffprobe unavailable.
    ///
    /// With the files in a bucket, ffprobe reads a copy downloaded into a private stage (the
    /// whole file: containers such as mp4 may keep their index at the end).
    pub async fn probe_media(&self, path: &str) -> Result<Arc<MediaInfo>, MediaProbeError> {
        let Some(remote) = &self.config.remote_storage else {
            return self.media.probe(&self.sandbox, path).await;
        };
        let sandbox = Arc::clone(&self.sandbox);
        let stage = blocking(move || Stage::for_probe(&sandbox))
            .await
            .map_err(|e| MediaProbeError::Unavailable(e.to_string()))?;
        // A path the storage refuses is left to the sandbox's answer, with its rule.
        if let Ok(normal) = remote.check_path(path).await {
            match stage.download_file(remote.as_ref(), &normal).await {
                Ok(_) => {}
                Err(StagingError::Download(StorageError::NotFound(_))) => {
                    return Err(MediaProbeError::NotFound(path.to_owned()));
                }
                Err(StagingError::Download(StorageError::IsADirectory(_))) => {}
                Err(e) => return Err(MediaProbeError::Unavailable(e.to_string())),
            }
        }
        self.media.probe(&Arc::new(stage.sandbox().clone()), path).await
    }

    /// The event bus: every status change this service made, and the live progress of the
    /// jobs it runs.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The hook every status change goes through, right after the store committed it: `job`
    /// is the job as the transition returned it (or as read back just after). Publishes it on
    /// the [`EventBus`].
    fn status_changed(&self, job: &Job) {
        self.events.publish_status(job);
    }

    /// [`Jobs::status_changed`] for a transition that does not return the job (requeue,
    /// recovery): reads it back first. A read that fails is logged; subscribers still get the
    /// job's next change.
    async fn status_changed_of(&self, id: &JobId) {
        match self.store.get(id).await {
            Ok(Some(job)) => self.status_changed(&job),
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %id, error = %e, "reading a job back to publish its status failed"),
        }
    }

    /// The events of job `id` for a client that last saw `last_seen` (a reconnect's
    /// `Last-Event-ID`; `None` for a first connection): [`Resume::Finished`] when that was the
    /// job's final status event, else the current status, the latest progress (when running)
    /// and every newer event until the final status.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn events_of(&self, id: &JobId, last_seen: Option<EventId>) -> Result<Resume, StoreError> {
        // Subscribed before the read: a change committed after the read reaches the stream.
        let subscription = self.events.subscribe(id);
        let job = self.get(id).await?;
        if job.status.is_finished() && last_seen.is_some_and(|last| last.status >= job.event_seq) {
            return Ok(Resume::Finished);
        }
        Ok(Resume::Events(JobEvents::start(subscription, job)))
    }

    /// Every job's events from now on, filtered by `filter`.
    pub fn all_events(&self, filter: AllFilter) -> AllEvents {
        AllEvents::new(&self.events, filter)
    }

    /// Where the files API's files live: the remote storage when configured, else the data
    /// directory.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// The sandbox jobs run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The service's settings.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// Parses `command`, resolves its paths under the policy, checks its names against the
    /// installed ffmpeg and that the operating system can start it ([`Runner::check_startable`]),
    /// as a submission would, without queueing it.
    ///
    /// Blocks: resolving paths canonicalises them (file-system calls). From async code use
    /// [`Jobs::check_async`].
    ///
    /// # Errors
    /// [`SubmitError::Command`], [`SubmitError::Sandbox`], [`SubmitError::UnknownName`] or
    /// [`SubmitError::ExecLimit`].
    pub fn check(&self, command: &str) -> Result<ResolvedCommand, SubmitError> {
        check_command(&self.sandbox, self.config.capabilities.as_deref(), self.runner.as_ref(), command)
    }

    /// [`Jobs::check`] on tokio's blocking thread pool, so the file-system calls do not hold up
    /// an async worker thread.
    ///
    /// # Errors
    /// As [`Jobs::check`].
    pub async fn check_async(&self, command: &str) -> Result<ResolvedCommand, SubmitError> {
        self.check_for(command, &[]).await
    }

    /// [`Jobs::check_async`] for a job that requires `requires`: with a node registry, the
    /// names are checked against what the ffmpeg of the live nodes that could take it know
    /// ([`NodeDirectory::capabilities_for`]), not only this node's.
    ///
    /// # Errors
    /// As [`Jobs::check`], and [`SubmitError::Store`] when the registry cannot be read.
    pub async fn check_for(&self, command: &str, requires: &[String]) -> Result<ResolvedCommand, SubmitError> {
        let sandbox = Arc::clone(&self.sandbox);
        let capabilities = match &self.directory {
            Some(directory) => directory.capabilities_for(requires).await?,
            None => self.config.capabilities.clone(),
        };
        let runner = Arc::clone(&self.runner);
        let command = command.to_owned();
        blocking(move || check_command(&sandbox, capabilities.as_deref(), runner.as_ref(), &command)).await
    }

    /// Checks `options` ([`SubmitOptions::check`]) and `command` ([`Jobs::check_async`]: off
    /// the async threads), and queues it.
    /// `options.timeout_seconds` is capped by the server's limit.
    ///
    /// # Errors
    /// [`SubmitError`]: the options or the command are refused (nothing is queued) or the
    /// store failed.
    pub async fn submit(&self, command: &str, mut options: SubmitOptions) -> Result<Job, SubmitError> {
        options.check()?;
        let resolved = self.check_for(command, &options.requires).await?;
        options.footprint = Footprint::of(&resolved);
        let requested = std::mem::take(&mut options.webhooks);
        options.webhooks = WebhookConfig::subscriptions(self.config.webhooks.as_ref(), requested).await?;
        if let (Some(t), Some(max)) = (options.timeout_seconds, self.config.max_timeout) {
            options.timeout_seconds = Some(t.min(max.as_secs()));
        }
        let mut job = self.store.insert(command.to_owned(), options).await?;
        self.status_changed(&job);
        metrics::counter!(METRIC_SUBMITTED).increment(1);
        self.explain(std::slice::from_mut(&mut job)).await;
        Ok(job)
    }

    /// The durations of `command`'s concat-list inputs (`-f concat -i list.txt`), which
    /// ffmpeg's banner gives as `N/A` unless every entry has a `duration` line: each list read
    /// (at most [`CONCAT_LIST_MAX_BYTES`]) and summed entry by entry, the files without a
    /// `duration` or `outpoint` probed with ffprobe (contained in the sandbox, as
    /// [`Jobs::probe_media`]; at most [`CONCAT_LIST_MAX_PROBES`] per list). Sent on `tx` by
    /// input index once known; a list whose length cannot be known stays `None` (percent
    /// stays null).
    async fn concat_lengths(&self, command: &ResolvedCommand, tx: watch::Sender<Vec<Option<f64>>>) {
        let lists: Vec<(usize, ResolvedPath)> = command
            .command()
            .inputs()
            .iter()
            .zip(command.inputs())
            .enumerate()
            .filter(|(_, (input, _))| input.format().is_some_and(|f| f.eq_ignore_ascii_case("concat")))
            .filter_map(|(index, (_, source))| Some((index, source.file()?.clone())))
            .collect();
        if lists.is_empty() {
            return;
        }
        let mut lengths = vec![None; command.inputs().len()];
        for (index, list) in lists {
            lengths[index] = self.concat_list_length(&list).await;
        }
        tx.send_replace(lengths);
    }

    /// The length in seconds of the concat list at `list`, if it can be known.
    async fn concat_list_length(&self, list: &ResolvedPath) -> Option<f64> {
        let path = list.as_path().to_owned();
        let text = blocking(move || {
            use std::io::Read as _;
            let mut text = String::new();
            let file = std::fs::File::open(path).ok()?;
            file.take(CONCAT_LIST_MAX_BYTES + 1).read_to_string(&mut text).ok()?;
            (text.len() as u64 <= CONCAT_LIST_MAX_BYTES).then_some(text)
        })
        .await?;
        let entries = ffmpeg_core::duration::concat::parse_concat_list(&text);
        let probes = entries.iter().filter(|entry| entry.needs_file_duration()).count();
        if entries.is_empty() || probes > CONCAT_LIST_MAX_PROBES {
            return None;
        }
        // ffmpeg opens a relative entry relative to the list's directory.
        let dir = list.relative().parent().unwrap_or(std::path::Path::new(""));
        let mut total = 0.0;
        for entry in &entries {
            let duration = if entry.needs_file_duration() {
                let path = dir.join(&entry.file);
                self.probe_media(path.to_str()?).await.ok()?.duration_seconds
            } else {
                None
            };
            total += entry.length(duration)?;
        }
        Some(total)
    }

    /// Removes the directories that failed, cancelled or interrupted runs of the jobs `ids`
    /// created and that are empty now ([`outputs::remove_created_dirs`]), except those another
    /// queued or running job may write into. Nothing is removed when the store cannot say
    /// which jobs are active.
    async fn remove_created_dirs(&self, ids: &[JobId], created: Vec<PathBuf>) {
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
        }
        let recovery = self.store.recover(max_attempts).await?;
        for id in recovery.requeued.iter().chain(&recovery.failed) {
            self.status_changed_of(id).await;
        }
        Ok(recovery)
    }

    /// Cancels a job. A queued job is cancelled at once. A running job's process group is
    /// stopped and this waits (up to the configured `cancel_wait`) until it is recorded as
    /// cancelled. A job running on another node of a cluster is stopped by that node, which
    /// hears of the cancel at once ([`crate::cluster`]), and this waits the same way for its
    /// final status; another process sharing an SQLite file stops it at its next progress
    /// report.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] for a finished job.
    pub async fn cancel(&self, id: &JobId) -> Result<Job, StoreError> {
        // Taken before the cancel is written, so that another node's final status reaches it.
        let elsewhere = self.cluster.then(|| self.events.subscribe(id));
        match self.store.cancel(id).await? {
            CancelOutcome::Cancelled(job) => {
                self.status_changed(&job);
                metrics::counter!(METRIC_FINISHED, "status" => job.status.as_str()).increment(1);
                Ok(job)
            }
            CancelOutcome::Requested(job) => {
                let local = self.lock_running().get(id).cloned();
                if let Some(running) = local {
                    running.cancel.cancel();
                    let _ = tokio::time::timeout(self.config.cancel_wait, running.done.cancelled()).await;
                } else if let Some(subscription) = elsewhere {
                    let mut events = JobEvents::start(subscription, job.clone());
                    let finished = async { while events.next().await.is_some_and(|event| !event.is_final()) {} };
                    let _ = tokio::time::timeout(self.config.cancel_wait, finished).await;
                }
                Ok(self.store.get(id).await?.unwrap_or(job))
            }
        }
    }

    /// The job `id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn get(&self, id: &JobId) -> Result<Job, StoreError> {
        let mut job = self.store.get(id).await?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        self.explain(std::slice::from_mut(&mut job)).await;
        Ok(job)
    }

    /// Fills in the `waiting_reason` of queued jobs from the node registry (nothing without one).
    async fn explain(&self, jobs: &mut [Job]) {
        if let Some(directory) = &self.directory {
            directory.explain(jobs).await;
        }
    }

    /// This node's labels: its workers claim only jobs whose `requires` they cover.
    fn labels(&self) -> &[String] {
        self.config.node.as_ref().map_or(&[], |n| n.registration.labels.as_slice())
    }

    /// This node's view of the registry, if it has one.
    pub fn directory(&self) -> Option<&Arc<NodeDirectory>> {
        self.directory.as_ref()
    }

    /// Every node in the registry, read now (empty without a registry).
    ///
    /// # Errors
    /// The store failed.
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        match &self.directory {
            Some(directory) => directory.nodes().await,
            None => Ok(Vec::new()),
        }
    }

    /// Registers this node in the registry (at start-up, before [`Jobs::run_node`]); nothing
    /// without a registry.
    ///
    /// # Errors
    /// The store failed.
    pub async fn register_node(&self) -> Result<(), StoreError> {
        match &self.directory {
            Some(directory) => directory.register().await,
            None => Ok(()),
        }
    }

    /// This node's life in the registry ([`NodeDirectory::run`]), once registered: heartbeats
    /// with the jobs it runs, draining once `draining` fires, removal at `stop`. Returns at
    /// once without a registry.
    pub async fn run_node(self: &Arc<Self>, draining: CancellationToken, stop: CancellationToken) {
        let Some(directory) = self.directory.clone() else { return };
        let jobs = Arc::clone(self);
        let running = move || {
            let mut ids: Vec<JobId> = jobs.lock_running().keys().cloned().collect();
            ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            ids
        };
        directory.run(running, draining, stop).await;
    }

    /// One page of jobs in submission order. `query.limit` is the page size,
    /// 1..=[`MAX_PAGE_SIZE`]; [`Page::next_after_seq`] says where the next page starts.
    ///
    /// # Errors
    /// [`ListError::Invalid`] for a page size out of range, or the store failed.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, ListError> {
        let limit = query.limit;
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(InvalidRequest::PageSize(limit).into());
        }
        // One more than asked tells whether a next page exists, so the last page has none.
        let mut jobs = self.store.list(&ListQuery { limit: limit + 1, ..query.clone() }).await?;
        let mut next_after_seq = None;
        if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            next_after_seq = jobs.last().map(|j| j.seq);
        }
        self.explain(&mut jobs).await;
        Ok(Page { jobs, next_after_seq })
    }

    /// The tail of a job's ffmpeg log (empty until it finishes).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn log(&self, id: &JobId) -> Result<String, StoreError> {
        self.store.log(id).await?.ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// Deletes a finished job's record (its files stay).
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] for a queued or running job.
    pub async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }

    /// The webhook deliveries of job `id`, in the order they were written.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn webhooks(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        self.get(id).await?;
        self.store.deliveries(id).await
    }

    /// How many jobs the store holds in each status.
    ///
    /// # Errors
    /// The store failed.
    pub async fn counts(&self) -> Result<StatusCounts, StoreError> {
        self.store.counts().await
    }

    /// Whether the store answers and can record changes now (readiness).
    ///
    /// # Errors
    /// The store failed, or cannot write ([`StoreError::Unavailable`]: disk full, read-only).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await?;
        self.store.check_writable().await
    }

    /// Number of jobs this process is running now.
    pub fn running_here(&self) -> usize {
        self.lock_running().len()
    }

    /// The jobs running here changed: the registry hears of it soon.
    fn running_changed(&self) {
        if let Some(directory) = &self.directory {
            directory.running_changed();
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, RunningJob>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

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
        set
    }

    async fn worker(&self, n: usize, shutdown: Shutdown) {
        tracing::debug!(worker = n, "worker started");
        while !shutdown.stop_claiming.is_cancelled() {
            match self.store.claim_next(self.labels()).await {
                Ok(Some(job)) => {
                    self.status_changed(&job);
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

    /// Records a run's outcome. While the store fails (disk full, ...), retries with backoff
    /// ([`FINISH_RETRY_FIRST`] doubling up to [`FINISH_RETRY_MAX`]) until the outcome is saved,
    /// so a finished job never stays `running` and its outputs (left in place meanwhile) are
    /// recorded. Stops early when the store refuses the transition (the job is no longer
    /// running, or is gone) or when `abort` fires (shutdown past its grace period): the job is
    /// then still `running` in the store and recovery at the next start takes it up.
    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str, started: SystemTime, abort: &CancellationToken) {
        let mut wait = FINISH_RETRY_FIRST;
        loop {
            match self.store.finish(id, outcome.clone(), log).await {
                Ok(job) => {
                    self.status_changed(&job);
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

    /// Before a job runs again: removes what an earlier attempt that did not end by itself
    /// left ([`JobStore::previous_run`]: its node died mid-run, and the reaper or recovery put
    /// the job back in the queue), by the rule a failure uses, after stopping that attempt's
    /// ffmpeg if it still runs on this host and removing its scratch directories
    /// ([`Runner::remove_leftovers`]). Otherwise this run would take the dead attempt's partial
    /// outputs for files that existed before it: `-n` would refuse to overwrite them, and a
    /// failure of this run would leave them behind. An attempt that ended by itself (a failure,
    /// a requeue at shutdown) removed its own files; removing them again finds nothing.
    async fn clear_previous_attempt(&self, id: &JobId) {
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

    /// Puts a job whose run was stopped by shutdown back in the queue.
    async fn requeue_stopped(&self, id: &JobId) {
        match self.store.requeue(id).await {
            Ok(()) => self.status_changed_of(id).await,
            Err(e) => tracing::error!(error = %e, "re-queueing the job failed"),
        }
    }

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
    async fn stage_inputs(
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
    async fn upload_outputs(
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

    async fn run_job(&self, job: Job, abort: &CancellationToken) {
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
        let sandbox = Arc::clone(&run_sandbox);
        let command = job.command.clone();
        // The command is resolved again right before it runs: the filesystem may have changed
        // since submission (a planted symlink). The installed ffmpeg's names, checked at
        // submission, have not. Resolving canonicalises paths: blocking work.
        let resolved = blocking(move || -> Result<(ResolvedCommand, Footprint), SubmitError> {
            let resolved = sandbox.resolve_command(&Command::parse(&command)?)?;
            let footprint = Footprint::of(&resolved);
            Ok((resolved, footprint))
        })
        .await;
        let (resolved, footprint) = match resolved {
            Ok(r) => r,
            Err(e) => return self.finish(&id, Outcome::Failed { error: e.to_string() }, "", started, abort).await,
        };
        let running = RunningJob { cancel: CancellationToken::new(), done: CancellationToken::new() };
        let _registered = Registration::new(self, &id, &running);
        let mut publisher = self.events.publisher(&job);
        if let (Some(stage), Some(remote)) = (&stage, &self.config.remote_storage) {
            let cancelled = || running.cancel.is_cancelled();
            match self.stage_inputs(&id, stage, remote.as_ref(), &footprint, &mut publisher, &running, abort).await {
                Ok(()) => {}
                Err(Some(error)) => return self.finish(&id, Outcome::Failed { error }, "", started, abort).await,
                Err(None) if cancelled() => return self.finish(&id, Outcome::Cancelled, "", started, abort).await,
                Err(None) => return self.requeue_stopped(&id).await,
            }
        }
        // The store claimed this job only because no running job's footprint conflicts
        // with its own (`JobStore::claim_next`).
        if job.attempts > 1 {
            self.clear_previous_attempt(&id).await;
        }
        let root = run_sandbox.root().to_owned();
        let prepared = {
            let (root, mut resolved, footprint) = (root.clone(), resolved, footprint.clone());
            let (sandbox, job_id) = (Arc::clone(&run_sandbox), id.clone());
            blocking(move || {
                // ffmpeg opens the names it makes up itself (segments, numbered images)
                // without the sandbox: none may be a link leading elsewhere.
                outputs::refuse_links(&root, &footprint).map_err(|e| {
                    tracing::warn!(link = %e.path.display(), target = %e.target.display(), "a link where the job may write");
                    (e.to_string(), Vec::new())
                })?;
                let created_dirs = outputs::missing_dirs(&root, &footprint);
                let failed = |error: String| (error, created_dirs.clone());
                outputs::create_output_dirs(&resolved)
                    .map_err(|e| failed(format!("cannot create an output directory: {e}")))?;
                let mut before = Snapshot::take(&root, &footprint);
                before.created_dirs.clone_from(&created_dirs);
                // Glob inputs: listed and checked now, read by ffmpeg from a private copy of
                // the list (kept until the run ends).
                let globs = globs::expand(&sandbox, &mut resolved, &job_id, &std::env::temp_dir())
                    .map_err(|e| failed(e.to_string()))?;
                Ok::<_, (String, Vec<PathBuf>)>((before, resolved, globs))
            })
            .await
        };
        let (before, resolved, _globs) = match prepared {
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
            None => RunRecord { attempt: job.attempts, footprint: footprint.clone(), snapshot: before.clone() },
            Some(_) => {
                RunRecord { attempt: job.attempts, footprint: Footprint::default(), snapshot: Snapshot::default() }
            }
        };
        if let Err(e) = self.store.record_run(&id, &record).await {
            tracing::error!(error = %e, "recording the run before it starts failed");
            let error = "the job store could not record the run; it was not started".to_owned();
            return self.finish(&id, Outcome::Failed { error }, "", started, abort).await;
        }
        tracing::info!(command = %job.command, "job started");

        let timeout = job.timeout_seconds.map(Duration::from_secs).or(self.config.max_timeout);
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
            let spec = RunSpec { job: &id, command: &resolved, timeout, input_lengths: Some(&lengths_rx) };
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
                () = self.concat_lengths(&resolved, lengths_tx) => {}
                () = run_ended.cancelled() => {}
            }
        };
        let (report, saved, ()) =
            tokio::join!(run, self.save_progress(&id, tx.subscribe(), phase, &running.cancel, &run_ended), lengths);
        if lease_lost.is_cancelled() {
            // Its files are left alone: the node that runs it now may be writing them.
            tracing::warn!("lost the lease of the job: its ffmpeg was stopped; another node takes it over");
            return;
        }
        let last = tx.borrow().clone();
        let final_progress = last.clone();
        if let Some(progress) = last.clone().map(with_phase)
            && saved.as_ref() != Some(&progress)
            && let Err(e) = self.store.update_progress(&id, &progress).await
        {
            tracing::warn!(error = %e, "recording the last progress failed");
        }

        // ffmpeg may exit 0 having encoded nothing (`-ss` past the end): that is a failure too.
        let (files, described, result) = {
            let (footprint, resolved, log) = (footprint.clone(), resolved.clone(), report.log_tail.clone());
            let (result, banner) = (report.result, report.outputs);
            blocking(move || {
                if result.is_ok() {
                    let written = outputs::run_files(&root, &footprint, &before);
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
            .await
        };
        if result.is_err() {
            self.remove_created_dirs(std::slice::from_ref(&id), created_dirs).await;
        }
        // A staged run's messages name files as the client does, without the stage.
        let log_tail = stage.as_ref().map_or_else(|| report.log_tail.clone(), |s| s.unstaged(&report.log_tail));
        match result {
            Ok(()) => {
                if let (Some(stage), Some(remote)) = (&stage, &self.config.remote_storage)
                    && let Err(error) =
                        self.upload_outputs(&id, stage, remote.as_ref(), &files, final_progress, &mut publisher).await
                {
                    return self.finish(&id, Outcome::Failed { error }, &log_tail, started, abort).await;
                }
                tracing::info!(outputs = files.len(), "job completed");
                let output_files = outputs::to_strings(&files);
                let outcome = Outcome::Completed { output_files, outputs: described };
                self.finish(&id, outcome, &log_tail, started, abort).await;
            }
            Err(RunError::Cancelled) => {
                if running.cancel.is_cancelled() {
                    tracing::info!(removed = files.len(), "job cancelled");
                    self.finish(&id, Outcome::Cancelled, &log_tail, started, abort).await;
                } else {
                    tracing::info!(removed = files.len(), "job stopped by shutdown; back in the queue");
                    self.requeue_stopped(&id).await;
                }
            }
            Err(e) => {
                tracing::info!(error = %e, removed = files.len(), "job failed");
                let error = stage.as_ref().map_or_else(|| e.to_string(), |s| s.unstaged(&e.to_string()));
                self.finish(&id, Outcome::Failed { error }, &log_tail, started, abort).await;
            }
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

/// [`Jobs::check`]: the policy first (a hostile command gets the policy's reason), then the
/// installed ffmpeg's names, then what the operating system would refuse.
fn check_command(
    sandbox: &Sandbox,
    capabilities: Option<&Capabilities>,
    runner: &dyn Runner,
    command: &str,
) -> Result<ResolvedCommand, SubmitError> {
    let resolved = sandbox.resolve_command(&Command::parse(command)?)?;
    if let Some(capabilities) = capabilities {
        capabilities.check(resolved.command())?;
    }
    runner.check_startable(&resolved)?;
    Ok(resolved)
}

/// Runs blocking `f` on tokio's blocking thread pool and returns its value; a panic in it is
/// re-raised here (a blocking task is only ever cancelled when the runtime shuts down, which
/// drops the awaiting future too).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let result = tokio::task::spawn_blocking(f).await;
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|e| Box::new(e.to_string()))))
}
