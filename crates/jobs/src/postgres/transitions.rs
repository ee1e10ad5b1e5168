//! The [`JobStore`] transitions of [`PgStore`], from the statements in [`sql`](super::sql).

use std::time::Duration;

use async_trait::async_trait;
use ffmpeg_core::footprint::Footprint;
use time::OffsetDateTime;

use super::sql::*;
use super::{PgStore, db};
use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration, labels_cover};
use crate::sqlite::rows::{self, DeliveryRow, JobRow, corrupt, json, micros, micros_ceil, micros_floor, now};
use crate::sqlite::write::Verdict;
use crate::store::{
    ActiveFootprint, CancelOutcome, InterruptedRun, JobStore, ListQuery, Outcome, Recovery, RunRecord, StatusCounts,
    StoreError, footprints_conflict,
};
use crate::webhook::{self, Delivery, DeliveryAttempt, DeliveryId, NextStep, SubscriptionSource, WebhookEvent};

/// Queued jobs read per page while looking for one that may start.
const CLAIM_PAGE: i64 = 64;

fn decode_footprint(text: &str) -> Result<Footprint, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("footprint", e))
}

/// PostgreSQL's TEXT cannot hold NUL: an error message keeps every other character, a NUL
/// becomes U+FFFD (the log, BYTEA, keeps it).
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { s.replace('\0', "\u{fffd}").into() } else { s.into() }
}

