//! [`SqliteStore`]'s dialect of the SQL stores' one [`JobStore`](crate::JobStore)
//! implementation ([`SqlStore`]): running a statement on the writer or the readers, and the
//! transitions of its own (each one conditional statement, or one [`WriteTx`] running the
//! shared [transition plan](crate::store::plan)), from the statements in [`sql`](super::sql).
//! Every write's outcome feeds the store's write health; a write that returns `Ok` has
//! committed.

use async_trait::async_trait;
use sqlx::Arguments as _;
use sqlx::sqlite::SqliteArguments;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::batch::{PendingGet, PendingInsert};
use super::rows::{self, JobRow, db, encode_deliveries, json, now};
use super::sql::*;
use super::write::{WriteHealth, WriteTx};
use crate::model::{Job, JobId, Progress, SubmitOptions};
use crate::store::plan::{self, ClaimSteps, ClaimView, FinishRow, NewRow, Queued, SqlTx};
use crate::store::sql::{Access, Arg, SqlRow, SqlStore, Statements};
use crate::store::{Attempt, CancelOutcome, Outcome, Recovery, StoreError};
use crate::webhook::Delivery;

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

    async fn view(&mut self, limit: usize, now: i64) -> Result<ClaimView, StoreError> {
        let rows: Vec<(i64, i64, i64, Option<String>, String, Option<i64>)> = sqlx::query_as(CLAIM_VIEW)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(now)
            .fetch_all(self.conn())
            .await
            .map_err(db)?;
        let mut view = ClaimView::default();
        for (kind, priority, seq, footprint, requires, wait) in rows {
            // The claim is one write transaction, deliveries or not.
            view.add(kind, Queued { seq, priority, footprint, requires, hooked: true, wait });
        }
        Ok(view)
    }

    /// One job per claim: SQLite serves one node, whose claims take turns at its one writer.
    async fn claim(&mut self, seqs: &[i64], _hooked: bool, _want: usize, started: i64) -> Result<Vec<Job>, StoreError> {
        Ok(plan::claim_chosen(self, seqs, started).await?.into_iter().collect())
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

/// SQLite's dialect of the [shared implementation](crate::store::sql): the writer and the
/// readers, group-committed inserts and batched gets, and [`WriteTx`] for the transitions.
#[async_trait]
impl SqlStore for SqliteStore {
    const SQL: Statements = STATEMENTS;

    fn health(&self) -> &WriteHealth {
        &self.health
    }

    fn notify(&self) -> &tokio::sync::Notify {
        &self.notify
    }

    fn due(&self) -> &crate::store::Due {
        &self.due
    }

    fn memo(&self) -> &crate::store::ClaimMemo {
        &self.memo
    }

    /// A file's follower ([`super::follow`]): the changes of the other processes on the file.
    fn cluster_signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::ClusterSignal>> {
        self.follower.as_ref().map(super::follow::Follower::subscribe)
    }

    /// One writer connection: every write takes its turn.
    fn serializes_writes(&self) -> bool {
        true
    }

    /// What the follower reads.
    fn set_watched(&self, watched: &crate::cluster::Watched) {
        if let Some(follower) = &self.follower {
            follower.set_watched(watched);
        }
    }

    async fn run(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let done = sqlx::query_with(sql, arguments(args)?).execute(&self.writer).await.map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn rows<R: SqlRow>(&self, access: Access, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<R>, StoreError> {
        // Readers see every committed write (WAL); the writer also this process's latest.
        let pool = if access == Access::Read { &self.reader } else { &self.writer };
        sqlx::query_as_with(sql, arguments(args)?).fetch_all(pool).await.map_err(db)
    }

    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let stopped = || StoreError::Database("the store's writer task has stopped".into());
        // The seq is assigned when stored.
        let row = NewRow::of(command, options)?;
        let (reply, stored) = oneshot::channel();
        self.inserts.send(PendingInsert { row, reply }).await.map_err(|_| stopped())?;
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

    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        let (_, started) = now();
        let result = async {
            // `BEGIN IMMEDIATE` takes SQLite's write lock first: the jobs read below cannot
            // change (in this process or another) before the claim commits.
            let mut tx = WriteTx::begin(&self.writer).await?;
            let claimed = plan::claim(&mut tx, started, labels, 1, &self.due, &self.memo)
                .await
                .map(|jobs| jobs.into_iter().next());
            tx.end(claimed).await
        }
        .await;
        self.health.record(&result);
        result
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let progress = json(progress)?;
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let updated = plan::update_progress(&mut tx, id, &progress).await;
            tx.end(updated).await
        }
        .await;
        self.settle(id, "update progress", result).await
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
        let job = self.settle(id, "finish", result).await?;
        // A job this one's footprint held back may start now.
        self.wake();
        Ok(job)
    }

    /// One transaction: the progress (with its due `job.progress` deliveries), then the outcome.
    async fn finish_with_progress(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
    ) -> Result<Job, StoreError> {
        let progress = progress.map(json).transpose()?;
        let row = FinishRow::of(outcome)?;
        let (_, completed) = now();
        let result = async {
            let mut tx = WriteTx::begin(&self.writer).await?;
            let finished = plan::finish_with_progress(&mut tx, id, progress.as_deref(), &row, completed, log).await;
            tx.end(finished).await
        }
        .await;
        let job = self.settle(id, "finish", result).await?;
        // A job this one's footprint held back may start now.
        self.wake();
        Ok(job)
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
        self.settle(id, "cancel", result).await
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        self.transition(id, "requeue", REQUEUE, &[Arg::Text(id.as_str())]).await?;
        self.wake();
        Ok(())
    }

    async fn retry(
        &self,
        id: &JobId,
        reason: &str,
        wait: std::time::Duration,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let retry_at = now().1.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
        let counted = Arg::Bool(attempt == Attempt::Counted);
        let args = [Arg::Text(id.as_str()), Arg::Text(reason), Arg::Int(retry_at), counted];
        self.transition(id, "retry", RETRY, &args).await?;
        self.wake();
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
}

/// `args` as SQLite binds them.
fn arguments<'q>(args: &[Arg<'q>]) -> Result<SqliteArguments<'q>, StoreError> {
    let mut bound = SqliteArguments::default();
    for arg in args {
        match *arg {
            Arg::Int(value) => bound.add(value),
            Arg::OptInt(value) => bound.add(value),
            Arg::Text(value) => bound.add(value),
            Arg::OptText(value) => bound.add(value),
            Arg::Bool(value) => bound.add(value),
            Arg::Texts(values) => bound.add(json(&values)?),
            Arg::Age(age) => bound.add(now().1.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX))),
            Arg::Now => bound.add(now().1),
            Arg::Node => Ok(()),
        }
        .map_err(StoreError::Database)?;
    }
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// I5: the claim's read of the queue works out the page's bounds (`last`, `top`) once.
    /// Run as a co-routine, as SQLite 3.46 chose for `last` unless told, it sorted the whole
    /// page again for every queued job after it: each claim cost the square of the queue.
    #[tokio::test]
    async fn the_claim_view_computes_the_pages_bounds_once() {
        let store = crate::SqliteStore::open_in_memory().await.unwrap();
        let mut tx = WriteTx::begin(&store.writer).await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CLAIM_VIEW}"))
            .bind(700)
            .bind(0)
            .fetch_all(tx.conn())
            .await
            .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        for cte in ["page", "last", "top"] {
            assert!(steps.contains(&format!("MATERIALIZE {cte}").as_str()), "{steps:#?}");
        }
        assert!(!steps.iter().any(|s| s.starts_with("CO-ROUTINE")), "{steps:#?}");
    }
}
