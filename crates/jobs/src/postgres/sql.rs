//! The SQL statements of the PostgreSQL store. Every statement that returns jobs selects
//! `job_columns!()`, decoded by name into the SQLite store's `JobRow` (the columns have the
//! same names and Rust types).

/// The columns of a [`Job`](crate::Job).
macro_rules! job_columns {
    () => {
        "seq, id, status, command, priority, timeout_seconds, metadata, created_at, started_at, \
         completed_at, progress, output_files, error, attempts, webhooks, event_seq, outputs, requires, retry_at, \
         retry_reason, idempotency_key, idempotency_fingerprint"
    };
}

/// The first key of the queue's advisory locks (0x66666d70, "ffmp" in ASCII, an arbitrary
/// constant); the second is a stripe, 0 to `queue_stripes!()` - 1. An insert holds its
/// connection's stripe (`pg_backend_pid()` modulo the stripes) exclusively from before it takes
/// its `seq` until it commits ([`INSERT`]); a claim holds every stripe shared while it reads the
/// queue ([`CLAIM_VIEW`]). So inserts on different stripes run side by side, and claims run
/// side by side, but a claim's snapshot never holds a job while a job with a smaller `seq` is
/// still to appear: new jobs become visible in submission order, which the claim's rule needs
/// (see [`plan`](crate::store::plan)).
macro_rules! queue_lock {
    () => {
        "1717988720"
    };
}
/// Stripes of the queue's advisory lock (`queue_lock!()`).
macro_rules! queue_stripes {
    () => {
        "8"
    };
}

/// $1 id, $2 command, $3 priority, $4 timeout, $5 metadata, $6 created_at, $7 footprint,
/// $8 webhooks, $9 requires (JSON), $10 idempotency key, $11 its fingerprint (NULL: none).
/// The statement takes its stripe of `queue_lock!()` exclusively before its `seq` (the lock
/// CTE is evaluated before the row it feeds), and holds it until it commits. Returns the new
/// `seq`, or no row when the idempotency key is taken: a row with the key that another
/// transaction has inserted but not yet committed makes it wait for that transaction's end.
pub(super) const INSERT: &str = concat!(
    "WITH queue AS (SELECT pg_advisory_xact_lock(",
    queue_lock!(),
    ", pg_backend_pid() % ",
    queue_stripes!(),
    ")) \
     INSERT INTO jobs (id, status, command, priority, timeout_seconds, metadata, created_at, footprint, webhooks, \
       requires, idempotency_key, idempotency_fingerprint) \
     SELECT $1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM queue \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING seq"
);
pub(super) const GET: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
/// $1: an idempotency key.
pub(super) const GET_BY_IDEMPOTENCY_KEY: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE idempotency_key = $1");
pub(super) const LIST: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE seq > $1 ORDER BY seq LIMIT $2");
pub(super) const LIST_STATUS: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE status = $1 AND seq > $2 ORDER BY seq LIMIT $3");
/// $1 limit: a claim's view of the queue ([`ClaimView`](crate::store::plan::ClaimView)) of at
/// most `limit` queued jobs, by the function of migration `0010_claim_view.sql`, in one
/// prepared statement and its own implicit transaction: every stripe of the queue lock taken
/// shared, in order, then, in a snapshot taken after it, kind 0, the running jobs; kind 1, the
/// first `limit` queued jobs in claim order (the page, in no promised order); kind 2, the queued
/// jobs after the page in claim order that were submitted before one of it. Each with its
/// priority, seq, footprint, required labels, and whether it has webhook subscriptions. The
/// lock is released when the statement ends: an insert waits at most for the server to run it,
/// never for the node's next round trip.
pub(super) const CLAIM_VIEW: &str =
    "SELECT kind, priority, seq, footprint, requires, hooked, wait FROM ffmpeg_worker_claim_view($1)";
