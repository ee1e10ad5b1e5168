//! The SQL statements. Every statement that returns jobs selects `job_columns!()`, decoded by
//! name into a [`JobRow`](super::rows::JobRow).
//!
//! A statement that writes is always run to its end (`execute`, `fetch_all`), never with
//! `fetch_optional`/`fetch_one`: see [`write`](super::write) for why.

/// The columns of a [`Job`](crate::Job), as [`JobRow`](super::rows::JobRow) names them.
macro_rules! job_columns {
    () => {
        "seq, id, status, command, priority, timeout_seconds, metadata, created_at, started_at, \
         completed_at, progress, output_files, error, attempts, webhooks, event_seq, outputs, requires, retry_at, \
         retry_reason, idempotency_key, idempotency_fingerprint"
    };
}

/// ?1: a JSON array of `[id, command, priority, timeout_seconds, metadata, created_at,
/// footprint, webhooks, requires, idempotency_key, idempotency_fingerprint]`, one per job
/// (`requires` a JSON array, which `->>` gives back as its JSON text; no key: nulls). Returns
/// `(id, seq)` for each stored job (in no promised order); a job whose idempotency key is
/// taken (by a stored job, or by an earlier job of the array) is not stored and not returned.
/// (`WHERE true`: SQLite's rule for an upsert on `INSERT ... SELECT`, whose `ON` could
/// otherwise read as a join's.)
pub(super) const INSERT_MANY: &str = "INSERT INTO jobs (id, status, command, priority, timeout_seconds, metadata, created_at, \
                                      footprint, webhooks, requires, idempotency_key, idempotency_fingerprint) \
     SELECT value ->> 0, 'queued', value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
            value ->> 7, value ->> 8, value ->> 9, value ->> 10 \
     FROM json_each(?1) WHERE true ORDER BY key \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id, seq";
pub(super) const GET: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");
/// ?1: an idempotency key.
pub(super) const GET_BY_IDEMPOTENCY_KEY: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE idempotency_key = ?1");
/// ?1: a JSON array of ids.
pub(super) const GET_MANY: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE id IN (SELECT value FROM json_each(?1))");
pub(super) const LIST: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE seq > ?1 ORDER BY seq LIMIT ?2");
pub(super) const LIST_STATUS: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE status = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
/// ?1 limit, ?2 now (unix microseconds): a claim's view of the queue
/// ([`ClaimView`](crate::store::plan::ClaimView)): kind 0, the running jobs; kind 1, the first ?1
/// queued jobs in claim order (the page, in no promised order); kind 2, the queued jobs after
/// the page in claim order that were submitted before one of it. Each with its priority, seq,
/// footprint and required labels; a job of the page whose `retry_at` is after ?2 with the
/// microseconds until then (`wait`, else NULL).
/// `INDEXED BY`: without statistics SQLite's planner prefers `jobs_status` and sorts every
/// queued job on each claim; the queue index reads the first ones directly (and the statement
/// fails to prepare, rather than slowing down, should the index ever be unusable).
/// `MATERIALIZED`: the page's last job and its highest seq are computed once; left to itself,
/// SQLite (3.46) runs `last` as a co-routine inside the loop over the queued jobs, sorting the
/// whole page again for each of them: a claim cost the square of the queue's length (I5).
pub(super) const CLAIM_VIEW: &str = "WITH page AS (SELECT priority, seq, footprint, requires, retry_at FROM jobs INDEXED BY jobs_queue \
                                       WHERE status = 'queued' ORDER BY priority DESC, seq LIMIT ?1), \
                                     last AS MATERIALIZED (SELECT priority, seq FROM page ORDER BY priority, seq DESC LIMIT 1), \
                                     top AS MATERIALIZED (SELECT max(seq) AS seq FROM page) \
                                     SELECT 0 AS kind, priority, seq, footprint, requires, NULL AS wait FROM jobs \
                                       WHERE status = 'running' \
                                     UNION ALL SELECT 1, priority, seq, footprint, requires, \
                                       CASE WHEN retry_at > ?2 THEN retry_at - ?2 END FROM page \
                                     UNION ALL SELECT 2, j.priority, j.seq, j.footprint, j.requires, NULL \
                                       FROM jobs j, last, top WHERE j.status = 'queued' AND j.seq < top.seq \
                                       AND (j.priority < last.priority OR (j.priority = last.priority AND j.seq > last.seq))";
