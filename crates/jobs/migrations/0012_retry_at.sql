-- ffmpeg-worker job store, schema 12: a job put back in the queue after an attempt failed for a
-- reason that may pass (the storage unavailable) waits until `retry_at` (unix microseconds, by
-- the store's clock) before a claim may take it again, and keeps why in `retry_reason`
-- (crates/jobs/src/store.rs, `JobStore::retry`). Claims read `retry_at` with the queue
-- (crates/jobs/src/sqlite/sql.rs, CLAIM_VIEW): a job waiting for it is not claimed, but still
-- holds back the later jobs its footprint conflicts with. Mirrors
-- migrations-postgres/0012_retry_at.sql.
ALTER TABLE jobs ADD COLUMN retry_at INTEGER;
ALTER TABLE jobs ADD COLUMN retry_reason TEXT;
