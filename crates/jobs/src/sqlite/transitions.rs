//! The [`JobStore`] transitions of [`SqliteStore`]: each one conditional statement (or one
//! transaction), from the statements in [`sql`](super::sql).

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::batch::{PendingGet, PendingInsert};
use super::rows::{corrupt, db, job_from_row, jobs_from_rows, json, micros_ceil, now};
use super::sql::*;
use crate::model::{Job, JobId, JobStatus, Progress, SubmitOptions};
use crate::store::{CancelOutcome, JobStore, ListQuery, Outcome, Recovery, StatusCounts, StoreError};

#[async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let stopped = || StoreError::Database("the store's writer task has stopped".to_owned());
        let metadata = json(&options.metadata)?;
        // The timeout is stored as an SQLite INTEGER (i64); the seq is assigned when stored.
        let options =
            SubmitOptions { timeout_seconds: options.timeout_seconds.map(|t| t.min(i64::MAX as u64)), ..options };
        let job = Job::new_queued(command, options, 0, now().0);
        let (reply, stored) = oneshot::channel();
        self.inserts.send(PendingInsert { job, metadata, reply }).await.map_err(|_| stopped())?;
        let job = stored.await.map_err(|_| stopped())??;
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let stopped = || StoreError::Database("the store's read tasks have stopped".to_owned());
        let (reply, found) = oneshot::channel();
        self.gets.send(PendingGet { id: id.clone(), reply }).await.map_err(|_| stopped())?;
        found.await.map_err(|_| stopped())?
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        let after = query.after_seq.unwrap_or(i64::MIN);
        let limit = i64::from(query.limit);
        let rows = match query.status {
            Some(status) => {
                sqlx::query(LIST_STATUS).bind(status.as_str()).bind(after).bind(limit).fetch_all(&self.reader).await
            }
            None => sqlx::query(LIST).bind(after).bind(limit).fetch_all(&self.reader).await,
        }
        .map_err(db)?;
        jobs_from_rows(&rows)
    }

    async fn claim_next(&self) -> Result<Option<Job>, StoreError> {
        let (_, started) = now();
        let row = sqlx::query(CLAIM).bind(started).fetch_optional(&self.writer).await.map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(UPDATE_PROGRESS)
            .bind(id.as_str())
            .bind(json(progress)?)
            .fetch_optional(&self.writer)
            .await
            .map_err(db)?;
        match cancel {
            Some(cancel) => Ok(cancel),
            None => Err(self.refusal(id, "update progress").await),
        }
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        let (status, output_files, error) = match outcome {
            Outcome::Completed { output_files } => (JobStatus::Completed, Some(json(&output_files)?), None),
            Outcome::Failed { error } => (JobStatus::Failed, None, Some(error)),
            Outcome::Cancelled => (JobStatus::Cancelled, None, None),
        };
        let (_, completed) = now();
        let job = {
            let mut tx = self.writer.begin().await.map_err(db)?;
            let row = sqlx::query(FINISH)
                .bind(id.as_str())
                .bind(status.as_str())
                .bind(completed)
                .bind(output_files)
                .bind(error)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            match row {
                Some(row) => {
                    let job = job_from_row(&row)?;
                    if !log.is_empty() {
                        sqlx::query(SET_LOG).bind(job.seq).bind(log).execute(&mut *tx).await.map_err(db)?;
                    }
                    tx.commit().await.map_err(db)?;
                    Some(job)
                }
                // Rolled back on drop, before `refusal` needs the (in memory: only) connection.
                None => None,
            }
        };
        match job {
            Some(job) => Ok(job),
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
        let row =
            sqlx::query(CANCEL).bind(id.as_str()).bind(completed).fetch_optional(&self.writer).await.map_err(db)?;
        match row {
            Some(row) => {
                let job = job_from_row(&row)?;
                Ok(if job.status == JobStatus::Cancelled {
                    CancelOutcome::Cancelled(job)
                } else {
                    CancelOutcome::Requested(job)
                })
            }
            None => Err(self.refusal(id, "cancel").await),
        }
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        let done = sqlx::query(REQUEUE).bind(id.as_str()).execute(&self.writer).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.refusal(id, "requeue").await);
        }
        self.wake();
        Ok(())
    }

    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        let done = sqlx::query(DELETE).bind(id.as_str()).execute(&self.writer).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(self.refusal(id, "delete").await);
        }
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let (_, completed) = now();
        let mut tx = self.writer.begin().await.map_err(db)?;
        let mut failed: Vec<(i64, String)> = sqlx::query_as(RECOVER_FAIL)
            .bind(i64::from(max_attempts))
            .bind(completed)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut requeued: Vec<(i64, String)> = sqlx::query_as(RECOVER_REQUEUE).fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
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
        let done = sqlx::query(PURGE).bind(micros_ceil(cutoff)).execute(&self.writer).await.map_err(db)?;
        Ok(done.rows_affected())
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

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(db)?;
        Ok(())
    }
}