/// The claim of [`CLAIM_CHOSEN`] and [`CLAIM_CARRYING_ENDS`], its parameters numbered from
/// `$n`: `$n` seqs (in claim order), `$n+1` started_at, `$n+2` lease seconds, `$n+3` how many,
/// `$n+4` `on` to leave the starts unannounced (no other node listens for them), else `off`;
/// `$node` the node. The claim of the first `$n+3` of the chosen jobs that are still queued and
/// whose rows no other transaction holds (another claim, a cancel in progress): `SKIP LOCKED`
/// passes those over rather than waiting. The rows are locked first (`chosen`, evaluated once),
/// then updated (`claimed`). `$n+4` is set for the statement's transaction
/// (`ffmpeg_worker.quiet_start`, read by the notify trigger of migration 0011) before any row
/// is updated.
///
/// `chosen` looks the seqs up one by one, in the order given (a lateral subquery per element
/// of the array, which the planner can only run as a nested loop over the array: one index
/// probe by `seq` each), and stops at the `$n+3`th row it locked: it locks no more rows than
/// it claims, and reads only the chosen jobs. (Until session 24 it was `seq = ANY($n) AND
/// status = 'queued' ORDER BY priority DESC, seq`, for which the planner chose a read of every
/// queued job through the status indexes and a sort whenever the table's statistics predated
/// the queue's growth, as they do after a burst of submissions (autovacuum analyzes a table at
/// most once a minute): 0.8 ms a claim with 3,000 queued jobs, docs/benchmarks.md.) The seqs
/// come in claim order ([`plan`](crate::store::plan)); the claim's correctness does not depend
/// on it, since any of the chosen jobs may start. The row lock rechecks `status` on the row's
/// newest version: a job claimed or cancelled meanwhile is passed over.
macro_rules! claim {
    ($seqs:literal, $started:literal, $lease:literal, $want:literal, $quiet:literal, $node:literal) => {
        concat!(
            "chosen AS MATERIALIZED (SELECT j.seq FROM unnest(",
            $seqs,
            "::bigint[]) AS c (s) CROSS JOIN LATERAL (SELECT seq FROM jobs WHERE seq = c.s AND status = 'queued' \
               FOR UPDATE SKIP LOCKED) AS j LIMIT ",
            $want,
            "), \
             claimed AS (UPDATE jobs SET status = 'running', started_at = ",
            $started,
            ", attempts = attempts + 1, progress = NULL, worker_id = ",
            $node,
            ", lease_expires_at = now() + make_interval(secs => ",
            $lease,
            "), event_seq = event_seq + 1 \
               WHERE seq IN (SELECT seq FROM chosen) \
                 AND (SELECT set_config('ffmpeg_worker.quiet_start', ",
            $quiet,
            ", true)) IS NOT NULL \
               RETURNING ",
            job_columns!(),
            ")"
        )
    };
}
/// $1 seqs, $2 started_at, $3 lease seconds, $4 how many, $5 `on` to leave the starts
/// unannounced, else `off` (as in `claim!()`), $6 node: the claimed jobs.
pub(super) const CLAIM_CHOSEN: &str =
    concat!("WITH ", claim!("$1", "$2", "$3", "$4", "$5", "$6"), " SELECT ", job_columns!(), " FROM claimed");
/// The conditions under which a node may still write to a running job it claimed: it holds the
/// job (`worker_id`), for this attempt, under a lease that has not expired by the database's clock.
macro_rules! held {
    ($id:literal, $node:literal, $attempt:literal) => {
        concat!(
            "id = ",
            $id,
            " AND status = 'running' AND worker_id = ",
            $node,
            " AND attempts = ",
            $attempt,
            " AND lease_expires_at > now()"
        )
    };
}
/// $1 id, $2 attempt, $3 run record, $4 node.
pub(super) const RECORD_RUN: &str = concat!(
    "INSERT INTO job_runs (job_seq, attempt, run) SELECT seq, $2, $3 FROM jobs WHERE ",
    held!("$1", "$4", "$2"),
    " ON CONFLICT (job_seq) DO UPDATE SET attempt = excluded.attempt, run = excluded.run"
);
/// $1 node: its running jobs, with their current attempt's run record, if any.
pub(super) const INTERRUPTED_RUNS: &str = "SELECT j.id, r.run FROM jobs j \
                                           LEFT JOIN job_runs r ON r.job_seq = j.seq AND r.attempt = j.attempts \
                                           WHERE j.status = 'running' AND j.worker_id = $1 ORDER BY j.seq";
