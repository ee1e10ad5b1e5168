-- ffmpeg-worker job store, schema 4: each job's event sequence (see crates/jobs/src/events.rs).
--
-- The id of the job's latest status event: 1 when queued, one more with every status change,
-- written by the same statement as the change, so server-sent event ids stay valid across
-- restarts (a client's Last-Event-ID is compared with it). Jobs stored before this migration
-- start at 1; their ids only need to grow from here on.
ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 1;
