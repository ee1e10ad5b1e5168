//! The transition plan of the SQL stores ([`SqliteStore`](crate::SqliteStore) and
//! [`PgStore`](crate::postgres::PgStore)), written once: for each transition, which rows
//! change, which webhook deliveries go into the outbox in the same transaction, and how a
//! refused transition is told apart (missing job, or a status that does not allow it). The
//! claim's rule (the footprint of a job that may start conflicts with no running job's and no
//! earlier-submitted queued job's) is here too.
//!
//! Each store supplies its dialect's statements through [`SqlTx`], on one open transaction,
//! and owns the transaction itself (begin, commit or roll back, fencing, write health): the
//! functions here never commit. A function that returns `Ok(None)` found no row to change
//! (the transition is refused): the store rolls back and asks [`refusal`] why.

use async_trait::async_trait;
use ffmpeg_core::footprint::Footprint;
use time::OffsetDateTime;

use super::{
    ActiveFootprint, CancelOutcome, InterruptedRun, Outcome, Recovery, RunRecord, StatusCounts, StoreError,
    footprints_conflict,
};
use crate::model::{Job, JobId, JobStatus};
use crate::nodes::labels_cover;
use crate::sqlite::rows::{corrupt, json, labels as labels_of, now};
use crate::webhook::{self, Delivery, WebhookEvent};

/// A queued job as the claim reads it: its place in claim order, its footprint (JSON; `None`:
/// unknown) and the labels it requires (a JSON array).
#[derive(Debug)]
pub(crate) struct Queued {
    pub seq: i64,
    pub priority: i64,
    pub footprint: Option<String>,
    pub requires: String,
}

/// The row values [`JobStore::finish`](super::JobStore::finish) writes for an [`Outcome`]
/// (JSON text; `None` keeps the stored value).
#[derive(Debug)]
pub(crate) struct FinishRow {
    pub status: JobStatus,
    pub output_files: Option<String>,
    pub outputs: Option<String>,
    pub error: Option<String>,
}

impl FinishRow {
    /// The values for `outcome`.
    pub(crate) fn of(outcome: Outcome) -> Result<FinishRow, StoreError> {
        Ok(match outcome {
            Outcome::Completed { output_files, outputs } => FinishRow {
                status: JobStatus::Completed,
                output_files: Some(json(&output_files)?),
                outputs: Some(json(&outputs)?),
                error: None,
            },
            Outcome::Failed { error } => {
                FinishRow { status: JobStatus::Failed, output_files: None, outputs: None, error: Some(error) }
            }
            Outcome::Cancelled => {
                FinishRow { status: JobStatus::Cancelled, output_files: None, outputs: None, error: None }
            }
        })
    }
}

/// One open write transaction of an SQL store: the dialect's statements the plan runs. Every
/// method runs its statement to its end (see `sqlite/write.rs` for why); times are unix
/// microseconds.
#[async_trait]
pub(crate) trait SqlTx: Send {
    /// How many queued jobs [`SqlTx::queued_page`] reads at a time.
    const QUEUED_PAGE: usize;

    /// The footprints (JSON; `None`: unknown) of the running jobs.
    async fn running_footprints(&mut self) -> Result<Vec<Option<String>>, StoreError>;

    /// When nothing runs: claims the first queued job in claim order if no queued job was
    /// submitted before it (it waits for nobody) and `labels` cover its `requires`, at
    /// `started`, in one statement. `None` when there is no such job, or the dialect has no
    /// such statement (the default).
    async fn claim_if_oldest(&mut self, started: i64, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let _ = (started, labels);
        Ok(None)
    }

    /// The next [`SqlTx::QUEUED_PAGE`] queued jobs in claim order (priority descending, then
    /// submission) after the job `(priority, seq)`, or from the first one.
    async fn queued_page(&mut self, after: Option<(i64, i64)>) -> Result<Vec<Queued>, StoreError>;

    /// The footprints of the queued jobs submitted before job `seq` that come after it in
    /// claim order (priority below `priority`).
    async fn earlier_lower_priority_footprints(
        &mut self,
        seq: i64,
        priority: i64,
    ) -> Result<Vec<Option<String>>, StoreError>;