/// $1 id: the recorded run of an attempt before the job's current one (of any node).
pub(super) const PREVIOUS_RUN: &str = "SELECT r.run FROM jobs j JOIN job_runs r ON r.job_seq = j.seq \
                                       WHERE j.id = $1 AND r.attempt < j.attempts";
/// $1 id, $2 progress, $3 node, $4 attempt, $5 lease seconds. Renews the lease too (a job that
/// reports progress needs no renewal of its own: one write per progress save).
/// Returns whether a cancel was requested, and the job's webhook subscriptions.
pub(super) const UPDATE_PROGRESS: &str = concat!(
    "UPDATE jobs SET progress = $2, lease_expires_at = now() + make_interval(secs => $5) WHERE ",
    held!("$1", "$3", "$4"),
    " RETURNING cancel_requested, webhooks"
);
/// The update of [`FINISH`]: $1 id, $2 status, $3 completed_at, $4 output files (NULL:
/// keep), $5 error (NULL: keep), $6 node, $7 attempt, $8 outputs (NULL: keep).
macro_rules! finish {
    () => {
        concat!(
            "UPDATE jobs SET status = $2, completed_at = $3, output_files = COALESCE($4, output_files), \
               outputs = COALESCE($8, outputs), \
               error = CASE WHEN $2 = 'completed' THEN NULL ELSE COALESCE($5, error) END, cancel_requested = FALSE, worker_id = NULL, lease_expires_at = NULL, \
               event_seq = event_seq + 1, \
               progress = CASE WHEN $2 = 'completed' AND progress IS NOT NULL \
                          THEN (progress::jsonb || '{\"percent\": 100.0, \"eta_seconds\": 0.0}'::jsonb)::text \
                          ELSE progress END \
             WHERE ",
            held!("$1", "$6", "$7"),
            " RETURNING ",
            job_columns!()
        )
    };
}
/// $1 id, $2 status, $3 completed_at, $4 output files (NULL: keep), $5 error (NULL: keep),
/// $6 node, $7 attempt, $8 outputs (NULL: keep): the end of a run this node holds.
pub(super) const FINISH: &str = finish!();
/// The ends of several runs this node holds (common table expressions `batch`, `finished`,
/// `logged`): `$1` ids, `$2` final statuses, `$3` completion times (microseconds), `$4` output
/// files (NULL: keep), `$5` errors (NULL: keep), `$6` attempts, `$7` outputs (NULL: keep), `$8`
/// logs (BYTEA; empty: none is stored), `$9` the last progress not stored yet (NULL: keep the
/// stored one), element by element, `$10` node. Each job ends as [`FINISH`] ends it (with its
/// log), fenced the same way (this node, that attempt, an unexpired lease); a completed job's
/// progress, the one given or the one stored, shows 100 %. `finished` holds the jobs that
/// ended: one refused is not among them, and the others end all the same. The batch's columns
/// are named `b_*`, so that the job's own (in `SET` and `RETURNING`) are never ambiguous.
/// The ends are not notified by the notify trigger (`ffmpeg_worker.quiet_end`, migration
/// 0015): it writes their notifications to the outbox `announcements`, and once the statement
/// committed the node announces them ([`ANNOUNCE_ENDS`]).
macro_rules! ends {
    () => {
        concat!(
            "batch AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
               $6::bigint[], $7::text[], $8::bytea[], $9::text[]) \
               AS b (b_id, b_status, b_completed, b_output_files, b_error, b_attempt, b_outputs, b_log, b_progress)), \
             finished AS (UPDATE jobs SET status = b_status, completed_at = b_completed, \
               output_files = COALESCE(b_output_files, output_files), outputs = COALESCE(b_outputs, outputs), \
               error = CASE WHEN b_status = 'completed' THEN NULL ELSE COALESCE(b_error, error) END, \
               cancel_requested = FALSE, worker_id = NULL, lease_expires_at = NULL, event_seq = event_seq + 1, \
               progress = CASE WHEN b_status = 'completed' AND COALESCE(b_progress, progress) IS NOT NULL \
                          THEN (COALESCE(b_progress, progress)::jsonb || '{\"percent\": 100.0, \"eta_seconds\": 0.0}'::jsonb)::text \
                          ELSE COALESCE(b_progress, progress) END \
               FROM batch WHERE id = b_id AND status = 'running' AND worker_id = $10 AND attempts = b_attempt \
                 AND lease_expires_at > now() \
                 AND (SELECT set_config('ffmpeg_worker.quiet_end', 'on', true)) IS NOT NULL \
               RETURNING ",
            job_columns!(),
            ", b_log), \
             logged AS (INSERT INTO job_logs (job_seq, log) SELECT seq, b_log FROM finished WHERE octet_length(b_log) > 0 \
               ON CONFLICT (job_seq) DO UPDATE SET log = excluded.log)"
        )
    };
}
/// The ends of several runs this node holds, in one statement (one commit): `$1`-`$10` as in
/// `ends!()`. Returns the jobs that ended.
pub(super) const FINISH_BATCH: &str = concat!("WITH ", ends!(), " SELECT ", job_columns!(), " FROM finished");
/// A claim ([`CLAIM_CHOSEN`]) that carries ends of this node's runs ([`FINISH_BATCH`]) in the
/// same statement (one commit for both): `$1`-`$10` the ends as in `ends!()` (`$10` the node,
/// stamped on the claimed jobs too), `$11`-`$15` the claim as in `claim!()`. The claim's rows are
/// queued jobs, the ends' running ones: no row is changed twice. The claim was chosen from a
/// view read before the ends, in which the ending jobs still run: a job they hold back is not
/// claimed here (the node's next claim may take it). Returns, with `ended` true, the jobs that
/// ended, and with `ended` false the jobs claimed.
pub(super) const CLAIM_CARRYING_ENDS: &str = concat!(
    "WITH ",
    ends!(),
    ", ",
    claim!("$11", "$12", "$13", "$14", "$15", "$10"),
    " SELECT FALSE AS ended, ",
    job_columns!(),
    " FROM claimed UNION ALL SELECT TRUE AS ended, ",
    job_columns!(),
    " FROM finished"
);
/// $1 channel, $2 notification payloads, each notified on the channel, in a transaction of
/// their own that writes nothing to keep: it commits without waiting for the disk
/// (`synchronous_commit` off for it alone), so it holds PostgreSQL's notification lock (see
/// migration 0015) for a moment, not for an `fsync`. Used for what a node announces itself:
/// its progress and pings ([`notify`](super::notify)).
pub(super) const ANNOUNCE: &str = "SELECT pg_notify($1, payload)::text \
                                   FROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick, \
                                     unnest($2::text[]) AS payload";
