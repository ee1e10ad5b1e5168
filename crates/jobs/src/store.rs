//! The job store: the one place where a job's state changes.
//!
//! [`JobStore`] is both the record of every job and the queue: claiming the next job is an
//! atomic `queued -> running` transition in the store itself, so the queue and the records can
//! never disagree (the original design kept an in-memory queue beside the store; a crash lost
//! the queue and left jobs `queued` forever). Implementations: [`MemoryStore`] (tests, and
//! `DATABASE_URL=memory:`) and `SqliteStore` (the durable default).
//!
//! Every transition is explicit:
//!
//! | method | from | to |
//! |---|---|---|
//! | [`JobStore::insert`] | — | queued |
//! | [`JobStore::claim_next`] | queued | running (attempts + 1); only jobs the node's labels cover |
//! | [`JobStore::finish`] | running | completed, failed, cancelled |
//! | [`JobStore::cancel`] | queued | cancelled (running: cancel requested) |
//! | [`JobStore::requeue`] | running | queued (shutdown) |
//! | [`JobStore::recover`] | running | queued, or failed past the attempt limit |
//!
//! A transition into `running`, `completed`, `failed` or `cancelled` (and a progress update
//! of a job that asked for `job.progress`) also writes the job's webhook deliveries
//! ([`crate::webhook::outbox`]) in the same transaction: the outbox that
//! [`JobStore::claim_deliveries`] hands to the dispatcher.
//! Every status change also adds one to the job's [`Job::event_seq`] in the same write, so a
//! status event's id is durable (see [`crate::events`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;

use ffmpeg_core::footprint::Footprint;
use serde::{Deserialize, Serialize};

use ffmpeg_core::capabilities::Capabilities;

pub(crate) mod plan;

use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration, NodeState, labels_cover};
use crate::outputs::Snapshot;
use crate::webhook::{self, Delivery, DeliveryAttempt, DeliveryId, DeliveryState, NextStep, WebhookEvent};

/// A boxed error: the cause kept as [`StoreError`]'s source, whatever the store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from a [`JobStore`]. A write that returns an error changed nothing; a write that
/// returns `Ok` is durable (see docs/deployment.md for what "durable" means per store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The transition is not allowed from the job's current status. Nothing was changed.
    #[error("job {id} is {status}: {action} is not possible")]
    Conflict {
        /// The job.
        id: JobId,
        /// Its current status.
        status: JobStatus,
        /// What was attempted, e.g. "cancel".
        action: &'static str,
    },
    /// The store cannot record changes now: its disk is full, its file is read-only, an I/O
    /// error, or another process has held the write lock past the busy timeout. Nothing was
    /// written; the same call may succeed later, with no restart (HTTP: 503 + `Retry-After`).
    #[error("the job store cannot write now: {0}")]
    Unavailable(#[source] BoxError),
    /// The database failed otherwise (closed, a statement failed, a stored row cannot be
    /// decoded).
    #[error("database error: {0}")]
    Database(#[source] BoxError),
}

impl StoreError {
    /// Whether the same call may succeed later without anything else changing (the store
    /// was [`StoreError::Unavailable`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// How a run ended, as recorded by [`JobStore::finish`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// ffmpeg exited 0; the files it produced, relative to the data directory.
    Completed {
        /// Produced files.
        output_files: Vec<String>,
        /// What is known of each produced file (see [`crate::model::OutputFile`]).
        outputs: Vec<crate::model::OutputFile>,
    },
    /// ffmpeg failed or timed out; a short, human-readable reason.
    Failed {
        /// The reason.
        error: String,
    },
    /// Stopped because a client cancelled it.
    Cancelled,
}

/// Result of [`JobStore::cancel`].
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled.
    Cancelled(Job),
    /// The job is running; it is marked and its worker must stop it and call
    /// [`JobStore::finish`] with [`Outcome::Cancelled`].
    Requested(Job),
}

/// Which jobs [`JobStore::list`] returns: submission order (oldest first), after a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs submitted after the job with this sequence number.
    pub after_seq: Option<i64>,
    /// At most this many jobs.
    pub limit: u32,
}

/// What [`JobStore::recover`] did with jobs left `running` by a previous process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs put back in the queue.
    pub requeued: Vec<JobId>,
    /// Jobs that had used all their attempts and are now failed ("interrupted").
    pub failed: Vec<JobId>,
}