/// Inside `tx`: writes `deliveries` into the outbox.
async fn write_outbox(tx: &mut sqlx::PgConnection, deliveries: &[Delivery]) -> Result<(), StoreError> {
    for d in deliveries {
        let source = match d.source {
            SubscriptionSource::Job => "job",
            SubscriptionSource::Server => "server",
        };
        sqlx::query(INSERT_DELIVERY)
            .bind(d.id.as_str())
            .bind(d.job_id.as_str())
            .bind(&d.url)
            .bind(source)
            .bind(d.event.as_str())
            .bind(micros_floor(d.created_at))
            .bind(json(&d.job)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Inside `tx`: writes the deliveries of `job`'s transition into its current status, at `at`.
pub(super) async fn write_status_outbox(
    tx: &mut sqlx::PgConnection,
    job: &Job,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    match WebhookEvent::of_status(job.status) {
        Some(event) => write_outbox(tx, &webhook::outbox(job, event, at)).await,
        None => Ok(()),
    }
}

/// Inside `tx`: the `job.progress` deliveries of running job `id` that are due (at most one
/// per [`webhook::PROGRESS_INTERVAL`] per URL), written.
async fn write_progress_outbox(tx: &mut sqlx::PgConnection, id: &JobId) -> Result<(), StoreError> {
    let (at, at_micros) = now();
    let row: Option<JobRow> = sqlx::query_as(GET).bind(id.as_str()).fetch_optional(&mut *tx).await.map_err(db)?;
    let Some(job) = row.map(Job::try_from).transpose()? else { return Ok(()) };
    let last: Vec<(String, Option<i64>)> =
        sqlx::query_as(LAST_PROGRESS_DELIVERIES).bind(id.as_str()).fetch_all(&mut *tx).await.map_err(db)?;
    let mut due = webhook::outbox(&job, WebhookEvent::Progress, at);
    due.retain(|d| {
        let previous = last.iter().find(|(url, _)| *url == d.url).and_then(|(_, micros)| *micros);
        previous.is_none_or(|p| at_micros - p >= webhook::PROGRESS_INTERVAL.as_micros() as i64)
    });
    write_outbox(tx, &due).await
}

impl PgStore {
    /// Inside `tx` (claims locked): claims the first queued job in claim order that may start
    /// now, by the rule of [`JobStore::claim_next`]: its footprint conflicts with no running
    /// job's and no earlier-submitted queued job's (the SQLite store's `claim_in`, read page by
    /// page).
    async fn claim_in(
        &self,
        tx: &mut sqlx::PgConnection,
        started: i64,
        labels: &[String],
    ) -> Result<Option<Job>, StoreError> {
        let decode = |text: Option<String>| text.as_deref().map(decode_footprint).transpose();
        let running: Vec<Option<String>> =
            sqlx::query_scalar(RUNNING_FOOTPRINTS).fetch_all(&mut *tx).await.map_err(db)?;
        let running = running.into_iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        // The footprints of the jobs before the candidate in claim order: with the queued jobs
        // of lower priority submitted earlier (queried per candidate), every job it may wait for.
        let mut seen: Vec<(i64, Option<Footprint>)> = Vec::new();
        let mut after = (i32::MAX, 0_i64);
        loop {
            let page: Vec<(i32, i64, Option<String>, String)> = sqlx::query_as(QUEUED_PAGE)
                .bind(after.0)
                .bind(after.1)
                .bind(CLAIM_PAGE)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let full = page.len() == CLAIM_PAGE as usize;
            for (priority, seq, footprint, requires) in page {
                after = (priority, seq);
                let footprint = decode(footprint)?;
                // A job this node may not take still holds back the later jobs it conflicts with.
                let mut free = labels_cover(labels, &rows::labels(&requires, "requires")?)
                    && running.iter().all(|theirs| !footprints_conflict(footprint.as_ref(), theirs.as_ref()))
                    && seen
                        .iter()
                        .all(|(s, theirs)| *s > seq || !footprints_conflict(footprint.as_ref(), theirs.as_ref()));
                if free {
                    let earlier: Vec<Option<String>> = sqlx::query_scalar(EARLIER_LOWER_PRIORITY_FOOTPRINTS)
                        .bind(seq)
                        .bind(priority)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?;
                    for theirs in earlier {
                        if footprints_conflict(footprint.as_ref(), decode(theirs)?.as_ref()) {
                            free = false;
                            break;
                        }
                    }
                }
                if free {
                    let rows: Vec<JobRow> = sqlx::query_as(CLAIM_SEQ)
                        .bind(seq)
                        .bind(started)
                        .bind(&self.settings.node_id)
                        .bind(self.settings.lease.as_secs_f64())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?;
                    if let Some(row) = rows.into_iter().next() {
                        return Job::try_from(row).map(Some);
                    }
                }
                seen.push((seq, footprint));
            }
            if !full {
                return Ok(None);
            }
        }
    }

    /// The attempt this store holds `id` for, or the refusal of `action`.
    async fn held_attempt(&self, id: &JobId, action: &'static str) -> Result<i64, StoreError> {
        match self.attempt(id) {
            Some(attempt) => Ok(attempt),
            None => Err(self.refusal(id, action).await),
        }
    }
}

#[async_trait]
impl JobStore for PgStore {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let metadata = json(&options.metadata)?;
        let footprint = json(&options.footprint)?;
        let webhooks = json(&options.webhooks)?;
        let requires = json(&options.requires)?;
        let options =
            SubmitOptions { timeout_seconds: options.timeout_seconds.map(|t| t.min(i64::MAX as u64)), ..options };
        let mut job = Job::new_queued(command, options, 0, now().0);
        let timeout = job.timeout_seconds.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let result = sqlx::query_scalar::<_, i64>(INSERT)
            .bind(job.id.as_str())
            .bind(job.command.as_str())
            .bind(job.priority)
            .bind(timeout)
            .bind(metadata)
            .bind(micros_floor(job.created_at))
            .bind(footprint)
            .bind(webhooks)
            .bind(requires)
            .fetch_one(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        job.seq = result?;
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(GET).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db)?;
        row.map(Job::try_from).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let after = query.after_seq.unwrap_or(i64::MIN);
        let limit = i64::from(query.limit);
        let rows = match query.status {
            Some(status) => {
                sqlx::query_as::<_, JobRow>(LIST_STATUS)
                    .bind(status.as_str())
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => sqlx::query_as::<_, JobRow>(LIST).bind(after).bind(limit).fetch_all(&self.pool).await,
        }
        .map_err(db)?;
        rows::jobs(rows)
    }

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let (_, started) = now();
        let result = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(LOCK_CLAIMS).bind(CLAIM_LOCK).execute(&mut *tx).await.map_err(db)?;
            // On an error the transaction is rolled back when dropped.
            let claimed = self.claim_in(&mut tx, started, labels).await?;
            if let Some(job) = &claimed {
                let at = job.started_at.unwrap_or_else(OffsetDateTime::now_utc);
                write_status_outbox(&mut tx, job, at).await?;
                tx.commit().await.map_err(db)?;
            } else {
                tx.rollback().await.map_err(db)?;
            }
            Ok(claimed)
        }
        .await;
        self.health.record(&result);
        let claimed = result?;
        if let Some(job) = &claimed {
            self.hold(&job.id, job.attempts);
        }
        Ok(claimed)
    }

    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        let result = sqlx::query(RECORD_RUN)
            .bind(id.as_str())
            .bind(i64::from(run.attempt))
            .bind(json(run)?)
            .bind(&self.settings.node_id)
            .execute(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "record run").await);
        }
        Ok(())
    }

    async fn interrupted_runs(&self) -> Result<Vec<InterruptedRun>, StoreError> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as(INTERRUPTED_RUNS).bind(&self.settings.node_id).fetch_all(&self.pool).await.map_err(db)?;
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

    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError> {
        let run: Option<String> =
            sqlx::query_scalar(PREVIOUS_RUN).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db)?;
        run.map(|r| serde_json::from_str::<RunRecord>(&r)).transpose().map_err(|e| corrupt("run", e))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let attempt = self.held_attempt(id, "update progress").await?;
        let progress = json(progress)?;
        let result = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row: Option<(bool, String)> = sqlx::query_as(UPDATE_PROGRESS)
                .bind(id.as_str())
                .bind(progress)
                .bind(&self.settings.node_id)
                .bind(attempt)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let Some((cancel, webhooks)) = row else { return Ok(None) };
            // Only a job that lists job.progress pays for the outbox check.
            if webhooks.contains(WebhookEvent::Progress.as_str()) {
                write_progress_outbox(&mut tx, id).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(Some(cancel))
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(cancel) => Ok(cancel),
            None => Err(self.refusal(id, "update progress").await),
        }
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        let attempt = self.held_attempt(id, "finish").await?;
        let (_, completed) = now();
        let (status, outputs, described, error) = match outcome {
            Outcome::Completed { output_files, outputs } => {
                (JobStatus::Completed, Some(json(&output_files)?), Some(json(&outputs)?), None)
            }
            Outcome::Failed { error } => (JobStatus::Failed, None, None, Some(text(&error).into_owned())),
            Outcome::Cancelled => (JobStatus::Cancelled, None, None, None),
        };
        let result = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let rows: Vec<JobRow> = sqlx::query_as(FINISH)
                .bind(id.as_str())
                .bind(status.as_str())
                .bind(completed)
                .bind(outputs)
                .bind(error)
                .bind(&self.settings.node_id)
                .bind(attempt)
                .bind(described)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let Some(row) = rows.into_iter().next() else { return Ok(None) };
            let job = Job::try_from(row)?;
            if !log.is_empty() {
                sqlx::query(SET_LOG).bind(job.seq).bind(log.as_bytes()).execute(&mut *tx).await.map_err(db)?;
            }
            write_status_outbox(&mut tx, &job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
            tx.commit().await.map_err(db)?;
            Ok(Some(job))
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(job) => {
                self.release(id);
                // A job this one's footprint held back may start now.
                self.wake();
                Ok(job)
            }
            None => Err(self.refusal(id, "finish").await),
        }
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let log: Option<Option<Vec<u8>>> =
            sqlx::query_scalar(LOG).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db)?;
        log.map(|log| String::from_utf8(log.unwrap_or_default()).map_err(|e| corrupt("log", e))).transpose()
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let (_, completed) = now();
        let result = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row: Option<JobRow> =
                sqlx::query_as(CANCEL).bind(id.as_str()).bind(completed).fetch_optional(&mut *tx).await.map_err(db)?;
            let Some(job) = row.map(Job::try_from).transpose()? else { return Ok(None) };
            // A queued job is cancelled now (its event is written with it); a running one only
            // flagged, and its node's `finish` writes the event.
            if job.status == JobStatus::Cancelled {
                write_status_outbox(&mut tx, &job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(Some(job))
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(job) if job.status == JobStatus::Cancelled => Ok(CancelOutcome::Cancelled(job)),
            Some(job) => Ok(CancelOutcome::Requested(job)),
            None => Err(self.refusal(id, "cancel").await),
        }
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        let attempt = self.held_attempt(id, "requeue").await?;
        let result = sqlx::query(REQUEUE)
            .bind(id.as_str())
            .bind(&self.settings.node_id)
            .bind(attempt)
            .execute(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "requeue").await);
        }
        self.release(id);
        self.wake();
        Ok(())
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let result = sqlx::query(DELETE).bind(id.as_str()).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "delete").await);
        }
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let (_, completed) = now();
        let node = &self.settings.node_id;
        let result = async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let failed: Vec<JobRow> = sqlx::query_as(RECOVER_FAIL)
                .bind(i64::from(max_attempts))
                .bind(completed)
                .bind(node)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let failed = rows::jobs(failed)?;
            for job in &failed {
                write_status_outbox(&mut tx, job, job.completed_at.unwrap_or_else(OffsetDateTime::now_utc)).await?;
            }
            let failed: Vec<(i64, String)> = failed.into_iter().map(|j| (j.seq, j.id.to_string())).collect();
            let requeued: Vec<(i64, String)> =
                sqlx::query_as(RECOVER_REQUEUE).bind(node).fetch_all(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok((failed, requeued))
        }
        .await;
        self.health.record(&result);
        let (mut failed, mut requeued) = result?;
        let ids = |rows: &mut Vec<(i64, String)>| -> Result<Vec<JobId>, StoreError> {
            rows.sort_unstable();
            rows.iter().map(|(_, id)| JobId::parse(id).map_err(|e| corrupt("id", e))).collect()
        };
        let recovery = Recovery { requeued: ids(&mut requeued)?, failed: ids(&mut failed)? };
        for id in recovery.requeued.iter().chain(&recovery.failed) {
            self.release(id);
        }
        if !recovery.requeued.is_empty() {
            self.wake();
        }
        Ok(recovery)
    }

    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let result = sqlx::query(PURGE).bind(micros_ceil(cutoff)).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        let purged = result?.rows_affected();
        // Finished deliveries go with the jobs of their time; pending ones are still sent.
        let result = sqlx::query(PURGE_DELIVERIES).bind(micros_ceil(cutoff)).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        result?;
        Ok(purged)
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter()
            .map(|(status, n)| {
                let status = status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as(ACTIVE_FOOTPRINTS).fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter()
            .map(|(id, status, footprint)| {
                Ok(ActiveFootprint {
                    id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
                    status: status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?,
                    footprint: footprint.as_deref().map(decode_footprint).transpose()?,
                })
            })
            .collect()
    }

    fn lease_lost(&self, id: &JobId) -> Option<tokio_util::sync::CancellationToken> {
        self.lost_token(id)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<Delivery>, StoreError> {
        let result = sqlx::query_as::<_, DeliveryRow>(CLAIM_DELIVERIES)
            .bind(micros(now))
            .bind(micros(now + lease))
            .bind(i64::from(limit))
            .bind(skip_urls)
            .fetch_all(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        let mut deliveries = result?.into_iter().map(Delivery::try_from).collect::<Result<Vec<_>, _>>()?;
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
        let result = sqlx::query(RECORD_ATTEMPT)
            .bind(id.as_str())
            .bind(json(attempt)?)
            .bind(next.state().as_str())
            .bind(next.next_attempt_at().map(micros))
            .execute(&self.pool)
            .await
            .map_err(db);
        self.health.record(&result);
        Ok(result?.rows_affected() == 1)
    }

    async fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> =
            sqlx::query_as(DELIVERIES).bind(id.as_str()).fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter().map(Delivery::try_from).collect()
    }

    async fn register_node(&self, node: &NodeRegistration) -> Result<(), StoreError> {
        self.register_node_row(node).await
    }

    async fn heartbeat_node(&self, id: &str, beat: &Heartbeat) -> Result<bool, StoreError> {
        self.heartbeat_row(id, beat).await
    }

    async fn nodes(&self, lost_after: Duration) -> Result<Vec<Node>, StoreError> {
        self.node_rows(lost_after).await
    }

    async fn node_capabilities(&self, id: &str) -> Result<Option<ffmpeg_core::capabilities::Capabilities>, StoreError> {
        self.node_capabilities_row(id).await
    }

    async fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        self.remove_node_row(id).await
    }

    async fn prune_nodes(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.prune_node_rows(older_than).await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        match self.health.verdict() {
            Verdict::Writable => return Ok(()),
            Verdict::Failing(e) => return Err(e),
            Verdict::Probe => {}
        }
        let (_, at) = now();
        let result = sqlx::query(PROBE).bind(at).execute(&self.pool).await.map_err(db);
        self.health.record(&result);
        result.map(drop)
    }
}
