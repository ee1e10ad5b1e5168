//! [`MemoryStore`]: the [`JobStore`] in a process's memory, with its node registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use ffmpeg_core::capabilities::Capabilities;
use ffmpeg_core::footprint::Footprint;
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{
    ActiveFootprint, Attempt, CancelOutcome, Due, HeldBack, InterruptedRun, JobStore, ListQuery, Outcome, Recovery,
    RunRecord, StatusCounts, StoreError, blocker_of, footprints_conflict,
};
use crate::idempotency::IdempotencyKey;
use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration, NodeState, labels_cover};
use crate::webhook::{self, Delivery, DeliveryAttempt, DeliveryId, DeliveryState, NextStep, WebhookEvent};

/// An in-memory [`JobStore`]: fast, and gone when the process exits. For tests and
/// throw-away runs (`DATABASE_URL=memory:`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notify: Notify,
    /// When the soonest job a claim passed over for its `retry_at` may start.
    due: Due,
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
    /// Idempotency key -> the job submitted with it (as long as its record lives).
    keys: HashMap<IdempotencyKey, JobId>,
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

    /// Puts running job `id` back in the queue (the part `requeue` and `retry` share), with
    /// `adjust` applied to it; Conflict naming `operation` when it is not running.
    fn back_to_queue(
        &self,
        id: &JobId,
        operation: &'static str,
        adjust: impl FnOnce(&mut Job),
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if job.status != JobStatus::Running {
            return Err(conflict(job, operation));
        }
        job.status = JobStatus::Queued;
        job.started_at = None;
        job.progress = None;
        adjust(job);
        job.event_seq += 1;
        let key = queue_key(job);
        inner.queue.insert(key, id.clone());
        drop(inner);
        self.wake();
        Ok(())
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
            if let Some(idempotency) = &options.idempotency
                && let Some(taken) = inner.keys.get(&idempotency.key).and_then(|id| inner.jobs.get(id))
            {
                return Err(StoreError::IdempotencyKeyTaken(Box::new(taken.clone())));
            }
            inner.next_seq += 1;
            let job = Job::new_queued(command, options, inner.next_seq, OffsetDateTime::now_utc());
            if let Some(idempotency) = &job.idempotency {
                inner.keys.insert(idempotency.key.clone(), job.id.clone());
            }
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

    async fn get_by_idempotency_key(&self, key: &IdempotencyKey) -> Result<Option<Job>, StoreError> {
        let inner = self.lock();
        Ok(inner.keys.get(key).and_then(|id| inner.jobs.get(id)).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let inner = self.lock();
        let start = query.after_seq.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(inner
            .by_seq
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(_, id)| inner.jobs.get(id))
            .filter(|j| query.statuses.is_empty() || query.statuses.contains(&j.status))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let mut inner = self.lock();
        let now = OffsetDateTime::now_utc();
        let footprint = |id: &JobId| inner.footprints.get(id).and_then(Option::as_ref);
        // A job waiting for its retry time is not claimed yet; idle workers wake when it comes.
        let waits = |job: &Job| job.retry_at.filter(|at| *at > now).map(|at| (at - now).unsigned_abs());
        for wait in inner.queue.values().filter_map(|id| inner.jobs.get(id)).filter_map(waits) {
            self.due.note(wait);
        }
        let eligible =
            |id: &JobId| inner.jobs.get(id).is_some_and(|j| labels_cover(labels, &j.requires) && waits(j).is_none());
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
        job.started_at = Some(now);
        job.attempts += 1;
        job.progress = None;
        job.event_seq += 1;
        let job = job.clone();
        inner.write_status_outbox(&job, job.started_at.unwrap_or_else(OffsetDateTime::now_utc));
        Ok(Some(job))
    }

    async fn held_back(&self, jobs: &[Job]) -> Result<Vec<Option<HeldBack>>, StoreError> {
        let inner = self.lock();
        let footprint = |id: &JobId| inner.footprints.get(id).and_then(Option::as_ref);
        let active: Vec<&Job> = inner
            .by_seq
            .values()
            .filter_map(|id| inner.jobs.get(id))
            .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
            .collect();
        let statuses: Vec<(i64, JobStatus)> = active.iter().map(|j| (j.seq, j.status)).collect();
        Ok(jobs
            .iter()
            .map(|job| {
                if inner.jobs.get(&job.id).is_none_or(|j| j.status != JobStatus::Queued) {
                    return None;
                }
                let mine = footprint(&job.id);
                let by = active[blocker_of(job.seq, mine, &statuses, |i| footprint(&active[i].id))?];
                Some(HeldBack::of(by.id.clone(), by.status, mine, footprint(&by.id)))
            })
            .collect())
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
        let _ = tokio::time::timeout(self.due.cap(timeout), self.notify.notified()).await;
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
                // The reason of an earlier attempt's retry is no longer the job's.
                job.error = None;
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
        // A graceful stop is not a failed attempt: the next start is not counted against
        // the job's attempt limit (crash recovery, which cannot tell, does count it).
        self.back_to_queue(id, "requeue", |job| job.attempts = job.attempts.saturating_sub(1))
    }

    async fn retry(
        &self,
        id: &JobId,
        reason: &str,
        wait: std::time::Duration,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let at = OffsetDateTime::now_utc() + wait;
        self.back_to_queue(id, "retry", |job| {
            if attempt == Attempt::NotCounted {
                job.attempts = job.attempts.saturating_sub(1);
            }
            job.retry_at = Some(at);
            job.retry_reason = Some(reason.to_owned());
        })
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let job = inner.job_mut(id)?;
        if !job.status.is_finished() {
            return Err(conflict(job, "delete"));
        }
        let seq = job.seq;
        if let Some(idempotency) = job.idempotency.take() {
            inner.keys.remove(&idempotency.key);
        }
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
            let cancel = inner.cancel_requested.remove(&id);
            let job = inner.job_mut(&id)?;
            job.event_seq += 1;
            if cancel {
                job.status = JobStatus::Cancelled;
                job.completed_at = Some(OffsetDateTime::now_utc());
                let job = job.clone();
                inner.write_status_outbox(&job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc));
                recovery.cancelled.push(id);
            } else if job.attempts >= max_attempts {
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
            if let Some(idempotency) = inner.jobs.get(id).and_then(|job| job.idempotency.clone()) {
                inner.keys.remove(&idempotency.key);
            }
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

    async fn register_node(
        &self,
        node: &NodeRegistration,
        lost_after: std::time::Duration,
        replaces: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        if let Some(other) = inner.nodes.get(&node.id) {
            let start = crate::nodes::micros(other.registration.started_at);
            let replaceable = start == crate::nodes::micros(node.started_at)
                || now - other.heartbeat_at >= lost_after
                || replaces.is_some_and(|r| crate::nodes::micros(r) == start);
            if !replaceable {
                return Ok(false);
            }
        }
        let entry = MemoryNode { registration: node.clone(), heartbeat_at: now, beat: Heartbeat::default() };
        inner.nodes.insert(node.id.clone(), entry);
        Ok(true)
    }

    async fn heartbeat_node(&self, node: &NodeRegistration, beat: &Heartbeat) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(entry) = inner.nodes.get_mut(&node.id) else { return Ok(false) };
        if crate::nodes::micros(entry.registration.started_at) != crate::nodes::micros(node.started_at) {
            return Ok(false);
        }
        entry.heartbeat_at = OffsetDateTime::now_utc();
        entry.beat = beat.clone();
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
                    started_at: r.started_at,
                    process: r.process.clone(),
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

    async fn remove_node(&self, node: &NodeRegistration) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let start = crate::nodes::micros(node.started_at);
        if inner.nodes.get(&node.id).is_some_and(|n| crate::nodes::micros(n.registration.started_at) == start) {
            inner.nodes.remove(&node.id);
        }
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
