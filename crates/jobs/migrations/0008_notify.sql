-- ffmpeg-worker job store, schema 8: mirrors migrations-postgres/0008_notify.sql, where a
-- trigger announces job changes to the other nodes of a cluster with NOTIFY. A SQLite store
-- serves one node: nothing to add.
SELECT 1;
