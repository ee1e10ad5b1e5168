-- ffmpeg-worker job store, schema 10: mirrors migrations-postgres/0010_claim_view.sql, a
-- function for the claim's read of the queue on PostgreSQL. A SQLite store reads its queue in
-- its one write transaction: nothing to add.
SELECT 1;
