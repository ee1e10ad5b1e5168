//! One [`JobStore`] implementation for both SQL stores ([`SqliteStore`](crate::SqliteStore) and
//! [`PgStore`](crate::postgres::PgStore)), over their dialect ([`SqlStore`]).
//!
//! The two stores differ in their SQL, their pools, their transactions and fencing; they do not
//! differ in what a single-statement method means: which statement runs with which values, how
//! its rows become jobs, deliveries or nodes, when a write that changed no row is a refusal,
//! and that every write feeds the write health. That is written here once, for every method
//! that is one statement (list, run records, delete, purge, counts, deliveries, the node
//! registry, readiness). A dialect supplies:
//! - its statements ([`Statements`]), each taking the same values in the same order;
//! - how it binds a value ([`Arg`]): the few values whose SQL differs between the dialects are
//!   arguments of their own (a list of texts, an age, the clock, the node id), encoded by each
//!   dialect;
//! - running a statement on its pools ([`SqlStore::execute`], [`SqlStore::fetch`]);
//! - the transitions whose transactions, batching or fencing differ (insert, get, claim,
//!   progress, finish, log, cancel, requeue, recover), which run the shared
//!   [transition plan](super::plan) where they change several rows.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ffmpeg_core::capabilities::Capabilities;
use ffmpeg_core::footprint::Footprint;
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{
    ActiveFootprint, Attempt, CancelOutcome, ClaimMemo, Due, HeldBack, InterruptedRun, JobStore, ListQuery, LostRun,
    Outcome, Recovery, RunRecord, StatusCounts, StoreError, blocker_of, plan,
};
use crate::idempotency::IdempotencyKey;
use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration};
use crate::sqlite::rows::{self, DeliveryRow, JobRow, NodeRow, corrupt, json, micros, micros_ceil, now};
use crate::sqlite::write::{Verdict, WriteHealth};
use crate::webhook::{Delivery, DeliveryAttempt, DeliveryId, NextStep};