/// What one attempt of a job recorded before ffmpeg started ([`JobStore::record_run`]): the
/// footprint it ran with (resolved at run time) and the files its written directories held.
/// With it, recovery after a crash removes what the attempt wrote by the rule failures use
/// (see [`outputs`](crate::outputs)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The attempt (the job's `attempts` when it was claimed).
    pub attempt: u32,
    /// What the attempt's command may read and write.
    pub footprint: Footprint,
    /// The covered files that existed before ffmpeg started.
    pub snapshot: Snapshot,
}

/// A job left `running` by a process that is gone ([`JobStore::interrupted_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedRun {
    /// The job.
    pub id: JobId,
    /// Its current attempt's record; `None` when the attempt stopped before ffmpeg could start
    /// (nothing of it can be in the data directory).
    pub run: Option<RunRecord>,
}

/// Whether two jobs with these footprints must not run at once: either may write what the
/// other reads or writes, or either footprint is unknown (`None`: such a job runs alone).
pub fn footprints_conflict(a: Option<&Footprint>, b: Option<&Footprint>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.conflicts_with(b),
        _ => true,
    }
}

/// A queued or running job and what it may read and write ([`JobStore::active_footprints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFootprint {
    /// The job.
    pub id: JobId,
    /// Its status (queued or running).
    pub status: JobStatus,
    /// What it may read and write; `None`: unknown (it may touch any file).
    pub footprint: Option<Footprint>,
}

/// Number of jobs in each status.
pub type StatusCounts = BTreeMap<JobStatus, u64>;

