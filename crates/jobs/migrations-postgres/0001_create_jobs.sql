-- ffmpeg-worker job store on PostgreSQL, schema 1: mirrors migrations/0001_create_jobs.sql
-- (SQLite). Same columns and meanings; see crates/jobs/src/postgres/mod.rs.
--
-- Times of a job are BIGINT unix microseconds (UTC), written by the node that makes the change,
-- as in SQLite. Lease times are TIMESTAMPTZ, written and compared by the database's own clock
-- only, so that nodes whose clocks differ agree on when a lease expires. JSON columns hold
-- serde_json text (TEXT, not JSONB: JSONB refuses the escape \u0000, which a metadata value may
-- hold). The log is BYTEA: PostgreSQL's TEXT cannot hold a NUL character, ffmpeg's stderr can.

CREATE TABLE jobs (
    -- Submission order: the FIFO tie-break of the queue and the paging cursor; never reused.
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    command          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    timeout_seconds  BIGINT,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    progress         TEXT,
    output_files     TEXT    NOT NULL DEFAULT '[]',
    error            TEXT,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- The node running the job (its NODE_ID) and until when its claim holds, unless renewed.
    worker_id        TEXT,
    lease_expires_at TIMESTAMPTZ
);

-- The queue: claim_next reads it in order; only queued jobs are in it.
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE status = 'queued';

-- Listing and counting by status, recovery of running jobs, purging finished ones.
CREATE INDEX jobs_status ON jobs (status, seq);

-- Running jobs by node (lease renewal, a node's own recovery) and by lease (the reaper).
CREATE INDEX jobs_running_worker ON jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';

-- ffmpeg's stderr tail (up to tens of KiB), kept apart so job rows stay small.
CREATE TABLE job_logs (
    job_seq BIGINT PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    log     BYTEA  NOT NULL
);
