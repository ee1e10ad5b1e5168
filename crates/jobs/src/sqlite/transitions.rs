//! The [`JobStore`] transitions of [`SqliteStore`]: each one conditional statement (or one
//! [`WriteTx`]), from the statements in [`sql`](super::sql). Every write's outcome feeds the
//! store's write health; a write that returns `Ok` has committed.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::batch::{PendingGet, PendingInsert};
use super::rows::{self, DeliveryRow, JobRow, corrupt, db, encode_deliveries, json, micros, micros_ceil, now};
use super::sql::*;
use super::write::{Verdict, WriteTx};
use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration, labels_cover};
use crate::store::{
    ActiveFootprint, CancelOutcome, InterruptedRun, JobStore, ListQuery, Outcome, Recovery, RunRecord, StatusCounts,
    StoreError, footprints_conflict,
};
use crate::webhook::{self, Delivery, DeliveryAttempt, DeliveryId, NextStep, WebhookEvent};

fn decode_footprint(text: &str) -> Result<ffmpeg_core::footprint::Footprint, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("footprint", e))
}

/// Inside `tx`: writes `deliveries` into the outbox (nothing when there are none).
async fn write_outbox(tx: &mut WriteTx, deliveries: &[Delivery]) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_DELIVERIES).bind(encode_deliveries(deliveries)?).execute(tx.conn()).await.map_err(db)?;
    Ok(())
}

/// Inside `tx`: writes the deliveries of `job`'s transition into its current status, at `at`.
async fn write_status_outbox(tx: &mut WriteTx, job: &Job, at: OffsetDateTime) -> Result<(), StoreError> {
    match WebhookEvent::of_status(job.status) {
        Some(event) => write_outbox(tx, &webhook::outbox(job, event, at)).await,
        None => Ok(()),
    }
}

/// Inside `tx`: the `job.progress` deliveries of running job `id` that are due (at most one
/// per [`webhook::PROGRESS_INTERVAL`] per URL), written.
async fn write_progress_outbox(tx: &mut WriteTx, id: &JobId) -> Result<(), StoreError> {
    let (at, at_micros) = now();
    let rows = sqlx::query_as::<_, JobRow>(GET).bind(id.as_str()).fetch_all(tx.conn()).await.map_err(db)?;
    let Some(job) = rows.into_iter().next().map(Job::try_from).transpose()? else { return Ok(()) };
    let last: Vec<(String, i64)> =
        sqlx::query_as(LAST_PROGRESS_DELIVERIES).bind(id.as_str()).fetch_all(tx.conn()).await.map_err(db)?;
    let mut due = webhook::outbox(&job, WebhookEvent::Progress, at);
    due.retain(|d| {
        let previous = last.iter().find(|(url, _)| *url == d.url).map(|(_, micros)| *micros);
        // Compared in stored microseconds: the interval in whole microseconds.
        previous.is_none_or(|p| at_micros - p >= webhook::PROGRESS_INTERVAL.as_micros() as i64)
    });
    write_outbox(tx, &due).await
}