    /// Claims queued job `seq` at `started` (attempts + 1, event + 1); `None` when it is not
    /// queued, or another transaction holds its row.
    async fn claim_seq(&mut self, seq: i64, started: i64) -> Result<Option<Job>, StoreError>;

    /// Stores the progress (JSON) of running job `id`; returns whether a cancel was requested
    /// and the job's webhook subscriptions (JSON), `None` when refused.
    async fn set_progress(&mut self, id: &JobId, progress: &str) -> Result<Option<(bool, String)>, StoreError>;

    /// Ends running job `id` with `row` at `completed` (event + 1, cancel request cleared,
    /// a completed job's progress at 100 %); `None` when refused.
    async fn finish_row(&mut self, id: &JobId, row: &FinishRow, completed: i64) -> Result<Option<Job>, StoreError>;

    /// Stores ffmpeg's log of job `seq`, replacing an earlier one.
    async fn set_log(&mut self, seq: i64, log: &str) -> Result<(), StoreError>;

    /// Cancels queued job `id` at `completed` (event + 1), or flags running job `id` for its
    /// worker; `None` when refused.
    async fn cancel_row(&mut self, id: &JobId, completed: i64) -> Result<Option<Job>, StoreError>;

    /// Ends, at `completed`, the running jobs (this process's or node's) that must not run
    /// again: cancelled when a cancel was pending, else failed with error "interrupted" when
    /// they used `max_attempts` attempts.
    async fn recover_fail(&mut self, max_attempts: u32, completed: i64) -> Result<Vec<Job>, StoreError>;

    /// Puts the other running jobs (this process's or node's) back in the queue; returns
    /// their `(seq, id)`.
    async fn recover_requeue(&mut self) -> Result<Vec<(i64, String)>, StoreError>;

    /// Job `id` as the transaction sees it.
    async fn job(&mut self, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// When each URL last got a `job.progress` delivery of job `id` (unix microseconds).
    async fn last_progress_deliveries(&mut self, id: &JobId) -> Result<Vec<(String, Option<i64>)>, StoreError>;

    /// Writes `deliveries` into the outbox (each due at its `created_at`); called with at
    /// least one.
    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError>;
}

/// A footprint as stored (JSON).
pub(crate) fn decode_footprint(text: &str) -> Result<Footprint, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("footprint", e))
}

fn decode(text: Option<&str>) -> Result<Option<Footprint>, StoreError> {
    text.map(decode_footprint).transpose()
}

/// Writes `deliveries` into the outbox (nothing when there are none).
async fn write_outbox(tx: &mut impl SqlTx, deliveries: &[Delivery]) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    tx.insert_deliveries(deliveries).await
}

/// Writes the deliveries of `job`'s transition into its current status, at `at`.
pub(crate) async fn write_status_outbox(tx: &mut impl SqlTx, job: &Job, at: OffsetDateTime) -> Result<(), StoreError> {
    match WebhookEvent::of_status(job.status) {
        Some(event) => write_outbox(tx, &webhook::outbox(job, event, at)).await,
        None => Ok(()),
    }
}

/// Writes the `job.progress` deliveries of running job `id` that are due (at most one per
/// [`webhook::PROGRESS_INTERVAL`] per URL).
async fn write_progress_outbox(tx: &mut impl SqlTx, id: &JobId) -> Result<(), StoreError> {
    let (at, at_micros) = now();
    let Some(job) = tx.job(id).await? else { return Ok(()) };
    let last = tx.last_progress_deliveries(id).await?;
    let mut due = webhook::outbox(&job, WebhookEvent::Progress, at);
    due.retain(|d| {
        let previous = last.iter().find(|(url, _)| *url == d.url).and_then(|(_, micros)| *micros);
        // Compared in stored microseconds: the interval in whole microseconds.
        previous.is_none_or(|p| at_micros - p >= webhook::PROGRESS_INTERVAL.as_micros() as i64)
    });
    write_outbox(tx, &due).await
}