/// A value bound to a statement of [`Statements`], encoded by the dialect.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// An integer (`BIGINT`).
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// A text.
    Text(&'a str),
    /// A text or NULL.
    OptText(Option<&'a str>),
    /// A boolean.
    Bool(bool),
    /// A list of texts: a JSON array in SQLite, a `TEXT[]` in PostgreSQL.
    Texts(&'a [String]),
    /// How long before now: SQLite binds that time (unix microseconds, by this process's
    /// clock: the nodes sharing an SQLite file share a machine); PostgreSQL binds the seconds,
    /// which its statements subtract from the database's `now()`, so that nodes whose clocks
    /// differ agree.
    Age(Duration),
    /// Now, in unix microseconds by this process's clock: SQLite binds it; PostgreSQL's
    /// statements read the database's clock instead and take no parameter for it, so it is
    /// always the last value.
    Now,
    /// This node's id, which PostgreSQL stamps on a claim and fences a running job's writes
    /// with; SQLite (one job-running node per file) takes no parameter for it, so it is always
    /// the last value.
    Node,
}

/// Which connections a statement runs on (SQLite has one writer and several readers;
/// PostgreSQL one pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A read: any connection.
    Read,
    /// A read that must see this process's latest writes (SQLite: the writer).
    ReadLatest,
    /// A write: its outcome feeds the write health ([`WriteHealth`]).
    Write,
}

/// The statements of the shared methods, in a dialect's SQL. Each takes the values listed, in
/// that order (placeholders `?N` in SQLite, `$N` in PostgreSQL).
#[derive(Debug)]
pub(crate) struct Statements {
    /// After seq, limit: jobs in submission order.
    pub(crate) list: &'static str,
    /// Status, after seq, limit: jobs with that status in submission order.
    pub(crate) list_status: &'static str,
    /// Id: the job's status (why a transition matched no row).
    pub(crate) status: &'static str,
    /// Idempotency key: the job ([`JobRow`]) submitted with it.
    pub(crate) get_by_idempotency_key: &'static str,
    /// Id, attempt, run record (JSON), [`Arg::Node`]: the run record of the job's current,
    /// running attempt (this node's, in PostgreSQL).
    pub(crate) record_run: &'static str,
    /// [`Arg::Node`]: the running jobs (this node's, in PostgreSQL) with their current
    /// attempt's run record, `(id, run)`, in submission order.
    pub(crate) interrupted_runs: &'static str,
    /// Id: the run record of an attempt before the job's current one, `(run)`.
    pub(crate) previous_run: &'static str,
    /// Id: deletes a finished job.
    pub(crate) delete: &'static str,
    /// Cutoff (unix microseconds): deletes the jobs finished before it.
    pub(crate) purge: &'static str,
    /// Cutoff (unix microseconds): deletes the finished deliveries of events before it.
    pub(crate) purge_deliveries: &'static str,
    /// `(status, count)` per status.
    pub(crate) counts: &'static str,
    /// `(id, status, footprint)` of the queued and running jobs, in submission order.
    pub(crate) active_footprints: &'static str,
    /// Seq: `(seq, id, status)` of the running jobs and of the queued jobs up to that one, in
    /// submission order.
    pub(crate) active_up_to: &'static str,
    /// Ids ([`Arg::Texts`]): `(seq, footprint)` of those jobs.
    pub(crate) footprints_of: &'static str,
    /// Readiness: a read of nothing, `(1)`.
    pub(crate) ping: &'static str,
    /// Now (unix microseconds): the small write readiness probes with.
    pub(crate) probe: &'static str,
    /// Now, lease end (unix microseconds), limit, URLs to leave out ([`Arg::Texts`]): claims
    /// the due pending deliveries, returning them.
    pub(crate) claim_deliveries: &'static str,
    /// Id, attempt (JSON), state, next attempt (NULL: final): records an attempt of a pending
    /// delivery.
    pub(crate) record_attempt: &'static str,
    /// Job id: its deliveries in the order written.
    pub(crate) deliveries: &'static str,
    /// Id, role, labels (JSON), host, version, ffmpeg version, capabilities (JSON), slots,
    /// started (unix microseconds), process, [`Arg::Age`] after which a node is lost, a start
    /// known to be gone (or NULL), [`Arg::Now`]: the node's row, as new (heartbeat now, not
    /// draining, no running job), unless the id's row is another start's that is neither lost
    /// nor the one known to be gone.
    pub(crate) register_node: &'static str,
    /// Id, draining, running jobs (JSON), started, [`Arg::Now`]: a heartbeat of that start.
    pub(crate) heartbeat_node: &'static str,
    /// [`Arg::Age`] after which a node is lost: every node ([`NodeRow`]), by id.
    pub(crate) nodes: &'static str,
    /// Id: `(capabilities)` of the node.
    pub(crate) node_capabilities: &'static str,
    /// Id, started: removes that start of the node.
    pub(crate) remove_node: &'static str,
    /// [`Arg::Age`]: removes the nodes silent for longer.
    pub(crate) prune_nodes: &'static str,
}

/// The [`Statements`] of a dialect's `sql` module, which names each statement after its field,
/// in upper case (`LIST`, `LIST_STATUS`, ...).
macro_rules! statements {
    () => {
        $crate::store::sql::Statements {
            list: LIST,
            list_status: LIST_STATUS,
            status: STATUS,
            get_by_idempotency_key: GET_BY_IDEMPOTENCY_KEY,
            record_run: RECORD_RUN,
            interrupted_runs: INTERRUPTED_RUNS,
            previous_run: PREVIOUS_RUN,
            delete: DELETE,
            purge: PURGE,
            purge_deliveries: PURGE_DELIVERIES,
            counts: COUNTS,
            active_footprints: ACTIVE_FOOTPRINTS,
            active_up_to: ACTIVE_UP_TO,
            footprints_of: FOOTPRINTS_OF,
            ping: PING,
            probe: PROBE,
            claim_deliveries: CLAIM_DELIVERIES,
            record_attempt: RECORD_ATTEMPT,
            deliveries: DELIVERIES,
            register_node: REGISTER_NODE,
            heartbeat_node: HEARTBEAT_NODE,
            nodes: NODES,
            node_capabilities: NODE_CAPABILITIES,
            remove_node: REMOVE_NODE,
            prune_nodes: PRUNE_NODES,
        }
    };
}
pub(crate) use statements;

/// A row type both dialects decode (a `FromRow` struct or a tuple).
pub(crate) trait SqlRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> SqlRow for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static {}

/// An SQL store's dialect: what [`JobStore`] needs of it beyond [`Statements`]. Every SQL
/// store implementing it is a [`JobStore`] through this module's one implementation.
#[async_trait]
pub(crate) trait SqlStore: Send + Sync + 'static {
    /// The statements of the shared methods.
    const SQL: Statements;

    /// Whether the latest writes succeeded.
    fn health(&self) -> &WriteHealth;

    /// Woken when a job may have been queued (or a held-back one may start).
    fn notify(&self) -> &Notify;

    /// When the soonest job a claim passed over for its `retry_at` may start.
    fn due(&self) -> &Due;

    /// What this store's claims remember of the jobs they read.
    fn memo(&self) -> &ClaimMemo;

    /// Runs write `sql` with `args` to its end, on the connection that writes; how many rows
    /// it changed. Callers go through [`SqlStore::execute`].
    async fn run(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// Runs `sql` with `args` to its end, on the connections `access` names; its rows.
    /// Callers go through [`SqlStore::fetch`].
    async fn rows<R: SqlRow>(&self, access: Access, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<R>, StoreError>;

    /// Runs write `sql` with `args` to its end; how many rows it changed. Its outcome feeds
    /// the write health.
    async fn execute(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let result = self.run(sql, args).await;
        self.health().record(&result);
        result
    }

    /// Runs conditional write `sql` with `args`, transition `action` on `id`: refused, with the
    /// error saying why ([`SqlStore::refusal`]), when it changed no row. Its outcome feeds the
    /// write health.
    async fn transition(
        &self,
        id: &JobId,
        action: &'static str,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<(), StoreError> {
        if self.execute(sql, args).await? == 0 {
            return Err(self.refusal(id, action).await);
        }
        Ok(())
    }

    /// Runs `sql` with `args` to its end, on the connections `access` names; its rows. A
    /// write's outcome feeds the write health.
    async fn fetch<R: SqlRow>(
        &self,
        access: Access,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        let result = self.rows(access, sql, args).await;
        if access == Access::Write {
            self.health().record(&result);
        }
        result
    }

    /// [`JobStore::insert`].
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError>;

    /// [`JobStore::get`].
    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// [`JobStore::claim_next`].
    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError>;

    /// [`JobStore::record_run`]: by default one statement, `SQL.record_run`.
    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        let record = json(run)?;
        let args = [Arg::Text(id.as_str()), Arg::Int(i64::from(run.attempt)), Arg::Text(&record), Arg::Node];
        self.transition(id, "record run", Self::SQL.record_run, &args).await
    }

    /// [`JobStore::update_progress`].
    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError>;

    /// [`JobStore::finish`].
    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError>;

    /// [`JobStore::finish_with_progress`]: one write where the dialect can.
    async fn finish_with_progress(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
    ) -> Result<Job, StoreError>;

    /// [`JobStore::log`].
    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError>;

    /// [`JobStore::cancel`].
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError>;

    /// [`JobStore::requeue`].
    async fn requeue(&self, id: &JobId) -> Result<(), StoreError>;

    /// [`JobStore::retry`].
    async fn retry(&self, id: &JobId, reason: &str, wait: Duration, attempt: Attempt) -> Result<(), StoreError>;

    /// [`JobStore::recover`].
    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError>;

    /// [`JobStore::lease_lost`], [`JobStore::cluster_signals`] and
    /// [`JobStore::announce_progress`] are a cluster's (PostgreSQL's); by default those of a
    /// store of one node: no lease to lose, no signals, nobody to tell.
    fn lease_lost(&self, _id: &JobId) -> Option<tokio_util::sync::CancellationToken> {
        None
    }

    /// See [`SqlStore::lease_lost`].
    fn cluster_signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::ClusterSignal>> {
        None
    }

    /// [`JobStore::serializes_writes`]; `false` by default (a pool of connections).
    fn serializes_writes(&self) -> bool {
        false
    }

    /// See [`SqlStore::lease_lost`].
    fn announce_progress(&self, _event: &crate::events::ProgressEvent) {}

    /// See [`SqlStore::lease_lost`].
    fn set_watched(&self, _watched: &crate::cluster::Watched) {}

    /// [`JobStore::claim_lost_run`]; `None` by default (one node: recovery at start-up does
    /// this).
    async fn claim_lost_run(&self) -> Result<Option<LostRun>, StoreError> {
        Ok(None)
    }

    /// Wakes every waiting worker, and leaves a permit for the next one to wait, so a job
    /// queued between a worker's empty claim and its wait is not left idle until the timeout.
    fn wake(&self) {
        self.notify().notify_waiters();
        self.notify().notify_one();
    }

    /// The result of transition `action` on `id`, run in one transaction: its outcome feeds
    /// the write health, and a refusal (`Ok(None)`: no row changed) becomes the error saying
    /// why ([`SqlStore::refusal`]).
    async fn settle<T: Send>(
        &self,
        id: &JobId,
        action: &'static str,
        result: Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.health().record(&result);
        match result? {
            Some(value) => Ok(value),
            None => Err(self.refusal(id, action).await),
        }
    }

    /// Why a conditional transition `action` on `id` matched no row: the job is missing, or
    /// in a status that does not allow it (PostgreSQL: a running job not held by this node
    /// under a live lease).
    async fn refusal(&self, id: &JobId, action: &'static str) -> StoreError {
        let status = self
            .fetch::<(String,)>(Access::ReadLatest, Self::SQL.status, &[Arg::Text(id.as_str())])
            .await
            .map(|rows| rows.into_iter().next().map(|(status,)| status));
        plan::refusal(id, action, status)
    }
}

/// A queued or running job as [`JobStore::held_back`] compares it: its footprint known
/// (`None`: unknown, it may touch any file).
struct Active {
    seq: i64,
    id: String,
    status: JobStatus,
    footprint: Option<Arc<Footprint>>,
}

impl Active {
    /// What this job holds `me` back with.
    fn held(&self, me: &Active) -> Option<HeldBack> {
        let by = JobId::parse(&self.id).ok()?;
        Some(HeldBack::of(by, self.status, me.footprint.as_deref(), self.footprint.as_deref()))
    }
}

/// Jobs as `store` read them (`(seq, id, status)` rows, in submission order) with their
/// footprints: from the memo, else read now (one statement for all those it lacks) and kept
/// there. A job the second read no longer finds has ended (and was purged) meanwhile: it is
/// left out.
async fn with_footprints<S: SqlStore>(store: &S, rows: Vec<(i64, String, String)>) -> Result<Vec<Active>, StoreError> {
    let (mut jobs, mut found): (Vec<Active>, Vec<bool>) = {
        let memo = store.memo().lock();
        let mut jobs = Vec::with_capacity(rows.len());
        let mut found = Vec::with_capacity(rows.len());
        for (seq, id, status) in rows {
            let status = status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?;
            let known = memo.footprint(seq);
            found.push(known.is_some());
            jobs.push(Active { seq, id, status, footprint: known.flatten() });
        }
        (jobs, found)
    };
    let unknown: Vec<String> = jobs.iter().zip(&found).filter(|(_, f)| !**f).map(|(a, _)| a.id.clone()).collect();
    if !unknown.is_empty() {
        let rows: Vec<(i64, Option<String>)> =
            store.fetch(Access::Read, S::SQL.footprints_of, &[Arg::Texts(&unknown)]).await?;
        let mut read = Vec::with_capacity(rows.len());
        for (seq, text) in rows {
            let footprint = text.as_deref().map(plan::decode_footprint).transpose()?.map(Arc::new);
            if let Ok(i) = jobs.binary_search_by_key(&seq, |a| a.seq) {
                jobs[i].footprint = footprint.clone();
                found[i] = true;
            }
            read.push((seq, footprint));
        }
        store.memo().lock().keep_read(read);
    }
    let mut found = found.into_iter();
    jobs.retain(|_| found.next().unwrap_or(false));
    Ok(jobs)
}

/// The first column of the first row, if any.
fn first<T>(rows: Vec<(T,)>) -> Option<T> {
    rows.into_iter().next().map(|(value,)| value)
}

#[async_trait]
impl<S: SqlStore> JobStore for S {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        // The footprint as `held_back` would read it back: the answer to the submit needs no
        // read of it.
        let footprint = Arc::new(options.footprint.clone());
        let job = SqlStore::insert(self, command, options).await?;
        self.memo().lock().keep_read(vec![(job.seq, Some(footprint))]);
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        SqlStore::get(self, id).await
    }

    async fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Job>, StoreError> {
        // Any connection: an insert answers once committed, and readers see every commit.
        let rows: Vec<JobRow> =
            self.fetch(Access::Read, S::SQL.get_by_idempotency_key, &[Arg::Text(key.as_str())]).await?;
        rows.into_iter().next().map(Job::try_from).transpose()
    }

    async fn held_back(&self, jobs: &[Job]) -> Result<Vec<Option<HeldBack>>, StoreError> {
        let queued = jobs.iter().filter(|j| j.status == JobStatus::Queued);
        let Some(last) = queued.map(|j| j.seq).max() else { return Ok(vec![None; jobs.len()]) };
        // One read: the running jobs, and the queued ones up to the latest asked about (those
        // asked about as they are now among them); footprints from the memo, else read once.
        let rows = self.fetch(Access::Read, S::SQL.active_up_to, &[Arg::Int(last)]).await?;
        let active = with_footprints(self, rows).await?;
        let statuses: Vec<(i64, JobStatus)> = active.iter().map(|a| (a.seq, a.status)).collect();
        Ok(jobs
            .iter()
            .map(|job| {
                let me = active
                    .binary_search_by_key(&job.seq, |a| a.seq)
                    .ok()
                    .map(|i| &active[i])
                    .filter(|a| job.status == JobStatus::Queued && a.status == JobStatus::Queued)?;
                let footprint = |i: usize| active[i].footprint.as_deref();
                let by = blocker_of(me.seq, me.footprint.as_deref(), &statuses, footprint)?;
                active[by].held(me)
            })
            .collect())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let after = Arg::Int(query.after_seq.unwrap_or(i64::MIN));
        let limit = Arg::Int(i64::from(query.limit));
        if query.statuses.is_empty() {
            return rows::jobs(self.fetch(Access::Read, S::SQL.list, &[after, limit]).await?);
        }
        // One page per status, each an index range (`jobs_status`: status, seq), merged by seq:
        // an `IN` list would sort every matching row of the history to keep the first few.
        let mut statuses = query.statuses.clone();
        statuses.sort_unstable();
        statuses.dedup();
        let mut jobs = Vec::new();
        for status in statuses {
            let rows: Vec<JobRow> =
                self.fetch(Access::Read, S::SQL.list_status, &[Arg::Text(status.as_str()), after, limit]).await?;
            jobs.extend(rows::jobs(rows)?);
        }
        // A job that changed status between two reads may be in both: once is enough.
        jobs.sort_unstable_by_key(|job| job.seq);
        jobs.dedup_by_key(|job| job.seq);
        jobs.truncate(query.limit as usize);
        Ok(jobs)
    }

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        SqlStore::claim_next(self, labels).await
    }

    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        SqlStore::record_run(self, id, run).await
    }

    async fn interrupted_runs(&self) -> Result<Vec<InterruptedRun>, StoreError> {
        plan::interrupted_runs(self.fetch(Access::ReadLatest, S::SQL.interrupted_runs, &[Arg::Node]).await?)
    }

    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError> {
        let run: Option<String> =
            first(self.fetch(Access::Read, S::SQL.previous_run, &[Arg::Text(id.as_str())]).await?);
        run.map(|r| serde_json::from_str::<RunRecord>(&r)).transpose().map_err(|e| corrupt("run", e))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(self.due().cap(timeout), self.notify().notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        SqlStore::update_progress(self, id, progress).await
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        SqlStore::finish(self, id, outcome, log).await
    }

    async fn finish_with_progress(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
    ) -> Result<Job, StoreError> {
        SqlStore::finish_with_progress(self, id, progress, outcome, log).await
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        SqlStore::log(self, id).await
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        SqlStore::cancel(self, id).await
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        SqlStore::requeue(self, id).await
    }

    async fn retry(&self, id: &JobId, reason: &str, wait: Duration, attempt: Attempt) -> Result<(), StoreError> {
        SqlStore::retry(self, id, reason, wait, attempt).await
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        self.transition(id, "delete", S::SQL.delete, &[Arg::Text(id.as_str())]).await
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        SqlStore::recover(self, max_attempts).await
    }

    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = [Arg::Int(micros_ceil(cutoff))];
        let purged = self.execute(S::SQL.purge, &cutoff).await?;
        // Finished deliveries go with the jobs of their time; pending ones are still sent.
        self.execute(S::SQL.purge_deliveries, &cutoff).await?;
        Ok(purged)
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        plan::counts(self.fetch(Access::Read, S::SQL.counts, &[]).await?)
    }

    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError> {
        plan::active_footprints(self.fetch(Access::Read, S::SQL.active_footprints, &[]).await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch::<(i32,)>(Access::Read, S::SQL.ping, &[]).await.map(drop)
    }

    fn lease_lost(&self, id: &JobId) -> Option<tokio_util::sync::CancellationToken> {
        SqlStore::lease_lost(self, id)
    }

    fn cluster_signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::ClusterSignal>> {
        SqlStore::cluster_signals(self)
    }

    fn serializes_writes(&self) -> bool {
        SqlStore::serializes_writes(self)
    }

    fn announce_progress(&self, event: &crate::events::ProgressEvent) {
        SqlStore::announce_progress(self, event);
    }

    fn set_watched(&self, watched: &crate::cluster::Watched) {
        SqlStore::set_watched(self, watched);
    }

    async fn claim_lost_run(&self) -> Result<Option<LostRun>, StoreError> {
        SqlStore::claim_lost_run(self).await
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<Delivery>, StoreError> {
        let args =
            [Arg::Int(micros(now)), Arg::Int(micros(now + lease)), Arg::Int(i64::from(limit)), Arg::Texts(skip_urls)];
        let rows: Vec<DeliveryRow> = self.fetch(Access::Write, S::SQL.claim_deliveries, &args).await?;
        let mut deliveries = rows.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>, _>>()?;
        // RETURNING promises no order: the longest due first, then in write order.
        deliveries.sort_by_key(|d| d.created_at);
        Ok(deliveries)
    }

    async fn record_delivery_attempt(
        &self,
        id: &DeliveryId,
        attempt: &DeliveryAttempt,
        next: NextStep,
    ) -> Result<bool, StoreError> {
        let attempt = json(attempt)?;
        let args = [
            Arg::Text(id.as_str()),
            Arg::Text(&attempt),
            Arg::Text(next.state().as_str()),
            Arg::OptInt(next.next_attempt_at().map(micros)),
        ];
        Ok(self.execute(S::SQL.record_attempt, &args).await? == 1)
    }

    async fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> = self.fetch(Access::Read, S::SQL.deliveries, &[Arg::Text(id.as_str())]).await?;
        rows.into_iter().map(Delivery::try_from).collect()
    }

    async fn register_node(
        &self,
        node: &NodeRegistration,
        lost_after: Duration,
        replaces: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let labels = json(&node.labels)?;
        let capabilities = node.capabilities.as_deref().map(json).transpose()?;
        let args = [
            Arg::Text(&node.id),
            Arg::Text(node.role.as_str()),
            Arg::Text(&labels),
            Arg::Text(&node.host),
            Arg::Text(&node.version),
            Arg::OptText(node.ffmpeg_version.as_deref()),
            Arg::OptText(capabilities.as_deref()),
            Arg::Int(i64::from(node.slots)),
            Arg::Int(crate::nodes::micros(node.started_at)),
            Arg::OptText(node.process.as_deref()),
            Arg::Age(lost_after),
            Arg::OptInt(replaces.map(crate::nodes::micros)),
            Arg::Now,
        ];
        Ok(self.execute(S::SQL.register_node, &args).await? > 0)
    }

    async fn heartbeat_node(&self, node: &NodeRegistration, beat: &Heartbeat) -> Result<bool, StoreError> {
        let running: Vec<&str> = beat.running_jobs.iter().map(|j| j.as_str()).collect();
        let running = json(&running)?;
        let args = [
            Arg::Text(&node.id),
            Arg::Bool(beat.draining),
            Arg::Text(&running),
            Arg::Int(crate::nodes::micros(node.started_at)),
            Arg::Now,
        ];
        Ok(self.execute(S::SQL.heartbeat_node, &args).await? > 0)
    }

    async fn nodes(&self, lost_after: Duration) -> Result<Vec<Node>, StoreError> {
        let rows: Vec<NodeRow> = self.fetch(Access::Read, S::SQL.nodes, &[Arg::Age(lost_after)]).await?;
        rows.into_iter().map(Node::try_from).collect()
    }

    async fn node_capabilities(&self, id: &str) -> Result<Option<Capabilities>, StoreError> {
        let text: Option<Option<String>> =
            first(self.fetch(Access::Read, S::SQL.node_capabilities, &[Arg::Text(id)]).await?);
        text.flatten().as_deref().map(rows::capabilities).transpose()
    }

    async fn remove_node(&self, node: &NodeRegistration) -> Result<(), StoreError> {
        let args = [Arg::Text(&node.id), Arg::Int(crate::nodes::micros(node.started_at))];
        self.execute(S::SQL.remove_node, &args).await.map(drop)
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.execute(S::SQL.prune_nodes, &[Arg::Age(older_than)]).await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        match self.health().verdict() {
            Verdict::Writable => return Ok(()),
            Verdict::Failing(e) => return Err(e),
            Verdict::Probe => {}
        }
        self.execute(S::SQL.probe, &[Arg::Int(now().1)]).await.map(drop)
    }
}