/// Inside `tx`: claims the first queued job (in claim order) that may start now, by the rule
/// of [`JobStore::claim_next`]: its footprint conflicts with no running job's and no
/// earlier-submitted queued job's. `None` when there is none. Every writing statement runs to
/// its end.
async fn claim_in(tx: &mut WriteTx, started: i64, labels: &[String]) -> Result<Option<Job>, StoreError> {
    type Footprint = ffmpeg_core::footprint::Footprint;
    let decode = |text: Option<String>| text.as_deref().map(decode_footprint).transpose();
    let running: Vec<Option<String>> = sqlx::query_scalar(RUNNING_FOOTPRINTS).fetch_all(tx.conn()).await.map_err(db)?;
    if running.is_empty() {
        // Nothing runs and the first job in claim order is the oldest queued one: it waits for
        // nobody (the common case, one statement).
        let rows = sqlx::query_as::<_, JobRow>(CLAIM_IF_OLDEST)
            .bind(started)
            .bind(json(&labels)?)
            .fetch_all(tx.conn())
            .await
            .map_err(db)?;
        if let Some(row) = rows.into_iter().next() {
            return Job::try_from(row).map(Some);
        }
    }
    let running = running.into_iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    // Queued jobs in claim order, one query each (usually the first can start). `seen` holds
    // the footprints of the jobs before the candidate in claim order: with the queued jobs of
    // lower priority submitted earlier (queried per candidate), every job it may wait for.
    let mut seen: Vec<(i64, Option<Footprint>)> = Vec::new();
    let mut next = sqlx::query_as::<_, (i64, i64, Option<String>, String)>(QUEUED_FIRST)
        .fetch_all(tx.conn())
        .await
        .map_err(db)?
        .pop();
    while let Some((seq, priority, footprint, requires)) = next {
        let footprint = decode(footprint)?;
        // A job this node may not take still holds back the later jobs it conflicts with.
        let mut free = labels_cover(labels, &rows::labels(&requires, "requires")?)
            && running.iter().all(|theirs| !footprints_conflict(footprint.as_ref(), theirs.as_ref()))
            && seen.iter().all(|(s, theirs)| *s > seq || !footprints_conflict(footprint.as_ref(), theirs.as_ref()));
        if free {
            let earlier: Vec<Option<String>> = sqlx::query_scalar(EARLIER_LOWER_PRIORITY_FOOTPRINTS)
                .bind(seq)
                .bind(priority)
                .fetch_all(tx.conn())
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
            let rows = sqlx::query_as::<_, JobRow>(CLAIM_SEQ)
                .bind(started)
                .bind(seq)
                .fetch_all(tx.conn())
                .await
                .map_err(db)?;
            return rows.into_iter().next().map(Job::try_from).transpose();
        }
        seen.push((seq, footprint));
        next = sqlx::query_as::<_, (i64, i64, Option<String>, String)>(QUEUED_AFTER)
            .bind(priority)
            .bind(seq)
            .fetch_all(tx.conn())
            .await
            .map_err(db)?
            .pop();
    }
    Ok(None)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let stopped = || StoreError::Database("the store's writer task has stopped".into());
        let metadata = json(&options.metadata)?;
        let footprint = json(&options.footprint)?;
        let webhooks = json(&options.webhooks)?;
        // The timeout is stored as an SQLite INTEGER (i64); the seq is assigned when stored.
        let options =
            SubmitOptions { timeout_seconds: options.timeout_seconds.map(|t| t.min(i64::MAX as u64)), ..options };
        let job = Job::new_queued(command, options, 0, now().0);
        let (reply, stored) = oneshot::channel();
        self.inserts.send(PendingInsert { job, metadata, footprint, webhooks, reply }).await.map_err(|_| stopped())?;
        let job = stored.await.map_err(|_| stopped())??;
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let stopped = || StoreError::Database("the store's read tasks have stopped".into());
        let (reply, found) = oneshot::channel();
        self.gets.send(PendingGet { id: id.clone(), reply }).await.map_err(|_| stopped())?;
        found.await.map_err(|_| stopped())?
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
                    .fetch_all(&self.reader)
                    .await
            }
            None => sqlx::query_as::<_, JobRow>(LIST).bind(after).bind(limit).fetch_all(&self.reader).await,
        }
        .map_err(db)?;
        rows::jobs(rows)
    }

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let (_, started) = now();
        let result = async {
            // `BEGIN IMMEDIATE` takes SQLite's write lock first: the footprints read below
            // cannot change (in this process or another) before the claim commits.
            let mut tx = WriteTx::begin(&self.writer).await?;
            let claimed = match claim_in(&mut tx, started, labels).await {
                Ok(Some(job)) => {
                    let at = job.started_at.unwrap_or_else(OffsetDateTime::now_utc);
                    write_status_outbox(&mut tx, &job, at).await.map(|()| Some(job))
                }
                other => other,
            };
            match claimed {
                Ok(Some(job)) => {
                    tx.commit().await?;
                    Ok(Some(job))
                }
                Ok(None) => {
                    tx.rollback().await;
                    Ok(None)
                }
                Err(e) => {
                    tx.rollback().await;
                    Err(e)
                }
            }
        }
        .await;
        self.health.record(&result);
        result
    }

    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        let result = sqlx::query(RECORD_RUN)
            .bind(id.as_str())
            .bind(i64::from(run.attempt))
            .bind(json(run)?)
            .execute(&self.writer)
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
            sqlx::query_as(INTERRUPTED_RUNS).fetch_all(&self.writer).await.map_err(db)?;
        rows.into_iter()
            .map(|(id, run)| {
                Ok(InterruptedRun {
                    id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
                    run: run
                        .map(|r| serde_json::from_str::<RunRecord>(&r))
                        .transpose()
                        .map_err(|e| corrupt("run", e))?,
                })
            })
            .collect()
    }

    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError> {
        let run: Option<String> =
            sqlx::query_scalar(PREVIOUS_RUN).bind(id.as_str()).fetch_optional(&self.reader).await.map_err(db)?;
        run.map(|r| serde_json::from_str::<RunRecord>(&r)).transpose().map_err(|e| corrupt("run", e))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let progress = json(progress)?;
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let updated = sqlx::query_as::<_, (bool, String)>(UPDATE_PROGRESS)
                .bind(id.as_str())
                .bind(progress)
                .fetch_all(tx.conn())
                .await
                .map_err(db);
            let cancel = match updated.map(|mut rows| rows.pop()) {
                Ok(Some((cancel, webhooks))) => {
                    // Only a job that lists job.progress pays for the outbox check.
                    let wanted = webhooks.contains(WebhookEvent::Progress.as_str());
                    if wanted && let Err(e) = write_progress_outbox(&mut tx, id).await {
                        tx.rollback().await;
                        return Err(e);
                    }
                    cancel
                }
                Ok(None) => {
                    tx.rollback().await;
                    return Ok(None);
                }
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            };
            tx.commit().await?;
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
        let (status, output_files, outputs, error) = match outcome {
            Outcome::Completed { output_files, outputs } => {
                (JobStatus::Completed, Some(json(&output_files)?), Some(json(&outputs)?), None)
            }
            Outcome::Failed { error } => (JobStatus::Failed, None, None, Some(error)),
            Outcome::Cancelled => (JobStatus::Cancelled, None, None, None),
        };
        let (_, completed) = now();
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let row = sqlx::query_as::<_, JobRow>(FINISH)
                .bind(id.as_str())
                .bind(status.as_str())
                .bind(completed)
                .bind(output_files)
                .bind(error)
                .bind(outputs)
                .fetch_all(tx.conn())
                .await
                .map_err(db);
            let job = match row.and_then(|mut rows| rows.pop().map(Job::try_from).transpose()) {
                Ok(Some(job)) => job,
                Ok(None) => {
                    // Refused: nothing changed. Roll back before `refusal` needs the (in
                    // memory: only) connection.
                    tx.rollback().await;
                    return Ok(None);
                }
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            };
            if !log.is_empty()
                && let Err(e) = sqlx::query(SET_LOG).bind(job.seq).bind(log).execute(tx.conn()).await
            {
                tx.rollback().await;
                return Err(db(e));
            }
            let at = job.completed_at.unwrap_or_else(OffsetDateTime::now_utc);
            if let Err(e) = write_status_outbox(&mut tx, &job, at).await {
                tx.rollback().await;
                return Err(e);
            }
            tx.commit().await?;
            Ok(Some(job))
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(job) => {
                // A job this one's footprint held back may start now.
                self.wake();
                Ok(job)
            }
            None => Err(self.refusal(id, "finish").await),
        }
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let log: Option<Option<String>> =
            sqlx::query_scalar(LOG).bind(id.as_str()).fetch_optional(&self.reader).await.map_err(db)?;
        Ok(log.map(Option::unwrap_or_default))
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let (_, completed) = now();
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let rows = sqlx::query_as::<_, JobRow>(CANCEL)
                .bind(id.as_str())
                .bind(completed)
                .fetch_all(tx.conn())
                .await
                .map_err(db);
            let job = match rows.and_then(|mut rows| rows.pop().map(Job::try_from).transpose()) {
                Ok(Some(job)) => job,
                Ok(None) => {
                    tx.rollback().await;
                    return Ok(None);
                }
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            };
            // A queued job is cancelled now (its event is written with it); a running one
            // only flagged, and its worker's `finish` writes the event.
            if job.status == JobStatus::Cancelled {
                let at = job.completed_at.unwrap_or_else(OffsetDateTime::now_utc);
                if let Err(e) = write_status_outbox(&mut tx, &job, at).await {
                    tx.rollback().await;
                    return Err(e);
                }
            }
            tx.commit().await?;
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
        let result = sqlx::query(REQUEUE).bind(id.as_str()).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "requeue").await);
        }
        self.wake();
        Ok(())
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let result = sqlx::query(DELETE).bind(id.as_str()).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "delete").await);
        }
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let (_, completed) = now();
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let failed = sqlx::query_as::<_, JobRow>(RECOVER_FAIL)
                .bind(i64::from(max_attempts))
                .bind(completed)
                .fetch_all(tx.conn())
                .await
                .map_err(db)
                .and_then(rows::jobs);
            let failed = match failed {
                Ok(failed) => failed,
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            };
            for job in &failed {
                let at = job.completed_at.unwrap_or_else(OffsetDateTime::now_utc);
                if let Err(e) = write_status_outbox(&mut tx, job, at).await {
                    tx.rollback().await;
                    return Err(e);
                }
            }
            let failed: Vec<(i64, String)> = failed.into_iter().map(|j| (j.seq, j.id.to_string())).collect();
            let requeued = match sqlx::query_as::<_, (i64, String)>(RECOVER_REQUEUE).fetch_all(tx.conn()).await {
                Ok(requeued) => requeued,
                Err(e) => {
                    tx.rollback().await;
                    return Err(db(e));
                }
            };
            tx.commit().await?;
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
        if !recovery.requeued.is_empty() {
            self.wake();
        }
        Ok(recovery)
    }

    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let result = sqlx::query(PURGE).bind(micros_ceil(cutoff)).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        let purged = result?.rows_affected();
        // Finished deliveries go with the jobs of their time; pending ones are still sent.
        let result = sqlx::query(PURGE_DELIVERIES).bind(micros_ceil(cutoff)).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        result?;
        Ok(purged)
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&self.reader).await.map_err(db)?;
        rows.into_iter()
            .map(|(status, n)| {
                let status = status.parse::<JobStatus>().map_err(|e| corrupt("status", e))?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as(ACTIVE_FOOTPRINTS).fetch_all(&self.reader).await.map_err(db)?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(db)?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = now + lease;
        let result = sqlx::query_as::<_, DeliveryRow>(CLAIM_DELIVERIES)
            .bind(micros(now))
            .bind(micros(until))
            .bind(i64::from(limit))
            .bind(json(&skip_urls)?)
            .fetch_all(&self.writer)
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
            .execute(&self.writer)
            .await
            .map_err(db);
        self.health.record(&result);
        Ok(result?.rows_affected() == 1)
    }

    async fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> =
            sqlx::query_as(DELIVERIES).bind(id.as_str()).fetch_all(&self.reader).await.map_err(db)?;
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
        let result = sqlx::query(PROBE).bind(at).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        result.map(drop)
    }
}