/// Durable record of jobs and the queue they wait in. Usable as `Arc<dyn JobStore>`.
///
/// Implementations must make every transition atomic: two workers (threads, processes or
/// machines) can never claim the same job, and a transition from a status other than the
/// documented one fails with [`StoreError::Conflict`] and changes nothing.
///
/// Every write either returns `Ok` once its change is durable, or returns an error and has
/// changed nothing: an acknowledged change is never lost, a failed one never half-applied.
/// After a transient failure ([`StoreError::Unavailable`]) the store accepts writes again
/// as soon as the cause is gone, without being reopened.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a new `queued` job and wakes a waiting worker.
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError>;

    /// The job with this id, if any.
    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// Jobs in submission order, filtered and paged by `query`.
    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError>;

    /// Atomically moves the next queued job (highest priority, then oldest) that may start
    /// now to `running`, stamping `started_at` and counting the attempt. `None` when no queued
    /// job can start now. The check and the transition are one atomic step across processes,
    /// so two jobs whose files overlap never run at once.
    ///
    /// A job may start when its footprint conflicts ([`footprints_conflict`]) with no running
    /// job's and with no *earlier-submitted* (lower `seq`) queued job's: between conflicting
    /// jobs submission order decides, whatever their priorities, so pass 2 of a two-pass
    /// encode never starts before pass 1 (it waits for pass 1 to finish), and a job that reads
    /// a file waits for the earlier job that writes it. Priority orders only jobs that do not
    /// conflict with an earlier queued one. No job ever waits for a later one, so the oldest
    /// of any set of conflicting queued jobs can always start once the running ones are done.
    ///
    /// Routing: only a job whose [`Job::requires`] are all among `labels` (the claiming node's
    /// labels, [`crate::nodes`]) is claimed. A job this node may not take still counts as an
    /// earlier job that a later conflicting one waits for.
    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError>;

    /// Records, before ffmpeg starts, what attempt `run.attempt` of the running job `id` may
    /// write and which of those files existed (replacing an earlier attempt's record).
    /// [`StoreError::Conflict`] unless the job is running that attempt.
    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError>;

    /// Every job left `running`, with its current attempt's [`RunRecord`] if one was recorded:
    /// at start-up, before [`JobStore::recover`], what interrupted attempts may have left.
    async fn interrupted_runs(&self) -> Result<Vec<InterruptedRun>, StoreError>;

    /// The [`RunRecord`] of an earlier attempt of `id` that was never replaced by a later
    /// attempt's: what an attempt that did not end by itself (its node died; the reaper or
    /// recovery put the job back in the queue) may have left in the data directory. The
    /// worker that runs the job again removes that first. `None` when the latest recorded run
    /// is the current attempt's, when none was recorded, or when `id` is unknown.
    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError>;

    /// Waits until a job may have been queued since the last call (a hint; callers re-check
    /// with [`JobStore::claim_next`]), or `timeout` passes.
    async fn wait_for_work(&self, timeout: std::time::Duration);

    /// Records the latest progress of a running job. Returns `true` when a client has asked
    /// for the job to be cancelled (so a worker on another machine learns of it).
    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError>;

    /// Moves a running job to its final status, keeping `log` (the tail of ffmpeg's stderr)
    /// as the job's log.
    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError>;

    /// The log kept by [`JobStore::finish`]; `None` for an unknown job, empty before it finished.
    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError>;

    /// Cancels a queued job, or marks a running one for cancellation.
    /// Finished jobs: [`StoreError::Conflict`].
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError>;

    /// Puts a running job back in the queue (graceful shutdown), keeping its place in order.
    /// The interrupted start is not counted as an attempt.
    async fn requeue(&self, id: &JobId) -> Result<(), StoreError>;

    /// Removes a finished job's record. Queued or running: [`StoreError::Conflict`].
    async fn delete(&self, id: &JobId) -> Result<(), StoreError>;

    /// At start-up: jobs left `running` go back to `queued`, or to `failed` with error
    /// "interrupted" when they have already been attempted `max_attempts` times.
    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError>;

    /// Deletes finished jobs that completed before `cutoff`; returns how many.
    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError>;

    /// Number of jobs in each status (statuses with no job may be absent).
    async fn counts(&self) -> Result<StatusCounts, StoreError>;

    /// The footprints of every queued and running job, in submission order (`None`: a job
    /// stored before footprints existed, which may touch any file). The files API refuses to
    /// replace or delete a file one of them reads or writes ([`Footprint::touches_file`]).
    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError>;

    /// Checks that the store is reachable (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// For a store shared by several nodes (PostgreSQL): a token cancelled when this node
    /// loses its claim on the running job `id` it claimed (its lease expired by the node's own
    /// clock, or was taken back). The worker must then stop the job's process at once and
    /// write nothing about the job, nor touch its files: another node may be running it.
    /// `None` (the default): claims are never lost (single-node stores).
    fn lease_lost(&self, id: &JobId) -> Option<tokio_util::sync::CancellationToken> {
        let _ = id;
        None
    }

    /// For a store shared by several nodes (PostgreSQL): the signals of what the other nodes
    /// do ([`crate::cluster`]), from the moment this is called; a receiver that falls behind
    /// gets `Lagged` and must treat it as [`ClusterSignal::Resync`](crate::cluster::ClusterSignal::Resync).
    /// The store itself wakes [`JobStore::wait_for_work`] when another node queues or ends a
    /// job. `None` (the default): a store of one node, where every change happens in this
    /// process.
    fn cluster_signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::ClusterSignal>> {
        None
    }

    /// For a store shared by several nodes: passes a progress event of a job this node runs on
    /// to the other nodes (as [`ClusterSignal::Progress`](crate::cluster::ClusterSignal::Progress)).
    /// Never waits: the event is sent in the background, and a snapshot superseded before it
    /// went out may be dropped. It is not stored ([`JobStore::update_progress`] is). The
    /// default does nothing (one node).
    fn announce_progress(&self, event: &crate::events::ProgressEvent) {
        let _ = event;
    }

    /// Claims up to `limit` pending deliveries due at `now`, the longest due first, leaving
    /// out those to a URL in `skip_urls` (receivers the claimer has enough of), for `lease`:
    /// each one's next attempt is pushed to `now + lease`, so no other claimer (task or
    /// process) takes it while it is being sent, and a claimer that dies leaves it due again
    /// when the lease ends (at least once: it may then be sent twice).
    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt of delivery `id` and its next step (state and next attempt time).
    /// `false`, and nothing changed, when the delivery is unknown or no longer pending.
    async fn record_delivery_attempt(
        &self,
        id: &DeliveryId,
        attempt: &DeliveryAttempt,
        next: NextStep,
    ) -> Result<bool, StoreError>;

    /// Every delivery of job `id`, in the order they were written (empty for an unknown job).
    async fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError>;

    /// Publishes node `node.id` in the registry ([`crate::nodes`]) as just started: its
    /// heartbeat now, not draining, running nothing; replaces an earlier registration of the
    /// same id.
    async fn register_node(&self, node: &NodeRegistration) -> Result<(), StoreError>;

    /// Records a heartbeat of node `id`: the time (by the store's clock), whether it drains,
    /// the jobs it runs. `false`, and nothing changed, when the node is not registered (it was
    /// pruned while silent: it must [`register_node`](JobStore::register_node) again).
    async fn heartbeat_node(&self, id: &str, beat: &Heartbeat) -> Result<bool, StoreError>;

    /// Every registered node, by id, each [`NodeState::Lost`] when its latest heartbeat is
    /// `lost_after` or more old (by the store's clock: the database's for PostgreSQL).
    async fn nodes(&self, lost_after: std::time::Duration) -> Result<Vec<Node>, StoreError>;

    /// What node `id`'s ffmpeg knows, as it registered it; `None` for an unknown node or one
    /// that registered none.
    async fn node_capabilities(&self, id: &str) -> Result<Option<Capabilities>, StoreError>;

    /// Removes node `id` from the registry (a graceful stop); nothing for an unknown id.
    async fn remove_node(&self, id: &str) -> Result<(), StoreError>;

    /// Removes the nodes whose latest heartbeat is more than `older_than` old; returns how
    /// many.
    async fn prune_nodes(&self, older_than: std::time::Duration) -> Result<u64, StoreError>;

    /// Checks that the store can record changes now (readiness): `Ok` while writes succeed,
    /// [`StoreError::Unavailable`] while they cannot (disk full, read-only, I/O errors).
    /// Stores may answer from their latest writes and probe with a small write of their own
    /// when those are old or failed.
    async fn check_writable(&self) -> Result<(), StoreError>;
}

