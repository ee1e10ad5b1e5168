-- ffmpeg-worker job store on PostgreSQL, schema 4: mirrors migrations/0004_event_seq.sql
-- (SQLite): the id of the job's latest status event, one more with every status change,
-- written by the same statement as the change (crates/jobs/src/events.rs).
ALTER TABLE jobs ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 1;