/// $1 channel, $2 job ids, $3 their event numbers: the outbox rows of these ends (migration
/// 0015), written by a statement of this node that committed, deleted and their payloads
/// notified on the channel, in a transaction that commits without waiting for the disk (as
/// [`ANNOUNCE`]): lost in a crash, the rows would be announced again by a sweep, never lost. A
/// row another node's sweep is sending waits for it and is then gone: sent once.
pub(super) const ANNOUNCE_ENDS: &str = "WITH gone AS (DELETE FROM announcements a \
                                          USING unnest($2::text[], $3::bigint[]) AS e(job, seq) \
                                          WHERE a.job = e.job AND a.seq = e.seq RETURNING a.payload) \
                                        SELECT pg_notify($1, payload)::text \
                                        FROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick, gone";
/// $1 channel, $2 age in seconds, $3 most rows: the outbox rows (migration 0015) older than $2
/// by the database's clock that no other transaction holds (their node announcing them, another
/// node's sweep: `SKIP LOCKED`), oldest first, deleted and notified as in [`ANNOUNCE_ENDS`].
pub(super) const SWEEP_ANNOUNCEMENTS: &str = "WITH old AS (SELECT job, seq FROM announcements \
                                                WHERE made_at < now() - make_interval(secs => $2) \
                                                ORDER BY made_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
                                              gone AS (DELETE FROM announcements a USING old \
                                                WHERE a.job = old.job AND a.seq = old.seq RETURNING a.payload) \
                                              SELECT pg_notify($1, payload)::text \
                                              FROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick, gone";
