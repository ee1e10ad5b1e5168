-- ffmpeg-worker job store on PostgreSQL, schema 6: mirrors migrations/0006_job_outputs.sql
-- (SQLite): what is known of each file a completed job wrote, a JSON array of
-- jobs::model::OutputFile ('[]' for other jobs and for jobs completed before this column).
ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]';
