-- ffmpeg-worker job store, schema 11: mirrors migrations-postgres/0011_quiet_starts.sql, which
-- changes the notification trigger of PostgreSQL. SQLite has no notifications: nothing to change.
SELECT 1;
