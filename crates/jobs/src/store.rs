//! The job store: the one place where a job's state changes.
//!
//! [`JobStore`] is both the record of every job and the queue: claiming the next job is an
//! atomic `queued -> running` transition in the store itself, so the queue and the records can
//! never disagree (the original design kept an in-memory queue beside the store; a crash lost
//! the queue and left jobs `queued` forever). Implementations: [`MemoryStore`] (tests, and
//! `DATABASE_URL=memory:`), `SqliteStore` (the durable default) and `PgStore` (a cluster's
//! shared store).
//!
//! Every transition is explicit:
//!
//! | method | from | to |
//! |---|---|---|
//! | [`JobStore::insert`] | — | queued (nothing when its idempotency key is taken) |
//! | [`JobStore::claim_next`] | queued | running (attempts + 1); only jobs the node's labels cover |
//! | [`JobStore::finish`] | running | completed, failed, cancelled |
//! | [`JobStore::cancel`] | queued | cancelled (running: cancel requested) |
//! | [`JobStore::requeue`] | running | queued (shutdown) |
//! | [`JobStore::retry`] | running | queued until a time (a failure that may pass) |
//! | [`JobStore::recover`] | running | queued, or failed past the attempt limit |
//! | PostgreSQL's reaper (a node's lease expired) | running | queued, or failed/cancelled when it must end (a worker node may first take it over: [`JobStore::claim_lost_run`]) |
//!
//! A transition into `running`, `completed`, `failed` or `cancelled` (and a progress update
//! of a job that asked for `job.progress`) also writes the job's webhook deliveries
//! ([`crate::webhook::outbox`]) in the same transaction: the outbox that
//! [`JobStore::claim_deliveries`] hands to the dispatcher.
//! Every status change also adds one to the job's [`Job::event_seq`] in the same write, so a
//! status event's id is durable (see [`crate::events`]).
//!
//! The module is split along its seams: the trait here, its values in `values.rs`, its error
//! in `error.rs`, [`MemoryStore`] in `memory.rs`, and the SQL stores' shared transition plan
//! in `plan.rs`.

use async_trait::async_trait;
use ffmpeg_core::capabilities::Capabilities;
use time::OffsetDateTime;

mod due;
mod error;
mod memo;
mod memory;
pub(crate) mod plan;
pub(crate) mod sql;
mod values;

pub(crate) use due::Due;
pub use error::{BoxError, StoreError};
pub(crate) use memo::ClaimMemo;
pub use memory::MemoryStore;
pub(crate) use values::blocker_of;
pub use values::{
    ActiveFootprint, Attempt, CancelOutcome, HeldBack, InterruptedRun, ListQuery, LostRun, Outcome, Recovery,
    RunRecord, StatusCounts, WORKER_LOST, footprints_conflict,
};

use crate::idempotency::IdempotencyKey;
use crate::model::{Job, JobId, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration};
use crate::webhook::{Delivery, DeliveryAttempt, DeliveryId, NextStep};

