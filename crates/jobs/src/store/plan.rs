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

use super::memo::Memo;
use super::{
    ActiveFootprint, CancelOutcome, ClaimMemo, Due, InterruptedRun, Outcome, Recovery, RunRecord, StatusCounts,
    StoreError, footprints_conflict,
};
use crate::model::{Job, JobId, JobStatus, SubmitOptions};
use crate::nodes::labels_cover;
use crate::sqlite::rows::{corrupt, json, now};
use crate::webhook::{self, Delivery, WebhookEvent};

/// A queued job as the claim reads it: its place in claim order, its footprint (JSON; `None`:
/// unknown), the labels it requires (a JSON array), whether it has webhook subscriptions
/// (its claim writes deliveries; a store that always claims in a transaction may say `true`),
/// and, while its [`Job::retry_at`] is ahead by the store's clock, the microseconds until then
/// (`wait`; read for the page only, `None` elsewhere).
#[derive(Debug)]
pub(crate) struct Queued {
    pub seq: i64,
    pub priority: i64,
    pub footprint: Option<String>,
    pub requires: String,
    pub hooked: bool,
    pub wait: Option<i64>,
}

/// What a claim decides on, read in one snapshot of the jobs (one statement, or one
/// transaction that no other write can interleave with): the footprints of the running jobs,
/// the first queued jobs in claim order (`page`, at most the limit asked for), and the other
/// queued jobs submitted before one of the page (`behind`: after the page in claim order, by a
/// lower priority). With them, every job a job of the page may have to wait for is known.
#[derive(Debug, Default)]
pub(crate) struct ClaimView {
    /// The running jobs: seq and footprint.
    pub running: Vec<(i64, Option<String>)>,
    pub page: Vec<Queued>,
    pub behind: Vec<Queued>,
}

impl ClaimView {
    /// Adds queued or running job `queued` to the view, as the claim-view statement of both
    /// dialects marks it: `kind` 0 for a running job (only its seq and footprint count), 1 for a job
    /// of the page, any other for one behind it.
    pub(crate) fn add(&mut self, kind: i64, queued: Queued) {
        match kind {
            0 => self.running.push((queued.seq, queued.footprint)),
            1 => self.page.push(queued),
            _ => self.behind.push(queued),
        }
    }
}

/// A job as an SQL store inserts it ([`JobStore::insert`](super::JobStore::insert)): the new
/// queued job (its `seq` 0 until stored, created now) and its JSON columns.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub job: Job,
    pub metadata: String,
    pub footprint: String,
    pub webhooks: String,
}

impl NewRow {
    /// The row of a job submitted with `command` and `options`. Its timeout is capped at
    /// `i64::MAX` seconds, the most a BIGINT holds (beyond that means "no limit" anyway).
    pub(crate) fn of(command: String, options: SubmitOptions) -> Result<NewRow, StoreError> {
        let metadata = json(&options.metadata)?;
        let footprint = json(&options.footprint)?;
        let webhooks = json(&options.webhooks)?;
        let options =
            SubmitOptions { timeout_seconds: options.timeout_seconds.map(|t| t.min(i64::MAX as u64)), ..options };
        Ok(NewRow { job: Job::new_queued(command, options, 0, now().0), metadata, footprint, webhooks })
    }

    /// The timeout as stored (seconds; `None`: no limit).
    pub(crate) fn timeout(&self) -> Option<i64> {
        self.job.timeout_seconds.map(|t| i64::try_from(t).unwrap_or(i64::MAX))
    }
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
    /// Claims the first of the queued jobs `seqs` in claim order at `started` (attempts + 1,
    /// event + 1), passing over a job that is no longer queued or whose row another
    /// transaction holds (another claim, a cancel in progress); `None` when there is none.
    async fn claim_first(&mut self, seqs: &[i64], started: i64) -> Result<Option<Job>, StoreError>;

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

/// The two steps of a claim as a store runs them: reading the queue in one snapshot, and
/// claiming one of the jobs chosen from it (with its `job.started` deliveries, atomically).
/// They may run in one transaction (SQLite) or each in its own (PostgreSQL: the read holds the
/// queue lock only for its own statements, see `postgres/mod.rs`).
#[async_trait]
pub(crate) trait ClaimSteps: Send {
    /// How many queued jobs a claim reads first ([`ClaimSteps::view`]); it reads twice as many
    /// each time none of them may start.
    const CLAIM_PAGE: usize;
    /// How many of the jobs that may start a claim offers [`ClaimSteps::claim`] at most.
    const CLAIM_CHOICES: usize;

