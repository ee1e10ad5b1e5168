-- ffmpeg-worker job store on PostgreSQL, schema 2: mirrors migrations/0002 (SQLite): what
-- each job may read and write, and what each attempt found before ffmpeg started.

-- The job's footprint (JSON of ffmpeg_core::footprint::Footprint). NULL: unknown; such a job
-- runs alone.
ALTER TABLE jobs ADD COLUMN footprint TEXT;

-- The latest attempt's run record (JSON of jobs::store::RunRecord), written before ffmpeg starts.
CREATE TABLE job_runs (
    job_seq BIGINT PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    run     TEXT   NOT NULL
);