/// Queued and running jobs in submission order, with their status and footprint (NULL: unknown).
pub(super) const ACTIVE_FOOTPRINTS: &str =
    "SELECT id, status, footprint FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq";
/// ?1 seq: `(seq, id, status)` of the running jobs and of the queued jobs up to that one, in
/// submission order (what holds a queued job back, `JobStore::held_back`); two index ranges.
pub(super) const ACTIVE_UP_TO: &str = "SELECT seq, id, status FROM jobs WHERE status = 'running' \
     UNION ALL SELECT seq, id, status FROM jobs WHERE status = 'queued' AND seq <= ?1 ORDER BY seq";
/// ?1: a JSON array of ids: `(seq, footprint)` of those jobs.
pub(super) const FOOTPRINTS_OF: &str = "SELECT seq, footprint FROM jobs WHERE id IN (SELECT value FROM json_each(?1))";
/// ?1 started_at, ?2 seq: the claim of one chosen queued job.
pub(super) const CLAIM_SEQ: &str = concat!(
    "UPDATE jobs SET status = 'running', started_at = ?1, attempts = attempts + 1, progress = NULL, \
       event_seq = event_seq + 1 \
     WHERE seq = ?2 AND status = 'queued' \
     RETURNING ",
    job_columns!()
);
/// ?1 id, ?2 attempt, ?3 run record: only for the job's current, running attempt.
pub(super) const RECORD_RUN: &str = "INSERT INTO job_runs (job_seq, attempt, run) \
                                     SELECT seq, ?2, ?3 FROM jobs WHERE id = ?1 AND status = 'running' AND attempts = ?2 \
                                     ON CONFLICT (job_seq) DO UPDATE SET attempt = excluded.attempt, run = excluded.run";
/// Running jobs with their current attempt's run record, if any.
pub(super) const INTERRUPTED_RUNS: &str = "SELECT j.id, r.run FROM jobs j \
                                           LEFT JOIN job_runs r ON r.job_seq = j.seq AND r.attempt = j.attempts \
                                           WHERE j.status = 'running' ORDER BY j.seq";
/// ?1 id: the recorded run of an attempt before the job's current one.
pub(super) const PREVIOUS_RUN: &str = "SELECT r.run FROM jobs j JOIN job_runs r ON r.job_seq = j.seq \
                                       WHERE j.id = ?1 AND r.attempt < j.attempts";
/// Returns whether a cancel was requested, and the job's webhook subscriptions.
pub(super) const UPDATE_PROGRESS: &str =
    "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND status = 'running' RETURNING cancel_requested, webhooks";
/// ?2 status, ?3 completed_at, ?4 output files (NULL: keep), ?5 error (NULL: keep), ?6 outputs
/// (NULL: keep).
pub(super) const FINISH: &str = concat!(
    "UPDATE jobs SET status = ?2, completed_at = ?3, output_files = COALESCE(?4, output_files), \
       outputs = COALESCE(?6, outputs), \
       error = CASE WHEN ?2 = 'completed' THEN NULL ELSE COALESCE(?5, error) END, cancel_requested = 0, \
       event_seq = event_seq + 1, \
       progress = CASE WHEN ?2 = 'completed' AND progress IS NOT NULL \
                  THEN json_set(progress, '$.percent', 100.0, '$.eta_seconds', 0.0) ELSE progress END \
     WHERE id = ?1 AND status = 'running' \
     RETURNING ",
    job_columns!()
);
pub(super) const SET_LOG: &str =
    "INSERT INTO job_logs (job_seq, log) VALUES (?1, ?2) ON CONFLICT (job_seq) DO UPDATE SET log = excluded.log";
