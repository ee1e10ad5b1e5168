-- ffmpeg-worker job store, schema 2: what each job may read and write, and what each attempt
-- found before ffmpeg started (see crates/jobs/src/outputs.rs).

-- The job's footprint (JSON of ffmpeg_core::footprint::Footprint), set at submission. NULL:
-- unknown (jobs queued before this migration), and such a job runs alone. Claiming skips a
-- queued job whose footprint conflicts with a running job's.
ALTER TABLE jobs ADD COLUMN footprint TEXT;

-- The latest attempt's run record (JSON of jobs::store::RunRecord: attempt, run-time footprint,
-- snapshot of the written directories), written before ffmpeg starts, so that recovery after a
-- crash removes what the interrupted attempt wrote and nothing else. Kept apart from the job
-- row: a snapshot of a directory of segments can be large.
CREATE TABLE job_runs (
    job_seq INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    run     TEXT    NOT NULL
);