/// Durable record of jobs and the queue they wait in. Usable as `Arc<dyn JobStore>`.
///
/// Implementations must make every transition atomic: two workers (threads, processes or
/// machines) can never claim the same job, and a transition from a status other than the
/// documented one fails with [`StoreError::Conflict`] and changes nothing.
///
/// Every write either returns `Ok` once its change is durable, or returns an error and has
/// changed nothing: an acknowledged change is never lost, a failed one never half-applied.
/// After a transient failure ([`StoreError::Unavailable`], [`StoreError::DiskFull`]) the
/// store accepts writes again as soon as the cause is gone, without being reopened; reads
/// answer meanwhile.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a new `queued` job and wakes a waiting worker.
    ///
    /// With [`SubmitOptions::idempotency`], the key is stored with the job, unique across
    /// the store: when a job already has that key (also one whose insert committed while
    /// this one ran), nothing is inserted and the answer is
    /// [`StoreError::IdempotencyKeyTaken`] with that job as it is now.
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError>;

    /// The job with this id, if any.
    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// The job submitted with idempotency key `key` ([`crate::idempotency`]), if any (a
    /// deleted or purged job's key names none).
    async fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Job>, StoreError>;

    /// Jobs in submission order, filtered and paged by `query`.
    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError>;

    /// Atomically moves the next queued job (highest priority, then oldest) that may start
    /// now to `running`, stamping `started_at` and counting the attempt. `None` when no queued
    /// job can start now. A job whose [`Job::retry_at`] is still ahead (by the store's clock)
    /// may not start yet; it still counts as an earlier queued job below, and
    /// [`JobStore::wait_for_work`] returns when the soonest such time a claim saw comes. Across processes and nodes, two jobs whose files overlap never run at
    /// once: the check and the transition are atomic in effect (on PostgreSQL, claims run side
    /// by side; see [`crate::postgres`]).
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

    /// For each of `jobs` (as just read from this store), what holds it back when it is queued
    /// and an earlier conflicting job does ([`HeldBack`]: the running or earlier-submitted
    /// queued job, by the rule of [`JobStore::claim_next`], that it waits for: the first running
    /// one in submission order whose footprint conflicts with its own, else the first such
    /// earlier queued one); `None` for a job that is not queued or that nothing holds back. One
    /// answer per job, in order, from one snapshot of the queued and running jobs, whatever
    /// this process's claims have seen: every node of a cluster, whatever its role, gives the
    /// same answer, and so does every store.
    ///
    /// A read, never a write: the SQL stores make one read, the `(seq, id, status)` of the
    /// running jobs and of the queued ones up to the latest asked about, plus one of the
    /// footprints their memo (`store/memo.rs`) lacks (each decoded once and kept: a job's
    /// footprint is put there when it is inserted, so the answer to a submit needs none); a
    /// job nothing holds back is compared with every running and earlier queued job, one held
    /// back up to its blocker.
    async fn held_back(&self, jobs: &[Job]) -> Result<Vec<Option<HeldBack>>, StoreError>;

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

    /// For a store shared by several nodes (PostgreSQL): takes over, for this node under a
    /// fresh lease, one running job whose node was lost (its lease expired) and that must end
    /// rather than run again (a cancel was asked for, or it has used its attempts), when it
    /// recorded a run: its files may still be in the data directory. The caller removes what
    /// that run wrote (the rule a failure uses), then ends the job with [`LostRun::outcome`]
    /// through [`JobStore::finish`]. Until then the job stays `running`, so its footprint still
    /// holds back conflicting jobs; if this node dies meanwhile, another one takes it over.
    /// A lost job that recorded no run is ended by the store itself (the reaper), and so is one
    /// no node took over within a further lease. `None` (the default): no such job, or a store
    /// of one node, whose recovery at start-up does this.
    async fn claim_lost_run(&self) -> Result<Option<LostRun>, StoreError> {
        Ok(None)
    }

    /// Waits until a job may have been queued since the last call (a hint; callers re-check
    /// with [`JobStore::claim_next`]), or `timeout` passes, or the soonest [`Job::retry_at`]
    /// this process's claims saw ahead comes.
    async fn wait_for_work(&self, timeout: std::time::Duration);

    /// Records the latest progress of a running job. Returns `true` when a client has asked
    /// for the job to be cancelled (so a worker on another machine learns of it).
    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError>;

    /// Moves a running job to its final status, keeping `log` (the tail of ffmpeg's stderr)
    /// as the job's log.
    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError>;

    /// [`JobStore::finish`] with the run's last progress stored first (`None`: nothing new to
    /// store): a worker's last two writes of a run, which a store may make one (the SQLite
    /// store: one transaction). The default makes two: a progress the store refuses or fails
    /// to write is logged, and the outcome is still tried (a refusal then says why).
    async fn finish_with_progress(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
    ) -> Result<Job, StoreError> {
        if let Some(progress) = progress
            && let Err(e) = self.update_progress(id, progress).await
        {
            tracing::warn!(job = %id, error = %e, "recording the last progress failed");
        }
        self.finish(id, outcome, log).await
    }

    /// The log kept by [`JobStore::finish`]; `None` for an unknown job, empty before it finished.
    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError>;

    /// Cancels a queued job, or marks a running one for cancellation.
    /// Finished jobs: [`StoreError::Conflict`].
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError>;

    /// Puts a running job back in the queue (graceful shutdown), keeping its place in order.
    /// The interrupted start is not counted as an attempt.
    async fn requeue(&self, id: &JobId) -> Result<(), StoreError>;

    /// Puts running job `id` back in the queue after its attempt failed for a reason that may
    /// pass (the storage was unavailable), counting the attempt or not (`attempt`; counted,
    /// the caller checked it had attempts left; not counted, as for [`JobStore::requeue`]),
    /// not to be claimed before `wait` has passed: [`Job::retry_at`] is now plus `wait` by the
    /// store's clock (the database's for PostgreSQL), [`Job::retry_reason`] is `reason`; the
    /// job's `error` is left as it was. Wakes waiting workers (other nodes' too), whose claims then wait for
    /// that time. [`StoreError::Conflict`] unless the job is running (in cluster mode: under
    /// this node's lease).
    async fn retry(
        &self,
        id: &JobId,
        reason: &str,
        wait: std::time::Duration,
        attempt: Attempt,
    ) -> Result<(), StoreError>;

    /// Removes a finished job's record. Queued or running: [`StoreError::Conflict`].
    async fn delete(&self, id: &JobId) -> Result<(), StoreError>;

    /// At start-up: jobs left `running` go back to `queued`; to `cancelled` when a cancel was
    /// pending; or to `failed` with error "interrupted" when they have already been attempted
    /// `max_attempts` times.
    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError>;

    /// Deletes finished jobs that completed before `cutoff`; returns how many.
    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError>;

    /// Number of jobs in each status (statuses with no job may be absent).
    async fn counts(&self) -> Result<StatusCounts, StoreError>;

    /// The footprints of every queued and running job, in submission order (`None`: a job stored
    /// before footprints existed, which may touch any file). The files API refuses to replace or
    /// delete a file one of them reads or writes
    /// ([`Footprint::touches_file`](ffmpeg_core::footprint::Footprint::touches_file)).
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

    /// Whether the store's writes take turns at one connection (SQLite's one writer), so that
    /// two writes of a worker queue behind each other: a worker then lets the next job's claim
    /// and run record go before the outcome of the job whose ffmpeg just ended. The default:
    /// `false` (writes go on side by side, or cost nothing to wait for).
    fn serializes_writes(&self) -> bool {
        false
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

    /// For a store shared by several nodes: tells the other nodes what this node's event
    /// streams watch now ([`Watched`](crate::cluster::Watched)), so that they send the live
    /// progress of their jobs ([`JobStore::announce_progress`]) only where it is watched. A
    /// job newly watched is told at once (its progress then arrives from the next snapshot
    /// on); one no longer watched may be told later. Never waits. The default does nothing.
    fn set_watched(&self, watched: &crate::cluster::Watched) {
        let _ = watched;
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

    /// Publishes this start of node `node.id` in the registry ([`crate::nodes`]) as just
    /// started: its heartbeat now, not draining, running nothing. A row of the same id is
    /// replaced only when it is this same start's (`node.started_at`: registering again after
    /// a prune), is lost (no heartbeat for `lost_after`, by the store's clock), or is the start
    /// `replaces` (one the caller knows is gone); otherwise another live process uses the id:
    /// `false`, and nothing changed.
    async fn register_node(
        &self,
        node: &NodeRegistration,
        lost_after: std::time::Duration,
        replaces: Option<time::OffsetDateTime>,
    ) -> Result<bool, StoreError>;

    /// Records a heartbeat of this start of node `node.id` (`node.started_at`): the time (by
    /// the store's clock), whether it drains, the jobs it runs. `false`, and nothing changed,
    /// when the registry has no row of this start: it was pruned while silent (it must
    /// [`register_node`](JobStore::register_node) again), or another start took the id over.
    async fn heartbeat_node(&self, node: &NodeRegistration, beat: &Heartbeat) -> Result<bool, StoreError>;

    /// Every registered node, by id, each [`NodeState::Lost`](crate::nodes::NodeState::Lost) when
    /// its latest heartbeat is `lost_after` or more old (by the store's clock: the database's for
    /// PostgreSQL).
    async fn nodes(&self, lost_after: std::time::Duration) -> Result<Vec<Node>, StoreError>;

    /// What node `id`'s ffmpeg knows, as it registered it; `None` for an unknown node or one
    /// that registered none.
    async fn node_capabilities(&self, id: &str) -> Result<Option<Capabilities>, StoreError>;

    /// Removes this start of node `node.id` from the registry (a graceful stop); nothing when
    /// the id is unknown or its row is another start's.
    async fn remove_node(&self, node: &NodeRegistration) -> Result<(), StoreError>;

    /// Removes the nodes whose latest heartbeat is more than `older_than` old; returns how
    /// many.
    async fn prune_nodes(&self, older_than: std::time::Duration) -> Result<u64, StoreError>;

    /// Checks that the store can record changes now (readiness): `Ok` while writes succeed,
    /// [`StoreError::DiskFull`] while they fail for lack of space, [`StoreError::Unavailable`]
    /// while they cannot otherwise (read-only, I/O errors).
    /// Stores may answer from their latest writes and probe with a small write of their own
    /// when those are old or failed.
    async fn check_writable(&self) -> Result<(), StoreError>;
}