/// An in-memory [`JobStore`]: fast, and gone when the process exits. For tests and
/// throw-away runs (`DATABASE_URL=memory:`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<JobId, Job>,
    /// seq -> id, for submission order.
    by_seq: BTreeMap<i64, JobId>,
    /// (-priority, seq) -> id for queued jobs: the queue order.
    queue: BTreeMap<(i64, i64), JobId>,
    cancel_requested: std::collections::HashSet<JobId>,
    logs: HashMap<JobId, String>,
    /// Every job's footprint, as submitted (`None`: unknown).
    footprints: HashMap<JobId, Option<Footprint>>,
    /// The latest recorded run of each job.
    runs: HashMap<JobId, RunRecord>,
    next_seq: i64,
    /// The webhook outbox, in the order written.
    deliveries: BTreeMap<u64, Delivery>,
    /// Delivery id -> key in `deliveries`.
    delivery_keys: HashMap<DeliveryId, u64>,
    /// The node registry, by id.
    nodes: BTreeMap<String, MemoryNode>,
    next_delivery: u64,
    /// When the latest `job.progress` delivery of a job to a URL was written.
    last_progress: HashMap<(JobId, String), OffsetDateTime>,
}

fn queue_key(job: &Job) -> (i64, i64) {
    (-i64::from(job.priority), job.seq)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Wakes every waiting worker, and leaves a permit for the next one to wait, so a job
    /// inserted between a worker's empty claim and its wait is not left idle until the timeout.
    fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a job half-updated in a way later calls
        // misread (each method updates fields then indexes), so recover the guard.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn job_mut(&mut self, id: &JobId) -> Result<&mut Job, StoreError> {
        self.jobs.get_mut(id).ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// Writes the deliveries of `job`'s transition into its current status.
    fn write_status_outbox(&mut self, job: &Job, at: OffsetDateTime) {
        if let Some(event) = WebhookEvent::of_status(job.status) {
            self.write_outbox(webhook::outbox(job, event, at));
        }
    }

    fn write_outbox(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            self.next_delivery += 1;
            self.delivery_keys.insert(delivery.id.clone(), self.next_delivery);
            self.deliveries.insert(self.next_delivery, delivery);
        }
    }
}

/// A registered node in a [`MemoryStore`].
#[derive(Debug)]
struct MemoryNode {
    registration: NodeRegistration,
    started_at: OffsetDateTime,
    heartbeat_at: OffsetDateTime,
    beat: Heartbeat,
}

