-- ffmpeg-worker job store, schema 16: idempotent submission (crates/jobs/src/idempotency.rs).
-- A job submitted with an idempotency key keeps it, and the fingerprint of the request it came
-- with, in its own row: written by the job's insert, gone with the job's record (delete,
-- purge). The unique index decides between two submissions with one key: the insert that
-- finds the key taken inserts nothing (ON CONFLICT DO NOTHING, crates/jobs/src/sqlite/sql.rs
-- INSERT_MANY) and the submission gets the job that has it. Jobs without a key (NULL) never
-- conflict. Mirrors migrations-postgres/0016_idempotency_keys.sql.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN idempotency_fingerprint TEXT;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);
