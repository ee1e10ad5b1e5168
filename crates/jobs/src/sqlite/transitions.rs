//! The [`JobStore`] transitions of [`SqliteStore`]: each one conditional statement (or one
//! [`WriteTx`] running the shared [transition plan](crate::store::plan)), from the statements
//! in [`sql`](super::sql). Every write's outcome feeds the store's write health; a write that
//! returns `Ok` has committed.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::batch::{PendingGet, PendingInsert};
use super::rows::{self, DeliveryRow, JobRow, corrupt, db, encode_deliveries, json, micros, micros_ceil, now};
use super::sql::*;
use super::write::{Verdict, WriteTx};
use crate::model::{Job, JobId, Progress, SubmitOptions};
use crate::nodes::{Heartbeat, Node, NodeRegistration};
use crate::store::plan::{self, ClaimSteps, ClaimView, FinishRow, Queued, SqlTx};
use crate::store::{
    ActiveFootprint, CancelOutcome, InterruptedRun, JobStore, ListQuery, Outcome, Recovery, RunRecord, StatusCounts,
    StoreError,
};
use crate::webhook::{Delivery, DeliveryAttempt, DeliveryId, NextStep};

/// The first row of a statement that returns jobs, decoded.
fn first(rows: Vec<JobRow>) -> Result<Option<Job>, StoreError> {
    rows.into_iter().next().map(Job::try_from).transpose()
}

/// A claim's two steps in one [`WriteTx`] (`BEGIN IMMEDIATE`: the jobs a claim reads cannot
/// change, in this process or another, before it commits).
#[async_trait]
impl ClaimSteps for WriteTx {
    /// Reads are local: a few at a time.
    const CLAIM_PAGE: usize = 8;
    /// No other claim runs meanwhile: the first job that may start is claimed.
    const CLAIM_CHOICES: usize = 1;

    async fn view(&mut self, limit: usize) -> Result<ClaimView, StoreError> {
        let rows: Vec<(i64, i64, i64, Option<String>, String)> = sqlx::query_as(CLAIM_VIEW)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.conn())
            .await
            .map_err(db)?;
        let mut view = ClaimView::default();
        for (kind, priority, seq, footprint, requires) in rows {
            let queued = Queued { seq, priority, footprint, requires };
            match kind {
                0 => view.running.push(queued.footprint),
                1 => view.page.push(queued),
                _ => view.behind.push(queued),
            }
        }
        Ok(view)
    }

    async fn claim(&mut self, seqs: &[i64], started: i64) -> Result<Option<Job>, StoreError> {
        plan::claim_chosen(self, seqs, started).await
    }
}

/// SQLite's statements for the transition plan, inside a [`WriteTx`].
#[async_trait]
impl SqlTx for WriteTx {
    async fn claim_first(&mut self, seqs: &[i64], started: i64) -> Result<Option<Job>, StoreError> {
        for &seq in seqs {
            let claimed =
                first(sqlx::query_as(CLAIM_SEQ).bind(started).bind(seq).fetch_all(self.conn()).await.map_err(db)?)?;
            if claimed.is_some() {
                return Ok(claimed);
            }
        }
        Ok(None)
    }

    async fn set_progress(&mut self, id: &JobId, progress: &str) -> Result<Option<(bool, String)>, StoreError> {
        let mut rows: Vec<(bool, String)> = sqlx::query_as(UPDATE_PROGRESS)
            .bind(id.as_str())
            .bind(progress)
            .fetch_all(self.conn())
            .await
            .map_err(db)?;
        Ok(rows.pop())
    }

    async fn finish_row(&mut self, id: &JobId, row: &FinishRow, completed: i64) -> Result<Option<Job>, StoreError> {
        let rows = sqlx::query_as(FINISH)
            .bind(id.as_str())
            .bind(row.status.as_str())
            .bind(completed)
            .bind(&row.output_files)
            .bind(&row.error)
            .bind(&row.outputs)
            .fetch_all(self.conn())
            .await
            .map_err(db)?;
        first(rows)
    }

    async fn set_log(&mut self, seq: i64, log: &str) -> Result<(), StoreError> {
        sqlx::query(SET_LOG).bind(seq).bind(log).execute(self.conn()).await.map_err(db).map(drop)
    }

    async fn cancel_row(&mut self, id: &JobId, completed: i64) -> Result<Option<Job>, StoreError> {
        first(sqlx::query_as(CANCEL).bind(id.as_str()).bind(completed).fetch_all(self.conn()).await.map_err(db)?)
    }

    async fn recover_fail(&mut self, max_attempts: u32, completed: i64) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query_as(RECOVER_FAIL)
            .bind(i64::from(max_attempts))
            .bind(completed)
            .fetch_all(self.conn())
            .await
            .map_err(db)?;
        rows::jobs(rows)
    }

    async fn recover_requeue(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        sqlx::query_as(RECOVER_REQUEUE).fetch_all(self.conn()).await.map_err(db)
    }

    async fn job(&mut self, id: &JobId) -> Result<Option<Job>, StoreError> {
        first(sqlx::query_as(GET).bind(id.as_str()).fetch_all(self.conn()).await.map_err(db)?)
    }

    async fn last_progress_deliveries(&mut self, id: &JobId) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        sqlx::query_as(LAST_PROGRESS_DELIVERIES).bind(id.as_str()).fetch_all(self.conn()).await.map_err(db)
    }

    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let encoded = encode_deliveries(deliveries)?;
        sqlx::query(INSERT_DELIVERIES).bind(encoded).execute(self.conn()).await.map_err(db).map(drop)
    }
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
            // `BEGIN IMMEDIATE` takes SQLite's write lock first: the jobs read below cannot
            // change (in this process or another) before the claim commits.
            let mut tx = WriteTx::begin(&self.writer).await?;
            let claimed = plan::claim(&mut tx, started, labels).await;
            tx.end(claimed).await
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
        let rows = sqlx::query_as(INTERRUPTED_RUNS).fetch_all(&self.writer).await.map_err(db)?;
        plan::interrupted_runs(rows)
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
            let updated = plan::update_progress(&mut tx, id, &progress).await;
            tx.end(updated).await
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(cancel) => Ok(cancel),
            None => Err(self.refusal(id, "update progress").await),
        }
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        let row = FinishRow::of(outcome)?;
        let (_, completed) = now();
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let finished = plan::finish(&mut tx, id, &row, completed, log).await;
            tx.end(finished).await
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
            let cancelled = plan::cancel(&mut tx, id, completed).await;
            tx.end(cancelled).await
        }
        .await;
        self.health.record(&result);
        match result? {
            Some(outcome) => Ok(outcome),
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

    async fn retry(&self, id: &JobId, reason: &str) -> Result<(), StoreError> {
        let result = sqlx::query(RETRY).bind(id.as_str()).bind(reason).execute(&self.writer).await.map_err(db);
        self.health.record(&result);
        if result?.rows_affected() == 0 {
            return Err(self.refusal(id, "retry").await);
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
            let recovered = plan::recover(&mut tx, max_attempts, completed).await.map(Some);
            tx.end(recovered).await
        }
        .await;
        self.health.record(&result);
        let recovery = result?.unwrap_or_default();
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
        plan::counts(sqlx::query_as(COUNTS).fetch_all(&self.reader).await.map_err(db)?)
    }

    async fn active_footprints(&self) -> Result<Vec<ActiveFootprint>, StoreError> {
        plan::active_footprints(sqlx::query_as(ACTIVE_FOOTPRINTS).fetch_all(&self.reader).await.map_err(db)?)
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
