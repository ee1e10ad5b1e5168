-- ffmpeg-worker job store on PostgreSQL, schema 16: idempotent submission
-- (crates/jobs/src/idempotency.rs). A job submitted with an idempotency key keeps it, and the
-- fingerprint of the request it came with, in its own row: written by the job's insert, gone
-- with the job's record (delete, purge). The unique index decides between two submissions
-- with one key, on any node: an insert that meets an uncommitted row with its key waits for
-- that transaction; once it committed, the insert inserts nothing (ON CONFLICT DO NOTHING,
-- crates/jobs/src/postgres/sql.rs INSERT) and the submission reads the job that has the key.
-- Jobs without a key (NULL) never conflict. Mirrors migrations/0016_idempotency_keys.sql.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT, ADD COLUMN idempotency_fingerprint TEXT;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);