    /// The running jobs and the first `limit` queued jobs in claim order (priority descending,
    /// then submission), with the queued jobs behind them that were submitted before one of
    /// them, all in one snapshot ([`ClaimView`]); each job of the page with its wait for its
    /// `retry_at` ([`Queued::wait`]) at `now` (unix microseconds by this process's clock: SQLite;
    /// PostgreSQL uses the database's).
    async fn view(&mut self, limit: usize, now: i64) -> Result<ClaimView, StoreError>;

    /// Claims at most `want` (at least one) of the queued jobs `seqs`, the first in claim order
    /// that no other transaction holds, at `started` ([`claim_chosen`]); returned in claim
    /// order, none when none of them could be claimed. `hooked`: one of them has webhook
    /// subscriptions ([`Queued::hooked`]); when none has, the claim writes no deliveries. A
    /// store may claim fewer than `want` (one, when `hooked`).
    async fn claim(&mut self, seqs: &[i64], hooked: bool, want: usize, started: i64) -> Result<Vec<Job>, StoreError>;
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

/// How many times a claim reads the queue again when every job it chose was taken meanwhile by
/// other claims, before it gives up (`None`; the worker waits for the next wake-up or poll).
const CLAIM_ROUNDS: usize = 8;

/// The seqs of the jobs of `view.page` that may start now on a node with `labels`, in claim
/// order, at most `max`, by the rule of [`JobStore::claim_next`](super::JobStore::claim_next):
/// the job does not wait for its `retry_at` ([`Queued::wait`]), the labels cover the job's
/// `requires`, and its footprint conflicts with no running job's and no earlier-submitted
/// queued job's (a job this node may not take, or that waits, still holds back the later
/// jobs it conflicts with). Each such job conflicts with none of the others (the later of two
/// would wait for the earlier), so any of them may start. It stops at the `max`th such job.
///
/// What does not change about a job (its footprint and labels, decoded) comes from `memo`, and
/// a job whose blocker (the running or earlier queued job that held it back at its latest
/// check, [`ClaimMemo`](super::ClaimMemo)) still holds it back in this view is passed over
/// without comparing it again: only new jobs, and jobs whose blocker ended, are compared
/// with the running and earlier queued jobs (the running ones first, then the queued ones in
/// submission order, up to the first conflict).
/// Also returns how many jobs of the page, in claim order, it went through.
fn may_start(
    view: &ClaimView,
    labels: &[String],
    max: usize,
    memo: &mut Memo,
) -> Result<(Vec<i64>, usize), StoreError> {
    for q in view.page.iter().chain(&view.behind) {
        memo.learn(q.seq, q.footprint.as_deref(), Some(&q.requires))?;
    }
    for (seq, footprint) in &view.running {
        memo.learn(*seq, footprint.as_deref(), None)?;
    }
    let mut page: Vec<&Queued> = view.page.iter().collect();
    page.sort_by_key(|q| (std::cmp::Reverse(q.priority), q.seq));
    // Every queued job of the view, in submission order: the earlier ones of a job are a prefix.
    let mut queued: Vec<i64> = view.page.iter().chain(&view.behind).map(|q| q.seq).collect();
    queued.sort_unstable();
    let running: Vec<i64> = view.running.iter().map(|(seq, _)| *seq).collect();
    let footprint = |seq: i64| memo.get(seq).and_then(|k| k.footprint.as_deref());
    let mut free = Vec::new();
    let mut checked: Vec<(i64, Option<i64>)> = Vec::new();
    let mut read = 0;
    for job in page {
        if free.len() >= max {
            break;
        }
        read += 1;
        let Some(known) = memo.get(job.seq) else { continue };
        if job.wait.is_some() || !labels_cover(labels, known.requires.as_deref().unwrap_or_default()) {
            continue;
        }
        let holds =
            |blocker: i64| running.contains(&blocker) || (blocker < job.seq && queued.binary_search(&blocker).is_ok());
        if known.blocker.is_some_and(holds) {
            continue;
        }
        let mine = known.footprint.as_deref();
        let earlier = &queued[..queued.partition_point(|&seq| seq < job.seq)];
        let blocker = running.iter().chain(earlier).copied().find(|&other| footprints_conflict(mine, footprint(other)));
        checked.push((job.seq, blocker));
        if blocker.is_none() {
            free.push(job.seq);
        }
    }
    memo.checks += checked.len() as u64;
    for (seq, blocker) in checked {
        memo.set_blocker(seq, blocker);
    }
    Ok((free, read))
}

/// [`JobStore::claim_next`](super::JobStore::claim_next) for up to `want` workers (at least
/// one) of a node with `labels`: claims the first queued jobs in claim order that may start now
/// on it ([`may_start`]'s rule), at `started`, with their `job.started` deliveries; in claim
/// order, none when there is none. Each wait for a `retry_at` it read goes into `due`, so that
/// the node's idle workers look again when the soonest one ends. What it learns of the jobs
/// it reads goes into `memo`, for the next claims ([`may_start`]); it reads as many queued jobs
/// at first as the latest claim needed.
///
/// The rule is decided on one snapshot ([`ClaimSteps::view`]); claims need not run one at a
/// time for it to hold. Of two jobs whose footprints conflict, the later-submitted one may start
/// only once the earlier one has ended, because every snapshot that holds the later one also
/// holds the earlier one (still queued or running, or ended): the store makes submission order
/// the order in which new jobs become visible (SQLite: one writer; PostgreSQL: a claim reads its
/// snapshot under a shared lock that every insert takes exclusively, see `postgres/mod.rs`).
/// So the later one never runs while the earlier one is queued or running, and the earlier one
/// never finds it running; a snapshot older than a concurrent claim only holds a job back
/// longer, never lets one start early. The jobs that may start conflict with none of each
/// other, so any number of them may be claimed at once. (The memo changes none of this: a job
/// it passes over has a blocker in the snapshot itself.)
pub(crate) async fn claim<C: ClaimSteps>(
    steps: &mut C,
    started: i64,
    labels: &[String],
    want: usize,
    due: &Due,
    memo: &ClaimMemo,
) -> Result<Vec<Job>, StoreError> {
    let want = want.max(1);
    let mut limit = C::CLAIM_PAGE.max(want).max(memo.lock().page);
    let mut rounds = 0;
    loop {
        let view = steps.view(limit, started).await?;
        for wait in view.page.iter().filter_map(|q| q.wait) {
            due.note(std::time::Duration::from_micros(u64::try_from(wait).unwrap_or(0)));
        }
        let everything = view.page.len() < limit;
        let free = {
            let mut memo = memo.lock();
            let (free, read) = may_start(&view, labels, C::CLAIM_CHOICES.max(want), &mut memo)?;
            if !free.is_empty() || everything {
                // Where the next claim starts reading: as far as this one had to.
                memo.page = read.next_multiple_of(C::CLAIM_PAGE);
            }
            let seqs = view.page.iter().chain(&view.behind).map(|q| q.seq).chain(view.running.iter().map(|(s, _)| *s));
            memo.prune(everything, view.page.len() + view.behind.len() + view.running.len(), seqs);
            free
        };
        if free.is_empty() {
            if everything {
                return Ok(Vec::new());
            }
            // Every job of the page waits: read further (rare: a long run of conflicting jobs).
            limit = limit.saturating_mul(2);
            continue;
        }
        let hooked = view.page.iter().any(|q| q.hooked && free.contains(&q.seq));
        let claimed = steps.claim(&free, hooked, want, started).await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        // Other claims took every job chosen here meanwhile: read again.
        rounds += 1;
        if rounds == CLAIM_ROUNDS {
            return Ok(Vec::new());
        }
    }
}

/// The second step of [`claim`]: claims the first of the queued jobs `seqs` in claim order
/// that no other transaction holds, at `started`, with its `job.started` deliveries; `None`
/// when none of them is still queued and free.
pub(crate) async fn claim_chosen<T: SqlTx>(tx: &mut T, seqs: &[i64], started: i64) -> Result<Option<Job>, StoreError> {
    let Some(job) = tx.claim_first(seqs, started).await? else { return Ok(None) };
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

/// [`JobStore::finish_with_progress`](super::JobStore::finish_with_progress): stores the
/// progress (JSON, when given, with its due `job.progress` deliveries), then ends running job
/// `id` as [`finish`] does, in the same transaction; `None` when refused.
pub(crate) async fn finish_with_progress(
    tx: &mut impl SqlTx,
    id: &JobId,
    progress: Option<&str>,
    row: &FinishRow,
    completed: i64,
    log: &str,
) -> Result<Option<Job>, StoreError> {
    if let Some(progress) = progress {
        // Refused (the job is not running, or not held): so is the outcome, which says why.
        update_progress(tx, id, progress).await?;
    }
    finish(tx, id, row, completed, log).await
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
