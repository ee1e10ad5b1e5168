//! Encoding: rows to [`Job`]s, times as unix microseconds, JSON columns, errors.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use crate::model::{Job, JobId, Progress};
use crate::store::StoreError;

#[expect(clippy::needless_pass_by_value, reason = "written `.map_err(db)`")]
pub(super) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt job row: {what}: {e}"))
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("cannot encode JSON: {e}")))
}

/// Now, truncated to the microsecond the database keeps, and its encoding.
pub(super) fn now() -> (OffsetDateTime, i64) {
    let now = OffsetDateTime::now_utc();
    let micros = micros_floor(now);
    (from_micros(micros).unwrap_or(now), micros)
}

pub(super) fn micros_floor(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The smallest microsecond count not earlier than `t`: `stored < micros_ceil(t)` exactly when
/// the stored time is before `t`.
pub(super) fn micros_ceil(t: OffsetDateTime) -> i64 {
    let micros = -(-t.unix_timestamp_nanos()).div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

fn from_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|e| corrupt("time", e))
}

pub(super) fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let get_time = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get::<Option<i64>, _>(i).map_err(db)?.map(from_micros).transpose()
    };
    let id: String = row.try_get(1).map_err(db)?;
    let status: &str = row.try_get(2).map_err(db)?;
    let timeout: Option<i64> = row.try_get(5).map_err(db)?;
    let metadata: &str = row.try_get(6).map_err(db)?;
    let progress: Option<&str> = row.try_get(10).map_err(db)?;
    let output_files: &str = row.try_get(11).map_err(db)?;
    let attempts: i64 = row.try_get(13).map_err(db)?;
    Ok(Job {
        seq: row.try_get(0).map_err(db)?,
        id: JobId::parse(&id).map_err(|e| corrupt("id", e))?,
        status: status.parse().map_err(|e| corrupt("status", e))?,
        command: row.try_get(3).map_err(db)?,
        priority: row.try_get(4).map_err(db)?,
        timeout_seconds: timeout.map(|t| u64::try_from(t).unwrap_or(0)),
        metadata: if metadata == "{}" {
            Default::default()
        } else {
            serde_json::from_str(metadata).map_err(|e| corrupt("metadata", e))?
        },
        created_at: get_time(7)?.ok_or_else(|| corrupt("created_at", "NULL"))?,
        started_at: get_time(8)?,
        completed_at: get_time(9)?,
        progress: progress.map(serde_json::from_str::<Progress>).transpose().map_err(|e| corrupt("progress", e))?,
        output_files: if output_files == "[]" {
            Vec::new()
        } else {
            serde_json::from_str(output_files).map_err(|e| corrupt("output_files", e))?
        },
        error: row.try_get(12).map_err(db)?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
    })
}

pub(super) fn jobs_from_rows(rows: &[SqliteRow]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(job_from_row).collect()
}
