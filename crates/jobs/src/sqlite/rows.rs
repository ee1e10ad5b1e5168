//! Encoding: rows to [`Job`]s (decoded by column name), times as unix microseconds, JSON
//! columns, and SQLite's errors sorted into [`StoreError`]s.

use time::OffsetDateTime;

use crate::idempotency::{Idempotency, IdempotencyKey};
use crate::model::{Job, JobId, Progress};
use crate::store::{BoxError, StoreError};
use crate::webhook::{Delivery, DeliveryId, SubscriptionSource};

/// SQLite's primary result codes that mean "cannot write now, try later": `SQLITE_BUSY` (5),
/// `SQLITE_LOCKED` (6), `SQLITE_NOMEM` (7), `SQLITE_READONLY` (8), `SQLITE_IOERR` (10),
/// `SQLITE_FULL` (13), `SQLITE_CANTOPEN` (14), `SQLITE_PROTOCOL` (15)
/// (<https://www.sqlite.org/rescode.html>).
const TRANSIENT_CODES: [i64; 8] = [5, 6, 7, 8, 10, 13, 14, 15];

/// SQLite's primary result code `SQLITE_FULL`: a write needed pages the disk did not have
/// (SQLite reports `ENOSPC` on a write so).
pub(crate) const SQLITE_FULL: i64 = 13;

/// SQLite's primary result code of `e`, if SQLite answered it (sqlx gives the extended code;
/// its low byte is the primary code).
pub(crate) fn primary_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|code| code.parse::<i64>().ok()).map(|code| code & 0xff),
        _ => None,
    }
}

/// Sorts an sqlx error: [`StoreError::DiskFull`] when the disk is full (`SQLITE_FULL`),
/// [`StoreError::Unavailable`] when the database cannot write now otherwise (read-only, I/O,
/// locked; the pool timed out or its connection thread died), otherwise
/// [`StoreError::Database`]. The error is kept as the source.
pub(super) fn db(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Database(_) => primary_code(&e).is_some_and(|code| TRANSIENT_CODES.contains(&code)),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        _ => false,
    };
    if primary_code(&e) == Some(SQLITE_FULL) {
        StoreError::DiskFull(Box::new(e))
    } else if transient {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Database(Box::new(e))
    }
}

/// A stored value that does not decode: the row was not written by this store.
#[derive(Debug, thiserror::Error)]
#[error("corrupt job row: column {column}")]
struct CorruptRow {
    column: &'static str,
    #[source]
    source: BoxError,
}

pub(crate) fn corrupt(column: &'static str, source: impl Into<BoxError>) -> StoreError {
    StoreError::Database(Box::new(CorruptRow { column, source: source.into() }))
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(Box::new(e)))
}

/// Now, truncated to the microsecond the database keeps, and its encoding.
pub(crate) fn now() -> (OffsetDateTime, i64) {
    let now = OffsetDateTime::now_utc();
    let micros = micros_floor(now);
    (from_micros(micros).unwrap_or(now), micros)
}

pub(crate) fn micros_floor(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The smallest microsecond count not earlier than `t`: `stored < micros_ceil(t)` exactly when
/// the stored time is before `t`.
pub(crate) fn micros_ceil(t: OffsetDateTime) -> i64 {
    let micros = -(-t.unix_timestamp_nanos()).div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

fn from_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|e| corrupt("time", e))
}

/// A row of `jobs` as stored, decoded by column name: every statement returning jobs selects
/// [`job_columns!`](super::sql) (`SELECT *` would also do; the list keeps unused columns out).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    seq: i64,
    id: String,
    status: String,
    command: String,
    priority: i32,
    timeout_seconds: Option<i64>,
    metadata: String,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    progress: Option<String>,
    output_files: String,
    error: Option<String>,
    attempts: i64,
    webhooks: String,
    event_seq: i64,
    outputs: String,
    requires: String,
    retry_at: Option<i64>,
    retry_reason: Option<String>,
    idempotency_key: Option<String>,
    idempotency_fingerprint: Option<String>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Job, StoreError> {
        let time = |micros: Option<i64>| micros.map(from_micros).transpose();
        Ok(Job {
            seq: row.seq,
            id: JobId::parse(&row.id).map_err(|e| corrupt("id", e))?,
            status: row.status.parse().map_err(|e| corrupt("status", e))?,
            command: row.command,
            priority: row.priority,
            timeout_seconds: row.timeout_seconds.map(|t| u64::try_from(t).unwrap_or(0)),
            metadata: if row.metadata == "{}" {
                Default::default()
            } else {
                serde_json::from_str(&row.metadata).map_err(|e| corrupt("metadata", e))?
            },
            created_at: from_micros(row.created_at)?,
            started_at: time(row.started_at)?,
            completed_at: time(row.completed_at)?,
            progress: row
                .progress
                .as_deref()
                .map(serde_json::from_str::<Progress>)
                .transpose()
                .map_err(|e| corrupt("progress", e))?,
            output_files: if row.output_files == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&row.output_files).map_err(|e| corrupt("output_files", e))?
            },
            error: row.error,
            attempts: u32::try_from(row.attempts).map_err(|e| corrupt("attempts", e))?,
            webhooks: if row.webhooks == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&row.webhooks).map_err(|e| corrupt("webhooks", e))?
            },
            event_seq: u64::try_from(row.event_seq).map_err(|e| corrupt("event_seq", e))?,
            outputs: if row.outputs == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&row.outputs).map_err(|e| corrupt("outputs", e))?
            },
            requires: labels(&row.requires, "requires")?,
            retry_at: time(row.retry_at)?,
            retry_reason: row.retry_reason,
            idempotency: match (row.idempotency_key, row.idempotency_fingerprint) {
                (Some(key), Some(fingerprint)) => Some(Idempotency {
                    key: IdempotencyKey::parse(&key).map_err(|e| corrupt("idempotency_key", e))?,
                    fingerprint,
                }),
                (None, None) => None,
                _ => return Err(corrupt("idempotency_fingerprint", "an idempotency key without a fingerprint")),
            },
            waiting_reason: None,
        })
    }
}