fn conflict(job: &Job, action: &'static str) -> StoreError {
    StoreError::Conflict { id: job.id.clone(), status: job.status, action }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn insert(&self, command: String, mut options: SubmitOptions) -> Result<Job, StoreError> {
        let footprint = Some(std::mem::take(&mut options.footprint));
        let job = {
            let mut inner = self.lock();
            inner.next_seq += 1;
            let job = Job::new_queued(command, options, inner.next_seq, OffsetDateTime::now_utc());
            inner.by_seq.insert(job.seq, job.id.clone());
            inner.queue.insert(queue_key(&job), job.id.clone());
            inner.footprints.insert(job.id.clone(), footprint);
            inner.jobs.insert(job.id.clone(), job.clone());
            job
        };
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(id).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let inner = self.lock();
        let start = query.after_seq.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(inner
            .by_seq
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(_, id)| inner.jobs.get(id))
            .filter(|j| query.status.is_none_or(|s| j.status == s))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let mut inner = self.lock();
        let footprint = |id: &JobId| inner.footprints.get(id).and_then(Option::as_ref);
        let eligible = |id: &JobId| inner.jobs.get(id).is_some_and(|j| labels_cover(labels, &j.requires));
        let running: Vec<Option<&Footprint>> =
            inner.jobs.values().filter(|j| j.status == JobStatus::Running).map(|j| footprint(&j.id)).collect();
        // Earlier-submitted queued jobs, by seq, for the "waits for earlier jobs" rule.
        let queued: Vec<(i64, Option<&Footprint>)> =
            inner.queue.iter().map(|((_, seq), id)| (*seq, footprint(id))).collect();
        let next = inner
            .queue
            .iter()
            .find(|((_, seq), id)| {
                let mine = footprint(id);
                eligible(id)
                    && running.iter().all(|theirs| !footprints_conflict(mine, *theirs))
                    && queued.iter().all(|(their_seq, theirs)| their_seq >= seq || !footprints_conflict(mine, *theirs))
            })
            .map(|(key, id)| (*key, id.clone()));
        let Some((key, id)) = next else { return Ok(None) };
        inner.queue.remove(&key);
        let job = inner.job_mut(&id)?;
        job.status = JobStatus::Running;
        job.started_at = Some(OffsetDateTime::now_utc());
        job.attempts += 1;
        job.progress = None;
        job.event_seq += 1;
        let job = job.clone();
        inner.write_status_outbox(&job, job.started_at.unwrap_or_else(OffsetDateTime::now_utc));
        Ok(Some(job))
    }

    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if job.status != JobStatus::Running || job.attempts != run.attempt {
            return Err(conflict(job, "record run"));
        }
        inner.runs.insert(id.clone(), run.clone());
        Ok(())
    }

    async fn interrupted_runs(&self) -> Result<Vec<InterruptedRun>, StoreError> {
        let inner = self.lock();
        let mut runs: Vec<(i64, InterruptedRun)> = inner
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .map(|j| {
                let run = inner.runs.get(&j.id).filter(|r| r.attempt == j.attempts).cloned();
                (j.seq, InterruptedRun { id: j.id.clone(), run })
            })
            .collect();
        runs.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(runs.into_iter().map(|(_, run)| run).collect())
    }

    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError> {
        let inner = self.lock();
        let Some(job) = inner.jobs.get(id) else { return Ok(None) };
        Ok(inner.runs.get(id).filter(|r| r.attempt < job.attempts).cloned())
    }

    async fn wait_for_work(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if job.status != JobStatus::Running {
            return Err(conflict(job, "update progress"));
        }
        job.progress = Some(progress.clone());
        if job.webhooks.iter().any(|s| s.wants(WebhookEvent::Progress)) {
            let job = job.clone();
            let now = OffsetDateTime::now_utc();
            let mut due = webhook::outbox(&job, WebhookEvent::Progress, now);
            due.retain(|d| webhook::progress_due(inner.last_progress.get(&(id.clone(), d.url.clone())).copied(), now));
            for d in &due {
                inner.last_progress.insert((id.clone(), d.url.clone()), now);
            }
            inner.write_outbox(due);
        }
        Ok(inner.cancel_requested.contains(id))
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if job.status != JobStatus::Running {
            return Err(conflict(job, "finish"));
        }
        job.completed_at = Some(OffsetDateTime::now_utc());
        job.event_seq += 1;
        match outcome {
            Outcome::Completed { output_files, outputs } => {
                job.status = JobStatus::Completed;
                job.output_files = output_files;
                job.outputs = outputs;
                if let Some(p) = job.progress.as_mut() {
                    p.percent = Some(100.0);
                    p.eta_seconds = Some(0.0);
                }
            }
            Outcome::Failed { error } => {
                job.status = JobStatus::Failed;
                job.error = Some(error);
            }
            Outcome::Cancelled => job.status = JobStatus::Cancelled,
        }
        let job = job.clone();
        inner.write_status_outbox(&job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc));
        inner.cancel_requested.remove(id);
        inner.logs.insert(id.clone(), log.to_owned());
        drop(inner);
        // A job this one's footprint held back may start now.
        self.wake();
        Ok(job)
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        Ok(inner.jobs.contains_key(id).then(|| inner.logs.get(id).cloned().unwrap_or_default()))
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        match job.status {
            JobStatus::Queued => {
                job.status = JobStatus::Cancelled;
                job.completed_at = Some(OffsetDateTime::now_utc());
                job.event_seq += 1;
                let (key, job) = (queue_key(job), job.clone());
                inner.queue.remove(&key);
                inner.write_status_outbox(&job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc));
                Ok(CancelOutcome::Cancelled(job))
            }
            JobStatus::Running => {
                let job = job.clone();
                inner.cancel_requested.insert(id.clone());
                Ok(CancelOutcome::Requested(job))
            }
            _ => Err(conflict(job, "cancel")),
        }
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if job.status != JobStatus::Running {
            return Err(conflict(job, "requeue"));
        }
        job.status = JobStatus::Queued;
        job.started_at = None;
        job.progress = None;
        // A graceful stop is not a failed attempt: the next start is not counted against
        // the job's attempt limit (crash recovery, which cannot tell, does count it).
        job.attempts = job.attempts.saturating_sub(1);
        job.event_seq += 1;
        let key = queue_key(job);
        inner.queue.insert(key, id.clone());
        drop(inner);
        self.wake();
        Ok(())
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if !job.status.is_finished() {
            return Err(conflict(job, "delete"));
        }
        let seq = job.seq;
        inner.jobs.remove(id);
        inner.by_seq.remove(&seq);
        inner.logs.remove(id);
        inner.footprints.remove(id);
        inner.runs.remove(id);
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let mut inner = self.lock();
        let mut recovery = Recovery::default();
        let running: Vec<JobId> =
            inner.jobs.values().filter(|j| j.status == JobStatus::Running).map(|j| j.id.clone()).collect();
        for id in running {
            let job = inner.job_mut(&id)?;
            job.event_seq += 1;
            if job.attempts >= max_attempts {
                job.status = JobStatus::Failed;
                job.error = Some("interrupted".to_owned());
                job.completed_at = Some(OffsetDateTime::now_utc());
                let job = job.clone();
                inner.write_status_outbox(&job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc));
                recovery.failed.push(id);
            } else {
                job.status = JobStatus::Queued;
                job.started_at = None;
                job.progress = None;
                let key = queue_key(job);
                inner.queue.insert(key, id.clone());
                recovery.requeued.push(id);
            }
        }
        Ok(recovery)
    }

    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let old: Vec<(JobId, i64)> = inner
            .jobs
            .values()
            .filter(|j| j.status.is_finished() && j.completed_at.is_some_and(|t| t < cutoff))
            .map(|j| (j.id.clone(), j.seq))
            .collect();
        for (id, seq) in &old {
            inner.logs.remove(id);
            inner.footprints.remove(id);
            inner.runs.remove(id);
            inner.jobs.remove(id);
            inner.by_seq.remove(seq);
            inner.last_progress.retain(|(job, _), _| job != id);
        }
        // Finished deliveries go with the jobs of their time; pending ones are still sent.
        let done: Vec<(u64, DeliveryId)> = inner
            .deliveries
            .iter()
            .filter(|(_, d)| d.state != DeliveryState::Pending && d.created_at < cutoff)
            .map(|(key, d)| (*key, d.id.clone()))
            .collect();
        for (key, id) in done {
            inner.deliveries.remove(&key);
            inner.delivery_keys.remove(&id);
        }
        Ok(old.len() as u64)
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        let inner = self.lock();
        let mut counts = StatusCounts::new();
        for job in inner.jobs.values() {
            *counts.entry(job.status).or_default() += 1;
        }
        Ok(counts)
    }

    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .by_seq
            .values()
            .filter_map(|id| inner.jobs.get(id))
            .filter(|job| !job.status.is_finished())
            .map(|job| ActiveFootprint {
                id: job.id.clone(),
                status: job.status,
                footprint: inner.footprints.get(&job.id).cloned().flatten(),
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut inner = self.lock();
        let mut due: Vec<(OffsetDateTime, u64)> = inner
            .deliveries
            .iter()
            .filter(|(_, d)| d.state == DeliveryState::Pending && d.next_attempt_at.is_some_and(|at| at <= now))
            .filter(|(_, d)| !skip_urls.contains(&d.url))
            .map(|(key, d)| (d.next_attempt_at.unwrap_or(now), *key))
            .collect();
        due.sort_unstable();
        due.truncate(limit as usize);
        let until = now + lease;
        Ok(due
            .into_iter()
            .filter_map(|(_, key)| {
                let delivery = inner.deliveries.get_mut(&key)?;
                delivery.next_attempt_at = Some(until);
                Some(delivery.clone())
            })
            .collect())
    }

    async fn record_delivery_attempt(
        &self,
        id: &DeliveryId,
        attempt: &DeliveryAttempt,
        next: NextStep,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(key) = inner.delivery_keys.get(id).copied() else { return Ok(false) };
        let Some(delivery) = inner.deliveries.get_mut(&key).filter(|d| d.state == DeliveryState::Pending) else {
            return Ok(false);
        };
        delivery.attempts.push(attempt.clone());
        delivery.state = next.state();
        delivery.next_attempt_at = next.next_attempt_at();
        Ok(true)
    }

    async fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        Ok(self.lock().deliveries.values().filter(|d| &d.job_id == id).cloned().collect())
    }

    async fn register_node(&self, node: &NodeRegistration) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let entry =
            MemoryNode { registration: node.clone(), started_at: now, heartbeat_at: now, beat: Heartbeat::default() };
        self.lock().nodes.insert(node.id.clone(), entry);
        Ok(())
    }

    async fn heartbeat_node(&self, id: &str, beat: &Heartbeat) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(node) = inner.nodes.get_mut(id) else { return Ok(false) };
        node.heartbeat_at = OffsetDateTime::now_utc();
        node.beat = beat.clone();
        Ok(true)
    }

    async fn nodes(&self, lost_after: std::time::Duration) -> Result<Vec<Node>, StoreError> {
        let now = OffsetDateTime::now_utc();
        Ok(self
            .lock()
            .nodes
            .values()
            .map(|n| {
                let r = &n.registration;
                let lost = now - n.heartbeat_at >= lost_after;
                Node {
                    id: r.id.clone(),
                    role: r.role,
                    labels: r.labels.clone(),
                    host: r.host.clone(),
                    version: r.version.clone(),
                    ffmpeg_version: r.ffmpeg_version.clone(),
                    slots: r.slots,
                    running_jobs: n.beat.running_jobs.clone(),
                    started_at: n.started_at,
                    last_heartbeat_at: n.heartbeat_at,
                    state: match (lost, n.beat.draining) {
                        (true, _) => NodeState::Lost,
                        (false, true) => NodeState::Draining,
                        (false, false) => NodeState::Active,
                    },
                }
            })
            .collect())
    }

    async fn node_capabilities(&self, id: &str) -> Result<Option<Capabilities>, StoreError> {
        Ok(self.lock().nodes.get(id).and_then(|n| n.registration.capabilities.as_deref().cloned()))
    }

    async fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        self.lock().nodes.remove(id);
        Ok(())
    }

    async fn prune_nodes(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        let before = inner.nodes.len();
        inner.nodes.retain(|_, n| now - n.heartbeat_at <= older_than);
        Ok((before - inner.nodes.len()) as u64)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