/// Claims the first queued job in claim order that may start now on a node with `labels`, by
/// the rule of [`JobStore::claim_next`](super::JobStore::claim_next): the labels cover its
/// `requires`, and its footprint conflicts with no running job's and no earlier-submitted
/// queued job's (a job this node may not take still holds back the later jobs it conflicts
/// with). `None` when there is none. The store
/// makes sure no other claim runs at the same time (SQLite's write lock, PostgreSQL's
/// advisory lock), so the footprints read here cannot change before the claim commits.
async fn claim_in<T: SqlTx>(tx: &mut T, started: i64, labels: &[String]) -> Result<Option<Job>, StoreError> {
    let running = tx.running_footprints().await?;
    if running.is_empty()
        && let Some(job) = tx.claim_if_oldest(started, labels).await?
    {
        // Nothing runs and the first job in claim order is the oldest queued one: it waits
        // for nobody (the common case, one statement).
        return Ok(Some(job));
    }
    let running = running.iter().map(|f| decode(f.as_deref())).collect::<Result<Vec<_>, _>>()?;
    // Queued jobs in claim order, page by page (usually the first can start). `seen` holds the
    // footprints of the jobs before the candidate in claim order: with the queued jobs of lower
    // priority submitted earlier (queried per candidate), every job it may wait for.
    let mut seen: Vec<(i64, Option<Footprint>)> = Vec::new();
    let mut after = None;
    loop {
        let page = tx.queued_page(after).await?;
        let full = page.len() == T::QUEUED_PAGE;
        for Queued { seq, priority, footprint, requires } in page {
            after = Some((priority, seq));
            let footprint = decode(footprint.as_deref())?;
            let mut free = labels_cover(labels, &labels_of(&requires, "requires")?)
                && running.iter().all(|theirs| !footprints_conflict(footprint.as_ref(), theirs.as_ref()))
                && seen.iter().all(|(s, theirs)| *s > seq || !footprints_conflict(footprint.as_ref(), theirs.as_ref()));
            if free {
                for theirs in tx.earlier_lower_priority_footprints(seq, priority).await? {
                    if footprints_conflict(footprint.as_ref(), decode(theirs.as_deref())?.as_ref()) {
                        free = false;
                        break;
                    }
                }
            }
            if free && let Some(job) = tx.claim_seq(seq, started).await? {
                return Ok(Some(job));
            }
            seen.push((seq, footprint));
        }
        if !full {
            return Ok(None);
        }
    }
}

/// [`JobStore::claim_next`](super::JobStore::claim_next): claims the first queued job that may
/// start now on a node with `labels` ([`claim_in`]'s rule) at `started`, with its
/// `job.started` deliveries.
pub(crate) async fn claim<T: SqlTx>(tx: &mut T, started: i64, labels: &[String]) -> Result<Option<Job>, StoreError> {
    let Some(job) = claim_in(tx, started, labels).await? else { return Ok(None) };
    let at = job.started_at.unwrap_or_else(OffsetDateTime::now_utc);
    write_status_outbox(tx, &job, at).await?;
    Ok(Some(job))
}

/// [`JobStore::update_progress`](super::JobStore::update_progress): stores the progress
/// (JSON) of running job `id`, with its due `job.progress` deliveries when the job asked for
/// them; returns whether a cancel was requested, `None` when refused.
pub(crate) async fn update_progress(
    tx: &mut impl SqlTx,
    id: &JobId,
    progress: &str,
) -> Result<Option<bool>, StoreError> {
    let Some((cancel, webhooks)) = tx.set_progress(id, progress).await? else { return Ok(None) };
    // Only a job that lists job.progress pays for the outbox check.
    if webhooks.contains(WebhookEvent::Progress.as_str()) {
        write_progress_outbox(tx, id).await?;
    }
    Ok(Some(cancel))
}