/// Decodes rows into jobs, in order.
pub(crate) fn jobs(rows: Vec<JobRow>) -> Result<Vec<Job>, StoreError> {
    rows.into_iter().map(Job::try_from).collect()
}

/// Encodes a time as stored (unix microseconds).
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    micros_floor(t)
}

/// A row of `webhook_deliveries`, decoded by column name (`delivery_columns!`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    job_id: String,
    url: String,
    source: String,
    event: String,
    created_at: i64,
    job: String,
    state: String,
    next_attempt_at: Option<i64>,
    attempts: String,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: DeliveryId::from_stored(row.id),
            job_id: JobId::parse(&row.job_id).map_err(|e| corrupt("job_id", e))?,
            url: row.url,
            source: match row.source.as_str() {
                "job" => SubscriptionSource::Job,
                "server" => SubscriptionSource::Server,
                other => return Err(corrupt("source", format!("unknown source `{other}`"))),
            },
            event: row.event.parse().map_err(|e| corrupt("event", e))?,
            created_at: from_micros(row.created_at)?,
            job: serde_json::from_str(&row.job).map_err(|e| corrupt("job", e))?,
            state: row.state.parse().map_err(|e| corrupt("state", e))?,
            next_attempt_at: row.next_attempt_at.map(from_micros).transpose()?,
            attempts: serde_json::from_str(&row.attempts).map_err(|e| corrupt("attempts", e))?,
        })
    }
}

/// Encodes deliveries for `INSERT_DELIVERIES`.
pub(super) fn encode_deliveries(deliveries: &[Delivery]) -> Result<String, StoreError> {
    let rows = deliveries
        .iter()
        .map(|d| {
            let source = match d.source {
                SubscriptionSource::Job => "job",
                SubscriptionSource::Server => "server",
            };
            Ok(serde_json::json!([
                d.id.as_str(),
                d.job_id.as_str(),
                d.url,
                source,
                d.event.as_str(),
                micros_floor(d.created_at),
                json(&d.job)?
            ]))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    json(&rows)
}

/// A JSON array of labels, as stored in `jobs.requires` and `nodes.labels`.
pub(crate) fn labels(text: &str, column: &'static str) -> Result<Vec<String>, StoreError> {
    if text == "[]" { Ok(Vec::new()) } else { serde_json::from_str(text).map_err(|e| corrupt(column, e)) }
}

/// A row of `nodes` (without its capabilities), decoded by column name: `heartbeat_at` in unix
/// microseconds and `lost`, whether it is older than the caller's limit, as each store
/// computes it (SQLite by the reading node's clock, PostgreSQL by the database's).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NodeRow {
    id: String,
    role: String,
    labels: String,
    host: String,
    version: String,
    ffmpeg_version: Option<String>,
    slots: i64,
    running_jobs: String,
    draining: bool,
    started_at: i64,
    process: Option<String>,
    heartbeat_at: i64,
    lost: bool,
}

impl TryFrom<NodeRow> for crate::nodes::Node {
    type Error = StoreError;

    fn try_from(row: NodeRow) -> Result<crate::nodes::Node, StoreError> {
        use crate::nodes::NodeState;
        let running: Vec<String> = labels(&row.running_jobs, "running_jobs")?;
        Ok(crate::nodes::Node {
            role: row.role.parse().map_err(|e| corrupt("role", e))?,
            labels: labels(&row.labels, "labels")?,
            running_jobs: running
                .iter()
                .map(|id| JobId::parse(id).map_err(|e| corrupt("running_jobs", e)))
                .collect::<Result<_, _>>()?,
            id: row.id,
            host: row.host,
            version: row.version,
            ffmpeg_version: row.ffmpeg_version,
            slots: u32::try_from(row.slots).unwrap_or(0),
            started_at: from_micros(row.started_at)?,
            process: row.process,
            last_heartbeat_at: from_micros(row.heartbeat_at)?,
            state: match (row.lost, row.draining) {
                (true, _) => NodeState::Lost,
                (false, true) => NodeState::Draining,
                (false, false) => NodeState::Active,
            },
        })
    }
}

/// Decodes stored capabilities (`nodes.capabilities`).
pub(crate) fn capabilities(text: &str) -> Result<ffmpeg_core::capabilities::Capabilities, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("capabilities", e))
}
