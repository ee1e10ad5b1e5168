//! [`Jobs`]: the job service that the HTTP layer (or any other front end) calls, and the
//! worker pool that drains the queue.
//!
//! Submitting parses and sandboxes the command first, so a bad command is refused before it
//! is ever queued. Workers claim jobs from the store (an atomic `queued -> running`
//! transition), run them through a [`Runner`], stream progress into the store, and record the
//! outcome. The command is parsed and sandboxed again at run time: a symlink planted between
//! submit and run cannot redirect a job outside the data directory.
//!
//! The service is split along its seams: `api.rs` (what front ends call: submit, check,
//! list, get, cancel, ...), `workers.rs` (the worker pool), `run.rs` (one run of a job, its
//! progress writes and its outcome), `staged.rs` (a staged run's download and upload phases),
//! `places.rs` (where a command reads and writes against what the storage holds: one answer
//! on both backends), `concat.rs` (concat-list lengths for percent), `nodes.rs` (the node registry),
//! `leftovers.rs` (what interrupted, failed or earlier runs left: recovery, created
//! directories), `bridge.rs` (the other nodes' signals) and `order.rs` (the order of a job's
//! status events on the bus).

mod api;
mod bridge;
mod concat;
mod leftovers;
mod lost;
mod nodes;
mod order;
mod places;
mod run;
mod staged;
mod staged_failures;
mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ffmpeg_core::capabilities::Capabilities;
use ffmpeg_core::sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

use crate::events::EventBus;
use crate::media::{MediaProbeConfig, MediaProber};
use crate::model::{Job, JobId};
use crate::nodes::{NodeDirectory, NodeSettings};
use crate::runner::Runner;
use crate::storage::{Availability, Guarded, LocalStorage, Storage, StorageError, StorageUnavailable};
use crate::store::JobStore;
use crate::webhook::WebhookConfig;

pub use api::{ListError, Page, SubmitError};
pub use concat::{CONCAT_LIST_MAX_BYTES, CONCAT_LIST_MAX_PROBES};
pub use run::PROGRESS_SAVE_INTERVAL;
pub use staged_failures::{
    METRIC_STAGING_RETRIES, STAGING_RETRY_DELAY, STAGING_RETRY_MAX_DELAY, STALE_MULTIPART_AGE, STALE_UPLOAD_AGE,
    TempSweep, staging_retry_delay,
};
pub use workers::Shutdown;