pub(super) const SET_LOG: &str =
    "INSERT INTO job_logs (job_seq, log) VALUES ($1, $2) ON CONFLICT (job_seq) DO UPDATE SET log = excluded.log";
pub(super) const LOG: &str = "SELECT l.log FROM jobs j LEFT JOIN job_logs l ON l.job_seq = j.seq WHERE j.id = $1";
/// Queued: cancelled now. Running: flagged for its node. (`SET` reads the old row,
/// `RETURNING` the new one.)
pub(super) const CANCEL: &str = concat!(
    "UPDATE jobs SET \
       status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END, \
       completed_at = CASE status WHEN 'queued' THEN $2 ELSE completed_at END, \
       cancel_requested = (status = 'running') OR cancel_requested, \
       event_seq = CASE status WHEN 'queued' THEN event_seq + 1 ELSE event_seq END \
     WHERE id = $1 AND status IN ('queued', 'running') \
     RETURNING ",
    job_columns!()
);
/// $1 id, $2 node, $3 attempt. A graceful stop is not a failed attempt: not counted.
pub(super) const REQUEUE: &str = concat!(
    "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, worker_id = NULL, \
       lease_expires_at = NULL, attempts = GREATEST(attempts - 1, 0), event_seq = event_seq + 1 WHERE ",
    held!("$1", "$2", "$3")
);
/// $1 id, $2 node, $3 attempt, $4 reason, $5 wait (microseconds), $6 whether the attempt
/// counts: back in the queue, not to be claimed before $5 from now by the database's clock
/// (`retry_at`, compared with the same clock by the claim's view of migration 0012); an
/// attempt that does not count is taken back (as by [`REQUEUE`]).
pub(super) const RETRY: &str = concat!(
    "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, worker_id = NULL, \
       lease_expires_at = NULL, retry_reason = $4, \
       retry_at = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + $5, \
       attempts = CASE WHEN $6 THEN attempts ELSE GREATEST(attempts - 1, 0) END, event_seq = event_seq + 1 WHERE ",
    held!("$1", "$2", "$3")
);
pub(super) const DELETE: &str = "DELETE FROM jobs WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled')";
/// $1 max attempts, $2 completed_at, $3 node: its own leftovers that must end: cancelled when
/// a cancel was pending, else failed ("interrupted") past the attempt limit.
pub(super) const RECOVER_FAIL: &str = concat!(
    "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, \
       error = CASE WHEN cancel_requested THEN error ELSE 'interrupted' END, completed_at = $2, \
       cancel_requested = FALSE, worker_id = NULL, lease_expires_at = NULL, event_seq = event_seq + 1 \
     WHERE status = 'running' AND worker_id = $3 AND (attempts >= $1 OR cancel_requested) \
     RETURNING ",
    job_columns!()
);
/// $1 node: its own other leftovers.
pub(super) const RECOVER_REQUEUE: &str = "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, \
                                          worker_id = NULL, lease_expires_at = NULL, event_seq = event_seq + 1 \
                                          WHERE status = 'running' AND worker_id = $1 RETURNING seq, id";
pub(super) const PURGE: &str =
    "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < $1";
pub(super) const COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";
/// $1 id: the job's status.
pub(super) const STATUS: &str = "SELECT status FROM jobs WHERE id = $1";
pub(super) const ACTIVE_FOOTPRINTS: &str =
    "SELECT id, status, footprint FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq";
/// $1 seq: `(seq, id, status)` of the running jobs and of the queued jobs up to that one, in
/// submission order (what holds a queued job back, `JobStore::held_back`); two index ranges.
pub(super) const ACTIVE_UP_TO: &str = "SELECT seq, id, status FROM jobs WHERE status = 'running' \
     UNION ALL SELECT seq, id, status FROM jobs WHERE status = 'queued' AND seq <= $1 ORDER BY seq";
/// $1 ids: `(seq, footprint)` of those jobs.
pub(super) const FOOTPRINTS_OF: &str = "SELECT seq, footprint FROM jobs WHERE id = ANY($1)";
/// $1 now (unix microseconds): the probe write of readiness.
pub(super) const PROBE: &str = "INSERT INTO store_probe (id, written_at) VALUES (1, $1) \
                                ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at";