pub(super) const LOG: &str = "SELECT l.log FROM jobs j LEFT JOIN job_logs l ON l.job_seq = j.seq WHERE j.id = ?1";
/// Queued: cancelled now. Running: flagged for its worker. (SQLite evaluates every `SET`
/// expression on the old row and `RETURNING` on the new one.)
pub(super) const CANCEL: &str = concat!(
    "UPDATE jobs SET \
       status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END, \
       completed_at = CASE status WHEN 'queued' THEN ?2 ELSE completed_at END, \
       cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END, \
       event_seq = CASE status WHEN 'queued' THEN event_seq + 1 ELSE event_seq END \
     WHERE id = ?1 AND status IN ('queued', 'running') \
     RETURNING ",
    job_columns!()
);
/// A graceful stop is not a failed attempt: the interrupted start is not counted.
pub(super) const REQUEUE: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, \
                       attempts = MAX(attempts - 1, 0), event_seq = event_seq + 1 WHERE id = ?1 AND status = 'running'";
/// ?1 id, ?2 reason, ?3 retry_at (unix microseconds), ?4 whether the attempt counts: back in
/// the queue, not to be claimed before ?3; an attempt that does not count is taken back (as
/// by [`REQUEUE`]).
pub(super) const RETRY: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, retry_reason = ?2, \
                     retry_at = ?3, attempts = CASE WHEN ?4 THEN attempts ELSE MAX(attempts - 1, 0) END, \
                     event_seq = event_seq + 1 WHERE id = ?1 AND status = 'running'";
pub(super) const DELETE: &str = "DELETE FROM jobs WHERE id = ?1 AND status IN ('completed', 'failed', 'cancelled')";
/// ?1 max attempts, ?2 completed_at: the running jobs that must end: cancelled when a cancel
/// was pending, else failed ("interrupted") past the attempt limit.
pub(super) const RECOVER_FAIL: &str = concat!(
    "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, \
       error = CASE WHEN cancel_requested THEN error ELSE 'interrupted' END, completed_at = ?2, \
       cancel_requested = 0, event_seq = event_seq + 1 \
     WHERE status = 'running' AND (attempts >= ?1 OR cancel_requested) RETURNING ",
    job_columns!()
);
pub(super) const RECOVER_REQUEUE: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, \
                               event_seq = event_seq + 1 WHERE status = 'running' RETURNING seq, id";
pub(super) const PURGE: &str =
    "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < ?1";
pub(super) const COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";
/// ?1 id: the job's status.
pub(super) const STATUS: &str = "SELECT status FROM jobs WHERE id = ?1";
/// ?1: a JSON array of ids: those jobs as the follower of the other processes on the file
/// reads them (`follow.rs`): `(seq, id, status, event_seq, progress)`.
pub(super) const FOLLOW_JOBS: &str =
    "SELECT seq, id, status, event_seq, progress FROM jobs WHERE id IN (SELECT value FROM json_each(?1))";
/// ?1 seq: as [`FOLLOW_JOBS`], the queued and running jobs, and the jobs submitted after ?1
/// that are no longer queued or running (each part read by its own index).
pub(super) const FOLLOW_ACTIVE: &str = "SELECT seq, id, status, event_seq, progress FROM jobs WHERE status IN ('queued', 'running') \
     UNION ALL SELECT seq, id, status, event_seq, progress FROM jobs \
     WHERE seq > ?1 AND status NOT IN ('queued', 'running')";
/// The highest submission seq (0 without jobs).
pub(super) const MAX_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM jobs";
/// ?1: now (unix microseconds). The small write [`WriteHealth`](super::write::WriteHealth)
/// probes with.
pub(super) const PROBE: &str = "INSERT INTO store_probe (id, written_at) VALUES (1, ?1) \
                                ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at";

/// The columns of a [`Delivery`](crate::webhook::Delivery), as
/// [`DeliveryRow`](super::rows::DeliveryRow) names them.
macro_rules! delivery_columns {
    () => {
        "id, job_id, url, source, event, created_at, job, state, next_attempt_at, attempts"
    };
}

/// ?1: a JSON array of `[id, job_id, url, source, event, created_at, job]`, one per delivery,
/// each due at its `created_at`.
pub(super) const INSERT_DELIVERIES: &str = "INSERT INTO webhook_deliveries (id, job_id, url, source, event, created_at, job, next_attempt_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 5 \
     FROM json_each(?1) ORDER BY key";
/// ?1 job id: when each URL last got a `job.progress` delivery of the job.
pub(super) const LAST_PROGRESS_DELIVERIES: &str = "SELECT url, MAX(created_at) FROM webhook_deliveries \
                                                   WHERE job_id = ?1 AND event = 'job.progress' GROUP BY url";
