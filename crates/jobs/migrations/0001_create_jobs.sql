-- ffmpeg-worker job store, schema 1 (see crates/jobs/src/sqlite.rs).
--
-- Times are INTEGER unix microseconds, UTC. JSON columns hold serde_json text of the Rust
-- types in crates/jobs/src/model.rs. The same shape maps onto PostgreSQL (BIGSERIAL seq,
-- TIMESTAMPTZ, JSONB), where `worker_id` and `lease_expires_at` carry claims with heartbeats;
-- the SQLite store leaves them NULL.

CREATE TABLE jobs (
    -- Submission order: the FIFO tie-break of the queue and the paging cursor.
    -- AUTOINCREMENT: a seq is never reused, even after the newest job is deleted.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    command          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    timeout_seconds  INTEGER,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    completed_at     INTEGER,
    progress         TEXT,
    output_files     TEXT    NOT NULL DEFAULT '[]',
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    worker_id        TEXT,
    lease_expires_at INTEGER
);

-- The queue: claim_next reads the first entry; only queued jobs are in it.
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE status = 'queued';

-- Listing and counting by status, recovery of running jobs, purging finished ones.
CREATE INDEX jobs_status ON jobs (status, seq);

-- ffmpeg's stderr tail (up to tens of KiB), kept apart so job rows stay small.
CREATE TABLE job_logs (
    job_seq INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    log     TEXT NOT NULL
);