/// $1 node, $2 lease seconds, $3 ids, $4 attempts (same order): renews the leases this node
/// still holds; returns the ids renewed.
pub(super) const RENEW: &str = "UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => $2) \
                                FROM unnest($3::text[], $4::bigint[]) AS held (id, attempt) \
                                WHERE j.id = held.id AND j.attempts = held.attempt AND j.status = 'running' \
                                  AND j.worker_id = $1 AND j.lease_expires_at > now() \
                                RETURNING j.id";

/// The columns of a [`Delivery`](crate::webhook::Delivery), as the SQLite store's
/// `DeliveryRow` names them.
macro_rules! delivery_columns {
    () => {
        "id, job_id, url, source, event, created_at, job, state, next_attempt_at, attempts"
    };
}

/// $1 id, $2 job id, $3 url, $4 source, $5 event, $6 created_at (also its first due time), $7 job.
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
                                          (id, job_id, url, source, event, created_at, job, next_attempt_at) \
                                          VALUES ($1, $2, $3, $4, $5, $6, $7, $6)";
/// $1 job id: when each URL last got a `job.progress` delivery of the job.
pub(super) const LAST_PROGRESS_DELIVERIES: &str = "SELECT url, MAX(created_at) FROM webhook_deliveries \
                                                   WHERE job_id = $1 AND event = 'job.progress' GROUP BY url";
/// $1 now, $2 lease end, $3 limit, $4 URLs to leave out: pushes the due pending deliveries'
/// next attempt to the lease end and returns them; rows another node is claiming are skipped.
pub(super) const CLAIM_DELIVERIES: &str = concat!(
    "UPDATE webhook_deliveries SET next_attempt_at = $2 \
     WHERE n IN (SELECT n FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
                   AND NOT (url = ANY($4)) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    delivery_columns!()
);
/// $1 id, $2 attempt (JSON), $3 state, $4 next attempt (NULL: final); pending deliveries only.
/// The attempt is appended as text (the stored JSON is kept as written).
pub(super) const RECORD_ATTEMPT: &str = "UPDATE webhook_deliveries SET \
       attempts = CASE WHEN attempts = '[]' THEN '[' || $2 || ']' ELSE left(attempts, -1) || ',' || $2 || ']' END, \
       state = $3, next_attempt_at = $4 WHERE id = $1 AND state = 'pending'";
pub(super) const DELIVERIES: &str =
    concat!("SELECT ", delivery_columns!(), " FROM webhook_deliveries WHERE job_id = $1 ORDER BY n");
/// $1 cutoff: finished deliveries go with the finished jobs of their time.
pub(super) const PURGE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1";

/// Whether the node whose id is `$node` holds an unexpired lease on a running job: a sign of
/// life as good as a heartbeat (it renews each lease at least every third of the lease, by the
/// database's clock), so a node running jobs need not write heartbeats as well
/// ([`HEARTBEAT_NODE`]).
macro_rules! holds_lease {
    ($node:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM jobs l WHERE l.worker_id = ",
            $node,
            " AND l.status = 'running' AND l.lease_expires_at > now())"
        )
    };
}