/// ?1 now, ?2 lease end, ?3 limit, ?4 JSON array of URLs to leave out: pushes the due pending
/// deliveries' next attempt to the lease end and returns them.
pub(super) const CLAIM_DELIVERIES: &str = concat!(
    "UPDATE webhook_deliveries SET next_attempt_at = ?2 \
     WHERE n IN (SELECT n FROM webhook_deliveries INDEXED BY webhook_deliveries_due \
                 WHERE state = 'pending' AND next_attempt_at <= ?1 \
                   AND url NOT IN (SELECT value FROM json_each(?4)) \
                 ORDER BY next_attempt_at LIMIT ?3) \
     RETURNING ",
    delivery_columns!()
);
/// ?1 id, ?2 attempt (JSON), ?3 state, ?4 next attempt (NULL: final); pending deliveries only.
pub(super) const RECORD_ATTEMPT: &str = "UPDATE webhook_deliveries SET attempts = json_insert(attempts, '$[#]', json(?2)), state = ?3, \
     next_attempt_at = ?4 WHERE id = ?1 AND state = 'pending'";
pub(super) const DELIVERIES: &str =
    concat!("SELECT ", delivery_columns!(), " FROM webhook_deliveries WHERE job_id = ?1 ORDER BY n");
/// ?1 cutoff: finished deliveries of events before it.
pub(super) const PURGE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < ?1";

/// ?1 id, ?2 role, ?3 labels, ?4 host, ?5 version, ?6 ffmpeg version, ?7 capabilities, ?8 slots,
/// ?9 started_at, ?10 process, ?11 cutoff (heartbeats before it are lost), ?12 a start known to
/// be gone (or NULL), ?13 now: the node's row, as new (not draining, no running job), unless
/// the id's row is another start's that is neither lost nor ?12 (then no row changes).
pub(super) const REGISTER_NODE: &str = "INSERT INTO nodes (id, role, labels, host, version, ffmpeg_version, capabilities, \
                                        slots, running_jobs, draining, started_at, heartbeat_at, process) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '[]', 0, ?9, ?13, ?10) \
     ON CONFLICT (id) DO UPDATE SET role = excluded.role, labels = excluded.labels, \
       host = excluded.host, version = excluded.version, ffmpeg_version = excluded.ffmpeg_version, \
       capabilities = excluded.capabilities, slots = excluded.slots, running_jobs = '[]', \
       draining = 0, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
       process = excluded.process \
     WHERE nodes.started_at = excluded.started_at OR nodes.heartbeat_at < ?11 OR nodes.started_at = ?12";
/// ?1 id, ?2 draining, ?3 running jobs (JSON), ?4 started_at, ?5 now: a heartbeat of that start
/// of the node. Heartbeats are stamped, and compared, by each node's own clock (nodes sharing
/// an SQLite file share a machine, so a clock).
pub(super) const HEARTBEAT_NODE: &str =
    "UPDATE nodes SET heartbeat_at = ?5, draining = ?2, running_jobs = ?3 WHERE id = ?1 AND started_at = ?4";
/// ?1: heartbeats before it are lost.
pub(super) const NODES: &str = "SELECT id, role, labels, host, version, ffmpeg_version, slots, running_jobs, draining, \
                                started_at, process, heartbeat_at, heartbeat_at < ?1 AS lost FROM nodes ORDER BY id";
pub(super) const NODE_CAPABILITIES: &str = "SELECT capabilities FROM nodes WHERE id = ?1";
/// ?1 id, ?2 started_at: removes that start's row.
pub(super) const REMOVE_NODE: &str = "DELETE FROM nodes WHERE id = ?1 AND started_at = ?2";
/// ?1: nodes whose latest heartbeat is before it go.
pub(super) const PRUNE_NODES: &str = "DELETE FROM nodes WHERE heartbeat_at < ?1";

/// Readiness: a read of nothing.
pub(super) const PING: &str = "SELECT 1";

/// The statements of the SQL stores' shared methods, in SQLite's SQL.
pub(super) const STATEMENTS: crate::store::sql::Statements = crate::store::sql::statements!();