/// [`JobStore::finish`](super::JobStore::finish): ends running job `id` with `row` at
/// `completed`, stores `log` (unless empty) and the status's deliveries; `None` when refused.
pub(crate) async fn finish(
    tx: &mut impl SqlTx,
    id: &JobId,
    row: &FinishRow,
    completed: i64,
    log: &str,
) -> Result<Option<Job>, StoreError> {
    let Some(job) = tx.finish_row(id, row, completed).await? else { return Ok(None) };
    if !log.is_empty() {
        tx.set_log(job.seq, log).await?;
    }
    write_status_outbox(tx, &job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
    Ok(Some(job))
}

/// [`JobStore::cancel`](super::JobStore::cancel): cancels queued job `id` at `completed`
/// (with its `job.cancelled` deliveries), or flags running job `id` (its worker's `finish`
/// writes the event); `None` when refused.
pub(crate) async fn cancel(
    tx: &mut impl SqlTx,
    id: &JobId,
    completed: i64,
) -> Result<Option<CancelOutcome>, StoreError> {
    let Some(job) = tx.cancel_row(id, completed).await? else { return Ok(None) };
    if job.status == JobStatus::Cancelled {
        write_status_outbox(tx, &job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
        return Ok(Some(CancelOutcome::Cancelled(job)));
    }
    Ok(Some(CancelOutcome::Requested(job)))
}

/// [`JobStore::recover`](super::JobStore::recover): cancels the running jobs whose cancel was
/// pending and fails those past `max_attempts`, at `completed` (with their deliveries), and
/// re-queues the others.
pub(crate) async fn recover(tx: &mut impl SqlTx, max_attempts: u32, completed: i64) -> Result<Recovery, StoreError> {
    let ended = tx.recover_fail(max_attempts, completed).await?;
    for job in &ended {
        write_status_outbox(tx, job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
    }
    let (mut failed, mut cancelled) = (Vec::<(i64, String)>::new(), Vec::<(i64, String)>::new());
    for job in ended {
        let list = if job.status == JobStatus::Cancelled { &mut cancelled } else { &mut failed };
        list.push((job.seq, job.id.to_string()));
    }
    let mut requeued = tx.recover_requeue().await?;
    let ids = |rows: &mut Vec<(i64, String)>| -> Result<Vec<JobId>, StoreError> {
        rows.sort_unstable();
        rows.iter().map(|(_, id)| JobId::parse(id).map_err(|e| corrupt("id", e))).collect()
    };
    Ok(Recovery { requeued: ids(&mut requeued)?, failed: ids(&mut failed)?, cancelled: ids(&mut cancelled)? })
}

/// Why a transition `action` on `id` matched no row, from the job's stored status (`None`:
/// no such job): [`StoreError::NotFound`] or [`StoreError::Conflict`].
pub(crate) fn refusal(id: &JobId, action: &'static str, status: Result<Option<String>, StoreError>) -> StoreError {
    match status {
        Err(e) => e,
        Ok(None) => StoreError::NotFound(id.clone()),
        Ok(Some(status)) => match status.parse::<JobStatus>() {
            Ok(status) => StoreError::Conflict { id: id.clone(), status, action },
            Err(e) => corrupt("status", e),
        },
    }
}

/// [`JobStore::interrupted_runs`](super::JobStore::interrupted_runs) from `(id, run record)`
/// rows.
pub(crate) fn interrupted_runs(rows: Vec<(String, Option<String>)>) -> Result<Vec<InterruptedRun>, StoreError> {
    rows.into_iter()
        .map(|(id, run)| {
            Ok(InterruptedRun {
                id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
                run: run
                    .as_deref()
                    .map(serde_json::from_str::<RunRecord>)
                    .transpose()
                    .map_err(|e| corrupt("run", e))?,
            })
        })
        .collect()
}

/// [`JobStore::counts`](super::JobStore::counts) from `(status, count)` rows.
pub(crate) fn counts(rows: Vec<(String, i64)>) -> Result<StatusCounts, StoreError> {
    rows.into_iter()
        .map(|(status, n)| {
            let status = status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?;
            Ok((status, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// [`JobStore::active_footprints`](super::JobStore::active_footprints) from `(id, status,
/// footprint)` rows.
pub(crate) fn active_footprints(
    rows: Vec<(String, String, Option<String>)>,
) -> Result<Vec<ActiveFootprint>, StoreError> {
    rows.into_iter()
        .map(|(id, status, footprint)| {
            Ok(ActiveFootprint {
                id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
                status: status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?,
                footprint: decode(footprint.as_deref())?,
            })
        })
        .collect()
}