/// $1 id, $2 role, $3 labels, $4 host, $5 version, $6 ffmpeg version, $7 capabilities, $8 slots,
/// $9 started_at, $10 process, $11 seconds without a heartbeat after which a node is lost, $12 a
/// start known to be gone (or NULL): the node's row, as new (not draining, no running job),
/// unless the id's row is another start's that is neither lost nor $12 (then no row changes).
/// Heartbeats are stamped and compared by the database's clock (as leases are), so nodes whose
/// clocks differ agree on which node is lost; a node holding an unexpired lease is not lost.
pub(super) const REGISTER_NODE: &str = concat!(
    "INSERT INTO nodes (id, role, labels, host, version, ffmpeg_version, capabilities, \
       slots, running_jobs, draining, started_at, heartbeat_at, process) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]', FALSE, $9, now(), $10) \
     ON CONFLICT (id) DO UPDATE SET role = excluded.role, labels = excluded.labels, \
       host = excluded.host, version = excluded.version, ffmpeg_version = excluded.ffmpeg_version, \
       capabilities = excluded.capabilities, slots = excluded.slots, running_jobs = '[]', \
       draining = FALSE, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
       process = excluded.process \
     WHERE nodes.started_at = excluded.started_at \
       OR (nodes.heartbeat_at <= now() - make_interval(secs => $11) AND NOT ",
    holds_lease!("nodes.id"),
    ") OR nodes.started_at = $12"
);
/// $1 id, $2 draining, $3 running jobs (JSON), $4 started_at: a heartbeat of that start of the
/// node, the time the database's; one row when that start is registered, none when it is not.
/// The row is written only when something changed (draining, running jobs) or the node holds
/// no unexpired lease: while it runs jobs their lease renewals (and progress writes, which
/// renew too) say it lives ([`NODES`]), and a heartbeat would be one more row written per node
/// every beat.
pub(super) const HEARTBEAT_NODE: &str = concat!(
    "WITH me AS (SELECT 1 FROM nodes WHERE id = $1 AND started_at = $4), \
     beat AS (UPDATE nodes SET heartbeat_at = now(), draining = $2, running_jobs = $3 \
       WHERE id = $1 AND started_at = $4 AND NOT (draining = $2 AND running_jobs = $3 AND ",
    holds_lease!("$1"),
    ")) SELECT 1 FROM me"
);
/// $1 seconds without a sign of life after which a node is lost. A node's latest sign of life
/// (`heartbeat_at`) is its latest heartbeat or, if later, the latest renewal of an unexpired
/// lease it holds (the lease's end less $1: nodes share one lease length), never later than now.
pub(super) const NODES: &str = "SELECT n.id, n.role, n.labels, n.host, n.version, n.ffmpeg_version, n.slots, \
       n.running_jobs, n.draining, n.started_at, n.process, \
       (extract(epoch FROM LEAST(now(), GREATEST(n.heartbeat_at, l.renewed))) * 1000000)::bigint AS heartbeat_at, \
       GREATEST(n.heartbeat_at, l.renewed) <= now() - make_interval(secs => $1) AS lost \
     FROM nodes n LEFT JOIN LATERAL (SELECT max(j.lease_expires_at) - make_interval(secs => $1) AS renewed \
       FROM jobs j WHERE j.worker_id = n.id AND j.status = 'running' AND j.lease_expires_at > now()) l ON TRUE \
     ORDER BY n.id";
pub(super) const NODE_CAPABILITIES: &str = "SELECT capabilities FROM nodes WHERE id = $1";
/// $1 id, $2 started_at: removes that start's row.
pub(super) const REMOVE_NODE: &str = "DELETE FROM nodes WHERE id = $1 AND started_at = $2";
/// $1 seconds: nodes silent for longer go (not one that holds an unexpired lease).
pub(super) const PRUNE_NODES: &str = concat!(
    "DELETE FROM nodes WHERE heartbeat_at < now() - make_interval(secs => $1) AND NOT ",
    holds_lease!("nodes.id")
);

/// Readiness: a read of nothing.
pub(super) const PING: &str = "SELECT 1";

/// The statements of the SQL stores' shared methods, in PostgreSQL's SQL.
pub(super) const STATEMENTS: crate::store::sql::Statements = crate::store::sql::statements!();

/// Whether a running job must end rather than run again once its node is lost: a cancel was
/// asked for, or it has used its attempts ($1 max attempts).
macro_rules! must_end {
    () => {
        "(cancel_requested OR attempts >= $1)"
    };
}

/// Whether a job recorded a run (its files may be in the data directory).
macro_rules! recorded_run {
    () => {
        "EXISTS (SELECT 1 FROM job_runs r WHERE r.job_seq = jobs.seq)"
    };
}

/// $1 max attempts, $2 now (unix microseconds), $3 lease seconds: the reaper. Running jobs
/// whose lease expired (their node died, or was cut off) go back to the queue (the attempt
/// stays counted), or fail with "worker lost" past the attempt limit, or are cancelled when a
/// cancel was requested. A job that must end and recorded a run is left for a worker node to
/// take over ([`TAKE_OVER_LOST`]) and clean up, for one more lease; past that the reaper ends
/// it too (no node took it over: its files stay). Rows another transaction holds are left for
/// the next round.
pub(super) const REAP: &str = concat!(
    "UPDATE jobs SET \
       status = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END, \
       error = CASE WHEN NOT cancel_requested AND attempts >= $1 THEN 'worker lost' ELSE error END, \
       completed_at = CASE WHEN cancel_requested OR attempts >= $1 THEN $2 ELSE NULL END, \
       started_at = CASE WHEN cancel_requested OR attempts >= $1 THEN started_at ELSE NULL END, \
       progress = CASE WHEN cancel_requested OR attempts >= $1 THEN progress ELSE NULL END, \
       cancel_requested = FALSE, worker_id = NULL, lease_expires_at = NULL, event_seq = event_seq + 1 \
     WHERE seq IN (SELECT seq FROM jobs WHERE status = 'running' AND lease_expires_at <= now() \
                   AND (NOT ",
    must_end!(),
    " OR NOT ",
    recorded_run!(),
    " OR lease_expires_at <= now() - make_interval(secs => $3)) \
                   FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    job_columns!()
);

/// $1 max attempts, $2 node, $3 lease seconds: takes over one running job whose lease
/// expired, that must end and that recorded a run, for node $2 under a fresh lease (status and
/// attempt unchanged, so no event); returns its id, attempt, whether a cancel was asked for,
/// and its latest run record.
pub(super) const TAKE_OVER_LOST: &str = concat!(
    "UPDATE jobs j SET worker_id = $2, lease_expires_at = now() + make_interval(secs => $3) \
     FROM job_runs r \
     WHERE r.job_seq = j.seq AND j.seq = (SELECT seq FROM jobs WHERE status = 'running' \
       AND lease_expires_at <= now() AND ",
    must_end!(),
    " AND ",
    recorded_run!(),
    " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING j.id, j.attempts, j.cancel_requested, r.run"
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::postgres::{PgSettings, PgStore};

    /// The claim of chosen jobs reads them by `seq` and nothing else, even when the table's
    /// statistics predate the queue (as after a burst of submissions: autovacuum analyzes at
    /// most once a minute). 3,000 queued jobs, never analyzed, 16 chosen: before session 24
    /// the planner read every queued job through `jobs_queue` (a bitmap scan) and sorted the
    /// matches, 0.8 ms a claim; now one index probe per chosen job, and only the claimed rows
    /// locked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_reads_only_the_jobs_it_chose_whatever_the_statistics() {
        let url = tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap();
        let store = PgStore::open(&url, PgSettings::default()).await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, status, command, priority, created_at) \
             SELECT 'job_' || g, 'queued', '{}', 0, 0 FROM generate_series(1, 3000) AS g",
        )
        .execute(&pool)
        .await
        .unwrap();
        let analyzed: bool = sqlx::query_scalar(
            "SELECT GREATEST(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(!analyzed, "the test needs statistics that predate the queue");
        let chosen: Vec<i64> = (100..116).collect();
        let mut tx = pool.begin().await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {CLAIM_CHOSEN}"))
            .bind(&chosen)
            .bind(0_i64)
            .bind(30.0_f64)
            .bind(4_i64)
            .bind("on")
            .bind("node")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let plan = plan.join("\n");
        for read_more in ["using jobs_queue on", "using jobs_status on", "Seq Scan on jobs", "Bitmap", "Sort"] {
            assert!(!plan.contains(read_more), "the claim's plan has {read_more}:\n{plan}");
        }
        let claimed: Vec<i64> = sqlx::query_scalar("SELECT seq FROM jobs WHERE status = 'running' ORDER BY seq")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(claimed, vec![100, 101, 102, 103], "the first four chosen, in the order given:\n{plan}");
        // A row locked and not updated keeps this transaction's id as its `xmax`.
        let locked: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'queued' AND xmax::text <> '0'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(locked, 0, "no chosen job locked beyond those claimed:\n{plan}");
        tx.rollback().await.unwrap();
        drop(store);
    }
}