/// Counter of accepted submissions (Prometheus name).
pub const METRIC_SUBMITTED: &str = "ffmpeg_worker_jobs_submitted_total";
/// Counter of finished jobs, labelled `status` (completed, failed, cancelled).
pub const METRIC_FINISHED: &str = "ffmpeg_worker_jobs_finished_total";
/// Histogram of job run time in seconds (claim to final status), labelled `status`.
pub const METRIC_RUN_SECONDS: &str = "ffmpeg_worker_job_run_seconds";

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
    /// empty to run here; only a wait for `retry_at` explains a waiting job).
    pub node: Option<NodeSettings>,
    /// Where the files live when not in the data directory (an S3-compatible bucket,
    /// [`crate::storage::S3Storage`]): the files API uses it, and workers stage each job's
    /// files between it and a scratch directory under the data directory ([`crate::staging`]).
    /// `None`: the data directory ([`LocalStorage`]), where ffmpeg works in place.
    pub remote_storage: Option<Arc<dyn Storage>>,
    /// Attempts a job gets (its first included) when a staged run fails for a reason that may
    /// pass, the storage being unavailable
    /// ([`StagingError::is_transient`](crate::staging::StagingError::is_transient)): until then
    /// it goes back in the queue, as the job of a lost worker does; an attempt that met a
    /// storage a check then found not answering is not counted (tester finding K11).
    /// The server passes its `MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// How long such a job waits in the queue after its first failed attempt before a worker
    /// may take it again (its `retry_at`); each later attempt waits twice as long, up to
    /// [`STAGING_RETRY_MAX_DELAY`] ([`staging_retry_delay`]). Default
    /// [`STAGING_RETRY_DELAY`].
    pub retry_delay: Duration,
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
            max_attempts: 2,
            retry_delay: STAGING_RETRY_DELAY,
        }
    }
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
    /// The order of this service's status events on `events` ([`order`]).
    order: order::StatusOrder,
    media: MediaProber,
    directory: Option<Arc<NodeDirectory>>,
    storage: Arc<dyn Storage>,
    /// Whether `storage` answers, for `/ready` and the files API's calls.
    availability: Arc<Availability>,
    /// Whether the store is shared with other nodes ([`JobStore::cluster_signals`]).
    cluster: bool,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("sandbox", &self.sandbox).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Jobs {
    /// A service over `store`, running jobs with `runner` inside `sandbox`. With a remote
    /// storage, the staging area ([`crate::staging::STAGING_DIR`]) is denied in `sandbox`: no
    /// job may name it, as the storage refuses it to the files API.
    pub fn new(store: Arc<dyn JobStore>, runner: Arc<dyn Runner>, sandbox: Sandbox, config: JobsConfig) -> Arc<Jobs> {
        let media = MediaProber::new(config.media_probe.clone());
        let directory = config.node.clone().map(|node| Arc::new(NodeDirectory::new(Arc::clone(&store), node)));
        let mut sandbox = sandbox;
        if config.remote_storage.is_some() {
            sandbox.deny(crate::staging::STAGING_DIR);
        }
        let sandbox = Arc::new(sandbox);
        // A bucket known unreachable fails the files API's calls at once (`Guarded`); the
        // workers' staging waits for it as long as each request may, and retries by attempts.
        let (storage, availability) = match &config.remote_storage {
            Some(remote) => {
                let availability = Availability::new(Arc::clone(remote), remote.display_name());
                let guarded = Guarded::new(Arc::clone(remote), Arc::clone(&availability));
                (Arc::new(guarded) as Arc<dyn Storage>, availability)
            }
            None => {
                let local = Arc::new(LocalStorage::new(Arc::clone(&sandbox))) as Arc<dyn Storage>;
                let availability = Availability::new(Arc::clone(&local), local.display_name());
                (local, availability)
            }
        };
        let store_is_shared = store.cluster_signals().is_some();
        let jobs = Arc::new(Jobs {
            directory,
            store,
            runner,
            availability,
            storage,
            sandbox,
            media,
            config,
            running: Mutex::new(HashMap::new()),
            events: EventBus::new(),
            order: order::StatusOrder::default(),
            cluster: store_is_shared,
        });
        // A store shared with other nodes: their changes reach this service too.
        bridge::start(&jobs);
        jobs
    }

    /// The event bus: every status change this service made, and the live progress of the
    /// jobs it runs.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The hook every status change goes through, right after the store committed it: `job`
    /// is the job as the transition returned it (or as read back just after). Fills in a
    /// queued job's `waiting_reason` (as [`Jobs::get`] does: every representation of the job
    /// agrees, the stream events too), then publishes it on the [`EventBus`], after the
    /// job's earlier status events that reached this hook before it ([`order`]: a worker's
    /// `running` may be ready while the `queued` of the submit still reads the store).
    async fn status_changed(&self, job: &mut Job) {
        let slot = self.order.reserve(&self.events, job);
        self.explain(std::slice::from_mut(job)).await;
        slot.publish(job);
    }

    /// [`Jobs::status_changed`] for a transition that does not return the job (requeue,
    /// recovery): reads it back first. A read that fails is logged; subscribers still get the
    /// job's next change.
    async fn status_changed_of(&self, id: &JobId) {
        match self.store.get(id).await {
            Ok(Some(mut job)) => self.status_changed(&mut job).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %id, error = %e, "reading a job back to publish its status failed"),
        }
    }

    /// Where the files API's files live: the remote storage when configured (behind its
    /// [`Availability`]: calls fail at once while it is known unreachable), else the data
    /// directory.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Whether the storage answers ([`Availability::check`]: a check at most every
    /// [`READY_CACHE`](crate::storage::READY_CACHE) while it answers, bounded by
    /// [`READY_TIMEOUT`](crate::storage::READY_TIMEOUT); a known outage at once, the state the
    /// files API's calls share); always `Ok` for the data directory.
    ///
    /// # Errors
    /// [`StorageUnavailable`].
    pub async fn storage_ready(&self) -> Result<(), StorageUnavailable> {
        self.availability.check().await
    }

    /// Records that the storage did not answer a check made before this service existed
    /// (the server's start, tester finding I3: a node restarted during an outage serves,
    /// degraded, instead of exiting): `/ready` and the files API say so at once, recovery
    /// leaves the temporary area to the jobs' next attempts and the sweep ([`Jobs::recover`]),
    /// and staged jobs go back to the queue as on a node that saw the outage begin, until a
    /// check finds the storage answering.
    pub fn storage_down_at_start(&self, error: StorageError) {
        self.availability.record_down(error);
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
}

/// Runs blocking `f` on tokio's blocking thread pool and returns its value; a panic in it is
/// re-raised here (a blocking task is only ever cancelled when the runtime shuts down, which
/// drops the awaiting future too).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let result = tokio::task::spawn_blocking(f).await;
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|e| Box::new(e.to_string()))))
}
